//! What the API reads and writes directly: the catalog (the seed's Catalog service writes
//! products, sell windows and listings, then announces `sell_window.created`), the lists shown
//! to admins and customers, idempotency keys and provider callbacks.

use crate::store::{self, Store, StoreError, StoreResult, i, u};
use sellwindow_domain::*;
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

/// How a stored first answer names the order it gave: `reserved:<order id>`. The order row
/// is written in the same transaction, so a retry reads the order back.
pub const RESERVED_ANSWER: &str = "reserved:";

/// An idempotency key's first answer as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAnswerRow {
    pub request_hash: String,
    pub response: String,
}

/// A first answer to store under a customer's idempotency key.
#[derive(Debug, Clone)]
pub struct NewStoredAnswer {
    pub customer_id: CustomerId,
    pub idempotency_key: String,
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

#[derive(Debug, Clone)]
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

impl Store {
    pub async fn create_product(
        &self,
        id: &ProductId,
        name: &str,
        price: &Money,
        steps: &[String],
        at: UnixMillis,
    ) -> StoreResult<ProductRow> {
        let steps: Vec<String> = if steps.is_empty() {
            DEFAULT_WORK_STEPS.iter().map(|s| s.to_string()).collect()
        } else {
            steps.to_vec()
        };
        sqlx::query(
            "INSERT INTO products (id, name, currency, unit_price_minor, work_steps, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(price.currency.as_str())
        .bind(price.amount_minor)
        .bind(serde_json::to_string(&steps).expect("strings serialize"))
        .bind(at.0)
        .execute(self.pool())
        .await?;
        self.product(id)
            .await?
            .ok_or_else(|| StoreError::Inconsistent("product vanished".into()))
    }

    pub async fn product(&self, id: &ProductId) -> StoreResult<Option<ProductRow>> {
        let row = sqlx::query(
            "SELECT id, name, currency, unit_price_minor, work_steps FROM products WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.map(|r| {
            Ok(ProductRow {
                id: ProductId::parse(r.try_get::<String, _>("id")?)
                    .map_err(|e| StoreError::Inconsistent(e.to_string()))?,
                name: r.try_get("name")?,
                unit_price: money(&r, "currency", "unit_price_minor")?,
                work_steps: serde_json::from_str(&r.try_get::<String, _>("work_steps")?)
                    .map_err(|e| StoreError::Inconsistent(e.to_string()))?,
            })
        })
        .transpose()
    }

    /// Writes the window, its listings, their quota rows and counters, and one
    /// `sell_window.created` event per listing, in one transaction. Returns false when the
    /// window existed already (a retried create).
    pub async fn create_sell_window(
        &self,
        id: &SellWindowId,
        name: &str,
        close_at: UnixMillis,
        listings: &[(NewListing, String)],
        at: UnixMillis,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let created = sqlx::query(
            "INSERT INTO sell_windows (id, name, close_at, created_at) VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(name)
        .bind(close_at.0)
        .bind(at.0)
        .execute(&mut *tx)
        .await?;
        if created.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        for (l, workflow_id) in listings {
            let p = l.product_id.as_str();
            sqlx::query(
                "INSERT INTO product_sell_windows (sell_window_id, product_id, min_qty, max_qty, payment_window_ms, per_customer_limit, min_paid_policy, workflow_id, phase, workflow_type) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'OPEN', 'SellWindow')",
            )
            .bind(id.as_str())
            .bind(p)
            .bind(i(l.min_qty))
            .bind(i(l.max_qty))
            .bind(l.payment_window_ms)
            .bind(l.per_customer_limit.map(i))
            .bind(l.min_paid_policy.as_str())
            .bind(workflow_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO sell_window_quota (sell_window_id, product_id, min_qty, max_qty, sold_qty, status) VALUES ($1, $2, $3, $4, 0, 'OPEN')",
            )
            .bind(id.as_str())
            .bind(p)
            .bind(i(l.min_qty))
            .bind(i(l.max_qty))
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO counters (sell_window_id, product_id, threshold_qty, reserved_qty, paid_qty, status) VALUES ($1, $2, $3, 0, 0, 'OPEN')",
            )
            .bind(id.as_str())
            .bind(p)
            .bind(i(l.min_qty))
            .execute(&mut *tx)
            .await?;
            store::emit(
                &mut tx,
                self.backend(),
                &format!("sell_window.created:{id}:{p}"),
                "sell_window.created",
                Some(id),
                Some(&l.product_id),
                None,
                &json!({"sellWindowId": id, "productId": p, "minQty": l.min_qty, "maxQty": l.max_qty, "closeAt": close_at}),
                at,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    pub async fn sell_window_exists(&self, id: &SellWindowId) -> StoreResult<bool> {
        Ok(sqlx::query("SELECT id FROM sell_windows WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(self.pool())
            .await?
            .is_some())
    }

    pub async fn sell_window(&self, id: &SellWindowId) -> StoreResult<Option<SellWindowRow>> {
        let Some(r) =
            sqlx::query("SELECT id, name, close_at, created_at FROM sell_windows WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(self.pool())
                .await?
        else {
            return Ok(None);
        };
        Ok(Some(SellWindowRow {
            id: id.clone(),
            name: r.try_get("name")?,
            close_at: UnixMillis(r.try_get("close_at")?),
            created_at: UnixMillis(r.try_get("created_at")?),
            listings: self.listings(id).await?,
        }))
    }

    pub async fn listings(&self, sw: &SellWindowId) -> StoreResult<Vec<ListingRow>> {
        let rows = sqlx::query(
            "SELECT l.product_id, p.name AS product_name, p.currency, p.unit_price_minor, l.min_qty, l.max_qty, l.payment_window_ms, \
                    l.per_customer_limit, l.min_paid_policy, l.workflow_id, l.phase, q.sold_qty, q.status AS quota_status, \
                    c.reserved_qty, c.paid_qty, c.status AS threshold_status, c.final_paid_qty, b.status AS batch_status, w.id AS work_order_id \
             FROM product_sell_windows l \
             JOIN products p ON p.id = l.product_id \
             JOIN sell_window_quota q ON q.sell_window_id = l.sell_window_id AND q.product_id = l.product_id \
             JOIN counters c ON c.sell_window_id = l.sell_window_id AND c.product_id = l.product_id \
             LEFT JOIN batches b ON b.sell_window_id = l.sell_window_id AND b.product_id = l.product_id \
             LEFT JOIN work_orders w ON w.sell_window_id = l.sell_window_id AND w.product_id = l.product_id \
             WHERE l.sell_window_id = $1 ORDER BY l.product_id",
        )
        .bind(sw.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ListingRow {
                    product_id: ProductId::parse(r.try_get::<String, _>("product_id")?)
                        .map_err(|e| StoreError::Inconsistent(e.to_string()))?,
                    product_name: r.try_get("product_name")?,
                    unit_price: money(r, "currency", "unit_price_minor")?,
                    min_qty: u(r, "min_qty")?,
                    max_qty: u(r, "max_qty")?,
                    payment_window_ms: r.try_get("payment_window_ms")?,
                    per_customer_limit: opt_u(r, "per_customer_limit")?,
                    min_paid_policy: parse_enum(
                        r.try_get("min_paid_policy")?,
                        MinPaidPolicy::parse,
                    )?,
                    workflow_id: r.try_get("workflow_id")?,
                    phase: parse_enum(r.try_get("phase")?, Phase::parse)?,
                    sold_qty: u(r, "sold_qty")?,
                    quota_status: parse_enum(r.try_get("quota_status")?, QuotaStatus::parse)?,
                    reserved_qty: u(r, "reserved_qty")?,
                    paid_qty: u(r, "paid_qty")?,
                    threshold_status: parse_enum(
                        r.try_get("threshold_status")?,
                        ThresholdStatus::parse,
                    )?,
                    final_paid_qty: opt_u(r, "final_paid_qty")?,
                    batch_status: r
                        .try_get::<Option<String>, _>("batch_status")?
                        .and_then(|s| BatchStatus::parse(&s))
                        .unwrap_or(BatchStatus::Pending),
                    work_order_id: r.try_get("work_order_id")?,
                })
            })
            .collect()
    }

    pub(crate) const ORDER_COLS: &'static str = "o.id, o.sell_window_id, o.product_id, o.customer_id, o.qty, o.currency, o.amount_minor, o.status, \
        o.payment_due_at, o.payment_failed_count, o.last_payment_error, o.created_at, \
        (SELECT p.id FROM payments p WHERE p.order_id = o.id ORDER BY p.attempt DESC LIMIT 1) AS payment_id, \
        (SELECT p.pay_url FROM payments p WHERE p.order_id = o.id ORDER BY p.attempt DESC LIMIT 1) AS pay_url";

    pub(crate) fn order_row(r: &AnyRow) -> StoreResult<OrderRow> {
        Ok(OrderRow {
            id: OrderId::parse(r.try_get::<String, _>("id")?)
                .map_err(|e| StoreError::Inconsistent(e.to_string()))?,
            sell_window_id: r.try_get("sell_window_id")?,
            product_id: r.try_get("product_id")?,
            customer_id: r.try_get("customer_id")?,
            qty: u(r, "qty")?,
            amount: money(r, "currency", "amount_minor")?,
            status: r.try_get("status")?,
            payment_due_at: r.try_get("payment_due_at")?,
            payment_id: r.try_get("payment_id")?,
            pay_url: r.try_get("pay_url")?,
            payment_failed_count: u(r, "payment_failed_count")?,
            last_payment_error: r.try_get("last_payment_error")?,
            created_at: r.try_get("created_at")?,
        })
    }

    pub async fn order(&self, id: &OrderId) -> StoreResult<Option<OrderRow>> {
        let r = sqlx::query(&format!(
            "SELECT {} FROM orders o WHERE o.id = $1 AND o.voided_at IS NULL",
            Self::ORDER_COLS
        ))
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        r.as_ref().map(Self::order_row).transpose()
    }

    pub async fn payment(&self, id: &PaymentId) -> StoreResult<Option<PaymentRow>> {
        let r = sqlx::query(
            "SELECT id, order_id, sell_window_id, product_id, customer_id, currency, amount_minor, status, pay_url FROM payments WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(self.pool())
        .await?;
        r.map(|r| {
            let bad = |e: DomainError| StoreError::Inconsistent(e.to_string());
            Ok(PaymentRow {
                id: PaymentId::parse(r.try_get::<String, _>("id")?).map_err(bad)?,
                order_id: OrderId::parse(r.try_get::<String, _>("order_id")?).map_err(bad)?,
                sell_window_id: SellWindowId::parse(r.try_get::<String, _>("sell_window_id")?)
                    .map_err(bad)?,
                product_id: ProductId::parse(r.try_get::<String, _>("product_id")?).map_err(bad)?,
                customer_id: r.try_get("customer_id")?,
                amount: money(&r, "currency", "amount_minor")?,
                status: r.try_get("status")?,
                pay_url: r.try_get("pay_url")?,
            })
        })
        .transpose()
    }

    /// The first answers stored under (customer, idempotency key) pairs, with their requests'
    /// hashes, in the order asked (`None` where a key is new). One statement per 500 keys: the
    /// API looks up a whole group of concurrent reservations at once.
    pub async fn idempotent_answers(
        &self,
        keys: &[(CustomerId, String)],
    ) -> StoreResult<Vec<Option<StoredAnswerRow>>> {
        let mut found = std::collections::HashMap::new();
        for chunk in keys.chunks(store::ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT customer_id, idempotency_key, request_hash, response FROM idempotency_keys \
                 WHERE (customer_id, idempotency_key) IN (VALUES {})",
                store::placeholders(chunk.len(), 2)
            );
            let mut q = sqlx::query(&sql);
            for (c, k) in chunk {
                q = q.bind(c.as_str()).bind(k.as_str());
            }
            for r in q.fetch_all(self.pool()).await? {
                found.insert(
                    (
                        r.try_get::<String, _>("customer_id")?,
                        r.try_get::<String, _>("idempotency_key")?,
                    ),
                    StoredAnswerRow {
                        request_hash: r.try_get("request_hash")?,
                        response: r.try_get("response")?,
                    },
                );
            }
        }
        Ok(keys
            .iter()
            .map(|(c, k)| found.get(&(c.as_str().to_string(), k.clone())).cloned())
            .collect())
    }

    /// Stores first answers, one statement per 500. Where a concurrent first writer got there
    /// before, its answer wins and is returned in that position instead.
    pub async fn save_idempotent_answers(
        &self,
        answers: &[NewStoredAnswer],
        at: UnixMillis,
    ) -> StoreResult<Vec<StoredAnswerRow>> {
        let mut taken = std::collections::HashSet::new();
        for chunk in answers.chunks(store::ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO idempotency_keys (customer_id, idempotency_key, request_hash, response, created_at) VALUES {} \
                 ON CONFLICT (customer_id, idempotency_key) DO NOTHING RETURNING customer_id, idempotency_key",
                store::placeholders(chunk.len(), 5)
            );
            let mut q = sqlx::query(&sql);
            for a in chunk {
                q = q
                    .bind(a.customer_id.as_str())
                    .bind(a.idempotency_key.as_str())
                    .bind(a.request_hash.as_str())
                    .bind(a.response.as_str())
                    .bind(at.0);
            }
            for r in q.fetch_all(self.pool()).await? {
                taken.insert((
                    r.try_get::<String, _>("customer_id")?,
                    r.try_get::<String, _>("idempotency_key")?,
                ));
            }
        }
        let key = |a: &NewStoredAnswer| {
            (
                a.customer_id.as_str().to_string(),
                a.idempotency_key.clone(),
            )
        };
        let lost: Vec<(CustomerId, String)> = answers
            .iter()
            .filter(|a| !taken.contains(&key(a)))
            .map(|a| (a.customer_id.clone(), a.idempotency_key.clone()))
            .collect();
        let earlier: std::collections::HashMap<_, _> = if lost.is_empty() {
            Default::default()
        } else {
            let rows = self.idempotent_answers(&lost).await?;
            lost.iter()
                .map(|(c, k)| (c.as_str().to_string(), k.clone()))
                .zip(rows)
                .filter_map(|(k, r)| r.map(|r| (k, r)))
                .collect()
        };
        let mut first: std::collections::HashMap<(String, String), StoredAnswerRow> =
            Default::default();
        let mut out = Vec::with_capacity(answers.len());
        for a in answers {
            let k = key(a);
            // Two copies of one key in the same group: the first one's answer stands for both.
            let row = first.entry(k.clone()).or_insert_with(|| {
                let mine = StoredAnswerRow {
                    request_hash: a.request_hash.clone(),
                    response: a.response.clone(),
                };
                if taken.contains(&k) {
                    mine
                } else {
                    earlier.get(&k).cloned().unwrap_or(mine)
                }
            });
            out.push(row.clone());
        }
        Ok(out)
    }

    /// Stores a hand-over part; storing it again (a retried activity) writes the same data.
    pub async fn save_handover_part(
        &self,
        p: &sellwindow_workflows::legacy::inputs::HandoverPart,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO handover_parts (token, part, sell_window_id, product_id, data, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (token, part) DO UPDATE SET data = excluded.data",
        )
        .bind(p.token.as_str())
        .bind(i64::from(p.part))
        .bind(p.listing.sell_window_id.as_str())
        .bind(p.listing.product_id.as_str())
        .bind(p.data.as_str())
        .bind(p.at.0)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn load_handover_part(
        &self,
        r: &sellwindow_workflows::legacy::inputs::HandoverPartRef,
    ) -> StoreResult<String> {
        let row = sqlx::query("SELECT data FROM handover_parts WHERE token = $1 AND part = $2")
            .bind(r.token.as_str())
            .bind(i64::from(r.part))
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| {
                StoreError::Inconsistent(format!(
                    "hand-over part {} of {} is missing",
                    r.part, r.token
                ))
            })?;
        Ok(row.try_get("data")?)
    }

    /// Deletes every hand-over part of a listing (also those of a hand-over that was redone).
    pub async fn drop_handover(
        &self,
        listing: &sellwindow_workflows::legacy::inputs::ListingKey,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM handover_parts WHERE sell_window_id = $1 AND product_id = $2")
            .bind(listing.sell_window_id.as_str())
            .bind(listing.product_id.as_str())
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Records a verified provider callback in its listing's inbox. Returns false when its
    /// event id was handed to the listing already (a replay: nothing changes twice).
    pub async fn record_callback(
        &self,
        r: &PaymentResult,
        listing: &ListingKey,
        at: UnixMillis,
    ) -> StoreResult<bool> {
        sqlx::query(
            "INSERT INTO payment_callbacks (event_id, payment_id, outcome, received_at, order_id, sell_window_id, product_id, error, occurred_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&r.event_id)
        .bind(r.payment_id.as_str())
        .bind(r.outcome.as_str())
        .bind(at.0)
        .bind(r.order_id.as_str())
        .bind(listing.sell_window_id.as_str())
        .bind(listing.product_id.as_str())
        .bind(r.error.as_deref())
        .bind(r.occurred_at.0)
        .execute(self.pool())
        .await?;
        let event_id = r.event_id.as_str();
        let r = sqlx::query("SELECT signalled_at FROM payment_callbacks WHERE event_id = $1")
            .bind(event_id)
            .fetch_one(self.pool())
            .await?;
        Ok(r.try_get::<Option<i64>, _>("signalled_at")?.is_none())
    }

    /// Records a verified callback whose amount is not its payment's: never counted, noted on
    /// the payment, and the admin told (once per event). Returns false for a replay.
    pub async fn record_mismatched_callback(
        &self,
        r: &PaymentResult,
        said: &str,
        expected: &Money,
        at: UnixMillis,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let note = format!("amount mismatch: reported {said}, expected {expected}");
        let new = sqlx::query(
            "INSERT INTO payment_callbacks (event_id, payment_id, outcome, received_at, signalled_at, note) \
             VALUES ($1, $2, $3, $4, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&r.event_id)
        .bind(r.payment_id.as_str())
        .bind(r.outcome.as_str())
        .bind(at.0)
        .bind(&note)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if new {
            sqlx::query("UPDATE payments SET last_error = $1, updated_at = $2 WHERE id = $3")
                .bind(&note)
                .bind(at.0)
                .bind(r.payment_id.as_str())
                .execute(&mut *tx)
                .await?;
            let n = store::Notification {
                id: format!(
                    "ntf-{}",
                    digest(&["payment_amount_mismatch", "admin", &r.event_id])
                ),
                recipient: store::Recipient::Admin,
                recipient_id: "admin".into(),
                kind: "payment_amount_mismatch".into(),
                sell_window_id: None,
                product_id: None,
                order_id: Some(r.order_id.clone()),
                message: format!(
                    "Payment {} for order {} was reported {} with {said}, not the order's {expected}: it was not counted. Check it with the provider.",
                    r.payment_id, r.order_id, r.outcome
                ),
                created_at: at,
            };
            store::save_notification(&mut tx, &n).await?;
        }
        tx.commit().await?;
        Ok(new)
    }

    /// The workflow type running a listing (the first shape's listings take their payment
    /// outcomes as signals; the current one reads its inbox).
    pub async fn listing_workflow_type(&self, listing: &ListingKey) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT workflow_type FROM product_sell_windows WHERE sell_window_id = $1 AND product_id = $2",
        )
        .bind(listing.sell_window_id.as_str())
        .bind(listing.product_id.as_str())
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn mark_callback_signalled(&self, event_id: &str, at: UnixMillis) -> StoreResult<()> {
        sqlx::query("UPDATE payment_callbacks SET signalled_at = $1 WHERE event_id = $2 AND signalled_at IS NULL")
            .bind(at.0)
            .bind(event_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The quota row and the sum over the orders holding quota, for consistency checks.
    pub async fn quota_check(
        &self,
        sw: &SellWindowId,
        p: &ProductId,
    ) -> StoreResult<(u32, u32, u32)> {
        let r = sqlx::query(
            "SELECT q.sold_qty, q.max_qty, (SELECT CAST(COALESCE(SUM(o.qty), 0) AS BIGINT) FROM orders o WHERE o.sell_window_id = q.sell_window_id \
             AND o.product_id = q.product_id AND o.status IN ('RESERVED', 'PAYMENT_REQUESTED', 'PAID')) AS held \
             FROM sell_window_quota q WHERE q.sell_window_id = $1 AND q.product_id = $2",
        )
        .bind(sw.as_str())
        .bind(p.as_str())
        .fetch_one(self.pool())
        .await?;
        Ok((u(&r, "sold_qty")?, u(&r, "max_qty")?, u(&r, "held")?))
    }
}

impl Store {
    /// A notification for the admin from the API itself (idempotent by `about`).
    pub async fn notify_admin(
        &self,
        kind: &str,
        about: &str,
        message: &str,
        at: UnixMillis,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let n = store::Notification {
            id: format!("ntf-{}", digest(&[kind, "admin", about])),
            recipient: store::Recipient::Admin,
            recipient_id: "admin".into(),
            kind: kind.into(),
            sell_window_id: None,
            product_id: None,
            order_id: None,
            message: message.into(),
            created_at: at,
        };
        store::save_notification(&mut tx, &n).await?;
        tx.commit().await?;
        Ok(())
    }
}
