//! The first shape's reservation, confirm and payment-opening writes.

use super::*;

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
}
