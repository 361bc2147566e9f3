//! The money check itself can fail: books that disagree with the provider's ledger are refused,
//! whatever the rows say about themselves. Each case writes a small set of rows into a real
//! store (SQLite, the schema as migrated) and checks them against a ledger.

use sellwindow_store::Store;
use sellwindow_testkit::books::{self, Scope};
use sellwindow_testkit::{Ledger, ProviderEvent};
use std::time::Duration;

struct Books {
    store: Store,
    _dir: tempdir::Dir,
}

mod tempdir {
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl Books {
    async fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "sellwindow-books-{}-{}",
            std::process::id(),
            crate::helpers::free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("books.db").display());
        let store = Store::connect(&url).await.unwrap();
        Self {
            store,
            _dir: tempdir::Dir(dir),
        }
    }

    async fn exec(&self, sql: &str) {
        sqlx::query(sql)
            .execute(self.store.pool())
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// An order of 100 with one attempt, as the shop's rows say.
    async fn order(&self, status: &str, paid_by: Option<&str>, charged: bool, refunded: bool) {
        let paid_by = paid_by.map_or("NULL".to_string(), |p| format!("'{p}'"));
        self.exec(&format!(
            "INSERT INTO orders (id, sell_window_id, product_id, customer_id, qty, currency, amount_minor, status, created_at, updated_at, paid_by) \
             VALUES ('o-1', 'sw-1', 'p-1', 'c-1', 1, 'TWD', 100, '{status}', 0, 0, {paid_by})"
        ))
        .await;
        let pay_status = match (charged, refunded) {
            (true, true) => "REFUNDED",
            (true, false) => "SUCCEEDED",
            _ => "INIT",
        };
        let at = |b: bool| if b { "1" } else { "NULL" };
        self.exec(&format!(
            "INSERT INTO payments (id, order_id, sell_window_id, product_id, customer_id, attempt, currency, amount_minor, status, provider, pay_url, expire_at, created_at, updated_at, charged_at, refunded_at) \
             VALUES ('pay-1', 'o-1', 'sw-1', 'p-1', 'c-1', 1, 'TWD', 100, '{pay_status}', 'sandbox', '', 0, 0, 0, {}, {})",
            at(charged),
            at(refunded)
        ))
        .await;
    }

    /// The shop took the provider's event in (applied to its listing).
    async fn took_in(&self, event: &str) {
        self.exec(&format!(
            "INSERT INTO payment_callbacks (event_id, payment_id, outcome, received_at, applied_at) VALUES ('{event}', 'pay-1', 'succeeded', 0, 1)"
        ))
        .await;
    }

    async fn refund_event(&self) {
        self.exec(
            "INSERT INTO events (event_key, name, sell_window_id, product_id, order_id, payload, occurred_at) \
             VALUES ('payment.refunded:pay-1', 'payment.refunded', 'sw-1', 'p-1', 'o-1', '{}', 0)",
        )
        .await;
    }

    async fn check(&self, ledger: &Ledger) -> Result<books::Books, String> {
        books::check(
            self.store.pool(),
            ledger,
            &Scope::Everything,
            Duration::ZERO,
        )
        .await
    }
}

fn charged(event: &str) -> Ledger {
    let ledger = Ledger::default();
    ledger.record(ProviderEvent {
        event_id: event.into(),
        payment_id: "pay-1".into(),
        order_id: "o-1".into(),
        outcome: "succeeded".into(),
        amount_minor: None,
    });
    ledger
}

#[tokio::test]
async fn books_that_match_the_providers_ledger_balance() {
    let b = Books::new().await;
    b.order("PAID", Some("pay-1"), true, false).await;
    b.took_in("evt-1").await;
    let found = b.check(&charged("evt-1")).await.unwrap();
    assert_eq!((found.orders, found.charged, found.refunded), (1, 1, 0));
}

#[tokio::test]
async fn a_charge_the_shop_dropped_fails_the_books() {
    let b = Books::new().await;
    // The provider charged; the shop answered but never took the event in.
    b.order("PAYMENT_REQUESTED", None, false, false).await;
    let e = b.check(&charged("evt-1")).await.unwrap_err();
    assert!(e.contains("has not taken it in"), "{e}");
    // Taken in, yet the attempt is not charged in the books.
    b.took_in("evt-1").await;
    let e = b.check(&charged("evt-1")).await.unwrap_err();
    assert!(
        e.contains("charged by the provider but not in the books"),
        "{e}"
    );
}

#[tokio::test]
async fn a_charge_or_refund_the_provider_never_made_fails_the_books() {
    let b = Books::new().await;
    // The books say paid, and self-consistently so; the provider charged nothing.
    b.order("PAID", Some("pay-1"), true, false).await;
    let e = b.check(&Ledger::default()).await.unwrap_err();
    assert!(
        e.contains("charged in the books but not by the provider"),
        "{e}"
    );
}

#[tokio::test]
async fn a_refund_without_its_event_or_without_need_fails_the_books() {
    let b = Books::new().await;
    // Cancelled and refunded in the rows, but no payment.refunded was written.
    b.order("CANCELLED", None, true, true).await;
    b.took_in("evt-1").await;
    let e = b.check(&charged("evt-1")).await.unwrap_err();
    assert!(e.contains("payment.refunded events"), "{e}");
    b.refund_event().await;
    b.check(&charged("evt-1")).await.unwrap();
    // A paid order whose paying charge was refunded: money given back that the shop kept.
    b.exec("UPDATE orders SET status = 'PAID', paid_by = 'pay-1'")
        .await;
    let e = b.check(&charged("evt-1")).await.unwrap_err();
    assert!(e.contains("refunded without need"), "{e}");
}
