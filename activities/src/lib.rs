//! The `SellWindow` workflow's writes ([`sellwindow_workflows::listing::contract`]): payment
//! outcomes, customers' changes, sweeps, fences and milestones, each one transaction under the
//! listing's lock in the store, keyed by the ids it carries, so Temporal may run it any number
//! of times and the effect happens once.

pub mod listing;
pub mod timings;

pub use listing::ListingActivities;

use sellwindow_store::StoreError;
use temporalio_sdk::activities::ActivityError;

/// A write that failed: Temporal retries it.
pub fn fail(e: StoreError) -> ActivityError {
    tracing::warn!(error = %e, "activity failed; Temporal will retry it");
    ActivityError::from(anyhow::Error::new(e))
}
