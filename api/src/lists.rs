//! What both services read: a window with its listings' figures (from their quota rows), and
//! the paged lists (sell windows, orders, notifications) with their filters parsed from the
//! requests and the page tokens around them.

use crate::app::State;
use crate::convert::{self, now_ms};
use crate::error::ApiError;
use crate::paging;
use crate::pb;
use sellwindow_domain::*;
use sellwindow_store::lists::{NotificationFilter, OrderFilter};

/// An optional id: empty means not given.
pub fn optional<T>(
    raw: &str,
    parse: fn(String) -> Result<T, DomainError>,
) -> Result<Option<T>, ApiError> {
    if raw.is_empty() {
        Ok(None)
    } else {
        parse(raw.to_string()).map(Some).map_err(ApiError::from)
    }
}

/// An optional order-status filter: empty means every status.
pub fn order_status(raw: &str) -> Result<Option<OrderStatus>, ApiError> {
    if raw.is_empty() {
        return Ok(None);
    }
    OrderStatus::parse(raw).map(Some).ok_or_else(|| {
        ApiError::Invalid(DomainError::invalid(
            "status",
            format!("{raw:?} is not an order status"),
        ))
    })
}

impl State {
    /// A window with its listings' figures as their quota rows hold them (the arbiter's own
    /// figures, never a workflow's copy).
    pub async fn sell_window_pb(&self, id: &SellWindowId) -> Result<pb::SellWindow, ApiError> {
        let w = self
            .store
            .sell_window(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("sell window {id} not found")))?;
        Ok(convert::sell_window(&w))
    }

    /// Windows as stored, a page at a time.
    pub async fn list_windows(
        &self,
        open_only: bool,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListSellWindowsResponse, ApiError> {
        let filters = format!("windows open_only={open_only}");
        let p = paging::request(page_size, page_token, &filters)?;
        let page = self.store.sell_windows(open_only, now_ms(), &p).await?;
        Ok(pb::ListSellWindowsResponse {
            sell_windows: page.items.iter().map(convert::sell_window).collect(),
            next_page_token: paging::next_token(page.next, &filters),
        })
    }

    /// A page of orders and the token of the next one.
    pub async fn order_page(
        &self,
        f: &OrderFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListOrdersResponse, ApiError> {
        let filters = format!(
            "orders window={:?} product={:?} customer={:?} status={:?} order={:?}",
            f.sell_window_id, f.product_id, f.customer_id, f.status, f.order
        );
        let p = paging::request(page_size, page_token, &filters)?;
        let page = self.store.orders(f, &p).await?;
        Ok(pb::ListOrdersResponse {
            orders: page.items.iter().map(convert::order).collect(),
            next_page_token: paging::next_token(page.next, &filters),
        })
    }

    /// A page of notifications and the token of the next one.
    pub async fn notification_page(
        &self,
        f: &NotificationFilter,
        page_size: i32,
        page_token: &str,
    ) -> Result<pb::ListNotificationsResponse, ApiError> {
        let filters = format!(
            "notifications customer={:?} window={:?} kind={:?} undelivered={} dead={} order={:?}",
            f.customer, f.sell_window_id, f.kind, f.undelivered_only, f.dead_only, f.order
        );
        let p = paging::request(page_size, page_token, &filters)?;
        let page = self.store.notifications(f, &p).await?;
        Ok(pb::ListNotificationsResponse {
            notifications: page.items.iter().map(convert::notification).collect(),
            next_page_token: paging::next_token(page.next, &filters),
        })
    }
}
