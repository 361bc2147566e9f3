//! The `SellWindow` workflow: one per listing, id [`sellwindow_domain::listing_workflow_id`],
//! the owner of the listing's saga: its time (close_at, payment deadlines), its phases
//! (confirm, close, cancel, production, shipping) and its payments. Reservations are not its
//! to decide: the API commits them in the database, where the quota row arbitrates, and tells
//! the workflow by progress signals. Every phase change the workflow makes is written in that
//! row under its lock first (a fence), so each reservation is either before it (in the
//! snapshot the workflow acts on) or after it (refused, or after confirm asked to pay).
//!
//! It holds the listing's figures and phases, never its orders (those are in the database),
//! so its memory, its hand-over and its pause stay the same size however many orders it has.
//! Handlers decide in the [`Listing`](crate::machine::Listing), queue the writes their
//! decision needs ([`queue`]), and wait for their answers; the run method's writer
//! ([`writes`]) writes them in order and applies each answer to the figures; the run method
//! tells the listing's life ([`lifecycle`]). A refusal is a typed answer
//! ([`crate::rejection::Answer`]); a validator turns an update away only while the listing
//! hands over to its next run.

pub mod contract;
pub mod lifecycle;
pub mod queue;
pub mod start;
pub mod writes;

use crate::machine::{Listing, SweepKind};
use crate::rejection::{Answer, HandlerError, handing_over};
use contract::{Confirmed, MilestoneKind, OrderChange, OrderChanged};
use queue::WriteQueue;
use sellwindow_domain::*;
use start::{ListingRun, Tuning};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination};
use writes::{Write, Written, milestone, now, sweep_all, written};

#[workflow]
pub struct SellWindow {
    listing: Listing,
    tuning: Tuning,
    writes: WriteQueue<Write, Written>,
    /// Handing over to a new run: updates are turned away.
    draining: bool,
    updates_this_run: u32,
    signals_this_run: u32,
    /// A confirm is writing its fence or asking its orders to pay (close and a second confirm
    /// wait for it).
    confirming: bool,
    published_phase: Option<Phase>,
    last_deadline_sweep: Option<UnixMillis>,
    /// When the listing last read its row for deadlines it may not have heard of.
    last_look: Option<UnixMillis>,
    settle_until: Option<UnixMillis>,
    runs: u32,
}

impl SellWindow {
    /// Nothing being written or waiting to be, and no handler running.
    fn quiet(&self, ctx: &WorkflowContext<Self>) -> bool {
        self.writes.idle() && ctx.all_handlers_finished()
    }

    /// The validators' one check: while handing over, every update is asked again later.
    fn admits(&self) -> Result<(), HandlerError> {
        if self.draining {
            Err(handing_over())
        } else {
            Ok(())
        }
    }
}

fn failed(e: WorkflowTermination) -> HandlerError {
    format!("{e:?}").into()
}

/// Marks a confirm in progress; unmarked however the handler ends.
struct Confirming(WorkflowContext<SellWindow>);

impl Confirming {
    fn start(ctx: &WorkflowContext<SellWindow>) -> Self {
        ctx.state_mut(|s| s.confirming = true);
        Self(ctx.clone())
    }
}

impl Drop for Confirming {
    fn drop(&mut self) {
        self.0.state_mut(|s| s.confirming = false);
    }
}

#[workflow_methods]
impl SellWindow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, run: ListingRun) -> Self {
        let mut writes = WriteQueue::default();
        // Whatever waits in the inbox (it may have come while the last run handed over).
        writes.push_unawaited(Write::Inbox);
        let (listing, settle_until, runs) = match run.carried {
            None => (Listing::new(run.spec), None, 0),
            Some(c) => (c.listing, c.settle_until, c.runs),
        };
        Self {
            listing,
            tuning: run.tuning,
            writes,
            draining: false,
            updates_this_run: 0,
            signals_this_run: 0,
            confirming: false,
            published_phase: None,
            last_deadline_sweep: None,
            last_look: None,
            settle_until,
            runs,
        }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<ListingFigures> {
        use futures::FutureExt;
        let ctx: &WorkflowContext<Self> = ctx;
        let life = lifecycle::story(ctx).fuse();
        let writer = writes::write_all(ctx).fuse();
        futures::pin_mut!(life, writer);
        temporalio_sdk::workflows::select! {
            done = life => done,
            stopped = writer => stopped.map(|never| match never {}),
        }
    }

    #[query]
    pub fn figures(&self, _ctx: &WorkflowContextView) -> ListingFigures {
        self.listing.figures()
    }

    /// Reservations committed in the row: its figures after them, and the earliest payment
    /// deadline they were given. Late, repeated or reordered signals change nothing (the
    /// latest figures by version win); a lost one is made good by the next, by any write's
    /// answer, or by the listing reading its row.
    #[signal]
    pub async fn progress(ctx: &mut WorkflowContext<Self>, p: Progress) {
        ctx.state_mut(|s| {
            s.signals_this_run += 1;
            s.listing.adopt(&p.figures);
            if let Some(due) = p.next_due {
                s.listing.expect_deadline(due);
            }
        });
        lifecycle::publish(ctx);
    }

    /// Verified provider outcomes wait in the listing's inbox: the API records each and pokes
    /// the listing (many outcomes, one poke), which applies what waits in batches. The writes
    /// check each against the payment the listing opened; nothing is taken on a signal's word.
    #[signal]
    pub async fn payments_waiting(ctx: &mut WorkflowContext<Self>, _input: ()) {
        ctx.state_mut(|s| {
            s.signals_this_run += 1;
            // A run handing over leaves them to the next one, which looks at the inbox first.
            if !s.draining && !s.writes.pending().any(|j| matches!(j, Write::Inbox)) {
                s.writes.push_unawaited(Write::Inbox);
            }
        });
    }

    #[update_validator(confirm)]
    fn validate_confirm(&self, _ctx: &WorkflowContextView, _: &()) -> Result<(), HandlerError> {
        self.admits()
    }

    /// Confirms the batch (the group formed): the fence is written in the row, whose own
    /// figures decide whether the threshold is reached; then every order reserved before it is
    /// asked to pay.
    #[update]
    pub async fn confirm(
        ctx: &mut WorkflowContext<Self>,
        _input: (),
    ) -> Result<Answer<ConfirmOutcome>, HandlerError> {
        let ctx: &WorkflowContext<Self> = ctx;
        ctx.state_mut(|s| s.updates_this_run += 1);
        // A second confirm waits for the first and returns the same batch.
        ctx.wait_condition(|s: &Self| !s.confirming)
            .await
            .map_err(|_| failed(WorkflowTermination::cancelled()))?;
        let (refusal, confirmed) = ctx.state(|s| {
            (
                s.listing.confirm_refusal(),
                s.listing.batch_status == BatchStatus::Confirmed,
            )
        });
        if let Some(r) = refusal {
            return Ok(Err(r));
        }
        let mut asked = 0;
        if !confirmed {
            let confirming = Confirming::start(ctx);
            let t = now(ctx);
            let (batch_id, due) =
                ctx.state(|s| (s.listing.spec.batch_id(), s.listing.terms().payment_due(t)));
            let job = Write::Confirm { batch_id, due };
            let Written::Confirmed(answer) = written(ctx, job).await.map_err(failed)? else {
                unreachable!("the confirm fence answers with its decision");
            };
            if let Confirmed::Refused(r, _) = answer {
                return Ok(Err(r));
            }
            ctx.state_mut(|s| s.listing.confirmed(t, due));
            lifecycle::publish(ctx);
            asked = sweep_all(ctx, SweepKind::Confirm, Some(due))
                .await
                .map_err(failed)?
                .0;
            drop(confirming);
        }
        Ok(Ok(ctx.state(|s| ConfirmOutcome {
            batch_id: s.listing.spec.batch_id(),
            confirmed_at: s.listing.confirmed_at.unwrap_or_default(),
            payment_requested_orders: asked,
        })))
    }

    #[update_validator(cancel_order)]
    fn validate_cancel_order(
        &self,
        _ctx: &WorkflowContextView,
        _r: &CustomerOrder,
    ) -> Result<(), HandlerError> {
        self.admits()
    }

    /// A customer cancels their own RESERVED or PAYMENT_REQUESTED order; its units go back.
    #[update]
    pub async fn cancel_order(
        ctx: &mut WorkflowContext<Self>,
        r: CustomerOrder,
    ) -> Result<Answer<OrderView>, HandlerError> {
        change(ctx, r, OrderChange::Cancel).await
    }

    #[update_validator(retry_payment)]
    fn validate_retry_payment(
        &self,
        _ctx: &WorkflowContextView,
        _r: &CustomerOrder,
    ) -> Result<(), HandlerError> {
        self.admits()
    }

    /// A new pay link after a failed attempt (the open one, if an attempt is still open).
    #[update]
    pub async fn retry_payment(
        ctx: &mut WorkflowContext<Self>,
        r: CustomerOrder,
    ) -> Result<Answer<OrderView>, HandlerError> {
        change(ctx, r, OrderChange::RetryPayment).await
    }

    #[update_validator(cancel_window)]
    fn validate_cancel_window(
        &self,
        _ctx: &WorkflowContextView,
        _input: &(),
    ) -> Result<(), HandlerError> {
        self.admits()
    }

    /// The admin cancels the listing before close: the fence is written (no reservation or
    /// payment from then on), every order is cancelled and every paid one refunded (the saga's
    /// compensation), a chunk of orders per write.
    #[update]
    pub async fn cancel_window(
        ctx: &mut WorkflowContext<Self>,
        _input: (),
    ) -> Result<Answer<ListingFigures>, HandlerError> {
        let ctx: &WorkflowContext<Self> = ctx;
        let decided = ctx.state_mut(|s| {
            s.updates_this_run += 1;
            s.listing.cancel_window()
        });
        if let Err(r) = decided {
            return Ok(Err(r));
        }
        lifecycle::publish(ctx);
        async {
            milestone(ctx, MilestoneKind::CancelStarted).await?;
            sweep_all(ctx, SweepKind::WindowCancelled, None).await?;
            let done = MilestoneKind::Cancelled {
                final_paid_qty: None,
            };
            milestone(ctx, done).await
        }
        .await
        .map_err(failed)?;
        lifecycle::publish(ctx);
        Ok(Ok(ctx.state(|s| s.listing.figures())))
    }

    #[update_validator(complete_step)]
    fn validate_complete_step(
        &self,
        _ctx: &WorkflowContextView,
        _step: &StepId,
    ) -> Result<(), HandlerError> {
        self.admits()
    }

    /// An operator finished a work step; the last one completes production and ships every
    /// paid order (a chunk of orders per write).
    #[update]
    pub async fn complete_step(
        ctx: &mut WorkflowContext<Self>,
        step: StepId,
    ) -> Result<Answer<StepOutcome>, HandlerError> {
        let ctx: &WorkflowContext<Self> = ctx;
        let decided = ctx.state_mut(|s| {
            s.updates_this_run += 1;
            match s.listing.step_refusal(&step) {
                Some(r) => Err(r),
                None => Ok((
                    s.listing.complete_step(&step),
                    s.listing.work_order_id.clone().expect("in production"),
                )),
            }
        });
        let (changed, work_order_id) = match decided {
            Ok(d) => d,
            Err(r) => return Ok(Err(r)),
        };
        if let Some(last) = changed {
            ship_if_last(ctx, &work_order_id, &step, last)
                .await
                .map_err(failed)?;
            lifecycle::publish(ctx);
        }
        Ok(Ok(StepOutcome {
            work_order_id,
            step_id: step,
            production_completed: ctx.state(|s| s.listing.steps.iter().all(|(_, done)| *done)),
        }))
    }
}

/// Writes a finished step; after the last one, ships every paid order.
async fn ship_if_last(
    ctx: &WorkflowContext<SellWindow>,
    work_order_id: &WorkOrderId,
    step: &StepId,
    last: bool,
) -> WorkflowResult<()> {
    let done = MilestoneKind::StepDone {
        work_order_id: work_order_id.clone(),
        step_id: step.clone(),
        last,
    };
    milestone(ctx, done).await?;
    if last {
        sweep_all(ctx, SweepKind::Ship, None).await?;
        let shipped = MilestoneKind::Shipped {
            work_order_id: work_order_id.clone(),
        };
        milestone(ctx, shipped).await?;
        ctx.state_mut(|s| s.listing.shipped());
    }
    Ok(())
}

/// A customer's change to their order, written in order with the listing's other writes; the
/// write checks that the order is theirs and may change.
async fn change(
    ctx: &mut WorkflowContext<SellWindow>,
    r: CustomerOrder,
    change: OrderChange,
) -> Result<Answer<OrderView>, HandlerError> {
    let ctx: &WorkflowContext<SellWindow> = ctx;
    let closed = ctx.state_mut(|s| {
        s.updates_this_run += 1;
        s.listing.cancel_refusal()
    });
    if let Some(r) = closed {
        return Ok(Err(r));
    }
    match written(ctx, Write::Change(r, change))
        .await
        .map_err(failed)?
    {
        Written::Changed(OrderChanged::Done { view, .. }) => Ok(Ok(view)),
        Written::Changed(OrderChanged::Refused(refusal)) => Ok(Err(refusal)),
        other => unreachable!("a change answers with the change: {other:?}"),
    }
}
