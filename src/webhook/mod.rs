//! Pure webhook logic: signature verification (contract §3) and normalisation of
//! GitHub's payloads into the backend's event shapes (contract §1.2, §1.3). No I/O.

pub mod normalize;
pub mod signature;

pub use normalize::{Delivery, Normalized, PayloadError, normalize, validate_delivery_id};
pub use signature::{MatchedSecret, SignatureError, WebhookVerifier, sign_payload};
