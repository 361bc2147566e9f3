//! Messages that cross the workflow boundary: the listing's start input, the API's progress
//! signals, payment results, answers to the listing's updates, and the live figures a query
//! returns. They are serialized
//! into Temporal history, so fields are only ever added (with defaults), never renamed.

use crate::*;
use serde::{Deserialize, Serialize};

/// Everything a listing's workflow needs to run on its own (the seed's `product_sell_window`
/// plus the product facts that price orders and shape production).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingSpec {
    pub sell_window_id: SellWindowId,
    pub sell_window_name: String,
    pub product_id: ProductId,
    pub product_name: String,
    pub unit_price: Money,
    pub min_qty: u32,
    pub max_qty: u32,
    pub close_at: UnixMillis,
    pub payment_window_ms: i64,
    pub per_customer_limit: Option<u32>,
    pub min_paid_policy: MinPaidPolicy,
    /// Names of the work steps production goes through, in order.
    pub work_steps: Vec<String>,
}

impl ListingSpec {
    pub fn workflow_id(&self) -> String {
        listing_workflow_id(&self.sell_window_id, &self.product_id)
    }
    pub fn batch_id(&self) -> BatchId {
        BatchId::for_listing(&self.sell_window_id, &self.product_id)
    }
}

/// The hash of a reservation's request, kept with its idempotency key: a retry under the key
/// must ask for the same listing and quantity.
pub fn reservation_hash(sw: &SellWindowId, p: &ProductId, qty: Qty) -> String {
    digest(&[sw.as_str(), p.as_str(), &qty.get().to_string()])
}

/// What an API process tells a listing's workflow after its reservations committed: the row's
/// figures as that commit left them, and the earliest payment deadline it gave an order (after
/// confirm). Signals arrive late, twice, out of order or not at all; the workflow keeps the
/// latest figures by version and the earliest deadline, and reads the row itself at its next
/// decision.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub figures: Figures,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_due: Option<UnixMillis>,
}

/// What the workflow knows of one order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderView {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub qty: Qty,
    pub amount: Money,
    pub status: OrderStatus,
    pub payment_due_at: Option<UnixMillis>,
    pub payment_id: Option<PaymentId>,
}

/// The answer to ConfirmBatch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfirmOutcome {
    pub batch_id: BatchId,
    pub confirmed_at: UnixMillis,
    pub payment_requested_orders: u32,
}

/// A verified provider callback, as the API signals it to the listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentResult {
    pub event_id: String,
    pub payment_id: PaymentId,
    pub order_id: OrderId,
    pub outcome: PaymentOutcome,
    pub error: Option<String>,
    pub occurred_at: UnixMillis,
}

/// The answer to CompleteWorkStep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepOutcome {
    pub work_order_id: WorkOrderId,
    pub step_id: StepId,
    pub production_completed: bool,
}

/// A listing's live figures, the seed's quota row and aggregator counter side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListingFigures {
    pub sell_window_id: SellWindowId,
    pub product_id: ProductId,
    pub phase: Phase,
    pub quota_status: QuotaStatus,
    pub min_qty: u32,
    pub max_qty: u32,
    pub sold_qty: u32,
    pub reserved_qty: u32,
    pub paid_qty: u32,
    pub threshold_status: ThresholdStatus,
    pub batch_status: BatchStatus,
    pub batch_id: BatchId,
    pub final_paid_qty: Option<u32>,
    pub work_order_id: Option<WorkOrderId>,
}

/// A customer's request about one of their orders (cancel, retry payment).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
}
