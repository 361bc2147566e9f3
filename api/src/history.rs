//! What a listing's workflow costs in Temporal, read from its histories: every run's length,
//! the largest payload any activity was given or returned, how many activities ran. For
//! operators checking a listing against the server's limits (51,200 events a run, 2 MB a
//! payload), and for the tests and the bench that hold the listing to them.

use serde::Serialize;
use temporalio_client::{Client, WorkflowExecutionInfo};
use temporalio_common::protos::temporal::api::common::v1::Payloads;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

#[derive(Debug, Default, Clone, Serialize)]
pub struct HistoryCost {
    /// Events of each run, oldest first.
    pub events_per_run: Vec<usize>,
    /// What each run was started with, in bytes (a continued run: what the run before carried
    /// over to it), oldest first.
    pub carried_bytes_per_run: Vec<usize>,
    /// The largest activity input, activity result or local-activity marker, in bytes.
    pub largest_payload: usize,
    /// Activities scheduled and local activities recorded, over all runs.
    pub activities: usize,
    pub terminated: bool,
}

fn size(p: Option<&Payloads>) -> usize {
    p.map_or(0, |p| p.payloads.iter().map(|x| x.data.len()).sum())
}

/// Walks a workflow's runs from the newest back to the first.
pub async fn cost(
    client: &Client,
    namespace: &str,
    workflow_id: &str,
) -> Result<HistoryCost, temporalio_client::errors::WorkflowInteractionError> {
    let mut cost = HistoryCost::default();
    let mut run: Option<String> = None;
    loop {
        let info = WorkflowExecutionInfo::builder()
            .namespace(namespace.to_string())
            .workflow_id(workflow_id.to_string())
            .maybe_run_id(run.clone())
            .build();
        let events = info
            .bind_untyped(client.clone())
            .fetch_history(Default::default())
            .into_events()
            .await?;
        cost.events_per_run.insert(0, events.len());
        let mut previous = None;
        for e in &events {
            match e.attributes.as_ref() {
                Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                    cost.carried_bytes_per_run.insert(0, size(a.input.as_ref()));
                    if !a.continued_execution_run_id.is_empty() {
                        previous = Some(a.continued_execution_run_id.clone());
                    }
                }
                Some(Attributes::ActivityTaskScheduledEventAttributes(a)) => {
                    cost.activities += 1;
                    cost.largest_payload = cost.largest_payload.max(size(a.input.as_ref()));
                }
                Some(Attributes::ActivityTaskCompletedEventAttributes(a)) => {
                    cost.largest_payload = cost.largest_payload.max(size(a.result.as_ref()));
                }
                Some(Attributes::MarkerRecordedEventAttributes(a)) => {
                    if a.marker_name == "core_local_activity" {
                        cost.activities += 1;
                    }
                    let bytes: usize = a.details.values().map(|p| size(Some(p))).sum();
                    cost.largest_payload = cost.largest_payload.max(bytes);
                }
                Some(Attributes::WorkflowExecutionTerminatedEventAttributes(_)) => {
                    cost.terminated = true;
                }
                _ => {}
            }
        }
        match previous {
            Some(p) => run = Some(p),
            None => return Ok(cost),
        }
    }
}
