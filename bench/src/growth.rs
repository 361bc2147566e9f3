//! `bench growth`: one listing driven to N orders (1,000,000 by default): reserve, then
//! confirm, pay 10% by signed callbacks, close. At 1%, 10% and all of N it reports what must
//! not grow with the listing: the bytes a run carries to the next (the workflow holds figures,
//! never orders), the worker's and the API's peak resident memory; and what may (the reserving
//! rate and p99 as the one `orders` table grows, the runs the listing has handed over to).
//! Reservations never wait on the workflow, so a hand-over pauses none of them. Not a test: at
//! 1M orders it takes many minutes.

use crate::args::Args;
use crate::endings::{self, check, confirm, listing, pay, until_phase, wait_close};
use crate::load::{self, LoadSpec};
use crate::report::Report;
use crate::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// What the listing costs at one size.
#[derive(Debug, Clone, Serialize)]
pub struct GrowthMark {
    /// Orders in the listing when measured.
    pub orders: u64,
    /// Runs of the listing's workflow so far (each hand-over starts one).
    pub runs: usize,
    /// Its history events so far, per order.
    pub history_events_per_order: f64,
    /// Reserving since the previous mark: the slowest answer, p99 and rate.
    pub reserve_latency_max_ms: f64,
    pub reserve_p99_ms: f64,
    pub reserved_per_sec: f64,
    /// What the current run was handed over (its start payload), in bytes, once the listing
    /// has handed over at least once.
    pub carried_bytes: Option<usize>,
    /// The worker's and the API's peak resident memory so far (MiB; 0 in-process).
    pub worker_peak_rss_mib: f64,
    pub api_peak_rss_mib: f64,
}

#[derive(Debug, Serialize)]
pub struct GrowthResult {
    pub orders: u64,
    pub marks: Vec<GrowthMark>,
    /// Last mark ÷ first mark, per figure that must stay flat (the target: at most 1.5).
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
    let close_in = Duration::from_secs_f64(close_in);
    let l = listing(stack, "growth", n as u32, 1, false, close_in).await?;
    let clients = stack.connections(customers, 1).await?;
    let mut out = Vec::new();
    let mut reserved = 0u64;
    for (i, &size) in marks.iter().enumerate() {
        let r = reserve(&clients, &l, size - reserved, customers, i).await;
        anyhow::ensure!(
            r.errors_total == 0,
            "growth: reservations failed: {:?} {:?}",
            r.errors,
            r.error_samples
        );
        reserved += r.reservations_ok_total;
        let m = mark(stack, &l, reserved, &r).await?;
        print_mark(&m);
        out.push(m);
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

/// The listing at `orders` orders, after reserving `r` since the last mark.
async fn mark(
    stack: &Stack,
    l: &endings::Listing,
    orders: u64,
    r: &load::LoadResult,
) -> anyhow::Result<GrowthMark> {
    let cost =
        sellwindow_api::history::cost(&stack.client, &stack.cfg.temporal_namespace, &l.workflow_id)
            .await?;
    let rss = stack.peak_rss_mib();
    let api_rss = rss
        .iter()
        .filter(|(name, _)| name.starts_with("api"))
        .map(|(_, v)| *v)
        .fold(0.0, f64::max);
    Ok(GrowthMark {
        orders,
        runs: cost.events_per_run.len(),
        history_events_per_order: cost.events_per_run.iter().sum::<usize>() as f64
            / orders.max(1) as f64,
        reserve_latency_max_ms: r.latency.max_ms,
        reserve_p99_ms: r.latency.p99_ms,
        reserved_per_sec: r.reservations_per_sec,
        carried_bytes: cost
            .carried_bytes_per_run
            .last()
            .copied()
            .filter(|_| cost.carried_bytes_per_run.len() > 1),
        worker_peak_rss_mib: rss.get("worker").copied().unwrap_or(0.0),
        api_peak_rss_mib: api_rss,
    })
}

fn print_mark(m: &GrowthMark) {
    println!(
        "  {:>8} orders: reserving {:.0}/s, p99 {:.0} ms, slowest {:.0} ms · {} run(s), {:.4} history events per order · a run carries {} · peak RSS worker {:.1} MiB, API {:.1} MiB",
        m.orders,
        m.reserved_per_sec,
        m.reserve_p99_ms,
        m.reserve_latency_max_ms,
        m.runs,
        m.history_events_per_order,
        m.carried_bytes
            .map_or("nothing yet (no hand-over)".to_string(), |b| format!(
                "{b} bytes"
            )),
        m.worker_peak_rss_mib,
        m.api_peak_rss_mib
    );
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
        targets: vec![l.target()],
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
    // The bytes a hand-over carries, between the first and the last mark that had one.
    let mut carried = marks.iter().filter_map(|m| m.carried_bytes);
    let carried = match (carried.next(), carried.next_back()) {
        (Some(a), Some(b)) => ratio(a as f64, b as f64),
        _ => 1.0,
    };
    BTreeMap::from([
        ("carried bytes".to_string(), carried),
        (
            "worker peak RSS".to_string(),
            ratio(first.worker_peak_rss_mib, last.worker_peak_rss_mib),
        ),
        (
            "API peak RSS".to_string(),
            ratio(first.api_peak_rss_mib, last.api_peak_rss_mib),
        ),
    ])
}
