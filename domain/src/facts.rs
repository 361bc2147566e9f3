//! Facts the listing's state machine decides and the activities persist: an order that took
//! quota, a payment to open, an order that left the quota.

use crate::*;
use serde::{Deserialize, Serialize};

/// An order that just took quota, to be written by the quota-locking activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewOrder {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub qty: Qty,
    pub amount: Money,
    pub status: OrderStatus,
    pub payment_due_at: Option<UnixMillis>,
}

/// A payment to open for an order (first request or a retry after failure).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentToOpen {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub payment_id: PaymentId,
    pub attempt: u32,
    pub amount: Money,
    pub expire_at: UnixMillis,
}

/// An order leaving the quota (expired or cancelled), with what it held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Released {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub qty: Qty,
    pub was: OrderStatus,
    pub payment_id: Option<PaymentId>,
}
