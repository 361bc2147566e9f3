//! Several API processes and several workers on one task queue and one database, serving one
//! hot listing while a worker dies and an API process is restarted (SIGTERM, then started
//! again on its ports): the replicas together never oversell, lose or duplicate an order, and
//! every call is answered.

use crate::helpers::{AppOptions, Proc, free_port, spawn_app_with};
use sellwindow_api::pb;
use sellwindow_domain::{ProductId, SellWindowId};
use sellwindow_testkit::ApiClient;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::RwLock;
use tonic::Code;

const CUSTOMERS: usize = 512;
const ROUNDS: usize = 8;
const CAP: u32 = 3_000;

/// How one reservation ended.
#[derive(Debug, Clone, PartialEq)]
enum Ended {
    Reserved(String),
    SoldOut,
}

async fn connect(grpc: u16, http: u16, secret: &str) -> ApiClient {
    let started = Instant::now();
    loop {
        if let Ok(api) = ApiClient::connect(
            &format!("http://127.0.0.1:{grpc}"),
            &format!("http://127.0.0.1:{http}"),
            secret,
        )
        .await
        {
            return api;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "API {grpc} did not start"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_apis_and_two_workers_share_one_hot_listing_through_a_worker_crash_and_an_api_restart()
 {
    let app = spawn_app_with(AppOptions {
        no_in_process_worker: true,
        ..AppOptions::default()
    })
    .await;
    let mut workers = vec![Proc::worker(&app), Proc::worker(&app)];
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, CAP, Duration::from_secs(600), 600)
        .await;
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let mut apis: Vec<Proc> = ports.iter().map(|(g, h)| Proc::api(&app, *g, *h)).collect();
    let mut clients = Vec::new();
    for (g, h) in &ports {
        clients.push(connect(*g, *h, &app.cfg.jwt_secret).await);
    }
    let clients = Arc::new(RwLock::new(clients));
    let transient = Arc::new(AtomicUsize::new(0));

    // Each customer reserves ROUNDS units under its own keys through "its" API, moving on to
    // the next API with the same key whenever a call is not answered for good.
    let started = Instant::now();
    let tasks: Vec<_> = (0..CUSTOMERS)
        .map(|c| {
            let (clients, w, transient) = (clients.clone(), w.clone(), transient.clone());
            tokio::spawn(async move {
                let mut ended = Vec::new();
                for k in 0..ROUNDS {
                    let mut attempt = 0;
                    let outcome = loop {
                        let api = clients.read().await[(c + attempt) % 3].clone();
                        let r = api
                            .customer()
                            .reserve_order(ApiClient::req(
                                pb::ReserveOrderRequest {
                                    sell_window_id: w.id.clone(),
                                    product_id: w.listings[0].product_id.clone(),
                                    qty: 1,
                                    idempotency_key: format!("k-{k}"),
                                },
                                &api.customer_token(&format!("c-{c}")),
                            ))
                            .await;
                        match r {
                            Ok(o) => break Ended::Reserved(o.into_inner().id),
                            Err(e) if e.code() == Code::ResourceExhausted => break Ended::SoldOut,
                            Err(e) => {
                                assert!(
                                    started.elapsed() < Duration::from_secs(240),
                                    "customer {c} key {k} never answered: {e:?}"
                                );
                                transient.fetch_add(1, Ordering::Relaxed);
                                attempt += 1;
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                        }
                    };
                    ended.push((format!("c-{c}"), format!("k-{k}"), outcome));
                }
                ended
            })
        })
        .collect();

    // Mid-run, a worker crashes; later one API process is stopped gracefully and started
    // again on the same ports (a rolling restart).
    let orders = |at_least: i64| {
        let app = &app;
        let sw = w.id.clone();
        async move {
            let seen = Instant::now();
            while app
                .count("SELECT COUNT(*) FROM orders WHERE sell_window_id = $1", &sw)
                .await
                < at_least
            {
                assert!(seen.elapsed() < Duration::from_secs(120), "orders stalled");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    orders(1_000).await;
    workers[0].kill().await;
    orders(2_000).await;
    assert!(
        apis[1].terminate(Duration::from_secs(30)).await,
        "the API did not stop cleanly on SIGTERM:\n{}",
        apis[1].log_tail(20)
    );
    apis[1] = Proc::api(&app, ports[1].0, ports[1].1);
    let again = connect(ports[1].0, ports[1].1, &app.cfg.jwt_secret).await;
    clients.write().await[1] = again;

    let mut ended = Vec::new();
    for t in tasks {
        ended.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed();

    // Every call answered for good: exactly the cap reserved, the rest sold out.
    assert_eq!(ended.len(), CUSTOMERS * ROUNDS);
    let reserved: BTreeMap<String, (String, String)> = ended
        .iter()
        .filter_map(|(c, k, e)| match e {
            Ended::Reserved(id) => Some((id.clone(), (c.clone(), k.clone()))),
            Ended::SoldOut => None,
        })
        .collect();
    let reserved_answers = ended
        .iter()
        .filter(|(.., e)| matches!(e, Ended::Reserved(_)))
        .count();
    assert_eq!(
        reserved_answers,
        reserved.len(),
        "two keys answered with one order"
    );
    assert_eq!(
        reserved.len(),
        CAP as usize,
        "answers: {} reserved",
        reserved.len()
    );
    // The database holds exactly the orders answered, one per key, and never more than the cap.
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(w.listings[0].product_id.clone()).unwrap();
    let (sold, max, held) = app.store.quota_check(&sw, &p).await.unwrap();
    assert_eq!((sold, max, held), (CAP, CAP, CAP));
    let stored: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM orders WHERE sell_window_id = $1")
            .bind(&w.id)
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    assert_eq!(stored.len(), CAP as usize);
    for (id, status) in &stored {
        assert!(reserved.contains_key(id), "order {id} was never answered");
        assert_eq!(status, "RESERVED");
    }
    assert_eq!(app.listing_agrees(&w).await.sold_qty, CAP);
    println!(
        "{} reservations through 3 APIs and 2 workers in {:.1} s ({} calls retried)",
        CUSTOMERS * ROUNDS,
        elapsed.as_secs_f64(),
        transient.load(Ordering::Relaxed)
    );
    for mut p in apis.into_iter().chain(workers) {
        p.kill().await;
    }
    app.books_balance().await;
    app.stop().await;
}
