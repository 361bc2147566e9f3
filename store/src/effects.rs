//! What happens to an order and its attempts inside one of the listing's writes, once the rules
//! have decided: an order leaves the quota, a charge is recorded or given back, an attempt
//! opens. Each change lands in the write's [`Changes`], with the seed's event and the
//! customer's notification queued in its [`ListingTx`].

use crate::db::Recipient;
use crate::listing_tx::ListingTx;
use crate::rows::{AttemptRow, Changes, NewAttempt, OrderRow};
use crate::texts::{self, Release};
use sellwindow_domain::*;
use serde_json::json;
use std::collections::BTreeMap;

/// One write in progress: its transaction, its changes, and where pay links point.
pub struct Write<'a> {
    pub u: ListingTx,
    pub changes: Changes,
    pub pay_base: &'a str,
}

pub type Attempts = BTreeMap<OrderId, Vec<AttemptRow>>;

/// Where a customer pays an attempt (the payment sandbox's page for it).
pub fn pay_url(base: &str, payment: &PaymentId) -> String {
    format!("{}/sandbox/pay/{payment}", base.trim_end_matches('/'))
}

pub fn by_order(attempts: Vec<AttemptRow>) -> Attempts {
    let mut m: Attempts = BTreeMap::new();
    for a in attempts {
        m.entry(a.order_id.clone()).or_default().push(a);
    }
    m
}

impl Write<'_> {
    pub fn pay_url(&self, payment: &PaymentId) -> String {
        pay_url(self.pay_base, payment)
    }

    fn at(&self) -> UnixMillis {
        self.u.at()
    }

    /// An attempt no longer open becomes EXPIRED (its own seed event).
    fn expire_attempt(&mut self, a: &mut AttemptRow, order: &OrderId, reason: &str) {
        a.status = PaymentStatus::Expired;
        self.u.queue(
            &format!("payment.expired:{}", a.id),
            "payment.expired",
            Some(order),
            json!({"orderId": order, "paymentId": a.id, "reason": reason}),
        );
        self.changes.attempt(a.clone());
    }

    /// Every open attempt of the order expires (the order paid, expired or was cancelled).
    pub fn close_open_attempts(
        &mut self,
        order: &OrderId,
        attempts: &mut [AttemptRow],
        reason: &str,
    ) {
        for a in attempts
            .iter_mut()
            .filter(|a| a.status == PaymentStatus::Init && a.charged_at.is_none())
        {
            self.expire_attempt(a, order, reason);
        }
    }

    /// The order leaves the quota (EXPIRED or CANCELLED): its open attempts close, its
    /// figures move, its event is logged and its customer told.
    pub fn release(
        &mut self,
        order: &mut OrderRow,
        attempts: &mut [AttemptRow],
        to: OrderStatus,
        why: Release,
    ) {
        let was = order.status;
        self.close_open_attempts(&order.id, attempts, why.reason());
        order.status = to;
        order.payment_due_at = None;
        order.closed_reason = Some(why.reason().to_string());
        self.changes.delta += Delta::of_move(Some(was), to, order.qty);
        let (event, kind) = match to {
            OrderStatus::Cancelled => ("order.cancelled", "order_cancelled"),
            _ => ("order.expired", "order_expired"),
        };
        self.u.queue(
            &format!("{event}:{}", order.id),
            event,
            Some(&order.id),
            json!({"orderId": order.id, "qty": order.qty, "reason": why.reason()}),
        );
        let about = order.id.to_string();
        let message = texts::released(&order.id, why, was == OrderStatus::Paid);
        self.u.note(
            Recipient::Customer,
            order.customer_id.as_str(),
            kind,
            &about,
            Some(&order.id),
            message,
        );
        self.changes.order(order.clone());
    }

    /// Records an attempt's charge (its provider reported it succeeded).
    pub fn charge(&mut self, a: &mut AttemptRow, order: &OrderId, event_id: &str) {
        a.charged_at = Some(self.at().0);
        a.status = PaymentStatus::Succeeded;
        self.u.queue(
            &format!("payment.succeeded:{}", a.id),
            "payment.succeeded",
            Some(order),
            json!({"orderId": order, "paymentId": a.id, "providerEventId": event_id}),
        );
        self.changes.attempt(a.clone());
    }

    /// The order is paid by its attempt `paying` (charged now); its other open attempts close.
    pub fn pay(
        &mut self,
        order: &mut OrderRow,
        attempts: &mut [AttemptRow],
        paying: usize,
        event_id: &str,
    ) {
        self.charge(&mut attempts[paying], &order.id, event_id);
        let paid_by = attempts[paying].id.clone();
        self.close_open_attempts(&order.id, attempts, "superseded: the order is paid");
        self.changes.delta += Delta::of_move(Some(order.status), OrderStatus::Paid, order.qty);
        order.status = OrderStatus::Paid;
        order.payment_due_at = None;
        order.paid_by = Some(paid_by);
        let payload = json!({"orderId": order.id, "qty": order.qty});
        let key = format!("order.paid:{}", order.id);
        self.u.queue(&key, "order.paid", Some(&order.id), payload);
        let message = texts::payment_received(&order.id);
        let (to, about) = (order.customer_id.as_str(), order.id.as_str());
        let kind = "payment_received";
        self.u.note(
            Recipient::Customer,
            to,
            kind,
            about,
            Some(&order.id),
            message,
        );
        self.changes.order(order.clone());
    }

    /// An attempt failed: the order keeps its units and may be paid by a retry; its customer
    /// is asked to try again.
    pub fn fail(&mut self, order: &mut OrderRow, a: &mut AttemptRow, error: String) {
        a.status = PaymentStatus::Failed;
        a.last_error = Some(error.clone());
        self.changes.attempt(a.clone());
        order.failures += 1;
        order.last_error = Some(error.clone());
        self.changes.order(order.clone());
        let failed = json!({"orderId": order.id, "paymentId": a.id, "error": error, "failures": order.failures});
        let key = format!("payment.failed:{}", a.id);
        self.u
            .queue(&key, "payment.failed", Some(&order.id), failed);
        let requested =
            json!({"kind": "payment_failed", "orderId": order.id, "customerId": order.customer_id});
        let key = format!("notification.requested:payment_failed:{}", a.id);
        self.u
            .queue(&key, "notification.requested", Some(&order.id), requested);
        let message = texts::payment_failed(&order.id, &error);
        let (to, about) = (order.customer_id.as_str(), a.id.to_string());
        let kind = "payment_failed";
        self.u.note(
            Recipient::Customer,
            to,
            kind,
            &about,
            Some(&order.id),
            message,
        );
    }

    /// Gives a charged attempt's money back (once), telling its customer why.
    pub fn refund(&mut self, a: &mut AttemptRow, order: &OrderRow, why: &str) {
        debug_assert!(a.charged_at.is_some() && a.refunded_at.is_none());
        a.refunded_at = Some(self.at().0);
        a.status = PaymentStatus::Refunded;
        self.u.queue(
            &format!("payment.refunded:{}", a.id),
            "payment.refunded",
            Some(&order.id),
            json!({"orderId": order.id, "paymentId": a.id, "amount": a.amount, "reason": why}),
        );
        self.u.note(
            Recipient::Customer,
            order.customer_id.as_str(),
            "payment_refunded",
            a.id.as_str(),
            Some(&order.id),
            texts::refunded(&a.amount, &order.id, why),
        );
        self.changes.attempt(a.clone());
    }

    /// Refunds every charged attempt of the order not refunded yet (the one that paid it).
    pub fn refund_charged(&mut self, order: &OrderRow, attempts: &mut [AttemptRow], why: &str) {
        for a in attempts
            .iter_mut()
            .filter(|a| a.charged_at.is_some() && a.refunded_at.is_none())
        {
            self.refund(a, order, why);
        }
    }

    /// Opens the order's next payment attempt, due at `due`, and sends its customer the link.
    pub fn open_attempt(
        &mut self,
        order: &OrderRow,
        attempts: &[AttemptRow],
        due: UnixMillis,
    ) -> PaymentId {
        let number = attempts.iter().map(|a| a.attempt).max().unwrap_or(0) + 1;
        let id = PaymentId::for_attempt(&order.id, number);
        let url = self.pay_url(&id);
        self.u.queue(
            &format!("payment.requested:{id}"),
            "payment.requested",
            Some(&order.id),
            json!({"orderId": order.id, "amount": order.amount, "expireAt": due, "providerHint": "sandbox", "attempt": number}),
        );
        self.u.queue_last(
            &format!("payment.created:{id}"),
            "payment.created",
            Some(&order.id),
            json!({"orderId": order.id, "paymentId": id, "payInfo": {"url": url, "amount": order.amount}, "expireAt": due}),
        );
        let message = if number == 1 {
            texts::payment_link(&order.amount, &order.id, due, &url)
        } else {
            texts::retry_link(&order.amount, &order.id, due, &url)
        };
        self.u.note(
            Recipient::Customer,
            order.customer_id.as_str(),
            "payment_link",
            id.as_str(),
            Some(&order.id),
            message,
        );
        self.changes.new_attempts.push(NewAttempt {
            id: id.clone(),
            order_id: order.id.clone(),
            customer_id: order.customer_id.clone(),
            attempt: number,
            amount: order.amount.clone(),
            expire_at: due,
            pay_url: url,
        });
        id
    }
}
