//! The figures of one run: printed as tables, and written as JSON with `--json FILE`.

mod reserve;

pub use reserve::{print_reserve_level, print_reserve_table};

use crate::args::Args;
use crate::baseline::Baseline;
use crate::finalize::FinalizeResult;
use crate::listings::{ListingsResult, ListingsRow};
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
    pub reserve: Vec<crate::reserve::ReserveLevel>,
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

pub(crate) fn cpu_line(cpu: &BTreeMap<String, f64>) -> String {
    let order = [
        "worker",
        "temporal server",
        "postgres",
        "postgres (other databases)",
        "sqlite threads",
        "bench clients",
        "bench other threads",
        "everything else",
        "machine (all processes)",
    ];
    // The APIs first (`api`, or `api-1`, `api-2`… when several run), then the named parts
    // in this order, then any others.
    let apis = cpu
        .iter()
        .filter(|(k, _)| k.starts_with("api"))
        .map(|(k, v)| format!("{k} {v:.2}"));
    let named = order
        .iter()
        .filter_map(|k| cpu.get(*k).map(|v| format!("{k} {v:.2}")));
    let others = cpu
        .iter()
        .filter(|(k, _)| !order.contains(&k.as_str()) && !k.starts_with("api"))
        .map(|(k, v)| format!("{k} {v:.2}"));
    apis.chain(named)
        .chain(others)
        .collect::<Vec<_>>()
        .join(" · ")
}

pub(crate) fn db_line(db: &Option<crate::pgstats::PgWork>) -> Option<String> {
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

pub(crate) fn errors_text(e: &BTreeMap<String, u64>) -> String {
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
    for s in [&b.app, &b.bare] {
        println!(
            "  baseline best on the {} schema: {:.0} reservations/s at {} clients",
            s.schema, s.best_per_sec, s.best_clients
        );
    }
}

/// `label: name value · name value …`, unless there is nothing to show.
pub(crate) fn means_line(label: &str, means: &BTreeMap<String, f64>) {
    if means.is_empty() {
        return;
    }
    let parts: Vec<String> = means.iter().map(|(k, v)| format!("{k} {v:.1}")).collect();
    println!("        {label}: {}", parts.join(" · "));
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
        "  {:>3} listing(s) × {:>4} customers: {:>7.0} reservations/s  p50 {:.1} / p99 {:.1} ms, worst listing's p99 {:.1} ms · {:.4} events/reservation · errors {}",
        r.listings,
        r.customers_per_listing,
        r.load.reservations_per_sec,
        r.load.latency.p50_ms,
        r.load.latency.p99_ms,
        r.worst_listing_p99_ms,
        r.history_events_per_reservation,
        errors_text(&r.load.errors)
    );
    let t = &r.transactions;
    println!(
        "        CPU per reservation: {:.0} µs (API + worker + Temporal + PostgreSQL) · load client {:.0} µs apart · Temporal server {:.2} cores · {} transactions, {:.1} reservations each, {:.1} ms each",
        r.system_us_per_reservation,
        r.client_us_per_reservation,
        r.temporal_server_cores,
        t.transactions,
        t.reservations_per_transaction,
        t.mean_transaction_ms
    );
    println!("        CPU (cores): {}", cpu_line(&r.cpu_cores));
    if let Some(db) = db_line(&r.db) {
        println!("        {db}");
    }
}

pub fn print_listings(l: &ListingsResult) {
    println!(
        "\n| listings | customers each | customers | reservations/s | p50 ms | p99 ms | worst listing's p99 ms | CPU µs / reservation | load client µs / reservation | history events / reservation | Temporal server cores | reservations / transaction | errors | oversold listings |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|");
    for r in &l.rows {
        println!(
            "| {} | {} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0} | {:.4} | {:.2} | {:.1} | {} | {} |",
            r.listings,
            r.customers_per_listing,
            r.customers,
            r.load.reservations_per_sec,
            r.load.latency.p50_ms,
            r.load.latency.p99_ms,
            r.worst_listing_p99_ms,
            r.system_us_per_reservation,
            r.client_us_per_reservation,
            r.history_events_per_reservation,
            r.temporal_server_cores,
            r.transactions.reservations_per_transaction,
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
    if let (Some(a), Some(b)) = (l.ratio_to_baseline, l.ratio_to_bare) {
        println!(
            "most listings / pgbench's best over as many quota rows: {a:.2}× (app schema), {b:.2}× (bare schema)"
        );
    }
}
