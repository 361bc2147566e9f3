//! The first shape's run method: reservations and payments until close_at (unpaid orders
//! expiring at their deadlines, hand-overs at quiet points), finalize, then production.

use super::*;

pub(super) async fn run(
    ctx: &mut WorkflowContext<SellWindowWorkflow>,
) -> WorkflowResult<ListingFigures> {
    if let Some(stored) = ctx.state(|s| s.loading.clone()) {
        take_over_orders(ctx, stored).await?;
    }
    let carried_over = ctx.state(|s| s.deferred.clone());
    if !carried_over.is_empty() {
        // In arrival order: each decision is taken as its future is first polled.
        ctx.state_mut(|s| s.busy += 1);
        for group in carried_over.chunks(JOIN_GROUP) {
            let applied =
                futures::future::join_all(group.iter().map(|r| apply_payment(ctx, r, false))).await;
            for e in applied.into_iter().filter_map(Result::err) {
                tracing::warn!(error = %anyhow_msg(e), "payment result not applied");
            }
        }
        ctx.state_mut(|s| {
            s.busy -= 1;
            s.deferred.clear();
        });
    }
    publish(ctx);
    // Reservations and payments until close_at; unpaid orders expire at their deadlines.
    loop {
        let t = now(ctx);
        let close_at = ctx.state(|s| s.listing.spec.close_at);
        // An admin cancel ends the listing before close_at.
        if t >= close_at || ctx.state(|s| s.listing.phase.is_final()) {
            break;
        }
        let next = ctx.state(|s| s.listing.next_payment_deadline());
        if next.is_some_and(|d| d <= t) {
            expire_due(ctx, t).await?;
            continue;
        }
        let wake = next.map_or(close_at, |d| d.min(close_at));
        let sleep = Duration::from_millis((wake.0 - t.0).max(1) as u64);
        let summary = if wake == close_at {
            "close_at"
        } else {
            "payment deadline"
        };
        let timer = temporalio_sdk::TimerOptions::builder(sleep)
            .summary(summary.to_string())
            .build();
        // Large batches grow history by bytes faster than by messages: the server's
        // suggestion (history past a few MB) must end the wait too, long before its 50 MB
        // limit. Runs recorded before looked at it only when something else woke them.
        let suggestion_wakes = ctx.patched(WAKE_ON_SUGGESTION);
        let when_grown = suggestion_wakes && ctx.patched(HAND_OVER_WHEN_GROWN);
        writing(ctx, async {
            temporalio_sdk::workflows::select! {
                _ = ctx.timer(timer) => {}
                // Confirm (or a late reservation) brought a deadline earlier than the timer.
                _ = ctx.wait_condition(move |s: &SellWindowWorkflow| s.listing.phase.is_final() || s.listing.next_payment_deadline().is_some_and(|d| d < wake)) => {}
                _ = ctx.wait_condition(|s: &SellWindowWorkflow| s.messages_this_run >= CONTINUE_AS_NEW_AFTER || (suggestion_wakes && s.follows_suggestion(when_grown) && ctx.continue_as_new_suggested())) => {}
            }
        })
        .await;
        let open = ctx.state(|s| s.listing.phase.accepts_reservations());
        let (long, worked) = ctx.state(|s| {
            (
                s.messages_this_run >= CONTINUE_AS_NEW_AFTER,
                s.follows_suggestion(when_grown),
            )
        });
        let suggested = ctx.continue_as_new_suggested() && (worked || !suggestion_wakes);
        if open && (long || suggested) {
            // Hand over at a quiet point: turn new updates away, let running ones finish.
            ctx.state_mut(|s| s.draining = true);
            let start = hand_over(ctx).await?;
            ctx.continue_as_new(start, temporalio_sdk::ContinueAsNewOptions::default())?;
        }
    }
    if !ctx.state(|s| s.listing.phase.is_final()) {
        finalize(ctx).await?;
    }
    publish(ctx);
    // A handler waiting for its write keeps `busy` up: writes are served while waiting.
    writing(
        ctx,
        ctx.wait_condition(|s: &SellWindowWorkflow| s.listing.phase.is_final() && s.busy == 0),
    )
    .await?;
    publish(ctx);
    if ctx.patched(SETTLE_LATE_PAYMENTS) {
        // A provider may still report a payment for an order that closed: stay a while so
        // it is refunded (never counted) instead of finding no workflow.
        let settle = ctx.state(|s| s.listing.spec.payment_window_ms.clamp(1_000, 3_600_000));
        ctx.timer(
            temporalio_sdk::TimerOptions::builder(Duration::from_millis(settle as u64))
                .summary("settle late payments".to_string())
                .build(),
        )
        .await;
        writing(
            ctx,
            ctx.wait_condition(|s: &SellWindowWorkflow| s.busy == 0),
        )
        .await?;
    }
    Ok(ctx.state(|s| s.listing.figures()))
}
