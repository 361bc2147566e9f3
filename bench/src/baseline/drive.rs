//! Driving one level of the baseline: `pgbench` (C, libpq, prepared statements: the strongest
//! client there is) when the machine has it, else the same script's statements from Rust
//! (sqlx, one connection per client).

use super::BaselineLevel;
use super::schema::{Schema, statements};
use crate::load::Latencies;
use sqlx::PgPool;
use std::time::{Duration, Instant};

pub async fn pgbench_available() -> bool {
    tokio::process::Command::new("pgbench")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success())
}

/// One level by pgbench: `clients` clients for `seconds`, each transaction logged.
pub async fn pgbench_level(
    schema: Schema,
    url: &str,
    clients: usize,
    seconds: f64,
    rows: usize,
) -> anyhow::Result<(f64, u64, Latencies)> {
    let dir = std::env::temp_dir().join(format!(
        "sw-pgbench-{}-{}-{clients}",
        std::process::id(),
        schema.name()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("reserve.sql");
    std::fs::write(&script, schema.script(rows))?;
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
    let lat = logged_latencies(&dir)?;
    let _ = std::fs::remove_dir_all(&dir);
    Ok((tps, failed, lat))
}

/// pgbench's per-transaction log lines: client, transaction, latency (µs), script, epoch, µs.
fn logged_latencies(dir: &std::path::Path) -> anyhow::Result<Latencies> {
    let mut lat = Latencies::default();
    for e in std::fs::read_dir(dir)?.flatten() {
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
    Ok(lat)
}

/// One level from Rust: the script's statements one at a time, `clients` connections.
pub async fn sqlx_level(
    schema: Schema,
    pool: &PgPool,
    clients: usize,
    seconds: f64,
    rows: usize,
) -> anyhow::Result<(f64, u64, Latencies)> {
    let script = schema.script(rows);
    let end = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (pool, script) = (pool.clone(), script.clone());
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors, mut seq) = (Latencies::default(), 0u64, 0usize);
            while Instant::now() < end {
                seq += 1;
                let t0 = Instant::now();
                let k = (c + seq) % rows + 1;
                match once(&pool, statements(&script, k, c)).await {
                    Ok(()) if Instant::now() <= end => lat.push(t0.elapsed()),
                    Ok(()) => {}
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
    let (mut lat, mut errors) = (Latencies::default(), 0);
    for t in tasks {
        let (l, e) = t.await?;
        lat.merge(l);
        errors += e;
    }
    let per_sec = lat.summary().count as f64 / seconds;
    Ok((per_sec, errors, lat))
}

/// One transaction: its statements on one connection, in order.
async fn once(pool: &PgPool, statements: Vec<String>) -> Result<(), sqlx::Error> {
    use sqlx::Executor;
    let mut conn = pool.acquire().await?;
    for s in statements {
        if let Err(e) = conn.execute(s.as_str()).await {
            let _ = conn.execute("ROLLBACK").await;
            return Err(e);
        }
    }
    Ok(())
}

/// The level's figures, checked against the tables.
pub async fn level(
    schema: Schema,
    pool: &PgPool,
    clients: usize,
    seconds: f64,
    measured: (f64, u64, Latencies),
) -> anyhow::Result<BaselineLevel> {
    let (per_sec, errors, lat) = measured;
    let s = lat.summary();
    Ok(BaselineLevel {
        clients,
        seconds,
        reservations: s.count,
        reservations_per_sec: per_sec,
        p50_ms: s.p50_ms,
        p95_ms: s.p95_ms,
        p99_ms: s.p99_ms,
        errors,
        consistent: schema.consistent(pool).await?,
    })
}
