//! The HTTP side: the payment provider's signed callback (verified, then signalled to the
//! listing's workflow), the built-in payment sandbox that sends such callbacks, health and
//! metrics.

use crate::app::State;
use crate::convert::now_ms;
use crate::metrics::Metrics;
use crate::signature;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use sellwindow_domain::*;
use sellwindow_workflows::SellWindowWorkflow;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use temporalio_client::WorkflowSignalOptions;

/// Largest callback body accepted.
pub const MAX_CALLBACK_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallbackBody {
    pub event_id: String,
    pub payment_id: String,
    pub order_id: String,
    pub outcome: String,
    #[serde(default)]
    pub error: Option<String>,
    pub occurred_at: i64,
}

pub fn router(state: Arc<State>) -> Router {
    let mut r = Router::new()
        .route("/payments/callback", post(callback))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics));
    // The sandbox marks payments paid for anyone who knows their ids: development only,
    // unless a demo deployment opts in.
    if state.cfg.serves_sandbox() {
        r = r
            .route("/sandbox/pay/{payment_id}", get(sandbox_page))
            .route("/sandbox/pay/{payment_id}/{outcome}", post(sandbox_act));
    }
    r.layer(axum::extract::DefaultBodyLimit::max(MAX_CALLBACK_BYTES))
        .with_state(state)
}

fn reply(code: StatusCode, msg: &str) -> Response {
    (
        code,
        axum::Json(serde_json::json!({ "status": code.as_u16(), "message": msg })),
    )
        .into_response()
}

/// Parses and checks a callback body that has already passed the signature check.
pub fn parse_callback(body: &[u8]) -> Result<(CallbackBody, PaymentResult), String> {
    let cb: CallbackBody =
        serde_json::from_slice(body).map_err(|e| format!("malformed body: {e}"))?;
    if cb.event_id.is_empty() || cb.event_id.len() > 128 {
        return Err("event_id must be 1 to 128 characters".into());
    }
    let outcome =
        PaymentOutcome::parse(&cb.outcome).ok_or("outcome must be succeeded, failed or expired")?;
    let result = PaymentResult {
        event_id: cb.event_id.clone(),
        payment_id: PaymentId::parse(cb.payment_id.clone()).map_err(|e| e.to_string())?,
        order_id: OrderId::parse(cb.order_id.clone()).map_err(|e| e.to_string())?,
        outcome,
        error: cb.error.clone().map(|e| e.chars().take(500).collect()),
        occurred_at: UnixMillis(cb.occurred_at.saturating_mul(1000)),
    };
    Ok((cb, result))
}

async fn callback(AxState(s): AxState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    let reject = |code, msg: &str| {
        Metrics::inc(&s.metrics.callbacks_rejected);
        reply(code, msg)
    };
    let Some(sig) = headers.get("x-signature").and_then(|v| v.to_str().ok()) else {
        return reject(StatusCode::UNAUTHORIZED, "missing X-Signature");
    };
    if let Err(e) = signature::verify(&s.cfg.callback_secret, sig, &body, now_ms().0 / 1000) {
        return reject(StatusCode::UNAUTHORIZED, &e.to_string());
    }
    let (_, result) = match parse_callback(&body) {
        Ok(x) => x,
        Err(e) => return reject(StatusCode::BAD_REQUEST, &e),
    };
    let payment = match s.store.payment(&result.payment_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return reject(StatusCode::NOT_FOUND, "unknown payment"),
        Err(e) => {
            tracing::warn!(error = %e, "callback lookup failed");
            return reply(StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    };
    if payment.order_id != result.order_id {
        return reject(
            StatusCode::BAD_REQUEST,
            "payment does not belong to that order",
        );
    }
    match s
        .store
        .record_callback(
            &result.event_id,
            &result.payment_id,
            result.outcome,
            now_ms(),
        )
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            Metrics::inc(&s.metrics.callbacks_duplicate);
            return reply(StatusCode::OK, "duplicate event; already applied");
        }
        Err(e) => {
            tracing::warn!(error = %e, "callback not recorded");
            return reply(StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    }
    let handle = s
        .client
        .get_workflow_handle::<SellWindowWorkflow>(listing_workflow_id(
            &payment.sell_window_id,
            &payment.product_id,
        ));
    match handle
        .signal(
            SellWindowWorkflow::payment_result,
            result.clone(),
            WorkflowSignalOptions::default(),
        )
        .await
    {
        Ok(()) => {}
        Err(temporalio_client::errors::WorkflowInteractionError::NotFound(_)) => {
            // The listing finished (past its settling period): nothing can apply this payment
            // any more. Tell the admin to refund it by hand, and the provider to stop.
            let _ = s
                .store
                .mark_callback_signalled(&result.event_id, now_ms())
                .await;
            if result.outcome == PaymentOutcome::Succeeded {
                tracing::error!(payment = %result.payment_id, "payment after the listing closed: refund it manually");
                let _ = s.store.notify_admin(
                    "manual_refund_needed",
                    &format!("manual-refund:{}", result.payment_id),
                    &format!(
                        "Payment {} for order {} ({}) arrived after its sell window had closed: refund it manually.",
                        result.payment_id, result.order_id, payment.amount
                    ),
                    now_ms(),
                ).await;
            }
            return reject(
                StatusCode::CONFLICT,
                "the sell window has closed; the payment is not applied",
            );
        }
        Err(e) => {
            // Not marked as signalled: the provider's retry will try again.
            tracing::warn!(error = %e, payment = %result.payment_id, "signal failed");
            return reply(StatusCode::SERVICE_UNAVAILABLE, "try again");
        }
    }
    let _ = s
        .store
        .mark_callback_signalled(&result.event_id, now_ms())
        .await;
    Metrics::inc(&s.metrics.callbacks_accepted);
    reply(StatusCode::OK, "accepted")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn sandbox_page(AxState(s): AxState<Arc<State>>, Path(payment_id): Path<String>) -> Response {
    let Ok(id) = PaymentId::parse(payment_id) else {
        return reply(StatusCode::NOT_FOUND, "unknown payment");
    };
    let p = match s.store.payment(&id).await {
        Ok(Some(p)) => p,
        Ok(None) => return reply(StatusCode::NOT_FOUND, "unknown payment"),
        Err(_) => return reply(StatusCode::SERVICE_UNAVAILABLE, "try again"),
    };
    let button = |outcome: &str, label: &str| {
        format!(
            r#"<form method="post" action="/sandbox/pay/{}/{outcome}"><button>{label}</button></form>"#,
            escape(p.id.as_str())
        )
    };
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Payment sandbox</title>\
         <h1>Payment sandbox</h1><p>Order <code>{}</code> · payment <code>{}</code></p>\
         <p>Amount: <b>{}</b> · status: <b>{}</b></p>{}{}{}\
         <p><small>This page stands in for a payment provider: each button sends a signed callback to the shop.</small></p>",
        escape(p.order_id.as_str()),
        escape(p.id.as_str()),
        escape(&p.amount.to_string()),
        escape(&p.status),
        button("succeeded", "Pay"),
        button("failed", "Fail the payment"),
        button("expired", "Let it expire"),
    ))
    .into_response()
}

/// Sends a correctly signed callback, like a provider would, to the configured callback URL.
async fn sandbox_act(
    AxState(s): AxState<Arc<State>>,
    Path((payment_id, outcome)): Path<(String, String)>,
) -> Response {
    let Ok(id) = PaymentId::parse(payment_id) else {
        return reply(StatusCode::NOT_FOUND, "unknown payment");
    };
    if PaymentOutcome::parse(&outcome).is_none() {
        return reply(StatusCode::NOT_FOUND, "unknown outcome");
    }
    let p = match s.store.payment(&id).await {
        Ok(Some(p)) => p,
        Ok(None) => return reply(StatusCode::NOT_FOUND, "unknown payment"),
        Err(_) => return reply(StatusCode::SERVICE_UNAVAILABLE, "try again"),
    };
    let now = now_ms();
    let body = CallbackBody {
        event_id: format!(
            "sbx-{}",
            digest(&[p.id.as_str(), &outcome, &now.0.to_string()])
        ),
        payment_id: p.id.to_string(),
        order_id: p.order_id.to_string(),
        outcome: outcome.clone(),
        error: (outcome == "failed").then(|| "card declined (sandbox)".to_string()),
        occurred_at: now.0 / 1000,
    };
    let raw = serde_json::to_vec(&body).expect("serializable");
    let sig = signature::sign(&s.cfg.callback_secret, now.0 / 1000, &raw);
    let sent = s
        .http
        .post(&s.cfg.payment_callback_url)
        .header("content-type", "application/json")
        .header("x-signature", sig)
        .body(raw)
        .send()
        .await;
    match sent {
        Ok(r) => {
            let code = r.status().as_u16();
            Html(format!(
                "<!doctype html><meta charset=utf-8><title>Payment sandbox</title><h1>Sent: {}</h1><p>The shop answered {code}.</p>\
                 <p><a href=\"/sandbox/pay/{}\">Back</a></p>",
                escape(&outcome),
                escape(p.id.as_str())
            ))
            .into_response()
        }
        Err(e) => reply(
            StatusCode::BAD_GATEWAY,
            &format!("callback not delivered: {e}"),
        ),
    }
}

async fn healthz(AxState(s): AxState<Arc<State>>) -> Response {
    match s.store.ping().await {
        Ok(()) => reply(StatusCode::OK, "ok"),
        Err(_) => reply(StatusCode::SERVICE_UNAVAILABLE, "database unavailable"),
    }
}

async fn metrics(AxState(s): AxState<Arc<State>>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
        .into_response()
}
