//! Sending an update to a listing's workflow within the caller's deadline. While the listing
//! moves to its next run its validators turn updates away with a hand-over refusal; that takes
//! a moment, so the update is asked again shortly instead of failing the caller.
//!
//! An update the listing has accepted finishes durably whatever happens to the caller; if it
//! is still running at the deadline (a fan-out over a big listing) the caller is told it was
//! accepted ([`Within::Accepted`]) rather than kept waiting. One the listing did not take in
//! time (no worker, Temporal unreachable) answers DEADLINE_EXCEEDED.

use crate::error::{ApiError, from_update};
use sellwindow_workflows::ListingWorkflow;
use sellwindow_workflows::rejection::is_handing_over;
use std::time::{Duration, Instant};
use temporalio_client::{Client, WorkflowStartUpdateOptions};
use temporalio_common::{HasWorkflowDefinition, UpdateDefinition};

/// How often an update asks again while its listing hands over, and for how long at most.
pub const HAND_OVER_POLL: Duration = Duration::from_millis(15);
pub const HAND_OVER_PATIENCE: Duration = Duration::from_secs(30);

/// Whether an update refused this way should be asked again (and after how long).
pub fn retry_hand_over(err: &ApiError, started: Instant) -> bool {
    matches!(err, ApiError::Unavailable(m) if is_handing_over(m))
        && started.elapsed() < HAND_OVER_PATIENCE
}

/// What became of an update by the caller's deadline.
#[derive(Debug)]
pub enum Within<T> {
    /// It finished, with this answer.
    Done(T),
    /// The listing accepted it and is still carrying it out; it will finish.
    Accepted,
}

pub fn too_late(what: &str) -> ApiError {
    ApiError::DeadlineExceeded(format!(
        "{what} was not answered in time; retry (a retry with the same idempotency key never \
         makes a second order)"
    ))
}

/// Runs the update `update()` names on the listing's workflow, waiting at most `deadline`, and
/// maps its failure to the API's error once.
pub async fn update_listing<U>(
    client: &Client,
    workflow_id: &str,
    update: impl Fn() -> U,
    input: U::Input,
    deadline: Duration,
) -> Result<Within<U::Output>, ApiError>
where
    U: UpdateDefinition<Workflow = <ListingWorkflow as HasWorkflowDefinition>::Run>,
    U::Input: Send + Clone,
    U::Output: 'static + temporalio_common::data_converters::TemporalDeserializable,
{
    let handle = client.get_workflow_handle::<ListingWorkflow>(workflow_id);
    let started = Instant::now();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let start = handle.start_update(
            update(),
            input.clone(),
            WorkflowStartUpdateOptions::default(),
        );
        let accepted = match tokio::time::timeout_at(until, start).await {
            Err(_) => return Err(too_late("the request")),
            Ok(Err(e)) => Err(from_update(e)),
            Ok(Ok(accepted)) => Ok(accepted),
        };
        let answer = match accepted {
            Ok(h) => match tokio::time::timeout_at(until, h.get_result(Default::default())).await {
                Err(_) => return Ok(Within::Accepted),
                Ok(r) => r.map_err(from_update),
            },
            Err(e) => Err(e),
        };
        match answer {
            Err(e) if retry_hand_over(&e, started) => tokio::time::sleep(HAND_OVER_POLL).await,
            other => return other.map(Within::Done),
        }
    }
}
