//! The four endings, each on a listing of its own with N orders, and their table.

use super::{
    Ending, Listing, check, confirm, expect, listing, pay, reserve_all, until_count, until_phase,
    wait_close,
};
use crate::args::Args;
use crate::report::Report;
use crate::stack::Stack;
use sellwindow_api::pb;
use sellwindow_testkit::ApiClient;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// The size of the endings and how long their listings stay open.
struct Sizes {
    n: u64,
    slow: f64,
    margin: f64,
}

impl Sizes {
    /// Enough for reserving (≥ 1,000/s), payment rows (≥ 2,000/s) and `paid` callbacks
    /// (≥ 300/s) before close_at.
    fn time_for(&self, paid: u64) -> Duration {
        let n = self.n as f64;
        let work = n / 1000.0 + n / 2000.0 + paid as f64 / 300.0;
        Duration::from_secs_f64(self.margin + self.slow * work * 1.5)
    }
}

pub async fn run(stack: &Stack, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let sizes = Sizes {
        n: args.int("orders", if args.smoke { 200 } else { 100_000 })?,
        slow: if cfg!(debug_assertions) { 3.0 } else { 1.0 },
        margin: if args.smoke { 6.0 } else { 20.0 },
    };
    println!(
        "\nendings: each ending of a listing with {} orders",
        sizes.n
    );
    let endings = vec![
        cancel_all_paid(stack, &sizes, report).await?,
        refund_half_paid(stack, &sizes, report).await?,
        never_confirmed(stack, &sizes, report).await?,
        produce_and_ship(stack, &sizes, report).await?,
    ];
    print_endings(&endings);
    report.endings = endings;
    Ok(())
}

/// 1. Everything paid, then the admin cancels: N cancelled, N refunded.
async fn cancel_all_paid(stack: &Stack, s: &Sizes, report: &mut Report) -> anyhow::Result<Ending> {
    let n = s.n;
    let day = Duration::from_secs(24 * 3600);
    let l = listing(stack, "cancel", n as u32, 1, false, day).await?;
    reserve_all(stack, &l, n, "end-cancel").await?;
    confirm(stack, &l, n).await?;
    pay(stack, &l, n as usize).await?;
    let t0 = Instant::now();
    let api = stack.admin();
    let request = pb::CancelSellWindowRequest {
        sell_window_id: l.sw.clone(),
    };
    api.admin()
        .cancel_sell_window(ApiClient::req(request, &api.admin_token()))
        .await?;
    let call = t0.elapsed().as_secs_f64();
    let refunded = "SELECT COUNT(*) FROM payments WHERE sell_window_id = $1 AND product_id = $2 AND status = 'REFUNDED'";
    let seconds = until_count(stack, refunded, &l, n as i64, t0).await?;
    let (notes, cost) = check(stack, &l, report, "cancel").await?;
    for kind in ["order_cancelled", "payment_refunded"] {
        expect(report, "cancel", &notes, kind, n);
    }
    Ok(Ending {
        name: "admin cancel, every order paid".into(),
        orders: n,
        seconds,
        detail: BTreeMap::from([("cancel_call_seconds".into(), call)]),
        notifications: notes,
        cost,
    })
}

/// 2. CANCEL_AND_REFUND, half paid: at close N/2 expire, N/2 are cancelled and refunded.
async fn refund_half_paid(stack: &Stack, s: &Sizes, report: &mut Report) -> anyhow::Result<Ending> {
    let n = s.n;
    let l = listing(stack, "refund", n as u32, n as u32, true, s.time_for(n / 2)).await?;
    reserve_all(stack, &l, n, "end-refund").await?;
    confirm(stack, &l, n).await?;
    pay(stack, &l, (n / 2) as usize).await?;
    let t0 = wait_close(&l).await;
    let seconds = until_phase(stack, &l, "CANCELLED", t0).await?;
    let (notes, cost) = check(stack, &l, report, "refund").await?;
    expect(report, "refund", &notes, "payment_refunded", n / 2);
    expect(report, "refund", &notes, "order_expired", n - n / 2);
    Ok(Ending {
        name: "close, CANCEL_AND_REFUND, half paid".into(),
        orders: n,
        seconds,
        detail: BTreeMap::new(),
        notifications: notes,
        cost,
    })
}

/// 3. Never confirmed: at close every order is cancelled.
async fn never_confirmed(stack: &Stack, s: &Sizes, report: &mut Report) -> anyhow::Result<Ending> {
    let n = s.n;
    let l = listing(stack, "unformed", n as u32, n as u32, false, s.time_for(0)).await?;
    reserve_all(stack, &l, n, "end-unformed").await?;
    let t0 = wait_close(&l).await;
    let seconds = until_phase(stack, &l, "FAILED", t0).await?;
    let (notes, cost) = check(stack, &l, report, "unformed").await?;
    expect(report, "unformed", &notes, "order_cancelled", n);
    Ok(Ending {
        name: "close, never confirmed".into(),
        orders: n,
        seconds,
        detail: BTreeMap::new(),
        notifications: notes,
        cost,
    })
}

/// 4. Confirm, all paid, close, production, the last step ships everything.
async fn produce_and_ship(stack: &Stack, s: &Sizes, report: &mut Report) -> anyhow::Result<Ending> {
    let n = s.n;
    let l = listing(stack, "produce", n as u32, 1, false, s.time_for(n)).await?;
    reserve_all(stack, &l, n, "end-produce").await?;
    let confirm_seconds = confirm(stack, &l, n).await?;
    let pay_seconds = pay(stack, &l, n as usize).await?;
    let t0 = wait_close(&l).await;
    let produce_seconds = until_phase(stack, &l, "IN_PRODUCTION", t0).await?;
    let t0 = Instant::now();
    complete_steps(stack, &l).await?;
    let ship_seconds = until_phase(stack, &l, "SHIPPED", t0).await?;
    let (notes, cost) = check(stack, &l, report, "produce").await?;
    for kind in ["payment_link", "payment_received", "shipped"] {
        expect(report, "produce", &notes, kind, n);
    }
    Ok(Ending {
        name: "confirm → all paid → close → production → last step ships".into(),
        orders: n,
        seconds: ship_seconds,
        detail: BTreeMap::from([
            (
                "confirm_to_all_payment_rows_seconds".into(),
                confirm_seconds,
            ),
            ("pay_all_seconds".into(), pay_seconds),
            (
                "close_to_production_started_seconds".into(),
                produce_seconds,
            ),
            ("last_step_to_every_shipment_seconds".into(), ship_seconds),
        ]),
        notifications: notes,
        cost,
    })
}

/// The admin completes every work step of the listing's work order, in order.
async fn complete_steps(stack: &Stack, l: &Listing) -> anyhow::Result<()> {
    let steps: Vec<(String, String)> = sqlx::query_as(
        "SELECT s.id, s.work_order_id FROM work_steps s JOIN work_orders w ON w.id = s.work_order_id \
         WHERE w.sell_window_id = $1 AND w.product_id = $2 ORDER BY s.position",
    )
    .bind(&l.sw)
    .bind(&l.p)
    .fetch_all(stack.store.pool())
    .await?;
    let api = stack.admin();
    for (step, work_order) in steps {
        let request = pb::CompleteWorkStepRequest {
            work_order_id: work_order,
            step_id: step,
        };
        api.admin()
            .complete_work_step(ApiClient::req(request, &api.admin_token()))
            .await?;
    }
    Ok(())
}

fn print_endings(endings: &[Ending]) {
    println!(
        "\n| ending | orders | seconds | detail | runs | longest run (events) | largest payload |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|");
    for e in endings {
        println!(
            "| {} | {} | {:.1} | {} | {} | {} | {:.1} KB |",
            e.name,
            e.orders,
            e.seconds,
            e.detail
                .iter()
                .map(|(k, v)| format!("{k} {v:.1}"))
                .collect::<Vec<_>>()
                .join(", "),
            e.cost.events_per_run.len(),
            e.cost.events_per_run.iter().max().unwrap_or(&0),
            e.cost.largest_payload as f64 / 1024.0
        );
    }
}
