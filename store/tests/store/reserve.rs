//! The reserve transaction against a real database: a SQLite file, and PostgreSQL when
//! `SELLWINDOW_TEST_POSTGRES_URL` names a server (each test in a fresh database there).

use sellwindow_domain::*;
use sellwindow_store::Store;
use sellwindow_store::notify::LogSink;
use sellwindow_store::queries::NewListing;
use sellwindow_store::reserve::{ReserveContext, ReserveRequest};
use std::sync::Arc;

fn db_name(name: &str) -> String {
    format!("sw_test_store_{name}_{}", std::process::id())
}

/// A fresh store: PostgreSQL (a database of its own) when configured, else a SQLite file.
async fn store(name: &str) -> Store {
    if let Ok(url) = std::env::var("SELLWINDOW_TEST_POSTGRES_URL") {
        let admin = Store::connect(&url).await.unwrap();
        let db = db_name(name);
        let drop = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
        sqlx::query(&drop).execute(admin.pool()).await.unwrap();
        let create = format!("CREATE DATABASE {db}");
        sqlx::query(&create).execute(admin.pool()).await.unwrap();
        let base = url.rsplit_once('/').map_or(url.as_str(), |(b, _)| b);
        return Store::connect(&format!("{base}/{db}")).await.unwrap();
    }
    let dir = std::env::temp_dir().join(format!("sw-store-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}?mode=rwc", dir.join("db.sqlite").display());
    Store::connect(&url).await.unwrap()
}

/// Removes what [`store`] made.
async fn cleanup(store: Store, name: &str) {
    store.pool().close().await;
    match std::env::var("SELLWINDOW_TEST_POSTGRES_URL") {
        Ok(url) => {
            let admin = sqlx::AnyPool::connect(&url).await.unwrap();
            let drop = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", db_name(name));
            sqlx::query(&drop).execute(&admin).await.unwrap();
        }
        Err(_) => {
            let dir = std::env::temp_dir().join(format!("sw-store-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn cx() -> ReserveContext {
    ReserveContext::new(Arc::new(LogSink), "http://pay.example")
}

/// A listing (threshold `min`, cap `max`) in a window closing far ahead.
async fn listing(store: &Store, n: u32, min: u32, max: u32, limit: Option<u32>) -> ListingKey {
    let product = ProductId::parse(format!("p-{n}")).unwrap();
    let price = Money::new(Currency::parse("TWD").unwrap(), 100).unwrap();
    let at = UnixMillis(1_000);
    store
        .create_product(&product, "mug", &price, &[], at)
        .await
        .unwrap();
    let window = SellWindowId::parse(format!("sw-{n}")).unwrap();
    let new = NewListing {
        product_id: product.clone(),
        min_qty: min,
        max_qty: max,
        payment_window_ms: 60_000,
        per_customer_limit: limit,
        min_paid_policy: MinPaidPolicy::ProduceWhatWasPaid,
    };
    let workflow = listing_workflow_id(&window, &product);
    store
        .create_sell_window(
            &window,
            "w",
            UnixMillis(i64::MAX / 2),
            &[(new, workflow)],
            at,
        )
        .await
        .unwrap();
    ListingKey {
        sell_window_id: window,
        product_id: product,
    }
}

fn request(l: &ListingKey, customer: &str, qty: u32, key: &str) -> ReserveRequest {
    ReserveRequest {
        listing: l.clone(),
        customer_id: CustomerId::parse(customer).unwrap(),
        qty: Qty::new(qty).unwrap(),
        idempotency_key: key.into(),
    }
}

/// The quota row's sold and the counter's reserved, against the units the orders hold.
async fn sold(store: &Store, l: &ListingKey) -> (i64, i64) {
    let (sold, reserved): (i64, i64) = sqlx::query_as(
        "SELECT q.sold_qty, c.reserved_qty FROM sell_window_quota q JOIN counters c \
         ON c.sell_window_id = q.sell_window_id AND c.product_id = q.product_id \
         WHERE q.sell_window_id = $1 AND q.product_id = $2",
    )
    .bind(l.sell_window_id.as_str())
    .bind(l.product_id.as_str())
    .fetch_one(store.pool())
    .await
    .unwrap();
    assert_eq!(
        sold, reserved,
        "nothing is paid here: the counter reserves what is sold"
    );
    let held: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(qty), 0) AS BIGINT) FROM orders WHERE sell_window_id = $1 AND product_id = $2 \
         AND status IN ('RESERVED', 'PAYMENT_REQUESTED', 'PAID')",
    )
    .bind(l.sell_window_id.as_str())
    .bind(l.product_id.as_str())
    .fetch_one(store.pool())
    .await
    .unwrap();
    (sold, held)
}

#[tokio::test]
async fn one_batch_over_two_listings_takes_units_in_arrival_order_never_past_either_cap() {
    let store = store("arrival").await;
    let (a, b) = (
        listing(&store, 1, 2, 3, None).await,
        listing(&store, 2, 1, 1, None).await,
    );
    let batch = [
        request(&a, "c1", 2, "k1"),
        request(&b, "c2", 1, "k2"),
        request(&a, "c3", 2, "k3"),
        request(&b, "c4", 1, "k4"),
        request(&a, "c5", 1, "k5"),
    ];
    let done = store
        .reserve(&cx(), &batch, UnixMillis(2_000))
        .await
        .unwrap();
    let ok: Vec<bool> = done.answers.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [true, true, false, false, true]);
    assert_eq!(
        done.answers[2],
        Err(Refusal::NotEnoughQuota { available: 1 })
    );
    assert_eq!(sold(&store, &a).await, (3, 3));
    assert_eq!(sold(&store, &b).await, (1, 1));
    // Both listings told: a filled its cap and b reached its threshold.
    assert_eq!(done.progress.len(), 2);
    assert!(done.progress.iter().all(|p| p.milestone));
    let events: Vec<String> = sqlx::query_scalar("SELECT name FROM events ORDER BY seq")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(events.iter().filter(|e| *e == "order.reserved").count(), 3);
    assert_eq!(events.iter().filter(|e| *e == "quota.closed").count(), 2);
    assert_eq!(
        events.iter().filter(|e| *e == "threshold.reached").count(),
        2
    );
    cleanup(store, "arrival").await;
}

#[tokio::test]
async fn a_retry_gets_its_first_answer_and_a_key_reused_for_another_reservation_is_refused() {
    let store = store("retry").await;
    let l = listing(&store, 1, 1, 5, Some(2)).await;
    let first = store
        .reserve(&cx(), &[request(&l, "c", 2, "k")], UnixMillis(2_000))
        .await
        .unwrap();
    let order = first.answers[0].clone().unwrap();
    // The retry, twice in one batch, and the key used for another quantity.
    let again = store
        .reserve(
            &cx(),
            &[
                request(&l, "c", 2, "k"),
                request(&l, "c", 2, "k"),
                request(&l, "c", 1, "k"),
            ],
            UnixMillis(3_000),
        )
        .await
        .unwrap();
    assert_eq!(again.answers[0].as_ref().unwrap().id, order.id);
    assert_eq!(again.answers[1].as_ref().unwrap().id, order.id);
    assert_eq!(again.answers[2], Err(Refusal::KeyReused));
    // Over the per-customer limit: refused, and that refusal is the key's first answer.
    let over = store
        .reserve(&cx(), &[request(&l, "c", 1, "k2")], UnixMillis(4_000))
        .await
        .unwrap();
    let limit = Err(Refusal::CustomerLimit { limit: 2, held: 2 });
    assert_eq!(over.answers[0], limit);
    let retried = store
        .reserve(&cx(), &[request(&l, "c", 1, "k2")], UnixMillis(5_000))
        .await
        .unwrap();
    assert_eq!(retried.answers[0], limit);
    assert_eq!(sold(&store, &l).await, (2, 2));
    let unknown = ListingKey {
        sell_window_id: SellWindowId::parse("sw-none").unwrap(),
        product_id: ProductId::parse("p-none").unwrap(),
    };
    let none = store
        .reserve(&cx(), &[request(&unknown, "c", 1, "k3")], UnixMillis(5_000))
        .await
        .unwrap();
    assert_eq!(none.answers[0], Err(Refusal::UnknownListing));
    cleanup(store, "retry").await;
}

/// Processes racing for the last units of one listing, with retries of the same keys in
/// other processes meanwhile: exactly the cap is sold, each key has one order and one answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_batches_never_oversell_and_give_each_key_one_order() {
    let store = store("race").await;
    let l = listing(&store, 1, 1, 50, None).await;
    let mut tasks = Vec::new();
    for process in 0..4 {
        let (store, l) = (store.clone(), l.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            for round in 0..10 {
                // Each process asks for 20 keys a round, half of them also asked by another.
                let batch: Vec<ReserveRequest> = (0..20)
                    .map(|k| {
                        let key = (process * 10 + round * 40 + k) % 160;
                        request(&l, &format!("c{key}"), 1, &format!("k{key}"))
                    })
                    .collect();
                let done = store
                    .reserve(&cx(), &batch, UnixMillis(2_000))
                    .await
                    .unwrap();
                answers.extend(batch.into_iter().zip(done.answers));
            }
            answers
        }));
    }
    let mut by_key = std::collections::BTreeMap::new();
    for t in tasks {
        for (r, a) in t.await.unwrap() {
            let first = by_key.entry(r.idempotency_key.clone()).or_insert(a.clone());
            assert_eq!(first, &a, "key {} answered two ways", r.idempotency_key);
        }
    }
    let taken = by_key.values().filter(|a| a.is_ok()).count();
    assert_eq!(taken, 50, "exactly the cap is sold");
    assert_eq!(sold(&store, &l).await, (50, 50));
    let answers: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM idempotency_keys")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(answers, by_key.len() as i64, "one first answer per key");
    cleanup(store, "race").await;
}
