//! The fences: a crowd reserves while the listing's workflow confirms, closes or is cancelled.
//! Each phase change is written in the quota row under its lock, so every reservation the API
//! acknowledged is either before it (in the snapshot the workflow acts on: the confirm asks it
//! to pay, close and cancel sweep it) or after it (refused, or after confirm asked to pay at
//! once). Order in the event log is lock order: a listing's writers append under its lock.

use crate::helpers::{HUNG, TestApp, spawn_app};
use sellwindow_api::pb;
use sellwindow_testkit::ApiClient;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tonic::Code;

/// What the crowd was answered: each acknowledged order, and each refusal's code.
#[derive(Default)]
struct Answers {
    orders: BTreeMap<String, pb::Order>,
    refused: Vec<Code>,
}

impl Answers {
    /// The crowd reached the fence: some reservations were refused, every one for the phase.
    fn met_the_fence(&self) {
        let codes = &self.refused;
        assert!(!codes.is_empty(), "no reservation met the fence");
        let all_phase = codes.iter().all(|c| *c == Code::FailedPrecondition);
        assert!(all_phase, "refused otherwise than for the phase: {codes:?}");
    }

    /// Every order acknowledged is among those stored, and only those.
    fn all_stored(&self, stored: &BTreeMap<String, String>) {
        for id in self.orders.keys() {
            assert!(stored.contains_key(id), "{id} acknowledged but not stored");
        }
        assert_eq!(
            self.orders.len(),
            stored.len(),
            "orders stored unacknowledged"
        );
    }
}

/// `customers` reserving one unit at a time, each under new keys, until `stop` is set.
async fn crowd(
    app: &TestApp,
    w: &pb::SellWindow,
    customers: usize,
    stop: Arc<AtomicBool>,
) -> Answers {
    let mut tasks = Vec::new();
    for c in 0..customers {
        let (api, sw, p, stop) = (
            app.api.clone(),
            w.id.clone(),
            w.listings[0].product_id.clone(),
            stop.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut out = Answers::default();
            let mut k = 0;
            while !stop.load(Ordering::SeqCst) {
                k += 1;
                let r = api
                    .customer()
                    .reserve_order(ApiClient::req(
                        pb::ReserveOrderRequest {
                            sell_window_id: sw.clone(),
                            product_id: p.clone(),
                            qty: 1,
                            idempotency_key: format!("k-{k}"),
                        },
                        &api.customer_token(&format!("crowd-{c}")),
                    ))
                    .await;
                match r {
                    Ok(o) => {
                        let o = o.into_inner();
                        out.orders.insert(o.id.clone(), o);
                    }
                    Err(e) => out.refused.push(e.code()),
                }
            }
            out
        }));
    }
    let mut all = Answers::default();
    for t in tasks {
        let a = t.await.unwrap();
        all.orders.extend(a.orders);
        all.refused.extend(a.refused);
    }
    all
}

/// Each order's status now, and the log's sequence number of each event, by order and name.
async fn orders_and_log(
    app: &TestApp,
    w: &pb::SellWindow,
) -> (BTreeMap<String, String>, Vec<pb::Event>) {
    let orders: Vec<(String, String)> =
        sqlx::query_as("SELECT id, status FROM orders WHERE sell_window_id = $1")
            .bind(&w.id)
            .fetch_all(app.store.pool())
            .await
            .unwrap();
    (orders.into_iter().collect(), app.events(w).await)
}

fn seq_of(log: &[pb::Event], name: &str, order: Option<&str>) -> Option<i64> {
    log.iter()
        .find(|e| e.name == name && order.is_none_or(|o| e.order_id == o))
        .map(|e| e.seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_racing_a_confirm_are_each_asked_to_pay_by_the_sweep_or_at_once() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 100_000, Duration::from_secs(600), 600)
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let racing = crowd(&app, &w, 24, stop.clone());
    let confirm = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let c = app.confirm(&w).await.expect("confirm");
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, Ordering::SeqCst);
        c
    };
    let (answers, confirmed) = tokio::join!(racing, confirm);
    assert!(answers.refused.is_empty(), "{:?}", answers.refused);
    // Quiet: the confirm's sweep has asked every order reserved before the fence.
    let (orders, log) = app
        .until("every order asked to pay", HUNG, || async {
            let (orders, log) = orders_and_log(&app, &w).await;
            (!orders.values().any(|s| s == "RESERVED")).then_some((orders, log))
        })
        .await;
    let fence = seq_of(&log, "batch.confirmed", None).expect("the fence");
    let acknowledged: Vec<&String> = answers.orders.keys().collect();
    let stored: Vec<&String> = orders.keys().collect();
    assert_eq!(
        acknowledged, stored,
        "every order acknowledged, and only those"
    );
    let (mut before, mut after) = (0, 0);
    for (id, answer) in &answers.orders {
        let reserved = seq_of(&log, "order.reserved", Some(id)).expect("its event");
        let requested = seq_of(&log, "payment.requested", Some(id)).expect("asked to pay");
        if reserved < fence {
            before += 1;
            assert_eq!(answer.status, "RESERVED", "{id} before the fence");
            assert!(requested > fence, "{id} asked to pay by the sweep");
        } else {
            after += 1;
            assert_eq!(answer.status, "PAYMENT_REQUESTED", "{id} after the fence");
            assert!(
                !answer.payment_id.is_empty(),
                "{id} given its payment at once"
            );
        }
        assert_eq!(orders[id], "PAYMENT_REQUESTED");
    }
    assert!(
        before > 0 && after > 0,
        "the race missed: {before} before, {after} after"
    );
    assert_eq!(confirmed.payment_requested_orders, before);
    app.listing_agrees(&w).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_racing_close_at_are_in_the_closing_snapshot_or_refused() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1_000_000, 1_000_000, Duration::from_secs(4), 60)
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let stopper = async {
        app.until("close_at's fence", HUNG, || async {
            let log = app.events(&w).await;
            seq_of(&log, "sell_window.finalize_requested", None)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        stop.store(true, Ordering::SeqCst);
    };
    let (answers, ()) = tokio::join!(crowd(&app, &w, 24, stop.clone()), stopper);
    answers.met_the_fence();
    // The window never formed: every order the close found is cancelled, none left holding.
    let (orders, log) = app
        .until("every order cancelled", HUNG, || async {
            let (orders, log) = orders_and_log(&app, &w).await;
            orders
                .values()
                .all(|s| s == "CANCELLED")
                .then_some((orders, log))
        })
        .await;
    let fence = seq_of(&log, "sell_window.finalize_requested", None).unwrap();
    answers.all_stored(&orders);
    for id in answers.orders.keys() {
        let reserved = seq_of(&log, "order.reserved", Some(id)).unwrap();
        assert!(reserved < fence, "{id} reserved after the fence");
    }
    app.listing_agrees(&w).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_racing_an_admin_cancel_are_cancelled_with_the_rest_or_refused() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 100_000, Duration::from_secs(600), 600)
        .await;
    let stop = Arc::new(AtomicBool::new(false));
    let cancel = async {
        tokio::time::sleep(Duration::from_millis(700)).await;
        app.cancel_window(&w).await.expect("cancel");
        // Every reservation from here on meets the fence.
        tokio::time::sleep(Duration::from_millis(700)).await;
        stop.store(true, Ordering::SeqCst);
    };
    let (answers, ()) = tokio::join!(crowd(&app, &w, 24, stop.clone()), cancel);
    answers.met_the_fence();
    // Once the cancel has swept, nothing holds quota (a reservation let in after the fence
    // would still be RESERVED).
    app.until("the cancel's sweep", HUNG, || async {
        seq_of(&app.events(&w).await, "sell_window.cancelled", None)
    })
    .await;
    let (orders, _) = orders_and_log(&app, &w).await;
    let held: Vec<_> = orders.iter().filter(|(_, s)| *s != "CANCELLED").collect();
    assert!(held.is_empty(), "reserved past the fence: {held:?}");
    answers.all_stored(&orders);
    app.listing_agrees(&w).await;
    app.books_balance().await;
    app.stop().await;
}
