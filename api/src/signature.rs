//! The payment provider's callback signature: header `X-Signature: t=<unix secs>,v1=<hex
//! HMAC-SHA256(secret, "<t>.<raw body>")>`. Timestamps older than five minutes (or as far in
//! the future) are refused, and the MAC is compared in constant time.

use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const TOLERANCE_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is malformed")]
    Malformed,
    #[error("signature timestamp is outside the tolerance")]
    Stale,
    #[error("signature does not match")]
    Mismatch,
}

fn mac(secret: &[u8], t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(t.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The header value for `body` signed at `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    let tag = mac(secret.as_bytes(), t, body).finalize().into_bytes();
    format!("t={t},v1={}", hex::encode(tag))
}

/// Checks `header` against `body` at time `now` (unix seconds).
pub fn verify(secret: &str, header: &str, body: &[u8], now: i64) -> Result<(), SignatureError> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<i64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => v1 = Some(hex::decode(v).map_err(|_| SignatureError::Malformed)?),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return Err(SignatureError::Malformed);
    };
    // abs_diff cannot overflow, whatever timestamp a caller sends.
    if now.abs_diff(t) > TOLERANCE_SECS as u64 {
        return Err(SignatureError::Stale);
    }
    // verify_slice compares in constant time.
    mac(secret.as_bytes(), t, body)
        .verify_slice(&v1)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_any_change_does_not() {
        let body = br#"{"event_id":"e1"}"#;
        let h = sign("k", 1_000, body);
        assert_eq!(verify("k", &h, body, 1_010), Ok(()));
        assert_eq!(
            verify("k", &h, br#"{"event_id":"e2"}"#, 1_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("other", &h, body, 1_010),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify("k", &h, body, 1_000 + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("k", "v1=00", body, 1_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify("k", "t=x,v1=00", body, 1_000),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_header_may_order_its_parts_freely_but_must_carry_both() {
        let body = b"{}";
        let h = sign("k", 1_000, body);
        let (t, v1) = h.split_once(',').unwrap();
        assert_eq!(verify("k", &format!("{v1}, {t}"), body, 1_000), Ok(()));
        // Unknown parts (e.g. a future v2) are ignored; the v1 MAC still decides.
        assert_eq!(verify("k", &format!("{h},v2=abcd"), body, 1_000), Ok(()));
        assert_eq!(verify("k", t, body, 1_000), Err(SignatureError::Malformed));
        assert_eq!(verify("k", v1, body, 1_000), Err(SignatureError::Malformed));
        assert_eq!(verify("k", "", body, 1_000), Err(SignatureError::Malformed));
        assert_eq!(
            verify("k", &format!("{t},v1=zz"), body, 1_000),
            Err(SignatureError::Malformed)
        );
        // An empty MAC is a mismatch, not a pass.
        assert_eq!(
            verify("k", &format!("{t},v1="), body, 1_000),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn the_tolerance_boundary_is_inclusive() {
        let body = b"{}";
        let h = sign("k", 1_000, body);
        assert_eq!(verify("k", &h, body, 1_000 + TOLERANCE_SECS), Ok(()));
        assert_eq!(verify("k", &h, body, 1_000 - TOLERANCE_SECS), Ok(()));
        assert_eq!(
            verify("k", &h, body, 1_000 + TOLERANCE_SECS + 1),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify("k", &h, body, 1_000 - TOLERANCE_SECS - 1),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn an_extreme_header_timestamp_is_refused_without_overflow() {
        let now = 1_700_000_000;
        let mac = "00".repeat(32);
        for t in [i64::MIN, i64::MIN + 1, now + i64::MIN, i64::MAX] {
            let h = format!("t={t},v1={mac}");
            assert_eq!(
                verify("k", &h, b"{}", now),
                Err(SignatureError::Stale),
                "t = {t}"
            );
        }
    }
}
