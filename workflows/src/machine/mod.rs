//! The business rules, as plain Rust (no Temporal, no I/O, no clock: time is passed in):
//! [`quota`] decides on the listing's quota row (reservations, the per-customer limit, the
//! threshold, the quota's status, whether confirm may happen), [`listing`] the saga of the
//! listing as a whole (confirm, close, cancel, what the paid quantity decides), [`order`] one
//! order and its payment attempts. The API's reserve transaction and the activities apply
//! `quota` and `order` to the rows they lock; the workflow drives `listing`.

pub mod listing;
pub mod order;
pub mod quota;

pub use listing::{Closing, DEFAULT_WORK_STEPS, FinalOutcome, Listing};
pub use order::{
    AttemptFacts, LateCharge, Move, OnPayment, OrderFacts, SweepKind, customer_cancel, on_payment,
};
pub use quota::{
    Decision, QuotaRow, Request, Reserved, Terms, confirm_check, quota_status, reserve,
};
