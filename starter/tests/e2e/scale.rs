//! One hot listing past the server's per-run limits: more than 2,000 updates and 10,000
//! orders. Nothing may be refused, the workflow must have continued as new, and every figure
//! and the event log must stay exact.

use crate::helpers::spawn_app;
use sellwindow_domain::{ProductId, SellWindowId};
use sellwindow_starter::demo::ApiClient;
use sellwindow_starter::pb;
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
    let live = app.api.sell_window(&w.id).await.unwrap().listings.remove(0);
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
        .get_workflow_handle::<sellwindow_workflows::SellWindowWorkflow>(
            &w.listings[0].workflow_id,
        );
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
    app.stop().await;
}
