//! Domain vocabulary shared by the workflows, the activities and the API: ids, quantities, money,
//! statuses, and the messages that cross the workflow boundary. Values here can only be built
//! valid ("parse, don't validate"), so the rest of the code never re-checks them.

pub mod error;
pub mod facts;
pub mod ids;
pub mod messages;
pub mod money;
pub mod status;

pub use error::DomainError;
pub use facts::*;
pub use ids::*;
pub use messages::*;
pub use money::{Currency, Money};
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

/// The deterministic Temporal workflow id of one listing (a product in a sell window): starting
/// it twice is a no-op, and anyone holding both ids can address it.
pub fn listing_workflow_id(sell_window_id: &SellWindowId, product_id: &ProductId) -> String {
    format!("sellwindow/{sell_window_id}/{product_id}")
}
