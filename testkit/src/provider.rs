//! Playing the payment provider: signed callbacks sent to the shop as a provider sends them, and
//! the provider's own ledger of every event it sent. The money checks ([`crate::books`]) compare
//! the shop's books with this ledger, not with what the shop wrote about itself: a success the
//! shop dropped, or a refund it wrote without a provider's say, shows up as a difference.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// One event the provider sent about a payment attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEvent {
    pub event_id: String,
    pub payment_id: String,
    pub order_id: String,
    /// `succeeded`, `failed` or `expired`.
    pub outcome: String,
    /// The amount the provider says it charged, when the event carries one.
    pub amount_minor: Option<i64>,
}

/// Every event the provider sent, by event id (a redelivery is one event). Shared by clones.
#[derive(Debug, Clone, Default)]
pub struct Ledger(Arc<Mutex<BTreeMap<String, ProviderEvent>>>);

impl Ledger {
    pub fn record(&self, e: ProviderEvent) {
        self.lock().entry(e.event_id.clone()).or_insert(e);
    }

    /// Records a callback body as the shop received it, if the shop knew its payment: an event
    /// the shop refused as unsigned, malformed or for a payment it never opened (401, 400, 404)
    /// is an attack or a test of the refusals, not money the provider moved.
    pub fn record_body(&self, body: &serde_json::Value, status: u16) {
        if matches!(status, 400 | 401 | 404) {
            return;
        }
        let text = |k: &str| body[k].as_str().unwrap_or_default().to_string();
        self.record(ProviderEvent {
            event_id: text("event_id"),
            payment_id: text("payment_id"),
            order_id: text("order_id"),
            outcome: text("outcome"),
            amount_minor: body["amount_minor"].as_i64(),
        });
    }

    pub fn events(&self) -> Vec<ProviderEvent> {
        self.lock().values().cloned().collect()
    }

    /// The successes, by payment attempt: what the provider charged.
    pub fn charges(&self) -> BTreeMap<String, Vec<ProviderEvent>> {
        let mut m: BTreeMap<String, Vec<ProviderEvent>> = BTreeMap::new();
        for e in self.lock().values().filter(|e| e.outcome == "succeeded") {
            m.entry(e.payment_id.clone()).or_default().push(e.clone());
        }
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, ProviderEvent>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The provider's side of the shop's callback: where it posts, what it signs with, and the
/// ledger of what it sent.
#[derive(Debug, Clone)]
pub struct Provider {
    pub callback_url: String,
    pub secret: String,
    pub ledger: Ledger,
    http: reqwest::Client,
}

impl Provider {
    pub fn new(callback_url: impl Into<String>, secret: impl Into<String>) -> Self {
        Self {
            callback_url: callback_url.into(),
            secret: secret.into(),
            ledger: Ledger::default(),
            http: reqwest::Client::new(),
        }
    }

    /// The same provider keeping its events in `ledger`.
    pub fn with_ledger(mut self, ledger: Ledger) -> Self {
        self.ledger = ledger;
        self
    }

    /// Posts `body` signed with `secret` at unix time `t`; returns the HTTP status (0 when the
    /// shop could not be reached).
    pub async fn post(&self, body: &serde_json::Value, secret: &str, t: i64) -> u16 {
        let raw = serde_json::to_vec(body).expect("a JSON body");
        let sig = sellwindow_api::signature::sign(secret, t, &raw);
        self.post_raw(raw, Some(sig)).await
    }

    /// Posts raw bytes with `signature` as `X-Signature` (or none). Recorded in the ledger when
    /// the signature is the provider's own and fresh: a forged, stale or tampered callback is
    /// not the provider's event.
    pub async fn post_raw(&self, raw: Vec<u8>, signature: Option<String>) -> u16 {
        let mut req = self
            .http
            .post(&self.callback_url)
            .header("content-type", "application/json")
            .body(raw.clone());
        if let Some(sig) = &signature {
            req = req.header("x-signature", sig);
        }
        let status = req.send().await.map_or(0, |r| r.status().as_u16());
        let now = sellwindow_api::convert::now_ms().0 / 1000;
        let genuine = signature.as_deref().is_some_and(|sig| {
            sellwindow_api::signature::verify(&self.secret, sig, &raw, now).is_ok()
        });
        if genuine
            && status != 0
            && let Ok(body) = serde_json::from_slice(&raw)
        {
            self.ledger.record_body(&body, status);
        }
        status
    }

    /// Reports `outcome` for a payment attempt, now, under `event_id`.
    pub async fn report(
        &self,
        payment_id: &str,
        order_id: &str,
        outcome: &str,
        event_id: &str,
    ) -> u16 {
        let t = sellwindow_api::convert::now_ms().0 / 1000;
        let body = serde_json::json!({
            "event_id": event_id, "payment_id": payment_id, "order_id": order_id,
            "outcome": outcome,
            "error": (outcome == "failed").then_some("card declined"),
            "occurred_at": t,
        });
        self.post(&body, &self.secret.clone(), t).await
    }
}
