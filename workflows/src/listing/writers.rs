//! The one place where the listing's decisions become writes: the two lanes' jobs, and the
//! writers that turn them into activities (one transaction each) and apply each answer to the
//! listing's figures. Reservations and single changes are local activities (fast, one marker);
//! inbox applies and sweep chunks are normal activities, so a long chain of them never holds one
//! workflow task open. Handlers and the run method only queue jobs and wait.

use super::ListingWorkflow;
use super::contract::{
    self, ListingActivities as Acts, OrderChange, OrderChanged, Recording, Swept,
};
use super::lanes::Ticket;
use crate::machine::SweepKind;
use crate::payload::Json;
use sellwindow_domain::*;
use std::time::{Duration, UNIX_EPOCH};
use temporalio_common::RetryPolicy;
use temporalio_sdk::{
    ActivityOptions, LocalActivityOptions, WorkflowContext, WorkflowResult, WorkflowTermination,
};

/// A job of the reservations lane: new orders, with their customers' idempotency keys.
#[derive(Debug, Clone)]
pub struct Reservation {
    pub orders: Vec<NewOrder>,
    pub answers: Vec<OrderAnswer>,
}

/// What a reservation job's requester gets: each order's recording, or why nothing was.
pub type Recordings = Result<Vec<Recording>, String>;

/// A job of the ordered lane.
#[derive(Debug, Clone)]
pub enum Ordered {
    Payments(Vec<PaymentResult>),
    /// What waits in the listing's inbox of payment outcomes.
    Inbox,
    Change(CustomerOrder, OrderChange),
    Sweep {
        kind: SweepKind,
        due: Option<UnixMillis>,
        after: Option<OrderId>,
    },
    Milestone(contract::MilestoneKind),
}

#[derive(Debug, Clone)]
pub enum OrderedAnswer {
    Done,
    Changed(OrderChanged),
    Swept(Swept),
}

/// Orders one reservation write takes at most (its input stays far below 512 KB).
const ORDERS_PER_WRITE: usize = 1_000;
/// Payment outcomes one write applies at most.
const PAYMENTS_PER_WRITE: usize = 500;
const INBOX_PER_WRITE: u32 = 500;

pub fn now(ctx: &WorkflowContext<ListingWorkflow>) -> UnixMillis {
    let t = ctx
        .workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    UnixMillis(t.as_millis() as i64)
}

pub fn key(ctx: &WorkflowContext<ListingWorkflow>) -> ListingKey {
    ctx.state(|s| ListingKey {
        sell_window_id: s.listing.spec.sell_window_id.clone(),
        product_id: s.listing.spec.product_id.clone(),
    })
}

/// A reservation write is given up on after 30 s (its customers are told to retry), and is
/// then voided: the units must not stay taken behind an unreachable database.
fn record_opts() -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(10))
        .schedule_to_close_timeout(Duration::from_secs(30))
        .summary("record reservations".to_string())
        .build()
}

/// Every other write records a decision the listing has taken: it is retried until it lands.
fn landing_opts(summary: &str) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(
            RetryPolicy::builder()
                .maximum_interval(Duration::from_secs(10))
                .build(),
        )
        .summary(summary.to_string())
        .build()
}

/// Runs a write that must land until it does (a failure here is a bug or an outage: the
/// listing waits, durably, rather than lose the decision).
macro_rules! landed {
    ($ctx:expr, $act:expr, $input:expr, $summary:expr) => {{
        loop {
            match $ctx
                .execute_local_activity($act, $input.clone(), landing_opts($summary))
                .await
            {
                Ok(out) => break out,
                Err(e) => {
                    tracing::warn!(error = ?e, summary = $summary, "write failed; trying again");
                    $ctx.timer(Duration::from_secs(10)).await;
                }
            }
        }
    }};
}

/// Runs a write that must land as a normal activity, until it does. Long runs of writes (a
/// fan-out's chunks, a flood of payment outcomes) go this way rather than as local activities:
/// a chain of local activities holds one workflow task open, and the server delivers updates
/// and signals only between tasks (past 100 buffered events it even fails the open task, and a
/// flood of callbacks then starves the listing).
macro_rules! remotely {
    ($ctx:expr, $act:expr, $input:expr, $summary:expr) => {{
        loop {
            match $ctx
                .execute_activity($act, $input.clone(), remote_opts($summary))
                .await
            {
                Ok(out) => break out,
                Err(e) => {
                    tracing::warn!(error = ?e, summary = $summary, "write failed; trying again");
                    $ctx.timer(Duration::from_secs(10)).await;
                }
            }
        }
    }};
}

fn remote_opts(summary: &str) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(
            RetryPolicy::builder()
                .maximum_interval(Duration::from_secs(10))
                .build(),
        )
        .summary(summary.to_string())
        .build()
}

fn cancelled(_: impl std::fmt::Debug) -> WorkflowTermination {
    WorkflowTermination::cancelled()
}

/// The reservations lane's writer.
pub async fn write_reservations(
    ctx: &WorkflowContext<ListingWorkflow>,
) -> WorkflowResult<std::convert::Infallible> {
    loop {
        ctx.wait_condition(|s: &ListingWorkflow| s.reservations.has_work())
            .await
            .map_err(cancelled)?;
        let jobs = ctx.state_mut(|s| {
            s.reservations.take(|taken, next| {
                let orders: usize = taken.iter().map(|(_, j)| j.orders.len()).sum();
                orders + next.orders.len() <= ORDERS_PER_WRITE
            })
        });
        record(ctx, jobs).await;
    }
}

/// One write for the reservations of several jobs; each job gets its orders' recordings.
async fn record(ctx: &WorkflowContext<ListingWorkflow>, jobs: Vec<(Ticket, Reservation)>) {
    let (mut orders, mut answers, mut counts) = (Vec::new(), Vec::new(), Vec::new());
    for (_, job) in &jobs {
        counts.push(job.orders.len());
        orders.extend(job.orders.iter().cloned());
        answers.extend(job.answers.iter().cloned());
    }
    let limit = ctx.state(|s| s.listing.spec.per_customer_limit);
    let w = contract::RecordOrders {
        listing: key(ctx),
        at: now(ctx),
        orders: orders.clone(),
        answers,
        per_customer_limit: limit,
    };
    let written = ctx
        .execute_local_activity(Acts::record_orders, Json(w), record_opts())
        .await;
    let written = match written {
        Ok(Json(recorded)) => recorded,
        Err(e) => return give_up(ctx, jobs, &orders, e).await,
    };
    ctx.state_mut(|s| {
        s.listing.recorded(&orders, &written.figures);
        let mut replies = written.replies.into_iter();
        for ((ticket, _), n) in jobs.iter().zip(counts) {
            s.reservations
                .finish(*ticket, Ok(replies.by_ref().take(n).collect()));
        }
    });
    super::story::publish(ctx);
}

/// A reservation write failed for good: its units go back and its customers are told at once;
/// then whatever an attempt still running might commit is voided. Until the void has landed
/// the jobs count as not written, so no decision that must see them (close, cancel) runs first.
async fn give_up(
    ctx: &WorkflowContext<ListingWorkflow>,
    jobs: Vec<(Ticket, Reservation)>,
    orders: &[NewOrder],
    error: impl std::fmt::Debug,
) {
    let why = format!("the reservation could not be recorded: {error:?}");
    ctx.state_mut(|s| {
        s.listing.release_held(orders);
        for (ticket, _) in &jobs {
            s.reservations.answer(*ticket, Err(why.clone()));
        }
    });
    super::story::publish(ctx);
    let w = contract::VoidOrders {
        listing: key(ctx),
        at: now(ctx),
        orders: orders.to_vec(),
    };
    let figures = landed!(ctx, Acts::void_orders, w, "void a reservation write");
    ctx.state_mut(|s| {
        s.listing.adopt(&figures);
        for (ticket, _) in &jobs {
            s.reservations.settle(*ticket);
        }
    });
}

/// The ordered lane's writer.
pub async fn write_ordered(
    ctx: &WorkflowContext<ListingWorkflow>,
) -> WorkflowResult<std::convert::Infallible> {
    loop {
        ctx.wait_condition(|s: &ListingWorkflow| s.ordered.has_work())
            .await
            .map_err(cancelled)?;
        let jobs = ctx.state_mut(|s| {
            s.ordered.take(|taken, next| {
                let n: usize = taken.iter().map(|(_, j)| payments_of(j)).sum();
                matches!(
                    (&taken[0].1, next),
                    (Ordered::Payments(_), Ordered::Payments(_))
                ) && n + payments_of(next) <= PAYMENTS_PER_WRITE
            })
        });
        let chunk = ctx.state(|s| s.tuning.sweep_chunk);
        let (listing, at) = (key(ctx), now(ctx));
        let answer = match &jobs[0].1 {
            Ordered::Payments(_) => {
                let results = jobs
                    .iter()
                    .flat_map(|(_, j)| match j {
                        Ordered::Payments(r) => r.clone(),
                        _ => Vec::new(),
                    })
                    .collect();
                let w = contract::ApplyPayments {
                    listing,
                    at,
                    results,
                };
                let figures = landed!(ctx, Acts::apply_payments, w, "apply payment outcomes");
                ctx.state_mut(|s| s.listing.adopt(&figures));
                OrderedAnswer::Done
            }
            Ordered::Inbox => {
                let w = contract::ApplyInbox {
                    listing,
                    at,
                    limit: INBOX_PER_WRITE,
                };
                let inboxed =
                    remotely!(ctx, Acts::apply_inbox, w, "apply waiting payment outcomes");
                ctx.state_mut(|s| {
                    s.listing.adopt(&inboxed.figures);
                    if inboxed.more {
                        s.ordered.push_unawaited(Ordered::Inbox);
                    }
                });
                OrderedAnswer::Done
            }
            Ordered::Change(order, change) => {
                let w = contract::ChangeOrder {
                    listing,
                    at,
                    order: order.clone(),
                    change: *change,
                };
                let changed = landed!(ctx, Acts::change_order, w, "change an order");
                if let OrderChanged::Done { figures, .. } = &changed {
                    ctx.state_mut(|s| s.listing.adopt(figures));
                }
                OrderedAnswer::Changed(changed)
            }
            Ordered::Sweep { kind, due, after } => {
                let w = contract::SweepChunk {
                    listing,
                    at,
                    kind: *kind,
                    due: *due,
                    after: after.clone(),
                    limit: chunk,
                };
                let swept = remotely!(ctx, Acts::sweep, w, kind.reason());
                ctx.state_mut(|s| s.listing.adopt(&swept.figures));
                OrderedAnswer::Swept(swept)
            }
            Ordered::Milestone(kind) => {
                let w = contract::Milestone {
                    listing,
                    at,
                    kind: kind.clone(),
                };
                landed!(ctx, Acts::milestone, w, "milestone");
                OrderedAnswer::Done
            }
        };
        ctx.state_mut(|s| {
            for (ticket, _) in &jobs {
                s.ordered.finish(*ticket, answer.clone());
            }
        });
        super::story::publish(ctx);
    }
}

fn payments_of(job: &Ordered) -> usize {
    match job {
        Ordered::Payments(r) => r.len(),
        _ => 0,
    }
}

/// Queues a job in the ordered lane and waits for its answer.
pub async fn ordered(
    ctx: &WorkflowContext<ListingWorkflow>,
    job: Ordered,
) -> WorkflowResult<OrderedAnswer> {
    let ticket = ctx.state_mut(|s| s.ordered.push(job));
    ctx.wait_condition(move |s: &ListingWorkflow| s.ordered.is_done(ticket))
        .await
        .map_err(cancelled)?;
    Ok(ctx
        .state_mut(|s| s.ordered.take_answer(ticket))
        .expect("a finished job has its answer"))
}

/// Writes a milestone and waits until it has landed.
pub async fn milestone(
    ctx: &WorkflowContext<ListingWorkflow>,
    kind: contract::MilestoneKind,
) -> WorkflowResult<()> {
    ordered(ctx, Ordered::Milestone(kind)).await.map(|_| ())
}

/// Runs a sweep to its end, a chunk per write. Returns how many orders it moved and the last
/// chunk's answer.
pub async fn sweep_all(
    ctx: &WorkflowContext<ListingWorkflow>,
    kind: SweepKind,
    due: Option<UnixMillis>,
) -> WorkflowResult<(u32, Swept)> {
    let (mut after, mut moved) = (None, 0);
    loop {
        let job = Ordered::Sweep { kind, due, after };
        let OrderedAnswer::Swept(swept) = ordered(ctx, job).await? else {
            unreachable!("a sweep answers with what it swept");
        };
        moved += swept.moved;
        if swept.done {
            return Ok((moved, swept));
        }
        after = swept.last.clone();
    }
}

/// Waits until every reservation decided so far is written (or voided): a decision that must
/// see them all (confirm, close, cancel) is written after them.
pub async fn reservations_written(ctx: &WorkflowContext<ListingWorkflow>) -> WorkflowResult<()> {
    let through = ctx.state(|s| s.reservations.last_ticket());
    ctx.wait_condition(move |s: &ListingWorkflow| s.reservations.done_through(through))
        .await
        .map_err(cancelled)
}
