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

/// A run hands over to a new one after this many messages: well under the server's 2,000
/// updates per run and its 10,240-event history warning. It also hands over when the server
/// suggests it (history past its size or length threshold).
pub const CONTINUE_AS_NEW_AFTER: u32 = 1_000;
const WAKE_ON_SUGGESTION: &str = "hand-over-when-suggested";
/// Messages a run takes before it follows the server's suggestion: a large listing's carried
/// orders alone may pass the suggested size, and a run that handed over at once would only
/// hand the same state on again.
pub const MIN_RUN_MESSAGES: u32 = 100;
/// Runs follow the suggestion only once they have taken in at least as many orders as they
/// carried (or [`RUN_ORDERS_MAX`]): every run records its carried orders again (a hand-over
/// pauses reservations for a time that grows with them), and a listing whose carried orders
/// alone neared the suggested size would otherwise hand over after every few batches. Runs
/// thus double the listing, so hand-overs grow rarer as it grows. Runs recorded before
/// followed the suggestion after [`MIN_RUN_MESSAGES`].
const HAND_OVER_WHEN_GROWN: &str = "hand-over-when-grown";
/// Orders a run takes in before it follows the suggestion whatever it carried (~10 MB of
/// reservations in history), so carried and own history stay far below the server's 50 MB.
pub const RUN_ORDERS_MAX: usize = 200_000;

use crate::rejection::HANDING_OVER;

impl SellWindowWorkflow {
    /// Counts a handler in: it keeps the run from completing or handing over under it.
    fn enter(&mut self) {
        self.busy += 1;
        self.messages_this_run += 1;
        self.seen += 1;
    }

    /// Whether this run may follow the server's suggestion to continue as new.
    fn follows_suggestion(&self, when_grown: bool) -> bool {
        let own = self
            .listing
            .orders
            .len()
            .saturating_sub(self.carried_orders);
        self.messages_this_run >= MIN_RUN_MESSAGES
            && (!when_grown || own >= self.carried_orders || own >= RUN_ORDERS_MAX)
    }

    fn handing_over(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.draining || self.loading.is_some() {
            Err(HANDING_OVER.into())
        } else {
            Ok(())
        }
    }

    /// Whether a batch of `n` reservations may come in now (the reserve updates' validators).
    fn takes_reservations(&self, n: usize) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.handing_over()?;
        if n == 0 {
            return Err(reject(
                RejectCode::InvalidArgument,
                "empty reservation batch",
            ));
        }
        if !self.listing.phase.accepts_reservations() {
            return Err(reject(
                RejectCode::FailedPrecondition,
                format!("the sell window is closed ({})", self.listing.phase),
            ));
        }
        Ok(())
    }
}

/// Waits for a quiet point and snapshots the listing for the next run. A large state goes
/// to the store in parts first (local activities: their inputs stay out of history). Payment
/// results arriving meanwhile are deferred to the next run; should anything else have changed
/// the state during the saves (histories from before deferral), the snapshot is taken again.
async fn hand_over(ctx: &mut WorkflowContext<SellWindowWorkflow>) -> WorkflowResult<ListingStart> {
    let mut attempt = 0u32;
    loop {
        ctx.wait_condition(|s: &SellWindowWorkflow| s.busy == 0)
            .await?;
        let seen = ctx.state(|s| s.seen);
        let token = format!("{}-{attempt}", ctx.run_id());
        let (mut start, parts) =
            ctx.state(|s| ListingStart::handing_over(&s.listing, &token, s.inline_max));
        if parts.is_empty() {
            start.deferred_payments = ctx.state(|s| s.deferred.clone());
            return Ok(start);
        }
        let listing = key(ctx);
        let at = now(ctx);
        // Parts side by side: the listing turns updates away until the next run takes over.
        let parts: Vec<(usize, String)> = parts.into_iter().enumerate().collect();
        for group in parts.chunks(JOIN_GROUP) {
            let saves = group.iter().map(|(part, data)| {
                let opts = LocalActivityOptions::builder()
                    .start_to_close_timeout(Duration::from_secs(10))
                    .summary(format!("hand over orders, part {}", part + 1))
                    .build();
                let p = HandoverPart {
                    listing: listing.clone(),
                    token: token.clone(),
                    part: *part as u32,
                    data: data.clone(),
                    at,
                };
                ctx.execute_local_activity(Acts::save_handover_part, p, opts)
            });
            for saved in futures::future::join_all(saves).await {
                saved?;
            }
        }
        if ctx.state(|s| s.seen == seen && s.busy == 0) {
            start.deferred_payments = ctx.state(|s| s.deferred.clone());
            return Ok(start);
        }
        attempt += 1;
    }
}

/// Reservations are written by the run method, one local activity for all the handlers of a
/// workflow task (see [`super::writes`]); histories recorded before wrote one per handler.
const MERGED_WRITES: &str = "merged-reservation-writes";

fn write_opts() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(10))
        .schedule_to_close_timeout(Duration::from_secs(30))
        .summary("record reservations".to_string())
        .build()
}

/// The idempotency keys of the batch's new orders (the API sends one with each reservation).
fn order_answers(batch: &ReserveBatch, accepted: &[NewOrder]) -> Vec<OrderAnswer> {
    let new: std::collections::BTreeSet<&OrderId> = accepted.iter().map(|o| &o.order_id).collect();
    batch
        .items
        .iter()
        .filter(|i| new.contains(&i.order_id))
        .filter_map(|i| {
            Some(OrderAnswer {
                customer_id: i.customer_id.clone(),
                key: i.answer_key.clone()?,
                order_id: i.order_id.clone(),
            })
        })
        .collect()
}

/// Successful payments are written by the run method too, one local activity for all the
/// callbacks of a workflow task; histories recorded before ran an activity per payment.
const BATCHED_PAYMENTS: &str = "batched-payment-writes";

/// One of the write queues the run method serves: how a handler reads it and takes from it.
type Queue<W> = (
    fn(&SellWindowWorkflow) -> &WriteQueue<W>,
    fn(&mut SellWindowWorkflow) -> &mut WriteQueue<W>,
);
const RESERVATIONS: Queue<ReservationWrite> = (|s| &s.writes, |s| &mut s.writes);
const PAID: Queue<PaidWrites> = (|s| &s.paid, |s| &mut s.paid);

/// Queues a handler's write for the run method and waits for its result; `None` if cancelled.
async fn written_by_run<W: Batch>(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    (queue, queue_mut): Queue<W>,
    write: W,
) -> Option<Result<(), String>> {
    let ticket: Ticket = ctx.state_mut(|s| queue_mut(s).push(write));
    ctx.wait_condition(move |s: &SellWindowWorkflow| queue(s).is_done(ticket))
        .await
        .ok()?;
    ctx.state_mut(|s| queue_mut(s).result(ticket))
}

fn anything_to_write(s: &SellWindowWorkflow) -> bool {
    s.writes.has_pending() || s.paid.has_pending()
}

/// Runs `until` while writing what handlers queue, and returns only when nothing is left to
/// write. The writes are polled first, so a handler's decision is never left unwritten while
/// the run moves on (to a hand-over, to finalize, or to its end).
async fn writing<T>(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    until: impl std::future::Future<Output = T>,
) -> T {
    use futures::FutureExt;
    let until = until.fuse();
    futures::pin_mut!(until);
    let out = loop {
        temporalio_sdk::workflows::select! {
            _ = ctx.wait_condition(anything_to_write) => write_queued(ctx).await,
            out = until => break out,
        }
    };
    while ctx.state(anything_to_write) {
        write_queued(ctx).await;
    }
    out
}

/// One local activity (one transaction) for each kind of write queued so far.
async fn write_queued(ctx: &WorkflowContext<SellWindowWorkflow>) {
    if let Some((tickets, write)) = ctx.state_mut(|s| s.writes.take()) {
        let written = ctx
            .execute_local_activity(Acts::record_reservations, write, write_opts())
            .await
            .map_err(|e| e.to_string());
        ctx.state_mut(|s| s.writes.finish(&tickets, written));
    }
    if let Some((tickets, write)) = ctx.state_mut(|s| s.paid.take()) {
        // The listing already counts these orders paid and cannot take that back: no
        // schedule-to-close, the write is retried until it lands.
        let opts = LocalActivityOptions::builder()
            .start_to_close_timeout(Duration::from_secs(10))
            .summary("mark orders paid".to_string())
            .build();
        let written = ctx
            .execute_local_activity(Acts::mark_paid_many, write, opts)
            .await
            .map_err(|e| e.to_string());
        ctx.state_mut(|s| s.paid.finish(&tickets, written));
    }
}

/// Reads back the orders a previous run left in the store, then lets handlers in.
async fn take_over_orders(
    ctx: &mut WorkflowContext<SellWindowWorkflow>,
    stored: StoredOrders,
) -> WorkflowResult<()> {
    let mut parts = Vec::with_capacity(stored.parts as usize);
    let numbers: Vec<u32> = (0..stored.parts).collect();
    for group in numbers.chunks(JOIN_GROUP) {
        let loads = group.iter().map(|&part| {
            let r = HandoverPartRef {
                token: stored.token.clone(),
                part,
            };
            // Local: reservations wait until the orders are back, and a local activity skips
            // the server's dispatch (its result lands in history either way).
            let opts = LocalActivityOptions::builder()
                .start_to_close_timeout(Duration::from_secs(10))
                .summary(format!("take over orders, part {}", part + 1))
                .build();
            ctx.execute_local_activity(Acts::load_handover_part, r, opts)
        });
        for loaded in futures::future::join_all(loads).await {
            parts.push(loaded?);
        }
    }
    let orders = ListingStart::orders_from_parts(&stored, &parts)
        .expect("a hand-over this code wrote itself");
    ctx.state_mut(|s| {
        s.listing.orders = orders;
        s.loading = None;
    });
    let listing = key(ctx);
    ctx.execute_activity(Acts::drop_handover, listing, act_opts("drop the hand-over"))
        .await?;
    Ok(())
}

fn now(ctx: &WorkflowContext<SellWindowWorkflow>) -> UnixMillis {
    let t = ctx
        .workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    UnixMillis(t.as_millis() as i64)
}

fn act_opts(summary: &str) -> ActivityOptions {
    let mut o = ActivityOptions::start_to_close_timeout(Duration::from_secs(20));
    o.summary = Some(summary.to_string());
    o
}

fn key(ctx: &WorkflowContext<SellWindowWorkflow>) -> ListingKey {
    ctx.state(|s| ListingKey {
        sell_window_id: s.listing.spec.sell_window_id.clone(),
        product_id: s.listing.spec.product_id.clone(),
    })
}

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
        if let Some(stored) = ctx.state(|s| s.loading.clone()) {
            take_over_orders(ctx, stored).await?;
        }
        let carried_over = ctx.state(|s| s.deferred.clone());
        if !carried_over.is_empty() {
            // In arrival order: each decision is taken as its future is first polled.
            ctx.state_mut(|s| s.busy += 1);
            for group in carried_over.chunks(JOIN_GROUP) {
                let applied =
                    futures::future::join_all(group.iter().map(|r| apply_payment(ctx, r, false)))
                        .await;
                for e in applied.into_iter().filter_map(Result::err) {
                    tracing::warn!(error = %anyhow_msg(e), "payment result not applied");
                }
            }
            ctx.state_mut(|s| {
                s.busy -= 1;
                s.deferred.clear();
            });
        }
        publish(ctx);
        // Reservations and payments until close_at; unpaid orders expire at their deadlines.
        loop {
            let t = now(ctx);
            let close_at = ctx.state(|s| s.listing.spec.close_at);
            // An admin cancel ends the listing before close_at.
            if t >= close_at || ctx.state(|s| s.listing.phase.is_final()) {
                break;
            }
            let next = ctx.state(|s| s.listing.next_payment_deadline());
            if next.is_some_and(|d| d <= t) {
                expire_due(ctx, t).await?;
                continue;
            }
            let wake = next.map_or(close_at, |d| d.min(close_at));
            let sleep = Duration::from_millis((wake.0 - t.0).max(1) as u64);
            let summary = if wake == close_at {
                "close_at"
            } else {
                "payment deadline"
            };
            let timer = temporalio_sdk::TimerOptions::builder(sleep)
                .summary(summary.to_string())
                .build();
            // Large batches grow history by bytes faster than by messages: the server's
            // suggestion (history past a few MB) must end the wait too, long before its 50 MB
            // limit. Runs recorded before looked at it only when something else woke them.
            let suggestion_wakes = ctx.patched(WAKE_ON_SUGGESTION);
            let when_grown = suggestion_wakes && ctx.patched(HAND_OVER_WHEN_GROWN);
            writing(ctx, async {
                temporalio_sdk::workflows::select! {
                    _ = ctx.timer(timer) => {}
                    // Confirm (or a late reservation) brought a deadline earlier than the timer.
                    _ = ctx.wait_condition(move |s: &Self| s.listing.phase.is_final() || s.listing.next_payment_deadline().is_some_and(|d| d < wake)) => {}
                    _ = ctx.wait_condition(|s: &Self| s.messages_this_run >= CONTINUE_AS_NEW_AFTER || (suggestion_wakes && s.follows_suggestion(when_grown) && ctx.continue_as_new_suggested())) => {}
                }
            })
            .await;
            let open = ctx.state(|s| s.listing.phase.accepts_reservations());
            let (long, worked) = ctx.state(|s| {
                (
                    s.messages_this_run >= CONTINUE_AS_NEW_AFTER,
                    s.follows_suggestion(when_grown),
                )
            });
            let suggested = ctx.continue_as_new_suggested() && (worked || !suggestion_wakes);
            if open && (long || suggested) {
                // Hand over at a quiet point: turn new updates away, let running ones finish.
                ctx.state_mut(|s| s.draining = true);
                let start = hand_over(ctx).await?;
                ctx.continue_as_new(start, temporalio_sdk::ContinueAsNewOptions::default())?;
            }
        }
        if !ctx.state(|s| s.listing.phase.is_final()) {
            finalize(ctx).await?;
        }
        publish(ctx);
        // A handler waiting for its write keeps `busy` up: writes are served while waiting.
        writing(
            ctx,
            ctx.wait_condition(|s: &Self| s.listing.phase.is_final() && s.busy == 0),
        )
        .await?;
        publish(ctx);
        if ctx.patched("settle-late-payments") {
            // A provider may still report a payment for an order that closed: stay a while so
            // it is refunded (never counted) instead of finding no workflow.
            let settle = ctx.state(|s| s.listing.spec.payment_window_ms.clamp(1_000, 3_600_000));
            ctx.timer(
                temporalio_sdk::TimerOptions::builder(Duration::from_millis(settle as u64))
                    .summary("settle late payments".to_string())
                    .build(),
            )
            .await;
            writing(ctx, ctx.wait_condition(|s: &Self| s.busy == 0)).await?;
        }
        Ok(ctx.state(|s| s.listing.figures()))
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
        if ctx.state(|s| s.draining) && ctx.patched("defer-payments-while-handing-over") {
            ctx.state_mut(|s| s.deferred.push(r));
            return;
        }
        // Callbacks grow history like updates do, so they count toward the next hand-over.
        let counted = ctx.patched("count-payments-toward-hand-over");
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

/// Takes units for reservations in the listing before anything is awaited (interleaved
/// handlers can never both take the last units), has the run method write the orders, and
/// answers each reservation in arrival order.
async fn reserve_items(
    ctx: &mut WorkflowContext<SellWindowWorkflow>,
    batch: ReserveBatch,
) -> Result<Vec<ReserveOutcome>, HandlerError> {
    let t = now(ctx);
    let mut plan = ctx.state_mut(|s| {
        s.enter();
        s.listing.reserve(&batch.items, t)
    });
    if !plan.accepted.is_empty() {
        let write = ctx.state(|s| ReservationWrite {
            listing: ListingKey {
                sell_window_id: s.listing.spec.sell_window_id.clone(),
                product_id: s.listing.spec.product_id.clone(),
            },
            orders: plan.accepted.clone(),
            quota_closed_by: plan
                .quota_closed
                .then(|| plan.accepted.last().map(|o| o.order_id.clone()))
                .flatten(),
            threshold_reached: plan
                .threshold_reached
                .then_some((s.listing.reserved_qty, s.listing.spec.min_qty)),
            at: t,
            answers: order_answers(&batch, &plan.accepted),
        });
        let written = if ctx.patched(MERGED_WRITES) {
            match written_by_run(ctx, RESERVATIONS, write).await {
                Some(result) => result,
                None => {
                    ctx.state_mut(|s| s.busy -= 1);
                    return Err("the workflow was cancelled".into());
                }
            }
        } else {
            ctx.execute_local_activity(Acts::record_reservations, write, write_opts())
                .await
                .map_err(|e| e.to_string())
        };
        if let Err(e) = written {
            // The write failed for good: give the units back before answering, and void
            // whatever a last attempt may still have committed, so the rows agree.
            let voided: Vec<Released> = plan
                .accepted
                .iter()
                .map(|o| Released {
                    order_id: o.order_id.clone(),
                    customer_id: o.customer_id.clone(),
                    qty: o.qty,
                    was: o.status,
                    payment_id: None,
                })
                .collect();
            let reopen = plan.quota_closed;
            ctx.state_mut(|s| s.listing.undo_reserve(&mut plan, &e));
            if ctx.patched("void-unrecorded-reservations") {
                let voided = release(
                    ctx,
                    voided,
                    OrderStatus::Cancelled,
                    ReleaseReason::NotRecorded,
                    reopen,
                    t,
                )
                .await;
                if let Err(e) = voided {
                    ctx.state_mut(|s| s.busy -= 1);
                    return Err(HandlerError::from(anyhow_msg(e)));
                }
            }
        } else {
            let due: Vec<OrderId> = plan
                .accepted
                .iter()
                .filter(|o| o.status == OrderStatus::PaymentRequested)
                .map(|o| o.order_id.clone())
                .collect();
            if !due.is_empty() {
                open_payments(ctx, &due, t)
                    .await
                    .map_err(|e| HandlerError::from(anyhow_msg(e)))?;
                // Answers carry the pay link's payment id.
                ctx.state(|s| {
                    for outcome in plan.outcomes.iter_mut() {
                        if let ReserveOutcome::Reserved(v) = outcome
                            && let Some(fresh) = s.listing.order_view(&v.order_id)
                        {
                            *v = fresh;
                        }
                    }
                });
            }
        }
    }
    ctx.state_mut(|s| s.busy -= 1);
    Ok(plan.outcomes)
}

fn refused(r: CancelRefusal) -> HandlerError {
    let code = match r {
        CancelRefusal::NotFound => RejectCode::NotFound,
        CancelRefusal::NotYours => RejectCode::PermissionDenied,
        CancelRefusal::Status(_) => RejectCode::FailedPrecondition,
    };
    reject(code, r)
}

/// The attempt that paid is the one refunded (runs recorded before refunded the attempt
/// open at the time, which may never have been charged).
const REFUND_WHAT_PAID: &str = "refund-the-attempt-that-paid";

/// Refunds every paid order in `orders` (one idempotent activity each).
async fn refund_all(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    orders: Vec<Released>,
    reason: &str,
    t: UnixMillis,
) -> WorkflowResult<()> {
    let price = ctx.state(|s| s.listing.spec.unit_price.clone());
    let what_paid = ctx.patched(REFUND_WHAT_PAID);
    for r in orders {
        let paid_by = ctx.state(|s| {
            s.listing
                .orders
                .get(&r.order_id)
                .and_then(|o| o.paid_by.clone())
        });
        let charged = if what_paid { paid_by } else { r.payment_id };
        if let Some(payment_id) = charged {
            let write = RefundWrite {
                listing: key(ctx),
                order_id: r.order_id,
                payment_id,
                customer_id: r.customer_id,
                amount: price.times(r.qty.get()),
                reason: reason.to_string(),
                at: t,
            };
            persist!(ctx, Acts::refund_payment, write, "refund");
        }
    }
    Ok(())
}

fn anyhow_msg(e: temporalio_sdk::WorkflowTermination) -> String {
    format!("{e:?}")
}

/// Publishes the phase as a search attribute (when it changed) and the figures as the
/// workflow's current details, for operators in the Temporal UI.
fn publish(ctx: &WorkflowContext<SellWindowWorkflow>) {
    let (f, changed) = ctx.state_mut(|s| {
        let f = s.listing.figures();
        let changed = s.published_phase != Some(f.phase);
        s.published_phase = Some(f.phase);
        (f, changed)
    });
    if changed {
        ctx.upsert_search_attributes([
            SA_SELL_WINDOW.value_set(f.sell_window_id.to_string()),
            SA_PRODUCT.value_set(f.product_id.to_string()),
            SA_PHASE.value_set(f.phase.as_str().to_string()),
        ]);
    }
    ctx.set_current_details(format!(
        "**{}** · quota {} · sold {}/{} · reserved {} · paid {} · threshold {} ({}) · batch {}",
        f.phase,
        f.quota_status,
        f.sold_qty,
        f.max_qty,
        f.reserved_qty,
        f.paid_qty,
        f.threshold_status,
        f.min_qty,
        f.batch_status
    ));
}

async fn open_payments(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    orders: &[OrderId],
    t: UnixMillis,
) -> WorkflowResult<()> {
    let payments = ctx.state_mut(|s| s.listing.open_payments(orders));
    for chunk in payments.chunks(CHUNK) {
        let write = PaymentsWrite {
            listing: key(ctx),
            payments: chunk.to_vec(),
            at: t,
        };
        persist!(ctx, Acts::open_payments, write, "open payments");
    }
    Ok(())
}

async fn expire_due(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    t: UnixMillis,
) -> WorkflowResult<()> {
    let (released, reopened) = ctx.state_mut(|s| s.listing.expire_due(t));
    release(
        ctx,
        released,
        OrderStatus::Expired,
        ReleaseReason::PaymentExpired,
        reopened,
        t,
    )
    .await?;
    publish(ctx);
    Ok(())
}

async fn release(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    orders: Vec<Released>,
    to: OrderStatus,
    reason: ReleaseReason,
    quota_reopened: bool,
    t: UnixMillis,
) -> WorkflowResult<()> {
    for chunk in orders.chunks(CHUNK) {
        let write = ReleaseWrite {
            listing: key(ctx),
            orders: chunk.to_vec(),
            to,
            reason,
            quota_reopened,
            at: t,
        };
        persist!(ctx, Acts::release_orders, write, "release orders");
    }
    Ok(())
}

/// Applies a payment result to the listing and persists its effect. With `batched`, a success
/// is written by the run method with the others of its workflow task; results the run itself
/// applies (those carried over from a hand-over) are written one by one.
async fn apply_payment(
    ctx: &WorkflowContext<SellWindowWorkflow>,
    r: &PaymentResult,
    batched: bool,
) -> WorkflowResult<()> {
    let t = now(ctx);
    let effect = ctx.state_mut(|s| s.listing.apply_payment(r));
    let listing = key(ctx);
    match effect {
        PaymentEffect::Paid { customer_id, qty } if batched && ctx.patched(BATCHED_PAYMENTS) => {
            let write = PaidWrites {
                listing,
                payments: vec![PaidPayment {
                    order_id: r.order_id.clone(),
                    payment_id: r.payment_id.clone(),
                    customer_id,
                    qty,
                    event_id: r.event_id.clone(),
                }],
                at: t,
            };
            match written_by_run(ctx, PAID, write).await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Err(ApplicationFailure::new(e).into()),
                None => return Err(WorkflowTermination::cancelled()),
            }
        }
        PaymentEffect::Paid { customer_id, qty } => {
            let write = PaidWrite {
                listing,
                order_id: r.order_id.clone(),
                payment_id: r.payment_id.clone(),
                customer_id,
                qty,
                event_id: r.event_id.clone(),
                at: t,
            };
            persist!(ctx, Acts::mark_paid, write, "mark order paid");
        }
        PaymentEffect::Failed {
            customer_id,
            failures,
        } => {
            let write = FailureWrite {
                listing,
                order_id: r.order_id.clone(),
                payment_id: r.payment_id.clone(),
                customer_id,
                error: r.error.clone().unwrap_or_else(|| "payment failed".into()),
                failures,
                at: t,
            };
            persist!(
                ctx,
                Acts::record_payment_failure,
                write,
                "record payment failure"
            );
        }
        PaymentEffect::Expired {
            released,
            quota_reopened,
        } => {
            release(
                ctx,
                vec![released],
                OrderStatus::Expired,
                ReleaseReason::PaymentExpired,
                quota_reopened,
                t,
            )
            .await?;
        }
        PaymentEffect::Refund {
            customer_id,
            amount,
        } => {
            let write = RefundWrite {
                listing,
                order_id: r.order_id.clone(),
                payment_id: r.payment_id.clone(),
                customer_id,
                amount,
                reason: "the payment arrived after the order had closed".into(),
                at: t,
            };
            persist!(ctx, Acts::refund_payment, write, "refund late payment");
        }
        PaymentEffect::Ignore => {}
    }
    publish(ctx);
    Ok(())
}

/// close_at: the seed's finalize_requested → finalized → production.scheduled → started.
async fn finalize(ctx: &WorkflowContext<SellWindowWorkflow>) -> WorkflowResult<()> {
    let t = now(ctx);
    let plan = ctx.state_mut(|s| s.listing.finalize(t));
    let (batch_id, names) =
        ctx.state(|s| (s.listing.spec.batch_id(), s.listing.spec.work_steps.clone()));
    let listing = key(ctx);
    let (final_paid_qty, kind) = match plan {
        FinalizePlan::Failed { cancelled } => {
            release(
                ctx,
                cancelled,
                OrderStatus::Cancelled,
                ReleaseReason::GroupNotFormed,
                false,
                t,
            )
            .await?;
            (0, FinalizeKind::GroupNotFormed)
        }
        FinalizePlan::Finalized {
            expired,
            final_paid_qty,
            outcome,
        } => {
            release(
                ctx,
                expired,
                OrderStatus::Expired,
                ReleaseReason::UnpaidAtClose,
                false,
                t,
            )
            .await?;
            let kind = match outcome {
                FinalOutcome::Produce { work_order_id } => {
                    let steps = ctx.state(|s| {
                        s.listing
                            .steps
                            .iter()
                            .map(|(id, _)| id.clone())
                            .collect::<Vec<_>>()
                    });
                    let steps = steps
                        .into_iter()
                        .enumerate()
                        .map(|(n, id)| {
                            (
                                id,
                                names.get(n).cloned().unwrap_or_else(|| "produce".into()),
                            )
                        })
                        .collect();
                    FinalizeKind::Produce {
                        work_order_id,
                        steps,
                    }
                }
                FinalOutcome::NothingToProduce => FinalizeKind::NothingToProduce,
                FinalOutcome::CancelAndRefund { refunded } => {
                    release(
                        ctx,
                        refunded.clone(),
                        OrderStatus::Cancelled,
                        ReleaseReason::PaidUnderThreshold,
                        false,
                        t,
                    )
                    .await?;
                    refund_all(ctx, refunded, "the group bought less than the threshold", t)
                        .await?;
                    FinalizeKind::CancelledUnderThreshold
                }
            };
            (final_paid_qty, kind)
        }
    };
    let write = FinalizeWrite {
        listing,
        batch_id,
        final_paid_qty,
        kind,
        at: t,
    };
    persist!(ctx, Acts::finalize_listing, write, "finalize");
    Ok(())
}
