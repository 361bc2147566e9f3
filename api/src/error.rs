//! The API's errors, mapped to gRPC status codes in one place.

use sellwindow_activities::StoreError;
use sellwindow_domain::DomainError;
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
    #[error("internal error")]
    Internal(String),
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

/// Maps a refused or failed workflow update to the API's error.
pub fn from_update(e: temporalio_client::errors::WorkflowUpdateError) -> ApiError {
    use sellwindow_workflows::rejection::{RejectCode, parse};
    use temporalio_client::errors::WorkflowUpdateError as E;
    match e {
        E::NotFound(_) => ApiError::NotFound("no such listing workflow".into()),
        E::Failed(f) => {
            let msg = f.message.clone();
            match parse(&msg) {
                Some((RejectCode::FailedPrecondition, m)) => ApiError::Precondition(m.to_string()),
                Some((RejectCode::NotFound, m)) => ApiError::NotFound(m.to_string()),
                Some((RejectCode::PermissionDenied, m)) => {
                    ApiError::PermissionDenied(m.to_string())
                }
                Some((RejectCode::InvalidArgument, m)) => {
                    ApiError::Invalid(DomainError::invalid("request", m))
                }
                None => ApiError::Unavailable(msg),
            }
        }
        other => ApiError::Unavailable(other.to_string()),
    }
}
