//! `bench reserve`'s lines per level, and its table: each level (customers × API processes)
//! as the median of its runs, with the lowest and highest when there are several.

use super::{cpu_line, db_line, errors_text, means_line};
use crate::report::Report;
use crate::reserve::ReserveLevel;

pub fn print_reserve_level(l: &ReserveLevel) {
    println!(
        "  {:>4} customers on {} API(s): {:>7.0} reservations/s  p50 {:.1} / p95 {:.1} / p99 {:.1} ms · {} orders · errors {}{}",
        l.customers,
        l.apis,
        l.load.reservations_per_sec,
        l.load.latency.p50_ms,
        l.load.latency.p95_ms,
        l.load.latency.p99_ms,
        l.check.orders_in_db,
        errors_text(&l.load.errors),
        match (l.ratio_to_baseline, l.ratio_to_bare) {
            (Some(a), Some(b)) => format!(" · {a:.2}× pgbench (app schema), {b:.2}× (bare)"),
            _ => String::new(),
        }
    );
    println!(
        "        CPU per reservation: {:.0} µs (API + worker + Temporal + PostgreSQL, {:.2} cores) · load client {:.0} µs apart",
        l.system_us_per_reservation, l.system_cores, l.client_us_per_reservation
    );
    println!("        CPU (cores): {}", cpu_line(&l.cpu_cores));
    let t = &l.transactions;
    println!(
        "        API: {} reserve transactions, {:.1} reservations each, {:.1} ms each (mean); a reservation {:.1} ms in the API (mean)",
        t.transactions, t.reservations_per_transaction, t.mean_transaction_ms, t.mean_reserve_ms
    );
    let c = &l.check;
    println!(
        "        workflow: {} history events in {} run(s) ({:.4} per reservation, {:.1} MB at most per run) · {} signals ({:.1}/s) · agreed with the row {}",
        c.history_events,
        c.runs,
        l.history_events_per_reservation,
        c.run_bytes.iter().max().copied().unwrap_or(0) as f64 / (1 << 20) as f64,
        c.signals,
        l.signals_per_second,
        c.workflow_caught_up_ms
            .map_or("NEVER".to_string(), |ms| format!(
                "{ms:.0} ms after the load"
            )),
    );
    means_line("worker writes, mean ms", &l.worker_writes);
    if !l.peak_rss_mib.is_empty() {
        println!("        peak RSS (MiB): {:?}", l.peak_rss_mib);
    }
    if let Some(db) = db_line(&l.db) {
        println!("        {db}");
    }
    println!("        answers per second: {:?}", l.load.per_second);
}

fn sorted(xs: impl Iterator<Item = f64>) -> Vec<f64> {
    let mut v: Vec<f64> = xs.collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The middle value (the mean of the two middle ones for an even count).
pub fn median(sorted: &[f64]) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let m = sorted.len() / 2;
    match sorted.len() % 2 {
        0 => (sorted[m - 1] + sorted[m]) / 2.0,
        _ => sorted[m],
    }
}

/// `median (lowest–highest)`, or the one value, to `precision` decimals.
fn mlh(xs: impl Iterator<Item = f64>, precision: usize) -> String {
    let v = sorted(xs);
    match v.len() {
        0 => "n/a".into(),
        1 => format!("{:.precision$}", v[0]),
        _ => format!(
            "{:.precision$} ({:.precision$}–{:.precision$})",
            median(&v),
            v[0],
            v[v.len() - 1]
        ),
    }
}

/// The levels in the order they first ran: (customers, APIs).
fn groups(r: &Report) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    for l in &r.reserve {
        if !out.contains(&(l.customers, l.apis)) {
            out.push((l.customers, l.apis));
        }
    }
    out
}

fn runs_of(r: &Report, (customers, apis): (usize, usize)) -> Vec<&ReserveLevel> {
    r.reserve
        .iter()
        .filter(|l| l.customers == customers && l.apis == apis)
        .collect()
}

pub fn print_reserve_table(r: &Report) {
    println!(
        "\n| customers | APIs | runs | reservations/s | p50 ms | p95 ms | p99 ms | errors | oversold | CPU µs / reservation | load client µs / reservation | history events / reservation | Temporal server cores | reservations / transaction | transaction ms | × pgbench (app schema) | × pgbench (bare schema) |"
    );
    println!(
        "|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for g in groups(r) {
        let runs = runs_of(r, g);
        let m = |f: fn(&ReserveLevel) -> f64, p: usize| mlh(runs.iter().map(|l| f(l)), p);
        let mut errors = std::collections::BTreeMap::new();
        for l in &runs {
            for (k, v) in &l.load.errors {
                *errors.entry(k.clone()).or_insert(0) += v;
            }
        }
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            g.0,
            g.1,
            runs.len(),
            m(|l| l.load.reservations_per_sec, 0),
            m(|l| l.load.latency.p50_ms, 1),
            m(|l| l.load.latency.p95_ms, 1),
            m(|l| l.load.latency.p99_ms, 1),
            errors_text(&errors),
            if runs.iter().any(|l| l.check.oversold) {
                "YES"
            } else {
                "none"
            },
            m(|l| l.system_us_per_reservation, 0),
            m(|l| l.client_us_per_reservation, 0),
            m(|l| l.history_events_per_reservation, 4),
            m(|l| l.temporal_server_cores, 2),
            m(|l| l.transactions.reservations_per_transaction, 1),
            m(|l| l.transactions.mean_transaction_ms, 1),
            ratio(&runs, |l| l.ratio_to_baseline),
            ratio(&runs, |l| l.ratio_to_bare),
        );
    }
    print_api_comparison(r);
    print_baseline_line(r);
    print_checks_line(r);
}

fn ratio(runs: &[&ReserveLevel], f: fn(&ReserveLevel) -> Option<f64>) -> String {
    let v: Vec<f64> = runs.iter().filter_map(|l| f(l)).collect();
    if v.is_empty() {
        "n/a".into()
    } else {
        format!("{}×", mlh(v.into_iter(), 2))
    }
}

/// With `--apis 1,3`: each API count's median against the fewest APIs' median, per level.
fn print_api_comparison(r: &Report) {
    let gs = groups(r);
    let median_rate = |g| {
        median(&sorted(
            runs_of(r, g).iter().map(|l| l.load.reservations_per_sec),
        ))
    };
    for &(customers, apis) in &gs {
        let fewest = gs
            .iter()
            .filter(|(c, _)| *c == customers)
            .map(|(_, a)| *a)
            .min()
            .unwrap_or(apis);
        if apis == fewest {
            continue;
        }
        let (many, few) = (
            median_rate((customers, apis)),
            median_rate((customers, fewest)),
        );
        println!(
            "{customers} customers: {apis} APIs {many:.0}/s against {fewest} API(s) {few:.0}/s in the same run (medians): {:.2}×",
            if few > 0.0 { many / few } else { 0.0 }
        );
    }
}

fn print_baseline_line(r: &Report) {
    let Some(b) = &r.baseline else {
        println!("baseline: not measured");
        return;
    };
    for s in [&b.app, &b.bare] {
        println!(
            "baseline ({}): best {:.0}/s at {} clients; levels {}",
            s.driver,
            s.best_per_sec,
            s.best_clients,
            s.levels
                .iter()
                .map(|l| format!("{}→{:.0}/s", l.clients, l.reservations_per_sec))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
}

fn print_checks_line(r: &Report) {
    let oversold = r.reserve.iter().any(|l| l.check.oversold);
    let agree = r
        .reserve
        .iter()
        .all(|l| l.check.sold == l.check.held_by_orders && l.check.rows == l.check.orders);
    let workflow = r
        .reserve
        .iter()
        .all(|l| l.check.workflow == Some(l.check.rows));
    let every = |ok: bool| if ok { "everywhere" } else { "NOT everywhere" };
    println!(
        "oversold: {} · the rows (sold, reserved, paid) == the orders {} · workflow agrees once quiet {}",
        if oversold { "YES" } else { "none" },
        every(agree),
        every(workflow)
    );
}
