//! The first shape's rules from payment request on: attempts, outcomes, deadlines, close,
//! cancels and production steps.

use super::*;

impl Listing {
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

    pub(super) fn release(&mut self, id: &OrderId, to: OrderStatus) -> Option<(Released, bool)> {
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
