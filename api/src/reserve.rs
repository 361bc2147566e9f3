//! `ReserveOrder`'s path: every reservation waiting in this API process joins the next reserve
//! transaction (the store's group commit, [`sellwindow_store::reserve`]), of whatever listing;
//! each customer is answered after it commits, and the listings' workflows are told by
//! coalesced progress signals ([`crate::progress`]). No reservation waits on Temporal. The
//! transactions run on a thread of their own ([`crate::lane`]).

use crate::batch::Batcher;
use crate::error::ApiError;
use crate::lane::Lane;
use crate::metrics::{Metrics, Stage};
use crate::progress::ProgressSignals;
use sellwindow_store::Store;
use sellwindow_store::reserve::{ReserveAnswer, ReserveContext, ReserveRequest};
use std::sync::Arc;
use std::time::Duration;

/// Reservations one transaction carries at most, and transactions in flight at once: two, so
/// the next opens and reads its first answers while this one holds the quota rows' locks
/// (`ReserveContext::locking` lets one at a time take them). Measured with `bench reserve`:
/// one in flight answered 10-20% fewer, three more slowly (smaller batches, same locks).
const MAX_BATCH: usize = 1_000;
const IN_FLIGHT: usize = 2;
/// Reservations that may wait in this process; past this one is refused at once (UNAVAILABLE,
/// retry) instead of queueing without bound behind a slow database.
const MAX_WAITING: usize = 8_192;

pub struct Reservations {
    batcher: Batcher<ReserveRequest, ReserveAnswer>,
    deadline: Duration,
}

impl Reservations {
    pub fn new(
        store: Store,
        cx: ReserveContext,
        progress: Arc<ProgressSignals>,
        metrics: Arc<Metrics>,
        deadline: Duration,
    ) -> std::io::Result<Self> {
        let lane = Lane::start(&store, cx)?;
        let batcher = Batcher::spawn_bounded(MAX_BATCH, IN_FLIGHT, MAX_WAITING, move |batch| {
            let (lane, progress, metrics) = (lane.clone(), progress.clone(), metrics.clone());
            async move {
                let at = crate::convert::now_ms();
                let n = batch.len();
                let reserve = lane.reserve(batch, at);
                let done = metrics.timed(Stage::Transaction, reserve).await?;
                metrics.batch(n);
                progress.report(done.progress);
                Ok(done.answers)
            }
        });
        Ok(Self { batcher, deadline })
    }

    /// Whether a reservation now would be refused for the queue's length.
    pub fn is_full(&self) -> bool {
        self.batcher.is_full()
    }

    /// Reserves, waiting at most the deadline for the commit. A reservation not answered in
    /// time may still be made: the customer's retry under the same key finds it.
    pub async fn reserve(&self, r: ReserveRequest) -> Result<ReserveAnswer, ApiError> {
        tokio::time::timeout(self.deadline, self.batcher.call(r))
            .await
            .unwrap_or_else(|_| Err(crate::listing_calls::too_late("the reservation")))
    }
}
