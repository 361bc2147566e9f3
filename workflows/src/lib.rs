//! Deterministic orchestration of one listing (a product in a sell window): the pure state
//! machine in [`machine`], and the `SellWindow` Temporal workflow in [`sell_window`] that drives
//! it with updates, signals, durable timers and activities, handing over to a new run through
//! [`handover`].

pub mod handover;
pub mod machine;
pub mod order_codec;
pub mod rejection;
pub mod sell_window;
pub mod writes;

pub use handover::ListingStart;
pub use sell_window::{CONTINUE_AS_NEW_AFTER, SEARCH_ATTRIBUTES, SellWindowWorkflow};
