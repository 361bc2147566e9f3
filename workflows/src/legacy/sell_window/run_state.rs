//! The first shape's handler bookkeeping, its admission rules and the hand-over snapshot.

use super::*;

/// A run hands over to a new one after this many messages: well under the server's 2,000
/// updates per run and its 10,240-event history warning. It also hands over when the server
/// suggests it (history past its size or length threshold).
pub const CONTINUE_AS_NEW_AFTER: u32 = 1_000;
/// Messages a run takes before it follows the server's suggestion: a large listing's carried
/// orders alone may pass the suggested size, and a run that handed over at once would only
/// hand the same state on again.
pub const MIN_RUN_MESSAGES: u32 = 100;
/// Orders a run takes in before it follows the suggestion whatever it carried (~10 MB of
/// reservations in history), so carried and own history stay far below the server's 50 MB.
pub const RUN_ORDERS_MAX: usize = 200_000;

impl SellWindowWorkflow {
    /// Counts a handler in: it keeps the run from completing or handing over under it.
    pub(super) fn enter(&mut self) {
        self.busy += 1;
        self.messages_this_run += 1;
        self.seen += 1;
    }

    /// Whether this run may follow the server's suggestion to continue as new.
    pub(super) fn follows_suggestion(&self, when_grown: bool) -> bool {
        let own = self
            .listing
            .orders
            .len()
            .saturating_sub(self.carried_orders);
        self.messages_this_run >= MIN_RUN_MESSAGES
            && (!when_grown || own >= self.carried_orders || own >= RUN_ORDERS_MAX)
    }

    pub(super) fn handing_over(&self) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if self.draining || self.loading.is_some() {
            Err(HANDING_OVER.into())
        } else {
            Ok(())
        }
    }

    /// Whether a batch of `n` reservations may come in now (the reserve updates' validators).
    pub(super) fn takes_reservations(
        &self,
        n: usize,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        self.handing_over()?;
        if n == 0 {
            return Err(reject(
                RejectCode::InvalidArgument,
                "empty reservation batch",
            ));
        }
        if !self.listing.phase.accepts_reservations() {
            return Err(reject(
                RejectCode::FailedPrecondition,
                format!("the sell window is closed ({})", self.listing.phase),
            ));
        }
        Ok(())
    }
}

/// Waits for a quiet point and snapshots the listing for the next run. A large state goes
/// to the store in parts first (local activities: their inputs stay out of history). Payment
/// results arriving meanwhile are deferred to the next run; should anything else have changed
/// the state during the saves (histories from before deferral), the snapshot is taken again.
pub(super) async fn hand_over(
    ctx: &mut WorkflowContext<SellWindowWorkflow>,
) -> WorkflowResult<ListingStart> {
    let mut attempt = 0u32;
    loop {
        ctx.wait_condition(|s: &SellWindowWorkflow| s.busy == 0)
            .await?;
        let seen = ctx.state(|s| s.seen);
        let token = format!("{}-{attempt}", ctx.run_id());
        let (mut start, parts) =
            ctx.state(|s| ListingStart::handing_over(&s.listing, &token, s.inline_max));
        if parts.is_empty() {
            start.deferred_payments = ctx.state(|s| s.deferred.clone());
            return Ok(start);
        }
        let listing = key(ctx);
        let at = now(ctx);
        // Parts side by side: the listing turns updates away until the next run takes over.
        let parts: Vec<(usize, String)> = parts.into_iter().enumerate().collect();
        for group in parts.chunks(JOIN_GROUP) {
            let saves = group.iter().map(|(part, data)| {
                let opts = LocalActivityOptions::builder()
                    .start_to_close_timeout(Duration::from_secs(10))
                    .summary(format!("hand over orders, part {}", part + 1))
                    .build();
                let p = HandoverPart {
                    listing: listing.clone(),
                    token: token.clone(),
                    part: *part as u32,
                    data: data.clone(),
                    at,
                };
                ctx.execute_local_activity(Acts::save_handover_part, p, opts)
            });
            for saved in futures::future::join_all(saves).await {
                saved?;
            }
        }
        if ctx.state(|s| s.seen == seen && s.busy == 0) {
            start.deferred_payments = ctx.state(|s| s.deferred.clone());
            return Ok(start);
        }
        attempt += 1;
    }
}
