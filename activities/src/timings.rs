//! How long the listing's writes take in this worker, summed per kind of write: the worker's
//! share of a reservation's time (the rest is Temporal's and the API's). The worker serves them
//! as Prometheus text when `WORKER_METRICS_ADDR` is set; `bench` reads them to show where the
//! time goes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// The listing's writes, one per activity.
#[derive(Debug, Clone, Copy)]
pub enum WriteKind {
    Confirm,
    ReadRow,
    ApplyInbox,
    ChangeOrder,
    Sweep,
    Milestone,
}

impl WriteKind {
    pub const ALL: [WriteKind; 6] = [
        WriteKind::Confirm,
        WriteKind::ReadRow,
        WriteKind::ApplyInbox,
        WriteKind::ChangeOrder,
        WriteKind::Sweep,
        WriteKind::Milestone,
    ];

    pub fn name(self) -> &'static str {
        match self {
            WriteKind::Confirm => "confirm",
            WriteKind::ReadRow => "read_row",
            WriteKind::ApplyInbox => "apply_inbox",
            WriteKind::ChangeOrder => "change_order",
            WriteKind::Sweep => "sweep",
            WriteKind::Milestone => "milestone",
        }
    }
}

#[derive(Default)]
struct Timer {
    micros: AtomicU64,
    count: AtomicU64,
    failed: AtomicU64,
}

/// Running sums per kind of write (a Prometheus summary without quantiles).
#[derive(Default)]
pub struct WriteTimes {
    timers: [Timer; WriteKind::ALL.len()],
}

impl WriteTimes {
    /// Adds one write of `kind` that began at `started`.
    pub fn add(&self, kind: WriteKind, started: Instant, ok: bool) {
        let t = &self.timers[kind as usize];
        t.micros
            .fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        t.count.fetch_add(1, Ordering::Relaxed);
        if !ok {
            t.failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::from(
            "# HELP sellwindow_worker_write_seconds Time the listing's writes took in this worker (one transaction each).\n\
             # TYPE sellwindow_worker_write_seconds summary\n",
        );
        for kind in WriteKind::ALL {
            let t = &self.timers[kind as usize];
            let (us, n) = (
                t.micros.load(Ordering::Relaxed),
                t.count.load(Ordering::Relaxed),
            );
            out.push_str(&format!(
                "sellwindow_worker_write_seconds_sum{{write=\"{}\"}} {}\nsellwindow_worker_write_seconds_count{{write=\"{}\"}} {n}\n",
                kind.name(),
                us as f64 / 1e6,
                kind.name(),
            ));
        }
        out.push_str(
            "# HELP sellwindow_worker_write_failures_total Writes that failed (Temporal retries them).\n\
             # TYPE sellwindow_worker_write_failures_total counter\n",
        );
        for kind in WriteKind::ALL {
            out.push_str(&format!(
                "sellwindow_worker_write_failures_total{{write=\"{}\"}} {}\n",
                kind.name(),
                self.timers[kind as usize].failed.load(Ordering::Relaxed)
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_write_is_summed_on_its_own_line() {
        let t = WriteTimes::default();
        let started = Instant::now();
        t.add(WriteKind::ApplyInbox, started, true);
        t.add(WriteKind::ApplyInbox, started, false);
        let text = t.render();
        assert!(text.contains("sellwindow_worker_write_seconds_count{write=\"apply_inbox\"} 2\n"));
        assert!(text.contains("sellwindow_worker_write_seconds_count{write=\"sweep\"} 0\n"));
        assert!(text.contains("sellwindow_worker_write_failures_total{write=\"apply_inbox\"} 1\n"));
    }
}
