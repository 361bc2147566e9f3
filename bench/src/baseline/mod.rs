//! The bar to beat: the seed's own reserve step done raw on PostgreSQL. Per reservation one
//! transaction: `SELECT … FOR UPDATE` on a quota row, `UPDATE … SET sold_qty = sold_qty + 1`
//! (CLOSED at the cap, never past it), `INSERT` the order, `COMMIT`, on one quota row (one hot
//! listing) or on a row picked at random of N (N listings), swept over client counts; the best
//! level is the baseline. It runs twice, each in a scratch database of its own: on the app's
//! own schema (its migrations: `sell_window_quota`, and `orders` with its indexes) and on a
//! bare two-table schema (`quota`, and `orders` with only a primary key), so the app's figure
//! can be read against both the seed's transaction on the same tables and the least a row lock
//! and an insert cost. Driven by PostgreSQL's own `pgbench`; without it on the machine the same
//! script is driven from Rust (sqlx), and the report says so.

mod drive;
pub mod schema;

use schema::Schema;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct BaselineLevel {
    pub clients: usize,
    pub seconds: f64,
    pub reservations: u64,
    pub reservations_per_sec: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    /// Every quota row counts exactly the orders written under it, after the level.
    pub consistent: bool,
}

/// One schema's sweep over client counts.
#[derive(Debug, Serialize)]
pub struct Sweep {
    /// `app` or `bare`.
    pub schema: String,
    /// What drove it, on which schema.
    pub driver: String,
    pub levels: Vec<BaselineLevel>,
    pub best_clients: usize,
    pub best_per_sec: f64,
}

#[derive(Debug, Serialize)]
pub struct Baseline {
    /// Quota rows the reservations spread over (at random): 1 for one hot listing.
    pub rows: usize,
    /// The app's own schema: the baseline the ratios have always been against.
    pub app: Sweep,
    /// The bare two-table schema.
    pub bare: Sweep,
}

impl Baseline {
    /// `per_sec` against each schema's best: (app, bare).
    pub fn ratios(&self, per_sec: f64) -> (f64, f64) {
        let r = |best: f64| if best > 0.0 { per_sec / best } else { 0.0 };
        (r(self.app.best_per_sec), r(self.bare.best_per_sec))
    }
}

/// Whether PostgreSQL answers at `url` (within a few seconds).
pub async fn reachable(url: &str) -> bool {
    let Ok(opts) = PgConnectOptions::from_str(url) else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), opts.connect()).await,
        Ok(Ok(_))
    )
}

/// `url` with its database name replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let base = match base.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('/') {
            Some((host, _)) => format!("{scheme}://{host}/{db}"),
            None => format!("{scheme}://{rest}/{db}"),
        },
        None => base.to_string(),
    };
    match query {
        Some(q) => format!("{base}?{q}"),
        None => base,
    }
}

pub async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<String> {
    let mut c = sqlx::PgConnection::connect(admin_url).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut c)
        .await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut c)
        .await?;
    c.close().await?;
    Ok(with_database(admin_url, name))
}

pub async fn drop_database(admin_url: &str, name: &str) {
    let r = async {
        let mut c = sqlx::PgConnection::connect(admin_url).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut c)
            .await?;
        c.close().await?;
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = r {
        eprintln!("warning: could not drop the scratch database {name}: {e:#}");
    }
}

/// Both sweeps, interleaved (at each client count the app's schema, then the bare one), so
/// both see the machine alike; each schema in a scratch database made and dropped for it.
pub async fn run(
    admin_url: &str,
    clients: &[usize],
    seconds: f64,
    rows: usize,
) -> anyhow::Result<Baseline> {
    let rows = rows.max(1);
    let with_pgbench = drive::pgbench_available().await;
    println!(
        "\nbaseline: {} the seed's reserve step (SELECT … FOR UPDATE, UPDATE, INSERT, COMMIT), {}, {seconds} s per level, on {} and on {}",
        if with_pgbench {
            "pgbench running"
        } else {
            "sqlx running (no pgbench here)"
        },
        over(rows),
        Schema::App.describe(),
        Schema::Bare.describe()
    );
    let schemas = [Schema::App, Schema::Bare];
    let mut scratch = Vec::new();
    for schema in schemas {
        let made = Scratch::make(schema, admin_url, clients, with_pgbench).await;
        match made {
            Ok(s) => scratch.push(s),
            Err(e) => {
                for s in scratch {
                    s.remove(admin_url).await;
                }
                return Err(e);
            }
        }
    }
    let r = sweep(&mut scratch, clients, seconds, rows, with_pgbench).await;
    for s in scratch {
        s.remove(admin_url).await;
    }
    let [app, bare] = r?;
    Ok(Baseline { rows, app, bare })
}

/// One schema's scratch database, its tables made, and its levels so far.
struct Scratch {
    schema: Schema,
    url: String,
    pool: sqlx::PgPool,
    levels: Vec<BaselineLevel>,
}

impl Scratch {
    async fn make(
        schema: Schema,
        admin_url: &str,
        clients: &[usize],
        with_pgbench: bool,
    ) -> anyhow::Result<Self> {
        let url = create_database(admin_url, &schema.database()).await?;
        let max = clients.iter().copied().max().unwrap_or(1) as u32;
        let pool = PgPoolOptions::new()
            .max_connections(if with_pgbench { 2 } else { max.max(2) })
            .acquire_timeout(Duration::from_secs(30))
            .connect(&url)
            .await?;
        schema.create(&url, &pool).await?;
        Ok(Self {
            schema,
            url,
            pool,
            levels: Vec::new(),
        })
    }

    async fn remove(self, admin_url: &str) {
        self.pool.close().await;
        drop_database(admin_url, &self.schema.database()).await;
    }

    async fn level(
        &mut self,
        clients: usize,
        seconds: f64,
        rows: usize,
        with_pgbench: bool,
    ) -> anyhow::Result<()> {
        let (schema, pool) = (self.schema, &self.pool);
        schema.reset(pool, rows).await?;
        let measured = if with_pgbench {
            drive::pgbench_level(schema, &self.url, clients, seconds, rows).await?
        } else {
            drive::sqlx_level(schema, pool, clients, seconds, rows).await?
        };
        let level = drive::level(schema, pool, clients, seconds, measured).await?;
        print_level(schema, &level);
        self.levels.push(level);
        Ok(())
    }

    fn sweep(&mut self, with_pgbench: bool) -> anyhow::Result<Sweep> {
        let levels = std::mem::take(&mut self.levels);
        let best = levels
            .iter()
            .max_by(|a, b| a.reservations_per_sec.total_cmp(&b.reservations_per_sec))
            .ok_or_else(|| anyhow::anyhow!("no baseline level ran"))?;
        let driver = if with_pgbench {
            "pgbench"
        } else {
            "sqlx (no pgbench here)"
        };
        Ok(Sweep {
            schema: self.schema.name().into(),
            driver: format!("{driver} on {}", self.schema.describe()),
            best_clients: best.clients,
            best_per_sec: best.reservations_per_sec,
            levels,
        })
    }
}

/// Every client count on each schema in turn; the two sweeps (app, bare).
async fn sweep(
    scratch: &mut [Scratch],
    clients: &[usize],
    seconds: f64,
    rows: usize,
    with_pgbench: bool,
) -> anyhow::Result<[Sweep; 2]> {
    for &n in clients {
        for s in scratch.iter_mut() {
            s.level(n, seconds, rows, with_pgbench).await?;
        }
    }
    let [app, bare] = scratch else {
        anyhow::bail!("two schemas expected");
    };
    Ok([app.sweep(with_pgbench)?, bare.sweep(with_pgbench)?])
}

/// What the reservations spread over, in words.
fn over(rows: usize) -> String {
    match rows {
        1 => "one quota row".to_string(),
        n => format!("a quota row at random of {n}"),
    }
}

fn print_level(schema: Schema, level: &BaselineLevel) {
    let failed = if level.errors > 0 {
        format!("  ({} failed transactions)", level.errors)
    } else {
        String::new()
    };
    let consistent = if level.consistent {
        ""
    } else {
        "  (rows and orders DISAGREE)"
    };
    println!(
        "  {:>3} clients, {:<4} schema: {:>8.0} reservations/s  p50 {:>6.1} ms  p99 {:>6.1} ms{failed}{consistent}",
        level.clients,
        schema.name(),
        level.reservations_per_sec,
        level.p50_ms,
        level.p99_ms,
    );
}
