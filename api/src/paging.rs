//! Paged lists (Google AIP-158): `page_size` (0 means [`DEFAULT_PAGE_SIZE`], larger than
//! [`MAX_PAGE_SIZE`] is read as the maximum, negative is refused) and an opaque `page_token`
//! that carries where the next page starts and a fingerprint of the filters it was issued
//! for, so a token is refused when the filters change under it.

use crate::error::ApiError;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sellwindow_domain::DomainError;
use sellwindow_store::lists::{Cursor, PageRequest};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const DEFAULT_PAGE_SIZE: u32 = 100;
pub const MAX_PAGE_SIZE: u32 = 1_000;

#[derive(Serialize, Deserialize)]
struct Token {
    /// The cursor: sort key and id of the previous page's last row.
    a: i64,
    i: String,
    /// The filters' fingerprint.
    f: String,
}

fn fingerprint(filters: &str) -> String {
    let digest = Sha256::digest(filters.as_bytes());
    hex::encode(&digest[..8])
}

fn invalid(field: &'static str, why: &str) -> ApiError {
    ApiError::Invalid(DomainError::invalid(field, why))
}

/// The page a list call asks for. `filters` names everything else the call filters by (the
/// caller's identity included), in a fixed form.
pub fn request(page_size: i32, page_token: &str, filters: &str) -> Result<PageRequest, ApiError> {
    let size = match page_size {
        n if n < 0 => return Err(invalid("page_size", "must not be negative")),
        0 => DEFAULT_PAGE_SIZE,
        n => (n as u32).min(MAX_PAGE_SIZE),
    };
    if page_token.is_empty() {
        return Ok(PageRequest { after: None, size });
    }
    let not_ours = || {
        invalid(
            "page_token",
            "is not a token this list issued for these filters",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(page_token).map_err(|_| not_ours())?;
    let token: Token = serde_json::from_slice(&bytes).map_err(|_| not_ours())?;
    if token.f != fingerprint(filters) {
        return Err(not_ours());
    }
    Ok(PageRequest {
        after: Some(Cursor {
            at: token.a,
            id: token.i,
        }),
        size,
    })
}

/// The token of the page after this one, or "" when this was the last.
pub fn next_token(next: Option<Cursor>, filters: &str) -> String {
    next.map_or_else(String::new, |c| {
        let t = Token {
            a: c.at,
            i: c.id,
            f: fingerprint(filters),
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&t).expect("a token serializes"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_default_cap_and_refuse_negatives() {
        assert_eq!(request(0, "", "").unwrap().size, DEFAULT_PAGE_SIZE);
        assert_eq!(request(7, "", "").unwrap().size, 7);
        assert_eq!(request(50_000, "", "").unwrap().size, MAX_PAGE_SIZE);
        assert!(request(-1, "", "").is_err());
    }

    #[test]
    fn a_token_round_trips_only_with_its_own_filters() {
        let c = Cursor {
            at: 42,
            id: "o-1".into(),
        };
        let t = next_token(Some(c.clone()), "window=a");
        assert_eq!(request(10, &t, "window=a").unwrap().after, Some(c));
        assert!(request(10, &t, "window=b").is_err());
        assert!(request(10, "not a token", "window=a").is_err());
        assert_eq!(next_token(None, "window=a"), "");
    }
}
