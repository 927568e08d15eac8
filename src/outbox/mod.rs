//! The backend's outbox of GitHub actions: validation ([`action`]), execution with
//! in-worker retries ([`executor`]), the claim/report loop ([`runner`]) and the claim
//! journal that releases what a killed worker held ([`journal`]), and the loop's
//! Prometheus metrics ([`metrics`]).

pub mod action;
pub mod executor;
pub mod journal;
pub mod metrics;
pub mod release;
pub mod runner;
pub mod wake;

pub use executor::{Executor, Report, RetryPolicy, Slots};
pub use journal::ClaimJournal;
pub use metrics::OutboxMetrics;
pub use runner::{OutboxSettings, run};
pub use wake::ClaimWake;
