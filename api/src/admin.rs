//! `AdminService`: the catalog, confirming batches, production steps, and the admin's views
//! (orders, work orders, the event log, notifications). Every call needs the admin role.

use crate::app::State;
use crate::convert::{self, now_ms, text};
use crate::error::ApiError;
use crate::lists::{optional, order_status};
use crate::paging;
use crate::pb::{self, admin_service_server::AdminService};
use crate::updates::{Within, update_listing};
use sellwindow_activities::lists::{NotificationFilter, Order, OrderFilter};
use sellwindow_activities::queries::NewListing;
use sellwindow_domain::*;
use sellwindow_workflows::{ListingRun, ListingWorkflow};
use std::sync::Arc;
use temporalio_client::{WorkflowIdConflictPolicy, WorkflowStartOptions};
use tonic::{Request, Response, Status};

pub struct Admin(pub Arc<State>);

/// Limits on what one request may ask for.
const MAX_LISTINGS: usize = 50;
const MAX_STEPS: usize = 50;
const MAX_PAYMENT_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
const DEFAULT_PAYMENT_WINDOW_MS: i64 = 24 * 3600 * 1000;
const LISTING_TASK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

impl State {
    /// Starts a listing's workflow; a workflow already running under that id is fine.
    async fn start_listing(&self, spec: ListingSpec) -> Result<(), ApiError> {
        let opts = WorkflowStartOptions::new(self.cfg.task_queue.clone(), spec.workflow_id())
            // A workflow task that runs a fan-out's writes (local activities) is kept alive by
            // the SDK's heartbeat at 80% of this: the default 10 s leaves too little slack on a
            // loaded host. Later runs keep it.
            .task_timeout(LISTING_TASK_TIMEOUT)
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .static_summary(format!("{} · {}", spec.sell_window_name, spec.product_name))
            .static_details(format!(
                "Sell window **{}** ({}), product **{}** ({}): threshold {}, cap {}, closes at {} ms.",
                spec.sell_window_name, spec.sell_window_id, spec.product_name, spec.product_id, spec.min_qty, spec.max_qty, spec.close_at.0
            ))
            .build();
        let start = ListingRun {
            tuning: self.cfg.listing_tuning,
            ..spec.into()
        };
        match self
            .client
            .start_workflow(ListingWorkflow::run, start, opts)
            .await
        {
            Ok(_) | Err(temporalio_client::errors::WorkflowStartError::AlreadyStarted { .. }) => {
                Ok(())
            }
            Err(e) => Err(ApiError::Unavailable(e.to_string())),
        }
    }
}

impl State {
    /// NOT_FOUND unless the window exists (lists about an unknown window are an error, not empty).
    async fn require_window(&self, id: &SellWindowId) -> Result<(), ApiError> {
        if self.store.sell_window_exists(id).await? {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("sell window {id} not found")))
        }
    }
}

fn id_or_invalid<T>(r: Result<T, DomainError>) -> Result<T, Status> {
    r.map_err(|e| ApiError::from(e).into())
}

#[tonic::async_trait]
impl AdminService for Admin {
    async fn create_product(
        &self,
        req: Request<pb::CreateProductRequest>,
    ) -> Result<Response<pb::Product>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let name = text("name", &r.name, 200)?;
        let price = convert::parse_money(r.unit_price.as_ref(), "unit_price")?;
        if r.work_steps.len() > MAX_STEPS {
            return Err(ApiError::from(DomainError::invalid(
                "work_steps",
                format!("at most {MAX_STEPS} steps"),
            ))
            .into());
        }
        let steps = r
            .work_steps
            .iter()
            .map(|s| text("work_steps", s, 100))
            .collect::<Result<Vec<_>, _>>()?;
        let id = if r.id.is_empty() {
            ProductId::derive(&[
                &name,
                price.currency.as_str(),
                &price.amount_minor.to_string(),
            ])
        } else {
            id_or_invalid(ProductId::parse(r.id))?
        };
        let p = self
            .0
            .store
            .create_product(&id, &name, &price, &steps, now_ms())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(convert::product(p)))
    }

    async fn create_sell_window(
        &self,
        req: Request<pb::CreateSellWindowRequest>,
    ) -> Result<Response<pb::SellWindow>, Status> {
        let admin = self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let name = text("name", &r.name, 200)?;
        let now = now_ms();
        let close_at = r
            .close_at
            .as_ref()
            .ok_or(DomainError::invalid("close_at", "is required"))
            .and_then(|t| {
                convert::ms_of_parts(t.seconds, t.nanos)
                    .ok_or(DomainError::invalid("close_at", "is out of range"))
            })
            .map(UnixMillis)
            .map_err(ApiError::from)?;
        if close_at.0 <= now.0 + 1000 {
            return Err(
                ApiError::from(DomainError::invalid("close_at", "must be in the future")).into(),
            );
        }
        if r.listings.is_empty() || r.listings.len() > MAX_LISTINGS {
            return Err(ApiError::from(DomainError::invalid(
                "listings",
                format!("between 1 and {MAX_LISTINGS} listings"),
            ))
            .into());
        }
        let id = if r.request_id.is_empty() {
            SellWindowId::derive(&[&admin, &name, &now.0.to_string()])
        } else {
            SellWindowId::derive(&[&admin, &text("request_id", &r.request_id, 128)?])
        };
        let mut listings = Vec::new();
        let mut specs = Vec::new();
        for l in &r.listings {
            let product_id = id_or_invalid(ProductId::parse(l.product_id.clone()))?;
            if listings
                .iter()
                .any(|(x, _): &(NewListing, String)| x.product_id == product_id)
            {
                return Err(ApiError::from(DomainError::invalid(
                    "listings",
                    format!("product {product_id} listed twice"),
                ))
                .into());
            }
            let product = self
                .0
                .store
                .product(&product_id)
                .await
                .map_err(ApiError::from)?
                .ok_or_else(|| ApiError::NotFound(format!("product {product_id} not found")))?;
            if l.min_qty == 0 {
                return Err(
                    ApiError::from(DomainError::invalid("min_qty", "must be at least 1")).into(),
                );
            }
            if l.max_qty < l.min_qty || l.max_qty > Qty::MAX {
                return Err(ApiError::from(DomainError::invalid(
                    "max_qty",
                    format!("must be between min_qty and {}", Qty::MAX),
                ))
                .into());
            }
            let payment_window_ms = match &l.payment_window {
                None => DEFAULT_PAYMENT_WINDOW_MS,
                Some(d) => convert::ms_of_parts(d.seconds, d.nanos).ok_or(ApiError::from(
                    DomainError::invalid("payment_window", "is out of range"),
                ))?,
            };
            if !(1000..=MAX_PAYMENT_WINDOW_MS).contains(&payment_window_ms) {
                return Err(ApiError::from(DomainError::invalid(
                    "payment_window",
                    "must be between 1 second and 30 days",
                ))
                .into());
            }
            let per_customer_limit = (l.per_customer_limit > 0).then_some(l.per_customer_limit);
            let min_paid_policy = convert::parse_policy(l.min_paid_policy)?;
            let new = NewListing {
                product_id: product_id.clone(),
                min_qty: l.min_qty,
                max_qty: l.max_qty,
                payment_window_ms,
                per_customer_limit,
                min_paid_policy,
            };
            let spec = ListingSpec {
                sell_window_id: id.clone(),
                sell_window_name: name.clone(),
                product_id: product_id.clone(),
                product_name: product.name.clone(),
                unit_price: product.unit_price.clone(),
                min_qty: l.min_qty,
                max_qty: l.max_qty,
                close_at,
                payment_window_ms,
                per_customer_limit,
                min_paid_policy,
                work_steps: product.work_steps.clone(),
            };
            listings.push((new, spec.workflow_id()));
            specs.push(spec);
        }
        self.0
            .store
            .create_sell_window(&id, &name, close_at, &listings, now)
            .await
            .map_err(ApiError::from)?;
        // A retried create (same request_id) starts whatever did not start the first time.
        for spec in specs {
            self.0.start_listing(spec).await?;
        }
        Ok(Response::new(self.0.sell_window_pb(&id, false).await?))
    }

    async fn list_products(
        &self,
        req: Request<pb::ListProductsRequest>,
    ) -> Result<Response<pb::ListProductsResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let filters = "products";
        let p = paging::request(r.page_size, &r.page_token, filters)?;
        let page = self.0.store.products(&p).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::ListProductsResponse {
            products: page.items.into_iter().map(convert::product).collect(),
            next_page_token: paging::next_token(page.next, filters),
        }))
    }

    async fn get_sell_window(
        &self,
        req: Request<pb::GetSellWindowRequest>,
    ) -> Result<Response<pb::SellWindow>, Status> {
        self.0.auth.admin(req.metadata())?;
        let id = id_or_invalid(SellWindowId::parse(req.into_inner().sell_window_id))?;
        Ok(Response::new(self.0.sell_window_pb(&id, true).await?))
    }

    async fn list_sell_windows(
        &self,
        req: Request<pb::ListSellWindowsRequest>,
    ) -> Result<Response<pb::ListSellWindowsResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        Ok(Response::new(
            self.0
                .list_windows(false, r.page_size, &r.page_token)
                .await?,
        ))
    }

    async fn confirm_batch(
        &self,
        req: Request<pb::ConfirmBatchRequest>,
    ) -> Result<Response<pb::ConfirmBatchResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let sw = id_or_invalid(SellWindowId::parse(r.sell_window_id))?;
        let p = id_or_invalid(ProductId::parse(r.product_id))?;
        self.0.require_listing(&sw, &p).await?;
        let out = update_listing(
            &self.0.client,
            &listing_workflow_id(&sw, &p),
            || ListingWorkflow::confirm,
            (),
            self.0.cfg.rpc_deadline,
        )
        .await?;
        Ok(Response::new(match out {
            Within::Done(out) => pb::ConfirmBatchResponse {
                batch_id: out.batch_id.to_string(),
                status: BatchStatus::Confirmed.to_string(),
                confirmed_at: Some(convert::ts(out.confirmed_at.0)),
                payment_requested_orders: out.payment_requested_orders,
                payment_requests_in_progress: false,
            },
            // Confirmed; the payment requests of a big batch are still going out.
            Within::Accepted => pb::ConfirmBatchResponse {
                batch_id: BatchId::for_listing(&sw, &p).to_string(),
                status: BatchStatus::Confirmed.to_string(),
                confirmed_at: None,
                payment_requested_orders: 0,
                payment_requests_in_progress: true,
            },
        }))
    }

    async fn cancel_sell_window(
        &self,
        req: Request<pb::CancelSellWindowRequest>,
    ) -> Result<Response<pb::SellWindow>, Status> {
        self.0.auth.admin(req.metadata())?;
        let sw = id_or_invalid(SellWindowId::parse(req.into_inner().sell_window_id))?;
        let window = self
            .0
            .store
            .sell_window(&sw)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("sell window {sw} not found")))?;
        for l in &window.listings {
            // Accepted is enough: the refunds of a big listing go on after the answer.
            update_listing(
                &self.0.client,
                &l.workflow_id,
                || ListingWorkflow::cancel_window,
                (),
                self.0.cfg.rpc_deadline,
            )
            .await?;
        }
        Ok(Response::new(self.0.sell_window_pb(&sw, true).await?))
    }

    async fn list_orders(
        &self,
        req: Request<pb::ListOrdersRequest>,
    ) -> Result<Response<pb::ListOrdersResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let sw = id_or_invalid(SellWindowId::parse(r.sell_window_id))?;
        self.0.require_window(&sw).await?;
        let filter = OrderFilter {
            sell_window_id: Some(sw),
            product_id: optional(&r.product_id, ProductId::parse)?,
            customer_id: optional(&r.customer_id, CustomerId::parse)?,
            status: order_status(&r.status)?,
            order: Order::newest_first(r.newest_first),
        };
        Ok(Response::new(
            self.0
                .order_page(&filter, r.page_size, &r.page_token)
                .await?,
        ))
    }

    async fn list_work_orders(
        &self,
        req: Request<pb::ListWorkOrdersRequest>,
    ) -> Result<Response<pb::ListWorkOrdersResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let sw = id_or_invalid(SellWindowId::parse(r.sell_window_id))?;
        self.0.require_window(&sw).await?;
        let filters = format!("work orders window={sw}");
        let p = paging::request(r.page_size, &r.page_token, &filters)?;
        let page = self
            .0
            .store
            .work_orders(Some(&sw), None, &p)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListWorkOrdersResponse {
            work_orders: page.items.iter().map(convert::work_order).collect(),
            next_page_token: paging::next_token(page.next, &filters),
        }))
    }

    async fn complete_work_step(
        &self,
        req: Request<pb::CompleteWorkStepRequest>,
    ) -> Result<Response<pb::CompleteWorkStepResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let wo = id_or_invalid(WorkOrderId::parse(r.work_order_id))?;
        let step = id_or_invalid(StepId::parse(r.step_id))?;
        let row = self
            .0
            .store
            .work_order(&wo)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::NotFound(format!("work order {wo} not found")))?;
        if !row.steps.iter().any(|(id, ..)| id == step.as_str()) {
            return Err(
                ApiError::NotFound(format!("step {step} is not part of work order {wo}")).into(),
            );
        }
        let out = update_listing(
            &self.0.client,
            &listing_workflow_id(&row.sell_window_id, &row.product_id),
            || ListingWorkflow::complete_step,
            step,
            self.0.cfg.rpc_deadline,
        )
        .await?;
        let row = self.0.store.work_order(&wo).await.map_err(ApiError::from)?;
        Ok(Response::new(pb::CompleteWorkStepResponse {
            work_order: row.as_ref().map(convert::work_order),
            production_completed: match out {
                Within::Done(out) => out.production_completed,
                // Still under way at the deadline (the last step shipping a big listing): the
                // steps as written tell.
                Within::Accepted => row
                    .as_ref()
                    .is_some_and(|w| w.steps.iter().all(|(.., status)| status == "DONE")),
            },
        }))
    }

    async fn list_events(
        &self,
        req: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let sw = id_or_invalid(SellWindowId::parse(r.sell_window_id))?;
        self.0.require_window(&sw).await?;
        let filters = format!("events window={sw} after={}", r.after_seq);
        let p = paging::request(r.page_size, &r.page_token, &filters)?;
        let page = self
            .0
            .store
            .events(&sw, r.after_seq, &p)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListEventsResponse {
            events: page.items.into_iter().map(convert::event).collect(),
            next_page_token: paging::next_token(page.next, &filters),
        }))
    }

    async fn list_notifications(
        &self,
        req: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let sw = optional(&r.sell_window_id, SellWindowId::parse)?;
        if let Some(sw) = &sw {
            self.0.require_window(sw).await?;
        }
        let filter = NotificationFilter {
            customer: None,
            sell_window_id: sw,
            kind: (!r.kind.is_empty()).then_some(r.kind),
            undelivered_only: r.undelivered_only,
            dead_only: r.dead_only,
            order: Order::newest_first(r.newest_first),
        };
        Ok(Response::new(
            self.0
                .notification_page(&filter, r.page_size, &r.page_token)
                .await?,
        ))
    }
}
