//! One typed configuration for the worker and the API, read from the environment with working
//! local defaults. Outside development mode the defaults refuse to start without real secrets.

use std::net::SocketAddr;

/// The development secrets: fine on a laptop, refused anywhere else.
pub const DEV_JWT_SECRET: &str = "dev-only-jwt-secret-change-me";
pub const DEV_CALLBACK_SECRET: &str = "dev-only-callback-secret-change-me";

#[derive(Clone)]
pub struct Config {
    pub env: Env,
    pub database_url: String,
    pub temporal_address: String,
    pub temporal_namespace: String,
    pub task_queue: String,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Base URL customers reach the HTTP side at (pay links point here).
    pub public_base_url: String,
    /// Where the payment sandbox sends its signed callbacks.
    pub payment_callback_url: String,
    pub jwt_secret: String,
    pub callback_secret: String,
    /// When set, notifications are POSTed here (with retries) instead of only logged.
    pub notify_webhook_url: Option<String>,
    /// Serve the payment sandbox outside development too (demo deployments only: anyone who
    /// knows a payment id can mark it paid there).
    pub sandbox_in_production: bool,
    /// The largest listing state (base64 characters) carried inline when a listing's workflow
    /// continues as new; larger ones go through the database. None: the workflow's default.
    pub handover_inline_max: Option<u32>,
    /// Gzip the gRPC traffic with Temporal (the SDK's default). Off unless asked for: reserve
    /// updates carry a few kilobytes each, and on a busy host compressing them costs more CPU
    /// in the worker, the API and the server than it saves (a link between data centres may
    /// want it on).
    pub temporal_grpc_gzip: bool,
}

impl Config {
    /// Whether the HTTP side serves the payment sandbox.
    pub fn serves_sandbox(&self) -> bool {
        self.env == Env::Development || self.sandbox_in_production
    }
}

impl std::fmt::Debug for Config {
    // Secrets never reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("env", &self.env)
            .field("database_url", &redact_url(&self.database_url))
            .field("temporal_address", &self.temporal_address)
            .field("temporal_namespace", &self.temporal_namespace)
            .field("task_queue", &self.task_queue)
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("public_base_url", &self.public_base_url)
            .field(
                "notify_webhook_url",
                &self.notify_webhook_url.as_deref().map(redact_url),
            )
            .finish_non_exhaustive()
    }
}

fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Env {
    Development,
    Production,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0} is not valid: {1}")]
    Invalid(&'static str, String),
    #[error("{0} must be set to a real secret (at least 32 characters) outside development")]
    MissingSecret(&'static str),
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let or = |k: &str, d: &str| get(k).filter(|v| !v.is_empty()).unwrap_or_else(|| d.into());
        let env = match or("SELLWINDOW_ENV", "development").as_str() {
            "development" | "dev" => Env::Development,
            "production" | "prod" => Env::Production,
            other => return Err(ConfigError::Invalid("SELLWINDOW_ENV", other.into())),
        };
        let addr = |k: &'static str, d: &str| -> Result<SocketAddr, ConfigError> {
            or(k, d)
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Invalid(k, e.to_string()))
        };
        let secret = |k: &'static str, dev: &str| -> Result<String, ConfigError> {
            match (get(k).filter(|v| !v.is_empty()), env) {
                (Some(v), Env::Production) if v.len() < 32 || v == dev => {
                    Err(ConfigError::MissingSecret(k))
                }
                (Some(v), _) => Ok(v),
                (None, Env::Development) => Ok(dev.to_string()),
                (None, Env::Production) => Err(ConfigError::MissingSecret(k)),
            }
        };
        let http_addr = addr("HTTP_ADDR", "127.0.0.1:8080")?;
        let public_base_url = or("PUBLIC_BASE_URL", &format!("http://{http_addr}"));
        Ok(Self {
            env,
            database_url: or("DATABASE_URL", "sqlite://data/sellwindow.db?mode=rwc"),
            temporal_address: or("TEMPORAL_ADDRESS", "http://127.0.0.1:7233"),
            temporal_namespace: or("TEMPORAL_NAMESPACE", "default"),
            task_queue: or("TEMPORAL_TASK_QUEUE", "sellwindow"),
            grpc_addr: addr("GRPC_ADDR", "127.0.0.1:50051")?,
            http_addr,
            payment_callback_url: or(
                "PAYMENT_CALLBACK_URL",
                &format!(
                    "{}/payments/callback",
                    public_base_url.trim_end_matches('/')
                ),
            ),
            public_base_url,
            jwt_secret: secret("JWT_SECRET", DEV_JWT_SECRET)?,
            callback_secret: secret("PAYMENT_CALLBACK_SECRET", DEV_CALLBACK_SECRET)?,
            notify_webhook_url: get("NOTIFY_WEBHOOK_URL").filter(|v| !v.is_empty()),
            sandbox_in_production: matches!(
                get("PAYMENT_SANDBOX_IN_PRODUCTION").as_deref(),
                Some("1" | "true")
            ),
            handover_inline_max: match get("LISTING_HANDOVER_INLINE_MAX").filter(|v| !v.is_empty())
            {
                None => None,
                Some(v) => Some(v.parse().map_err(|e: std::num::ParseIntError| {
                    ConfigError::Invalid("LISTING_HANDOVER_INLINE_MAX", e.to_string())
                })?),
            },
            temporal_grpc_gzip: match get("TEMPORAL_GRPC_COMPRESSION").as_deref() {
                None | Some("" | "none") => false,
                Some("gzip") => true,
                Some(other) => {
                    return Err(ConfigError::Invalid(
                        "TEMPORAL_GRPC_COMPRESSION",
                        format!("{other:?}: none or gzip"),
                    ));
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| m.get(k).cloned())
    }

    #[test]
    fn development_starts_with_defaults() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.jwt_secret, DEV_JWT_SECRET);
        assert_eq!(
            c.payment_callback_url,
            "http://127.0.0.1:8080/payments/callback"
        );
    }

    #[test]
    fn production_refuses_to_start_without_real_secrets() {
        assert!(matches!(
            cfg(&[("SELLWINDOW_ENV", "production")]),
            Err(ConfigError::MissingSecret("JWT_SECRET"))
        ));
        let long = "x".repeat(40);
        assert!(matches!(
            cfg(&[
                ("SELLWINDOW_ENV", "production"),
                ("JWT_SECRET", &long),
                ("PAYMENT_CALLBACK_SECRET", DEV_CALLBACK_SECRET)
            ]),
            Err(ConfigError::MissingSecret("PAYMENT_CALLBACK_SECRET"))
        ));
        assert!(
            cfg(&[
                ("SELLWINDOW_ENV", "production"),
                ("JWT_SECRET", &long),
                ("PAYMENT_CALLBACK_SECRET", &long)
            ])
            .is_ok()
        );
    }

    #[test]
    fn debug_output_hides_secrets_and_passwords() {
        let c = cfg(&[
            ("DATABASE_URL", "postgres://u:hunter2@db/x"),
            ("JWT_SECRET", "s3cr3t-value"),
        ])
        .unwrap();
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cr3t-value"),
            "{shown}"
        );
    }

    #[test]
    fn temporal_traffic_is_compressed_only_when_asked() {
        assert!(!cfg(&[]).unwrap().temporal_grpc_gzip);
        assert!(
            !cfg(&[("TEMPORAL_GRPC_COMPRESSION", "none")])
                .unwrap()
                .temporal_grpc_gzip
        );
        assert!(
            cfg(&[("TEMPORAL_GRPC_COMPRESSION", "gzip")])
                .unwrap()
                .temporal_grpc_gzip
        );
        assert!(matches!(
            cfg(&[("TEMPORAL_GRPC_COMPRESSION", "zstd")]),
            Err(ConfigError::Invalid("TEMPORAL_GRPC_COMPRESSION", _))
        ));
    }
}
