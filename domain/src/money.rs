//! Money as minor units plus an ISO-4217-style currency code; never floating point.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(s: impl Into<String>) -> Result<Self, DomainError> {
        let s = s.into();
        if s.len() != 3 || !s.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(DomainError::invalid(
                "currency",
                "must be three upper-case letters, e.g. TWD",
            ));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Currency {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, DomainError> {
        Self::parse(s)
    }
}
impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub currency: Currency,
    pub amount_minor: i64,
}

impl Money {
    /// Largest unit price accepted (keeps `price * qty` far from overflow).
    pub const MAX_UNIT_MINOR: i64 = 1_000_000_000_000;

    pub fn new(currency: Currency, amount_minor: i64) -> Result<Self, DomainError> {
        if !(0..=Self::MAX_UNIT_MINOR).contains(&amount_minor) {
            return Err(DomainError::invalid(
                "amount_minor",
                format!("must be between 0 and {}", Self::MAX_UNIT_MINOR),
            ));
        }
        Ok(Self {
            currency,
            amount_minor,
        })
    }

    pub fn times(&self, qty: u32) -> Money {
        Money {
            currency: self.currency.clone(),
            amount_minor: self.amount_minor.saturating_mul(i64::from(qty)),
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount_minor, self.currency.as_str())
    }
}
