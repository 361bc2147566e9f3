//! Provider callbacks (recorded once, mismatches kept for the admin), the quota check and admin alerts.

use super::*;

impl Store {
    /// Records a verified provider callback in its listing's inbox. Returns false when its
    /// event id was handed to the listing already (a replay: nothing changes twice).
    pub async fn record_callback(
        &self,
        r: &PaymentResult,
        listing: &ListingKey,
        at: UnixMillis,
    ) -> StoreResult<bool> {
        sqlx::query(
            "INSERT INTO payment_callbacks (event_id, payment_id, outcome, received_at, order_id, sell_window_id, product_id, error, occurred_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&r.event_id)
        .bind(r.payment_id.as_str())
        .bind(r.outcome.as_str())
        .bind(at.0)
        .bind(r.order_id.as_str())
        .bind(listing.sell_window_id.as_str())
        .bind(listing.product_id.as_str())
        .bind(r.error.as_deref())
        .bind(r.occurred_at.0)
        .execute(self.pool())
        .await?;
        let event_id = r.event_id.as_str();
        let r = sqlx::query("SELECT signalled_at FROM payment_callbacks WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(self.pool())
            .await?;
        Ok(r.try_get::<Option<i64>, _>("signalled_at")?.is_none())
    }

    /// Records a verified callback whose amount is not its payment's: never counted, noted on
    /// the payment, and the admin told (once per event). Returns false for a replay.
    pub async fn record_mismatched_callback(
        &self,
        r: &PaymentResult,
        said: &str,
        expected: &Money,
        at: UnixMillis,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let note = format!("amount mismatch: reported {said}, expected {expected}");
        let new = sqlx::query(
            "INSERT INTO payment_callbacks (event_id, payment_id, outcome, received_at, signalled_at, note, order_id) \
             VALUES ($1, $2, $3, $4, $4, $5, $6) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&r.event_id)
        .bind(r.payment_id.as_str())
        .bind(r.outcome.as_str())
        .bind(at.0)
        .bind(&note)
        .bind(r.order_id.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if new {
            sqlx::query("UPDATE payments SET last_error = $1, updated_at = $2 WHERE id = $3")
                .bind(&note)
                .bind(at.0)
                .bind(r.payment_id.as_str())
                .execute(&mut *tx)
                .await?;
            let n = db::Notification {
                id: format!(
                    "ntf-{}",
                    digest(&["payment_amount_mismatch", "admin", &r.event_id])
                ),
                recipient: db::Recipient::Admin,
                recipient_id: "admin".into(),
                kind: "payment_amount_mismatch".into(),
                sell_window_id: None,
                product_id: None,
                order_id: Some(r.order_id.clone()),
                message: format!(
                    "Payment {} for order {} was reported {} with {said}, not the order's {expected}: it was not counted. Check it with the provider.",
                    r.payment_id, r.order_id, r.outcome
                ),
                created_at: at,
            };
            db::save_notification(&mut tx, &n).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// The workflow type running a listing (the first shape's listings take their payment
    /// outcomes as signals; the current one reads its inbox).
    /// Marks a verified callback as handed over but not counted, saying why (its listing had
    /// finished), with the admin's alert to settle it by hand in the same transaction: a
    /// provider's retry after a failure finds neither, and tries both again.
    pub async fn flag_callback(
        &self,
        event_id: &str,
        note: &str,
        alert: Option<(&OrderId, &PaymentId, &str)>,
        at: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE payment_callbacks SET signalled_at = COALESCE(signalled_at, $1), note = $2 WHERE event_id = $3")
            .bind(at.0)
            .bind(note)
            .bind(event_id)
            .execute(&mut *tx)
            .await?;
        if let Some((order, payment, message)) = alert {
            let n = db::Notification {
                id: format!(
                    "ntf-{}",
                    digest(&[
                        "manual_refund_needed",
                        "admin",
                        &format!("manual-refund:{payment}")
                    ])
                ),
                recipient: db::Recipient::Admin,
                recipient_id: "admin".into(),
                kind: "manual_refund_needed".into(),
                sell_window_id: None,
                product_id: None,
                order_id: Some(order.clone()),
                message: message.into(),
                created_at: at,
            };
            db::save_notification(&mut tx, &n).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn mark_callback_signalled(&self, event_id: &str, at: UnixMillis) -> StoreResult<()> {
        sqlx::query("UPDATE payment_callbacks SET signalled_at = $1 WHERE event_id = $2 AND signalled_at IS NULL")
            .bind(at.0)
            .bind(event_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The quota row and the sum over the orders holding quota, for consistency checks.
    pub async fn quota_check(
        &self,
        sw: &SellWindowId,
        p: &ProductId,
    ) -> StoreResult<(u32, u32, u32)> {
        let r = sqlx::query(
            "SELECT q.sold_qty, q.max_qty, (SELECT CAST(COALESCE(SUM(o.qty), 0) AS BIGINT) FROM orders o WHERE o.sell_window_id = q.sell_window_id \
             AND o.product_id = q.product_id AND o.status IN ('RESERVED', 'PAYMENT_REQUESTED', 'PAID')) AS held \
             FROM sell_window_quota q WHERE q.sell_window_id = $1 AND q.product_id = $2",
        )
        .bind(sw.as_str())
        .bind(p.as_str())
        .fetch_one(self.pool())
        .await?;
        Ok((u(&r, "sold_qty")?, u(&r, "max_qty")?, u(&r, "held")?))
    }
}
