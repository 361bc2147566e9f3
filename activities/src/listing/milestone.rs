//! The listing's milestones, the steps of its story not about single orders: the batch
//! confirmed, close and finalize, the window failed or cancelled, work steps and shipping done.
//! Each is idempotent by its events' keys and conditional updates.

use super::ListingActivities;
use crate::store::{Recipient, StoreError, i};
use crate::unit::{Unit, listing_name};
use sellwindow_domain::*;
use sellwindow_workflows::listing::contract::{Milestone, MilestoneKind};
use sellwindow_workflows::machine::FinalOutcome;
use serde_json::json;

impl ListingActivities {
    pub async fn milestone_tx(&self, w: &Milestone) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        u.lock().await?;
        let (sw, p) = (
            w.listing.sell_window_id.as_str(),
            w.listing.product_id.as_str(),
        );
        let name = listing_name(&w.listing);
        match &w.kind {
            MilestoneKind::Confirmed { batch_id, .. } => {
                sqlx::query(
                    "INSERT INTO batches (id, sell_window_id, product_id, status, confirmed_at) VALUES ($1, $2, $3, 'CONFIRMED', $4) \
                     ON CONFLICT (id) DO UPDATE SET status = 'CONFIRMED', confirmed_at = COALESCE(batches.confirmed_at, excluded.confirmed_at)",
                )
                .bind(batch_id.as_str())
                .bind(sw)
                .bind(p)
                .bind(w.at.0)
                .execute(&mut *u.tx)
                .await?;
                u.event(
                    &format!("batch.confirmed:{batch_id}"),
                    "batch.confirmed",
                    None,
                    json!({"batchId": batch_id}),
                )
                .await?;
                u.set_phase(Phase::Confirmed).await?;
            }
            MilestoneKind::Closing => {
                u.event(
                    &format!("sell_window.finalize_requested:{sw}:{p}"),
                    "sell_window.finalize_requested",
                    None,
                    json!({}),
                )
                .await?;
                close_listing(&mut u, w.at).await?;
            }
            MilestoneKind::Unformed => {
                u.event(
                    &format!("sell_window.failed:{sw}:{p}"),
                    "sell_window.failed",
                    None,
                    json!({"reason": "group not formed"}),
                )
                .await?;
                u.set_phase(Phase::Failed).await?;
                u.note(Recipient::Admin, "admin", "window_failed", &format!("{sw}:{p}"), None,
                    format!("{name}: closed without a confirmed batch; the group did not form and every order was cancelled."));
            }
            MilestoneKind::Finalized {
                batch_id,
                final_paid_qty,
                outcome,
            } => {
                finalized(&mut u, batch_id, *final_paid_qty, outcome, &name).await?;
            }
            MilestoneKind::CancelStarted => close_listing(&mut u, w.at).await?,
            MilestoneKind::Cancelled { final_paid_qty } => {
                let (reason, message) = match final_paid_qty {
                    None => (
                        "cancelled by the admin".to_string(),
                        format!(
                            "{name}: cancelled; every order was cancelled and every paid one refunded."
                        ),
                    ),
                    Some(paid) => (
                        "paid quantity under threshold".to_string(),
                        format!(
                            "{name}: only {paid} paid, under the threshold; every paid order is refunded."
                        ),
                    ),
                };
                u.event(
                    &format!("sell_window.cancelled:{sw}:{p}"),
                    "sell_window.cancelled",
                    None,
                    json!({"reason": reason, "finalPaidQty": final_paid_qty}),
                )
                .await?;
                u.set_phase(Phase::Cancelled).await?;
                u.note(
                    Recipient::Admin,
                    "admin",
                    "window_cancelled",
                    &format!("{sw}:{p}"),
                    None,
                    message,
                );
            }
            MilestoneKind::StepDone {
                work_order_id,
                step_id,
                last,
            } => {
                sqlx::query("UPDATE work_steps SET status = 'DONE', completed_at = $1 WHERE id = $2 AND status = 'TODO'")
                    .bind(w.at.0)
                    .bind(step_id.as_str())
                    .execute(&mut *u.tx)
                    .await?;
                u.event(
                    &format!("work_step.completed:{step_id}"),
                    "work_step.completed",
                    None,
                    json!({"workOrderId": work_order_id, "stepId": step_id}),
                )
                .await?;
                if *last {
                    sqlx::query("UPDATE work_orders SET status = 'COMPLETED', completed_at = $1 WHERE id = $2")
                        .bind(w.at.0)
                        .bind(work_order_id.as_str())
                        .execute(&mut *u.tx)
                        .await?;
                    u.event(
                        &format!("production.completed:{work_order_id}"),
                        "production.completed",
                        None,
                        json!({"workOrderId": work_order_id}),
                    )
                    .await?;
                }
            }
            MilestoneKind::Shipped { work_order_id } => {
                let shipments: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM shipments WHERE sell_window_id = $1 AND product_id = $2",
                )
                .bind(sw)
                .bind(p)
                .fetch_one(&mut *u.tx)
                .await?;
                u.set_phase(Phase::Shipped).await?;
                u.note(Recipient::Admin, "admin", "production_completed", work_order_id.as_str(), None,
                    format!("{name}: work order {work_order_id} completed; {shipments} shipments created."));
            }
        }
        u.commit(&self.store, &self.sink).await
    }
}

/// From now on the listing takes no payment (later ones are refunded) and its quota is closed.
async fn close_listing(u: &mut Unit, at: UnixMillis) -> Result<(), StoreError> {
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
    u: &mut Unit,
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
