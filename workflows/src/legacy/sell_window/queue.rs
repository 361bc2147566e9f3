//! The first shape's write queues: reservations and payments written in batches by the run method, and the activity options.

use super::*;

pub(super) fn write_opts() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(10))
        .schedule_to_close_timeout(Duration::from_secs(30))
        .summary("record reservations".to_string())
        .build()
}

/// The idempotency keys of the batch's new orders (the API sends one with each reservation).
pub(super) fn order_answers(batch: &ReserveBatch, accepted: &[NewOrder]) -> Vec<OrderAnswer> {
    let new: std::collections::BTreeSet<&OrderId> = accepted.iter().map(|o| &o.order_id).collect();
    batch
        .items
        .iter()
        .filter(|i| new.contains(&i.order_id))
        .filter_map(|i| {
            Some(OrderAnswer {
                customer_id: i.customer_id.clone(),
                key: i.answer_key.clone()?,
                order_id: i.order_id.clone(),
            })
        })
        .collect()
}

/// One of the write queues the run method serves: how a handler reads it and takes from it.
type Queue<W> = (
    fn(&SellWindowWorkflow) -> &WriteQueue<W>,
    fn(&mut SellWindowWorkflow) -> &mut WriteQueue<W>,
);
pub(super) const RESERVATIONS: Queue<ReservationWrite> = (|s| &s.writes, |s| &mut s.writes);
pub(super) const PAID: Queue<PaidWrites> = (|s| &s.paid, |s| &mut s.paid);

/// Queues a handler's write for the run method and waits for its result; `None` if cancelled.
pub(super) async fn written_by_run<W: Batch>(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    (queue, queue_mut): Queue<W>,
    write: W,
) -> Option<Result<(), String>> {
    let ticket: Ticket = ctx.state_mut(|s| queue_mut(s).push(write));
    ctx.wait_condition(move |s: &SellWindowWorkflow| queue(s).is_done(ticket))
        .await
        .ok()?;
    ctx.state_mut(|s| queue_mut(s).result(ticket))
}

pub(super) fn anything_to_write(s: &SellWindowWorkflow) -> bool {
    s.writes.has_pending() || s.paid.has_pending()
}

/// Runs `until` while writing what handlers queue, and returns only when nothing is left to
/// write. The writes are polled first, so a handler's decision is never left unwritten while
/// the run moves on (to a hand-over, to finalize, or to its end).
pub(super) async fn writing<T>(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    until: impl std::future::Future<Output = T>,
) -> T {
    use futures::FutureExt;
    let until = until.fuse();
    futures::pin_mut!(until);
    let out = loop {
        temporalio_sdk::workflows::select! {
            _ = ctx.wait_condition(anything_to_write) => write_queued(ctx).await,
            out = until => break out,
        }
    };
    while ctx.state(anything_to_write) {
        write_queued(ctx).await;
    }
    out
}

/// One local activity (one transaction) for each kind of write queued so far.
pub(super) async fn write_queued(ctx: &WorkflowContext<SellWindowWorkflow>) {
    if let Some((tickets, write)) = ctx.state_mut(|s| s.writes.take()) {
        let written = ctx
            .execute_local_activity(Acts::record_reservations, write, write_opts())
            .await
            .map_err(|e| e.to_string());
        ctx.state_mut(|s| s.writes.finish(&tickets, written));
    }
    if let Some((tickets, write)) = ctx.state_mut(|s| s.paid.take()) {
        // The listing already counts these orders paid and cannot take that back: no
        // schedule-to-close, the write is retried until it lands.
        let opts = LocalActivityOptions::builder()
            .start_to_close_timeout(Duration::from_secs(10))
            .summary("mark orders paid".to_string())
            .build();
        let written = ctx
            .execute_local_activity(Acts::mark_paid_many, write, opts)
            .await
            .map_err(|e| e.to_string());
        ctx.state_mut(|s| s.paid.finish(&tickets, written));
    }
}

/// Reads back the orders a previous run left in the store, then lets handlers in.
pub(super) async fn take_over_orders(
    ctx: &mut WorkflowContext<SellWindowWorkflow>,
    stored: StoredOrders,
) -> WorkflowResult<()> {
    let mut parts = Vec::with_capacity(stored.parts as usize);
    let numbers: Vec<u32> = (0..stored.parts).collect();
    for group in numbers.chunks(JOIN_GROUP) {
        let loads = group.iter().map(|&part| {
            let r = HandoverPartRef {
                token: stored.token.clone(),
                part,
            };
            // Local: reservations wait until the orders are back, and a local activity skips
            // the server's dispatch (its result lands in history either way).
            let opts = LocalActivityOptions::builder()
                .start_to_close_timeout(Duration::from_secs(10))
                .summary(format!("take over orders, part {}", part + 1))
                .build();
            ctx.execute_local_activity(Acts::load_handover_part, r, opts)
        });
        for loaded in futures::future::join_all(loads).await {
            parts.push(loaded?);
        }
    }
    let orders = ListingStart::orders_from_parts(&stored, &parts)
        .expect("a hand-over this code wrote itself");
    ctx.state_mut(|s| {
        s.listing.orders = orders;
        s.loading = None;
    });
    let listing = key(ctx);
    ctx.execute_activity(Acts::drop_handover, listing, act_opts("drop the hand-over"))
        .await?;
    Ok(())
}

pub(super) fn now(ctx: &WorkflowContext<SellWindowWorkflow>) -> UnixMillis {
    let t = ctx
        .workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    UnixMillis(t.as_millis() as i64)
}

pub(super) fn act_opts(summary: &str) -> ActivityOptions {
    let mut o = ActivityOptions::start_to_close_timeout(Duration::from_secs(20));
    o.summary = Some(summary.to_string());
    o
}

pub(super) fn key(ctx: &WorkflowContext<SellWindowWorkflow>) -> ListingKey {
    ctx.state(|s| ListingKey {
        sell_window_id: s.listing.spec.sell_window_id.clone(),
        product_id: s.listing.spec.product_id.clone(),
    })
}
