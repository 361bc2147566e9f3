//! `AdminService`: the catalog, confirming batches, production steps, and the admin's views
//! (orders, work orders, the event log, notifications). Every call needs the admin role.

use crate::app::State;
use crate::convert::{self, now_ms, text};
use crate::error::ApiError;
use crate::pb::{self, admin_service_server::AdminService};
use crate::updates::update_listing;
use sellwindow_activities::queries::NewListing;
use sellwindow_domain::*;
use sellwindow_workflows::{ListingStart, SellWindowWorkflow};
use std::sync::Arc;
use temporalio_client::{WorkflowIdConflictPolicy, WorkflowQueryOptions, WorkflowStartOptions};
use tonic::{Request, Response, Status};

pub struct Admin(pub Arc<State>);

/// Limits on what one request may ask for.
const MAX_LISTINGS: usize = 50;
const MAX_STEPS: usize = 50;
const MAX_PAYMENT_WINDOW_MS: i64 = 30 * 24 * 3600 * 1000;
const DEFAULT_PAYMENT_WINDOW_MS: i64 = 24 * 3600 * 1000;

impl State {
    /// The live figures of a listing from its workflow, if it answers quickly.
    pub async fn live_figures(&self, workflow_id: &str) -> Option<ListingFigures> {
        let handle = self
            .client
            .get_workflow_handle::<SellWindowWorkflow>(workflow_id);
        let q = handle.query(
            SellWindowWorkflow::figures,
            (),
            WorkflowQueryOptions::default(),
        );
        match tokio::time::timeout(std::time::Duration::from_secs(3), q).await {
            Ok(Ok(f)) => Some(f),
            _ => None,
        }
    }

    pub async fn sell_window_pb(
        &self,
        id: &SellWindowId,
        live: bool,
    ) -> Result<pb::SellWindow, ApiError> {
        let w = self
            .store
            .sell_window(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("sell window {id} not found")))?;
        let mut figures = Vec::new();
        for l in &w.listings {
            figures.push(if live {
                self.live_figures(&l.workflow_id).await
            } else {
                None
            });
        }
        Ok(convert::sell_window(&w, &figures))
    }

    /// Windows as stored (no workflow queries: lists stay fast).
    pub async fn list_windows(
        &self,
        open_only: bool,
    ) -> Result<pb::ListSellWindowsResponse, ApiError> {
        let rows = self.store.sell_windows(open_only, now_ms()).await?;
        Ok(pb::ListSellWindowsResponse {
            sell_windows: rows.iter().map(|w| convert::sell_window(w, &[])).collect(),
        })
    }

    /// Starts a listing's workflow; a workflow already running under that id is fine.
    async fn start_listing(&self, spec: ListingSpec) -> Result<(), ApiError> {
        let opts = WorkflowStartOptions::new(self.cfg.task_queue.clone(), spec.workflow_id())
            .id_conflict_policy(WorkflowIdConflictPolicy::UseExisting)
            .static_summary(format!("{} · {}", spec.sell_window_name, spec.product_name))
            .static_details(format!(
                "Sell window **{}** ({}), product **{}** ({}): threshold {}, cap {}, closes at {} ms.",
                spec.sell_window_name, spec.sell_window_id, spec.product_name, spec.product_id, spec.min_qty, spec.max_qty, spec.close_at.0
            ))
            .build();
        let start = ListingStart {
            inline_max: self.cfg.handover_inline_max,
            ..spec.into()
        };
        match self
            .client
            .start_workflow(SellWindowWorkflow::run, start, opts)
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
        Ok(Response::new(pb::Product {
            id: p.id.to_string(),
            name: p.name,
            unit_price: Some(convert::money(&p.unit_price)),
            work_steps: p.work_steps,
        }))
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
        Ok(Response::new(self.0.list_windows(false).await?))
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
            || SellWindowWorkflow::confirm,
            (),
        )
        .await?;
        Ok(Response::new(pb::ConfirmBatchResponse {
            batch_id: out.batch_id.to_string(),
            status: BatchStatus::Confirmed.to_string(),
            confirmed_at: Some(convert::ts(out.confirmed_at.0)),
            payment_requested_orders: out.payment_requested_orders,
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
            update_listing(
                &self.0.client,
                &l.workflow_id,
                || SellWindowWorkflow::cancel_window,
                (),
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
        let p = if r.product_id.is_empty() {
            None
        } else {
            Some(id_or_invalid(ProductId::parse(r.product_id))?)
        };
        let rows = self
            .0
            .store
            .orders_of_listing(&sw, p.as_ref())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListOrdersResponse {
            orders: rows.iter().map(convert::order).collect(),
        }))
    }

    async fn list_work_orders(
        &self,
        req: Request<pb::ListWorkOrdersRequest>,
    ) -> Result<Response<pb::ListWorkOrdersResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let sw = id_or_invalid(SellWindowId::parse(req.into_inner().sell_window_id))?;
        self.0.require_window(&sw).await?;
        let rows = self
            .0
            .store
            .work_orders(Some(&sw), None)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListWorkOrdersResponse {
            work_orders: rows.iter().map(convert::work_order).collect(),
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
            .work_orders(None, Some(&wo))
            .await
            .map_err(ApiError::from)?
            .pop()
            .ok_or_else(|| ApiError::NotFound(format!("work order {wo} not found")))?;
        if !row.steps.iter().any(|(id, ..)| id == step.as_str()) {
            return Err(
                ApiError::NotFound(format!("step {step} is not part of work order {wo}")).into(),
            );
        }
        let out = update_listing(
            &self.0.client,
            &listing_workflow_id(&row.sell_window_id, &row.product_id),
            || SellWindowWorkflow::complete_step,
            step,
        )
        .await?;
        let row = self
            .0
            .store
            .work_orders(None, Some(&wo))
            .await
            .map_err(ApiError::from)?
            .pop();
        Ok(Response::new(pb::CompleteWorkStepResponse {
            work_order: row.as_ref().map(convert::work_order),
            production_completed: out.production_completed,
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
        let rows = self
            .0
            .store
            .events(&sw, r.after_seq)
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListEventsResponse {
            events: rows
                .into_iter()
                .map(|e| pb::Event {
                    seq: e.seq,
                    name: e.name,
                    sell_window_id: e.sell_window_id.unwrap_or_default(),
                    product_id: e.product_id.unwrap_or_default(),
                    order_id: e.order_id.unwrap_or_default(),
                    payload_json: e.payload,
                    occurred_at: Some(convert::ts(e.occurred_at)),
                })
                .collect(),
        }))
    }

    async fn list_notifications(
        &self,
        req: Request<pb::ListNotificationsRequest>,
    ) -> Result<Response<pb::ListNotificationsResponse>, Status> {
        self.0.auth.admin(req.metadata())?;
        let r = req.into_inner();
        let sw = if r.sell_window_id.is_empty() {
            None
        } else {
            Some(id_or_invalid(SellWindowId::parse(r.sell_window_id))?)
        };
        if let Some(sw) = &sw {
            self.0.require_window(sw).await?;
        }
        let rows = self
            .0
            .store
            .notifications(None, sw.as_ref())
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ListNotificationsResponse {
            notifications: rows.iter().map(convert::notification).collect(),
        }))
    }
}
