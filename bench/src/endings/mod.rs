//! `bench endings`: every ending of one big listing, each on a listing of its own with N orders
//! (100,000 by default): the admin cancels after everything is paid (N refunds); close with
//! `CANCEL_AND_REFUND` and half paid (N/2 expire, N/2 refunds); close without a confirm (N
//! cancelled); and confirm (N payment requests) → everything paid → close → production → the
//! last work step (N shipments). Each is timed from the moment it starts to its last write,
//! and checked: the figures the same in the database and the workflow, the books balanced,
//! each customer told once per change, no run of the listing past 10,240 history events, no
//! payload past 512 KB, never terminated. Not a test (it takes minutes); the e2e tests in
//! `starter/tests/e2e/endings.rs` do the same at a few hundred orders in CI.

mod cases;

pub use cases::run;

use crate::check;
use crate::finalize::pay_all;
use crate::load::{self, LoadSpec};
use crate::report::Report;
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

impl Listing {
    pub fn target(&self) -> load::Target {
        load::Target {
            sell_window_id: self.sw.clone(),
            product_id: self.p.clone(),
            workflow_id: self.workflow_id.clone(),
        }
    }
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

/// How long a wait may see no progress before it gives up (a listing whose write keeps
/// failing never gets there).
const STALL: Duration = Duration::from_secs(300);

/// The newest event of the listing's window: it moves while the listing's writes go on, also
/// while a count waited on does not (a phase changes once, after every sweep of a close).
async fn latest_event(stack: &Stack, l: &Listing) -> anyhow::Result<Option<i64>> {
    Ok(
        sqlx::query_scalar("SELECT MAX(seq) FROM events WHERE sell_window_id = $1")
            .bind(&l.sw)
            .fetch_one(stack.store.pool())
            .await?,
    )
}

/// Waits until the count reaches `want`; returns the seconds it took from `since`. Every 30 s
/// it says where it is and what Temporal says of the listing; it gives up after [`STALL`]
/// without progress (neither the count nor the listing's events moving).
pub(crate) async fn until_count(
    stack: &Stack,
    sql: &str,
    l: &Listing,
    want: i64,
    since: Instant,
) -> anyhow::Result<f64> {
    let (mut last, mut moved) = (-1, Instant::now());
    let mut last_event = latest_event(stack, l).await?;
    let mut report_at = Instant::now() + Duration::from_secs(30);
    loop {
        let got = count(stack, sql, l).await?;
        if got >= want {
            break;
        }
        if got != last {
            (last, moved) = (got, Instant::now());
        }
        if moved.elapsed() > STALL || Instant::now() > report_at {
            let event = latest_event(stack, l).await?;
            if event != last_event {
                (last_event, moved) = (event, Instant::now());
            }
            let why = crate::runs::diagnose(stack, &l.workflow_id).await;
            anyhow::ensure!(
                moved.elapsed() <= STALL,
                "no progress for {} s: {got} of {want} ({sql}); {why}",
                STALL.as_secs()
            );
            println!("  still waiting: {got} of {want} ({sql}); {why}");
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

pub(crate) async fn reserve_all(
    stack: &Stack,
    l: &Listing,
    n: u64,
    tag: &str,
) -> anyhow::Result<f64> {
    let clients = stack.connections(256, 32).await?;
    let spec = LoadSpec {
        targets: vec![l.target()],
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
    let c = check::check_listing(stack, &l.target()).await?;
    if c.oversold {
        report.fail(format!("endings/{name}: OVERSOLD: {c:?}"));
    }
    if !c.consistent {
        report.fail(check::disagreement(&format!("endings/{name}"), &c));
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

pub(crate) fn expect(
    report: &mut Report,
    name: &str,
    notes: &BTreeMap<String, i64>,
    kind: &str,
    n: u64,
) {
    if notes.get(kind).copied().unwrap_or(0) != n as i64 {
        report.fail(format!(
            "endings/{name}: {} {kind} notifications, {n} expected",
            notes.get(kind).copied().unwrap_or(0)
        ));
    }
}
