//! `bench endings`: every ending of one big listing, each on a listing of its own with N orders
//! (100,000 by default): the admin cancels after everything is paid (N refunds); close with
//! `CANCEL_AND_REFUND` and half paid (N/2 expire, N/2 refunds); close without a confirm (N
//! cancelled); and confirm (N payment requests) → everything paid → close → production → the
//! last work step (N shipments). Each is timed from the moment it starts to its last write,
//! and checked: the figures the same in the database and the workflow, the books balanced,
//! each customer told once per change, no run of the listing past 10,240 history events, no
//! payload past 512 KB, never terminated. Not a test (it takes minutes); the e2e tests in
//! `starter/tests/e2e/endings.rs` do the same at a few hundred orders in CI.

use crate::args::Args;
use crate::finalize::pay_all;
use crate::load::{self, LoadSpec};
use crate::report::Report;
use crate::reserve;
use crate::stack::Stack;
use sellwindow_api::history::HistoryCost;
use sellwindow_api::pb;
use sellwindow_testkit::ApiClient;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct Ending {
    pub name: String,
    pub orders: u64,
    /// From the ending's start (the call, or close_at) to its last write.
    pub seconds: f64,
    pub detail: BTreeMap<String, f64>,
    pub notifications: BTreeMap<String, i64>,
    pub cost: HistoryCost,
}

fn now_ms() -> i64 {
    sellwindow_api::convert::now_ms().0
}

pub(crate) struct Listing {
    pub sw: String,
    pub p: String,
    pub workflow_id: String,
    pub close_at: i64,
}

/// A window with one listing of cap `n`, threshold `min`, closing `close_in` from now.
pub(crate) async fn listing(
    stack: &Stack,
    name: &str,
    n: u32,
    min: u32,
    refund_under_threshold: bool,
    close_in: Duration,
) -> anyhow::Result<Listing> {
    let api = stack.admin();
    let token = api.admin_token();
    let product = api
        .admin()
        .create_product(ApiClient::req(
            pb::CreateProductRequest {
                id: String::new(),
                name: format!("bench endings {name}"),
                unit_price: Some(pb::Money {
                    currency: "TWD".into(),
                    amount_minor: 45000,
                }),
                work_steps: vec!["cut".into(), "pack".into()],
            },
            &token,
        ))
        .await?
        .into_inner();
    let close_at = now_ms() + close_in.as_millis() as i64;
    let w = api
        .admin()
        .create_sell_window(ApiClient::req(
            pb::CreateSellWindowRequest {
                name: format!("bench endings {name}"),
                close_at: Some(sellwindow_api::convert::ts(close_at)),
                listings: vec![pb::ListingInput {
                    product_id: product.id.clone(),
                    min_qty: min,
                    max_qty: n,
                    payment_window: Some(prost_types::Duration {
                        seconds: 3 * 3600,
                        nanos: 0,
                    }),
                    per_customer_limit: 0,
                    min_paid_policy: if refund_under_threshold {
                        pb::MinPaidPolicy::CancelAndRefund as i32
                    } else {
                        0
                    },
                }],
                request_id: format!("bench-endings-{name}"),
            },
            &token,
        ))
        .await?
        .into_inner();
    Ok(Listing {
        sw: w.id.clone(),
        p: product.id,
        workflow_id: w.listings[0].workflow_id.clone(),
        close_at,
    })
}

async fn count(stack: &Stack, sql: &str, l: &Listing) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql)
        .bind(&l.sw)
        .bind(&l.p)
        .fetch_one(stack.store.pool())
        .await?)
}

/// Waits until the count reaches `want`; returns the seconds it took from `since`.
pub(crate) async fn until_count(
    stack: &Stack,
    sql: &str,
    l: &Listing,
    want: i64,
    since: Instant,
) -> anyhow::Result<f64> {
    let deadline = Instant::now() + Duration::from_secs(1800);
    let mut report_at = Instant::now() + Duration::from_secs(30);
    loop {
        let got = count(stack, sql, l).await?;
        if got >= want {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "waited 30 minutes for {sql}");
        if Instant::now() > report_at {
            println!("  still waiting: {got} of {want} ({sql})");
            report_at = Instant::now() + Duration::from_secs(30);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(since.elapsed().as_secs_f64())
}

pub(crate) async fn until_phase(
    stack: &Stack,
    l: &Listing,
    phase: &str,
    since: Instant,
) -> anyhow::Result<f64> {
    let sql = format!(
        "SELECT COUNT(*) FROM product_sell_windows WHERE sell_window_id = $1 AND product_id = $2 AND phase = '{phase}'"
    );
    until_count(stack, &sql, l, 1, since).await
}

async fn reserve_all(stack: &Stack, l: &Listing, n: u64, tag: &str) -> anyhow::Result<f64> {
    let clients = stack.connections(256, 32).await?;
    let spec = LoadSpec {
        targets: vec![load::Target {
            sell_window_id: l.sw.clone(),
            product_id: l.p.clone(),
            workflow_id: l.workflow_id.clone(),
        }],
        customers_per_target: 256,
        warmup: Duration::ZERO,
        measure: Duration::from_secs(3600),
        tag: tag.into(),
        stop_after: Some(n),
    };
    let r = load::run(&clients, &spec).await;
    println!(
        "  {tag}: reserved {} in {:.1} s ({:.0}/s)",
        r.reservations_ok_total, r.total_seconds, r.reservations_per_sec
    );
    anyhow::ensure!(
        r.errors_total == 0,
        "reservations failed: {:?} {:?}",
        r.errors,
        r.error_samples
    );
    Ok(r.total_seconds)
}

/// Confirms, and waits until every order has its payment row (a big confirm answers once
/// accepted and asks its orders to pay after); returns the seconds that took.
pub(crate) async fn confirm(stack: &Stack, l: &Listing, orders: u64) -> anyhow::Result<f64> {
    let api = stack.admin();
    let t0 = Instant::now();
    api.admin()
        .confirm_batch(ApiClient::req(
            pb::ConfirmBatchRequest {
                sell_window_id: l.sw.clone(),
                product_id: l.p.clone(),
            },
            &api.admin_token(),
        ))
        .await?;
    let rows = "SELECT COUNT(*) FROM payments WHERE sell_window_id = $1 AND product_id = $2";
    until_count(stack, rows, l, orders as i64, t0).await
}

/// Pays the first `k` open payments; returns the seconds until all of them are PAID.
pub(crate) async fn pay(stack: &Stack, l: &Listing, k: usize) -> anyhow::Result<f64> {
    let open: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, order_id FROM payments WHERE sell_window_id = $1 AND product_id = $2 AND status = 'INIT' ORDER BY id",
    )
    .bind(&l.sw)
    .bind(&l.p)
    .fetch_all(stack.store.pool())
    .await?;
    let t0 = Instant::now();
    let sent = pay_all(stack, &open[..k.min(open.len())], l.close_at).await;
    println!(
        "  paid {k} by callbacks in {:.1} s: {sent:?}",
        t0.elapsed().as_secs_f64()
    );
    anyhow::ensure!(
        sent.get("200").copied().unwrap_or(0) as usize == k,
        "callbacks answered {sent:?}"
    );
    let paid = "SELECT COUNT(*) FROM orders WHERE sell_window_id = $1 AND product_id = $2 AND status = 'PAID'";
    until_count(stack, paid, l, k as i64, t0).await
}

pub(crate) async fn wait_close(l: &Listing) -> Instant {
    let wait = l.close_at - now_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    Instant::now() - Duration::from_millis((now_ms() - l.close_at).max(0) as u64)
}

/// The checks every ending ends with; returns the listing's notifications by kind and cost.
pub(crate) async fn check(
    stack: &Stack,
    l: &Listing,
    report: &mut Report,
    name: &str,
) -> anyhow::Result<(BTreeMap<String, i64>, HistoryCost)> {
    let t = load::Target {
        sell_window_id: l.sw.clone(),
        product_id: l.p.clone(),
        workflow_id: l.workflow_id.clone(),
    };
    let c = reserve::check_listing(stack, &t).await?;
    if !c.consistent || c.oversold {
        report.fail(format!(
            "endings/{name}: figures disagree or oversold: {c:?}"
        ));
    }
    // The books against the provider's ledger of what the bench sent.
    let scope = sellwindow_testkit::books::Scope::Listing {
        sell_window_id: l.sw.clone(),
        product_id: l.p.clone(),
    };
    let books = sellwindow_testkit::books::check(
        stack.store.pool(),
        &stack.provider.ledger,
        &scope,
        Duration::from_secs(120),
    )
    .await;
    if let Err(e) = books {
        report.fail(format!("endings/{name}: the books do not balance: {e}"));
    }
    let notes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT kind, COUNT(*) FROM notifications WHERE sell_window_id = $1 AND product_id = $2 GROUP BY kind",
    )
    .bind(&l.sw)
    .bind(&l.p)
    .fetch_all(stack.store.pool())
    .await?;
    let cost =
        sellwindow_api::history::cost(&stack.client, &stack.cfg.temporal_namespace, &l.workflow_id)
            .await?;
    if cost.terminated
        || cost.events_per_run.iter().any(|n| *n > 10_240)
        || cost.largest_payload > 512 * 1024
    {
        report.fail(format!(
            "endings/{name}: outside Temporal's limits: {cost:?}"
        ));
    }
    Ok((notes.into_iter().collect(), cost))
}

fn expect(report: &mut Report, name: &str, notes: &BTreeMap<String, i64>, kind: &str, n: u64) {
    if notes.get(kind).copied().unwrap_or(0) != n as i64 {
        report.fail(format!(
            "endings/{name}: {} {kind} notifications, {n} expected",
            notes.get(kind).copied().unwrap_or(0)
        ));
    }
}

pub async fn run(stack: &Stack, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.int("orders", if args.smoke { 200 } else { 100_000 })?;
    let slow = if cfg!(debug_assertions) { 3.0 } else { 1.0 };
    let margin = if args.smoke { 6.0 } else { 20.0 };
    // Enough for reserving (≥ 1,000/s), payment rows (≥ 2,000/s) and callbacks (≥ 300/s).
    let time_for = |paid: u64| {
        let work = n as f64 / 1000.0 + n as f64 / 2000.0 + paid as f64 / 300.0;
        Duration::from_secs_f64(margin + slow * work * 1.5)
    };
    println!("\nendings: each ending of a listing with {n} orders");
    let mut endings = Vec::new();

    // 1. Everything paid, then the admin cancels: N cancelled, N refunded.
    let l = listing(
        stack,
        "cancel",
        n as u32,
        1,
        false,
        Duration::from_secs(24 * 3600),
    )
    .await?;
    reserve_all(stack, &l, n, "end-cancel").await?;
    confirm(stack, &l, n).await?;
    pay(stack, &l, n as usize).await?;
    let t0 = Instant::now();
    let api = stack.admin();
    api.admin()
        .cancel_sell_window(ApiClient::req(
            pb::CancelSellWindowRequest {
                sell_window_id: l.sw.clone(),
            },
            &api.admin_token(),
        ))
        .await?;
    let call = t0.elapsed().as_secs_f64();
    let refunded = "SELECT COUNT(*) FROM payments WHERE sell_window_id = $1 AND product_id = $2 AND status = 'REFUNDED'";
    let seconds = until_count(stack, refunded, &l, n as i64, t0).await?;
    let (notes, cost) = check(stack, &l, report, "cancel").await?;
    for kind in ["order_cancelled", "payment_refunded"] {
        expect(report, "cancel", &notes, kind, n);
    }
    endings.push(Ending {
        name: "admin cancel, every order paid".into(),
        orders: n,
        seconds,
        detail: BTreeMap::from([("cancel_call_seconds".into(), call)]),
        notifications: notes,
        cost,
    });

    // 2. CANCEL_AND_REFUND, half paid: at close N/2 expire, N/2 are cancelled and refunded.
    let l = listing(stack, "refund", n as u32, n as u32, true, time_for(n / 2)).await?;
    reserve_all(stack, &l, n, "end-refund").await?;
    confirm(stack, &l, n).await?;
    pay(stack, &l, (n / 2) as usize).await?;
    let t0 = wait_close(&l).await;
    let seconds = until_phase(stack, &l, "CANCELLED", t0).await?;
    let (notes, cost) = check(stack, &l, report, "refund").await?;
    expect(report, "refund", &notes, "payment_refunded", n / 2);
    expect(report, "refund", &notes, "order_expired", n - n / 2);
    endings.push(Ending {
        name: "close, CANCEL_AND_REFUND, half paid".into(),
        orders: n,
        seconds,
        detail: BTreeMap::new(),
        notifications: notes,
        cost,
    });

    // 3. Never confirmed: at close every order is cancelled.
    let l = listing(stack, "unformed", n as u32, n as u32, false, time_for(0)).await?;
    reserve_all(stack, &l, n, "end-unformed").await?;
    let t0 = wait_close(&l).await;
    let seconds = until_phase(stack, &l, "FAILED", t0).await?;
    let (notes, cost) = check(stack, &l, report, "unformed").await?;
    expect(report, "unformed", &notes, "order_cancelled", n);
    endings.push(Ending {
        name: "close, never confirmed".into(),
        orders: n,
        seconds,
        detail: BTreeMap::new(),
        notifications: notes,
        cost,
    });

    // 4. Confirm, all paid, close, production, the last step ships everything.
    let l = listing(stack, "produce", n as u32, 1, false, time_for(n)).await?;
    reserve_all(stack, &l, n, "end-produce").await?;
    let confirm_seconds = confirm(stack, &l, n).await?;
    let pay_seconds = pay(stack, &l, n as usize).await?;
    let t0 = wait_close(&l).await;
    let produce_seconds = until_phase(stack, &l, "IN_PRODUCTION", t0).await?;
    let steps: Vec<(String, String)> = sqlx::query_as(
        "SELECT s.id, s.work_order_id FROM work_steps s JOIN work_orders w ON w.id = s.work_order_id \
         WHERE w.sell_window_id = $1 AND w.product_id = $2 ORDER BY s.position",
    )
    .bind(&l.sw)
    .bind(&l.p)
    .fetch_all(stack.store.pool())
    .await?;
    let t0 = Instant::now();
    for (step, work_order) in &steps {
        api.admin()
            .complete_work_step(ApiClient::req(
                pb::CompleteWorkStepRequest {
                    work_order_id: work_order.clone(),
                    step_id: step.clone(),
                },
                &api.admin_token(),
            ))
            .await?;
    }
    let ship_seconds = until_phase(stack, &l, "SHIPPED", t0).await?;
    let (notes, cost) = check(stack, &l, report, "produce").await?;
    for kind in ["payment_link", "payment_received", "shipped"] {
        expect(report, "produce", &notes, kind, n);
    }
    endings.push(Ending {
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
    });

    println!(
        "\n| ending | orders | seconds | detail | runs | longest run (events) | largest payload |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|");
    for e in &endings {
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
    report.endings = endings;
    Ok(())
}
