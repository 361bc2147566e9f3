//! What people are told, in one place: the messages of the notifications the listing's writes
//! persist (customers' and the admin's).

use sellwindow_domain::*;
use sellwindow_workflows::machine::{LateCharge, SweepKind};

pub fn payment_link(amount: &Money, order: &OrderId, due: UnixMillis, url: &str) -> String {
    format!(
        "Your group buy is confirmed. Please pay {amount} for order {order} before {due}: {url}"
    )
}

pub fn retry_link(amount: &Money, order: &OrderId, due: UnixMillis, url: &str) -> String {
    format!("A new payment link for order {order}: please pay {amount} before {due}: {url}")
}

pub fn payment_received(order: &OrderId) -> String {
    format!("Payment received for order {order}. Thank you!")
}

pub fn payment_failed(order: &OrderId, error: &str) -> String {
    format!(
        "Payment for order {order} failed ({error}). Your units are kept: please try again or use another payment method."
    )
}

pub fn refunded(amount: &Money, order: &OrderId, why: &str) -> String {
    format!("{amount} was refunded for order {order}: {why}.")
}

/// Why a charge that arrived late is given back.
pub fn late_charge(why: LateCharge) -> &'static str {
    match why {
        LateCharge::SecondCharge => "the order was already paid",
        LateCharge::OrderClosed => "the payment arrived after the order had closed",
        LateCharge::ListingClosed => "the payment arrived after the sell window had closed",
    }
}

/// Why a paid order's money goes back when a sweep cancels it.
pub fn refund_reason(kind: SweepKind) -> &'static str {
    match kind {
        SweepKind::PaidUnderThreshold => "the group bought less than the threshold",
        _ => "the shop cancelled the sell window",
    }
}

/// What the customer of an order is told when it leaves the quota.
pub fn released(order: &OrderId, why: Release, was_paid: bool) -> String {
    match why {
        Release::Sweep(SweepKind::Deadline) | Release::ProviderExpired => format!(
            "Order {order} expired: payment was not completed in time. The units were released."
        ),
        Release::Sweep(SweepKind::UnpaidAtClose) => {
            format!("Order {order} expired: the sell window closed before payment.")
        }
        Release::Sweep(SweepKind::Unformed) => format!(
            "Order {order} is cancelled: the group did not form by the close of the sell window. Nothing was charged."
        ),
        Release::Sweep(SweepKind::PaidUnderThreshold) => format!(
            "Order {order} is cancelled: too few units were paid for the group to go ahead. Your payment is refunded."
        ),
        Release::Sweep(_) => format!(
            "Order {order} is cancelled: the shop cancelled this sell window.{}",
            if was_paid {
                " Your payment is refunded."
            } else {
                " Nothing was charged."
            }
        ),
        Release::Customer => {
            format!("Order {order} is cancelled as you asked. Its units were released.")
        }
    }
}

/// Why an order leaves the quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    Sweep(SweepKind),
    ProviderExpired,
    Customer,
}

impl Release {
    pub fn reason(self) -> &'static str {
        match self {
            Release::Sweep(kind) => kind.reason(),
            Release::ProviderExpired => "payment expired",
            Release::Customer => "cancelled by the customer",
        }
    }
}

pub fn shipped(order: &OrderId, pickup: &str) -> String {
    format!("Order {order} has shipped. {pickup}.")
}

pub fn threshold_reached(listing: &str, reserved: u32, threshold: u32) -> String {
    format!(
        "{listing}: threshold reached ({reserved} of {threshold} reserved), you may confirm to open payment"
    )
}
