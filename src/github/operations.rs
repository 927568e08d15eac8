//! The public operations of [`GitHubClient`]: what the outbox, the installation
//! backfill and the webhook side ask of GitHub, and the comment plumbing behind them.
//!
//! Owns the sequences of requests each operation is (close a pull request and read it
//! back on a 422; list every page of a pull request's comments, bounded by its comment
//! count, and upsert the marked one; list an installation's repositories), which
//! comments are this App's own (`performed_via_github_app`, or the App's bot account
//! `{slug}[bot]` read once with `GET /app`: another App's or a person's comment is
//! never rewritten or deleted), and the shapes of GitHub's answers they read. Each
//! request goes through [`super::installation_auth`] (installation token, stale
//! installation redirect) or, for App-level calls, [`super::transport`].

use std::time::Instant;

use http::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::{debug, info};
use url::Url;

use super::client::GitHubClient;
use super::comment::{MarkedComment, UpsertPlan, plan_upsert};
use super::error::GitHubError;
use super::metrics::Route;
use super::pagination::{MAX_PAGES, PER_PAGE, PER_PAGE_COUNT, PageGuard, too_many_pages};
use super::transport::{Call, Installation, Reply, parse_json};
use crate::contract::RepoFullName;

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

impl GitHubClient {
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
        let url =
            self.transport()
                .endpoint(&["repos", repo.owner(), repo.name(), "pulls", &number])?;
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
        let mut url = self
            .transport()
            .endpoint(&["installation", "repositories"])?;
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
            match self.transport().next_page(&reply.headers)? {
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
        self.auth()
            .repo_installation(self.transport(), 0, repo)
            .await
    }

    /// When `installation_id` is paused by a rate limit: the instant it may be used
    /// again. `None` when it is not paused. Calls for a paused installation fail with
    /// [`GitHubError::RateLimited`] without a request.
    pub fn installation_paused_until(&self, installation_id: u64) -> Option<Instant> {
        self.transport().paused_until(installation_id)
    }

    async fn find_marked_comments(
        &self,
        installation: Installation<'_>,
        repo: &RepoFullName,
        number: u64,
        marker: &str,
    ) -> Result<Vec<MarkedComment>, GitHubError> {
        let number = number.to_string();
        let mut url = self.transport().endpoint(&[
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
            let app_id = self.app_id();
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
            let Some(next) = self.transport().next_page(&reply.headers)? else {
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
        let url =
            self.transport()
                .endpoint(&["repos", repo.owner(), repo.name(), "issues", number])?;
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
        self.bot_login()
            .get_or_try_init(|| async {
                let call = Call {
                    route: Route::GetApp,
                    // Installation 0 does not exist; it keys pauses of App-level calls.
                    installation: Installation { id: 0, repo: None },
                };
                let url = self.transport().endpoint(&["app"])?;
                let reply = self
                    .transport()
                    .app_request(call, Method::GET, url.clone())
                    .await?;
                // The action is not at fault when the App cannot read itself: never
                // fail it for good over this.
                let reply = self.transport().check(call, reply, &url).map_err(|err| {
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
                    app_id = self.app_id(),
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
        let url = self.transport().endpoint(&[
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
        let url = self.transport().endpoint(&[
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
            let url = self.transport().endpoint(&[
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

    /// One request with `installation`'s access token ([`super::installation_auth`]).
    async fn installation_request(
        &self,
        route: Route,
        method: Method,
        url: Url,
        body: Option<&serde_json::Value>,
        installation: Installation<'_>,
    ) -> Result<Reply, GitHubError> {
        self.auth()
            .request(self.transport(), route, method, url, body, installation)
            .await
    }
}
