//! How the workflow refuses an update (in its validator, which leaves no history, or in its
//! handler): a message prefixed with the gRPC code the API must answer with. The listing's
//! typed refusals are mapped to their codes here, once.

use crate::machine::{ListingRefusal, OrderRefusal};

/// The codes a validator may refuse with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectCode {
    FailedPrecondition,
    NotFound,
    InvalidArgument,
    PermissionDenied,
}

impl RejectCode {
    fn prefix(self) -> &'static str {
        match self {
            RejectCode::FailedPrecondition => "FAILED_PRECONDITION",
            RejectCode::NotFound => "NOT_FOUND",
            RejectCode::InvalidArgument => "INVALID_ARGUMENT",
            RejectCode::PermissionDenied => "PERMISSION_DENIED",
        }
    }
}

/// What a validator answers while the listing moves to a new run (no gRPC code: the API
/// retries, and the retry lands on the new run).
pub const HANDING_OVER: &str = "the listing is moving to a new run; retry";

/// Whether a failed update's message is the hand-over refusal.
pub fn is_handing_over(msg: &str) -> bool {
    msg.contains(HANDING_OVER)
}

/// An update handler's or validator's failure.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// The listing's refusal as the update's failure.
pub fn refuse(r: &ListingRefusal) -> HandlerError {
    let code = match r {
        ListingRefusal::HandingOver => return HANDING_OVER.into(),
        ListingRefusal::Closed { .. }
        | ListingRefusal::ThresholdNotReached { .. }
        | ListingRefusal::NotInProduction { .. } => RejectCode::FailedPrecondition,
        ListingRefusal::UnknownStep(_) => RejectCode::NotFound,
        ListingRefusal::EmptyBatch => RejectCode::InvalidArgument,
    };
    reject(code, r)
}

/// A refused change to an order as the update's failure.
pub fn refuse_order(r: &OrderRefusal) -> HandlerError {
    let code = match r {
        OrderRefusal::NotFound => RejectCode::NotFound,
        OrderRefusal::NotYours => RejectCode::PermissionDenied,
        OrderRefusal::Status(_) => RejectCode::FailedPrecondition,
    };
    reject(code, r)
}

pub fn reject(
    code: RejectCode,
    msg: impl std::fmt::Display,
) -> Box<dyn std::error::Error + Send + Sync> {
    format!("{}: {msg}", code.prefix()).into()
}

/// Splits a rejection message back into its code and text (None if it is not one of ours).
pub fn parse(msg: &str) -> Option<(RejectCode, &str)> {
    [
        RejectCode::FailedPrecondition,
        RejectCode::NotFound,
        RejectCode::InvalidArgument,
        RejectCode::PermissionDenied,
    ]
    .into_iter()
    .find_map(|c| {
        msg.find(&format!("{}: ", c.prefix()))
            .map(|at| (c, &msg[at + c.prefix().len() + 2..]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rejection_round_trips_through_its_message() {
        let e = reject(RejectCode::NotFound, "unknown step s-9");
        assert_eq!(
            parse(&format!("Update failed: {e}")),
            Some((RejectCode::NotFound, "unknown step s-9"))
        );
        assert_eq!(parse("something else"), None);
    }
}
