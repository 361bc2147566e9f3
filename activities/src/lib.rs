//! All I/O of the saga: the store, the quota-locking write, payments, notifications, batch,
//! work order and shipments. Each activity is one database transaction keyed by the ids it
//! carries, so Temporal may run it any number of times and the effect happens once.

pub mod faults;
pub mod first_shape;
pub mod listing;
pub mod lists;
pub mod notify;
pub mod queries;
pub mod store;
pub mod timings;
pub mod unit;

pub use faults::Faults;
pub use first_shape::SellWindowActivities;
pub use listing::ListingActivities;
pub use notify::{LogSink, NotificationSink};
pub use store::{Backend, Store, StoreError};
