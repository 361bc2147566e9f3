//! The two schemas the baseline runs its reserve transaction on, and the transaction itself as
//! a pgbench script (`\set k random(1, rows)`, then `SELECT … FOR UPDATE`, `UPDATE`, `INSERT`,
//! `COMMIT`), which both drivers run as written.

use sqlx::PgPool;

/// Where the reserve transaction runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// The app's own schema (its migrations): the seed's row-lock reserve on
    /// `sell_window_quota`, and the order inserted into the app's `orders` with its indexes.
    App,
    /// Two bare tables: `quota` (a row per listing) and `orders` (a primary key, nothing else):
    /// what the row lock and an insert cost with nothing around them.
    Bare,
}

impl Schema {
    pub fn name(self) -> &'static str {
        match self {
            Schema::App => "app",
            Schema::Bare => "bare",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Schema::App => "the app's schema (sell_window_quota, orders and its indexes)",
            Schema::Bare => "a bare two-table schema (quota, orders with a primary key)",
        }
    }

    /// The scratch database's name for this schema.
    pub fn database(self) -> String {
        match self {
            Schema::App => format!("sw_bench_{}", std::process::id()),
            Schema::Bare => format!("sw_bench_bare_{}", std::process::id()),
        }
    }

    /// Gives the fresh database at `url` its tables.
    pub async fn create(self, url: &str, pool: &PgPool) -> anyhow::Result<()> {
        match self {
            Schema::App => {
                let store = sellwindow_store::Store::connect(url).await?;
                store.pool().close().await;
            }
            Schema::Bare => {
                sqlx::raw_sql(
                    "CREATE TABLE quota (id INTEGER PRIMARY KEY, max_qty BIGINT NOT NULL, \
                     sold_qty BIGINT NOT NULL, status TEXT NOT NULL); \
                     CREATE TABLE orders (id TEXT PRIMARY KEY, quota_id INTEGER NOT NULL, \
                     customer_id TEXT NOT NULL, qty INTEGER NOT NULL, created_at BIGINT NOT NULL);",
                )
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// Empties the tables and puts `rows` quota rows in (keys 1 … rows), so every level starts
    /// alike.
    pub async fn reset(self, pool: &PgPool, rows: usize) -> anyhow::Result<()> {
        match self {
            Schema::App => {
                sqlx::raw_sql("TRUNCATE orders, sell_window_quota CASCADE")
                    .execute(pool)
                    .await?;
                sqlx::query(
                    "INSERT INTO sell_window_quota (sell_window_id, product_id, min_qty, max_qty, sold_qty, status) \
                     SELECT 'sw-baseline-' || k, 'prd-baseline', 1, 1000000000, 0, 'OPEN' FROM generate_series(1, $1) AS k",
                )
                .bind(rows as i32)
                .execute(pool)
                .await?;
            }
            Schema::Bare => {
                sqlx::raw_sql("TRUNCATE orders, quota")
                    .execute(pool)
                    .await?;
                sqlx::query(
                    "INSERT INTO quota (id, max_qty, sold_qty, status) \
                     SELECT k, 1000000000, 0, 'OPEN' FROM generate_series(1, $1) AS k",
                )
                .bind(rows as i32)
                .execute(pool)
                .await?;
            }
        }
        Ok(())
    }

    /// The reserve transaction as a pgbench script, on a quota row of 1 … `rows` at random.
    pub fn script(self, rows: usize) -> String {
        let (quota, key, insert) = match self {
            Schema::App => (
                "sell_window_quota",
                "sell_window_id = 'sw-baseline-' || :k::int AND product_id = 'prd-baseline'",
                "INSERT INTO orders (id, sell_window_id, product_id, customer_id, qty, currency, amount_minor, status, created_at, updated_at) \
                 VALUES ('ord-pg-' || gen_random_uuid(), 'sw-baseline-' || :k::int, 'prd-baseline', 'cus-pg-' || :client_id, 1, 'TWD', 45000, 'RESERVED', 0, 0);",
            ),
            Schema::Bare => (
                "quota",
                "id = :k",
                "INSERT INTO orders (id, quota_id, customer_id, qty, created_at) \
                 VALUES ('ord-pg-' || gen_random_uuid(), :k, 'cus-pg-' || :client_id, 1, 0);",
            ),
        };
        format!(
            "\\set k random(1, {rows})\n\
             BEGIN;\n\
             SELECT max_qty, sold_qty, status FROM {quota} WHERE {key} FOR UPDATE;\n\
             UPDATE {quota} SET sold_qty = sold_qty + 1, status = CASE WHEN sold_qty + 1 >= max_qty THEN 'CLOSED' ELSE status END \
             WHERE {key} AND status = 'OPEN' AND sold_qty + 1 <= max_qty;\n\
             {insert}\n\
             COMMIT;\n"
        )
    }

    /// Whether every quota row counts exactly the orders written under it.
    pub async fn consistent(self, pool: &PgPool) -> anyhow::Result<bool> {
        let sql = match self {
            Schema::App => {
                "SELECT COUNT(*) FROM sell_window_quota q \
                 WHERE q.sold_qty <> (SELECT COUNT(*) FROM orders o WHERE o.sell_window_id = q.sell_window_id)"
            }
            Schema::Bare => {
                "SELECT COUNT(*) FROM quota q \
                 WHERE q.sold_qty <> (SELECT COUNT(*) FROM orders o WHERE o.quota_id = q.id)"
            }
        };
        let (bad,): (i64,) = sqlx::query_as(sql).fetch_one(pool).await?;
        Ok(bad == 0)
    }
}

/// The script's statements for one transaction, `:k` and `:client_id` filled in (the
/// `\set` line dropped): what the Rust driver sends, one statement at a time.
pub fn statements(script: &str, k: usize, client: usize) -> Vec<String> {
    script
        .lines()
        .filter(|l| !l.starts_with('\\') && !l.trim().is_empty())
        .map(|l| {
            l.replace(":client_id", &client.to_string())
                .replace(":k", &k.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_schemas_run_the_same_four_statements() {
        for schema in [Schema::App, Schema::Bare] {
            let s = statements(&schema.script(1), 1, 7);
            assert_eq!(s.len(), 5, "{s:?}");
            assert_eq!((s[0].as_str(), s[4].as_str()), ("BEGIN;", "COMMIT;"));
            assert!(s[1].starts_with("SELECT") && s[1].ends_with("FOR UPDATE;"));
            assert!(s[2].starts_with("UPDATE") && s[3].starts_with("INSERT INTO orders"));
            assert!(s[3].contains("'cus-pg-' || 7"));
            assert!(
                !s.iter()
                    .any(|x| x.contains(":k") || x.contains(":client_id"))
            );
        }
    }
}
