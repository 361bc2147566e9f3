//! The reservation write against a real SQLite file: a write of new orders inserts them at once;
//! a write that meets orders already there (a retry, the write done again) reads them first and
//! counts each once.

use sellwindow_activities::queries::NewListing;
use sellwindow_activities::{ListingActivities, LogSink, Store};
use sellwindow_domain::*;
use sellwindow_workflows::listing::contract::{RecordOrders, Recording};
use std::sync::Arc;

async fn listing(store: &Store, per_customer_limit: Option<u32>) -> ListingKey {
    let (sw, p) = (
        SellWindowId::parse("sw-record").unwrap(),
        ProductId::parse("prd-record").unwrap(),
    );
    let price = Money::new(Currency::parse("TWD").unwrap(), 45_000).unwrap();
    store
        .create_product(&p, "Tea", &price, &[], UnixMillis(1))
        .await
        .unwrap();
    let l = NewListing {
        product_id: p.clone(),
        min_qty: 2,
        max_qty: 10,
        payment_window_ms: 60_000,
        per_customer_limit,
        min_paid_policy: MinPaidPolicy::ProduceWhatWasPaid,
    };
    let created = store
        .create_sell_window(
            &sw,
            "Window",
            UnixMillis(10_000_000),
            &[(l, "listing-record".into())],
            UnixMillis(1),
        )
        .await
        .unwrap();
    assert!(created);
    ListingKey {
        sell_window_id: sw,
        product_id: p,
    }
}

fn order(n: u32) -> (NewOrder, OrderAnswer) {
    let (id, customer) = (
        OrderId::parse(format!("ord-record-{n}")).unwrap(),
        CustomerId::parse(format!("cus-record-{}", n % 2)).unwrap(),
    );
    let o = NewOrder {
        order_id: id.clone(),
        customer_id: customer.clone(),
        qty: Qty::new(1).unwrap(),
        amount: Money::new(Currency::parse("TWD").unwrap(), 45_000).unwrap(),
        status: OrderStatus::Reserved,
        payment_due_at: None,
    };
    let a = OrderAnswer {
        customer_id: customer,
        key: AnswerKey {
            idempotency_key: format!("key-{n}"),
            request_hash: "h".into(),
        },
        order_id: id,
    };
    (o, a)
}

fn write(listing: &ListingKey, ns: &[u32], limit: Option<u32>, at: i64) -> RecordOrders {
    let (orders, answers) = ns.iter().map(|n| order(*n)).unzip();
    RecordOrders {
        listing: listing.clone(),
        at: UnixMillis(at),
        orders,
        answers,
        per_customer_limit: limit,
    }
}

fn kinds(replies: &[Recording]) -> Vec<&'static str> {
    replies
        .iter()
        .map(|r| match r {
            Recording::New { .. } => "new",
            Recording::Existing(_) => "existing",
            Recording::OverLimit { .. } => "over limit",
            _ => "other",
        })
        .collect()
}

async fn counted(store: &Store) -> (i64, i64, i64) {
    let orders: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM orders")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let sold: i64 = sqlx::query_scalar("SELECT sold_qty FROM sell_window_quota")
        .fetch_one(store.pool())
        .await
        .unwrap();
    let events: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM events WHERE name = 'order.reserved'")
            .fetch_one(store.pool())
            .await
            .unwrap();
    (orders, sold, events)
}

async fn fresh_store(name: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("sellwindow-record-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let url = format!("sqlite://{}?mode=rwc", dir.join("sellwindow.db").display());
    (Store::connect(&url).await.unwrap(), dir)
}

#[tokio::test]
async fn orders_already_written_are_answered_as_they_are_and_counted_once() {
    for limit in [None, Some(5)] {
        let (store, dir) = fresh_store(&format!("{limit:?}")).await;
        let key = listing(&store, limit).await;
        let acts = ListingActivities::new(
            store.clone(),
            Arc::new(LogSink),
            "http://127.0.0.1:8080".into(),
            Arc::default(),
        );

        let first = acts
            .record_orders_tx(&write(&key, &[1, 2], limit, 100))
            .await
            .unwrap();
        assert_eq!(kinds(&first.replies), ["new", "new"], "limit {limit:?}");
        assert_eq!(first.figures.sold, 2);
        assert_eq!(counted(&store).await, (2, 2, 2));

        // The same write done again, with one more order: the two are there, the third is new.
        let again = acts
            .record_orders_tx(&write(&key, &[1, 2, 3], limit, 200))
            .await
            .unwrap();
        assert_eq!(
            kinds(&again.replies),
            ["existing", "existing", "new"],
            "limit {limit:?}"
        );
        assert_eq!(again.figures.sold, 3);
        assert_eq!(counted(&store).await, (3, 3, 3));

        // All of it once more: nothing moves.
        let third = acts
            .record_orders_tx(&write(&key, &[1, 2, 3], limit, 300))
            .await
            .unwrap();
        assert_eq!(kinds(&third.replies), ["existing", "existing", "existing"]);
        assert_eq!(counted(&store).await, (3, 3, 3));

        store.pool().close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
