//! What the loads need from the stack: listings to reserve on, connections to the API
//! processes, and the processes' figures.

use super::Stack;
use crate::metrics::{self, Scrape};
use sellwindow_api::pb;
use sellwindow_testkit::ApiClient;
use std::time::Duration;

impl Stack {
    /// Connections enough for `customers` customers, `per` on each, spread round-robin over
    /// every API process.
    pub async fn connections(
        &self,
        customers: usize,
        per: usize,
    ) -> anyhow::Result<Vec<ApiClient>> {
        self.connections_on(customers, per, self.api.len()).await
    }

    /// The same over the first `apis` API processes only (the others stay idle).
    pub async fn connections_on(
        &self,
        customers: usize,
        per: usize,
        apis: usize,
    ) -> anyhow::Result<Vec<ApiClient>> {
        let apis = apis.clamp(1, self.api.len());
        let n = customers.div_ceil(per.max(1)).max(1);
        let mut v = Vec::with_capacity(n);
        for i in 0..n {
            let api = &self.api[i % apis];
            v.push(ApiClient::connect(&api.grpc_url, &api.http_base, &self.cfg.jwt_secret).await?);
        }
        Ok(v)
    }

    /// How many API processes (or in-process APIs) the stack runs.
    pub fn api_count(&self) -> usize {
        self.api.len()
    }

    pub fn admin(&self) -> &ApiClient {
        &self.api[0]
    }

    /// Creates `n` products and windows holding them (at most 50 listings per window), each
    /// listing with threshold `min` and cap `max`, closing `close_in` from now.
    pub async fn listings(
        &self,
        n: usize,
        min: u32,
        max: u32,
        close_in: Duration,
        pay_window: Duration,
        tag: &str,
    ) -> anyhow::Result<Vec<pb::SellWindow>> {
        let mut products = Vec::new();
        for i in 0..n {
            products.push(self.product(&format!("bench {tag} product {i}")).await?);
        }
        let close_at = sellwindow_api::convert::now_ms().0 + close_in.as_millis() as i64;
        let mut windows = Vec::new();
        for (w, chunk) in products.chunks(50).enumerate() {
            let listings = chunk
                .iter()
                .map(|p| pb::ListingInput {
                    product_id: p.id.clone(),
                    min_qty: min,
                    max_qty: max,
                    payment_window: Some(prost_types::Duration {
                        seconds: pay_window.as_secs() as i64,
                        nanos: 0,
                    }),
                    per_customer_limit: 0,
                    min_paid_policy: 0,
                })
                .collect();
            let request = pb::CreateSellWindowRequest {
                name: format!("bench {tag} window {w}"),
                close_at: Some(sellwindow_api::convert::ts(close_at)),
                listings,
                request_id: format!("bench-{tag}-{w}"),
            };
            let api = self.admin();
            let window = api
                .admin()
                .create_sell_window(ApiClient::req(request, &api.admin_token()))
                .await?
                .into_inner();
            windows.push(window);
        }
        Ok(windows)
    }

    async fn product(&self, name: &str) -> anyhow::Result<pb::Product> {
        let api = self.admin();
        let request = pb::CreateProductRequest {
            id: String::new(),
            name: name.to_string(),
            unit_price: Some(pb::Money {
                currency: "TWD".into(),
                amount_minor: 45000,
            }),
            work_steps: vec!["cut".into(), "assemble".into(), "pack".into()],
        };
        Ok(api
            .admin()
            .create_product(ApiClient::req(request, &api.admin_token()))
            .await?
            .into_inner())
    }

    /// The API processes' Prometheus figures, summed over the processes.
    pub async fn api_metrics(&self) -> Scrape {
        let mut m = Scrape::new();
        for api in &self.api {
            metrics::scrape(&format!("{}/metrics", api.http_base), &mut m).await;
        }
        m
    }

    /// The worker's Prometheus figures (its writes' times).
    pub async fn worker_metrics(&self) -> Scrape {
        let mut m = Scrape::new();
        if let Some(addr) = self.cfg.worker_metrics_addr {
            metrics::scrape(&format!("http://{addr}/metrics"), &mut m).await;
        }
        m
    }
}
