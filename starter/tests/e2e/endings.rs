//! Every ending of a large listing, with the fan-outs cut small (a few dozen orders a chunk,
//! a hand-over every few hundred history events) so a test-sized listing goes through many
//! chunks and runs: admin cancel with refunds, CANCEL_AND_REFUND at close, a window that
//! never formed, and close → production → the last step → shipments. Each ends with every
//! figure exact in the database and in the workflow, each customer told once per change, the
//! books balanced, and the listing's runs within Temporal's limits (no run near 10,240 events,
//! no payload near 512 KB, activities growing with chunks, not orders, never terminated). The
//! same endings at 100,000 orders are `bench endings`.

use crate::helpers::{AppOptions, Terms, TestApp, spawn_app_with};
use sellwindow_api::pb;
use sellwindow_domain::{ProductId, SellWindowId};
use sellwindow_testkit::ApiClient;
use std::collections::BTreeMap;
use std::time::Duration;

const ORDERS: u32 = 400;
const CHUNK: u32 = 40;

/// Reserves `n` single units from `n / 4` customers, four each, concurrently.
async fn fill(app: &TestApp, w: &pb::SellWindow, n: u32) {
    app.reserve_many(w, n / 4, 4).await;
}

/// The open payments of a window, once `n` of them are open.
async fn open_payments(app: &TestApp, w: &pb::SellWindow, n: usize) -> Vec<(String, String)> {
    let what = format!("{n} payments to open");
    app.until(&what, Duration::from_secs(60), || async {
        let open: Vec<(String, String)> = sqlx::query_as(
            "SELECT id, order_id FROM payments WHERE sell_window_id = $1 AND status = 'INIT' ORDER BY id",
        )
        .bind(&w.id)
        .fetch_all(app.store.pool())
        .await
        .unwrap();
        (open.len() == n).then_some(open)
    })
    .await
}

/// Sends a signed success for each payment from 16 senders at once.
async fn pay(app: &TestApp, payments: &[(String, String)]) {
    let payments = std::sync::Arc::new(payments.to_vec());
    let mut senders = Vec::new();
    for s in 0..16 {
        let (provider, payments) = (app.provider.clone(), payments.clone());
        senders.push(tokio::spawn(async move {
            for (payment, order) in payments.iter().skip(s).step_by(16) {
                let event = format!("evt-{payment}");
                let status = provider.report(payment, order, "succeeded", &event).await;
                assert_eq!(status, 200, "callback for {payment}");
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
}

async fn wait_phase(app: &TestApp, w: &pb::SellWindow, phase: &str) {
    let what = format!("phase {phase}");
    app.until(&what, Duration::from_secs(120), || async {
        let l = app.api.sell_window(&w.id).await.unwrap().listings.remove(0);
        (l.phase == phase).then_some(())
    })
    .await
}

async fn notifications(app: &TestApp, w: &pb::SellWindow) -> BTreeMap<String, usize> {
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let mut m = BTreeMap::new();
    for n in app.notifications(None, Some(&sw)).await {
        *m.entry(n.kind).or_insert(0) += 1;
    }
    m
}

/// The listing's figures agree in the database and the workflow, the books balance, and its
/// runs stayed within Temporal's limits.
async fn ends_exact(app: &TestApp, w: &pb::SellWindow, figures: (u32, u32, u32)) {
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(w.listings[0].product_id.clone()).unwrap();
    let what = "the listing's last writes";
    app.until(what, Duration::from_secs(60), || async {
        let l = app.workflow_figures(w).await;
        let (sold, _, held) = app.store.quota_check(&sw, &p).await.unwrap();
        ((l.sold_qty, l.reserved_qty, l.paid_qty) == figures && sold == held && sold == l.sold_qty)
            .then_some(())
    })
    .await;
    let (reserved, paid): (i64, i64) = sqlx::query_as(
        "SELECT reserved_qty, paid_qty FROM counters WHERE sell_window_id = $1 AND product_id = $2",
    )
    .bind(&w.id)
    .bind(&w.listings[0].product_id)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!((reserved as u32, paid as u32), (figures.1, figures.2));
    app.books_balance().await;
    let cost = app.history_cost(&w.listings[0].workflow_id).await;
    assert!(!cost.terminated, "the listing was terminated: {cost:?}");
    assert!(
        cost.events_per_run.iter().all(|n| *n < 2_000),
        "a run grew long: {cost:?}"
    );
    assert!(
        cost.largest_payload < 64 * 1024,
        "a payload grew with the listing: {cost:?}"
    );
    // Writes grow with the chunks, not with the orders (one per order would be 400 here).
    assert!(
        cost.activities < ORDERS as usize,
        "{} activities for {ORDERS} orders: {cost:?}",
        cost.activities
    );
}

fn tuned() -> AppOptions {
    AppOptions {
        tuning: sellwindow_workflows::Tuning {
            sweep_chunk: CHUNK,
            handover_events: 300,
            ..Default::default()
        },
        ..AppOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_cancel_of_a_large_paid_listing_refunds_every_order_once_within_the_limits() {
    let app = spawn_app_with(tuned()).await;
    let w = app
        .window_with(Terms {
            max: ORDERS,
            close_in: Duration::from_secs(600),
            pay_secs: 600,
            ..Terms::default()
        })
        .await;
    fill(&app, &w, ORDERS).await;
    app.confirm(&w).await.unwrap();
    let open = open_payments(&app, &w, ORDERS as usize).await;
    pay(&app, &open).await;
    ends_exact(&app, &w, (ORDERS, 0, ORDERS)).await;
    app.cancel_window(&w).await.unwrap();
    ends_exact(&app, &w, (0, 0, 0)).await;
    let notes = notifications(&app, &w).await;
    for kind in [
        "payment_link",
        "payment_received",
        "order_cancelled",
        "payment_refunded",
    ] {
        assert_eq!(
            notes.get(kind).copied(),
            Some(ORDERS as usize),
            "{kind}: {notes:?}"
        );
    }
    let refunded = app
        .count(
            "SELECT COUNT(*) FROM payments WHERE sell_window_id = $1 AND status = 'REFUNDED' AND refunded_at IS NOT NULL",
            &w.id,
        )
        .await;
    assert_eq!(refunded, i64::from(ORDERS));
    app.record_hand_over(&w, "large_listing_cancelled").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn close_of_large_listings_fails_refunds_or_produces_and_ships_every_order_once() {
    let app = spawn_app_with(tuned()).await;
    let close_in = Duration::from_secs(40);
    let terms = |min, policy| Terms {
        min,
        max: ORDERS,
        close_in,
        pay_secs: 600,
        policy,
        ..Terms::default()
    };
    // Never confirmed; paid under the threshold with CANCEL_AND_REFUND; paid and produced.
    let unformed = app
        .window_with(terms(ORDERS, pb::MinPaidPolicy::Unspecified))
        .await;
    let refunded = app
        .window_with(terms(ORDERS, pb::MinPaidPolicy::CancelAndRefund))
        .await;
    let produced = app
        .window_with(terms(1, pb::MinPaidPolicy::Unspecified))
        .await;
    for w in [&unformed, &refunded, &produced] {
        fill(&app, w, ORDERS).await;
    }
    // The threshold of `refunded` is its cap, reached: confirm, then pay half.
    for w in [&refunded, &produced] {
        app.confirm(w).await.unwrap();
    }
    let open = open_payments(&app, &refunded, ORDERS as usize).await;
    pay(&app, &open[..open.len() / 2]).await;
    let open = open_payments(&app, &produced, ORDERS as usize).await;
    pay(&app, &open).await;
    ends_exact(&app, &produced, (ORDERS, 0, ORDERS)).await;

    wait_phase(&app, &unformed, "FAILED").await;
    ends_exact(&app, &unformed, (0, 0, 0)).await;
    assert_eq!(
        notifications(&app, &unformed)
            .await
            .get("order_cancelled")
            .copied(),
        Some(ORDERS as usize)
    );

    wait_phase(&app, &refunded, "CANCELLED").await;
    ends_exact(&app, &refunded, (0, 0, 0)).await;
    let notes = notifications(&app, &refunded).await;
    assert_eq!(
        notes.get("payment_refunded").copied(),
        Some(ORDERS as usize / 2)
    );
    assert_eq!(
        notes.get("order_expired").copied(),
        Some(ORDERS as usize / 2)
    );
    assert_eq!(
        notes.get("order_cancelled").copied(),
        Some(ORDERS as usize / 2)
    );

    wait_phase(&app, &produced, "IN_PRODUCTION").await;
    let sw = SellWindowId::parse(produced.id.clone()).unwrap();
    let work_order = app.work_orders(&sw).await.remove(0);
    assert_eq!(work_order.product_qty, ORDERS);
    for step in &work_order.steps {
        app.api
            .admin()
            .complete_work_step(ApiClient::req(
                pb::CompleteWorkStepRequest {
                    work_order_id: work_order.id.clone(),
                    step_id: step.0.clone(),
                },
                &app.admin(),
            ))
            .await
            .unwrap();
    }
    wait_phase(&app, &produced, "SHIPPED").await;
    ends_exact(&app, &produced, (ORDERS, 0, ORDERS)).await;
    let shipments = app
        .count(
            "SELECT COUNT(*) FROM shipments WHERE sell_window_id = $1",
            &produced.id,
        )
        .await;
    assert_eq!(shipments, i64::from(ORDERS));
    assert_eq!(
        notifications(&app, &produced).await.get("shipped").copied(),
        Some(ORDERS as usize)
    );
    app.record_hand_over(&produced, "large_listing_shipped")
        .await;
    app.record_hand_over(&refunded, "large_listing_refunded_under_threshold")
        .await;
    app.stop().await;
}
