//! The writes of the listing's workflow ([`sellwindow_workflows::listing::contract`]). Each
//! is one transaction: it takes the listing's lock (moving the listing's version on), applies
//! the rules of [`sellwindow_workflows::machine`] to the rows it reads, writes what they
//! decide with the seed's events and the notifications, and answers with the listing's
//! figures; the notifications go to the sink after the commit. Each is idempotent by what it
//! carries, so it may run again.

mod change;
mod effects;
mod milestone;
mod payments;
mod record;
mod rows;
mod sweep;
pub mod texts;

use crate::notify::NotificationSink;
use crate::store::{Store, StoreError};
use crate::timings::{WriteKind, WriteTimes};
use crate::unit::fail;
use sellwindow_domain::Figures;
use sellwindow_workflows::listing::contract::{
    ApplyInbox, ApplyPayments, ChangeOrder, Inboxed, Milestone, OrderChanged, RecordOrders,
    Recorded, SweepChunk, Swept, VoidOrders, defs,
};
use sellwindow_workflows::payload::Json;
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct ListingActivities {
    store: Store,
    sink: Arc<dyn NotificationSink>,
    /// Base of the pay links sent to customers, e.g. `http://127.0.0.1:8080`.
    public_base_url: String,
    faults: Arc<crate::Faults>,
    times: Arc<WriteTimes>,
}

impl ListingActivities {
    pub fn new(
        store: Store,
        sink: Arc<dyn NotificationSink>,
        public_base_url: String,
        faults: Arc<crate::Faults>,
    ) -> Self {
        Self {
            store,
            sink,
            public_base_url: public_base_url.trim_end_matches('/').to_string(),
            faults,
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
    #[activity(definition = defs::RecordOrders)]
    pub async fn record_orders(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: Json<RecordOrders>,
    ) -> Result<Json<Recorded>, ActivityError> {
        let Json(w) = w;
        self.faults.before_reservation_write().await;
        self.times.orders(w.orders.len());
        self.timed(WriteKind::RecordOrders, self.record_orders_tx(&w))
            .await
            .map(Json)
    }

    #[activity(definition = defs::VoidOrders)]
    pub async fn void_orders(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: VoidOrders,
    ) -> Result<Figures, ActivityError> {
        self.timed(WriteKind::VoidOrders, self.void_orders_tx(&w))
            .await
    }

    #[activity(definition = defs::ApplyPayments)]
    pub async fn apply_payments(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ApplyPayments,
    ) -> Result<Figures, ActivityError> {
        self.timed(WriteKind::ApplyPayments, self.apply_payments_tx(&w))
            .await
    }

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
