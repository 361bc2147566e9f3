//! The API and the worker as processes of their own, as deployed: the `starter` binary of the
//! same build as the bench, configured through the environment like any deployment.

use sellwindow_runtime::Config;
use sellwindow_testkit::ApiClient;
use std::path::PathBuf;
use std::time::Duration;

/// The `starter` binary of the same build as this bench.
pub fn starter_bin() -> anyhow::Result<PathBuf> {
    let me = std::env::current_exe()?;
    let bin = me.with_file_name("starter");
    anyhow::ensure!(
        bin.exists(),
        "{} is missing: build it with the bench (cargo build --release --bins), or pass --in-process",
        bin.display()
    );
    Ok(bin)
}

/// The environment that configures `starter serve` / `starter worker` like `cfg`.
pub fn env_of(cfg: &Config) -> Vec<(&'static str, String)> {
    let mut env = cfg.to_env();
    env.push(("RUST_LOG", "warn".into()));
    env
}

/// Connects to the API process once it listens (it connects to Temporal and the database
/// first).
pub async fn connect_when_up(cfg: &Config) -> anyhow::Result<ApiClient> {
    let start = std::time::Instant::now();
    loop {
        match ApiClient::connect(
            &format!("http://{}", cfg.grpc_addr),
            &cfg.public_base_url,
            &cfg.jwt_secret,
        )
        .await
        {
            Ok(api) => return Ok(api),
            Err(e) if start.elapsed() > Duration::from_secs(60) => {
                anyhow::bail!("the API process did not come up: {e}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}
