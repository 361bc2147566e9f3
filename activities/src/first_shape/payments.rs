//! The first shape's payment outcomes: paid, failed, refunded.

use super::*;

impl SellWindowActivities {
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
}
