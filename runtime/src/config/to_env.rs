//! The inverse of reading the configuration: the environment that sets a process up exactly as
//! a [`Config`] says (how a parent starts its `starter serve` / `starter worker` children).

use super::{Config, Env, TemporalTls};
use std::path::PathBuf;

/// One variable of the environment: its name and its value.
type Variable = (&'static str, String);

impl Config {
    /// The environment that configures a process exactly as `self` (the inverse of
    /// `from_lookup`): how a parent starts `starter serve` / `starter worker` children.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.places_and_secrets_env();
        env.extend(self.listing_tuning_env());
        env.extend(self.serving_env());
        env.extend(self.temporal_tls_env());
        env.extend([
            (
                "WORKER_METRICS_ADDR",
                self.worker_metrics_addr
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
            ),
            (
                "TEMPORAL_GRPC_COMPRESSION",
                if self.temporal_grpc_gzip {
                    "gzip"
                } else {
                    "none"
                }
                .into(),
            ),
        ]);
        env
    }

    /// Where the process stores, connects and listens, its secrets, and where it sends
    /// notifications.
    fn places_and_secrets_env(&self) -> Vec<Variable> {
        let environment = match self.env {
            Env::Development => "development",
            Env::Production => "production",
        };
        vec![
            ("SELLWINDOW_ENV", environment.into()),
            ("DATABASE_URL", self.database_url.clone()),
            ("TEMPORAL_ADDRESS", self.temporal_address.clone()),
            ("TEMPORAL_NAMESPACE", self.temporal_namespace.clone()),
            ("TEMPORAL_TASK_QUEUE", self.task_queue.clone()),
            ("GRPC_ADDR", self.grpc_addr.to_string()),
            ("HTTP_ADDR", self.http_addr.to_string()),
            ("PUBLIC_BASE_URL", self.public_base_url.clone()),
            ("PAYMENT_CALLBACK_URL", self.payment_callback_url.clone()),
            ("JWT_SECRET", self.jwt_secret.clone()),
            ("PAYMENT_CALLBACK_SECRET", self.callback_secret.clone()),
            (
                "NOTIFY_WEBHOOK_URL",
                self.notify_webhook_url.clone().unwrap_or_default(),
            ),
            (
                "PAYMENT_SANDBOX_IN_PRODUCTION",
                self.sandbox_in_production.to_string(),
            ),
        ]
    }

    /// How listings cut their fan-outs and hand over.
    fn listing_tuning_env(&self) -> [Variable; 4] {
        let tuning = &self.listing_tuning;
        [
            ("LISTING_SWEEP_CHUNK", tuning.sweep_chunk.to_string()),
            (
                "LISTING_HANDOVER_EVENTS",
                tuning.handover_events.to_string(),
            ),
            (
                "LISTING_HANDOVER_UPDATES",
                tuning.handover_updates.to_string(),
            ),
            (
                "LISTING_HANDOVER_SIGNALS",
                tuning.handover_signals.to_string(),
            ),
        ]
    }

    /// How the API serves calls: how many at once, the tokens it takes, how long it waits, and
    /// where it links operators to.
    fn serving_env(&self) -> [Variable; 6] {
        [
            (
                "MAX_CONCURRENT_CALLS",
                self.max_concurrent_calls.to_string(),
            ),
            ("TEMPORAL_UI_URL", self.temporal_ui_url.clone()),
            ("JWT_ISSUER", self.jwt_issuer.clone().unwrap_or_default()),
            (
                "JWT_AUDIENCE",
                self.jwt_audience.clone().unwrap_or_default(),
            ),
            (
                "JWT_MAX_LIFETIME_SECS",
                self.jwt_max_lifetime_secs.to_string(),
            ),
            ("RPC_DEADLINE_MS", self.rpc_deadline.as_millis().to_string()),
        ]
    }

    /// The PEM files and server name for TLS to Temporal; empty when it is off.
    fn temporal_tls_env(&self) -> [Variable; 4] {
        let tls_path = |f: fn(&TemporalTls) -> &Option<PathBuf>| {
            self.temporal_tls
                .as_ref()
                .and_then(|t| f(t).as_ref())
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        };
        [
            ("TEMPORAL_TLS_CA_FILE", tls_path(|t| &t.ca_file)),
            ("TEMPORAL_TLS_CERT_FILE", tls_path(|t| &t.client_cert_file)),
            ("TEMPORAL_TLS_KEY_FILE", tls_path(|t| &t.client_key_file)),
            (
                "TEMPORAL_TLS_SERVER_NAME",
                self.temporal_tls
                    .as_ref()
                    .and_then(|t| t.server_name.clone())
                    .unwrap_or_default(),
            ),
        ]
    }
}
