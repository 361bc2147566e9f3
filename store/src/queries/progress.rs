//! A listing's row as its workflow reads it when it looks for what it may not have heard of:
//! the figures, and the earliest payment deadline still pending.

use super::*;
use crate::db::Tx;

impl Store {
    /// The listing's figures at their current version and its earliest pending deadline.
    pub async fn listing_progress(&self, listing: &ListingKey) -> StoreResult<Progress> {
        let mut tx = self.begin().await?;
        let row = sqlx::query(
            "SELECT q.version, q.sold_qty, c.reserved_qty, c.paid_qty, c.status FROM sell_window_quota q \
             JOIN counters c ON c.sell_window_id = q.sell_window_id AND c.product_id = q.product_id \
             WHERE q.sell_window_id = $1 AND q.product_id = $2",
        )
        .bind(listing.sell_window_id.as_str())
        .bind(listing.product_id.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let next_due = next_due(&mut tx, listing).await?;
        tx.commit().await?;
        Ok(Progress {
            figures: Figures {
                version: row.try_get::<i64, _>("version")? as u64,
                sold: u(&row, "sold_qty")?,
                reserved: u(&row, "reserved_qty")?,
                paid: u(&row, "paid_qty")?,
                threshold_reached: row.try_get::<String, _>("status")? == "REACHED",
            },
            next_due,
        })
    }
}

/// The earliest payment deadline of the listing's orders still asked to pay.
pub async fn next_due(
    tx: &mut Tx<'static>,
    listing: &ListingKey,
) -> StoreResult<Option<UnixMillis>> {
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT MIN(payment_due_at) FROM orders WHERE sell_window_id = $1 AND product_id = $2 \
         AND status = 'PAYMENT_REQUESTED' AND payment_due_at IS NOT NULL",
    )
    .bind(listing.sell_window_id.as_str())
    .bind(listing.product_id.as_str())
    .fetch_one(&mut **tx)
    .await?;
    Ok(due.map(UnixMillis))
}
