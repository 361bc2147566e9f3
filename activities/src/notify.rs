//! Notification delivery. Notifications are persisted in the same transaction as the change
//! they announce; a sink then delivers them, and [`redeliver_pending`] retries whatever a sink
//! could not deliver. The log sink is the default; the webhook sink POSTs each notification as
//! JSON with retries.

use crate::store::{self, Notification, Recipient, Store, StoreResult};
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

/// Delivers notifications that were persisted but not delivered (a sink was down, or the
/// process stopped between commit and delivery). Returns how many were delivered.
pub async fn redeliver_pending(
    store: &Store,
    sink: &dyn NotificationSink,
    older_than: UnixMillis,
) -> StoreResult<usize> {
    let rows = sqlx::query(
        "SELECT id, recipient_kind, recipient_id, kind, sell_window_id, product_id, order_id, message, created_at \
         FROM notifications WHERE delivered_at IS NULL AND created_at < $1 ORDER BY created_at LIMIT 500",
    )
    .bind(older_than.0)
    .fetch_all(store.pool())
    .await?;
    let mut delivered = 0;
    for r in rows {
        let ids =
            |col: &str| -> StoreResult<Option<String>> { Ok(r.try_get::<Option<String>, _>(col)?) };
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
        if sink.deliver(&n).await.is_ok() {
            store::mark_delivered(store, &n.id, older_than).await?;
            delivered += 1;
        }
    }
    Ok(delivered)
}
