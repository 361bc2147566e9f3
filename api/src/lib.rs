//! The API process: gRPC for admins and customers, the payment provider's callback, the payment
//! sandbox, health and metrics. It commits reservations in the store (where the quota rules
//! decide them) and starts, signals and updates the listing workflows; it never decides a
//! business rule itself.

pub mod admin;
pub mod admission;
pub mod app;
pub mod auth;
pub mod batch;
pub mod convert;
pub mod customer;
pub mod error;
pub mod history;
pub mod http;
pub mod lane;
pub mod listing_calls;
pub mod lists;
pub mod metrics;
pub mod paging;
pub mod pokes;
pub mod progress;
pub mod reserve;
pub mod signature;
pub mod web;

pub mod pb {
    tonic::include_proto!("sellwindow.v1");
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/sellwindow_descriptor.bin"));
}

pub use app::Application;
