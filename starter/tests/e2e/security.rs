//! The API's edges, against the real parts: every gRPC call refuses bad tokens, the wrong role,
//! someone else's order, bad input (naming the field) and unknown ids, and changes nothing when
//! it refuses; the payment callback refuses anything not signed for exactly this body, at this
//! time, for this payment, and applies a replayed event once.

use crate::helpers::{TestApp, free_port, spawn_app};
use sellwindow_api::convert::{now_ms, ts};
use sellwindow_api::pb;
use sellwindow_testkit::ApiClient;
use std::time::Duration;
use tonic::Code;

/// A window with two reserving customers whose payments are open, and its product.
struct Fx {
    product: pb::Product,
    w: pb::SellWindow,
    alice: pb::Order,
    bob: pb::Order,
}

async fn fixture(app: &TestApp) -> Fx {
    let product = app.product(250).await;
    // Far from its close and from any payment deadline: nothing moves on its own meanwhile.
    let w = app
        .window(&product, 1, 5, Duration::from_secs(600), 3600)
        .await;
    let alice = app.reserve(&w, "alice", 1, "a-1").await.unwrap();
    let bob = app.reserve(&w, "bob", 1, "b-1").await.unwrap();
    app.confirm(&w).await.unwrap();
    let alice = app.payment_of(&alice.id).await;
    let bob = app.payment_of(&bob.id).await;
    Fx {
        product,
        w,
        alice,
        bob,
    }
}

/// A request with `authorization` set to exactly `auth` (or absent).
fn req<T>(msg: T, auth: Option<&str>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(a) = auth {
        r.metadata_mut()
            .insert("authorization", a.parse().expect("ascii header"));
    }
    r
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

fn money(amount_minor: i64) -> Option<pb::Money> {
    Some(pb::Money {
        currency: "TWD".into(),
        amount_minor,
    })
}

fn listing(product_id: &str, min: u32, max: u32) -> pb::ListingInput {
    pb::ListingInput {
        product_id: product_id.into(),
        min_qty: min,
        max_qty: max,
        payment_window: Some(prost_types::Duration {
            seconds: 60,
            nanos: 0,
        }),
        per_customer_limit: 0,
        min_paid_policy: 0,
    }
}

fn window_request(listings: Vec<pb::ListingInput>) -> pb::CreateSellWindowRequest {
    pb::CreateSellWindowRequest {
        name: "a window".into(),
        close_at: Some(ts(now_ms().0 + 600_000)),
        listings,
        request_id: String::new(),
    }
}

fn code<T>(r: Result<T, tonic::Status>) -> Code {
    match r {
        Ok(_) => Code::Ok,
        Err(s) => s.code(),
    }
}

/// Every `AdminService` call, each with a request that would change something (or read
/// something) if it were let through.
async fn admin_calls(app: &TestApp, fx: &Fx, auth: Option<&str>) -> Vec<(&'static str, Code)> {
    let mut a = app.api.admin();
    let (sw, p) = (fx.w.id.clone(), fx.product.id.clone());
    vec![
        (
            "CreateProduct",
            code(
                a.create_product(req(
                    pb::CreateProductRequest {
                        id: String::new(),
                        name: "intruder".into(),
                        unit_price: money(1),
                        work_steps: vec![],
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "CreateSellWindow",
            code(
                a.create_sell_window(req(window_request(vec![listing(&p, 1, 5)]), auth))
                    .await,
            ),
        ),
        (
            "GetSellWindow",
            code(
                a.get_sell_window(req(
                    pb::GetSellWindowRequest {
                        sell_window_id: sw.clone(),
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "ListSellWindows",
            code(
                a.list_sell_windows(req(pb::ListSellWindowsRequest::default(), auth))
                    .await,
            ),
        ),
        (
            "ListProducts",
            code(
                a.list_products(req(pb::ListProductsRequest::default(), auth))
                    .await,
            ),
        ),
        (
            "ConfirmBatch",
            code(
                a.confirm_batch(req(
                    pb::ConfirmBatchRequest {
                        sell_window_id: sw.clone(),
                        product_id: p.clone(),
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "CancelSellWindow",
            code(
                a.cancel_sell_window(req(
                    pb::CancelSellWindowRequest {
                        sell_window_id: sw.clone(),
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "ListOrders",
            code(
                a.list_orders(req(
                    pb::ListOrdersRequest {
                        sell_window_id: sw.clone(),
                        product_id: String::new(),
                        ..Default::default()
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "ListWorkOrders",
            code(
                a.list_work_orders(req(
                    pb::ListWorkOrdersRequest {
                        sell_window_id: sw.clone(),
                        ..Default::default()
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "CompleteWorkStep",
            code(
                a.complete_work_step(req(
                    pb::CompleteWorkStepRequest {
                        work_order_id: "wo-x".into(),
                        step_id: "step-x".into(),
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "ListEvents",
            code(
                a.list_events(req(
                    pb::ListEventsRequest {
                        sell_window_id: sw.clone(),
                        after_seq: 0,
                        ..Default::default()
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "ListNotifications",
            code(
                a.list_notifications(req(
                    pb::ListNotificationsRequest {
                        sell_window_id: String::new(),
                        ..Default::default()
                    },
                    auth,
                ))
                .await,
            ),
        ),
    ]
}

/// Every `CustomerService` call, aimed at alice's order where one is named.
async fn customer_calls(
    app: &TestApp,
    fx: &Fx,
    auth: Option<&str>,
    key: &str,
) -> Vec<(&'static str, Code)> {
    let mut c = app.api.customer();
    let order = fx.alice.id.clone();
    vec![
        (
            "ListOpenSellWindows",
            code(
                c.list_open_sell_windows(req(pb::ListOpenSellWindowsRequest::default(), auth))
                    .await,
            ),
        ),
        (
            "ReserveOrder",
            code(
                c.reserve_order(req(
                    pb::ReserveOrderRequest {
                        sell_window_id: fx.w.id.clone(),
                        product_id: fx.product.id.clone(),
                        qty: 1,
                        idempotency_key: key.into(),
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "GetOrder",
            code(
                c.get_order(req(
                    pb::GetOrderRequest {
                        order_id: order.clone(),
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "ListMyOrders",
            code(
                c.list_my_orders(req(pb::ListMyOrdersRequest::default(), auth))
                    .await,
            ),
        ),
        (
            "CancelOrder",
            code(
                c.cancel_order(req(
                    pb::CancelOrderRequest {
                        order_id: order.clone(),
                    },
                    auth,
                ))
                .await,
            ),
        ),
        (
            "RetryPayment",
            code(
                c.retry_payment(req(pb::RetryPaymentRequest { order_id: order }, auth))
                    .await,
            ),
        ),
        (
            "ListMyNotifications",
            code(
                c.list_my_notifications(req(pb::ListMyNotificationsRequest::default(), auth))
                    .await,
            ),
        ),
    ]
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn jwt(alg: jsonwebtoken::Algorithm, secret: &str, claims: &serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn now_secs() -> i64 {
    now_ms().0 / 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_refuses_a_missing_expired_forged_or_unsigned_token_and_changes_nothing() {
    use jsonwebtoken::Algorithm::{HS256, HS384, HS512};
    let app = spawn_app().await;
    let fx = fixture(&app).await;
    let secret = app.cfg.jwt_secret.clone();
    let exp = now_secs() + 3600;
    let admin_claims = serde_json::json!({"sub": "ops", "role": "admin", "exp": exp});
    let valid_admin = jwt(HS256, &secret, &admin_claims);
    let valid_customer = app.api.customer_token("alice");
    // The customer's token with an admin payload spliced in, its signature kept.
    let spliced = {
        let parts: Vec<&str> = valid_customer.split('.').collect();
        let payload = b64url(admin_claims.to_string().as_bytes());
        format!("{}.{payload}.{}", parts[0], parts[2])
    };
    let unsigned = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(admin_claims.to_string().as_bytes())
    );
    let unsigned_keeping_a_signature = format!(
        "{}.{}.{}",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(admin_claims.to_string().as_bytes()),
        valid_admin.rsplit('.').next().unwrap()
    );
    let bad: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty bearer", Some("Bearer ".into())),
        ("another scheme", Some("Basic YWRtaW46YWRtaW4=".into())),
        ("a token without its scheme", Some(valid_admin.clone())),
        ("not a JWT", Some(bearer("not.a.jwt"))),
        (
            "expired an hour ago",
            Some(bearer(&jwt(
                HS256,
                &secret,
                &serde_json::json!({"sub": "ops", "role": "admin", "exp": now_secs() - 3600}),
            ))),
        ),
        (
            "signed with another secret",
            Some(bearer(&jwt(HS256, "another-secret", &admin_claims))),
        ),
        ("alg none", Some(bearer(&unsigned))),
        (
            "alg none with a signature",
            Some(bearer(&unsigned_keeping_a_signature)),
        ),
        (
            "HS512 with the right secret",
            Some(bearer(&jwt(HS512, &secret, &admin_claims))),
        ),
        (
            "HS384 with the right secret",
            Some(bearer(&jwt(HS384, &secret, &admin_claims))),
        ),
        (
            "no exp",
            Some(bearer(&jwt(
                HS256,
                &secret,
                &serde_json::json!({"sub": "ops", "role": "admin"}),
            ))),
        ),
        (
            "no sub",
            Some(bearer(&jwt(
                HS256,
                &secret,
                &serde_json::json!({"role": "admin", "exp": exp}),
            ))),
        ),
        ("payload spliced under a signature", Some(bearer(&spliced))),
        (
            "a customer id that is not an id",
            Some(bearer(&jwt(
                HS256,
                &secret,
                &serde_json::json!({"sub": "alice; drop table", "exp": exp}),
            ))),
        ),
        (
            "an empty customer id",
            Some(bearer(&jwt(
                HS256,
                &secret,
                &serde_json::json!({"sub": "", "exp": exp}),
            ))),
        ),
    ];
    let before = app.snapshot().await;
    for (what, auth) in &bad {
        let mut calls = admin_calls(&app, &fx, auth.as_deref()).await;
        calls.extend(customer_calls(&app, &fx, auth.as_deref(), "intruder").await);
        assert_eq!(calls.len(), 19, "every call of the proto");
        for (call, c) in calls {
            assert_eq!(c, Code::Unauthenticated, "{call} with a token {what}");
        }
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused call changed the database"
    );
    // Good tokens are let through (the refusals above are not vacuous).
    let good = bearer(&valid_admin);
    let mut a = app.api.admin();
    a.get_sell_window(req(
        pb::GetSellWindowRequest {
            sell_window_id: fx.w.id.clone(),
        },
        Some(&good),
    ))
    .await
    .expect("a good admin token");
    app.api
        .customer()
        .get_order(req(
            pb::GetOrderRequest {
                order_id: fx.alice.id.clone(),
            },
            Some(&bearer(&valid_customer)),
        ))
        .await
        .expect("a good customer token");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_wrong_role_or_someone_elses_order_is_permission_denied_and_changes_nothing() {
    let app = spawn_app().await;
    let fx = fixture(&app).await;
    let before = app.snapshot().await;
    // A customer on every admin call.
    let carol = bearer(&app.api.customer_token("carol"));
    for (call, c) in admin_calls(&app, &fx, Some(&carol)).await {
        assert_eq!(c, Code::PermissionDenied, "{call} as a customer");
    }
    // The admin on the calls that act as a customer.
    let admin = bearer(&app.admin());
    for (call, c) in customer_calls(&app, &fx, Some(&admin), "admin-key").await {
        match call {
            // Reading is fine for the admin.
            "ListOpenSellWindows" | "GetOrder" => assert_eq!(c, Code::Ok, "{call} as admin"),
            _ => assert_eq!(c, Code::PermissionDenied, "{call} as admin"),
        }
    }
    // Bob on alice's order: not readable, not cancellable, no new pay link.
    let bob = bearer(&app.api.customer_token("bob"));
    for (call, c) in customer_calls(&app, &fx, Some(&bob), "b-1").await {
        match call {
            "GetOrder" | "CancelOrder" | "RetryPayment" => {
                assert_eq!(c, Code::PermissionDenied, "{call} by bob on alice's order")
            }
            // Bob's own calls work (his reservation retried under its key is his first answer).
            _ => assert_eq!(c, Code::Ok, "{call} by bob"),
        }
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused call changed the database"
    );
    // Bob's own lists hold only his things.
    let mine = app
        .api
        .customer()
        .list_my_orders(req(pb::ListMyOrdersRequest::default(), Some(&bob)))
        .await
        .unwrap()
        .into_inner()
        .orders;
    assert_eq!(
        mine.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
        vec![fx.bob.id.as_str()]
    );
    let notes = app
        .api
        .customer()
        .list_my_notifications(req(pb::ListMyNotificationsRequest::default(), Some(&bob)))
        .await
        .unwrap()
        .into_inner()
        .notifications;
    assert!(!notes.is_empty());
    assert!(
        notes.iter().all(|n| n.recipient_id == "bob"),
        "bob sees another's notification: {notes:?}"
    );
    assert_eq!(app.order(&fx.alice.id).await.status, "PAYMENT_REQUESTED");
    app.stop().await;
}

/// Asserts INVALID_ARGUMENT naming `field` (the message reads "<field>: <reason>").
fn invalid<T: std::fmt::Debug>(field: &str, r: Result<T, tonic::Status>) {
    let s = r.expect_err(&format!("bad {field} was accepted"));
    assert_eq!(s.code(), Code::InvalidArgument, "bad {field}: {s:?}");
    assert!(
        s.message().starts_with(&format!("{field}:")),
        "the refusal of a bad {field} names another field: {:?}",
        s.message()
    );
}

fn not_found<T: std::fmt::Debug>(what: &str, r: Result<T, tonic::Status>) {
    let s = r.expect_err(&format!("unknown {what} was found"));
    assert_eq!(s.code(), Code::NotFound, "unknown {what}: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn admin_calls_refuse_bad_input_naming_the_field_and_unknown_ids_and_change_nothing() {
    let app = spawn_app().await;
    let fx = fixture(&app).await;
    let token = app.admin();
    let mut a = app.api.admin();
    let p = fx.product.id.clone();
    let huge = "x".repeat(10_000);
    let before = app.snapshot().await;

    let product = |id: &str, name: &str, price: Option<pb::Money>, steps: Vec<String>| {
        ApiClient::req(
            pb::CreateProductRequest {
                id: id.into(),
                name: name.into(),
                unit_price: price,
                work_steps: steps,
            },
            &token,
        )
    };
    invalid(
        "name",
        a.create_product(product("", "", money(1), vec![])).await,
    );
    invalid(
        "name",
        a.create_product(product("", "   ", money(1), vec![])).await,
    );
    invalid(
        "name",
        a.create_product(product("", &huge, money(1), vec![])).await,
    );
    invalid(
        "unit_price",
        a.create_product(product("", "mug", None, vec![])).await,
    );
    for currency in ["", "twd", "TW", "TWDX", "T$D"] {
        let price = Some(pb::Money {
            currency: currency.into(),
            amount_minor: 1,
        });
        invalid(
            "currency",
            a.create_product(product("", "mug", price, vec![])).await,
        );
    }
    for amount in [-1, i64::MIN, 1_000_000_000_001, i64::MAX] {
        invalid(
            "amount_minor",
            a.create_product(product("", "mug", money(amount), vec![]))
                .await,
        );
    }
    invalid(
        "work_steps",
        a.create_product(product(
            "",
            "mug",
            money(1),
            (0..51).map(|i| format!("s{i}")).collect(),
        ))
        .await,
    );
    invalid(
        "work_steps",
        a.create_product(product("", "mug", money(1), vec!["cut".into(), "".into()]))
            .await,
    );
    invalid(
        "work_steps",
        a.create_product(product("", "mug", money(1), vec!["y".repeat(101)]))
            .await,
    );
    invalid(
        "work_steps",
        a.create_product(product("", "mug", money(1), vec![huge.clone()]))
            .await,
    );
    for id in ["bad id", "a/b", "é", &"p".repeat(129), &huge] {
        invalid(
            "product_id",
            a.create_product(product(id, "mug", money(1), vec![])).await,
        );
    }

    // CreateSellWindow: each field, and one bad listing among good ones.
    let create = |r: pb::CreateSellWindowRequest| ApiClient::req(r, &token);
    let ok = || window_request(vec![listing(&p, 1, 5)]);
    let mut r = ok();
    r.name = String::new();
    invalid("name", a.create_sell_window(create(r)).await);
    let mut r = ok();
    r.name = huge.clone();
    invalid("name", a.create_sell_window(create(r)).await);
    let mut r = ok();
    r.close_at = None;
    invalid("close_at", a.create_sell_window(create(r)).await);
    for past in [now_ms().0 - 60_000, now_ms().0 + 500, 0, -1_000_000_000_000] {
        let mut r = ok();
        r.close_at = Some(ts(past));
        invalid("close_at", a.create_sell_window(create(r)).await);
    }
    let mut r = ok();
    r.close_at = Some(prost_types::Timestamp {
        seconds: i64::MIN,
        nanos: 0,
    });
    invalid("close_at", a.create_sell_window(create(r)).await);
    invalid(
        "listings",
        a.create_sell_window(create(window_request(vec![]))).await,
    );
    let thousand: Vec<pb::ListingInput> = (0..1000)
        .map(|i| listing(&format!("prd-{i}"), 1, 5))
        .collect();
    invalid(
        "listings",
        a.create_sell_window(create(window_request(thousand))).await,
    );
    invalid(
        "listings",
        a.create_sell_window(create(window_request(vec![
            listing(&p, 1, 5),
            listing(&p, 2, 6),
        ])))
        .await,
    );
    for bad_id in ["", "no spaces", &huge] {
        invalid(
            "product_id",
            a.create_sell_window(create(window_request(vec![listing(bad_id, 1, 5)])))
                .await,
        );
    }
    invalid(
        "min_qty",
        a.create_sell_window(create(window_request(vec![listing(&p, 0, 5)])))
            .await,
    );
    invalid(
        "max_qty",
        a.create_sell_window(create(window_request(vec![listing(&p, 5, 3)])))
            .await,
    );
    for max in [1_000_001, u32::MAX] {
        invalid(
            "max_qty",
            a.create_sell_window(create(window_request(vec![listing(&p, 1, max)])))
                .await,
        );
    }
    for (seconds, nanos) in [
        (0, 0),
        (0, 500_000_000),
        (-5, 0),
        (31 * 24 * 3600, 0),
        (i64::MAX, 0),
        (i64::MIN, 0),
    ] {
        let mut l = listing(&p, 1, 5);
        l.payment_window = Some(prost_types::Duration { seconds, nanos });
        invalid(
            "payment_window",
            a.create_sell_window(create(window_request(vec![l]))).await,
        );
    }
    let mut l = listing(&p, 1, 5);
    l.min_paid_policy = 99;
    invalid(
        "min_paid_policy",
        a.create_sell_window(create(window_request(vec![l]))).await,
    );
    let mut r = ok();
    r.request_id = huge.clone();
    invalid("request_id", a.create_sell_window(create(r)).await);
    // A good listing first, a bad one second: nothing of the window is written.
    let other = app.product(300).await;
    let before_window = app.snapshot().await;
    invalid(
        "max_qty",
        a.create_sell_window(create(window_request(vec![
            listing(&other.id, 1, 5),
            listing(&p, 9, 1),
        ])))
        .await,
    );
    assert_eq!(app.snapshot().await, before_window);
    not_found(
        "product",
        a.create_sell_window(create(window_request(vec![listing("prd-nope", 1, 5)])))
            .await,
    );
    not_found(
        "product (second listing)",
        a.create_sell_window(create(window_request(vec![
            listing(&other.id, 1, 5),
            listing("prd-nope", 1, 5),
        ])))
        .await,
    );
    assert_eq!(app.snapshot().await, before_window);

    // The calls that name a window, a listing, a work order or a step.
    for bad in ["", "a b", &huge] {
        invalid(
            "sell_window_id",
            a.get_sell_window(ApiClient::req(
                pb::GetSellWindowRequest {
                    sell_window_id: bad.into(),
                },
                &token,
            ))
            .await,
        );
        invalid(
            "sell_window_id",
            a.confirm_batch(ApiClient::req(
                pb::ConfirmBatchRequest {
                    sell_window_id: bad.into(),
                    product_id: p.clone(),
                },
                &token,
            ))
            .await,
        );
        invalid(
            "product_id",
            a.confirm_batch(ApiClient::req(
                pb::ConfirmBatchRequest {
                    sell_window_id: fx.w.id.clone(),
                    product_id: bad.into(),
                },
                &token,
            ))
            .await,
        );
        invalid(
            "sell_window_id",
            a.cancel_sell_window(ApiClient::req(
                pb::CancelSellWindowRequest {
                    sell_window_id: bad.into(),
                },
                &token,
            ))
            .await,
        );
        invalid(
            "sell_window_id",
            a.list_orders(ApiClient::req(
                pb::ListOrdersRequest {
                    sell_window_id: bad.into(),
                    product_id: String::new(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        );
        invalid(
            "sell_window_id",
            a.list_work_orders(ApiClient::req(
                pb::ListWorkOrdersRequest {
                    sell_window_id: bad.into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        );
        invalid(
            "sell_window_id",
            a.list_events(ApiClient::req(
                pb::ListEventsRequest {
                    sell_window_id: bad.into(),
                    after_seq: 0,
                    ..Default::default()
                },
                &token,
            ))
            .await,
        );
        invalid(
            "work_order_id",
            a.complete_work_step(ApiClient::req(
                pb::CompleteWorkStepRequest {
                    work_order_id: bad.into(),
                    step_id: "step-1".into(),
                },
                &token,
            ))
            .await,
        );
        invalid(
            "step_id",
            a.complete_work_step(ApiClient::req(
                pb::CompleteWorkStepRequest {
                    work_order_id: "wo-1".into(),
                    step_id: bad.into(),
                },
                &token,
            ))
            .await,
        );
    }
    for bad in ["a b", &huge] {
        invalid(
            "product_id",
            a.list_orders(ApiClient::req(
                pb::ListOrdersRequest {
                    sell_window_id: fx.w.id.clone(),
                    product_id: bad.into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        );
        invalid(
            "sell_window_id",
            a.list_notifications(ApiClient::req(
                pb::ListNotificationsRequest {
                    sell_window_id: bad.into(),
                    ..Default::default()
                },
                &token,
            ))
            .await,
        );
    }
    // Unknown ids.
    not_found(
        "window",
        a.get_sell_window(ApiClient::req(
            pb::GetSellWindowRequest {
                sell_window_id: "sw-nope".into(),
            },
            &token,
        ))
        .await,
    );
    for (sw, prd) in [
        ("sw-nope", p.as_str()),
        (fx.w.id.as_str(), other.id.as_str()),
    ] {
        not_found(
            "listing",
            a.confirm_batch(ApiClient::req(
                pb::ConfirmBatchRequest {
                    sell_window_id: sw.into(),
                    product_id: prd.into(),
                },
                &token,
            ))
            .await,
        );
    }
    not_found(
        "window",
        a.cancel_sell_window(ApiClient::req(
            pb::CancelSellWindowRequest {
                sell_window_id: "sw-nope".into(),
            },
            &token,
        ))
        .await,
    );
    not_found(
        "work order",
        a.complete_work_step(ApiClient::req(
            pb::CompleteWorkStepRequest {
                work_order_id: "wo-nope".into(),
                step_id: "step-nope".into(),
            },
            &token,
        ))
        .await,
    );
    let after = app.snapshot().await;
    // Only the second product (created on purpose above) is new.
    let mut expected = before.clone();
    expected
        .counts
        .iter_mut()
        .filter(|(t, _)| *t == "products")
        .for_each(|(_, n)| *n += 1);
    assert_eq!(after, expected, "a refused call changed the database");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn list_calls_naming_an_unknown_window_are_not_found() {
    let app = spawn_app().await;
    let token = app.admin();
    let mut a = app.api.admin();
    not_found(
        "window (ListOrders)",
        a.list_orders(ApiClient::req(
            pb::ListOrdersRequest {
                sell_window_id: "sw-nope".into(),
                product_id: String::new(),
                ..Default::default()
            },
            &token,
        ))
        .await,
    );
    not_found(
        "window (ListWorkOrders)",
        a.list_work_orders(ApiClient::req(
            pb::ListWorkOrdersRequest {
                sell_window_id: "sw-nope".into(),
                ..Default::default()
            },
            &token,
        ))
        .await,
    );
    not_found(
        "window (ListEvents)",
        a.list_events(ApiClient::req(
            pb::ListEventsRequest {
                sell_window_id: "sw-nope".into(),
                after_seq: 0,
                ..Default::default()
            },
            &token,
        ))
        .await,
    );
    not_found(
        "window (ListNotifications)",
        a.list_notifications(ApiClient::req(
            pb::ListNotificationsRequest {
                sell_window_id: "sw-nope".into(),
                ..Default::default()
            },
            &token,
        ))
        .await,
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customer_calls_refuse_bad_input_naming_the_field_and_unknown_ids_and_change_nothing() {
    let app = spawn_app().await;
    let fx = fixture(&app).await;
    let alice = app.api.customer_token("alice");
    let mut c = app.api.customer();
    let huge = "x".repeat(10_000);
    let before = app.snapshot().await;
    let reserve = |sw: &str, p: &str, qty: u32, key: &str| {
        ApiClient::req(
            pb::ReserveOrderRequest {
                sell_window_id: sw.into(),
                product_id: p.into(),
                qty,
                idempotency_key: key.into(),
            },
            &alice,
        )
    };
    let (sw, p) = (fx.w.id.as_str(), fx.product.id.as_str());
    for qty in [0, 1_000_001, u32::MAX] {
        invalid("qty", c.reserve_order(reserve(sw, p, qty, "k-q")).await);
    }
    for key in ["", "   ", &"k".repeat(129), &huge] {
        invalid(
            "idempotency_key",
            c.reserve_order(reserve(sw, p, 1, key)).await,
        );
    }
    for bad in ["", "a b", &huge] {
        invalid(
            "sell_window_id",
            c.reserve_order(reserve(bad, p, 1, "k-s")).await,
        );
        invalid(
            "product_id",
            c.reserve_order(reserve(sw, bad, 1, "k-p")).await,
        );
    }
    not_found(
        "window",
        c.reserve_order(reserve("sw-nope", p, 1, "k-n")).await,
    );
    not_found(
        "listing",
        c.reserve_order(reserve(sw, "prd-nope", 1, "k-n2")).await,
    );
    for bad in ["", "a b", &huge] {
        invalid(
            "order_id",
            c.get_order(ApiClient::req(
                pb::GetOrderRequest {
                    order_id: bad.into(),
                },
                &alice,
            ))
            .await,
        );
        invalid(
            "order_id",
            c.cancel_order(ApiClient::req(
                pb::CancelOrderRequest {
                    order_id: bad.into(),
                },
                &alice,
            ))
            .await,
        );
        invalid(
            "order_id",
            c.retry_payment(ApiClient::req(
                pb::RetryPaymentRequest {
                    order_id: bad.into(),
                },
                &alice,
            ))
            .await,
        );
    }
    not_found(
        "order",
        c.get_order(ApiClient::req(
            pb::GetOrderRequest {
                order_id: "ord-nope".into(),
            },
            &alice,
        ))
        .await,
    );
    not_found(
        "order",
        c.cancel_order(ApiClient::req(
            pb::CancelOrderRequest {
                order_id: "ord-nope".into(),
            },
            &alice,
        ))
        .await,
    );
    not_found(
        "order",
        c.retry_payment(ApiClient::req(
            pb::RetryPaymentRequest {
                order_id: "ord-nope".into(),
            },
            &alice,
        ))
        .await,
    );
    // Retrying a payment that has not failed is a wrong phase, not a new link.
    let s = c
        .retry_payment(ApiClient::req(
            pb::RetryPaymentRequest {
                order_id: fx.alice.id.clone(),
            },
            &alice,
        ))
        .await;
    // Either the open link again or a wrong-phase refusal; never a new link, nor another error.
    match &s {
        Ok(o) => assert_eq!(
            o.get_ref().payment_id,
            fx.alice.payment_id,
            "a retry without a failure opened a new payment"
        ),
        Err(e) => assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}"),
    }
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused call changed the database"
    );

    // A million units (the most one request may ask) on a 5-unit listing: not enough quota,
    // and only the answer under the key is remembered.
    let s = c
        .reserve_order(reserve(sw, p, 1_000_000, "k-million"))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    let after = app.snapshot().await;
    assert_eq!(after.rows, before.rows, "orders or quota moved");
    for ((t, n), (_, m)) in after.counts.iter().zip(before.counts.iter()) {
        let grew = if *t == "idempotency_keys" { 1 } else { 0 };
        assert_eq!(*n, m + grew, "{t}");
    }
    app.stop().await;
}

/// Posts `body` to the callback endpoint with `signature` as X-Signature (or none), as the
/// provider (its ledger keeps what is correctly signed) or whoever forged it.
async fn post(app: &TestApp, body: Vec<u8>, signature: Option<String>) -> u16 {
    app.provider.post_raw(body, signature).await
}

fn signed(app: &TestApp, body: &[u8]) -> Option<String> {
    Some(sellwindow_api::signature::sign(
        &app.cfg.callback_secret,
        now_secs(),
        body,
    ))
}

fn callback_json(payment: &str, order: &str, outcome: &str, event: &str) -> serde_json::Value {
    serde_json::json!({
        "event_id": event, "payment_id": payment, "order_id": order,
        "outcome": outcome, "error": null, "occurred_at": now_secs()
    })
}

async fn wait_status(app: &TestApp, order: &str, status: &str) {
    for _ in 0..300 {
        if app.order(order).await.status == status {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "order {order} never became {status}: {:?}",
        app.order(order).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn callbacks_not_signed_for_this_body_time_and_payment_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let fx = fixture(&app).await;
    // Carol's payment in another window.
    let product2 = app.product(400).await;
    let w2 = app
        .window(&product2, 1, 5, Duration::from_secs(600), 3600)
        .await;
    let carol = app.reserve(&w2, "carol", 1, "c-1").await.unwrap();
    app.confirm(&w2).await.unwrap();
    let carol = app.payment_of(&carol.id).await;
    let secret = app.cfg.callback_secret.clone();
    let (a_pay, a_ord) = (fx.alice.payment_id.as_str(), fx.alice.id.as_str());
    let good = callback_json(a_pay, a_ord, "succeeded", "evt-good");
    let good_raw = serde_json::to_vec(&good).unwrap();
    let now = now_secs();
    let before = app.snapshot().await;

    assert_eq!(post(&app, good_raw.clone(), None).await, 401, "no header");
    assert_eq!(
        post(&app, good_raw.clone(), Some("garbage".into())).await,
        401,
        "garbage header"
    );
    assert_eq!(
        post(&app, good_raw.clone(), Some(String::new())).await,
        401,
        "empty header"
    );
    let other_secret = sellwindow_api::signature::sign("another-secret", now, &good_raw);
    assert_eq!(
        post(&app, good_raw.clone(), Some(other_secret)).await,
        401,
        "another secret"
    );
    for t in [now - 330, now + 330, now - 86_400, 0, -1] {
        let stale = sellwindow_api::signature::sign(&secret, t, &good_raw);
        assert_eq!(
            post(&app, good_raw.clone(), Some(stale)).await,
            401,
            "signed at {t}, now {now}"
        );
    }
    // Tampered: a failure signed, a success sent; and the same body with one space added.
    let failed_raw =
        serde_json::to_vec(&callback_json(a_pay, a_ord, "failed", "evt-good")).unwrap();
    assert_eq!(
        post(&app, good_raw.clone(), signed(&app, &failed_raw)).await,
        401,
        "tampered outcome"
    );
    let mut spaced = good_raw.clone();
    spaced.push(b' ');
    assert_eq!(
        post(&app, spaced, signed(&app, &good_raw)).await,
        401,
        "tampered whitespace"
    );
    // The MAC of this body at another time.
    let sig = sellwindow_api::signature::sign(&secret, now, &good_raw);
    let mac = sig.split_once(",v1=").unwrap().1;
    assert_eq!(
        post(
            &app,
            good_raw.clone(),
            Some(format!("t={},v1={mac}", now - 1))
        )
        .await,
        401,
        "MAC moved to another timestamp"
    );
    // Signed, but not a callback.
    for (what, raw) in [
        ("malformed JSON", b"{\"event_id\": ".to_vec()),
        ("not JSON", b"event_id=e&outcome=succeeded".to_vec()),
        ("empty", Vec::new()),
        ("a list", b"[]".to_vec()),
        (
            "an unknown outcome",
            serde_json::to_vec(&callback_json(a_pay, a_ord, "refunded", "evt-x")).unwrap(),
        ),
        (
            "an empty event id",
            serde_json::to_vec(&callback_json(a_pay, a_ord, "succeeded", "")).unwrap(),
        ),
        (
            "a 129-character event id",
            serde_json::to_vec(&callback_json(a_pay, a_ord, "succeeded", &"e".repeat(129)))
                .unwrap(),
        ),
        (
            "a payment id that is not an id",
            serde_json::to_vec(&callback_json("pay 1; --", a_ord, "succeeded", "evt-x")).unwrap(),
        ),
    ] {
        assert_eq!(
            post(&app, raw.clone(), signed(&app, &raw)).await,
            400,
            "{what}"
        );
    }
    // Signed, well-formed, for a payment that does not exist: 404 (but 401 unsigned: the
    // endpoint tells nothing about payments to someone without the secret).
    let unknown =
        serde_json::to_vec(&callback_json("pay-unknown", a_ord, "succeeded", "evt-u")).unwrap();
    assert_eq!(
        post(&app, unknown.clone(), signed(&app, &unknown)).await,
        404
    );
    assert_eq!(post(&app, unknown, None).await, 401);
    // A payment with an order it does not belong to: bob's order, carol's order in another
    // window, and carol's payment naming alice's order.
    for (pay, ord) in [
        (a_pay, fx.bob.id.as_str()),
        (a_pay, carol.id.as_str()),
        (carol.payment_id.as_str(), a_ord),
    ] {
        let raw = serde_json::to_vec(&callback_json(pay, ord, "succeeded", "evt-mix")).unwrap();
        assert_eq!(
            post(&app, raw.clone(), signed(&app, &raw)).await,
            400,
            "payment {pay} with order {ord}"
        );
    }
    // The size limit is 16 KiB exactly: one byte over is 413 before anything else; at the
    // limit the body is read (and here refused for its signature).
    let pad = |n: usize| {
        let mut raw = good_raw.clone();
        raw.splice(1..1, std::iter::repeat_n(b' ', n - good_raw.len()));
        raw
    };
    let at_limit = pad(16 * 1024);
    let over = pad(16 * 1024 + 1);
    assert_eq!(at_limit.len(), 16384);
    assert_eq!(post(&app, over.clone(), signed(&app, &over)).await, 413);
    assert_eq!(
        post(&app, at_limit.clone(), Some(other_secret_sig(&at_limit))).await,
        401
    );
    let big = vec![b'{'; 1024 * 1024];
    assert_eq!(post(&app, big.clone(), signed(&app, &big)).await, 413);
    assert_eq!(
        app.snapshot().await,
        before,
        "a refused callback changed the database"
    );
    assert_eq!(app.order(a_ord).await.status, "PAYMENT_REQUESTED");

    // And the good one, padded to exactly the limit, is applied.
    assert_eq!(
        post(&app, at_limit.clone(), signed(&app, &at_limit)).await,
        200
    );
    wait_status(&app, a_ord, "PAID").await;
    assert_eq!(app.order(&fx.bob.id).await.status, "PAYMENT_REQUESTED");
    assert_eq!(app.order(&carol.id).await.status, "PAYMENT_REQUESTED");
    app.books_balance().await;
    app.stop().await;
}

fn other_secret_sig(body: &[u8]) -> String {
    sellwindow_api::signature::sign("another-secret", now_secs(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_replayed_concurrently_is_applied_once() {
    let app = spawn_app().await;
    let fx = fixture(&app).await;
    let sw = &fx.w;
    let send_many = |body: serde_json::Value| {
        let raw = serde_json::to_vec(&body).unwrap();
        let sig = signed(&app, &raw).unwrap();
        let provider = app.provider.clone();
        async move {
            let mut tasks = Vec::new();
            for _ in 0..12 {
                let (provider, raw, sig) = (provider.clone(), raw.clone(), sig.clone());
                tasks.push(tokio::spawn(async move {
                    provider.post_raw(raw, Some(sig)).await
                }));
            }
            let mut codes = Vec::new();
            for t in tasks {
                codes.push(t.await.unwrap());
            }
            codes
        }
    };
    // A failure, twelve times at once: counted once.
    let mut failed = callback_json(&fx.bob.payment_id, &fx.bob.id, "failed", "evt-fail-1");
    failed["error"] = "card declined".into();
    let codes = send_many(failed).await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    for _ in 0..150 {
        if app.order(&fx.bob.id).await.payment_failed_count > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A success, twelve times at once: paid once.
    let codes = send_many(callback_json(
        &fx.alice.payment_id,
        &fx.alice.id,
        "succeeded",
        "evt-ok-1",
    ))
    .await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    wait_status(&app, &fx.alice.id, "PAID").await;
    // The same success again under a new provider event id: nothing more.
    let codes = send_many(callback_json(
        &fx.alice.payment_id,
        &fx.alice.id,
        "succeeded",
        "evt-ok-2",
    ))
    .await;
    assert!(codes.iter().all(|c| *c == 200), "{codes:?}");
    // Let anything that would happen twice happen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let bob = app.order(&fx.bob.id).await;
    assert_eq!(
        (bob.status.as_str(), bob.payment_failed_count),
        ("PAYMENT_REQUESTED", 1)
    );
    let counts = app.event_counts(sw).await;
    for (name, n) in [
        ("payment.failed", 1),
        ("payment.succeeded", 1),
        ("order.paid", 1),
        ("payment.refunded", 0),
    ] {
        assert_eq!(
            counts.get(name).copied().unwrap_or(0),
            n,
            "{name}: {counts:?}"
        );
    }
    let callbacks = app
        .count(
            "SELECT COUNT(*) FROM payment_callbacks WHERE payment_id = $1",
            &fx.alice.payment_id,
        )
        .await;
    assert_eq!(callbacks, 2, "one row per provider event id");
    let received = app
        .count(
            "SELECT COUNT(*) FROM notifications WHERE kind = 'payment_received' AND order_id = $1",
            &fx.alice.id,
        )
        .await;
    assert_eq!(received, 1);
    let live = app
        .api
        .sell_window(&sw.id)
        .await
        .unwrap()
        .listings
        .remove(0);
    assert_eq!((live.paid_qty, live.reserved_qty, live.sold_qty), (1, 1, 2));
    app.books_balance().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_successful_attempts_for_one_order_are_charged_once_and_the_other_is_refunded() {
    let app = spawn_app().await;
    let fx = fixture(&app).await;
    let alice = app.api.customer_token("alice");
    // Attempt 1 fails; the customer asks for a new link (attempt 2).
    let first = fx.alice.clone();
    assert_eq!(app.pay(&first, "failed", "evt-f1").await, 200);
    for _ in 0..150 {
        if app.order(&first.id).await.payment_failed_count == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let second = app
        .api
        .customer()
        .retry_payment(ApiClient::req(
            pb::RetryPaymentRequest {
                order_id: first.id.clone(),
            },
            &alice,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(second.payment_id, first.payment_id);
    // The provider then reports the first attempt succeeded after all (e.g. the customer
    // paid on the old link, which the sandbox still serves), and the second one too.
    assert_eq!(app.pay(&first, "succeeded", "evt-s1").await, 200);
    wait_status(&app, &first.id, "PAID").await;
    assert_eq!(app.pay(&second, "succeeded", "evt-s2").await, 200);
    // One order, paid once: of the two charges, exactly one is kept and the other refunded.
    let mut statuses = Vec::new();
    for _ in 0..100 {
        statuses = sqlx::query_scalar::<_, String>(
            "SELECT status FROM payments WHERE order_id = $1 ORDER BY attempt",
        )
        .bind(&first.id)
        .fetch_all(app.store.pool())
        .await
        .unwrap();
        if statuses.contains(&"REFUNDED".to_string()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "SUCCEEDED").count(),
        1,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| *s == "REFUNDED").count(),
        1,
        "the second charge was never refunded: {statuses:?}"
    );
    let counts = app.event_counts(&fx.w).await;
    assert_eq!(counts.get("order.paid"), Some(&1));
    assert_eq!(counts.get("payment.refunded"), Some(&1), "{counts:?}");
    app.books_balance().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_callback_with_an_extreme_timestamp_is_refused_not_a_panic() {
    let app = spawn_app().await;
    let raw = br#"{"event_id":"e"}"#.to_vec();
    let header = format!("t={},v1={}", i64::MIN, "00".repeat(32));
    let sent = reqwest::Client::new()
        .post(format!("{}/payments/callback", app.api.http_base))
        .header("x-signature", header)
        .body(raw)
        .send()
        .await;
    let status = sent.map(|r| r.status().as_u16());
    assert!(
        matches!(status, Ok(401)),
        "expected 401, got {status:?} (the handler panicked)"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_payment_sandbox_is_not_served_in_production() {
    let app = spawn_app().await;
    let fx = fixture(&app).await;
    // A production API process beside the development one (same database and Temporal).
    let (grpc, http) = (free_port(), free_port());
    let mut cfg = app.cfg.clone();
    cfg.env = sellwindow_runtime::Env::Production;
    cfg.jwt_secret = "j".repeat(40);
    cfg.callback_secret = "c".repeat(40);
    cfg.grpc_addr = format!("127.0.0.1:{grpc}").parse().unwrap();
    cfg.http_addr = format!("127.0.0.1:{http}").parse().unwrap();
    cfg.public_base_url = format!("http://127.0.0.1:{http}");
    cfg.payment_callback_url = format!("http://127.0.0.1:{http}/payments/callback");
    let prod = sellwindow_api::Application::build(cfg, app.store.clone(), app.temporal.clone())
        .await
        .unwrap();
    let r = reqwest::Client::new()
        .post(format!(
            "http://127.0.0.1:{http}/sandbox/pay/{}/succeeded",
            fx.alice.payment_id
        ))
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = app.order(&fx.alice.id).await.status;
    prod.shutdown().await;
    assert_eq!(code, 404, "the sandbox answered in production");
    assert_eq!(status, "PAYMENT_REQUESTED", "the sandbox paid an order");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn absurd_timestamps_and_durations_are_refused_naming_the_field_not_a_panic() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let token = app.admin();
    let before = app.snapshot().await;
    for (seconds, nanos) in [
        (i64::MAX, 999_999_999),
        (i64::MIN, -999_999_999),
        (i64::MAX / 1000, 999_999_999),
    ] {
        let mut r = window_request(vec![listing(&product.id, 1, 5)]);
        r.close_at = Some(prost_types::Timestamp { seconds, nanos });
        let got = app
            .api
            .admin()
            .create_sell_window(ApiClient::req(r, &token))
            .await;
        invalid("close_at", got);
        let mut l = listing(&product.id, 1, 5);
        l.payment_window = Some(prost_types::Duration { seconds, nanos });
        let got = app
            .api
            .admin()
            .create_sell_window(ApiClient::req(window_request(vec![l]), &token))
            .await;
        invalid("payment_window", got);
    }
    assert_eq!(app.snapshot().await, before);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_window_closing_in_ten_thousand_years_is_refused_or_still_takes_reservations() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let token = app.admin();
    // Year 9999, and the largest instant the API's milliseconds can hold.
    for close_ms in [253_402_300_799_000, i64::MAX] {
        let mut r = window_request(vec![listing(&product.id, 1, 5)]);
        r.name = format!("far {close_ms}");
        r.close_at = Some(ts(close_ms));
        let created = app
            .api
            .admin()
            .create_sell_window(ApiClient::req(r, &token))
            .await;
        let w = match created {
            Err(s) => {
                assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
                assert!(s.message().starts_with("close_at:"), "{s:?}");
                continue;
            }
            Ok(w) => w.into_inner(),
        };
        // Accepted: then the listing must work like any other.
        let got = tokio::time::timeout(
            Duration::from_secs(30),
            app.reserve(&w, "far", 1, &format!("far-{close_ms}")),
        )
        .await;
        let o = got
            .unwrap_or_else(|_| panic!("a reservation on a window closing at {close_ms} ms hung"))
            .unwrap_or_else(|s| panic!("close_at {close_ms}: {s:?}"));
        assert_eq!(o.status, "RESERVED");
    }
    app.stop().await;
}
