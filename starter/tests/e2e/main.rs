//! End-to-end tests: a real Temporal dev server, a real database, the worker, and the real gRPC
//! and HTTP servers on free ports. Short durations stand in for days.

mod helpers;

mod faults;
mod security;

use helpers::spawn_app;
use sellwindow_domain::{ProductId, SellWindowId};
use std::time::Duration;
use tonic::Code;

fn names(events: &[sellwindow_api::pb::Event]) -> Vec<String> {
    events.iter().map(|e| e.name.clone()).collect()
}

/// The workflow decides before its activities write: wait until the log shows `name`.
async fn wait_event(app: &helpers::TestApp, w: &sellwindow_api::pb::SellWindow, name: &str) {
    for _ in 0..200 {
        if names(&app.events(w).await).iter().any(|n| n == name) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "event {name} never appeared: {:?}",
        names(&app.events(w).await)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn main_flow_runs_end_to_end_and_logs_the_seed_events_in_order() {
    let app = spawn_app().await;
    let product = app.product(1500).await;
    let w = app
        .window(&product, 2, 4, Duration::from_secs(12), 60)
        .await;
    let a = app.reserve(&w, "alice", 1, "a-1").await.unwrap();
    assert_eq!(a.status, "RESERVED");
    // Confirming before the threshold is a precondition failure and changes nothing.
    assert_eq!(
        app.confirm(&w).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    let b = app.reserve(&w, "bob", 2, "b-1").await.unwrap();
    let confirmed = app.confirm(&w).await.unwrap();
    assert_eq!(confirmed.payment_requested_orders, 2);
    // A second confirm returns the same batch.
    assert_eq!(app.confirm(&w).await.unwrap().batch_id, confirmed.batch_id);

    for (o, ev) in [(&a, "evt-a"), (&b, "evt-b")] {
        let o = app.payment_of(&o.id).await;
        assert_eq!(o.status, "PAYMENT_REQUESTED");
        assert_eq!(app.pay(&o, "succeeded", ev).await, 200);
    }
    let done = app
        .api
        .wait_for(&w.id, Duration::from_secs(40), |w| {
            w.listings[0].phase == "IN_PRODUCTION"
        })
        .await
        .unwrap();
    wait_event(&app, &w, "production.started").await;
    let l = &done.listings[0];
    assert_eq!(
        (l.sold_qty, l.reserved_qty, l.paid_qty, l.final_paid_qty),
        (3, 0, 3, 3)
    );
    assert_eq!(
        (
            l.quota_status.as_str(),
            l.threshold_status.as_str(),
            l.batch_status.as_str()
        ),
        ("CLOSED", "REACHED", "CONFIRMED")
    );

    // Rows: orders paid, payments succeeded, batch target, work order and steps.
    for id in [&a.id, &b.id] {
        assert_eq!(app.order(id).await.status, "PAID");
    }
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    assert_eq!(app.store.quota_check(&sw, &p).await.unwrap(), (3, 4, 3));
    let pays: Vec<String> =
        sqlx::query_scalar("SELECT status FROM payments WHERE sell_window_id = $1 ORDER BY id")
            .bind(&w.id)
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(pays, vec!["SUCCEEDED", "SUCCEEDED"]);
    let target: Option<i64> =
        sqlx::query_scalar("SELECT target_qty FROM batches WHERE sell_window_id = $1")
            .bind(&w.id)
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(target, Some(3));
    let wos = app.work_orders(&sw).await;
    assert_eq!(wos.len(), 1);
    assert_eq!(
        (
            wos[0].product_qty,
            wos[0].status.as_str(),
            wos[0].steps.len()
        ),
        (3, "READY", 2)
    );
    assert!(wos[0].steps.iter().all(|s| s.3 == "TODO"));

    // The seed's event sequence, exactly.
    let events = names(&app.events(&w).await);
    let expected = [
        "sell_window.created",
        "order.reserved",
        "order.reserved",
        "threshold.reached",
        "batch.confirmed",
        "payment.requested",
        "payment.requested",
        "payment.created",
        "payment.created",
        "payment.succeeded",
        "order.paid",
        "payment.succeeded",
        "order.paid",
        "sell_window.finalize_requested",
        "sell_window.finalized",
        "production.scheduled",
        "production.started",
    ];
    assert_eq!(events, expected);

    // The admin was told twice: threshold reached, production started.
    let notes = app.notifications(None, Some(&sw)).await;
    let admin: Vec<&str> = notes
        .iter()
        .filter(|n| n.recipient_kind == "ADMIN")
        .map(|n| n.kind.as_str())
        .collect();
    assert_eq!(admin, vec!["threshold_reached", "production_started"]);
    // Customers read amounts in major units: 1 unit at 1500 minor is TWD 15.00.
    let link = notes
        .iter()
        .find(|n| n.kind == "payment_link" && n.recipient_id == "alice")
        .expect("alice was asked to pay");
    assert!(
        link.message.contains("Please pay TWD 15.00 "),
        "{}",
        link.message
    );

    // Second diagram: the operators complete the steps; the last one ships.
    let admin_token = app.admin();
    for (i, s) in wos[0].steps.iter().enumerate() {
        let r = app
            .api
            .admin()
            .complete_work_step(sellwindow_testkit::ApiClient::req(
                sellwindow_api::pb::CompleteWorkStepRequest {
                    work_order_id: wos[0].id.clone(),
                    step_id: s.0.clone(),
                },
                &admin_token,
            ))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.production_completed, i == 1);
    }
    app.api
        .wait_for(&w.id, Duration::from_secs(20), |w| {
            w.listings[0].phase == "SHIPPED"
        })
        .await
        .unwrap();
    wait_event(&app, &w, "production.completed").await;
    let tail = names(&app.events(&w).await)[expected.len()..].to_vec();
    assert_eq!(
        tail,
        vec![
            "work_step.completed",
            "work_step.completed",
            "production.completed",
            "shipment.created",
            "shipment.created"
        ]
    );
    let shipped: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM shipments WHERE sell_window_id = $1")
            .bind(&w.id)
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert_eq!(shipped, 2);
    // Let the workflow complete, then keep its history for the replay test.
    tokio::time::sleep(Duration::from_secs(1)).await;
    app.record_history(&w, "main_flow").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_reservers_on_the_last_units_never_oversell() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 5, 30, Duration::from_secs(120), 60)
        .await;
    // 20 units go first; 50 customers then race for the last 10.
    for i in 0..4 {
        app.reserve(&w, &format!("early-{i}"), 5, "k")
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for i in 0..50 {
        let api = app.api.clone();
        let (sw, p) = (w.id.clone(), product.id.clone());
        tasks.push(tokio::spawn(async move {
            api.customer()
                .reserve_order(sellwindow_testkit::ApiClient::req(
                    sellwindow_api::pb::ReserveOrderRequest {
                        sell_window_id: sw,
                        product_id: p,
                        qty: 1,
                        idempotency_key: format!("race-{i}"),
                    },
                    &api.customer_token(&format!("racer-{i}")),
                ))
                .await
        }));
    }
    let (mut won, mut refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(_) => won += 1,
            Err(s) if s.code() == Code::ResourceExhausted => refused += 1,
            Err(s) => panic!("a reserver got neither an order nor RESOURCE_EXHAUSTED: {s:?}"),
        }
    }
    assert_eq!((won, refused), (10, 40));
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    assert_eq!(app.store.quota_check(&sw, &p).await.unwrap(), (30, 30, 30));
    let live = app.listing_agrees(&w).await;
    assert_eq!((live.sold_qty, live.quota_status.as_str()), (30, "CLOSED"));
    // One more is refused too.
    assert_eq!(
        app.reserve(&w, "late", 1, "late").await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_and_bad_tokens_are_refused_with_the_right_code_and_retries_return_the_first_answer()
 {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 3, Duration::from_secs(120), 60)
        .await;
    assert_eq!(
        app.reserve(&w, "c", 0, "k0").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut unknown = w.clone();
    unknown.id = "sw-nope".into();
    assert_eq!(
        app.reserve(&unknown, "c", 1, "k1")
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    // No token; a customer on an admin call.
    let no_token = app
        .api
        .customer()
        .reserve_order(sellwindow_api::pb::ReserveOrderRequest {
            sell_window_id: w.id.clone(),
            product_id: product.id.clone(),
            qty: 1,
            idempotency_key: "x".into(),
        })
        .await;
    assert_eq!(no_token.unwrap_err().code(), Code::Unauthenticated);
    let as_customer = app
        .api
        .admin()
        .confirm_batch(sellwindow_testkit::ApiClient::req(
            sellwindow_api::pb::ConfirmBatchRequest {
                sell_window_id: w.id.clone(),
                product_id: product.id.clone(),
            },
            &app.api.customer_token("c"),
        ))
        .await;
    assert_eq!(as_customer.unwrap_err().code(), Code::PermissionDenied);
    // Idempotency: the same key gives the same order; a different request under it is refused.
    let first = app.reserve(&w, "c", 2, "same").await.unwrap();
    assert_eq!(app.reserve(&w, "c", 2, "same").await.unwrap().id, first.id);
    assert_eq!(
        app.reserve(&w, "c", 1, "same").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    // Over the cap.
    assert_eq!(
        app.reserve(&w, "d", 2, "d").await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    // Someone else's order.
    let other = app
        .api
        .customer()
        .get_order(sellwindow_testkit::ApiClient::req(
            sellwindow_api::pb::GetOrderRequest {
                order_id: first.id.clone(),
            },
            &app.api.customer_token("d"),
        ))
        .await;
    assert_eq!(other.unwrap_err().code(), Code::PermissionDenied);
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    assert_eq!(app.store.quota_check(&sw, &p).await.unwrap(), (2, 3, 2));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_are_verified_and_a_replayed_event_is_applied_once() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 3, Duration::from_secs(120), 60)
        .await;
    let o = app.reserve(&w, "c", 1, "k").await.unwrap();
    app.confirm(&w).await.unwrap();
    let o = app.payment_of(&o.id).await;
    let now = sellwindow_api::convert::now_ms().0 / 1000;
    let body = serde_json::json!({"event_id": "e-1", "payment_id": o.payment_id, "order_id": o.id, "outcome": "succeeded", "occurred_at": now});
    assert_eq!(app.callback(&body, "wrong-secret", now).await, 401);
    assert_eq!(
        app.callback(&body, &app.cfg.callback_secret, now - 3600)
            .await,
        401
    );
    let mut unknown = body.clone();
    unknown["payment_id"] = "pay-unknown".into();
    assert_eq!(
        app.callback(&unknown, &app.cfg.callback_secret, now).await,
        404
    );
    assert_eq!(app.order(&o.id).await.status, "PAYMENT_REQUESTED");
    assert_eq!(
        app.callback(&body, &app.cfg.callback_secret, now).await,
        200
    );
    assert_eq!(
        app.callback(&body, &app.cfg.callback_secret, now).await,
        200
    );
    for _ in 0..50 {
        if app.order(&o.id).await.status == "PAID" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(app.order(&o.id).await.status, "PAID");
    let paid = names(&app.events(&w).await)
        .iter()
        .filter(|n| *n == "order.paid")
        .count();
    assert_eq!(paid, 1);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unpaid_order_expires_at_its_deadline_and_releases_its_units() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app.window(&product, 1, 2, Duration::from_secs(60), 2).await;
    let o = app.reserve(&w, "slow", 2, "k").await.unwrap();
    app.confirm(&w).await.unwrap();
    app.payment_of(&o.id).await;
    // No callback ever comes: the durable timer expires it.
    let open = app
        .api
        .wait_for(&w.id, Duration::from_secs(20), |w| {
            w.listings[0].sold_qty == 0
        })
        .await
        .unwrap();
    assert_eq!(open.listings[0].quota_status, "OPEN");
    wait_event(&app, &w, "order.expired").await;
    assert_eq!(app.order(&o.id).await.status, "EXPIRED");
    // The freed units can be reserved again, straight into payment.
    let again = app.reserve(&w, "fast", 2, "k").await.unwrap();
    assert_eq!(again.status, "PAYMENT_REQUESTED");
    assert!(names(&app.events(&w).await).contains(&"order.expired".to_string()));
    app.record_history(&w, "deadline_expiry").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_window_never_confirmed_fails_at_close_and_cancels_every_order() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 5, 10, Duration::from_secs(6), 60)
        .await;
    let o = app.reserve(&w, "c", 1, "k").await.unwrap();
    app.api
        .wait_for(&w.id, Duration::from_secs(30), |w| {
            w.listings[0].phase == "FAILED"
        })
        .await
        .unwrap();
    wait_event(&app, &w, "sell_window.failed").await;
    assert_eq!(app.order(&o.id).await.status, "CANCELLED");
    let ev = names(&app.events(&w).await);
    assert_eq!(
        ev,
        vec![
            "sell_window.created",
            "order.reserved",
            "sell_window.finalize_requested",
            "order.cancelled",
            "sell_window.failed"
        ]
    );
    // Reserving after close is refused.
    assert_eq!(
        app.reserve(&w, "late", 1, "k").await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    app.record_history(&w, "window_failed").await;
    app.stop().await;
}
/// `scripts/run.sh` plays this demo: every scenario in it must still finish, books balanced.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_demo_the_run_script_plays_finishes_every_scenario() {
    let app = spawn_app().await;
    // The app's client plays the provider whose ledger the books are checked against.
    let api = app.api.clone();
    let demo = async {
        sellwindow_testkit::demo::run(&api, &app.cfg.temporal_ui_url, "default").await?;
        sellwindow_testkit::demo::run_failing(&api).await?;
        sellwindow_testkit::demo::run_expiries_and_refunds(&api).await
    };
    demo.await.expect("the demo");
    app.books_balance().await;
    app.stop().await;
}
mod books_check;
mod branches;
mod browser;
mod contract;
mod endings;
mod fences;
mod money;
mod scale;
mod scaleout;
mod signals;
mod tls;
mod versioning;
mod webdriver;
