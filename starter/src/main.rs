//! `starter`: runs the API (the `sellwindow-api` crate), plus local tools.
//!
//! - `starter serve`: the gRPC API (:50051) and HTTP side (:8080).
//! - `starter token --admin` / `starter token --customer ID`: mint a bearer token (local use).
//! - `starter demo [--main-only]`: play the main flow (then a failing window and one with
//!   expiries, a retry, a refund and shipment) against a running API.
//! - `starter worker`: run the worker (the same as the `worker` binary).

use sellwindow_api::auth::Auth;
use sellwindow_runtime::{Config, telemetry};
use sellwindow_testkit::demo;

/// mimalloc: the API and the worker allocate and free many small buffers per request (gRPC
/// frames, JSON payloads); glibc's allocator showed up in their CPU profiles.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = Config::from_env()?;
    match args.first().map(String::as_str) {
        Some("serve") | None => {
            telemetry::init();
            tracing::info!(config = ?cfg, "starting API");
            sellwindow_api::app::serve(cfg, telemetry::shutdown_signal()).await
        }
        Some("worker") => {
            telemetry::init();
            tracing::info!(config = ?cfg, "starting worker");
            sellwindow_worker::run(cfg, telemetry::shutdown_signal()).await
        }
        Some("token") => {
            let auth =
                Auth::with_rules(&cfg.jwt_secret, sellwindow_api::auth::TokenRules::of(&cfg));
            let token = match (args.get(1).map(String::as_str), args.get(2)) {
                (Some("--admin"), _) => auth.mint("admin", true, 24 * 3600),
                (Some("--customer"), Some(id)) => auth.mint(id, false, 24 * 3600),
                _ => anyhow::bail!("usage: starter token --admin | --customer ID"),
            };
            println!("{token}");
            Ok(())
        }
        Some("demo") => {
            let grpc = format!("http://{}", cfg.grpc_addr);
            let api = demo::ApiClient::connect(&grpc, &cfg.public_base_url, &cfg.jwt_secret)
                .await?
                .with_provider_secret(&cfg.callback_secret);
            let ui =
                std::env::var("TEMPORAL_UI_URL").unwrap_or_else(|_| "http://localhost:8233".into());
            demo::run(&api, &ui, &cfg.temporal_namespace).await?;
            if args.get(1).map(String::as_str) != Some("--main-only") {
                demo::run_failing(&api).await?;
                demo::run_expiries_and_refunds(&api).await?;
            }
            Ok(())
        }
        Some(other) => anyhow::bail!("unknown command {other}; use serve, worker, token or demo"),
    }
}
