//! The HTTP side: the payment provider's signed callback (verified, then signalled to the
//! listing's workflow), the built-in payment sandbox that sends such callbacks, health and
//! metrics.

use crate::app::State;
use crate::convert::now_ms;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::signature;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use sellwindow_domain::*;
use sellwindow_store::queries::PaymentRow;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Largest callback body accepted.
pub const MAX_CALLBACK_BYTES: usize = 16 * 1024;

/// A provider's callback body. Once its signature verifies, what a provider may reasonably
/// send is accepted: fields of its own are ignored, and the time may be unix seconds (whole or
/// not) or an RFC 3339 string. An amount, when given, must be the order's.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CallbackBody {
    pub event_id: String,
    pub payment_id: String,
    pub order_id: String,
    pub outcome: String,
    #[serde(default)]
    pub error: Option<String>,
    pub occurred_at: OccurredAt,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// When the provider says the outcome happened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OccurredAt {
    Seconds(i64),
    Fractional(f64),
    Text(String),
}

impl OccurredAt {
    pub fn millis(&self) -> Result<UnixMillis, String> {
        let ms = match self {
            OccurredAt::Seconds(s) => s.saturating_mul(1000),
            OccurredAt::Fractional(s) if s.is_finite() => (s * 1000.0) as i64,
            OccurredAt::Fractional(_) => return Err("occurred_at is not a number".into()),
            OccurredAt::Text(t) => match t.trim().parse::<i64>() {
                Ok(s) => s.saturating_mul(1000),
                Err(_) => chrono::DateTime::parse_from_rfc3339(t.trim())
                    .map_err(|e| format!("occurred_at is neither unix seconds nor RFC 3339: {e}"))?
                    .timestamp_millis(),
            },
        };
        Ok(UnixMillis(ms))
    }
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
    r.merge(crate::web::router(state.clone()))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_CALLBACK_BYTES))
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
        occurred_at: cb.occurred_at.millis()?,
    };
    Ok((cb, result))
}

/// The amount a callback says was paid, when it says one that is not the payment's.
fn wrong_amount(cb: &CallbackBody, expected: &Money) -> Option<String> {
    let said = match (cb.amount_minor, cb.currency.as_deref()) {
        (None, None) => return None,
        (amount, currency) => (amount, currency),
    };
    let right = said.0 == Some(expected.amount_minor)
        && said.1.is_none_or(|c| c == expected.currency.as_str());
    (!right).then(|| match (said.0, said.1.map(Currency::parse)) {
        (Some(amount_minor), Some(Ok(currency))) => Money {
            currency,
            amount_minor,
        }
        .to_string(),
        (amount, currency) => format!(
            "{} (currency {})",
            amount.map_or("no amount".to_string(), |a| format!("{a} minor units")),
            currency.map_or("not given".to_string(), |_| said
                .1
                .unwrap_or("")
                .to_string())
        ),
    })
}

/// Answers a refused callback and counts it as rejected.
fn reject(s: &State, code: StatusCode, msg: &str) -> Response {
    Metrics::inc(&s.metrics.callbacks_rejected);
    reply(code, msg)
}

/// The payment provider's callback: verified, read, recorded once, then handed to its listing.
async fn callback(AxState(s): AxState<Arc<State>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(e) = check_signature(&s.cfg.callback_secret, &headers, &body) {
        return reject(&s, StatusCode::UNAUTHORIZED, &e);
    }
    let (cb, result) = match parse_callback(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::error!(error = %e, "a signed callback could not be read");
            return reject(&s, StatusCode::BAD_REQUEST, &e);
        }
    };
    let payment = match payment_of(&s, &result).await {
        Ok(payment) => payment,
        Err(answer) => return answer,
    };
    if let Some(said) = wrong_amount(&cb, &payment.amount) {
        return record_wrong_amount(&s, &result, &said, &payment.amount).await;
    }
    let listing = ListingKey {
        sell_window_id: payment.sell_window_id.clone(),
        product_id: payment.product_id.clone(),
    };
    if let Err(answer) = record_once(&s, &result, &listing).await {
        return answer;
    }
    if let Err(answer) = tell_listing(&s, &result, &payment, &listing).await {
        return answer;
    }
    let _ = s
        .store
        .mark_callback_signalled(&result.event_id, now_ms())
        .await;
    Metrics::inc(&s.metrics.callbacks_accepted);
    reply(StatusCode::OK, "accepted")
}

/// Checks the provider's signature over the body; the error says what is wrong.
fn check_signature(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
    let sig = headers
        .get("x-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or("missing X-Signature")?;
    signature::verify(secret, sig, body, now_ms().0 / 1000).map_err(|e| e.to_string())
}

/// The payment the callback is about, which must belong to the order it names.
async fn payment_of(s: &State, result: &PaymentResult) -> Result<PaymentRow, Response> {
    let payment = match s.store.payment(&result.payment_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(reject(s, StatusCode::NOT_FOUND, "unknown payment")),
        Err(e) => {
            tracing::warn!(error = %e, "callback lookup failed");
            return Err(reply(StatusCode::SERVICE_UNAVAILABLE, "try again"));
        }
    };
    if payment.order_id != result.order_id {
        return Err(reject(
            s,
            StatusCode::BAD_REQUEST,
            "payment does not belong to that order",
        ));
    }
    Ok(payment)
}

/// Not the order's amount: never counted. Recorded, and the admin told, once.
async fn record_wrong_amount(
    s: &State,
    result: &PaymentResult,
    said: &str,
    expected: &Money,
) -> Response {
    match s
        .store
        .record_mismatched_callback(result, said, expected, now_ms())
        .await
    {
        Ok(_) => {
            Metrics::inc(&s.metrics.callbacks_rejected);
            reply(
                StatusCode::OK,
                "recorded: the amount is not the order's; not counted",
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "callback not recorded");
            reply(StatusCode::SERVICE_UNAVAILABLE, "try again")
        }
    }
}

/// Records the callback against its listing; an event recorded before is answered as applied.
async fn record_once(
    s: &State,
    result: &PaymentResult,
    listing: &ListingKey,
) -> Result<(), Response> {
    match s.store.record_callback(result, listing, now_ms()).await {
        Ok(true) => Ok(()),
        Ok(false) => {
            Metrics::inc(&s.metrics.callbacks_duplicate);
            Err(reply(StatusCode::OK, "duplicate event; already applied"))
        }
        Err(e) => {
            tracing::warn!(error = %e, "callback not recorded");
            Err(reply(StatusCode::SERVICE_UNAVAILABLE, "try again"))
        }
    }
}

/// Tells the listing's workflow a recorded callback is waiting, within the call deadline.
async fn tell_listing(
    s: &State,
    result: &PaymentResult,
    payment: &PaymentRow,
    listing: &ListingKey,
) -> Result<(), Response> {
    let workflow_id = listing.workflow_id();
    let tell = s.pokes.poke(&workflow_id);
    // Recorded already: a provider retrying after a 503 finds it and tells the listing again.
    let handed = tokio::time::timeout(s.cfg.rpc_deadline, tell)
        .await
        .unwrap_or_else(|_| Err(crate::listing_calls::too_late("telling the listing")));
    match handed {
        Ok(()) => Ok(()),
        Err(ApiError::Finished) => Err(refuse_after_close(s, result, payment).await),
        Err(e) => {
            // Not marked as handed over: the provider's retry will try again.
            tracing::warn!(error = %e, payment = %result.payment_id, "listing not told");
            Err(reply(StatusCode::SERVICE_UNAVAILABLE, "try again"))
        }
    }
}

/// The listing finished (past its settling period): nothing can apply this payment any more.
/// Tells the admin to refund it by hand, and the provider to stop.
async fn refuse_after_close(s: &State, result: &PaymentResult, payment: &PaymentRow) -> Response {
    let message = format!(
        "Payment {} for order {} ({}) arrived after its sell window had closed: refund it manually.",
        result.payment_id, result.order_id, payment.amount
    );
    let alert = (result.outcome == PaymentOutcome::Succeeded).then_some((
        &result.order_id,
        &result.payment_id,
        message.as_str(),
    ));
    let note = "the listing had finished: not applied";
    if let Err(e) = s
        .store
        .flag_callback(&result.event_id, note, alert, now_ms())
        .await
    {
        tracing::warn!(error = %e, "late callback not recorded");
        return reply(StatusCode::SERVICE_UNAVAILABLE, "try again");
    }
    if alert.is_some() {
        tracing::error!(payment = %result.payment_id, "payment after the listing closed: refund it manually");
    }
    reject(
        s,
        StatusCode::CONFLICT,
        "the sell window has closed; the payment is not applied",
    )
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
    // Only an open attempt can still be paid, failed or let expire.
    let actions = if p.status == PaymentStatus::Init.as_str() {
        format!(
            "{}{}{}",
            button("succeeded", "Pay"),
            button("failed", "Fail the payment"),
            button("expired", "Let it expire")
        )
    } else {
        format!(
            "<p>This payment is <b>{}</b>: {}</p>",
            escape(&p.status.to_lowercase()),
            match p.status.as_str() {
                "SUCCEEDED" => "it has been paid.",
                "REFUNDED" => "it was paid and the money has been given back.",
                "FAILED" => "ask the shop for a new payment link.",
                _ => "nothing more can be done with it.",
            }
        )
    };
    Html(format!(
        "<!doctype html><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Payment sandbox</title>\
         <h1>Payment sandbox</h1><p>Order <code>{}</code> · payment <code>{}</code></p>\
         <p>Amount: <b>{}</b> · status: <b id=status>{}</b></p>{}\
         <p><small>This page stands in for a payment provider: each button sends a signed callback to the shop.</small></p>",
        escape(p.order_id.as_str()),
        escape(p.id.as_str()),
        escape(&p.amount.to_string()),
        escape(&p.status),
        actions,
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
    if p.status != PaymentStatus::Init.as_str() {
        return reply(StatusCode::CONFLICT, "this payment is no longer open");
    }
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
        occurred_at: OccurredAt::Seconds(now.0 / 1000),
        amount_minor: Some(p.amount.amount_minor),
        currency: Some(p.amount.currency.as_str().to_string()),
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
