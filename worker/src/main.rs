//! `worker`: hosts the SellWindow workflow and its activities.

use sellwindow_runtime::{Config, telemetry};

/// mimalloc: the API and the worker allocate and free many small buffers per request (gRPC
/// frames, JSON payloads); glibc's allocator showed up in their CPU profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cfg = Config::from_env()?;
    tracing::info!(config = ?cfg, "starting worker");
    sellwindow_worker::run(cfg, telemetry::shutdown_signal()).await
}
