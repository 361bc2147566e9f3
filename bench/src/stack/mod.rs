//! The system under test: a Temporal dev server from the project-installed CLI on free ports
//! with its default limits, a fresh app database, and the worker and the API either as their
//! own processes (the `starter` binary beside the bench's, `starter worker` and `starter
//! serve`: the shape users deploy, the default) or in-process on runtimes of their own
//! (`--in-process`, and the smoke run). The load always comes from this process. Everything is
//! stopped, and the scratch database dropped, by [`Stack::stop`].

mod catalog;
mod in_process;

use crate::args::StoreKind;
use crate::baseline;
use crate::processes::{connect_when_up, env_of, starter_bin};
use crate::temporal::{free_port, spawn_temporal, temporal_bin, wait_temporal_ready};
use anyhow::Context;
use sellwindow_runtime::{Config, Env};
use sellwindow_store::Store;
use sellwindow_testkit::ApiClient;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::process::{Child, Command};

enum AppDb {
    Postgres { admin_url: String, name: String },
    Sqlite { dir: PathBuf },
}

pub struct Stack {
    pub cfg: Config,
    /// The bench's own view of the app database (checks and polling).
    pub store: Store,
    /// The bench's own Temporal client (history lengths, queries).
    pub client: temporalio_client::Client,
    /// Connections to the API: customers share them, `clients_per_connection` each.
    pub api: Vec<ApiClient>,
    /// The payment provider the bench plays (signed callbacks), with its ledger of what it sent:
    /// the books are checked against it.
    pub provider: sellwindow_testkit::Provider,
    pub temporal_pid: Option<u32>,
    temporal: Child,
    /// The API and the worker when they run as processes.
    children: Vec<(String, Child)>,
    db: AppDb,
    in_process: Option<in_process::InProcess>,
}

/// How the API and the worker run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// As their own processes, as deployed.
    Processes,
    /// On runtimes of their own inside the bench process.
    InProcess,
}

impl Stack {
    /// `apis` API processes share the one worker, database and Temporal (the scale-out shape);
    /// in-process there is always one.
    pub async fn start(
        kind: StoreKind,
        pg_url: &str,
        shape: Shape,
        apis: usize,
    ) -> anyhow::Result<Self> {
        let t0 = std::time::Instant::now();
        let (temporal, port) = spawn_temporal(&temporal_bin()?).await?;
        let temporal_pid = temporal.id();
        let (db, database_url) = app_database(kind, pg_url).await?;
        let cfg = config(database_url, port)?;
        let store = Store::connect(&cfg.database_url)
            .await
            .context("app database")?;
        let client = sellwindow_runtime::connect_temporal(&cfg).await?;
        wait_temporal_ready(&client, Duration::from_secs(60)).await?;
        let (children, api, in_process) = match shape {
            Shape::Processes => {
                let (children, api) = start_processes(&cfg, apis).await?;
                (children, api, None)
            }
            Shape::InProcess => {
                let (ip, api) = in_process::InProcess::start(&cfg).await?;
                (Vec::new(), vec![api], Some(ip))
            }
        };
        println!(
            "stack up in {:.1} s: Temporal dev server :{port} (pid {}), worker and API {} (gRPC {:?}), store {}",
            t0.elapsed().as_secs_f64(),
            temporal_pid.unwrap_or(0),
            match shape {
                Shape::Processes => format!(
                    "as processes (pids {:?})",
                    children
                        .iter()
                        .map(|(n, c): &(String, Child)| (n.clone(), c.id().unwrap_or(0)))
                        .collect::<Vec<_>>()
                ),
                Shape::InProcess => "in-process".to_string(),
            },
            api.iter().map(|a| a.grpc_url.as_str()).collect::<Vec<_>>(),
            kind.as_str()
        );
        Ok(Self {
            provider: provider_of(&api[0], &cfg),
            cfg,
            store,
            client,
            api,
            temporal_pid,
            temporal,
            children,
            db,
            in_process,
        })
    }

    /// The stack's processes by name and its PostgreSQL database, for CPU figures.
    pub fn parts(&self) -> crate::cpu::Parts {
        let mut pids: Vec<(String, u32)> = self
            .temporal_pid
            .map(|p| ("temporal server".to_string(), p))
            .into_iter()
            .collect();
        for (name, child) in &self.children {
            if let Some(pid) = child.id() {
                pids.push((name.clone(), pid));
            }
        }
        let databases = match &self.db {
            AppDb::Postgres { name, .. } => vec![name.clone()],
            AppDb::Sqlite { .. } => Vec::new(),
        };
        crate::cpu::Parts { pids, databases }
    }

    /// The stack's processes that are gone (exited, or a zombie not yet reaped).
    pub fn processes_gone(&self) -> Vec<String> {
        let running = |pid: u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| Some(s[s.rfind(')')? + 1..].trim_start().starts_with('Z')))
                .is_some_and(|zombie| !zombie)
        };
        let mut gone: Vec<String> = self
            .children
            .iter()
            .filter(|(_, c)| !c.id().is_some_and(running))
            .map(|(name, _)| name.clone())
            .collect();
        if !self.temporal_pid.is_some_and(running) {
            gone.push("temporal server".into());
        }
        gone
    }

    /// Peak resident memory of the API and the worker processes (MiB), when they run as such.
    pub fn peak_rss_mib(&self) -> std::collections::BTreeMap<String, f64> {
        self.children
            .iter()
            .filter_map(|(name, c)| Some((name.clone(), crate::cpu::peak_rss_mib(c.id()?)?)))
            .collect()
    }

    /// Stops the API, the worker and the Temporal server, and drops the scratch database.
    pub async fn stop(mut self) {
        if let Some(ip) = self.in_process.take() {
            ip.stop().await;
        }
        for (_, child) in &mut self.children {
            if let Some(pid) = child.id() {
                // SIGTERM first: the API and the worker stop gracefully.
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
            if tokio::time::timeout(Duration::from_secs(15), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
        let _ = self.temporal.kill().await;
        self.store.pool().close().await;
        match &self.db {
            AppDb::Postgres { admin_url, name } => baseline::drop_database(admin_url, name).await,
            AppDb::Sqlite { dir } => {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// A fresh app database: a scratch PostgreSQL database, or an SQLite file in a scratch dir.
async fn app_database(kind: StoreKind, pg_url: &str) -> anyhow::Result<(AppDb, String)> {
    Ok(match kind {
        StoreKind::Postgres => {
            let name = format!("sw_bench_app_{}", std::process::id());
            let url = baseline::create_database(pg_url, &name).await?;
            let db = AppDb::Postgres {
                admin_url: pg_url.to_string(),
                name,
            };
            (db, url)
        }
        StoreKind::Sqlite => {
            let dir = std::env::temp_dir().join(format!("sellwindow-bench-{}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            let url = format!("sqlite://{}?mode=rwc", dir.join("sellwindow.db").display());
            (AppDb::Sqlite { dir }, url)
        }
    })
}

fn config(database_url: String, temporal_port: u16) -> anyhow::Result<Config> {
    let (grpc_port, http_port) = (free_port(), free_port());
    Ok(Config {
        env: Env::Development,
        database_url,
        temporal_address: format!("http://127.0.0.1:{temporal_port}"),
        temporal_namespace: "default".into(),
        task_queue: format!("sellwindow-bench-{grpc_port}"),
        grpc_addr: format!("127.0.0.1:{grpc_port}").parse()?,
        http_addr: format!("127.0.0.1:{http_port}").parse()?,
        public_base_url: format!("http://127.0.0.1:{http_port}"),
        payment_callback_url: format!("http://127.0.0.1:{http_port}/payments/callback"),
        jwt_secret: "bench-jwt-secret".into(),
        callback_secret: "bench-callback-secret".into(),
        notify_webhook_url: None,
        sandbox_in_production: false,
        listing_tuning: Default::default(),
        temporal_grpc_gzip: false,
        rpc_deadline: std::time::Duration::from_secs(10),
        max_concurrent_calls: 4_096,
        temporal_ui_url: "http://localhost:8233".into(),
        jwt_issuer: None,
        jwt_audience: None,
        jwt_max_lifetime_secs: 30 * 24 * 3600,
        temporal_tls: None,
        // The worker's write times, read for where the time goes.
        worker_metrics_addr: Some(format!("127.0.0.1:{}", free_port()).parse()?),
    })
}

/// The worker and `apis` API processes, each logging to a file of its own; the connections
/// to the APIs once they listen.
async fn start_processes(
    cfg: &Config,
    apis: usize,
) -> anyhow::Result<(Vec<(String, Child)>, Vec<ApiClient>)> {
    let bin = starter_bin()?;
    let mut roles = vec![("worker".to_string(), "worker", cfg.clone())];
    for i in 0..apis.max(1) {
        let name = if apis > 1 {
            format!("api-{}", i + 1)
        } else {
            "api".into()
        };
        roles.push((name, "serve", api_config(cfg, i)?));
    }
    let mut children = Vec::new();
    for (name, command, role_cfg) in &roles {
        // Their logs (warnings and errors) go to a file each, named in the report.
        let log = std::env::temp_dir().join(format!(
            "sellwindow-bench-{}-{name}.log",
            std::process::id()
        ));
        let out = std::fs::File::create(&log)?;
        println!("{name} log: {}", log.display());
        let child = Command::new(&bin)
            .arg(command)
            .envs(env_of(role_cfg))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} {command}", bin.display()))?;
        children.push((name.clone(), child));
    }
    let mut api = Vec::new();
    for (_, command, role_cfg) in &roles {
        if *command == "serve" {
            api.push(connect_when_up(role_cfg).await?);
        }
    }
    Ok((children, api))
}

/// The configuration of the `index`-th API process: the shared one on ports of its own.
fn api_config(cfg: &Config, index: usize) -> anyhow::Result<Config> {
    if index == 0 {
        return Ok(cfg.clone());
    }
    let (grpc_port, http_port) = (free_port(), free_port());
    let mut api = cfg.clone();
    api.grpc_addr = format!("127.0.0.1:{grpc_port}").parse()?;
    api.http_addr = format!("127.0.0.1:{http_port}").parse()?;
    api.public_base_url = format!("http://127.0.0.1:{http_port}");
    Ok(api)
}

/// The provider posting signed callbacks to the API `api` reaches.
fn provider_of(api: &ApiClient, cfg: &Config) -> sellwindow_testkit::Provider {
    let url = format!("{}/payments/callback", api.http_base);
    sellwindow_testkit::Provider::new(url, cfg.callback_secret.clone())
}
