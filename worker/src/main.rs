//! `worker`: hosts the SellWindow workflow and its activities.

use sellwindow_worker::{Config, telemetry};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cfg = Config::from_env()?;
    tracing::info!(config = ?cfg, "starting worker");
    sellwindow_worker::run(cfg, telemetry::shutdown_signal()).await
}
