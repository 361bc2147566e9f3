//! One chunk of a sweep: the next candidates (by id) moved where the sweep's rule says, in
//! one transaction. A chunk is small whatever the listing's size, so a fan-out over any number
//! of orders is a bounded number of small writes.

use super::ListingActivities;
use sellwindow_domain::*;
use sellwindow_store::db::{Recipient, StoreError};
use sellwindow_store::effects::{Write, by_order};
use sellwindow_store::listing_tx::ListingTx;
use sellwindow_store::rows::{self, Changes};
use sellwindow_store::texts::{self, Release};
use sellwindow_workflows::listing::contract::{SweepChunk, Swept};
use sellwindow_workflows::machine::SweepKind;
use serde_json::json;

impl ListingActivities {
    pub async fn sweep_tx(&self, w: &SweepChunk) -> Result<Swept, StoreError> {
        let mut u = ListingTx::begin(&self.store, &w.listing, w.at).await?;
        let mut locked = u.lock().await?;
        let mut chunk =
            rows::candidates(&mut u, &w.listing, w.kind, w.due, w.after.as_ref(), w.limit).await?;
        let ids: Vec<&OrderId> = chunk.iter().map(|o| &o.id).collect();
        let mut attempts = by_order(rows::attempts_of(&mut u, &ids).await?);
        let mut write = Write {
            u,
            changes: Changes::default(),
            pay_base: &self.public_base_url,
        };
        let mut moved = 0;
        let mut shipments = Vec::new();
        for order in chunk.iter_mut() {
            let Some(mv) = w.kind.moves(order.status) else {
                continue;
            };
            let tried = attempts.entry(order.id.clone()).or_default();
            moved += 1;
            if mv.refund {
                write.refund_charged(order, tried, texts::refund_reason(w.kind));
            }
            if mv.open_payment {
                let due = w.due.expect("a confirm sweep carries the deadline");
                order.status = mv.to;
                order.payment_due_at = Some(due);
                write.open_attempt(order, tried, due);
                write.changes.order(order.clone());
            } else if mv.ship {
                shipments.push(order.clone());
            } else if mv.to != order.status {
                write.release(order, tried, mv.to, Release::Sweep(w.kind));
            }
        }
        for o in &shipments {
            ship(&mut write, o).await?;
        }
        let done = chunk.len() < w.limit as usize;
        let last = chunk.last().map(|o| o.id.clone());
        let Write { mut u, changes, .. } = write;
        changes.write(&mut u, &w.listing, w.at, &mut locked).await?;
        let next_due = if done && w.kind == SweepKind::Deadline {
            sellwindow_store::queries::next_due(&mut u.tx, &w.listing).await?
        } else {
            None
        };
        let answer = Swept {
            figures: u.figures(&locked).await?,
            moved,
            last,
            done,
            next_due,
        };
        u.commit(&self.store, &self.sink).await?;
        Ok(answer)
    }
}

/// A paid order's shipment, with its pick-up code for its customer: random (not derived from
/// any id a customer or the event log shows), stored with the shipment, and told to the
/// order's customer only. A write done again keeps the code stored first.
async fn ship(write: &mut Write<'_>, o: &rows::OrderRow) -> Result<(), StoreError> {
    let id = ShipmentId::for_order(&o.id);
    let code: String = uuid::Uuid::new_v4().simple().to_string()[..10].to_uppercase();
    let listing = write.u.listing().clone();
    // On conflict the no-op update returns the code stored first.
    let pickup: String = sqlx::query_scalar(
        "INSERT INTO shipments (id, order_id, customer_id, sell_window_id, product_id, qty, pickup_info, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO UPDATE SET pickup_info = shipments.pickup_info RETURNING pickup_info",
    )
    .bind(id.as_str())
    .bind(o.id.as_str())
    .bind(o.customer_id.as_str())
    .bind(listing.sell_window_id.as_str())
    .bind(listing.product_id.as_str())
    .bind(i64::from(o.qty.get()))
    .bind(format!("Pick up at the shop counter with code {code}"))
    .bind(write.u.at().0)
    .fetch_one(&mut *write.u.tx)
    .await?;
    write.u.queue(
        &format!("shipment.created:{id}"),
        "shipment.created",
        Some(&o.id),
        json!({"shipmentId": id, "orderId": o.id, "qty": o.qty, "pickup": "shop counter"}),
    );
    write.u.note(
        Recipient::Customer,
        o.customer_id.as_str(),
        "shipped",
        id.as_str(),
        Some(&o.id),
        texts::shipped(&o.id, &pickup),
    );
    Ok(())
}
