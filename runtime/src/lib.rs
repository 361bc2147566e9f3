//! What the worker and the API processes share: one typed configuration read from the
//! environment, tracing and shutdown signals, and the connection to Temporal.

pub mod config;
pub mod telemetry;
mod temporal;

pub use config::{Config, ConfigError, Env, TemporalTls};
pub use temporal::{connect_temporal, connect_temporal_once};
