//! Products, sell windows and listings (the seed's Catalog), and single orders and payments.

use super::*;

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
                "INSERT INTO product_sell_windows (sell_window_id, product_id, min_qty, max_qty, payment_window_ms, per_customer_limit, min_paid_policy, workflow_id, phase) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'OPEN')",
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
            db::emit(
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
        let mut conn = self.pool().acquire().await?;
        Self::order_on(&mut conn, id).await
    }

    /// [`Store::order`] on a connection of the caller's (inside its transaction).
    pub async fn order_on(
        conn: &mut sqlx::AnyConnection,
        id: &OrderId,
    ) -> StoreResult<Option<OrderRow>> {
        let r = sqlx::query(&format!(
            "SELECT {} FROM orders o WHERE o.id = $1",
            Self::ORDER_COLS
        ))
        .bind(id.as_str())
        .fetch_optional(conn)
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
}
