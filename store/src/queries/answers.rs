//! Idempotency keys with their first answers.

use super::*;
use crate::db::JsonRows;

/// The first answers stored under (customer, idempotency key) pairs, with their requests'
/// hashes, in the order asked (`None` where a key is new): one statement for a whole batch,
/// its keys bound as one JSON array, on the caller's connection (inside its transaction).
pub async fn first_answers(
    conn: &mut sqlx::AnyConnection,
    backend: crate::db::Backend,
    keys: &[(CustomerId, String)],
) -> StoreResult<Vec<Option<StoredAnswerRow>>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let j = JsonRows(backend);
    let sql = format!(
        "SELECT customer_id, idempotency_key, request_hash, response FROM idempotency_keys \
         WHERE (customer_id, idempotency_key) IN (SELECT {}, {} FROM {})",
        j.text("c"),
        j.text("k"),
        j.source(1)
    );
    let wanted: Vec<serde_json::Value> =
        keys.iter().map(|(c, k)| json!({"c": c, "k": k})).collect();
    // Planned for each batch (an unnamed statement): a plan made once while the table was
    // small (a sequential scan) would be kept as it grows, and read it whole every time.
    let rows = sqlx::query(&sql)
        .persistent(false)
        .bind(serde_json::Value::Array(wanted).to_string())
        .fetch_all(&mut *conn)
        .await?;
    let mut found = std::collections::HashMap::new();
    for r in rows {
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
    Ok(keys
        .iter()
        .map(|(c, k)| found.get(&(c.as_str().to_string(), k.clone())).cloned())
        .collect())
}
