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
use crate::store::Store;
use crate::unit::fail;
use sellwindow_domain::Figures;
use sellwindow_workflows::listing::contract::{
    ApplyInbox, ApplyPayments, ChangeOrder, Inboxed, Milestone, OrderChanged, RecordOrders,
    Recorded, SweepChunk, Swept, VoidOrders, defs,
};
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

pub struct ListingActivities {
    store: Store,
    sink: Arc<dyn NotificationSink>,
    /// Base of the pay links sent to customers, e.g. `http://127.0.0.1:8080`.
    public_base_url: String,
    faults: Arc<crate::Faults>,
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
        }
    }
}

#[activities]
impl ListingActivities {
    #[activity(definition = defs::RecordOrders)]
    pub async fn record_orders(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: RecordOrders,
    ) -> Result<Recorded, ActivityError> {
        self.faults.before_reservation_write().await;
        self.record_orders_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::VoidOrders)]
    pub async fn void_orders(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: VoidOrders,
    ) -> Result<Figures, ActivityError> {
        self.void_orders_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::ApplyPayments)]
    pub async fn apply_payments(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ApplyPayments,
    ) -> Result<Figures, ActivityError> {
        self.apply_payments_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::ApplyInbox)]
    pub async fn apply_inbox(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ApplyInbox,
    ) -> Result<Inboxed, ActivityError> {
        self.apply_inbox_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::ChangeOrder)]
    pub async fn change_order(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ChangeOrder,
    ) -> Result<OrderChanged, ActivityError> {
        self.change_order_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::Sweep)]
    pub async fn sweep(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: SweepChunk,
    ) -> Result<Swept, ActivityError> {
        self.sweep_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::Milestone)]
    pub async fn milestone(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: Milestone,
    ) -> Result<(), ActivityError> {
        self.milestone_tx(&w).await.map_err(fail)
    }
}
