//! Sending an update to a listing's workflow. While the listing moves to its next run its
//! validators turn updates away with a hand-over refusal; that takes a moment, so the update is
//! asked again shortly instead of failing the caller.

use crate::error::{ApiError, from_update};
use sellwindow_workflows::SellWindowWorkflow;
use sellwindow_workflows::rejection::is_handing_over;
use std::time::{Duration, Instant};
use temporalio_client::{Client, WorkflowExecuteUpdateOptions};
use temporalio_common::{HasWorkflowDefinition, UpdateDefinition};

/// How often an update asks again while its listing hands over, and for how long at most.
pub const HAND_OVER_POLL: Duration = Duration::from_millis(15);
pub const HAND_OVER_PATIENCE: Duration = Duration::from_secs(30);

/// Whether an update refused this way should be asked again (and after how long).
pub fn retry_hand_over(err: &ApiError, started: Instant) -> bool {
    matches!(err, ApiError::Unavailable(m) if is_handing_over(m))
        && started.elapsed() < HAND_OVER_PATIENCE
}

/// Runs the update `update()` names on the listing's workflow and maps its failure to the API's error once.
pub async fn update_listing<U>(
    client: &Client,
    workflow_id: &str,
    update: impl Fn() -> U,
    input: U::Input,
) -> Result<U::Output, ApiError>
where
    U: UpdateDefinition<Workflow = <SellWindowWorkflow as HasWorkflowDefinition>::Run>,
    U::Input: Send + Clone,
    U::Output: 'static,
{
    let handle = client.get_workflow_handle::<SellWindowWorkflow>(workflow_id);
    let started = Instant::now();
    loop {
        let r = handle
            .execute_update(
                update(),
                input.clone(),
                WorkflowExecuteUpdateOptions::default(),
            )
            .await;
        match r.map_err(from_update) {
            Err(e) if retry_hand_over(&e, started) => tokio::time::sleep(HAND_OVER_POLL).await,
            other => return other,
        }
    }
}
