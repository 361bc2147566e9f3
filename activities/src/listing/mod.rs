//! The writes of the listing's workflow ([`sellwindow_workflows::listing::contract`]). Each
//! is one transaction: it takes the listing's lock (moving the listing's version on), applies
//! the rules of [`sellwindow_workflows::machine`] to the rows it reads, writes what they
//! decide with the seed's events and the notifications, and answers with the listing's
//! figures; the notifications go to the sink after the commit. Each is idempotent by what it
//! carries, so it may run again.

mod change;
mod fence;
mod milestone;
mod payments;
mod sweep;

use crate::fail;
use crate::timings::{WriteKind, WriteTimes};
use sellwindow_domain::Progress;
use sellwindow_store::{NotificationSink, Store, StoreError};
use sellwindow_workflows::listing::contract::{
    ApplyInbox, ChangeOrder, Confirm, Confirmed, Inboxed, Milestone, OrderChanged, ReadRow,
    SweepChunk, Swept, defs,
};
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct ListingActivities {
    store: Store,
    sink: Arc<dyn NotificationSink>,
    /// Base of the pay links sent to customers, e.g. `http://127.0.0.1:8080`.
    public_base_url: String,
    times: Arc<WriteTimes>,
}

impl ListingActivities {
    pub fn new(store: Store, sink: Arc<dyn NotificationSink>, public_base_url: String) -> Self {
        Self {
            store,
            sink,
            public_base_url: public_base_url.trim_end_matches('/').to_string(),
            times: Arc::default(),
        }
    }

    /// How long this worker's writes took (served at the worker's `/metrics`).
    pub fn times(&self) -> Arc<WriteTimes> {
        self.times.clone()
    }

    /// Runs one write, adding its time to [`WriteTimes`].
    async fn timed<T>(
        &self,
        kind: WriteKind,
        write: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ActivityError> {
        let started = std::time::Instant::now();
        let r = write.await;
        self.times.add(kind, started, r.is_ok());
        r.map_err(fail)
    }
}

#[activities]
impl ListingActivities {
    #[activity(definition = defs::ApplyInbox)]
    pub async fn apply_inbox(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ApplyInbox,
    ) -> Result<Inboxed, ActivityError> {
        self.timed(WriteKind::ApplyInbox, self.apply_inbox_tx(&w))
            .await
    }

    #[activity(definition = defs::ChangeOrder)]
    pub async fn change_order(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ChangeOrder,
    ) -> Result<OrderChanged, ActivityError> {
        self.timed(WriteKind::ChangeOrder, self.change_order_tx(&w))
            .await
    }

    #[activity(definition = defs::Sweep)]
    pub async fn sweep(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: SweepChunk,
    ) -> Result<Swept, ActivityError> {
        self.timed(WriteKind::Sweep, self.sweep_tx(&w)).await
    }

    #[activity(definition = defs::Confirm)]
    pub async fn confirm(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: Confirm,
    ) -> Result<Confirmed, ActivityError> {
        self.timed(WriteKind::Confirm, self.confirm_tx(&w)).await
    }

    #[activity(definition = defs::ReadRow)]
    pub async fn read_row(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ReadRow,
    ) -> Result<Progress, ActivityError> {
        self.timed(WriteKind::ReadRow, self.read_row_tx(&w)).await
    }

    #[activity(definition = defs::Milestone)]
    pub async fn milestone(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: Milestone,
    ) -> Result<(), ActivityError> {
        self.timed(WriteKind::Milestone, self.milestone_tx(&w))
            .await
    }
}
