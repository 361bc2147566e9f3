//! `CustomerService`: open windows, reserving (the reserve transaction, idempotent), and a
//! customer's own orders and notifications. A customer sees only their own orders.

use crate::app::State;
use crate::convert;
use crate::error::ApiError;
use crate::listing_calls::{Within, too_late, update_listing};
use crate::metrics::{Metrics, Stage};
use crate::pb::{self, customer_service_server::CustomerService};
use sellwindow_domain::*;
use sellwindow_store::lists::{NotificationFilter, Order, OrderFilter};
use sellwindow_store::queries::SellWindowRow;
use sellwindow_store::reserve::ReserveRequest;
use sellwindow_workflows::SellWindow;
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

    async fn reserve(
        &self,
        customer: CustomerId,
        r: pb::ReserveOrderRequest,
    ) -> Result<pb::Order, ApiError> {
        let listing = ListingKey {
            sell_window_id: SellWindowId::parse(r.sell_window_id)?,
            product_id: ProductId::parse(r.product_id)?,
        };
        let qty = Qty::new(r.qty)?;
        let key = r.idempotency_key.trim().to_string();
        if key.is_empty() || key.len() > 128 {
            return Err(
                DomainError::invalid("idempotency_key", "must be 1 to 128 characters").into(),
            );
        }
        // A full queue is refused before anything else is done: under a flood, refusals stay
        // cheap and quick.
        if self.reservations.is_full() {
            return Err(ApiError::Overloaded(
                "too many reservations are waiting; retry shortly".into(),
            ));
        }
        let request = ReserveRequest {
            listing,
            customer_id: customer,
            qty,
            idempotency_key: key,
        };
        let answer = self
            .metrics
            .timed(Stage::Reserve, self.reservations.reserve(request))
            .await?;
        match answer {
            Ok(order) => {
                Metrics::inc(&self.metrics.reservations_accepted);
                Ok(convert::order(&order))
            }
            Err(refusal) => {
                Metrics::inc(&self.metrics.reservations_refused);
                Err(refusal.into())
            }
        }
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
                || SellWindow::retry_payment,
                input,
                deadline,
            )
            .await
            .map(|w| matches!(w, Within::Done(_)))
        } else {
            update_listing(
                &self.client,
                &workflow_id,
                || SellWindow::cancel_order,
                input,
                deadline,
            )
            .await
            .map(|w| matches!(w, Within::Done(_)))
        };
        if !done? {
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
