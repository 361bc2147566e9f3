//! Why a request is refused: one typed enum from the rule that decides it to the edge that
//! answers (mapped to a gRPC code once and to an HTTP status once), stored as the first answer
//! under a reservation's idempotency key, never recognised by its text.

use crate::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Refusal {
    /// Not enough units left under the cap (`RESOURCE_EXHAUSTED`).
    NotEnoughQuota { available: u32 },
    /// Over the listing's per-customer limit (`RESOURCE_EXHAUSTED`).
    CustomerLimit { limit: u32, held: u32 },
    /// The window takes no such request in its phase, or is closing (`FAILED_PRECONDITION`).
    Closed { phase: Phase },
    /// Confirm before the threshold is reached (`FAILED_PRECONDITION`).
    ThresholdNotReached { reserved: u32, min: u32 },
    /// A work step of a listing not in production (`FAILED_PRECONDITION`).
    NotInProduction { phase: Phase },
    /// The order's status does not allow the change, e.g. a customer cancelling a PAID order
    /// (`FAILED_PRECONDITION`).
    OrderIs(OrderStatus),
    /// No such product in that sell window (`NOT_FOUND`).
    UnknownListing,
    /// No such order (`NOT_FOUND`).
    UnknownOrder,
    /// No such step in the work order (`NOT_FOUND`).
    UnknownStep(StepId),
    /// Someone else's order (`PERMISSION_DENIED`).
    NotYours,
    /// The idempotency key was first used for another reservation (`INVALID_ARGUMENT`).
    KeyReused,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotEnoughQuota { available } => {
                write!(f, "not enough quota: {available} units left")
            }
            Self::CustomerLimit { limit, held } => {
                write!(
                    f,
                    "over the per-customer limit of {limit} (you hold {held})"
                )
            }
            Self::Closed { phase } => write!(f, "the sell window is closed ({phase})"),
            Self::ThresholdNotReached { reserved, min } => {
                write!(f, "threshold not reached: {reserved} of {min} reserved")
            }
            Self::NotInProduction { phase } => {
                write!(f, "the listing is {phase}, not in production")
            }
            Self::OrderIs(status) => write!(f, "the order is {status}"),
            Self::UnknownListing => f.write_str("no such product in that sell window"),
            Self::UnknownOrder => f.write_str("unknown order"),
            Self::UnknownStep(step) => write!(f, "unknown step {step}"),
            Self::NotYours => f.write_str("this order belongs to another customer"),
            Self::KeyReused => {
                f.write_str("idempotency_key was already used for a different reservation")
            }
        }
    }
}
