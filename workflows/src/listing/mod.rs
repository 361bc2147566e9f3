//! The `SellWindow` workflow: one per listing, id [`sellwindow_domain::listing_workflow_id`], the single writer
//! of the listing's quota. It holds the listing's figures and phases, never its orders (those
//! are in the database), so its memory, its hand-over and its pause stay the same size however
//! many orders it takes.
//!
//! Every handler decides in the [`Listing`](crate::machine::Listing) before its first await,
//! queues the writes its decision needs in a lane ([`lanes`]), and waits for their answers;
//! the run method's writers ([`writers`]) write each lane in order and apply each write's
//! answer to the figures; the run method tells the story ([`story`]). Handlers leave no
//! bookkeeping behind: the run waits for the SDK's own count of running handlers.

pub mod contract;
pub mod lanes;
pub mod replies;
pub mod start;
pub mod story;
pub mod writers;

use crate::machine::{Decided, Listing, ListingRefusal, SweepKind};
use crate::payload::Json;
use crate::rejection::{HandlerError, refuse, refuse_order};
use contract::{MilestoneKind, OrderChange, OrderChanged};
use lanes::Lane;
use sellwindow_domain::*;
use start::{ListingRun, Tuning};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{WorkflowContext, WorkflowContextView, WorkflowResult, WorkflowTermination};
use writers::{
    Ordered, OrderedAnswer, Recordings, Reservation, milestone, now, ordered, reservations_written,
    sweep_all,
};

#[workflow]
pub struct ListingWorkflow {
    listing: Listing,
    tuning: Tuning,
    reservations: Lane<Reservation, Recordings>,
    ordered: Lane<Ordered, OrderedAnswer>,
    /// Handing over to a new run: updates are turned away, payment outcomes held.
    draining: bool,
    /// Payment outcomes held for the next run.
    deferred: Vec<PaymentResult>,
    updates_this_run: u32,
    signals_this_run: u32,
    /// A confirm is asking its orders to pay (close waits for it).
    confirming: bool,
    published_phase: Option<Phase>,
    last_deadline_sweep: Option<UnixMillis>,
    settle_until: Option<UnixMillis>,
    runs: u32,
}

impl ListingWorkflow {
    /// Nothing being written or waiting to be, and no handler running.
    fn quiet(&self, ctx: &WorkflowContext<Self>) -> bool {
        self.reservations.idle() && self.ordered.idle() && ctx.all_handlers_finished()
    }

    /// The validators' first check: while handing over, every update is asked again later.
    fn admits(&self) -> Result<(), HandlerError> {
        if self.draining {
            Err(refuse(&ListingRefusal::HandingOver))
        } else {
            Ok(())
        }
    }

    fn takes_changes(&self) -> Result<(), HandlerError> {
        self.admits()?;
        match self.listing.cancel_refusal() {
            Some(r) => Err(refuse(&r)),
            None => Ok(()),
        }
    }
}

fn failed(e: WorkflowTermination) -> HandlerError {
    format!("{e:?}").into()
}

/// Marks a confirm as asking its orders to pay; unmarked (and the reservations it held back
/// let go) however the handler ends.
struct Confirming(WorkflowContext<ListingWorkflow>);

impl Confirming {
    fn start(ctx: &WorkflowContext<ListingWorkflow>) -> Self {
        ctx.state_mut(|s| {
            s.confirming = true;
            s.reservations.hold();
        });
        Self(ctx.clone())
    }
}

impl Drop for Confirming {
    fn drop(&mut self) {
        self.0.state_mut(|s| {
            s.confirming = false;
            s.reservations.release();
        });
    }
}

#[workflow_methods]
impl ListingWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, run: ListingRun) -> Self {
        let mut ordered = Lane::default();
        // Whatever waits in the inbox (it may have come while the last run handed over).
        ordered.push_unawaited(Ordered::Inbox);
        let (listing, settle_until, runs) = match run.carried {
            None => (Listing::new(run.spec), None, 0),
            Some(c) => {
                // What arrived during the hand-over is applied before anything newer.
                for r in c.deferred {
                    ordered.push_unawaited(Ordered::Payments(vec![r]));
                }
                (c.listing, c.settle_until, c.runs)
            }
        };
        Self {
            listing,
            tuning: run.tuning,
            reservations: Lane::default(),
            ordered,
            draining: false,
            deferred: Vec::new(),
            updates_this_run: 0,
            signals_this_run: 0,
            confirming: false,
            published_phase: None,
            last_deadline_sweep: None,
            settle_until,
            runs,
        }
    }

    #[run(name = "SellWindow")]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<ListingFigures> {
        use futures::FutureExt;
        let ctx: &WorkflowContext<Self> = ctx;
        let story = story::story(ctx).fuse();
        let reservations = writers::write_reservations(ctx).fuse();
        let ordered = writers::write_ordered(ctx).fuse();
        futures::pin_mut!(story, reservations, ordered);
        temporalio_sdk::workflows::select! {
            done = story => done,
            stopped = reservations => stopped.map(|never| match never {}),
            stopped = ordered => stopped.map(|never| match never {}),
        }
    }

    #[query]
    pub fn figures(&self, _ctx: &WorkflowContextView) -> ListingFigures {
        self.listing.figures()
    }

    #[update_validator(reserve_v2)]
    fn validate_reserve_v2(
        &self,
        _ctx: &WorkflowContextView,
        Json(batch): &Json<Reservations>,
    ) -> Result<(), HandlerError> {
        self.admits()?;
        if batch.items.is_empty() {
            return Err(refuse(&ListingRefusal::EmptyBatch));
        }
        if !self.listing.takes_reservations() {
            return Err(refuse(&ListingRefusal::Closed {
                phase: self.listing.phase,
            }));
        }
        Ok(())
    }

    /// Takes units for a batch of reservations (coalesced by the API) before anything is
    /// awaited, has them written, and answers each in arrival order.
    #[update]
    pub async fn reserve_v2(
        ctx: &mut WorkflowContext<Self>,
        batch: Json<Reservations>,
    ) -> Result<Json<ReserveReplies>, HandlerError> {
        let Json(batch) = batch;
        let ctx: &WorkflowContext<Self> = ctx;
        let t = now(ctx);
        let (items, decided, ticket) = ctx.state_mut(|s| {
            s.updates_this_run += 1;
            let (sw, p) = (&s.listing.spec.sell_window_id, &s.listing.spec.product_id);
            let items: Vec<ReserveItem> = batch.items.iter().map(|r| r.item(sw, p)).collect();
            let decided = s.listing.reserve(&items, t);
            let orders: Vec<NewOrder> = decided
                .iter()
                .filter_map(|d| match d {
                    Decided::Taken(o) => Some(o.clone()),
                    _ => None,
                })
                .collect();
            let answers = first_answers(&items, &orders);
            let ticket =
                (!orders.is_empty()).then(|| s.reservations.push(Reservation { orders, answers }));
            (items, decided, ticket)
        });
        story::publish(ctx);
        let recorded = match ticket {
            None => Ok(Vec::new()),
            Some(ticket) => {
                ctx.wait_condition(move |s: &Self| s.reservations.is_done(ticket))
                    .await
                    .map_err(|_| failed(WorkflowTermination::cancelled()))?;
                ctx.state_mut(|s| s.reservations.take_answer(ticket))
                    .expect("a finished write has its answer")
            }
        };
        let (phase, unit_price) =
            ctx.state(|s| (s.listing.phase, s.listing.spec.unit_price.clone()));
        let outcomes = replies::answers(&items, &decided, recorded, phase);
        Ok(Json(ReserveReplies {
            unit_price,
            replies: outcomes.into_iter().map(ReserveReply::from).collect(),
        }))
    }

    #[update_validator(confirm)]
    fn validate_confirm(
        &self,
        _ctx: &WorkflowContextView,
        _input: &(),
    ) -> Result<(), HandlerError> {
        self.admits()?;
        match self.listing.confirm_refusal() {
            Some(r) => Err(refuse(&r)),
            None => Ok(()),
        }
    }

    /// Confirms the batch (the group formed): every reserving customer is asked to pay.
    #[update]
    pub async fn confirm(
        ctx: &mut WorkflowContext<Self>,
        _input: (),
    ) -> Result<ConfirmOutcome, HandlerError> {
        let ctx: &WorkflowContext<Self> = ctx;
        let t = now(ctx);
        let due = ctx
            .state_mut(|s| {
                s.updates_this_run += 1;
                s.listing.confirm(t)
            })
            .map_err(|r| refuse(&r))?;
        let mut asked = 0;
        if let Some(due) = due {
            // Reservations decided before the confirm are written RESERVED first, so the sweep
            // finds them; those decided after wait for `batch.confirmed`.
            let confirming = Confirming::start(ctx);
            story::publish(ctx);
            reservations_written(ctx).await.map_err(failed)?;
            let batch_id = ctx.state(|s| s.listing.spec.batch_id());
            milestone(ctx, MilestoneKind::Confirmed { batch_id, due })
                .await
                .map_err(failed)?;
            ctx.state_mut(|s| s.reservations.release());
            asked = sweep_all(ctx, SweepKind::Confirm, Some(due))
                .await
                .map_err(failed)?
                .0;
            drop(confirming);
        }
        Ok(ctx.state(|s| ConfirmOutcome {
            batch_id: s.listing.spec.batch_id(),
            confirmed_at: s.listing.confirmed_at.unwrap_or(t),
            payment_requested_orders: asked,
        }))
    }

    /// Verified provider outcomes wait in the listing's inbox: the API records each and pokes
    /// the listing (many outcomes, one poke), which applies what waits in batches. The writes
    /// check each against the payment the listing opened; nothing is taken on a signal's word.
    #[signal]
    pub async fn payments_waiting(ctx: &mut WorkflowContext<Self>, _input: ()) {
        ctx.state_mut(|s| {
            s.signals_this_run += 1;
            // A run handing over leaves them to the next one, which looks at the inbox first.
            if !s.draining && !s.ordered.pending().any(|j| matches!(j, Ordered::Inbox)) {
                s.ordered.push_unawaited(Ordered::Inbox);
            }
        });
    }

    /// A verified provider callback carried by the signal itself (APIs of the first shape).
    #[signal]
    pub async fn payment_result(ctx: &mut WorkflowContext<Self>, r: PaymentResult) {
        ctx.state_mut(|s| {
            s.signals_this_run += 1;
            if s.draining {
                s.deferred.push(r);
            } else {
                s.ordered.push_unawaited(Ordered::Payments(vec![r]));
            }
        });
    }

    #[update_validator(cancel_order)]
    fn validate_cancel_order(
        &self,
        _ctx: &WorkflowContextView,
        _r: &CustomerOrder,
    ) -> Result<(), HandlerError> {
        self.takes_changes()
    }

    /// A customer cancels their own RESERVED or PAYMENT_REQUESTED order; its units go back.
    #[update]
    pub async fn cancel_order(
        ctx: &mut WorkflowContext<Self>,
        r: CustomerOrder,
    ) -> Result<OrderView, HandlerError> {
        change(ctx, r, OrderChange::Cancel).await
    }

    #[update_validator(retry_payment)]
    fn validate_retry_payment(
        &self,
        _ctx: &WorkflowContextView,
        _r: &CustomerOrder,
    ) -> Result<(), HandlerError> {
        self.takes_changes()
    }

    /// A new pay link after a failed attempt (the open one, if an attempt is still open).
    #[update]
    pub async fn retry_payment(
        ctx: &mut WorkflowContext<Self>,
        r: CustomerOrder,
    ) -> Result<OrderView, HandlerError> {
        change(ctx, r, OrderChange::RetryPayment).await
    }

    #[update_validator(cancel_window)]
    fn validate_cancel_window(
        &self,
        _ctx: &WorkflowContextView,
        _input: &(),
    ) -> Result<(), HandlerError> {
        self.takes_changes()
    }

    /// The admin cancels the listing before close: every order is cancelled and every paid
    /// one refunded (the saga's compensation), a chunk of orders per write.
    #[update]
    pub async fn cancel_window(
        ctx: &mut WorkflowContext<Self>,
        _input: (),
    ) -> Result<ListingFigures, HandlerError> {
        let ctx: &WorkflowContext<Self> = ctx;
        ctx.state_mut(|s| {
            s.updates_this_run += 1;
            s.listing.cancel_window()
        })
        .map_err(|r| refuse(&r))?;
        story::publish(ctx);
        async {
            reservations_written(ctx).await?;
            milestone(ctx, MilestoneKind::CancelStarted).await?;
            sweep_all(ctx, SweepKind::WindowCancelled, None).await?;
            milestone(
                ctx,
                MilestoneKind::Cancelled {
                    final_paid_qty: None,
                },
            )
            .await
        }
        .await
        .map_err(failed)?;
        story::publish(ctx);
        Ok(ctx.state(|s| s.listing.figures()))
    }

    #[update_validator(complete_step)]
    fn validate_complete_step(
        &self,
        _ctx: &WorkflowContextView,
        step: &StepId,
    ) -> Result<(), HandlerError> {
        self.admits()?;
        match self.listing.step_refusal(step) {
            Some(r) => Err(refuse(&r)),
            None => Ok(()),
        }
    }

    /// An operator finished a work step; the last one completes production and ships every
    /// paid order (a chunk of orders per write).
    #[update]
    pub async fn complete_step(
        ctx: &mut WorkflowContext<Self>,
        step: StepId,
    ) -> Result<StepOutcome, HandlerError> {
        let ctx: &WorkflowContext<Self> = ctx;
        let (changed, work_order_id) = ctx.state_mut(|s| {
            s.updates_this_run += 1;
            (
                s.listing.complete_step(&step),
                s.listing.work_order_id.clone(),
            )
        });
        let work_order_id = work_order_id.expect("validated: in production");
        if let Some(last) = changed {
            let done = MilestoneKind::StepDone {
                work_order_id: work_order_id.clone(),
                step_id: step.clone(),
                last,
            };
            async {
                milestone(ctx, done).await?;
                if last {
                    sweep_all(ctx, SweepKind::Ship, None).await?;
                    let shipped = MilestoneKind::Shipped {
                        work_order_id: work_order_id.clone(),
                    };
                    milestone(ctx, shipped).await?;
                    ctx.state_mut(|s| s.listing.shipped());
                }
                WorkflowResult::Ok(())
            }
            .await
            .map_err(failed)?;
            story::publish(ctx);
        }
        Ok(StepOutcome {
            work_order_id,
            step_id: step,
            production_completed: ctx.state(|s| s.listing.steps.iter().all(|(_, done)| *done)),
        })
    }
}

/// The idempotency keys of the batch's new orders (the API sends one with each reservation).
fn first_answers(items: &[ReserveItem], orders: &[NewOrder]) -> Vec<OrderAnswer> {
    let taken: std::collections::BTreeSet<&OrderId> = orders.iter().map(|o| &o.order_id).collect();
    let mut seen = std::collections::BTreeSet::new();
    items
        .iter()
        .filter(|i| taken.contains(&i.order_id) && seen.insert(&i.order_id))
        .filter_map(|i| {
            Some(OrderAnswer {
                customer_id: i.customer_id.clone(),
                key: i.answer_key.clone()?,
                order_id: i.order_id.clone(),
            })
        })
        .collect()
}

/// A customer's change to their order, written in the ordered lane; the write checks that the
/// order is theirs and may change.
async fn change(
    ctx: &mut WorkflowContext<ListingWorkflow>,
    r: CustomerOrder,
    change: OrderChange,
) -> Result<OrderView, HandlerError> {
    let ctx: &WorkflowContext<ListingWorkflow> = ctx;
    ctx.state_mut(|s| s.updates_this_run += 1);
    match ordered(ctx, Ordered::Change(r, change))
        .await
        .map_err(failed)?
    {
        OrderedAnswer::Changed(OrderChanged::Done { view, .. }) => Ok(view),
        OrderedAnswer::Changed(OrderChanged::Refused(refusal)) => Err(refuse_order(&refusal)),
        other => unreachable!("a change answers with the change: {other:?}"),
    }
}
