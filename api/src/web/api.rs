//! The pages' JSON calls: each one is a gRPC call of the API's own services made in-process
//! (the same handler code, tokens, rules and status codes as any gRPC client gets), answered as
//! JSON. A refusal comes back with its HTTP status and a sentence a person can read.

use super::{bearer, json};
use crate::admin::Admin;
use crate::app::State;
use crate::customer::Customer;
use crate::pb::{
    self, admin_service_server::AdminService, customer_service_server::CustomerService,
};
use axum::Router;
use axum::extract::{Json, Path, State as AxState};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use sellwindow_domain::{Currency, Money};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::Arc;
use tonic::Code;

type S = AxState<Arc<State>>;

pub fn router() -> Router<Arc<State>> {
    Router::new()
        .route("/api/session", get(session))
        .route("/api/windows", get(windows))
        .route("/api/reserve", post(reserve))
        .route("/api/orders", get(orders))
        .route("/api/orders/cancel", post(cancel_order))
        .route("/api/orders/retry", post(retry_payment))
        .route("/api/notifications", get(my_notifications))
        .route("/api/admin/products", get(products).post(create_product))
        .route("/api/admin/windows", get(admin_windows).post(create_window))
        .route("/api/admin/windows/{id}", get(admin_window))
        .route("/api/admin/confirm", post(confirm))
        .route("/api/admin/cancel", post(cancel_window))
        .route("/api/admin/work-orders/{window}", get(work_orders))
        .route("/api/admin/steps", post(complete_step))
        .route("/api/admin/events/{window}", get(events))
        .route("/api/admin/notifications", get(admin_notifications))
}

/// A gRPC request carrying the caller's bearer token.
fn call<T>(headers: &HeaderMap, msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    if let Some(v) = bearer(headers).and_then(|t| format!("Bearer {t}").parse().ok()) {
        r.metadata_mut().insert("authorization", v);
    }
    r
}

/// A refusal, with the HTTP status that matches its gRPC code and words for people (a rule's
/// refusal by its variant).
fn refused(s: tonic::Status) -> Response {
    let m = s.message();
    let sold_out = matches!(
        crate::error::refusal_of(&s),
        Some(sellwindow_domain::Refusal::NotEnoughQuota { .. })
    );
    let (status, readable) = match s.code() {
        Code::InvalidArgument => (
            StatusCode::BAD_REQUEST,
            format!("Please check the form: {m}."),
        ),
        Code::NotFound => (StatusCode::NOT_FOUND, format!("Not found: {m}.")),
        Code::ResourceExhausted if sold_out => (StatusCode::CONFLICT, format!("Sold out: {m}.")),
        Code::ResourceExhausted => (StatusCode::CONFLICT, format!("Not possible: {m}.")),
        Code::FailedPrecondition => (StatusCode::CONFLICT, format!("Not possible now: {m}.")),
        Code::Unauthenticated => (StatusCode::UNAUTHORIZED, "Please sign in.".to_string()),
        Code::PermissionDenied => (
            StatusCode::FORBIDDEN,
            "You are not allowed to do that.".to_string(),
        ),
        Code::Unavailable | Code::DeadlineExceeded => (
            StatusCode::SERVICE_UNAVAILABLE,
            "The shop is busy right now: please try again.".to_string(),
        ),
        _ => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "Something went wrong on our side.".to_string(),
        ),
    };
    let code = format!("{:?}", s.code());
    (
        status,
        Json(json!({ "error": readable, "code": code, "detail": m })),
    )
        .into_response()
}

fn answer<T>(
    r: Result<tonic::Response<T>, tonic::Status>,
    shape: impl FnOnce(T) -> Value,
) -> Response {
    match r {
        Ok(r) => Json(shape(r.into_inner())).into_response(),
        Err(s) => refused(s),
    }
}

async fn session(AxState(s): S, headers: HeaderMap) -> Response {
    let r = call(&headers, ());
    let who = match s.auth.caller(r.metadata()) {
        Ok(crate::auth::Caller::Admin { sub }) => json!({"role": "admin", "name": sub}),
        Ok(crate::auth::Caller::Customer(c)) => json!({"role": "customer", "name": c.as_str()}),
        Err(_) => json!({"role": null}),
    };
    let mut who = who;
    who["temporal_ui"] = json!(s.cfg.temporal_ui_url);
    who["namespace"] = json!(s.cfg.temporal_namespace);
    who["development"] = json!(s.cfg.env == sellwindow_runtime::Env::Development);
    Json(who).into_response()
}

async fn windows(AxState(s): S, headers: HeaderMap) -> Response {
    let r = Customer(s)
        .list_open_sell_windows(call(&headers, pb::ListOpenSellWindowsRequest::default()))
        .await;
    answer(
        r,
        |w| json!({ "windows": w.sell_windows.iter().map(json::window).collect::<Vec<_>>() }),
    )
}

#[derive(Deserialize)]
struct Reserve {
    sell_window_id: String,
    product_id: String,
    qty: u32,
    idempotency_key: String,
}

async fn reserve(AxState(s): S, headers: HeaderMap, Json(b): Json<Reserve>) -> Response {
    let req = pb::ReserveOrderRequest {
        sell_window_id: b.sell_window_id,
        product_id: b.product_id,
        qty: b.qty,
        idempotency_key: b.idempotency_key,
    };
    let r = Customer(s).reserve_order(call(&headers, req)).await;
    answer(r, |o| json::order(&o))
}

async fn orders(AxState(s): S, headers: HeaderMap) -> Response {
    let req = pb::ListMyOrdersRequest {
        page_size: 200,
        newest_first: true,
        ..Default::default()
    };
    let r = Customer(s).list_my_orders(call(&headers, req)).await;
    answer(
        r,
        |o| json!({ "orders": o.orders.iter().map(json::order).collect::<Vec<_>>() }),
    )
}

#[derive(Deserialize)]
struct OrderRef {
    order_id: String,
}

async fn cancel_order(AxState(s): S, headers: HeaderMap, Json(b): Json<OrderRef>) -> Response {
    let req = pb::CancelOrderRequest {
        order_id: b.order_id,
    };
    answer(Customer(s).cancel_order(call(&headers, req)).await, |o| {
        json::order(&o)
    })
}

async fn retry_payment(AxState(s): S, headers: HeaderMap, Json(b): Json<OrderRef>) -> Response {
    let req = pb::RetryPaymentRequest {
        order_id: b.order_id,
    };
    answer(Customer(s).retry_payment(call(&headers, req)).await, |o| {
        json::order(&o)
    })
}

fn notes(n: pb::ListNotificationsResponse) -> Value {
    json!({ "notifications": n.notifications.iter().map(json::notification).collect::<Vec<_>>() })
}

async fn my_notifications(AxState(s): S, headers: HeaderMap) -> Response {
    let req = pb::ListMyNotificationsRequest {
        page_size: 200,
        newest_first: true,
        ..Default::default()
    };
    answer(
        Customer(s).list_my_notifications(call(&headers, req)).await,
        notes,
    )
}

async fn products(AxState(s): S, headers: HeaderMap) -> Response {
    let req = pb::ListProductsRequest::default();
    let r = Admin(s).list_products(call(&headers, req)).await;
    answer(
        r,
        |p| json!({ "products": p.products.iter().map(json::product).collect::<Vec<_>>() }),
    )
}

#[derive(Deserialize)]
struct NewProduct {
    name: String,
    currency: String,
    /// In major units as people write it ("450.00"), read by the currency's exponent.
    price: String,
    #[serde(default)]
    work_steps: Vec<String>,
}

async fn create_product(AxState(s): S, headers: HeaderMap, Json(b): Json<NewProduct>) -> Response {
    let price = Currency::parse(b.currency).and_then(|c| Money::parse_major(c, &b.price));
    let price = match price {
        Ok(p) => p,
        Err(e) => return refused(crate::error::ApiError::Invalid(e).into()),
    };
    let req = pb::CreateProductRequest {
        id: String::new(),
        name: b.name,
        unit_price: Some(crate::convert::money(&price)),
        work_steps: b
            .work_steps
            .into_iter()
            .filter(|s| !s.trim().is_empty())
            .collect(),
    };
    answer(Admin(s).create_product(call(&headers, req)).await, |p| {
        json::product(&p)
    })
}

async fn admin_windows(AxState(s): S, headers: HeaderMap) -> Response {
    let r = Admin(s)
        .list_sell_windows(call(&headers, pb::ListSellWindowsRequest::default()))
        .await;
    answer(
        r,
        |w| json!({ "windows": w.sell_windows.iter().map(json::window).collect::<Vec<_>>() }),
    )
}

async fn admin_window(AxState(s): S, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let req = pb::GetSellWindowRequest { sell_window_id: id };
    answer(Admin(s).get_sell_window(call(&headers, req)).await, |w| {
        json::window(&w)
    })
}

#[derive(Deserialize)]
struct NewListing {
    product_id: String,
    min_qty: u32,
    max_qty: u32,
    payment_window_secs: i64,
    #[serde(default)]
    per_customer_limit: u32,
    #[serde(default)]
    refund_under_threshold: bool,
}

#[derive(Deserialize)]
struct NewWindow {
    name: String,
    close_at_ms: i64,
    listings: Vec<NewListing>,
    #[serde(default)]
    request_id: String,
}

async fn create_window(AxState(s): S, headers: HeaderMap, Json(b): Json<NewWindow>) -> Response {
    let req = pb::CreateSellWindowRequest {
        name: b.name,
        close_at: Some(crate::convert::ts(b.close_at_ms)),
        listings: b
            .listings
            .into_iter()
            .map(|l| pb::ListingInput {
                product_id: l.product_id,
                min_qty: l.min_qty,
                max_qty: l.max_qty,
                payment_window: Some(prost_types::Duration {
                    seconds: l.payment_window_secs,
                    nanos: 0,
                }),
                per_customer_limit: l.per_customer_limit,
                min_paid_policy: if l.refund_under_threshold {
                    pb::MinPaidPolicy::CancelAndRefund as i32
                } else {
                    pb::MinPaidPolicy::ProducePaid as i32
                },
            })
            .collect(),
        request_id: b.request_id,
    };
    answer(
        Admin(s).create_sell_window(call(&headers, req)).await,
        |w| json::window(&w),
    )
}

#[derive(Deserialize)]
struct ListingRef {
    sell_window_id: String,
    #[serde(default)]
    product_id: String,
}

async fn confirm(AxState(s): S, headers: HeaderMap, Json(b): Json<ListingRef>) -> Response {
    let req = pb::ConfirmBatchRequest {
        sell_window_id: b.sell_window_id,
        product_id: b.product_id,
    };
    answer(Admin(s).confirm_batch(call(&headers, req)).await, |c| {
        json!({ "batch_id": c.batch_id, "status": c.status,
                "payment_requested_orders": c.payment_requested_orders,
                "in_progress": c.payment_requests_in_progress })
    })
}

async fn cancel_window(AxState(s): S, headers: HeaderMap, Json(b): Json<ListingRef>) -> Response {
    let req = pb::CancelSellWindowRequest {
        sell_window_id: b.sell_window_id,
    };
    answer(
        Admin(s).cancel_sell_window(call(&headers, req)).await,
        |w| json::window(&w),
    )
}

async fn work_orders(AxState(s): S, headers: HeaderMap, Path(window): Path<String>) -> Response {
    let req = pb::ListWorkOrdersRequest {
        sell_window_id: window,
        ..Default::default()
    };
    answer(
        Admin(s).list_work_orders(call(&headers, req)).await,
        |w| json!({ "work_orders": w.work_orders.iter().map(json::work_order).collect::<Vec<_>>() }),
    )
}

#[derive(Deserialize)]
struct StepRef {
    work_order_id: String,
    step_id: String,
}

async fn complete_step(AxState(s): S, headers: HeaderMap, Json(b): Json<StepRef>) -> Response {
    let req = pb::CompleteWorkStepRequest {
        work_order_id: b.work_order_id,
        step_id: b.step_id,
    };
    answer(
        Admin(s).complete_work_step(call(&headers, req)).await,
        |c| {
            json!({ "production_completed": c.production_completed,
                "work_order": c.work_order.as_ref().map(json::work_order) })
        },
    )
}

async fn events(AxState(s): S, headers: HeaderMap, Path(window): Path<String>) -> Response {
    let req = pb::ListEventsRequest {
        sell_window_id: window,
        page_size: 1_000,
        ..Default::default()
    };
    answer(Admin(s).list_events(call(&headers, req)).await, |e| {
        json!({ "events": e.events.iter().map(json::event).collect::<Vec<_>>(),
                "more": !e.next_page_token.is_empty() })
    })
}

/// The admin's notifications, the payments to refund by hand first, whatever the volume.
async fn admin_notifications(AxState(s): S, headers: HeaderMap) -> Response {
    let admin = Admin(s);
    let urgent = pb::ListNotificationsRequest {
        kind: "manual_refund_needed".into(),
        page_size: 100,
        ..Default::default()
    };
    let urgent = match admin.list_notifications(call(&headers, urgent)).await {
        Ok(r) => r.into_inner(),
        Err(e) => return refused(e),
    };
    let recent = pb::ListNotificationsRequest {
        page_size: 200,
        newest_first: true,
        ..Default::default()
    };
    answer(
        admin.list_notifications(call(&headers, recent)).await,
        |r| {
            json!({
                "urgent": urgent.notifications.iter().map(json::notification).collect::<Vec<_>>(),
                "recent": r.notifications.iter()
                    .filter(|n| n.recipient_kind == "ADMIN")
                    .map(json::notification).collect::<Vec<_>>(),
            })
        },
    )
}
