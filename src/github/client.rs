//! [`GitHubClient`]: the REST calls, authenticated as the App or as one of its
//! installations, with token caching, the installation 404 fallback and rate-limit
//! pauses.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use parking_lot::Mutex;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{debug, info, warn};
use url::Url;

use super::comment::{MarkedComment, UpsertPlan, plan_upsert};
use super::error::GitHubError;
use super::jwt::{AppJwtSigner, now_unix_secs, parse_app_private_key};
use super::metrics::{GitHubMetrics, Route};
use super::pagination::{PageGuard, next_page_url};
use super::rate_limit::{PauseBoard, RateLimitKind, rate_limit_pause};
use super::tokens::{Acquired, MintOutcome, TokenCache};
use super::{API_VERSION, GitHubConfig};
use crate::contract::RepoFullName;
use crate::secret::SecretString;

/// GitHub's largest `per_page`.
pub(super) const PER_PAGE: &str = "100";
/// [`PER_PAGE`] as a number.
const PER_PAGE_COUNT: usize = 100;
/// Pages followed before giving up on a list (100 items each): a guard against a
/// `Link` chain that never ends, far above any real pull request or installation.
pub(super) const MAX_PAGES: usize = 500;

/// What [`GitHubClient::upsert_marked_comment`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommentUpsert {
    /// No comment carried the marker; this one was created.
    Created { comment_id: u64 },
    /// The oldest marked comment was rewritten with the new body; other marked comments
    /// (two replicas raced) were deleted.
    Updated {
        comment_id: u64,
        duplicates_deleted: usize,
    },
    /// The oldest marked comment already had the body; other marked comments were
    /// deleted.
    Unchanged {
        comment_id: u64,
        duplicates_deleted: usize,
    },
}

impl CommentUpsert {
    /// The id of the marked comment now on the pull request.
    pub fn comment_id(&self) -> u64 {
        match *self {
            Self::Created { comment_id }
            | Self::Updated { comment_id, .. }
            | Self::Unchanged { comment_id, .. } => comment_id,
        }
    }
}

/// A repository an installation can access, as `GET /installation/repositories` lists
/// it (only the fields the backend's installation sync needs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallationRepository {
    /// GitHub's repository id.
    pub id: u64,
    /// `owner/name` as GitHub spells it.
    pub full_name: String,
}

/// GitHub REST client acting as the App. Cheap to clone: clones share one HTTP
/// connection pool, JWT, token cache and pause board.
#[derive(Clone)]
pub struct GitHubClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    api_base: Url,
    app_id: u64,
    jwt: AppJwtSigner,
    tokens: TokenCache,
    /// Installation ids found stale (mint 404) → the installation GitHub named for the
    /// repository instead.
    aliases: Mutex<HashMap<u64, u64>>,
    pauses: PauseBoard,
    metrics: GitHubMetrics,
    /// The App's bot account login, `{slug}[bot]`, from `GET /app` on first need.
    bot_login: tokio::sync::OnceCell<String>,
}

impl fmt::Debug for GitHubClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitHubClient")
            .field("api_base_url", &self.inner.api_base.as_str())
            .field("app_id", &self.inner.app_id)
            .finish_non_exhaustive()
    }
}

/// One response, read whole.
pub(super) struct Reply {
    pub(super) status: StatusCode,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

/// The installation a call acts for, and the repository when there is one (needed for
/// the installation 404 fallback).
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
struct TokenResponse {
    token: String,
    expires_at: DateTime<Utc>,
}

#[derive(Deserialize)]
struct IdOnly {
    id: u64,
}

#[derive(Deserialize)]
struct IssueComment {
    id: u64,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    user: Option<CommentAuthor>,
    #[serde(default)]
    performed_via_github_app: Option<IdOnly>,
}

#[derive(Deserialize)]
struct CommentAuthor {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    login: Option<String>,
}

/// Who wrote a comment, as far as telling ours from others' goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Authorship {
    /// `performed_via_github_app` names this App.
    ThisApp,
    /// `performed_via_github_app` names another App, or the author is not a bot.
    Other,
    /// A bot account (`type: Bot`) with no App named: ours only when its login is our
    /// App's bot login.
    BotAccount,
}

impl IssueComment {
    fn authorship(&self, app_id: u64) -> Authorship {
        if let Some(app) = &self.performed_via_github_app {
            return if app.id == app_id {
                Authorship::ThisApp
            } else {
                Authorship::Other
            };
        }
        match &self.user {
            Some(user) if user.kind.as_deref() == Some("Bot") => Authorship::BotAccount,
            _ => Authorship::Other,
        }
    }

    /// Written by this App: GitHub names the App in `performed_via_github_app`, or the
    /// author is the App's own bot account (`bot_login`, `{app slug}[bot]`). Another
    /// App's bot or a person quoting the marker must never have their comment rewritten
    /// or deleted.
    fn written_by_app(&self, app_id: u64, bot_login: &str) -> bool {
        match self.authorship(app_id) {
            Authorship::ThisApp => true,
            Authorship::Other => false,
            Authorship::BotAccount => self
                .user
                .as_ref()
                .and_then(|u| u.login.as_deref())
                .is_some_and(|login| login.eq_ignore_ascii_case(bot_login)),
        }
    }
}

#[derive(Deserialize)]
struct AppIdentity {
    slug: String,
}

#[derive(Deserialize)]
struct IssueCommentCount {
    comments: usize,
}

#[derive(Deserialize)]
struct PullRequestState {
    state: String,
}

#[derive(Deserialize)]
struct RepositoriesPage {
    repositories: Vec<InstallationRepository>,
}

#[derive(Deserialize)]
struct ErrorBody {
    message: Option<String>,
    errors: Option<serde_json::Value>,
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
            inner: Arc::new(Inner {
                http,
                api_base,
                app_id: config.app_id,
                jwt: AppJwtSigner::new(config.app_id, key),
                tokens: TokenCache::default(),
                aliases: Mutex::new(HashMap::new()),
                pauses: PauseBoard::default(),
                metrics,
                bot_login: tokio::sync::OnceCell::new(),
            }),
        })
    }

    /// Closes a pull request; one already closed is fine.
    ///
    /// Per GitHub REST: `PATCH /repos/{owner}/{repo}/pulls/{pull_number}` with
    /// `{"state":"closed"}`. Should GitHub answer 422, the pull request is read
    /// (`GET` same path) and a closed one counts as success.
    ///
    /// # Errors
    /// Any [`GitHubError`]; see its variants for which are retryable.
    pub async fn close_pull_request(
        &self,
        installation_id: u64,
        repo: &RepoFullName,
        number: u64,
    ) -> Result<(), GitHubError> {
        let installation = Installation {
            id: installation_id,
            repo: Some(repo),
        };
        let number = number.to_string();
        let url = self.endpoint(&["repos", repo.owner(), repo.name(), "pulls", &number])?;
        let body = json!({ "state": "closed" });
        let result = self
            .installation_request(
                Route::ClosePullRequest,
                Method::PATCH,
                url.clone(),
                Some(&body),
                installation,
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(GitHubError::ValidationFailed { message }) => {
                let reply = self
                    .installation_request(
                        Route::GetPullRequest,
                        Method::GET,
                        url,
                        None,
                        installation,
                    )
                    .await?;
                let pr: PullRequestState = parse_json(&reply.body, "pull request")?;
                if pr.state == "closed" {
                    Ok(())
                } else {
                    Err(GitHubError::ValidationFailed { message })
                }
            }
            Err(err) => Err(err),
        }
    }

    /// Creates or updates the pull request's issue comment that contains `marker`.
    ///
    /// Lists every page of `GET /repos/{owner}/{repo}/issues/{number}/comments?per_page=100`
    /// (following `Link: rel="next"`), collecting the comments whose body contains
    /// `marker` and were written by this App (`performed_via_github_app.id` is
    /// `GITHUB_APP_ID`, or the author is the App's bot account `{slug}[bot]`, the slug
    /// read once with `GET /app`); comments of anyone else are never touched. The oldest
    /// of them is kept: `PATCH /repos/{owner}/{repo}/issues/comments/{id}`
    /// when its body is not already `body` (skipped otherwise); the others are removed
    /// with `DELETE` on the same path (a 404 there means another replica did it). With
    /// no match: `POST /repos/{owner}/{repo}/issues/{number}/comments`. Safe to retry.
    ///
    /// `marker` is the exact text searched for (e.g. `<!-- sitg:gate:… -->`) and must be
    /// part of `body`, or the next upsert would not find this comment.
    ///
    /// # Errors
    /// [`GitHubError::ValidationFailed`] when `marker` is blank or missing from `body`
    /// (no request is made); [`GitHubError::PaginationLoop`] when the comment pages'
    /// `Link` chain revisits a page or runs past what the issue's comment count
    /// (`GET /repos/{owner}/{repo}/issues/{number}`, read once a second page exists)
    /// fills, plus one page; otherwise any [`GitHubError`].
    pub async fn upsert_marked_comment(
        &self,
        installation_id: u64,
        repo: &RepoFullName,
        number: u64,
        body: &str,
        marker: &str,
    ) -> Result<CommentUpsert, GitHubError> {
        if marker.trim().is_empty() {
            return Err(GitHubError::ValidationFailed {
                message: "comment marker is empty".to_owned(),
            });
        }
        if !body.contains(marker) {
            return Err(GitHubError::ValidationFailed {
                message: "comment body does not contain its marker".to_owned(),
            });
        }
        let installation = Installation {
            id: installation_id,
            repo: Some(repo),
        };
        let marked = self
            .find_marked_comments(installation, repo, number, marker)
            .await?;
        match plan_upsert(marked, body) {
            UpsertPlan::Create => {
                let comment_id = self
                    .create_comment(installation, repo, number, body)
                    .await?;
                Ok(CommentUpsert::Created { comment_id })
            }
            UpsertPlan::Keep {
                keep,
                rewrite,
                delete,
            } => {
                if rewrite {
                    match self.update_comment(installation, repo, keep, body).await {
                        Ok(()) => {}
                        // Deleted between listing and updating (by a person, or a replica
                        // that saw an older one): the marker must live on, so create it.
                        Err(GitHubError::NotFound { .. }) => {
                            let comment_id = self
                                .create_comment(installation, repo, number, body)
                                .await?;
                            self.delete_comments(installation, repo, &delete).await?;
                            return Ok(CommentUpsert::Created { comment_id });
                        }
                        Err(err) => return Err(err),
                    }
                }
                let duplicates_deleted = self.delete_comments(installation, repo, &delete).await?;
                Ok(if rewrite {
                    CommentUpsert::Updated {
                        comment_id: keep,
                        duplicates_deleted,
                    }
                } else {
                    CommentUpsert::Unchanged {
                        comment_id: keep,
                        duplicates_deleted,
                    }
                })
            }
        }
    }

    /// Every repository the installation can access.
    ///
    /// Per GitHub REST: `GET /installation/repositories?per_page=100`, all pages, with
    /// the installation's access token.
    ///
    /// # Errors
    /// [`GitHubError::InstallationNotFound`] when GitHub does not know the installation
    /// (there is no repository to resolve it through); otherwise any [`GitHubError`].
    pub async fn list_installation_repositories(
        &self,
        installation_id: u64,
    ) -> Result<Vec<InstallationRepository>, GitHubError> {
        let installation = Installation {
            id: installation_id,
            repo: None,
        };
        let mut url = self.endpoint(&["installation", "repositories"])?;
        url.query_pairs_mut().append_pair("per_page", PER_PAGE);
        let mut repositories = Vec::new();
        for _ in 0..MAX_PAGES {
            let reply = self
                .installation_request(
                    Route::ListInstallationRepositories,
                    Method::GET,
                    url,
                    None,
                    installation,
                )
                .await
                .map_err(|err| match err {
                    GitHubError::NotFound { .. } => {
                        GitHubError::InstallationNotFound { installation_id }
                    }
                    other => other,
                })?;
            let page: RepositoriesPage = parse_json(&reply.body, "installation repositories")?;
            repositories.extend(page.repositories);
            match self.next_page(&reply.headers)? {
                Some(next) => url = next,
                None => return Ok(repositories),
            }
        }
        Err(too_many_pages("installation repositories"))
    }

    /// The installation of the App that holds `repo`, or `None` when the App is not
    /// installed there.
    ///
    /// Per GitHub REST: `GET /repos/{owner}/{repo}/installation` with the App JWT. Used for
    /// deliveries that arrive without an `installation` object (a repository webhook
    /// pointed at the App's URL).
    pub async fn repository_installation(
        &self,
        repo: &RepoFullName,
    ) -> Result<Option<u64>, GitHubError> {
        // Installation 0 does not exist; it keys rate-limit pauses of this App-level call.
        self.repo_installation(0, repo).await
    }

    /// When `installation_id` is paused by a rate limit: the instant it may be used
    /// again. `None` when it is not paused. Calls for a paused installation fail with
    /// [`GitHubError::RateLimited`] without a request.
    pub fn installation_paused_until(&self, installation_id: u64) -> Option<Instant> {
        self.inner
            .pauses
            .current(installation_id, Instant::now())
            .map(|p| p.until)
    }

    async fn find_marked_comments(
        &self,
        installation: Installation<'_>,
        repo: &RepoFullName,
        number: u64,
        marker: &str,
    ) -> Result<Vec<MarkedComment>, GitHubError> {
        let number = number.to_string();
        let mut url = self.endpoint(&[
            "repos",
            repo.owner(),
            repo.name(),
            "issues",
            &number,
            "comments",
        ])?;
        url.query_pairs_mut().append_pair("per_page", PER_PAGE);
        let mut marked = Vec::new();
        let mut pages = PageGuard::new(&url, MAX_PAGES);
        loop {
            let reply = self
                .installation_request(Route::ListComments, Method::GET, url, None, installation)
                .await?;
            let page: Vec<IssueComment> = parse_json(&reply.body, "issue comments")?;
            let app_id = self.inner.app_id;
            for comment in page {
                let Some(body) = comment.body.as_deref().filter(|b| b.contains(marker)) else {
                    continue;
                };
                let ours = match comment.authorship(app_id) {
                    Authorship::ThisApp => true,
                    Authorship::Other => false,
                    // Only now is the App's own login needed (one `GET /app` per process).
                    Authorship::BotAccount => {
                        let bot_login = self.app_bot_login().await?;
                        comment.written_by_app(app_id, bot_login)
                    }
                };
                if ours {
                    marked.push(MarkedComment {
                        id: comment.id,
                        body: body.to_owned(),
                    });
                } else if comment.authorship(app_id) == Authorship::BotAccount {
                    debug!(
                        event = "marked_comment_of_another_bot",
                        installation_id = installation.id,
                        repo = %repo,
                        comment_id = comment.id,
                        author = comment.user.as_ref().and_then(|u| u.login.as_deref()),
                        "a comment carrying our marker was written by another bot; left alone"
                    );
                }
            }
            let Some(next) = self.next_page(&reply.headers)? else {
                return Ok(marked);
            };
            if pages.pages() == 1 {
                // More than one page: bound the listing by what the issue's comments
                // can fill, one page of slack for comments added meanwhile.
                let count = self
                    .issue_comment_count(installation, repo, &number)
                    .await?;
                pages.limit_to(count.div_ceil(PER_PAGE_COUNT) + 1);
            }
            pages
                .admit(&next)
                .map_err(|e| GitHubError::PaginationLoop {
                    what: "issue comments",
                    reason: e.to_string(),
                })?;
            url = next;
        }
    }

    /// How many comments an issue (or pull request) has.
    ///
    /// Per GitHub REST: `GET /repos/{owner}/{repo}/issues/{number}`, its `comments`.
    async fn issue_comment_count(
        &self,
        installation: Installation<'_>,
        repo: &RepoFullName,
        number: &str,
    ) -> Result<usize, GitHubError> {
        let url = self.endpoint(&["repos", repo.owner(), repo.name(), "issues", number])?;
        let reply = self
            .installation_request(Route::GetIssue, Method::GET, url, None, installation)
            .await?;
        Ok(parse_json::<IssueCommentCount>(&reply.body, "issue")?.comments)
    }

    /// The App's bot account login, `{slug}[bot]`: `GET /app` with the App JWT once per
    /// process (GitHub's answer names the App's `slug`), then cached.
    ///
    /// # Errors
    /// A retryable [`GitHubError`] (a refusal becomes [`GitHubError::Config`]); nothing
    /// is cached then.
    async fn app_bot_login(&self) -> Result<&str, GitHubError> {
        self.inner
            .bot_login
            .get_or_try_init(|| async {
                let call = Call {
                    route: Route::GetApp,
                    // Installation 0 does not exist; it keys pauses of App-level calls.
                    installation: Installation { id: 0, repo: None },
                };
                let url = self.endpoint(&["app"])?;
                let reply = self.app_request(call, Method::GET, url.clone()).await?;
                // The action is not at fault when the App cannot read itself: never
                // fail it for good over this.
                let reply = self.check(call, reply, &url).map_err(|err| {
                    if err.is_retryable() {
                        err
                    } else {
                        GitHubError::Config(format!("GET /app: {err}"))
                    }
                })?;
                let app: AppIdentity = parse_json(&reply.body, "app")?;
                if app.slug.trim().is_empty() {
                    return Err(GitHubError::InvalidResponse(
                        "app: the answer has an empty slug".to_owned(),
                    ));
                }
                let login = format!("{}[bot]", app.slug);
                info!(
                    event = "github_app_identified",
                    app_id = self.inner.app_id,
                    bot_login = %login,
                    "comments by this login are the App's own"
                );
                Ok(login)
            })
            .await
            .map(String::as_str)
    }

    async fn create_comment(
        &self,
        installation: Installation<'_>,
        repo: &RepoFullName,
        number: u64,
        body: &str,
    ) -> Result<u64, GitHubError> {
        let number = number.to_string();
        let url = self.endpoint(&[
            "repos",
            repo.owner(),
            repo.name(),
            "issues",
            &number,
            "comments",
        ])?;
        let reply = self
            .installation_request(
                Route::CreateComment,
                Method::POST,
                url,
                Some(&json!({ "body": body })),
                installation,
            )
            .await?;
        Ok(parse_json::<IdOnly>(&reply.body, "created comment")?.id)
    }

    async fn update_comment(
        &self,
        installation: Installation<'_>,
        repo: &RepoFullName,
        comment_id: u64,
        body: &str,
    ) -> Result<(), GitHubError> {
        let id = comment_id.to_string();
        let url = self.endpoint(&[
            "repos",
            repo.owner(),
            repo.name(),
            "issues",
            "comments",
            &id,
        ])?;
        self.installation_request(
            Route::UpdateComment,
            Method::PATCH,
            url,
            Some(&json!({ "body": body })),
            installation,
        )
        .await?;
        Ok(())
    }

    /// Deletes the given comments; returns how many this call removed (a 404 means
    /// someone else already did).
    async fn delete_comments(
        &self,
        installation: Installation<'_>,
        repo: &RepoFullName,
        comment_ids: &[u64],
    ) -> Result<usize, GitHubError> {
        let mut deleted = 0;
        for comment_id in comment_ids {
            let id = comment_id.to_string();
            let url = self.endpoint(&[
                "repos",
                repo.owner(),
                repo.name(),
                "issues",
                "comments",
                &id,
            ])?;
            match self
                .installation_request(
                    Route::DeleteComment,
                    Method::DELETE,
                    url,
                    None,
                    installation,
                )
                .await
            {
                Ok(_) => deleted += 1,
                Err(GitHubError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        if !comment_ids.is_empty() {
            info!(
                event = "removed_duplicate_marked_comments",
                installation_id = installation.id,
                repo = %repo,
                duplicates = comment_ids.len(),
                deleted,
                "removed duplicate marked comments"
            );
        }
        Ok(deleted)
    }

    /// One request with the installation's access token; a 401 evicts the token and
    /// the request is sent once more with a fresh one. Refusals become errors.
    async fn installation_request(
        &self,
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
        self.ensure_not_paused(installation.id)?;
        let token = self.installation_token(installation, None).await?;
        let mut reply = self
            .send(call, method.clone(), url.clone(), &token, body)
            .await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            warn!(
                event = "installation_token_refused",
                installation_id = installation.id,
                route = route.as_label(),
                "GitHub refused the installation access token; minting a new one"
            );
            self.ensure_not_paused(installation.id)?;
            let fresh = self.installation_token(installation, Some(&token)).await?;
            reply = self.send(call, method, url.clone(), &fresh, body).await?;
            if reply.status == StatusCode::UNAUTHORIZED {
                return Err(GitHubError::Unauthorized);
            }
        }
        self.check(call, reply, &url)
    }

    /// The installation access token to use for `installation`, minted when none is
    /// cached. `stale` is a token GitHub has just refused.
    async fn installation_token(
        &self,
        installation: Installation<'_>,
        stale: Option<&SecretString>,
    ) -> Result<SecretString, GitHubError> {
        let requested = installation.id;
        // Without a repository a stale id cannot be resolved, so never borrow another
        // installation's token for it (it would list someone else's repositories).
        let target = match installation.repo {
            Some(_) => self.alias(requested).unwrap_or(requested),
            None => requested,
        };
        let acquired = self
            .inner
            .tokens
            .get_or_mint(target, stale, || {
                self.mint_with_fallback(installation, target)
            })
            .await?;
        match acquired {
            Acquired::Token(token) => Ok(token),
            Acquired::Redirect(other) if installation.repo.is_some() => {
                match self
                    .inner
                    .tokens
                    .get_or_mint(other, stale, || self.mint(requested, other))
                    .await?
                {
                    Acquired::Token(token) => Ok(token),
                    Acquired::Redirect(_) => Err(GitHubError::InstallationNotFound {
                        installation_id: requested,
                    }),
                }
            }
            Acquired::Redirect(_) => Err(GitHubError::InstallationNotFound {
                installation_id: requested,
            }),
        }
    }

    /// Mints a token for `target`; when GitHub does not know it, asks which
    /// installation holds the repository (`GET /repos/{owner}/{repo}/installation`,
    /// contract §2) and redirects there.
    async fn mint_with_fallback(
        &self,
        installation: Installation<'_>,
        target: u64,
    ) -> Result<MintOutcome, GitHubError> {
        let requested = installation.id;
        match self.mint(requested, target).await {
            Err(GitHubError::InstallationNotFound { .. }) => {}
            other => return other,
        }
        let not_found = GitHubError::InstallationNotFound {
            installation_id: requested,
        };
        let Some(repo) = installation.repo else {
            return Err(not_found);
        };
        match self.repo_installation(requested, repo).await? {
            Some(found) if found != target => {
                info!(
                    event = "installation_resolved_from_repository",
                    installation_id = requested,
                    resolved_installation_id = found,
                    repo = %repo,
                    "installation not found; using the repository's installation"
                );
                self.set_alias(requested, (found != requested).then_some(found));
                Ok(MintOutcome::Redirect(found))
            }
            _ => {
                self.set_alias(requested, None);
                Err(not_found)
            }
        }
    }

    /// Per GitHub REST: `POST /app/installations/{target}/access_tokens` with the App
    /// JWT. A 404 is [`GitHubError::InstallationNotFound`]; rate limits pause
    /// `requested`, the id the caller knows.
    async fn mint(&self, requested: u64, target: u64) -> Result<MintOutcome, GitHubError> {
        let call = Call {
            route: Route::CreateInstallationToken,
            installation: Installation {
                id: requested,
                repo: None,
            },
        };
        let id = target.to_string();
        let url = self.endpoint(&["app", "installations", &id, "access_tokens"])?;
        let reply = self.app_request(call, Method::POST, url.clone()).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Err(GitHubError::InstallationNotFound {
                installation_id: requested,
            });
        }
        let reply = self.check(call, reply, &url)?;
        // serde's messages may quote the value, which here is the token: say only what
        // was wrong.
        let minted: TokenResponse = serde_json::from_slice(&reply.body).map_err(|_| {
            GitHubError::InvalidResponse(
                "installation access token answer lacks token or expires_at".to_owned(),
            )
        })?;
        crate::redact::remember_rotating(&format!("installation_token:{target}"), &minted.token);
        self.inner.metrics.token_minted();
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

    /// Per GitHub REST: `GET /repos/{owner}/{repo}/installation` with the App JWT; `None`
    /// on 404.
    async fn repo_installation(
        &self,
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
        let url = self.endpoint(&["repos", repo.owner(), repo.name(), "installation"])?;
        let reply = self.app_request(call, Method::GET, url.clone()).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let reply = self.check(call, reply, &url)?;
        Ok(Some(
            parse_json::<IdOnly>(&reply.body, "repository installation")?.id,
        ))
    }

    /// A request authenticated as the App (JWT). A 401 drops the cached JWT so the next
    /// call signs a new one.
    pub(super) async fn app_request(
        &self,
        call: Call<'_>,
        method: Method,
        url: Url,
    ) -> Result<Reply, GitHubError> {
        let jwt = self
            .inner
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
            self.inner.jwt.evict();
        }
        Ok(reply)
    }

    async fn send(
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
        let mut request = self
            .inner
            .http
            .request(method, url)
            .bearer_auth(bearer.expose());
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
        self.inner
            .metrics
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
            let held =
                self.inner
                    .pauses
                    .pause(installation_id, Instant::now() + pause.wait, secondary);
            self.inner.metrics.rate_limited(pause.kind);
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

    fn ensure_not_paused(&self, installation_id: u64) -> Result<(), GitHubError> {
        match self.inner.pauses.current(installation_id, Instant::now()) {
            Some(pause) => Err(GitHubError::RateLimited {
                installation_id,
                retry_at: pause.until,
                secondary: pause.secondary,
            }),
            None => Ok(()),
        }
    }

    pub(super) fn next_page(&self, headers: &HeaderMap) -> Result<Option<Url>, GitHubError> {
        next_page_url(headers, &self.inner.api_base)
            .map_err(|e| GitHubError::InvalidResponse(e.to_string()))
    }

    pub(super) fn endpoint(&self, segments: &[&str]) -> Result<Url, GitHubError> {
        endpoint(&self.inner.api_base, segments)
    }

    fn alias(&self, installation_id: u64) -> Option<u64> {
        self.inner.aliases.lock().get(&installation_id).copied()
    }

    fn set_alias(&self, installation_id: u64, resolved: Option<u64>) {
        let mut aliases = self.inner.aliases.lock();
        match resolved {
            Some(resolved) => aliases.insert(installation_id, resolved),
            None => aliases.remove(&installation_id),
        };
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

pub(super) fn parse_json<T: DeserializeOwned>(body: &Bytes, what: &str) -> Result<T, GitHubError> {
    serde_json::from_slice(body).map_err(|e| GitHubError::InvalidResponse(format!("{what}: {e}")))
}

pub(super) fn too_many_pages(what: &str) -> GitHubError {
    GitHubError::InvalidResponse(format!("{what}: more than {MAX_PAGES} pages"))
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
