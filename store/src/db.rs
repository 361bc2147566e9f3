//! The pool: one schema for SQLite (the embedded default) and PostgreSQL (production),
//! reached through sqlx's `Any` driver so both run the same statements. Every write is one
//! transaction, idempotent by the ids it carries: rows are inserted with `ON CONFLICT DO
//! NOTHING` and counters move only for the rows that actually changed, so a write can run
//! twice. Write transactions start with a write, so SQLite takes its write lock up front
//! (waiting on `busy_timeout`) instead of failing a read-to-write upgrade.

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
    /// A concurrent writer got there first (the transaction rolled back; decide again).
    #[error("a concurrent write got there first: {0}")]
    Conflict(String),
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
    url: String,
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
        let pool = pool_options(backend).connect(url).await?;
        let store = Self {
            pool,
            backend,
            url: url.to_string(),
        };
        match backend {
            Backend::Sqlite => store.migrate_sqlite().await?,
            Backend::Postgres => POSTGRES_MIGRATIONS.run(&store.pool).await?,
        }
        Ok(store)
    }

    /// sqlx locks PostgreSQL migrations but not SQLite ones: when the worker and the API open a
    /// new file at once, each may find a migration unapplied and the slower one fails on the
    /// tables the other made (its transaction rolls back). Asked again, it finds them applied.
    async fn migrate_sqlite(&self) -> StoreResult<()> {
        let mut attempt = 0;
        loop {
            match SQLITE_MIGRATIONS.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 5 => {
                    attempt += 1;
                    tracing::debug!(error = %e, attempt, "SQLite migration raced another process; asking again");
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// A pool of its own on the same database (no migrations: this store ran them). Its
    /// connections open when first used, on the tokio runtime that uses them: a caller on a
    /// runtime of its own gets database I/O that no task of another runtime queues behind.
    /// An in-memory SQLite database is one per pool, so it is shared instead.
    pub fn reopen(&self) -> StoreResult<Self> {
        if self.backend == Backend::Sqlite && sqlite_path(&self.url).is_none() {
            return Ok(self.clone());
        }
        Ok(Self {
            pool: pool_options(self.backend).connect_lazy(&self.url)?,
            backend: self.backend,
            url: self.url.clone(),
        })
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

fn pool_options(backend: Backend) -> AnyPoolOptions {
    AnyPoolOptions::new()
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
}

fn sqlite_path(url: &str) -> Option<String> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| path.to_string())
}

pub fn i(v: u32) -> i64 {
    i64::from(v)
}

pub fn u(row: &AnyRow, col: &str) -> StoreResult<u32> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|_| StoreError::Inconsistent(format!("{col} out of range: {v}")))
}

/// One business event to append (the seed's name, keyed so it is written once).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub key: String,
    pub name: String,
    pub sell_window: Option<SellWindowId>,
    pub product: Option<ProductId>,
    pub order: Option<OrderId>,
    pub payload: serde_json::Value,
    pub at: UnixMillis,
}

/// Rows per multi-row statement (well under SQLite's bound-parameter limit).
pub const ROWS_PER_STATEMENT: usize = 500;

/// `($1,$2,…),($k+1,…)…`: placeholders for `rows` rows of `cols` columns.
pub fn placeholders(rows: usize, cols: usize) -> String {
    let mut sql = String::with_capacity(rows * cols * 5);
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..cols {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("${}", r * cols + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Rows of a multi-row statement, bound as ONE parameter holding a JSON array and read back
/// in array order. The statement's text stays the same whatever the number of rows (prepared
/// once, not once per batch size) and binds one value instead of rows × columns: on a hot
/// listing one reservation write inserts hundreds of rows.
#[derive(Debug, Clone, Copy)]
pub struct JsonRows(pub Backend);

impl JsonRows {
    /// A row's text field (JSON null is SQL NULL).
    pub fn text(self, field: &str) -> String {
        match self.0 {
            Backend::Postgres => format!("r.v->>'{field}'"),
            Backend::Sqlite => format!("json_extract(r.value, '$.{field}')"),
        }
    }

    /// A row's integer field.
    pub fn int(self, field: &str) -> String {
        match self.0 {
            Backend::Postgres => format!("CAST(r.v->>'{field}' AS BIGINT)"),
            Backend::Sqlite => format!("CAST(json_extract(r.value, '$.{field}') AS INTEGER)"),
        }
    }

    /// The array bound as `$param` as a table named `r`, for `UPDATE … FROM` (no order).
    pub fn source(self, param: u32) -> String {
        match self.0 {
            Backend::Postgres => format!("jsonb_array_elements(CAST(${param} AS jsonb)) AS r(v)"),
            Backend::Sqlite => format!("json_each(${param}) AS r"),
        }
    }

    /// `FROM …` over the array bound as `$param`, in order. Ends with a WHERE clause, so an
    /// `INSERT … SELECT` may follow it with `ON CONFLICT` (SQLite's parser needs one).
    pub fn from(self, param: u32) -> String {
        match self.0 {
            Backend::Postgres => format!(
                "FROM jsonb_array_elements(CAST(${param} AS jsonb)) WITH ORDINALITY AS r(v, n) WHERE true ORDER BY r.n"
            ),
            Backend::Sqlite => format!("FROM json_each(${param}) AS r WHERE true ORDER BY r.key"),
        }
    }
}

/// Appends events in order, skipping those whose key is there already. Returns how many
/// were new: an activity that finds its first event present has already done its work.
pub async fn emit_all(tx: &mut Tx<'_>, backend: Backend, events: &[NewEvent]) -> StoreResult<u64> {
    if events.is_empty() {
        return Ok(0);
    }
    let j = JsonRows(backend);
    let sql = format!(
        "INSERT INTO events (event_key, name, sell_window_id, product_id, order_id, payload, occurred_at) \
         SELECT {}, {}, {}, {}, {}, {}, {} {} ON CONFLICT (event_key) DO NOTHING",
        j.text("k"),
        j.text("n"),
        j.text("w"),
        j.text("p"),
        j.text("o"),
        j.text("d"),
        j.int("t"),
        j.from(1)
    );
    let rows: Vec<serde_json::Value> = events
        .iter()
        .map(|e| {
            serde_json::json!({
                "k": e.key,
                "n": e.name,
                "w": e.sell_window,
                "p": e.product,
                "o": e.order,
                "d": e.payload.to_string(),
                "t": e.at.0,
            })
        })
        .collect();
    let done = sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected())
}

/// Appends one event unless its key is there already; returns whether it was new.
#[allow(clippy::too_many_arguments)]
pub async fn emit(
    tx: &mut Tx<'_>,
    backend: Backend,
    key: &str,
    name: &str,
    sell_window: Option<&SellWindowId>,
    product: Option<&ProductId>,
    order: Option<&OrderId>,
    payload: &serde_json::Value,
    at: UnixMillis,
) -> StoreResult<bool> {
    let e = NewEvent {
        key: key.to_string(),
        name: name.to_string(),
        sell_window: sell_window.cloned(),
        product: product.cloned(),
        order: order.cloned(),
        payload: payload.clone(),
        at,
    };
    Ok(emit_all(tx, backend, std::slice::from_ref(&e)).await? == 1)
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

/// Persists notifications once each (ids are derived from what they are about). Returns the
/// ids that were new, so only those are delivered.
///
/// With `claimed_until`, the new rows are claimed for the caller's own delivery until then, so
/// the redelivery loop of any worker leaves them alone while that delivery is under way.
pub async fn save_notifications(
    tx: &mut Tx<'_>,
    notes: &[Notification],
    claimed_until: Option<UnixMillis>,
) -> StoreResult<std::collections::HashSet<String>> {
    let mut new = std::collections::HashSet::new();
    for chunk in notes.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "INSERT INTO notifications (id, recipient_kind, recipient_id, kind, sell_window_id, product_id, order_id, message, created_at, claimed_until) \
             VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
            placeholders(chunk.len(), 10)
        );
        let mut q = sqlx::query(&sql);
        for n in chunk {
            q = q
                .bind(n.id.as_str())
                .bind(n.recipient.as_str())
                .bind(n.recipient_id.as_str())
                .bind(n.kind.as_str())
                .bind(n.sell_window_id.as_ref().map(|s| s.to_string()))
                .bind(n.product_id.as_ref().map(|s| s.to_string()))
                .bind(n.order_id.as_ref().map(|s| s.to_string()))
                .bind(n.message.as_str())
                .bind(n.created_at.0)
                .bind(claimed_until.map(|t| t.0));
        }
        for row in q.fetch_all(&mut **tx).await? {
            new.insert(row.try_get::<String, _>("id")?);
        }
    }
    Ok(new)
}

/// Persists one notification once; returns whether it was new.
pub async fn save_notification(tx: &mut Tx<'_>, n: &Notification) -> StoreResult<bool> {
    Ok(!save_notifications(tx, std::slice::from_ref(n), None)
        .await?
        .is_empty())
}

/// Marks notifications delivered.
pub async fn mark_delivered_all(store: &Store, ids: &[&str], at: UnixMillis) -> StoreResult<()> {
    for chunk in ids.chunks(ROWS_PER_STATEMENT) {
        let list: Vec<String> = (0..chunk.len()).map(|k| format!("${}", k + 2)).collect();
        let sql = format!(
            "UPDATE notifications SET delivered_at = $1 WHERE delivered_at IS NULL AND id IN ({})",
            list.join(",")
        );
        let mut q = sqlx::query(&sql).bind(at.0);
        for id in chunk {
            q = q.bind(*id);
        }
        q.execute(store.pool()).await?;
    }
    Ok(())
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
