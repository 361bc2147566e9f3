//! Coalesces concurrent reservations for one listing into few workflow updates. A Temporal
//! workflow takes only ~10 updates in flight, and per-reservation updates collapse past that
//! (DESIGN.md, "Limits measured here"), so each listing gets a lane: at most `max_in_flight`
//! reserve updates at once, and every reservation that arrives meanwhile joins the next update's
//! batch. Each reservation still gets its own answer. A transient failure retries the same
//! batch: order ids are derived from idempotency keys, so a retry cannot double-book.

use crate::error::ApiError;
use crate::metrics::Metrics;
use sellwindow_domain::{ReserveBatch, ReserveItem, ReserveOutcome};
use sellwindow_workflows::SellWindowWorkflow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use temporalio_client::{Client, WorkflowExecuteUpdateOptions};
use tokio::sync::{Semaphore, mpsc, oneshot};

struct Pending {
    item: ReserveItem,
    reply: oneshot::Sender<Result<ReserveOutcome, ApiError>>,
}

pub struct Coalescer {
    client: Client,
    metrics: Arc<Metrics>,
    lanes: Mutex<HashMap<String, mpsc::UnboundedSender<Pending>>>,
    max_in_flight: usize,
    max_batch: usize,
}

impl Coalescer {
    pub fn new(client: Client, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            metrics,
            lanes: Mutex::new(HashMap::new()),
            max_in_flight: 8,
            max_batch: 512,
        }
    }

    /// Reserves through the listing's lane and waits for this reservation's own answer.
    pub async fn reserve(
        &self,
        workflow_id: &str,
        item: ReserveItem,
    ) -> Result<ReserveOutcome, ApiError> {
        let (tx, rx) = oneshot::channel();
        let mut pending = Pending { item, reply: tx };
        for _ in 0..2 {
            let lane = self.lane(workflow_id);
            match lane.send(pending) {
                Ok(()) => {
                    return rx
                        .await
                        .map_err(|_| ApiError::Unavailable("reservation lane stopped".into()))?;
                }
                Err(mpsc::error::SendError(p)) => {
                    // The lane ended: start a fresh one.
                    self.lanes.lock().expect("lanes lock").remove(workflow_id);
                    pending = p;
                }
            }
        }
        Err(ApiError::Unavailable("reservation lane unavailable".into()))
    }

    fn lane(&self, workflow_id: &str) -> mpsc::UnboundedSender<Pending> {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        if let Some(tx) = lanes.get(workflow_id) {
            return tx.clone();
        }
        let (tx, rx) = mpsc::unbounded_channel();
        lanes.insert(workflow_id.to_string(), tx.clone());
        tokio::spawn(run_lane(
            self.client.clone(),
            self.metrics.clone(),
            workflow_id.to_string(),
            rx,
            self.max_in_flight,
            self.max_batch,
        ));
        tx
    }
}

async fn run_lane(
    client: Client,
    metrics: Arc<Metrics>,
    workflow_id: String,
    mut rx: mpsc::UnboundedReceiver<Pending>,
    max_in_flight: usize,
    max_batch: usize,
) {
    let slots = Arc::new(Semaphore::new(max_in_flight));
    loop {
        // Wait for a free slot first: whatever queues meanwhile rides in the next batch.
        let permit = slots
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closes");
        let Some(first) = rx.recv().await else { break };
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        let client = client.clone();
        let metrics = metrics.clone();
        let workflow_id = workflow_id.clone();
        tokio::spawn(async move {
            let items: Vec<ReserveItem> = batch.iter().map(|p| p.item.clone()).collect();
            let result = send_batch(&client, &metrics, &workflow_id, items).await;
            drop(permit);
            match result {
                Ok(outcomes) => {
                    for (p, o) in batch.into_iter().zip(outcomes) {
                        let _ = p.reply.send(Ok(o));
                    }
                }
                Err(e) => {
                    // Each waiting reservation gets the same kind of error.
                    for p in batch {
                        let err = match &e {
                            ApiError::Precondition(m) => ApiError::Precondition(m.clone()),
                            // The listing's workflow has finished: its window is over.
                            ApiError::NotFound(_) => {
                                ApiError::Precondition("the sell window is closed".into())
                            }
                            other => ApiError::Unavailable(other.to_string()),
                        };
                        let _ = p.reply.send(Err(err));
                    }
                }
            }
        });
    }
}

async fn send_batch(
    client: &Client,
    metrics: &Metrics,
    workflow_id: &str,
    items: Vec<ReserveItem>,
) -> Result<Vec<ReserveOutcome>, ApiError> {
    let handle = client.get_workflow_handle::<SellWindowWorkflow>(workflow_id);
    let expected = items.len();
    let batch = ReserveBatch { items };
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    loop {
        attempt += 1;
        Metrics::inc(&metrics.reserve_updates);
        let r = handle
            .execute_update(
                SellWindowWorkflow::reserve,
                batch.clone(),
                WorkflowExecuteUpdateOptions::default(),
            )
            .await;
        match r {
            Ok(outcomes) if outcomes.len() == expected => return Ok(outcomes),
            Ok(outcomes) => {
                return Err(ApiError::Internal(format!(
                    "workflow answered {} of {expected} reservations",
                    outcomes.len()
                )));
            }
            Err(e) => {
                let err = crate::error::from_update(e);
                // A refusal by the validator is final; anything else may be transient
                // (e.g. an update the worker did not process): retry the same batch.
                if !matches!(err, ApiError::Unavailable(_)) || attempt >= 6 {
                    return Err(err);
                }
                Metrics::inc(&metrics.reserve_update_retries);
                tracing::warn!(%workflow_id, attempt, error = %err, "retrying reserve update");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
        }
    }
}
