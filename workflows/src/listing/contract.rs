//! The listing's writes: the activities the workflow runs, declared here and implemented by
//! the `activities` crate, with their inputs and answers. Every write takes the listing's lock
//! first and is idempotent by what it carries: run again (a retry, or a workflow task that
//! was lost and done again, perhaps with more in it), it changes nothing twice and answers
//! with the listing's [`Figures`] as they are after it. All run as local activities: their
//! inputs stay out of history, which records only their (small) answers.

use crate::machine::{FinalOutcome, OrderRefusal, SweepKind};
use crate::payload::Json;
use sellwindow_domain::*;
use serde::{Deserialize, Serialize};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;

/// Writes a batch of new orders (the quota-locking write), with their first answers under the
/// customers' idempotency keys, and for orders asked to pay at once their first payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordOrders {
    pub listing: ListingKey,
    pub at: UnixMillis,
    pub orders: Vec<NewOrder>,
    pub answers: Vec<OrderAnswer>,
    pub per_customer_limit: Option<u32>,
}

/// What the write did with each order of a [`RecordOrders`], in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Recording {
    /// Written; with its first payment when it was asked to pay at once.
    New { payment_id: Option<PaymentId> },
    /// Written before (a retried request): as it is now.
    Existing(OrderView),
    /// Over the listing's per-customer limit: not written.
    OverLimit { limit: u32, held: u32 },
    /// The listing stopped taking reservations: not written.
    Closed,
    /// The workflow gave this write up (its customer was told): not written.
    Voided,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    pub replies: Vec<Recording>,
    pub figures: Figures,
}

/// A [`RecordOrders`] the workflow gave up on (its customers were told it failed): whatever
/// an attempt of it committed is cancelled, and no attempt of it still running can commit
/// (each order is left voided at this time; only a write decided later, a customer's retry
/// under the same key, may bring it back).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoidOrders {
    pub listing: ListingKey,
    pub at: UnixMillis,
    pub orders: Vec<NewOrder>,
}

/// Verified provider outcomes, applied in arrival order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyPayments {
    pub listing: ListingKey,
    pub at: UnixMillis,
    pub results: Vec<PaymentResult>,
}

/// The listing's inbox: up to `limit` verified payment outcomes the API recorded and this
/// listing has not applied yet, oldest first, applied as [`ApplyPayments`] does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplyInbox {
    pub listing: ListingKey,
    pub at: UnixMillis,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inboxed {
    pub figures: Figures,
    pub applied: u32,
    /// More are waiting.
    pub more: bool,
}

/// A customer's change to one of their own orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeOrder {
    pub listing: ListingKey,
    pub at: UnixMillis,
    pub order: CustomerOrder,
    pub change: OrderChange,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderChange {
    /// Cancel a RESERVED or PAYMENT_REQUESTED order (its units go back).
    Cancel,
    /// A new payment attempt after a failed one (or the attempt still open).
    RetryPayment,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum OrderChanged {
    Done { figures: Figures, view: OrderView },
    Refused(OrderRefusal),
}

/// One chunk of a sweep: up to `limit` candidate orders after `after` (by id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepChunk {
    pub listing: ListingKey,
    pub at: UnixMillis,
    pub kind: SweepKind,
    /// Confirm: the payment deadline of the orders asked to pay. Deadline: expire orders due
    /// at or before it.
    pub due: Option<UnixMillis>,
    pub after: Option<OrderId>,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Swept {
    pub figures: Figures,
    pub moved: u32,
    /// The last order looked at: the next chunk starts after it.
    pub last: Option<OrderId>,
    /// No candidate is left.
    pub done: bool,
    /// Deadline sweeps, when done: the earliest payment deadline still pending.
    pub next_due: Option<UnixMillis>,
}

/// A step of the listing's story that is not about single orders.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Milestone {
    pub listing: ListingKey,
    pub at: UnixMillis,
    pub kind: MilestoneKind,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum MilestoneKind {
    /// `batch.confirmed`; the RESERVED orders are then asked to pay by a sweep.
    Confirmed { batch_id: BatchId, due: UnixMillis },
    /// close_at: `sell_window.finalize_requested`; the listing takes no payment from now on.
    Closing,
    /// Closed without a confirmed batch: `sell_window.failed`, the admin told.
    Unformed,
    /// The paid quantity is frozen: `sell_window.finalized`, then what it decides.
    Finalized {
        batch_id: BatchId,
        final_paid_qty: u32,
        outcome: FinalOutcome,
    },
    /// The admin cancels: the listing takes no payment from now on.
    CancelStarted,
    /// Every order is cancelled (by the admin, or under the threshold with
    /// `CANCEL_AND_REFUND`): `sell_window.cancelled`, the admin told.
    Cancelled { final_paid_qty: Option<u32> },
    /// A work step is done; the last one completes production (shipments follow by sweep).
    StepDone {
        work_order_id: WorkOrderId,
        step_id: StepId,
        last: bool,
    },
    /// Every paid order has its shipment.
    Shipped { work_order_id: WorkOrderId },
}

pub struct ListingActivities;

#[activity_definitions]
impl ListingActivities {
    #[activity]
    pub fn record_orders(w: Json<RecordOrders>) -> Result<Json<Recorded>, ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn void_orders(w: VoidOrders) -> Result<Figures, ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn apply_payments(w: ApplyPayments) -> Result<Figures, ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn apply_inbox(w: ApplyInbox) -> Result<Inboxed, ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn change_order(w: ChangeOrder) -> Result<OrderChanged, ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn sweep(w: SweepChunk) -> Result<Swept, ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn milestone(w: Milestone) -> Result<(), ActivityError> {
        unimplemented!()
    }
}

/// The activities' marker types, for the implementation to name as its definitions.
pub mod defs {
    pub use super::listing_activities::*;
}
