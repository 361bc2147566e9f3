//! The confirm fence, and reading the row. Confirm is decided on the row's own figures under
//! its lock ([`confirm_check`]), never on the workflow's copy, which may be older; taken, it
//! writes the batch, `batch.confirmed` and the CONFIRMED phase in that transaction, so every
//! reservation committed after it is asked to pay at once and every one before it is RESERVED
//! for the confirm sweep to find.

use super::ListingActivities;
use sellwindow_domain::*;
use sellwindow_store::db::StoreError;
use sellwindow_store::listing_tx::ListingTx;
use sellwindow_workflows::listing::contract::{Confirm, Confirmed, ReadRow};
use sellwindow_workflows::machine::confirm_check;
use serde_json::json;

impl ListingActivities {
    pub async fn confirm_tx(&self, w: &Confirm) -> Result<Confirmed, StoreError> {
        let mut u = ListingTx::begin(&self.store, &w.listing, w.at).await?;
        let locked = u.lock().await?;
        if let Err(refusal) = confirm_check(&locked.row, locked.min_qty) {
            let figures = u.figures(&locked).await?;
            u.commit(&self.store, &self.sink).await?;
            return Ok(Confirmed::Refused(refusal, figures));
        }
        let (sw, p) = (&w.listing.sell_window_id, &w.listing.product_id);
        sqlx::query(
            "INSERT INTO batches (id, sell_window_id, product_id, status, confirmed_at) VALUES ($1, $2, $3, 'CONFIRMED', $4) \
             ON CONFLICT (id) DO UPDATE SET status = 'CONFIRMED', confirmed_at = COALESCE(batches.confirmed_at, excluded.confirmed_at)",
        )
        .bind(w.batch_id.as_str())
        .bind(sw.as_str())
        .bind(p.as_str())
        .bind(w.at.0)
        .execute(&mut *u.tx)
        .await?;
        let batch = &w.batch_id;
        let payload = json!({"batchId": batch, "paymentDueAt": w.due});
        u.event(
            &format!("batch.confirmed:{batch}"),
            "batch.confirmed",
            None,
            payload,
        )
        .await?;
        u.set_phase(Phase::Confirmed).await?;
        let figures = u.figures(&locked).await?;
        u.commit(&self.store, &self.sink).await?;
        Ok(Confirmed::Done(figures))
    }

    pub async fn read_row_tx(&self, w: &ReadRow) -> Result<Progress, StoreError> {
        self.store.listing_progress(&w.listing).await
    }
}
