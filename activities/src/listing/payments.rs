//! Verified provider outcomes, applied in arrival order under the listing's lock: those a
//! signal carried, or those waiting in the listing's inbox (`payment_callbacks`). Each is
//! checked against the attempt the listing opened (the signal alone is never trusted: an
//! outcome for an unknown attempt, another order's or another listing's, changes nothing) and
//! decided by [`on_payment`]. Several outcomes for one order in one write see each other.

use super::ListingActivities;
use super::effects::{Write, by_order};
use super::rows::{self, Changes};
use super::texts::{self, Release};
use crate::store::{Recipient, StoreError};
use crate::unit::{Locked, Unit};
use sellwindow_domain::*;
use sellwindow_workflows::listing::contract::{ApplyInbox, ApplyPayments, Inboxed};
use sellwindow_workflows::machine::{OnPayment, on_payment};
use serde_json::json;
use sqlx::Row;

impl ListingActivities {
    pub async fn apply_payments_tx(&self, w: &ApplyPayments) -> Result<Figures, StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let locked = u.lock().await?;
        let u = self.apply(u, &locked, &w.results).await?;
        self.finish(u, &locked).await
    }

    pub async fn apply_inbox_tx(&self, w: &ApplyInbox) -> Result<Inboxed, StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let locked = u.lock().await?;
        let waiting = waiting(&mut u, w).await?;
        let mut u = self.apply(u, &locked, &waiting).await?;
        let applied: Vec<&str> = waiting.iter().map(|r| r.event_id.as_str()).collect();
        mark_applied(&mut u, &applied, w.at).await?;
        Ok(Inboxed {
            applied: waiting.len() as u32,
            more: waiting.len() as u32 == w.limit,
            figures: self.finish(u, &locked).await?,
        })
    }

    async fn finish(&self, mut u: Unit, locked: &Locked) -> Result<Figures, StoreError> {
        let figures = u.figures(locked).await?;
        u.commit(&self.store, &self.sink).await?;
        Ok(figures)
    }

    /// Applies `results` in order; returns the transaction with everything written.
    async fn apply(
        &self,
        mut u: Unit,
        locked: &Locked,
        results: &[PaymentResult],
    ) -> Result<Unit, StoreError> {
        let w = ApplyPayments {
            listing: u.listing().clone(),
            at: u.at(),
            results: Vec::new(),
        };
        let ids: Vec<&OrderId> = results.iter().map(|r| &r.order_id).collect();
        let mut orders = rows::orders_by_id(&mut u, &w.listing, &ids).await?;
        let known: Vec<&OrderId> = orders.keys().collect();
        let mut attempts = by_order(rows::attempts_of(&mut u, &known).await?);
        let mut write = Write {
            u,
            changes: Changes::default(),
            pay_base: &self.public_base_url,
        };
        for r in results {
            let (Some(order), Some(tried)) =
                (orders.get_mut(&r.order_id), attempts.get_mut(&r.order_id))
            else {
                tracing::warn!(order = %r.order_id, payment = %r.payment_id, "outcome for an order this listing does not have; ignored");
                continue;
            };
            let Some(at) = tried.iter().position(|a| a.id == r.payment_id) else {
                tracing::warn!(order = %r.order_id, payment = %r.payment_id, "outcome for an attempt this order never had; ignored");
                continue;
            };
            let decision = on_payment(
                &order.facts(),
                &tried[at].facts(),
                r.outcome,
                !locked.closed,
            );
            match decision {
                OnPayment::Ignore => {}
                OnPayment::Pay => {
                    write.charge(&mut tried[at], &order.id, &r.event_id);
                    let paid_by = tried[at].id.clone();
                    write.close_open_attempts(&order.id, tried, "superseded: the order is paid");
                    write.changes.delta +=
                        Delta::of_move(Some(order.status), OrderStatus::Paid, order.qty);
                    order.status = OrderStatus::Paid;
                    order.payment_due_at = None;
                    order.paid_by = Some(paid_by);
                    write.u.queue(
                        &format!("order.paid:{}", order.id),
                        "order.paid",
                        Some(&order.id),
                        json!({"orderId": order.id, "qty": order.qty}),
                    );
                    write.u.note(
                        Recipient::Customer,
                        order.customer_id.as_str(),
                        "payment_received",
                        order.id.as_str(),
                        Some(&order.id),
                        texts::payment_received(&order.id),
                    );
                    write.changes.order(order.clone());
                }
                OnPayment::Refund(why) => {
                    write.charge(&mut tried[at], &order.id, &r.event_id);
                    write.refund(&mut tried[at], order, texts::late_charge(why));
                }
                OnPayment::Fail => {
                    let error = r.error.clone().unwrap_or_else(|| "payment failed".into());
                    let a = &mut tried[at];
                    a.status = PaymentStatus::Failed;
                    a.last_error = Some(error.clone());
                    write.changes.attempt(a.clone());
                    order.failures += 1;
                    order.last_error = Some(error.clone());
                    write.changes.order(order.clone());
                    write.u.queue(
                        &format!("payment.failed:{}", a.id),
                        "payment.failed",
                        Some(&order.id),
                        json!({"orderId": order.id, "paymentId": a.id, "error": error, "failures": order.failures}),
                    );
                    write.u.queue(
                        &format!("notification.requested:payment_failed:{}", a.id),
                        "notification.requested",
                        Some(&order.id),
                        json!({"kind": "payment_failed", "orderId": order.id, "customerId": order.customer_id}),
                    );
                    let about = a.id.to_string();
                    write.u.note(
                        Recipient::Customer,
                        order.customer_id.as_str(),
                        "payment_failed",
                        &about,
                        Some(&order.id),
                        texts::payment_failed(&order.id, &error),
                    );
                }
                OnPayment::Expire => {
                    write.release(order, tried, OrderStatus::Expired, Release::ProviderExpired);
                }
            }
        }
        let Write { mut u, changes, .. } = write;
        changes
            .write(&mut u, &w.listing, w.at, locked.reopens())
            .await?;
        Ok(u)
    }
}

/// The outcomes waiting in the listing's inbox, oldest first.
async fn waiting(u: &mut Unit, w: &ApplyInbox) -> Result<Vec<PaymentResult>, StoreError> {
    let rows = sqlx::query(
        "SELECT event_id, payment_id, order_id, outcome, error, occurred_at FROM payment_callbacks \
         WHERE sell_window_id = $1 AND product_id = $2 AND applied_at IS NULL \
         ORDER BY received_at, event_id LIMIT $3",
    )
    .bind(w.listing.sell_window_id.as_str())
    .bind(w.listing.product_id.as_str())
    .bind(i64::from(w.limit))
    .fetch_all(&mut *u.tx)
    .await?;
    let bad = |e: DomainError| StoreError::Inconsistent(e.to_string());
    rows.iter()
        .map(|r| {
            let outcome: String = r.try_get("outcome")?;
            Ok(PaymentResult {
                event_id: r.try_get("event_id")?,
                payment_id: PaymentId::parse(r.try_get::<String, _>("payment_id")?).map_err(bad)?,
                order_id: OrderId::parse(r.try_get::<String, _>("order_id")?).map_err(bad)?,
                outcome: PaymentOutcome::parse(&outcome)
                    .ok_or_else(|| StoreError::Inconsistent(format!("outcome {outcome}")))?,
                error: r.try_get("error")?,
                occurred_at: UnixMillis(r.try_get::<Option<i64>, _>("occurred_at")?.unwrap_or(0)),
            })
        })
        .collect()
}

async fn mark_applied(u: &mut Unit, events: &[&str], at: UnixMillis) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let j = crate::store::JsonRows(u.backend);
    let ids = serde_json::Value::Array(events.iter().map(|e| json!({ "id": e })).collect());
    sqlx::query(&format!(
        "UPDATE payment_callbacks SET applied_at = $1 WHERE event_id IN (SELECT {} {})",
        j.text("id"),
        j.from(2)
    ))
    .bind(at.0)
    .bind(ids.to_string())
    .execute(&mut *u.tx)
    .await?;
    Ok(())
}
