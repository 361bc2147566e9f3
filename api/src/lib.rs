//! The API process: gRPC for admins and customers, the payment provider's callback, the payment
//! sandbox, health and metrics. It starts, signals and updates the listing workflows; it never
//! decides a business rule itself.

pub mod admin;
pub mod admission;
pub mod app;
pub mod auth;
pub mod coalescer;
pub mod convert;
pub mod customer;
pub mod error;
pub mod grouped;
pub mod history;
pub mod http;
pub mod idempotency;
pub mod lists;
pub mod metrics;
pub mod paging;
pub mod pokes;
pub mod signature;
pub mod updates;
pub mod web;

pub mod pb {
    tonic::include_proto!("sellwindow.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/sellwindow_descriptor.bin"));
}

pub use app::Application;
