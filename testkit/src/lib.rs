//! Driving the system from outside, as its users do: a client of the API acting as the admin, a
//! customer or the payment provider, and the demo's scenarios played through it. The `starter`
//! tool, the end-to-end tests and the bench use it; the API itself does not.

pub mod books;
pub mod client;
pub mod demo;
pub mod provider;

pub use client::ApiClient;
pub use provider::{Ledger, Provider, ProviderEvent};
