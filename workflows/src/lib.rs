//! Deterministic orchestration of one listing (a product in a sell window): the business rules
//! in [`machine`] and the `SellWindow` workflow in [`listing`], with the writes it declares
//! ([`listing::contract`]). No I/O here: the `activities` crate implements the writes, and the
//! API's reserve transaction (in `store`) applies [`machine::quota`] to the quota row.

pub mod listing;
pub mod machine;
pub mod rejection;

pub use listing::SellWindow;
pub use listing::lifecycle::{SA_PHASE, SA_PRODUCT, SA_SELL_WINDOW};
pub use listing::start::{ListingRun, Tuning};
