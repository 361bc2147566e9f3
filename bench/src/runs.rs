//! A listing's workflow as Temporal holds it: its runs (continue-as-new makes several), their
//! events and bytes, the progress signals they took, and a one-line diagnosis of a listing
//! that seems stuck.

use crate::stack::Stack;
use futures::StreamExt;
use sellwindow_workflows::SellWindow;
use serde::Serialize;
use temporalio_client::{WorkflowExecutionInfo, WorkflowHandle};

/// Every run of a listing's workflow (in no particular order).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Runs {
    /// Events summed over the runs.
    pub events: u64,
    /// Events of each run (Temporal warns at 10,240 and terminates a run at 51,200).
    pub run_events: Vec<u64>,
    /// Bytes of each run's history (Temporal warns at 10 MB and terminates a run at 50 MB).
    pub run_bytes: Vec<u64>,
    /// Signals the runs took (the API's progress signals, and payment pokes).
    pub signals: u64,
}

fn handle(
    stack: &Stack,
    workflow_id: &str,
    run_id: &str,
) -> WorkflowHandle<temporalio_client::Client, SellWindow> {
    let info = WorkflowExecutionInfo::builder()
        .namespace(stack.cfg.temporal_namespace.clone())
        .workflow_id(workflow_id.to_string())
        .run_id(run_id.to_string())
        .build();
    WorkflowHandle::new(stack.client.clone(), info)
}

/// The run ids of `workflow_id`: the current one (by describing it) and the earlier ones
/// (from visibility, where continued-as-new runs are closed).
async fn run_ids(stack: &Stack, workflow_id: &str) -> anyhow::Result<Vec<String>> {
    let current = stack
        .client
        .get_workflow_handle::<SellWindow>(workflow_id)
        .describe(Default::default())
        .await?;
    let mut ids = vec![current.run_id().to_string()];
    let mut listed = stack
        .client
        .list_workflows(format!("WorkflowId = '{workflow_id}'"), Default::default());
    while let Some(r) = listed.next().await {
        let r = r?;
        if !ids.iter().any(|x| x == r.run_id()) {
            ids.push(r.run_id().to_string());
        }
    }
    Ok(ids)
}

/// Events, bytes and signals of every run of `workflow_id`.
pub async fn runs(stack: &Stack, workflow_id: &str) -> anyhow::Result<Runs> {
    let mut out = Runs::default();
    for run in run_ids(stack, workflow_id).await? {
        let h = handle(stack, workflow_id, &run);
        let d = h.describe(Default::default()).await?;
        out.run_events.push(d.history_length() as u64);
        out.run_bytes.push(
            d.raw()
                .workflow_execution_info
                .as_ref()
                .map_or(0, |i| i.history_size_bytes.max(0) as u64),
        );
        let json = h.fetch_history(Default::default()).to_json().await?;
        let history: serde_json::Value = serde_json::from_slice(&json)?;
        out.signals += history["events"].as_array().map_or(0, |events| {
            events
                .iter()
                .filter(|e| {
                    e["attributes"]
                        .get("WorkflowExecutionSignaledEventAttributes")
                        .is_some()
                })
                .count() as u64
        });
    }
    out.events = out.run_events.iter().sum();
    Ok(out)
}

/// What Temporal says about a listing's workflow when something looks stuck: its status,
/// history, pending activities, the pending workflow task (a high attempt means it keeps
/// failing) and the problems the server reports (`TemporalReportedProblems`).
pub async fn diagnose(stack: &Stack, workflow_id: &str) -> String {
    let d = match stack
        .client
        .get_workflow_handle::<SellWindow>(workflow_id)
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
    let activities: Vec<String> = raw
        .pending_activities
        .iter()
        .map(|a| {
            format!(
                "{} attempt {}{}",
                a.activity_type.as_ref().map_or("?", |t| t.name.as_str()),
                a.attempt,
                a.last_failure
                    .as_ref()
                    .map_or(String::new(), |f| format!(" (last failure: {})", f.message))
            )
        })
        .collect();
    format!(
        "workflow {workflow_id}: status {:?}, history {} events, pending activities {activities:?}, pending workflow task {:?}, reported problems {problems}",
        d.status(),
        d.history_length(),
        raw.pending_workflow_task
            .as_ref()
            .map(|t| format!("attempt {} state {}", t.attempt, t.state)),
    )
}
