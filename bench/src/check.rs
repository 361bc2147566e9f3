//! The checks every load ends with, per listing: nothing oversold (the quota row and the
//! orders holding quota within the cap); the listing's rows agree with its orders (the quota
//! row's sold_qty with the units every order holding quota holds, the counters' reserved_qty
//! and paid_qty with the units of the orders reserved and paid); the listing's workflow agrees
//! with those rows once it is quiet (the API's progress signals are coalesced to about one a
//! second per listing, so the workflow is polled until its figures catch up, and how long that
//! took is reported); and no answer lost (every reservation answered with an order has its
//! row; with no errors at all, exactly as many rows as answers).

use crate::load::{LoadResult, Target};
use crate::report::Report;
use crate::runs;
use crate::stack::Stack;
use sellwindow_api::pb;
use sellwindow_domain::{ProductId, SellWindowId};
use sellwindow_workflows::SellWindow;
use serde::Serialize;
use sqlx::Row;
use std::time::{Duration, Instant};
use temporalio_client::WorkflowQueryOptions;

/// How long the workflow may take to catch up with its row once the load stops.
const CATCH_UP: Duration = Duration::from_secs(20);

/// A listing's figures: units sold (holding quota), reserved (not yet paid) and paid.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Units {
    pub sold: u32,
    pub reserved: u32,
    pub paid: u32,
}

/// The state of one listing after a run, from the database and from its workflow.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListingCheck {
    pub workflow_id: String,
    /// The quota row's sold_qty and max_qty.
    pub sold: u32,
    pub cap: u32,
    /// The sum over the orders holding quota (RESERVED, PAYMENT_REQUESTED, PAID).
    pub held_by_orders: u32,
    /// The listing's rows (quota row and counters) and what its orders add up to.
    pub rows: Units,
    pub orders: Units,
    /// Every order row of the listing.
    pub orders_in_db: u64,
    /// sold_qty in the workflow's own state (query), if it answered, and all its figures.
    pub workflow_sold: Option<u32>,
    pub workflow: Option<Units>,
    /// From the check's start until the workflow's figures agreed with the rows (ms).
    pub workflow_caught_up_ms: Option<f64>,
    /// History events summed over every run of the listing's workflow, per run, and the
    /// signals the runs took.
    pub history_events: u64,
    pub runs: u32,
    pub run_events: Vec<u64>,
    pub run_bytes: Vec<u64>,
    pub signals: u64,
    pub oversold: bool,
    pub consistent: bool,
}

/// The listing's workflow's figures, if it answers within a few seconds.
async fn workflow_units(stack: &Stack, workflow_id: &str) -> Option<Units> {
    let handle = stack.client.get_workflow_handle::<SellWindow>(workflow_id);
    let query = handle.query(SellWindow::figures, (), WorkflowQueryOptions::default());
    let f = tokio::time::timeout(Duration::from_secs(10), query)
        .await
        .ok()?
        .ok()?;
    Some(Units {
        sold: f.sold_qty,
        reserved: f.reserved_qty,
        paid: f.paid_qty,
    })
}

/// Polls the workflow until it agrees with `rows` (or [`CATCH_UP`] passes).
async fn caught_up(stack: &Stack, workflow_id: &str, rows: Units) -> (Option<Units>, Option<f64>) {
    let t0 = Instant::now();
    loop {
        let seen = workflow_units(stack, workflow_id).await;
        if seen == Some(rows) {
            return (seen, Some(t0.elapsed().as_secs_f64() * 1e3));
        }
        if t0.elapsed() > CATCH_UP {
            return (seen, None);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The listing's rows, and what its orders add up to: (rows, orders, order rows).
async fn database_units(stack: &Stack, t: &Target) -> anyhow::Result<(Units, Units, u64)> {
    let r = sqlx::query(
        "SELECT CAST(q.sold_qty AS BIGINT) AS sold, CAST(c.reserved_qty AS BIGINT) AS reserved,          CAST(c.paid_qty AS BIGINT) AS paid,          (SELECT CAST(COALESCE(SUM(CASE WHEN o.status IN ('RESERVED', 'PAYMENT_REQUESTED') THEN o.qty ELSE 0 END), 0) AS BIGINT)           FROM orders o WHERE o.sell_window_id = q.sell_window_id AND o.product_id = q.product_id) AS o_reserved,          (SELECT CAST(COALESCE(SUM(CASE WHEN o.status = 'PAID' THEN o.qty ELSE 0 END), 0) AS BIGINT)           FROM orders o WHERE o.sell_window_id = q.sell_window_id AND o.product_id = q.product_id) AS o_paid,          (SELECT COUNT(*) FROM orders o WHERE o.sell_window_id = q.sell_window_id AND o.product_id = q.product_id) AS o_rows          FROM sell_window_quota q JOIN counters c ON c.sell_window_id = q.sell_window_id AND c.product_id = q.product_id          WHERE q.sell_window_id = $1 AND q.product_id = $2",
    )
    .bind(t.sell_window_id.as_str())
    .bind(t.product_id.as_str())
    .fetch_one(stack.store.pool())
    .await?;
    let n = |k: &str| -> anyhow::Result<u32> { Ok(r.try_get::<i64, _>(k)?.max(0) as u32) };
    let rows = Units {
        sold: n("sold")?,
        reserved: n("reserved")?,
        paid: n("paid")?,
    };
    let (reserved, paid) = (n("o_reserved")?, n("o_paid")?);
    let orders = Units {
        sold: reserved + paid,
        reserved,
        paid,
    };
    Ok((rows, orders, r.try_get::<i64, _>("o_rows")? as u64))
}

pub async fn check_listing(stack: &Stack, t: &Target) -> anyhow::Result<ListingCheck> {
    let sw = SellWindowId::parse(t.sell_window_id.clone())?;
    let p = ProductId::parse(t.product_id.clone())?;
    let (sold, cap, held) = stack.store.quota_check(&sw, &p).await?;
    let (rows, orders, orders_in_db) = database_units(stack, t).await?;
    let (workflow, workflow_caught_up_ms) = caught_up(stack, &t.workflow_id, rows).await;
    let r = runs::runs(stack, &t.workflow_id).await?;
    warn_limits(&t.workflow_id, &r);
    Ok(ListingCheck {
        workflow_id: t.workflow_id.clone(),
        sold,
        cap,
        held_by_orders: held,
        rows,
        orders,
        orders_in_db,
        workflow_sold: workflow.map(|w| w.sold),
        workflow,
        workflow_caught_up_ms,
        history_events: r.events,
        runs: r.run_events.len() as u32,
        run_events: r.run_events,
        run_bytes: r.run_bytes,
        signals: r.signals,
        oversold: sold > cap || held > cap,
        // The rows agree with the orders, and the workflow (it must answer) with the rows.
        consistent: sold == held && rows == orders && workflow == Some(rows),
    })
}

fn warn_limits(workflow_id: &str, r: &runs::Runs) {
    if let Some(big) = r.run_events.iter().max().filter(|n| **n > 10_240) {
        println!(
            "  warning: a run of {workflow_id} has {big} history events (Temporal warns past 10,240 and terminates a run at 51,200)"
        );
    }
    if let Some(big) = r.run_bytes.iter().max().filter(|n| **n > 10 << 20) {
        println!(
            "  warning: a run of {workflow_id} has {:.1} MB of history (Temporal warns past 10 MB and terminates a run at 50 MB)",
            *big as f64 / (1 << 20) as f64
        );
    }
}

pub fn targets(windows: &[pb::SellWindow]) -> Vec<Target> {
    windows
        .iter()
        .flat_map(|w| {
            w.listings.iter().map(|l| Target {
                sell_window_id: w.id.clone(),
                product_id: l.product_id.clone(),
                workflow_id: l.workflow_id.clone(),
            })
        })
        .collect()
}

/// Checks the listings after a load. Fails (in `report.failures`) on oversell, disagreement,
/// lost answers or errors.
pub async fn checked(
    stack: &Stack,
    targets: &[Target],
    load: &LoadResult,
    what: &str,
    report: &mut Report,
) -> anyhow::Result<Vec<ListingCheck>> {
    let checks = consistent(stack, targets, load, what, report).await?;
    if load.errors_total > 0 {
        report.fail(format!(
            "{what}: {} reservations failed: {:?} (e.g. {:?})",
            load.errors_total, load.errors, load.error_samples
        ));
    }
    Ok(checks)
}

/// Checks the listings after a load whose refusals are expected (overload): fails on
/// oversell, disagreement or lost answers only.
pub async fn consistent(
    stack: &Stack,
    targets: &[Target],
    load: &LoadResult,
    what: &str,
    report: &mut Report,
) -> anyhow::Result<Vec<ListingCheck>> {
    let mut checks = Vec::new();
    for t in targets {
        let c = check_listing(stack, t).await?;
        if c.oversold {
            report.fail(format!(
                "{what}: OVERSOLD {}: sold {} / held {} over cap {}",
                t.workflow_id, c.sold, c.held_by_orders, c.cap
            ));
        }
        if !c.consistent {
            report.fail(disagreement(what, &c));
        }
        checks.push(c);
    }
    lost_answers(&checks, load, what, report);
    Ok(checks)
}

/// Every answered order has its row; with no errors at all (no call that may have committed
/// unanswered), the rows are exactly the answers (each reservation used a fresh key).
fn lost_answers(checks: &[ListingCheck], load: &LoadResult, what: &str, report: &mut Report) {
    let orders: u64 = checks.iter().map(|c| c.orders_in_db).sum();
    let answered = load.reservations_ok_total;
    if orders < answered {
        report.fail(format!(
            "{what}: {answered} reservations answered with an order but only {orders} orders in the database"
        ));
    } else if load.errors_total == 0 && orders != answered {
        report.fail(format!(
            "{what}: {answered} reservations answered with an order, no errors, but {orders} orders in the database"
        ));
    }
}

/// What disagreed, in words.
pub fn disagreement(what: &str, c: &ListingCheck) -> String {
    format!(
        "{what}: {} disagrees: rows (quota sold, counters reserved/paid) {:?}, orders {:?} (holding quota {}), workflow {:?} up to {} s after the load",
        c.workflow_id,
        c.rows,
        c.orders,
        c.held_by_orders,
        c.workflow,
        CATCH_UP.as_secs()
    )
}
