//! Process counters exposed as Prometheus text on `GET /metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub reservations_accepted: AtomicU64,
    pub reservations_refused: AtomicU64,
    /// Reserve transactions committed, and the reservations they carried.
    pub reserve_batches: AtomicU64,
    pub reserve_batched: AtomicU64,
    pub callbacks_accepted: AtomicU64,
    pub callbacks_rejected: AtomicU64,
    pub callbacks_duplicate: AtomicU64,
    /// Where a reservation's time goes in this process, summed (see [`Stage`]).
    pub stages: [StageTimer; Stage::ALL.len()],
}

/// The steps of a reservation in the API, timed so the bench can show where the time goes.
#[derive(Debug, Clone, Copy)]
pub enum Stage {
    /// A reservation from its call to its answer: waiting for the next transaction, then it.
    Reserve,
    /// One reserve transaction (a whole batch), from its first statement to its commit.
    Transaction,
}

impl Stage {
    pub const ALL: [Stage; 2] = [Stage::Reserve, Stage::Transaction];

    fn name(self) -> &'static str {
        match self {
            Stage::Reserve => "reserve",
            Stage::Transaction => "transaction",
        }
    }
}

/// A running sum of durations and how many there were (a Prometheus summary without quantiles).
#[derive(Default)]
pub struct StageTimer {
    micros: AtomicU64,
    count: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// A reserve transaction of `n` reservations committed.
    pub fn batch(&self, n: usize) {
        Self::inc(&self.reserve_batches);
        self.reserve_batched.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Runs `f` and adds its duration to `stage`.
    pub async fn timed<T>(&self, stage: Stage, f: impl std::future::Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let out = f.await;
        let t = &self.stages[stage as usize];
        t.micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        t.count.fetch_add(1, Ordering::Relaxed);
        out
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
                "sellwindow_reserve_transactions_total",
                "Reserve transactions committed (each carries every reservation waiting).",
                &self.reserve_batches,
            ),
            (
                "sellwindow_reserve_transaction_reservations_total",
                "Reservations the reserve transactions carried.",
                &self.reserve_batched,
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
        out.push_str(
            "# HELP sellwindow_reserve_stage_seconds Time reservations spent in each step of the API.\n\
             # TYPE sellwindow_reserve_stage_seconds summary\n",
        );
        for stage in Stage::ALL {
            let t = &self.stages[stage as usize];
            out.push_str(&format!(
                "sellwindow_reserve_stage_seconds_sum{{stage=\"{0}\"}} {1}\nsellwindow_reserve_stage_seconds_count{{stage=\"{0}\"}} {2}\n",
                stage.name(),
                t.micros.load(Ordering::Relaxed) as f64 / 1e6,
                t.count.load(Ordering::Relaxed)
            ));
        }
        out
    }
}
