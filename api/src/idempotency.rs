//! ReserveOrder's idempotency keys: the first answer given under a customer's key is stored
//! and every retry gets it back. A new order is recorded as its key's first answer by the
//! transaction that writes the order (the reservation write, in the worker); refusals are
//! stored here. Lookups and refusals of concurrent reservations are grouped into multi-row
//! statements ([`Grouped`]), so a hot listing does not pay a round trip per reservation.

use crate::error::ApiError;
use crate::grouped::Grouped;
use crate::pb;
use base64::Engine;
use sellwindow_activities::Store;
use sellwindow_activities::queries::{NewStoredAnswer, RESERVED_ANSWER, StoredAnswerRow};
use sellwindow_domain::{CustomerId, OrderId};

/// A first answer: what a retry under the same key gets.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Order(Box<pb::Order>),
    Exhausted(String),
    Precondition(String),
}

impl Answer {
    /// The stored text: a tag and the order's protobuf in base64, or the refusal's message.
    pub fn encode(&self) -> String {
        match self {
            Answer::Order(o) => format!(
                "order:{}",
                base64::engine::general_purpose::STANDARD_NO_PAD
                    .encode(prost::Message::encode_to_vec(o.as_ref()))
            ),
            Answer::Exhausted(m) => format!("exhausted:{m}"),
            Answer::Precondition(m) => format!("precondition:{m}"),
        }
    }

    pub fn decode(text: &str) -> Result<Self, ApiError> {
        let bad = |e: String| ApiError::Internal(format!("stored idempotent answer: {e}"));
        if let Some(b64) = text.strip_prefix("order:") {
            let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(b64)
                .map_err(|e| bad(e.to_string()))?;
            return <pb::Order as prost::Message>::decode(bytes.as_slice())
                .map(|o| Answer::Order(Box::new(o)))
                .map_err(|e| bad(e.to_string()));
        }
        if let Some(m) = text.strip_prefix("exhausted:") {
            return Ok(Answer::Exhausted(m.to_string()));
        }
        if let Some(m) = text.strip_prefix("precondition:") {
            return Ok(Answer::Precondition(m.to_string()));
        }
        legacy(text).map_err(bad)
    }

    pub fn into_result(self) -> Result<pb::Order, ApiError> {
        match self {
            Answer::Order(o) => Ok(*o),
            Answer::Exhausted(m) => Err(ApiError::Exhausted(m)),
            Answer::Precondition(m) => Err(ApiError::Precondition(m)),
        }
    }
}

/// Answers stored by the first release, as JSON with the order's protobuf as a byte array.
fn legacy(text: &str) -> Result<Answer, String> {
    #[derive(serde::Deserialize)]
    enum Stored {
        Order(Vec<u8>),
        Exhausted(String),
        Precondition(String),
    }
    match serde_json::from_str::<Stored>(text).map_err(|e| e.to_string())? {
        Stored::Order(bytes) => <pb::Order as prost::Message>::decode(bytes.as_slice())
            .map(|o| Answer::Order(Box::new(o)))
            .map_err(|e| e.to_string()),
        Stored::Exhausted(m) => Ok(Answer::Exhausted(m)),
        Stored::Precondition(m) => Ok(Answer::Precondition(m)),
    }
}

type Key = (CustomerId, String);

/// Grouped reads and writes of first answers.
pub struct AnswerBook {
    store: Store,
    lookups: Grouped<Key, Option<StoredAnswerRow>>,
    saves: Grouped<NewStoredAnswer, StoredAnswerRow>,
}

/// Rows per grouped statement, and groups running at once per kind.
const MAX_GROUP: usize = 500;
const GROUPS_IN_FLIGHT: usize = 4;

impl AnswerBook {
    pub fn new(store: Store) -> Self {
        let (reader, writer) = (store.clone(), store.clone());
        let lookups = Grouped::spawn(MAX_GROUP, GROUPS_IN_FLIGHT, move |keys: Vec<Key>| {
            let store = reader.clone();
            async move { Ok(store.idempotent_answers(&keys).await?) }
        });
        let saves = Grouped::spawn(
            MAX_GROUP,
            GROUPS_IN_FLIGHT,
            move |answers: Vec<NewStoredAnswer>| {
                let store = writer.clone();
                async move {
                    let at = crate::convert::now_ms();
                    Ok(store.save_idempotent_answers(&answers, at).await?)
                }
            },
        );
        Self {
            store,
            lookups,
            saves,
        }
    }

    /// The first answer under this key, with its request's hash, if there is one.
    pub async fn first_answer(
        &self,
        customer: &CustomerId,
        key: &str,
    ) -> Result<Option<(String, Answer)>, ApiError> {
        match self
            .lookups
            .call((customer.clone(), key.to_string()))
            .await?
        {
            Some(row) => {
                let answer = match row.response.strip_prefix(RESERVED_ANSWER) {
                    Some(order_id) => self.order(order_id).await?,
                    None => Answer::decode(&row.response)?,
                };
                Ok(Some((row.request_hash, answer)))
            }
            None => Ok(None),
        }
    }

    /// The order a stored answer names, as it stands now (with its pay link once opened).
    async fn order(&self, id: &str) -> Result<Answer, ApiError> {
        let missing = || ApiError::Internal(format!("stored answer names order {id}, not found"));
        let id = OrderId::parse(id.to_string()).map_err(|_| missing())?;
        let row = self.store.order(&id).await?.ok_or_else(missing)?;
        Ok(Answer::Order(Box::new(crate::convert::order(&row))))
    }

    /// Stores this answer unless a first one exists; returns whichever is first.
    pub async fn keep_first(
        &self,
        customer: &CustomerId,
        key: &str,
        request_hash: &str,
        answer: &Answer,
    ) -> Result<Answer, ApiError> {
        let row = self
            .saves
            .call(NewStoredAnswer {
                customer_id: customer.clone(),
                idempotency_key: key.to_string(),
                request_hash: request_hash.to_string(),
                response: answer.encode(),
            })
            .await?;
        Answer::decode(&row.response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_through_their_stored_text() {
        let order = pb::Order {
            id: "o-1".into(),
            qty: 3,
            ..Default::default()
        };
        for a in [
            Answer::Order(Box::new(order.clone())),
            Answer::Exhausted("not enough quota: 0 units left".into()),
            Answer::Precondition("the sell window is closed: at last".into()),
        ] {
            assert_eq!(Answer::decode(&a.encode()).unwrap(), a);
        }
        let legacy = serde_json::json!({ "Order": prost::Message::encode_to_vec(&order) });
        assert_eq!(
            Answer::decode(&legacy.to_string()).unwrap(),
            Answer::Order(Box::new(order))
        );
        assert_eq!(
            Answer::decode(r#"{"Exhausted":"gone"}"#).unwrap(),
            Answer::Exhausted("gone".into())
        );
    }
}
