//! A listing's workflow as Temporal holds it: its runs (continue-as-new makes several), their
//! events and bytes, the hand-overs between them, the workflow tasks' timing, and a one-line
//! diagnosis of a listing that seems stuck.

use crate::stack::Stack;
use futures::StreamExt;
use sellwindow_workflows::ListingWorkflow;
use serde::Serialize;
use temporalio_client::{WorkflowExecutionInfo, WorkflowHandle};

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
        .get_workflow_handle::<ListingWorkflow>(workflow_id)
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
        let h: WorkflowHandle<temporalio_client::Client, ListingWorkflow> =
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
        let h: WorkflowHandle<temporalio_client::Client, ListingWorkflow> =
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
        .get_workflow_handle::<ListingWorkflow>(workflow_id)
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
