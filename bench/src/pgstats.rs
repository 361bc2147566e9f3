//! What the database did during a level, when the store is PostgreSQL: transactions committed
//! in the app database (`pg_stat_database`; every statement outside a transaction counts as
//! one), rows inserted, and the WAL written and fsynced cluster-wide (`pg_stat_wal`). Divided by
//! the reservations made, they show how much database work each reservation costs.
//! PostgreSQL publishes these counters about once a second, so `after` waits a moment first.

use serde::Serialize;
use sqlx::Row;

#[derive(Debug, Clone, Copy, Default)]
pub struct PgSample {
    commits: i64,
    inserted: i64,
    wal_bytes: f64,
    wal_records: i64,
    wal_syncs: i64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PgWork {
    pub commits: i64,
    pub rows_inserted: i64,
    pub wal_bytes: f64,
    pub wal_records: i64,
    pub wal_fsyncs: i64,
    pub commits_per_reservation: f64,
    pub rows_inserted_per_reservation: f64,
    pub wal_bytes_per_reservation: f64,
    pub wal_fsyncs_per_reservation: f64,
}

pub async fn sample(store: &sellwindow_store::Store) -> Option<PgSample> {
    if store.backend() != sellwindow_store::Backend::Postgres {
        return None;
    }
    let r = sqlx::query(
        "SELECT CAST(d.xact_commit AS BIGINT) AS commits, CAST(d.tup_inserted AS BIGINT) AS inserted, \
         CAST(w.wal_bytes AS TEXT) AS wal_bytes, CAST(w.wal_records AS BIGINT) AS wal_records, \
         CAST(w.wal_sync AS BIGINT) AS wal_syncs \
         FROM pg_stat_database d, pg_stat_wal w WHERE d.datname = current_database()",
    )
    .fetch_one(store.pool())
    .await
    .ok()?;
    Some(PgSample {
        commits: r.try_get("commits").ok()?,
        inserted: r.try_get("inserted").ok()?,
        wal_bytes: r
            .try_get::<String, _>("wal_bytes")
            .ok()?
            .parse()
            .unwrap_or(0.0),
        wal_records: r.try_get("wal_records").ok()?,
        wal_syncs: r.try_get("wal_syncs").ok()?,
    })
}

/// The counters `before` → now, per reservation.
pub async fn after(
    store: &sellwindow_store::Store,
    before: Option<PgSample>,
    reservations: u64,
) -> Option<PgWork> {
    let a = before?;
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let b = sample(store).await?;
    let n = reservations.max(1) as f64;
    let w = PgWork {
        commits: b.commits - a.commits,
        rows_inserted: b.inserted - a.inserted,
        wal_bytes: b.wal_bytes - a.wal_bytes,
        wal_records: b.wal_records - a.wal_records,
        wal_fsyncs: b.wal_syncs - a.wal_syncs,
        ..Default::default()
    };
    Some(PgWork {
        commits_per_reservation: w.commits as f64 / n,
        rows_inserted_per_reservation: w.rows_inserted as f64 / n,
        wal_bytes_per_reservation: w.wal_bytes / n,
        wal_fsyncs_per_reservation: w.wal_fsyncs as f64 / n,
        ..w
    })
}
