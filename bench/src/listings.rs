//! `bench listings`: many hot listings at once (each its own workflow and its own lane of
//! coalesced updates) against one listing carrying the same number of customers, so the total
//! reservations/s shows how the system scales with listings rather than with customers; and the
//! most listings against the baseline's best over as many quota rows (`pgbench`, a row at random
//! per transaction), the raw row lock with the same spread of contention.

use crate::args::Args;
use crate::cpu;
use crate::load::{self, LoadResult, LoadSpec};
use crate::pgstats::{self, PgWork};
use crate::report::{self, Report};
use crate::reserve;
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
    /// History events (all runs, all listings) per reservation.
    pub history_events_per_reservation: f64,
    pub reservations_per_update: f64,
    pub oversold_listings: usize,
    pub cpu_cores: BTreeMap<String, f64>,
    pub db: Option<PgWork>,
}

#[derive(Debug, Serialize)]
pub struct ListingsResult {
    pub rows: Vec<ListingsRow>,
    /// Total reservations/s with N listings over 1 listing, the same customers per listing.
    pub growth: Option<f64>,
    /// Total reservations/s with N listings over 1 listing carrying all their customers.
    pub speedup: Option<f64>,
    /// Total reservations/s with N listings over the baseline's best over N quota rows.
    pub ratio_to_baseline: Option<f64>,
}

fn counts(args: &Args) -> anyhow::Result<Vec<usize>> {
    args.list("listings", if args.smoke { &[4] } else { &[50] })
}

/// The most listings this run drives at once (the baseline spreads over as many quota rows).
pub fn most(args: &Args) -> anyhow::Result<usize> {
    Ok(counts(args)?.into_iter().max().unwrap_or(1))
}

pub async fn run(stack: &Stack, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let mut counts = counts(args)?;
    let per = args.int("customers-per-listing", if args.smoke { 4 } else { 8 })? as usize;
    let seconds = args.float("seconds", if args.smoke { 2.0 } else { 10.0 })?;
    let warmup = args.float("warmup", if args.smoke { 0.5 } else { 1.0 })?;
    let cap = args.int("cap", 1_000_000)? as u32;
    let per_conn = args.int("clients-per-connection", 1)? as usize;
    // Growth with listings at a fixed number of customers each (1, …, N listings), and N
    // listings against one listing carrying all their customers at once.
    if !counts.contains(&1) {
        counts.insert(0, 1);
    }
    counts.sort_unstable();
    counts.dedup();
    let many = counts.last().copied().unwrap_or(1);
    let total = many * per;
    let mut plan: Vec<(usize, usize)> = counts.iter().map(|&l| (l, per)).collect();
    if many > 1 {
        plan.insert(1, (1, total));
    }
    println!(
        "\nlistings: {} × {per} customers each, and 1 listing × {total} customers, {seconds} s each",
        counts
            .iter()
            .map(|c| format!("{c} listing(s)"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut rows = Vec::new();
    for (i, (listings, customers_per_listing)) in plan.into_iter().enumerate() {
        let windows = stack
            .listings(
                listings,
                1,
                cap,
                Duration::from_secs(3600),
                Duration::from_secs(3600),
                &format!("l{i}"),
            )
            .await?;
        let targets = reserve::targets(&windows);
        let clients = stack
            .connections(listings * customers_per_listing, per_conn)
            .await?;
        let spec = LoadSpec {
            targets: targets.clone(),
            customers_per_target: customers_per_listing,
            warmup: Duration::from_secs_f64(warmup),
            measure: Duration::from_secs_f64(seconds),
            tag: format!("l{i}"),
            stop_after: None,
        };
        let m0 = stack.api_metrics().await;
        let pg0 = pgstats::sample(&stack.store).await;
        let sampler = cpu::Sampler::window(stack.pids(), spec.warmup, spec.measure);
        let load = load::run(&clients, &spec).await;
        let cpu_cores = sampler.finish().await;
        let db = pgstats::after(&stack.store, pg0, load.reservations_ok_total).await;
        let m1 = stack.api_metrics().await;
        let what = format!("listings {listings}×{customers_per_listing}");
        let checks = reserve::checked(stack, &targets, &load, &what, report).await?;
        let events: u64 = checks.iter().map(|c| c.history_events).sum();
        let orders: u64 = checks.iter().map(|c| c.orders_in_db).sum();
        let updates = reserve::metric_delta(&m0, &m1, "sellwindow_reserve_updates_total");
        let row = ListingsRow {
            listings,
            customers_per_listing,
            customers: listings * customers_per_listing,
            history_events_per_reservation: events as f64 / orders.max(1) as f64,
            reservations_per_update: orders as f64 / updates.max(1) as f64,
            oversold_listings: checks.iter().filter(|c| c.oversold).count(),
            load,
            cpu_cores,
            db,
        };
        report::print_listings_row(&row);
        rows.push(row);
    }
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
    let speedup = ratio(rate(many, per), rate(1, total));
    let ratio_to_baseline = match (rate(many, per), &report.baseline) {
        (Some(r), Some(b)) if b.best_per_sec > 0.0 && b.rows == many => Some(r / b.best_per_sec),
        _ => None,
    };
    let result = ListingsResult {
        rows,
        growth,
        speedup,
        ratio_to_baseline,
    };
    report::print_listings(&result);
    report.listings = Some(result);
    Ok(())
}
