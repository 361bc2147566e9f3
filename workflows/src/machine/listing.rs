//! The listing's rules: its quota, phases, batch and production, and its figures. It holds no
//! orders (those live in the database) and so stays the same size however many orders the
//! listing takes. It decides what needs no order's facts at once (whether units are left,
//! whether the window takes reservations, confirms or cancels) and learns the rest from each
//! write's answer: the database's [`Figures`] after it, the latest of which it adopts.
//!
//! Invariants (checked by [`Listing::check_invariants`] after every step of the property
//! tests): `sold_qty <= max_qty`; `sold_qty = reserved_qty + paid_qty`; units are only taken
//! while `sold_qty + held_qty <= max_qty`; and, once every write has answered, the figures
//! equal the database's.

use sellwindow_domain::*;
use serde::{Deserialize, Serialize};

/// Why the listing refuses a request (mapped to a gRPC code in one place, [`crate::rejection`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListingRefusal {
    /// The window no longer takes this request in its phase (or is closing).
    Closed {
        phase: Phase,
    },
    ThresholdNotReached {
        reserved: u32,
        min: u32,
    },
    NotInProduction {
        phase: Phase,
    },
    UnknownStep(StepId),
    EmptyBatch,
    /// The listing is moving to its next run: ask again shortly.
    HandingOver,
}

impl std::fmt::Display for ListingRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Closed { phase } => write!(f, "the sell window is closed ({phase})"),
            Self::ThresholdNotReached { reserved, min } => {
                write!(f, "threshold not reached: {reserved} of {min} reserved")
            }
            Self::NotInProduction { phase } => {
                write!(f, "the listing is {phase}, not in production")
            }
            Self::UnknownStep(step) => write!(f, "unknown step {step}"),
            Self::EmptyBatch => f.write_str("empty reservation batch"),
            Self::HandingOver => f.write_str(crate::rejection::HANDING_OVER),
        }
    }
}

/// What happens to the listing when close_at comes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Closing {
    /// Never confirmed: the group did not form; every order is cancelled.
    Unformed,
    /// Confirmed: unpaid orders expire, then the paid quantity decides.
    Confirmed,
}

/// What the paid quantity decides at close, once the unpaid orders have expired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum FinalOutcome {
    Produce {
        work_order_id: WorkOrderId,
        /// The work order's steps with their names, in order.
        steps: Vec<(StepId, String)>,
    },
    NothingToProduce,
    /// `CANCEL_AND_REFUND` and the paid quantity is under the threshold.
    CancelAndRefund,
}

/// One reservation of a batch, as decided: waiting for its write, or refused at once.
#[derive(Debug, Clone, PartialEq)]
pub enum Decided {
    /// Units taken; the order is written as this.
    Taken(NewOrder),
    /// The same order as an earlier item of this batch (a retried request): its answer.
    SameAs(usize),
    Refused(Refusal),
}

/// The work step names a product without a template of its own goes through.
pub const DEFAULT_WORK_STEPS: [&str; 4] = ["prepare materials", "produce", "quality check", "pack"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listing {
    pub spec: ListingSpec,
    pub phase: Phase,
    /// close_at came and the listing is closing (no cancel, confirm or reservation now).
    pub closing: bool,
    pub threshold_status: ThresholdStatus,
    pub batch_status: BatchStatus,
    pub confirmed_at: Option<UnixMillis>,
    pub final_paid_qty: Option<u32>,
    pub work_order_id: Option<WorkOrderId>,
    /// Step ids of the work order, with whether each is done.
    pub steps: Vec<(StepId, bool)>,
    /// The figures as written (the latest a write answered with).
    pub sold_qty: u32,
    pub reserved_qty: u32,
    pub paid_qty: u32,
    /// The version of those figures.
    pub version: u64,
    /// Units taken by reservations whose write has not answered yet.
    pub held_qty: u32,
    /// The earliest payment deadline that may still be pending (the database knows them all).
    pub next_deadline: Option<UnixMillis>,
}

impl Listing {
    pub fn new(spec: ListingSpec) -> Self {
        Self {
            spec,
            phase: Phase::Open,
            closing: false,
            threshold_status: ThresholdStatus::Open,
            batch_status: BatchStatus::Pending,
            confirmed_at: None,
            final_paid_qty: None,
            work_order_id: None,
            steps: Vec::new(),
            sold_qty: 0,
            reserved_qty: 0,
            paid_qty: 0,
            held_qty: 0,
            version: 0,
            next_deadline: None,
        }
    }

    pub fn takes_reservations(&self) -> bool {
        self.phase.accepts_reservations() && !self.closing
    }

    /// Units left to take. A write's figures may already count units still held for it (a
    /// later write of the other lane answered first): then fewer are offered, never more.
    fn available(&self) -> u32 {
        self.spec
            .max_qty
            .saturating_sub(self.sold_qty + self.held_qty)
    }

    pub fn quota_status(&self) -> QuotaStatus {
        if self.takes_reservations() && self.available() > 0 {
            QuotaStatus::Open
        } else {
            QuotaStatus::Closed
        }
    }

    fn payment_due(&self, now: UnixMillis) -> UnixMillis {
        now.plus_ms(self.spec.payment_window_ms)
            .min(self.spec.close_at)
    }

    /// Why reservations are refused now, if they are.
    pub fn closed_reason(&self, now: UnixMillis) -> Option<Refusal> {
        (!self.takes_reservations() || now >= self.spec.close_at)
            .then_some(Refusal::WindowClosed { phase: self.phase })
    }

    /// Decides a batch of reservations in arrival order, taking the units at once (before any
    /// await: two batches can never both take the last units). The write decides the rest
    /// (a retried request's order already written, the per-customer limit).
    pub fn reserve(&mut self, items: &[ReserveItem], now: UnixMillis) -> Vec<Decided> {
        let confirmed = self.batch_status == BatchStatus::Confirmed;
        let due = confirmed.then(|| self.payment_due(now));
        let mut decided: Vec<Decided> = Vec::with_capacity(items.len());
        for (n, item) in items.iter().enumerate() {
            if let Some(first) = items[..n].iter().position(|i| i.order_id == item.order_id) {
                decided.push(Decided::SameAs(first));
                continue;
            }
            if let Some(refusal) = self.closed_reason(now) {
                decided.push(Decided::Refused(refusal));
                continue;
            }
            let available = self.available();
            if item.qty.get() > available {
                decided.push(Decided::Refused(Refusal::NotEnoughQuota { available }));
                continue;
            }
            self.held_qty += item.qty.get();
            decided.push(Decided::Taken(NewOrder {
                order_id: item.order_id.clone(),
                customer_id: item.customer_id.clone(),
                qty: item.qty,
                amount: self.spec.unit_price.times(item.qty.get()),
                status: if confirmed {
                    OrderStatus::PaymentRequested
                } else {
                    OrderStatus::Reserved
                },
                payment_due_at: due,
            }));
        }
        decided
    }

    /// The write of `orders` answered: their held units become what the database holds.
    pub fn recorded(&mut self, orders: &[NewOrder], figures: &Figures) {
        self.release_held(orders);
        self.adopt(figures);
        if let Some(due) = orders.iter().filter_map(|o| o.payment_due_at).min() {
            self.expect_deadline(due);
        }
    }

    /// The write of `orders` failed for good: their held units go back.
    pub fn release_held(&mut self, orders: &[NewOrder]) {
        let qty: u32 = orders.iter().map(|o| o.qty.get()).sum();
        self.held_qty = self
            .held_qty
            .checked_sub(qty)
            .expect("only held units are released");
    }

    /// Takes a write's figures if they are later than the ones held. Answers of the two lanes
    /// may arrive in either order; the version says which state is the later one.
    pub fn adopt(&mut self, f: &Figures) {
        if f.version <= self.version {
            return;
        }
        self.version = f.version;
        self.sold_qty = f.sold;
        self.reserved_qty = f.reserved;
        self.paid_qty = f.paid;
        if f.threshold_reached {
            self.threshold_status = ThresholdStatus::Reached;
        }
    }

    pub fn expect_deadline(&mut self, due: UnixMillis) {
        self.next_deadline = Some(self.next_deadline.map_or(due, |d| d.min(due)));
    }

    /// Why confirm cannot happen now, if it cannot.
    pub fn confirm_refusal(&self) -> Option<ListingRefusal> {
        if self.batch_status == BatchStatus::Confirmed {
            return None; // a second confirm returns the same batch
        }
        if self.phase != Phase::Open || self.closing {
            return Some(ListingRefusal::Closed { phase: self.phase });
        }
        if self.threshold_status != ThresholdStatus::Reached {
            return Some(ListingRefusal::ThresholdNotReached {
                reserved: self.reserved_qty,
                min: self.spec.min_qty,
            });
        }
        None
    }

    /// Confirms the batch. Returns the payment deadline of the orders it asks to pay, or
    /// `None` for a repeated confirm.
    pub fn confirm(&mut self, now: UnixMillis) -> Result<Option<UnixMillis>, ListingRefusal> {
        if let Some(why) = self.confirm_refusal() {
            return Err(why);
        }
        if self.batch_status == BatchStatus::Confirmed {
            return Ok(None);
        }
        self.batch_status = BatchStatus::Confirmed;
        self.confirmed_at = Some(now);
        self.phase = Phase::Confirmed;
        let due = self.payment_due(now);
        self.expect_deadline(due);
        Ok(Some(due))
    }

    /// Why the admin cannot cancel now, if they cannot.
    pub fn cancel_refusal(&self) -> Option<ListingRefusal> {
        (!self.takes_reservations()).then_some(ListingRefusal::Closed { phase: self.phase })
    }

    /// The admin cancels the window before close: every order is cancelled (a sweep).
    pub fn cancel_window(&mut self) -> Result<(), ListingRefusal> {
        if let Some(why) = self.cancel_refusal() {
            return Err(why);
        }
        self.phase = Phase::Cancelled;
        Ok(())
    }

    /// close_at has come.
    pub fn close(&mut self) -> Closing {
        self.closing = true;
        if self.batch_status == BatchStatus::Confirmed {
            Closing::Confirmed
        } else {
            self.phase = Phase::Failed;
            Closing::Unformed
        }
    }

    /// Once every unpaid order has expired: the paid quantity is frozen and decides.
    pub fn decide_final(&mut self) -> FinalOutcome {
        let paid = self.paid_qty;
        self.final_paid_qty = Some(paid);
        if self.spec.min_paid_policy == MinPaidPolicy::CancelAndRefund && paid < self.spec.min_qty {
            self.phase = Phase::Cancelled;
            return FinalOutcome::CancelAndRefund;
        }
        if paid == 0 {
            self.phase = Phase::NothingToProduce;
            return FinalOutcome::NothingToProduce;
        }
        let work_order_id = WorkOrderId::for_batch(&self.spec.batch_id());
        let names: Vec<String> = if self.spec.work_steps.is_empty() {
            DEFAULT_WORK_STEPS.iter().map(|s| s.to_string()).collect()
        } else {
            self.spec.work_steps.clone()
        };
        let steps: Vec<(StepId, String)> = names
            .into_iter()
            .enumerate()
            .map(|(n, name)| (StepId::for_step(&work_order_id, n), name))
            .collect();
        self.steps = steps.iter().map(|(id, _)| (id.clone(), false)).collect();
        self.work_order_id = Some(work_order_id.clone());
        self.phase = Phase::InProduction;
        FinalOutcome::Produce {
            work_order_id,
            steps,
        }
    }

    /// Why a step cannot be completed, if it cannot.
    pub fn step_refusal(&self, step: &StepId) -> Option<ListingRefusal> {
        if self.phase != Phase::InProduction {
            return Some(ListingRefusal::NotInProduction { phase: self.phase });
        }
        if !self.steps.iter().any(|(id, _)| id == step) {
            return Some(ListingRefusal::UnknownStep(step.clone()));
        }
        None
    }

    /// Marks a step done. `Some(last)` when it changed, `None` when it was done already.
    pub fn complete_step(&mut self, step: &StepId) -> Option<bool> {
        let entry = self.steps.iter_mut().find(|(id, _)| id == step)?;
        if entry.1 {
            return None;
        }
        entry.1 = true;
        Some(self.steps.iter().all(|(_, done)| *done))
    }

    /// The last step's shipments are all made.
    pub fn shipped(&mut self) {
        self.phase = Phase::Shipped;
    }

    pub fn figures(&self) -> ListingFigures {
        ListingFigures {
            sell_window_id: self.spec.sell_window_id.clone(),
            product_id: self.spec.product_id.clone(),
            phase: self.phase,
            quota_status: self.quota_status(),
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

    pub fn check_invariants(&self) -> Result<(), String> {
        if self.sold_qty > self.spec.max_qty {
            return Err(format!(
                "oversold: {} > {}",
                self.sold_qty, self.spec.max_qty
            ));
        }
        if self.sold_qty != self.reserved_qty + self.paid_qty {
            return Err(format!(
                "sold {} is not reserved {} + paid {}",
                self.sold_qty, self.reserved_qty, self.paid_qty
            ));
        }
        Ok(())
    }
}
