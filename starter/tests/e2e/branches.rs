//! Every other branch of the seed and the rules the README's flow decides: failed and expired payments,
//! quota closing and reopening, customer and admin cancels, late payments, the finalize
//! outcomes, and the per-customer limit — each against the real parts.

use crate::helpers::{TestApp, spawn_app};
use sellwindow_api::pb;
use sellwindow_domain::SellWindowId;
use sellwindow_testkit::ApiClient;
use std::time::Duration;
use tonic::Code;

fn names(events: &[pb::Event]) -> Vec<String> {
    events.iter().map(|e| e.name.clone()).collect()
}

/// A one-listing window with every option.
async fn window_with(
    app: &TestApp,
    min: u32,
    max: u32,
    close_in: Duration,
    pay_secs: i64,
    limit: u32,
    policy: pb::MinPaidPolicy,
) -> pb::SellWindow {
    let product = app.product(100).await;
    let close_at = sellwindow_api::convert::now_ms().0 + close_in.as_millis() as i64;
    app.api
        .admin()
        .create_sell_window(ApiClient::req(
            pb::CreateSellWindowRequest {
                name: "branch window".into(),
                close_at: Some(sellwindow_api::convert::ts(close_at)),
                listings: vec![pb::ListingInput {
                    product_id: product.id.clone(),
                    min_qty: min,
                    max_qty: max,
                    payment_window: Some(prost_types::Duration {
                        seconds: pay_secs,
                        nanos: 0,
                    }),
                    per_customer_limit: limit,
                    min_paid_policy: policy as i32,
                }],
                request_id: String::new(),
            },
            &app.admin(),
        ))
        .await
        .unwrap()
        .into_inner()
}

async fn wait_status(app: &TestApp, order: &str, status: &str) -> pb::Order {
    for _ in 0..150 {
        let o = app.order(order).await;
        if o.status == status {
            return o;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "order {order} never became {status}: {:?}",
        app.order(order).await
    );
}

/// The listing's figures once its workflow agrees with its rows.
async fn counters(app: &TestApp, w: &pb::SellWindow) -> (u32, u32, u32, String) {
    let l = app.listing_agrees(w).await;
    (
        l.sold_qty,
        l.reserved_qty,
        l.paid_qty,
        l.quota_status.to_string(),
    )
}

/// The listing's rows agree with each other and with its workflow (asked itself), and the
/// books balance against the provider's ledger.
async fn db_agrees(app: &TestApp, w: &pb::SellWindow) {
    app.listing_agrees(w).await;
    app.books_balance().await;
}

async fn customer_call<T>(app: &TestApp, customer: &str, msg: T) -> tonic::Request<T> {
    ApiClient::req(msg, &app.api.customer_token(customer))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_payment_keeps_the_units_and_a_retry_can_still_pay() {
    let app = spawn_app().await;
    let w = window_with(
        &app,
        1,
        5,
        Duration::from_secs(120),
        60,
        0,
        pb::MinPaidPolicy::Unspecified,
    )
    .await;
    let o = app.reserve(&w, "c", 2, "k").await.unwrap();
    app.confirm(&w).await.unwrap();
    let first = app.payment_of(&o.id).await;
    assert_eq!(app.pay(&first, "failed", "f-1").await, 200);
    for _ in 0..100 {
        if app.order(&o.id).await.payment_failed_count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = app.order(&o.id).await;
    assert_eq!(
        (
            failed.status.as_str(),
            failed.payment_failed_count,
            failed.last_payment_error.as_str()
        ),
        ("PAYMENT_REQUESTED", 1, "card declined")
    );
    assert_eq!(counters(&app, &w).await, (2, 2, 0, "OPEN".into()));
    let notes = app.notifications(Some("c"), None).await;
    assert!(notes.iter().any(|n| n.kind == "payment_failed"));
    // A new pay link; the failed one no longer counts.
    let retried = app
        .api
        .customer()
        .retry_payment(
            customer_call(
                &app,
                "c",
                pb::RetryPaymentRequest {
                    order_id: o.id.clone(),
                },
            )
            .await,
        )
        .await
        .unwrap()
        .into_inner();
    assert_ne!(retried.payment_id, first.payment_id);
    assert!(retried.pay_url.contains(&retried.payment_id));
    assert_eq!(app.pay(&retried, "succeeded", "s-2").await, 200);
    wait_status(&app, &o.id, "PAID").await;
    let ev = names(&app.events(&w).await);
    let tail: Vec<&str> = ev
        .iter()
        .map(String::as_str)
        .skip_while(|n| *n != "payment.failed")
        .collect();
    assert_eq!(
        tail,
        [
            "payment.failed",
            "notification.requested",
            "payment.requested",
            "payment.created",
            "payment.succeeded",
            "order.paid"
        ]
    );
    db_agrees(&app, &w).await;
    app.record_history(&w, "payment_failed_then_retried").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_provider_expiry_releases_units_reopens_a_closed_quota_and_a_late_success_is_refunded() {
    let app = spawn_app().await;
    let w = window_with(
        &app,
        1,
        2,
        Duration::from_secs(120),
        60,
        0,
        pb::MinPaidPolicy::Unspecified,
    )
    .await;
    let o = app.reserve(&w, "c", 2, "k").await.unwrap();
    assert_eq!(counters(&app, &w).await.3, "CLOSED");
    assert_eq!(
        app.reserve(&w, "d", 1, "k").await.unwrap_err().code(),
        Code::ResourceExhausted
    );
    app.confirm(&w).await.unwrap();
    let o = app.payment_of(&o.id).await;
    assert_eq!(app.pay(&o, "expired", "x-1").await, 200);
    wait_status(&app, &o.id, "EXPIRED").await;
    assert_eq!(counters(&app, &w).await, (0, 0, 0, "OPEN".into()));
    // The freed units can be reserved again.
    app.reserve(&w, "d", 1, "k2").await.unwrap();
    // The provider now says the expired attempt succeeded after all: refund, never count.
    assert_eq!(app.pay(&o, "succeeded", "s-late").await, 200);
    for _ in 0..100 {
        if names(&app.events(&w).await).contains(&"payment.refunded".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ev = names(&app.events(&w).await);
    assert!(ev.contains(&"quota.closed".to_string()) && ev.contains(&"order.expired".to_string()));
    assert!(ev.contains(&"payment.refunded".to_string()), "{ev:?}");
    assert!(!ev.contains(&"order.paid".to_string()));
    assert_eq!(app.order(&o.id).await.status, "EXPIRED");
    assert_eq!(counters(&app, &w).await.2, 0);
    db_agrees(&app, &w).await;
    app.record_history(&w, "expired_reopened_late_refund").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_customer_cancels_an_unpaid_order_but_never_a_paid_one() {
    let app = spawn_app().await;
    let w = window_with(
        &app,
        1,
        5,
        Duration::from_secs(120),
        60,
        0,
        pb::MinPaidPolicy::Unspecified,
    )
    .await;
    let a = app.reserve(&w, "a", 2, "k").await.unwrap();
    let b = app.reserve(&w, "b", 1, "k").await.unwrap();
    // Someone else's order: refused.
    let other = app
        .api
        .customer()
        .cancel_order(
            customer_call(
                &app,
                "b",
                pb::CancelOrderRequest {
                    order_id: a.id.clone(),
                },
            )
            .await,
        )
        .await;
    assert_eq!(other.unwrap_err().code(), Code::PermissionDenied);
    let cancelled = app
        .api
        .customer()
        .cancel_order(
            customer_call(
                &app,
                "a",
                pb::CancelOrderRequest {
                    order_id: a.id.clone(),
                },
            )
            .await,
        )
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.status, "CANCELLED");
    assert_eq!(counters(&app, &w).await, (1, 1, 0, "OPEN".into()));
    app.confirm(&w).await.unwrap();
    let pb_ = app.payment_of(&b.id).await;
    app.pay(&pb_, "succeeded", "s").await;
    wait_status(&app, &b.id, "PAID").await;
    let paid = app
        .api
        .customer()
        .cancel_order(
            customer_call(
                &app,
                "b",
                pb::CancelOrderRequest {
                    order_id: b.id.clone(),
                },
            )
            .await,
        )
        .await;
    assert_eq!(paid.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(app.order(&b.id).await.status, "PAID");
    assert!(names(&app.events(&w).await).contains(&"order.cancelled".to_string()));
    db_agrees(&app, &w).await;
    app.record_history(&w, "customer_cancel").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_per_customer_limit_counts_a_customers_active_orders() {
    let app = spawn_app().await;
    let w = window_with(
        &app,
        1,
        20,
        Duration::from_secs(120),
        60,
        3,
        pb::MinPaidPolicy::Unspecified,
    )
    .await;
    app.reserve(&w, "c", 2, "k1").await.unwrap();
    let over = app.reserve(&w, "c", 2, "k2").await.unwrap_err();
    assert_eq!(over.code(), Code::ResourceExhausted);
    assert!(
        over.message().contains("per-customer limit"),
        "{}",
        over.message()
    );
    app.reserve(&w, "c", 1, "k3").await.unwrap();
    app.reserve(&w, "d", 3, "k1").await.unwrap();
    assert_eq!(counters(&app, &w).await.0, 6);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_paid_at_close_means_no_production_and_the_admin_is_told() {
    let app = spawn_app().await;
    let w = window_with(
        &app,
        1,
        5,
        Duration::from_secs(6),
        60,
        0,
        pb::MinPaidPolicy::Unspecified,
    )
    .await;
    let o = app.reserve(&w, "c", 1, "k").await.unwrap();
    app.confirm(&w).await.unwrap();
    app.payment_of(&o.id).await;
    app.api
        .wait_for(&w.id, Duration::from_secs(30), |w| {
            w.listings[0].phase == "NOTHING_TO_PRODUCE"
        })
        .await
        .unwrap();
    wait_status(&app, &o.id, "EXPIRED").await;
    for _ in 0..100 {
        if names(&app.events(&w).await).contains(&"sell_window.finalized".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ev = names(&app.events(&w).await);
    let tail: Vec<&str> = ev
        .iter()
        .map(String::as_str)
        .skip_while(|n| *n != "sell_window.finalize_requested")
        .collect();
    // close_at: finalize requested, the unpaid order expires (its payment first), then the
    // paid quantity (nothing) is frozen.
    assert_eq!(
        tail,
        [
            "sell_window.finalize_requested",
            "payment.expired",
            "order.expired",
            "sell_window.finalized"
        ]
    );
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    assert!(app.work_orders(&sw).await.is_empty());
    let notes = app.notifications(None, Some(&sw)).await;
    assert!(notes.iter().any(|n| n.kind == "nothing_to_produce"));
    db_agrees(&app, &w).await;
    app.record_history(&w, "nothing_to_produce").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_and_refund_policy_refunds_every_paid_order_under_the_threshold() {
    let app = spawn_app().await;
    let w = window_with(
        &app,
        2,
        5,
        Duration::from_secs(8),
        60,
        0,
        pb::MinPaidPolicy::CancelAndRefund,
    )
    .await;
    let a = app.reserve(&w, "a", 1, "k").await.unwrap();
    let b = app.reserve(&w, "b", 1, "k").await.unwrap();
    app.confirm(&w).await.unwrap();
    let pa = app.payment_of(&a.id).await;
    app.payment_of(&b.id).await;
    app.pay(&pa, "succeeded", "s").await;
    wait_status(&app, &a.id, "PAID").await;
    app.api
        .wait_for(&w.id, Duration::from_secs(30), |w| {
            w.listings[0].phase == "CANCELLED"
        })
        .await
        .unwrap();
    // The workflow decides first; the rows follow as its activities complete.
    wait_status(&app, &a.id, "CANCELLED").await;
    assert_eq!(app.order(&b.id).await.status, "EXPIRED");
    for _ in 0..100 {
        if names(&app.events(&w).await).contains(&"sell_window.cancelled".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status: String = sqlx::query_scalar("SELECT status FROM payments WHERE id = $1")
        .bind(&pa.payment_id)
        .fetch_one(app.store.pool())
        .await
        .unwrap();
    assert_eq!(status, "REFUNDED");
    let ev = names(&app.events(&w).await);
    for e in [
        "order.cancelled",
        "payment.refunded",
        "sell_window.finalized",
        "sell_window.cancelled",
    ] {
        assert!(ev.contains(&e.to_string()), "{e} missing from {ev:?}");
    }
    assert!(!ev.contains(&"production.scheduled".to_string()));
    assert_eq!(counters(&app, &w).await, (0, 0, 0, "CLOSED".into()));
    db_agrees(&app, &w).await;
    app.record_history(&w, "cancel_and_refund").await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_admin_cancel_before_close_cancels_every_order_and_refunds_the_paid_ones() {
    let app = spawn_app().await;
    let w = window_with(
        &app,
        1,
        5,
        Duration::from_secs(120),
        60,
        0,
        pb::MinPaidPolicy::Unspecified,
    )
    .await;
    let a = app.reserve(&w, "a", 1, "k").await.unwrap();
    let b = app.reserve(&w, "b", 2, "k").await.unwrap();
    app.confirm(&w).await.unwrap();
    let pa = app.payment_of(&a.id).await;
    app.payment_of(&b.id).await;
    app.pay(&pa, "succeeded", "s").await;
    wait_status(&app, &a.id, "PAID").await;
    let after = app
        .api
        .admin()
        .cancel_sell_window(ApiClient::req(
            pb::CancelSellWindowRequest {
                sell_window_id: w.id.clone(),
            },
            &app.admin(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.listings[0].phase, "CANCELLED");
    assert_eq!(app.order(&a.id).await.status, "CANCELLED");
    assert_eq!(app.order(&b.id).await.status, "CANCELLED");
    let ev = names(&app.events(&w).await);
    assert_eq!(ev.iter().filter(|e| *e == "order.cancelled").count(), 2);
    assert_eq!(ev.iter().filter(|e| *e == "payment.refunded").count(), 1);
    assert_eq!(ev.last().map(String::as_str), Some("sell_window.cancelled"));
    // Each customer was told; a second cancel is a precondition failure; reserving is refused.
    for c in ["a", "b"] {
        let notes = app.notifications(Some(c), None).await;
        assert!(
            notes.iter().any(|n| n.kind == "order_cancelled"),
            "{c} was not told"
        );
    }
    let again = app
        .api
        .admin()
        .cancel_sell_window(ApiClient::req(
            pb::CancelSellWindowRequest {
                sell_window_id: w.id.clone(),
            },
            &app.admin(),
        ))
        .await;
    assert_eq!(again.unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(
        app.reserve(&w, "c", 1, "k").await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    assert_eq!(counters(&app, &w).await, (0, 0, 0, "CLOSED".into()));
    db_agrees(&app, &w).await;
    app.record_history(&w, "window_cancelled").await;
    app.stop().await;
}
