//! The public contract as an outside client sees it: paged lists (Google AIP-158) and gRPC
//! server reflection in both of its versions.

use crate::helpers::{AppOptions, Terms, TestApp, spawn_app, spawn_app_with};
use sellwindow_api::pb;
use sellwindow_testkit::ApiClient;
use std::collections::BTreeSet;
use tonic::Code;

const ORDERS: u32 = 250;

async fn orders_page(
    app: &TestApp,
    w: &pb::SellWindow,
    page_size: i32,
    page_token: &str,
    status: &str,
) -> Result<pb::ListOrdersResponse, tonic::Status> {
    app.api
        .admin()
        .list_orders(ApiClient::req(
            pb::ListOrdersRequest {
                sell_window_id: w.id.clone(),
                page_size,
                page_token: page_token.into(),
                status: status.into(),
                ..Default::default()
            },
            &app.admin(),
        ))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lists_page_through_every_row_once_and_refuse_tokens_from_other_queries() {
    let app = spawn_app().await;
    let w = app
        .window_with(Terms {
            min: 1,
            max: ORDERS,
            ..Terms::default()
        })
        .await;
    let reservations = (0..ORDERS).map(|i| {
        let (app, w) = (&app, &w);
        async move {
            app.reserve(w, &format!("c-{}", i % 25), 1, &format!("k-{i}"))
                .await
        }
    });
    for r in futures::future::join_all(reservations).await {
        r.unwrap();
    }

    // Pages of 100 cover every order once; the last page has no next token.
    let (mut seen, mut token, mut pages) = (BTreeSet::new(), String::new(), 0);
    loop {
        let page = orders_page(&app, &w, 100, &token, "").await.unwrap();
        assert!(page.orders.len() <= 100);
        pages += 1;
        for o in &page.orders {
            assert!(seen.insert(o.id.clone()), "order {} listed twice", o.id);
        }
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!((seen.len(), pages), (ORDERS as usize, 3));

    // page_size 0 is the default (100); a larger one than the maximum is read as 1,000.
    let first = orders_page(&app, &w, 0, "", "").await.unwrap();
    assert_eq!(first.orders.len(), 100);
    assert!(!first.next_page_token.is_empty());
    let all = orders_page(&app, &w, 50_000, "", "").await.unwrap();
    assert_eq!(all.orders.len(), ORDERS as usize);
    assert!(all.next_page_token.is_empty());

    // Filters narrow; a token only works with the filters it was issued for.
    let reserved = orders_page(&app, &w, 1_000, "", "RESERVED").await.unwrap();
    assert_eq!(reserved.orders.len(), ORDERS as usize);
    assert!(
        orders_page(&app, &w, 10, "", "PAID")
            .await
            .unwrap()
            .orders
            .is_empty()
    );
    for (size, token, status, field) in [
        (10, first.next_page_token.as_str(), "PAID", "page_token"),
        (10, "not-a-token", "", "page_token"),
        (-1, "", "", "page_size"),
        (10, "", "SHIPPED", "status"),
    ] {
        let e = orders_page(&app, &w, size, token, status)
            .await
            .expect_err("refused");
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e:?}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }

    // A customer pages through their own orders only.
    let token_c0 = app.api.customer_token("c-0");
    let (mut mine, mut token) = (Vec::new(), String::new());
    loop {
        let page = app
            .api
            .customer()
            .list_my_orders(ApiClient::req(
                pb::ListMyOrdersRequest {
                    page_size: 3,
                    page_token: token,
                    ..Default::default()
                },
                &token_c0,
            ))
            .await
            .unwrap()
            .into_inner();
        mine.extend(page.orders);
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    assert_eq!(mine.len(), (ORDERS / 25) as usize);
    assert!(mine.iter().all(|o| o.customer_id == "c-0"));

    // The event log pages in sequence order with nothing repeated or skipped.
    let events = app.events(&w).await;
    let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|p| p[0] < p[1]));
    let reserved_events = events.iter().filter(|e| e.name == "order.reserved").count();
    assert_eq!(reserved_events, ORDERS as usize);

    // Notifications filter by kind: the admin's alerts never drown in customers' messages.
    let alerts = app
        .api
        .admin()
        .list_notifications(ApiClient::req(
            pb::ListNotificationsRequest {
                sell_window_id: w.id.clone(),
                kind: "threshold_reached".into(),
                ..Default::default()
            },
            &app.admin(),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(alerts.notifications.len(), 1);
    app.books_balance().await;
    app.stop().await;
}

async fn channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn reflection_answers_in_both_v1_and_v1alpha() {
    let app = spawn_app().await;
    let url = format!("http://{}", app.cfg.grpc_addr);
    let want = [
        "sellwindow.v1.AdminService",
        "sellwindow.v1.CustomerService",
    ];

    {
        use tonic_reflection::pb::v1::ServerReflectionRequest;
        use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(channel(&url).await);
        let ask = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut answers = client
            .server_reflection_info(futures::stream::iter([ask]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1 did not list services");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            want.iter().all(|w| names.iter().any(|n| n == w)),
            "{names:?}"
        );
    }
    {
        use tonic_reflection::pb::v1alpha::ServerReflectionRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient;
        use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest;
        use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse;
        let mut client = ServerReflectionClient::new(channel(&url).await);
        let asks = [
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            },
            ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::FileContainingSymbol(
                    "sellwindow.v1.CustomerService".into(),
                )),
            },
        ];
        let mut answers = client
            .server_reflection_info(futures::stream::iter(asks))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1alpha did not list services");
        };
        let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
        assert!(
            want.iter().all(|w| names.iter().any(|n| n == w)),
            "{names:?}"
        );
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            answers.message().await.unwrap().unwrap().message_response
        else {
            panic!("v1alpha did not describe the service");
        };
        assert!(!files.file_descriptor_proto.is_empty());
    }
    app.stop().await;
}

/// Past the API's capacity a call is refused at once (UNAVAILABLE, retry), never queued without
/// bound; what is admitted is served, and nothing oversells.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn calls_past_the_apis_capacity_are_refused_at_once_and_nothing_oversells() {
    let app = spawn_app_with(AppOptions {
        max_concurrent_calls: Some(16),
        ..AppOptions::default()
    })
    .await;
    let w = app
        .window_with(Terms {
            min: 1,
            max: 100,
            ..Terms::default()
        })
        .await;
    let calls = (0..400).map(|i| {
        let (app, w) = (&app, &w);
        async move { app.reserve(w, &format!("c-{i}"), 1, "k").await }
    });
    let (mut reserved, mut sold_out, mut busy) = (0, 0, 0);
    for r in futures::future::join_all(calls).await {
        match r {
            Ok(_) => reserved += 1,
            Err(e) if e.code() == Code::ResourceExhausted => sold_out += 1,
            Err(e) if e.code() == Code::Unavailable => {
                assert!(e.message().contains("capacity"), "{}", e.message());
                // gRPC's retry metadata tells the caller how long to back off.
                let pushback = e.metadata().get("grpc-retry-pushback-ms");
                assert!(
                    pushback.and_then(|v| v.to_str().ok()?.parse::<u64>().ok()) > Some(0),
                    "{:?}",
                    e.metadata()
                );
                busy += 1;
            }
            Err(e) => panic!("unexpected answer: {e:?}"),
        }
    }
    assert!(
        busy > 0,
        "nothing was refused: {reserved} reserved, {sold_out} sold out"
    );
    assert!(reserved <= 100);
    assert_eq!(reserved + sold_out + busy, 400);
    assert_eq!(app.listing_agrees(&w).await.sold_qty, reserved as u32);
    app.books_balance().await;
    app.stop().await;
}
