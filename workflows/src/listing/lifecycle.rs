//! The run method, the listing's life as the seed tells it: take payments until close_at,
//! expiring unpaid orders as their deadlines pass (reservations commit in the database
//! meanwhile, and the API's progress signals bring their figures and deadlines); at close_at
//! fence the row and finalize (or fail the window); wait for production to complete; stay a
//! while for late payments; end. Whenever the run's history grows long it hands over to a new
//! run, at a quiet point.

use super::SellWindow;
use super::contract::MilestoneKind;
use super::start::{Carried, HandOver, ListingRun};
use super::writes::{Write, Written, milestone, now, sweep_all, written};
use crate::machine::{Closing, FinalOutcome, SweepKind};
use sellwindow_domain::*;
use std::time::Duration;
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_sdk::{ContinueAsNewOptions, TimerOptions, WorkflowContext, WorkflowResult};

pub const SA_SELL_WINDOW: SearchAttributeKey<String> = SearchAttributeKey::keyword("SellWindowId");
pub const SA_PRODUCT: SearchAttributeKey<String> = SearchAttributeKey::keyword("ProductId");
pub const SA_PHASE: SearchAttributeKey<String> = SearchAttributeKey::keyword("ListingPhase");

/// Deadline sweeps run at least this far apart: an order expires at most this late, and a hot
/// listing's orders (each with its own deadline) do not cost a sweep each.
const DEADLINE_SWEEP_GAP_MS: i64 = 1_000;

pub async fn story(ctx: &WorkflowContext<SellWindow>) -> WorkflowResult<ListingFigures> {
    publish(ctx);
    loop {
        if ctx.state(|s| s.listing.phase.is_final()) {
            break;
        }
        let t = now(ctx);
        let (close_at, closing) = ctx.state(|s| (s.listing.spec.close_at, s.listing.closing));
        if t >= close_at && !closing {
            close(ctx).await?;
            continue;
        }
        let sweep_at = ctx.state(next_deadline_sweep);
        if sweep_at.is_some_and(|d| d <= t) {
            deadline_sweep(ctx, t).await?;
            continue;
        }
        let look_at = ctx.state(next_look);
        if look_at.is_some_and(|d| d <= t) {
            look(ctx, t).await?;
            continue;
        }
        let wake = [sweep_at, look_at, (!closing).then_some(close_at)]
            .into_iter()
            .flatten()
            .min();
        wait(ctx, wake, t, |s| s.listing.phase.is_final()).await?;
    }
    settle(ctx).await
}

/// Waits until `wake` (if any), until a decision elsewhere changes what is next (`ended`, or
/// a payment deadline earlier than `wake`), or until the run should hand over (and then hands
/// over).
async fn wait(
    ctx: &WorkflowContext<SellWindow>,
    wake: Option<UnixMillis>,
    t: UnixMillis,
    ended: fn(&SellWindow) -> bool,
) -> WorkflowResult<()> {
    let timer = wake.map(|w| {
        let summary = if ctx.state(|s| Some(w) == next_deadline_sweep(s)) {
            "payment deadline"
        } else {
            "close_at or the end of settling"
        };
        TimerOptions::builder(Duration::from_millis((w.0 - t.0).max(1) as u64))
            .summary(summary.to_string())
            .build()
    });
    let c = ctx.clone();
    let changed = move |s: &SellWindow| {
        ended(s)
            || next_deadline_sweep(s).is_some_and(|d| wake.is_none_or(|w| d < w))
            || wants_hand_over(s, &c)
    };
    match timer {
        Some(timer) => {
            temporalio_sdk::workflows::select! {
                _ = ctx.timer(timer) => {}
                _ = ctx.wait_condition(changed) => {}
            }
        }
        None => {
            let _ = ctx.wait_condition(changed).await;
        }
    }
    if ctx.state(|s| wants_hand_over(s, ctx)) {
        hand_over(ctx).await?;
    }
    Ok(())
}

/// When the next deadline sweep is due, if one is.
fn next_deadline_sweep(s: &SellWindow) -> Option<UnixMillis> {
    // Once the listing closes (or is cancelled) its own sweeps settle every unpaid order.
    if s.listing.batch_status != BatchStatus::Confirmed || !s.listing.takes_reservations() {
        return None;
    }
    let due = s.listing.next_deadline?;
    Some(match s.last_deadline_sweep {
        Some(last) => due.max(last.plus_ms(DEADLINE_SWEEP_GAP_MS)),
        None => due,
    })
}

/// When the listing next reads its row for payment deadlines it may not have heard of: while
/// it takes reservations after confirm and knows of no pending deadline, every payment window.
/// An order reserved since the last look is due a payment window after its reservation, so a
/// look finds it before it is due even when its progress signal was lost.
fn next_look(s: &SellWindow) -> Option<UnixMillis> {
    let l = &s.listing;
    if l.batch_status != BatchStatus::Confirmed
        || !l.takes_reservations()
        || l.next_deadline.is_some()
    {
        return None;
    }
    let last = s.last_look.or(l.confirmed_at)?;
    Some(last.plus_ms(l.spec.payment_window_ms.max(DEADLINE_SWEEP_GAP_MS)))
}

/// Reads the row: its figures and the earliest payment deadline pending.
async fn look(ctx: &WorkflowContext<SellWindow>, t: UnixMillis) -> WorkflowResult<()> {
    ctx.state_mut(|s| s.last_look = Some(t));
    if let Written::Row(row) = written(ctx, Write::ReadRow).await?
        && let Some(due) = row.next_due
    {
        ctx.state_mut(|s| s.listing.expect_deadline(due));
    }
    Ok(())
}

/// Expires the orders whose payment deadline has passed.
async fn deadline_sweep(ctx: &WorkflowContext<SellWindow>, t: UnixMillis) -> WorkflowResult<()> {
    // Deadlines written meanwhile are learned again from their writes; the sweep's last
    // chunk tells the earliest one left.
    ctx.state_mut(|s| {
        s.listing.next_deadline = None;
        s.last_deadline_sweep = Some(t);
    });
    let (_, last) = sweep_all(ctx, SweepKind::Deadline, Some(t)).await?;
    if let Some(due) = last.next_due {
        ctx.state_mut(|s| s.listing.expect_deadline(due));
    }
    publish(ctx);
    Ok(())
}

/// close_at: the seed's finalize_requested → finalized → production.scheduled → started (or
/// the window fails).
async fn close(ctx: &WorkflowContext<SellWindow>) -> WorkflowResult<()> {
    // A confirm still asking its orders to pay finishes first.
    ctx.wait_condition(|s: &SellWindow| !s.confirming)
        .await
        .map_err(|_| temporalio_sdk::WorkflowTermination::cancelled())?;
    let closing = ctx.state_mut(|s| s.listing.close());
    publish(ctx);
    // The fence: from here on the row refuses reservations and payments; every reservation
    // committed before it is among the orders the sweeps below find.
    milestone(ctx, MilestoneKind::Closing).await?;
    match closing {
        Closing::Unformed => {
            sweep_all(ctx, SweepKind::Unformed, None).await?;
            milestone(ctx, MilestoneKind::Unformed).await?;
        }
        Closing::Confirmed => {
            // Every payment applied before the fence counts and every one after is refunded
            // (the writes check the fence): the paid quantity is final once unpaid orders
            // have expired.
            sweep_all(ctx, SweepKind::UnpaidAtClose, None).await?;
            let (outcome, batch_id, paid) = ctx.state_mut(|s| {
                let outcome = s.listing.decide_final();
                (outcome, s.listing.spec.batch_id(), s.listing.paid_qty)
            });
            let finalized = MilestoneKind::Finalized {
                batch_id,
                final_paid_qty: paid,
                outcome: outcome.clone(),
            };
            milestone(ctx, finalized).await?;
            if outcome == FinalOutcome::CancelAndRefund {
                sweep_all(ctx, SweepKind::PaidUnderThreshold, None).await?;
                let cancelled = MilestoneKind::Cancelled {
                    final_paid_qty: Some(paid),
                };
                milestone(ctx, cancelled).await?;
            }
        }
    }
    publish(ctx);
    Ok(())
}

/// After its final phase the listing stays one payment window (1 s to 1 h) so a late payment
/// is refunded rather than finding no workflow; then, with nothing left to write, it ends.
async fn settle(ctx: &WorkflowContext<SellWindow>) -> WorkflowResult<ListingFigures> {
    let t = now(ctx);
    let until = ctx.state_mut(|s| {
        let window = s.listing.spec.payment_window_ms.clamp(1_000, 3_600_000);
        *s.settle_until.get_or_insert(t.plus_ms(window))
    });
    loop {
        let t = now(ctx);
        if t >= until {
            break;
        }
        wait(ctx, Some(until), t, |_| false).await?;
    }
    let c = ctx.clone();
    ctx.wait_condition(move |s: &SellWindow| s.quiet(&c))
        .await
        .map_err(|_| temporalio_sdk::WorkflowTermination::cancelled())?;
    publish(ctx);
    Ok(ctx.state(|s| s.listing.figures()))
}

fn wants_hand_over(s: &SellWindow, ctx: &WorkflowContext<SellWindow>) -> bool {
    !s.draining && hand_over_reason(s, ctx).is_some()
}

fn hand_over_reason(s: &SellWindow, ctx: &WorkflowContext<SellWindow>) -> Option<HandOver> {
    let t = &s.tuning;
    if ctx.history_length() >= t.handover_events {
        Some(HandOver::Events)
    } else if s.updates_this_run >= t.handover_updates {
        Some(HandOver::Updates)
    } else if s.signals_this_run >= t.handover_signals {
        Some(HandOver::Signals)
    } else if ctx.continue_as_new_suggested() {
        Some(HandOver::Suggested)
    } else {
        None
    }
}

/// Hands over to a new run at a quiet point: updates are turned away (the API asks again)
/// while what is queued is written; payment outcomes wait in the inbox for the next run.
async fn hand_over(ctx: &WorkflowContext<SellWindow>) -> WorkflowResult<()> {
    let reason = ctx.state_mut(|s| {
        s.draining = true;
        hand_over_reason(s, ctx).expect("a reason to hand over")
    });
    let c = ctx.clone();
    ctx.wait_condition(move |s: &SellWindow| s.quiet(&c))
        .await
        .map_err(|_| temporalio_sdk::WorkflowTermination::cancelled())?;
    let next = ctx.state(|s| ListingRun {
        spec: s.listing.spec.clone(),
        tuning: s.tuning,
        carried: Some(Carried {
            listing: s.listing.clone(),
            settle_until: s.settle_until,
            runs: s.runs + 1,
            reason,
        }),
    });
    let Err(next_run) = ctx.continue_as_new(next, ContinueAsNewOptions::default());
    Err(next_run)
}

/// Publishes the phase as a search attribute (when it changed) and the figures as the
/// workflow's current details, for operators in the Temporal UI.
pub fn publish(ctx: &WorkflowContext<SellWindow>) {
    let (f, changed) = ctx.state_mut(|s| {
        let f = s.listing.figures();
        let changed = s.published_phase != Some(f.phase);
        s.published_phase = Some(f.phase);
        (f, changed)
    });
    if changed {
        ctx.upsert_search_attributes([
            SA_SELL_WINDOW.value_set(f.sell_window_id.to_string()),
            SA_PRODUCT.value_set(f.product_id.to_string()),
            SA_PHASE.value_set(f.phase.as_str().to_string()),
        ]);
    }
    ctx.set_current_details(format!(
        "**{}** · quota {} · sold {}/{} · reserved {} · paid {} · threshold {} ({}) · batch {}",
        f.phase,
        f.quota_status,
        f.sold_qty,
        f.max_qty,
        f.reserved_qty,
        f.paid_qty,
        f.threshold_status,
        f.min_qty,
        f.batch_status
    ));
}
