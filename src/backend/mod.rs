//! The SITG backend's internal API (`/internal/v2`, contract §1): request signing,
//! wire types and an HTTP client with retries.

pub mod client;
pub mod signing;
pub mod types;

pub use client::{
    BackendClient, BackendConfig, BackendError, BackendSetupError, CallPolicy, ClaimError, Refusal,
};
pub use signing::{RequestSigner, SignatureClock, SignedMessage};
