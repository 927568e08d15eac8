//! `X-Hub-Signature-256` verification (contract §3): HMAC-SHA256 of the raw body,
//! compared in constant time, before the body is parsed.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::secret::SecretString;

type HmacSha256 = Hmac<Sha256>;

/// Why a delivery's signature was refused. Messages are safe to return to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// No `X-Hub-Signature-256` header.
    #[error("missing X-Hub-Signature-256 header")]
    Missing,
    /// The header is not `sha256=` followed by 64 hex digits.
    #[error("X-Hub-Signature-256 is not sha256=<64 hex digits>")]
    Malformed,
    /// Well-formed, but no configured secret produces it.
    #[error("X-Hub-Signature-256 does not match the payload")]
    Mismatch,
}

impl SignatureError {
    /// Every reason, so each series of `sitg_bot_webhook_signature_failures_total`
    /// exists (at 0) from the start.
    pub const ALL: [Self; 3] = [Self::Missing, Self::Malformed, Self::Mismatch];

    /// The `reason` label of `sitg_bot_webhook_signature_failures_total` and the
    /// `reason` field of the `webhook_signature_refused` log line.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Mismatch => "mismatch",
        }
    }
}

/// Which configured secret verified a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedSecret {
    /// `GITHUB_WEBHOOK_SECRET`.
    Current,
    /// `GITHUB_WEBHOOK_SECRET_PREVIOUS`: a rotation is still under way on GitHub's side.
    Previous,
}

/// Verifies deliveries against the current and, during a rotation, the previous secret.
///
/// The keyed HMAC states are built once; each verification clones one.
#[derive(Clone)]
pub struct WebhookVerifier {
    current: HmacSha256,
    previous: Option<HmacSha256>,
}

impl std::fmt::Debug for WebhookVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookVerifier")
            .field("has_previous", &self.previous.is_some())
            .finish_non_exhaustive()
    }
}

fn keyed(secret: &SecretString) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(secret.expose().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"))
}

impl WebhookVerifier {
    /// A verifier for `GITHUB_WEBHOOK_SECRET` and the optional previous secret.
    pub fn new(current: &SecretString, previous: Option<&SecretString>) -> Self {
        Self {
            current: keyed(current),
            previous: previous.map(keyed),
        }
    }

    /// Checks `header` (the raw `X-Hub-Signature-256` value) against `body`.
    ///
    /// Returns which secret matched, or a [`SignatureError`].
    pub fn verify(
        &self,
        header: Option<&[u8]>,
        body: &[u8],
    ) -> Result<MatchedSecret, SignatureError> {
        let header = header.ok_or(SignatureError::Missing)?;
        let hex_digest = header
            .strip_prefix(b"sha256=")
            .ok_or(SignatureError::Malformed)?;
        let mut expected = [0u8; 32];
        hex::decode_to_slice(hex_digest, &mut expected).map_err(|_| SignatureError::Malformed)?;
        if verify_with(&self.current, body, &expected) {
            return Ok(MatchedSecret::Current);
        }
        match &self.previous {
            Some(previous) if verify_with(previous, body, &expected) => Ok(MatchedSecret::Previous),
            _ => Err(SignatureError::Mismatch),
        }
    }
}

/// Constant-time comparison through `Mac::verify_slice`.
fn verify_with(mac: &HmacSha256, body: &[u8], expected: &[u8; 32]) -> bool {
    let mut mac = mac.clone();
    mac.update(body);
    mac.verify_slice(expected).is_ok()
}

/// `sha256=` + hex HMAC of `body` with `secret`: what GitHub sends, for simulators and tests.
pub fn sign_payload(secret: &str, body: &[u8]) -> String {
    let mut mac = keyed(&SecretString::new(secret));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_signature_error_has_its_reason_in_all() {
        // Exhaustive on purpose (no wildcard): a new variant does not compile until it
        // is given a position, and the assertion then requires it in `ALL`.
        let position = |e: SignatureError| match e {
            SignatureError::Missing => 0,
            SignatureError::Malformed => 1,
            SignatureError::Mismatch => 2,
        };
        for (i, e) in SignatureError::ALL.into_iter().enumerate() {
            assert_eq!(position(e), i, "{e:?} out of place in ALL");
        }
        assert_eq!(
            SignatureError::ALL.map(SignatureError::reason),
            ["missing", "malformed", "mismatch"]
        );
    }

    /// GitHub's documented test vector (contract §3).
    const VECTOR: &str = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

    fn verifier(current: &str, previous: Option<&str>) -> WebhookVerifier {
        WebhookVerifier::new(
            &SecretString::new(current),
            previous.map(SecretString::new).as_ref(),
        )
    }

    #[test]
    fn githubs_test_vector_verifies() {
        let v = verifier("It's a Secret to Everybody", None);
        assert_eq!(
            v.verify(Some(VECTOR.as_bytes()), b"Hello, World!"),
            Ok(MatchedSecret::Current)
        );
        assert_eq!(
            sign_payload("It's a Secret to Everybody", b"Hello, World!"),
            VECTOR
        );
    }

    #[test]
    fn tampering_and_bad_headers_are_refused() {
        let v = verifier("It's a Secret to Everybody", None);
        assert_eq!(
            v.verify(Some(VECTOR.as_bytes()), b"Hello, World?"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            v.verify(None, b"Hello, World!"),
            Err(SignatureError::Missing)
        );
        for bad in [
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha1=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
            "sha256=xyz",
            "sha256=757107ea",
            "",
        ] {
            assert_eq!(
                v.verify(Some(bad.as_bytes()), b"Hello, World!"),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        // Upper-case hex is still the same digest.
        let upper = VECTOR.to_uppercase().replace("SHA256=", "sha256=");
        assert!(v.verify(Some(upper.as_bytes()), b"Hello, World!").is_ok());
    }

    #[test]
    fn previous_secret_is_accepted_during_rotation() {
        let v = verifier("new-secret", Some("It's a Secret to Everybody"));
        assert_eq!(
            v.verify(Some(VECTOR.as_bytes()), b"Hello, World!"),
            Ok(MatchedSecret::Previous)
        );
        let only_new = verifier("new-secret", None);
        assert_eq!(
            only_new.verify(Some(VECTOR.as_bytes()), b"Hello, World!"),
            Err(SignatureError::Mismatch)
        );
        assert!(!format!("{v:?}").contains("secret"));
    }
}
