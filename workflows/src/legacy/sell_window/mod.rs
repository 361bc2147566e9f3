//! The `SellWindow` workflow: one per listing, id [`listing_workflow_id`]. It is the single
//! writer of the listing's quota. Every handler decides in [`Listing`] first (before its first
//! `.await`, so interleaved handlers can never both take the last units), then persists the
//! decision with an activity, then answers. The run method tells the seed's story: take
//! reservations and payments until close_at (expiring unpaid orders at their deadlines),
//! finalize, then wait for production to complete.

use super::contract::SellWindowActivities as Acts;
use super::handover::{ListingStart, StoredOrders};
use super::inputs::*;
use super::machine::{CancelRefusal, FinalOutcome, FinalizePlan, Listing, PaymentEffect};
use super::writes::{Batch, Ticket, WriteQueue};
use crate::rejection::{RejectCode, reject};
use sellwindow_domain::*;
use std::time::{Duration, UNIX_EPOCH};
use temporalio_common::search_attributes::SearchAttributeKey;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ApplicationFailure, LocalActivityOptions, WorkflowContext,
    WorkflowContextView, WorkflowResult, WorkflowTermination,
};

pub const SA_SELL_WINDOW: SearchAttributeKey<String> = SearchAttributeKey::keyword("SellWindowId");
pub const SA_PRODUCT: SearchAttributeKey<String> = SearchAttributeKey::keyword("ProductId");
pub const SA_PHASE: SearchAttributeKey<String> = SearchAttributeKey::keyword("ListingPhase");
/// The custom search attributes (all Keyword) the server must know before workers start.
pub const SEARCH_ATTRIBUTES: [&str; 3] = ["SellWindowId", "ProductId", "ListingPhase"];

/// What a failed update handler answers with.
type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Futures joined at once in workflow code. `join_all` polls up to 30 futures in place; past
/// that it switches to `FuturesOrdered`, whose own wakers the SDK rejects as nondeterministic.
const JOIN_GROUP: usize = 16;

/// Orders per activity call when many change at once (confirm, close).
const CHUNK: usize = 500;

#[workflow]
pub struct SellWindowWorkflow {
    listing: Listing,
    /// Handlers still running: the workflow does not complete under them.
    busy: u32,
    /// The phase last published as a search attribute.
    published_phase: Option<Phase>,
    /// Updates and signals handled by this run (history grows with them).
    messages_this_run: u32,
    /// Set while handing over to a new run: validators turn new updates away (the API retries
    /// them, and they land on the new run).
    draining: bool,
    /// Normal activities running now (bounded by [`MAX_ACTIVITIES_IN_FLIGHT`]).
    activities_in_flight: u32,
    /// Orders the previous run left in the store, until this run has read them back: handlers
    /// wait (validators turn updates away) meanwhile.
    loading: Option<StoredOrders>,
    /// Updates and signals taken in so far: a hand-over whose snapshot this moved is redone.
    seen: u64,
    /// See [`ListingStart::inline_max`].
    inline_max: Option<u32>,
    /// Orders this run started with (carried over from the previous run).
    carried_orders: usize,
    /// Payment results held back: while this run hands over (they go to the next one), or,
    /// in a new run, those the previous run handed over until they are applied.
    deferred: Vec<PaymentResult>,
    /// Reservations taken in state, waiting for the run method to write them.
    writes: WriteQueue<ReservationWrite>,
    /// Payments applied in state, waiting for the run method to write them.
    paid: WriteQueue<PaidWrites>,
}

pub use run_state::{CONTINUE_AS_NEW_AFTER, MIN_RUN_MESSAGES, RUN_ORDERS_MAX};

use super::patches::*;
use crate::rejection::HANDING_OVER;

/// Activities one listing runs at once. The server refuses a workflow more than 2,000
/// pending activities (its task then fails over and over): a flood of payment callbacks must
/// queue here instead.
pub const MAX_ACTIVITIES_IN_FLIGHT: u32 = 200;

/// Runs an activity until it succeeds (every activity is idempotent and retried by Temporal
/// with backoff, so a failure here only means the workflow was cancelled), waiting for a slot
/// under [`MAX_ACTIVITIES_IN_FLIGHT`] first.
macro_rules! persist {
    ($ctx:expr, $act:expr, $input:expr, $summary:expr) => {{
        $ctx.wait_condition(|s: &SellWindowWorkflow| {
            s.activities_in_flight < MAX_ACTIVITIES_IN_FLIGHT
        })
        .await?;
        $ctx.state_mut(|s| s.activities_in_flight += 1);
        let done = $ctx
            .execute_activity($act, $input, act_opts($summary))
            .await;
        $ctx.state_mut(|s| s.activities_in_flight -= 1);
        done?
    }};
}

mod handlers;
mod queue;
mod run_state;
mod story;
use handlers::*;
use queue::*;
use run_state::*;

#[workflow_methods]
impl SellWindowWorkflow {
    #[init]
    pub fn new(_ctx: &WorkflowContextView, start: ListingStart) -> Self {
        let loading = start.orders_in_store.clone();
        let inline_max = start.inline_max;
        let deferred = start.deferred_payments.clone();
        let listing = start
            .into_listing()
            .expect("a carried state this code wrote itself");
        let carried_orders =
            listing.orders.len() + loading.as_ref().map_or(0, |s| s.orders as usize);
        Self {
            listing,
            carried_orders,
            busy: 0,
            published_phase: None,
            messages_this_run: 0,
            draining: false,
            activities_in_flight: 0,
            loading,
            seen: 0,
            inline_max,
            deferred,
            writes: WriteQueue::default(),
            paid: WriteQueue::default(),
        }
    }

    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>) -> WorkflowResult<ListingFigures> {
        story::run(ctx).await
    }

    #[query]
    pub fn figures(&self, _ctx: &WorkflowContextView) -> ListingFigures {
        self.listing.figures()
    }

    #[query]
    pub fn order(&self, _ctx: &WorkflowContextView, order_id: OrderId) -> Option<OrderView> {
        self.listing.order_view(&order_id)
    }

    #[update_validator(reserve)]
    fn validate_reserve(
        &self,
        _ctx: &WorkflowContextView,
        batch: &ReserveBatch,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.takes_reservations(batch.items.len())
    }

    /// Takes units for a batch of reservations (coalesced by the API), writes them with the
    /// quota-locking activity, and answers each reservation in arrival order. Older APIs send
    /// this; current ones send [`Self::reserve_v2`].
    #[update]
    pub async fn reserve(
        ctx: &mut WorkflowContext<Self>,
        batch: ReserveBatch,
    ) -> Result<Vec<ReserveOutcome>, HandlerError> {
        reserve_items(ctx, batch).await
    }

    #[update_validator(reserve_v2)]
    fn validate_reserve_v2(
        &self,
        _ctx: &WorkflowContextView,
        batch: &Reservations,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.takes_reservations(batch.items.len())
    }

    /// [`Self::reserve`] with compact reservations and answers: the listing's history holds
    /// both for every reservation, and it hands over to a new run once that grows a few MB.
    #[update]
    pub async fn reserve_v2(
        ctx: &mut WorkflowContext<Self>,
        batch: Reservations,
    ) -> Result<ReserveReplies, HandlerError> {
        let (sw, p, unit_price) = ctx.state(|s| {
            let spec = &s.listing.spec;
            (
                spec.sell_window_id.clone(),
                spec.product_id.clone(),
                spec.unit_price.clone(),
            )
        });
        let items = batch.items.iter().map(|r| r.item(&sw, &p)).collect();
        let outcomes = reserve_items(ctx, ReserveBatch { items }).await?;
        Ok(ReserveReplies {
            unit_price,
            replies: outcomes.into_iter().map(ReserveReply::from).collect(),
        })
    }

    #[update_validator(confirm)]
    fn validate_confirm(
        &self,
        _ctx: &WorkflowContextView,
        _input: &(),
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.handing_over()?;
        match self.listing.confirm_refusal() {
            Some(why) => Err(reject(RejectCode::FailedPrecondition, why)),
            None => Ok(()),
        }
    }

    /// Confirms the batch (the group formed): every reserving customer is asked to pay.
    #[update]
    pub async fn confirm(
        ctx: &mut WorkflowContext<Self>,
        _input: (),
    ) -> Result<ConfirmOutcome, HandlerError> {
        let t = now(ctx);
        let first = ctx.state(|s| s.listing.batch_status != BatchStatus::Confirmed);
        let moved = ctx
            .state_mut(|s| {
                s.enter();
                s.listing.confirm(t)
            })
            .map_err(HandlerError::from)?;
        let result = async {
            if first {
                publish(ctx);
                let (batch_id, due) = ctx.state(|s| {
                    (
                        s.listing.spec.batch_id(),
                        s.listing
                            .next_payment_deadline()
                            .unwrap_or(s.listing.spec.close_at),
                    )
                });
                let write = ConfirmWrite {
                    listing: key(ctx),
                    batch_id,
                    payment_due_at: due,
                    at: t,
                };
                persist!(ctx, Acts::confirm_batch, write, "confirm batch");
                open_payments(ctx, &moved, t).await?;
            }
            WorkflowResult::Ok(())
        }
        .await;
        ctx.state_mut(|s| s.busy -= 1);
        result.map_err(|e| HandlerError::from(anyhow_msg(e)))?;
        Ok(ctx.state(|s| ConfirmOutcome {
            batch_id: s.listing.spec.batch_id(),
            confirmed_at: s.listing.confirmed_at.unwrap_or(t),
            payment_requested_orders: moved.len() as u32,
        }))
    }

    /// A verified provider callback for one of this listing's payments.
    #[signal]
    pub async fn payment_result(ctx: &mut WorkflowContext<Self>, r: PaymentResult) {
        // While the run hands over, results wait for the next run: the hand-over needs a
        // quiet point, which a flood of callbacks would otherwise never leave.
        if ctx.state(|s| s.draining) && ctx.patched(DEFER_PAYMENTS_WHILE_HANDING_OVER) {
            ctx.state_mut(|s| s.deferred.push(r));
            return;
        }
        // Callbacks grow history like updates do, so they count toward the next hand-over.
        let counted = ctx.patched(COUNT_PAYMENTS_TOWARD_HAND_OVER);
        ctx.state_mut(|s| {
            s.busy += 1;
            s.seen += 1;
            if counted {
                s.messages_this_run += 1;
            }
        });
        // A new run reads its orders back, and applies what the previous run handed over,
        // before it applies anything newer.
        if ctx
            .wait_condition(|s: &Self| s.loading.is_none() && s.deferred.is_empty())
            .await
            .is_err()
        {
            ctx.state_mut(|s| s.busy -= 1);
            return;
        }
        if let Err(e) = apply_payment(ctx, &r, true).await {
            tracing::warn!(error = %anyhow_msg(e), "payment result not applied");
        }
        ctx.state_mut(|s| s.busy -= 1);
    }

    #[update_validator(cancel_order)]
    fn validate_cancel_order(
        &self,
        _ctx: &WorkflowContextView,
        r: &CustomerOrder,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.handing_over()?;
        match self.listing.cancel_refusal(&r.order_id, &r.customer_id) {
            Some(refusal) => Err(refused(refusal)),
            None => Ok(()),
        }
    }

    /// A customer cancels their own RESERVED or PAYMENT_REQUESTED order; its units go back.
    #[update]
    pub async fn cancel_order(
        ctx: &mut WorkflowContext<Self>,
        r: CustomerOrder,
    ) -> Result<OrderView, HandlerError> {
        let t = now(ctx);
        let decided = ctx.state_mut(|s| {
            s.enter();
            s.listing.cancel_order(&r.order_id, &r.customer_id)
        });
        let result = match decided {
            Ok((released, reopened)) => release(
                ctx,
                vec![released],
                OrderStatus::Cancelled,
                ReleaseReason::CustomerCancelled,
                reopened,
                t,
            )
            .await
            .map_err(|e| HandlerError::from(anyhow_msg(e))),
            Err(refusal) => Err(refused(refusal)),
        };
        ctx.state_mut(|s| s.busy -= 1);
        publish(ctx);
        result?;
        Ok(ctx
            .state(|s| s.listing.order_view(&r.order_id))
            .expect("the order exists"))
    }

    #[update_validator(retry_payment)]
    fn validate_retry_payment(
        &self,
        _ctx: &WorkflowContextView,
        r: &CustomerOrder,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.handing_over()?;
        match self.listing.retry_refusal(&r.order_id, &r.customer_id) {
            Some(refusal) => Err(refused(refusal)),
            None => Ok(()),
        }
    }

    /// A new pay link after a failed attempt (the open one, if an attempt is still open).
    #[update]
    pub async fn retry_payment(
        ctx: &mut WorkflowContext<Self>,
        r: CustomerOrder,
    ) -> Result<OrderView, HandlerError> {
        let t = now(ctx);
        ctx.state_mut(|s| s.busy += 1);
        let result = open_payments(ctx, std::slice::from_ref(&r.order_id), t).await;
        ctx.state_mut(|s| s.busy -= 1);
        result.map_err(|e| HandlerError::from(anyhow_msg(e)))?;
        Ok(ctx
            .state(|s| s.listing.order_view(&r.order_id))
            .expect("the order exists"))
    }

    #[update_validator(cancel_window)]
    fn validate_cancel_window(
        &self,
        _ctx: &WorkflowContextView,
        _input: &(),
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.handing_over()?;
        if self.listing.phase.accepts_reservations() {
            Ok(())
        } else {
            Err(reject(
                RejectCode::FailedPrecondition,
                format!(
                    "the listing is {} and can no longer be cancelled",
                    self.listing.phase
                ),
            ))
        }
    }

    /// The admin cancels the listing before close: every order is cancelled and every paid one
    /// refunded (the saga's compensation).
    #[update]
    pub async fn cancel_window(
        ctx: &mut WorkflowContext<Self>,
        _input: (),
    ) -> Result<ListingFigures, HandlerError> {
        let t = now(ctx);
        let (unpaid, paid) = ctx
            .state_mut(|s| {
                s.enter();
                s.listing.cancel_window()
            })
            .map_err(|why| reject(RejectCode::FailedPrecondition, why))?;
        let result = async {
            release(
                ctx,
                unpaid,
                OrderStatus::Cancelled,
                ReleaseReason::WindowCancelled,
                false,
                t,
            )
            .await?;
            release(
                ctx,
                paid.clone(),
                OrderStatus::Cancelled,
                ReleaseReason::WindowCancelled,
                false,
                t,
            )
            .await?;
            refund_all(ctx, paid, "the shop cancelled the sell window", t).await?;
            let write = FinalizeWrite {
                listing: key(ctx),
                batch_id: ctx.state(|s| s.listing.spec.batch_id()),
                final_paid_qty: 0,
                kind: FinalizeKind::WindowCancelled,
                at: t,
            };
            persist!(ctx, Acts::finalize_listing, write, "cancel window");
            WorkflowResult::Ok(())
        }
        .await;
        ctx.state_mut(|s| s.busy -= 1);
        publish(ctx);
        result.map_err(|e| HandlerError::from(anyhow_msg(e)))?;
        Ok(ctx.state(|s| s.listing.figures()))
    }

    #[update_validator(complete_step)]
    fn validate_complete_step(
        &self,
        _ctx: &WorkflowContextView,
        step: &StepId,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.handing_over()?;
        match self.listing.step_refusal(step) {
            Some(why) if why.starts_with("unknown") => Err(reject(RejectCode::NotFound, why)),
            Some(why) => Err(reject(RejectCode::FailedPrecondition, why)),
            None => Ok(()),
        }
    }

    /// An operator finished a work step; the last one completes production and ships.
    #[update]
    pub async fn complete_step(
        ctx: &mut WorkflowContext<Self>,
        step: StepId,
    ) -> Result<StepOutcome, HandlerError> {
        let t = now(ctx);
        let (changed, shipments, work_order_id) = ctx.state_mut(|s| {
            s.enter();
            let changed = s.listing.complete_step(&step);
            let shipments = (changed == Some(true)).then(|| s.listing.paid_orders());
            (changed, shipments, s.listing.work_order_id.clone())
        });
        let work_order_id = work_order_id.expect("validated: in production");
        let result = async {
            if changed.is_some() {
                let write = StepWrite {
                    listing: key(ctx),
                    work_order_id: work_order_id.clone(),
                    step_id: step.clone(),
                    shipments,
                    at: t,
                };
                persist!(ctx, Acts::complete_step, write, "complete work step");
            }
            WorkflowResult::Ok(())
        }
        .await;
        ctx.state_mut(|s| s.busy -= 1);
        publish(ctx);
        result.map_err(|e| HandlerError::from(anyhow_msg(e)))?;
        Ok(StepOutcome {
            work_order_id,
            step_id: step,
            production_completed: ctx.state(|s| s.listing.phase == Phase::Shipped),
        })
    }
}
