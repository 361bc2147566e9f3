//! The system under test: a Temporal dev server from the project-installed CLI on free ports
//! with its default limits, a fresh app database, and the worker and the API either as their
//! own processes (the `starter` binary beside the bench's, `starter worker` and `starter
//! serve`: the shape users deploy, the default for `reserve`) or in-process on runtimes of
//! their own (`--in-process`, and the smoke run). The load always comes from this process.
//! Everything is stopped, and the scratch database dropped, by [`Stack::stop`].

use crate::args::StoreKind;
use crate::baseline;
use crate::processes::{connect_when_up, env_of, starter_bin};
use crate::temporal::{free_port, spawn_temporal, temporal_bin, wait_temporal_ready};
use anyhow::Context;
use sellwindow_activities::Store;
use sellwindow_api::Application;
use sellwindow_api::pb;
use sellwindow_runtime::{Config, Env};
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
    api_rt: Option<tokio::runtime::Runtime>,
    app: Option<Application>,
    worker_stop: Option<tokio::sync::oneshot::Sender<()>>,
    worker: Option<std::thread::JoinHandle<()>>,
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
        let bin = temporal_bin()?;
        let (temporal, port) = spawn_temporal(&bin).await?;
        let temporal_pid = temporal.id();

        let db = match kind {
            StoreKind::Postgres => AppDb::Postgres {
                admin_url: pg_url.to_string(),
                name: format!("sw_bench_app_{}", std::process::id()),
            },
            StoreKind::Sqlite => {
                let dir =
                    std::env::temp_dir().join(format!("sellwindow-bench-{}", std::process::id()));
                std::fs::create_dir_all(&dir)?;
                AppDb::Sqlite { dir }
            }
        };
        let database_url = match &db {
            AppDb::Postgres { admin_url, name } => {
                baseline::create_database(admin_url, name).await?
            }
            AppDb::Sqlite { dir } => {
                format!("sqlite://{}?mode=rwc", dir.join("sellwindow.db").display())
            }
        };
        let (grpc_port, http_port) = (free_port(), free_port());
        let cfg = Config {
            env: Env::Development,
            database_url,
            temporal_address: format!("http://127.0.0.1:{port}"),
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
            // The worker's write times, read for where a reservation's time goes.
            worker_metrics_addr: Some(format!("127.0.0.1:{}", free_port()).parse()?),
        };
        let store = Store::connect(&cfg.database_url)
            .await
            .context("app database")?;
        let client = sellwindow_runtime::connect_temporal(&cfg).await?;
        wait_temporal_ready(&client, Duration::from_secs(60)).await?;

        if shape == Shape::Processes {
            let bin = starter_bin()?;
            let mut children = Vec::new();
            let mut roles = vec![("worker".to_string(), "worker", cfg.clone())];
            for i in 0..apis.max(1) {
                let name = if apis > 1 {
                    format!("api-{}", i + 1)
                } else {
                    "api".into()
                };
                roles.push((name, "serve", api_config(&cfg, i)?));
            }
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
            println!(
                "stack up in {:.1} s: Temporal dev server :{port} (pid {}), worker and API as processes (pids {:?}, gRPC {:?}), store {}",
                t0.elapsed().as_secs_f64(),
                temporal_pid.unwrap_or(0),
                children
                    .iter()
                    .map(|(n, c)| (n.as_str(), c.id().unwrap_or(0)))
                    .collect::<Vec<_>>(),
                api.iter().map(|a| a.grpc_url.as_str()).collect::<Vec<_>>(),
                kind.as_str()
            );
            return Ok(Self {
                provider: provider_of(&api[0], &cfg),
                cfg,
                store,
                client,
                api,
                temporal_pid,
                temporal,
                children,
                db,
                api_rt: None,
                app: None,
                worker_stop: None,
                worker: None,
            });
        }

        // The worker: a thread and a runtime of its own (the SDK's worker future is not Send).
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let worker_cfg = cfg.clone();
        let worker = std::thread::Builder::new()
            .name("sw-worker-main".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("sw-worker")
                    .enable_all()
                    .build()
                    .expect("worker runtime");
                if let Err(e) = rt.block_on(sellwindow_worker::run(worker_cfg, async {
                    let _ = stop_rx.await;
                })) {
                    eprintln!("bench: the worker stopped with an error: {e:#}");
                }
            })?;

        // The API: its own runtime, store pool and Temporal client, as in its own process.
        let api_rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sw-api")
            .enable_all()
            .build()?;
        let api_cfg = cfg.clone();
        let app = api_rt
            .spawn(async move {
                let store = Store::connect(&api_cfg.database_url).await?;
                let client = sellwindow_runtime::connect_temporal(&api_cfg).await?;
                Application::build(api_cfg, store, client).await
            })
            .await??;
        let api = vec![
            ApiClient::connect(
                &format!("http://{}", app.grpc_addr),
                &format!("http://{}", app.http_addr),
                &cfg.jwt_secret,
            )
            .await?,
        ];
        println!(
            "stack up in {:.1} s: Temporal dev server :{port} (pid {}), worker and API in-process (gRPC {}), store {}",
            t0.elapsed().as_secs_f64(),
            temporal_pid.unwrap_or(0),
            app.grpc_addr,
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
            children: Vec::new(),
            db,
            api_rt: Some(api_rt),
            app: Some(app),
            worker_stop: Some(stop_tx),
            worker: Some(worker),
        })
    }

    /// The stack's processes by name, for CPU and memory figures.
    pub fn pids(&self) -> crate::cpu::Pids {
        let mut pids: crate::cpu::Pids = self
            .temporal_pid
            .map(|p| ("temporal server".to_string(), p))
            .into_iter()
            .collect();
        for (name, child) in &self.children {
            if let Some(pid) = child.id() {
                pids.push((name.clone(), pid));
            }
        }
        pids
    }

    /// Peak resident memory of the API and the worker processes (MiB), when they run as such.
    pub fn peak_rss_mib(&self) -> std::collections::BTreeMap<String, f64> {
        self.children
            .iter()
            .filter_map(|(name, c)| Some((name.clone(), crate::cpu::peak_rss_mib(c.id()?)?)))
            .collect()
    }

    /// Connections enough for `customers` customers, `per` on each, spread round-robin over
    /// the API processes.
    pub async fn connections(
        &self,
        customers: usize,
        per: usize,
    ) -> anyhow::Result<Vec<ApiClient>> {
        let n = customers.div_ceil(per.max(1)).max(1);
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let api = &self.api[i % self.api.len()];
            v.push(ApiClient::connect(&api.grpc_url, &api.http_base, &self.cfg.jwt_secret).await?);
        }
        Ok(v)
    }

    /// How many API processes (or in-process APIs) serve the load.
    pub fn api_count(&self) -> usize {
        self.api.len()
    }

    pub fn admin(&self) -> &ApiClient {
        &self.api[0]
    }

    /// Creates `n` products and windows holding them (at most 50 listings per window), each
    /// listing with threshold `min` and cap `max`, closing `close_in` from now.
    pub async fn listings(
        &self,
        n: usize,
        min: u32,
        max: u32,
        close_in: Duration,
        pay_window: Duration,
        tag: &str,
    ) -> anyhow::Result<Vec<pb::SellWindow>> {
        let api = self.admin();
        let token = api.admin_token();
        let mut products = Vec::new();
        for i in 0..n {
            let p = api
                .admin()
                .create_product(ApiClient::req(
                    pb::CreateProductRequest {
                        id: String::new(),
                        name: format!("bench {tag} product {i}"),
                        unit_price: Some(pb::Money {
                            currency: "TWD".into(),
                            amount_minor: 45000,
                        }),
                        work_steps: vec!["cut".into(), "assemble".into(), "pack".into()],
                    },
                    &token,
                ))
                .await?
                .into_inner();
            products.push(p);
        }
        let close_at = sellwindow_api::convert::now_ms().0 + close_in.as_millis() as i64;
        let mut windows = Vec::new();
        for (w, chunk) in products.chunks(50).enumerate() {
            let window = api
                .admin()
                .create_sell_window(ApiClient::req(
                    pb::CreateSellWindowRequest {
                        name: format!("bench {tag} window {w}"),
                        close_at: Some(sellwindow_api::convert::ts(close_at)),
                        listings: chunk
                            .iter()
                            .map(|p| pb::ListingInput {
                                product_id: p.id.clone(),
                                min_qty: min,
                                max_qty: max,
                                payment_window: Some(prost_types::Duration {
                                    seconds: pay_window.as_secs() as i64,
                                    nanos: 0,
                                }),
                                per_customer_limit: 0,
                                min_paid_policy: 0,
                            })
                            .collect(),
                        request_id: format!("bench-{tag}-{w}"),
                    },
                    &token,
                ))
                .await?
                .into_inner();
            windows.push(window);
        }
        Ok(windows)
    }

    /// The API processes' Prometheus figures, summed over the processes (counters and
    /// sum/count pairs, which is all the bench reads).
    pub async fn api_metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let mut m = std::collections::BTreeMap::new();
        for api in &self.api {
            scrape(&format!("{}/metrics", api.http_base), &mut m).await;
        }
        m
    }

    /// The worker's Prometheus figures (its writes' times).
    pub async fn worker_metrics(&self) -> std::collections::BTreeMap<String, f64> {
        let mut m = std::collections::BTreeMap::new();
        if let Some(addr) = self.cfg.worker_metrics_addr {
            scrape(&format!("http://{addr}/metrics"), &mut m).await;
        }
        m
    }

    /// Stops the API, the worker and the Temporal server, and drops the scratch database.
    pub async fn stop(mut self) {
        if let (Some(app), Some(rt)) = (self.app.take(), self.api_rt.as_ref()) {
            let _ = tokio::time::timeout(Duration::from_secs(10), rt.spawn(app.shutdown())).await;
        }
        if let Some(rt) = self.api_rt.take() {
            rt.shutdown_background();
        }
        if let Some(tx) = self.worker_stop.take() {
            let _ = tx.send(());
        }
        if let Some(w) = self.worker.take() {
            let _ = tokio::time::timeout(
                Duration::from_secs(20),
                tokio::task::spawn_blocking(move || w.join()),
            )
            .await;
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

/// Adds the `name value` lines at `url` into `into` (nothing when it does not answer).
async fn scrape(url: &str, into: &mut std::collections::BTreeMap<String, f64>) {
    let Ok(r) = reqwest::get(url).await else {
        return;
    };
    let Ok(text) = r.text().await else { return };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((k, v)) = line.rsplit_once(' ')
            && let Ok(v) = v.trim().parse::<f64>()
        {
            *into.entry(k.trim().to_string()).or_insert(0.0) += v;
        }
    }
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
