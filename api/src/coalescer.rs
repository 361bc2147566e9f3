//! Coalesces concurrent reservations for one listing into few workflow updates. A Temporal
//! workflow takes only ~10 updates in flight, and per-reservation updates collapse past that
//! (DESIGN.md, "Limits measured here"), so each listing gets a lane ([`Grouped`]): at most
//! [`MAX_IN_FLIGHT`] reserve updates at once, and every reservation that arrives meanwhile
//! joins the next update's batch. Each reservation still gets its own answer. A transient
//! failure retries the same batch: order ids are derived from idempotency keys, so a retry
//! cannot double-book.

use crate::error::ApiError;
use crate::grouped::Grouped;
use crate::metrics::{Metrics, Stage};
use crate::updates::{HAND_OVER_POLL, retry_hand_over, too_late};
use sellwindow_domain::{Reservation, Reservations, ReserveItem, ReserveOutcome};
use sellwindow_workflows::ListingWorkflow;
use sellwindow_workflows::payload::Json;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use temporalio_client::{Client, WorkflowExecuteUpdateOptions};

/// Reserve updates in flight per listing, and reservations per update at most. The server
/// takes 10, but every update in a workflow task costs the server and the worker a share of
/// that task: two keep the listing busy (one is decided while the next waits at the server)
/// and make batches large. Measured with `bench reserve` on 2 cores: 2 lanes answered ~25%
/// more reservations at 64 customers than 8, and as many at 512 with a lower p99.
const MAX_IN_FLIGHT: usize = 2;
const MAX_BATCH: usize = 512;
/// Reservations that may wait for one listing; past this a reservation is refused at once
/// (UNAVAILABLE, retry) instead of queueing without bound behind a slow or unreachable
/// listing. At ~5,000 reservations/s a full queue is about a second of work.
const MAX_WAITING: usize = 4_096;
/// Lanes kept before idle ones (nobody waiting on them) are dropped.
const LANES_KEPT: usize = 1_024;

type Lane = Arc<Grouped<ReserveItem, ReserveOutcome>>;

pub struct Coalescer {
    client: Client,
    metrics: Arc<Metrics>,
    lanes: Mutex<HashMap<String, Lane>>,
    deadline: Duration,
}

impl Coalescer {
    pub fn new(client: Client, metrics: Arc<Metrics>, deadline: Duration) -> Self {
        Self {
            client,
            metrics,
            lanes: Mutex::new(HashMap::new()),
            deadline,
        }
    }

    /// Reserves through the listing's lane and waits (at most the deadline) for this
    /// reservation's own answer. A reservation not answered in time may still be made: the
    /// customer's retry with the same key finds it.
    pub async fn reserve(
        &self,
        workflow_id: &str,
        item: ReserveItem,
    ) -> Result<ReserveOutcome, ApiError> {
        let lane = self.lane(workflow_id);
        tokio::time::timeout(self.deadline, lane.call(item))
            .await
            .unwrap_or_else(|_| Err(too_late("the reservation")))
    }

    /// Whether the listing's queue is full: a reservation would be refused, so it is refused
    /// before anything else is looked up (under a flood, refusals stay cheap and quick).
    pub fn is_full(&self, workflow_id: &str) -> bool {
        let lanes = self.lanes.lock().expect("lanes lock");
        lanes.get(workflow_id).is_some_and(|lane| lane.is_full())
    }

    fn lane(&self, workflow_id: &str) -> Lane {
        let mut lanes = self.lanes.lock().expect("lanes lock");
        drop_idle(&mut lanes);
        lanes
            .entry(workflow_id.to_string())
            .or_insert_with(|| {
                let (client, metrics, workflow_id) = (
                    self.client.clone(),
                    self.metrics.clone(),
                    workflow_id.to_string(),
                );
                Arc::new(Grouped::spawn_bounded(
                    MAX_BATCH,
                    MAX_IN_FLIGHT,
                    MAX_WAITING,
                    move |items| {
                        let (client, metrics, workflow_id) =
                            (client.clone(), metrics.clone(), workflow_id.clone());
                        async move {
                            send_batch(&client, &metrics, &workflow_id, items)
                                .await
                                .map_err(|e| match e {
                                    ApiError::Precondition(m) => ApiError::Precondition(m),
                                    // The listing's workflow has finished: its window is over.
                                    ApiError::NotFound(_) => {
                                        ApiError::Precondition("the sell window is closed".into())
                                    }
                                    other => ApiError::Unavailable(other.to_string()),
                                })
                        }
                    },
                ))
            })
            .clone()
    }
}

/// Drops the lanes nobody is waiting on once many are kept (a lane's runner ends with it; a
/// group it is serving finishes first).
pub fn drop_idle<L>(lanes: &mut HashMap<String, Arc<L>>) {
    if lanes.len() >= LANES_KEPT {
        lanes.retain(|_, lane| Arc::strong_count(lane) > 1);
    }
}

async fn send_batch(
    client: &Client,
    metrics: &Metrics,
    workflow_id: &str,
    items: Vec<ReserveItem>,
) -> Result<Vec<ReserveOutcome>, ApiError> {
    let handle = client.get_workflow_handle::<ListingWorkflow>(workflow_id);
    let expected = items.len();
    let batch = Reservations {
        items: items
            .iter()
            .map(Reservation::of)
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::Internal("a reservation without its key".into()))?,
    };
    let mut delay = Duration::from_millis(50);
    let mut attempt = 0;
    let started = std::time::Instant::now();
    loop {
        Metrics::inc(&metrics.reserve_updates);
        let update = handle.execute_update(
            ListingWorkflow::reserve_v2,
            Json(batch.clone()),
            WorkflowExecuteUpdateOptions::default(),
        );
        let r = metrics.timed(Stage::Update, update).await;
        match r {
            Ok(Json(answers)) if answers.replies.len() == expected => {
                return Ok(answers
                    .replies
                    .into_iter()
                    .zip(&items)
                    .map(|(reply, item)| reply.outcome(item, &answers.unit_price))
                    .collect());
            }
            Ok(Json(answers)) => {
                return Err(ApiError::Internal(format!(
                    "workflow answered {} of {expected} reservations",
                    answers.replies.len()
                )));
            }
            Err(e) => {
                let err = crate::error::from_update(e);
                // The listing is moving to its next run, which takes a moment: ask again soon
                // (no backoff), so a hand-over costs its own length and no more.
                if retry_hand_over(&err, started) {
                    Metrics::inc(&metrics.reserve_update_retries);
                    tokio::time::sleep(HAND_OVER_POLL).await;
                    continue;
                }
                attempt += 1;
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
