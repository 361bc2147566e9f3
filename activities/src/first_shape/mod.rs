//! The activities of the first shape of the `SellWindow` workflow (every order in its
//! memory), kept so listings started on it finish. The activities it runs. Each one opens a transaction, writes its first
//! row keyed by the ids it carries (so a rerun finds its own work), changes counters only by
//! what actually changed, appends the seed's events, persists notifications, commits, and then
//! hands the new notifications to the sink.

use crate::notify::NotificationSink;
use crate::queries::RESERVED_ANSWER;
use crate::store::{self, Backend, JsonRows, Recipient, Store, StoreError, Tx, i};
use crate::unit::{Unit, fail, listing_name};
use sellwindow_domain::*;
use sellwindow_workflows::legacy::contract::defs;
use sellwindow_workflows::legacy::inputs::*;
use serde_json::json;
use sqlx::Row;
use std::sync::Arc;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};

mod finalize;
mod payments;
mod release;
mod reserve;

pub struct SellWindowActivities {
    store: Store,
    sink: Arc<dyn NotificationSink>,
    /// Base of the pay links sent to customers, e.g. `http://127.0.0.1:8080`.
    public_base_url: String,
    faults: Arc<crate::Faults>,
}

impl SellWindowActivities {
    pub fn new(store: Store, sink: Arc<dyn NotificationSink>, public_base_url: String) -> Self {
        Self {
            store,
            sink,
            public_base_url: public_base_url.trim_end_matches('/').to_string(),
            faults: Arc::default(),
        }
    }

    /// The same activities with test fault injection armed through `faults`.
    pub fn with_faults(mut self, faults: Arc<crate::Faults>) -> Self {
        self.faults = faults;
        self
    }
}

#[activities]
impl SellWindowActivities {
    /// The quota-locking write: the batch's orders, the quota row and the aggregator counter in
    /// one transaction. The conditional update refuses to take the quota row past `max_qty`
    /// (and the row's CHECK would too), whatever any other writer did.
    #[activity(definition = defs::RecordReservations)]
    pub async fn record_reservations(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ReservationWrite,
    ) -> Result<(), ActivityError> {
        self.faults.before_reservation_write().await;
        self.record_reservations_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::ConfirmBatch)]
    pub async fn confirm_batch(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ConfirmWrite,
    ) -> Result<(), ActivityError> {
        self.confirm_batch_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::OpenPayments)]
    pub async fn open_payments(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: PaymentsWrite,
    ) -> Result<(), ActivityError> {
        self.open_payments_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::MarkPaid)]
    pub async fn mark_paid(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: PaidWrite,
    ) -> Result<(), ActivityError> {
        self.mark_paid_tx(&w).await.map_err(fail)
    }

    /// Successful payments of one listing, applied together: what `mark_paid` does for one,
    /// in set-based statements.
    #[activity(definition = defs::MarkPaidMany)]
    pub async fn mark_paid_many(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: PaidWrites,
    ) -> Result<(), ActivityError> {
        self.mark_paid_many_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::RecordPaymentFailure)]
    pub async fn record_payment_failure(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: FailureWrite,
    ) -> Result<(), ActivityError> {
        self.record_payment_failure_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::ReleaseOrders)]
    pub async fn release_orders(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: ReleaseWrite,
    ) -> Result<(), ActivityError> {
        self.release_orders_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::RefundPayment)]
    pub async fn refund_payment(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: RefundWrite,
    ) -> Result<(), ActivityError> {
        self.refund_payment_tx(&w).await.map_err(fail)
    }

    #[activity(definition = defs::FinalizeListing)]
    pub async fn finalize_listing(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: FinalizeWrite,
    ) -> Result<(), ActivityError> {
        self.finalize_listing_tx(&w).await.map_err(fail)
    }

    /// Stores one part of a hand-over (a local activity: its input stays out of history).
    #[activity(definition = defs::SaveHandoverPart)]
    pub async fn save_handover_part(
        self: Arc<Self>,
        _ctx: ActivityContext,
        p: HandoverPart,
    ) -> Result<(), ActivityError> {
        self.store.save_handover_part(&p).await.map_err(fail)
    }

    /// Reads one part of a hand-over back in the next run.
    #[activity(definition = defs::LoadHandoverPart)]
    pub async fn load_handover_part(
        self: Arc<Self>,
        _ctx: ActivityContext,
        r: HandoverPartRef,
    ) -> Result<String, ActivityError> {
        self.store.load_handover_part(&r).await.map_err(fail)
    }

    /// Deletes a listing's hand-over parts once its new run holds them.
    #[activity(definition = defs::DropHandover)]
    pub async fn drop_handover(
        self: Arc<Self>,
        _ctx: ActivityContext,
        listing: ListingKey,
    ) -> Result<(), ActivityError> {
        self.store.drop_handover(&listing).await.map_err(fail)
    }

    #[activity(definition = defs::CompleteStep)]
    pub async fn complete_step(
        self: Arc<Self>,
        _ctx: ActivityContext,
        w: StepWrite,
    ) -> Result<(), ActivityError> {
        self.complete_step_tx(&w).await.map_err(fail)
    }
}

/// Rows per multi-row INSERT (well under SQLite's bound-parameter limit).
const CHUNK: usize = 500;

/// Ids as [`JsonRows`] read them (field `id`).
fn id_rows<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    serde_json::Value::Array(ids.map(|id| json!({ "id": id })).collect()).to_string()
}

/// Records each new order as the first answer under its customer's idempotency key (a key
/// that already has one keeps it). The API stores refusals itself.
pub(crate) async fn save_order_answers(
    tx: &mut Tx<'static>,
    backend: Backend,
    answers: &[OrderAnswer],
    at: UnixMillis,
) -> Result<(), StoreError> {
    if answers.is_empty() {
        return Ok(());
    }
    let j = JsonRows(backend);
    let sql = format!(
        "INSERT INTO idempotency_keys (customer_id, idempotency_key, request_hash, response, created_at) \
         SELECT {}, {}, {}, {}, CAST($2 AS BIGINT) {} ON CONFLICT (customer_id, idempotency_key) DO NOTHING",
        j.text("c"),
        j.text("k"),
        j.text("h"),
        j.text("r"),
        j.from(1),
    );
    let rows: Vec<serde_json::Value> = answers
        .iter()
        .map(|a| {
            json!({
                "c": a.customer_id,
                "k": a.key.idempotency_key,
                "h": a.key.request_hash,
                "r": format!("{RESERVED_ANSWER}{}", a.order_id),
            })
        })
        .collect();
    sqlx::query(&sql)
        .bind(serde_json::Value::Array(rows).to_string())
        .bind(at.0)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
