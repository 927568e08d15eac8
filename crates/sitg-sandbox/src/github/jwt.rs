//! Verification of GitHub App JWTs, as GitHub checks them on App-authenticated routes:
//! RS256 signed by the App's private key, `iss` the App id (number or string) or its
//! client id, `iat` not in the future, `exp` in the future but at most 10 minutes ahead
//! and at most 10 minutes after `iat`.

use std::collections::HashSet;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use serde_json::Value;

/// Longest JWT lifetime GitHub accepts, in seconds.
pub const MAX_JWT_LIFETIME_SECONDS: i64 = 600;

/// Clock drift, in seconds, tolerated on `iat` and `exp` (hosts' clocks differ a little).
pub const CLOCK_DRIFT_SECONDS: i64 = 10;

/// Why a JWT was refused; every variant answers 401.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum JwtRejection {
    /// No `authorization: Bearer …` header.
    Missing,
    /// Not a JWT, not RS256, or not signed by the App's key.
    Undecodable,
    /// `iat` or `exp` missing or not an integer.
    MissingTimes,
    /// `exp` in the past.
    Expired,
    /// `exp` more than 10 minutes ahead, or more than 10 minutes after `iat`.
    TooLong,
    /// `iat` in the future.
    IssuedInFuture,
    /// `iss` is neither the App id nor its client id.
    WrongIssuer,
}

impl JwtRejection {
    /// GitHub's message for the failure.
    pub fn message(self) -> &'static str {
        match self {
            Self::Missing => {
                "A JSON web token could not be decoded: no Bearer token in the Authorization header"
            }
            Self::Undecodable => "A JSON web token could not be decoded",
            Self::MissingTimes | Self::Expired => {
                "'Expiration time' claim ('exp') must be a numeric value representing the \
                 future time at which the assertion expires"
            }
            Self::TooLong => "'Expiration time' claim ('exp') is too far in the future",
            Self::IssuedInFuture => {
                "'Issued at' claim ('iat') must be an Integer representing the time that the \
                 assertion was issued"
            }
            Self::WrongIssuer => "Integration not found",
        }
    }
}

/// Checks App JWTs against one public key.
pub(crate) struct AppJwtVerifier {
    key: DecodingKey,
    validation: Validation,
    app_id: u64,
    client_id: Option<String>,
}

impl AppJwtVerifier {
    /// Errors: the PEM is not an RSA public key.
    pub(crate) fn new(
        public_pem: &str,
        app_id: u64,
        client_id: Option<String>,
    ) -> Result<Self, jsonwebtoken::errors::Error> {
        let key = DecodingKey::from_rsa_pem(public_pem.as_bytes())?;
        let mut validation = Validation::new(Algorithm::RS256);
        // Time and issuer rules are GitHub's, checked below with GitHub's messages.
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims = HashSet::new();
        Ok(Self {
            key,
            validation,
            app_id,
            client_id,
        })
    }

    /// Verifies `token` at unix time `now`.
    pub(crate) fn verify(&self, token: &str, now: i64) -> Result<(), JwtRejection> {
        let claims = decode::<Value>(token, &self.key, &self.validation)
            .map_err(|_| JwtRejection::Undecodable)?
            .claims;
        check_claims(&claims, self.app_id, self.client_id.as_deref(), now)
    }
}

/// GitHub's claim rules, on already signature-checked claims.
pub(crate) fn check_claims(
    claims: &Value,
    app_id: u64,
    client_id: Option<&str>,
    now: i64,
) -> Result<(), JwtRejection> {
    let (Some(iat), Some(exp)) = (claims["iat"].as_i64(), claims["exp"].as_i64()) else {
        return Err(JwtRejection::MissingTimes);
    };
    if iat > now + CLOCK_DRIFT_SECONDS {
        return Err(JwtRejection::IssuedInFuture);
    }
    if exp <= now - CLOCK_DRIFT_SECONDS {
        return Err(JwtRejection::Expired);
    }
    if exp - iat > MAX_JWT_LIFETIME_SECONDS
        || exp > now + MAX_JWT_LIFETIME_SECONDS + CLOCK_DRIFT_SECONDS
    {
        return Err(JwtRejection::TooLong);
    }
    let issuer_ok = match &claims["iss"] {
        Value::Number(n) => n.as_u64() == Some(app_id),
        Value::String(s) => s.parse::<u64>().ok() == Some(app_id) || Some(s.as_str()) == client_id,
        _ => false,
    };
    if !issuer_ok {
        return Err(JwtRejection::WrongIssuer);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_700_000_000;

    #[test]
    fn a_backdated_ten_minute_token_passes() {
        let claims = json!({"iat": NOW - 60, "exp": NOW + 540, "iss": 42});
        assert_eq!(check_claims(&claims, 42, None, NOW), Ok(()));
        let claims = json!({"iat": NOW - 60, "exp": NOW + 540, "iss": "42"});
        assert_eq!(check_claims(&claims, 42, None, NOW), Ok(()));
        let claims = json!({"iat": NOW - 60, "exp": NOW + 540, "iss": "Iv23abc"});
        assert_eq!(check_claims(&claims, 42, Some("Iv23abc"), NOW), Ok(()));
    }

    #[test]
    fn time_rules() {
        let cases = [
            (
                json!({"iat": NOW - 700, "exp": NOW - 100, "iss": 42}),
                JwtRejection::Expired,
            ),
            (
                json!({"iat": NOW, "exp": NOW + 601, "iss": 42}),
                JwtRejection::TooLong,
            ),
            (
                json!({"iat": NOW - 60, "exp": NOW + 600, "iss": 42}),
                JwtRejection::TooLong,
            ),
            (
                json!({"iat": NOW + 60, "exp": NOW + 300, "iss": 42}),
                JwtRejection::IssuedInFuture,
            ),
            (
                json!({"exp": NOW + 300, "iss": 42}),
                JwtRejection::MissingTimes,
            ),
            (
                json!({"iat": "now", "exp": NOW + 300, "iss": 42}),
                JwtRejection::MissingTimes,
            ),
        ];
        for (claims, expected) in cases {
            assert_eq!(
                check_claims(&claims, 42, None, NOW),
                Err(expected),
                "{claims}"
            );
        }
    }

    #[test]
    fn issuer_must_be_the_app() {
        for iss in [json!(43), json!("43"), json!(null), json!("Iv23abc")] {
            let claims = json!({"iat": NOW - 60, "exp": NOW + 540, "iss": iss});
            assert_eq!(
                check_claims(&claims, 42, None, NOW),
                Err(JwtRejection::WrongIssuer)
            );
        }
    }
}
