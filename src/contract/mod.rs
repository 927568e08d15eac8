//! What the worker and the operator must agree on, in one place both import.
//!
//! The worker parses its environment with these names, defaults and bounds
//! (`crate::worker::config`); the operator writes the same names into the worker
//! Deployment, checks the same bounds in the `BotFleet` schema and scales on the same
//! metric. A change here reaches both sides, and `worker_env_contract` (a unit test of
//! `operator::build::deployment`) feeds the operator's env to the worker's parser.
//!
//! It also holds the values the worker and the backend must agree on beyond the request
//! types: the `failure_code` of a reported action ([`FailureCode`]); and the operator's
//! variables the Helm chart sets ([`operator_env`]).

pub mod env;
pub mod failure_code;
pub mod log_format;
pub mod metrics;
pub mod operator_env;
pub mod repo_name;

pub use failure_code::FailureCode;
pub use log_format::LogFormat;
pub use repo_name::{InvalidRepoName, RepoFullName};
