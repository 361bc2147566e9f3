//! Domain vocabulary shared by the workflows, the activities and the API: ids, quantities, money,
//! statuses, refusals, and the messages that cross the workflow boundary. Values here can only be built
//! valid ("parse, don't validate"), so the rest of the code never re-checks them.

pub mod error;
pub mod facts;
pub mod ids;
pub mod messages;
pub mod money;
pub mod refusal;
pub mod status;

pub use error::DomainError;
pub use facts::*;
pub use ids::*;
pub use messages::*;
pub use money::{Currency, Money};
pub use refusal::Refusal;
pub use status::*;

use serde::{Deserialize, Serialize};

/// A count of units a customer asks for: 1 ..= [`Qty::MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Qty(u32);

impl Qty {
    pub const MAX: u32 = 1_000_000;

    pub fn new(value: u32) -> Result<Self, DomainError> {
        if value == 0 || value > Self::MAX {
            return Err(DomainError::invalid(
                "qty",
                format!("must be between 1 and {}", Self::MAX),
            ));
        }
        Ok(Self(value))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for Qty {
    type Error = DomainError;
    fn try_from(value: u32) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<Qty> for u32 {
    fn from(q: Qty) -> u32 {
        q.0
    }
}

/// Milliseconds since the Unix epoch. Workflow code gets these from the workflow clock only.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    pub fn plus_ms(self, ms: i64) -> Self {
        Self(self.0.saturating_add(ms))
    }
}

impl std::fmt::Display for UnixMillis {
    /// `YYYY-MM-DD HH:MM:SS UTC`, for messages to people.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = self.0.div_euclid(1000);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        let y = yoe + era * 400 + i64::from(m <= 2);
        write!(
            f,
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}

/// The deterministic Temporal workflow id of one listing (a product in a sell window): starting
/// it twice is a no-op, and anyone holding both ids can address it.
pub fn listing_workflow_id(sell_window_id: &SellWindowId, product_id: &ProductId) -> String {
    format!("sellwindow/{sell_window_id}/{product_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_print_as_utc_dates() {
        assert_eq!(UnixMillis(0).to_string(), "1970-01-01 00:00:00 UTC");
        assert_eq!(
            UnixMillis(1_795_592_182_446).to_string(),
            "2026-11-25 07:36:22 UTC"
        );
        assert_eq!(
            UnixMillis(951_782_400_000).to_string(),
            "2000-02-29 00:00:00 UTC"
        );
    }
}
