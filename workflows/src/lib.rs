//! Deterministic orchestration of one listing (a product in a sell window): the business rules
//! in [`machine`], the `SellWindow` workflow in [`listing`] with the writes it declares
//! ([`listing::contract`]), and [`legacy`], the first shape, kept for listings that started on
//! it. No I/O here: the `activities` crate implements the writes.

pub mod legacy;
pub mod listing;
pub mod machine;
pub mod payload;
pub mod rejection;

pub use legacy::{CONTINUE_AS_NEW_AFTER, ListingStart, SEARCH_ATTRIBUTES, SellWindowWorkflow};
pub use listing::ListingWorkflow;
pub use listing::start::{ListingRun, Tuning};
