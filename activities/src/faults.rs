//! Fault injection for tests, inert unless a test arms it: holding reservation writes back
//! before they start, as a paused or starved worker would. Activities ignore cancellation, so a
//! held attempt goes on after the workflow has given up on it; the write must then change
//! nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct Faults {
    hold_reservation_writes_until: Mutex<Option<Instant>>,
}

impl Faults {
    /// Every reservation write that starts within `hold` waits until it is over.
    pub fn hold_reservation_writes(&self, hold: Duration) {
        *self.lock() = Some(Instant::now() + hold);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.hold_reservation_writes_until
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Called by a reservation write before it opens its transaction.
    pub async fn before_reservation_write(&self) {
        let until = *self.lock();
        if let Some(until) = until {
            let now = Instant::now();
            if until > now {
                tracing::warn!(
                    held_ms = (until - now).as_millis() as u64,
                    "fault injection: reservation write held"
                );
                tokio::time::sleep(until - now).await;
            }
        }
    }
}
