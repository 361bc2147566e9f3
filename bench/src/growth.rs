//! `bench growth`: one listing driven to N orders (1,000,000 by default): reserve, then
//! confirm, pay 10% by signed callbacks, close. At 1%, 10% and all of N it reports what must
//! not grow with the listing: the pause a hand-over gives reservations, the bytes a run
//! carries to the next, and the worker's peak resident memory. A mark before the last keeps
//! reserving past it until the listing has handed over once more, so each mark times a
//! hand-over of a listing that size. Not a test: at 1M orders it takes about half an hour.

use crate::args::Args;
use crate::endings::{self, check, confirm, listing, pay, until_phase, wait_close};
use crate::load::{self, LoadSpec};
use crate::report::Report;
use crate::runs::analyse_runs;
use crate::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the listing costs at one size.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthMark {
    /// Orders in the listing when measured.
    pub orders: u64,
    /// Hand-overs so far, and the pause of the latest (updates turned away, ms).
    pub hand_overs: usize,
    pub hand_over_pause_ms: f64,
    /// The slowest reservation answered since the previous mark (ms).
    pub reserve_latency_max_ms: f64,
    pub reserve_p99_ms: f64,
    pub reserved_per_sec: f64,
    /// What the current run was started with (the hand-over's payload), in bytes.
    pub carried_bytes: usize,
    /// The worker process's peak resident memory so far (MiB).
    pub worker_peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct GrowthResult {
    pub orders: u64,
    pub marks: Vec<GrowthMark>,
    /// Last mark ÷ first mark, per figure (the target: at most 1.5).
    pub growth: BTreeMap<String, f64>,
    pub confirm_seconds: f64,
    pub paid: u64,
    pub pay_seconds: f64,
    pub close_to_production_seconds: f64,
    pub cost: sellwindow_api::history::HistoryCost,
}

pub async fn run(stack: &Stack, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.int("orders", if args.smoke { 300 } else { 1_000_000 })?;
    let customers = args.int("customers", if args.smoke { 16 } else { 256 })? as usize;
    let paid = n * args.int("paid-percent", 10)?.min(100) / 100;
    let mut marks: Vec<u64> = vec![(n / 100).max(1), (n / 10).max(1), n];
    marks.dedup();
    // Reserving ≥ 1,000/s, payment rows ≥ 2,000/s, callbacks ≥ 300/s, with room to spare.
    let slow = if cfg!(debug_assertions) { 3.0 } else { 1.0 };
    let work = n as f64 / 1000.0 + n as f64 / 2000.0 + paid as f64 / 300.0;
    let margin = if args.smoke { 20.0 } else { 30.0 };
    let close_in = args.float("close-in", margin + slow * work * 1.5)?;
    println!(
        "\ngrowth: one listing to {n} orders from {customers} customers, marks {marks:?}, then confirm, pay {paid}, close (close_at in {close_in:.0} s)"
    );
    let l = listing(
        stack,
        "growth",
        n as u32,
        1,
        false,
        Duration::from_secs_f64(close_in),
    )
    .await?;
    let clients = stack.connections(customers, 1).await?;
    let mut out = Vec::new();
    let mut reserved = 0u64;
    let mut segment = 0usize;
    for (i, &mark) in marks.iter().enumerate() {
        let last = i + 1 == marks.len();
        let before = analyse_runs(stack, &l.workflow_id).await?.hand_overs.len();
        let mut lat = load::LatencySummary::default();
        let mut rate = (0u64, 0.0f64);
        let mut step = mark - reserved;
        let hand_overs = loop {
            segment += 1;
            let r = reserve(&clients, &l, step, customers, segment).await;
            anyhow::ensure!(
                r.errors_total == 0,
                "growth: reservations failed: {:?} {:?}",
                r.errors,
                r.error_samples
            );
            reserved += r.reservations_ok_total;
            lat.max_ms = lat.max_ms.max(r.latency.max_ms);
            lat.p99_ms = lat.p99_ms.max(r.latency.p99_ms);
            rate = (rate.0 + r.reservations_ok_total, rate.1 + r.total_seconds);
            let runs = analyse_runs(stack, &l.workflow_id).await?;
            // Before the last mark: keep going until this size has handed over once (not in
            // the smoke run: a listing of a few hundred orders never hands over).
            if last || args.smoke || runs.hand_overs.len() > before || reserved >= n {
                break runs.hand_overs;
            }
            step = (n / 100).clamp(1_000, 5_000).min(n - reserved);
        };
        let cost = sellwindow_api::history::cost(
            &stack.client,
            &stack.cfg.temporal_namespace,
            &l.workflow_id,
        )
        .await?;
        let m = GrowthMark {
            orders: reserved,
            hand_overs: hand_overs.len(),
            hand_over_pause_ms: hand_overs.last().map_or(0.0, |g| g.total_ms),
            reserve_latency_max_ms: lat.max_ms,
            reserve_p99_ms: lat.p99_ms,
            reserved_per_sec: rate.0 as f64 / rate.1.max(1e-9),
            carried_bytes: cost.carried_bytes_per_run.last().copied().unwrap_or(0),
            worker_peak_rss_mib: stack.peak_rss_mib().get("worker").copied().unwrap_or(0.0),
        };
        println!(
            "  {:>8} orders: {} hand-overs, the latest turned reservations away {:.0} ms · slowest reservation {:.0} ms (p99 {:.0}) at {:.0}/s · carried {} bytes · worker peak RSS {:.1} MiB",
            m.orders,
            m.hand_overs,
            m.hand_over_pause_ms,
            m.reserve_latency_max_ms,
            m.reserve_p99_ms,
            m.reserved_per_sec,
            m.carried_bytes,
            m.worker_peak_rss_mib
        );
        out.push(m);
        if reserved >= n {
            break;
        }
    }

    let confirm_seconds = confirm(stack, &l, reserved).await?;
    println!("  confirm → {reserved} payment rows in {confirm_seconds:.1} s");
    let pay_seconds = pay(stack, &l, paid as usize).await?;
    let t0 = wait_close(&l).await;
    let close_to_production_seconds = until_phase(stack, &l, "IN_PRODUCTION", t0).await?;
    println!(
        "  paid {paid} in {pay_seconds:.1} s · close_at → production.started {close_to_production_seconds:.1} s"
    );
    let (_, cost) = check(stack, &l, report, "growth").await?;
    let growth = growth_of(&out);
    // What must stay flat is measured by the bench, never checked by the smoke run (tiny,
    // debug, on a shared CI machine: its figures say nothing about growth).
    for (figure, ratio) in growth.iter().filter(|_| !args.smoke) {
        if *ratio > 1.5 {
            report.fail(format!(
                "growth: {figure} grew {ratio:.2}× from {} to {} orders (at most 1.5×)",
                out[0].orders,
                out.last().map_or(0, |m| m.orders)
            ));
        }
    }
    println!("  last mark ÷ first mark: {growth:?}");
    report.growth = Some(GrowthResult {
        orders: reserved,
        marks: out,
        growth,
        confirm_seconds,
        paid,
        pay_seconds,
        close_to_production_seconds,
        cost,
    });
    Ok(())
}

/// Reserves `count` more orders on the listing.
async fn reserve(
    clients: &[sellwindow_testkit::ApiClient],
    l: &endings::Listing,
    count: u64,
    customers: usize,
    segment: usize,
) -> load::LoadResult {
    let spec = LoadSpec {
        targets: vec![load::Target {
            sell_window_id: l.sw.clone(),
            product_id: l.p.clone(),
            workflow_id: l.workflow_id.clone(),
        }],
        customers_per_target: customers,
        warmup: Duration::ZERO,
        measure: Duration::from_secs(6 * 3600),
        tag: format!("g{segment}"),
        stop_after: Some(count),
    };
    load::run(clients, &spec).await
}

/// Last mark ÷ first mark for each figure that must stay flat.
fn growth_of(marks: &[GrowthMark]) -> BTreeMap<String, f64> {
    let (Some(first), Some(last)) = (marks.first(), marks.last()) else {
        return BTreeMap::new();
    };
    // Nothing at both marks is flat; nothing at the first and something at the last has grown
    // past any bound (infinity fails the check rather than passing as 0).
    let ratio = |a: f64, b: f64| match (a > 0.0, b > 0.0) {
        (true, _) => b / a,
        (false, false) => 1.0,
        (false, true) => f64::INFINITY,
    };
    BTreeMap::from([
        (
            "hand-over pause".to_string(),
            ratio(first.hand_over_pause_ms, last.hand_over_pause_ms),
        ),
        (
            "carried bytes".to_string(),
            ratio(first.carried_bytes as f64, last.carried_bytes as f64),
        ),
        (
            "worker peak RSS".to_string(),
            ratio(first.worker_peak_rss_mib, last.worker_peak_rss_mib),
        ),
    ])
}
