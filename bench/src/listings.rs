//! `bench listings`: many hot listings at once (each its own workflow; every API process puts
//! the reservations of all of them in its one reserve transaction at a time) against one
//! listing carrying the same number of customers, so the total reservations/s shows how the
//! system scales with listings rather than with customers; and the most listings against
//! pgbench's best over as many quota rows (a row at random per transaction, on the app's
//! schema and on the bare one), the raw row lock with the same spread of contention. Per row:
//! the worst listing's p99, history events and CPU per reservation.

use crate::args::Args;
use crate::check;
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
pub struct ListingsRow {
    pub listings: usize,
    pub customers_per_listing: usize,
    pub customers: usize,
    pub load: LoadResult,
    /// The p99 of the listing served worst (ms).
    pub worst_listing_p99_ms: f64,
    /// History events (all runs, all listings) per reservation.
    pub history_events_per_reservation: f64,
    pub transactions: Transactions,
    pub oversold_listings: usize,
    pub cpu_cores: BTreeMap<String, f64>,
    /// CPU per reservation (µs): every API, the worker, Temporal and PostgreSQL; the load apart.
    pub system_us_per_reservation: f64,
    pub client_us_per_reservation: f64,
    pub temporal_server_cores: f64,
    pub db: Option<PgWork>,
}

#[derive(Debug, Serialize)]
pub struct ListingsResult {
    pub rows: Vec<ListingsRow>,
    /// Total reservations/s with N listings over 1 listing, the same customers per listing.
    pub growth: Option<f64>,
    /// Total reservations/s with N listings over 1 listing carrying all their customers.
    pub speedup: Option<f64>,
    /// Total reservations/s with N listings over pgbench's best over N quota rows, on the
    /// app's schema and on the bare one.
    pub ratio_to_baseline: Option<f64>,
    pub ratio_to_bare: Option<f64>,
}

fn counts(args: &Args) -> anyhow::Result<Vec<usize>> {
    args.list("listings", if args.smoke { &[4] } else { &[50] })
}

/// The most listings this run drives at once (the baseline spreads over as many quota rows).
pub fn most(args: &Args) -> anyhow::Result<usize> {
    Ok(counts(args)?.into_iter().max().unwrap_or(1))
}

/// (listings, customers each): 1, …, N listings at `per` customers each, and one listing
/// carrying all of the most listings' customers.
fn plan(mut counts: Vec<usize>, per: usize) -> Vec<(usize, usize)> {
    if !counts.contains(&1) {
        counts.insert(0, 1);
    }
    counts.sort_unstable();
    counts.dedup();
    let many = counts.last().copied().unwrap_or(1);
    let mut plan: Vec<(usize, usize)> = counts.iter().map(|&l| (l, per)).collect();
    if many > 1 {
        plan.insert(1, (1, many * per));
    }
    plan
}

pub async fn run(stack: &Stack, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let per = args.int("customers-per-listing", if args.smoke { 4 } else { 8 })? as usize;
    let seconds = args.float("seconds", if args.smoke { 2.0 } else { 10.0 })?;
    let warmup = args.float("warmup", if args.smoke { 0.5 } else { 1.0 })?;
    let cap = args.int("cap", 1_000_000)? as u32;
    let per_conn = args.int("clients-per-connection", 1)? as usize;
    let plan = plan(counts(args)?, per);
    println!(
        "\nlistings: {} customers each, {seconds} s each",
        plan.iter()
            .map(|(l, c)| format!("{l} listing(s) × {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut rows = Vec::new();
    for (i, &(listings, customers_per_listing)) in plan.iter().enumerate() {
        let hour = Duration::from_secs(3600);
        let tag = format!("l{i}");
        let windows = stack.listings(listings, 1, cap, hour, hour, &tag).await?;
        let spec = LoadSpec {
            targets: check::targets(&windows),
            customers_per_target: customers_per_listing,
            warmup: Duration::from_secs_f64(warmup),
            measure: Duration::from_secs_f64(seconds),
            tag,
            stop_after: None,
        };
        let row = row(stack, &spec, per_conn, report).await?;
        report::print_listings_row(&row);
        rows.push(row);
    }
    let result = result(rows, per, report);
    report::print_listings(&result);
    report.listings = Some(result);
    Ok(())
}

async fn row(
    stack: &Stack,
    spec: &LoadSpec,
    per_conn: usize,
    report: &mut Report,
) -> anyhow::Result<ListingsRow> {
    let (listings, per) = (spec.targets.len(), spec.customers_per_target);
    let clients = stack.connections(listings * per, per_conn).await?;
    let m0 = stack.api_metrics().await;
    let pg0 = pgstats::sample(&stack.store).await;
    let sampler = cpu::Sampler::window(stack.parts(), spec.warmup, spec.measure);
    let load = load::run(&clients, spec).await;
    let cpu_cores = sampler.finish().await;
    let db = pgstats::after(&stack.store, pg0, load.reservations_ok_total).await;
    let m1 = stack.api_metrics().await;
    let what = format!("listings {listings}×{per}");
    let checks = check::checked(stack, &spec.targets, &load, &what, report).await?;
    let events: u64 = checks.iter().map(|c| c.history_events).sum();
    let orders: u64 = checks.iter().map(|c| c.orders_in_db).sum();
    let per_sec = load.reservations_per_sec;
    Ok(ListingsRow {
        listings,
        customers_per_listing: per,
        customers: listings * per,
        worst_listing_p99_ms: load.worst_target_p99_ms(),
        history_events_per_reservation: events as f64 / orders.max(1) as f64,
        transactions: metrics::transactions(&m0, &m1),
        oversold_listings: checks.iter().filter(|c| c.oversold).count(),
        system_us_per_reservation: cpu::micros_per(cpu::system_cores(&cpu_cores), per_sec),
        client_us_per_reservation: cpu::micros_per(cpu::client_cores(&cpu_cores), per_sec),
        temporal_server_cores: cpu_cores.get("temporal server").copied().unwrap_or(0.0),
        load,
        cpu_cores,
        db,
    })
}

fn result(rows: Vec<ListingsRow>, per: usize, report: &Report) -> ListingsResult {
    let many = rows.iter().map(|r| r.listings).max().unwrap_or(1);
    let rate = |l: usize, c: usize| {
        rows.iter()
            .find(|r| r.listings == l && r.customers_per_listing == c)
            .map(|r| r.load.reservations_per_sec)
    };
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && many > 1 => Some(a / b),
        _ => None,
    };
    let growth = ratio(rate(many, per), rate(1, per));
    let speedup = ratio(rate(many, per), rate(1, many * per));
    let (ratio_to_baseline, ratio_to_bare) = match (rate(many, per), &report.baseline) {
        (Some(r), Some(b)) if b.rows == many => {
            let (app, bare) = b.ratios(r);
            (Some(app), Some(bare))
        }
        _ => (None, None),
    };
    ListingsResult {
        rows,
        growth,
        speedup,
        ratio_to_baseline,
        ratio_to_bare,
    }
}
