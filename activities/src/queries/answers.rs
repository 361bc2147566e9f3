//! Idempotency keys with their first answers, and the parts of a listing's hand-over.

use super::*;

impl Store {
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
}
