//! `GitHubSim`: an in-process GitHub serving the REST calls of contract §2 with GitHub's
//! paths, status codes, headers and JSON shapes.
//!
//! Routes and their authentication:
//!
//! | route | auth |
//! | --- | --- |
//! | `GET /app` → 200 the App (`id`, `slug`: its bot account is `{slug}[bot]`) | App JWT |
//! | `POST /app/installations/{id}/access_tokens` → 201 token, 404 unknown installation | App JWT |
//! | `GET /repos/{owner}/{repo}/installation` → 200 installation, 404 | App JWT |
//! | `GET /repos/{owner}/{repo}/issues/{n}` → 200 the pull request's issue (`comments`: its comment count) | installation token |
//! | `GET /repos/{owner}/{repo}/issues/{n}/comments?per_page=&page=` (+ `Link`) | installation token |
//! | `GET /repositories/{repo_id}/issues/{n}/comments` (where GitHub's `Link`s point) | installation token |
//! | `POST /repos/{owner}/{repo}/issues/{n}/comments` → 201 | installation token |
//! | `PATCH` / `DELETE /repos/{owner}/{repo}/issues/comments/{id}` → 200 / 204 | installation token |
//! | `PATCH /repos/{owner}/{repo}/pulls/{n}` → 200 | installation token |
//! | `GET /installation/repositories?per_page=&page=` (+ `Link`) | installation token |
//! | `GET /app/hook/deliveries?per_page=&cursor=&status=` (+ `Link`), newest first | App JWT |
//! | `POST /app/hook/deliveries/{id}/attempts` → 202, re-sends that event to the webhook | App JWT |
//!
//! - App JWT: RS256 against [`GitHubSimConfig::app_public_key_pem`], `iss` the App id
//!   (number or string) or [`GitHubSimConfig::client_id`], `iat` not in the future and
//!   `exp` not past, at most 600 s after `iat` and from now ([`jwt::CLOCK_DRIFT_SECONDS`]
//!   of drift tolerated); else 401 with GitHub's message.
//! - Installation tokens (`ghs_…`, `Bearer` or `token` scheme) live
//!   [`GitHubSimConfig::token_ttl`]; unknown or expired → 401 "Bad credentials". A
//!   repository outside the token's installation → 404. Writes to a repository marked
//!   with [`GitHubSim::set_permission_denied`] → 403 "Resource not accessible by
//!   integration" (reads still work, as with a read-only permission).
//! - Comment bodies over 65,536 characters → 422 "Validation Failed" (GitHub's shape);
//!   a missing body → 422; unparsable JSON → 400 "Problems parsing JSON".
//! - Pull requests are created (open) on first touch unless
//!   [`GitHubSimConfig::auto_create_pull_requests`] is false, in which case only those
//!   added with [`GitHubSim::add_pull_request`] exist and others are 404.
//! - Headers of contract §2: a missing `user-agent` is refused with GitHub's 403 text,
//!   an `x-github-api-version` other than `2022-11-28` with 400; a missing or different
//!   `accept` or a missing version header is served but recorded as a violation.
//! - Rate-limit headers are always sent but never count down; exhaust a limit with a
//!   [`Fault`].
//! - [`GitHubSim::set_require_content_length`] plays a strict HTTP/1.1 proxy: a POST,
//!   PATCH or PUT without `Content-Length` (or chunked encoding) gets 411.
//! - The App's webhook: [`GitHubSim::set_webhook`] points it at a worker and
//!   [`GitHubSim::deliver`] sends an event, recording each attempt
//!   ([`GitHubSim::hook_attempts`]) as GitHub's delivery log does.

mod faults;
mod hooks;
mod http;
pub mod jwt;
mod page;
mod shapes;
mod store;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use tokio::sync::watch;

pub use faults::{Fault, FaultId, FaultLifetime, FaultRule, Route};
pub use hooks::{DELIVERY_TIMEOUT, HookAttempt};
pub use http::{ACCEPT, API_VERSION};
pub use jwt::JwtRejection;
pub use page::{DEFAULT_PER_PAGE, MAX_PER_PAGE, PageRequest};
pub use store::{IssueComment, MAX_COMMENT_CHARS, PullState, SetupError};

use self::faults::FaultSet;
use self::jwt::AppJwtVerifier;
use self::store::Store;
use super::changes::Changes;

/// Settings of a [`GitHubSim`].
#[derive(Clone, Debug)]
pub struct GitHubSimConfig {
    /// The App id (`GITHUB_APP_ID`); the JWT `iss`.
    pub app_id: u64,
    /// Optional client id (`Iv…`), also accepted as `iss`.
    pub client_id: Option<String>,
    /// App slug; comments written by the App are authored by `{app_slug}[bot]`.
    pub app_slug: String,
    /// PEM public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`) of the App.
    pub app_public_key_pem: String,
    /// Lifetime of installation access tokens (GitHub: 1 hour).
    pub token_ttl: Duration,
    /// Create pull requests on first touch (default true).
    pub auto_create_pull_requests: bool,
    /// Base of the API URLs put in bodies and `Link` headers; default `http://{Host}`.
    pub public_base_url: Option<String>,
}

impl GitHubSimConfig {
    /// App `app_id` with slug `sitg-bot`, 1-hour tokens, auto-created pull requests.
    pub fn new(app_id: u64, app_public_key_pem: impl Into<String>) -> Self {
        Self {
            app_id,
            client_id: None,
            app_slug: "sitg-bot".to_owned(),
            app_public_key_pem: app_public_key_pem.into(),
            token_ttl: Duration::from_secs(3600),
            auto_create_pull_requests: true,
            public_base_url: None,
        }
    }
}

/// Why a [`GitHubSim`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GitHubSimError {
    /// The App public key is not an RSA public key PEM.
    #[error("invalid App public key: {0}")]
    PublicKey(#[source] jsonwebtoken::errors::Error),
}

/// A request that lacked or mis-set a header of contract §2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeaderViolation {
    /// The route requested.
    pub route: Route,
    /// `user-agent`, `accept` or `x-github-api-version`.
    pub header: &'static str,
    /// The value sent, None when absent.
    pub value: Option<String>,
}

/// Most violations kept as examples in [`GitHubStats::header_violation_samples`].
const MAX_VIOLATION_SAMPLES: usize = 100;

/// Counters of everything the simulator saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GitHubStats {
    /// Responses per route and HTTP status.
    pub requests: BTreeMap<Route, BTreeMap<u16, u64>>,
    /// Installation access tokens issued.
    pub token_mints: u64,
    /// Tokens issued per installation id.
    pub token_mints_by_installation: BTreeMap<i64, u64>,
    /// App JWT rejections by reason.
    pub jwt_failures: BTreeMap<JwtRejection, u64>,
    /// Requests with an unknown or expired installation token.
    pub bad_credentials: u64,
    /// Requests violating the header rules (a request can count more than once).
    pub header_violations: u64,
    /// The first violations, as examples.
    pub header_violation_samples: Vec<HeaderViolation>,
    /// Requests answered by an injected fault.
    pub faults_served: u64,
    /// Requests refused 411 for want of a `Content-Length`
    /// ([`GitHubSim::set_require_content_length`]).
    pub length_required: u64,
}

impl GitHubStats {
    /// All requests, token mints included.
    pub fn total_requests(&self) -> u64 {
        self.requests.values().flat_map(|s| s.values()).sum()
    }

    /// Requests on routes authenticated by an installation token (the "GitHub requests
    /// per action" of the benchmarks, without token mints and installation lookups).
    pub fn api_requests(&self) -> u64 {
        self.requests
            .iter()
            .filter(|(route, _)| !route.uses_app_jwt())
            .flat_map(|(_, s)| s.values())
            .sum()
    }

    /// Requests to `route`, any status.
    pub fn requests_to(&self, route: Route) -> u64 {
        self.requests.get(&route).map_or(0, |s| s.values().sum())
    }

    /// Responses of `route` with `status`.
    pub fn responses_with(&self, route: Route, status: u16) -> u64 {
        self.requests
            .get(&route)
            .and_then(|s| s.get(&status))
            .copied()
            .unwrap_or_default()
    }

    /// Sum of JWT rejections.
    pub fn jwt_failures_total(&self) -> u64 {
        self.jwt_failures.values().sum()
    }

    fn record(&mut self, route: Route, status: StatusCode, violations: Vec<HeaderViolation>) {
        *self
            .requests
            .entry(route)
            .or_default()
            .entry(status.as_u16())
            .or_default() += 1;
        self.header_violations += violations.len() as u64;
        for violation in violations {
            if self.header_violation_samples.len() < MAX_VIOLATION_SAMPLES {
                self.header_violation_samples.push(violation);
            }
        }
    }
}

/// A change the App made through the API, in the order GitHub applied them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GitHubWrite {
    /// `POST /repos/{owner}/{repo}/issues/{n}/comments`
    CommentCreated {
        /// `owner/name` as requested.
        repo: String,
        /// Pull request number.
        number: u64,
        /// The new comment.
        comment_id: u64,
    },
    /// `PATCH /repos/{owner}/{repo}/issues/comments/{id}`
    CommentUpdated {
        /// `owner/name` as requested.
        repo: String,
        /// Pull request number of the comment.
        number: u64,
        /// The comment.
        comment_id: u64,
    },
    /// `DELETE /repos/{owner}/{repo}/issues/comments/{id}`
    CommentDeleted {
        /// `owner/name` as requested.
        repo: String,
        /// Pull request number of the comment.
        number: u64,
        /// The comment.
        comment_id: u64,
    },
    /// `PATCH /repos/{owner}/{repo}/pulls/{n}` that closed an open pull request.
    PullRequestClosed {
        /// `owner/name` as requested.
        repo: String,
        /// Pull request number.
        number: u64,
    },
}

/// Most writes kept for [`GitHubSim::writes`]; older ones are dropped.
const MAX_RECORDED_WRITES: usize = 10_000;

struct State {
    store: Store,
    stats: GitHubStats,
    writes: VecDeque<GitHubWrite>,
    /// `authorization` values quoted by [`Fault::EchoRequest`] answers.
    echoed_credentials: Vec<String>,
}

impl State {
    fn record_write(&mut self, write: GitHubWrite) {
        if self.writes.len() >= MAX_RECORDED_WRITES {
            self.writes.pop_front();
        }
        self.writes.push_back(write);
    }
}

struct Shared {
    app_id: u64,
    app_slug: String,
    token_ttl: chrono::Duration,
    public_base_url: Option<String>,
    verifier: AppJwtVerifier,
    state: Mutex<State>,
    faults: Mutex<FaultSet>,
    changes: Changes,
    hooks: hooks::Hooks,
    require_content_length: AtomicBool,
}

/// The simulated GitHub. Cheap to clone; clones share one state.
#[derive(Clone)]
pub struct GitHubSim {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for GitHubSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitHubSim")
            .field("app_id", &self.shared.app_id)
            .finish_non_exhaustive()
    }
}

impl GitHubSim {
    /// A GitHub with no installation yet.
    ///
    /// Errors: [`GitHubSimError::PublicKey`] when the PEM is not an RSA public key.
    pub fn new(config: GitHubSimConfig) -> Result<Self, GitHubSimError> {
        let verifier = AppJwtVerifier::new(
            &config.app_public_key_pem,
            config.app_id,
            config.client_id.clone(),
        )
        .map_err(GitHubSimError::PublicKey)?;
        let token_ttl =
            chrono::Duration::from_std(config.token_ttl).unwrap_or(chrono::Duration::hours(1));
        Ok(Self {
            shared: Arc::new(Shared {
                app_id: config.app_id,
                app_slug: config.app_slug,
                token_ttl,
                public_base_url: config
                    .public_base_url
                    .map(|u| u.trim_end_matches('/').to_owned()),
                verifier,
                state: Mutex::new(State {
                    store: Store::new(config.auto_create_pull_requests),
                    stats: GitHubStats::default(),
                    writes: VecDeque::new(),
                    echoed_credentials: Vec::new(),
                }),
                faults: Mutex::new(FaultSet::default()),
                changes: Changes::new(),
                hooks: hooks::Hooks::new(),
                require_content_length: AtomicBool::new(false),
            }),
        })
    }

    /// The axum router serving GitHub's REST paths; serve it with
    /// [`crate::Served`] and point `GITHUB_API_BASE_URL` at it.
    pub fn router(&self) -> Router {
        http::router(self.clone())
    }

    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.shared.state.lock());
        self.shared.changes.bump();
        out
    }

    fn read<T>(&self, f: impl FnOnce(&State) -> T) -> T {
        f(&self.shared.state.lock())
    }

    /// Installs the App on an account with the given repositories `(repo id, "owner/name")`.
    /// Installing again under the same id replaces the account and adds the repositories.
    ///
    /// Errors: [`SetupError::InvalidName`] for a name that is not `owner/name`.
    pub fn add_installation<S: AsRef<str>>(
        &self,
        id: i64,
        account_login: &str,
        account_type: &str,
        repos: impl IntoIterator<Item = (i64, S)>,
    ) -> Result<(), SetupError> {
        self.mutate(|s| {
            let now = Utc::now();
            s.store
                .add_installation(id, account_login, account_type, now);
            repos.into_iter().try_for_each(|(repo_id, name)| {
                s.store.add_repository(id, repo_id, name.as_ref(), now)
            })
        })
    }

    /// Adds a repository to an installation, or moves it there from another one (a
    /// repository transferred between installations).
    ///
    /// Errors: unknown installation, invalid name.
    pub fn add_repository(
        &self,
        installation_id: i64,
        repo_id: i64,
        full_name: &str,
    ) -> Result<(), SetupError> {
        self.mutate(|s| {
            s.store
                .add_repository(installation_id, repo_id, full_name, Utc::now())
        })
    }

    /// Uninstalls: the installation, its repositories and its tokens disappear. Returns
    /// whether it existed.
    pub fn remove_installation(&self, id: i64) -> bool {
        self.mutate(|s| s.store.remove_installation(id))
    }

    /// Creates an open pull request (needed when auto-creation is off).
    ///
    /// Errors: unknown repository.
    pub fn add_pull_request(&self, repo_full_name: &str, number: u64) -> Result<(), SetupError> {
        self.mutate(|s| s.store.add_pull_request(repo_full_name, number, Utc::now()))
    }

    /// Adds `count` comments by the user `octocat` to a pull request, with bodies from
    /// `body(i)` for i in 0..count, one second apart and ending now. Returns their ids.
    ///
    /// Errors: unknown repository.
    pub fn seed_comments(
        &self,
        repo_full_name: &str,
        number: u64,
        count: usize,
        mut body: impl FnMut(usize) -> String,
    ) -> Result<Vec<u64>, SetupError> {
        self.mutate(|s| {
            let repo_id = s.store.repo_id_of(repo_full_name)?;
            let now = Utc::now();
            s.store.touch_pull(repo_id, number, now);
            let first = now - chrono::Duration::seconds(i64::try_from(count).unwrap_or(0));
            Ok((0..count)
                .map(|i| {
                    let at = first + chrono::Duration::seconds(i64::try_from(i).unwrap_or(0));
                    s.store
                        .add_comment(repo_id, number, "octocat", false, &body(i), at)
                        .id
                })
                .collect())
        })
    }

    /// Adds one comment as `author_login` (a bot when it ends in `[bot]`) created at `at`.
    /// Like every comment here it names no App (`performed_via_github_app: null`), so
    /// another App's bot (`other-app[bot]`) carrying our marker can be put on a pull
    /// request.
    /// Listings order comments by creation time; ids grow in call order, so pass times
    /// in increasing order to keep both orders the same, as they are on GitHub.
    ///
    /// Errors: unknown repository.
    pub fn add_comment(
        &self,
        repo_full_name: &str,
        number: u64,
        author_login: &str,
        body: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, SetupError> {
        self.mutate(|s| {
            let repo_id = s.store.repo_id_of(repo_full_name)?;
            s.store.touch_pull(repo_id, number, at);
            let bot = author_login.ends_with("[bot]");
            Ok(s.store
                .add_comment(repo_id, number, author_login, bot, body, at)
                .id)
        })
    }

    /// While `denied`, writes to the repository answer 403 "Resource not accessible by
    /// integration".
    ///
    /// Errors: unknown repository.
    pub fn set_permission_denied(
        &self,
        repo_full_name: &str,
        denied: bool,
    ) -> Result<(), SetupError> {
        self.mutate(|s| s.store.set_permission_denied(repo_full_name, denied))
    }

    /// While `strict`, a POST, PATCH or PUT without `Content-Length` (and not chunked)
    /// is answered 411 Length Required, as strict HTTP/1.1 proxies in front of GitHub
    /// Enterprise Server do.
    pub fn set_require_content_length(&self, strict: bool) {
        self.shared
            .require_content_length
            .store(strict, Ordering::Relaxed);
        self.shared.changes.bump();
    }

    /// Invalidates every installation access token (their next use gets 401).
    pub fn revoke_tokens(&self) {
        self.mutate(|s| s.store.revoke_tokens());
    }

    /// Injects a fault; see [`FaultRule`] for scoping. Returns a handle to remove it.
    pub fn inject(&self, rule: FaultRule) -> FaultId {
        let id = self.shared.faults.lock().add(rule);
        self.shared.changes.bump();
        id
    }

    /// Removes an injected fault; false when it was gone already (expired or removed).
    pub fn remove_fault(&self, id: FaultId) -> bool {
        self.shared.faults.lock().remove(id)
    }

    /// Comments of a pull request, oldest first (empty for an unknown repository).
    pub fn comments(&self, repo_full_name: &str, number: u64) -> Vec<IssueComment> {
        self.read(|s| s.store.comments_of(repo_full_name, number))
    }

    /// State of a pull request, None when it does not exist (yet).
    pub fn pull_request_state(&self, repo_full_name: &str, number: u64) -> Option<PullState> {
        self.read(|s| s.store.pull_state(repo_full_name, number))
    }

    /// The App's writes (comments created, updated, deleted; pull requests closed),
    /// oldest first; the last 10,000 are kept.
    pub fn writes(&self) -> Vec<GitHubWrite> {
        self.read(|s| s.writes.iter().cloned().collect())
    }

    /// The `authorization` header values ("Bearer …") that [`Fault::EchoRequest`]
    /// answers quoted back, oldest first.
    pub fn echoed_credentials(&self) -> Vec<String> {
        self.read(|s| s.echoed_credentials.clone())
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> GitHubStats {
        self.read(|s| s.stats.clone())
    }

    /// Waits until `condition` holds, re-checking after every state change and request,
    /// for at most `timeout`. Returns whether it held.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        mut condition: impl FnMut(&GitHubSim) -> bool,
    ) -> bool {
        self.shared
            .changes
            .wait_for(timeout, || condition(self))
            .await
    }

    /// A receiver whose value changes after every state change and request.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.shared.changes.subscribe()
    }
}
