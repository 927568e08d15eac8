//! [`GitHubClient`]: the handle the rest of the crate holds, and its construction.
//!
//! The client is three layers, one module each: [`super::operations`] (the public
//! calls and the comment plumbing), [`super::installation_auth`] (installation access
//! tokens and the stale-installation redirect of [`super::redirect`]) and
//! [`super::transport`] (HTTP, the App JWT, rate-limit pauses, errors). This module
//! only ties them together.

use std::fmt;
use std::sync::Arc;

use super::GitHubConfig;
use super::error::GitHubError;
use super::installation_auth::InstallationAuth;
use super::transport::Transport;

/// GitHub REST client acting as the App. Cheap to clone: clones share one HTTP
/// connection pool, JWT, token cache and pause board.
#[derive(Clone)]
pub struct GitHubClient {
    inner: Arc<Inner>,
}

struct Inner {
    transport: Transport,
    auth: InstallationAuth,
    app_id: u64,
    /// The App's bot account login, `{slug}[bot]`, from `GET /app` on first need.
    bot_login: tokio::sync::OnceCell<String>,
}

impl fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_base_url", &self.inner.transport.api_base().as_str())
            .field("app_id", &self.inner.app_id)
            .finish_non_exhaustive()
    }
}

impl GitHubClient {
    /// Builds the client: parses the App key once, builds one HTTP client (connection
    /// pool, default headers, timeouts) and registers the `sitg_bot_github_*` metrics in
    /// `registry`.
    ///
    /// # Errors
    /// [`GitHubError::Key`] for an unusable private key; [`GitHubError::Config`] for a
    /// base URL that is not http(s) with a host, or metrics already registered.
    pub fn new(config: GitHubConfig, registry: &prometheus::Registry) -> Result<Self, GitHubError> {
        crate::tls::install_crypto_provider();
        crate::redact::remember("GITHUB_APP_PRIVATE_KEY", config.private_key_pem.expose());
        let app_id = config.app_id;
        let transport = Transport::new(config, registry)?;
        Ok(Self {
            inner: Arc::new(Inner {
                transport,
                auth: InstallationAuth::default(),
                app_id,
                bot_login: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// The transport layer: HTTP, the App JWT, pauses, error mapping.
    pub(super) fn transport(&self) -> &Transport {
        &self.inner.transport
    }

    /// The installation authentication layer: tokens and the redirect.
    pub(super) fn auth(&self) -> &InstallationAuth {
        &self.inner.auth
    }

    /// `GITHUB_APP_ID`.
    pub(super) fn app_id(&self) -> u64 {
        self.inner.app_id
    }

    /// Where the App's bot account login is kept once read.
    pub(super) fn bot_login(&self) -> &tokio::sync::OnceCell<String> {
        &self.inner.bot_login
    }
}
