//! GitHub's JSON shapes (per `@octokit/openapi`, `api.github.com.json`), filled with the
//! fields the required lists name that matter to a client; URLs use the simulator's
//! base URL for API links and `https://github.com` for browser links.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::store::{Comment, Installation, Pull, Repo};

/// GitHub's timestamp format: RFC 3339, whole seconds, `Z`.
pub(crate) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Permissions an installation token of the bot carries.
pub(crate) fn token_permissions() -> Value {
    json!({ "issues": "write", "pull_requests": "write", "metadata": "read" })
}

pub(crate) fn user(api: &str, login: &str, id: i64, kind: &str) -> Value {
    json!({
        "login": login,
        "id": id,
        "node_id": format!("MDQ6VXNlcnt{id}"),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
        "gravatar_id": "",
        "url": format!("{api}/users/{login}"),
        "html_url": format!("https://github.com/{login}"),
        "type": kind,
        "site_admin": false,
    })
}

pub(crate) fn comment(api: &str, repo: &Repo, c: &Comment) -> Value {
    let full = repo.full_name();
    let author = &c.public;
    let kind = if author.author_is_bot { "Bot" } else { "User" };
    json!({
        "id": c.id,
        "node_id": format!("IC_kwDO{}", c.id),
        "url": format!("{api}/repos/{full}/issues/comments/{}", c.id),
        "html_url": format!("https://github.com/{full}/pull/{}#issuecomment-{}", c.issue_number, c.id),
        "issue_url": format!("{api}/repos/{full}/issues/{}", c.issue_number),
        "body": author.body,
        "user": user(api, &author.author_login, c.author_id, kind),
        "created_at": timestamp(author.created_at),
        "updated_at": timestamp(author.updated_at),
        "author_association": if author.author_is_bot { "NONE" } else { "CONTRIBUTOR" },
        "performed_via_github_app": null,
    })
}

/// `GET /app`: the authenticated App.
pub(crate) fn app(api: &str, app_id: u64, slug: &str) -> Value {
    let owner_id = 9_999_999;
    json!({
        "id": app_id,
        "slug": slug,
        "node_id": format!("A_kwDO{app_id}"),
        "client_id": format!("Iv1.{app_id:016x}"),
        "owner": user(api, "sitg-dev", owner_id, "Organization"),
        "name": slug,
        "description": "",
        "external_url": "https://sitg.io",
        "html_url": format!("https://github.com/apps/{slug}"),
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "permissions": token_permissions(),
        "events": ["installation", "installation_repositories", "pull_request"],
        "installations_count": 1,
    })
}

pub(crate) fn installation(api: &str, app_id: u64, app_slug: &str, i: &Installation) -> Value {
    json!({
        "id": i.id,
        "account": user(api, &i.account_login, i.account_id, &i.account_type),
        "repository_selection": "selected",
        "access_tokens_url": format!("{api}/app/installations/{}/access_tokens", i.id),
        "repositories_url": format!("{api}/installation/repositories"),
        "html_url": format!("https://github.com/settings/installations/{}", i.id),
        "app_id": app_id,
        "app_slug": app_slug,
        "target_id": i.account_id,
        "target_type": i.account_type,
        "permissions": token_permissions(),
        "events": ["installation", "installation_repositories", "pull_request"],
        "created_at": timestamp(i.created_at),
        "updated_at": timestamp(i.created_at),
        "single_file_name": null,
        "suspended_by": null,
        "suspended_at": null,
    })
}

pub(crate) fn repository(api: &str, owner: &Installation, r: &Repo) -> Value {
    let full = r.full_name();
    json!({
        "id": r.id,
        "node_id": format!("R_kgDO{}", r.id),
        "name": r.name,
        "full_name": full,
        "private": false,
        "owner": user(api, &r.owner, owner.account_id, &owner.account_type),
        "html_url": format!("https://github.com/{full}"),
        "description": null,
        "fork": false,
        "url": format!("{api}/repos/{full}"),
        "default_branch": "main",
        "archived": false,
        "disabled": false,
        "visibility": "public",
        "created_at": timestamp(r.created_at),
        "updated_at": timestamp(r.created_at),
        "pushed_at": timestamp(r.created_at),
    })
}

pub(crate) fn pull_request(api: &str, r: &Repo, p: &Pull) -> Value {
    let full = r.full_name();
    let n = p.number;
    json!({
        "url": format!("{api}/repos/{full}/pulls/{n}"),
        "id": p.id,
        "node_id": format!("PR_kwDO{}", p.id),
        "html_url": format!("https://github.com/{full}/pull/{n}"),
        "issue_url": format!("{api}/repos/{full}/issues/{n}"),
        "comments_url": format!("{api}/repos/{full}/issues/{n}/comments"),
        "number": n,
        "state": p.state.as_str(),
        "locked": false,
        "title": format!("Pull request #{n}"),
        "body": null,
        "draft": false,
        "merged": false,
        "created_at": timestamp(p.created_at),
        "updated_at": timestamp(p.updated_at),
        "closed_at": p.closed_at.map(timestamp),
        "merged_at": null,
        "head": { "ref": format!("feature-{n}"), "sha": format!("{:040x}", p.id) },
        "base": { "ref": "main" },
    })
}

/// The issue of a pull request, as `GET /repos/{owner}/{repo}/issues/{n}` answers it;
/// `comments` is how many issue comments it has.
pub(crate) fn issue(api: &str, r: &Repo, p: &Pull, comments: usize) -> Value {
    let full = r.full_name();
    let n = p.number;
    json!({
        "url": format!("{api}/repos/{full}/issues/{n}"),
        "id": p.id,
        "node_id": format!("I_kwDO{}", p.id),
        "html_url": format!("https://github.com/{full}/pull/{n}"),
        "comments_url": format!("{api}/repos/{full}/issues/{n}/comments"),
        "number": n,
        "state": p.state.as_str(),
        "title": format!("Pull request #{n}"),
        "locked": false,
        "comments": comments,
        "created_at": timestamp(p.created_at),
        "updated_at": timestamp(p.updated_at),
        "closed_at": p.closed_at.map(timestamp),
        "pull_request": {
            "url": format!("{api}/repos/{full}/pulls/{n}"),
            "html_url": format!("https://github.com/{full}/pull/{n}"),
        },
    })
}

/// GitHub's error body: `{"message", "documentation_url", "status"}`.
pub(crate) fn error(message: &str, documentation_url: &str, status: u16) -> Value {
    json!({
        "message": message,
        "documentation_url": documentation_url,
        "status": status.to_string(),
    })
}

/// GitHub's 422 "Validation Failed" body for one field error.
pub(crate) fn validation_failed(
    resource: &str,
    field: &str,
    code: &str,
    message: Option<&str>,
    documentation_url: &str,
) -> Value {
    let mut detail = json!({ "resource": resource, "code": code, "field": field });
    if let Some(message) = message {
        detail["message"] = json!(message);
    }
    json!({
        "message": "Validation Failed",
        "errors": [detail],
        "documentation_url": documentation_url,
        "status": "422",
    })
}
