//! Verified provider outcomes waiting in the listing's inbox (`payment_callbacks`), applied in
//! arrival order under the listing's lock. Each is checked against the attempt the listing
//! opened (an outcome for an unknown attempt, another order's or another listing's, changes
//! nothing) and decided by [`on_payment`]. Several outcomes for one order in one write see each
//! other.

use super::ListingActivities;
use sellwindow_domain::*;
use sellwindow_store::db::StoreError;
use sellwindow_store::effects::{Write, by_order};
use sellwindow_store::listing_tx::{ListingTx, Locked};
use sellwindow_store::rows::{self, Changes};
use sellwindow_store::texts::{self, Release};
use sellwindow_workflows::listing::contract::{ApplyInbox, Inboxed};
use sellwindow_workflows::machine::{OnPayment, on_payment};
use serde_json::json;
use sqlx::Row;

impl ListingActivities {
    pub async fn apply_inbox_tx(&self, w: &ApplyInbox) -> Result<Inboxed, StoreError> {
        let mut u = ListingTx::begin(&self.store, &w.listing, w.at).await?;
        let mut locked = u.lock().await?;
        let waiting = waiting(&mut u, w).await?;
        let mut u = self.apply(u, &mut locked, &waiting).await?;
        let applied: Vec<&str> = waiting.iter().map(|r| r.event_id.as_str()).collect();
        mark_applied(&mut u, &applied, w.at).await?;
        Ok(Inboxed {
            applied: waiting.len() as u32,
            more: waiting.len() as u32 == w.limit,
            figures: self.finish(u, &locked).await?,
        })
    }

    async fn finish(&self, mut u: ListingTx, locked: &Locked) -> Result<Figures, StoreError> {
        let figures = u.figures(locked).await?;
        u.commit(&self.store, &self.sink).await?;
        Ok(figures)
    }

    /// Applies `results` in order; returns the transaction with everything written.
    async fn apply(
        &self,
        mut u: ListingTx,
        locked: &mut Locked,
        results: &[PaymentResult],
    ) -> Result<ListingTx, StoreError> {
        let listing = u.listing().clone();
        let ids: Vec<&OrderId> = results.iter().map(|r| &r.order_id).collect();
        let mut orders = rows::orders_by_id(&mut u, &listing, &ids).await?;
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
                !locked.closed(),
            );
            match decision {
                OnPayment::Ignore => {}
                OnPayment::Pay => write.pay(order, tried, at, &r.event_id),
                OnPayment::Refund(why) => {
                    write.charge(&mut tried[at], &order.id, &r.event_id);
                    write.refund(&mut tried[at], order, texts::late_charge(why));
                }
                OnPayment::Fail => {
                    let error = r.error.clone().unwrap_or_else(|| "payment failed".into());
                    write.fail(order, &mut tried[at], error);
                }
                OnPayment::Expire => {
                    write.release(order, tried, OrderStatus::Expired, Release::ProviderExpired);
                }
            }
        }
        let Write { mut u, changes, .. } = write;
        let at = u.at();
        changes.write(&mut u, &listing, at, locked).await?;
        Ok(u)
    }
}

/// The outcomes waiting in the listing's inbox, oldest first.
async fn waiting(u: &mut ListingTx, w: &ApplyInbox) -> Result<Vec<PaymentResult>, StoreError> {
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

async fn mark_applied(
    u: &mut ListingTx,
    events: &[&str],
    at: UnixMillis,
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let j = sellwindow_store::db::JsonRows(u.backend);
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
