//! One hot listing past the server's per-run limits: more than 2,000 updates and 10,000
//! orders, history past the size at which the server suggests continuing as new, a flood of
//! payment callbacks. Nothing may be refused, the workflow must have continued as new, and
//! every figure and the event log must stay exact.

use crate::helpers::{AppOptions, HUNG, spawn_app, spawn_app_with};
use sellwindow_api::pb;
use sellwindow_domain::{ProductId, SellWindowId};
use sellwindow_testkit::ApiClient;
use std::time::Duration;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hot_listing_continues_as_new_past_the_update_cap_and_keeps_every_figure_exact() {
    let app = spawn_app().await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 10, 20_000, Duration::from_secs(900), 3600)
        .await;
    let reserve = |api: ApiClient, sw: String, p: String, customer: String, key: String| async move {
        api.customer()
            .reserve_order(ApiClient::req(
                pb::ReserveOrderRequest {
                    sell_window_id: sw,
                    product_id: p,
                    qty: 1,
                    idempotency_key: key,
                },
                &api.customer_token(&customer),
            ))
            .await
    };
    // 2,100 reservations one after another: one update each, past the 2,000-per-run cap.
    let sequential = 2_100;
    for i in 0..sequential {
        reserve(
            app.api.clone(),
            w.id.clone(),
            product.id.clone(),
            format!("s-{}", i % 50),
            format!("seq-{i}"),
        )
        .await
        .unwrap_or_else(|e| panic!("reservation {i} refused: {e:?}"));
    }
    // 8,000 more from 200 concurrent customers, coalesced into batches.
    let mut tasks = Vec::new();
    for c in 0..200 {
        let (api, sw, p) = (app.api.clone(), w.id.clone(), product.id.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..40 {
                reserve(
                    api.clone(),
                    sw.clone(),
                    p.clone(),
                    format!("hot-{c}"),
                    format!("hot-{k}"),
                )
                .await
                .unwrap_or_else(|e| panic!("hot reservation {c}/{k} refused: {e:?}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = sequential + 8_000;
    let live = app.listing_agrees(&w).await;
    assert_eq!((live.sold_qty, live.reserved_qty), (total, total));
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    assert_eq!(
        app.store.quota_check(&sw, &p).await.unwrap(),
        (total, 20_000, total)
    );
    let reserved: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM events WHERE sell_window_id = $1 AND name = 'order.reserved'",
    )
    .bind(&w.id)
    .fetch_one(app.store.pool())
    .await
    .unwrap();
    assert_eq!(reserved, i64::from(total));
    // The current run was continued from an earlier one.
    let handle = app
        .temporal
        .get_workflow_handle::<sellwindow_workflows::ListingWorkflow>(&w.listings[0].workflow_id);
    let events = handle
        .fetch_history(Default::default())
        .into_events()
        .await
        .unwrap();
    let continued = match events.first().and_then(|e| e.attributes.as_ref()) {
        Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
            !a.continued_execution_run_id.is_empty()
        }
        _ => false,
    };
    assert!(continued, "the listing never continued as new");
    // What a run hands over does not grow with the listing's orders.
    let started = match events.first().and_then(|e| e.attributes.as_ref()) {
        Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
            a.input.as_ref().map_or(0, |p| {
                p.payloads.iter().map(|x| x.data.len()).sum::<usize>()
            })
        }
        _ => 0,
    };
    assert!(started < 8_000, "a hand-over of {started} bytes");
    app.books_balance().await;
    app.record_history(&w, "handed_over_past_the_update_cap")
        .await;
    app.stop().await;
}

/// A flood of payment callbacks on one listing. Callbacks grow history, so a run hands over
/// during the flood (here after a few hundred events); results that arrive while the run
/// hands over are carried to the next run. Each result must be applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_flood_of_payment_callbacks_still_hands_over_and_applies_each_result_once() {
    let app = spawn_app_with(AppOptions {
        tuning: sellwindow_workflows::Tuning {
            handover_events: 400,
            ..Default::default()
        },
        ..AppOptions::default()
    })
    .await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 5_000, Duration::from_secs(900), 3600)
        .await;
    let n: usize = 1_200;
    let mut tasks = Vec::new();
    for c in 0..100 {
        let (api, sw, p) = (app.api.clone(), w.id.clone(), product.id.clone());
        tasks.push(tokio::spawn(async move {
            for k in 0..n / 100 {
                api.customer()
                    .reserve_order(ApiClient::req(
                        pb::ReserveOrderRequest {
                            sell_window_id: sw.clone(),
                            product_id: p.clone(),
                            qty: 1,
                            idempotency_key: format!("k-{k}"),
                        },
                        &api.customer_token(&format!("payer-{c}")),
                    ))
                    .await
                    .unwrap_or_else(|e| panic!("reservation {c}/{k} refused: {e:?}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    app.confirm(&w).await.unwrap();
    let payments = |status: &'static str| {
        let (pool, sw) = (app.store.pool().clone(), w.id.clone());
        async move {
            sqlx::query_as::<_, (String, String)>(
                "SELECT id, order_id FROM payments WHERE sell_window_id = $1 AND status = $2",
            )
            .bind(sw)
            .bind(status)
            .fetch_all(&pool)
            .await
            .unwrap()
        }
    };
    let deadline = std::time::Instant::now() + HUNG;
    let open = loop {
        let open = payments("INIT").await;
        if open.len() == n {
            break open;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hung: {} of {n} payments opened",
            open.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // 16 senders at once, every callback answered 200.
    let open = std::sync::Arc::new(open);
    let mut senders = Vec::new();
    for s in 0..16 {
        let (provider, open) = (app.provider.clone(), open.clone());
        senders.push(tokio::spawn(async move {
            for (payment, order) in open.iter().skip(s).step_by(16) {
                let event = format!("evt-{payment}");
                let status = provider.report(payment, order, "succeeded", &event).await;
                assert_eq!(status, 200, "callback for {payment}");
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    let deadline = std::time::Instant::now() + HUNG;
    loop {
        let live = app.workflow_figures(&w).await;
        let paid = payments("SUCCEEDED").await.len();
        if live.paid_qty as usize == n && paid == n {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "hung: paid: workflow {} · payments {paid} of {n}",
            live.paid_qty
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let events = app.event_counts(&w).await;
    assert_eq!(events.get("order.paid").copied(), Some(n));
    assert_eq!(events.get("payment.succeeded").copied(), Some(n));
    // Fewer than 200 messages came before the callbacks: only they can have moved the run.
    let handle = app
        .temporal
        .get_workflow_handle::<sellwindow_workflows::ListingWorkflow>(&w.listings[0].workflow_id);
    let history = handle
        .fetch_history(Default::default())
        .into_events()
        .await
        .unwrap();
    assert!(
        matches!(history.first().and_then(|e| e.attributes.as_ref()),
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) if !a.continued_execution_run_id.is_empty()),
        "the listing never continued as new during the flood"
    );
    app.stop().await;
}

/// Large coalesced batches grow history by bytes long before a run takes 1,000 messages: the
/// run must follow the server's suggestion (history past a size) and hand over, or a hot
/// listing would reach the server's 50 MB limit and be terminated. The threshold is lowered
/// here so a test-sized run crosses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listing_hands_over_when_its_history_grows_past_the_suggested_size() {
    const SUGGEST_AT: u64 = 150_000;
    let app = spawn_app_with(AppOptions {
        suggest_continue_as_new_bytes: Some(SUGGEST_AT),
        ..AppOptions::default()
    })
    .await;
    let product = app.product(100).await;
    let w = app
        .window(&product, 1, 5_000, Duration::from_secs(900), 3600)
        .await;
    let total: u32 = 450;
    for i in 0..total {
        app.reserve(&w, &format!("c-{}", i % 40), 1, &format!("k-{i}"))
            .await
            .unwrap_or_else(|e| panic!("reservation {i} refused: {e:?}"));
    }
    let live = app.listing_agrees(&w).await;
    assert_eq!((live.sold_qty, live.reserved_qty), (total, total));
    let sw = SellWindowId::parse(w.id.clone()).unwrap();
    let p = ProductId::parse(product.id.clone()).unwrap();
    assert_eq!(
        app.store.quota_check(&sw, &p).await.unwrap(),
        (total, 5_000, total)
    );
    assert_eq!(
        app.event_counts(&w).await.get("order.reserved").copied(),
        Some(total as usize)
    );
    // Every run but the current one handed over, by size, not by the update cap.
    let workflow_id = w.listings[0].workflow_id.clone();
    let mut runs = Vec::new();
    let mut listed = app
        .temporal
        .list_workflows(format!("WorkflowId = '{workflow_id}'"), Default::default());
    while let Some(r) = futures::StreamExt::next(&mut listed).await {
        runs.push(r.unwrap().run_id().to_string());
    }
    assert!(runs.len() >= 3, "{} run(s)", runs.len());
    let mut handed_over = 0;
    for run in &runs {
        let info = temporalio_client::WorkflowExecutionInfo::builder()
            .namespace("default".to_string())
            .workflow_id(workflow_id.clone())
            .run_id(run.clone())
            .build();
        let h: temporalio_client::WorkflowHandle<
            temporalio_client::Client,
            sellwindow_workflows::ListingWorkflow,
        > = temporalio_client::WorkflowHandle::new(app.temporal.clone(), info);
        let events = h
            .fetch_history(Default::default())
            .into_events()
            .await
            .unwrap();
        let continued = events.iter().any(|e| {
            matches!(
                e.attributes,
                Some(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(
                    _
                ))
            )
        });
        if !continued {
            continue;
        }
        handed_over += 1;
        let updates = events
            .iter()
            .filter(|e| {
                matches!(
                    e.attributes,
                    Some(Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(
                        _
                    ))
                )
            })
            .count() as u32;
        assert!(
            updates < sellwindow_workflows::Tuning::default().handover_updates,
            "a run handed over after {updates} updates"
        );
        let bytes = h
            .describe(Default::default())
            .await
            .unwrap()
            .raw()
            .workflow_execution_info
            .as_ref()
            .map_or(0, |i| i.history_size_bytes);
        assert!(
            (bytes as u64) < 2 * SUGGEST_AT,
            "a run grew to {bytes} bytes of history"
        );
    }
    assert!(handed_over >= 2, "{handed_over} hand-over(s)");
    app.record_history(&w, "handed_over_by_size").await;
    app.stop().await;
}
