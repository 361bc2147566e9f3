//! Identifier newtypes. Ids are short printable strings; ids the system mints itself are derived
//! from the facts that make them unique (a hash), so a retried step mints the same id again.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;

/// Longest id accepted from outside.
pub const MAX_ID_LEN: usize = 128;

fn check_id(field: &'static str, s: &str) -> Result<(), DomainError> {
    if s.is_empty() {
        return Err(DomainError::invalid(field, "must not be empty"));
    }
    if s.len() > MAX_ID_LEN {
        return Err(DomainError::invalid(
            field,
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
    {
        return Err(DomainError::invalid(
            field,
            "may contain only letters, digits, '-', '_', '.', ':'",
        ));
    }
    Ok(())
}

/// A short stable digest of `parts`, used to derive ids that must come out the same on retry.
pub fn digest(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p.as_bytes());
    }
    hex::encode(&h.finalize()[..12])
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $field:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Accepts an id given from outside, naming the field when it is not acceptable.
            pub fn parse(s: impl Into<String>) -> Result<Self, DomainError> {
                let s = s.into();
                check_id($field, &s)?;
                Ok(Self(s))
            }

            /// Mints the id that `parts` determine (same parts, same id).
            pub fn derive(parts: &[&str]) -> Self {
                Self(format!("{}-{}", $prefix, digest(parts)))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(ProductId, "product_id", "prd");
id_type!(SellWindowId, "sell_window_id", "sw");
id_type!(
    /// A customer is whoever the token's `sub` names.
    CustomerId, "customer_id", "cus"
);
id_type!(OrderId, "order_id", "ord");
id_type!(PaymentId, "payment_id", "pay");
id_type!(BatchId, "batch_id", "bat");
id_type!(WorkOrderId, "work_order_id", "wo");
id_type!(StepId, "step_id", "step");
id_type!(ShipmentId, "shipment_id", "shp");

impl OrderId {
    /// The order a customer's idempotency key stands for in one listing: a retry after any crash
    /// finds the same order.
    pub fn for_request(
        sell_window: &SellWindowId,
        product: &ProductId,
        customer: &CustomerId,
        idempotency_key: &str,
    ) -> Self {
        Self::derive(&[
            sell_window.as_str(),
            product.as_str(),
            customer.as_str(),
            idempotency_key,
        ])
    }
}

impl PaymentId {
    /// Each payment attempt of an order gets its own id (a retry after failure is a new link).
    pub fn for_attempt(order: &OrderId, attempt: u32) -> Self {
        Self::derive(&[order.as_str(), &attempt.to_string()])
    }
}

impl BatchId {
    pub fn for_listing(sell_window: &SellWindowId, product: &ProductId) -> Self {
        Self::derive(&["batch", sell_window.as_str(), product.as_str()])
    }
}

impl WorkOrderId {
    pub fn for_batch(batch: &BatchId) -> Self {
        Self::derive(&["work-order", batch.as_str()])
    }
}

impl StepId {
    pub fn for_step(work_order: &WorkOrderId, index: usize) -> Self {
        Self(format!("{work_order}-s{}", index + 1))
    }
}

impl ShipmentId {
    pub fn for_order(order: &OrderId) -> Self {
        Self::derive(&["shipment", order.as_str()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_ids_are_stable_and_distinct() {
        let a = OrderId::derive(&["w", "p", "c", "k"]);
        assert_eq!(a, OrderId::derive(&["w", "p", "c", "k"]));
        assert_ne!(a, OrderId::derive(&["w", "p", "ck", ""]));
        assert!(a.as_str().starts_with("ord-"));
    }

    #[test]
    fn parse_refuses_empty_long_and_odd_ids() {
        assert!(ProductId::parse("").is_err());
        assert!(ProductId::parse("x".repeat(129)).is_err());
        assert_eq!(ProductId::parse("a b").unwrap_err().field, "product_id");
        assert!(ProductId::parse("p-1").is_ok());
    }
}
