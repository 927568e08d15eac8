//! The GitHub side of the worker: GitHub App authentication and the few REST calls the
//! outbox and the installation backfill need (contract §2).
//!
//! - `jwt`: the App's RS256 JWT, key parsed once, JWT reused while valid;
//! - `tokens`: installation access tokens cached per installation, one mint at a time;
//! - `rate_limit`: reading primary/secondary rate limits, pausing one installation;
//! - `pagination`: following `Link: rel="next"`;
//! - `comment`: deciding what a marked-comment upsert must do;
//! - `client`: [`GitHubClient`], the handle tying the three layers below together;
//! - `operations`: the public calls (close a pull request, upsert a marked comment,
//!   list an installation's repositories, …), their request sequences and the check
//!   that a comment is this App's own;
//! - `installation_auth`: a request with an installation's access token (mint, cache,
//!   one re-mint on 401), through `redirect`: the stale-installation redirect (a mint
//!   404 resolved through the repository's installation), its one type;
//! - `transport`: one HTTP request, the App JWT, rate-limit pauses and the mapping of
//!   a refusal to a [`GitHubError`] (GitHub's message redacted, other bodies dropped);
//! - `deliveries`: the App webhook's delivery log and redeliveries.
//!
//! Repository names are [`crate::contract::RepoFullName`], shared with the webhook side.

mod client;
mod comment;
mod deliveries;
mod error;
mod installation_auth;
mod jwt;
mod metrics;
#[cfg(test)]
mod mock_tests;
mod operations;
mod pagination;
mod rate_limit;
mod redirect;
mod tokens;
mod transport;

use std::time::Duration;

use url::Url;

use crate::secret::SecretString;

pub use client::GitHubClient;
pub use deliveries::HookDelivery;
pub use error::GitHubError;
pub use jwt::{KeyError, parse_app_private_key};
pub use operations::{CommentUpsert, InstallationRepository};

/// GitHub's public REST API, the default of `GITHUB_API_BASE_URL`.
pub const DEFAULT_API_BASE_URL: &str = "https://api.github.com";

/// The REST API version every request asks for (`x-github-api-version`).
pub const API_VERSION: &str = "2022-11-28";

/// What [`GitHubClient`] needs to act as the GitHub App.
#[derive(Debug, Clone)]
pub struct GitHubConfig {
    /// `GITHUB_API_BASE_URL`: `https://api.github.com`, a GitHub Enterprise Server
    /// `https://HOST/api/v3`, or a local simulator; with or without a trailing slash.
    pub api_base_url: Url,
    /// `GITHUB_APP_ID`, the JWT's `iss`.
    pub app_id: u64,
    /// `GITHUB_APP_PRIVATE_KEY`: PEM (PKCS#1 or PKCS#8), real newlines or `\n` escapes.
    pub private_key_pem: SecretString,
    /// `user-agent` sent with every request (GitHub refuses requests without one).
    pub user_agent: String,
    /// Deadline for each request, from connecting to having the whole answer.
    pub request_timeout: Duration,
}
