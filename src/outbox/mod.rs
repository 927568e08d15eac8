//! The backend's outbox of GitHub actions: validation ([`action`]), execution with
//! in-worker retries ([`executor`]) and the claim/report loop ([`runner`]).

pub mod action;
pub mod executor;
pub mod runner;

pub use executor::{Executor, Report, RetryPolicy};
pub use runner::{OutboxSettings, run};
