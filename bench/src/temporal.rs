//! The Temporal dev server the bench runs: the project-installed CLI on free ports with its
//! default limits, started again when it loses a port race at start.

use anyhow::Context;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = here.parent().map(PathBuf::from).unwrap_or(here);
    if root.join("scripts/install-temporal.sh").exists() {
        root
    } else {
        std::env::current_dir().unwrap_or(root)
    }
}

/// The project-installed Temporal CLI (installed on first use), or `$TEMPORAL_BIN`.
pub fn temporal_bin() -> anyhow::Result<PathBuf> {
    if let Ok(p) = std::env::var("TEMPORAL_BIN") {
        return Ok(p.into());
    }
    let script = workspace_root().join("scripts/install-temporal.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    anyhow::ensure!(out.status.success(), "installing the Temporal CLI failed");
    Ok(PathBuf::from(String::from_utf8(out.stdout)?.trim()))
}

/// Starts the Temporal dev server on free ports and waits until it listens. The dev server
/// picks its internal services' ports itself and dies when one is taken meanwhile: then it
/// is started again on new ports (up to 3 times).
pub async fn spawn_temporal(bin: &std::path::Path) -> anyhow::Result<(Child, u16)> {
    let mut last = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut child = Command::new(bin)
            .args(["server", "start-dev", "--headless", "--ip", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args(["--ui-port", &free_port().to_string()])
            .args(["--http-port", &free_port().to_string()])
            .args(["--metrics-port", &free_port().to_string()])
            .args(["--log-level", "error"])
            .args(["--search-attribute", "SellWindowId=Keyword"])
            .args(["--search-attribute", "ProductId=Keyword"])
            .args(["--search-attribute", "ListingPhase=Keyword"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(60) {
            if let Some(status) = child.try_wait()? {
                last = format!("the Temporal dev server exited ({status})");
                break;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                // Its other services start beside the frontend: make sure they stayed up.
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if child.try_wait()?.is_none() {
                    return Ok((child, port));
                }
                continue;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        if last.is_empty() {
            last = "the Temporal dev server did not listen within 60 s".into();
        }
        let _ = child.kill().await;
    }
    anyhow::bail!("{last}")
}

/// Waits until the Temporal server answers namespace calls, not just connections.
pub async fn wait_temporal_ready(
    client: &temporalio_client::Client,
    timeout: Duration,
) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    while start.elapsed() < timeout {
        let h = client.get_workflow_handle::<sellwindow_workflows::SellWindow>("probe");
        let probe =
            tokio::time::timeout(Duration::from_secs(5), h.describe(Default::default())).await;
        if let Ok(Err(temporalio_client::errors::WorkflowInteractionError::NotFound(_))) = probe {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("the Temporal server did not come up within {timeout:?}")
}
