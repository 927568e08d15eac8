//! # sitg-sandbox
//!
//! Simulators of the worker's two peers, for `sitg-sandbox dev`, the tests and the
//! benchmarks of the `sitg-bot` crate:
//!
//! - [`backend::BackendSim`]: the SITG backend's `/internal/v2` API (contract §1),
//!   including the real service's traps of §1.6 (deliveries spent before processing,
//!   immediate requeue of retryable failures, single-use signatures, no lease expiry).
//! - [`github::GitHubSim`]: the slice of GitHub's REST API the worker uses (contract §2):
//!   App JWT and installation access tokens, paginated issue comments, pull request
//!   closing, installation repositories, with fault injection.
//! - [`keys`]: fresh RSA key pairs for a simulated GitHub App.
//! - [`serve()`] / [`Served`]: run a simulator's router on a socket.
//! - [`peers`]: both simulators started together, with a worker's environment.
//! - [`examples`]: GitHub's example webhook payloads, signed and delivered like GitHub.
//! - [`standalone`]: both simulators as their own process (`sitg-sandbox serve`), for
//!   load harnesses.
//! - [`dev`]: `sitg-sandbox dev`, the fleet of real `sitg-bot worker` processes on
//!   the simulators.
//!
//! The simulators are written from the contract alone and do not depend on the
//! `sitg-bot` crate (not even for a secret wrapper: [`secret`] is their own), so a test
//! of the worker against them checks the worker against the contract rather than
//! against itself.

pub mod backend;
mod changes;
pub mod dev;
pub mod examples;
pub mod github;
pub mod keys;
pub mod peers;
pub mod secret;
mod serve;
pub mod standalone;
pub mod tls;

pub use serve::{Served, serve};
