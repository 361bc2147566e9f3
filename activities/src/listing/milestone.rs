//! The listing's milestones, the steps of its story not about single orders: the close and
//! cancel fences, finalize, the window failed or cancelled, work steps and shipping done.
//! Each is idempotent by its events' keys and conditional updates.

use super::ListingActivities;
use sellwindow_domain::*;
use sellwindow_store::db::{Recipient, StoreError, i};
use sellwindow_store::listing_tx::{ListingTx, listing_name};
use sellwindow_workflows::listing::contract::{Milestone, MilestoneKind};
use sellwindow_workflows::machine::FinalOutcome;
use serde_json::json;

impl ListingActivities {
    pub async fn milestone_tx(&self, w: &Milestone) -> Result<(), StoreError> {
        let mut u = ListingTx::begin(&self.store, &w.listing, w.at).await?;
        u.lock().await?;
        let name = listing_name(&w.listing);
        let key = format!("{}:{}", w.listing.sell_window_id, w.listing.product_id);
        match &w.kind {
            MilestoneKind::Closing => {
                let event = "sell_window.finalize_requested";
                u.event(&format!("{event}:{key}"), event, None, json!({}))
                    .await?;
                close_listing(&mut u, w.at).await?;
            }
            MilestoneKind::Unformed => unformed(&mut u, &key, &name).await?,
            MilestoneKind::Finalized {
                batch_id,
                final_paid_qty,
                outcome,
            } => finalized(&mut u, batch_id, *final_paid_qty, outcome, &name).await?,
            MilestoneKind::CancelStarted => close_listing(&mut u, w.at).await?,
            MilestoneKind::Cancelled { final_paid_qty } => {
                cancelled(&mut u, &key, &name, *final_paid_qty).await?
            }
            MilestoneKind::StepDone {
                work_order_id,
                step_id,
                last,
            } => step_done(&mut u, work_order_id, step_id, *last).await?,
            MilestoneKind::Shipped { work_order_id } => {
                shipped(&mut u, work_order_id, &name).await?
            }
        }
        u.commit(&self.store, &self.sink).await
    }
}

/// Closed without a confirmed batch: `sell_window.failed`, the admin told.
async fn unformed(u: &mut ListingTx, key: &str, name: &str) -> Result<(), StoreError> {
    let payload = json!({"reason": "group not formed"});
    let event = "sell_window.failed";
    u.event(&format!("{event}:{key}"), event, None, payload)
        .await?;
    u.set_phase(Phase::Failed).await?;
    let message = format!(
        "{name}: closed without a confirmed batch; the group did not form and every order was cancelled."
    );
    u.note(
        Recipient::Admin,
        "admin",
        "window_failed",
        key,
        None,
        message,
    );
    Ok(())
}

/// Every order is cancelled (by the admin, or under the threshold with `CANCEL_AND_REFUND`).
async fn cancelled(
    u: &mut ListingTx,
    key: &str,
    name: &str,
    final_paid_qty: Option<u32>,
) -> Result<(), StoreError> {
    let (reason, message) = match final_paid_qty {
        None => (
            "cancelled by the admin",
            format!("{name}: cancelled; every order was cancelled and every paid one refunded."),
        ),
        Some(paid) => (
            "paid quantity under threshold",
            format!("{name}: only {paid} paid, under the threshold; every paid order is refunded."),
        ),
    };
    let payload = json!({"reason": reason, "finalPaidQty": final_paid_qty});
    let event = "sell_window.cancelled";
    u.event(&format!("{event}:{key}"), event, None, payload)
        .await?;
    u.set_phase(Phase::Cancelled).await?;
    u.note(
        Recipient::Admin,
        "admin",
        "window_cancelled",
        key,
        None,
        message,
    );
    Ok(())
}

/// A work step is done; the last one completes production.
async fn step_done(
    u: &mut ListingTx,
    work_order_id: &WorkOrderId,
    step_id: &StepId,
    last: bool,
) -> Result<(), StoreError> {
    let at = u.at();
    sqlx::query("UPDATE work_steps SET status = 'DONE', completed_at = $1 WHERE id = $2 AND status = 'TODO'")
        .bind(at.0)
        .bind(step_id.as_str())
        .execute(&mut *u.tx)
        .await?;
    let payload = json!({"workOrderId": work_order_id, "stepId": step_id});
    let key = format!("work_step.completed:{step_id}");
    u.event(&key, "work_step.completed", None, payload).await?;
    if last {
        sqlx::query("UPDATE work_orders SET status = 'COMPLETED', completed_at = $1 WHERE id = $2")
            .bind(at.0)
            .bind(work_order_id.as_str())
            .execute(&mut *u.tx)
            .await?;
        let payload = json!({"workOrderId": work_order_id});
        let key = format!("production.completed:{work_order_id}");
        u.event(&key, "production.completed", None, payload).await?;
    }
    Ok(())
}

/// Every paid order has its shipment: the listing is SHIPPED, the admin told.
async fn shipped(
    u: &mut ListingTx,
    work_order_id: &WorkOrderId,
    name: &str,
) -> Result<(), StoreError> {
    let l = u.listing().clone();
    let shipments: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM shipments WHERE sell_window_id = $1 AND product_id = $2",
    )
    .bind(l.sell_window_id.as_str())
    .bind(l.product_id.as_str())
    .fetch_one(&mut *u.tx)
    .await?;
    u.set_phase(Phase::Shipped).await?;
    let message =
        format!("{name}: work order {work_order_id} completed; {shipments} shipments created.");
    let about = work_order_id.as_str();
    u.note(
        Recipient::Admin,
        "admin",
        "production_completed",
        about,
        None,
        message,
    );
    Ok(())
}

/// From now on the listing takes no payment (later ones are refunded) and its quota is closed.
async fn close_listing(u: &mut ListingTx, at: UnixMillis) -> Result<(), StoreError> {
    let l = u.listing().clone();
    sqlx::query("UPDATE product_sell_windows SET closed_at = COALESCE(closed_at, $1) WHERE sell_window_id = $2 AND product_id = $3")
        .bind(at.0)
        .bind(l.sell_window_id.as_str())
        .bind(l.product_id.as_str())
        .execute(&mut *u.tx)
        .await?;
    sqlx::query("UPDATE sell_window_quota SET status = 'CLOSED' WHERE sell_window_id = $1 AND product_id = $2")
        .bind(l.sell_window_id.as_str())
        .bind(l.product_id.as_str())
        .execute(&mut *u.tx)
        .await?;
    Ok(())
}

/// The paid quantity is frozen: `sell_window.finalized`, then the work order (or nothing).
async fn finalized(
    u: &mut ListingTx,
    batch_id: &BatchId,
    paid: u32,
    outcome: &FinalOutcome,
    name: &str,
) -> Result<(), StoreError> {
    let l = u.listing().clone();
    let (sw, p) = (l.sell_window_id.as_str(), l.product_id.as_str());
    sqlx::query(
        "UPDATE counters SET final_paid_qty = $1 WHERE sell_window_id = $2 AND product_id = $3",
    )
    .bind(i(paid))
    .bind(sw)
    .bind(p)
    .execute(&mut *u.tx)
    .await?;
    u.event(
        &format!("sell_window.finalized:{sw}:{p}"),
        "sell_window.finalized",
        None,
        json!({"finalPaidQty": paid}),
    )
    .await?;
    sqlx::query("UPDATE batches SET target_qty = $1 WHERE id = $2")
        .bind(i(paid))
        .bind(batch_id.as_str())
        .execute(&mut *u.tx)
        .await?;
    match outcome {
        FinalOutcome::Produce {
            work_order_id,
            steps,
        } => {
            u.start_production(batch_id, paid, work_order_id, steps)
                .await?;
            u.note(Recipient::Admin, "admin", "production_started", work_order_id.as_str(), None,
                format!("{name}: work order {work_order_id} created for {paid} units; production started."));
        }
        FinalOutcome::NothingToProduce => {
            u.set_phase(Phase::NothingToProduce).await?;
            u.note(
                Recipient::Admin,
                "admin",
                "nothing_to_produce",
                &format!("{sw}:{p}"),
                None,
                format!("{name}: closed with nothing paid; no production."),
            );
        }
        // The paid orders are cancelled and refunded by a sweep, then the window is cancelled.
        FinalOutcome::CancelAndRefund => {}
    }
    Ok(())
}
