//! What the pages read, as JSON: the API's messages with every amount also formatted for
//! people by its currency's exponent (`"TWD 450.00"`), and times as unix milliseconds.

use crate::pb;
use sellwindow_domain::{Currency, Money};
use serde_json::{Value, json};

fn ms(t: &Option<prost_types::Timestamp>) -> Value {
    t.as_ref()
        .map_or(Value::Null, |t| json!(crate::convert::ms_of(t)))
}

/// An amount as people read it; the raw minor units travel beside it.
pub fn money(m: &Option<pb::Money>) -> Value {
    let Some(m) = m else { return Value::Null };
    let text = Currency::parse(m.currency.clone()).map_or_else(
        |_| format!("{} {}", m.amount_minor, m.currency),
        |currency| {
            Money {
                currency,
                amount_minor: m.amount_minor,
            }
            .to_string()
        },
    );
    json!({ "currency": m.currency, "amount_minor": m.amount_minor, "text": text })
}

pub fn listing(l: &pb::Listing) -> Value {
    json!({
        "product_id": l.product_id, "product_name": l.product_name,
        "min_qty": l.min_qty, "max_qty": l.max_qty, "sold_qty": l.sold_qty,
        "reserved_qty": l.reserved_qty, "paid_qty": l.paid_qty,
        "left": l.max_qty.saturating_sub(l.sold_qty),
        "quota_status": l.quota_status, "threshold_status": l.threshold_status,
        "batch_status": l.batch_status, "phase": l.phase, "work_order_id": l.work_order_id,
        "workflow_id": l.workflow_id, "unit_price": money(&l.unit_price),
        "per_customer_limit": l.per_customer_limit,
    })
}

pub fn window(w: &pb::SellWindow) -> Value {
    json!({
        "id": w.id, "name": w.name, "close_at": ms(&w.close_at),
        "listings": w.listings.iter().map(listing).collect::<Vec<_>>(),
    })
}

pub fn order(o: &pb::Order) -> Value {
    json!({
        "id": o.id, "sell_window_id": o.sell_window_id, "product_id": o.product_id,
        "customer_id": o.customer_id, "qty": o.qty, "amount": money(&o.amount),
        "status": o.status, "payment_due_at": ms(&o.payment_due_at), "payment_id": o.payment_id,
        "pay_url": o.pay_url, "payment_failed_count": o.payment_failed_count,
        "last_payment_error": o.last_payment_error, "created_at": ms(&o.created_at),
    })
}

pub fn notification(n: &pb::Notification) -> Value {
    json!({
        "id": n.id, "recipient_kind": n.recipient_kind, "recipient_id": n.recipient_id,
        "kind": n.kind, "sell_window_id": n.sell_window_id, "order_id": n.order_id,
        "message": n.message, "created_at": ms(&n.created_at),
        "delivery_status": n.delivery_status,
    })
}

pub fn work_order(w: &pb::WorkOrder) -> Value {
    json!({
        "id": w.id, "sell_window_id": w.sell_window_id, "product_id": w.product_id,
        "product_qty": w.product_qty, "status": w.status,
        "steps": w.steps.iter().map(|s| json!({
            "id": s.id, "position": s.position, "name": s.name, "status": s.status,
        })).collect::<Vec<_>>(),
    })
}

pub fn event(e: &pb::Event) -> Value {
    json!({
        "seq": e.seq, "name": e.name, "product_id": e.product_id, "order_id": e.order_id,
        "occurred_at": ms(&e.occurred_at),
    })
}

pub fn product(p: &pb::Product) -> Value {
    json!({
        "id": p.id, "name": p.name, "unit_price": money(&p.unit_price),
        "work_steps": p.work_steps,
    })
}
