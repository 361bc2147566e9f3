//! The activities the `SellWindow` workflow runs. Each one opens a transaction, writes its first
//! row keyed by the ids it carries (so a rerun finds its own work), changes counters only by
//! what actually changed, appends the seed's events, persists notifications, commits, and then
//! hands the new notifications to the sink.

use crate::notify::NotificationSink;
use crate::queries::RESERVED_ANSWER;
use crate::store::{self, Backend, JsonRows, Recipient, Store, StoreError, Tx, i};
use crate::unit::{Unit, fail, listing_name};
use sellwindow_domain::*;
use sellwindow_workflows::legacy::contract::defs;
use sellwindow_workflows::legacy::inputs::*;
use serde_json::json;
use sqlx::Row;
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct SellWindowActivities {
    store: Store,
    sink: Arc<dyn NotificationSink>,
    /// Base of the pay links sent to customers, e.g. `http://127.0.0.1:8080`.
    public_base_url: String,
    faults: Arc<crate::Faults>,
}

impl SellWindowActivities {
    pub fn new(store: Store, sink: Arc<dyn NotificationSink>, public_base_url: String) -> Self {
        Self {
            store,
            sink,
            public_base_url: public_base_url.trim_end_matches('/').to_string(),
            faults: Arc::default(),
        }
    }

    /// The same activities with test fault injection armed through `faults`.
    pub fn with_faults(mut self, faults: Arc<crate::Faults>) -> Self {
        self.faults = faults;
        self
    }
}

#[activities]
impl SellWindowActivities {
    /// The quota-locking write: the batch's orders, the quota row and the aggregator counter in
    /// one transaction. The conditional update refuses to take the quota row past `max_qty`
    /// (and the row's CHECK would too), whatever any other writer did.
    #[activity(definition = defs::RecordReservations)]
    pub async fn record_reservations(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ReservationWrite,
    ) -> Result<(), ActivityError> {
        self.faults.before_reservation_write().await;
        self.record_reservations_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::ConfirmBatch)]
    pub async fn confirm_batch(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ConfirmWrite,
    ) -> Result<(), ActivityError> {
        self.confirm_batch_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::OpenPayments)]
    pub async fn open_payments(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: PaymentsWrite,
    ) -> Result<(), ActivityError> {
        self.open_payments_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::MarkPaid)]
    pub async fn mark_paid(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: PaidWrite,
    ) -> Result<(), ActivityError> {
        self.mark_paid_tx(&w).await.map_err(fail)
    }

    /// Successful payments of one listing, applied together: what `mark_paid` does for one,
    /// in set-based statements.
    #[activity(definition = defs::MarkPaidMany)]
    pub async fn mark_paid_many(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: PaidWrites,
    ) -> Result<(), ActivityError> {
        self.mark_paid_many_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::RecordPaymentFailure)]
    pub async fn record_payment_failure(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: FailureWrite,
    ) -> Result<(), ActivityError> {
        self.record_payment_failure_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::ReleaseOrders)]
    pub async fn release_orders(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ReleaseWrite,
    ) -> Result<(), ActivityError> {
        self.release_orders_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::RefundPayment)]
    pub async fn refund_payment(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: RefundWrite,
    ) -> Result<(), ActivityError> {
        self.refund_payment_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::FinalizeListing)]
    pub async fn finalize_listing(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: FinalizeWrite,
    ) -> Result<(), ActivityError> {
        self.finalize_listing_tx(&w).await.map_err(fail)
    }

    /// Stores one part of a hand-over (a local activity: its input stays out of history).
    #[activity(definition = defs::SaveHandoverPart)]
    pub async fn save_handover_part(
        self: Arc<Self>,
        _ctx: ActivityContext,
        p: HandoverPart,
    ) -> Result<(), ActivityError> {
        self.store.save_handover_part(&p).await.map_err(fail)
    }

    /// Reads one part of a hand-over back in the next run.
    #[activity(definition = defs::LoadHandoverPart)]
    pub async fn load_handover_part(
        self: Arc<Self>,
        _ctx: ActivityContext,
        r: HandoverPartRef,
    ) -> Result<String, ActivityError> {
        self.store.load_handover_part(&r).await.map_err(fail)
    }

    /// Deletes a listing's hand-over parts once its new run holds them.
    #[activity(definition = defs::DropHandover)]
    pub async fn drop_handover(
        self: Arc<Self>,
        _ctx: ActivityContext,
        listing: ListingKey,
    ) -> Result<(), ActivityError> {
        self.store.drop_handover(&listing).await.map_err(fail)
    }

    #[activity(definition = defs::CompleteStep)]
    pub async fn complete_step(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: StepWrite,
    ) -> Result<(), ActivityError> {
        self.complete_step_tx(&w).await.map_err(fail)
    }
}

/// Rows per multi-row INSERT (well under SQLite's bound-parameter limit).
const CHUNK: usize = 500;

impl SellWindowActivities {
    pub async fn record_reservations_tx(&self, w: &ReservationWrite) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let sw = w.listing.sell_window_id.as_str();
        let p = w.listing.product_id.as_str();
        let j = JsonRows(u.backend);
        let sql = format!(
            "INSERT INTO orders (id, sell_window_id, product_id, customer_id, qty, currency, amount_minor, status, payment_due_at, created_at, updated_at) \
             SELECT {}, $2, $3, {}, {}, {}, {}, {}, {}, CAST($4 AS BIGINT), CAST($4 AS BIGINT) {} \
             ON CONFLICT (id) DO NOTHING RETURNING id, qty",
            j.text("id"),
            j.text("c"),
            j.int("q"),
            j.text("cur"),
            j.int("amt"),
            j.text("st"),
            j.int("due"),
            j.from(1),
        );
        let rows: Vec<serde_json::Value> = w
            .orders
            .iter()
            .map(|o| {
                json!({
                    "id": o.order_id,
                    "c": o.customer_id,
                    "q": o.qty.get(),
                    "cur": o.amount.currency,
                    "amt": o.amount.amount_minor,
                    "st": o.status.as_str(),
                    "due": o.payment_due_at.map(|d| d.0),
                })
            })
            .collect();
        let mut inserted: Vec<(String, u32)> = Vec::new();
        for row in sqlx::query(&sql)
            .bind(serde_json::Value::Array(rows).to_string())
            .bind(sw)
            .bind(p)
            .bind(w.at.0)
            .fetch_all(&mut *u.tx)
            .await?
        {
            inserted.push((row.try_get("id")?, store::u(&row, "qty")?));
        }
        save_order_answers(&mut u.tx, u.backend, &w.answers, w.at).await?;
        let taken: u32 = inserted.iter().map(|(_, q)| q).sum();
        if taken > 0 {
            let moved = sqlx::query(
                "UPDATE sell_window_quota SET sold_qty = sold_qty + $1, \
                 status = CASE WHEN sold_qty + $1 >= max_qty THEN 'CLOSED' ELSE 'OPEN' END \
                 WHERE sell_window_id = $2 AND product_id = $3 AND sold_qty + $1 <= max_qty",
            )
            .bind(i(taken))
            .bind(sw)
            .bind(p)
            .execute(&mut *u.tx)
            .await?;
            if moved.rows_affected() != 1 {
                return Err(StoreError::Inconsistent(format!(
                    "quota row of {sw}/{p} cannot take {taken} more units"
                )));
            }
            sqlx::query(
                "UPDATE counters SET reserved_qty = reserved_qty + $1 WHERE sell_window_id = $2 AND product_id = $3",
            )
            .bind(i(taken))
            .bind(sw)
            .bind(p)
            .execute(&mut *u.tx)
            .await?;
        }
        let new: std::collections::HashSet<&str> =
            inserted.iter().map(|(id, _)| id.as_str()).collect();
        for o in w
            .orders
            .iter()
            .filter(|o| new.contains(o.order_id.as_str()))
        {
            u.queue(
                &format!("order.reserved:{}", o.order_id),
                "order.reserved",
                Some(&o.order_id),
                json!({"orderId": o.order_id, "customerId": o.customer_id, "qty": o.qty, "status": o.status}),
            );
        }
        if let Some(by) = &w.quota_closed_by {
            u.event(
                &format!("quota.closed:{by}"),
                "quota.closed",
                None,
                json!({"filledBy": by}),
            )
            .await?;
        }
        if let Some((reserved, threshold)) = w.threshold_reached {
            sqlx::query(
                "UPDATE counters SET status = 'REACHED', reached_at = $1 WHERE sell_window_id = $2 AND product_id = $3 AND status = 'OPEN'",
            )
            .bind(w.at.0)
            .bind(sw)
            .bind(p)
            .execute(&mut *u.tx)
            .await?;
            let key = format!("threshold.reached:{sw}:{p}");
            if u.event(
                &key,
                "threshold.reached",
                None,
                json!({"reservedQty": reserved, "thresholdQty": threshold}),
            )
            .await?
            {
                u.notify(
                    Recipient::Admin,
                    "admin",
                    "threshold_reached",
                    &key,
                    None,
                    format!(
                        "{}: threshold reached ({reserved} of {threshold} reserved), you may confirm to open payment",
                        listing_name(&w.listing)
                    ),
                )
                .await?;
            }
        }
        u.commit(&self.store, &self.sink).await
    }

    pub async fn confirm_batch_tx(&self, w: &ConfirmWrite) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let sw = w.listing.sell_window_id.as_str();
        let p = w.listing.product_id.as_str();
        sqlx::query(
            "INSERT INTO batches (id, sell_window_id, product_id, status, confirmed_at) VALUES ($1, $2, $3, 'CONFIRMED', $4) \
             ON CONFLICT (id) DO UPDATE SET status = 'CONFIRMED', confirmed_at = COALESCE(batches.confirmed_at, excluded.confirmed_at)",
        )
        .bind(w.batch_id.as_str())
        .bind(sw)
        .bind(p)
        .bind(w.at.0)
        .execute(&mut *u.tx)
        .await?;
        if u.event(
            &format!("batch.confirmed:{}", w.batch_id),
            "batch.confirmed",
            None,
            json!({"batchId": w.batch_id}),
        )
        .await?
        {
            // The workflow moved exactly the RESERVED orders, all with the same deadline.
            sqlx::query(
                "UPDATE orders SET status = 'PAYMENT_REQUESTED', payment_due_at = $1, updated_at = $2 \
                 WHERE sell_window_id = $3 AND product_id = $4 AND status = 'RESERVED'",
            )
            .bind(w.payment_due_at.0)
            .bind(w.at.0)
            .bind(sw)
            .bind(p)
            .execute(&mut *u.tx)
            .await?;
            u.set_phase(Phase::Confirmed).await?;
        }
        u.commit(&self.store, &self.sink).await
    }

    pub async fn open_payments_tx(&self, w: &PaymentsWrite) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let sw = w.listing.sell_window_id.as_str();
        let p = w.listing.product_id.as_str();
        let mut new = std::collections::HashSet::new();
        for chunk in w.payments.chunks(CHUNK) {
            let sql = format!(
                "INSERT INTO payments (id, order_id, sell_window_id, product_id, customer_id, attempt, currency, amount_minor, status, provider, pay_url, expire_at, created_at, updated_at) \
                 VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
                store::placeholders(chunk.len(), 14)
            );
            let mut q = sqlx::query(&sql);
            for pay in chunk {
                q = q
                    .bind(pay.payment_id.as_str())
                    .bind(pay.order_id.as_str())
                    .bind(sw)
                    .bind(p)
                    .bind(pay.customer_id.as_str())
                    .bind(i(pay.attempt))
                    .bind(pay.amount.currency.as_str())
                    .bind(pay.amount.amount_minor)
                    .bind(PaymentStatus::Init.as_str())
                    .bind("sandbox")
                    .bind(self.pay_url(&pay.payment_id))
                    .bind(pay.expire_at.0)
                    .bind(w.at.0)
                    .bind(w.at.0);
            }
            for row in q.fetch_all(&mut *u.tx).await? {
                new.insert(row.try_get::<String, _>("id")?);
            }
        }
        let fresh: Vec<&PaymentToOpen> = w
            .payments
            .iter()
            .filter(|pay| new.contains(pay.payment_id.as_str()))
            .collect();
        for pay in &fresh {
            u.queue(
                &format!("payment.requested:{}", pay.payment_id),
                "payment.requested",
                Some(&pay.order_id),
                json!({"orderId": pay.order_id, "amount": pay.amount, "expireAt": pay.expire_at, "providerHint": "sandbox", "attempt": pay.attempt}),
            );
        }
        for pay in &fresh {
            let url = self.pay_url(&pay.payment_id);
            u.queue(
                &format!("payment.created:{}", pay.payment_id),
                "payment.created",
                Some(&pay.order_id),
                json!({"orderId": pay.order_id, "paymentId": pay.payment_id, "payInfo": {"url": url, "amount": pay.amount}, "expireAt": pay.expire_at}),
            );
            u.notify(
                Recipient::Customer,
                pay.customer_id.as_str(),
                "payment_link",
                pay.payment_id.as_str(),
                Some(&pay.order_id),
                format!(
                    "Your group buy is confirmed. Please pay {} for order {} before {}: {url}",
                    pay.amount, pay.order_id, pay.expire_at
                ),
            )
            .await?;
        }
        u.commit(&self.store, &self.sink).await
    }

    fn pay_url(&self, payment: &PaymentId) -> String {
        format!("{}/sandbox/pay/{payment}", self.public_base_url)
    }

    pub async fn mark_paid_tx(&self, w: &PaidWrite) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let paid = sqlx::query(
            "UPDATE orders SET status = 'PAID', payment_due_at = NULL, updated_at = $1 WHERE id = $2 AND status = 'PAYMENT_REQUESTED'",
        )
        .bind(w.at.0)
        .bind(w.order_id.as_str())
        .execute(&mut *u.tx)
        .await?;
        if paid.rows_affected() == 1 {
            let qty = i(w.qty.get());
            sqlx::query(
                "UPDATE counters SET reserved_qty = reserved_qty - $1, paid_qty = paid_qty + $1 WHERE sell_window_id = $2 AND product_id = $3",
            )
            .bind(qty)
            .bind(w.listing.sell_window_id.as_str())
            .bind(w.listing.product_id.as_str())
            .execute(&mut *u.tx)
            .await?;
            sqlx::query("UPDATE payments SET status = 'SUCCEEDED', charged_at = COALESCE(charged_at, $1), updated_at = $1 WHERE id = $2")
                .bind(w.at.0)
                .bind(w.payment_id.as_str())
                .execute(&mut *u.tx)
                .await?;
            // Any other attempt still open for this order is superseded.
            sqlx::query(
                "UPDATE payments SET status = 'EXPIRED', updated_at = $1 WHERE order_id = $2 AND id <> $3 AND status = 'INIT'",
            )
            .bind(w.at.0)
            .bind(w.order_id.as_str())
            .bind(w.payment_id.as_str())
            .execute(&mut *u.tx)
            .await?;
            u.event(
                &format!("payment.succeeded:{}", w.payment_id),
                "payment.succeeded",
                Some(&w.order_id),
                json!({"orderId": w.order_id, "paymentId": w.payment_id, "providerEventId": w.event_id}),
            )
            .await?;
            u.event(
                &format!("order.paid:{}", w.order_id),
                "order.paid",
                Some(&w.order_id),
                json!({"orderId": w.order_id, "qty": w.qty}),
            )
            .await?;
            u.notify(
                Recipient::Customer,
                w.customer_id.as_str(),
                "payment_received",
                w.order_id.as_str(),
                Some(&w.order_id),
                format!("Payment received for order {}. Thank you!", w.order_id),
            )
            .await?;
        }
        u.commit(&self.store, &self.sink).await
    }

    pub async fn mark_paid_many_tx(&self, w: &PaidWrites) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let j = JsonRows(u.backend);
        let all: Vec<&PaidPayment> = w.payments.iter().collect();
        // Only orders still waiting for payment become PAID: a retried batch changes nothing.
        let flipped: std::collections::HashSet<String> = sqlx::query(&format!(
            "UPDATE orders SET status = 'PAID', payment_due_at = NULL, updated_at = $1 \
             WHERE status = 'PAYMENT_REQUESTED' AND id IN (SELECT {} {}) RETURNING id",
            j.text("id"),
            j.from(2)
        ))
        .bind(w.at.0)
        .bind(id_rows(all.iter().map(|p| p.order_id.as_str())))
        .fetch_all(&mut *u.tx)
        .await?
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<_, _>>()?;
        let paid: Vec<&PaidPayment> = all
            .into_iter()
            .filter(|p| flipped.contains(p.order_id.as_str()))
            .collect();
        if paid.is_empty() {
            return u.commit(&self.store, &self.sink).await;
        }
        let qty: u32 = paid.iter().map(|p| p.qty.get()).sum();
        sqlx::query(
            "UPDATE counters SET reserved_qty = reserved_qty - $1, paid_qty = paid_qty + $1 WHERE sell_window_id = $2 AND product_id = $3",
        )
        .bind(i(qty))
        .bind(w.listing.sell_window_id.as_str())
        .bind(w.listing.product_id.as_str())
        .execute(&mut *u.tx)
        .await?;
        let payments = id_rows(paid.iter().map(|p| p.payment_id.as_str()));
        sqlx::query(&format!(
            "UPDATE payments SET status = 'SUCCEEDED', charged_at = COALESCE(charged_at, $1), updated_at = $1 WHERE id IN (SELECT {} {})",
            j.text("id"),
            j.from(2)
        ))
        .bind(w.at.0)
        .bind(&payments)
        .execute(&mut *u.tx)
        .await?;
        // Any other attempt still open for these orders is superseded.
        sqlx::query(&format!(
            "UPDATE payments SET status = 'EXPIRED', updated_at = $1 WHERE status = 'INIT' \
             AND order_id IN (SELECT {id} {orders}) AND id NOT IN (SELECT {id} {payments})",
            id = j.text("id"),
            orders = j.from(2),
            payments = j.from(3),
        ))
        .bind(w.at.0)
        .bind(id_rows(paid.iter().map(|p| p.order_id.as_str())))
        .bind(&payments)
        .execute(&mut *u.tx)
        .await?;
        for p in &paid {
            u.queue(
                &format!("payment.succeeded:{}", p.payment_id),
                "payment.succeeded",
                Some(&p.order_id),
                json!({"orderId": p.order_id, "paymentId": p.payment_id, "providerEventId": p.event_id}),
            );
            u.queue(
                &format!("order.paid:{}", p.order_id),
                "order.paid",
                Some(&p.order_id),
                json!({"orderId": p.order_id, "qty": p.qty}),
            );
            u.notify(
                Recipient::Customer,
                p.customer_id.as_str(),
                "payment_received",
                p.order_id.as_str(),
                Some(&p.order_id),
                format!("Payment received for order {}. Thank you!", p.order_id),
            )
            .await?;
        }
        u.commit(&self.store, &self.sink).await
    }

    pub async fn record_payment_failure_tx(&self, w: &FailureWrite) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let failed = sqlx::query(
            "UPDATE payments SET status = 'FAILED', last_error = $1, updated_at = $2 WHERE id = $3 AND status = 'INIT'",
        )
        .bind(&w.error)
        .bind(w.at.0)
        .bind(w.payment_id.as_str())
        .execute(&mut *u.tx)
        .await?;
        if failed.rows_affected() == 1 {
            sqlx::query(
                "UPDATE orders SET payment_failed_count = payment_failed_count + 1, last_payment_error = $1, updated_at = $2 WHERE id = $3",
            )
            .bind(&w.error)
            .bind(w.at.0)
            .bind(w.order_id.as_str())
            .execute(&mut *u.tx)
            .await?;
            u.event(
                &format!("payment.failed:{}", w.payment_id),
                "payment.failed",
                Some(&w.order_id),
                json!({"orderId": w.order_id, "paymentId": w.payment_id, "error": w.error, "failures": w.failures}),
            )
            .await?;
            u.event(
                &format!("notification.requested:payment_failed:{}", w.payment_id),
                "notification.requested",
                Some(&w.order_id),
                json!({"kind": "payment_failed", "orderId": w.order_id, "customerId": w.customer_id}),
            )
            .await?;
            u.notify(
                Recipient::Customer,
                w.customer_id.as_str(),
                "payment_failed",
                w.payment_id.as_str(),
                Some(&w.order_id),
                format!(
                    "Payment for order {} failed ({}). Your units are kept: please try again or use another payment method.",
                    w.order_id, w.error
                ),
            )
            .await?;
        }
        u.commit(&self.store, &self.sink).await
    }

    pub async fn release_orders_tx(&self, w: &ReleaseWrite) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let sw = w.listing.sell_window_id.as_str();
        let p = w.listing.product_id.as_str();
        let (event, kind) = match w.to {
            OrderStatus::Cancelled => ("order.cancelled", "order_cancelled"),
            _ => ("order.expired", "order_expired"),
        };
        // Each order leaves from the status the workflow saw it in (only rows still there
        // move, so a rerun moves nothing); paid ones count in paid_qty.
        let mut moved = std::collections::HashSet::new();
        for (paid, from) in [
            (false, "('RESERVED', 'PAYMENT_REQUESTED')"),
            (true, "('PAID')"),
        ] {
            let ids: Vec<&str> = w
                .orders
                .iter()
                .filter(|r| (r.was == OrderStatus::Paid) == paid)
                .map(|r| r.order_id.as_str())
                .collect();
            for chunk in ids.chunks(store::ROWS_PER_STATEMENT) {
                let list: Vec<String> = (0..chunk.len()).map(|k| format!("${}", k + 3)).collect();
                let sql = format!(
                    "UPDATE orders SET status = $1, updated_at = $2 WHERE status IN {from} AND id IN ({}) RETURNING id",
                    list.join(",")
                );
                let mut q = sqlx::query(&sql).bind(w.to.as_str()).bind(w.at.0);
                for id in chunk {
                    q = q.bind(*id);
                }
                for row in q.fetch_all(&mut *u.tx).await? {
                    moved.insert(row.try_get::<String, _>("id")?);
                }
            }
        }
        let released: Vec<&Released> = w
            .orders
            .iter()
            .filter(|r| moved.contains(r.order_id.as_str()))
            .collect();
        let ids: Vec<&str> = released.iter().map(|r| r.order_id.as_str()).collect();
        for chunk in ids.chunks(store::ROWS_PER_STATEMENT) {
            let list: Vec<String> = (0..chunk.len()).map(|k| format!("${}", k + 2)).collect();
            let sql = format!(
                "UPDATE payments SET status = 'EXPIRED', updated_at = $1 WHERE status = 'INIT' AND order_id IN ({})",
                list.join(",")
            );
            let mut q = sqlx::query(&sql).bind(w.at.0);
            for id in chunk {
                q = q.bind(*id);
            }
            q.execute(&mut *u.tx).await?;
        }
        let (mut released_reserved, mut released_paid) = (0u32, 0u32);
        for r in &released {
            if r.was == OrderStatus::Paid {
                released_paid += r.qty.get();
            } else {
                released_reserved += r.qty.get();
            }
            u.queue(
                &format!("{event}:{}", r.order_id),
                event,
                Some(&r.order_id),
                json!({"orderId": r.order_id, "qty": r.qty, "reason": w.reason}),
            );
            let message = match w.reason {
                ReleaseReason::PaymentExpired => format!(
                    "Order {} expired: payment was not completed in time. The units were released.",
                    r.order_id
                ),
                ReleaseReason::UnpaidAtClose => format!(
                    "Order {} expired: the sell window closed before payment.",
                    r.order_id
                ),
                ReleaseReason::GroupNotFormed => format!(
                    "Order {} is cancelled: the group did not form by the close of the sell window. Nothing was charged.",
                    r.order_id
                ),
                ReleaseReason::PaidUnderThreshold => format!(
                    "Order {} is cancelled: too few units were paid for the group to go ahead. Your payment is refunded.",
                    r.order_id
                ),
                ReleaseReason::CustomerCancelled => format!(
                    "Order {} is cancelled as you asked. Its units were released.",
                    r.order_id
                ),
                ReleaseReason::NotRecorded => format!(
                    "Reservation {} could not be recorded; nothing was reserved. Please try again.",
                    r.order_id
                ),
                ReleaseReason::WindowCancelled => format!(
                    "Order {} is cancelled: the shop cancelled this sell window.{}",
                    r.order_id,
                    if r.was == OrderStatus::Paid {
                        " Your payment is refunded."
                    } else {
                        " Nothing was charged."
                    }
                ),
            };
            u.notify(
                Recipient::Customer,
                r.customer_id.as_str(),
                kind,
                r.order_id.as_str(),
                Some(&r.order_id),
                message,
            )
            .await?;
        }
        let total = released_reserved + released_paid;
        if total > 0 {
            sqlx::query(
                "UPDATE sell_window_quota SET sold_qty = sold_qty - $1, \
                 status = CASE WHEN $2 = 1 THEN 'OPEN' ELSE status END \
                 WHERE sell_window_id = $3 AND product_id = $4",
            )
            .bind(i(total))
            .bind(i64::from(w.quota_reopened))
            .bind(sw)
            .bind(p)
            .execute(&mut *u.tx)
            .await?;
            sqlx::query(
                "UPDATE counters SET reserved_qty = reserved_qty - $1, paid_qty = paid_qty - $2 WHERE sell_window_id = $3 AND product_id = $4",
            )
            .bind(i(released_reserved))
            .bind(i(released_paid))
            .bind(sw)
            .bind(p)
            .execute(&mut *u.tx)
            .await?;
        }
        u.commit(&self.store, &self.sink).await
    }

    pub async fn refund_payment_tx(&self, w: &RefundWrite) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let refunded = sqlx::query(
            "UPDATE payments SET status = 'REFUNDED', charged_at = COALESCE(charged_at, $1), refunded_at = $1, updated_at = $1 WHERE id = $2 AND status <> 'REFUNDED'",
        )
        .bind(w.at.0)
        .bind(w.payment_id.as_str())
        .execute(&mut *u.tx)
        .await?;
        if refunded.rows_affected() == 1 {
            u.event(
                &format!("payment.refunded:{}", w.payment_id),
                "payment.refunded",
                Some(&w.order_id),
                json!({"orderId": w.order_id, "paymentId": w.payment_id, "amount": w.amount, "reason": w.reason}),
            )
            .await?;
            u.notify(
                Recipient::Customer,
                w.customer_id.as_str(),
                "payment_refunded",
                w.payment_id.as_str(),
                Some(&w.order_id),
                format!(
                    "{} was refunded for order {}: {}.",
                    w.amount, w.order_id, w.reason
                ),
            )
            .await?;
        }
        u.commit(&self.store, &self.sink).await
    }

    pub async fn finalize_listing_tx(&self, w: &FinalizeWrite) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let sw = w.listing.sell_window_id.as_str();
        let p = w.listing.product_id.as_str();
        if w.kind == FinalizeKind::WindowCancelled {
            if u.event(
                &format!("sell_window.cancelled:{sw}:{p}"),
                "sell_window.cancelled",
                None,
                json!({"reason": "cancelled by the admin"}),
            )
            .await?
            {
                sqlx::query("UPDATE sell_window_quota SET status = 'CLOSED' WHERE sell_window_id = $1 AND product_id = $2")
                    .bind(sw)
                    .bind(p)
                    .execute(&mut *u.tx)
                    .await?;
                u.set_phase(Phase::Cancelled).await?;
                u.notify(
                    Recipient::Admin,
                    "admin",
                    "window_cancelled",
                    &format!("{sw}:{p}"),
                    None,
                    format!(
                        "{}: cancelled; every order was cancelled and every paid one refunded.",
                        listing_name(&w.listing)
                    ),
                )
                .await?;
            }
            return u.commit(&self.store, &self.sink).await;
        }
        if !u
            .event(
                &format!("sell_window.finalize_requested:{sw}:{p}"),
                "sell_window.finalize_requested",
                None,
                json!({}),
            )
            .await?
        {
            return u.commit(&self.store, &self.sink).await; // done before
        }
        sqlx::query("UPDATE sell_window_quota SET status = 'CLOSED' WHERE sell_window_id = $1 AND product_id = $2")
            .bind(sw)
            .bind(p)
            .execute(&mut *u.tx)
            .await?;
        let name = listing_name(&w.listing);
        if w.kind == FinalizeKind::GroupNotFormed {
            u.event(
                &format!("sell_window.failed:{sw}:{p}"),
                "sell_window.failed",
                None,
                json!({"reason": "group not formed"}),
            )
            .await?;
            u.set_phase(Phase::Failed).await?;
            u.notify(Recipient::Admin, "admin", "window_failed", &format!("{sw}:{p}"), None,
                format!("{name}: closed without a confirmed batch; the group did not form and every order was cancelled."))
                .await?;
            return u.commit(&self.store, &self.sink).await;
        }
        sqlx::query(
            "UPDATE counters SET final_paid_qty = $1 WHERE sell_window_id = $2 AND product_id = $3",
        )
        .bind(i(w.final_paid_qty))
        .bind(sw)
        .bind(p)
        .execute(&mut *u.tx)
        .await?;
        u.event(
            &format!("sell_window.finalized:{sw}:{p}"),
            "sell_window.finalized",
            None,
            json!({"finalPaidQty": w.final_paid_qty}),
        )
        .await?;
        sqlx::query("UPDATE batches SET target_qty = $1 WHERE id = $2")
            .bind(i(w.final_paid_qty))
            .bind(w.batch_id.as_str())
            .execute(&mut *u.tx)
            .await?;
        match &w.kind {
            FinalizeKind::Produce {
                work_order_id,
                steps,
            } => {
                u.event(
                    &format!("production.scheduled:{}", w.batch_id),
                    "production.scheduled",
                    None,
                    json!({"batchId": w.batch_id, "productionQty": w.final_paid_qty}),
                )
                .await?;
                sqlx::query(
                    "INSERT INTO work_orders (id, batch_id, sell_window_id, product_id, product_qty, status, created_at) \
                     VALUES ($1, $2, $3, $4, $5, 'READY', $6) ON CONFLICT (id) DO NOTHING",
                )
                .bind(work_order_id.as_str())
                .bind(w.batch_id.as_str())
                .bind(sw)
                .bind(p)
                .bind(i(w.final_paid_qty))
                .bind(w.at.0)
                .execute(&mut *u.tx)
                .await?;
                for (pos, (step, name)) in steps.iter().enumerate() {
                    sqlx::query(
                        "INSERT INTO work_steps (id, work_order_id, position, name, status) VALUES ($1, $2, $3, $4, 'TODO') ON CONFLICT (id) DO NOTHING",
                    )
                    .bind(step.as_str())
                    .bind(work_order_id.as_str())
                    .bind(pos as i64 + 1)
                    .bind(name)
                    .execute(&mut *u.tx)
                    .await?;
                }
                u.event(
                    &format!("production.started:{work_order_id}"),
                    "production.started",
                    None,
                    json!({"batchId": w.batch_id, "workOrderId": work_order_id}),
                )
                .await?;
                u.set_phase(Phase::InProduction).await?;
                u.notify(Recipient::Admin, "admin", "production_started", work_order_id.as_str(), None,
                    format!("{name}: work order {work_order_id} created for {} units; production started.", w.final_paid_qty))
                    .await?;
            }
            FinalizeKind::NothingToProduce => {
                u.set_phase(Phase::NothingToProduce).await?;
                u.notify(
                    Recipient::Admin,
                    "admin",
                    "nothing_to_produce",
                    &format!("{sw}:{p}"),
                    None,
                    format!("{name}: closed with nothing paid; no production."),
                )
                .await?;
            }
            FinalizeKind::CancelledUnderThreshold => {
                u.event(&format!("sell_window.cancelled:{sw}:{p}"), "sell_window.cancelled", None,
                    json!({"reason": "paid quantity under threshold", "finalPaidQty": w.final_paid_qty}))
                    .await?;
                u.set_phase(Phase::Cancelled).await?;
                u.notify(
                    Recipient::Admin,
                    "admin",
                    "window_cancelled",
                    &format!("{sw}:{p}"),
                    None,
                    format!(
                        "{name}: only {} paid, under the threshold; every paid order is refunded.",
                        w.final_paid_qty
                    ),
                )
                .await?;
            }
            FinalizeKind::GroupNotFormed | FinalizeKind::WindowCancelled => {
                unreachable!("handled above")
            }
        }
        u.commit(&self.store, &self.sink).await
    }

    pub async fn complete_step_tx(&self, w: &StepWrite) -> Result<(), StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let sw = w.listing.sell_window_id.as_str();
        let p = w.listing.product_id.as_str();
        sqlx::query("UPDATE work_steps SET status = 'DONE', completed_at = $1 WHERE id = $2 AND status = 'TODO'")
            .bind(w.at.0)
            .bind(w.step_id.as_str())
            .execute(&mut *u.tx)
            .await?;
        u.event(
            &format!("work_step.completed:{}", w.step_id),
            "work_step.completed",
            None,
            json!({"workOrderId": w.work_order_id, "stepId": w.step_id}),
        )
        .await?;
        if let Some(shipments) = &w.shipments {
            sqlx::query(
                "UPDATE work_orders SET status = 'COMPLETED', completed_at = $1 WHERE id = $2",
            )
            .bind(w.at.0)
            .bind(w.work_order_id.as_str())
            .execute(&mut *u.tx)
            .await?;
            u.event(
                &format!("production.completed:{}", w.work_order_id),
                "production.completed",
                None,
                json!({"workOrderId": w.work_order_id}),
            )
            .await?;
            for (order, customer, qty) in shipments {
                let id = ShipmentId::for_order(order);
                let pickup = format!(
                    "Pick up at the shop counter with code {}",
                    &id.as_str()[4..12]
                );
                sqlx::query(
                    "INSERT INTO shipments (id, order_id, customer_id, sell_window_id, product_id, qty, pickup_info, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                )
                .bind(id.as_str())
                .bind(order.as_str())
                .bind(customer.as_str())
                .bind(sw)
                .bind(p)
                .bind(i(qty.get()))
                .bind(&pickup)
                .bind(w.at.0)
                .execute(&mut *u.tx)
                .await?;
                u.queue(
                    &format!("shipment.created:{id}"),
                    "shipment.created",
                    Some(order),
                    json!({"shipmentId": id, "orderId": order, "qty": qty, "pickupInfo": pickup}),
                );
                u.notify(
                    Recipient::Customer,
                    customer.as_str(),
                    "shipped",
                    id.as_str(),
                    Some(order),
                    format!("Order {order} has shipped. {pickup}."),
                )
                .await?;
            }
            u.set_phase(Phase::Shipped).await?;
            u.notify(
                Recipient::Admin,
                "admin",
                "production_completed",
                w.work_order_id.as_str(),
                None,
                format!(
                    "{}: work order {} completed; {} shipments created.",
                    listing_name(&w.listing),
                    w.work_order_id,
                    shipments.len()
                ),
            )
            .await?;
        }
        u.commit(&self.store, &self.sink).await
    }
}

/// Ids as [`JsonRows`] read them (field `id`).
fn id_rows<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    serde_json::Value::Array(ids.map(|id| json!({ "id": id })).collect()).to_string()
}

/// Records each new order as the first answer under its customer's idempotency key (a key
/// that already has one keeps it). The API stores refusals itself.
pub(crate) async fn save_order_answers(
    tx: &mut Tx<'static>,
    backend: Backend,
    answers: &[OrderAnswer],
    at: UnixMillis,
) -> Result<(), StoreError> {
    if answers.is_empty() {
        return Ok(());
    }
    let j = JsonRows(backend);
    let sql = format!(
        "INSERT INTO idempotency_keys (customer_id, idempotency_key, request_hash, response, created_at) \
         SELECT {}, {}, {}, {}, CAST($2 AS BIGINT) {} ON CONFLICT (customer_id, idempotency_key) DO NOTHING",
        j.text("c"),
        j.text("k"),
        j.text("h"),
        j.text("r"),
        j.from(1),
    );
    let rows: Vec<serde_json::Value> = answers
        .iter()
        .map(|a| {
            json!({
                "c": a.customer_id,
                "k": a.key.idempotency_key,
                "h": a.key.request_hash,
                "r": format!("{RESERVED_ANSWER}{}", a.order_id),
            })
        })
        .collect();
    sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(at.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
