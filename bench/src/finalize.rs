//! `bench finalize`: one listing gets N orders (many customers at once, coalesced), the admin
//! confirms, and the bench times confirm → every order has its payment row; then most orders
//! are paid through signed provider callbacks (the rest stay unpaid and expire at close), and
//! the bench times close_at → `production.started` in the event log.
//!
//! close_at is fixed when the window is created, so it is set from an estimate of how long the
//! steps before it take (`--close-in` overrides it); payments still missing at close_at are
//! simply not sent, and the figures say so.

use crate::args::Args;
use crate::cpu;
use crate::load::{self, LoadResult, LoadSpec};
use crate::report::{self, Report};
use crate::reserve::{self, ListingCheck};
use crate::stack::Stack;
use sellwindow_api::pb;
use sellwindow_testkit::ApiClient;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Serialize)]
pub struct FinalizeResult {
    pub orders: u64,
    pub customers: usize,
    pub close_in_seconds: f64,
    pub reserve: LoadResult,
    /// The ConfirmBatch call itself.
    pub confirm_call_seconds: f64,
    /// Confirm → every order has a payment row.
    pub confirm_to_all_payments_seconds: f64,
    pub payment_requested_orders: u32,
    /// Callbacks sent (signed, through the HTTP endpoint), by HTTP status.
    pub callbacks: BTreeMap<String, u64>,
    pub pay_target: u64,
    /// First callback → the last order PAID in the database.
    pub pay_seconds: f64,
    pub paid_orders: u64,
    /// Whether close_at came before the payments were done.
    pub close_came_first: bool,
    /// close_at → event seen in the log (wall clock, polled every 10 ms).
    pub close_to_finalized_seconds: Option<f64>,
    pub close_to_production_started_seconds: Option<f64>,
    pub work_order_qty: Option<i64>,
    pub expired_orders: u64,
    pub check: ListingCheck,
    pub cpu_cores_close: BTreeMap<String, f64>,
    pub cpu_cores_confirm: BTreeMap<String, f64>,
    pub cpu_cores_pay: BTreeMap<String, f64>,
}

async fn count(stack: &Stack, sql: &str, sw: &str, p: &str) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(sql)
        .bind(sw)
        .bind(p)
        .fetch_one(stack.store.pool())
        .await?)
}

/// Polls `sql` (a count) until it reaches `want`, or `timeout`. Returns the time it took.
async fn wait_count(
    stack: &Stack,
    sql: &str,
    sw: &str,
    p: &str,
    want: i64,
    timeout: Duration,
) -> anyhow::Result<Option<f64>> {
    let t0 = Instant::now();
    loop {
        if count(stack, sql, sw, p).await? >= want {
            return Ok(Some(t0.elapsed().as_secs_f64()));
        }
        if t0.elapsed() > timeout {
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn now_ms() -> i64 {
    sellwindow_api::convert::now_ms().0
}

pub async fn run(stack: &Stack, args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.int("orders", if args.smoke { 200 } else { 10_000 })?;
    let customers = args.int("customers", if args.smoke { 32 } else { 256 })? as usize;
    let paid_percent = args.int("paid-percent", 90)?.min(100);
    let pay_target = n * paid_percent / 100;
    // Estimated from this machine's rates (release build): reserving ≥ 800/s, payment rows
    // ≥ 2,000/s, paid callbacks ≥ 150/s; plus a margin (debug builds: twice as slow).
    let slow = if cfg!(debug_assertions) { 2.0 } else { 1.0 };
    let margin = if args.smoke { 3.0 } else { 8.0 };
    let estimate =
        margin + slow * (n as f64 / 800.0 + n as f64 / 2000.0 + pay_target as f64 / 150.0) * 1.3;
    let close_in = args.float("close-in", estimate.ceil())?;
    let per_conn = args.int("clients-per-connection", 1)? as usize;
    println!(
        "\nfinalize: {n} orders from {customers} customers on one listing, confirm, pay {paid_percent}% by signed callbacks, close_at in {close_in:.0} s"
    );
    let windows = stack
        .listings(
            1,
            1,
            n as u32,
            Duration::from_secs_f64(close_in),
            Duration::from_secs(3600),
            "fin",
        )
        .await?;
    let w = &windows[0];
    let close_at = w
        .close_at
        .as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0);
    let targets = reserve::targets(&windows);
    let (sw, p) = (
        targets[0].sell_window_id.clone(),
        targets[0].product_id.clone(),
    );

    // 1. N reservations, many customers at once.
    let clients = stack.connections(customers, per_conn).await?;
    let spec = LoadSpec {
        targets: targets.clone(),
        customers_per_target: customers,
        warmup: Duration::ZERO,
        measure: Duration::from_secs_f64((close_in - 2.0).max(1.0)),
        tag: "fin".into(),
        stop_after: Some(n),
    };
    let reserve_load = load::run(&clients, &spec).await;
    println!(
        "  reserved {} orders in {:.2} s ({:.0}/s, p99 {:.0} ms){}",
        reserve_load.reservations_ok_total,
        reserve_load.total_seconds,
        reserve_load.reservations_per_sec,
        reserve_load.latency.p99_ms,
        if reserve_load.errors_total > 0 {
            format!(", errors {:?}", reserve_load.errors)
        } else {
            String::new()
        }
    );
    if reserve_load.errors_total > 0 {
        report.fail(format!(
            "finalize: {} reservations failed: {:?} (e.g. {:?})",
            reserve_load.errors_total, reserve_load.errors, reserve_load.error_samples
        ));
    }
    let reserved = count(
        stack,
        "SELECT COUNT(*) FROM orders WHERE sell_window_id = $1 AND product_id = $2",
        &sw,
        &p,
    )
    .await?;

    // 2. Confirm → every order has a payment row.
    let admin = stack.admin();
    let span = cpu::Span::start(stack.pids());
    let t0 = Instant::now();
    let confirmed = admin
        .admin()
        .confirm_batch(ApiClient::req(
            pb::ConfirmBatchRequest {
                sell_window_id: sw.clone(),
                product_id: p.clone(),
            },
            &admin.admin_token(),
        ))
        .await?
        .into_inner();
    let confirm_call = t0.elapsed().as_secs_f64();
    let all_payments = wait_count(
        stack,
        "SELECT COUNT(DISTINCT order_id) FROM payments WHERE sell_window_id = $1 AND product_id = $2",
        &sw,
        &p,
        reserved,
        Duration::from_secs(600),
    )
    .await?;
    let confirm_to_all = t0.elapsed().as_secs_f64();
    let cpu_confirm = span.stop();
    if all_payments.is_none() {
        report.fail(format!(
            "finalize: not every order got a payment row within 600 s of confirm ({reserved} orders)"
        ));
    }
    println!(
        "  confirm → all {reserved} payment rows: {confirm_to_all:.2} s (the ConfirmBatch call: {confirm_call:.2} s)"
    );

    // 3. Pay most orders through the provider callback endpoint, signed.
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, order_id FROM payments WHERE sell_window_id = $1 AND product_id = $2 ORDER BY order_id",
    )
    .bind(&sw)
    .bind(&p)
    .fetch_all(stack.store.pool())
    .await?;
    let to_pay: Vec<(String, String)> = rows.into_iter().take(pay_target as usize).collect();
    let span = cpu::Span::start(stack.pids());
    let t0 = Instant::now();
    let callbacks = pay_all(stack, &to_pay, close_at).await;
    let paid_sql = "SELECT COUNT(*) FROM orders WHERE sell_window_id = $1 AND product_id = $2 AND status = 'PAID'";
    let sent_ok = callbacks.get("200").copied().unwrap_or(0) as i64;
    let until_close = Duration::from_millis((close_at - now_ms() - 200).max(0) as u64);
    let _ = wait_count(stack, paid_sql, &sw, &p, sent_ok, until_close).await?;
    let pay_seconds = t0.elapsed().as_secs_f64();
    let cpu_pay = span.stop();
    let paid_before_close = count(stack, paid_sql, &sw, &p).await? as u64;
    let close_came_first = paid_before_close < to_pay.len() as u64;
    println!(
        "  paid {paid_before_close} of {} by callbacks in {pay_seconds:.2} s ({:.0}/s); callbacks by HTTP status {callbacks:?}",
        to_pay.len(),
        paid_before_close as f64 / pay_seconds.max(1e-3)
    );
    if close_came_first {
        println!(
            "  note: close_at came before every payment was applied (use a larger --close-in)"
        );
        println!(
            "  {}",
            crate::runs::diagnose(stack, &targets[0].workflow_id).await
        );
    }

    // 4. close_at → sell_window.finalized → production.started.
    let wait = close_at - now_ms();
    if wait > 0 {
        println!("  waiting {:.1} s for close_at", wait as f64 / 1000.0);
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let span = cpu::Span::start(stack.pids());
    let mut finalized = None;
    let mut started = None;
    let deadline = Instant::now() + Duration::from_secs(120);
    while started.is_none() && Instant::now() < deadline {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM events WHERE sell_window_id = $1 AND product_id = $2 \
             AND name IN ('sell_window.finalized', 'production.started')",
        )
        .bind(&sw)
        .bind(&p)
        .fetch_all(stack.store.pool())
        .await?;
        let since_close = (now_ms() - close_at) as f64 / 1000.0;
        if finalized.is_none() && names.iter().any(|x| x == "sell_window.finalized") {
            finalized = Some(since_close);
        }
        if names.iter().any(|x| x == "production.started") {
            started = Some(since_close);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu_close = span.stop();
    match started {
        Some(s) => println!(
            "  close_at → sell_window.finalized {:.2} s → production.started {s:.2} s",
            finalized.unwrap_or(f64::NAN)
        ),
        None => {
            report.fail(format!(
                "finalize: production.started did not appear within 120 s of close_at; {}",
                crate::runs::diagnose(stack, &targets[0].workflow_id).await
            ));
        }
    }
    let work_order_qty: Option<i64> = sqlx::query_scalar(
        "SELECT product_qty FROM work_orders WHERE sell_window_id = $1 AND product_id = $2",
    )
    .bind(&sw)
    .bind(&p)
    .fetch_optional(stack.store.pool())
    .await?;
    let paid_orders = count(stack, paid_sql, &sw, &p).await? as u64;
    let expired_orders = count(
        stack,
        "SELECT COUNT(*) FROM orders WHERE sell_window_id = $1 AND product_id = $2 AND status = 'EXPIRED'",
        &sw,
        &p,
    )
    .await? as u64;
    // Paid orders make a work order of exactly their units; none paid, none.
    let expected_work_order = (paid_orders > 0).then_some(paid_orders as i64);
    if work_order_qty != expected_work_order {
        report.fail(format!(
            "finalize: the work order is for {work_order_qty:?} units but {paid_orders} orders are paid"
        ));
    }
    if paid_orders + expired_orders != reserved as u64 {
        report.fail(format!(
            "finalize: {reserved} orders, but {paid_orders} paid + {expired_orders} expired after close"
        ));
    }
    let check = reserve::check_listing(stack, &targets[0]).await?;
    if check.oversold || check.sold > n as u32 {
        report.fail(format!(
            "finalize: OVERSOLD: sold {} over cap {}",
            check.sold, check.cap
        ));
    }
    if check.sold != check.held_by_orders {
        report.fail(format!(
            "finalize: quota row sold {} but orders hold {}",
            check.sold, check.held_by_orders
        ));
    }
    let result = FinalizeResult {
        orders: reserved as u64,
        customers,
        close_in_seconds: close_in,
        reserve: reserve_load,
        confirm_call_seconds: confirm_call,
        confirm_to_all_payments_seconds: confirm_to_all,
        payment_requested_orders: confirmed.payment_requested_orders,
        callbacks,
        pay_target: to_pay.len() as u64,
        pay_seconds,
        paid_orders,
        close_came_first,
        close_to_finalized_seconds: finalized,
        close_to_production_started_seconds: started,
        work_order_qty,
        expired_orders,
        check,
        cpu_cores_close: cpu_close,
        cpu_cores_confirm: cpu_confirm,
        cpu_cores_pay: cpu_pay,
    };
    report::print_finalize(&result);
    report.finalize = Some(result);
    Ok(())
}

/// Sends a signed `succeeded` callback for each payment, 64 at a time, stopping short of
/// `close_at`. Returns the count of answers by HTTP status.
pub async fn pay_all(
    stack: &Stack,
    payments: &[(String, String)],
    close_at: i64,
) -> BTreeMap<String, u64> {
    let owned: Vec<(String, String)> = payments.to_vec();
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(owned.into_iter().enumerate()));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (queue, provider) = (queue.clone(), stack.provider.clone());
        tasks.push(tokio::spawn(async move {
            let mut out: BTreeMap<String, u64> = BTreeMap::new();
            loop {
                let Some((_, (payment_id, order_id))) = queue.lock().await.next() else {
                    break;
                };
                if now_ms() >= close_at - 500 {
                    *out.entry("not sent (close_at)".into()).or_insert(0) += 1;
                    continue;
                }
                let event = format!("evt-bench-{payment_id}");
                let status = provider
                    .report(&payment_id, &order_id, "succeeded", &event)
                    .await;
                let status = match status {
                    0 => "error: unreachable".to_string(),
                    s => s.to_string(),
                };
                *out.entry(status).or_insert(0) += 1;
            }
            out
        }));
    }
    let mut all = BTreeMap::new();
    for t in tasks {
        if let Ok(m) = t.await {
            for (k, v) in m {
                *all.entry(k).or_insert(0) += v;
            }
        }
    }
    all
}
