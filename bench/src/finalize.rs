//! `bench finalize`: one listing gets N orders (many customers at once), the admin
//! confirms, and the bench times confirm → every order has its payment row; then most orders
//! are paid through signed provider callbacks (the rest stay unpaid and expire at close), and
//! the bench times close_at → `production.started` in the event log.
//!
//! close_at is fixed when the window is created, so it is set from an estimate of how long the
//! steps before it take (`--close-in` overrides it); payments still missing at close_at are
//! simply not sent, and the figures say so.

use crate::args::Args;
use crate::check::{self, ListingCheck};
use crate::cpu;
use crate::load::{self, LoadResult, LoadSpec, Target};
use crate::report::{self, Report};
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

/// The listing and what the steps share.
struct Run<'a> {
    stack: &'a Stack,
    target: Target,
    close_at: i64,
}

impl Run<'_> {
    fn sw(&self) -> &str {
        &self.target.sell_window_id
    }

    fn p(&self) -> &str {
        &self.target.product_id
    }

    async fn count(&self, sql: &str) -> anyhow::Result<i64> {
        count(self.stack, sql, self.sw(), self.p()).await
    }
}

const PAID_SQL: &str =
    "SELECT COUNT(*) FROM orders WHERE sell_window_id = $1 AND product_id = $2 AND status = 'PAID'";

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
    let hour = Duration::from_secs(3600);
    let closing = Duration::from_secs_f64(close_in);
    let windows = stack.listings(1, 1, n as u32, closing, hour, "fin").await?;
    let close_at = windows[0]
        .close_at
        .as_ref()
        .map(|t| t.seconds * 1000 + i64::from(t.nanos) / 1_000_000)
        .unwrap_or(0);
    let run = Run {
        stack,
        target: check::targets(&windows).remove(0),
        close_at,
    };
    let clients = stack.connections(customers, per_conn).await?;
    let reserve_load = reserve(&run, &clients, customers, (n, close_in), report).await;
    let reserved = run
        .count("SELECT COUNT(*) FROM orders WHERE sell_window_id = $1 AND product_id = $2")
        .await?;
    let confirmed = confirm(&run, reserved, report).await?;
    let paid = pay(&run, pay_target).await?;
    let closed = close(&run, report).await?;
    let check = outcome(&run, n, reserved, &closed, report).await?;
    let result = FinalizeResult {
        orders: reserved as u64,
        customers,
        close_in_seconds: close_in,
        reserve: reserve_load,
        confirm_call_seconds: confirmed.call_seconds,
        confirm_to_all_payments_seconds: confirmed.to_all_seconds,
        payment_requested_orders: confirmed.payment_requested_orders,
        callbacks: paid.callbacks,
        pay_target: paid.target,
        pay_seconds: paid.seconds,
        paid_orders: closed.paid_orders,
        close_came_first: paid.close_came_first,
        close_to_finalized_seconds: closed.finalized,
        close_to_production_started_seconds: closed.started,
        work_order_qty: closed.work_order_qty,
        expired_orders: closed.expired_orders,
        check,
        cpu_cores_close: closed.cpu,
        cpu_cores_confirm: confirmed.cpu,
        cpu_cores_pay: paid.cpu,
    };
    report::print_finalize(&result);
    report.finalize = Some(result);
    Ok(())
}

/// 1. N reservations, many customers at once.
async fn reserve(
    run: &Run<'_>,
    clients: &[ApiClient],
    customers: usize,
    (n, close_in): (u64, f64),
    report: &mut Report,
) -> LoadResult {
    let spec = LoadSpec {
        targets: vec![run.target.clone()],
        customers_per_target: customers,
        warmup: Duration::ZERO,
        measure: Duration::from_secs_f64((close_in - 2.0).max(1.0)),
        tag: "fin".into(),
        stop_after: Some(n),
    };
    let r = load::run(clients, &spec).await;
    println!(
        "  reserved {} orders in {:.2} s ({:.0}/s, p99 {:.0} ms){}",
        r.reservations_ok_total,
        r.total_seconds,
        r.reservations_per_sec,
        r.latency.p99_ms,
        if r.errors_total > 0 {
            format!(", errors {:?}", r.errors)
        } else {
            String::new()
        }
    );
    if r.errors_total > 0 {
        report.fail(format!(
            "finalize: {} reservations failed: {:?} (e.g. {:?})",
            r.errors_total, r.errors, r.error_samples
        ));
    }
    r
}

struct Confirmed {
    call_seconds: f64,
    to_all_seconds: f64,
    payment_requested_orders: u32,
    cpu: BTreeMap<String, f64>,
}

/// 2. Confirm → every order has a payment row.
async fn confirm(run: &Run<'_>, reserved: i64, report: &mut Report) -> anyhow::Result<Confirmed> {
    let admin = run.stack.admin();
    let span = cpu::Span::start(run.stack.parts());
    let t0 = Instant::now();
    let request = pb::ConfirmBatchRequest {
        sell_window_id: run.sw().to_string(),
        product_id: run.p().to_string(),
    };
    let confirmed = admin
        .admin()
        .confirm_batch(ApiClient::req(request, &admin.admin_token()))
        .await?
        .into_inner();
    let call_seconds = t0.elapsed().as_secs_f64();
    let all_payments = wait_count(
        run.stack,
        "SELECT COUNT(DISTINCT order_id) FROM payments WHERE sell_window_id = $1 AND product_id = $2",
        run.sw(),
        run.p(),
        reserved,
        Duration::from_secs(600),
    )
    .await?;
    let to_all_seconds = t0.elapsed().as_secs_f64();
    let cpu = span.stop();
    if all_payments.is_none() {
        report.fail(format!(
            "finalize: not every order got a payment row within 600 s of confirm ({reserved} orders)"
        ));
    }
    println!(
        "  confirm → all {reserved} payment rows: {to_all_seconds:.2} s (the ConfirmBatch call: {call_seconds:.2} s)"
    );
    Ok(Confirmed {
        call_seconds,
        to_all_seconds,
        payment_requested_orders: confirmed.payment_requested_orders,
        cpu,
    })
}

struct Paid {
    callbacks: BTreeMap<String, u64>,
    target: u64,
    seconds: f64,
    close_came_first: bool,
    cpu: BTreeMap<String, f64>,
}

/// 3. Pay most orders through the provider callback endpoint, signed.
async fn pay(run: &Run<'_>, pay_target: u64) -> anyhow::Result<Paid> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, order_id FROM payments WHERE sell_window_id = $1 AND product_id = $2 ORDER BY order_id",
    )
    .bind(run.sw())
    .bind(run.p())
    .fetch_all(run.stack.store.pool())
    .await?;
    let to_pay: Vec<(String, String)> = rows.into_iter().take(pay_target as usize).collect();
    let span = cpu::Span::start(run.stack.parts());
    let t0 = Instant::now();
    let callbacks = pay_all(run.stack, &to_pay, run.close_at).await;
    let sent_ok = callbacks.get("200").copied().unwrap_or(0) as i64;
    let until_close = Duration::from_millis((run.close_at - now_ms() - 200).max(0) as u64);
    let _ = wait_count(run.stack, PAID_SQL, run.sw(), run.p(), sent_ok, until_close).await?;
    let seconds = t0.elapsed().as_secs_f64();
    let cpu = span.stop();
    let paid_before_close = run.count(PAID_SQL).await? as u64;
    let close_came_first = paid_before_close < to_pay.len() as u64;
    println!(
        "  paid {paid_before_close} of {} by callbacks in {seconds:.2} s ({:.0}/s); callbacks by HTTP status {callbacks:?}",
        to_pay.len(),
        paid_before_close as f64 / seconds.max(1e-3)
    );
    if close_came_first {
        println!(
            "  note: close_at came before every payment was applied (use a larger --close-in)"
        );
        println!(
            "  {}",
            crate::runs::diagnose(run.stack, &run.target.workflow_id).await
        );
    }
    Ok(Paid {
        callbacks,
        target: to_pay.len() as u64,
        seconds,
        close_came_first,
        cpu,
    })
}

struct Closed {
    finalized: Option<f64>,
    started: Option<f64>,
    paid_orders: u64,
    expired_orders: u64,
    work_order_qty: Option<i64>,
    cpu: BTreeMap<String, f64>,
}

/// 4. close_at → sell_window.finalized → production.started.
async fn close(run: &Run<'_>, report: &mut Report) -> anyhow::Result<Closed> {
    let wait = run.close_at - now_ms();
    if wait > 0 {
        println!("  waiting {:.1} s for close_at", wait as f64 / 1000.0);
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    let span = cpu::Span::start(run.stack.parts());
    let (mut finalized, mut started) = (None, None);
    let deadline = Instant::now() + Duration::from_secs(120);
    while started.is_none() && Instant::now() < deadline {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM events WHERE sell_window_id = $1 AND product_id = $2 \
             AND name IN ('sell_window.finalized', 'production.started')",
        )
        .bind(run.sw())
        .bind(run.p())
        .fetch_all(run.stack.store.pool())
        .await?;
        let since_close = (now_ms() - run.close_at) as f64 / 1000.0;
        if finalized.is_none() && names.iter().any(|x| x == "sell_window.finalized") {
            finalized = Some(since_close);
        }
        if names.iter().any(|x| x == "production.started") {
            started = Some(since_close);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let cpu = span.stop();
    match started {
        Some(s) => println!(
            "  close_at → sell_window.finalized {:.2} s → production.started {s:.2} s",
            finalized.unwrap_or(f64::NAN)
        ),
        None => report.fail(format!(
            "finalize: production.started did not appear within 120 s of close_at; {}",
            crate::runs::diagnose(run.stack, &run.target.workflow_id).await
        )),
    }
    let work_order_qty: Option<i64> = sqlx::query_scalar(
        "SELECT product_qty FROM work_orders WHERE sell_window_id = $1 AND product_id = $2",
    )
    .bind(run.sw())
    .bind(run.p())
    .fetch_optional(run.stack.store.pool())
    .await?;
    let expired = "SELECT COUNT(*) FROM orders WHERE sell_window_id = $1 AND product_id = $2 AND status = 'EXPIRED'";
    Ok(Closed {
        finalized,
        started,
        paid_orders: run.count(PAID_SQL).await? as u64,
        expired_orders: run.count(expired).await? as u64,
        work_order_qty,
        cpu,
    })
}

/// What must hold after close: a work order of exactly the paid units, every order paid or
/// expired, nothing oversold, the row, the orders and the workflow agreeing.
async fn outcome(
    run: &Run<'_>,
    n: u64,
    reserved: i64,
    c: &Closed,
    report: &mut Report,
) -> anyhow::Result<ListingCheck> {
    // Paid orders make a work order of exactly their units; none paid, none.
    let expected_work_order = (c.paid_orders > 0).then_some(c.paid_orders as i64);
    if c.work_order_qty != expected_work_order {
        report.fail(format!(
            "finalize: the work order is for {:?} units but {} orders are paid",
            c.work_order_qty, c.paid_orders
        ));
    }
    if c.paid_orders + c.expired_orders != reserved as u64 {
        report.fail(format!(
            "finalize: {reserved} orders, but {} paid + {} expired after close",
            c.paid_orders, c.expired_orders
        ));
    }
    let check = check::check_listing(run.stack, &run.target).await?;
    if check.oversold || check.sold > n as u32 {
        report.fail(format!(
            "finalize: OVERSOLD: sold {} over cap {}",
            check.sold, check.cap
        ));
    }
    if !check.consistent {
        report.fail(check::disagreement("finalize", &check));
    }
    Ok(check)
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
