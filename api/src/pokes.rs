//! Telling a listing's workflow that payment outcomes wait in its inbox. Callbacks for one
//! listing share pokes: while one poke is on its way, every callback recorded meanwhile waits for
//! the next, which is sent once that one has answered and a short pause has passed. Each
//! callback is answered only after a poke sent after its record, so nothing waits unseen; and a
//! flood of callbacks costs the listing at most ~20 signals a second, not one each (the server
//! takes 10,000 a run, cannot end a run while signals keep coming, and fails a workflow task
//! that has more than 100 events buffered behind it).

use crate::batch::Batcher;
use crate::error::ApiError;
use sellwindow_workflows::SellWindow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use temporalio_client::{Client, WorkflowSignalOptions};

type Lane = Arc<Batcher<(), ()>>;

/// At least this long between two pokes of one listing from one API process.
const POKE_GAP: std::time::Duration = std::time::Duration::from_millis(50);

pub struct Pokes {
    client: Client,
    lanes: Mutex<HashMap<String, Lane>>,
}

impl Pokes {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            lanes: Mutex::new(HashMap::new()),
        }
    }

    /// Returns once a poke sent after this call reached the listing's workflow. `Finished`:
    /// the workflow has finished.
    pub async fn poke(&self, workflow_id: &str) -> Result<(), ApiError> {
        self.lane(workflow_id).call(()).await
    }

    fn lane(&self, workflow_id: &str) -> Lane {
        let mut lanes = self.lanes.lock().expect("pokes lock");
        drop_idle(&mut lanes);
        lanes
            .entry(workflow_id.to_string())
            .or_insert_with(|| {
                let (client, workflow_id) = (self.client.clone(), workflow_id.to_string());
                Arc::new(Batcher::spawn(usize::MAX, 1, move |waiting: Vec<()>| {
                    let (client, workflow_id) = (client.clone(), workflow_id.clone());
                    async move {
                        client
                            .get_workflow_handle::<SellWindow>(&workflow_id)
                            .signal(
                                SellWindow::payments_waiting,
                                (),
                                WorkflowSignalOptions::default(),
                            )
                            .await
                            .map_err(|e| match e {
                                temporalio_client::errors::WorkflowInteractionError::NotFound(
                                    _,
                                ) => ApiError::Finished,
                                other => ApiError::Unavailable(other.to_string()),
                            })?;
                        // The lane sends one poke at a time: this pause spaces them out.
                        tokio::time::sleep(POKE_GAP).await;
                        Ok(vec![(); waiting.len()])
                    }
                }))
            })
            .clone()
    }
}

/// Lanes kept before idle ones (nobody waiting on them) are dropped.
const LANES_KEPT: usize = 1_024;

/// Drops the lanes nobody is waiting on once many are kept (a lane's runner ends with it; a
/// poke it is sending finishes first).
fn drop_idle(lanes: &mut HashMap<String, Lane>) {
    if lanes.len() >= LANES_KEPT {
        lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
    }
}
