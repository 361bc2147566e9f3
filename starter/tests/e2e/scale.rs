//! One hot listing past the server's per-run limits: more than 10,000 orders, a flood of
//! payment callbacks, history past the size at which the server suggests continuing as new,
//! more calls about orders than a run is let take. Nothing may be refused, the workflow hands
//! over to a new run each way it can (and says why), and every figure and the event log stay
//! exact.

use crate::helpers::{AppOptions, HUNG, spawn_app_with};
use sellwindow_domain::{ProductId, SellWindowId};
use sellwindow_workflows::listing::start::HandOver;
use std::time::Duration;

fn tuned(tuning: sellwindow_workflows::Tuning) -> AppOptions {
    AppOptions {
        tuning,
        ..AppOptions::default()
    }
}

/// Reservations never touch the workflow, but each commit is told to it (a progress signal):
/// a hot listing's runs hand over by signals, each carrying only figures and phases.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_listing_past_ten_thousand_orders_hands_over_by_signals_and_keeps_every_figure_exact()
{
    let app = spawn_app_with(tuned(sellwindow_workflows::Tuning {
        handover_signals: 4,
        ..Default::default()
    }))
    .await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 10, 20_000, Duration::from_secs(900), 3600)
        .await;
    app.reserve_many(&w, 200, 52).await;
    let total = 200 * 52;
    let live = app.listing_agrees(&w).await;
    assert_eq!((live.sold_qty, live.reserved_qty), (total, total));
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    assert_eq!(
        app.store.quota_check(&sw, &p).await.unwrap(),
        (total, 20_000, total)
    );
    let reserved = app.event_counts(&w).await.get("order.reserved").copied();
    assert_eq!(reserved, Some(total as usize));
    let reasons = app.hand_overs(&w).await;
    assert!(reasons.contains(&HandOver::Signals), "{reasons:?}");
    // What a run hands over does not grow with the listing's orders.
    let cost = app.history_cost(&w.listings[0].workflow_id).await;
    let carried = cost
        .carried_bytes_per_run
        .iter()
        .max()
        .copied()
        .unwrap_or(0);
    assert!(carried < 8_000, "a hand-over of {carried} bytes");
    app.books_balance().await;
    app.record_hand_over(&w, "handed_over_by_signals").await;
    app.stop().await;
}

/// A flood of payment callbacks on one listing. Callbacks grow history, so a run hands over
/// during the flood (here after a few hundred events); results that arrive while the run
/// hands over are carried to the next run. Each result must be applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_payment_callbacks_still_hands_over_and_applies_each_result_once() {
    let app = spawn_app_with(tuned(sellwindow_workflows::Tuning {
        handover_events: 400,
        ..Default::default()
    }))
    .await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 5_000, Duration::from_secs(900), 3600)
        .await;
    let n: usize = 1_200;
    app.reserve_many(&w, 100, (n / 100) as u32).await;
    app.confirm(&w).await.unwrap();
    let payments = |status: &'static str| {
        let (pool, sw) = (app.store.pool().clone(), w.id.clone());
        async move {
            sqlx::query_as::<_, (String, String)>(
                "SELECT id, order_id FROM payments WHERE sell_window_id = $1 AND status = $2",
            )
            .bind(sw)
            .bind(status)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let deadline = std::time::Instant::now() + HUNG;
    let open = loop {
        let open = payments("INIT").await;
        if open.len() == n {
            break open;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hung: {} of {n} payments opened",
            open.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // 16 senders at once, every callback answered 200.
    let open = std::sync::Arc::new(open);
    let mut senders = Vec::new();
    for s in 0..16 {
        let (provider, open) = (app.provider.clone(), open.clone());
        senders.push(tokio::spawn(async move {
            for (payment, order) in open.iter().skip(s).step_by(16) {
                let event = format!("evt-{payment}");
                let status = provider.report(payment, order, "succeeded", &event).await;
                assert_eq!(status, 200, "callback for {payment}");
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let deadline = std::time::Instant::now() + HUNG;
    loop {
        let live = app.workflow_figures(&w).await;
        let paid = payments("SUCCEEDED").await.len();
        if live.paid_qty as usize == n && paid == n {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hung: paid: workflow {} · payments {paid} of {n}",
            live.paid_qty
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let events = app.event_counts(&w).await;
    assert_eq!(events.get("order.paid").copied(), Some(n));
    assert_eq!(events.get("payment.succeeded").copied(), Some(n));
    let reasons = app.hand_overs(&w).await;
    assert!(reasons.contains(&HandOver::Events), "{reasons:?}");
    // The flood itself spanned a hand-over: more than one run applied its outcomes.
    let applying = app.runs_running(&w, "apply_inbox").await;
    assert!(
        applying >= 2,
        "the outcomes were applied in {applying} run(s)"
    );
    app.books_balance().await;
    app.record_hand_over(&w, "handed_over_by_events").await;
    app.stop().await;
}

/// Payment outcomes and sweeps grow a run's history by bytes: the run follows the server's
/// suggestion (history past a size) and hands over, or a busy listing would reach the
/// server's 50 MB limit and be terminated. The threshold is lowered here so a test-sized run
/// crosses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listing_hands_over_when_its_history_grows_past_the_suggested_size() {
    const SUGGEST_AT: u64 = 40_000;
    let app = spawn_app_with(AppOptions {
        suggest_continue_as_new_bytes: Some(SUGGEST_AT),
        tuning: sellwindow_workflows::Tuning {
            sweep_chunk: 10,
            ..Default::default()
        },
        ..AppOptions::default()
    })
    .await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 1_000, Duration::from_secs(900), 3600)
        .await;
    let n = 300;
    app.reserve_many(&w, 30, 10).await;
    app.confirm(&w).await.unwrap();
    let open: Vec<(String, String)> = app
        .until("every payment opened", HUNG, || async {
            let open: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, order_id FROM payments WHERE sell_window_id = $1 AND status = 'INIT'",
            )
            .bind(&w.id)
            .fetch_all(app.store.pool())
            .await
            .unwrap();
            (open.len() == n).then_some(open)
        })
        .await;
    for (payment, order) in &open {
        let status = app
            .provider
            .report(payment, order, "succeeded", &format!("evt-{payment}"))
            .await;
        assert_eq!(status, 200);
    }
    let live = app
        .until("every payment applied", HUNG, || async {
            let live = app.listing_agrees(&w).await;
            (live.paid_qty as usize == n).then_some(live)
        })
        .await;
    assert_eq!(live.reserved_qty, 0);
    let reasons = app.hand_overs(&w).await;
    assert!(reasons.contains(&HandOver::Suggested), "{reasons:?}");
    let cost = app.history_cost(&w.listings[0].workflow_id).await;
    assert!(!cost.terminated);
    app.books_balance().await;
    app.record_hand_over(&w, "handed_over_by_size").await;
    app.stop().await;
}

/// Calls about orders (a customer's cancel or payment retry, an admin's confirm) are updates,
/// which a run takes at most 2,000 of: past the tuned number a run hands over, and the calls
/// made meanwhile are answered by the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listing_hands_over_after_as_many_calls_about_orders_as_a_run_may_take() {
    let app = spawn_app_with(tuned(sellwindow_workflows::Tuning {
        handover_updates: 4,
        ..Default::default()
    }))
    .await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 100, Duration::from_secs(900), 3600)
        .await;
    let mut orders = Vec::new();
    for c in 0..6 {
        orders.push(app.reserve(&w, &format!("c{c}"), 1, "k").await.unwrap());
    }
    app.confirm(&w).await.unwrap();
    // Each retry of a still-open payment is an update answered with the same pay link.
    for (c, o) in orders.iter().enumerate() {
        let first = app
            .until("the payment link", HUNG, || async {
                let o = app.order(&o.id).await;
                (!o.payment_id.is_empty()).then_some(o)
            })
            .await;
        for _ in 0..2 {
            let again = app.retry_payment(&format!("c{c}"), &o.id).await.unwrap();
            assert_eq!(again.payment_id, first.payment_id);
        }
    }
    let reasons = app.hand_overs(&w).await;
    assert!(reasons.contains(&HandOver::Updates), "{reasons:?}");
    app.listing_agrees(&w).await;
    app.record_hand_over(&w, "handed_over_by_updates").await;
    app.stop().await;
}
