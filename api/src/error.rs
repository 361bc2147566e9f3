//! The API's errors, mapped to gRPC status codes in one place; a rule's [`Refusal`] becomes
//! one of them here, by its variant.

use sellwindow_domain::{DomainError, Refusal};
use sellwindow_store::StoreError;
use tonic::Status;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(#[from] DomainError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Exhausted(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    /// Too many requests waiting: refused at once, so the caller can back off and retry.
    #[error("overloaded: {0}")]
    Overloaded(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The listing's workflow has finished: nothing about it can change any more.
    #[error("the listing's workflow has finished")]
    Finished,
    /// A rule said no.
    #[error("{0}")]
    Refused(Refusal),
    #[error("internal error")]
    Internal(String),
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> Self {
        ApiError::Refused(r)
    }
}

/// The metadata key that carries a refusal's JSON beside its status, so callers (the web
/// layer among them) tell refusals apart by their variant, never by their text.
pub const REFUSAL_METADATA: &str = "sellwindow-refusal";

/// A refusal as a gRPC status: its code by its variant, its JSON in [`REFUSAL_METADATA`].
fn refused(r: Refusal) -> Status {
    let m = r.to_string();
    let mut status = match &r {
        Refusal::NotEnoughQuota { .. } | Refusal::CustomerLimit { .. } => {
            Status::resource_exhausted(m)
        }
        Refusal::Closed { .. }
        | Refusal::ThresholdNotReached { .. }
        | Refusal::NotInProduction { .. }
        | Refusal::OrderIs(_) => Status::failed_precondition(m),
        Refusal::UnknownListing | Refusal::UnknownOrder | Refusal::UnknownStep(_) => {
            Status::not_found(m)
        }
        Refusal::NotYours => Status::permission_denied(m),
        Refusal::KeyReused => Status::invalid_argument(
            DomainError::invalid(
                "idempotency_key",
                "was already used for a different reservation",
            )
            .to_string(),
        ),
    };
    if let Ok(v) = serde_json::to_string(&r).unwrap_or_default().parse() {
        status.metadata_mut().insert(REFUSAL_METADATA, v);
    }
    status
}

/// The refusal a status carries, if it is one.
pub fn refusal_of(status: &Status) -> Option<Refusal> {
    let v = status.metadata().get(REFUSAL_METADATA)?.to_str().ok()?;
    serde_json::from_str(v).ok()
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Unavailable(e.to_string())
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::Invalid(d) => Status::invalid_argument(d.to_string()),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::Exhausted(m) => Status::resource_exhausted(m),
            ApiError::Precondition(m) => Status::failed_precondition(m),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::Unavailable(m) => {
                tracing::warn!(error = %m, "dependency unavailable");
                Status::unavailable(
                    "a dependency is unavailable; retry with the same idempotency key",
                )
            }
            ApiError::Overloaded(m) => with_pushback(Status::unavailable(m)),
            ApiError::DeadlineExceeded(m) => Status::deadline_exceeded(m),
            ApiError::Refused(r) => refused(r),
            ApiError::Finished => {
                Status::failed_precondition("the sell window has finished; nothing can change now")
            }
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// How long a caller refused for load should wait before retrying, in gRPC's own retry
/// metadata (`grpc-retry-pushback-ms`, which clients with a retry policy honour): a flood
/// backs off instead of hammering an API that is already full.
pub const RETRY_PUSHBACK_MS: u64 = 250;

/// `status` with the retry pushback attached.
pub fn with_pushback(mut status: Status) -> Status {
    status.metadata_mut().insert(
        "grpc-retry-pushback-ms",
        tonic::metadata::MetadataValue::from(RETRY_PUSHBACK_MS),
    );
    status
}

/// Maps a workflow update that did not answer to the API's error. A refusal is an answer
/// (typed, see [`From<Refusal>`]); what fails here is the update itself: the listing's
/// workflow is gone, or turned the update away while handing over to its next run (asked
/// again by the caller, see [`crate::listing_calls`]), or could not be reached.
pub fn from_update(e: temporalio_client::errors::WorkflowUpdateError) -> ApiError {
    use temporalio_client::errors::WorkflowUpdateError as E;
    match e {
        E::NotFound(_) => ApiError::Finished,
        E::Failed(f) => ApiError::Unavailable(f.message.clone()),
        other => ApiError::Unavailable(other.to_string()),
    }
}
