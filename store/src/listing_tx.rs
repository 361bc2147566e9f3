//! One transaction's worth of changes to a listing by one of its workflow's writes: its
//! statements under the listing's lock (the quota row's), the seed's events it appends (in one
//! multi-row statement), and the notifications it persists, handed to the sink only once the
//! transaction has committed.

use crate::db::{self, Backend, Notification, Recipient, Store, StoreError, Tx};
use crate::notify::NotificationSink;
use sellwindow_domain::*;
use sellwindow_workflows::machine::QuotaRow;
use serde_json::json;
use std::sync::Arc;

/// One write's transaction on a listing, with the events and notifications it produced.
pub struct ListingTx {
    pub tx: Tx<'static>,
    pub backend: Backend,
    listing: ListingKey,
    at: UnixMillis,
    /// Events waiting to be appended in one statement (flushed before any other event).
    queued: Vec<db::NewEvent>,
    /// Events that follow all the others of the transaction (the seed's second step of a
    /// fan-out: every `payment.requested`, then every `payment.created`).
    last: Vec<db::NewEvent>,
    notes: Vec<Notification>,
}

impl ListingTx {
    pub async fn begin(
        store: &Store,
        listing: &ListingKey,
        at: UnixMillis,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            tx: store.begin().await?,
            backend: store.backend(),
            listing: listing.clone(),
            at,
            queued: Vec::new(),
            last: Vec::new(),
            notes: Vec::new(),
        })
    }

    pub fn new_event(
        &self,
        key: &str,
        name: &str,
        order: Option<&OrderId>,
        payload: serde_json::Value,
    ) -> db::NewEvent {
        let mut payload = payload;
        payload["sellWindowId"] = json!(self.listing.sell_window_id);
        payload["productId"] = json!(self.listing.product_id);
        db::NewEvent {
            key: key.to_string(),
            name: name.to_string(),
            sell_window: Some(self.listing.sell_window_id.clone()),
            product: Some(self.listing.product_id.clone()),
            order: order.cloned(),
            payload,
            at: self.at,
        }
    }

    /// Appends an event after the queued ones; returns whether it was new.
    pub async fn event(
        &mut self,
        key: &str,
        name: &str,
        order: Option<&OrderId>,
        payload: serde_json::Value,
    ) -> Result<bool, StoreError> {
        self.queue(key, name, order, payload);
        let last = self.queued.pop().expect("just queued");
        self.flush().await?;
        Ok(db::emit_all(&mut self.tx, self.backend, std::slice::from_ref(&last)).await? == 1)
    }

    /// Queues an event to be appended after every other event of the transaction.
    pub fn queue_last(
        &mut self,
        key: &str,
        name: &str,
        order: Option<&OrderId>,
        payload: serde_json::Value,
    ) {
        let e = self.new_event(key, name, order, payload);
        self.last.push(e);
    }

    /// Queues a per-order event; queued events are appended together, in order.
    pub fn queue(
        &mut self,
        key: &str,
        name: &str,
        order: Option<&OrderId>,
        payload: serde_json::Value,
    ) {
        let e = self.new_event(key, name, order, payload);
        self.queued.push(e);
    }

    pub async fn flush(&mut self) -> Result<(), StoreError> {
        if !self.queued.is_empty() {
            db::emit_all(&mut self.tx, self.backend, &self.queued).await?;
            self.queued.clear();
        }
        Ok(())
    }

    pub async fn notify(
        &mut self,
        recipient: Recipient,
        recipient_id: &str,
        kind: &str,
        about: &str,
        order: Option<&OrderId>,
        message: String,
    ) -> Result<(), StoreError> {
        self.note(recipient, recipient_id, kind, about, order, message);
        Ok(())
    }

    /// Queues a notification, persisted with the transaction. Its id follows from what it is
    /// about, so a person is told of one change once.
    pub fn note(
        &mut self,
        recipient: Recipient,
        recipient_id: &str,
        kind: &str,
        about: &str,
        order: Option<&OrderId>,
        message: String,
    ) {
        let n = Notification {
            id: format!("ntf-{}", digest(&[kind, recipient_id, about])),
            recipient,
            recipient_id: recipient_id.to_string(),
            kind: kind.to_string(),
            sell_window_id: Some(self.listing.sell_window_id.clone()),
            product_id: Some(self.listing.product_id.clone()),
            order_id: order.cloned(),
            message,
            created_at: self.at,
        };
        self.notes.push(n);
    }

    /// Production starts: `production.scheduled`, the work order (READY, `qty` units) and its
    /// steps (TODO) inserted idempotently by id, `production.started`, and the listing
    /// IN_PRODUCTION. Both shapes of the listing close this way.
    pub async fn start_production(
        &mut self,
        batch_id: &BatchId,
        qty: u32,
        work_order_id: &WorkOrderId,
        steps: &[(StepId, String)],
    ) -> Result<(), StoreError> {
        self.event(
            &format!("production.scheduled:{batch_id}"),
            "production.scheduled",
            None,
            json!({"batchId": batch_id, "productionQty": qty}),
        )
        .await?;
        sqlx::query(
            "INSERT INTO work_orders (id, batch_id, sell_window_id, product_id, product_qty, status, created_at) \
             VALUES ($1, $2, $3, $4, $5, 'READY', $6) ON CONFLICT (id) DO NOTHING",
        )
        .bind(work_order_id.as_str())
        .bind(batch_id.as_str())
        .bind(self.listing.sell_window_id.as_str())
        .bind(self.listing.product_id.as_str())
        .bind(db::i(qty))
        .bind(self.at.0)
        .execute(&mut *self.tx)
        .await?;
        for (position, (step, name)) in steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO work_steps (id, work_order_id, position, name, status) VALUES ($1, $2, $3, $4, 'TODO') ON CONFLICT (id) DO NOTHING",
            )
            .bind(step.as_str())
            .bind(work_order_id.as_str())
            .bind(position as i64 + 1)
            .bind(name)
            .execute(&mut *self.tx)
            .await?;
        }
        self.event(
            &format!("production.started:{work_order_id}"),
            "production.started",
            None,
            json!({"batchId": batch_id, "workOrderId": work_order_id}),
        )
        .await?;
        self.set_phase(Phase::InProduction).await
    }

    pub async fn set_phase(&mut self, phase: Phase) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE product_sell_windows SET phase = $1 WHERE sell_window_id = $2 AND product_id = $3",
        )
        .bind(phase.as_str())
        .bind(self.listing.sell_window_id.as_str())
        .bind(self.listing.product_id.as_str())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Commits, then hands what was newly persisted to the sink in the background: a slow
    /// sink never holds the activity open. Whatever is not delivered keeps `delivered_at`
    /// empty and is retried by the worker's redelivery loop.
    pub async fn commit(
        mut self,
        store: &Store,
        sink: &Arc<dyn NotificationSink>,
    ) -> Result<(), StoreError> {
        self.flush().await?;
        let last = std::mem::take(&mut self.last);
        self.queued = last;
        self.flush().await?;
        // Claimed for the delivery below, so no worker's redelivery sends them meanwhile.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let lease = crate::notify::Redelivery::default().lease.as_millis() as i64;
        let new = db::save_notifications(
            &mut self.tx,
            &self.notes,
            Some(UnixMillis(wall).plus_ms(lease)),
        )
        .await?;
        self.tx.commit().await?;
        let fresh: Vec<Notification> = self
            .notes
            .into_iter()
            .filter(|n| new.contains(&n.id))
            .collect();
        if fresh.is_empty() {
            return Ok(());
        }
        let (store, sink, at) = (store.clone(), sink.clone(), self.at);
        tokio::spawn(async move {
            let mut delivered = Vec::new();
            for n in &fresh {
                match sink.deliver(n).await {
                    Ok(()) => delivered.push(n.id.as_str()),
                    Err(e) => {
                        tracing::warn!(notification = %n.id, error = %e, "notification not delivered")
                    }
                }
            }
            if let Err(e) = db::mark_delivered_all(&store, &delivered, at).await {
                tracing::warn!(error = %e, "delivered notifications not marked");
            }
        });
        Ok(())
    }
}

pub fn listing_name(l: &ListingKey) -> String {
    format!("{} / {}", l.sell_window_id, l.product_id)
}

/// The listing as a write finds it under the listing's lock: its quota row (moved on as the
/// write moves it) and its terms.
#[derive(Debug, Clone)]
pub struct Locked {
    /// This write's version of the listing's figures.
    pub version: u64,
    pub row: QuotaRow,
    pub min_qty: u32,
    pub max_qty: u32,
}

impl Locked {
    /// The listing takes no payment (and no reservation) any more: closed or cancelled.
    pub fn closed(&self) -> bool {
        self.row.closed
    }
}

impl ListingTx {
    /// Takes the listing's lock and moves its version on. Every write of a listing starts here
    /// (the workflow's, and the API's reservations), so a listing's writes run one after
    /// another (PostgreSQL: the quota row's lock; SQLite: the database's write lock, taken up
    /// front).
    pub async fn lock(&mut self) -> Result<Locked, StoreError> {
        let (sw, p) = (
            self.listing.sell_window_id.as_str(),
            self.listing.product_id.as_str(),
        );
        let row = sqlx::query(
            "UPDATE sell_window_quota SET version = version + 1 WHERE sell_window_id = $1 AND product_id = $2 \
             RETURNING version, sold_qty",
        )
        .bind(sw)
        .bind(p)
        .fetch_optional(&mut *self.tx)
        .await?
        .ok_or_else(|| StoreError::Inconsistent(format!("no quota row for {sw}/{p}")))?;
        let rest = sqlx::query(
            "SELECT l.phase, l.closed_at, l.min_qty, l.max_qty, c.reserved_qty, c.status FROM product_sell_windows l \
             JOIN counters c ON c.sell_window_id = l.sell_window_id AND c.product_id = l.product_id \
             WHERE l.sell_window_id = $1 AND l.product_id = $2",
        )
        .bind(sw)
        .bind(p)
        .fetch_one(&mut *self.tx)
        .await?;
        let phase: String = sqlx::Row::try_get(&rest, "phase")?;
        Ok(Locked {
            version: sqlx::Row::try_get::<i64, _>(&row, "version")? as u64,
            row: QuotaRow {
                phase: Phase::parse(&phase)
                    .ok_or_else(|| StoreError::Inconsistent(format!("phase {phase}")))?,
                closed: sqlx::Row::try_get::<Option<i64>, _>(&rest, "closed_at")?.is_some(),
                sold: db::u(&row, "sold_qty")?,
                reserved: db::u(&rest, "reserved_qty")?,
                threshold_reached: sqlx::Row::try_get::<String, _>(&rest, "status")? == "REACHED",
            },
            min_qty: db::u(&rest, "min_qty")?,
            max_qty: db::u(&rest, "max_qty")?,
        })
    }

    /// The listing's figures as this write leaves them (its answer to the workflow).
    pub async fn figures(&mut self, locked: &Locked) -> Result<Figures, StoreError> {
        let (sw, p) = (
            self.listing.sell_window_id.as_str(),
            self.listing.product_id.as_str(),
        );
        let row = sqlx::query(
            "SELECT q.sold_qty, c.reserved_qty, c.paid_qty, c.status FROM sell_window_quota q \
             JOIN counters c ON c.sell_window_id = q.sell_window_id AND c.product_id = q.product_id \
             WHERE q.sell_window_id = $1 AND q.product_id = $2",
        )
        .bind(sw)
        .bind(p)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(Figures {
            version: locked.version,
            sold: db::u(&row, "sold_qty")?,
            reserved: db::u(&row, "reserved_qty")?,
            paid: db::u(&row, "paid_qty")?,
            threshold_reached: sqlx::Row::try_get::<String, _>(&row, "status")? == "REACHED",
        })
    }

    pub fn listing(&self) -> &ListingKey {
        &self.listing
    }

    pub fn at(&self) -> UnixMillis {
        self.at
    }
}
