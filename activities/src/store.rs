//! The sqlx store: one schema for SQLite (the embedded default) and PostgreSQL (production),
//! reached through sqlx's `Any` driver so both run the same statements. Every write that an
//! activity makes is one transaction, idempotent by the ids it carries: rows are inserted with
//! `ON CONFLICT DO NOTHING` and counters move only for the rows that actually changed, so an
//! activity can run twice. Write transactions start with a write, so SQLite takes its write
//! lock up front (waiting on `busy_timeout`) instead of failing a read-to-write upgrade.

use sellwindow_domain::*;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Executor, Row, Transaction};
use std::time::Duration;

pub type Tx<'a> = Transaction<'a, Any>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is inconsistent: {0}")]
    Inconsistent(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects and brings the schema up to date. A `sqlite:` URL's folder is created.
    pub async fn connect(url: &str) -> StoreResult<Self> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        };
        if backend == Backend::Sqlite
            && let Some(path) = sqlite_path(url)
            && let Some(dir) = std::path::Path::new(&path).parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Inconsistent(format!("cannot create {dir:?}: {e}")))?;
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 15000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await?;
        let store = Self { pool, backend };
        match backend {
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&store.pool).await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&store.pool).await?,
        }
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn begin(&self) -> StoreResult<Tx<'static>> {
        Ok(self.pool.begin().await?)
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

pub(crate) fn i(v: u32) -> i64 {
    i64::from(v)
}

pub(crate) fn u(row: &AnyRow, col: &str) -> StoreResult<u32> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| StoreError::Inconsistent(format!("{col} out of range: {v}")))
}

/// Appends one business event unless its key is there already. Returns whether it was new:
/// an activity that finds its first event present has already done its work.
#[allow(clippy::too_many_arguments)]
pub async fn emit(
    tx: &mut Tx<'_>,
    key: &str,
    name: &str,
    sell_window: Option<&SellWindowId>,
    product: Option<&ProductId>,
    order: Option<&OrderId>,
    payload: &serde_json::Value,
    at: UnixMillis,
) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO events (event_key, name, sell_window_id, product_id, order_id, payload, occurred_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_key) DO NOTHING",
    )
    .bind(key)
    .bind(name)
    .bind(sell_window.map(|s| s.as_str().to_string()))
    .bind(product.map(|s| s.as_str().to_string()))
    .bind(order.map(|s| s.as_str().to_string()))
    .bind(payload.to_string())
    .bind(at.0)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Who a notification is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Recipient {
    Admin,
    Customer,
}

impl Recipient {
    pub fn as_str(self) -> &'static str {
        match self {
            Recipient::Admin => "ADMIN",
            Recipient::Customer => "CUSTOMER",
        }
    }
}

/// A message for a person, persisted before it is delivered.
#[derive(Debug, Clone, Serialize)]
pub struct Notification {
    pub id: String,
    pub recipient: Recipient,
    pub recipient_id: String,
    pub kind: String,
    pub sell_window_id: Option<SellWindowId>,
    pub product_id: Option<ProductId>,
    pub order_id: Option<OrderId>,
    pub message: String,
    pub created_at: UnixMillis,
}

/// Persists a notification once (its id is derived from what it is about). Returns whether it
/// was new, so only new ones are delivered.
pub async fn save_notification(tx: &mut Tx<'_>, n: &Notification) -> StoreResult<bool> {
    let done = sqlx::query(
        "INSERT INTO notifications (id, recipient_kind, recipient_id, kind, sell_window_id, product_id, order_id, message, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
    )
    .bind(&n.id)
    .bind(n.recipient.as_str())
    .bind(&n.recipient_id)
    .bind(&n.kind)
    .bind(n.sell_window_id.as_ref().map(|s| s.to_string()))
    .bind(n.product_id.as_ref().map(|s| s.to_string()))
    .bind(n.order_id.as_ref().map(|s| s.to_string()))
    .bind(&n.message)
    .bind(n.created_at.0)
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn mark_delivered(store: &Store, id: &str, at: UnixMillis) -> StoreResult<()> {
    sqlx::query(
        "UPDATE notifications SET delivered_at = $1 WHERE id = $2 AND delivered_at IS NULL",
    )
    .bind(at.0)
    .bind(id)
    .execute(store.pool())
    .await?;
    Ok(())
}
