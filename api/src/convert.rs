//! Conversions between the domain and the protobuf messages, and request validation that names
//! the offending field.

use crate::error::ApiError;
use crate::pb;
use sellwindow_domain::*;
use sellwindow_store::queries::{
    EventRow, ListingRow, NotificationRow, OrderRow, ProductRow, SellWindowRow, WorkOrderRow,
};

pub fn ts(ms: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: (ms.rem_euclid(1000) * 1_000_000) as i32,
    }
}

/// Milliseconds of a protobuf timestamp (saturating; for times this process made itself).
pub fn ms_of(t: &prost_types::Timestamp) -> i64 {
    ms_of_parts(t.seconds, t.nanos).unwrap_or(if t.seconds < 0 { i64::MIN } else { i64::MAX })
}

/// Milliseconds of seconds + nanos, or `None` when it does not fit (absurd input).
pub fn ms_of_parts(seconds: i64, nanos: i32) -> Option<i64> {
    seconds
        .checked_mul(1000)?
        .checked_add(i64::from(nanos / 1_000_000))
}

pub fn dur(ms: i64) -> prost_types::Duration {
    prost_types::Duration {
        seconds: ms / 1000,
        nanos: ((ms % 1000) * 1_000_000) as i32,
    }
}

pub fn now_ms() -> UnixMillis {
    UnixMillis(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_millis() as i64,
    )
}

pub fn money(m: &Money) -> pb::Money {
    pb::Money {
        currency: m.currency.as_str().to_string(),
        amount_minor: m.amount_minor,
    }
}

pub fn parse_money(m: Option<&pb::Money>, field: &'static str) -> Result<Money, ApiError> {
    let m = m.ok_or(DomainError::invalid(field, "is required"))?;
    Ok(Money::new(
        Currency::parse(m.currency.clone())?,
        m.amount_minor,
    )?)
}

pub fn policy(p: MinPaidPolicy) -> i32 {
    match p {
        MinPaidPolicy::ProduceWhatWasPaid => pb::MinPaidPolicy::ProducePaid as i32,
        MinPaidPolicy::CancelAndRefund => pb::MinPaidPolicy::CancelAndRefund as i32,
    }
}

pub fn parse_policy(v: i32) -> Result<MinPaidPolicy, ApiError> {
    match pb::MinPaidPolicy::try_from(v) {
        Ok(pb::MinPaidPolicy::Unspecified | pb::MinPaidPolicy::ProducePaid) => {
            Ok(MinPaidPolicy::ProduceWhatWasPaid)
        }
        Ok(pb::MinPaidPolicy::CancelAndRefund) => Ok(MinPaidPolicy::CancelAndRefund),
        Err(_) => Err(DomainError::invalid("min_paid_policy", "unknown value").into()),
    }
}

/// A listing row, overlaid with the workflow's live figures when it answered.
pub fn listing(sw: &SellWindowId, l: &ListingRow) -> pb::Listing {
    pb::Listing {
        product_id: l.product_id.to_string(),
        product_name: l.product_name.clone(),
        min_qty: l.min_qty,
        max_qty: l.max_qty,
        quota_status: l.quota_status.to_string(),
        sold_qty: l.sold_qty,
        reserved_qty: l.reserved_qty,
        paid_qty: l.paid_qty,
        threshold_status: l.threshold_status.to_string(),
        batch_status: l.batch_status.to_string(),
        batch_id: BatchId::for_listing(sw, &l.product_id).to_string(),
        phase: l.phase.to_string(),
        final_paid_qty: l.final_paid_qty.unwrap_or(0),
        work_order_id: l.work_order_id.clone().unwrap_or_default(),
        workflow_id: l.workflow_id.clone(),
        unit_price: Some(money(&l.unit_price)),
        payment_window: Some(dur(l.payment_window_ms)),
        per_customer_limit: l.per_customer_limit.unwrap_or(0),
        min_paid_policy: policy(l.min_paid_policy),
    }
}

/// A window with its listings as their rows hold them.
pub fn sell_window(w: &SellWindowRow) -> pb::SellWindow {
    pb::SellWindow {
        id: w.id.to_string(),
        name: w.name.clone(),
        close_at: Some(ts(w.close_at.0)),
        listings: w.listings.iter().map(|l| listing(&w.id, l)).collect(),
        created_at: Some(ts(w.created_at.0)),
    }
}

pub fn order(o: &OrderRow) -> pb::Order {
    pb::Order {
        id: o.id.to_string(),
        sell_window_id: o.sell_window_id.clone(),
        product_id: o.product_id.clone(),
        customer_id: o.customer_id.clone(),
        qty: o.qty,
        amount: Some(money(&o.amount)),
        status: o.status.clone(),
        payment_due_at: o.payment_due_at.map(ts),
        payment_id: o.payment_id.clone().unwrap_or_default(),
        pay_url: o.pay_url.clone().unwrap_or_default(),
        payment_failed_count: o.payment_failed_count,
        last_payment_error: o.last_payment_error.clone().unwrap_or_default(),
        created_at: Some(ts(o.created_at)),
    }
}

pub fn product(p: ProductRow) -> pb::Product {
    pb::Product {
        id: p.id.to_string(),
        name: p.name,
        unit_price: Some(money(&p.unit_price)),
        work_steps: p.work_steps,
    }
}

pub fn event(e: EventRow) -> pb::Event {
    pb::Event {
        seq: e.seq,
        name: e.name,
        sell_window_id: e.sell_window_id.unwrap_or_default(),
        product_id: e.product_id.unwrap_or_default(),
        order_id: e.order_id.unwrap_or_default(),
        payload_json: e.payload,
        occurred_at: Some(ts(e.occurred_at)),
    }
}

pub fn notification(n: &NotificationRow) -> pb::Notification {
    pb::Notification {
        id: n.id.clone(),
        recipient_kind: n.recipient_kind.clone(),
        recipient_id: n.recipient_id.clone(),
        kind: n.kind.clone(),
        sell_window_id: n.sell_window_id.clone().unwrap_or_default(),
        product_id: n.product_id.clone().unwrap_or_default(),
        order_id: n.order_id.clone().unwrap_or_default(),
        message: n.message.clone(),
        created_at: Some(ts(n.created_at)),
        delivered: n.delivered,
        delivery_status: n.delivery_status.to_string(),
        delivery_attempts: n.delivery_attempts,
        last_delivery_error: n.last_delivery_error.clone().unwrap_or_default(),
    }
}

pub fn work_order(w: &WorkOrderRow) -> pb::WorkOrder {
    pb::WorkOrder {
        id: w.id.clone(),
        batch_id: w.batch_id.clone(),
        sell_window_id: w.sell_window_id.to_string(),
        product_id: w.product_id.to_string(),
        product_qty: w.product_qty,
        status: w.status.clone(),
        steps: w
            .steps
            .iter()
            .map(|(id, pos, name, status)| pb::WorkStep {
                id: id.clone(),
                position: *pos,
                name: name.clone(),
                status: status.clone(),
            })
            .collect(),
    }
}

/// A bounded free-text field.
pub fn text(field: &'static str, v: &str, max: usize) -> Result<String, ApiError> {
    let v = v.trim();
    if v.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty").into());
    }
    if v.chars().count() > max {
        return Err(
            DomainError::invalid(field, format!("must be at most {max} characters")).into(),
        );
    }
    Ok(v.to_string())
}
