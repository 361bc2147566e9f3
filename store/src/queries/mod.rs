//! What the API reads and writes directly: the catalog (the seed's Catalog service writes
//! products, sell windows and listings, then announces `sell_window.created`), the lists shown
//! to admins and customers, idempotency keys and provider callbacks.

use crate::db::{self, Store, StoreError, StoreResult, i, u};
use sellwindow_domain::*;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

mod answers;
mod callbacks;
mod catalog;
mod progress;

pub use answers::first_answers;
pub use progress::next_due;

/// How a stored first answer names the order it gave: `reserved:<order id>` (a refusal is
/// stored as its [`Refusal`]'s JSON). The order row is written in the same transaction, so a
/// retry reads the order back.
pub const RESERVED_ANSWER: &str = "reserved:";

/// An idempotency key's first answer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswerRow {
    pub request_hash: String,
    pub response: String,
}

#[derive(Debug, Clone)]
pub struct ProductRow {
    pub id: ProductId,
    pub name: String,
    pub unit_price: Money,
    pub work_steps: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ListingRow {
    pub product_id: ProductId,
    pub product_name: String,
    pub unit_price: Money,
    pub min_qty: u32,
    pub max_qty: u32,
    pub payment_window_ms: i64,
    pub per_customer_limit: Option<u32>,
    pub min_paid_policy: MinPaidPolicy,
    pub workflow_id: String,
    pub phase: Phase,
    pub sold_qty: u32,
    pub quota_status: QuotaStatus,
    pub reserved_qty: u32,
    pub paid_qty: u32,
    pub threshold_status: ThresholdStatus,
    pub final_paid_qty: Option<u32>,
    pub batch_status: BatchStatus,
    pub work_order_id: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SellWindowRow {
    pub id: SellWindowId,
    pub name: String,
    pub close_at: UnixMillis,
    pub created_at: UnixMillis,
    pub listings: Vec<ListingRow>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OrderRow {
    pub id: OrderId,
    pub sell_window_id: String,
    pub product_id: String,
    pub customer_id: String,
    pub qty: u32,
    pub amount: Money,
    pub status: String,
    pub payment_due_at: Option<i64>,
    pub payment_id: Option<String>,
    pub pay_url: Option<String>,
    pub payment_failed_count: u32,
    pub last_payment_error: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct EventRow {
    pub seq: i64,
    pub name: String,
    pub sell_window_id: Option<String>,
    pub product_id: Option<String>,
    pub order_id: Option<String>,
    pub payload: String,
    pub occurred_at: i64,
}

#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub id: String,
    pub recipient_kind: String,
    pub recipient_id: String,
    pub kind: String,
    pub sell_window_id: Option<String>,
    pub product_id: Option<String>,
    pub order_id: Option<String>,
    pub message: String,
    pub created_at: i64,
    pub delivered: bool,
    /// PENDING, DELIVERED, or DEAD (every attempt failed).
    pub delivery_status: &'static str,
    pub delivery_attempts: u32,
    pub last_delivery_error: Option<String>,
}

#[derive(Debug, Clone)]
pub struct WorkOrderRow {
    pub id: String,
    pub batch_id: String,
    pub sell_window_id: SellWindowId,
    pub product_id: ProductId,
    pub product_qty: u32,
    pub status: String,
    pub steps: Vec<(String, u32, String, String)>,
}

#[derive(Debug, Clone)]
pub struct PaymentRow {
    pub id: PaymentId,
    pub order_id: OrderId,
    pub sell_window_id: SellWindowId,
    pub product_id: ProductId,
    pub customer_id: String,
    pub amount: Money,
    pub status: String,
    pub pay_url: String,
}

/// A new listing as the admin describes it.
#[derive(Debug, Clone)]
pub struct NewListing {
    pub product_id: ProductId,
    pub min_qty: u32,
    pub max_qty: u32,
    pub payment_window_ms: i64,
    pub per_customer_limit: Option<u32>,
    pub min_paid_policy: MinPaidPolicy,
}

pub use sellwindow_workflows::machine::DEFAULT_WORK_STEPS;

fn money(row: &AnyRow, cur: &str, amt: &str) -> StoreResult<Money> {
    let currency = Currency::parse(row.try_get::<String, _>(cur)?)
        .map_err(|e| StoreError::Inconsistent(e.to_string()))?;
    Ok(Money {
        currency,
        amount_minor: row.try_get(amt)?,
    })
}

fn opt_u(row: &AnyRow, col: &str) -> StoreResult<Option<u32>> {
    Ok(row.try_get::<Option<i64>, _>(col)?.map(|v| v as u32))
}

fn parse_enum<T>(v: String, f: fn(&str) -> Option<T>) -> StoreResult<T> {
    f(&v).ok_or_else(|| StoreError::Inconsistent(format!("unknown status {v}")))
}
