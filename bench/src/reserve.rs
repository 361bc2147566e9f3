//! `bench reserve`: one hot listing per level (64, 256, 512 customers by default), each on a
//! fresh listing with a large cap, every reservation through the real API. After each level:
//! the listing's workflow history over all its runs, and the no-oversell checks.

use crate::args::Args;
use crate::cpu;
use crate::load::{self, LoadResult, LoadSpec, Target};
use crate::pgstats::{self, PgWork};
use crate::report::{self, Report};
use crate::stack::Stack;
use futures::StreamExt;
use sellwindow_domain::{ProductId, SellWindowId};
use sellwindow_starter::pb;
use sellwindow_workflows::SellWindowWorkflow;
use serde::Serialize;
use std::time::Duration;
use temporalio_client::{WorkflowExecutionInfo, WorkflowHandle, WorkflowQueryOptions};

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

/// Events in every run of `workflow_id` (continue-as-new makes several), and each run's
/// events and bytes.
pub async fn history_events(
    stack: &Stack,
    workflow_id: &str,
) -> anyhow::Result<(u64, Vec<u64>, Vec<u64>)> {
    let client = &stack.client;
    let mut run_ids: Vec<String> = Vec::new();
    // The current run, by describing the workflow id.
    let current = client
        .get_workflow_handle::<SellWindowWorkflow>(workflow_id)
        .describe(Default::default())
        .await?;
    run_ids.push(current.run_id().to_string());
    // The earlier runs, from visibility (continued-as-new runs are closed there).
    let mut runs =
        client.list_workflows(format!("WorkflowId = '{workflow_id}'"), Default::default());
    while let Some(r) = runs.next().await {
        let r = r?;
        if !run_ids.iter().any(|x| x == r.run_id()) {
            run_ids.push(r.run_id().to_string());
        }
    }
    let (mut events, mut bytes) = (Vec::new(), Vec::new());
    for run in &run_ids {
        let info = WorkflowExecutionInfo::builder()
            .namespace(stack.cfg.temporal_namespace.clone())
            .workflow_id(workflow_id.to_string())
            .run_id(run.clone())
            .build();
        let h: WorkflowHandle<temporalio_client::Client, SellWindowWorkflow> =
            WorkflowHandle::new(client.clone(), info);
        let d = h.describe(Default::default()).await?;
        events.push(d.history_length() as u64);
        bytes.push(
            d.raw()
                .workflow_execution_info
                .as_ref()
                .map_or(0, |i| i.history_size_bytes.max(0) as u64),
        );
    }
    Ok((events.iter().sum(), events, bytes))
}

/// One continue-as-new of a listing, timed from its runs' histories: how long updates were
/// turned away between the last one the old run accepted and the first the new run accepted.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HandOverGap {
    /// Last accepted update → the old run's continue-as-new (in-flight updates finish, the
    /// state is packed and, when large, saved in parts).
    pub drain_and_save_ms: f64,
    /// Continue-as-new → the new run's first workflow task starts (server and worker).
    pub transfer_ms: f64,
    /// That first task → the first accepted update (orders read back, unpacked).
    pub take_over_ms: f64,
    pub total_ms: f64,
}

/// Where a listing's workflow tasks spend their time, over every run: the workflow is the
/// single writer, so its tasks run one after another and their cycle bounds its throughput.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TaskProfile {
    pub workflow_tasks: u64,
    pub updates_accepted: u64,
    /// Scheduled → started: the server hands the task to the worker.
    pub mean_wait_ms: f64,
    /// Started → completed: the worker runs handlers and local activities (the write).
    pub mean_run_ms: f64,
    /// Completed → the next task scheduled: the server records the task's commands.
    pub mean_gap_ms: f64,
    pub updates_per_task: f64,
}

/// The listing's history over every run: its hand-overs and its workflow-task profile.
pub struct RunsAnalysis {
    pub hand_overs: Vec<HandOverGap>,
    pub tasks: TaskProfile,
}

/// Reads every run of `workflow_id` (ordered by their start) and times them.
pub async fn analyse_runs(stack: &Stack, workflow_id: &str) -> anyhow::Result<RunsAnalysis> {
    let mut runs = Vec::new();
    let mut listed = stack
        .client
        .list_workflows(format!("WorkflowId = '{workflow_id}'"), Default::default());
    while let Some(r) = listed.next().await {
        let r = r?;
        let info = WorkflowExecutionInfo::builder()
            .namespace(stack.cfg.temporal_namespace.clone())
            .workflow_id(workflow_id.to_string())
            .run_id(r.run_id().to_string())
            .build();
        let h: WorkflowHandle<temporalio_client::Client, SellWindowWorkflow> =
            WorkflowHandle::new(stack.client.clone(), info);
        let json = h.fetch_history(Default::default()).to_json().await?;
        let history: serde_json::Value = serde_json::from_slice(&json)?;
        runs.push(RunTimes::of(&history));
    }
    runs.sort_by(|a, b| a.started.total_cmp(&b.started));
    let hand_overs = runs
        .windows(2)
        .filter_map(|w| {
            let (old, new) = (&w[0], &w[1]);
            let (last, can) = (old.last_accepted?, old.continued_as_new?);
            let (first_task, first) = (new.first_task_started?, new.first_accepted?);
            Some(HandOverGap {
                drain_and_save_ms: (can - last) * 1e3,
                transfer_ms: (first_task - can) * 1e3,
                take_over_ms: (first - first_task) * 1e3,
                total_ms: (first - last) * 1e3,
            })
        })
        .collect();
    let (mut tasks, mut updates, mut wait, mut run, mut gap, mut gaps) = (0, 0, 0.0, 0.0, 0.0, 0);
    for r in &runs {
        tasks += r.tasks;
        updates += r.updates;
        wait += r.wait_s;
        run += r.run_s;
        gap += r.gap_s;
        gaps += r.gaps;
    }
    let mean = |sum: f64, n: u64| if n == 0 { 0.0 } else { sum * 1e3 / n as f64 };
    Ok(RunsAnalysis {
        hand_overs,
        tasks: TaskProfile {
            workflow_tasks: tasks,
            updates_accepted: updates,
            mean_wait_ms: mean(wait, tasks),
            mean_run_ms: mean(run, tasks),
            mean_gap_ms: mean(gap, gaps),
            updates_per_task: if tasks == 0 {
                0.0
            } else {
                updates as f64 / tasks as f64
            },
        },
    })
}

/// The moments of one run that bound a hand-over (seconds since the epoch), and its
/// workflow tasks' times summed.
#[derive(Default)]
struct RunTimes {
    started: f64,
    first_task_started: Option<f64>,
    first_accepted: Option<f64>,
    last_accepted: Option<f64>,
    continued_as_new: Option<f64>,
    tasks: u64,
    updates: u64,
    wait_s: f64,
    run_s: f64,
    gap_s: f64,
    gaps: u64,
}

impl RunTimes {
    fn of(history: &serde_json::Value) -> Self {
        let mut t = RunTimes {
            started: f64::INFINITY,
            ..Default::default()
        };
        let (mut scheduled, mut started, mut completed) = (None, None, None::<f64>);
        let events = history["events"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        for e in events {
            let Some(at) = e["event_time"].as_str().and_then(rfc3339_seconds) else {
                continue;
            };
            let kind = e["attributes"]
                .as_object()
                .and_then(|a| a.keys().next())
                .map_or("", String::as_str);
            match kind {
                "WorkflowExecutionStartedEventAttributes" => t.started = at,
                "WorkflowTaskScheduledEventAttributes" => {
                    if let Some(c) = completed.take() {
                        t.gap_s += at - c;
                        t.gaps += 1;
                    }
                    scheduled = Some(at);
                }
                "WorkflowTaskStartedEventAttributes" => {
                    t.first_task_started.get_or_insert(at);
                    if let Some(s) = scheduled.take() {
                        t.wait_s += at - s;
                    }
                    started = Some(at);
                }
                "WorkflowTaskCompletedEventAttributes" => {
                    if let Some(s) = started.take() {
                        t.tasks += 1;
                        t.run_s += at - s;
                    }
                    completed = Some(at);
                }
                "WorkflowExecutionUpdateAcceptedEventAttributes" => {
                    t.updates += 1;
                    t.first_accepted.get_or_insert(at);
                    t.last_accepted = Some(at);
                }
                "WorkflowExecutionContinuedAsNewEventAttributes" => t.continued_as_new = Some(at),
                _ => {}
            }
        }
        t
    }
}

/// `2026-11-25T09:06:53.694636709Z` as seconds since the epoch (UTC only, as Temporal writes).
fn rfc3339_seconds(s: &str) -> Option<f64> {
    let (date, time) = s.strip_suffix('Z')?.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut hms = time.split(':');
    let (h, min) = (
        hms.next()?.parse::<f64>().ok()?,
        hms.next()?.parse::<f64>().ok()?,
    );
    let sec = hms.next()?.parse::<f64>().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + h * 3_600.0 + min * 60.0 + sec)
}

/// What Temporal says about a listing's workflow when something looks stuck: its status,
/// history, pending activities, the pending workflow task (a high attempt means it keeps
/// failing) and the problems the server reports (`TemporalReportedProblems`).
pub async fn diagnose(stack: &Stack, workflow_id: &str) -> String {
    let d = match stack
        .client
        .get_workflow_handle::<SellWindowWorkflow>(workflow_id)
        .describe(Default::default())
        .await
    {
        Ok(d) => d,
        Err(e) => return format!("describe failed: {e}"),
    };
    let raw = d.raw();
    let problems = raw
        .workflow_execution_info
        .as_ref()
        .and_then(|i| i.search_attributes.as_ref())
        .and_then(|s| s.indexed_fields.get("TemporalReportedProblems"))
        .map(|p| String::from_utf8_lossy(&p.data).to_string())
        .unwrap_or_else(|| "none".into());
    format!(
        "workflow {workflow_id}: status {:?}, history {} events, {} pending activities, pending workflow task {:?}, reported problems {problems}",
        d.status(),
        d.history_length(),
        raw.pending_activities.len(),
        raw.pending_workflow_task
            .as_ref()
            .map(|t| format!("attempt {} state {}", t.attempt, t.state)),
    )
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
            .get_workflow_handle::<SellWindowWorkflow>(&t.workflow_id)
            .query(
                SellWindowWorkflow::figures,
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
        consistent: sold == held && workflow_sold.is_none_or(|w| w == sold),
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
    pub connections: usize,
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
}

/// Runs one or more listings under load with the given figures, and checks them after.
/// Fails (in `report.failures`) on oversell, disagreement, lost answers or errors.
pub async fn checked(
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
    if load.errors_total > 0 {
        report.fail(format!(
            "{what}: {} reservations failed: {:?} (e.g. {:?})",
            load.errors_total, load.errors, load.error_samples
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
    let per_conn = args.int("clients-per-connection", 32)? as usize;
    println!(
        "\nreserve: one hot listing per level (cap {cap}), {warmup} s warm-up + {seconds} s measured, through gRPC with tokens and idempotency keys"
    );
    for (i, &n) in levels.iter().enumerate() {
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
        let spec = LoadSpec {
            targets: targets.clone(),
            customers_per_target: n,
            warmup: Duration::from_secs_f64(warmup),
            measure: Duration::from_secs_f64(seconds),
            tag: format!("r{i}"),
            stop_after: None,
        };
        let pg0 = pgstats::sample(&stack.store).await;
        let sampler = cpu::Sampler::window(stack.temporal_pid, spec.warmup, spec.measure);
        let load = load::run(&clients, &spec).await;
        let cpu_cores = sampler.finish().await;
        let db = pgstats::after(&stack.store, pg0, load.reservations_ok_total).await;
        let m1 = stack.api_metrics().await;
        let what = format!("reserve {n} customers");
        let checks = checked(stack, &targets, &load, &what, report).await?;
        let check = checks.into_iter().next().unwrap_or_default();
        let updates = metric_delta(&m0, &m1, "sellwindow_reserve_updates_total");
        let retries = metric_delta(&m0, &m1, "sellwindow_reserve_update_retries_total");
        let runs = analyse_runs(stack, &check.workflow_id).await?;
        let api_stages = stage_means(&m0, &m1);
        let level = ReserveLevel {
            customers: n,
            connections: clients.len(),
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
    let delta = |k: &str| b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0);
    let mut out = std::collections::BTreeMap::new();
    for key in b.keys() {
        let Some(stage) = key
            .strip_prefix("sellwindow_reserve_stage_seconds_sum{stage=\"")
            .and_then(|r| r.strip_suffix("\"}"))
        else {
            continue;
        };
        let n = delta(&format!(
            "sellwindow_reserve_stage_seconds_count{{stage=\"{stage}\"}}"
        ));
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
