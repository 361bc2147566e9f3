//! `bench overload`: far more customers than one listing (or one API process) can serve at
//! once, 5,000 by default, each reserving as fast as it is answered. What it shows: the API
//! process's memory stays bounded (its peak RSS), the answered calls' latency stays bounded,
//! a refused call (UNAVAILABLE: at capacity, or the listing's queue full) comes back at once,
//! nothing crashes and nothing oversells.

use crate::args::Args;
use crate::check::{consistent, targets};
use crate::load::{self, LatencySummary, LoadSpec};
use crate::report::Report;
use crate::stack::Stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

#[derive(Debug, Serialize)]
pub struct OverloadResult {
    pub customers: usize,
    pub connections: usize,
    pub seconds: f64,
    pub reserved_per_sec: f64,
    /// Calls answered with an order, inside the measured window.
    pub answered: LatencySummary,
    /// Calls refused (any error answer) inside the measured window, after the warm-up (as
    /// for the answered calls), and over the whole run (the first burst of connections too).
    pub refused: LatencySummary,
    pub refused_whole_run: LatencySummary,
    pub refused_by_code: BTreeMap<String, u64>,
    /// Peak resident memory of the API and worker processes (MiB).
    pub peak_rss_mib: BTreeMap<String, f64>,
    pub cpu_cores: BTreeMap<String, f64>,
}

pub async fn run(stack: &Stack, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let customers = args.int("customers", if args.smoke { 300 } else { 5_000 })? as usize;
    let seconds = args.float("seconds", if args.smoke { 2.0 } else { 20.0 })?;
    let per = args.int("clients-per-connection", 32)? as usize;
    println!("\noverload: {customers} customers on one listing for {seconds} s");
    let windows = stack
        .listings(
            1,
            1,
            1_000_000,
            Duration::from_secs(3600),
            Duration::from_secs(3600),
            "overload",
        )
        .await?;
    let targets = targets(&windows);
    let clients = stack.connections(customers, per).await?;
    let spec = LoadSpec {
        targets: targets.clone(),
        customers_per_target: customers,
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs_f64(seconds),
        tag: "overload".into(),
        stop_after: None,
    };
    let sampler = crate::cpu::Sampler::window(stack.parts(), spec.warmup, spec.measure);
    let result = load::run(&clients, &spec).await;
    let cpu_cores = sampler.finish().await;
    // Refusals are the point here; only the other answers, oversell and lost orders fail.
    consistent(stack, &targets, &result, "overload", report).await?;
    for code in result.errors.keys() {
        if !["Unavailable", "DeadlineExceeded"].contains(&code.as_str()) {
            report.fail(format!(
                "overload: unexpected answers {code}: {:?}",
                result.error_samples.get(code)
            ));
        }
    }
    let peak_rss_mib = stack.peak_rss_mib();
    let gone = stack.processes_gone();
    if !gone.is_empty() {
        report.fail(format!(
            "overload: processes of the stack are gone: {gone:?}"
        ));
    }
    let out = OverloadResult {
        customers,
        connections: clients.len(),
        seconds,
        reserved_per_sec: result.reservations_per_sec,
        answered: result.latency.clone(),
        refused: result.error_latency_in_window.clone(),
        refused_whole_run: result.error_latency.clone(),
        refused_by_code: result.errors.clone(),
        peak_rss_mib,
        cpu_cores,
    };
    print(&out);
    report.overload = Some(out);
    Ok(())
}

fn print(out: &OverloadResult) {
    println!(
        "  reserved {:.0}/s · answered p50 {:.1} / p99 {:.1} ms · refused {} in the window (p50 {:.1} / p99 {:.1} / max {:.1} ms), {} in the whole run (p99 {:.1} / max {:.1} ms) {:?}",
        out.reserved_per_sec,
        out.answered.p50_ms,
        out.answered.p99_ms,
        out.refused.count,
        out.refused.p50_ms,
        out.refused.p99_ms,
        out.refused.max_ms,
        out.refused_whole_run.count,
        out.refused_whole_run.p99_ms,
        out.refused_whole_run.max_ms,
        out.refused_by_code
    );
    println!(
        "  peak RSS (MiB): {:?} · CPU (cores): {:?}",
        out.peak_rss_mib, out.cpu_cores
    );
}
