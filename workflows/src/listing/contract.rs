//! The listing's writes: the activities the workflow runs, declared here and implemented by
//! the `activities` crate, with their inputs and answers. Every write takes the listing's lock
//! (the quota row's) first and is idempotent by what it carries: run again (a retry, or a
//! workflow task that was lost and done again), it changes nothing twice and answers with the
//! listing's [`Figures`] as they are after it.

use crate::machine::{FinalOutcome, SweepKind};
use sellwindow_domain::*;
use serde::{Deserialize, Serialize};
use temporalio_macros::activity_definitions;
use temporalio_sdk::activities::ActivityError;

/// The listing's inbox: up to `limit` verified payment outcomes the API recorded and this
/// listing has not applied yet, oldest first, each checked against the attempt it names.
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
    Refused(Refusal),
}

/// The confirm fence: under the listing's lock, the row's own figures decide whether the
/// batch may be confirmed; if so the listing's phase becomes CONFIRMED there, so every
/// reservation committed after it is asked to pay at once and every one before it is in the
/// snapshot the confirm sweep asks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Confirm {
    pub listing: ListingKey,
    pub at: UnixMillis,
    pub batch_id: BatchId,
    pub due: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Confirmed {
    Done(Figures),
    Refused(Refusal, Figures),
}

/// Reads the listing's row: its figures and the earliest payment deadline still pending.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadRow {
    pub listing: ListingKey,
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
    #[activity]
    pub fn confirm(w: Confirm) -> Result<Confirmed, ActivityError> {
        unimplemented!()
    }
    #[activity]
    pub fn read_row(w: ReadRow) -> Result<Progress, ActivityError> {
        unimplemented!()
    }
}

/// The activities' marker types, for the implementation to name as its definitions.
pub mod defs {
    pub use super::listing_activities::*;
}
