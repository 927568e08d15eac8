//! Authentication of `/internal/v2` requests as the backend performs it (contract §1.1):
//! bot key id, timestamp skew, HMAC signature, single-use signatures, service token.
//!
//! Pure logic: the caller passes the header values and the current unix time.

use std::collections::HashMap;

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::secret::SecretString;

/// Largest accepted distance, in seconds, between `x-sitg-timestamp` and the backend's clock.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// The signed message of `POST /internal/v2/github/events/pull-request`.
pub fn pull_request_message(delivery_id: &str) -> String {
    format!("github-event:pull_request:{delivery_id}")
}

/// The signed message of `POST /internal/v2/github/events/installation-sync`.
pub fn installation_sync_message(delivery_id: &str) -> String {
    format!("github-event:installation-sync:{delivery_id}")
}

/// The signed message of `POST /internal/v2/bot-actions/claim`.
pub fn claim_message(worker_id: &str) -> String {
    format!("bot-actions-claim:{worker_id}")
}

/// The signed message of `POST /internal/v2/bot-actions/{action_id}/result`; `outcome`
/// is the upper-case wire value (`SUCCEEDED`, ...).
pub fn result_message(action_id: &str, worker_id: &str, outcome: &str) -> String {
    format!("bot-action-result:{action_id}:{worker_id}:{outcome}")
}

/// The HMAC key the backend derives from a bot key's secret: the raw 32-byte SHA-256
/// digest of the secret's UTF-8 bytes (the backend stores only that digest).
pub fn derive_key(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// The expected `x-sitg-signature` value: `sha256=` + lowercase hex of
/// HMAC-SHA256(key, "{timestamp}.{message}").
pub fn expected_signature(key: &[u8; 32], timestamp: &str, message: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail for a 32-byte key.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(message.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Why a request failed authentication. Every variant answers 403 `FORBIDDEN` except
/// the service-token ones, which answer 401 `UNAUTHORIZED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AuthFailure {
    /// `authorization: Bearer …` missing or malformed while a service token is configured.
    MissingServiceToken,
    /// Bearer token present but not the configured one.
    WrongServiceToken,
    /// `x-sitg-key-id` missing or not a known key.
    UnknownKey,
    /// The key id exists but was revoked.
    InactiveKey,
    /// `x-sitg-timestamp` missing or not a decimal number of seconds.
    BadTimestamp,
    /// Timestamp more than [`MAX_SKEW_SECONDS`] away from the backend's clock.
    Skew,
    /// `x-sitg-signature` missing, not `sha256=` + lowercase hex, or not matching.
    BadSignature,
    /// A signature that was already accepted once (single-use rule).
    Replay,
}

impl AuthFailure {
    /// The error message put in the response body.
    pub fn message(self) -> &'static str {
        match self {
            Self::MissingServiceToken => "missing service token",
            Self::WrongServiceToken => "invalid service token",
            Self::UnknownKey => "unknown bot key",
            Self::InactiveKey => "bot key is not active",
            Self::BadTimestamp => "invalid timestamp",
            Self::Skew => "timestamp outside the allowed window",
            Self::BadSignature => "invalid signature",
            Self::Replay => "signature already used",
        }
    }

    /// True for the failures answered with 401 rather than 403.
    pub fn is_unauthorized(self) -> bool {
        matches!(self, Self::MissingServiceToken | Self::WrongServiceToken)
    }
}

/// The authentication headers of one request, as received (None when absent or not UTF-8).
#[derive(Clone, Copy, Debug, Default)]
pub struct AuthHeaders<'a> {
    /// `x-sitg-key-id`
    pub key_id: Option<&'a str>,
    /// `x-sitg-timestamp`
    pub timestamp: Option<&'a str>,
    /// `x-sitg-signature`
    pub signature: Option<&'a str>,
    /// `authorization`
    pub authorization: Option<&'a str>,
}

struct BotKey {
    hmac_key: [u8; 32],
    active: bool,
}

/// The backend's key table, service token and record of spent signatures.
pub(crate) struct Authenticator {
    keys: HashMap<String, BotKey>,
    service_token: Option<SecretString>,
    /// Accepted signature → its timestamp. Entries older than the skew window can never
    /// be presented successfully again, so they are pruned; the observable behaviour
    /// equals keeping them for ever.
    spent: HashMap<String, i64>,
    last_prune: i64,
}

impl Authenticator {
    pub(crate) fn new(
        keys: impl IntoIterator<Item = (String, SecretString)>,
        service_token: Option<SecretString>,
    ) -> Self {
        let keys = keys
            .into_iter()
            .map(|(id, secret)| {
                let key = BotKey {
                    hmac_key: derive_key(secret.expose()),
                    active: true,
                };
                (id, key)
            })
            .collect();
        Self {
            keys,
            service_token: service_token.filter(|t| !t.is_empty()),
            spent: HashMap::new(),
            last_prune: 0,
        }
    }

    /// Adds (or replaces, re-activating) a bot key.
    pub(crate) fn add_key(&mut self, key_id: String, secret: &SecretString) {
        let key = BotKey {
            hmac_key: derive_key(secret.expose()),
            active: true,
        };
        self.keys.insert(key_id, key);
    }

    /// Marks a key inactive; returns false when the key id is unknown.
    pub(crate) fn revoke_key(&mut self, key_id: &str) -> bool {
        match self.keys.get_mut(key_id) {
            Some(key) => {
                key.active = false;
                true
            }
            None => false,
        }
    }

    /// Checks one request signed over `message` at unix time `now`, and spends its
    /// signature when it is accepted.
    ///
    /// Order: service token, key id, timestamp skew, signature, single use.
    pub(crate) fn verify(
        &mut self,
        headers: &AuthHeaders<'_>,
        message: &str,
        now: i64,
    ) -> Result<(), AuthFailure> {
        if let Some(expected) = &self.service_token {
            let presented = headers
                .authorization
                .and_then(|v| v.strip_prefix("Bearer "))
                .ok_or(AuthFailure::MissingServiceToken)?;
            if !bool::from(presented.as_bytes().ct_eq(expected.expose().as_bytes())) {
                return Err(AuthFailure::WrongServiceToken);
            }
        }

        let key = headers
            .key_id
            .and_then(|id| self.keys.get(id))
            .ok_or(AuthFailure::UnknownKey)?;
        if !key.active {
            return Err(AuthFailure::InactiveKey);
        }

        let timestamp = headers.timestamp.ok_or(AuthFailure::BadTimestamp)?;
        let seconds = parse_unix_seconds(timestamp).ok_or(AuthFailure::BadTimestamp)?;
        if (now - seconds).abs() > MAX_SKEW_SECONDS {
            return Err(AuthFailure::Skew);
        }

        let presented = headers.signature.ok_or(AuthFailure::BadSignature)?;
        let expected = expected_signature(&key.hmac_key, timestamp, message);
        if !bool::from(presented.as_bytes().ct_eq(expected.as_bytes())) {
            return Err(AuthFailure::BadSignature);
        }

        self.prune(now);
        if self.spent.contains_key(presented) {
            return Err(AuthFailure::Replay);
        }
        self.spent.insert(expected, seconds);
        Ok(())
    }

    fn prune(&mut self, now: i64) {
        if now - self.last_prune < MAX_SKEW_SECONDS {
            return;
        }
        self.last_prune = now;
        self.spent
            .retain(|_, seconds| now - *seconds <= MAX_SKEW_SECONDS + 1);
    }
}

/// Whole seconds in plain decimal digits, as the contract specifies (no sign, no fraction).
fn parse_unix_seconds(value: &str) -> Option<i64> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn auth(token: Option<&str>) -> Authenticator {
        Authenticator::new(
            [("bot-key-1".to_owned(), SecretString::new("s3cret"))],
            token.map(SecretString::new),
        )
    }

    fn headers<'a>(ts: &'a str, sig: &'a str) -> AuthHeaders<'a> {
        AuthHeaders {
            key_id: Some("bot-key-1"),
            timestamp: Some(ts),
            signature: Some(sig),
            authorization: None,
        }
    }

    #[test]
    fn signature_matches_an_independently_computed_value() {
        // printf '%s' s3cret | openssl dgst -sha256 -binary > key
        // printf '%s' '1700000000.bot-actions-claim:w1' \
        //   | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(xxd -p -c 64 key)
        let key = derive_key("s3cret");
        assert_eq!(
            hex::encode(key),
            "1ec1c26b50d5d3c58d9583181af8076655fe00756bf7285940ba3670f99fcba0"
        );
        assert_eq!(
            expected_signature(&key, "1700000000", &claim_message("w1")),
            "sha256=e6c403508565ba1575767e98d0e4bc611e45bde53b5863ca2b06b76e14042f88"
        );
    }

    #[test]
    fn accepts_once_then_rejects_the_replay() {
        let mut a = auth(None);
        let sig = expected_signature(&derive_key("s3cret"), "1700000000", "m");
        assert_eq!(a.verify(&headers("1700000000", &sig), "m", NOW), Ok(()));
        assert_eq!(
            a.verify(&headers("1700000000", &sig), "m", NOW + 1),
            Err(AuthFailure::Replay)
        );
    }

    #[test]
    fn rejects_skew_beyond_300_seconds_either_way() {
        let mut a = auth(None);
        let key = derive_key("s3cret");
        for ts in [NOW - 301, NOW + 301] {
            let ts = ts.to_string();
            let sig = expected_signature(&key, &ts, "m");
            assert_eq!(
                a.verify(&headers(&ts, &sig), "m", NOW),
                Err(AuthFailure::Skew)
            );
        }
        for ts in [NOW - 300, NOW + 300] {
            let ts = ts.to_string();
            let sig = expected_signature(&key, &ts, "m");
            assert_eq!(a.verify(&headers(&ts, &sig), "m", NOW), Ok(()));
        }
    }

    #[test]
    fn rejects_wrong_message_uppercase_hex_and_odd_timestamps() {
        let mut a = auth(None);
        let sig = expected_signature(&derive_key("s3cret"), "1700000000", "m");
        assert_eq!(
            a.verify(&headers("1700000000", &sig), "other", NOW),
            Err(AuthFailure::BadSignature)
        );
        let upper = format!("sha256={}", sig["sha256=".len()..].to_uppercase());
        assert_eq!(
            a.verify(&headers("1700000000", &upper), "m", NOW),
            Err(AuthFailure::BadSignature)
        );
        assert_eq!(
            a.verify(&headers("+1700000000", &sig), "m", NOW),
            Err(AuthFailure::BadTimestamp)
        );
        assert_eq!(
            a.verify(&headers("1700000000.0", &sig), "m", NOW),
            Err(AuthFailure::BadTimestamp)
        );
    }

    #[test]
    fn unknown_and_revoked_keys_are_rejected() {
        let mut a = auth(None);
        let sig = expected_signature(&derive_key("s3cret"), "1700000000", "m");
        let mut h = headers("1700000000", &sig);
        h.key_id = Some("nope");
        assert_eq!(a.verify(&h, "m", NOW), Err(AuthFailure::UnknownKey));
        assert!(a.revoke_key("bot-key-1"));
        assert_eq!(
            a.verify(&headers("1700000000", &sig), "m", NOW),
            Err(AuthFailure::InactiveKey)
        );
    }

    #[test]
    fn service_token_is_required_when_configured() {
        let mut a = auth(Some("tok"));
        let sig = expected_signature(&derive_key("s3cret"), "1700000000", "m");
        let mut h = headers("1700000000", &sig);
        assert_eq!(
            a.verify(&h, "m", NOW),
            Err(AuthFailure::MissingServiceToken)
        );
        h.authorization = Some("Bearer nope");
        assert_eq!(a.verify(&h, "m", NOW), Err(AuthFailure::WrongServiceToken));
        h.authorization = Some("Bearer tok");
        assert_eq!(a.verify(&h, "m", NOW), Ok(()));
    }

    #[test]
    fn pruning_keeps_signatures_that_could_still_be_replayed() {
        let mut a = auth(None);
        let key = derive_key("s3cret");
        let sig = expected_signature(&key, "1700000000", "m");
        assert_eq!(a.verify(&headers("1700000000", &sig), "m", NOW), Ok(()));
        // A later request triggers pruning; the first signature is still within skew.
        let ts = (NOW + MAX_SKEW_SECONDS).to_string();
        let sig2 = expected_signature(&key, &ts, "m");
        assert_eq!(
            a.verify(&headers(&ts, &sig2), "m", NOW + MAX_SKEW_SECONDS),
            Ok(())
        );
        assert_eq!(
            a.verify(&headers("1700000000", &sig), "m", NOW + MAX_SKEW_SECONDS),
            Err(AuthFailure::Replay)
        );
    }
}
