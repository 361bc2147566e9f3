//! The store: the pool and its migrations (SQLite, the embedded default, and PostgreSQL),
//! the queries the API and the worker read with, the reserve transaction (the API's one
//! write, where the quota row arbitrates), and what the workflow's writes build on: a
//! listing's transaction under its lock ([`ListingTx`]), its orders and attempts as rows
//! ([`rows`]), what the rules do to them ([`effects`]) and what people are told ([`texts`]).

pub mod db;
pub mod effects;
pub mod listing_tx;
pub mod lists;
pub mod notify;
pub mod queries;
pub mod reserve;
pub mod rows;
pub mod texts;

pub use db::{Backend, Store, StoreError, StoreResult};
pub use listing_tx::{ListingTx, Locked, listing_name};
pub use notify::{LogSink, NotificationSink};
