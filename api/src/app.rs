//! Builds the API process: binds the gRPC and HTTP listeners (port 0 in tests, reported back),
//! wires the shared state, and serves until shutdown.

use crate::admin::Admin;
use crate::auth::Auth;
use crate::customer::Customer;
use crate::metrics::Metrics;
use crate::pb;
use crate::progress::ProgressSignals;
use crate::reserve::Reservations;
use sellwindow_runtime::Config;
use sellwindow_store::Store;
use sellwindow_store::notify::configured_sink;
use sellwindow_store::reserve::ReserveContext;
use std::net::SocketAddr;
use std::sync::Arc;
use temporalio_client::Client;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What every handler shares.
pub struct State {
    pub cfg: Config,
    pub store: Store,
    pub client: Client,
    pub auth: Auth,
    pub reservations: Reservations,
    pub progress: Arc<ProgressSignals>,
    pub pokes: crate::pokes::Pokes,
    pub metrics: Arc<Metrics>,
    pub http: reqwest::Client,
}

impl State {
    fn new(cfg: Config, store: Store, client: Client) -> anyhow::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let progress = ProgressSignals::start(client.clone());
        let cx = ReserveContext::new(
            configured_sink(cfg.notify_webhook_url.as_deref()),
            &cfg.public_base_url,
        );
        Ok(Self {
            auth: Auth::with_rules(&cfg.jwt_secret, crate::auth::TokenRules::of(&cfg)),
            reservations: Reservations::new(
                store.clone(),
                cx,
                progress.clone(),
                metrics.clone(),
                cfg.rpc_deadline,
            )?,
            progress,
            pokes: crate::pokes::Pokes::new(client.clone()),
            metrics,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()?,
            cfg,
            store,
            client,
        })
    }
}

pub struct Application {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    stop: watch::Sender<bool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    progress: Arc<ProgressSignals>,
}

impl Application {
    pub async fn build(cfg: Config, store: Store, client: Client) -> anyhow::Result<Self> {
        let grpc = TcpListener::bind(cfg.grpc_addr).await?;
        let http = TcpListener::bind(cfg.http_addr).await?;
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        let cfg_calls = cfg.max_concurrent_calls;
        let state = Arc::new(State::new(cfg, store, client)?);
        let (stop, rx) = watch::channel(false);
        // Both reflection versions: many clients (Python's official one among them) speak
        // only v1alpha.
        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        };
        let grpc_server = tonic::transport::Server::builder()
            .layer(crate::admission::Admission::new(cfg_calls))
            .add_service(reflection().build_v1()?)
            .add_service(reflection().build_v1alpha()?)
            .add_service(pb::admin_service_server::AdminServiceServer::new(Admin(
                state.clone(),
            )))
            .add_service(pb::customer_service_server::CustomerServiceServer::new(
                Customer(state.clone()),
            ))
            .serve_with_incoming_shutdown(tokio_stream_listener(grpc), wait(rx.clone()));
        let progress = state.progress.clone();
        let http_server =
            axum::serve(http, crate::http::router(state)).with_graceful_shutdown(wait(rx));
        let tasks = vec![
            tokio::spawn(async move {
                if let Err(e) = grpc_server.await {
                    tracing::error!(error = %e, "gRPC server stopped");
                }
            }),
            tokio::spawn(async move {
                if let Err(e) = http_server.await {
                    tracing::error!(error = %e, "HTTP server stopped");
                }
            }),
        ];
        tracing::info!(%grpc_addr, %http_addr, "API listening");
        Ok(Self {
            grpc_addr,
            http_addr,
            stop,
            tasks,
            progress,
        })
    }

    /// This process's progress signals to the listings' workflows.
    pub fn progress_signals(&self) -> &Arc<ProgressSignals> {
        &self.progress
    }

    /// Stops accepting, lets in-flight calls finish, and waits for both servers.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        for t in self.tasks {
            let _ = t.await;
        }
        // What the last reservations did is told before the process goes (a signal lost
        // here would only be made good later).
        self.progress.flush(std::time::Duration::from_secs(2)).await;
    }
}

async fn wait(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

fn tokio_stream_listener(l: TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(l)
}

/// Runs the API until `shutdown` resolves.
pub async fn serve(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let store = Store::connect(&cfg.database_url).await?;
    let client = sellwindow_runtime::connect_temporal(&cfg).await?;
    let app = Application::build(cfg, store, client).await?;
    shutdown.await;
    app.shutdown().await;
    Ok(())
}
