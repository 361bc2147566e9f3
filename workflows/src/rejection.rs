//! How the workflow answers an update it will not carry out. A refusal is an answer like any
//! other, typed ([`Answer`]): the API maps it to its code by its variant, never by its text.
//! A validator turns an update away only while the listing hands over to its next run (the
//! API then asks again); that rejection carries nothing to parse.

use sellwindow_domain::Refusal;

/// An update's answer: what was done, or why it was refused.
pub type Answer<T> = Result<T, Refusal>;

/// An update handler's or validator's failure (a hand-over, or the workflow ending).
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// What a validator answers while the listing moves to a new run.
pub fn handing_over() -> HandlerError {
    "the listing is moving to its next run; ask again".into()
}
