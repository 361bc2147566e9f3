//! The one place where the listing's decisions become writes: the queue's jobs, and the writer
//! that turns each into an activity (one transaction) and applies its answer to the listing's
//! figures. Single changes, fences and milestones are local activities (fast, one marker);
//! inbox applies and sweep chunks are normal activities, so a long chain of them never holds
//! one workflow task open. Handlers and the run method only queue jobs and wait.

use super::SellWindow;
use super::contract::{
    self, Confirmed, ListingActivities as Acts, MilestoneKind, OrderChange, OrderChanged, Swept,
};
use crate::machine::SweepKind;
use sellwindow_domain::*;
use std::time::{Duration, UNIX_EPOCH};
use temporalio_common::RetryPolicy;
use temporalio_sdk::{
    ActivityOptions, LocalActivityOptions, WorkflowContext, WorkflowResult, WorkflowTermination,
};

/// A job of the write queue.
#[derive(Debug, Clone)]
pub enum Write {
    /// What waits in the listing's inbox of payment outcomes.
    Inbox,
    Change(CustomerOrder, OrderChange),
    Sweep {
        kind: SweepKind,
        due: Option<UnixMillis>,
        after: Option<OrderId>,
    },
    Milestone(MilestoneKind),
    Confirm {
        batch_id: BatchId,
        due: UnixMillis,
    },
    /// Read the row (figures and the earliest pending payment deadline).
    ReadRow,
}

#[derive(Debug, Clone)]
pub enum Written {
    Done,
    Changed(OrderChanged),
    Swept(Swept),
    Confirmed(Confirmed),
    Row(Progress),
}

const INBOX_PER_WRITE: u32 = 500;

pub fn now(ctx: &WorkflowContext<SellWindow>) -> UnixMillis {
    let t = ctx
        .workflow_time()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    UnixMillis(t.as_millis() as i64)
}

pub fn key(ctx: &WorkflowContext<SellWindow>) -> ListingKey {
    ctx.state(|s| ListingKey {
        sell_window_id: s.listing.spec.sell_window_id.clone(),
        product_id: s.listing.spec.product_id.clone(),
    })
}

fn retried() -> RetryPolicy {
    RetryPolicy::builder()
        .maximum_interval(Duration::from_secs(10))
        .build()
}

/// Every write records a decision the listing has taken: it is retried until it lands.
fn local_opts(summary: &str) -> LocalActivityOptions {
    LocalActivityOptions::builder()
        .start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(retried())
        .summary(summary.to_string())
        .build()
}

fn remote_opts(summary: &str) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .retry_policy(retried())
        .summary(summary.to_string())
        .build()
}

/// Runs a write that must land until it does (a failure here is a bug or an outage: the
/// listing waits, durably, rather than lose the decision). `local`: a local activity;
/// otherwise a normal one, for long runs of writes (a fan-out's chunks, a flood of payment
/// outcomes): a chain of local activities holds one workflow task open, and the server
/// delivers updates and signals only between tasks.
macro_rules! landed {
    ($ctx:expr, local, $act:expr, $input:expr, $summary:expr) => {
        landed!(@run $ctx, execute_local_activity, local_opts, $act, $input, $summary)
    };
    ($ctx:expr, remote, $act:expr, $input:expr, $summary:expr) => {
        landed!(@run $ctx, execute_activity, remote_opts, $act, $input, $summary)
    };
    (@run $ctx:expr, $how:ident, $opts:ident, $act:expr, $input:expr, $summary:expr) => {{
        loop {
            match $ctx.$how($act, $input.clone(), $opts($summary)).await {
                Ok(out) => break out,
                Err(e) => {
                    tracing::warn!(error = ?e, summary = $summary, "write failed; trying again");
                    $ctx.timer(Duration::from_secs(10)).await;
                }
            }
        }
    }};
}

fn cancelled(_: impl std::fmt::Debug) -> WorkflowTermination {
    WorkflowTermination::cancelled()
}

/// The write queue's writer.
pub async fn write_all(
    ctx: &WorkflowContext<SellWindow>,
) -> WorkflowResult<std::convert::Infallible> {
    loop {
        ctx.wait_condition(|s: &SellWindow| s.writes.has_work())
            .await
            .map_err(cancelled)?;
        let (ticket, job) = ctx.state_mut(|s| s.writes.take()).expect("has work");
        let answer = write(ctx, job).await;
        ctx.state_mut(|s| s.writes.finish(ticket, answer));
        super::lifecycle::publish(ctx);
    }
}

/// Writes one job and adopts the figures it answers with.
async fn write(ctx: &WorkflowContext<SellWindow>, job: Write) -> Written {
    let (listing, at) = (key(ctx), now(ctx));
    let (figures, answer) = match job {
        Write::Inbox => {
            let w = contract::ApplyInbox {
                listing,
                at,
                limit: INBOX_PER_WRITE,
            };
            let inboxed = landed!(ctx, remote, Acts::apply_inbox, w, "apply payment outcomes");
            if inboxed.more {
                ctx.state_mut(|s| s.writes.push_unawaited(Write::Inbox));
            }
            (inboxed.figures, Written::Done)
        }
        Write::Change(order, change) => {
            let w = contract::ChangeOrder {
                listing,
                at,
                order,
                change,
            };
            let changed = landed!(ctx, local, Acts::change_order, w, "change an order");
            let figures = match &changed {
                OrderChanged::Done { figures, .. } => Some(*figures),
                OrderChanged::Refused(_) => None,
            };
            return adopted(ctx, figures, Written::Changed(changed));
        }
        Write::Sweep { kind, due, after } => {
            let limit = ctx.state(|s| s.tuning.sweep_chunk);
            let w = contract::SweepChunk {
                listing,
                at,
                kind,
                due,
                after,
                limit,
            };
            let swept = landed!(ctx, remote, Acts::sweep, w, kind.reason());
            (swept.figures, Written::Swept(swept))
        }
        Write::Milestone(kind) => {
            let w = contract::Milestone { listing, at, kind };
            landed!(ctx, local, Acts::milestone, w, "milestone");
            return Written::Done;
        }
        Write::Confirm { batch_id, due } => {
            let w = contract::Confirm {
                listing,
                at,
                batch_id,
                due,
            };
            let confirmed = landed!(ctx, local, Acts::confirm, w, "confirm fence");
            let (Confirmed::Done(figures) | Confirmed::Refused(_, figures)) = confirmed;
            (figures, Written::Confirmed(confirmed))
        }
        Write::ReadRow => {
            let w = contract::ReadRow { listing };
            let row = landed!(ctx, local, Acts::read_row, w, "read the quota row");
            (row.figures, Written::Row(row))
        }
    };
    adopted(ctx, Some(figures), answer)
}

fn adopted(ctx: &WorkflowContext<SellWindow>, figures: Option<Figures>, w: Written) -> Written {
    if let Some(f) = figures {
        ctx.state_mut(|s| s.listing.adopt(&f));
    }
    w
}

/// Queues a job and waits for its answer.
pub async fn written(ctx: &WorkflowContext<SellWindow>, job: Write) -> WorkflowResult<Written> {
    let ticket = ctx.state_mut(|s| s.writes.push(job));
    ctx.wait_condition(move |s: &SellWindow| s.writes.is_done(ticket))
        .await
        .map_err(cancelled)?;
    Ok(ctx
        .state_mut(|s| s.writes.take_answer(ticket))
        .expect("a finished job has its answer"))
}

/// Writes a milestone and waits until it has landed.
pub async fn milestone(
    ctx: &WorkflowContext<SellWindow>,
    kind: contract::MilestoneKind,
) -> WorkflowResult<()> {
    written(ctx, Write::Milestone(kind)).await.map(|_| ())
}

/// Runs a sweep to its end, a chunk per write. Returns how many orders it moved and the last
/// chunk's answer.
pub async fn sweep_all(
    ctx: &WorkflowContext<SellWindow>,
    kind: SweepKind,
    due: Option<UnixMillis>,
) -> WorkflowResult<(u32, Swept)> {
    let (mut after, mut moved) = (None, 0);
    loop {
        let job = Write::Sweep { kind, due, after };
        let Written::Swept(swept) = written(ctx, job).await? else {
            unreachable!("a sweep answers with what it swept");
        };
        moved += swept.moved;
        if swept.done {
            return Ok((moved, swept));
        }
        after = swept.last.clone();
    }
}
