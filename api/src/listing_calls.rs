//! Calling a listing's workflow within the caller's deadline: an update (confirm, cancels, a
//! payment retry, a work step) and its typed answer. While the listing moves to its next run
//! its validators turn updates away; that takes a moment, so the update is asked again
//! shortly instead of failing the caller.
//!
//! An update the listing has accepted finishes durably whatever happens to the caller; if it
//! is still running at the deadline (a fan-out over a big listing) the caller is told it was
//! accepted ([`Within::Accepted`]) rather than kept waiting. One the listing did not take in
//! time (no worker, Temporal unreachable) answers DEADLINE_EXCEEDED.

use crate::error::{ApiError, from_update};
use sellwindow_workflows::SellWindow;
use sellwindow_workflows::rejection::Answer;
use std::time::{Duration, Instant};
use temporalio_client::{Client, WorkflowStartUpdateOptions};
use temporalio_common::{HasWorkflowDefinition, UpdateDefinition};

/// How often an update is asked again while its listing hands over, and for how long at most.
const HAND_OVER_POLL: Duration = Duration::from_millis(15);
const HAND_OVER_PATIENCE: Duration = Duration::from_secs(30);

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
        "{what} was not answered in time; retry (a retry is safe: it changes nothing twice)"
    ))
}

/// Runs the update `update()` names on the listing's workflow, waiting at most `deadline`;
/// a refusal comes back as the API's error for it.
pub async fn update_listing<U, T>(
    client: &Client,
    workflow_id: &str,
    update: impl Fn() -> U,
    input: U::Input,
    deadline: Duration,
) -> Result<Within<T>, ApiError>
where
    U: UpdateDefinition<Workflow = <SellWindow as HasWorkflowDefinition>::Run, Output = Answer<T>>,
    U::Input: Send + Clone,
    T: 'static,
    Answer<T>: temporalio_common::data_converters::TemporalDeserializable,
{
    let handle = client.get_workflow_handle::<SellWindow>(workflow_id);
    let started = Instant::now();
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let start = handle.start_update(
            update(),
            input.clone(),
            WorkflowStartUpdateOptions::default(),
        );
        let answer = match tokio::time::timeout_at(until, start).await {
            Err(_) => return Err(too_late("the request")),
            Ok(Err(e)) => Err(from_update(e)),
            Ok(Ok(accepted)) => {
                let result = accepted.get_result(Default::default());
                match tokio::time::timeout_at(until, result).await {
                    Err(_) => return Ok(Within::Accepted),
                    Ok(r) => r.map_err(from_update),
                }
            }
        };
        match answer {
            // Turned away while the listing hands over (or not reached): ask again shortly.
            Err(ApiError::Unavailable(_)) if started.elapsed() < HAND_OVER_PATIENCE => {
                tokio::time::sleep(HAND_OVER_POLL).await
            }
            Err(e) => return Err(e),
            Ok(Ok(done)) => return Ok(Within::Done(done)),
            Ok(Err(refusal)) => return Err(refusal.into()),
        }
    }
}
