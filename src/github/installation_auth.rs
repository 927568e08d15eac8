//! Installation authentication for [`super::GitHubClient`]: a request made with an
//! installation's access token.
//!
//! Owns the token cache ([`super::tokens`]) and the stale-installation redirect
//! ([`super::redirect`]), and the two App-JWT requests they need: the token mint
//! (`POST /app/installations/{id}/access_tokens`) and the repository's installation
//! (`GET /repos/{owner}/{repo}/installation`). A token GitHub refuses (401) is replaced
//! once per request. The HTTP itself is [`Transport`]'s.

use chrono::{DateTime, Utc};
use http::{Method, StatusCode};
use serde::Deserialize;
use tracing::{info, warn};
use url::Url;

use super::error::GitHubError;
use super::metrics::Route;
use super::redirect::{Redirects, not_found};
use super::tokens::{Acquired, MintOutcome, TokenCache};
use super::transport::{Call, Installation, Reply, Transport, parse_json};
use crate::contract::RepoFullName;
use crate::secret::SecretString;

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
    expires_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

/// Installation access tokens and the redirect of stale installation ids. Shared by
/// every clone of [`super::GitHubClient`].
#[derive(Default)]
pub(super) struct InstallationAuth {
    tokens: TokenCache,
    redirects: Redirects,
}

impl InstallationAuth {
    /// One request with the installation's access token; a 401 evicts the token and
    /// the request is sent once more with a fresh one. Refusals become errors
    /// ([`Transport::check`]).
    ///
    /// # Errors
    /// [`GitHubError::RateLimited`] while the installation is paused (no request is
    /// made); [`GitHubError::InstallationNotFound`] when no token can be had for it;
    /// [`GitHubError::Unauthorized`] when the fresh token is refused too; otherwise any
    /// [`GitHubError`].
    pub(super) async fn request(
        &self,
        transport: &Transport,
        route: Route,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        installation: Installation<'_>,
    ) -> Result<Reply, GitHubError> {
        let call = Call {
            route,
            installation,
        };
        transport.ensure_not_paused(installation.id)?;
        let token = self.token(transport, installation, None).await?;
        let mut reply = transport
            .send(call, method.clone(), url.clone(), &token, body)
            .await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            warn!(
                event = "installation_token_refused",
                installation_id = installation.id,
                route = route.as_label(),
                "GitHub refused the installation access token; minting a new one"
            );
            transport.ensure_not_paused(installation.id)?;
            let fresh = self.token(transport, installation, Some(&token)).await?;
            reply = transport
                .send(call, method, url.clone(), &fresh, body)
                .await?;
            if reply.status == StatusCode::UNAUTHORIZED {
                return Err(GitHubError::Unauthorized);
            }
        }
        transport.check(call, reply, &url)
    }

    /// The installation that holds `repo`, or `None` when the App is not installed
    /// there.
    ///
    /// Per GitHub REST: `GET /repos/{owner}/{repo}/installation` with the App JWT; `None`
    /// on 404. Rate limits pause `requested`.
    ///
    /// # Errors
    /// Any [`GitHubError`] but a 404.
    pub(super) async fn repo_installation(
        &self,
        transport: &Transport,
        requested: u64,
        repo: &RepoFullName,
    ) -> Result<Option<u64>, GitHubError> {
        let call = Call {
            route: Route::GetRepoInstallation,
            installation: Installation {
                id: requested,
                repo: Some(repo),
            },
        };
        let url = transport.endpoint(&["repos", repo.owner(), repo.name(), "installation"])?;
        let reply = transport
            .app_request(call, Method::GET, url.clone())
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let reply = transport.check(call, reply, &url)?;
        Ok(Some(
            parse_json::<IdOnly>(&reply.body, "repository installation")?.id,
        ))
    }

    /// The installation access token to use for `installation`, minted when none is
    /// cached. `stale` is a token GitHub has just refused.
    async fn token(
        &self,
        transport: &Transport,
        installation: Installation<'_>,
        stale: Option<&SecretString>,
    ) -> Result<SecretString, GitHubError> {
        let requested = installation.id;
        let target = self.redirects.target(installation);
        let acquired = self
            .tokens
            .get_or_mint(target, stale, || {
                self.mint_or_redirect(transport, installation, target)
            })
            .await?;
        let redirect = match acquired {
            Acquired::Token(token) => return Ok(token),
            Acquired::Redirect(redirect) => redirect,
        };
        let other = redirect.follow(installation)?;
        match self
            .tokens
            .get_or_mint(other, stale, || self.mint(transport, requested, other))
            .await?
        {
            Acquired::Token(token) => Ok(token),
            Acquired::Redirect(_) => Err(Redirects::redirected_twice(requested)),
        }
    }

    /// Mints a token for `target`; when GitHub does not know it, asks which
    /// installation holds the repository (`GET /repos/{owner}/{repo}/installation`,
    /// contract §2) and lets [`Redirects::resolve`] decide.
    async fn mint_or_redirect(
        &self,
        transport: &Transport,
        installation: Installation<'_>,
        target: u64,
    ) -> Result<MintOutcome, GitHubError> {
        let requested = installation.id;
        match self.mint(transport, requested, target).await {
            Err(GitHubError::InstallationNotFound { .. }) => {}
            other => return other,
        }
        let Some(repo) = installation.repo else {
            return Err(not_found(requested));
        };
        let found = self.repo_installation(transport, requested, repo).await?;
        self.redirects
            .resolve(requested, repo, target, found)
            .map(MintOutcome::Redirect)
    }

    /// Per GitHub REST: `POST /app/installations/{target}/access_tokens` with the App
    /// JWT. A 404 is [`GitHubError::InstallationNotFound`]; rate limits pause
    /// `requested`, the id the caller knows.
    async fn mint(
        &self,
        transport: &Transport,
        requested: u64,
        target: u64,
    ) -> Result<MintOutcome, GitHubError> {
        let call = Call {
            route: Route::CreateInstallationToken,
            installation: Installation {
                id: requested,
                repo: None,
            },
        };
        let id = target.to_string();
        let url = transport.endpoint(&["app", "installations", &id, "access_tokens"])?;
        let reply = transport
            .app_request(call, Method::POST, url.clone())
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Err(not_found(requested));
        }
        let reply = transport.check(call, reply, &url)?;
        // serde's messages may quote the value, which here is the token: say only what
        // was wrong.
        let minted: TokenResponse = serde_json::from_slice(&reply.body).map_err(|_| {
            GitHubError::InvalidResponse(
                "installation access token answer lacks token or expires_at".to_owned(),
            )
        })?;
        crate::redact::remember_rotating(&format!("installation_token:{target}"), &minted.token);
        transport.metrics().token_minted();
        info!(
            event = "installation_access_token_minted",
            installation_id = target,
            expires_at = %minted.expires_at,
            "installation access token minted"
        );
        Ok(MintOutcome::Minted {
            token: SecretString::new(minted.token),
            expires_at: minted.expires_at,
        })
    }
}
