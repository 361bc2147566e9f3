//! The rows a listing's writes read and change: its orders and their payment attempts, read
//! in one statement per chunk, changed in memory by the rules, and written back in set-based
//! statements (one per table, whatever the number of rows), with the listing's figures moved
//! by the same delta the workflow applies.

use crate::db::{self, JsonRows, StoreError};
use crate::listing_tx::{ListingTx, Locked};
use sellwindow_domain::*;
use sellwindow_workflows::machine::{AttemptFacts, OrderFacts, SweepKind, quota_status};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::collections::BTreeMap;

#[derive(Debug, Clone)]
pub struct OrderRow {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub qty: Qty,
    pub amount: Money,
    pub status: OrderStatus,
    pub payment_due_at: Option<UnixMillis>,
    pub paid_by: Option<PaymentId>,
    pub failures: u32,
    pub last_error: Option<String>,
    /// Why it left the quota.
    pub closed_reason: Option<String>,
}

impl OrderRow {
    pub fn facts(&self) -> OrderFacts {
        OrderFacts {
            status: self.status,
            qty: self.qty,
        }
    }

    pub fn view(&self, payment_id: Option<PaymentId>) -> OrderView {
        OrderView {
            order_id: self.id.clone(),
            customer_id: self.customer_id.clone(),
            qty: self.qty,
            amount: self.amount.clone(),
            status: self.status,
            payment_due_at: self.payment_due_at,
            payment_id,
        }
    }
}

#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub attempt: u32,
    pub amount: Money,
    pub status: PaymentStatus,
    pub charged_at: Option<i64>,
    pub refunded_at: Option<i64>,
    pub last_error: Option<String>,
}

impl AttemptRow {
    pub fn facts(&self) -> AttemptFacts {
        AttemptFacts {
            status: self.status,
            charged: self.charged_at.is_some(),
        }
    }
}

/// A first or next payment attempt to open.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub attempt: u32,
    pub amount: Money,
    pub expire_at: UnixMillis,
    pub pay_url: String,
}

fn bad(e: impl std::fmt::Display) -> StoreError {
    StoreError::Inconsistent(e.to_string())
}

const ORDER_COLUMNS: &str = "id, customer_id, qty, currency, amount_minor, status, payment_due_at, paid_by, payment_failed_count, last_payment_error, closed_reason";

fn order_row(row: &AnyRow) -> Result<OrderRow, StoreError> {
    let status: String = row.try_get("status")?;
    let currency = Currency::parse(row.try_get::<String, _>("currency")?).map_err(bad)?;
    Ok(OrderRow {
        id: OrderId::parse(row.try_get::<String, _>("id")?).map_err(bad)?,
        customer_id: CustomerId::parse(row.try_get::<String, _>("customer_id")?).map_err(bad)?,
        qty: Qty::new(db::u(row, "qty")?).map_err(bad)?,
        amount: Money {
            currency,
            amount_minor: row.try_get("amount_minor")?,
        },
        status: OrderStatus::parse(&status).ok_or_else(|| bad(format!("order status {status}")))?,
        payment_due_at: row
            .try_get::<Option<i64>, _>("payment_due_at")?
            .map(UnixMillis),
        paid_by: row
            .try_get::<Option<String>, _>("paid_by")?
            .map(PaymentId::parse)
            .transpose()
            .map_err(bad)?,
        failures: db::u(row, "payment_failed_count")?,
        last_error: row.try_get("last_payment_error")?,
        closed_reason: row.try_get("closed_reason")?,
    })
}

fn id_array<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    serde_json::Value::Array(ids.map(|id| json!({ "id": id })).collect()).to_string()
}

/// The listing's orders among `ids`.
pub async fn orders_by_id(
    u: &mut ListingTx,
    listing: &ListingKey,
    ids: &[&OrderId],
) -> Result<BTreeMap<OrderId, OrderRow>, StoreError> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let j = JsonRows(u.backend);
    // Driven by the ids alone (a primary-key lookup each), whatever the listing's size: with
    // the listing in the WHERE clause PostgreSQL may read the listing's whole index when its
    // statistics lag a fast-growing table. The listing is checked on the rows found.
    let sql = format!(
        "SELECT {}, o.sell_window_id AS listing_window, o.product_id AS listing_product          FROM (SELECT DISTINCT {} AS wanted FROM {}) AS w JOIN orders o ON o.id = w.wanted",
        ORDER_COLUMNS
            .split(", ")
            .map(|c| format!("o.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
        j.text("id"),
        j.source(1)
    );
    let rows = sqlx::query(&sql)
        .bind(id_array(ids.iter().map(|id| id.as_str())))
        .fetch_all(&mut *u.tx)
        .await?;
    let mut found = BTreeMap::new();
    for r in &rows {
        let window: String = r.try_get("listing_window")?;
        let product: String = r.try_get("listing_product")?;
        if window == listing.sell_window_id.as_str() && product == listing.product_id.as_str() {
            let o = order_row(r)?;
            found.insert(o.id.clone(), o);
        }
    }
    Ok(found)
}

/// The next chunk of a sweep's candidates: orders in the statuses it moves from, after
/// `after` by id (and for deadline sweeps, due by `due`).
pub async fn candidates(
    u: &mut ListingTx,
    listing: &ListingKey,
    kind: SweepKind,
    due: Option<UnixMillis>,
    after: Option<&OrderId>,
    limit: u32,
) -> Result<Vec<OrderRow>, StoreError> {
    let statuses: Vec<String> = kind
        .from()
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let deadline = if kind == SweepKind::Deadline {
        "AND payment_due_at <= $5"
    } else {
        ""
    };
    let sql = format!(
        "SELECT {ORDER_COLUMNS} FROM orders WHERE sell_window_id = $1 AND product_id = $2 \
         AND status IN ({}) AND id > $3 {deadline} ORDER BY id LIMIT $4",
        statuses.join(", ")
    );
    let mut q = sqlx::query(&sql)
        .bind(listing.sell_window_id.as_str())
        .bind(listing.product_id.as_str())
        .bind(after.map_or("", |a| a.as_str()))
        .bind(i64::from(limit));
    if kind == SweepKind::Deadline {
        q = q.bind(due.map_or(i64::MIN, |d| d.0));
    }
    let rows = q.fetch_all(&mut *u.tx).await?;
    rows.iter().map(order_row).collect()
}

/// Every payment attempt of `orders`.
pub async fn attempts_of(
    u: &mut ListingTx,
    orders: &[&OrderId],
) -> Result<Vec<AttemptRow>, StoreError> {
    if orders.is_empty() {
        return Ok(Vec::new());
    }
    let j = JsonRows(u.backend);
    let sql = format!(
        "SELECT p.id, p.order_id, p.attempt, p.currency, p.amount_minor, p.status, p.charged_at, p.refunded_at, p.last_error \
         FROM (SELECT DISTINCT {} AS wanted FROM {}) AS w JOIN payments p ON p.order_id = w.wanted \
         ORDER BY p.order_id, p.attempt",
        j.text("id"),
        j.source(1)
    );
    let rows = sqlx::query(&sql)
        .bind(id_array(orders.iter().map(|id| id.as_str())))
        .fetch_all(&mut *u.tx)
        .await?;
    rows.iter()
        .map(|row| {
            let status: String = row.try_get("status")?;
            Ok(AttemptRow {
                id: PaymentId::parse(row.try_get::<String, _>("id")?).map_err(bad)?,
                order_id: OrderId::parse(row.try_get::<String, _>("order_id")?).map_err(bad)?,
                attempt: db::u(row, "attempt")?,
                amount: Money {
                    currency: Currency::parse(row.try_get::<String, _>("currency")?)
                        .map_err(bad)?,
                    amount_minor: row.try_get("amount_minor")?,
                },
                status: PaymentStatus::parse(&status)
                    .ok_or_else(|| bad(format!("payment status {status}")))?,
                charged_at: row.try_get("charged_at")?,
                refunded_at: row.try_get("refunded_at")?,
                last_error: row.try_get("last_error")?,
            })
        })
        .collect()
}

/// What a write changes, collected as the rules decide and written at its end.
#[derive(Debug, Default)]
pub struct Changes {
    /// Orders as they end (only changed ones).
    pub orders: BTreeMap<OrderId, OrderRow>,
    /// Attempts as they end (only changed ones).
    pub attempts: BTreeMap<PaymentId, AttemptRow>,
    pub new_attempts: Vec<NewAttempt>,
    pub delta: Delta,
}

impl Changes {
    pub fn order(&mut self, o: OrderRow) {
        self.orders.insert(o.id.clone(), o);
    }

    pub fn attempt(&mut self, a: AttemptRow) {
        self.attempts.insert(a.id.clone(), a);
    }

    /// Writes the changed rows and moves the listing's figures by the delta (and `locked`
    /// with them).
    pub async fn write(
        self,
        u: &mut ListingTx,
        listing: &ListingKey,
        at: UnixMillis,
        locked: &mut Locked,
    ) -> Result<Delta, StoreError> {
        write_orders(u, self.orders.values(), at).await?;
        write_attempts(u, self.attempts.values(), at).await?;
        insert_attempts(u, listing, &self.new_attempts, at).await?;
        move_figures(u, listing, &self.delta, locked).await?;
        Ok(self.delta)
    }
}

async fn write_orders<'a>(
    u: &mut ListingTx,
    orders: impl Iterator<Item = &'a OrderRow>,
    at: UnixMillis,
) -> Result<(), StoreError> {
    let rows: Vec<serde_json::Value> = orders
        .map(|o| {
            json!({
                "id": o.id, "st": o.status.as_str(), "due": o.payment_due_at.map(|d| d.0),
                "by": o.paid_by, "f": o.failures, "e": o.last_error,
                "why": o.closed_reason,
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let j = JsonRows(u.backend);
    let sql = format!(
        "UPDATE orders SET status = {}, payment_due_at = {}, paid_by = {}, payment_failed_count = {}, \
         last_payment_error = {}, closed_reason = {}, updated_at = $2 FROM {} WHERE orders.id = {}",
        j.text("st"),
        j.int("due"),
        j.text("by"),
        j.int("f"),
        j.text("e"),
        j.text("why"),
        j.source(1),
        j.text("id"),
    );
    sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(at.0)
        .execute(&mut *u.tx)
        .await?;
    Ok(())
}

async fn write_attempts<'a>(
    u: &mut ListingTx,
    attempts: impl Iterator<Item = &'a AttemptRow>,
    at: UnixMillis,
) -> Result<(), StoreError> {
    let rows: Vec<serde_json::Value> = attempts
        .map(|a| {
            json!({
                "id": a.id, "st": a.status.as_str(), "c": a.charged_at, "r": a.refunded_at,
                "e": a.last_error,
            })
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let j = JsonRows(u.backend);
    let sql = format!(
        "UPDATE payments SET status = {}, charged_at = {}, refunded_at = {}, last_error = {}, \
         updated_at = $2 FROM {} WHERE payments.id = {}",
        j.text("st"),
        j.int("c"),
        j.int("r"),
        j.text("e"),
        j.source(1),
        j.text("id"),
    );
    sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(at.0)
        .execute(&mut *u.tx)
        .await?;
    Ok(())
}

async fn insert_attempts(
    u: &mut ListingTx,
    listing: &ListingKey,
    attempts: &[NewAttempt],
    at: UnixMillis,
) -> Result<(), StoreError> {
    if attempts.is_empty() {
        return Ok(());
    }
    let rows: Vec<serde_json::Value> = attempts
        .iter()
        .map(|a| {
            json!({
                "id": a.id, "o": a.order_id, "c": a.customer_id, "n": a.attempt,
                "cur": a.amount.currency, "amt": a.amount.amount_minor,
                "url": a.pay_url, "exp": a.expire_at.0,
            })
        })
        .collect();
    let j = JsonRows(u.backend);
    let sql = format!(
        "INSERT INTO payments (id, order_id, sell_window_id, product_id, customer_id, attempt, currency, amount_minor, status, provider, pay_url, expire_at, created_at, updated_at) \
         SELECT {}, {}, $2, $3, {}, {}, {}, {}, 'INIT', 'sandbox', {}, {}, CAST($4 AS BIGINT), CAST($4 AS BIGINT) {} \
         ON CONFLICT (id) DO NOTHING",
        j.text("id"),
        j.text("o"),
        j.text("c"),
        j.int("n"),
        j.text("cur"),
        j.int("amt"),
        j.text("url"),
        j.int("exp"),
        j.from(1),
    );
    sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(listing.sell_window_id.as_str())
        .bind(listing.product_id.as_str())
        .bind(at.0)
        .execute(&mut *u.tx)
        .await?;
    Ok(())
}

/// Moves the quota row and the aggregator's counter by `delta`, the quota's status as the
/// rules decide it for the row after. The quota row refuses to pass its cap (the conditional
/// update and its CHECK), whatever any writer did.
pub async fn move_figures(
    u: &mut ListingTx,
    listing: &ListingKey,
    delta: &Delta,
    locked: &mut Locked,
) -> Result<(), StoreError> {
    if delta.is_zero() {
        return Ok(());
    }
    let moved = |v: u32, by: i64| {
        u32::try_from(i64::from(v) + by).map_err(|_| {
            StoreError::Inconsistent(format!(
                "the figures of {listing:?} cannot move by {delta:?}"
            ))
        })
    };
    locked.row.sold = moved(locked.row.sold, delta.sold)?;
    locked.row.reserved = moved(locked.row.reserved, delta.reserved)?;
    let status = quota_status(&locked.row, locked.max_qty);
    let (sw, p) = (listing.sell_window_id.as_str(), listing.product_id.as_str());
    let done = sqlx::query(
        "UPDATE sell_window_quota SET sold_qty = sold_qty + $1, status = $2 \
         WHERE sell_window_id = $3 AND product_id = $4 AND sold_qty + $1 <= max_qty AND sold_qty + $1 >= 0",
    )
    .bind(delta.sold)
    .bind(status.as_str())
    .bind(sw)
    .bind(p)
    .execute(&mut *u.tx)
    .await?;
    if done.rows_affected() != 1 {
        return Err(StoreError::Inconsistent(format!(
            "the quota row of {sw}/{p} cannot move by {}",
            delta.sold
        )));
    }
    sqlx::query(
        "UPDATE counters SET reserved_qty = reserved_qty + $1, paid_qty = paid_qty + $2 \
         WHERE sell_window_id = $3 AND product_id = $4",
    )
    .bind(delta.reserved)
    .bind(delta.paid)
    .bind(sw)
    .bind(p)
    .execute(&mut *u.tx)
    .await?;
    Ok(())
}
