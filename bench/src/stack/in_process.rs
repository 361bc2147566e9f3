//! The worker and the API inside the bench process (the smoke run's shape), each on a runtime
//! of its own (threads `sw-worker`, `sw-api`), so their CPU can be told apart from the load's.

use sellwindow_api::Application;
use sellwindow_runtime::Config;
use sellwindow_store::Store;
use sellwindow_testkit::ApiClient;
use std::time::Duration;

pub struct InProcess {
    api_rt: tokio::runtime::Runtime,
    app: Application,
    worker_stop: tokio::sync::oneshot::Sender<()>,
    worker: std::thread::JoinHandle<()>,
}

impl InProcess {
    pub async fn start(cfg: &Config) -> anyhow::Result<(Self, ApiClient)> {
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
        let api = ApiClient::connect(
            &format!("http://{}", app.grpc_addr),
            &format!("http://{}", app.http_addr),
            &cfg.jwt_secret,
        )
        .await?;
        let me = Self {
            api_rt,
            app,
            worker_stop: stop_tx,
            worker,
        };
        Ok((me, api))
    }

    pub async fn stop(self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(10),
            self.api_rt.spawn(self.app.shutdown()),
        )
        .await;
        self.api_rt.shutdown_background();
        let _ = self.worker_stop.send(());
        let worker = self.worker;
        let _ = tokio::time::timeout(
            Duration::from_secs(20),
            tokio::task::spawn_blocking(move || worker.join()),
        )
        .await;
    }
}
