//! Process counters exposed as Prometheus text on `GET /metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub reservations_accepted: AtomicU64,
    pub reservations_refused: AtomicU64,
    pub reserve_updates: AtomicU64,
    pub reserve_update_retries: AtomicU64,
    pub callbacks_accepted: AtomicU64,
    pub callbacks_rejected: AtomicU64,
    pub callbacks_duplicate: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn render(&self) -> String {
        let rows = [
            (
                "sellwindow_reservations_accepted_total",
                "Reservations that got an order.",
                &self.reservations_accepted,
            ),
            (
                "sellwindow_reservations_refused_total",
                "Reservations refused (quota, limit, closed).",
                &self.reservations_refused,
            ),
            (
                "sellwindow_reserve_updates_total",
                "Coalesced reserve updates sent to workflows.",
                &self.reserve_updates,
            ),
            (
                "sellwindow_reserve_update_retries_total",
                "Reserve updates retried after a transient failure.",
                &self.reserve_update_retries,
            ),
            (
                "sellwindow_payment_callbacks_accepted_total",
                "Verified payment callbacks signalled.",
                &self.callbacks_accepted,
            ),
            (
                "sellwindow_payment_callbacks_rejected_total",
                "Payment callbacks refused.",
                &self.callbacks_rejected,
            ),
            (
                "sellwindow_payment_callbacks_duplicate_total",
                "Replayed payment callbacks ignored.",
                &self.callbacks_duplicate,
            ),
        ];
        let mut out = String::new();
        for (name, help, c) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                c.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
