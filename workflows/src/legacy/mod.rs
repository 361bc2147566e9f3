//! The listing's first shape, kept for the listings that started on it: every order in the
//! workflow's memory, carried at each hand-over. New listings run [`crate::listing`]. This code
//! only replays recorded histories and finishes running listings: change it only under a
//! `ctx.patched` gate, beside a recorded history that covers the change.

pub mod contract;
pub mod handover;
pub mod inputs;
pub mod machine;
pub mod order_codec;
pub mod patches;
pub mod sell_window;
pub mod writes;

pub use handover::ListingStart;
pub use sell_window::{CONTINUE_AS_NEW_AFTER, SEARCH_ATTRIBUTES, SellWindowWorkflow};
