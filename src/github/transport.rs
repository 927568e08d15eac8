//! The transport layer of [`super::GitHubClient`]: one HTTP request to GitHub's REST
//! API and what its answer means.
//!
//! Owns the connection pool and default headers, the App JWT (App-level requests), the
//! per-installation rate-limit pauses, the `sitg_bot_github_*` request metrics, and the
//! mapping of a refusal to a typed [`GitHubError`] (status → variant, rate limits →
//! a pause, GitHub's error `message` redacted and capped, any other body never kept).
//! It knows nothing of installation tokens or of what the requests are for: the bearer
//! is the caller's.

use std::time::Instant;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::{debug, warn};
use url::Url;

use super::error::GitHubError;
use super::jwt::{AppJwtSigner, now_unix_secs, parse_app_private_key};
use super::metrics::{GitHubMetrics, Route};
use super::pagination::next_page_url;
use super::rate_limit::{PauseBoard, RateLimitKind, rate_limit_pause};
use super::{API_VERSION, GitHubConfig};
use crate::contract::RepoFullName;
use crate::secret::SecretString;

/// One response, read whole.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// The installation a call acts for, and the repository when there is one (needed for
/// the installation 404 fallback, see [`super::redirect`]).
#[derive(Clone, Copy)]
pub(super) struct Installation<'a> {
    pub(super) id: u64,
    pub(super) repo: Option<&'a RepoFullName>,
}

/// Log context of one request.
#[derive(Clone, Copy)]
pub(super) struct Call<'a> {
    pub(super) route: Route,
    pub(super) installation: Installation<'a>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    errors: Option<serde_json::Value>,
}

/// HTTP to GitHub: the client, the base URL, the App JWT, the pause board and the
/// metrics. Shared by every clone of [`super::GitHubClient`].
pub(super) struct Transport {
    http: reqwest::Client,
    api_base: Url,
    jwt: AppJwtSigner,
    pauses: PauseBoard,
    metrics: GitHubMetrics,
}

impl Transport {
    /// Parses the App key once, builds one HTTP client (connection pool, default
    /// headers, timeouts) and registers the `sitg_bot_github_*` metrics in `registry`.
    ///
    /// # Errors
    /// [`GitHubError::Key`] for an unusable private key; [`GitHubError::Config`] for a
    /// base URL that is not http(s) with a host, or metrics already registered.
    pub(super) fn new(
        config: GitHubConfig,
        registry: &prometheus::Registry,
    ) -> Result<Self, GitHubError> {
        let key = parse_app_private_key(&config.private_key_pem)?;
        let api_base = api_base(config.api_base_url)?;

        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/vnd.github+json"),
        );
        headers.insert(
            "x-github-api-version",
            HeaderValue::from_static(API_VERSION),
        );
        let http = reqwest::Client::builder()
            .user_agent(config.user_agent)
            .default_headers(headers)
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout)
            .build()
            .map_err(|e| GitHubError::Config(format!("HTTP client: {e}")))?;
        let metrics = GitHubMetrics::register(registry)
            .map_err(|e| GitHubError::Config(format!("metrics: {e}")))?;
        Ok(Self {
            http,
            api_base,
            jwt: AppJwtSigner::new(config.app_id, key),
            pauses: PauseBoard::default(),
            metrics,
        })
    }

    /// The checked `GITHUB_API_BASE_URL`.
    pub(super) fn api_base(&self) -> &Url {
        &self.api_base
    }

    /// The `sitg_bot_github_*` metrics.
    pub(super) fn metrics(&self) -> &GitHubMetrics {
        &self.metrics
    }

    /// A request authenticated as the App (JWT). A 401 drops the cached JWT so the next
    /// call signs a new one. The answer is returned whatever its status (see
    /// [`Self::check`]).
    pub(super) async fn app_request(
        &self,
        call: Call<'_>,
        method: Method,
        url: Url,
    ) -> Result<Reply, GitHubError> {
        let jwt = self
            .jwt
            .bearer()
            .map_err(|e| GitHubError::Jwt(e.to_string()))?;
        let reply = self.send(call, method, url, &jwt, None).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            warn!(
                event = "app_jwt_refused",
                route = call.route.as_label(),
                "GitHub refused the App JWT"
            );
            self.jwt.evict();
        }
        Ok(reply)
    }

    /// Sends one request with `bearer`, reads the whole answer and counts it in
    /// `sitg_bot_github_requests_total` / `..._request_duration_seconds`.
    ///
    /// # Errors
    /// Only a transport failure (connect, timeout, reset), as
    /// [`GitHubError::from_reqwest`] names it; any HTTP status is an `Ok`.
    pub(super) async fn send(
        &self,
        call: Call<'_>,
        method: Method,
        url: Url,
        bearer: &SecretString,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, GitHubError> {
        let started = Instant::now();
        // A body-less POST (the token mint) still states its length: strict HTTP/1.1
        // proxies in front of GitHub Enterprise Server answer 411 without.
        let empty_with_length =
            body.is_none() && matches!(method, Method::POST | Method::PATCH | Method::PUT);
        let mut request = self.http.request(method, url).bearer_auth(bearer.expose());
        if let Some(body) = body {
            request = request.json(body);
        } else if empty_with_length {
            request = request.header(http::header::CONTENT_LENGTH, "0");
        }
        let result = async {
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(Reply {
                status,
                headers,
                body,
            })
        }
        .await;
        let elapsed = started.elapsed();
        let status = result.as_ref().ok().map(|r| r.status.as_u16());
        self.metrics
            .observe_request(call.route, status, elapsed.as_secs_f64());
        match result {
            Ok(reply) => {
                debug!(
                    event = "github_request",
                    route = call.route.as_label(),
                    installation_id = call.installation.id,
                    repo = call.installation.repo.map(tracing::field::display),
                    status = reply.status.as_u16(),
                    elapsed_ms = elapsed.as_millis() as u64,
                    "GitHub request"
                );
                Ok(reply)
            }
            Err(err) => {
                let err = GitHubError::from_reqwest(&err);
                warn!(
                    event = "github_request_failed",
                    route = call.route.as_label(),
                    installation_id = call.installation.id,
                    repo = call.installation.repo.map(tracing::field::display),
                    error = %err,
                    "GitHub request failed"
                );
                Err(err)
            }
        }
    }

    /// Passes a success through; turns a refusal into its error, pausing the
    /// installation on a rate limit.
    ///
    /// # Errors
    /// [`GitHubError::RateLimited`] (primary or secondary limit, the installation now
    /// paused), [`GitHubError::Unauthorized`] (401), [`GitHubError::PermissionDenied`]
    /// (403), [`GitHubError::NotFound`] (404), [`GitHubError::Gone`] (410),
    /// [`GitHubError::ValidationFailed`] (422), else [`GitHubError::Server`].
    pub(super) fn check(
        &self,
        call: Call<'_>,
        reply: Reply,
        url: &Url,
    ) -> Result<Reply, GitHubError> {
        if reply.status.is_success() {
            return Ok(reply);
        }
        let installation_id = call.installation.id;
        let message = error_message(&reply.body);
        if let Some(pause) =
            rate_limit_pause(reply.status, &reply.headers, &message, now_unix_secs())
        {
            let secondary = pause.kind == RateLimitKind::Secondary;
            let held = self
                .pauses
                .pause(installation_id, Instant::now() + pause.wait, secondary);
            self.metrics.rate_limited(pause.kind);
            warn!(
                event = "github_rate_limited",
                route = call.route.as_label(),
                installation_id,
                status = reply.status.as_u16(),
                kind = pause.kind.as_label(),
                pause_secs = pause.wait.as_secs(),
                "GitHub rate limit; pausing the installation"
            );
            return Err(GitHubError::RateLimited {
                installation_id,
                retry_at: held.until,
                secondary: held.secondary,
            });
        }
        let err = match reply.status {
            StatusCode::UNAUTHORIZED => GitHubError::Unauthorized,
            StatusCode::FORBIDDEN => GitHubError::PermissionDenied { message },
            StatusCode::NOT_FOUND => GitHubError::NotFound {
                resource: url.path().to_owned(),
            },
            StatusCode::GONE => GitHubError::Gone {
                resource: url.path().to_owned(),
            },
            StatusCode::UNPROCESSABLE_ENTITY => GitHubError::ValidationFailed { message },
            other => GitHubError::Server {
                status: other.as_u16(),
            },
        };
        warn!(
            event = "github_refused_the_request",
            route = call.route.as_label(),
            installation_id,
            repo = call.installation.repo.map(tracing::field::display),
            status = reply.status.as_u16(),
            error = %err,
            "GitHub refused the request"
        );
        Err(err)
    }

    /// When `installation_id` is paused by a rate limit: the instant it may be used
    /// again; `None` when it is not paused.
    pub(super) fn paused_until(&self, installation_id: u64) -> Option<Instant> {
        self.pauses
            .current(installation_id, Instant::now())
            .map(|p| p.until)
    }

    /// # Errors
    /// [`GitHubError::RateLimited`] while `installation_id` is paused (no request is
    /// made then).
    pub(super) fn ensure_not_paused(&self, installation_id: u64) -> Result<(), GitHubError> {
        match self.pauses.current(installation_id, Instant::now()) {
            Some(pause) => Err(GitHubError::RateLimited {
                installation_id,
                retry_at: pause.until,
                secondary: pause.secondary,
            }),
            None => Ok(()),
        }
    }

    /// The `Link: rel="next"` URL of an answer, `None` on the last page.
    ///
    /// # Errors
    /// [`GitHubError::InvalidResponse`] for a malformed header or a next page outside
    /// the API's origin.
    pub(super) fn next_page(&self, headers: &HeaderMap) -> Result<Option<Url>, GitHubError> {
        next_page_url(headers, &self.api_base)
            .map_err(|e| GitHubError::InvalidResponse(e.to_string()))
    }

    /// The API URL for `segments` below the base URL (see [`endpoint`]).
    pub(super) fn endpoint(&self, segments: &[&str]) -> Result<Url, GitHubError> {
        endpoint(&self.api_base, segments)
    }
}

/// Checks and cleans `GITHUB_API_BASE_URL`.
fn api_base(mut url: Url) -> Result<Url, GitHubError> {
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() || url.cannot_be_a_base() {
        return Err(GitHubError::Config(
            "GitHub API base URL must be an http or https URL with a host".to_owned(),
        ));
    }
    url.set_query(None);
    url.set_fragment(None);
    Ok(url)
}

/// The API URL for `segments`, each percent-encoded as one path segment below the
/// base URL's path (so `/api/v3` of GitHub Enterprise Server is kept).
fn endpoint(api_base: &Url, segments: &[&str]) -> Result<Url, GitHubError> {
    let mut url = api_base.clone();
    url.path_segments_mut()
        .map_err(|()| GitHubError::Config("GitHub API base URL cannot have a path".to_owned()))?
        .pop_if_empty()
        .extend(segments);
    Ok(url)
}

/// An answer's JSON body as `T`; `what` names it in the error.
///
/// # Errors
/// [`GitHubError::InvalidResponse`] with serde's message (so never for a body that
/// may hold a secret: the token mint parses its own).
pub(super) fn parse_json<T: DeserializeOwned>(body: &Bytes, what: &str) -> Result<T, GitHubError> {
    serde_json::from_slice(body).map_err(|e| GitHubError::InvalidResponse(format!("{what}: {e}")))
}

/// GitHub's error `message` (with its `errors` details when present), redacted of every
/// credential the process holds and capped ([`crate::redact::peer_text`]). Any other
/// body (a proxy's or an Enterprise front end's page, which may echo the request) is
/// never kept: only its size is.
fn error_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<ErrorBody>(body) {
        Ok(ErrorBody {
            message: Some(message),
            errors,
        }) => match errors {
            Some(errors) => format!("{message}: {errors}"),
            None => message,
        },
        _ => {
            return format!(
                "error body is not GitHub's JSON ({} bytes, not shown)",
                body.len()
            );
        }
    };
    crate::redact::peer_text(&text, &[])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn base_url_rules() {
        assert!(api_base(Url::parse("https://api.github.com").unwrap()).is_ok());
        assert!(api_base(Url::parse("http://127.0.0.1:9/api/v3/").unwrap()).is_ok());
        assert!(api_base(Url::parse("mailto:x@example.com").unwrap()).is_err());
        assert!(api_base(Url::parse("ftp://example.com").unwrap()).is_err());
    }

    #[test]
    fn endpoints_keep_the_base_path_with_or_without_trailing_slash() {
        let cases = [
            (
                "https://api.github.com",
                "https://api.github.com/repos/o/r/pulls/1",
            ),
            (
                "https://api.github.com/",
                "https://api.github.com/repos/o/r/pulls/1",
            ),
            (
                "https://ghe.example/api/v3",
                "https://ghe.example/api/v3/repos/o/r/pulls/1",
            ),
            (
                "https://ghe.example/api/v3/",
                "https://ghe.example/api/v3/repos/o/r/pulls/1",
            ),
            (
                "http://127.0.0.1:8080/?x=1#f",
                "http://127.0.0.1:8080/repos/o/r/pulls/1",
            ),
        ];
        for (base, want) in cases {
            let base = api_base(Url::parse(base).unwrap()).unwrap();
            let got = endpoint(&base, &["repos", "o", "r", "pulls", "1"]).unwrap();
            assert_eq!(got.as_str(), want);
        }
        // Segments are encoded, never interpreted as path syntax.
        let base = Url::parse("https://api.github.com").unwrap();
        let got = endpoint(&base, &["repos", "a/b", "?x"]).unwrap();
        assert_eq!(got.as_str(), "https://api.github.com/repos/a%2Fb/%3Fx");
    }

    #[test]
    fn error_message_prefers_githubs_message() {
        let body = br#"{"message":"Validation Failed","errors":[{"code":"custom","message":"body is too long"}],"documentation_url":"x"}"#;
        let m = error_message(body);
        assert!(
            m.starts_with("Validation Failed: ") && m.contains("body is too long"),
            "{m}"
        );
        // A body that is not GitHub's JSON is never quoted.
        assert_eq!(
            error_message(b"plain text"),
            "error body is not GitHub's JSON (10 bytes, not shown)"
        );
        let long = json!({ "message": "x".repeat(1000) }).to_string();
        assert!(error_message(long.as_bytes()).len() <= crate::redact::MAX_PEER_TEXT_BYTES);
    }
}
