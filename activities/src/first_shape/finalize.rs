//! The first shape's close of a listing and its work steps.

use super::*;

impl SellWindowActivities {
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
                u.start_production(&w.batch_id, w.final_paid_qty, work_order_id, steps)
                    .await?;
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
