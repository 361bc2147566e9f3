//! The webhook sink against a real HTTP listener, and redelivery of what a sink missed.

use sellwindow_domain::UnixMillis;
use sellwindow_store::Store;
use sellwindow_store::db::{self as store, Notification, Recipient};
use sellwindow_store::notify::{
    NotificationSink, Redelivered, Redelivery, WebhookSink, redeliver_pending,
};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A one-route HTTP server answering `statuses` in turn (then 200), recording request bodies.
async fn server(statuses: Vec<u16>) -> (String, Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        let mut n = 0;
        loop {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read headers, then the body by Content-Length.
            let body = loop {
                let k = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..k]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len: usize = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap())
                        })
                        .unwrap_or(0);
                    if buf.len() >= end + 4 + len {
                        break text[end + 4..end + 4 + len].to_string();
                    }
                }
            };
            log.lock().unwrap().push(body);
            let status = statuses.get(n).copied().unwrap_or(200);
            n += 1;
            let reply =
                format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            sock.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    (url, seen)
}

fn note(id: &str) -> Notification {
    Notification {
        id: id.into(),
        recipient: Recipient::Customer,
        recipient_id: "c-1".into(),
        kind: "shipped".into(),
        sell_window_id: None,
        product_id: None,
        order_id: None,
        message: "Order o-1 has shipped.".into(),
        created_at: UnixMillis(1),
    }
}

#[tokio::test]
async fn the_webhook_sink_retries_until_the_receiver_accepts() {
    let (url, seen) = server(vec![500, 503]).await;
    WebhookSink::new(url).deliver(&note("n-1")).await.unwrap();
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    let json: serde_json::Value = serde_json::from_str(&bodies[2]).unwrap();
    assert_eq!(
        (json["id"].as_str(), json["kind"].as_str()),
        (Some("n-1"), Some("shipped"))
    );
}

#[tokio::test]
async fn the_webhook_sink_gives_up_after_its_attempts() {
    let (url, seen) = server(vec![500, 500, 500, 500]).await;
    assert!(WebhookSink::new(url).deliver(&note("n-2")).await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 3);
}

struct Counting(AtomicUsize);
impl NotificationSink for Counting {
    fn deliver<'a>(&'a self, _n: &'a Notification) -> sellwindow_store::notify::DeliverFuture<'a> {
        Box::pin(async move {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    }
}

#[tokio::test]
async fn undelivered_notifications_are_redelivered_once() {
    let dir = std::env::temp_dir().join(format!("sw-notify-{}", std::process::id()));
    let store = Store::connect(&format!("sqlite://{}/n.db?mode=rwc", dir.display()))
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    assert!(
        store::save_notification(&mut tx, &note("n-3"))
            .await
            .unwrap()
    );
    assert!(
        !store::save_notification(&mut tx, &note("n-3"))
            .await
            .unwrap(),
        "saved twice"
    );
    tx.commit().await.unwrap();
    let sink = Counting(AtomicUsize::new(0));
    let round = || redeliver_pending(&store, &sink, UnixMillis(10), UnixMillis(10), fast());
    assert_eq!(round().await.unwrap().delivered, 1);
    assert_eq!(round().await.unwrap(), Redelivered::default());
    assert_eq!(sink.0.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(dir);
}

fn fast() -> Redelivery {
    Redelivery {
        max_attempts: 3,
        backoff: std::time::Duration::from_millis(10),
        lease: std::time::Duration::from_secs(60),
        concurrency: 4,
    }
}

async fn store_with(name: &str, ids: &[&str]) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("sw-notify-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::connect(&format!("sqlite://{}/n.db?mode=rwc", dir.display()))
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    for id in ids {
        store::save_notification(&mut tx, &note(id)).await.unwrap();
    }
    tx.commit().await.unwrap();
    (store, dir)
}

/// Fails every notification whose id is listed, delivers the rest.
struct FailsFor(Vec<&'static str>, AtomicUsize);
impl NotificationSink for FailsFor {
    fn deliver<'a>(&'a self, n: &'a Notification) -> sellwindow_store::notify::DeliverFuture<'a> {
        Box::pin(async move {
            self.1.fetch_add(1, Ordering::SeqCst);
            if self.0.contains(&n.id.as_str()) {
                Err("receiver refused".to_string())
            } else {
                Ok(())
            }
        })
    }
}

#[tokio::test]
async fn a_failing_notification_dies_after_its_attempts_without_holding_back_the_others() {
    let (store, dir) = store_with("dead", &["bad", "good-1", "good-2"]).await;
    let sink = FailsFor(vec!["bad"], AtomicUsize::new(0));
    let policy = fast();
    // Each round is due after the previous one's pause.
    let mut t = 10;
    let mut total = Redelivered::default();
    for _ in 0..6 {
        let r = redeliver_pending(&store, &sink, UnixMillis(10), UnixMillis(t), policy)
            .await
            .unwrap();
        total.delivered += r.delivered;
        total.failed += r.failed;
        total.dead += r.dead;
        t += 1_000;
    }
    assert_eq!((total.delivered, total.failed, total.dead), (2, 3, 1));
    // Three attempts at the bad one, one each for the others: nothing after it died.
    assert_eq!(sink.1.load(Ordering::SeqCst), 5);
    let (attempts, error, dead): (i64, Option<String>, Option<i64>) = sqlx::query_as(
        "SELECT delivery_attempts, last_delivery_error, dead_at FROM notifications WHERE id = 'bad'",
    )
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(attempts, 3);
    assert_eq!(error.as_deref(), Some("receiver refused"));
    assert!(dead.is_some());
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn workers_redelivering_at_once_deliver_each_notification_once() {
    let ids: Vec<String> = (0..200).map(|i| format!("n-{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    let (store, dir) = store_with("claims", &refs).await;
    let sink = Arc::new(Counting(AtomicUsize::new(0)));
    let rounds = (0..4).map(|_| {
        let (store, sink) = (store.clone(), sink.clone());
        tokio::spawn(async move {
            redeliver_pending(&store, &*sink, UnixMillis(10), UnixMillis(10), fast())
                .await
                .unwrap()
                .delivered
        })
    });
    let mut delivered = 0;
    for r in rounds {
        delivered += r.await.unwrap();
    }
    assert_eq!(delivered, 200);
    assert_eq!(sink.0.load(Ordering::SeqCst), 200);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_notification_claimed_by_its_first_delivery_is_not_redelivered_meanwhile() {
    let dir = std::env::temp_dir().join(format!("sw-notify-claimed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::connect(&format!("sqlite://{}/n.db?mode=rwc", dir.display()))
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    // Saved as a write saves it: claimed until 100 for its own delivery.
    store::save_notifications(&mut tx, &[note("n-claimed")], Some(UnixMillis(100)))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let sink = Counting(AtomicUsize::new(0));
    let round = |now| redeliver_pending(&store, &sink, UnixMillis(now), UnixMillis(now), fast());
    assert_eq!(round(50).await.unwrap(), Redelivered::default());
    assert_eq!(
        sink.0.load(Ordering::SeqCst),
        0,
        "redelivered during the claim"
    );
    // The first delivery never finished: once its claim lapses the loop takes it over.
    assert_eq!(round(150).await.unwrap().delivered, 1);
    assert_eq!(sink.0.load(Ordering::SeqCst), 1);
    let _ = std::fs::remove_dir_all(dir);
}
