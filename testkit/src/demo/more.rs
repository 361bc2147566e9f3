//! The demo's other windows: one that never forms, and one with expiries, a retry and a late
//! payment refunded.

use super::{ApiClient, create_window, order_until, print_events, reserve, work_order};
use sellwindow_api::pb;
use std::time::Duration;

/// A window whose threshold is never reached: it fails at close and every order is cancelled.
pub async fn run_failing(api: &ApiClient) -> anyhow::Result<()> {
    println!("\n== A window that does not form (threshold 5, two customers, closes in 8 s)");
    let (w, p) = create_window(api, "Failing window", 5, 10, 8_000, 60).await?;
    let a = reserve(api, &w, &p, "dave", 1).await?;
    reserve(api, &w, &p, "erin", 1).await?;
    let a = order_until(api, "dave", &a.id, |o| o.status == "CANCELLED").await?;
    println!("     dave's order {} is {}", a.id, a.status);
    let notes = api
        .customer()
        .list_my_notifications(ApiClient::req(
            pb::ListMyNotificationsRequest::default(),
            &api.customer_token("dave"),
        ))
        .await?
        .into_inner();
    if let Some(n) = notes.notifications.last() {
        println!("     → dave: {}", n.message);
    }
    print_events(api, &w).await
}

/// Expiry, quota reopening, a failed payment with a retry, a late payment refunded, shipment.
pub async fn run_expiries_and_refunds(api: &ApiClient) -> anyhow::Result<()> {
    println!("\n== Expiries, a retry and a refund (cap 2, 3 s to pay, closes in 25 s)");
    let (w, p) = create_window(api, "Expiry window", 1, 2, 25_000, 3).await?;
    let f = frank_does_not_pay_in_time(api, &w, &p).await?;
    grace_pays_after_a_retry(api, &w, &p).await?;
    // The sandbox no longer offers frank's expired payment: his provider reports it directly.
    api.provider_reports(&f.payment_id, &f.id, "succeeded")
        .await?;
    println!("     frank's provider reports his payment after all: it is refunded, never counted");
    produce_and_ship(api, &w).await?;
    let notes = api
        .customer()
        .list_my_notifications(ApiClient::req(
            pb::ListMyNotificationsRequest::default(),
            &api.customer_token("frank"),
        ))
        .await?
        .into_inner();
    for n in &notes.notifications {
        println!("     → frank: {}", n.message);
    }
    print_events(api, &w).await
}

/// Frank reserves the whole cap and the batch is confirmed, but his payment expires, which
/// reopens the quota; his expired order.
async fn frank_does_not_pay_in_time(
    api: &ApiClient,
    w: &pb::SellWindow,
    p: &str,
) -> anyhow::Result<pb::Order> {
    let f = reserve(api, w, p, "frank", 2).await?;
    println!(
        "     frank reserves 2: the quota is full ({})",
        api.sell_window(&w.id).await?.listings[0].quota_status
    );
    api.admin()
        .confirm_batch(ApiClient::req(
            pb::ConfirmBatchRequest {
                sell_window_id: w.id.clone(),
                product_id: p.into(),
            },
            &api.admin_token(),
        ))
        .await?;
    let f = order_until(api, "frank", &f.id, |o| !o.payment_id.is_empty()).await?;
    let f = order_until(api, "frank", &f.id, |o| o.status == "EXPIRED").await?;
    println!(
        "     frank did not pay in time: order {} (quota {})",
        f.status,
        api.sell_window(&w.id).await?.listings[0].quota_status
    );
    Ok(f)
}

/// Grace reserves the freed units; her card is declined, and she pays with a new link.
async fn grace_pays_after_a_retry(
    api: &ApiClient,
    w: &pb::SellWindow,
    p: &str,
) -> anyhow::Result<()> {
    let g = reserve(api, w, p, "grace", 2).await?;
    println!("     grace reserves the freed units: {}", g.status);
    let g = order_until(api, "grace", &g.id, |o| !o.payment_id.is_empty()).await?;
    api.sandbox(&g.payment_id, "failed").await?;
    order_until(api, "grace", &g.id, |o| o.payment_failed_count == 1).await?;
    let g = api
        .customer()
        .retry_payment(ApiClient::req(
            pb::RetryPaymentRequest {
                order_id: g.id.clone(),
            },
            &api.customer_token("grace"),
        ))
        .await?
        .into_inner();
    println!(
        "     grace's card was declined; she retries with a new link {}",
        g.pay_url
    );
    api.sandbox(&g.payment_id, "succeeded").await?;
    order_until(api, "grace", &g.id, |o| o.status == "PAID").await?;
    println!("     grace paid");
    Ok(())
}

/// The window closes into production; every work step is completed, which ships the orders.
async fn produce_and_ship(api: &ApiClient, w: &pb::SellWindow) -> anyhow::Result<()> {
    let in_production = api
        .wait_for(&w.id, Duration::from_secs(60), |w| {
            w.listings[0].phase == "IN_PRODUCTION"
        })
        .await?;
    let wo = work_order(api, w).await?;
    println!(
        "     closed: {} paid, work order {} for {} units",
        in_production.listings[0].final_paid_qty, wo.id, wo.product_qty
    );
    for s in &wo.steps {
        api.admin()
            .complete_work_step(ApiClient::req(
                pb::CompleteWorkStepRequest {
                    work_order_id: wo.id.clone(),
                    step_id: s.id.clone(),
                },
                &api.admin_token(),
            ))
            .await?;
    }
    api.wait_for(&w.id, Duration::from_secs(15), |w| {
        w.listings[0].phase == "SHIPPED"
    })
    .await?;
    Ok(())
}
