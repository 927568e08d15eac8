//! In-process simulators of the worker's two peers, for `sitg-bot dev`, tests and
//! benchmarks.
//!
//! - [`backend::BackendSim`]: the SITG backend's `/internal/v2` API (contract §1),
//!   including the real service's traps of §1.6 (deliveries spent before processing,
//!   immediate requeue of retryable failures, single-use signatures, no lease expiry).
//! - [`github::GitHubSim`]: the slice of GitHub's REST API the worker uses (contract §2):
//!   App JWT and installation access tokens, paginated issue comments, pull request
//!   closing, installation repositories, with fault injection.
//! - [`keys`]: fresh RSA key pairs for a simulated GitHub App.
//! - [`serve()`] / [`Served`]: run a simulator's router on a socket.
//! - [`standalone`]: both simulators as their own process (`sitg-bot sandbox`), for
//!   load harnesses.
//!
//! Both simulators are written from the contract alone and share no code with the
//! worker's clients, so a test of the worker against them checks the worker against the
//! contract rather than against itself.

pub mod backend;
mod changes;
pub mod examples;
pub mod github;
pub mod keys;
pub mod peers;
mod serve;
pub mod standalone;

pub use serve::{Served, serve};
