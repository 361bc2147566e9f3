//! `bench reserve`: one hot listing per level (64, 256, 512 customers by default), each on a
//! fresh listing with a large cap, every reservation through the real API. After each level:
//! the listing's workflow history over all its runs, and the no-oversell checks.

use crate::args::Args;
use crate::cpu;
use crate::load::{self, LoadResult, LoadSpec, Target};
use crate::pgstats::{self, PgWork};
use crate::report::{self, Report};
use crate::runs::{HandOverGap, TaskProfile, analyse_runs, history_events};
use crate::stack::Stack;
use sellwindow_api::pb;
use sellwindow_domain::{ProductId, SellWindowId};
use sellwindow_workflows::ListingWorkflow;
use serde::Serialize;
use std::time::Duration;
use temporalio_client::WorkflowQueryOptions;

/// The state of one listing after a run, from the database and from its workflow.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListingCheck {
    pub workflow_id: String,
    /// The quota row's sold_qty and max_qty.
    pub sold: u32,
    pub cap: u32,
    /// The sum over the orders holding quota (RESERVED, PAYMENT_REQUESTED, PAID).
    pub held_by_orders: u32,
    /// Every order row of the listing.
    pub orders_in_db: u64,
    /// sold_qty in the workflow's own state (query), if it answered.
    pub workflow_sold: Option<u32>,
    /// History events summed over every run of the listing's workflow.
    pub history_events: u64,
    pub runs: u32,
    /// Events of each run (Temporal warns at 10,240 and terminates a run at 51,200).
    pub run_events: Vec<u64>,
    /// Bytes of each run's history (Temporal warns at 10 MB and terminates a run at 50 MB).
    pub run_bytes: Vec<u64>,
    pub oversold: bool,
    pub consistent: bool,
}

pub async fn check_listing(stack: &Stack, t: &Target) -> anyhow::Result<ListingCheck> {
    let sw = SellWindowId::parse(t.sell_window_id.clone())?;
    let p = ProductId::parse(t.product_id.clone())?;
    let (sold, cap, held) = stack.store.quota_check(&sw, &p).await?;
    let orders_in_db: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders WHERE sell_window_id = $1 AND product_id = $2",
    )
    .bind(sw.as_str())
    .bind(p.as_str())
    .fetch_one(stack.store.pool())
    .await?;
    let workflow_sold = tokio::time::timeout(
        Duration::from_secs(10),
        stack
            .client
            .get_workflow_handle::<ListingWorkflow>(&t.workflow_id)
            .query(
                ListingWorkflow::figures,
                (),
                WorkflowQueryOptions::default(),
            ),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .map(|f| f.sold_qty);
    let (history_events, run_events, run_bytes) = history_events(stack, &t.workflow_id).await?;
    if let Some(big) = run_events.iter().max().filter(|n| **n > 10_240) {
        println!(
            "  warning: a run of {} has {big} history events (Temporal warns past 10,240 and terminates a run at 51,200)",
            t.workflow_id
        );
    }
    if let Some(big) = run_bytes.iter().max().filter(|n| **n > 10 << 20) {
        println!(
            "  warning: a run of {} has {:.1} MB of history (Temporal warns past 10 MB and terminates a run at 50 MB)",
            t.workflow_id,
            *big as f64 / (1 << 20) as f64
        );
    }
    Ok(ListingCheck {
        workflow_id: t.workflow_id.clone(),
        sold,
        cap,
        held_by_orders: held,
        orders_in_db: orders_in_db as u64,
        workflow_sold,
        history_events,
        runs: run_events.len() as u32,
        run_events,
        run_bytes,
        oversold: sold > cap || held > cap,
        // The workflow must answer, and agree.
        consistent: sold == held && workflow_sold == Some(sold),
    })
}

pub fn targets(windows: &[pb::SellWindow]) -> Vec<Target> {
    windows
        .iter()
        .flat_map(|w| {
            w.listings.iter().map(|l| Target {
                sell_window_id: w.id.clone(),
                product_id: l.product_id.clone(),
                workflow_id: l.workflow_id.clone(),
            })
        })
        .collect()
}

#[derive(Debug, Serialize)]
pub struct ReserveLevel {
    pub customers: usize,
    /// Which run of the level this is (0-based; `--repeat` runs each level more than once).
    pub repeat: usize,
    pub connections: usize,
    /// API processes the connections were spread over.
    pub apis: usize,
    pub load: LoadResult,
    /// reservations/s divided by the baseline's best.
    pub ratio_to_baseline: Option<f64>,
    /// History events (all runs) per reservation written.
    pub history_events_per_reservation: f64,
    /// Reserve updates the API sent, and reservations per update (the coalesced batch size).
    pub reserve_updates: u64,
    pub reserve_update_retries: u64,
    pub reservations_per_update: f64,
    pub check: ListingCheck,
    /// CPU used during the measured window, in cores (2 on this machine), by part.
    pub cpu_cores: std::collections::BTreeMap<String, f64>,
    /// PostgreSQL's own counters over the level (warm-up and tail included).
    pub db: Option<PgWork>,
    /// Each continue-as-new during the level: how long reservations were turned away.
    pub hand_overs: Vec<HandOverGap>,
    /// The listing's workflow tasks (the single writer's cycle).
    pub tasks: TaskProfile,
    /// Mean milliseconds of each step of a reservation in the API (`update` is per update).
    pub api_stages: std::collections::BTreeMap<String, f64>,
    /// The worker's mean ms per kind of write, and `orders_per_record`.
    pub worker_writes: std::collections::BTreeMap<String, f64>,
    /// Peak resident memory of the API and worker processes so far (MiB), when they run as
    /// processes.
    pub peak_rss_mib: std::collections::BTreeMap<String, f64>,
}

/// Checks the listings after a load. Fails (in `report.failures`) on oversell, disagreement,
/// lost answers or errors.
pub async fn checked(
    stack: &Stack,
    targets: &[Target],
    load: &LoadResult,
    what: &str,
    report: &mut Report,
) -> anyhow::Result<Vec<ListingCheck>> {
    let checks = consistent(stack, targets, load, what, report).await?;
    if load.errors_total > 0 {
        report.fail(format!(
            "{what}: {} reservations failed: {:?} (e.g. {:?})",
            load.errors_total, load.errors, load.error_samples
        ));
    }
    Ok(checks)
}

/// Checks the listings after a load whose refusals are expected (overload): fails on
/// oversell, disagreement or lost answers only.
pub async fn consistent(
    stack: &Stack,
    targets: &[Target],
    load: &LoadResult,
    what: &str,
    report: &mut Report,
) -> anyhow::Result<Vec<ListingCheck>> {
    let mut checks = Vec::new();
    let mut orders = 0u64;
    for t in targets {
        let c = check_listing(stack, t).await?;
        if c.oversold {
            report.fail(format!(
                "{what}: OVERSOLD {}: sold {} / held {} over cap {}",
                t.workflow_id, c.sold, c.held_by_orders, c.cap
            ));
        }
        if !c.consistent {
            report.fail(format!(
                "{what}: {} disagrees: quota row sold {}, orders hold {}, workflow says {:?}",
                t.workflow_id, c.sold, c.held_by_orders, c.workflow_sold
            ));
        }
        orders += c.orders_in_db;
        checks.push(c);
    }
    if orders < load.reservations_ok_total {
        report.fail(format!(
            "{what}: {} reservations answered with an order but only {orders} orders in the database",
            load.reservations_ok_total
        ));
    }
    Ok(checks)
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
    let seconds = args.float("seconds", if args.smoke { 2.0 } else { 20.0 })?;
    let warmup = args.float("warmup", if args.smoke { 0.5 } else { 1.0 })?;
    let cap = args.int("cap", 1_000_000)? as u32;
    let per_conn = args.int("clients-per-connection", 1)? as usize;
    let repeat = args.int("repeat", 1)?.max(1) as usize;
    let runs: Vec<(usize, usize)> = levels
        .iter()
        .flat_map(|&n| (0..repeat).map(move |k| (n, k)))
        .collect();
    println!(
        "\nreserve: one hot listing per level (cap {cap}), {warmup} s warm-up + {seconds} s measured, through gRPC with tokens and idempotency keys"
    );
    for (i, &(n, k)) in runs.iter().enumerate() {
        let windows = stack
            .listings(
                1,
                1,
                cap,
                Duration::from_secs(3600),
                Duration::from_secs(3600),
                &format!("r{i}"),
            )
            .await?;
        let targets = targets(&windows);
        let clients = stack.connections(n, per_conn).await?;
        let m0 = stack.api_metrics().await;
        let w0 = stack.worker_metrics().await;
        let spec = LoadSpec {
            targets: targets.clone(),
            customers_per_target: n,
            warmup: Duration::from_secs_f64(warmup),
            measure: Duration::from_secs_f64(seconds),
            tag: format!("r{i}"),
            stop_after: None,
        };
        let pg0 = pgstats::sample(&stack.store).await;
        let sampler = cpu::Sampler::window(stack.pids(), spec.warmup, spec.measure);
        let load = load::run(&clients, &spec).await;
        let cpu_cores = sampler.finish().await;
        let db = pgstats::after(&stack.store, pg0, load.reservations_ok_total).await;
        let m1 = stack.api_metrics().await;
        let w1 = stack.worker_metrics().await;
        let what = format!("reserve {n} customers");
        let checks = checked(stack, &targets, &load, &what, report).await?;
        let check = checks.into_iter().next().unwrap_or_default();
        let updates = metric_delta(&m0, &m1, "sellwindow_reserve_updates_total");
        let retries = metric_delta(&m0, &m1, "sellwindow_reserve_update_retries_total");
        let runs = analyse_runs(stack, &check.workflow_id).await?;
        let api_stages = stage_means(&m0, &m1);
        let worker_writes = write_means(&w0, &w1);
        let level = ReserveLevel {
            customers: n,
            repeat: k,
            connections: clients.len(),
            apis: stack.api_count(),
            ratio_to_baseline: report
                .baseline
                .as_ref()
                .map(|b| load.reservations_per_sec / b.best_per_sec),
            history_events_per_reservation: check.history_events as f64
                / check.orders_in_db.max(1) as f64,
            reserve_updates: updates,
            reserve_update_retries: retries,
            reservations_per_update: check.orders_in_db as f64 / updates.max(1) as f64,
            load,
            check,
            cpu_cores,
            db,
            hand_overs: runs.hand_overs,
            tasks: runs.tasks,
            api_stages,
            worker_writes,
            peak_rss_mib: stack.peak_rss_mib(),
        };
        report::print_reserve_level(&level);
        report.reserve.push(level);
    }
    report::print_reserve_table(report);
    Ok(())
}

/// The API's mean time per step over the level, from its `sellwindow_reserve_stage_seconds`.
pub fn stage_means(
    a: &std::collections::BTreeMap<String, f64>,
    b: &std::collections::BTreeMap<String, f64>,
) -> std::collections::BTreeMap<String, f64> {
    summary_means(a, b, "sellwindow_reserve_stage_seconds", "stage")
}

/// The worker's mean time per kind of write over the level (ms), and the orders per
/// reservation write (`orders_per_record`).
pub fn write_means(
    a: &std::collections::BTreeMap<String, f64>,
    b: &std::collections::BTreeMap<String, f64>,
) -> std::collections::BTreeMap<String, f64> {
    let mut out = summary_means(a, b, "sellwindow_worker_write_seconds", "write");
    let records = metric_delta(
        a,
        b,
        "sellwindow_worker_write_seconds_count{write=\"record_orders\"}",
    );
    let orders = metric_delta(a, b, "sellwindow_worker_orders_recorded_total");
    if records > 0 {
        out.insert("orders_per_record".into(), orders as f64 / records as f64);
    }
    out
}

/// Mean milliseconds per label value of a Prometheus summary `{name}_sum{{label="…"}}` /
/// `{name}_count{{label="…"}}` between two scrapes.
fn summary_means(
    a: &std::collections::BTreeMap<String, f64>,
    b: &std::collections::BTreeMap<String, f64>,
    name: &str,
    label: &str,
) -> std::collections::BTreeMap<String, f64> {
    let delta = |k: &str| b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0);
    let mut out = std::collections::BTreeMap::new();
    let prefix = format!("{name}_sum{{{label}=\"");
    for key in b.keys() {
        let Some(stage) = key
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix("\"}"))
        else {
            continue;
        };
        let n = delta(&format!("{name}_count{{{label}=\"{stage}\"}}"));
        if n > 0.0 {
            out.insert(stage.to_string(), delta(key) * 1e3 / n);
        }
    }
    out
}

pub fn metric_delta(
    a: &std::collections::BTreeMap<String, f64>,
    b: &std::collections::BTreeMap<String, f64>,
    k: &str,
) -> u64 {
    (b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0)).max(0.0) as u64
}
