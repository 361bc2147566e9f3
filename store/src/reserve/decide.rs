//! One listing's share of a reserve transaction: its requests decided by the quota rules on
//! its locked row, and everything that decides to write gathered ([`Writes`]): the orders,
//! after confirm their first payments and pay links, the seed's events, the admin's notice of
//! the threshold, the first answers, and the row's figures after the batch.

use super::lock::{Key, LockedListing};
use super::{ListingProgress, ReserveAnswer, ReserveRequest};
use crate::db::{NewEvent, Notification, Recipient};
use crate::effects::pay_url;
use crate::queries::{OrderRow, RESERVED_ANSWER};
use crate::texts;
use sellwindow_domain::*;
use sellwindow_workflows::machine::{Decision, QuotaRow, Request, Reserved, quota};
use serde_json::json;
use std::collections::BTreeMap;

/// A listing's quota row and counter as the batch leaves them.
pub struct RowUpdate {
    pub key: Key,
    pub row: QuotaRow,
    pub status: QuotaStatus,
}

/// What the transaction writes, gathered as each listing's requests are decided.
pub struct Writes {
    pub at: UnixMillis,
    pay_base: String,
    pub orders: Vec<(Key, NewOrder)>,
    pub rows: Vec<RowUpdate>,
    pub events: Vec<NewEvent>,
    pub notes: Vec<Notification>,
    pub payments: Vec<serde_json::Value>,
    /// (customer, key, request hash, response) of each request decided here.
    pub answers: Vec<serde_json::Value>,
    pub progress: Vec<ListingProgress>,
}

/// One listing of the batch: its key, its row as locked, and its requests (by place in the
/// batch), with what its customers already hold where it limits them.
pub struct ListingBatch<'a> {
    pub key: Key,
    pub locked: LockedListing,
    pub requests: Vec<(usize, &'a ReserveRequest)>,
    pub held: BTreeMap<CustomerId, u32>,
}

impl Writes {
    pub fn new(at: UnixMillis, pay_base: &str) -> Self {
        Self {
            at,
            pay_base: pay_base.to_string(),
            orders: Vec::new(),
            rows: Vec::new(),
            events: Vec::new(),
            notes: Vec::new(),
            payments: Vec::new(),
            answers: Vec::new(),
            progress: Vec::new(),
        }
    }

    /// Decides one listing's requests on its row; answers each in `answers` (by place).
    pub fn decide(&mut self, b: ListingBatch<'_>, answers: &mut [Option<ReserveAnswer>]) {
        let requests: Vec<Request> = b
            .requests
            .iter()
            .map(|(_, r)| Request {
                order_id: r.order_id(),
                customer_id: r.customer_id.clone(),
                qty: r.qty,
            })
            .collect();
        let (terms, row) = (&b.locked.terms, &b.locked.row);
        let decided = quota::reserve(terms, row, &requests, &b.held, self.at);
        let l = ListingKey {
            sell_window_id: b.key.0.clone(),
            product_id: b.key.1.clone(),
        };
        for ((n, r), d) in b.requests.iter().zip(&decided.decisions) {
            answers[*n] = Some(self.take_or_refuse(&l, r, d));
        }
        if decided.taken().next().is_some() {
            self.moved(&l, b.key, &b.locked, decided);
        }
    }

    fn take_or_refuse(
        &mut self,
        l: &ListingKey,
        r: &ReserveRequest,
        d: &Decision,
    ) -> ReserveAnswer {
        match d {
            Decision::Refuse(refusal) => {
                let stored = serde_json::to_string(refusal).expect("a refusal serializes");
                self.answer(r, stored);
                Err(refusal.clone())
            }
            Decision::Take(o) => {
                self.answer(r, format!("{RESERVED_ANSWER}{}", o.order_id));
                let payment = o.payment_due_at.map(|due| self.open_payment(l, o, due));
                self.reserved(l, o);
                let key = (l.sell_window_id.clone(), l.product_id.clone());
                self.orders.push((key, o.clone()));
                Ok(order_row(l, o, payment, self.at))
            }
        }
    }

    /// What the taken orders did to the listing: its row, `quota.closed` and
    /// `threshold.reached` when this batch made them, and what its workflow is told.
    fn moved(&mut self, l: &ListingKey, key: Key, locked: &LockedListing, decided: Reserved) {
        if let Some(by) = &decided.filled_by {
            let payload = json!({"filledBy": by});
            self.event(
                l,
                &format!("quota.closed:{by}"),
                "quota.closed",
                None,
                payload,
            );
        }
        if decided.reached_threshold {
            self.threshold_reached(l, &decided.row, locked.terms.min_qty);
        }
        let next_due = decided.taken().filter_map(|o| o.payment_due_at).min();
        self.progress.push(ListingProgress {
            listing: l.clone(),
            progress: Progress {
                figures: Figures {
                    version: 0, // the row's, once written
                    sold: decided.row.sold,
                    reserved: decided.row.reserved,
                    paid: locked.paid,
                    threshold_reached: decided.row.threshold_reached,
                },
                next_due,
            },
            milestone: decided.reached_threshold || decided.filled_by.is_some(),
        });
        self.rows.push(RowUpdate {
            key,
            status: quota::quota_status(&decided.row, locked.terms.max_qty),
            row: decided.row,
        });
    }

    fn answer(&mut self, r: &ReserveRequest, response: String) {
        self.answers.push(json!({
            "c": r.customer_id, "k": r.idempotency_key, "h": r.hash(), "r": response,
        }));
    }

    fn event(
        &mut self,
        l: &ListingKey,
        key: &str,
        name: &str,
        order: Option<&OrderId>,
        payload: serde_json::Value,
    ) {
        let mut payload = payload;
        payload["sellWindowId"] = json!(l.sell_window_id);
        payload["productId"] = json!(l.product_id);
        self.events.push(NewEvent {
            key: key.to_string(),
            name: name.to_string(),
            sell_window: Some(l.sell_window_id.clone()),
            product: Some(l.product_id.clone()),
            order: order.cloned(),
            payload,
            at: self.at,
        });
    }

    /// A notification to `to`, once per (kind, person, what it is about).
    fn note(
        &mut self,
        l: &ListingKey,
        to: (Recipient, &str),
        about: (&str, &str),
        order: Option<&OrderId>,
        message: String,
    ) {
        let (kind, what) = about;
        self.notes.push(Notification {
            id: format!("ntf-{}", digest(&[kind, to.1, what])),
            recipient: to.0,
            recipient_id: to.1.to_string(),
            kind: kind.to_string(),
            sell_window_id: Some(l.sell_window_id.clone()),
            product_id: Some(l.product_id.clone()),
            order_id: order.cloned(),
            message,
            created_at: self.at,
        });
    }

    fn reserved(&mut self, l: &ListingKey, o: &NewOrder) {
        let payload = json!({"orderId": o.order_id, "customerId": o.customer_id, "qty": o.qty, "status": o.status});
        let key = format!("order.reserved:{}", o.order_id);
        self.event(l, &key, "order.reserved", Some(&o.order_id), payload);
    }

    /// The first payment of an order reserved after confirm, and its customer's pay link.
    fn open_payment(
        &mut self,
        l: &ListingKey,
        o: &NewOrder,
        due: UnixMillis,
    ) -> (PaymentId, String) {
        let id = PaymentId::for_attempt(&o.order_id, 1);
        let url = pay_url(&self.pay_base, &id);
        self.payments.push(json!({
            "id": id, "o": o.order_id, "w": l.sell_window_id, "p": l.product_id, "c": o.customer_id,
            "cur": o.amount.currency, "amt": o.amount.amount_minor, "url": url, "exp": due.0,
        }));
        let order = Some(&o.order_id);
        let requested = json!({"orderId": o.order_id, "amount": o.amount, "expireAt": due, "providerHint": "sandbox", "attempt": 1});
        self.event(
            l,
            &format!("payment.requested:{id}"),
            "payment.requested",
            order,
            requested,
        );
        let created = json!({"orderId": o.order_id, "paymentId": id, "payInfo": {"url": url, "amount": o.amount}, "expireAt": due});
        self.event(
            l,
            &format!("payment.created:{id}"),
            "payment.created",
            order,
            created,
        );
        let message = texts::payment_link(&o.amount, &o.order_id, due, &url);
        let to = (Recipient::Customer, o.customer_id.as_str());
        self.note(l, to, ("payment_link", id.as_str()), order, message);
        (id, url)
    }

    /// The aggregator's one announcement: the threshold is reached, the admin told.
    fn threshold_reached(&mut self, l: &ListingKey, row: &QuotaRow, min: u32) {
        let key = format!("threshold.reached:{}:{}", l.sell_window_id, l.product_id);
        let payload = json!({"reservedQty": row.reserved, "thresholdQty": min});
        self.event(l, &key, "threshold.reached", None, payload);
        let message = texts::threshold_reached(&crate::listing_name(l), row.reserved, min);
        let to = (Recipient::Admin, "admin");
        self.note(l, to, ("threshold_reached", &key), None, message);
    }
}

/// An order as answered to its customer right after the commit.
fn order_row(
    l: &ListingKey,
    o: &NewOrder,
    payment: Option<(PaymentId, String)>,
    at: UnixMillis,
) -> OrderRow {
    let (payment_id, pay_url) = match payment {
        Some((id, url)) => (Some(id.to_string()), Some(url)),
        None => (None, None),
    };
    OrderRow {
        id: o.order_id.clone(),
        sell_window_id: l.sell_window_id.to_string(),
        product_id: l.product_id.to_string(),
        customer_id: o.customer_id.to_string(),
        qty: o.qty.get(),
        amount: o.amount.clone(),
        status: o.status.to_string(),
        payment_due_at: o.payment_due_at.map(|d| d.0),
        payment_id,
        pay_url,
        payment_failed_count: 0,
        last_payment_error: None,
        created_at: at.0,
    }
}
