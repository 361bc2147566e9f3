//! Identity: `authorization: Bearer <JWT>`, HS256 with the configured secret. `sub` is the
//! customer id; an admin token carries `role: admin`. Only HS256 is accepted (so `alg: none` and
//! algorithm swaps fail), `exp` is required and may lie at most the configured lifetime ahead,
//! and when configured `iss` and `aud` must be the shop identity provider's.

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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
}

/// What a token must satisfy beyond its signature.
#[derive(Debug, Clone)]
pub struct TokenRules {
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// A token expiring further ahead than this is refused (a stolen long-lived token is the
    /// risk).
    pub max_lifetime_secs: u64,
}

impl Default for TokenRules {
    fn default() -> Self {
        Self {
            issuer: None,
            audience: None,
            max_lifetime_secs: 30 * 24 * 3600,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    Admin { sub: String },
    Customer(CustomerId),
}

impl TokenRules {
    pub fn of(cfg: &sellwindow_runtime::Config) -> Self {
        Self {
            issuer: cfg.jwt_issuer.clone(),
            audience: cfg.jwt_audience.clone(),
            max_lifetime_secs: cfg.jwt_max_lifetime_secs,
        }
    }
}

#[derive(Clone)]
pub struct Auth {
    decoding: DecodingKey,
    encoding: EncodingKey,
    rules: TokenRules,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

impl Auth {
    pub fn new(secret: &str) -> Self {
        Self::with_rules(secret, TokenRules::default())
    }

    pub fn with_rules(secret: &str, rules: TokenRules) -> Self {
        Self {
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            rules,
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
        v.leeway = 5;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &self.rules.issuer {
            v.set_issuer(&[iss]);
            required.push("iss");
        }
        match &self.rules.audience {
            Some(aud) => {
                v.set_audience(&[aud]);
                required.push("aud");
            }
            None => v.validate_aud = false,
        }
        v.set_required_spec_claims(&required);
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &v)
            .map_err(|_| ApiError::Unauthenticated("invalid or expired token"))?;
        let c = data.claims;
        if c.exp > now_secs() + self.rules.max_lifetime_secs + v.leeway {
            return Err(ApiError::Unauthenticated(
                "token lives longer than this API allows",
            ));
        }
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
        let claims = Claims {
            sub: sub.to_string(),
            role: admin.then(|| "admin".to_string()),
            exp: now_secs() + ttl_secs.min(self.rules.max_lifetime_secs),
            iss: self.rules.issuer.clone(),
            aud: self.rules.audience.clone(),
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
            iss: None,
            aud: None,
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

    #[test]
    fn issuer_audience_and_lifetime_are_enforced_when_configured() {
        let rules = TokenRules {
            issuer: Some("https://id.shop.example".into()),
            audience: Some("sellwindow".into()),
            max_lifetime_secs: 3600,
        };
        let strict = Auth::with_rules("secret", rules.clone());
        // Its own tokens carry the issuer and audience and pass.
        assert!(
            strict
                .customer(&md(&strict.mint("c-1", false, 600)))
                .is_ok()
        );
        // Tokens without them, or from another issuer or for another audience, do not.
        let bare = Auth::new("secret").mint("c-1", false, 600);
        assert!(strict.caller(&md(&bare)).is_err());
        let other_issuer = Auth::with_rules(
            "secret",
            TokenRules {
                issuer: Some("https://elsewhere.example".into()),
                ..rules.clone()
            },
        )
        .mint("c-1", false, 600);
        assert!(strict.caller(&md(&other_issuer)).is_err());
        let other_audience = Auth::with_rules(
            "secret",
            TokenRules {
                audience: Some("billing".into()),
                ..rules.clone()
            },
        )
        .mint("c-1", false, 600);
        assert!(strict.caller(&md(&other_audience)).is_err());
        // A token that lives longer than allowed is refused.
        let long = Auth::with_rules(
            "secret",
            TokenRules {
                max_lifetime_secs: 365 * 24 * 3600,
                ..rules
            },
        )
        .mint("c-1", false, 30 * 24 * 3600);
        assert!(matches!(
            strict.caller(&md(&long)),
            Err(ApiError::Unauthenticated(_))
        ));
    }
}
