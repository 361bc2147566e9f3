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

/// Which listing a write is about: a product in a sell window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListingKey {
    pub sell_window_id: SellWindowId,
    pub product_id: ProductId,
}

impl ListingKey {
    pub fn workflow_id(&self) -> String {
        listing_workflow_id(&self.sell_window_id, &self.product_id)
    }
}

/// A listing's figures as the database holds them after a write. Every write of a listing
/// takes its lock and moves `version` on, so of two answers the one with the higher version
/// is the later state, whatever order they reach the workflow in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Figures {
    pub version: u64,
    pub sold: u32,
    pub reserved: u32,
    pub paid: u32,
    /// The threshold was reached (it stays reached once announced).
    pub threshold_reached: bool,
}

/// How a write moves a listing's figures (units held by orders, by status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delta {
    /// Units holding quota: RESERVED, PAYMENT_REQUESTED and PAID orders.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sold: i64,
    /// RESERVED and PAYMENT_REQUESTED units (the aggregator's `reserved_qty`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reserved: i64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub paid: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

impl Delta {
    /// What an order of `qty` units moving from `was` to `to` does to the figures; a new order
    /// moves from nothing (`None`).
    pub fn of_move(was: Option<OrderStatus>, to: OrderStatus, qty: Qty) -> Self {
        let q = i64::from(qty.get());
        let count = |s: Option<OrderStatus>, f: fn(OrderStatus) -> bool| -> i64 {
            i64::from(s.is_some_and(f))
        };
        Self {
            sold: q
                * (count(Some(to), OrderStatus::holds_quota)
                    - count(was, OrderStatus::holds_quota)),
            reserved: q
                * (count(Some(to), OrderStatus::counts_as_reserved)
                    - count(was, OrderStatus::counts_as_reserved)),
            paid: q
                * (i64::from(to == OrderStatus::Paid) - i64::from(was == Some(OrderStatus::Paid))),
        }
    }

    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl std::ops::AddAssign for Delta {
    fn add_assign(&mut self, o: Self) {
        self.sold += o.sold;
        self.reserved += o.reserved;
        self.paid += o.paid;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_move_counts_the_units_where_they_go_and_where_they_left() {
        let q = Qty::new(3).unwrap();
        let d = |sold, reserved, paid| Delta {
            sold,
            reserved,
            paid,
        };
        assert_eq!(Delta::of_move(None, OrderStatus::Reserved, q), d(3, 3, 0));
        assert_eq!(
            Delta::of_move(Some(OrderStatus::PaymentRequested), OrderStatus::Paid, q),
            d(0, -3, 3)
        );
        assert_eq!(
            Delta::of_move(Some(OrderStatus::Paid), OrderStatus::Cancelled, q),
            d(-3, 0, -3)
        );
        assert_eq!(
            Delta::of_move(Some(OrderStatus::PaymentRequested), OrderStatus::Expired, q),
            d(-3, -3, 0)
        );
        assert!(
            Delta::of_move(
                Some(OrderStatus::Reserved),
                OrderStatus::PaymentRequested,
                q
            )
            .is_zero()
        );
    }
}
