//! The inputs of the activities, as the workflow sends them (serialized into history: fields
//! are only ever added).

use sellwindow_domain::*;
use serde::{Deserialize, Serialize};

pub use sellwindow_domain::ListingKey;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReservationWrite {
    pub listing: ListingKey,
    pub orders: Vec<NewOrder>,
    /// The order whose units filled the quota, when this batch closed it.
    pub quota_closed_by: Option<OrderId>,
    /// `(reserved_qty, threshold_qty)` when this batch reached the threshold.
    pub threshold_reached: Option<(u32, u32)>,
    pub at: UnixMillis,
    /// The idempotency keys the new orders answer, stored in the same transaction.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub answers: Vec<OrderAnswer>,
}

pub use sellwindow_domain::OrderAnswer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmWrite {
    pub listing: ListingKey,
    pub batch_id: BatchId,
    pub payment_due_at: UnixMillis,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentsWrite {
    pub listing: ListingKey,
    pub payments: Vec<PaymentToOpen>,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaidWrite {
    pub listing: ListingKey,
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub customer_id: CustomerId,
    pub qty: Qty,
    pub event_id: String,
    pub at: UnixMillis,
}

/// Successful payments applied together (one transaction for a flood of callbacks).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaidWrites {
    pub listing: ListingKey,
    pub payments: Vec<PaidPayment>,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaidPayment {
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub customer_id: CustomerId,
    pub qty: Qty,
    pub event_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureWrite {
    pub listing: ListingKey,
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub customer_id: CustomerId,
    pub error: String,
    pub failures: u32,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseReason {
    /// The payment deadline passed or the provider said the payment expired.
    PaymentExpired,
    /// close_at came with the order still unpaid.
    UnpaidAtClose,
    /// The window closed without a confirmed batch: the group did not form.
    GroupNotFormed,
    /// `CANCEL_AND_REFUND`: the paid quantity stayed under the threshold; paid orders cancel.
    PaidUnderThreshold,
    /// The customer cancelled their own order.
    CustomerCancelled,
    /// The admin cancelled the sell window.
    WindowCancelled,
    /// The reservation's write was reported failed (the customer was told so); any row a last
    /// attempt committed anyway is voided.
    NotRecorded,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseWrite {
    pub listing: ListingKey,
    pub orders: Vec<Released>,
    pub to: OrderStatus,
    pub reason: ReleaseReason,
    pub quota_reopened: bool,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundWrite {
    pub listing: ListingKey,
    pub order_id: OrderId,
    pub payment_id: PaymentId,
    pub customer_id: CustomerId,
    pub amount: Money,
    pub reason: String,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FinalizeKind {
    /// Never confirmed by close_at.
    GroupNotFormed,
    NothingToProduce,
    /// `CANCEL_AND_REFUND` with the paid quantity under the threshold.
    CancelledUnderThreshold,
    Produce {
        work_order_id: WorkOrderId,
        steps: Vec<(StepId, String)>,
    },
    /// The admin cancelled the window before close.
    WindowCancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalizeWrite {
    pub listing: ListingKey,
    pub batch_id: BatchId,
    pub final_paid_qty: u32,
    pub kind: FinalizeKind,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepWrite {
    pub listing: ListingKey,
    pub work_order_id: WorkOrderId,
    pub step_id: StepId,
    /// Set when this was the last step: every paid order ships.
    pub shipments: Option<Vec<(OrderId, CustomerId, Qty)>>,
    pub at: UnixMillis,
}

/// One part of a listing's orders handed over to its next run through the store (a state too
/// large to travel as the continue-as-new input).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverPart {
    pub listing: ListingKey,
    /// The run that hands over (its run id): parts of different hand-overs never mix.
    pub token: String,
    pub part: u32,
    pub data: String,
    pub at: UnixMillis,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HandoverPartRef {
    pub token: String,
    pub part: u32,
}
