//! Identity: `authorization: Bearer <JWT>`, HS256 with the configured secret. `sub` is the
//! customer id; an admin token carries `role: admin`. Only HS256 is accepted (so `alg: none` and
//! algorithm swaps fail), and `exp` is required.

use crate::error::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sellwindow_domain::CustomerId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub exp: u64,
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin { sub: String },
    Customer(CustomerId),
}

#[derive(Clone)]
pub struct Auth {
    decoding: DecodingKey,
    encoding: EncodingKey,
}

impl Auth {
    pub fn new(secret: &str) -> Self {
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
        }
    }

    pub fn caller(&self, metadata: &tonic::metadata::MetadataMap) -> Result<Caller, ApiError> {
        let header = metadata
            .get("authorization")
            .ok_or(ApiError::Unauthenticated("missing bearer token"))?
            .to_str()
            .map_err(|_| ApiError::Unauthenticated("malformed authorization header"))?;
        let token = header
            .strip_prefix("Bearer ")
            .ok_or(ApiError::Unauthenticated(
                "authorization must be 'Bearer <token>'",
            ))?;
        let mut v = Validation::new(Algorithm::HS256);
        v.set_required_spec_claims(&["exp", "sub"]);
        v.leeway = 5;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|_| ApiError::Unauthenticated("invalid or expired token"))?;
        let c = data.claims;
        if c.role.as_deref() == Some("admin") {
            return Ok(Caller::Admin { sub: c.sub });
        }
        let id = CustomerId::parse(c.sub)
            .map_err(|_| ApiError::Unauthenticated("token subject is not a valid customer id"))?;
        Ok(Caller::Customer(id))
    }

    pub fn admin(&self, metadata: &tonic::metadata::MetadataMap) -> Result<String, ApiError> {
        match self.caller(metadata)? {
            Caller::Admin { sub } => Ok(sub),
            Caller::Customer(_) => Err(ApiError::PermissionDenied(
                "this call needs the admin role".into(),
            )),
        }
    }

    pub fn customer(
        &self,
        metadata: &tonic::metadata::MetadataMap,
    ) -> Result<CustomerId, ApiError> {
        match self.caller(metadata)? {
            Caller::Customer(c) => Ok(c),
            Caller::Admin { .. } => Err(ApiError::PermissionDenied(
                "this call is for customers".into(),
            )),
        }
    }

    /// Mints a token valid for `ttl_secs` (local use: `starter token`).
    pub fn mint(&self, sub: &str, admin: bool, ttl_secs: u64) -> String {
        let exp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
            + ttl_secs;
        let claims = Claims {
            sub: sub.to_string(),
            role: admin.then(|| "admin".to_string()),
            exp,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 encoding cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::metadata::MetadataMap;

    fn md(token: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", format!("Bearer {token}").parse().unwrap());
        m
    }

    #[test]
    fn tokens_are_checked_for_signature_expiry_and_algorithm() {
        let auth = Auth::new("secret-one");
        assert_eq!(
            auth.customer(&md(&auth.mint("c-1", false, 60)))
                .unwrap()
                .as_str(),
            "c-1"
        );
        assert!(auth.admin(&md(&auth.mint("ops", true, 60))).is_ok());
        // Signed with another secret.
        let other = Auth::new("secret-two").mint("c-1", false, 60);
        assert!(matches!(
            auth.caller(&md(&other)),
            Err(ApiError::Unauthenticated(_))
        ));
        // Expired long ago.
        let claims = Claims {
            sub: "c-1".into(),
            role: None,
            exp: 1_000,
        };
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"secret-one"),
        )
        .unwrap();
        assert!(matches!(
            auth.caller(&md(&old)),
            Err(ApiError::Unauthenticated(_))
        ));
        // alg: none, unsigned.
        let none = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJvcHMiLCJyb2xlIjoiYWRtaW4iLCJleHAiOjk5OTk5OTk5OTl9.";
        assert!(matches!(
            auth.caller(&md(none)),
            Err(ApiError::Unauthenticated(_))
        ));
        // Missing header; customer on an admin call.
        assert!(matches!(
            auth.caller(&MetadataMap::new()),
            Err(ApiError::Unauthenticated(_))
        ));
        assert!(matches!(
            auth.admin(&md(&auth.mint("c-1", false, 60))),
            Err(ApiError::PermissionDenied(_))
        ));
    }
}
