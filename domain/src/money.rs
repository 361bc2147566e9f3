//! Money as integer minor units plus an ISO 4217 currency code; never floating point. People
//! read it formatted by the currency's minor-unit exponent (TWD 45000 minor is "TWD 450.00",
//! JPY 4500 is "JPY 4500"), taken from the maintained `iso_currency` table.

use crate::DomainError;
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(s: impl Into<String>) -> Result<Self, DomainError> {
        let s = s.into();
        if iso_currency::Currency::from_code(&s).is_none() {
            return Err(DomainError::invalid(
                "currency",
                "must be an ISO 4217 code in upper case, e.g. TWD",
            ));
        }
        Ok(Self(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Digits after the decimal point (ISO 4217): 2 for TWD and USD, 0 for JPY, 3 for KWD.
    /// Codes without minor units (e.g. XAU) count as 0.
    pub fn exponent(&self) -> u32 {
        iso_currency::Currency::from_code(&self.0)
            .and_then(|c| c.exponent())
            .map_or(0, u32::from)
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

    /// An amount as people write it ("450", "450.5", "450.00") in `currency`'s major units;
    /// more decimals than the currency has are refused, never rounded.
    pub fn parse_major(currency: Currency, text: &str) -> Result<Self, DomainError> {
        let bad = || {
            DomainError::invalid(
                "price",
                format!("{text:?} is not an amount in {}", currency.as_str()),
            )
        };
        let exponent = currency.exponent() as usize;
        let (whole, fraction) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
        if whole.is_empty()
            || !whole.bytes().all(|b| b.is_ascii_digit())
            || !fraction.bytes().all(|b| b.is_ascii_digit())
            || fraction.len() > exponent
            || whole.len() > 15
        {
            return Err(bad());
        }
        let whole: i64 = whole.parse().map_err(|_| bad())?;
        let fraction: i64 = format!("{fraction:0<exponent$}").parse().unwrap_or(0);
        let minor = whole
            .checked_mul(10i64.pow(exponent as u32))
            .and_then(|w| w.checked_add(fraction))
            .ok_or_else(bad)?;
        Money::new(currency, minor)
    }

    pub fn times(&self, qty: u32) -> Money {
        Money {
            currency: self.currency.clone(),
            amount_minor: self.amount_minor.saturating_mul(i64::from(qty)),
        }
    }
}

/// "TWD 450.00": the code, then the amount in major units with the currency's minor digits.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.currency.as_str();
        let sign = if self.amount_minor < 0 { "-" } else { "" };
        let minor = self.amount_minor.unsigned_abs();
        match self.currency.exponent() {
            0 => write!(f, "{code} {sign}{minor}"),
            exponent => {
                let scale = 10u64.pow(exponent);
                let width = exponent as usize;
                write!(
                    f,
                    "{code} {sign}{}.{:0width$}",
                    minor / scale,
                    minor % scale
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(code: &str, amount_minor: i64) -> String {
        Money {
            currency: Currency::parse(code).unwrap(),
            amount_minor,
        }
        .to_string()
    }

    #[test]
    fn amounts_read_in_major_units_by_the_currencys_exponent() {
        assert_eq!(money("TWD", 45000), "TWD 450.00");
        assert_eq!(money("TWD", 5), "TWD 0.05");
        assert_eq!(money("USD", 1999), "USD 19.99");
        assert_eq!(money("JPY", 4500), "JPY 4500");
        assert_eq!(money("KWD", 12345), "KWD 12.345");
        assert_eq!(money("KWD", -7), "KWD -0.007");
    }

    #[test]
    fn amounts_people_write_parse_by_the_currencys_exponent() {
        let twd = || Currency::parse("TWD").unwrap();
        assert_eq!(
            Money::parse_major(twd(), "450").unwrap().amount_minor,
            45000
        );
        assert_eq!(
            Money::parse_major(twd(), "450.5").unwrap().amount_minor,
            45050
        );
        assert_eq!(Money::parse_major(twd(), " 0.05 ").unwrap().amount_minor, 5);
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(
            Money::parse_major(jpy.clone(), "4500")
                .unwrap()
                .amount_minor,
            4500
        );
        assert!(Money::parse_major(jpy, "4500.5").is_err());
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(
            Money::parse_major(kwd, "12.345").unwrap().amount_minor,
            12345
        );
        for bad in ["", "-1", "1.234", "abc", "1e3", ".5"] {
            assert!(Money::parse_major(twd(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn only_iso_4217_codes_are_currencies() {
        assert!(Currency::parse("TWD").is_ok());
        for bad in ["twd", "ABC", "TW", "TWDX", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }
}
