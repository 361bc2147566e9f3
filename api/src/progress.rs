//! Telling listings' workflows what their reservations did: after a reserve transaction
//! commits, each listing it touched gets a progress signal with the row's figures and the
//! earliest payment deadline it gave. Signals are coalesced per listing in this process: at
//! most one every [`GAP`], except at once when the threshold was reached, the quota filled, or
//! an order got a payment deadline in a second the workflow was not told of yet. One signal
//! carries the latest figures (by version) and the earliest deadline of everything since the
//! last. A signal lost (this process dies first, or Temporal is unreachable) costs nothing
//! but time: the next one, any write's answer, or the workflow reading its row brings it up to
//! date. No reservation waits on a signal.

use sellwindow_domain::{Progress, UnixMillis};
use sellwindow_store::reserve::ListingProgress;
use sellwindow_workflows::SellWindow;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use temporalio_client::{Client, WorkflowSignalOptions};
use tokio::sync::Notify;

/// At most one signal per listing this often from one API process, unless it is urgent. Each
/// signal costs the engine a workflow task (measured with `bench listings`: 50 listings told
/// every second kept the Temporal dev server at 0.3 of the machine's 2 cores; every 2 s, half).
pub const GAP: Duration = Duration::from_secs(2);
/// Payment deadlines a second apart make one cohort (the workflow sweeps at most once a second).
const COHORT_MS: i64 = 1_000;

#[derive(Default)]
struct Listing {
    /// What to tell next.
    waiting: Option<Progress>,
    urgent: bool,
    sending: bool,
    last_sent: Option<Instant>,
    /// The latest payment-deadline cohort told.
    cohort: Option<i64>,
}

pub struct ProgressSignals {
    client: Client,
    listings: Mutex<HashMap<String, Listing>>,
    wake: Notify,
    /// Fault injection for tests: every signal is dropped, as if this process died between a
    /// commit and its signal.
    dropping: std::sync::atomic::AtomicBool,
}

impl ProgressSignals {
    /// Starts the sender on the current runtime.
    pub fn start(client: Client) -> Arc<Self> {
        let me = Arc::new(Self {
            client,
            listings: Mutex::default(),
            wake: Notify::new(),
            dropping: Default::default(),
        });
        let sender = me.clone();
        tokio::spawn(async move { sender.run().await });
        me
    }

    /// Drops every signal from now on (`true`), as a crash between commit and signal would:
    /// for tests that show nothing depends on them.
    pub fn drop_all(&self, dropping: bool) {
        self.dropping
            .store(dropping, std::sync::atomic::Ordering::SeqCst);
    }

    /// A reserve transaction committed these changes to their listings.
    pub fn report(&self, committed: Vec<ListingProgress>) {
        if committed.is_empty() || self.dropping.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        let mut listings = self.listings.lock().expect("progress lock");
        for c in committed {
            let l = listings.entry(c.listing.workflow_id()).or_default();
            let cohort = c.progress.next_due.map(|d| d.0.div_euclid(COHORT_MS));
            l.urgent |= c.milestone || cohort.is_some_and(|c| l.cohort.is_none_or(|told| c > told));
            l.waiting = Some(merge(l.waiting.take(), c.progress));
        }
        drop(listings);
        self.wake.notify_one();
    }

    /// Sends whatever waits now (on shutdown), giving up after `within`.
    pub async fn flush(&self, within: Duration) {
        let sends = self.take_due(true);
        let all = futures::future::join_all(sends.into_iter().map(|(id, p)| self.send(id, p)));
        let _ = tokio::time::timeout(within, all).await;
    }

    async fn run(self: Arc<Self>) {
        loop {
            let _ = tokio::time::timeout(Duration::from_millis(100), self.wake.notified()).await;
            for (id, p) in self.take_due(false) {
                let me = self.clone();
                tokio::spawn(async move { me.send(id, p).await });
            }
        }
    }

    /// The listings whose signal is due (all that wait, with `all`), marked as being sent.
    fn take_due(&self, all: bool) -> Vec<(String, Progress)> {
        let mut listings = self.listings.lock().expect("progress lock");
        let now = Instant::now();
        // Listings long quiet are forgotten (a later reservation starts them again).
        listings.retain(|_, l| {
            l.sending || l.waiting.is_some() || l.last_sent.is_some_and(|t| now - t < 60 * GAP)
        });
        let mut due = Vec::new();
        for (id, l) in listings.iter_mut() {
            let ready = l.urgent || l.last_sent.is_none_or(|t| now - t >= GAP);
            if l.sending || !(ready || all) {
                continue;
            }
            if let Some(p) = l.waiting.take() {
                l.sending = true;
                l.urgent = false;
                if let Some(due) = p.next_due {
                    let cohort = due.0.div_euclid(COHORT_MS);
                    l.cohort = Some(l.cohort.map_or(cohort, |c| c.max(cohort)));
                }
                due.push((id.clone(), p));
            }
        }
        due
    }

    async fn send(&self, workflow_id: String, p: Progress) {
        let sent = self
            .client
            .get_workflow_handle::<SellWindow>(&workflow_id)
            .signal(
                SellWindow::progress,
                p.clone(),
                WorkflowSignalOptions::default(),
            )
            .await;
        let mut listings = self.listings.lock().expect("progress lock");
        let l = listings.entry(workflow_id.clone()).or_default();
        l.sending = false;
        l.last_sent = Some(Instant::now());
        match sent {
            Ok(()) => {}
            // The listing's workflow has finished: nothing to tell.
            Err(temporalio_client::errors::WorkflowInteractionError::NotFound(_)) => {}
            Err(e) => {
                tracing::warn!(%workflow_id, error = %e, "progress signal not sent; trying again");
                l.waiting = Some(merge(l.waiting.take(), p));
            }
        }
        drop(listings);
        self.wake.notify_one();
    }
}

/// One signal for two: the later figures, the earlier deadline.
fn merge(a: Option<Progress>, b: Progress) -> Progress {
    let Some(a) = a else { return b };
    let earliest = |x: Option<UnixMillis>, y: Option<UnixMillis>| match (x, y) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    };
    Progress {
        figures: if b.figures.version >= a.figures.version {
            b.figures
        } else {
            a.figures
        },
        next_due: earliest(a.next_due, b.next_due),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sellwindow_domain::Figures;

    fn p(version: u64, due: Option<i64>) -> Progress {
        Progress {
            figures: Figures {
                version,
                sold: version as u32,
                ..Figures::default()
            },
            next_due: due.map(UnixMillis),
        }
    }

    #[test]
    fn one_signal_carries_the_latest_figures_and_the_earliest_deadline() {
        let m = merge(Some(p(7, Some(5_000))), p(5, Some(9_000)));
        assert_eq!(
            (m.figures.version, m.next_due),
            (7, Some(UnixMillis(5_000)))
        );
        let m = merge(Some(p(3, None)), p(4, Some(2_000)));
        assert_eq!(
            (m.figures.version, m.next_due),
            (4, Some(UnixMillis(2_000)))
        );
    }
}
