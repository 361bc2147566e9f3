//! The reserve transaction: the API's one write, where the quota row arbitrates. One
//! transaction carries every reservation waiting in an API process, of any listings: it locks
//! each listing's quota row once, in a fixed order (two transactions never wait on each other
//! in a circle), decides each reservation with the quota rules
//! ([`sellwindow_workflows::machine::quota`]) on the row as it finds it (its phase and the
//! fences the listing's workflow wrote there, the units left, the per-customer limit), and
//! writes what they decide together: the orders (and after confirm their first payments), the
//! quota row and the counter, the seed's events (`order.reserved`, `quota.closed`,
//! `threshold.reached` once by key), the notifications, and each reservation's first answer
//! under its customer's idempotency key. Each customer is answered after the commit; a retry
//! under the same key finds the first answer, whatever happened to the first request.
//!
//! A key's first answer is looked up in the transaction, under the listings' locks (nothing
//! is written for it). A concurrent first request under the same key in another API process
//! is caught by the writes themselves (an order or an answer already there): the transaction
//! rolls back and the batch is decided again.

mod decide;
mod lock;
mod write;

use crate::NotificationSink;
use crate::db::{Store, StoreError, StoreResult};
use crate::queries::{OrderRow, RESERVED_ANSWER, StoredAnswerRow};
use sellwindow_domain::*;
use std::collections::BTreeMap;
use std::sync::Arc;

/// One reservation as the API takes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReserveRequest {
    pub listing: ListingKey,
    pub customer_id: CustomerId,
    pub qty: Qty,
    pub idempotency_key: String,
}

impl ReserveRequest {
    /// The order a first reservation under this key makes (a retry finds the same one).
    pub fn order_id(&self) -> OrderId {
        let l = &self.listing;
        OrderId::for_request(
            &l.sell_window_id,
            &l.product_id,
            &self.customer_id,
            &self.idempotency_key,
        )
    }

    fn hash(&self) -> String {
        reservation_hash(
            &self.listing.sell_window_id,
            &self.listing.product_id,
            self.qty,
        )
    }
}

/// The answer to one reservation: the order as stored, or why it was refused.
pub type ReserveAnswer = Result<OrderRow, Refusal>;

/// What a committed batch did to one listing: for its workflow's progress signal.
#[derive(Debug, Clone, PartialEq)]
pub struct ListingProgress {
    pub listing: ListingKey,
    pub progress: Progress,
    /// The threshold was reached or the quota filled by this batch: tell the workflow now.
    pub milestone: bool,
}

#[derive(Debug, Clone)]
pub struct Reserved {
    /// One per request, in order.
    pub answers: Vec<ReserveAnswer>,
    pub progress: Vec<ListingProgress>,
}

/// What the reserve transaction needs besides the store.
#[derive(Clone)]
pub struct ReserveContext {
    pub sink: Arc<dyn NotificationSink>,
    /// Base of the pay links sent to customers asked to pay at once.
    pub pay_base: String,
    /// The part of a transaction that holds the quota rows' locks, taken by one transaction
    /// of this process at a time: the next one opens and reads its first answers meanwhile,
    /// and takes the locks when this one has committed, rather than waiting on them in the
    /// database.
    pub locking: Arc<tokio::sync::Mutex<()>>,
}

impl ReserveContext {
    pub fn new(sink: Arc<dyn NotificationSink>, pay_base: &str) -> Self {
        Self {
            sink,
            pay_base: pay_base.to_string(),
            locking: Arc::default(),
        }
    }
}

/// How often a batch is decided again after meeting a concurrent first request.
const ATTEMPTS: usize = 4;

impl Store {
    /// Reserves a batch: answers each request in order.
    pub async fn reserve(
        &self,
        cx: &ReserveContext,
        requests: &[ReserveRequest],
        at: UnixMillis,
    ) -> StoreResult<Reserved> {
        let batch: Vec<&ReserveRequest> = requests.iter().collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            match write::commit(self, cx, &batch, at).await {
                Ok(done) => {
                    return Ok(Reserved {
                        answers: done.answers,
                        progress: done.progress,
                    });
                }
                Err(StoreError::Conflict(why)) if attempt < ATTEMPTS => {
                    tracing::debug!(%why, attempt, "a concurrent first request; deciding again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The answers of the batch's requests whose key has a first answer already (looked up
    /// in the transaction, under the listings' locks), and of copies of one key asking for
    /// something else (the first copy decides for the others).
    async fn known_answers(
        &self,
        tx: &mut crate::db::Tx<'static>,
        batch: &[&ReserveRequest],
    ) -> StoreResult<Vec<Option<ReserveAnswer>>> {
        let keys: Vec<(CustomerId, String)> = batch
            .iter()
            .map(|r| (r.customer_id.clone(), r.idempotency_key.clone()))
            .collect();
        let stored = crate::queries::first_answers(tx, self.backend(), &keys).await?;
        let mut answers = vec![None; batch.len()];
        let mut first: BTreeMap<(&str, &str), usize> = BTreeMap::new();
        for (n, r) in batch.iter().enumerate() {
            if let Some(row) = &stored[n] {
                answers[n] = Some(stored_answer(tx, r, row).await?);
                continue;
            }
            let key = (r.customer_id.as_str(), r.idempotency_key.as_str());
            match first.get(&key) {
                Some(&m) if batch[m].hash() != r.hash() => {
                    answers[n] = Some(Err(Refusal::KeyReused))
                }
                Some(_) => {}
                None => {
                    first.insert(key, n);
                }
            }
        }
        Ok(answers)
    }
}

/// A first answer as stored: the order it made as it is now, or the refusal given (read in
/// the caller's transaction: it holds a connection already).
async fn stored_answer(
    tx: &mut crate::db::Tx<'static>,
    r: &ReserveRequest,
    row: &StoredAnswerRow,
) -> StoreResult<ReserveAnswer> {
    if row.request_hash != r.hash() {
        return Ok(Err(Refusal::KeyReused));
    }
    let bad = |e: String| StoreError::Inconsistent(format!("stored first answer: {e}"));
    match row.response.strip_prefix(RESERVED_ANSWER) {
        Some(id) => {
            let id = OrderId::parse(id.to_string()).map_err(|e| bad(e.to_string()))?;
            let order = Store::order_on(tx, &id).await?;
            order
                .map(Ok)
                .ok_or_else(|| bad(format!("order {id} is not there")))
        }
        None => serde_json::from_str::<Refusal>(&row.response)
            .map(Err)
            .map_err(|e| bad(e.to_string())),
    }
}

/// Fills the copies of a request in the batch (its key asked again) with the first copy's
/// answer.
fn copy_answers(batch: &[&ReserveRequest], answers: &mut [Option<ReserveAnswer>]) {
    let mut first: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (n, r) in batch.iter().enumerate() {
        let key = (r.customer_id.as_str(), r.idempotency_key.as_str());
        match first.get(&key) {
            Some(&m) if answers[n].is_none() => answers[n] = answers[m].clone(),
            Some(_) => {}
            None => {
                first.insert(key, n);
            }
        }
    }
}
