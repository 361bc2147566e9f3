//! The demo that plays the seed's main flow through the API client: the same calls a shop's
//! admin and customers make, with payments through the payment sandbox.

pub use crate::client::ApiClient;
use sellwindow_api::pb;
use std::time::Duration;

mod more;
pub use more::{run_expiries_and_refunds, run_failing};

/// The main flow's customers, each reserving one unit.
const CUSTOMERS: [&str; 3] = ["alice", "bob", "carol"];

fn step(n: u32, text: &str) {
    println!("\n[{n:>2}] {text}");
}

/// Plays the main flow end to end and prints each step.
pub async fn run(api: &ApiClient, ui_base: &str, namespace: &str) -> anyhow::Result<()> {
    let (product, window) = create_product_and_window(api).await?;
    let workflow_id = window.listings[0].workflow_id.clone();
    let workflow_link = temporal_ui_link(ui_base, namespace, &workflow_id);
    println!("     sell window {}; workflow {workflow_id}", window.id);
    println!("     Temporal UI: {workflow_link}");
    let orders = reserve_one_each(api, &window, &product).await?;
    show_threshold_reached(api, &window).await?;
    confirm_the_batch(api, &window, &product).await?;
    pay_through_the_sandbox(api, &window, &orders).await?;
    let wo = wait_for_production(api, &window).await?;
    complete_the_work_steps(api, &window, &wo).await?;
    print_the_event_log(api, &window).await?;
    println!("\nDone. See the workflow in the Temporal UI: {workflow_link}");
    Ok(())
}

/// Where the Temporal UI shows a workflow.
fn temporal_ui_link(ui_base: &str, namespace: &str, workflow_id: &str) -> String {
    format!(
        "{}/namespaces/{namespace}/workflows/{}",
        ui_base.trim_end_matches('/'),
        workflow_id.replace('/', "%2F")
    )
}

/// Step 1: the admin creates a product and a window selling it.
async fn create_product_and_window(
    api: &ApiClient,
) -> anyhow::Result<(pb::Product, pb::SellWindow)> {
    let admin = api.admin_token();
    step(
        1,
        "Admin creates a product and a sell window (threshold 3, cap 5, closes in 20 s)",
    );
    let product = api
        .admin()
        .create_product(ApiClient::req(
            pb::CreateProductRequest {
                id: String::new(),
                name: "Hand-made ceramic mug".into(),
                unit_price: Some(pb::Money {
                    currency: "TWD".into(),
                    amount_minor: 45000,
                }),
                work_steps: vec![],
            },
            &admin,
        ))
        .await?
        .into_inner();
    println!(
        "     product {} ({}), work steps: {}",
        product.id,
        product.name,
        product.work_steps.join(" → ")
    );
    let close_at = sellwindow_api::convert::now_ms().0 + 20_000;
    let window = api
        .admin()
        .create_sell_window(ApiClient::req(
            pb::CreateSellWindowRequest {
                name: "Demo window".into(),
                close_at: Some(sellwindow_api::convert::ts(close_at)),
                listings: vec![pb::ListingInput {
                    product_id: product.id.clone(),
                    min_qty: 3,
                    max_qty: 5,
                    payment_window: Some(prost_types::Duration {
                        seconds: 15,
                        nanos: 0,
                    }),
                    per_customer_limit: 2,
                    min_paid_policy: 0,
                }],
                request_id: format!("demo-{close_at}"),
            },
            &admin,
        ))
        .await?
        .into_inner();
    Ok((product, window))
}

/// Step 2: each customer reserves one unit; their orders, by customer.
async fn reserve_one_each(
    api: &ApiClient,
    window: &pb::SellWindow,
    product: &pb::Product,
) -> anyhow::Result<Vec<(&'static str, pb::Order)>> {
    step(2, "Customers reserve one mug each (no payment yet)");
    let mut orders = Vec::new();
    for c in CUSTOMERS {
        let o = api
            .customer()
            .reserve_order(ApiClient::req(
                pb::ReserveOrderRequest {
                    sell_window_id: window.id.clone(),
                    product_id: product.id.clone(),
                    qty: 1,
                    idempotency_key: format!("{c}-1"),
                },
                &api.customer_token(c),
            ))
            .await?
            .into_inner();
        println!("     {c}: order {} {}", o.id, o.status);
        orders.push((c, o));
    }
    Ok(orders)
}

/// Step 3: the threshold is reached, and the admin told.
async fn show_threshold_reached(api: &ApiClient, window: &pb::SellWindow) -> anyhow::Result<()> {
    step(3, "Threshold reached: the admin is notified");
    let w = api
        .wait_for(&window.id, Duration::from_secs(10), |w| {
            w.listings[0].threshold_status == "REACHED"
        })
        .await?;
    let l = &w.listings[0];
    println!(
        "     sold {}/{} · reserved {} · threshold {}",
        l.sold_qty, l.max_qty, l.reserved_qty, l.threshold_status
    );
    let notes = api
        .admin()
        .list_notifications(ApiClient::req(
            pb::ListNotificationsRequest {
                sell_window_id: window.id.clone(),
                ..Default::default()
            },
            &api.admin_token(),
        ))
        .await?
        .into_inner();
    for n in notes
        .notifications
        .iter()
        .filter(|n| n.recipient_kind == "ADMIN")
    {
        println!("     → admin: {}", n.message);
    }
    Ok(())
}

/// Step 4: the admin confirms the batch, which asks every reserving customer to pay.
async fn confirm_the_batch(
    api: &ApiClient,
    window: &pb::SellWindow,
    product: &pb::Product,
) -> anyhow::Result<()> {
    step(
        4,
        "Admin confirms the batch: every reserving customer is asked to pay",
    );
    let confirmed = api
        .admin()
        .confirm_batch(ApiClient::req(
            pb::ConfirmBatchRequest {
                sell_window_id: window.id.clone(),
                product_id: product.id.clone(),
            },
            &api.admin_token(),
        ))
        .await?
        .into_inner();
    println!(
        "     batch {} {} · {} payment requests",
        confirmed.batch_id, confirmed.status, confirmed.payment_requested_orders
    );
    Ok(())
}

/// Step 5: every customer pays at their pay link, through the sandbox.
async fn pay_through_the_sandbox(
    api: &ApiClient,
    window: &pb::SellWindow,
    orders: &[(&str, pb::Order)],
) -> anyhow::Result<()> {
    step(
        5,
        "Customers pay through the payment sandbox (signed provider callbacks)",
    );
    for (c, o) in orders {
        let got = order_with_pay_link(api, c, o).await?;
        println!("     {c}: pay link {}", got.pay_url);
        api.sandbox(&got.payment_id, "succeeded").await?;
    }
    let w = api
        .wait_for(&window.id, Duration::from_secs(15), |w| {
            w.listings[0].paid_qty == 3
        })
        .await?;
    println!(
        "     paid {} · reserved {}",
        w.listings[0].paid_qty, w.listings[0].reserved_qty
    );
    Ok(())
}

/// The customer's order once it has a payment to pay (waiting up to 10 s for it).
async fn order_with_pay_link(
    api: &ApiClient,
    customer: &str,
    order: &pb::Order,
) -> anyhow::Result<pb::Order> {
    let token = api.customer_token(customer);
    for _ in 0..50 {
        let got = api
            .customer()
            .get_order(ApiClient::req(
                pb::GetOrderRequest {
                    order_id: order.id.clone(),
                },
                &token,
            ))
            .await?
            .into_inner();
        if !got.payment_id.is_empty() {
            return Ok(got);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(anyhow::anyhow!("no payment link for {}", order.id))
}

/// Step 6: the window closes and production is scheduled; its work order.
async fn wait_for_production(
    api: &ApiClient,
    window: &pb::SellWindow,
) -> anyhow::Result<pb::WorkOrder> {
    step(
        6,
        "Waiting for close_at: the paid quantity is frozen and production is scheduled",
    );
    let w = api
        .wait_for(&window.id, Duration::from_secs(60), |w| {
            w.listings[0].phase == "IN_PRODUCTION"
        })
        .await?;
    println!(
        "     final paid quantity {} · phase {}",
        w.listings[0].final_paid_qty, w.listings[0].phase
    );
    let wo = work_order(api, window).await?;
    println!(
        "     work order {} {} for {} units",
        wo.id, wo.status, wo.product_qty
    );
    Ok(wo)
}

/// Step 7: operators complete every work step; the last ships the orders, and the customers
/// are told.
async fn complete_the_work_steps(
    api: &ApiClient,
    window: &pb::SellWindow,
    wo: &pb::WorkOrder,
) -> anyhow::Result<()> {
    step(
        7,
        "Operators complete the work steps; the last one ships every paid order",
    );
    for s in &wo.steps {
        let r = api
            .admin()
            .complete_work_step(ApiClient::req(
                pb::CompleteWorkStepRequest {
                    work_order_id: wo.id.clone(),
                    step_id: s.id.clone(),
                },
                &api.admin_token(),
            ))
            .await?
            .into_inner();
        println!(
            "     step {} \"{}\" done{}",
            s.position,
            s.name,
            if r.production_completed {
                " → production completed"
            } else {
                ""
            }
        );
    }
    api.wait_for(&window.id, Duration::from_secs(15), |w| {
        w.listings[0].phase == "SHIPPED"
    })
    .await?;
    let notes = api
        .customer()
        .list_my_notifications(ApiClient::req(
            pb::ListMyNotificationsRequest::default(),
            &api.customer_token("alice"),
        ))
        .await?
        .into_inner();
    for n in &notes.notifications {
        println!("     → alice: {}", n.message);
    }
    Ok(())
}

/// Step 8: the window's business events, in order.
async fn print_the_event_log(api: &ApiClient, window: &pb::SellWindow) -> anyhow::Result<()> {
    step(8, "The business event log (seed event names, in order)");
    let events = api
        .admin()
        .list_events(ApiClient::req(
            pb::ListEventsRequest {
                sell_window_id: window.id.clone(),
                after_seq: 0,
                ..Default::default()
            },
            &api.admin_token(),
        ))
        .await?
        .into_inner();
    for e in &events.events {
        println!(
            "     {:>4} {}{}",
            e.seq,
            e.name,
            if e.order_id.is_empty() {
                String::new()
            } else {
                format!(" ({})", e.order_id)
            }
        );
    }
    Ok(())
}

async fn create_window(
    api: &ApiClient,
    name: &str,
    min: u32,
    max: u32,
    close_in_ms: i64,
    pay_secs: i64,
) -> anyhow::Result<(pb::SellWindow, String)> {
    let admin = api.admin_token();
    let product = api
        .admin()
        .create_product(ApiClient::req(
            pb::CreateProductRequest {
                id: String::new(),
                name: format!("{name} product"),
                unit_price: Some(pb::Money {
                    currency: "TWD".into(),
                    amount_minor: 30000,
                }),
                work_steps: vec!["produce".into(), "pack".into()],
            },
            &admin,
        ))
        .await?
        .into_inner();
    let close_at = sellwindow_api::convert::now_ms().0 + close_in_ms;
    let window = api
        .admin()
        .create_sell_window(ApiClient::req(
            pb::CreateSellWindowRequest {
                name: name.into(),
                close_at: Some(sellwindow_api::convert::ts(close_at)),
                listings: vec![pb::ListingInput {
                    product_id: product.id.clone(),
                    min_qty: min,
                    max_qty: max,
                    payment_window: Some(prost_types::Duration {
                        seconds: pay_secs,
                        nanos: 0,
                    }),
                    per_customer_limit: 0,
                    min_paid_policy: 0,
                }],
                request_id: format!("{name}-{close_at}"),
            },
            &admin,
        ))
        .await?
        .into_inner();
    Ok((window, product.id))
}

async fn reserve(
    api: &ApiClient,
    w: &pb::SellWindow,
    product: &str,
    customer: &str,
    qty: u32,
) -> anyhow::Result<pb::Order> {
    Ok(api
        .customer()
        .reserve_order(ApiClient::req(
            pb::ReserveOrderRequest {
                sell_window_id: w.id.clone(),
                product_id: product.into(),
                qty,
                idempotency_key: format!("{customer}-{}", w.id),
            },
            &api.customer_token(customer),
        ))
        .await?
        .into_inner())
}

async fn order(api: &ApiClient, customer: &str, id: &str) -> anyhow::Result<pb::Order> {
    Ok(api
        .customer()
        .get_order(ApiClient::req(
            pb::GetOrderRequest {
                order_id: id.into(),
            },
            &api.customer_token(customer),
        ))
        .await?
        .into_inner())
}

/// Polls a customer's order until `check` holds.
async fn order_until(
    api: &ApiClient,
    customer: &str,
    id: &str,
    check: impl Fn(&pb::Order) -> bool,
) -> anyhow::Result<pb::Order> {
    for _ in 0..300 {
        let o = order(api, customer, id).await?;
        if check(&o) {
            return Ok(o);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("order {id} did not reach the expected state")
}

/// The window's (first) work order.
async fn work_order(api: &ApiClient, w: &pb::SellWindow) -> anyhow::Result<pb::WorkOrder> {
    let wos = api
        .admin()
        .list_work_orders(ApiClient::req(
            pb::ListWorkOrdersRequest {
                sell_window_id: w.id.clone(),
                ..Default::default()
            },
            &api.admin_token(),
        ))
        .await?
        .into_inner();
    wos.work_orders
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no work order for {}", w.id))
}

async fn print_events(api: &ApiClient, w: &pb::SellWindow) -> anyhow::Result<()> {
    let events = api
        .admin()
        .list_events(ApiClient::req(
            pb::ListEventsRequest {
                sell_window_id: w.id.clone(),
                after_seq: 0,
                ..Default::default()
            },
            &api.admin_token(),
        ))
        .await?
        .into_inner();
    let names: Vec<&str> = events.events.iter().map(|e| e.name.as_str()).collect();
    println!("     events: {}", names.join(" → "));
    Ok(())
}
