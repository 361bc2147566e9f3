//! The API's and the worker's Prometheus figures (`/metrics`), read before and after a level:
//! counters and the sum/count pairs of their summaries, which is all the bench reads.
//!
//! The API's: `sellwindow_reserve_transactions_total` (reserve transactions committed),
//! `sellwindow_reserve_transaction_reservations_total` (the reservations they carried) and
//! `sellwindow_reserve_stage_seconds{stage="reserve"|"transaction"}` (a reservation from its
//! call to its answer; one transaction from its first statement to its commit). The worker's:
//! `sellwindow_worker_write_seconds{write=…}`, the listing's own writes.

use std::collections::BTreeMap;

/// `name{labels}` → value, summed over the processes scraped.
pub type Scrape = BTreeMap<String, f64>;

/// Adds the `name value` lines at `url` into `into` (nothing when it does not answer).
pub async fn scrape(url: &str, into: &mut Scrape) {
    let Ok(r) = reqwest::get(url).await else {
        return;
    };
    let Ok(text) = r.text().await else { return };
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        if let Some((k, v)) = line.rsplit_once(' ')
            && let Ok(v) = v.trim().parse::<f64>()
        {
            *into.entry(k.trim().to_string()).or_insert(0.0) += v;
        }
    }
}

/// A counter's growth between two scrapes.
pub fn delta(a: &Scrape, b: &Scrape, k: &str) -> u64 {
    (b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0)).max(0.0) as u64
}

/// What the API's reserve transactions did between two scrapes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Transactions {
    /// Reserve transactions committed, and the reservations they carried.
    pub transactions: u64,
    pub reservations: u64,
    pub reservations_per_transaction: f64,
    /// Mean milliseconds of one transaction (first statement to commit).
    pub mean_transaction_ms: f64,
    /// Mean milliseconds of a reservation in the API (waiting for its transaction, then it).
    pub mean_reserve_ms: f64,
}

pub fn transactions(a: &Scrape, b: &Scrape) -> Transactions {
    let transactions = delta(a, b, "sellwindow_reserve_transactions_total");
    let reservations = delta(a, b, "sellwindow_reserve_transaction_reservations_total");
    let stages = stage_means(a, b);
    Transactions {
        transactions,
        reservations,
        reservations_per_transaction: if transactions > 0 {
            reservations as f64 / transactions as f64
        } else {
            0.0
        },
        mean_transaction_ms: stages.get("transaction").copied().unwrap_or(0.0),
        mean_reserve_ms: stages.get("reserve").copied().unwrap_or(0.0),
    }
}

/// The API's mean time per step over the level, from its `sellwindow_reserve_stage_seconds`.
pub fn stage_means(a: &Scrape, b: &Scrape) -> BTreeMap<String, f64> {
    summary_means(a, b, "sellwindow_reserve_stage_seconds", "stage")
}

/// The worker's mean time per kind of write over the level (ms), for the kinds that ran.
pub fn write_means(a: &Scrape, b: &Scrape) -> BTreeMap<String, f64> {
    summary_means(a, b, "sellwindow_worker_write_seconds", "write")
}

/// Mean milliseconds per label value of a Prometheus summary `{name}_sum{{label="…"}}` /
/// `{name}_count{{label="…"}}` between two scrapes.
fn summary_means(a: &Scrape, b: &Scrape, name: &str, label: &str) -> BTreeMap<String, f64> {
    let change = |k: &str| b.get(k).copied().unwrap_or(0.0) - a.get(k).copied().unwrap_or(0.0);
    let mut out = BTreeMap::new();
    let prefix = format!("{name}_sum{{{label}=\"");
    for key in b.keys() {
        let Some(value) = key
            .strip_prefix(&prefix)
            .and_then(|r| r.strip_suffix("\"}"))
        else {
            continue;
        };
        let n = change(&format!("{name}_count{{{label}=\"{value}\"}}"));
        if n > 0.0 {
            out.insert(value.to_string(), change(key) * 1e3 / n);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_and_their_means_come_from_two_scrapes() {
        let a = Scrape::from([
            ("sellwindow_reserve_transactions_total".into(), 10.0),
            (
                "sellwindow_reserve_transaction_reservations_total".into(),
                100.0,
            ),
            (
                "sellwindow_reserve_stage_seconds_sum{stage=\"transaction\"}".into(),
                1.0,
            ),
            (
                "sellwindow_reserve_stage_seconds_count{stage=\"transaction\"}".into(),
                10.0,
            ),
        ]);
        let b = Scrape::from([
            ("sellwindow_reserve_transactions_total".into(), 30.0),
            (
                "sellwindow_reserve_transaction_reservations_total".into(),
                1_100.0,
            ),
            (
                "sellwindow_reserve_stage_seconds_sum{stage=\"transaction\"}".into(),
                1.2,
            ),
            (
                "sellwindow_reserve_stage_seconds_count{stage=\"transaction\"}".into(),
                30.0,
            ),
        ]);
        let t = transactions(&a, &b);
        assert_eq!((t.transactions, t.reservations), (20, 1_000));
        assert!((t.reservations_per_transaction - 50.0).abs() < 1e-9);
        assert!((t.mean_transaction_ms - 10.0).abs() < 1e-9);
        assert_eq!(t.mean_reserve_ms, 0.0);
    }
}
