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

    /// Opens the next payment attempt for each PAYMENT_REQUESTED order in `orders` that has
    /// none open yet (orders that moved on meanwhile are skipped).
    pub fn open_payments(&mut self, orders: &[OrderId]) -> Vec<PaymentToOpen> {
        let price = self.spec.unit_price.clone();
        let mut out = Vec::new();
        for id in orders {
            let Some(o) = self.orders.get_mut(id) else {
                continue;
            };
            if o.status != OrderStatus::PaymentRequested || o.payment.is_some() {
                continue;
            }
            let attempt = o.payment_failures + 1;
            let payment_id = PaymentId::for_attempt(id, attempt);
            o.payment = Some((attempt, payment_id.clone()));
            out.push(PaymentToOpen {
                order_id: id.clone(),
                customer_id: o.customer_id.clone(),
                payment_id,
                attempt,
                amount: price.times(o.qty.get()),
                expire_at: o.payment_due_at.unwrap_or(self.spec.close_at),
            });
        }
        out
    }

    fn release(&mut self, id: &OrderId, to: OrderStatus) -> Option<(Released, bool)> {
        let o = self.orders.get_mut(id)?;
        if !o.status.counts_as_reserved() {
            return None;
        }
        let was = o.status;
        o.status = to;
        let qty = o.qty.get();
        let released = Released {
            order_id: id.clone(),
            customer_id: o.customer_id.clone(),
            qty: o.qty,
            was,
            payment_id: o.payment.take().map(|(_, p)| p),
        };
        self.sold_qty -= qty;
        self.reserved_qty -= qty;
        let reopened = self.quota_status == QuotaStatus::Closed
            && self.sold_qty < self.spec.max_qty
            && self.phase.accepts_reservations();
        if reopened {
            self.quota_status = QuotaStatus::Open;
        }
        Some((released, reopened))
    }

    /// Applies a provider result. Decides exactly once per order transition.
    pub fn apply_payment(&mut self, r: &PaymentResult) -> PaymentEffect {
        let Some(o) = self.orders.get(&r.order_id) else {
            return PaymentEffect::Ignore;
        };
        let current = o.payment.as_ref().map(|(_, p)| p == &r.payment_id);
        let customer_id = o.customer_id.clone();
        let qty = o.qty;
        match (r.outcome, o.status) {
            (PaymentOutcome::Succeeded, OrderStatus::PaymentRequested) => {
                let o = self.orders.get_mut(&r.order_id).expect("present");
                o.status = OrderStatus::Paid;
                o.payment_due_at = None;
                // Whichever attempt paid, that one counts; a newer open attempt is superseded.
                o.paid_by = Some(r.payment_id.clone());
                self.reserved_qty -= qty.get();
                self.paid_qty += qty.get();
                PaymentEffect::Paid { customer_id, qty }
            }
            (PaymentOutcome::Succeeded, OrderStatus::Expired | OrderStatus::Cancelled) => {
                PaymentEffect::Refund {
                    customer_id,
                    amount: self.spec.unit_price.times(qty.get()),
                }
            }
            (PaymentOutcome::Succeeded, OrderStatus::Paid)
                if o.paid_by.as_ref() != Some(&r.payment_id) =>
            {
                // Another attempt also charged the customer: the order is paid once only.
                PaymentEffect::Refund {
                    customer_id,
                    amount: self.spec.unit_price.times(qty.get()),
                }
            }
            (PaymentOutcome::Failed, OrderStatus::PaymentRequested) if current == Some(true) => {
                let o = self.orders.get_mut(&r.order_id).expect("present");
                o.payment_failures += 1;
                o.payment = None; // the next attempt gets a new payment id
                PaymentEffect::Failed {
                    customer_id,
                    failures: o.payment_failures,
                }
            }
            (PaymentOutcome::Expired, OrderStatus::PaymentRequested) if current == Some(true) => {
                let (released, quota_reopened) = self
                    .release(&r.order_id, OrderStatus::Expired)
                    .expect("payment requested orders can be released");
                PaymentEffect::Expired {
                    released,
                    quota_reopened,
                }
            }
            _ => PaymentEffect::Ignore,
        }
    }

    /// The earliest payment deadline still pending, if any.
    pub fn next_payment_deadline(&self) -> Option<UnixMillis> {
        // Orders wait for payment only once the batch is confirmed; the run method asks this
        // on every pass, so a listing still reserving must not walk all its orders each time.
        if self.batch_status != BatchStatus::Confirmed {
            return None;
        }
        self.orders
            .values()
            .filter(|o| o.status == OrderStatus::PaymentRequested)
            .filter_map(|o| o.payment_due_at)
            .min()
    }

    /// Expires every unpaid order whose deadline has passed. Returns them and whether the
    /// quota reopened.
    pub fn expire_due(&mut self, now: UnixMillis) -> (Vec<Released>, bool) {
        let due: Vec<OrderId> = self
            .orders
            .iter()
            .filter(|(_, o)| {
                o.status == OrderStatus::PaymentRequested
                    && o.payment_due_at.is_some_and(|d| d <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        let mut reopened = false;
        let released = due
            .iter()
            .filter_map(|id| self.release(id, OrderStatus::Expired))
            .map(|(r, re)| {
                reopened |= re;
                r
            })
            .collect();
        (released, reopened)
    }

    /// close_at has come: freeze the paid quantity, or fail the window.
    pub fn finalize(&mut self, now: UnixMillis) -> FinalizePlan {
        if self.batch_status != BatchStatus::Confirmed {
            let ids: Vec<OrderId> = self.orders.keys().cloned().collect();
            let cancelled = ids
                .iter()
                .filter_map(|id| self.release(id, OrderStatus::Cancelled))
                .map(|(r, _)| r)
                .collect();
            self.phase = Phase::Failed;
            self.quota_status = QuotaStatus::Closed;
            return FinalizePlan::Failed { cancelled };
        }
        // Everything still unpaid at close_at expires, whatever its own deadline.
        let ids: Vec<OrderId> = self.orders.keys().cloned().collect();
        let expired: Vec<Released> = ids
            .iter()
            .filter_map(|id| self.release(id, OrderStatus::Expired))
            .map(|(r, _)| r)
            .collect();
        let _ = now;
        self.quota_status = QuotaStatus::Closed;
        let final_paid_qty = self.paid_qty;
        self.final_paid_qty = Some(final_paid_qty);
        let outcome = if self.spec.min_paid_policy == MinPaidPolicy::CancelAndRefund
            && final_paid_qty < self.spec.min_qty
        {
            let paid: Vec<OrderId> = self
                .orders
                .iter()
                .filter(|(_, o)| o.status == OrderStatus::Paid)
                .map(|(id, _)| id.clone())
                .collect();
            let mut refunded = Vec::new();
            for id in paid {
                let o = self.orders.get_mut(&id).expect("present");
                o.status = OrderStatus::Cancelled;
                self.paid_qty -= o.qty.get();
                self.sold_qty -= o.qty.get();
                refunded.push(Released {
                    order_id: id.clone(),
                    customer_id: o.customer_id.clone(),
                    qty: o.qty,
                    was: OrderStatus::Paid,
                    payment_id: o.payment.as_ref().map(|(_, p)| p.clone()),
                });
            }
            self.phase = Phase::Cancelled;
            FinalOutcome::CancelAndRefund { refunded }
        } else if final_paid_qty == 0 {
            self.phase = Phase::NothingToProduce;
            FinalOutcome::NothingToProduce
        } else {
            let work_order_id = WorkOrderId::for_batch(&self.spec.batch_id());
            self.steps = (0..self.spec.work_steps.len().max(1))
                .map(|i| (StepId::for_step(&work_order_id, i), false))
                .collect();
            self.work_order_id = Some(work_order_id.clone());
            self.phase = Phase::InProduction;
            FinalOutcome::Produce { work_order_id }
        };
        FinalizePlan::Finalized {
            expired,
            final_paid_qty,
            outcome,
        }
    }

    /// Why the customer cannot cancel this order, if they cannot.
    pub fn cancel_refusal(&self, order: &OrderId, customer: &CustomerId) -> Option<CancelRefusal> {
        let Some(o) = self.orders.get(order) else {
            return Some(CancelRefusal::NotFound);
        };
        if &o.customer_id != customer {
            return Some(CancelRefusal::NotYours);
        }
        if !o.status.counts_as_reserved() {
            return Some(CancelRefusal::Status(o.status));
        }
        None
    }

    /// The customer cancels their own RESERVED or PAYMENT_REQUESTED order: its units go back.
    pub fn cancel_order(
        &mut self,
        order: &OrderId,
        customer: &CustomerId,
    ) -> Result<(Released, bool), CancelRefusal> {
        if let Some(r) = self.cancel_refusal(order, customer) {
            return Err(r);
        }
        Ok(self
            .release(order, OrderStatus::Cancelled)
            .expect("checked: the order holds reserved units"))
    }

    /// Why a new payment attempt cannot be opened for this order, if it cannot.
    pub fn retry_refusal(&self, order: &OrderId, customer: &CustomerId) -> Option<CancelRefusal> {
        let Some(o) = self.orders.get(order) else {
            return Some(CancelRefusal::NotFound);
        };
        if &o.customer_id != customer {
            return Some(CancelRefusal::NotYours);
        }
        if o.status != OrderStatus::PaymentRequested {
            return Some(CancelRefusal::Status(o.status));
        }
        None
    }

    /// The admin cancels the window before finalize: every order is cancelled, paid ones are
    /// refunded. Returns (unpaid released, paid to refund).
    pub fn cancel_window(&mut self) -> Result<(Vec<Released>, Vec<Released>), String> {
        if !self.phase.accepts_reservations() {
            return Err(format!(
                "the listing is {} and can no longer be cancelled",
                self.phase
            ));
        }
        let ids: Vec<OrderId> = self.orders.keys().cloned().collect();
        let unpaid = ids
            .iter()
            .filter_map(|id| self.release(id, OrderStatus::Cancelled))
            .map(|(r, _)| r)
            .collect();
        let mut paid = Vec::new();
        for id in ids {
            let o = self.orders.get_mut(&id).expect("present");
            if o.status == OrderStatus::Paid {
                o.status = OrderStatus::Cancelled;
                self.paid_qty -= o.qty.get();
                self.sold_qty -= o.qty.get();
                paid.push(Released {
                    order_id: id.clone(),
                    customer_id: o.customer_id.clone(),
                    qty: o.qty,
                    was: OrderStatus::Paid,
                    payment_id: o.payment.as_ref().map(|(_, p)| p.clone()),
                });
            }
        }
        self.quota_status = QuotaStatus::Closed;
        self.phase = Phase::Cancelled;
        Ok((unpaid, paid))
    }

    /// Why a step cannot be completed, if it cannot.
    pub fn step_refusal(&self, step: &StepId) -> Option<String> {
        if self.phase != Phase::InProduction {
            return Some(format!("the listing is {}, not in production", self.phase));
        }
        if !self.steps.iter().any(|(id, _)| id == step) {
            return Some(format!("unknown step {step}"));
        }
        None
    }

    /// Marks a step done. Returns `Some(last)` when it changed, `None` when it was done already.
    pub fn complete_step(&mut self, step: &StepId) -> Option<bool> {
        let entry = self.steps.iter_mut().find(|(id, _)| id == step)?;
        if entry.1 {
            return None;
        }
        entry.1 = true;
        let last = self.steps.iter().all(|(_, done)| *done);
        if last {
            self.phase = Phase::Shipped;
        }
        Some(last)
    }

    /// The orders that get goods: every PAID order.
    pub fn paid_orders(&self) -> Vec<(OrderId, CustomerId, Qty)> {
        self.orders
            .iter()
            .filter(|(_, o)| o.status == OrderStatus::Paid)
            .map(|(id, o)| (id.clone(), o.customer_id.clone(), o.qty))
            .collect()
    }

    /// Checks the counters against the orders; used by tests after every step.
    pub fn check_invariants(&self) -> Result<(), String> {
        let sum = |f: fn(OrderStatus) -> bool| -> u32 {
            self.orders
                .values()
                .filter(|o| f(o.status))
                .map(|o| o.qty.get())
                .sum()
        };
        let sold = sum(OrderStatus::holds_quota);
        let reserved = sum(OrderStatus::counts_as_reserved);
        let paid = sum(|s| s == OrderStatus::Paid);
        if self.sold_qty > self.spec.max_qty {
            return Err(format!(
                "oversold: {} > {}",
                self.sold_qty, self.spec.max_qty
            ));
        }
        if (self.sold_qty, self.reserved_qty, self.paid_qty) != (sold, reserved, paid) {
            return Err(format!(
                "counters (sold {}, reserved {}, paid {}) disagree with orders ({sold}, {reserved}, {paid})",
                self.sold_qty, self.reserved_qty, self.paid_qty
            ));
        }
        if self.quota_status == QuotaStatus::Open && self.sold_qty == self.spec.max_qty {
            return Err("quota full but OPEN".into());
        }
        Ok(())
    }
}
