//! Locking the listings of a batch: each quota row once, in the order of its key, read with
//! the listing's terms and the fences its workflow wrote (phase, closed), and what each
//! customer already holds where a listing limits it.

use crate::db::{Backend, JsonRows, StoreError, StoreResult, Tx, u};
use sellwindow_domain::*;
use sellwindow_workflows::machine::{QuotaRow, Terms};
use serde_json::json;
use sqlx::Row;
use std::collections::BTreeMap;

/// One listing as the batch found it under its lock.
#[derive(Debug, Clone)]
pub struct LockedListing {
    pub terms: Terms,
    pub row: QuotaRow,
    pub paid: u32,
}

pub type Key = (SellWindowId, ProductId);

/// Locks the quota rows of `listings` (sorted, so every transaction takes them in one order)
/// and reads them. A listing that does not exist is not in the answer.
pub async fn lock(
    tx: &mut Tx<'static>,
    backend: Backend,
    listings: &[Key],
) -> StoreResult<BTreeMap<Key, LockedListing>> {
    let j = JsonRows(backend);
    let wanted = serde_json::Value::Array(
        listings
            .iter()
            .map(|(sw, p)| json!({"w": sw, "p": p}))
            .collect(),
    )
    .to_string();
    let wanted_rows = format!(
        "(sell_window_id, product_id) IN (SELECT {}, {} FROM {})",
        j.text("w"),
        j.text("p"),
        j.source(1)
    );
    // The locks first, in a statement of their own: on PostgreSQL a row read in the statement
    // that waited for a lock is its newest version, but the rows joined to it are as they were
    // when the statement began (a second writer would then decide on the first's counter as it
    // stood before the first committed). The read below starts after the locks are held.
    let take = match backend {
        Backend::Postgres => format!(
            "SELECT sell_window_id FROM sell_window_quota WHERE {wanted_rows} \
             ORDER BY sell_window_id, product_id FOR UPDATE"
        ),
        // SQLite has one writer at a time: a write first takes the database's write lock
        // (waiting on busy_timeout) rather than failing a read-to-write upgrade later.
        Backend::Sqlite => {
            format!("UPDATE sell_window_quota SET version = version WHERE {wanted_rows}")
        }
    };
    sqlx::query(&take).bind(&wanted).execute(&mut **tx).await?;
    let sql = format!(
        "SELECT q.sell_window_id, q.product_id, q.sold_qty, c.reserved_qty, c.paid_qty, \
         c.status AS threshold_status, l.phase, l.closed_at, l.min_qty, l.max_qty, \
         l.payment_window_ms, l.per_customer_limit, p.currency, p.unit_price_minor, w.close_at \
         FROM sell_window_quota q \
         JOIN counters c ON c.sell_window_id = q.sell_window_id AND c.product_id = q.product_id \
         JOIN product_sell_windows l ON l.sell_window_id = q.sell_window_id AND l.product_id = q.product_id \
         JOIN products p ON p.id = q.product_id \
         JOIN sell_windows w ON w.id = q.sell_window_id \
         WHERE (q.sell_window_id, q.product_id) IN (SELECT {}, {} FROM {})",
        j.text("w"),
        j.text("p"),
        j.source(1)
    );
    let rows = sqlx::query(&sql).bind(&wanted).fetch_all(&mut **tx).await?;
    let mut locked = BTreeMap::new();
    for r in &rows {
        let key = (
            SellWindowId::parse(r.try_get::<String, _>("sell_window_id")?).map_err(bad)?,
            ProductId::parse(r.try_get::<String, _>("product_id")?).map_err(bad)?,
        );
        locked.insert(key, listing(r)?);
    }
    Ok(locked)
}

fn bad(e: impl std::fmt::Display) -> StoreError {
    StoreError::Inconsistent(e.to_string())
}

fn listing(r: &sqlx::any::AnyRow) -> StoreResult<LockedListing> {
    let phase: String = r.try_get("phase")?;
    let limit: Option<i64> = r.try_get("per_customer_limit")?;
    let currency = Currency::parse(r.try_get::<String, _>("currency")?).map_err(bad)?;
    Ok(LockedListing {
        terms: Terms {
            min_qty: u(r, "min_qty")?,
            max_qty: u(r, "max_qty")?,
            close_at: UnixMillis(r.try_get("close_at")?),
            payment_window_ms: r.try_get("payment_window_ms")?,
            per_customer_limit: limit.map(|l| l as u32),
            unit_price: Money {
                currency,
                amount_minor: r.try_get("unit_price_minor")?,
            },
        },
        row: QuotaRow {
            phase: Phase::parse(&phase).ok_or_else(|| bad(format!("phase {phase}")))?,
            closed: r.try_get::<Option<i64>, _>("closed_at")?.is_some(),
            sold: u(r, "sold_qty")?,
            reserved: u(r, "reserved_qty")?,
            threshold_reached: r.try_get::<String, _>("threshold_status")? == "REACHED",
        },
        paid: u(r, "paid_qty")?,
    })
}

/// Units each of `customers` holds in the listing now (for its per-customer limit).
pub async fn holdings(
    tx: &mut Tx<'static>,
    backend: Backend,
    listing: &Key,
    customers: &[&CustomerId],
) -> StoreResult<BTreeMap<CustomerId, u32>> {
    let j = JsonRows(backend);
    // Driven by the customers (their own index), whatever the listing's size; the listing and
    // the statuses holding quota are checked on the rows found.
    let sql = format!(
        "SELECT o.customer_id, o.qty, o.status FROM (SELECT DISTINCT {} AS wanted FROM {}) AS w \
         JOIN orders o ON o.customer_id = w.wanted \
         WHERE o.sell_window_id = $2 AND o.product_id = $3",
        j.text("id"),
        j.source(1)
    );
    let wanted = serde_json::Value::Array(customers.iter().map(|c| json!({ "id": c })).collect());
    // Planned for each batch, as the answers are (see `first_answers`).
    let rows = sqlx::query(&sql)
        .persistent(false)
        .bind(wanted.to_string())
        .bind(listing.0.as_str())
        .bind(listing.1.as_str())
        .fetch_all(&mut **tx)
        .await?;
    let mut held = BTreeMap::new();
    for r in &rows {
        let status: String = r.try_get("status")?;
        if OrderStatus::parse(&status).is_some_and(|s| s.holds_quota()) {
            let c = CustomerId::parse(r.try_get::<String, _>("customer_id")?).map_err(bad)?;
            *held.entry(c).or_insert(0) += u(r, "qty")?;
        }
    }
    Ok(held)
}
