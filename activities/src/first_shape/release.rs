//! The first shape's release of orders (expiry, cancels) and their refunds.

use super::*;

impl SellWindowActivities {
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
}
