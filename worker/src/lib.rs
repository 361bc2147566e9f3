//! The worker process: hosts the `SellWindow` workflow and its activities on the task queue,
//! and redelivers the notifications a sink could not deliver.

use sellwindow_activities::ListingActivities;
use sellwindow_activities::timings::WriteTimes;
use sellwindow_domain::UnixMillis;
use sellwindow_runtime::{Config, connect_temporal};
use sellwindow_store::Store;
use sellwindow_store::notify::{
    NotificationSink, Redelivered, Redelivery, configured_sink, redeliver_pending,
};
use sellwindow_workflows::SellWindow;
use std::sync::Arc;
use temporalio_client::Client;
use temporalio_sdk::{Runtime, Worker, WorkerOptions};

/// The worker, and the times of its writes.
pub fn build_worker(
    runtime: &Runtime,
    client: Client,
    store: Store,
    sink: Arc<dyn NotificationSink>,
    cfg: &Config,
) -> anyhow::Result<(Worker, Arc<WriteTimes>)> {
    let listing = ListingActivities::new(store, sink, cfg.public_base_url.clone());
    let times = listing.times();
    let options = WorkerOptions::new(cfg.task_queue.clone())
        .register_workflow::<SellWindow>()?
        .register_activities(listing)
        .build();
    Ok((Worker::new(runtime, client, options)?, times))
}

/// Runs a worker until `shutdown` resolves.
pub async fn run(
    cfg: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let store = Store::connect(&cfg.database_url).await?;
    let client = connect_temporal(&cfg).await?;
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let sink = configured_sink(cfg.notify_webhook_url.as_deref());
    let (mut worker, times) = build_worker(&runtime, client, store.clone(), sink.clone(), &cfg)?;
    let metrics = match cfg.worker_metrics_addr {
        Some(addr) => Some(tokio::spawn(serve_metrics(
            tokio::net::TcpListener::bind(addr).await?,
            times,
        ))),
        None => None,
    };
    // Whatever a sink could not deliver is tried again (claimed by one worker at a time, with
    // growing pauses, dead after its last attempt); looked at every 30 s.
    let redelivery = tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(30)).await;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            let (cutoff, now) = (UnixMillis(now - 10_000), UnixMillis(now));
            match redeliver_pending(&store, &*sink, cutoff, now, Redelivery::default()).await {
                Ok(done) if done == Redelivered::default() => {}
                Ok(done) => tracing::info!(?done, "redelivered notifications"),
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
    if let Some(m) = metrics {
        m.abort();
    }
    tracing::info!("worker stopped");
    Ok(())
}

/// Answers every request on `listener` with the worker's figures as Prometheus text. The
/// worker has no other HTTP to serve, so this is plain HTTP/1.1, one request per connection.
async fn serve_metrics(listener: tokio::net::TcpListener, times: Arc<WriteTimes>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tracing::info!(addr = ?listener.local_addr().ok(), "worker metrics at /metrics");
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let times = times.clone();
        tokio::spawn(async move {
            // The request itself does not matter: whatever is asked, the figures are the answer.
            let mut buf = [0u8; 1024];
            let _ =
                tokio::time::timeout(std::time::Duration::from_secs(2), conn.read(&mut buf)).await;
            let body = times.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(head.as_bytes()).await;
            let _ = conn.write_all(body.as_bytes()).await;
            let _ = conn.shutdown().await;
        });
    }
}
