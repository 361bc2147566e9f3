//! One order's rules: what a provider's payment outcome does to an order and its attempt, and
//! which orders each of the listing's sweeps moves where. The orders live in the database;
//! the activities read an order's facts under the listing's lock, ask these rules, and write
//! what they answer. The listing's figures follow from [`Delta::of_move`].
//!
//! The books: an attempt is *charged* when its provider reports it succeeded, once. An order
//! is paid by the first charged attempt while it waits for payment and the listing still takes
//! payments; every other charge is refunded at once, and an order leaving PAID refunds every
//! charged attempt not yet refunded (the one that paid). So per order, charged − refunded is
//! the order's amount when it ends PAID, else zero, and only charged attempts are refunded.

use sellwindow_domain::*;
use serde::{Deserialize, Serialize};

/// What the rules need to know of an order.
#[derive(Debug, Clone, PartialEq)]
pub struct OrderFacts {
    pub status: OrderStatus,
    pub qty: Qty,
}

/// What the rules need to know of one payment attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptFacts {
    pub status: PaymentStatus,
    pub charged: bool,
}

/// Why a charge is given back at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LateCharge {
    /// Another attempt paid the order already.
    SecondCharge,
    /// The order expired or was cancelled before the money came.
    OrderClosed,
    /// The listing stopped taking payments (closed or cancelled) before the money came.
    ListingClosed,
}

/// What one provider outcome does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPayment {
    /// The attempt is charged and pays the order; any other open attempt is superseded.
    Pay,
    /// The attempt is charged and refunded at once; the order does not change.
    Refund(LateCharge),
    /// The attempt failed: the order keeps its units and may retry with a new attempt.
    Fail,
    /// The attempt expired: so does the order, and its units go back.
    Expire,
    /// A duplicate, an outcome for an attempt that moved on, or one that cannot apply.
    Ignore,
}

/// Decides what `outcome` for `attempt` of `order` does. `payments_open` is whether the
/// listing still takes payments.
pub fn on_payment(
    order: &OrderFacts,
    attempt: &AttemptFacts,
    outcome: PaymentOutcome,
    payments_open: bool,
) -> OnPayment {
    let waiting = order.status == OrderStatus::PaymentRequested;
    let open = attempt.status == PaymentStatus::Init && !attempt.charged;
    match outcome {
        PaymentOutcome::Succeeded if attempt.charged => OnPayment::Ignore,
        PaymentOutcome::Succeeded if waiting && payments_open => OnPayment::Pay,
        PaymentOutcome::Succeeded => OnPayment::Refund(match order.status {
            OrderStatus::Paid => LateCharge::SecondCharge,
            OrderStatus::PaymentRequested | OrderStatus::Reserved => LateCharge::ListingClosed,
            OrderStatus::Expired | OrderStatus::Cancelled => LateCharge::OrderClosed,
        }),
        PaymentOutcome::Failed if open && waiting => OnPayment::Fail,
        PaymentOutcome::Expired if open && waiting => OnPayment::Expire,
        PaymentOutcome::Failed | PaymentOutcome::Expired => OnPayment::Ignore,
    }
}

/// The listing's sweeps over its orders, each a fan-out done a chunk at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SweepKind {
    /// The batch is confirmed: every RESERVED order is asked to pay (attempt 1 opens).
    Confirm,
    /// Payment deadlines up to a time have passed: those orders expire.
    Deadline,
    /// close_at came without a confirmed batch: the group did not form.
    Unformed,
    /// close_at came: every order still unpaid expires.
    UnpaidAtClose,
    /// The admin cancelled the window: every order is cancelled, paid ones refunded.
    WindowCancelled,
    /// `CANCEL_AND_REFUND` and too little was paid: paid orders are cancelled and refunded.
    PaidUnderThreshold,
    /// The last work step is done: every paid order ships.
    Ship,
}

/// Where a sweep (or a customer's cancel) moves one order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub to: OrderStatus,
    /// Every charged attempt not yet refunded is refunded.
    pub refund: bool,
    /// The order's first payment attempt opens.
    pub open_payment: bool,
    /// A shipment is made for the order.
    pub ship: bool,
}

impl Move {
    fn to(to: OrderStatus) -> Self {
        Self {
            to,
            refund: false,
            open_payment: false,
            ship: false,
        }
    }
}

impl SweepKind {
    /// The statuses the sweep may move an order from (its candidates).
    pub fn from(self) -> &'static [OrderStatus] {
        use OrderStatus::*;
        match self {
            SweepKind::Confirm => &[Reserved],
            SweepKind::Deadline => &[PaymentRequested],
            SweepKind::Unformed | SweepKind::UnpaidAtClose => &[Reserved, PaymentRequested],
            SweepKind::WindowCancelled => &[Reserved, PaymentRequested, Paid],
            SweepKind::PaidUnderThreshold | SweepKind::Ship => &[Paid],
        }
    }

    /// Where the sweep moves an order in `status`, if anywhere.
    pub fn moves(self, status: OrderStatus) -> Option<Move> {
        if !self.from().contains(&status) {
            return None;
        }
        use OrderStatus::*;
        Some(match self {
            SweepKind::Confirm => Move {
                open_payment: true,
                ..Move::to(PaymentRequested)
            },
            SweepKind::Deadline | SweepKind::UnpaidAtClose => Move::to(Expired),
            SweepKind::Unformed => Move::to(Cancelled),
            SweepKind::WindowCancelled | SweepKind::PaidUnderThreshold => Move {
                refund: status == Paid,
                ..Move::to(Cancelled)
            },
            SweepKind::Ship => Move {
                ship: true,
                ..Move::to(Paid)
            },
        })
    }

    /// The release reason customers are told, for sweeps that release orders.
    pub fn reason(self) -> &'static str {
        match self {
            SweepKind::Confirm => "batch confirmed",
            SweepKind::Deadline => "payment deadline passed",
            SweepKind::Unformed => "group not formed",
            SweepKind::UnpaidAtClose => "unpaid at close",
            SweepKind::WindowCancelled => "window cancelled",
            SweepKind::PaidUnderThreshold => "paid under threshold",
            SweepKind::Ship => "shipped",
        }
    }
}

/// A customer cancels their own order: only while it waits (RESERVED or PAYMENT_REQUESTED).
pub fn customer_cancel(status: OrderStatus) -> Result<Move, Refusal> {
    if status.counts_as_reserved() {
        Ok(Move::to(OrderStatus::Cancelled))
    } else {
        Err(Refusal::OrderIs(status))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(status: OrderStatus) -> OrderFacts {
        OrderFacts {
            status,
            qty: Qty::new(1).unwrap(),
        }
    }

    fn attempt(status: PaymentStatus, charged: bool) -> AttemptFacts {
        AttemptFacts { status, charged }
    }

    #[test]
    fn a_success_pays_a_waiting_order_once_and_any_other_charge_is_refunded() {
        use OrderStatus::*;
        use PaymentOutcome::Succeeded;
        let open = attempt(PaymentStatus::Init, false);
        assert_eq!(
            on_payment(&order(PaymentRequested), &open, Succeeded, true),
            OnPayment::Pay
        );
        // Reported failed first, then succeeded: the charge still pays.
        let failed = attempt(PaymentStatus::Failed, false);
        assert_eq!(
            on_payment(&order(PaymentRequested), &failed, Succeeded, true),
            OnPayment::Pay
        );
        assert_eq!(
            on_payment(&order(Paid), &open, Succeeded, true),
            OnPayment::Refund(LateCharge::SecondCharge)
        );
        assert_eq!(
            on_payment(
                &order(Expired),
                &attempt(PaymentStatus::Expired, false),
                Succeeded,
                true
            ),
            OnPayment::Refund(LateCharge::OrderClosed)
        );
        assert_eq!(
            on_payment(&order(PaymentRequested), &open, Succeeded, false),
            OnPayment::Refund(LateCharge::ListingClosed)
        );
        // A duplicate of a charge changes nothing.
        let charged = attempt(PaymentStatus::Succeeded, true);
        assert_eq!(
            on_payment(&order(Paid), &charged, Succeeded, true),
            OnPayment::Ignore
        );
    }

    #[test]
    fn failures_and_expiries_apply_only_to_an_open_attempt_of_a_waiting_order() {
        use OrderStatus::*;
        let open = attempt(PaymentStatus::Init, false);
        let charged = attempt(PaymentStatus::Succeeded, true);
        for (outcome, effect) in [
            (PaymentOutcome::Failed, OnPayment::Fail),
            (PaymentOutcome::Expired, OnPayment::Expire),
        ] {
            assert_eq!(
                on_payment(&order(PaymentRequested), &open, outcome, true),
                effect
            );
            // Succeeded then reported failed or expired: the charge stands.
            assert_eq!(
                on_payment(&order(Paid), &charged, outcome, true),
                OnPayment::Ignore
            );
            let stale = attempt(PaymentStatus::Failed, false);
            assert_eq!(
                on_payment(&order(PaymentRequested), &stale, outcome, true),
                OnPayment::Ignore
            );
        }
    }

    #[test]
    fn sweeps_move_only_their_candidates_and_refund_only_paid_orders() {
        use OrderStatus::*;
        assert_eq!(SweepKind::Confirm.moves(Paid), None);
        assert!(SweepKind::Confirm.moves(Reserved).unwrap().open_payment);
        let cancel = SweepKind::WindowCancelled;
        assert!(cancel.moves(Paid).unwrap().refund);
        assert!(!cancel.moves(PaymentRequested).unwrap().refund);
        assert_eq!(cancel.moves(Expired), None);
        assert_eq!(
            SweepKind::Deadline.moves(PaymentRequested).unwrap().to,
            Expired
        );
        assert!(SweepKind::Ship.moves(Paid).unwrap().ship);
        assert_eq!(customer_cancel(Paid), Err(Refusal::OrderIs(Paid)));
        for kind in [
            SweepKind::Confirm,
            SweepKind::Deadline,
            SweepKind::Unformed,
            SweepKind::UnpaidAtClose,
            SweepKind::WindowCancelled,
            SweepKind::PaidUnderThreshold,
            SweepKind::Ship,
        ] {
            for s in OrderStatus::ALL {
                assert_eq!(kind.moves(*s).is_some(), kind.from().contains(s));
            }
        }
    }
}
