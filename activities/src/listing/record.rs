//! The quota-locking write: a batch of new orders with their first answers, and the void of
//! a batch the workflow gave up on. Under the listing's lock the write takes each order in
//! arrival order: one already written (a retried request, or this write done again) answers
//! as it is; one voided at or after this write was decided is refused (a late attempt of a
//! write given up on: the fence); one over the per-customer limit is refused; the rest are
//! written, asked to pay at once after confirm. The quota row moves only by what was written
//! and refuses to pass its cap.

use super::ListingActivities;
use super::effects::{Write, by_order};
use super::rows::{self, Changes, OrderRow};
use super::texts::{self, Release};
use crate::first_shape::save_order_answers;
use crate::queries::RESERVED_ANSWER;
use crate::store::{JsonRows, Recipient, StoreError};
use crate::unit::{Unit, listing_name};
use sellwindow_domain::*;
use sellwindow_workflows::listing::contract::{RecordOrders, Recorded, Recording, VoidOrders};
use serde_json::json;
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet};

impl ListingActivities {
    pub async fn record_orders_tx(&self, w: &RecordOrders) -> Result<Recorded, StoreError> {
        // One order may come more than once in a write: a customer's retry under the same key,
        // decided while the first request's write was still queued. It is one order, written
        // once; every copy gets its answer.
        let mut first_of: BTreeMap<&OrderId, usize> = BTreeMap::new();
        let slots: Vec<usize> = w
            .orders
            .iter()
            .enumerate()
            .map(|(n, o)| *first_of.entry(&o.order_id).or_insert(n))
            .collect();
        if first_of.len() == w.orders.len() {
            return self.record_distinct(w).await;
        }
        let firsts: BTreeSet<usize> = first_of.values().copied().collect();
        let once = RecordOrders {
            orders: firsts.iter().map(|n| w.orders[*n].clone()).collect(),
            ..w.clone()
        };
        let place: BTreeMap<usize, usize> =
            firsts.iter().enumerate().map(|(k, n)| (*n, k)).collect();
        let mut recorded = self.record_distinct(&once).await?;
        let replies = recorded.replies;
        recorded.replies = slots.iter().map(|n| replies[place[n]].clone()).collect();
        Ok(recorded)
    }

    async fn record_distinct(&self, w: &RecordOrders) -> Result<Recorded, StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let locked = u.lock().await?;
        if locked.closed {
            let answer = Recorded {
                replies: vec![Recording::Closed; w.orders.len()],
                figures: u.figures(&locked).await?,
            };
            u.commit(&self.store, &self.sink).await?;
            return Ok(answer);
        }
        // Almost every write brings only new orders: they are inserted at once, and only when
        // one is there already (a retry, a write done again, a void) are they read first.
        let all_new = w.per_customer_limit.is_none() && insert_all_new(&mut u, w).await?;
        let existing = match all_new {
            true => BTreeMap::new(),
            false => {
                let ids: Vec<&OrderId> = w.orders.iter().map(|o| &o.order_id).collect();
                rows::orders_by_id(&mut u, &w.listing, &ids).await?
            }
        };
        let known: Vec<&OrderId> = existing.keys().collect();
        let attempts = by_order(rows::attempts_of(&mut u, &known).await?);
        let mut held = holdings(&mut u, w).await?;
        let mut write = Write {
            u,
            changes: Changes::default(),
            pay_base: &self.public_base_url,
        };
        let mut replies = Vec::with_capacity(w.orders.len());
        let mut written: Vec<&NewOrder> = Vec::new();
        for o in &w.orders {
            match existing.get(&o.order_id) {
                Some(e) if e.voided_at.is_none() => {
                    let payment = attempts
                        .get(&e.id)
                        .and_then(|a| a.last())
                        .map(|a| a.id.clone());
                    replies.push(Recording::Existing(e.view(payment)));
                    continue;
                }
                // Voided after this write was decided: a late attempt of a write given up on.
                Some(e) if e.voided_at.is_some_and(|v| v >= w.at.0) => {
                    replies.push(Recording::Voided);
                    continue;
                }
                _ => {}
            }
            if let Some(limit) = w.per_customer_limit {
                let h = held.entry(o.customer_id.clone()).or_default();
                if *h + o.qty.get() > limit {
                    replies.push(Recording::OverLimit { limit, held: *h });
                    continue;
                }
                *h += o.qty.get();
            }
            replies.push(Recording::New { payment_id: None });
            written.push(o);
        }
        if !all_new {
            let fresh: Vec<&NewOrder> = written
                .iter()
                .copied()
                .filter(|o| !existing.contains_key(&o.order_id))
                .collect();
            insert_orders(&mut write.u, w, &fresh, false).await?;
        }
        let mut payments = BTreeMap::new();
        for o in &written {
            let row = OrderRow {
                voided_at: None,
                ..new_row(o)
            };
            if existing.contains_key(&o.order_id) {
                // A voided reservation the customer retried under the same key: it comes back.
                write.changes.order(row.clone());
            }
            if let Some(due) = o.payment_due_at {
                let tried = attempts.get(&o.order_id).map_or(&[][..], |a| &a[..]);
                payments.insert(o.order_id.clone(), write.open_attempt(&row, tried, due));
            }
            write.changes.delta += Delta::of_move(None, o.status, o.qty);
            let key = match existing.contains_key(&o.order_id) {
                true => format!("order.reserved:{}:{}", o.order_id, w.at.0),
                false => format!("order.reserved:{}", o.order_id),
            };
            write.u.queue(
                &key,
                "order.reserved",
                Some(&o.order_id),
                json!({"orderId": o.order_id, "customerId": o.customer_id, "qty": o.qty, "status": o.status}),
            );
        }
        for (o, reply) in w.orders.iter().zip(replies.iter_mut()) {
            if let Recording::New { payment_id } = reply {
                *payment_id = payments.get(&o.order_id).cloned();
            }
        }
        let delta = write.changes.delta;
        let Write { mut u, changes, .. } = write;
        changes.write(&mut u, &w.listing, w.at, true).await?;
        if !written.is_empty()
            && i64::from(locked.sold_qty) + delta.sold == i64::from(locked.max_qty)
        {
            let by = &written.last().expect("not empty").order_id;
            u.event(
                &format!("quota.closed:{by}"),
                "quota.closed",
                None,
                json!({"filledBy": by}),
            )
            .await?;
        }
        reach_threshold(&mut u, w).await?;
        let answers: Vec<OrderAnswer> = w
            .answers
            .iter()
            .filter(|a| written.iter().any(|o| o.order_id == a.order_id))
            .cloned()
            .collect();
        save_order_answers(&mut u.tx, u.backend, &answers, w.at).await?;
        let answer = Recorded {
            replies,
            figures: u.figures(&locked).await?,
        };
        u.commit(&self.store, &self.sink).await?;
        Ok(answer)
    }

    pub async fn void_orders_tx(&self, w: &VoidOrders) -> Result<Figures, StoreError> {
        let mut u = Unit::begin(&self.store, &w.listing, w.at).await?;
        let locked = u.lock().await?;
        let ids: Vec<&OrderId> = w.orders.iter().map(|o| &o.order_id).collect();
        let mut orders = rows::orders_by_id(&mut u, &w.listing, &ids).await?;
        let mut attempts = by_order(rows::attempts_of(&mut u, &ids).await?);
        let mut write = Write {
            u,
            changes: Changes::default(),
            pay_base: &self.public_base_url,
        };
        let mut tombstones = Vec::new();
        for o in &w.orders {
            match orders.get_mut(&o.order_id) {
                // Never written: it is left voided, so an attempt still running cannot write it.
                None => tombstones.push(o),
                Some(e) if e.voided_at.is_some() => {}
                // An attempt committed after all: what it wrote is cancelled; its customer was
                // told it failed, and a retry under the same key writes it again.
                Some(e) => {
                    let tried = attempts.entry(e.id.clone()).or_default();
                    e.voided_at = Some(w.at.0);
                    if e.status.holds_quota() {
                        write.release(e, tried, OrderStatus::Cancelled, Release::NotRecorded);
                    } else {
                        write.changes.order(e.clone());
                    }
                }
            }
        }
        let Write { mut u, changes, .. } = write;
        insert_tombstones(&mut u, w, &tombstones).await?;
        changes
            .write(&mut u, &w.listing, w.at, locked.reopens())
            .await?;
        forget_answers(&mut u, &w.orders).await?;
        // A threshold once reached stays reached (only changes are announced), as after a
        // customer's cancel.
        let figures = u.figures(&locked).await?;
        u.commit(&self.store, &self.sink).await?;
        Ok(figures)
    }
}

/// Orders a given-up write never wrote, left voided (CANCELLED, shown to nobody).
async fn insert_tombstones(
    u: &mut Unit,
    w: &VoidOrders,
    orders: &[&NewOrder],
) -> Result<(), StoreError> {
    if orders.is_empty() {
        return Ok(());
    }
    let j = JsonRows(u.backend);
    let sql = format!(
        "INSERT INTO orders (id, sell_window_id, product_id, customer_id, qty, currency, amount_minor, status, voided_at, closed_reason, created_at, updated_at) \
         SELECT {}, $2, $3, {}, {}, {}, {}, 'CANCELLED', CAST($4 AS BIGINT), 'not recorded', CAST($4 AS BIGINT), CAST($4 AS BIGINT) {} \
         ON CONFLICT (id) DO NOTHING",
        j.text("id"),
        j.text("c"),
        j.int("q"),
        j.text("cur"),
        j.int("amt"),
        j.from(1),
    );
    let rows: Vec<serde_json::Value> = orders
        .iter()
        .map(|o| {
            json!({
                "id": o.order_id, "c": o.customer_id, "q": o.qty.get(),
                "cur": o.amount.currency, "amt": o.amount.amount_minor,
            })
        })
        .collect();
    sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(w.listing.sell_window_id.as_str())
        .bind(w.listing.product_id.as_str())
        .bind(w.at.0)
        .execute(&mut *u.tx)
        .await?;
    Ok(())
}

fn new_row(o: &NewOrder) -> OrderRow {
    OrderRow {
        id: o.order_id.clone(),
        customer_id: o.customer_id.clone(),
        qty: o.qty,
        amount: o.amount.clone(),
        status: o.status,
        payment_due_at: o.payment_due_at,
        paid_by: None,
        failures: 0,
        last_error: None,
        voided_at: None,
        closed_reason: None,
    }
}

/// Units each customer of the batch holds in the listing now (when it has a limit).
async fn holdings(u: &mut Unit, w: &RecordOrders) -> Result<BTreeMap<CustomerId, u32>, StoreError> {
    if w.per_customer_limit.is_none() {
        return Ok(BTreeMap::new());
    }
    let j = JsonRows(u.backend);
    // Driven by the customers (their own index), whatever the listing's size; the listing and
    // the statuses holding quota are checked on the rows found.
    let sql = format!(
        "SELECT o.customer_id, o.qty, o.status, o.sell_window_id, o.product_id \
         FROM (SELECT DISTINCT {} AS wanted FROM {}) AS w JOIN orders o ON o.customer_id = w.wanted",
        j.text("id"),
        j.source(1)
    );
    let customers = serde_json::Value::Array(
        w.orders
            .iter()
            .map(|o| json!({ "id": o.customer_id }))
            .collect(),
    );
    let rows = sqlx::query(&sql)
        .bind(customers.to_string())
        .fetch_all(&mut *u.tx)
        .await?;
    let mut held = BTreeMap::new();
    for r in &rows {
        let listing = &w.listing;
        let status: String = r.try_get("status")?;
        let holds = OrderStatus::parse(&status).is_some_and(|s| s.holds_quota());
        if holds
            && r.try_get::<String, _>("sell_window_id")? == listing.sell_window_id.as_str()
            && r.try_get::<String, _>("product_id")? == listing.product_id.as_str()
        {
            let c = CustomerId::parse(r.try_get::<String, _>("customer_id")?)
                .map_err(|e| StoreError::Inconsistent(e.to_string()))?;
            *held.entry(c).or_insert(0) += crate::store::u(r, "qty")?;
        }
    }
    Ok(held)
}

/// Inserts every order of the write if none is there yet (`true`); otherwise inserts none
/// (`false`), and the write reads the ones there first.
async fn insert_all_new(u: &mut Unit, w: &RecordOrders) -> Result<bool, StoreError> {
    sqlx::query("SAVEPOINT all_new").execute(&mut *u.tx).await?;
    let orders: Vec<&NewOrder> = w.orders.iter().collect();
    let inserted = insert_orders(u, w, &orders, true).await?;
    let all = inserted == orders.len() as u64;
    if !all {
        sqlx::query("ROLLBACK TO SAVEPOINT all_new")
            .execute(&mut *u.tx)
            .await?;
    }
    sqlx::query("RELEASE SAVEPOINT all_new")
        .execute(&mut *u.tx)
        .await?;
    Ok(all)
}

/// Inserts `orders`; `skip_present`: one already there is left as it is (and not counted).
/// Returns how many were inserted.
async fn insert_orders(
    u: &mut Unit,
    w: &RecordOrders,
    orders: &[&NewOrder],
    skip_present: bool,
) -> Result<u64, StoreError> {
    if orders.is_empty() {
        return Ok(0);
    }
    let j = JsonRows(u.backend);
    let sql = format!(
        "INSERT INTO orders (id, sell_window_id, product_id, customer_id, qty, currency, amount_minor, status, payment_due_at, created_at, updated_at) \
         SELECT {}, $2, $3, {}, {}, {}, {}, {}, {}, CAST($4 AS BIGINT), CAST($4 AS BIGINT) {}{}",
        j.text("id"),
        j.text("c"),
        j.int("q"),
        j.text("cur"),
        j.int("amt"),
        j.text("st"),
        j.int("due"),
        j.from(1),
        if skip_present {
            " ON CONFLICT (id) DO NOTHING"
        } else {
            ""
        },
    );
    let rows: Vec<serde_json::Value> = orders
        .iter()
        .map(|o| {
            json!({
                "id": o.order_id, "c": o.customer_id, "q": o.qty.get(),
                "cur": o.amount.currency, "amt": o.amount.amount_minor,
                "st": o.status.as_str(), "due": o.payment_due_at.map(|d| d.0),
            })
        })
        .collect();
    let done = sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(w.listing.sell_window_id.as_str())
        .bind(w.listing.product_id.as_str())
        .bind(w.at.0)
        .execute(&mut *u.tx)
        .await?;
    Ok(done.rows_affected())
}

/// The aggregator's one announcement: the first time the reserved quantity reaches the
/// threshold while it is OPEN, it becomes REACHED and the admin is told.
async fn reach_threshold(u: &mut Unit, w: &RecordOrders) -> Result<(), StoreError> {
    let (sw, p) = (
        w.listing.sell_window_id.as_str(),
        w.listing.product_id.as_str(),
    );
    let row = sqlx::query(
        "SELECT reserved_qty, threshold_qty, status FROM counters WHERE sell_window_id = $1 AND product_id = $2",
    )
    .bind(sw)
    .bind(p)
    .fetch_one(&mut *u.tx)
    .await?;
    let (reserved, threshold) = (
        crate::store::u(&row, "reserved_qty")?,
        crate::store::u(&row, "threshold_qty")?,
    );
    if row.try_get::<String, _>("status")? != "OPEN" || reserved < threshold {
        return Ok(());
    }
    sqlx::query("UPDATE counters SET status = 'REACHED', reached_at = $1 WHERE sell_window_id = $2 AND product_id = $3")
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
        u.note(
            Recipient::Admin,
            "admin",
            "threshold_reached",
            &key,
            None,
            texts::threshold_reached(&listing_name(&w.listing), reserved, threshold),
        );
    }
    Ok(())
}

/// Drops the first answers stored for voided orders: a retry under the key tries again.
async fn forget_answers(u: &mut Unit, orders: &[NewOrder]) -> Result<(), StoreError> {
    for o in orders {
        sqlx::query("DELETE FROM idempotency_keys WHERE customer_id = $1 AND response = $2")
            .bind(o.customer_id.as_str())
            .bind(format!("{RESERVED_ANSWER}{}", o.order_id))
            .execute(&mut *u.tx)
            .await?;
    }
    Ok(())
}
