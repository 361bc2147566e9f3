//! The business rules, as plain Rust (no Temporal, no I/O, no clock: time is passed in):
//! [`listing`] decides for the listing as a whole, [`order`] for one order and its payment
//! attempts. The workflow drives the first; the activities apply the second to the rows they
//! read.

pub mod listing;
pub mod order;

pub use listing::{Closing, DEFAULT_WORK_STEPS, Decided, FinalOutcome, Listing, ListingRefusal};
pub use order::{
    AttemptFacts, LateCharge, Move, OnPayment, OrderFacts, OrderRefusal, SweepKind,
    customer_cancel, on_payment,
};
