//! Every patch of the first shape, declared once, beside the recorded histories (under
//! `workflows/tests/histories/`, by file-name prefix) that replay each side of it: a listing
//! started before a patch replays its old path, and `ctx.patched(id)` is true for every
//! listing started after. `recorded_histories_cover_both_sides_of_every_patch` (in
//! `tests/replay.rs`) checks that the histories named here exist. The current `SellWindow`
//! workflow ([`crate::listing`]) has no patches yet: its histories are the un-prefixed files.

/// A patch id and the history prefixes that replay its old and its new path (`None`: no
/// listing of the old path is kept, because none ran in production before the patch).
pub struct Patch {
    pub id: &'static str,
    pub old_path: Option<&'static str>,
    pub new_path: &'static str,
}

/// A listing stays after it ends, so a late payment report is refunded instead of finding
/// no workflow.
pub const SETTLE_LATE_PAYMENTS: &str = "settle-late-payments";
/// A reservation write reported failed is voided, whatever a last attempt committed.
pub const VOID_UNRECORDED_RESERVATIONS: &str = "void-unrecorded-reservations";
/// Payment results arriving during a hand-over are deferred to the next run.
pub const DEFER_PAYMENTS_WHILE_HANDING_OVER: &str = "defer-payments-while-handing-over";
/// Payment signals count toward the messages after which a run hands over.
pub const COUNT_PAYMENTS_TOWARD_HAND_OVER: &str = "count-payments-toward-hand-over";
/// Reservations are written by the run method, one local activity for all the handlers of a
/// workflow task (before: one per handler).
pub const MERGED_WRITES: &str = "merged-reservation-writes";
/// The server's continue-as-new suggestion ends the run's wait too (before: only looked at
/// when something else woke the run).
pub const WAKE_ON_SUGGESTION: &str = "hand-over-when-suggested";
/// A run follows the suggestion only once it has taken in as many orders as it carried
/// (before: after `MIN_RUN_MESSAGES`).
pub const HAND_OVER_WHEN_GROWN: &str = "hand-over-when-grown";
/// Successful payments are written by the run method, one local activity for all the
/// callbacks of a workflow task (before: an activity per payment).
pub const BATCHED_PAYMENTS: &str = "batched-payment-writes";
/// The attempt that paid is the one refunded (before: the attempt open at the time, which
/// may never have been charged).
pub const REFUND_WHAT_PAID: &str = "refund-the-attempt-that-paid";

/// Every patch above with the histories that cover it.
pub const PATCHES: &[Patch] = &[
    Patch {
        id: SETTLE_LATE_PAYMENTS,
        old_path: None,
        new_path: "v1_",
    },
    Patch {
        id: VOID_UNRECORDED_RESERVATIONS,
        old_path: Some("v1_"),
        new_path: "v2_",
    },
    Patch {
        id: DEFER_PAYMENTS_WHILE_HANDING_OVER,
        old_path: Some("v1_"),
        new_path: "v2_",
    },
    Patch {
        id: COUNT_PAYMENTS_TOWARD_HAND_OVER,
        old_path: Some("v1_"),
        new_path: "v2_",
    },
    Patch {
        id: MERGED_WRITES,
        old_path: Some("v1_"),
        new_path: "v2_",
    },
    Patch {
        id: WAKE_ON_SUGGESTION,
        old_path: Some("v1_"),
        new_path: "v2_",
    },
    Patch {
        id: HAND_OVER_WHEN_GROWN,
        old_path: Some("v2_"),
        new_path: "v3_",
    },
    Patch {
        id: BATCHED_PAYMENTS,
        old_path: Some("v3_"),
        new_path: "v4_",
    },
    Patch {
        id: REFUND_WHAT_PAID,
        old_path: Some("v3_"),
        new_path: "v4_",
    },
];
