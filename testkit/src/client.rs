//! A small client of the API acting as whoever its tokens say: the admin, a customer, or the
//! payment provider (signed callbacks). The demo, the tests and the bench drive the system
//! through it.

use crate::provider::Provider;
use sellwindow_api::auth::Auth;
use sellwindow_api::pb::{
    self, admin_service_client::AdminServiceClient, customer_service_client::CustomerServiceClient,
};
use std::time::Duration;
use tonic::transport::Channel;

/// A gRPC client acting as whoever its tokens say.
#[derive(Clone)]
pub struct ApiClient {
    pub channel: Channel,
    pub grpc_url: String,
    pub http_base: String,
    auth: Auth,
    /// The payment provider, to play one whose report arrives after the shop stopped offering
    /// the payment (the sandbox only acts on open payments); it keeps a ledger of its reports.
    provider: Option<Provider>,
}

impl ApiClient {
    pub async fn connect(grpc: &str, http_base: &str, jwt_secret: &str) -> anyhow::Result<Self> {
        let channel = Channel::from_shared(grpc.to_string())?.connect().await?;
        Ok(Self {
            channel,
            grpc_url: grpc.to_string(),
            http_base: http_base.trim_end_matches('/').to_string(),
            auth: Auth::new(jwt_secret),
            provider: None,
        })
    }

    /// Signs provider reports with `secret` (the API's `PAYMENT_CALLBACK_SECRET`).
    pub fn with_provider_secret(mut self, secret: &str) -> Self {
        let url = format!("{}/payments/callback", self.http_base);
        self.provider = Some(Provider::new(url, secret));
        self
    }

    /// Plays `provider` (its ledger records what this client reports).
    pub fn with_provider(mut self, provider: Provider) -> Self {
        self.provider = Some(provider);
        self
    }

    /// The provider this client plays, if any.
    pub fn provider(&self) -> Option<&Provider> {
        self.provider.as_ref()
    }

    /// Sends a signed provider callback for a payment, as its provider would, whatever the
    /// shop thinks of the payment now.
    pub async fn provider_reports(
        &self,
        payment_id: &str,
        order_id: &str,
        outcome: &str,
    ) -> anyhow::Result<()> {
        let provider = self
            .provider
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no provider secret (with_provider_secret)"))?;
        let t = sellwindow_api::convert::now_ms().0 / 1000;
        let event = format!("demo-{payment_id}-{outcome}-{t}");
        let status = provider.report(payment_id, order_id, outcome, &event).await;
        anyhow::ensure!((200..300).contains(&status), "callback answered {status}");
        Ok(())
    }

    pub fn admin_token(&self) -> String {
        self.auth.mint("admin", true, 3600)
    }

    pub fn customer_token(&self, customer: &str) -> String {
        self.auth.mint(customer, false, 3600)
    }

    pub fn admin(&self) -> AdminServiceClient<Channel> {
        AdminServiceClient::new(self.channel.clone())
    }

    pub fn customer(&self) -> CustomerServiceClient<Channel> {
        CustomerServiceClient::new(self.channel.clone())
    }

    /// A request carrying `token` as its bearer.
    pub fn req<T>(msg: T, token: &str) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii token"),
        );
        r
    }

    pub async fn as_admin<T>(&self, msg: T) -> tonic::Request<T> {
        Self::req(msg, &self.admin_token())
    }

    /// Presses a button of the payment sandbox (which sends the signed callback).
    pub async fn sandbox(&self, payment_id: &str, outcome: &str) -> anyhow::Result<()> {
        let r = reqwest::Client::new()
            .post(format!(
                "{}/sandbox/pay/{payment_id}/{outcome}",
                self.http_base
            ))
            .send()
            .await?;
        anyhow::ensure!(r.status().is_success(), "sandbox answered {}", r.status());
        Ok(())
    }

    pub async fn sell_window(&self, id: &str) -> anyhow::Result<pb::SellWindow> {
        let req = Self::req(
            pb::GetSellWindowRequest {
                sell_window_id: id.into(),
            },
            &self.admin_token(),
        );
        Ok(self.admin().get_sell_window(req).await?.into_inner())
    }

    /// Polls until `check` holds on the window, or fails after `timeout`.
    pub async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        check: impl Fn(&pb::SellWindow) -> bool,
    ) -> anyhow::Result<pb::SellWindow> {
        let start = tokio::time::Instant::now();
        loop {
            let w = self.sell_window(id).await?;
            if check(&w) {
                return Ok(w);
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "timed out waiting on sell window {id}: {w:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
