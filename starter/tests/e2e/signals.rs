//! What the listing's workflow hears of reservations (progress signals) is a convenience,
//! never a condition: a signal repeated, out of order, lost, or sent while no worker runs
//! changes nothing that matters. The threshold is announced once, by the transaction that
//! reached it; confirm asks the row, not the workflow's copy; the workflow catches up.

use crate::helpers::{AppOptions, HUNG, Proc, TestApp, spawn_app_with};
use sellwindow_api::pb;
use sellwindow_domain::{Figures, Progress};
use std::time::Duration;

/// The row's figures now, as a signal would carry them.
async fn row_figures(app: &TestApp, w: &pb::SellWindow) -> Figures {
    let (version, sold, reserved, paid, status): (i64, i64, i64, i64, String) = sqlx::query_as(
        "SELECT q.version, q.sold_qty, c.reserved_qty, c.paid_qty, c.status FROM sell_window_quota q \
         JOIN counters c ON c.sell_window_id = q.sell_window_id AND c.product_id = q.product_id \
         WHERE q.sell_window_id = $1",
    )
    .bind(&w.id)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    Figures {
        version: version as u64,
        sold: sold as u32,
        reserved: reserved as u32,
        paid: paid as u32,
        threshold_reached: status == "REACHED",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_threshold_is_announced_once_whatever_the_progress_signals_do() {
    let app = spawn_app_with(AppOptions {
        no_in_process_worker: true,
        ..AppOptions::default()
    })
    .await;
    let mut worker = Proc::worker(&app);
    let product = app.product(100).await;
    let w = app
        .window(&product, 6, 100, Duration::from_secs(120), 60)
        .await;
    app.reserve(&w, "early", 2, "k").await.unwrap();
    let stale = Progress {
        figures: row_figures(&app, &w).await,
        next_due: None,
    };
    app.listing_agrees(&w).await;
    // Lost: the signals of the reservations that reach the threshold are never sent, and the
    // worker dies right after them.
    app.drop_progress_signals(true);
    let racers: Vec<_> = (0..12)
        .map(|c| {
            let (api, w) = (app.api.clone(), w.clone());
            tokio::spawn(async move {
                let token = api.customer_token(&format!("racer-{c}"));
                api.customer()
                    .reserve_order(sellwindow_testkit::ApiClient::req(
                        pb::ReserveOrderRequest {
                            sell_window_id: w.id.clone(),
                            product_id: w.listings[0].product_id.clone(),
                            qty: 1,
                            idempotency_key: "k".into(),
                        },
                        &token,
                    ))
                    .await
                    .expect("a racer's reservation")
            })
        })
        .collect();
    for r in racers {
        r.await.unwrap();
    }
    worker.kill().await;
    let reached = row_figures(&app, &w).await;
    assert!(reached.threshold_reached);
    // Repeated and out of order, sent while no worker runs: the latest, twice, then the stale.
    for p in [reached, reached, stale.figures] {
        let p = Progress {
            figures: p,
            next_due: None,
        };
        app.signal_progress(&w, p).await;
    }
    let mut worker = Proc::worker(&app);
    app.drop_progress_signals(false);
    let ev = app.event_counts(&w).await;
    assert_eq!(ev.get("threshold.reached"), Some(&1), "{ev:?}");
    let told = app
        .notifications(None, None)
        .await
        .into_iter()
        .filter(|n| n.kind == "threshold_reached")
        .count();
    assert_eq!(told, 1, "the admin is told once");
    // The workflow took the latest figures, whatever came after them.
    let live = app.listing_agrees(&w).await;
    assert_eq!(
        (live.sold_qty, live.threshold_status.as_str()),
        (14, "REACHED")
    );
    // A stale signal now (an API process far behind) changes nothing either.
    app.signal_progress(&w, stale).await;
    assert_eq!(app.listing_agrees(&w).await.sold_qty, 14);
    let confirmed = app.confirm(&w).await.unwrap();
    assert_eq!(confirmed.payment_requested_orders, 13);
    worker.kill().await;
    app.stop().await;
}

/// Confirm is decided on the row: with every signal of the reservations lost, the workflow's
/// own copy says the threshold is far off, and the confirm still goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_confirm_asks_the_row_not_the_workflows_copy_of_the_figures() {
    let app = spawn_app_with(AppOptions::default()).await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 3, 10, Duration::from_secs(120), 60)
        .await;
    // The listing's first write (its inbox, read at start) has answered: from here on only a
    // signal could bring it the reservations' figures.
    app.until("the listing's first write", HUNG, || async {
        let cost = app.history_cost(&w.listings[0].workflow_id).await;
        let events = app.run_event_names(&w).await;
        (cost.activities > 0 && events.iter().any(|e| e == "ActivityTaskCompleted")).then_some(())
    })
    .await;
    app.drop_progress_signals(true);
    for c in ["a", "b", "c"] {
        app.reserve(&w, c, 1, "k").await.unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        app.workflow_figures(&w).await.reserved_qty,
        0,
        "no signal arrived"
    );
    let confirmed = app
        .confirm(&w)
        .await
        .expect("the row reached the threshold");
    assert_eq!(confirmed.payment_requested_orders, 3);
    // The fence's answer brought the workflow the row's figures.
    let live = app.listing_agrees(&w).await;
    assert_eq!(live.reserved_qty, 3);
    app.stop().await;
}
