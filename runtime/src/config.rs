//! One typed configuration for the worker and the API, read from the environment with working
//! local defaults. Outside development mode the defaults refuse to start without real secrets.

use std::net::SocketAddr;
use std::path::PathBuf;

mod to_env;

/// The development secrets: fine on a laptop, refused anywhere else.
pub const DEV_JWT_SECRET: &str = "dev-only-jwt-secret-change-me";
pub const DEV_CALLBACK_SECRET: &str = "dev-only-callback-secret-change-me";

const DEFAULT_GRPC_ADDR: &str = "127.0.0.1:50051";
const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

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
    /// How listings started from now on cut their fan-outs and hand over (tests make the
    /// numbers small to exercise both with few orders).
    pub listing_tuning: sellwindow_workflows::Tuning,
    /// Gzip the gRPC traffic with Temporal (the SDK's default). Off unless asked for: reserve
    /// updates carry a few kilobytes each, and on a busy host compressing them costs more CPU
    /// in the worker, the API and the server than it saves (a link between data centres may
    /// want it on).
    pub temporal_grpc_gzip: bool,
    /// How long the API waits on a listing for any one call before answering
    /// DEADLINE_EXCEEDED (or, for an admin's fan-out the listing has accepted, answering
    /// that it is under way).
    pub rpc_deadline: std::time::Duration,
    /// gRPC calls one API process serves at once; past that a call is answered UNAVAILABLE.
    pub max_concurrent_calls: usize,
    /// Where operators open the Temporal UI (the admin console links each listing there).
    pub temporal_ui_url: String,
    /// When set, tokens must carry this `iss` / `aud` (the shop identity provider's).
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// Tokens expiring further ahead than this are refused.
    pub jwt_max_lifetime_secs: u64,
    /// TLS to the Temporal frontend (an `https://` TEMPORAL_ADDRESS); mutual when a client
    /// certificate is given.
    pub temporal_tls: Option<TemporalTls>,
    /// When set, the worker serves its own figures (how long its writes take) as Prometheus
    /// text at `GET /metrics` on this address.
    pub worker_metrics_addr: Option<SocketAddr>,
}

/// PEM files for TLS to Temporal, read when the process connects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TemporalTls {
    /// The CA that signed the server's certificate (else the system's roots).
    pub ca_file: Option<PathBuf>,
    /// This process's certificate and key, for mutual TLS: the server lets in only clients
    /// its CA signed.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// The name the server's certificate must carry (else the address's host).
    pub server_name: Option<String>,
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
            .field("temporal_tls", &self.temporal_tls)
            .field("worker_metrics_addr", &self.worker_metrics_addr)
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
    #[error(
        "SELLWINDOW_ENV is not set and GRPC_ADDR or HTTP_ADDR listens beyond loopback: set \
         SELLWINDOW_ENV=production with JWT_SECRET and PAYMENT_CALLBACK_SECRET, or \
         SELLWINDOW_ENV=development to run on the public development secrets anyway"
    )]
    Unsafe,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = &get;
        let env = environment(get)?;
        let http_addr = address(get, "HTTP_ADDR", DEFAULT_HTTP_ADDR)?;
        let public_base_url = or_default(get, "PUBLIC_BASE_URL", &format!("http://{http_addr}"));
        Ok(Self {
            env,
            database_url: or_default(get, "DATABASE_URL", "sqlite://data/sellwindow.db?mode=rwc"),
            temporal_address: or_default(get, "TEMPORAL_ADDRESS", "http://127.0.0.1:7233"),
            temporal_namespace: or_default(get, "TEMPORAL_NAMESPACE", "default"),
            task_queue: or_default(get, "TEMPORAL_TASK_QUEUE", "sellwindow"),
            grpc_addr: address(get, "GRPC_ADDR", DEFAULT_GRPC_ADDR)?,
            http_addr,
            payment_callback_url: or_default(
                get,
                "PAYMENT_CALLBACK_URL",
                &format!(
                    "{}/payments/callback",
                    public_base_url.trim_end_matches('/')
                ),
            ),
            public_base_url,
            jwt_secret: secret(get, env, "JWT_SECRET", DEV_JWT_SECRET)?,
            callback_secret: secret(get, env, "PAYMENT_CALLBACK_SECRET", DEV_CALLBACK_SECRET)?,
            notify_webhook_url: set(get, "NOTIFY_WEBHOOK_URL"),
            sandbox_in_production: matches!(
                get("PAYMENT_SANDBOX_IN_PRODUCTION").as_deref(),
                Some("1" | "true")
            ),
            listing_tuning: listing_tuning(get)?,
            max_concurrent_calls: positive_number(get, "MAX_CONCURRENT_CALLS", 4_096)?,
            temporal_ui_url: or_default(get, "TEMPORAL_UI_URL", "http://localhost:8233"),
            jwt_issuer: set(get, "JWT_ISSUER"),
            jwt_audience: set(get, "JWT_AUDIENCE"),
            jwt_max_lifetime_secs: jwt_max_lifetime_secs(get)?,
            rpc_deadline: rpc_deadline(get)?,
            temporal_tls: temporal_tls(get)?,
            worker_metrics_addr: worker_metrics_addr(get)?,
            temporal_grpc_gzip: temporal_grpc_gzip(get)?,
        })
    }
}

/// A variable's value when it is set: empty counts as unset.
fn set(get: &impl Fn(&str) -> Option<String>, key: &str) -> Option<String> {
    get(key).filter(|v| !v.is_empty())
}

/// A variable's value, or `default` when it is unset.
fn or_default(get: &impl Fn(&str) -> Option<String>, key: &str, default: &str) -> String {
    set(get, key).unwrap_or_else(|| default.into())
}

/// A listening address, `default` when unset.
fn address(
    get: &impl Fn(&str) -> Option<String>,
    key: &'static str,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    or_default(get, key, default)
        .parse()
        .map_err(|e: std::net::AddrParseError| ConfigError::Invalid(key, e.to_string()))
}

/// Development or production, as SELLWINDOW_ENV says; unset, development on loopback only.
fn environment(get: &impl Fn(&str) -> Option<String>) -> Result<Env, ConfigError> {
    match set(get, "SELLWINDOW_ENV").as_deref() {
        Some("development" | "dev") => Ok(Env::Development),
        Some("production" | "prod") => Ok(Env::Production),
        Some(other) => Err(ConfigError::Invalid("SELLWINDOW_ENV", other.into())),
        // Fail closed: the development secrets are public, so they apply unasked only
        // where nobody else can connect.
        None => {
            let loopback = address(get, "GRPC_ADDR", DEFAULT_GRPC_ADDR)?
                .ip()
                .is_loopback()
                && address(get, "HTTP_ADDR", DEFAULT_HTTP_ADDR)?
                    .ip()
                    .is_loopback();
            if !loopback {
                return Err(ConfigError::Unsafe);
            }
            Ok(Env::Development)
        }
    }
}

/// A secret: the development one may stand in only in development, and production takes
/// neither it nor anything short.
fn secret(
    get: &impl Fn(&str) -> Option<String>,
    env: Env,
    key: &'static str,
    dev: &str,
) -> Result<String, ConfigError> {
    match (set(get, key), env) {
        (Some(v), Env::Production) if v.len() < 32 || v == dev => {
            Err(ConfigError::MissingSecret(key))
        }
        (Some(v), _) => Ok(v),
        (None, Env::Development) => Ok(dev.to_string()),
        (None, Env::Production) => Err(ConfigError::MissingSecret(key)),
    }
}

/// How listings cut their fan-outs and hand over; the workflows' own numbers when unset.
fn listing_tuning(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<sellwindow_workflows::Tuning, ConfigError> {
    let d = sellwindow_workflows::Tuning::default();
    let number = |key, default| positive_number(get, key, default);
    Ok(sellwindow_workflows::Tuning {
        sweep_chunk: number("LISTING_SWEEP_CHUNK", d.sweep_chunk)?,
        handover_events: number("LISTING_HANDOVER_EVENTS", d.handover_events)?,
        handover_updates: number("LISTING_HANDOVER_UPDATES", d.handover_updates)?,
        handover_signals: number("LISTING_HANDOVER_SIGNALS", d.handover_signals)?,
    })
}

/// A count that must be positive; `default` when unset.
fn positive_number<T: std::str::FromStr + PartialOrd + Default>(
    get: &impl Fn(&str) -> Option<String>,
    key: &'static str,
    default: T,
) -> Result<T, ConfigError> {
    match set(get, key) {
        None => Ok(default),
        Some(v) => v
            .parse::<T>()
            .ok()
            .filter(|n| *n > T::default())
            .ok_or_else(|| ConfigError::Invalid(key, format!("{v:?}: a positive number"))),
    }
}

fn jwt_max_lifetime_secs(get: &impl Fn(&str) -> Option<String>) -> Result<u64, ConfigError> {
    match set(get, "JWT_MAX_LIFETIME_SECS") {
        None => Ok(30 * 24 * 3600),
        Some(v) => v.parse::<u64>().ok().filter(|s| *s > 0).ok_or_else(|| {
            ConfigError::Invalid("JWT_MAX_LIFETIME_SECS", format!("{v:?}: seconds"))
        }),
    }
}

fn rpc_deadline(get: &impl Fn(&str) -> Option<String>) -> Result<std::time::Duration, ConfigError> {
    match set(get, "RPC_DEADLINE_MS") {
        None => Ok(std::time::Duration::from_secs(10)),
        Some(v) => match v.parse::<u64>() {
            Ok(ms) if (100..=600_000).contains(&ms) => Ok(std::time::Duration::from_millis(ms)),
            _ => Err(ConfigError::Invalid(
                "RPC_DEADLINE_MS",
                format!("{v:?}: milliseconds between 100 and 600000"),
            )),
        },
    }
}

fn worker_metrics_addr(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SocketAddr>, ConfigError> {
    match set(get, "WORKER_METRICS_ADDR") {
        None => Ok(None),
        Some(v) => Ok(Some(v.parse().map_err(|e: std::net::AddrParseError| {
            ConfigError::Invalid("WORKER_METRICS_ADDR", e.to_string())
        })?)),
    }
}

fn temporal_grpc_gzip(get: &impl Fn(&str) -> Option<String>) -> Result<bool, ConfigError> {
    match get("TEMPORAL_GRPC_COMPRESSION").as_deref() {
        None | Some("" | "none") => Ok(false),
        Some("gzip") => Ok(true),
        Some(other) => Err(ConfigError::Invalid(
            "TEMPORAL_GRPC_COMPRESSION",
            format!("{other:?}: none or gzip"),
        )),
    }
}

/// TLS to Temporal is on exactly when TEMPORAL_ADDRESS is `https://`; the PEM files refine it.
fn temporal_tls(get: &impl Fn(&str) -> Option<String>) -> Result<Option<TemporalTls>, ConfigError> {
    let file = |k: &str| get(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let tls = TemporalTls {
        ca_file: file("TEMPORAL_TLS_CA_FILE"),
        client_cert_file: file("TEMPORAL_TLS_CERT_FILE"),
        client_key_file: file("TEMPORAL_TLS_KEY_FILE"),
        server_name: get("TEMPORAL_TLS_SERVER_NAME").filter(|v| !v.is_empty()),
    };
    if tls.client_cert_file.is_some() != tls.client_key_file.is_some() {
        return Err(ConfigError::Invalid(
            "TEMPORAL_TLS_CERT_FILE",
            "a client certificate and its key (TEMPORAL_TLS_KEY_FILE) go together".into(),
        ));
    }
    let https = get("TEMPORAL_ADDRESS").is_some_and(|a| a.starts_with("https://"));
    match (https, tls == TemporalTls::default()) {
        (true, _) => Ok(Some(tls)),
        (false, true) => Ok(None),
        (false, false) => Err(ConfigError::Invalid(
            "TEMPORAL_ADDRESS",
            "TEMPORAL_TLS_* is set: the address must be https://".into(),
        )),
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
    fn unset_env_on_a_public_address_refuses_to_start_on_the_development_secrets() {
        for (key, value) in [
            ("GRPC_ADDR", "0.0.0.0:50051"),
            ("HTTP_ADDR", "10.0.0.5:8080"),
        ] {
            assert!(matches!(cfg(&[(key, value)]), Err(ConfigError::Unsafe)));
            // Asked for explicitly, development runs anywhere.
            let dev = cfg(&[(key, value), ("SELLWINDOW_ENV", "development")]).unwrap();
            assert_eq!(dev.env, Env::Development);
        }
        let local = cfg(&[("GRPC_ADDR", "[::1]:50051")]).unwrap();
        assert_eq!(local.env, Env::Development);
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

    #[test]
    fn a_child_started_with_to_env_reads_the_same_configuration() {
        let mut first = cfg(&[
            ("SELLWINDOW_ENV", "development"),
            ("GRPC_ADDR", "127.0.0.1:6001"),
            ("JWT_ISSUER", "shop"),
            ("RPC_DEADLINE_MS", "2500"),
            ("LISTING_SWEEP_CHUNK", "7"),
            ("TEMPORAL_GRPC_COMPRESSION", "gzip"),
            ("TEMPORAL_ADDRESS", "https://temporal.internal:7233"),
            ("TEMPORAL_TLS_CA_FILE", "/etc/sellwindow/ca.pem"),
            ("TEMPORAL_TLS_CERT_FILE", "/etc/sellwindow/client.pem"),
            ("TEMPORAL_TLS_KEY_FILE", "/etc/sellwindow/client.key"),
        ])
        .unwrap();
        first.max_concurrent_calls = 12;
        let env: HashMap<_, _> = first.to_env().into_iter().collect();
        let again = Config::from_lookup(|k| env.get(k).cloned()).unwrap();
        assert_eq!(format!("{first:?}"), format!("{again:?}"));
        assert_eq!(again.to_env(), first.to_env());
    }

    #[test]
    fn tls_to_temporal_follows_the_address_scheme_and_takes_a_client_certificate_whole() {
        assert_eq!(cfg(&[]).unwrap().temporal_tls, None);
        let tls = cfg(&[("TEMPORAL_ADDRESS", "https://t:7233")]).unwrap();
        assert_eq!(tls.temporal_tls, Some(TemporalTls::default()));
        assert!(matches!(
            cfg(&[("TEMPORAL_TLS_CA_FILE", "/ca.pem")]),
            Err(ConfigError::Invalid("TEMPORAL_ADDRESS", _))
        ));
        assert!(matches!(
            cfg(&[
                ("TEMPORAL_ADDRESS", "https://t:7233"),
                ("TEMPORAL_TLS_CERT_FILE", "/client.pem")
            ]),
            Err(ConfigError::Invalid("TEMPORAL_TLS_CERT_FILE", _))
        ));
    }
}
