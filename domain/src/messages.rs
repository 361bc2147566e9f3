//! Messages that cross the workflow boundary: the listing's start input, the reserve batch and
//! its answers, payment results, and the live figures a query returns. They are serialized
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

/// One customer's reservation inside a coalesced reserve update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveItem {
    pub order_id: OrderId,
    pub customer_id: CustomerId,
    pub qty: Qty,
    /// The customer's idempotency key: the write that records the order also records it as
    /// the key's first answer (absent in histories recorded before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer_key: Option<AnswerKey>,
}

/// An idempotency key and the hash of the request first made under it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerKey {
    pub idempotency_key: String,
    pub request_hash: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveBatch {
    pub items: Vec<ReserveItem>,
}

/// A new order as the first answer under its customer's idempotency key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderAnswer {
    pub customer_id: CustomerId,
    pub key: AnswerKey,
    pub order_id: OrderId,
}

/// The hash of a reservation's request, kept with its idempotency key: a retry under the key
/// must ask for the same listing and quantity.
pub fn reservation_hash(sw: &SellWindowId, p: &ProductId, qty: Qty) -> String {
    digest(&[sw.as_str(), p.as_str(), &qty.get().to_string()])
}

/// One reservation as the API sends it in a `reserve_v2` update: customer, quantity and
/// idempotency key, a three-element JSON array. A hot listing's history holds one of these per
/// reservation (and one [`ReserveReply`]), so nothing the workflow can derive travels: the
/// order id and the request hash follow from the listing and these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation(pub CustomerId, pub Qty, pub String);

impl Reservation {
    pub fn of(item: &ReserveItem) -> Option<Self> {
        let key = item.answer_key.as_ref()?;
        Some(Self(
            item.customer_id.clone(),
            item.qty,
            key.idempotency_key.clone(),
        ))
    }

    /// The reservation as the listing decides it.
    pub fn item(&self, sw: &SellWindowId, p: &ProductId) -> ReserveItem {
        let Self(customer_id, qty, key) = self;
        ReserveItem {
            order_id: OrderId::for_request(sw, p, customer_id, key),
            customer_id: customer_id.clone(),
            qty: *qty,
            answer_key: Some(AnswerKey {
                idempotency_key: key.clone(),
                request_hash: reservation_hash(sw, p, *qty),
            }),
        }
    }
}

/// A `reserve_v2` update: reservations coalesced by the API, answered in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservations {
    pub items: Vec<Reservation>,
}

/// The answers to a `reserve_v2` update, in order, with the listing's unit price (an order's
/// amount is the price times its quantity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReserveReplies {
    pub unit_price: Money,
    pub replies: Vec<ReserveReply>,
}

/// [`ReserveOutcome`] without what the caller already knows (order id, customer, quantity).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReserveReply {
    /// RESERVED, no payment yet: most answers, written as `"R"`.
    #[serde(rename = "R")]
    Held,
    /// The order's status, payment deadline and open payment.
    #[serde(rename = "r")]
    Reserved(OrderStatus, Option<UnixMillis>, Option<PaymentId>),
    #[serde(rename = "x")]
    Refused(Refusal),
}

impl From<ReserveOutcome> for ReserveReply {
    fn from(o: ReserveOutcome) -> Self {
        match o {
            ReserveOutcome::Reserved(OrderView {
                status: OrderStatus::Reserved,
                payment_due_at: None,
                payment_id: None,
                ..
            }) => Self::Held,
            ReserveOutcome::Reserved(v) => Self::Reserved(v.status, v.payment_due_at, v.payment_id),
            ReserveOutcome::Refused { refusal, .. } => Self::Refused(refusal),
        }
    }
}

impl ReserveReply {
    /// The full answer to the reservation `item` this replies to.
    pub fn outcome(self, item: &ReserveItem, unit_price: &Money) -> ReserveOutcome {
        match self {
            Self::Held => {
                Self::Reserved(OrderStatus::Reserved, None, None).outcome(item, unit_price)
            }
            Self::Reserved(status, payment_due_at, payment_id) => {
                ReserveOutcome::Reserved(OrderView {
                    order_id: item.order_id.clone(),
                    customer_id: item.customer_id.clone(),
                    qty: item.qty,
                    amount: unit_price.times(item.qty.get()),
                    status,
                    payment_due_at,
                    payment_id,
                })
            }
            Self::Refused(refusal) => ReserveOutcome::Refused {
                order_id: item.order_id.clone(),
                refusal,
            },
        }
    }
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Not enough units left under the cap (`RESOURCE_EXHAUSTED`).
    NotEnoughQuota { available: u32 },
    /// Over the listing's per-customer limit (`RESOURCE_EXHAUSTED`).
    CustomerLimit { limit: u32, held: u32 },
    /// The window no longer takes reservations (`FAILED_PRECONDITION`).
    WindowClosed { phase: Phase },
    /// The order could not be written; nothing was taken (`UNAVAILABLE`, retry with the same key).
    NotRecorded { reason: String },
}

/// The answer to one reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReserveOutcome {
    Reserved(OrderView),
    Refused { order_id: OrderId, refusal: Refusal },
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compact_reservation_and_its_reply_carry_the_whole_answer() {
        let (sw, p) = (
            SellWindowId::parse("sw-1").unwrap(),
            ProductId::parse("p-1").unwrap(),
        );
        let customer = CustomerId::parse("c-1").unwrap();
        let qty = Qty::new(3).unwrap();
        let item = ReserveItem {
            order_id: OrderId::for_request(&sw, &p, &customer, "key-1"),
            customer_id: customer.clone(),
            qty,
            answer_key: Some(AnswerKey {
                idempotency_key: "key-1".into(),
                request_hash: reservation_hash(&sw, &p, qty),
            }),
        };
        let sent = Reservation::of(&item).unwrap();
        assert_eq!(sent.item(&sw, &p), item);
        assert_eq!(
            serde_json::to_string(&sent).unwrap(),
            r#"["c-1",3,"key-1"]"#
        );
        let price = Money::new(Currency::parse("TWD").unwrap(), 150).unwrap();
        let view = OrderView {
            order_id: item.order_id.clone(),
            customer_id: customer,
            qty,
            amount: price.times(3),
            status: OrderStatus::PaymentRequested,
            payment_due_at: Some(UnixMillis(9)),
            payment_id: Some(PaymentId::parse("pay-1").unwrap()),
        };
        let held = OrderView {
            status: OrderStatus::Reserved,
            payment_due_at: None,
            payment_id: None,
            ..view.clone()
        };
        assert_eq!(
            serde_json::to_string(&ReserveReply::from(ReserveOutcome::Reserved(held.clone())))
                .unwrap(),
            r#""R""#
        );
        for outcome in [
            ReserveOutcome::Reserved(held),
            ReserveOutcome::Reserved(view),
            ReserveOutcome::Refused {
                order_id: item.order_id.clone(),
                refusal: Refusal::NotEnoughQuota { available: 2 },
            },
        ] {
            let reply = ReserveReply::from(outcome.clone());
            let wire: ReserveReply =
                serde_json::from_str(&serde_json::to_string(&reply).unwrap()).unwrap();
            assert_eq!(wire.outcome(&item, &price), outcome);
        }
    }
}
