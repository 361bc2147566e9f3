//! Faults against the real parts: the worker killed (SIGKILL) mid-flow, the Temporal server
//! restarted while timers come due, the API restarted or killed between a reservation and its
//! retry, the database unavailable while activities run (PostgreSQL), and 200 customers racing
//! for the last 50 units. After each, the flow completes and every effect happened exactly once.

use crate::helpers::{AppOptions, HUNG, Proc, TestApp, free_port, spawn_app, spawn_app_with};
use sellwindow_api::pb;
use sellwindow_domain::{CustomerId, OrderId, ProductId, SellWindowId};
use sellwindow_testkit::ApiClient;
use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tonic::Code;

/// Polls `f` until it yields a value, failing after `timeout`.
async fn until<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_event(app: &TestApp, w: &pb::SellWindow, name: &str, timeout: Duration) {
    until(&format!("event {name}"), timeout, || async {
        app.event_counts(w).await.contains_key(name).then_some(())
    })
    .await
}

async fn wait_status(app: &TestApp, order: &str, status: &str, timeout: Duration) {
    until(&format!("order {order} {status}"), timeout, || async {
        (app.order(order).await.status == status).then_some(())
    })
    .await
}

fn counts(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| (k.to_string(), *n))
        .collect()
}

/// The event log of the main flow with `n` orders, all paid, produced.
fn produced_flow(n: usize, quota_closed: bool) -> BTreeMap<String, usize> {
    counts(&[
        ("sell_window.created", 1),
        ("order.reserved", n),
        ("quota.closed", usize::from(quota_closed)),
        ("threshold.reached", 1),
        ("batch.confirmed", 1),
        ("payment.requested", n),
        ("payment.created", n),
        ("payment.succeeded", n),
        ("order.paid", n),
        ("sell_window.finalize_requested", 1),
        ("sell_window.finalized", 1),
        ("production.scheduled", 1),
        ("production.started", 1),
    ])
}

async fn notification_kinds(app: &TestApp, w: &pb::SellWindow) -> BTreeMap<String, usize> {
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let mut m = BTreeMap::new();
    for n in app.notifications(None, Some(&sw)).await {
        *m.entry(n.kind).or_insert(0) += 1;
    }
    m
}

async fn rows_of(app: &TestApp, table: &str, w: &pb::SellWindow) -> i64 {
    app.count(
        &format!("SELECT COUNT(*) FROM {table} WHERE sell_window_id = $1"),
        &w.id,
    )
    .await
}

/// After a produced flow: every row and event exactly once, the database agreeing with the
/// workflow.
async fn assert_produced_once(
    app: &TestApp,
    w: &pb::SellWindow,
    orders: &[&pb::Order],
    paid_qty: u32,
    quota_closed: bool,
) {
    let n = orders.len();
    assert_eq!(rows_of(app, "orders", w).await, n as i64, "order rows");
    assert_eq!(rows_of(app, "payments", w).await, n as i64, "payment rows");
    assert_eq!(rows_of(app, "batches", w).await, 1, "batch rows");
    assert_eq!(rows_of(app, "work_orders", w).await, 1, "work orders");
    for o in orders {
        assert_eq!(app.order(&o.id).await.status, "PAID", "order {}", o.id);
    }
    let paid: i64 = app
        .count(
            "SELECT COUNT(*) FROM payments WHERE sell_window_id = $1 AND status = 'SUCCEEDED'",
            &w.id,
        )
        .await;
    assert_eq!(paid, n as i64, "succeeded payments");
    assert_eq!(
        app.event_counts(w).await,
        produced_flow(n, quota_closed),
        "the event log"
    );
    assert_eq!(
        notification_kinds(app, w).await,
        counts(&[
            ("threshold_reached", 1),
            ("payment_link", n),
            ("payment_received", n),
            ("production_started", 1),
        ]),
        "notifications"
    );
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(w.listings[0].product_id.clone()).unwrap();
    let wos = app.work_orders(&sw).await;
    assert_eq!(wos.len(), 1);
    assert_eq!(wos[0].product_qty, paid_qty);
    assert_eq!(wos[0].steps.len(), 2, "one row per work step");
    let (sold, max, held) = app.store.quota_check(&sw, &p).await.unwrap();
    assert_eq!((sold, held), (paid_qty, paid_qty), "quota row of max {max}");
    let live = app.listing_agrees(w).await;
    assert_eq!(
        (
            live.phase.as_str(),
            live.sold_qty,
            live.reserved_qty,
            live.paid_qty,
            live.final_paid_qty
        ),
        ("IN_PRODUCTION", paid_qty, 0, paid_qty, Some(paid_qty)),
        "the workflow's figures"
    );
    app.books_balance().await;
}

/// A confirm as the admin's client makes it, retried while the answer is UNAVAILABLE (a
/// second confirm returns the same batch).
async fn confirm(api: ApiClient, w: pb::SellWindow) -> pb::ConfirmBatchResponse {
    let mut tries = 0;
    loop {
        let r = api
            .admin()
            .confirm_batch(ApiClient::req(
                pb::ConfirmBatchRequest {
                    sell_window_id: w.id.clone(),
                    product_id: w.listings[0].product_id.clone(),
                },
                &api.admin_token(),
            ))
            .await;
        match r {
            Ok(r) => return r.into_inner(),
            Err(s) if s.code() == Code::Unavailable && tries < 20 => {
                tries += 1;
                eprintln!("confirm answered UNAVAILABLE ({}); retrying", s.message());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(s) => panic!("confirm failed: {s:?}"),
        }
    }
}

/// A reservation as a customer's client makes it: retried under the same key while the
/// answer is UNAVAILABLE or the connection broke.
async fn reserve_retrying(
    api: &ApiClient,
    w: &pb::SellWindow,
    customer: &str,
    qty: u32,
    key: &str,
    timeout: Duration,
) -> Result<pb::Order, tonic::Status> {
    let start = Instant::now();
    loop {
        let r = api
            .customer()
            .reserve_order(ApiClient::req(
                pb::ReserveOrderRequest {
                    sell_window_id: w.id.clone(),
                    product_id: w.listings[0].product_id.clone(),
                    qty,
                    idempotency_key: key.into(),
                },
                &api.customer_token(customer),
            ))
            .await;
        match r {
            Ok(o) => return Ok(o.into_inner()),
            Err(s)
                if matches!(
                    s.code(),
                    Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
                ) && start.elapsed() < timeout =>
            {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(s) => return Err(s),
        }
    }
}

/// Pays every order through the provider callback and waits until each is PAID.
async fn pay_all(app: &TestApp, orders: &[&pb::Order], timeout: Duration) {
    for o in orders {
        let o = app.payment_of(&o.id).await;
        // Provider event ids are unique per event (here: per payment).
        assert_eq!(
            app.pay(&o, "succeeded", &format!("evt-{}", o.payment_id))
                .await,
            200
        );
    }
    for o in orders {
        wait_status(app, &o.id, "PAID", timeout).await;
    }
}

fn no_worker() -> AppOptions {
    AppOptions {
        no_in_process_worker: true,
        // Calls made while no worker runs wait for the next one (a real client would retry
        // on DEADLINE_EXCEEDED; these tests are about what survives the restart). An activity
        // lost with its worker runs again only after its 60 s start-to-close timeout, so a
        // call waits longer than that (with 60 s, a kill that landed during a sweep chunk made
        // the confirm answer "still in progress" instead of its count).
        rpc_deadline: Some(Duration::from_secs(120)),
        ..AppOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_between_reservations_and_confirm_loses_and_duplicates_nothing() {
    let app = spawn_app_with(no_worker()).await;
    let mut worker = Proc::worker(&app);
    let product = app.product(700).await;
    let w = app
        .window(&product, 3, 10, Duration::from_secs(40), 120)
        .await;
    let ann = app.reserve(&w, "ann", 1, "k").await.unwrap();
    let ben = app.reserve(&w, "ben", 2, "k").await.unwrap();
    let cat = app.reserve(&w, "cat", 1, "k").await.unwrap();
    wait_event(&app, &w, "threshold.reached", Duration::from_secs(10)).await;

    worker.kill().await;
    // The admin confirms while no worker runs: the update waits for one.
    let pending = tokio::spawn(confirm(app.api.clone(), w.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!pending.is_finished(), "confirmed without a worker");
    assert!(!app.event_counts(&w).await.contains_key("batch.confirmed"));
    let mut worker = Proc::worker(&app);
    let confirmed = tokio::time::timeout(Duration::from_secs(60), pending)
        .await
        .unwrap_or_else(|_| panic!("confirm never completed: {}", worker.log_tail(30)))
        .unwrap();
    assert_eq!(confirmed.payment_requested_orders, 3);

    pay_all(&app, &[&ann, &ben, &cat], Duration::from_secs(30)).await;
    wait_event(&app, &w, "production.started", Duration::from_secs(60)).await;
    assert_produced_once(&app, &w, &[&ann, &ben, &cat], 4, false).await;
    assert!(worker.running(), "{}", worker.log_tail(30));
    worker.kill().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_right_after_confirm_keeps_every_callback_and_reservation_made_meanwhile() {
    let app = spawn_app_with(no_worker()).await;
    let mut worker = Proc::worker(&app);
    let product = app.product(700).await;
    let w = app
        .window(&product, 3, 6, Duration::from_secs(40), 120)
        .await;
    let ann = app.reserve(&w, "ann", 1, "k").await.unwrap();
    let ben = app.reserve(&w, "ben", 2, "k").await.unwrap();
    let cat = app.reserve(&w, "cat", 1, "k").await.unwrap();
    let confirmed = confirm(app.api.clone(), w.clone()).await;
    assert_eq!(confirmed.payment_requested_orders, 3);
    worker.kill().await;

    // Meanwhile: every customer pays (one callback delivered twice), and a late customer
    // reserves the last two units: the reservation commits with no worker (the quota row
    // decides it), asked to pay at once with its payment opened.
    let dan = reserve_retrying(&app.api, &w, "dan", 2, "k", Duration::from_secs(60))
        .await
        .expect("the late reservation, with no worker");
    assert_eq!(dan.status, "PAYMENT_REQUESTED");
    assert!(!dan.payment_id.is_empty(), "its payment is opened at once");
    for (i, o) in [&ann, &ben, &cat].into_iter().enumerate() {
        let o = app.payment_of(&o.id).await;
        assert_eq!(app.pay(&o, "succeeded", &format!("evt-{i}")).await, 200);
    }
    let again = app.payment_of(&ben.id).await;
    assert_eq!(app.pay(&again, "succeeded", "evt-1").await, 200);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        app.order(&ann.id).await.status,
        "PAYMENT_REQUESTED",
        "paid without a worker"
    );
    let mut worker = Proc::worker(&app);
    for o in [&ann, &ben, &cat] {
        wait_status(&app, &o.id, "PAID", Duration::from_secs(40)).await;
    }
    pay_all(&app, &[&dan], Duration::from_secs(30)).await;
    wait_event(&app, &w, "production.started", Duration::from_secs(60)).await;
    assert_produced_once(&app, &w, &[&ann, &ben, &cat, &dan], 6, true).await;
    assert!(worker.running(), "{}", worker.log_tail(30));
    worker.kill().await;
    app.stop().await;
}

/// Kills the worker the moment the batch's confirmation is committed, while the confirm goes on
/// to open the payments: an activity may be cut mid-way, or have committed without reporting
/// back. Temporal runs it again (an activity lost with its worker only after its 60 s
/// start-to-close timeout; a workflow task after ~10 s) and the rerun must add nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_while_the_confirm_opens_payments_reruns_them_without_duplicates() {
    const ORDERS: i64 = 600;
    let app = spawn_app_with(AppOptions {
        tuning: sellwindow_workflows::Tuning {
            sweep_chunk: 5,
            ..Default::default()
        },
        ..no_worker()
    })
    .await;
    let mut worker = Proc::worker(&app);
    let product = app.product(700).await;
    let w = app
        .window(&product, 3, 1_000, Duration::from_secs(600), 580)
        .await;
    let mut tasks = Vec::new();
    for c in 0..20 {
        let (api, w) = (app.api.clone(), w.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..ORDERS / 20 {
                let key = format!("k-{k}");
                reserve_retrying(
                    &api,
                    &w,
                    &format!("c-{c}"),
                    1,
                    &key,
                    Duration::from_secs(30),
                )
                .await
                .expect("a reservation");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let pending = tokio::spawn(confirm(app.api.clone(), w.clone()));
    // The kill lands in the middle of the confirm's sweep: some payments opened, not all.
    let seen = Instant::now();
    loop {
        let opened = rows_of(&app, "payments", &w).await;
        if opened > 0 {
            assert!(opened < ORDERS, "the sweep ended before the kill");
            break;
        }
        assert!(
            seen.elapsed() < HUNG,
            "hung: no payment opened: {}",
            worker.log_tail(30)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    worker.kill().await;
    let payments_at_kill = rows_of(&app, "payments", &w).await;
    assert!(payments_at_kill < ORDERS, "the sweep ended before the kill");
    let mut worker = Proc::worker(&app);
    let confirmed = tokio::time::timeout(HUNG, pending)
        .await
        .unwrap_or_else(|_| panic!("confirm never completed: {}", worker.log_tail(30)))
        .unwrap();
    assert_eq!(confirmed.status, "CONFIRMED");
    app.until("every payment opened", HUNG, || async {
        (app.count(
            "SELECT COUNT(*) FROM orders WHERE sell_window_id = $1 AND status = 'RESERVED'",
            &w.id,
        )
        .await
            == 0)
            .then_some(())
    })
    .await;
    assert_eq!(rows_of(&app, "payments", &w).await, ORDERS);
    let ev = app.event_counts(&w).await;
    for (name, n) in [
        ("batch.confirmed", 1),
        ("payment.requested", ORDERS as usize),
        ("payment.created", ORDERS as usize),
    ] {
        assert_eq!(ev.get(name).copied().unwrap_or(0), n, "{name}: {ev:?}");
    }
    assert_eq!(
        notification_kinds(&app, &w)
            .await
            .get("payment_link")
            .copied(),
        Some(ORDERS as usize)
    );
    // The kill cut a task short: the history shows the activity or workflow task it held
    // timing out (and being run again).
    let events = app.run_event_names(&w).await;
    assert!(
        events
            .iter()
            .any(|e| e == "ActivityTaskTimedOut" || e == "WorkflowTaskTimedOut"),
        "no task of the listing was cut short by the kill: {events:?}"
    );
    let live = app.listing_agrees(&w).await;
    assert_eq!(live.sold_qty, ORDERS as u32);
    assert!(worker.running(), "{}", worker.log_tail(30));
    worker.kill().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn temporal_restarted_mid_flow_fires_the_deadline_and_the_close_that_came_due_while_down() {
    let mut app = spawn_app_with(AppOptions {
        temporal_on_disk: true,
        ..AppOptions::default()
    })
    .await;
    let product = app.product(900).await;
    let w = app.window(&product, 1, 5, Duration::from_secs(18), 6).await;
    let close_at = sellwindow_api::convert::ms_of(w.close_at.as_ref().unwrap());
    let ann = app.reserve(&w, "ann", 1, "k").await.unwrap();
    let ben = app.reserve(&w, "ben", 1, "k").await.unwrap();
    app.confirm(&w).await.unwrap();
    let ann = app.payment_of(&ann.id).await;
    let due = ann
        .payment_due_at
        .as_ref()
        .map(sellwindow_api::convert::ms_of);
    let due = due.expect("a payment deadline");
    assert_eq!(app.pay(&ann, "succeeded", "evt-ann").await, 200);
    wait_status(&app, &ann.id, "PAID", Duration::from_secs(10)).await;
    let now = sellwindow_api::convert::now_ms().0;
    assert!(
        now < due,
        "the machine is too slow for this test: ann paid after ben's deadline"
    );

    app.stop_temporal().await;
    // While it is down: a replayed callback is still answered (it was signalled already),
    // and a new one is told to come back later.
    assert_eq!(app.pay(&ann, "succeeded", "evt-ann").await, 200);
    let ben_pay = app.payment_of(&ben.id).await;
    let now = sellwindow_api::convert::now_ms().0 / 1000;
    let body = serde_json::json!({"event_id": "evt-ben", "payment_id": ben_pay.payment_id,
        "order_id": ben.id, "outcome": "failed", "error": "declined", "occurred_at": now});
    let status = tokio::time::timeout(
        Duration::from_secs(60),
        app.callback(&body, &app.cfg.callback_secret.clone(), now),
    )
    .await
    .expect("the callback hung while Temporal was down");
    assert_eq!(status, 503, "a callback that could not be signalled");
    // Ben's deadline and the window's close both come due while the engine is down.
    let wake = due.max(close_at) + 2_000;
    let left = wake - sellwindow_api::convert::now_ms().0;
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
    assert_eq!(
        app.order(&ben.id).await.status,
        "PAYMENT_REQUESTED",
        "something moved while Temporal was down"
    );
    app.start_temporal().await;

    wait_event(&app, &w, "production.started", Duration::from_secs(60)).await;
    assert_eq!(app.order(&ann.id).await.status, "PAID");
    assert_eq!(app.order(&ben.id).await.status, "EXPIRED");
    let mut ev = app.event_counts(&w).await;
    // Ben's `failed` outcome was answered 503 but recorded: applied once the engine is back
    // (before his deadline's sweep, or not at all if the sweep came first), it leaves his
    // attempt FAILED and the expiry then logs no `payment.expired`. Either way, once.
    let failed_first = ev.remove("payment.failed").is_some();
    if failed_first {
        assert_eq!(ev.remove("notification.requested"), Some(1), "{ev:?}");
    } else {
        assert_eq!(ev.remove("payment.expired"), Some(1), "{ev:?}");
    }
    assert_eq!(
        ev,
        counts(&[
            ("sell_window.created", 1),
            ("order.reserved", 2),
            ("threshold.reached", 1),
            ("batch.confirmed", 1),
            ("payment.requested", 2),
            ("payment.created", 2),
            ("payment.succeeded", 1),
            ("order.paid", 1),
            ("order.expired", 1),
            ("sell_window.finalize_requested", 1),
            ("sell_window.finalized", 1),
            ("production.scheduled", 1),
            ("production.started", 1),
        ])
    );
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    assert_eq!(app.store.quota_check(&sw, &p).await.unwrap(), (1, 5, 1));
    let live = app.listing_agrees(&w).await;
    assert_eq!(
        (live.phase.as_str(), live.final_paid_qty, live.sold_qty),
        ("IN_PRODUCTION", Some(1), 1)
    );
    app.books_balance().await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_restart_between_a_reservation_and_its_retry_returns_the_first_answer() {
    let mut app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 10, Duration::from_secs(120), 60)
        .await;
    let first = app.reserve(&w, "ann", 2, "key-1").await.unwrap();
    app.restart_api().await;
    let again = reserve_retrying(&app.api, &w, "ann", 2, "key-1", Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(
        (again.id.as_str(), again.qty, again.status.as_str()),
        (first.id.as_str(), 2, "RESERVED")
    );
    // The key still belongs to that reservation.
    assert_eq!(
        app.reserve(&w, "ann", 3, "key-1").await.unwrap_err().code(),
        Code::InvalidArgument
    );
    assert_eq!(rows_of(&app, "orders", &w).await, 1);
    assert_eq!(app.event_counts(&w).await.get("order.reserved"), Some(&1));
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    assert_eq!(app.store.quota_check(&sw, &p).await.unwrap(), (2, 10, 2));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_process_killed_mid_reservations_answers_every_retry_with_its_first_order() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 1000, Duration::from_secs(120), 60)
        .await;
    // A second API process (`starter serve`), the one the customers use.
    let (grpc, http) = (free_port(), free_port());
    let mut api_proc = Proc::api(&app, grpc, http);
    let connect = || async {
        ApiClient::connect(
            &format!("http://127.0.0.1:{grpc}"),
            &format!("http://127.0.0.1:{http}"),
            &app.cfg.jwt_secret,
        )
        .await
        .ok()
    };
    let api = until("the API process", Duration::from_secs(30), connect).await;
    // 20 customers, each reserving again and again under new keys, until the process dies.
    let (customers, rounds) = (20, 10);
    let total = customers * rounds;
    let mut tasks = Vec::new();
    for c in 0..customers {
        let (api, w) = (api.clone(), w.clone());
        tasks.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for k in 0..rounds {
                let r = api
                    .customer()
                    .reserve_order(ApiClient::req(
                        pb::ReserveOrderRequest {
                            sell_window_id: w.id.clone(),
                            product_id: w.listings[0].product_id.clone(),
                            qty: 1,
                            idempotency_key: format!("key-{k}"),
                        },
                        &api.customer_token(&format!("c-{c}")),
                    ))
                    .await;
                match r {
                    Ok(o) => answered.push((k, o.into_inner())),
                    Err(_) => break,
                }
            }
            answered
        }));
    }
    // Crash it in the middle of the stream.
    let seen = Instant::now();
    while rows_of(&app, "orders", &w).await < (total / 3) as i64 {
        assert!(
            seen.elapsed() < HUNG,
            "hung: no third of the orders written"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    api_proc.kill().await;
    let orders_at_kill = rows_of(&app, "orders", &w).await;
    // Whatever the kill cut short committed whole or not at all: no order without its answer.
    let unanswered = app
        .count(
            "SELECT COUNT(*) FROM orders o WHERE o.sell_window_id = $1 AND NOT EXISTS \
             (SELECT 1 FROM idempotency_keys k WHERE k.response = 'reserved:' || o.id)",
            &w.id,
        )
        .await;
    assert_eq!(unanswered, 0, "orders committed without their first answer");
    let keys_at_kill = app
        .count(
            "SELECT COUNT(*) FROM idempotency_keys WHERE customer_id LIKE $1",
            "c-%",
        )
        .await;
    let mut before_crash = BTreeMap::new();
    for (c, t) in tasks.into_iter().enumerate() {
        for (k, o) in t.await.unwrap() {
            before_crash.insert((c, k), o);
        }
    }
    eprintln!(
        "at the crash: {orders_at_kill} orders, {keys_at_kill} stored answers, {} answers received",
        before_crash.len()
    );
    assert!(
        before_crash.len() < total,
        "the crash came after everything"
    );
    // The API comes back (a new process on the same ports); every customer retries every key.
    let _api_proc = Proc::api(&app, grpc, http);
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    for c in 0..customers {
        for k in 0..rounds {
            let o = reserve_retrying(
                &api,
                &w,
                &format!("c-{c}"),
                1,
                &format!("key-{k}"),
                Duration::from_secs(40),
            )
            .await
            .unwrap_or_else(|s| panic!("retry of c-{c}/key-{k}: {s:?}"));
            let expected = OrderId::for_request(
                &sw,
                &p,
                &CustomerId::parse(format!("c-{c}")).unwrap(),
                &format!("key-{k}"),
            );
            assert_eq!(o.id, expected.as_str(), "c-{c}/key-{k} got another order");
            if let Some(first) = before_crash.get(&(c, k)) {
                assert_eq!(
                    o.id, first.id,
                    "c-{c}/key-{k}: the retry changed the answer"
                );
                assert_eq!(o.status, first.status);
            }
        }
    }
    let customers = total;
    assert_eq!(rows_of(&app, "orders", &w).await, customers as i64);
    assert_eq!(
        app.event_counts(&w).await.get("order.reserved"),
        Some(&customers)
    );
    assert_eq!(
        app.store.quota_check(&sw, &p).await.unwrap(),
        (customers as u32, 1000, customers as u32)
    );
    assert_eq!(app.listing_agrees(&w).await.sold_qty, customers as u32);
    app.stop().await;
}

/// PostgreSQL only: role and database level outages while the workflow's activities run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn activities_retry_through_database_outages_and_the_flow_completes_exactly_once() {
    let app = spawn_app_with(no_worker()).await;
    let Some((admin_url, db)) = app.postgres() else {
        eprintln!(
            "skipped: the database outage test needs PostgreSQL (set SELLWINDOW_TEST_POSTGRES_URL)"
        );
        app.stop().await;
        return;
    };
    let admin = sqlx::AnyPool::connect(&admin_url)
        .await
        .expect("PostgreSQL admin connection");
    // The worker connects as a role of its own, so its connections can be refused alone.
    let role = format!("{db}_worker");
    sqlx::query(&format!(
        "CREATE ROLE {role} LOGIN SUPERUSER PASSWORD 'worker-pw'"
    ))
    .execute(&admin)
    .await
    .unwrap();
    let _restore = PgRestore {
        admin_url: admin_url.clone(),
        db: db.clone(),
        role: role.clone(),
    };
    let mut worker_cfg = app.cfg.clone();
    let (scheme, rest) = app.cfg.database_url.split_once("://").unwrap();
    let host_and_db = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    worker_cfg.database_url = format!("{scheme}://{role}:worker-pw@{host_and_db}");
    let mut worker = Proc::worker_with(&app, &worker_cfg);
    let block_worker = |on: bool| {
        let (admin, role) = (admin.clone(), role.clone());
        async move {
            let login = if on { "NOLOGIN" } else { "LOGIN" };
            sqlx::query(&format!("ALTER ROLE {role} {login}"))
                .execute(&admin)
                .await
                .unwrap();
            if on {
                sqlx::query(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
                ))
                .execute(&admin)
                .await
                .unwrap();
                // Termination is asynchronous: a backend may commit one more statement.
                for _ in 0..100 {
                    let left: i64 = sqlx::query_scalar(&format!(
                        "SELECT COUNT(*) FROM pg_stat_activity WHERE usename = '{role}'"
                    ))
                    .fetch_one(&admin)
                    .await
                    .unwrap();
                    if left == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    };
    let block_database = |on: bool| {
        let (admin, db) = (admin.clone(), db.clone());
        async move {
            sqlx::query(&format!(
                "ALTER DATABASE {db} WITH ALLOW_CONNECTIONS {}",
                !on
            ))
            .execute(&admin)
            .await
            .unwrap();
            if on {
                sqlx::query(&format!(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' AND pid <> pg_backend_pid()"
                ))
                .execute(&admin)
                .await
                .unwrap();
            }
        }
    };

    let product = app.product(700).await;
    let w = app
        .window(&product, 3, 10, Duration::from_secs(45), 120)
        .await;
    let close_at = sellwindow_api::convert::ms_of(w.close_at.as_ref().unwrap());
    let ann = app.reserve(&w, "ann", 1, "k").await.unwrap();
    let ben = app.reserve(&w, "ben", 2, "k").await.unwrap();

    // 1. The worker loses the database while the batch is confirmed.
    block_worker(true).await;
    let pending = tokio::spawn(confirm(app.api.clone(), w.clone()));
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(!pending.is_finished(), "confirmed without a database");
    assert!(!app.event_counts(&w).await.contains_key("batch.confirmed"));
    block_worker(false).await;
    let confirmed = tokio::time::timeout(Duration::from_secs(40), pending)
        .await
        .unwrap_or_else(|_| panic!("confirm never completed: {}", worker.log_tail(30)))
        .unwrap();
    assert_eq!(confirmed.payment_requested_orders, 2);

    // 2. The worker loses the database while the callbacks are applied (the API keeps it).
    let ann_pay = app.payment_of(&ann.id).await;
    let ben_pay = app.payment_of(&ben.id).await;
    block_worker(true).await;
    assert_eq!(app.pay(&ann_pay, "succeeded", "evt-ann").await, 200);
    assert_eq!(app.pay(&ben_pay, "succeeded", "evt-ben").await, 200);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(app.order(&ann.id).await.status, "PAYMENT_REQUESTED");
    block_worker(false).await;
    wait_status(&app, &ann.id, "PAID", Duration::from_secs(40)).await;
    wait_status(&app, &ben.id, "PAID", Duration::from_secs(40)).await;

    // 3. The whole database goes away as the window closes.
    let left = close_at - 1_000 - sellwindow_api::convert::now_ms().0;
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
    block_database(true).await;
    let health = reqwest::get(format!("{}/healthz", app.api.http_base))
        .await
        .unwrap()
        .status()
        .as_u16();
    assert_eq!(health, 503, "healthz while the database is away");
    assert_eq!(
        app.pay(&ann_pay, "succeeded", "evt-ann").await,
        503,
        "a callback while the database is away"
    );
    let left = close_at + 4_000 - sellwindow_api::convert::now_ms().0;
    if left > 0 {
        tokio::time::sleep(Duration::from_millis(left as u64)).await;
    }
    block_database(false).await;
    wait_event(&app, &w, "production.started", Duration::from_secs(60)).await;
    assert_produced_once(&app, &w, &[&ann, &ben], 3, false).await;
    assert!(worker.running(), "{}", worker.log_tail(30));
    worker.kill().await;
    app.stop().await;
}

/// Whatever happens in the test, the database accepts connections again and the worker's role
/// is gone afterwards.
struct PgRestore {
    admin_url: String,
    db: String,
    role: String,
}

impl Drop for PgRestore {
    fn drop(&mut self) {
        let (url, db, role) = (self.admin_url.clone(), self.db.clone(), self.role.clone());
        let cleanup = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let Ok(admin) = sqlx::AnyPool::connect(&url).await else {
                    return;
                };
                for sql in [
                    format!("ALTER DATABASE {db} WITH ALLOW_CONNECTIONS true"),
                    format!(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'"
                    ),
                    format!("DROP ROLE IF EXISTS {role}"),
                ] {
                    let _ = sqlx::query(&sql).execute(&admin).await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_reservers_on_the_last_fifty_units_get_exactly_fifty_orders() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 10, 80, Duration::from_secs(120), 60)
        .await;
    for i in 0..6 {
        app.reserve(&w, &format!("early-{i}"), 5, "k")
            .await
            .unwrap();
    }
    let race = |i: usize| {
        let (api, w) = (app.api.clone(), w.clone());
        async move {
            api.customer()
                .reserve_order(ApiClient::req(
                    pb::ReserveOrderRequest {
                        sell_window_id: w.id.clone(),
                        product_id: w.listings[0].product_id.clone(),
                        qty: 1,
                        idempotency_key: format!("race-{i}"),
                    },
                    &api.customer_token(&format!("racer-{i}")),
                ))
                .await
                .map(|r| r.into_inner())
        }
    };
    let tasks: Vec<_> = (0..200).map(|i| tokio::spawn(race(i))).collect();
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            Ok(o) => winners.push((i, o)),
            Err(s) if s.code() == Code::ResourceExhausted => losers.push(i),
            Err(s) => panic!("racer {i} got neither an order nor RESOURCE_EXHAUSTED: {s:?}"),
        }
    }
    assert_eq!((winners.len(), losers.len()), (50, 150));
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    // Quota row == orders holding quota == the workflow's figures.
    assert_eq!(app.store.quota_check(&sw, &p).await.unwrap(), (80, 80, 80));
    let sum: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(qty), 0) AS BIGINT) FROM orders WHERE sell_window_id = $1",
    )
    .bind(&w.id)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(sum, 80);
    assert_eq!(rows_of(&app, "orders", &w).await, 56);
    let live = app.listing_agrees(&w).await;
    assert_eq!(
        (live.sold_qty, live.reserved_qty, live.quota_status.as_str()),
        (80, 80, "CLOSED")
    );
    let ev = app.event_counts(&w).await;
    assert_eq!(
        ev,
        counts(&[
            ("sell_window.created", 1),
            ("order.reserved", 56),
            ("quota.closed", 1),
            ("threshold.reached", 1),
        ])
    );
    // Each winner's order is theirs; no loser has one; every retry returns its first answer.
    for (i, o) in &winners {
        let expected = OrderId::for_request(
            &sw,
            &p,
            &CustomerId::parse(format!("racer-{i}")).unwrap(),
            &format!("race-{i}"),
        );
        assert_eq!(o.id, expected.as_str());
        assert_eq!(race(*i).await.unwrap().id, o.id);
    }
    for i in &losers {
        let id = OrderId::for_request(
            &sw,
            &p,
            &CustomerId::parse(format!("racer-{i}")).unwrap(),
            &format!("race-{i}"),
        );
        assert!(app.store.order(&id).await.unwrap().is_none(), "loser {i}");
        assert_eq!(
            race(*i).await.unwrap_err().code(),
            Code::ResourceExhausted,
            "retry of loser {i}"
        );
    }
    assert_eq!(app.store.quota_check(&sw, &p).await.unwrap(), (80, 80, 80));
    app.stop().await;
}

/// Reservations never wait on the engine: with no worker at all they commit (the quota row
/// decides them, the threshold is announced), and once a worker is back the listing's
/// workflow catches up with the row and takes the confirm.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_no_worker_reservations_commit_and_the_workflow_catches_up_when_one_is_back() {
    let app = spawn_app_with(AppOptions {
        rpc_deadline: Some(Duration::from_secs(2)),
        no_in_process_worker: true,
        ..AppOptions::default()
    })
    .await;
    let product = app.product(300).await;
    let w = app
        .window(&product, 3, 10, Duration::from_secs(60), 120)
        .await;
    let mut orders = Vec::new();
    for c in ["ann", "ben", "cat"] {
        orders.push(
            app.reserve(&w, c, 1, "k-1")
                .await
                .expect("reserved with no worker"),
        );
    }
    let again = app.reserve(&w, "ann", 1, "k-1").await.unwrap();
    assert_eq!(again.id, orders[0].id, "a retry gets the first answer");
    let ev = app.event_counts(&w).await;
    assert_eq!(ev.get("order.reserved"), Some(&3), "{ev:?}");
    assert_eq!(ev.get("threshold.reached"), Some(&1), "{ev:?}");
    // The confirm needs the workflow: with no worker it is not taken, and the caller is told
    // in time to retry.
    let e = app.confirm(&w).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e:?}");
    assert!(!app.event_counts(&w).await.contains_key("batch.confirmed"));
    let mut worker = Proc::worker(&app);
    let live = app.listing_agrees(&w).await;
    assert_eq!((live.sold_qty, live.reserved_qty), (3, 3));
    assert_eq!(live.threshold_status.as_str(), "REACHED");
    let confirmed = until("the confirm", Duration::from_secs(60), || async {
        app.confirm(&w).await.ok()
    })
    .await;
    assert_eq!(confirmed.status, "CONFIRMED");
    // (The update the first call left at the server may be the one that confirmed: then
    // this answer is the repeated confirm's, which counts no orders of its own.)
    for o in &orders {
        app.wait_order_status(&o.id, "PAYMENT_REQUESTED").await;
    }
    worker.kill().await;
    app.stop().await;
}
