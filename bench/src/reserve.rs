//! `bench reserve`: one hot listing per level (64, 256, 512 customers by default), each on a
//! fresh listing with a large cap, every reservation through the real API: the API's reserve
//! transaction (every reservation waiting in the process in one transaction, the quota row
//! locked) and the coalesced progress signals to the listing's workflow. After each level: the
//! CPU the system used per reservation (every API, the worker, the Temporal server and
//! PostgreSQL; the simulated customers apart), the listing's workflow history over all its runs
//! per reservation, the API's transactions, and the checks (nothing oversold, the row, the
//! orders and the workflow agree, no answer lost).
//!
//! `--repeat N` runs each level N times, `--apis 1,3` each with one and with three API
//! processes (interleaved, so both see the same machine); the table gives each level's median
//! with the lowest and highest.

use crate::args::Args;
use crate::check::{self, ListingCheck};
use crate::cpu;
use crate::load::{self, LoadResult, LoadSpec};
use crate::metrics::{self, Transactions};
use crate::pgstats::{self, PgWork};
use crate::report::{self, Report};
use crate::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct ReserveLevel {
    pub customers: usize,
    /// Which run of the level this is (0-based; `--repeat` runs each level more than once).
    pub repeat: usize,
    /// API processes the connections were spread over.
    pub apis: usize,
    pub connections: usize,
    pub load: LoadResult,
    /// reservations/s divided by pgbench's best on the app's schema, and on the bare one.
    pub ratio_to_baseline: Option<f64>,
    pub ratio_to_bare: Option<f64>,
    /// History events (all runs) per reservation written.
    pub history_events_per_reservation: f64,
    /// Signals the listing's workflow took per second of load (the API's progress signals).
    pub signals_per_second: f64,
    /// The API's reserve transactions over the level.
    pub transactions: Transactions,
    /// CPU used during the measured window, in cores (2 on this machine), by part.
    pub cpu_cores: BTreeMap<String, f64>,
    /// Every API, the worker, the Temporal server and PostgreSQL together (cores), and per
    /// reservation (µs); the simulated customers apart.
    pub system_cores: f64,
    pub system_us_per_reservation: f64,
    pub client_us_per_reservation: f64,
    pub temporal_server_cores: f64,
    pub check: ListingCheck,
    /// PostgreSQL's own counters over the level (warm-up and tail included).
    pub db: Option<PgWork>,
    /// The worker's mean ms per kind of write that ran (the workflow's own writes).
    pub worker_writes: BTreeMap<String, f64>,
    /// Peak resident memory of the API and worker processes so far (MiB), when they run as
    /// processes.
    pub peak_rss_mib: BTreeMap<String, f64>,
}

/// One level as asked for.
struct Plan {
    customers: usize,
    repeat: usize,
    apis: usize,
    seconds: f64,
    warmup: f64,
    cap: u32,
    per_conn: usize,
}

pub async fn run(stack: &Stack, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let levels = args.list(
        "customers",
        if args.smoke {
            &[4, 16]
        } else {
            &[64, 256, 512]
        },
    )?;
    let apis = args.apis()?;
    let seconds = args.float("seconds", if args.smoke { 2.0 } else { 20.0 })?;
    let warmup = args.float("warmup", if args.smoke { 0.5 } else { 1.0 })?;
    let cap = args.int("cap", 1_000_000)? as u32;
    let per_conn = args.int("clients-per-connection", 1)? as usize;
    let repeat = args.int("repeat", 1)?.max(1) as usize;
    println!(
        "\nreserve: one hot listing per level (cap {cap}), {warmup} s warm-up + {seconds} s measured, through gRPC with tokens and idempotency keys; API processes {apis:?}"
    );
    let mut i = 0;
    for &customers in &levels {
        for k in 0..repeat {
            // Every other repeat in the other order, so neither API count always runs first
            // (on a database that grows run by run).
            let mut order = apis.clone();
            if k % 2 == 1 {
                order.reverse();
            }
            for &a in &order {
                let plan = Plan {
                    customers,
                    repeat: k,
                    apis: a.min(stack.api_count()),
                    seconds,
                    warmup,
                    cap,
                    per_conn,
                };
                let level = level(stack, &plan, &format!("r{i}"), report).await?;
                report::print_reserve_level(&level);
                report.reserve.push(level);
                i += 1;
            }
        }
    }
    report::print_reserve_table(report);
    Ok(())
}

async fn level(
    stack: &Stack,
    plan: &Plan,
    tag: &str,
    report: &mut Report,
) -> anyhow::Result<ReserveLevel> {
    let hour = Duration::from_secs(3600);
    let windows = stack.listings(1, 1, plan.cap, hour, hour, tag).await?;
    let targets = check::targets(&windows);
    let clients = stack
        .connections_on(plan.customers, plan.per_conn, plan.apis)
        .await?;
    let spec = LoadSpec {
        targets: targets.clone(),
        customers_per_target: plan.customers,
        warmup: Duration::from_secs_f64(plan.warmup),
        measure: Duration::from_secs_f64(plan.seconds),
        tag: tag.to_string(),
        stop_after: None,
    };
    let (m0, w0) = (stack.api_metrics().await, stack.worker_metrics().await);
    let pg0 = pgstats::sample(&stack.store).await;
    let sampler = cpu::Sampler::window(stack.parts(), spec.warmup, spec.measure);
    let load = load::run(&clients, &spec).await;
    let cpu_cores = sampler.finish().await;
    let db = pgstats::after(&stack.store, pg0, load.reservations_ok_total).await;
    let (m1, w1) = (stack.api_metrics().await, stack.worker_metrics().await);
    let what = format!(
        "reserve {} customers on {} API(s)",
        plan.customers, plan.apis
    );
    let checks = check::checked(stack, &targets, &load, &what, report).await?;
    let check = checks.into_iter().next().unwrap_or_default();
    let (ratio_to_baseline, ratio_to_bare) = match &report.baseline {
        Some(b) => {
            let (app, bare) = b.ratios(load.reservations_per_sec);
            (Some(app), Some(bare))
        }
        None => (None, None),
    };
    let system_cores = cpu::system_cores(&cpu_cores);
    let per_sec = load.reservations_per_sec;
    Ok(ReserveLevel {
        customers: plan.customers,
        repeat: plan.repeat,
        apis: plan.apis,
        connections: clients.len(),
        ratio_to_baseline,
        ratio_to_bare,
        history_events_per_reservation: check.history_events as f64
            / check.orders_in_db.max(1) as f64,
        signals_per_second: check.signals as f64 / load.total_seconds.max(1e-3),
        transactions: metrics::transactions(&m0, &m1),
        system_cores,
        system_us_per_reservation: cpu::micros_per(system_cores, per_sec),
        client_us_per_reservation: cpu::micros_per(cpu::client_cores(&cpu_cores), per_sec),
        temporal_server_cores: cpu_cores.get("temporal server").copied().unwrap_or(0.0),
        load,
        check,
        cpu_cores,
        db,
        worker_writes: metrics::write_means(&w0, &w1),
        peak_rss_mib: stack.peak_rss_mib(),
    })
}
