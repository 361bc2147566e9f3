//! The lists admins and customers page through: sell windows, orders, the event log,
//! notifications and work orders. Every list is read a page at a time by keyset (after the
//! last row of the previous page, in the list's own order), so a page costs the same at the
//! start of a listing of 100,000 orders as at its end, and no answer grows with the listing.

use crate::db::{Store, StoreError, StoreResult, u};
use crate::queries::{
    EventRow, NotificationRow, OrderRow, ProductRow, SellWindowRow, WorkOrderRow,
};
use sellwindow_domain::*;
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

/// Where a page starts: just after the row with this sort key. `at` is the list's ordering
/// column (a time, or the event's sequence number) and `id` breaks ties.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub at: i64,
    pub id: String,
}

/// One page to read: at most `size` rows after `after` (from the start when `None`).
#[derive(Debug, Clone)]
pub struct PageRequest {
    pub after: Option<Cursor>,
    pub size: u32,
}

#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Cursor>,
}

/// Which orders a list shows; every field set narrows it.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub sell_window_id: Option<SellWindowId>,
    pub product_id: Option<ProductId>,
    pub customer_id: Option<CustomerId>,
    pub status: Option<OrderStatus>,
    pub order: Order,
}

/// Which notifications a list shows. `customer`: that customer's own; `None`: everything
/// (the admin's view).
#[derive(Debug, Clone, Default)]
pub struct NotificationFilter {
    pub customer: Option<CustomerId>,
    pub sell_window_id: Option<SellWindowId>,
    pub kind: Option<String>,
    pub undelivered_only: bool,
    /// Only those whose delivery failed for good.
    pub dead_only: bool,
    pub order: Order,
}

/// The order of a list: by its time (or sequence) then id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Oldest,
    Newest,
    /// Time descending, ties by id ascending (sell windows: the latest-closing first).
    LatestThenId,
}

impl Order {
    fn sql(self, at: &str, id: &str) -> String {
        match self {
            Order::Oldest => format!("{at}, {id}"),
            Order::Newest => format!("{at} DESC, {id} DESC"),
            Order::LatestThenId => format!("{at} DESC, {id}"),
        }
    }

    pub fn newest_first(newest: bool) -> Self {
        if newest { Order::Newest } else { Order::Oldest }
    }
}

/// A statement built from the conditions a filter sets, with its parameters in order.
struct Select {
    conditions: Vec<String>,
    binds: Vec<Bind>,
}

enum Bind {
    Text(String),
    Int(i64),
}

impl Select {
    fn new() -> Self {
        Self {
            conditions: Vec::new(),
            binds: Vec::new(),
        }
    }

    /// The next parameter's placeholder, bound to `value`.
    fn param(&mut self, value: Bind) -> String {
        self.binds.push(value);
        format!("${}", self.binds.len())
    }

    fn equals(&mut self, column: &str, value: Option<String>) {
        if let Some(v) = value {
            let p = self.param(Bind::Text(v));
            self.conditions.push(format!("{column} = {p}"));
        }
    }

    /// Rows after `cursor` in the list's order (`at_column` then `id_column`).
    fn after(&mut self, at_column: &str, id_column: &str, order: Order, cursor: Option<&Cursor>) {
        if let Some(c) = cursor {
            let at = self.param(Bind::Int(c.at));
            let at_again = self.param(Bind::Int(c.at));
            let id = self.param(Bind::Text(c.id.clone()));
            let (at_beyond, id_beyond) = match order {
                Order::Oldest => (">", ">"),
                Order::Newest => ("<", "<"),
                Order::LatestThenId => ("<", ">"),
            };
            self.conditions.push(format!(
                "({at_column} {at_beyond} {at} OR ({at_column} = {at_again} AND {id_column} {id_beyond} {id}))"
            ));
        }
    }

    fn where_clause(&self) -> String {
        if self.conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", self.conditions.join(" AND "))
        }
    }

    async fn fetch(self, store: &Store, sql: &str) -> StoreResult<Vec<AnyRow>> {
        let mut q = sqlx::query(sql);
        for b in self.binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Int(i) => q.bind(i),
            };
        }
        Ok(q.fetch_all(store.pool()).await?)
    }
}

/// Cuts the one extra row a page reads off, and says where the next page starts.
fn page<T>(mut items: Vec<T>, size: u32, cursor: impl Fn(&T) -> Cursor) -> Page<T> {
    let next = if items.len() > size as usize {
        items.truncate(size as usize);
        items.last().map(cursor)
    } else {
        None
    };
    Page { items, next }
}

fn limit(p: &PageRequest) -> i64 {
    i64::from(p.size) + 1
}

impl Store {
    /// Products, the newest first.
    pub async fn products(&self, p: &PageRequest) -> StoreResult<Page<ProductRow>> {
        let mut s = Select::new();
        s.after("created_at", "id", Order::LatestThenId, p.after.as_ref());
        let sql = format!(
            "SELECT id, created_at FROM products {} ORDER BY created_at DESC, id LIMIT {}",
            s.where_clause(),
            limit(p)
        );
        let mut products = Vec::new();
        for r in s.fetch(self, &sql).await? {
            let id = ProductId::parse(r.try_get::<String, _>("id")?)
                .map_err(|e| StoreError::Inconsistent(e.to_string()))?;
            let at: i64 = r.try_get("created_at")?;
            if let Some(row) = self.product(&id).await? {
                products.push((at, row));
            }
        }
        let page = page(products, p.size, |(at, row)| Cursor {
            at: *at,
            id: row.id.to_string(),
        });
        Ok(Page {
            items: page.items.into_iter().map(|(_, p)| p).collect(),
            next: page.next,
        })
    }

    /// Sell windows, the latest-closing first; `open_only`: those closing after `now`.
    pub async fn sell_windows(
        &self,
        open_only: bool,
        now: UnixMillis,
        p: &PageRequest,
    ) -> StoreResult<Page<SellWindowRow>> {
        let mut s = Select::new();
        if open_only {
            let t = s.param(Bind::Int(now.0));
            s.conditions.push(format!("close_at > {t}"));
        }
        s.after("close_at", "id", Order::LatestThenId, p.after.as_ref());
        let sql = format!(
            "SELECT id FROM sell_windows {} ORDER BY close_at DESC, id LIMIT {}",
            s.where_clause(),
            limit(p)
        );
        let mut windows = Vec::new();
        for r in s.fetch(self, &sql).await? {
            let id = SellWindowId::parse(r.try_get::<String, _>("id")?)
                .map_err(|e| StoreError::Inconsistent(e.to_string()))?;
            if let Some(w) = self.sell_window(&id).await? {
                windows.push(w);
            }
        }
        Ok(page(windows, p.size, |w| Cursor {
            at: w.close_at.0,
            id: w.id.to_string(),
        }))
    }

    /// Orders in the order they were taken.
    pub async fn orders(&self, f: &OrderFilter, p: &PageRequest) -> StoreResult<Page<OrderRow>> {
        let mut s = Select::new();
        s.equals(
            "o.sell_window_id",
            f.sell_window_id.as_ref().map(|v| v.to_string()),
        );
        s.equals("o.product_id", f.product_id.as_ref().map(|v| v.to_string()));
        s.equals(
            "o.customer_id",
            f.customer_id.as_ref().map(|v| v.to_string()),
        );
        s.equals("o.status", f.status.map(|v| v.as_str().to_string()));
        s.after("o.created_at", "o.id", f.order, p.after.as_ref());
        let sql = format!(
            "SELECT {} FROM orders o {} ORDER BY {} LIMIT {}",
            Self::ORDER_COLS,
            s.where_clause(),
            f.order.sql("o.created_at", "o.id"),
            limit(p)
        );
        let rows = s.fetch(self, &sql).await?;
        let orders = rows
            .iter()
            .map(Self::order_row)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page(orders, p.size, |o| Cursor {
            at: o.created_at,
            id: o.id.to_string(),
        }))
    }

    /// A window's business event log in order, after `after_seq`.
    pub async fn events(
        &self,
        sw: &SellWindowId,
        after_seq: i64,
        p: &PageRequest,
    ) -> StoreResult<Page<EventRow>> {
        let from = p.after.as_ref().map_or(after_seq, |c| c.at.max(after_seq));
        let rows = sqlx::query(&format!(
            "SELECT seq, name, sell_window_id, product_id, order_id, payload, occurred_at FROM events \
             WHERE sell_window_id = $1 AND seq > $2 ORDER BY seq LIMIT {}",
            limit(p)
        ))
        .bind(sw.as_str())
        .bind(from)
        .fetch_all(self.pool())
        .await?;
        let events = rows
            .iter()
            .map(|r| {
                Ok(EventRow {
                    seq: r.try_get("seq")?,
                    name: r.try_get("name")?,
                    sell_window_id: r.try_get("sell_window_id")?,
                    product_id: r.try_get("product_id")?,
                    order_id: r.try_get("order_id")?,
                    payload: r.try_get("payload")?,
                    occurred_at: r.try_get("occurred_at")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page(events, p.size, |e| Cursor {
            at: e.seq,
            id: String::new(),
        }))
    }

    /// Notifications, oldest first.
    pub async fn notifications(
        &self,
        f: &NotificationFilter,
        p: &PageRequest,
    ) -> StoreResult<Page<NotificationRow>> {
        let mut s = Select::new();
        if let Some(c) = &f.customer {
            s.conditions.push("recipient_kind = 'CUSTOMER'".into());
            s.equals("recipient_id", Some(c.to_string()));
        }
        s.equals(
            "sell_window_id",
            f.sell_window_id.as_ref().map(|v| v.to_string()),
        );
        s.equals("kind", f.kind.clone());
        if f.undelivered_only {
            s.conditions.push("delivered_at IS NULL".into());
        }
        if f.dead_only {
            s.conditions.push("dead_at IS NOT NULL".into());
        }
        s.after("created_at", "id", f.order, p.after.as_ref());
        let sql = format!(
            "SELECT id, recipient_kind, recipient_id, kind, sell_window_id, product_id, order_id, message, created_at, \
             delivered_at, dead_at, delivery_attempts, last_delivery_error \
             FROM notifications {} ORDER BY {} LIMIT {}",
            s.where_clause(),
            f.order.sql("created_at", "id"),
            limit(p)
        );
        let rows = s.fetch(self, &sql).await?;
        let notes = rows
            .iter()
            .map(|r| {
                Ok(NotificationRow {
                    id: r.try_get("id")?,
                    recipient_kind: r.try_get("recipient_kind")?,
                    recipient_id: r.try_get("recipient_id")?,
                    kind: r.try_get("kind")?,
                    sell_window_id: r.try_get("sell_window_id")?,
                    product_id: r.try_get("product_id")?,
                    order_id: r.try_get("order_id")?,
                    message: r.try_get("message")?,
                    created_at: r.try_get("created_at")?,
                    delivered: r.try_get::<Option<i64>, _>("delivered_at")?.is_some(),
                    delivery_status: match (
                        r.try_get::<Option<i64>, _>("delivered_at")?,
                        r.try_get::<Option<i64>, _>("dead_at")?,
                    ) {
                        (Some(_), _) => "DELIVERED",
                        (None, Some(_)) => "DEAD",
                        (None, None) => "PENDING",
                    },
                    delivery_attempts: u(r, "delivery_attempts")?,
                    last_delivery_error: r.try_get("last_delivery_error")?,
                })
            })
            .collect::<StoreResult<Vec<_>>>()?;
        Ok(page(notes, p.size, |n| Cursor {
            at: n.created_at,
            id: n.id.clone(),
        }))
    }

    /// Work orders with their steps, oldest first; one window's, or the one named `id`.
    pub async fn work_orders(
        &self,
        sw: Option<&SellWindowId>,
        id: Option<&WorkOrderId>,
        p: &PageRequest,
    ) -> StoreResult<Page<WorkOrderRow>> {
        let mut s = Select::new();
        s.equals("sell_window_id", sw.map(|v| v.to_string()));
        s.equals("id", id.map(|v| v.to_string()));
        s.after("created_at", "id", Order::Oldest, p.after.as_ref());
        let sql = format!(
            "SELECT id, batch_id, sell_window_id, product_id, product_qty, status, created_at FROM work_orders {} \
             ORDER BY created_at, id LIMIT {}",
            s.where_clause(),
            limit(p)
        );
        let mut out = Vec::new();
        for r in s.fetch(self, &sql).await? {
            let id: String = r.try_get("id")?;
            out.push((
                r.try_get::<i64, _>("created_at")?,
                self.work_order_row(&r, id).await?,
            ));
        }
        let page = page(out, p.size, |(at, w)| Cursor {
            at: *at,
            id: w.id.clone(),
        });
        Ok(Page {
            items: page.items.into_iter().map(|(_, w)| w).collect(),
            next: page.next,
        })
    }

    async fn work_order_row(&self, r: &AnyRow, id: String) -> StoreResult<WorkOrderRow> {
        let steps = sqlx::query(
            "SELECT id, position, name, status FROM work_steps WHERE work_order_id = $1 ORDER BY position",
        )
        .bind(&id)
        .fetch_all(self.pool())
        .await?
        .iter()
        .map(|s| {
            Ok((
                s.try_get("id")?,
                u(s, "position")?,
                s.try_get("name")?,
                s.try_get("status")?,
            ))
        })
        .collect::<StoreResult<Vec<_>>>()?;
        let bad = |e: DomainError| StoreError::Inconsistent(e.to_string());
        Ok(WorkOrderRow {
            id,
            batch_id: r.try_get("batch_id")?,
            sell_window_id: SellWindowId::parse(r.try_get::<String, _>("sell_window_id")?)
                .map_err(bad)?,
            product_id: ProductId::parse(r.try_get::<String, _>("product_id")?).map_err(bad)?,
            product_qty: u(r, "product_qty")?,
            status: r.try_get("status")?,
            steps,
        })
    }

    /// One work order with its steps.
    pub async fn work_order(&self, id: &WorkOrderId) -> StoreResult<Option<WorkOrderRow>> {
        let one = PageRequest {
            after: None,
            size: 1,
        };
        Ok(self.work_orders(None, Some(id), &one).await?.items.pop())
    }
}
