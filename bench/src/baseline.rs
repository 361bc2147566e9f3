//! The bar to beat: the seed's own reserve step done raw on PostgreSQL. Per reservation one
//! transaction: `SELECT … FROM sell_window_quota … FOR UPDATE`, `UPDATE … SET sold_qty =
//! sold_qty + 1` (CLOSED at the cap, never past it), `INSERT INTO orders …`, commit, on one
//! quota row (one hot listing) or on a row picked at random of N (N listings). It runs on
//! a scratch database with the app's own schema (its migrations), driven by PostgreSQL's own
//! `pgbench` (C, libpq, prepared statements: the strongest client there is) swept over client
//! counts; the best level is the baseline. Without `pgbench` on the machine the same
//! transaction is driven from Rust (sqlx), and the report says so.

use crate::load::Latencies;
use serde::Serialize;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use std::str::FromStr;
use std::time::{Duration, Instant};

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
    /// sold_qty == number of orders written at this level.
    pub consistent: bool,
}

#[derive(Debug, Serialize)]
pub struct Baseline {
    pub database: String,
    /// Quota rows the reservations spread over (at random): 1 for one hot listing.
    pub rows: usize,
    pub levels: Vec<BaselineLevel>,
    pub best_clients: usize,
    pub best_per_sec: f64,
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

pub async fn run(
    admin_url: &str,
    clients: &[usize],
    seconds: f64,
    rows: usize,
) -> anyhow::Result<Baseline> {
    let rows = rows.max(1);
    let name = format!("sw_bench_{}", std::process::id());
    let url = create_database(admin_url, &name).await?;
    let with_pgbench = pgbench_available().await;
    let r = if with_pgbench {
        pgbench_sweep(&url, clients, seconds, rows).await
    } else {
        sweep(&url, clients, seconds, rows).await
    };
    drop_database(admin_url, &name).await;
    let levels = r?;
    let best = levels
        .iter()
        .max_by(|a, b| a.reservations_per_sec.total_cmp(&b.reservations_per_sec))
        .ok_or_else(|| anyhow::anyhow!("no baseline level ran"))?;
    Ok(Baseline {
        database: if with_pgbench {
            "pgbench on PostgreSQL (scratch database, the app's schema)".into()
        } else {
            "sqlx on PostgreSQL (no pgbench here; scratch database, the app's schema)".into()
        },
        rows,
        best_clients: best.clients,
        best_per_sec: best.reservations_per_sec,
        levels,
    })
}

async fn sweep(
    url: &str,
    clients: &[usize],
    seconds: f64,
    rows: usize,
) -> anyhow::Result<Vec<BaselineLevel>> {
    let max = clients.iter().copied().max().unwrap_or(1) as u32;
    let pool = scratch_pool(url, max).await?;
    println!(
        "\nbaseline: the seed's reserve step raw on PostgreSQL (SELECT … FOR UPDATE, UPDATE, INSERT, COMMIT), {}, {seconds} s per level",
        over(rows)
    );
    let mut levels = Vec::new();
    for &n in clients {
        let level = one_level(&pool, n, seconds, rows).await?;
        print_level(&level, "errors");
        levels.push(level);
    }
    pool.close().await;
    Ok(levels)
}

/// The scratch database given the app's own schema (by its own migrations), and a pool of
/// `connections` to it.
async fn scratch_pool(url: &str, connections: u32) -> anyhow::Result<PgPool> {
    let store = sellwindow_activities::Store::connect(url).await?;
    store.pool().close().await;
    Ok(PgPoolOptions::new()
        .max_connections(connections)
        .min_connections(connections)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await?)
}

/// What the reservations spread over, in words.
fn over(rows: usize) -> String {
    match rows {
        1 => "one quota row".to_string(),
        n => format!("a quota row at random of {n}"),
    }
}

/// The quota rows of one level: `{prefix}-1` … `{prefix}-{rows}`, of product `prd-baseline`.
async fn quota_rows(pool: &PgPool, prefix: &str, rows: usize) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO sell_window_quota (sell_window_id, product_id, min_qty, max_qty, sold_qty, status) \
         SELECT $1 || '-' || k, 'prd-baseline', 1, 1000000000, 0, 'OPEN' FROM generate_series(1, $2) AS k",
    )
    .bind(prefix)
    .bind(rows as i32)
    .execute(pool)
    .await?;
    Ok(())
}

/// Whether every quota row of the level counts exactly the orders written under it.
async fn consistent(pool: &PgPool, prefix: &str) -> anyhow::Result<bool> {
    let (bad,): (i64,) = sqlx::query_as(
        "SELECT COUNT(*) FROM sell_window_quota q \
         WHERE q.sell_window_id LIKE $1 || '-%' \
           AND q.sold_qty <> (SELECT COUNT(*) FROM orders o WHERE o.sell_window_id = q.sell_window_id)",
    )
    .bind(prefix)
    .fetch_one(pool)
    .await?;
    Ok(bad == 0)
}

async fn one_level(
    pool: &PgPool,
    clients: usize,
    seconds: f64,
    rows: usize,
) -> anyhow::Result<BaselineLevel> {
    let prefix = format!("sw-baseline-{clients}");
    let p = "prd-baseline";
    quota_rows(pool, &prefix, rows).await?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let pool = pool.clone();
        let prefix = prefix.clone();
        tasks.push(tokio::spawn(async move {
            let customer = format!("cus-baseline-{c}");
            let mut lat = Latencies::default();
            let mut errors = 0u64;
            let mut seq = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                seq += 1;
                let id = format!("ord-b{clients}-{c}-{seq}");
                let sw = format!("{prefix}-{}", (c + seq as usize) % rows + 1);
                match reserve_once(&pool, &sw, p, &customer, &id).await {
                    Ok(true) => {
                        let t1 = Instant::now();
                        if t1 <= end {
                            lat.push(t1 - t0);
                        }
                    }
                    Ok(false) => errors += 1,
                    Err(e) => {
                        errors += 1;
                        if errors < 3 {
                            eprintln!("baseline error: {e}");
                        }
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Latencies::default();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await?;
        lat.merge(l);
        errors += e;
    }
    let elapsed = seconds;
    let consistent = consistent(pool, &prefix).await?;
    let s = lat.summary();
    Ok(BaselineLevel {
        clients,
        seconds: elapsed,
        reservations: s.count,
        reservations_per_sec: s.count as f64 / elapsed,
        p50_ms: s.p50_ms,
        p95_ms: s.p95_ms,
        p99_ms: s.p99_ms,
        errors,
        consistent,
    })
}

/// One reservation the seed's way. `Ok(false)`: refused (no room or not OPEN).
async fn reserve_once(
    pool: &PgPool,
    sw: &str,
    p: &str,
    customer: &str,
    order_id: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let (max, sold, status): (i64, i64, String) = sqlx::query_as(
        "SELECT max_qty, sold_qty, status FROM sell_window_quota \
         WHERE sell_window_id = $1 AND product_id = $2 FOR UPDATE",
    )
    .bind(sw)
    .bind(p)
    .fetch_one(&mut *tx)
    .await?;
    if status != "OPEN" || sold + 1 > max {
        tx.rollback().await?;
        return Ok(false);
    }
    sqlx::query(
        "UPDATE sell_window_quota SET sold_qty = sold_qty + 1, \
         status = CASE WHEN sold_qty + 1 >= max_qty THEN 'CLOSED' ELSE status END \
         WHERE sell_window_id = $1 AND product_id = $2",
    )
    .bind(sw)
    .bind(p)
    .execute(&mut *tx)
    .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    sqlx::query(
        "INSERT INTO orders (id, sell_window_id, product_id, customer_id, qty, currency, amount_minor, \
         status, created_at, updated_at) VALUES ($1, $2, $3, $4, 1, 'TWD', 45000, 'RESERVED', $5, $5)",
    )
    .bind(order_id)
    .bind(sw)
    .bind(p)
    .bind(customer)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

async fn pgbench_available() -> bool {
    tokio::process::Command::new("pgbench")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// The seed's reserve transaction as a pgbench script, on a quota row of `{prefix}-1` …
/// `{prefix}-{rows}` picked at random per transaction.
fn pgbench_script(prefix: &str, rows: usize) -> String {
    let sw = format!("'{prefix}-' || :k::int");
    format!(
        "\\set k random(1, {rows})\n\
         BEGIN;\n\
         SELECT max_qty, sold_qty, status FROM sell_window_quota WHERE sell_window_id = {sw} AND product_id = 'prd-baseline' FOR UPDATE;\n\
         UPDATE sell_window_quota SET sold_qty = sold_qty + 1, status = CASE WHEN sold_qty + 1 >= max_qty THEN 'CLOSED' ELSE status END \
         WHERE sell_window_id = {sw} AND product_id = 'prd-baseline' AND status = 'OPEN' AND sold_qty + 1 <= max_qty;\n\
         INSERT INTO orders (id, sell_window_id, product_id, customer_id, qty, currency, amount_minor, status, created_at, updated_at) \
         VALUES ('ord-pg-' || gen_random_uuid(), {sw}, 'prd-baseline', 'cus-pg-' || :client_id, 1, 'TWD', 45000, 'RESERVED', 0, 0);\n\
         COMMIT;\n"
    )
}

async fn pgbench_sweep(
    url: &str,
    clients: &[usize],
    seconds: f64,
    rows: usize,
) -> anyhow::Result<Vec<BaselineLevel>> {
    let pool = scratch_pool(url, 2).await?;
    println!(
        "\nbaseline: pgbench running the seed's reserve step (SELECT … FOR UPDATE, UPDATE, INSERT, COMMIT), {}, {seconds} s per level",
        over(rows)
    );
    let mut levels = Vec::new();
    for &n in clients {
        let level = pgbench_level(&pool, url, n, seconds, rows).await?;
        print_level(&level, "failed transactions");
        levels.push(level);
    }
    pool.close().await;
    Ok(levels)
}

async fn pgbench_level(
    pool: &PgPool,
    url: &str,
    clients: usize,
    seconds: f64,
    rows: usize,
) -> anyhow::Result<BaselineLevel> {
    let prefix = format!("sw-pgbench-{clients}");
    quota_rows(pool, &prefix, rows).await?;
    let dir = std::env::temp_dir().join(format!("sw-pgbench-{}-{clients}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("reserve.sql");
    std::fs::write(&script, pgbench_script(&prefix, rows))?;
    let out = tokio::process::Command::new("pgbench")
        .args(["-n", "-M", "prepared", "-l"])
        .arg(format!("--log-prefix={}", dir.join("tx").display()))
        .args(["-c", &clients.to_string()])
        .args(["-j", &clients.min(2).to_string()])
        .args(["-T", &(seconds.ceil() as u64).max(1).to_string()])
        .arg("-f")
        .arg(&script)
        .arg(url)
        .output()
        .await?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    anyhow::ensure!(
        out.status.success(),
        "pgbench failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |prefix: &str| -> Option<f64> {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    let tps =
        field("tps =").ok_or_else(|| anyhow::anyhow!("no tps in pgbench's output: {text}"))?;
    let failed = field("number of failed transactions:").unwrap_or(0.0) as u64;
    // Per-transaction log lines: client, transaction, latency (µs), script, epoch, µs.
    let mut lat = Latencies::default();
    for e in std::fs::read_dir(&dir)?.flatten() {
        if !e.file_name().to_string_lossy().starts_with("tx") {
            continue;
        }
        for line in std::fs::read_to_string(e.path())?.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<u64>().ok())
            {
                lat.push(Duration::from_micros(us));
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    let consistent = consistent(pool, &prefix).await?;
    let s = lat.summary();
    Ok(BaselineLevel {
        clients,
        seconds,
        reservations: s.count,
        reservations_per_sec: tps,
        p50_ms: s.p50_ms,
        p95_ms: s.p95_ms,
        p99_ms: s.p99_ms,
        errors: failed,
        consistent,
    })
}

/// One line per level; `errors` names what its errors count.
fn print_level(level: &BaselineLevel, errors: &str) {
    let failed = if level.errors > 0 {
        format!("  ({} {errors})", level.errors)
    } else {
        String::new()
    };
    println!(
        "  {:>3} clients: {:>8.0} reservations/s  p50 {:>6.1} ms  p99 {:>6.1} ms{failed}",
        level.clients, level.reservations_per_sec, level.p50_ms, level.p99_ms,
    );
}
