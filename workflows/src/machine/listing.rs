//! The listing as its workflow sees it: phases, batch and production, and its figures. It
//! holds no orders (those live in the database) and takes no reservations (the quota row
//! decides those, [`super::quota`]), so it stays the same size however many orders the
//! listing takes. It decides the saga's steps (confirm, close, cancel, what the paid quantity
//! decides) and learns the figures from the row: every write of the workflow answers with the
//! [`Figures`] after it, and the API's progress signals bring those of reservations; the
//! latest by version is adopted.
//!
//! Invariants (checked by [`Listing::check_invariants`] after every step of the property
//! tests): `sold_qty <= max_qty`; `sold_qty = reserved_qty + paid_qty`; and, once the
//! listing is quiet (every signal delivered), the figures equal the row's.

use super::quota::{QuotaRow, Terms, quota_status};
use sellwindow_domain::*;
use serde::{Deserialize, Serialize};

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
            version: 0,
            next_deadline: None,
        }
    }

    pub fn takes_reservations(&self) -> bool {
        self.phase.accepts_reservations() && !self.closing
    }

    /// The quota row as the workflow last learned it (the row itself is the arbiter).
    fn row(&self) -> QuotaRow {
        QuotaRow {
            phase: self.phase,
            closed: self.closing,
            sold: self.sold_qty,
            reserved: self.reserved_qty,
            threshold_reached: self.threshold_status == ThresholdStatus::Reached,
        }
    }

    pub fn quota_status(&self) -> QuotaStatus {
        quota_status(&self.row(), self.spec.max_qty)
    }

    pub fn terms(&self) -> Terms {
        Terms::of(&self.spec)
    }

    /// Takes figures read from the row if they are later than the ones held. Writes' answers
    /// and the API's progress signals arrive in any order, late, twice or not at all; the
    /// version (moved on by every writer under the row's lock) says which is the later state.
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

    /// Why confirm cannot happen now, as far as the workflow knows without the row: a wrong
    /// phase. Whether the threshold is reached is asked of the row under its lock
    /// ([`confirm_check`](super::quota::confirm_check)), never of this copy.
    pub fn confirm_refusal(&self) -> Option<Refusal> {
        if self.batch_status == BatchStatus::Confirmed {
            return None; // a second confirm returns the same batch
        }
        if self.phase != Phase::Open || self.closing {
            return Some(Refusal::Closed { phase: self.phase });
        }
        None
    }

    /// The row took the confirm (its fence is written): the batch is confirmed, and the
    /// orders reserved before it are asked to pay by `due`.
    pub fn confirmed(&mut self, now: UnixMillis, due: UnixMillis) {
        self.batch_status = BatchStatus::Confirmed;
        self.threshold_status = ThresholdStatus::Reached;
        self.confirmed_at.get_or_insert(now);
        self.phase = Phase::Confirmed;
        self.expect_deadline(due);
    }

    /// Why the admin cannot cancel now, if they cannot.
    pub fn cancel_refusal(&self) -> Option<Refusal> {
        (!self.takes_reservations()).then_some(Refusal::Closed { phase: self.phase })
    }

    /// The admin cancels the window before close: every order is cancelled (a sweep).
    pub fn cancel_window(&mut self) -> Result<(), Refusal> {
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
    pub fn step_refusal(&self, step: &StepId) -> Option<Refusal> {
        if self.phase != Phase::InProduction {
            return Some(Refusal::NotInProduction { phase: self.phase });
        }
        if !self.steps.iter().any(|(id, _)| id == step) {
            return Some(Refusal::UnknownStep(step.clone()));
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
