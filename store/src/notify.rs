//! Notification delivery. Notifications are persisted in the same transaction as the change
//! they announce; a sink then delivers them, and [`redeliver_pending`] retries whatever a sink
//! could not deliver, with an attempt limit and a dead-letter state the admin sees. The log sink is the default; the webhook sink POSTs each notification as
//! JSON with retries.

use crate::db::{self, Notification, Recipient, Store, StoreResult};
use futures::StreamExt;
use sellwindow_domain::{OrderId, ProductId, SellWindowId, UnixMillis};
use sqlx::Row;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub type DeliverFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

pub trait NotificationSink: Send + Sync + 'static {
    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliverFuture<'a>;
}

/// Writes each notification to the log (target `sellwindow::notification`).
pub struct LogSink;

/// The configured sink: the webhook when one is set, else the log.
pub fn configured_sink(webhook_url: Option<&str>) -> std::sync::Arc<dyn NotificationSink> {
    match webhook_url {
        Some(url) => std::sync::Arc::new(WebhookSink::new(url.to_string())),
        None => std::sync::Arc::new(LogSink),
    }
}

impl NotificationSink for LogSink {
    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliverFuture<'a> {
        Box::pin(async move {
            tracing::info!(
                target: "sellwindow::notification",
                to = %format!("{}:{}", n.recipient.as_str(), n.recipient_id),
                kind = %n.kind,
                "{}",
                n.message
            );
            Ok(())
        })
    }
}

/// POSTs each notification as JSON to a URL; retries with backoff on errors and non-2xx
/// answers. The notification id is sent as `Idempotency-Key`, so a receiver can drop repeats.
pub struct WebhookSink {
    url: String,
    client: reqwest::Client,
    attempts: u32,
    backoff: Duration,
}

impl WebhookSink {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            attempts: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

impl NotificationSink for WebhookSink {
    fn deliver<'a>(&'a self, n: &'a Notification) -> DeliverFuture<'a> {
        Box::pin(async move {
            let mut last = String::new();
            for attempt in 0..self.attempts {
                if attempt > 0 {
                    tokio::time::sleep(self.backoff * 2u32.pow(attempt - 1)).await;
                }
                match self
                    .client
                    .post(&self.url)
                    .header("idempotency-key", &n.id)
                    .json(n)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => return Ok(()),
                    Ok(r) => last = format!("webhook answered {}", r.status()),
                    Err(e) => last = format!("webhook unreachable: {e}"),
                }
            }
            Err(last)
        })
    }
}

/// How undelivered notifications are tried again.
#[derive(Debug, Clone, Copy)]
pub struct Redelivery {
    /// Attempts by the redelivery loop before a notification is marked dead.
    pub max_attempts: u32,
    /// The pause after the first failed attempt; it doubles with each one (up to an hour).
    pub backoff: Duration,
    /// How long a claim keeps other workers off a notification being delivered.
    pub lease: Duration,
    /// Notifications delivered at once.
    pub concurrency: usize,
}

impl Default for Redelivery {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            backoff: Duration::from_secs(30),
            lease: Duration::from_secs(120),
            concurrency: 16,
        }
    }
}

/// What one round of redelivery did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Redelivered {
    pub delivered: usize,
    pub failed: usize,
    /// Failed their last attempt: now dead.
    pub dead: usize,
}

/// Delivers notifications that were persisted but not delivered (a sink was down, or the
/// process stopped between commit and delivery), created before `older_than` and due at
/// `now`. Each is claimed first, so several workers never deliver one at once; one failing
/// never holds the others back; after its last attempt it is marked dead.
pub async fn redeliver_pending(
    store: &Store,
    sink: &dyn NotificationSink,
    older_than: UnixMillis,
    now: UnixMillis,
    policy: Redelivery,
) -> StoreResult<Redelivered> {
    let claimed = claim(store, older_than, now, policy).await?;
    let outcomes = futures::stream::iter(claimed)
        .map(|(n, attempts)| async move { (sink.deliver(&n).await, n, attempts) })
        .buffer_unordered(policy.concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut done = Redelivered::default();
    for (outcome, n, attempts) in outcomes {
        match outcome {
            Ok(()) => {
                db::mark_delivered(store, &n.id, now).await?;
                done.delivered += 1;
            }
            Err(error) => {
                let attempts = attempts + 1;
                let dead = attempts >= i64::from(policy.max_attempts);
                let pause = policy
                    .backoff
                    .saturating_mul(1 << (attempts - 1).clamp(0, 16));
                let next = now.plus_ms(pause.min(Duration::from_secs(3600)).as_millis() as i64);
                sqlx::query(
                    "UPDATE notifications SET delivery_attempts = $1, last_delivery_error = $2, \
                     next_attempt_at = $3, claimed_until = NULL, dead_at = $4 WHERE id = $5",
                )
                .bind(attempts)
                .bind(error.chars().take(500).collect::<String>())
                .bind(next.0)
                .bind(dead.then_some(now.0))
                .bind(&n.id)
                .execute(store.pool())
                .await?;
                tracing::warn!(notification = %n.id, attempts, dead, %error, "notification not delivered");
                done.failed += 1;
                done.dead += usize::from(dead);
            }
        }
    }
    Ok(done)
}

/// Claims up to 500 notifications due for another attempt; returns them with the attempts
/// made so far. The claim's condition is checked again on each row as it is updated, so of
/// two workers claiming at once each row goes to one.
async fn claim(
    store: &Store,
    older_than: UnixMillis,
    now: UnixMillis,
    policy: Redelivery,
) -> StoreResult<Vec<(Notification, i64)>> {
    let rows = sqlx::query(
        "UPDATE notifications SET claimed_until = $3 \
         WHERE id IN (SELECT id FROM notifications WHERE delivered_at IS NULL AND dead_at IS NULL \
                      AND created_at < $1 AND (next_attempt_at IS NULL OR next_attempt_at <= $2) \
                      AND (claimed_until IS NULL OR claimed_until < $2) ORDER BY created_at LIMIT 500) \
         AND delivered_at IS NULL AND dead_at IS NULL AND (claimed_until IS NULL OR claimed_until < $2) \
         RETURNING id, recipient_kind, recipient_id, kind, sell_window_id, product_id, order_id, message, \
                   created_at, delivery_attempts",
    )
    .bind(older_than.0)
    .bind(now.0)
    .bind(now.plus_ms(policy.lease.as_millis() as i64).0)
    .fetch_all(store.pool())
    .await?;
    rows.iter()
        .map(|r| {
            let ids = |col: &str| -> StoreResult<Option<String>> {
                Ok(r.try_get::<Option<String>, _>(col)?)
            };
            let n = Notification {
                id: r.try_get("id")?,
                recipient: if r.try_get::<String, _>("recipient_kind")? == "ADMIN" {
                    Recipient::Admin
                } else {
                    Recipient::Customer
                },
                recipient_id: r.try_get("recipient_id")?,
                kind: r.try_get("kind")?,
                sell_window_id: ids("sell_window_id")?.and_then(|s| SellWindowId::parse(s).ok()),
                product_id: ids("product_id")?.and_then(|s| ProductId::parse(s).ok()),
                order_id: ids("order_id")?.and_then(|s| OrderId::parse(s).ok()),
                message: r.try_get("message")?,
                created_at: UnixMillis(r.try_get("created_at")?),
            };
            Ok((n, r.try_get::<i64, _>("delivery_attempts")?))
        })
        .collect()
}
