//! `CustomerService`: open windows, reserving (coalesced, idempotent), and a customer's own
//! orders and notifications. A customer sees only their own orders.

use crate::app::State;
use crate::convert::{self, now_ms};
use crate::error::ApiError;
use crate::idempotency::Answer;
use crate::metrics::{Metrics, Stage};
use crate::pb::{self, customer_service_server::CustomerService};
use crate::updates::{Within, too_late, update_listing};
use sellwindow_activities::lists::{NotificationFilter, Order, OrderFilter};
use sellwindow_activities::queries::SellWindowRow;
use sellwindow_domain::*;
use sellwindow_workflows::ListingWorkflow;
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct Customer(pub Arc<State>);

impl State {
    /// The listing's window, or NOT_FOUND naming what is missing.
    pub async fn require_listing(
        &self,
        sw: &SellWindowId,
        p: &ProductId,
    ) -> Result<SellWindowRow, ApiError> {
        let w = self
            .store
            .sell_window(sw)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("sell window {sw} not found")))?;
        if !w.listings.iter().any(|l| &l.product_id == p) {
            return Err(ApiError::NotFound(format!(
                "product {p} is not listed in sell window {sw}"
            )));
        }
        Ok(w)
    }

    async fn listing_close_at(
        &self,
        sw: &SellWindowId,
        p: &ProductId,
    ) -> Result<UnixMillis, ApiError> {
        let key = (sw.to_string(), p.to_string());
        if let Some(at) = self.listing_close.lock().expect("cache lock").get(&key) {
            return Ok(*at);
        }
        let close_at = self.require_listing(sw, p).await?.close_at;
        let mut cache = self.listing_close.lock().expect("cache lock");
        if cache.len() > 100_000 {
            cache.clear();
        }
        cache.insert(key, close_at);
        Ok(close_at)
    }

    async fn reserve(
        &self,
        customer: CustomerId,
        r: pb::ReserveOrderRequest,
    ) -> Result<pb::Order, ApiError> {
        let sw = SellWindowId::parse(r.sell_window_id)?;
        let p = ProductId::parse(r.product_id)?;
        let qty = Qty::new(r.qty)?;
        let key = r.idempotency_key.trim().to_string();
        if key.is_empty() || key.len() > 128 {
            return Err(
                DomainError::invalid("idempotency_key", "must be 1 to 128 characters").into(),
            );
        }
        let workflow_id = listing_workflow_id(&sw, &p);
        if self.coalescer.is_full(&workflow_id) {
            return Err(ApiError::Overloaded(
                "this listing has too many reservations waiting; retry shortly".into(),
            ));
        }
        let request_hash = reservation_hash(&sw, &p, qty);
        let first = self
            .metrics
            .timed(
                Stage::AnswerLookup,
                self.answers.first_answer(&customer, &key),
            )
            .await?;
        if let Some((hash, answer)) = first {
            if hash != request_hash {
                return Err(DomainError::invalid(
                    "idempotency_key",
                    "was already used for a different reservation",
                )
                .into());
            }
            return answer.into_result();
        }
        if now_ms() >= self.listing_close_at(&sw, &p).await? {
            // The workflow refuses too; this spares a finished workflow the call.
            return Err(ApiError::Precondition("the sell window is closed".into()));
        }
        let order_id = OrderId::for_request(&sw, &p, &customer, &key);
        let item = ReserveItem {
            order_id: order_id.clone(),
            customer_id: customer.clone(),
            qty,
            answer_key: Some(AnswerKey {
                idempotency_key: key.clone(),
                request_hash: request_hash.clone(),
            }),
        };
        let at = now_ms();
        let reserved = self
            .metrics
            .timed(Stage::Coalesced, self.coalescer.reserve(&workflow_id, item));
        let answer = match reserved.await {
            Ok(ReserveOutcome::Reserved(view)) => {
                // The write that recorded the order stored it as this key's first answer.
                Metrics::inc(&self.metrics.reservations_accepted);
                return Ok(convert::order_view(
                    &view,
                    &sw,
                    &p,
                    &self.cfg.public_base_url,
                    at,
                ));
            }
            Ok(ReserveOutcome::Refused { refusal, .. }) => {
                Metrics::inc(&self.metrics.reservations_refused);
                match refusal {
                    Refusal::NotEnoughQuota { available } => {
                        Answer::Exhausted(format!("not enough quota: {available} units left"))
                    }
                    Refusal::CustomerLimit { limit, held } => Answer::Exhausted(format!(
                        "over the per-customer limit of {limit} (you hold {held})"
                    )),
                    Refusal::WindowClosed { phase } => {
                        Answer::Precondition(format!("the sell window is closed ({phase})"))
                    }
                    // Nothing was taken: no answer is stored, a retry may succeed.
                    Refusal::NotRecorded { reason } => return Err(ApiError::Unavailable(reason)),
                }
            }
            Err(ApiError::Precondition(m)) => Answer::Precondition(m),
            Err(e) => return Err(e),
        };
        let kept = self
            .answers
            .keep_first(&customer, &key, &request_hash, &answer);
        self.metrics
            .timed(Stage::AnswerSave, kept)
            .await?
            .into_result()
    }
}

impl State {
    /// Sends a customer's request about their own order to its listing and answers with the
    /// order as stored afterwards.
    async fn change_order(
        &self,
        customer: CustomerId,
        order_id: String,
        retry: bool,
    ) -> Result<pb::Order, ApiError> {
        let id = OrderId::parse(order_id)?;
        let o = self
            .store
            .order(&id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("order {id} not found")))?;
        if o.customer_id != customer.as_str() {
            return Err(ApiError::PermissionDenied(
                "this order belongs to another customer".into(),
            ));
        }
        let sw = SellWindowId::parse(o.sell_window_id.clone())?;
        let p = ProductId::parse(o.product_id.clone())?;
        let workflow_id = listing_workflow_id(&sw, &p);
        let input = CustomerOrder {
            order_id: id.clone(),
            customer_id: customer,
        };
        let deadline = self.cfg.rpc_deadline;
        let done = if retry {
            update_listing(
                &self.client,
                &workflow_id,
                || ListingWorkflow::retry_payment,
                input,
                deadline,
            )
            .await
            .map(|w| matches!(w, Within::Done(_)))
        } else {
            update_listing(
                &self.client,
                &workflow_id,
                || ListingWorkflow::cancel_order,
                input,
                deadline,
            )
            .await
            .map(|w| matches!(w, Within::Done(_)))
        };
        let done = done.map_err(|e| match e {
            // The listing's workflow has finished: nothing about the order can change now.
            ApiError::NotFound(m) if m.starts_with("no such listing") => {
                ApiError::Precondition(format!("order {id} can no longer change"))
            }
            other => other,
        })?;
        if !done {
            return Err(too_late("the change to the order"));
        }
        let o = self
            .store
            .order(&id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("order {id} not found")))?;
        Ok(convert::order(&o))
    }
}

#[tonic::async_trait]
impl CustomerService for Customer {
    async fn list_open_sell_windows(
        &self,
        req: Request<pb::ListOpenSellWindowsRequest>,
    ) -> Result<Response<pb::ListSellWindowsResponse>, Status> {
        self.0.auth.caller(req.metadata())?;
        let r = req.into_inner();
        Ok(Response::new(
            self.0
                .list_windows(true, r.page_size, &r.page_token)
                .await?,
        ))
    }

    async fn reserve_order(
        &self,
        req: Request<pb::ReserveOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let customer = self.0.auth.customer(req.metadata())?;
        Ok(Response::new(
            self.0.reserve(customer, req.into_inner()).await?,
        ))
    }

    async fn get_order(
        &self,
        req: Request<pb::GetOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let caller = self.0.auth.caller(req.metadata())?;
        let id = OrderId::parse(req.into_inner().order_id).map_err(ApiError::from)?;
        let o = self
            .0
            .store
            .order(&id)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("order {id} not found")))?;
        if let crate::auth::Caller::Customer(c) = caller
            && c.as_str() != o.customer_id
        {
            return Err(ApiError::PermissionDenied(
                "this order belongs to another customer".into(),
            )
            .into());
        }
        Ok(Response::new(convert::order(&o)))
    }

    async fn list_my_orders(
        &self,
        req: Request<pb::ListMyOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        let customer = self.0.auth.customer(req.metadata())?;
        let r = req.into_inner();
        let filter = OrderFilter {
            customer_id: Some(customer),
            status: crate::lists::order_status(&r.status)?,
            order: Order::newest_first(r.newest_first),
            ..OrderFilter::default()
        };
        Ok(Response::new(
            self.0
                .order_page(&filter, r.page_size, &r.page_token)
                .await?,
        ))
    }

    async fn cancel_order(
        &self,
        req: Request<pb::CancelOrderRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let customer = self.0.auth.customer(req.metadata())?;
        Ok(Response::new(
            self.0
                .change_order(customer, req.into_inner().order_id, false)
                .await?,
        ))
    }

    async fn retry_payment(
        &self,
        req: Request<pb::RetryPaymentRequest>,
    ) -> Result<Response<pb::Order>, Status> {
        let customer = self.0.auth.customer(req.metadata())?;
        Ok(Response::new(
            self.0
                .change_order(customer, req.into_inner().order_id, true)
                .await?,
        ))
    }

    async fn list_my_notifications(
        &self,
        req: Request<pb::ListMyNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        let customer = self.0.auth.customer(req.metadata())?;
        let r = req.into_inner();
        let filter = NotificationFilter {
            customer: Some(customer),
            kind: (!r.kind.is_empty()).then_some(r.kind),
            order: Order::newest_first(r.newest_first),
            ..NotificationFilter::default()
        };
        Ok(Response::new(
            self.0
                .notification_page(&filter, r.page_size, &r.page_token)
                .await?,
        ))
    }
}
