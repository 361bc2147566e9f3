//! The figures of one run: printed as tables, and written as JSON with `--json FILE`.

use crate::args::Args;
use crate::baseline::Baseline;
use crate::finalize::FinalizeResult;
use crate::listings::{ListingsResult, ListingsRow};
use crate::reserve::ReserveLevel;
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Debug, Serialize)]
pub struct Report {
    pub command: String,
    pub options: BTreeMap<String, String>,
    pub build: &'static str,
    pub store: String,
    pub cpus: usize,
    pub started_at_unix_ms: i64,
    pub baseline: Option<Baseline>,
    pub reserve: Vec<ReserveLevel>,
    pub finalize: Option<FinalizeResult>,
    pub listings: Option<ListingsResult>,
    pub endings: Vec<crate::endings::Ending>,
    pub overload: Option<crate::overload::OverloadResult>,
    pub growth: Option<crate::growth::GrowthResult>,
    /// Every failed check; empty means the run passed.
    pub failures: Vec<String>,
    pub wall_seconds: f64,
}

impl Report {
    pub fn new(args: &Args) -> Self {
        Self {
            command: args.command.clone(),
            options: args.echo(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            },
            store: String::new(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            started_at_unix_ms: sellwindow_api::convert::now_ms().0,
            baseline: None,
            reserve: Vec::new(),
            finalize: None,
            listings: None,
            endings: Vec::new(),
            overload: None,
            growth: None,
            failures: Vec::new(),
            wall_seconds: 0.0,
        }
    }

    pub fn fail(&mut self, what: impl Into<String>) {
        let what = what.into();
        eprintln!("CHECK FAILED: {what}");
        self.failures.push(what);
    }
}

fn cpu_line(cpu: &BTreeMap<String, f64>) -> String {
    let order = [
        "api",
        "worker",
        "temporal server",
        "postgres",
        "sqlite threads",
        "bench clients",
        "bench other threads",
        "everything else",
        "machine (all processes)",
    ];
    // Named parts first in this order, then any others (e.g. `api-2` when several run).
    let named = order
        .iter()
        .filter_map(|k| cpu.get(*k).map(|v| format!("{k} {v:.2}")));
    let others = cpu
        .iter()
        .filter(|(k, _)| !order.contains(&k.as_str()))
        .map(|(k, v)| format!("{k} {v:.2}"));
    named.chain(others).collect::<Vec<_>>().join(" · ")
}

fn db_line(db: &Option<crate::pgstats::PgWork>) -> Option<String> {
    db.as_ref().map(|d| {
        format!(
            "PostgreSQL per reservation: {:.2} commits · {:.2} rows inserted · {:.2} WAL fsyncs · {:.0} WAL bytes",
            d.commits_per_reservation,
            d.rows_inserted_per_reservation,
            d.wal_fsyncs_per_reservation,
            d.wal_bytes_per_reservation
        )
    })
}

fn errors_text(e: &BTreeMap<String, u64>) -> String {
    if e.is_empty() {
        "0".into()
    } else {
        e.iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",")
    }
}

pub fn print_baseline(b: &Baseline) {
    println!(
        "  baseline best: {:.0} reservations/s at {} clients",
        b.best_per_sec, b.best_clients
    );
}

/// `label: name value · name value …`, unless there is nothing to show.
fn means_line(label: &str, means: &BTreeMap<String, f64>) {
    if means.is_empty() {
        return;
    }
    let parts: Vec<String> = means.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    println!("        {label}: {}", parts.join(" · "));
}

pub fn print_reserve_level(l: &ReserveLevel) {
    println!(
        "  {:>4} customers on {} API(s): {:>7.0} reservations/s  p50 {:.1} / p95 {:.1} / p99 {:.1} ms  · {} orders, {} updates ({:.1} per update, {} retried) · history {} events, {:.1} MB at most per run, in {} run(s) · errors {}",
        l.customers,
        l.apis,
        l.load.reservations_per_sec,
        l.load.latency.p50_ms,
        l.load.latency.p95_ms,
        l.load.latency.p99_ms,
        l.check.orders_in_db,
        l.reserve_updates,
        l.reservations_per_update,
        l.reserve_update_retries,
        l.check.history_events,
        l.check.run_bytes.iter().max().copied().unwrap_or(0) as f64 / (1 << 20) as f64,
        l.check.runs,
        errors_text(&l.load.errors),
    );
    println!("        CPU (cores): {}", cpu_line(&l.cpu_cores));
    if !l.peak_rss_mib.is_empty() {
        println!("        peak RSS (MiB): {:?}", l.peak_rss_mib);
    }
    let t = &l.tasks;
    println!(
        "        workflow tasks: {} ({:.1} updates each) · waiting for the worker {:.1} ms · running {:.1} ms · to the next task {:.1} ms",
        t.workflow_tasks, t.updates_per_task, t.mean_wait_ms, t.mean_run_ms, t.mean_gap_ms
    );
    means_line("API mean ms", &l.api_stages);
    means_line("worker writes, mean ms", &l.worker_writes);
    for g in &l.hand_overs {
        println!(
            "        hand-over: reservations turned away {:.0} ms (drain and save {:.0}, to the new run {:.0}, take over {:.0})",
            g.total_ms, g.drain_and_save_ms, g.transfer_ms, g.take_over_ms
        );
    }
    if let Some(db) = db_line(&l.db) {
        println!("        {db}");
    }
    println!("        answers per second: {:?}", l.load.per_second);
}

pub fn print_reserve_table(r: &Report) {
    println!(
        "\n| customers | reservations/s | p50 ms | p95 ms | p99 ms | × baseline best | history events / reservation | reservations / update | errors | oversold |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---|---|");
    for l in &r.reserve {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.1} | {} | {:.3} | {:.1} | {} | {} |",
            l.customers,
            l.load.reservations_per_sec,
            l.load.latency.p50_ms,
            l.load.latency.p95_ms,
            l.load.latency.p99_ms,
            l.ratio_to_baseline
                .map_or("n/a".into(), |x| format!("{x:.2}×")),
            l.history_events_per_reservation,
            l.reservations_per_update,
            errors_text(&l.load.errors),
            if l.check.oversold { "YES" } else { "none" },
        );
    }
    print_reserve_medians(r);
    match &r.baseline {
        Some(b) => println!(
            "baseline (the seed's row-lock reserve, raw PostgreSQL): best {:.0}/s at {} clients; levels {}",
            b.best_per_sec,
            b.best_clients,
            b.levels
                .iter()
                .map(|l| format!("{}→{:.0}/s", l.clients, l.reservations_per_sec))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None => println!("baseline: not measured"),
    }
    let oversold = r.reserve.iter().any(|l| l.check.oversold);
    let agree = r.reserve.iter().all(|l| l.check.consistent);
    println!(
        "oversold: {} · sold == sum over orders {} · workflow agrees {}",
        if oversold { "YES" } else { "none" },
        if agree {
            "everywhere"
        } else {
            "NOT everywhere"
        },
        if r.reserve
            .iter()
            .all(|l| l.check.workflow_sold == Some(l.check.sold))
        {
            "everywhere"
        } else {
            "not everywhere (or did not answer)"
        }
    );
}

/// With `--repeat`: each level's median run, with the lowest and highest.
fn print_reserve_medians(r: &Report) {
    let mut levels: Vec<usize> = r.reserve.iter().map(|l| l.customers).collect();
    levels.dedup();
    for n in levels {
        let runs: Vec<&ReserveLevel> = r.reserve.iter().filter(|l| l.customers == n).collect();
        if runs.len() < 2 {
            continue;
        }
        let per_sec = sorted(runs.iter().map(|l| l.load.reservations_per_sec));
        let p99 = sorted(runs.iter().map(|l| l.load.latency.p99_ms));
        let ratio = sorted(runs.iter().filter_map(|l| l.ratio_to_baseline));
        println!(
            "{n} customers, median of {} runs: {:.0} reservations/s ({:.0}–{:.0}){}, p99 {:.1} ms ({:.1}–{:.1})",
            runs.len(),
            median(&per_sec),
            per_sec[0],
            per_sec[per_sec.len() - 1],
            match ratio.is_empty() {
                true => String::new(),
                false => format!(", {:.2}× baseline best", median(&ratio)),
            },
            median(&p99),
            p99[0],
            p99[p99.len() - 1],
        );
    }
}

fn sorted(xs: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The middle value (the mean of the two middle ones for an even count).
fn median(sorted: &[f64]) -> f64 {
    let m = sorted.len() / 2;
    match sorted.len() % 2 {
        0 => (sorted[m - 1] + sorted[m]) / 2.0,
        _ => sorted[m],
    }
}

pub fn print_finalize(f: &FinalizeResult) {
    println!("\n| finalize, {} orders | wall time |", f.orders);
    println!("|---|---:|");
    println!(
        "| reserve {} orders ({} customers) | {:.2} s ({:.0}/s, p99 {:.0} ms) |",
        f.reserve.reservations_ok_total,
        f.customers,
        f.reserve.total_seconds,
        f.reserve.reservations_per_sec,
        f.reserve.latency.p99_ms
    );
    println!(
        "| confirm → every order has a payment row ({} orders) | {:.2} s |",
        f.payment_requested_orders, f.confirm_to_all_payments_seconds
    );
    println!(
        "| pay {} orders by signed callbacks → all PAID | {:.2} s ({:.0}/s) |",
        f.pay_target,
        f.pay_seconds,
        f.paid_orders as f64 / f.pay_seconds.max(1e-3)
    );
    println!(
        "| close_at → sell_window.finalized | {} |",
        f.close_to_finalized_seconds
            .map_or("not seen".into(), |s| format!("{s:.2} s"))
    );
    println!(
        "| close_at → production.started ({} paid, {} expired at close, work order {:?} units) | {} |",
        f.paid_orders,
        f.expired_orders,
        f.work_order_qty,
        f.close_to_production_started_seconds
            .map_or("not seen".into(), |s| format!("{s:.2} s"))
    );
    println!("  CPU confirm (cores): {}", cpu_line(&f.cpu_cores_confirm));
    println!("  CPU pay (cores): {}", cpu_line(&f.cpu_cores_pay));
    println!("  CPU close (cores): {}", cpu_line(&f.cpu_cores_close));
    println!(
        "  history: {} events in {} run(s) {:?} · oversold: {}",
        f.check.history_events,
        f.check.runs,
        f.check.run_events,
        if f.check.oversold { "YES" } else { "none" }
    );
}

pub fn print_listings_row(r: &ListingsRow) {
    println!(
        "  {:>3} listing(s) × {:>4} customers: {:>7.0} reservations/s  p50 {:.1} / p99 {:.1} ms · {:.1} per update · {:.3} events/reservation · errors {}",
        r.listings,
        r.customers_per_listing,
        r.load.reservations_per_sec,
        r.load.latency.p50_ms,
        r.load.latency.p99_ms,
        r.reservations_per_update,
        r.history_events_per_reservation,
        errors_text(&r.load.errors)
    );
    println!("        CPU (cores): {}", cpu_line(&r.cpu_cores));
    if let Some(db) = db_line(&r.db) {
        println!("        {db}");
    }
}

pub fn print_listings(l: &ListingsResult) {
    println!(
        "\n| listings | customers each | customers | reservations/s | p50 ms | p99 ms | history events / reservation | errors | oversold listings |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for r in &l.rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.3} | {} | {} |",
            r.listings,
            r.customers_per_listing,
            r.customers,
            r.load.reservations_per_sec,
            r.load.latency.p50_ms,
            r.load.latency.p99_ms,
            r.history_events_per_reservation,
            errors_text(&r.load.errors),
            r.oversold_listings
        );
    }
    if let Some(g) = l.growth {
        println!("most listings / 1 listing, same customers per listing: {g:.2}×");
    }
    if let Some(s) = l.speedup {
        println!("most listings / 1 listing carrying all their customers: {s:.2}×");
    }
    if let Some(b) = l.ratio_to_baseline {
        println!("most listings / the baseline's best over as many quota rows: {b:.2}×");
    }
}
