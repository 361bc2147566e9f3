//! The reserve transaction itself: lock the batch's listings, decide each listing's requests
//! on its row ([`super::decide`]), write what they decided in a handful of set-based
//! statements, commit, and hand the new notifications to the sink.

use super::decide::{ListingBatch, RowUpdate, Writes};
use super::lock::{self, Key};
use super::{ListingProgress, ReserveAnswer, ReserveContext, ReserveRequest, copy_answers};
use crate::db::{self, JsonRows, Notification, Store, StoreError, StoreResult, Tx};
use sellwindow_domain::*;
use serde_json::json;
use std::collections::{BTreeMap, HashSet};

pub struct Committed {
    pub answers: Vec<ReserveAnswer>,
    pub progress: Vec<ListingProgress>,
}

pub async fn commit(
    store: &Store,
    cx: &ReserveContext,
    batch: &[&ReserveRequest],
    at: UnixMillis,
) -> StoreResult<Committed> {
    let backend = store.backend();
    let mut tx = store.begin().await?;
    let mut keys: Vec<Key> = batch.iter().map(|r| listing_key(r)).collect();
    keys.sort();
    keys.dedup();
    // First answers are read before the locks where that is safe (PostgreSQL: a read; a
    // concurrent first request is caught by the writes), after them on SQLite (its first
    // statement must be a write).
    let early = match backend {
        db::Backend::Postgres => Some(store.known_answers(&mut tx, batch).await?),
        db::Backend::Sqlite => None,
    };
    let locking = cx.locking.lock().await;
    let locked = lock::lock(&mut tx, backend, &keys).await?;
    let mut answers = match early {
        Some(answers) => answers,
        None => store.known_answers(&mut tx, batch).await?,
    };
    let mut by_listing = by_listing(batch, &answers);
    let mut w = Writes::new(at, &cx.pay_base);
    for (key, locked) in locked {
        let requests = by_listing.remove(&key).unwrap_or_default();
        let held = match locked.terms.per_customer_limit {
            None => BTreeMap::new(),
            Some(_) => {
                let customers: Vec<&CustomerId> =
                    requests.iter().map(|(_, r)| &r.customer_id).collect();
                lock::holdings(&mut tx, backend, &key, &customers).await?
            }
        };
        let b = ListingBatch {
            key,
            locked,
            requests,
            held,
        };
        w.decide(b, &mut answers);
    }
    // What is left names no listing there is.
    for (_, requests) in by_listing {
        for (n, _) in requests {
            answers[n] = Some(Err(Refusal::UnknownListing));
        }
    }
    copy_answers(batch, &mut answers);
    write(&mut tx, backend, &mut w).await?;
    let fresh = save_notes(&mut tx, &w.notes).await?;
    tx.commit().await?;
    drop(locking);
    deliver(store, cx, w.notes, fresh, at);
    Ok(Committed {
        answers: answers
            .into_iter()
            .map(|a| a.expect("every request answered"))
            .collect(),
        progress: w.progress,
    })
}

fn listing_key(r: &ReserveRequest) -> Key {
    (
        r.listing.sell_window_id.clone(),
        r.listing.product_id.clone(),
    )
}

/// The requests to decide (not answered yet, the first copy of each key), by listing, in the
/// order of the listings' keys (the order their rows are locked in).
fn by_listing<'a>(
    batch: &[&'a ReserveRequest],
    answers: &[Option<ReserveAnswer>],
) -> BTreeMap<Key, Vec<(usize, &'a ReserveRequest)>> {
    let mut seen = HashSet::new();
    let mut out: BTreeMap<Key, Vec<(usize, &ReserveRequest)>> = BTreeMap::new();
    for (n, r) in batch.iter().enumerate() {
        let first = seen.insert((r.customer_id.as_str(), r.idempotency_key.as_str()));
        if first && answers[n].is_none() {
            out.entry(listing_key(r)).or_default().push((n, r));
        }
    }
    out
}

/// Every statement of the batch, set-based: orders, payments, rows, counters, events, answers.
async fn write(tx: &mut Tx<'static>, backend: db::Backend, w: &mut Writes) -> StoreResult<()> {
    let at = w.at;
    insert_orders(tx, backend, &w.orders, at).await?;
    insert_payments(tx, backend, &w.payments, at).await?;
    let versions = update_rows(tx, backend, &w.rows, at).await?;
    for p in &mut w.progress {
        let key = (
            p.listing.sell_window_id.clone(),
            p.listing.product_id.clone(),
        );
        p.progress.figures.version = versions.get(&key).copied().unwrap_or_default();
    }
    db::emit_all(tx, backend, &w.events).await?;
    insert_answers(tx, backend, &w.answers, at).await
}

async fn insert_orders(
    tx: &mut Tx<'static>,
    backend: db::Backend,
    orders: &[(Key, NewOrder)],
    at: UnixMillis,
) -> StoreResult<()> {
    if orders.is_empty() {
        return Ok(());
    }
    let j = JsonRows(backend);
    let sql = format!(
        "INSERT INTO orders (id, sell_window_id, product_id, customer_id, qty, currency, amount_minor, status, payment_due_at, created_at, updated_at) \
         SELECT {}, {}, {}, {}, {}, {}, {}, {}, {}, CAST($2 AS BIGINT), CAST($2 AS BIGINT) {} ON CONFLICT (id) DO NOTHING",
        j.text("id"),
        j.text("w"),
        j.text("p"),
        j.text("c"),
        j.int("q"),
        j.text("cur"),
        j.int("amt"),
        j.text("st"),
        j.int("due"),
        j.from(1),
    );
    let rows: Vec<serde_json::Value> = orders
        .iter()
        .map(|((sw, p), o)| {
            json!({
                "id": o.order_id, "w": sw, "p": p, "c": o.customer_id, "q": o.qty.get(),
                "cur": o.amount.currency, "amt": o.amount.amount_minor, "st": o.status.as_str(),
                "due": o.payment_due_at.map(|d| d.0),
            })
        })
        .collect();
    let done = sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(at.0)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != orders.len() as u64 {
        return Err(StoreError::Conflict(
            "an order of the batch is there already".into(),
        ));
    }
    Ok(())
}

async fn insert_payments(
    tx: &mut Tx<'static>,
    backend: db::Backend,
    payments: &[serde_json::Value],
    at: UnixMillis,
) -> StoreResult<()> {
    if payments.is_empty() {
        return Ok(());
    }
    let j = JsonRows(backend);
    let sql = format!(
        "INSERT INTO payments (id, order_id, sell_window_id, product_id, customer_id, attempt, currency, amount_minor, status, provider, pay_url, expire_at, created_at, updated_at) \
         SELECT {}, {}, {}, {}, {}, 1, {}, {}, 'INIT', 'sandbox', {}, {}, CAST($2 AS BIGINT), CAST($2 AS BIGINT) {} ON CONFLICT (id) DO NOTHING",
        j.text("id"),
        j.text("o"),
        j.text("w"),
        j.text("p"),
        j.text("c"),
        j.text("cur"),
        j.int("amt"),
        j.text("url"),
        j.int("exp"),
        j.from(1),
    );
    sqlx::query(&sql)
        .bind(serde_json::Value::Array(payments.to_vec()).to_string())
        .bind(at.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Moves each listing's quota row (sold, status, version) and counter (reserved, threshold)
/// to what the rules decided. Returns each row's new version.
async fn update_rows(
    tx: &mut Tx<'static>,
    backend: db::Backend,
    rows: &[RowUpdate],
    at: UnixMillis,
) -> StoreResult<BTreeMap<Key, u64>> {
    let mut versions = BTreeMap::new();
    if rows.is_empty() {
        return Ok(versions);
    }
    let data: Vec<serde_json::Value> = rows
        .iter()
        .map(|u| json!({
            "w": u.key.0, "p": u.key.1, "s": u.row.sold, "r": u.row.reserved,
            "qs": u.status.as_str(),
            "ts": if u.row.threshold_reached { ThresholdStatus::Reached } else { ThresholdStatus::Open }.as_str(),
        }))
        .collect();
    let data = serde_json::Value::Array(data).to_string();
    let j = JsonRows(backend);
    let quota = format!(
        "UPDATE sell_window_quota SET sold_qty = {}, status = {}, version = version + 1 FROM {} \
         WHERE sell_window_quota.sell_window_id = {} AND sell_window_quota.product_id = {} \
         RETURNING sell_window_quota.sell_window_id, sell_window_quota.product_id, sell_window_quota.version",
        j.int("s"),
        j.text("qs"),
        j.source(1),
        j.text("w"),
        j.text("p"),
    );
    for r in sqlx::query(&quota).bind(&data).fetch_all(&mut **tx).await? {
        use sqlx::Row;
        let key = (
            SellWindowId::parse(r.try_get::<String, _>(0)?)
                .map_err(|e| StoreError::Inconsistent(e.to_string()))?,
            ProductId::parse(r.try_get::<String, _>(1)?)
                .map_err(|e| StoreError::Inconsistent(e.to_string()))?,
        );
        versions.insert(key, r.try_get::<i64, _>(2)? as u64);
    }
    let counters = format!(
        "UPDATE counters SET reserved_qty = {}, status = {}, \
         reached_at = CASE WHEN {} = 'REACHED' THEN COALESCE(reached_at, $2) ELSE reached_at END FROM {} \
         WHERE counters.sell_window_id = {} AND counters.product_id = {}",
        j.int("r"),
        j.text("ts"),
        j.text("ts"),
        j.source(1),
        j.text("w"),
        j.text("p"),
    );
    sqlx::query(&counters)
        .bind(&data)
        .bind(at.0)
        .execute(&mut **tx)
        .await?;
    Ok(versions)
}

async fn insert_answers(
    tx: &mut Tx<'static>,
    backend: db::Backend,
    answers: &[serde_json::Value],
    at: UnixMillis,
) -> StoreResult<()> {
    if answers.is_empty() {
        return Ok(());
    }
    let j = JsonRows(backend);
    let sql = format!(
        "INSERT INTO idempotency_keys (customer_id, idempotency_key, request_hash, response, created_at) \
         SELECT {}, {}, {}, {}, CAST($2 AS BIGINT) {} ON CONFLICT (customer_id, idempotency_key) DO NOTHING",
        j.text("c"),
        j.text("k"),
        j.text("h"),
        j.text("r"),
        j.from(1),
    );
    let done = sqlx::query(&sql)
        .bind(serde_json::Value::Array(answers.to_vec()).to_string())
        .bind(at.0)
        .execute(&mut **tx)
        .await?;
    if done.rows_affected() != answers.len() as u64 {
        return Err(StoreError::Conflict(
            "a key of the batch was answered meanwhile".into(),
        ));
    }
    Ok(())
}

async fn save_notes(
    tx: &mut Tx<'static>,
    notes: &[Notification],
) -> StoreResult<std::collections::HashSet<String>> {
    if notes.is_empty() {
        return Ok(Default::default());
    }
    let lease = crate::notify::Redelivery::default().lease.as_millis() as i64;
    db::save_notifications(tx, notes, Some(UnixMillis(wall_ms()).plus_ms(lease))).await
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Hands what this commit persisted to the sink, in the background (a slow sink never holds a
/// reservation's answer); what is not delivered is tried again by the workers' redelivery.
fn deliver(
    store: &Store,
    cx: &ReserveContext,
    notes: Vec<Notification>,
    fresh: std::collections::HashSet<String>,
    at: UnixMillis,
) {
    let fresh: Vec<Notification> = notes
        .into_iter()
        .filter(|n| fresh.contains(&n.id))
        .collect();
    if fresh.is_empty() {
        return;
    }
    let (store, sink) = (store.clone(), cx.sink.clone());
    tokio::spawn(async move {
        let mut delivered = Vec::new();
        for n in &fresh {
            match sink.deliver(n).await {
                Ok(()) => delivered.push(n.id.as_str()),
                Err(e) => {
                    tracing::warn!(notification = %n.id, error = %e, "notification not delivered")
                }
            }
        }
        if let Err(e) = db::mark_delivered_all(&store, &delivered, at).await {
            tracing::warn!(error = %e, "delivered notifications not marked");
        }
    });
}
