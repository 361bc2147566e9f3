//! Notification delivery. Notifications are persisted in the same transaction as the change
//! they announce; a sink then delivers them. The log sink is the default.

use crate::store::Notification;
use std::future::Future;
use std::pin::Pin;

pub trait NotificationSink: Send + Sync + 'static {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// Writes each notification to the log (target `sellwindow::notification`).
pub struct LogSink;

impl NotificationSink for LogSink {
    fn deliver<'a>(
        &'a self,
        n: &'a Notification,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
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
