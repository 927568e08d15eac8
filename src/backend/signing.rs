//! Request signing for the backend's internal API (contract §1.1).

use std::collections::HashMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::secret::SecretString;

type HmacSha256 = Hmac<Sha256>;

/// The signed `message` of each internal endpoint (contract §1.1 table).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SignedMessage<'a> {
    /// `github-event:pull_request:{delivery_id}`
    PullRequestEvent { delivery_id: &'a str },
    /// `github-event:installation-sync:{delivery_id}`
    InstallationSyncEvent { delivery_id: &'a str },
    /// `bot-actions-claim:{worker_id}`
    Claim { worker_id: &'a str },
    /// `bot-action-result:{action_id}:{worker_id}:{outcome}` (outcome upper case)
    Result {
        action_id: &'a str,
        worker_id: &'a str,
        outcome: &'a str,
    },
}

impl SignedMessage<'_> {
    /// Whether another replica may sign this very message: an event forward names only
    /// the delivery id, so one delivery that reaches two replicas (a load balancer's
    /// retry) is signed by both, in the same second with some luck, and the backend then
    /// refuses the second signature as a replay. Claims and result reports name this
    /// worker's id, which no other replica uses.
    pub fn shared_by_replicas(&self) -> bool {
        matches!(
            self,
            Self::PullRequestEvent { .. } | Self::InstallationSyncEvent { .. }
        )
    }
}

impl fmt::Display for SignedMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PullRequestEvent { delivery_id } => {
                write!(f, "github-event:pull_request:{delivery_id}")
            }
            Self::InstallationSyncEvent { delivery_id } => {
                write!(f, "github-event:installation-sync:{delivery_id}")
            }
            Self::Claim { worker_id } => write!(f, "bot-actions-claim:{worker_id}"),
            Self::Result {
                action_id,
                worker_id,
                outcome,
            } => write!(f, "bot-action-result:{action_id}:{worker_id}:{outcome}"),
        }
    }
}

/// The three authentication headers of one request.
#[derive(Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// `x-sitg-key-id`
    pub key_id: String,
    /// `x-sitg-timestamp`: unix seconds, decimal.
    pub timestamp: String,
    /// `x-sitg-signature`: `sha256=` + lowercase hex.
    pub signature: String,
}

impl fmt::Debug for SignatureHeaders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A signature is single-use but still lets a reader replay it within the skew
        // window if it leaks before use: keep it out of logs.
        f.debug_struct("SignatureHeaders")
            .field("key_id", &self.key_id)
            .field("timestamp", &self.timestamp)
            .finish_non_exhaustive()
    }
}

/// Signs internal-API requests with the bot key.
///
/// The HMAC key is SHA-256 of the secret's UTF-8 bytes (the raw 32-byte digest), because
/// the backend stores only that digest. The keyed HMAC state is built once and cloned
/// per signature.
pub struct RequestSigner {
    key_id: String,
    mac: HmacSha256,
}

impl fmt::Debug for RequestSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestSigner")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl RequestSigner {
    /// A signer for `BACKEND_BOT_KEY_ID` and `BACKEND_INTERNAL_HMAC_SECRET`.
    pub fn new(key_id: impl Into<String>, secret: &SecretString) -> Self {
        let key = Sha256::digest(secret.expose().as_bytes());
        // HMAC accepts keys of any length, so this cannot fail.
        let mac = <HmacSha256 as KeyInit>::new_from_slice(&key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        Self {
            key_id: key_id.into(),
            mac,
        }
    }

    /// `hex(HMAC-SHA256(SHA-256(secret), "{timestamp}.{message}"))`, lowercase.
    pub fn signature_hex(&self, timestamp: u64, message: &str) -> String {
        let mut mac = self.mac.clone();
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(message.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The headers for `message` signed at `timestamp` (unix seconds).
    pub fn headers(&self, timestamp: u64, message: &str) -> SignatureHeaders {
        SignatureHeaders {
            key_id: self.key_id.clone(),
            timestamp: timestamp.to_string(),
            signature: format!("sha256={}", self.signature_hex(timestamp, message)),
        }
    }
}

/// Hands out signing timestamps so that one message is never signed twice in the same
/// second.
///
/// The backend keeps every signature it has seen and refuses a second request with the
/// same one (contract §1.1); with one-second timestamps, two requests with the same
/// message in the same second would carry the same signature. Claims repeat the same
/// message by nature, retries repeat theirs.
#[derive(Debug, Default)]
pub struct SignatureClock {
    last_used: Mutex<LastUsed>,
}

/// Second of the last signature per message, and the second of the last sweep.
#[derive(Debug, Default)]
struct LastUsed {
    by_message: HashMap<String, u64>,
    swept_at: u64,
}

impl SignatureClock {
    /// Reserves a timestamp for `message`: now, or — if `message` was already signed this
    /// second — waits for the next second. Returns unix seconds.
    pub async fn reserve(&self, message: &str) -> u64 {
        loop {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
            let secs = now.as_secs();
            let wait = {
                let mut used = self.last_used.lock();
                match used.by_message.get(message) {
                    Some(&last) if last >= secs => Some(
                        Duration::from_secs(last + 1).saturating_sub(now)
                            + Duration::from_millis(1),
                    ),
                    _ => {
                        // Only entries of this second matter. Dropping the others once
                        // per second keeps the map at about one second of messages;
                        // sweeping by size instead re-scanned the whole map on every
                        // insert once a second held more than the threshold (every
                        // webhook delivery has a message of its own).
                        if secs > used.swept_at {
                            used.by_message.retain(|_, &mut ts| ts >= secs);
                            used.swept_at = secs;
                        }
                        used.by_message.insert(message.to_owned(), secs);
                        None
                    }
                }
            };
            match wait {
                None => return secs,
                Some(delay) => tokio::time::sleep(delay).await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_follow_the_contract_table() {
        assert_eq!(
            SignedMessage::PullRequestEvent { delivery_id: "d-1" }.to_string(),
            "github-event:pull_request:d-1"
        );
        assert_eq!(
            SignedMessage::InstallationSyncEvent { delivery_id: "d-2" }.to_string(),
            "github-event:installation-sync:d-2"
        );
        assert_eq!(
            SignedMessage::Claim { worker_id: "w1" }.to_string(),
            "bot-actions-claim:w1"
        );
        assert_eq!(
            SignedMessage::Result {
                action_id: "a1",
                worker_id: "w1",
                outcome: "SUCCEEDED"
            }
            .to_string(),
            "bot-action-result:a1:w1:SUCCEEDED"
        );
    }

    /// Computed independently with:
    /// `KEY=$(printf %s 'test-secret' | openssl dgst -sha256 -hex | awk "{print \$NF}")`;
    /// `printf %s '1700000000.bot-actions-claim:bot-worker-prod-1' | openssl dgst -sha256 -mac HMAC -macopt hexkey:$KEY`
    #[test]
    fn signature_matches_openssl() {
        let signer = RequestSigner::new("bck_test", &SecretString::new("test-secret"));
        assert_eq!(
            signer.signature_hex(1_700_000_000, "bot-actions-claim:bot-worker-prod-1"),
            "a8f109f4260b797c73733e1cc7afd598d8329da8bf53c5a01231db3bbdf42b8c"
        );
        let headers = signer.headers(1_700_000_000, "bot-actions-claim:bot-worker-prod-1");
        assert_eq!(headers.key_id, "bck_test");
        assert_eq!(headers.timestamp, "1700000000");
        assert!(headers.signature.starts_with("sha256="));
        assert!(!format!("{headers:?}").contains(&headers.signature));
        assert!(!format!("{signer:?}").contains("test-secret"));
    }

    #[tokio::test]
    async fn the_same_message_never_gets_the_same_second() {
        let clock = SignatureClock::default();
        let a = clock.reserve("bot-actions-claim:w").await;
        let other = clock.reserve("bot-actions-claim:other").await;
        let b = clock.reserve("bot-actions-claim:w").await;
        assert!(b > a, "{b} must be after {a}");
        assert!(other >= a);
    }
}
