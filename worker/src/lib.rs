//! The worker process: hosts the `SellWindow` workflow and its activities on the task queue.
//! Also home of the shared configuration and the Temporal connection, which the API reuses.

pub mod config;
pub mod telemetry;

pub use config::{Config, Env};

use sellwindow_activities::notify::{NotificationSink, WebhookSink, redeliver_pending};
use sellwindow_activities::{LogSink, SellWindowActivities, Store};
use sellwindow_workflows::SellWindowWorkflow;
use std::sync::Arc;
use temporalio_client::{Client, ClientOptions, Connection, ConnectionOptions, GrpcCompression};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// Connects a Temporal client, retrying for a while: the server may still be starting.
pub async fn connect_temporal(cfg: &Config) -> anyhow::Result<Client> {
    let url: temporalio_client::Url = cfg.temporal_address.parse()?;
    let mut last = None;
    for _ in 0..60 {
        let opts = ConnectionOptions::new(url.clone())
            .identity(format!("sellwindow@{}", std::process::id()))
            .grpc_compression(if cfg.temporal_grpc_gzip {
                GrpcCompression::Gzip
            } else {
                GrpcCompression::None
            })
            .build();
        match Connection::connect(opts).await {
            Ok(conn) => {
                let client = Client::new(
                    conn,
                    ClientOptions::new(cfg.temporal_namespace.clone()).build(),
                )?;
                return Ok(client);
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
        }
    }
    Err(anyhow::anyhow!(
        "cannot reach Temporal at {}: {:?}",
        cfg.temporal_address,
        last
    ))
}

/// The configured notification sink: the webhook when one is set, else the log.
pub fn sink(cfg: &Config) -> Arc<dyn NotificationSink> {
    match &cfg.notify_webhook_url {
        Some(url) => Arc::new(WebhookSink::new(url.clone())),
        None => Arc::new(LogSink),
    }
}

pub fn build_worker(
    runtime: &Runtime,
    client: Client,
    store: Store,
    sink: Arc<dyn NotificationSink>,
    cfg: &Config,
) -> anyhow::Result<Worker> {
    let activities = SellWindowActivities::new(store, sink, cfg.public_base_url.clone());
    let options = WorkerOptions::new(cfg.task_queue.clone())
        .register_workflow::<SellWindowWorkflow>()?
        .register_activities(activities)
        .build();
    Ok(Worker::new(runtime, client, options)?)
}

/// Runs a worker until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let store = Store::connect(&cfg.database_url).await?;
    let client = connect_temporal(&cfg).await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let sink = sink(&cfg);
    let mut worker = build_worker(&runtime, client, store.clone(), sink.clone(), &cfg)?;
    // Whatever a sink could not deliver is tried again, every 30 s.
    let redelivery = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            let cutoff = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64 - 10_000)
                .unwrap_or(0);
            match redeliver_pending(&store, &*sink, sellwindow_domain::UnixMillis(cutoff)).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(delivered = n, "redelivered notifications"),
                Err(e) => tracing::warn!(error = %e, "notification redelivery failed"),
            }
        }
    });
    let stop = worker.shutdown_handle();
    tracing::info!(task_queue = %cfg.task_queue, "worker started");
    let run = worker.run();
    tokio::pin!(run);
    tokio::select! {
        r = &mut run => r?,
        _ = shutdown => {
            stop();
            run.await?;
        }
    }
    redelivery.abort();
    tracing::info!("worker stopped");
    Ok(())
}
