//! The listing's business rules as a plain state machine: quota, aggregator counters, batch,
//! order statuses and production. No Temporal, no I/O, no clock: every method takes `now`, and
//! returns the facts the workflow must persist. The workflow is its only writer, so a decision
//! taken here is final before anything is awaited.
//!
//! Invariants (checked by [`Listing::check_invariants`] in tests after every step):
//! `sold_qty <= max_qty`; `sold_qty` = Σ qty of orders holding quota; `reserved_qty` = Σ qty of
//! RESERVED and PAYMENT_REQUESTED orders; `paid_qty` = Σ qty of PAID orders.

use sellwindow_domain::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

mod payments;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderEntry {
    pub customer_id: CustomerId,
    pub qty: Qty,
    pub status: OrderStatus,
    pub payment_due_at: Option<UnixMillis>,
    /// The payment attempt currently open for this order (attempt number, id).
    pub payment: Option<(u32, PaymentId)>,
    pub payment_failures: u32,
    /// The payment that paid the order: any other success for it is a second charge.
    #[serde(default)]
    pub paid_by: Option<PaymentId>,
}

/// What `reserve` decided for a batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ReservePlan {
    pub outcomes: Vec<ReserveOutcome>,
    pub accepted: Vec<NewOrder>,
    pub quota_closed: bool,
    pub threshold_reached: bool,
}

/// What a provider's payment result means for the listing.
#[derive(Debug, Clone, PartialEq)]
pub enum PaymentEffect {
    Paid {
        customer_id: CustomerId,
        qty: Qty,
    },
    Failed {
        customer_id: CustomerId,
        failures: u32,
    },
    Expired {
        released: Released,
        quota_reopened: bool,
    },
    /// Money arrived for an order that no longer wants it: give it back (saga compensation).
    Refund {
        customer_id: CustomerId,
        amount: Money,
    },
    /// Nothing to do: a duplicate, a stale attempt, or an unknown order.
    Ignore,
}

/// Why a customer's change to an order is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelRefusal {
    NotFound,
    NotYours,
    /// The order's status does not allow it (e.g. PAID cannot be cancelled by the customer).
    Status(OrderStatus),
}

impl std::fmt::Display for CancelRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CancelRefusal::NotFound => f.write_str("unknown order"),
            CancelRefusal::NotYours => f.write_str("this order belongs to another customer"),
            CancelRefusal::Status(s) => write!(f, "the order is {s}"),
        }
    }
}

/// What happens at close_at.
#[derive(Debug, Clone, PartialEq)]
pub enum FinalizePlan {
    /// Never confirmed: the group did not form; every order is cancelled.
    Failed { cancelled: Vec<Released> },
    /// Confirmed: unpaid orders expire, the paid quantity is frozen.
    Finalized {
        expired: Vec<Released>,
        final_paid_qty: u32,
        outcome: FinalOutcome,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum FinalOutcome {
    Produce {
        work_order_id: WorkOrderId,
    },
    NothingToProduce,
    /// `CANCEL_AND_REFUND` and the paid quantity is under the threshold.
    CancelAndRefund {
        refunded: Vec<Released>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub spec: ListingSpec,
    pub phase: Phase,
    pub quota_status: QuotaStatus,
    pub sold_qty: u32,
    pub reserved_qty: u32,
    pub paid_qty: u32,
    pub threshold_status: ThresholdStatus,
    pub batch_status: BatchStatus,
    pub confirmed_at: Option<UnixMillis>,
    pub final_paid_qty: Option<u32>,
    pub work_order_id: Option<WorkOrderId>,
    /// Step ids of the work order, with whether each is done.
    pub steps: Vec<(StepId, bool)>,
    pub orders: BTreeMap<OrderId, OrderEntry>,
}

impl Listing {
    pub fn new(spec: ListingSpec) -> Self {
        Self {
            spec,
            phase: Phase::Open,
            quota_status: QuotaStatus::Open,
            sold_qty: 0,
            reserved_qty: 0,
            paid_qty: 0,
            threshold_status: ThresholdStatus::Open,
            batch_status: BatchStatus::Pending,
            confirmed_at: None,
            final_paid_qty: None,
            work_order_id: None,
            steps: Vec::new(),
            orders: BTreeMap::new(),
        }
    }

    /// Everything but the orders (a large hand-over sends those through the store).
    pub fn without_orders(&self) -> Listing {
        Listing {
            spec: self.spec.clone(),
            phase: self.phase,
            quota_status: self.quota_status,
            sold_qty: self.sold_qty,
            reserved_qty: self.reserved_qty,
            paid_qty: self.paid_qty,
            threshold_status: self.threshold_status,
            batch_status: self.batch_status,
            confirmed_at: self.confirmed_at,
            final_paid_qty: self.final_paid_qty,
            work_order_id: self.work_order_id.clone(),
            steps: self.steps.clone(),
            orders: BTreeMap::new(),
        }
    }

    pub fn figures(&self) -> ListingFigures {
        ListingFigures {
            sell_window_id: self.spec.sell_window_id.clone(),
            product_id: self.spec.product_id.clone(),
            phase: self.phase,
            quota_status: self.quota_status,
            min_qty: self.spec.min_qty,
            max_qty: self.spec.max_qty,
            sold_qty: self.sold_qty,
            reserved_qty: self.reserved_qty,
            paid_qty: self.paid_qty,
            threshold_status: self.threshold_status,
            batch_status: self.batch_status,
            batch_id: self.spec.batch_id(),
            final_paid_qty: self.final_paid_qty,
            work_order_id: self.work_order_id.clone(),
        }
    }

    pub fn order_view(&self, order_id: &OrderId) -> Option<OrderView> {
        self.orders.get(order_id).map(|o| OrderView {
            order_id: order_id.clone(),
            customer_id: o.customer_id.clone(),
            qty: o.qty,
            amount: self.spec.unit_price.times(o.qty.get()),
            status: o.status,
            payment_due_at: o.payment_due_at,
            payment_id: o.payment.as_ref().map(|(_, id)| id.clone()),
        })
    }

    /// Reservations are taken until close_at, while the phase allows it.
    pub fn closed_reason(&self, now: UnixMillis) -> Option<Refusal> {
        if !self.phase.accepts_reservations() {
            return Some(Refusal::WindowClosed { phase: self.phase });
        }
        if now >= self.spec.close_at {
            return Some(Refusal::WindowClosed { phase: self.phase });
        }
        None
    }

    fn payment_due(&self, now: UnixMillis) -> UnixMillis {
        now.plus_ms(self.spec.payment_window_ms)
            .min(self.spec.close_at)
    }

    fn held_by(&self, customer: &CustomerId) -> u32 {
        self.orders
            .values()
            .filter(|o| &o.customer_id == customer && o.status.holds_quota())
            .map(|o| o.qty.get())
            .sum()
    }

    /// Decides a batch of reservations in arrival order, taking the units at once.
    pub fn reserve(&mut self, items: &[ReserveItem], now: UnixMillis) -> ReservePlan {
        let mut plan = ReservePlan::default();
        for item in items {
            if self.orders.contains_key(&item.order_id) {
                // A retried request: the first answer stands.
                let view = self.order_view(&item.order_id).expect("order exists");
                plan.outcomes.push(ReserveOutcome::Reserved(view));
                continue;
            }
            let refuse = |refusal| ReserveOutcome::Refused {
                order_id: item.order_id.clone(),
                refusal,
            };
            if let Some(refusal) = self.closed_reason(now) {
                plan.outcomes.push(refuse(refusal));
                continue;
            }
            let qty = item.qty.get();
            let available = self.spec.max_qty - self.sold_qty;
            if self.quota_status == QuotaStatus::Closed || qty > available {
                plan.outcomes
                    .push(refuse(Refusal::NotEnoughQuota { available }));
                continue;
            }
            if let Some(limit) = self.spec.per_customer_limit {
                let held = self.held_by(&item.customer_id);
                if held + qty > limit {
                    plan.outcomes
                        .push(refuse(Refusal::CustomerLimit { limit, held }));
                    continue;
                }
            }
            self.sold_qty += qty;
            self.reserved_qty += qty;
            if self.sold_qty == self.spec.max_qty {
                self.quota_status = QuotaStatus::Closed;
                plan.quota_closed = true;
            }
            if self.threshold_status == ThresholdStatus::Open
                && self.reserved_qty >= self.spec.min_qty
            {
                self.threshold_status = ThresholdStatus::Reached;
                plan.threshold_reached = true;
            }
            let (status, due) = if self.batch_status == BatchStatus::Confirmed {
                (OrderStatus::PaymentRequested, Some(self.payment_due(now)))
            } else {
                (OrderStatus::Reserved, None)
            };
            self.orders.insert(
                item.order_id.clone(),
                OrderEntry {
                    customer_id: item.customer_id.clone(),
                    qty: item.qty,
                    status,
                    payment_due_at: due,
                    payment: None,
                    payment_failures: 0,
                    paid_by: None,
                },
            );
            plan.accepted.push(NewOrder {
                order_id: item.order_id.clone(),
                customer_id: item.customer_id.clone(),
                qty: item.qty,
                amount: self.spec.unit_price.times(qty),
                status,
                payment_due_at: due,
            });
            plan.outcomes.push(ReserveOutcome::Reserved(
                self.order_view(&item.order_id).expect("just inserted"),
            ));
        }
        plan
    }

    /// Gives back what `plan` took when its orders could not be written. Answers become
    /// `NotRecorded` refusals so the customer may retry with the same key.
    pub fn undo_reserve(&mut self, plan: &mut ReservePlan, reason: &str) {
        for new in &plan.accepted {
            if let Some(o) = self.orders.remove(&new.order_id) {
                self.sold_qty -= o.qty.get();
                if o.status.counts_as_reserved() {
                    self.reserved_qty -= o.qty.get();
                }
            }
        }
        if plan.quota_closed && self.sold_qty < self.spec.max_qty {
            self.quota_status = QuotaStatus::Open;
        }
        if plan.threshold_reached
            && self.batch_status == BatchStatus::Pending
            && self.reserved_qty < self.spec.min_qty
        {
            self.threshold_status = ThresholdStatus::Open;
        }
        let accepted: std::collections::BTreeSet<_> =
            plan.accepted.iter().map(|n| n.order_id.clone()).collect();
        for outcome in &mut plan.outcomes {
            if let ReserveOutcome::Reserved(view) = outcome
                && accepted.contains(&view.order_id)
            {
                *outcome = ReserveOutcome::Refused {
                    order_id: view.order_id.clone(),
                    refusal: Refusal::NotRecorded {
                        reason: reason.to_string(),
                    },
                };
            }
        }
        plan.accepted.clear();
        plan.quota_closed = false;
        plan.threshold_reached = false;
    }

    /// Why confirm cannot happen now, if it cannot.
    pub fn confirm_refusal(&self) -> Option<String> {
        if self.batch_status == BatchStatus::Confirmed {
            return None; // a second confirm returns the same batch
        }
        if self.phase != Phase::Open {
            return Some(format!("the listing is {}", self.phase));
        }
        if self.threshold_status != ThresholdStatus::Reached {
            return Some(format!(
                "threshold not reached: {} of {} reserved",
                self.reserved_qty, self.spec.min_qty
            ));
        }
        None
    }

    /// Confirms the batch: every RESERVED order is asked to pay. Returns the orders moved
    /// (empty on a repeated confirm).
    pub fn confirm(&mut self, now: UnixMillis) -> Result<Vec<OrderId>, String> {
        if let Some(why) = self.confirm_refusal() {
            return Err(why);
        }
        if self.batch_status == BatchStatus::Confirmed {
            return Ok(Vec::new());
        }
        self.batch_status = BatchStatus::Confirmed;
        self.confirmed_at = Some(now);
        self.phase = Phase::Confirmed;
        let due = self.payment_due(now);
        let mut moved = Vec::new();
        for (id, o) in self.orders.iter_mut() {
            if o.status == OrderStatus::Reserved {
                o.status = OrderStatus::PaymentRequested;
                o.payment_due_at = Some(due);
                moved.push(id.clone());
            }
        }
        Ok(moved)
    }
}
