//! The saga's books and its endings: every refund goes to the attempt that was charged, a
//! verified callback is never lost for its shape, seed events are written for every payment
//! outcome, two handlers in one workflow task still let the listing finish, and a reservation
//! write that outlives its timeout can never commit. Each test ends with the books balanced:
//! charged minus refunded is the order's amount when it ends PAID, else zero.

use crate::helpers::{AppOptions, Proc, Terms, TestApp, spawn_app, spawn_app_with};
use sellwindow_api::pb;
use std::time::Duration;
use tonic::Code;

fn names(events: &[pb::Event]) -> Vec<String> {
    events.iter().map(|e| e.name.clone()).collect()
}

/// Reserves one unit for `customer`, confirms, and waits for the order's first pay link.
async fn confirmed_order(app: &TestApp, w: &pb::SellWindow, customer: &str) -> pb::Order {
    let o = app.reserve(w, customer, 1, "k").await.unwrap();
    app.confirm(w).await.unwrap();
    app.payment_of(&o.id).await
}

async fn wait_failures(app: &TestApp, order: &str, n: u32) {
    let what = format!("{n} failed payments of {order}");
    app.until(&what, Duration::from_secs(30), || async {
        (app.order(order).await.payment_failed_count == n).then_some(())
    })
    .await
}

/// The database agrees with the listing's workflow (asked itself), and the books balance
/// against the provider's ledger.
async fn settled(app: &TestApp, w: &pb::SellWindow) {
    app.listing_agrees(w).await;
    app.books_balance().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_reported_failed_then_succeeded_is_refunded_when_the_window_is_cancelled() {
    let app = spawn_app().await;
    let w = app.window_with(Terms::default()).await;
    let o = confirmed_order(&app, &w, "c").await;
    assert_eq!(app.pay(&o, "failed", "f-1").await, 200);
    wait_failures(&app, &o.id, 1).await;
    // The provider changes its mind: the same attempt succeeded after all.
    assert_eq!(app.pay(&o, "succeeded", "s-1").await, 200);
    app.wait_order_status(&o.id, "PAID").await;
    app.cancel_window(&w).await.unwrap();
    app.wait_order_status(&o.id, "CANCELLED").await;
    app.wait_payment_status(&o.payment_id, "REFUNDED").await;
    let ev = names(&app.events(&w).await);
    assert_eq!(
        ev.iter().filter(|e| *e == "payment.refunded").count(),
        1,
        "{ev:?}"
    );
    settled(&app, &w).await;
    app.record_history(&w, "failed_then_succeeded_refunded")
        .await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_attempt_that_paid_is_refunded_not_the_one_left_open() {
    let app = spawn_app().await;
    let w = app.window_with(Terms::default()).await;
    let first = confirmed_order(&app, &w, "c").await;
    assert_eq!(app.pay(&first, "failed", "f-1").await, 200);
    wait_failures(&app, &first.id, 1).await;
    let second = app.retry_payment("c", &first.id).await.unwrap();
    assert_ne!(second.payment_id, first.payment_id);
    // Attempt 1's late success pays the order; attempt 2, never charged, stays open.
    assert_eq!(app.pay(&first, "succeeded", "s-1").await, 200);
    app.wait_order_status(&first.id, "PAID").await;
    app.cancel_window(&w).await.unwrap();
    app.wait_order_status(&first.id, "CANCELLED").await;
    app.wait_payment_status(&first.payment_id, "REFUNDED").await;
    assert_ne!(app.payment_status(&second.payment_id).await, "REFUNDED");
    settled(&app, &w).await;
    // Attempt 2 is charged too, after the cancel: it is refunded on arrival.
    assert_eq!(app.pay(&second, "succeeded", "s-2").await, 200);
    app.wait_payment_status(&second.payment_id, "REFUNDED")
        .await;
    settled(&app, &w).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_refund_at_close_refunds_the_attempt_that_paid() {
    let app = spawn_app().await;
    let w = app
        .window_with(Terms {
            min: 2,
            max: 5,
            close_in: Duration::from_secs(12),
            policy: pb::MinPaidPolicy::CancelAndRefund,
            ..Terms::default()
        })
        .await;
    let first = app.reserve(&w, "c", 1, "k").await.unwrap();
    app.reserve(&w, "d", 1, "k").await.unwrap();
    app.confirm(&w).await.unwrap();
    let first = app.payment_of(&first.id).await;
    assert_eq!(app.pay(&first, "failed", "f-1").await, 200);
    wait_failures(&app, &first.id, 1).await;
    let second = app.retry_payment("c", &first.id).await.unwrap();
    assert_eq!(app.pay(&first, "succeeded", "s-1").await, 200);
    app.wait_order_status(&first.id, "PAID").await;
    // One unit paid of a threshold of two: at close everyone is refunded.
    app.until("the window to close", Duration::from_secs(40), || async {
        let l = app.api.sell_window(&w.id).await.unwrap().listings.remove(0);
        (l.phase == "CANCELLED").then_some(())
    })
    .await;
    app.wait_order_status(&first.id, "CANCELLED").await;
    app.wait_payment_status(&first.payment_id, "REFUNDED").await;
    assert_ne!(app.payment_status(&second.payment_id).await, "REFUNDED");
    settled(&app, &w).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_verified_callback_is_applied_whatever_else_its_body_carries() {
    let app = spawn_app().await;
    let w = app.window_with(Terms::default()).await;
    let o = confirmed_order(&app, &w, "c").await;
    let now = sellwindow_api::convert::now_ms().0 / 1000;
    // An RFC 3339 time and fields of the provider's own: still the payment.
    let body = serde_json::json!({
        "event_id": "evt-rfc3339", "payment_id": o.payment_id, "order_id": o.id,
        "outcome": "succeeded", "occurred_at": "2026-12-01T10:20:30Z",
        "provider_reference": "ch_123", "livemode": false,
        "amount_minor": o.amount.as_ref().unwrap().amount_minor,
        "currency": o.amount.as_ref().unwrap().currency,
    });
    assert_eq!(
        app.callback(&body, &app.cfg.callback_secret.clone(), now)
            .await,
        200
    );
    app.wait_order_status(&o.id, "PAID").await;
    settled(&app, &w).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_for_another_amount_is_recorded_never_counted_and_the_admin_is_told() {
    let app = spawn_app().await;
    let w = app.window_with(Terms::default()).await;
    let o = confirmed_order(&app, &w, "c").await;
    let now = sellwindow_api::convert::now_ms().0 / 1000;
    let amount = o.amount.clone().unwrap();
    let body = serde_json::json!({
        "event_id": "evt-short", "payment_id": o.payment_id, "order_id": o.id,
        "outcome": "succeeded", "occurred_at": now,
        "amount_minor": amount.amount_minor - 1, "currency": amount.currency,
    });
    assert_eq!(
        app.callback(&body, &app.cfg.callback_secret.clone(), now)
            .await,
        200
    );
    let alert = app
        .until("the admin's alert", Duration::from_secs(20), || async {
            let notes = app.notifications(None, None).await;
            notes
                .into_iter()
                .find(|n| n.kind == "payment_amount_mismatch")
        })
        .await;
    assert!(alert.message.contains(&o.payment_id), "{}", alert.message);
    let recorded: String =
        sqlx::query_scalar("SELECT COALESCE(last_error, '') FROM payments WHERE id = $1")
            .bind(&o.payment_id)
            .fetch_one(app.store.pool())
            .await
            .unwrap();
    assert!(recorded.contains("amount"), "{recorded}");
    assert_eq!(app.order(&o.id).await.status, "PAYMENT_REQUESTED");
    assert_eq!(app.payment_status(&o.payment_id).await, "INIT");
    // The right amount, later, pays it.
    assert_eq!(app.pay(&o, "succeeded", "evt-right").await, 200);
    app.wait_order_status(&o.id, "PAID").await;
    settled(&app, &w).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_expired_payment_is_logged_before_its_order_expires() {
    let app = spawn_app().await;
    // By the provider's word.
    let w = app.window_with(Terms::default()).await;
    let o = confirmed_order(&app, &w, "c").await;
    assert_eq!(app.pay(&o, "expired", "x-1").await, 200);
    app.wait_order_status(&o.id, "EXPIRED").await;
    let ev = names(&app.events(&w).await);
    let at = |name: &str| ev.iter().position(|e| e == name);
    assert!(
        at("payment.expired").is_some() && at("payment.expired") < at("order.expired"),
        "{ev:?}"
    );
    settled(&app, &w).await;
    // By the payment deadline, with no callback at all.
    let w = app
        .window_with(Terms {
            pay_secs: 2,
            ..Terms::default()
        })
        .await;
    let o = confirmed_order(&app, &w, "d").await;
    app.wait_order_status(&o.id, "EXPIRED").await;
    let ev = names(&app.events(&w).await);
    let at = |name: &str| ev.iter().position(|e| e == name);
    assert!(
        at("payment.expired").is_some() && at("payment.expired") < at("order.expired"),
        "{ev:?}"
    );
    assert_eq!(app.payment_status(&o.payment_id).await, "EXPIRED");
    settled(&app, &w).await;
    app.stop().await;
}

/// Updates sent while no worker runs reach the next worker in one workflow task: their
/// validators run before either handler, so both pass. The listing must still finish.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_cancels_in_one_workflow_task_still_let_the_listing_finish() {
    let app = spawn_app_with(AppOptions {
        no_in_process_worker: true,
        // Long enough for the calls to outlast the worker's restart.
        rpc_deadline: Some(Duration::from_secs(60)),
        ..AppOptions::default()
    })
    .await;
    let mut worker = Proc::worker(&app);
    let w = app
        .window_with(Terms {
            pay_secs: 1,
            ..Terms::default()
        })
        .await;
    app.reserve(&w, "c", 1, "k").await.unwrap();
    worker.kill().await;
    let calls: Vec<_> = (0..2)
        .map(|_| {
            let (api, w) = (app.api.clone(), w.clone());
            tokio::spawn(async move {
                api.admin()
                    .cancel_sell_window(sellwindow_testkit::ApiClient::req(
                        pb::CancelSellWindowRequest {
                            sell_window_id: w.id.clone(),
                        },
                        &api.admin_token(),
                    ))
                    .await
                    .map(|_| ())
                    .map_err(|s| s.code())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _worker = Proc::worker(&app);
    let mut codes = Vec::new();
    for c in calls {
        codes.push(c.await.unwrap());
    }
    codes.sort_by_key(|c| c.is_err());
    assert_eq!(codes, vec![Ok(()), Err(Code::FailedPrecondition)]);
    let handle = app
        .temporal
        .get_workflow_handle::<sellwindow_workflows::SellWindow>(&w.listings[0].workflow_id);
    app.until(
        "the listing's workflow to finish",
        Duration::from_secs(60),
        || async { handle.get_result(Default::default()).await.ok() },
    )
    .await;
    settled(&app, &w).await;
    app.record_history(&w, "two_cancels_in_one_task").await;
    app.stop().await;
}
