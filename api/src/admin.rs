//! `AdminService`: the catalog, confirming batches, production steps, and the admin's views
//! (orders, work orders, the event log, notifications). Every call needs the admin role.

use crate::app::State;
use crate::convert::{self, now_ms, text};
use crate::error::ApiError;
use crate::listing_calls::{Within, too_late, update_listing};
use crate::lists::{optional, order_status};
use crate::paging;
use crate::pb::{self, admin_service_server::AdminService};
use sellwindow_domain::*;
use sellwindow_store::lists::{NotificationFilter, Order, OrderFilter};
use sellwindow_workflows::{ListingRun, SellWindow};
use std::sync::Arc;
use temporalio_client::{WorkflowIdConflictPolicy, WorkflowStartOptions};
use tonic::{Request, Response, Status};

mod new_window;
use new_window::NewWindow;

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
            .start_workflow(SellWindow::run, start, opts)
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
        let now = now_ms();
        let window = NewWindow::checked(&r, &admin, now)?;
        let listings = self.0.checked_listings(&window, &r.listings).await?;
        self.0
            .store
            .create_sell_window(
                &window.id,
                &window.name,
                window.close_at,
                &listings.rows,
                now,
            )
            .await
            .map_err(ApiError::from)?;
        // A retried create (same request_id) starts whatever did not start the first time.
        for spec in listings.specs {
            self.0.start_listing(spec).await?;
        }
        Ok(Response::new(self.0.sell_window_pb(&window.id).await?))
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
        Ok(Response::new(self.0.sell_window_pb(&id).await?))
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
            || SellWindow::confirm,
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
            // Accepted and still running: confirmed if the row took the fence, and the payment
            // requests of a big batch still going out.
            Within::Accepted => {
                let listing = self.0.require_listing(&sw, &p).await?;
                let confirmed = listing
                    .listings
                    .iter()
                    .any(|l| l.product_id == p && l.batch_status == BatchStatus::Confirmed);
                if !confirmed {
                    return Err(too_late("the confirm").into());
                }
                pb::ConfirmBatchResponse {
                    batch_id: BatchId::for_listing(&sw, &p).to_string(),
                    status: BatchStatus::Confirmed.to_string(),
                    confirmed_at: None,
                    payment_requested_orders: 0,
                    payment_requests_in_progress: true,
                }
            }
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
                || SellWindow::cancel_window,
                (),
                self.0.cfg.rpc_deadline,
            )
            .await?;
        }
        Ok(Response::new(self.0.sell_window_pb(&sw).await?))
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
            || SellWindow::complete_step,
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
