//! The GitHub simulator's HTTP surface: GitHub's REST paths, status codes, headers and
//! JSON bodies for the calls the worker makes (contract §2).

use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{MatchedPath, Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use chrono::Utc;
use serde_json::Value;

use super::faults::{Fault, Route};
use super::hooks;
use super::jwt::JwtRejection;
use super::page::PageRequest;
use super::shapes;
use super::store::{BodyRefusal, PullState, check_comment_body};
use super::{GitHubSim, GitHubWrite, HeaderViolation};

/// The only REST API version the simulator (and the contract) speaks.
pub const API_VERSION: &str = "2022-11-28";
/// The media type the contract asks for.
pub const ACCEPT: &str = "application/vnd.github+json";

const DOCS: &str = "https://docs.github.com/rest";
const DOCS_TOKEN: &str =
    "https://docs.github.com/rest/apps/apps#create-an-installation-access-token-for-an-app";
const DOCS_REPO_INSTALLATION: &str = "https://docs.github.com/rest/apps/apps#get-a-repository-installation-for-the-authenticated-app";
const DOCS_GET_ISSUE: &str = "https://docs.github.com/rest/issues/issues#get-an-issue";
const DOCS_LIST_COMMENTS: &str = "https://docs.github.com/rest/issues/comments#list-issue-comments";
const DOCS_CREATE_COMMENT: &str =
    "https://docs.github.com/rest/issues/comments#create-an-issue-comment";
const DOCS_UPDATE_COMMENT: &str =
    "https://docs.github.com/rest/issues/comments#update-an-issue-comment";
const DOCS_DELETE_COMMENT: &str =
    "https://docs.github.com/rest/issues/comments#delete-an-issue-comment";
const DOCS_UPDATE_PULL: &str = "https://docs.github.com/rest/pulls/pulls#update-a-pull-request";
const DOCS_INSTALLATION_REPOS: &str = "https://docs.github.com/rest/apps/installations#list-repositories-accessible-to-the-app-installation";
const DOCS_SECONDARY: &str = "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits";
const DOCS_PRIMARY: &str = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api";

/// Plain-text body GitHub sends when `User-Agent` is missing.
const NO_USER_AGENT: &str = "Request forbidden by administrative rules. Please make sure your \
    request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required). \
    Check https://developer.github.com for other possible causes.\n";

/// Rate limit GitHub reports for an installation; the simulator does not count down
/// (use a [`Fault::PrimaryRateLimit`] to exhaust it).
const RATE_LIMIT: u32 = 5000;

type Reply = Result<Response, Refusal>;

/// An error answer on its way out of a handler; boxed because a `Response` is large.
pub(super) struct Refusal(Box<Response>);

impl From<Response> for Refusal {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        *self.0
    }
}

pub(super) fn router(sim: GitHubSim) -> Router {
    Router::new()
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(create_installation_token),
        )
        .route("/app", get(get_app))
        .route(
            "/repos/{owner}/{repo}/installation",
            get(get_repo_installation),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}",
            get(get_issue),
        )
        .route(
            "/repos/{owner}/{repo}/issues/{issue_number}/comments",
            get(list_comments).post(create_comment),
        )
        .route(
            "/repositories/{repository_id}/issues/{issue_number}/comments",
            get(list_comments_by_repository_id),
        )
        .route(
            "/repos/{owner}/{repo}/issues/comments/{comment_id}",
            patch(update_comment).delete(delete_comment),
        )
        .route(
            "/repos/{owner}/{repo}/pulls/{pull_number}",
            patch(update_pull_request),
        )
        .route(
            "/installation/repositories",
            get(list_installation_repositories),
        )
        .route("/app/hook/deliveries", get(hooks::list_hook_deliveries))
        .route(
            "/app/hook/deliveries/{delivery_id}/attempts",
            post(hooks::redeliver_hook_delivery),
        )
        .fallback(not_found_route)
        .layer(middleware::from_fn_with_state(
            sim.clone(),
            headers_and_accounting,
        ))
        .with_state(sim)
}

pub(super) fn json(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

pub(super) fn error(status: StatusCode, message: &str, docs: &str) -> Response {
    json(status, &shapes::error(message, docs, status.as_u16()))
}

fn not_found(docs: &str) -> Response {
    error(StatusCode::NOT_FOUND, "Not Found", docs)
}

async fn not_found_route() -> Response {
    not_found(DOCS)
}

/// The contract's required headers (§2): records violations, refuses what GitHub refuses
/// (no `User-Agent` → 403, unknown API version → 400), adds GitHub's usual response
/// headers and counts the response by route and status.
async fn headers_and_accounting(
    State(sim): State<GitHubSim>,
    req: Request,
    next: Next,
) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(Route::Unknown, |p| {
            Route::from_template(req.method().as_str(), p.as_str())
        });
    let headers = req.headers();
    let value = |name: &HeaderName| {
        headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    // Kept for an echo fault, which quotes the request line and headers.
    let request_line = format!("{} {} HTTP/1.1", req.method(), req.uri());
    let request_headers = headers.clone();
    let user_agent = value(&header::USER_AGENT).filter(|v| !v.trim().is_empty());
    let accept = value(&header::ACCEPT);
    let version = value(&HeaderName::from_static("x-github-api-version"));

    let mut violations = Vec::new();
    if user_agent.is_none() {
        violations.push(HeaderViolation {
            route,
            header: "user-agent",
            value: None,
        });
    }
    if accept.as_deref() != Some(ACCEPT) {
        violations.push(HeaderViolation {
            route,
            header: "accept",
            value: accept,
        });
    }
    if version.as_deref() != Some(API_VERSION) {
        violations.push(HeaderViolation {
            route,
            header: "x-github-api-version",
            value: version.clone(),
        });
    }

    // A strict HTTP/1.1 proxy (as in front of some GitHub Enterprise Server
    // installations) wants the length of every request that may carry a body.
    let length_required = sim.shared.require_content_length.load(Ordering::Relaxed)
        && matches!(req.method().as_str(), "POST" | "PATCH" | "PUT")
        && !headers.contains_key(header::CONTENT_LENGTH)
        && !headers.contains_key(header::TRANSFER_ENCODING);
    let mut response = if length_required {
        sim.shared.state.lock().stats.length_required += 1;
        let mut r = (StatusCode::LENGTH_REQUIRED, "Length Required\n").into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    } else if user_agent.is_none() {
        let mut r = (StatusCode::FORBIDDEN, NO_USER_AGENT).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        r
    } else if let Some(v) = version.as_deref().filter(|v| *v != API_VERSION) {
        error(
            StatusCode::BAD_REQUEST,
            &format!("API version '{v}' is not supported."),
            "https://docs.github.com/rest/about-the-rest-api/api-versions",
        )
    } else {
        next.run(req).await
    };

    if let Some(echo) = response.extensions().get::<EchoPending>().copied() {
        let mut quoted = format!("{request_line}\n");
        for (name, value) in &request_headers {
            let value = String::from_utf8_lossy(value.as_bytes());
            if name == header::AUTHORIZATION {
                sim.shared
                    .state
                    .lock()
                    .echoed_credentials
                    .push(value.clone().into_owned());
            }
            quoted.push_str(&format!("{name}: {value}\n"));
        }
        response = echo_response(response.status(), echo.json, &quoted);
    }

    add_standard_headers(response.headers_mut());
    sim.shared
        .state
        .lock()
        .stats
        .record(route, response.status(), violations);
    sim.shared.changes.bump();
    response
}

fn add_standard_headers(headers: &mut HeaderMap) {
    let reset = (Utc::now().timestamp() + 3600).to_string();
    let defaults = [
        ("x-github-api-version-selected", API_VERSION.to_owned()),
        ("x-github-media-type", "github.v3; format=json".to_owned()),
        (
            "x-github-request-id",
            uuid::Uuid::new_v4().simple().to_string().to_uppercase(),
        ),
        ("x-ratelimit-limit", RATE_LIMIT.to_string()),
        ("x-ratelimit-remaining", (RATE_LIMIT - 1).to_string()),
        ("x-ratelimit-used", "1".to_owned()),
        ("x-ratelimit-reset", reset),
        ("x-ratelimit-resource", "core".to_owned()),
    ];
    for (name, value) in defaults {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.entry(name).or_insert(value);
        }
    }
}

fn fault_response(fault: Fault, installation: Option<i64>) -> Response {
    match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let message = match status {
                StatusCode::NOT_FOUND => "Not Found",
                s if s.is_server_error() => "Server Error",
                s => s.canonical_reason().unwrap_or("Error"),
            };
            error(status, message, DOCS)
        }
        Fault::SecondaryRateLimit { retry_after } => {
            let mut r = error(
                StatusCode::FORBIDDEN,
                "You have exceeded a secondary rate limit. Please wait a few minutes before you \
                 try again. If you reach out to GitHub Support for help, please include the \
                 request ID.",
                DOCS_SECONDARY,
            );
            if let Some(seconds) = retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            }
            r
        }
        Fault::PrimaryRateLimit {
            status,
            reset_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN);
            let who =
                installation.map_or_else(String::new, |id| format!(" for installation ID {id}"));
            let mut r = error(
                status,
                &format!(
                    "API rate limit exceeded{who}. If you reach out to GitHub Support for help, \
                     please include the request ID."
                ),
                DOCS_PRIMARY,
            );
            let reset = Utc::now().timestamp()
                + i64::try_from(reset_after.as_secs()).unwrap_or(i64::MAX / 2);
            let headers = r.headers_mut();
            headers.insert("x-ratelimit-limit", HeaderValue::from(RATE_LIMIT));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(0));
            headers.insert("x-ratelimit-used", HeaderValue::from(RATE_LIMIT));
            headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
            r
        }
        // The middleware, which still holds the request's headers, writes the body.
        Fault::EchoRequest { status, json } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            let mut r = status.into_response();
            r.extensions_mut().insert(EchoPending { json });
            r
        }
        // Latency and link cycles never end a request by themselves.
        Fault::Latency(_) | Fault::LinkCycle => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "Server Error", DOCS)
        }
    }
}

/// Marks a response whose body must quote the request ([`Fault::EchoRequest`]).
#[derive(Clone, Copy)]
struct EchoPending {
    json: bool,
}

/// The body of an echo: the request line and every header, in the chosen shape.
fn echo_response(status: StatusCode, json_shape: bool, quoted: &str) -> Response {
    if json_shape {
        return error(
            status,
            &format!("Upstream request failed. Request was:\n{quoted}"),
            DOCS,
        );
    }
    let page = format!(
        "<html><head><title>{status}</title></head><body><h1>{status}</h1>\
         <p>The upstream server refused the request.</p><pre>{quoted}</pre></body></html>\n"
    );
    let mut r = (status, page).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}

/// Whether a list answer's `Link` must lead from its last page back to page 1.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct LinkCycle(pub(super) bool);

/// `Authorization: Bearer X` or `token X` (GitHub accepts both schemes).
fn credential(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
    known.then_some(credential.trim())
}

/// The base URL of API links in responses: the configured one, else `http://{Host}`.
pub(super) fn api_base(sim: &GitHubSim, headers: &HeaderMap) -> String {
    if let Some(base) = &sim.shared.public_base_url {
        return base.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

impl GitHubSim {
    pub(super) fn require_app_jwt(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let now = Utc::now().timestamp();
        let verdict = match credential(headers) {
            None => Err(JwtRejection::Missing),
            Some(token) => self.shared.verifier.verify(token, now),
        };
        verdict.map_err(|rejection| {
            *self
                .shared
                .state
                .lock()
                .stats
                .jwt_failures
                .entry(rejection)
                .or_default() += 1;
            error(StatusCode::UNAUTHORIZED, rejection.message(), DOCS).into()
        })
    }

    fn require_installation_token(&self, headers: &HeaderMap) -> Result<i64, Refusal> {
        let mut state = self.shared.state.lock();
        let installation =
            credential(headers).and_then(|token| state.store.token_installation(token, Utc::now()));
        installation.ok_or_else(|| {
            state.stats.bad_credentials += 1;
            error(StatusCode::UNAUTHORIZED, "Bad credentials", DOCS).into()
        })
    }

    /// Applies matching faults: waits out their latency, then answers the fault if any.
    /// Returns whether the answer's `Link` must cycle ([`Fault::LinkCycle`]).
    pub(super) async fn faults(
        &self,
        installation: Option<i64>,
        route: Route,
    ) -> Result<LinkCycle, Refusal> {
        let verdict = self
            .shared
            .faults
            .lock()
            .decide(installation, route, Instant::now());
        if !verdict.latency.is_zero() {
            tokio::time::sleep(verdict.latency).await;
        }
        match verdict.fault {
            None => Ok(LinkCycle(verdict.link_cycle)),
            Some(fault) => {
                self.shared.state.lock().stats.faults_served += 1;
                Err(fault_response(fault, installation).into())
            }
        }
    }

    /// The id of `owner/repo` when it belongs to `installation`, else GitHub's 404.
    fn repo_in_installation(
        &self,
        installation: i64,
        owner: &str,
        repo: &str,
        docs: &str,
    ) -> Result<i64, Refusal> {
        let state = self.shared.state.lock();
        match state.store.repo_by_name(&format!("{owner}/{repo}")) {
            Some(r) if r.installation_id == installation => Ok(r.id),
            _ => Err(not_found(docs).into()),
        }
    }

    /// 403 "Resource not accessible by integration" when the App lacks write permission.
    fn require_write(&self, repo_id: i64, docs: &str) -> Result<(), Refusal> {
        let state = self.shared.state.lock();
        if state
            .store
            .repo(repo_id)
            .is_some_and(|r| r.permission_denied)
        {
            return Err(error(
                StatusCode::FORBIDDEN,
                "Resource not accessible by integration",
                docs,
            )
            .into());
        }
        Ok(())
    }
}

fn parse_number(value: &str, docs: &str) -> Result<u64, Refusal> {
    value
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| not_found(docs).into())
}

fn parse_json(body: &Bytes, docs: &str) -> Result<Value, Refusal> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| error(StatusCode::BAD_REQUEST, "Problems parsing JSON", docs).into())
}

fn comment_body<'a>(request: &'a Value, docs: &str) -> Result<&'a str, Refusal> {
    check_comment_body(request.get("body").and_then(Value::as_str))
        .map_err(|refusal| match refusal {
            BodyRefusal::Missing => error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid request.\n\n\"body\" wasn't supplied.",
                docs,
            ),
            BodyRefusal::TooLong => json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &shapes::validation_failed(
                    "IssueComment",
                    "body",
                    "custom",
                    Some("body is too long (maximum is 65536 characters)"),
                    docs,
                ),
            ),
        })
        .map_err(Refusal::from)
}

fn page_request(query: Option<&str>) -> PageRequest {
    let mut per_page = None;
    let mut page = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "per_page" => per_page = Some(value.into_owned()),
            "page" => page = Some(value.into_owned()),
            _ => {}
        }
    }
    PageRequest::parse(per_page.as_deref(), page.as_deref())
}

pub(super) fn with_link(mut response: Response, link: Option<String>) -> Response {
    if let Some(value) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

async fn create_installation_token(
    State(sim): State<GitHubSim>,
    Path(installation_id): Path<String>,
    headers: HeaderMap,
) -> Reply {
    sim.require_app_jwt(&headers)?;
    let id = installation_id
        .parse::<i64>()
        .map_err(|_| not_found(DOCS_TOKEN))?;
    sim.faults(Some(id), Route::CreateInstallationToken).await?;
    let now = Utc::now();
    let expires_at = now + sim.shared.token_ttl;
    let mut state = sim.shared.state.lock();
    let token = state
        .store
        .mint_token(id, expires_at, now)
        .ok_or_else(|| not_found(DOCS_TOKEN))?;
    state.stats.token_mints += 1;
    *state
        .stats
        .token_mints_by_installation
        .entry(id)
        .or_default() += 1;
    let body = serde_json::json!({
        "token": token,
        "expires_at": shapes::timestamp(expires_at),
        "permissions": shapes::token_permissions(),
        "repository_selection": "selected",
    });
    Ok(json(StatusCode::CREATED, &body))
}

/// `GET /app` (App JWT): the App itself, whose `slug` names its bot account
/// (`{slug}[bot]`, the author of the comments it writes).
async fn get_app(State(sim): State<GitHubSim>, headers: HeaderMap) -> Reply {
    sim.require_app_jwt(&headers)?;
    sim.faults(None, Route::GetApp).await?;
    let api = api_base(&sim, &headers);
    let config = &sim.shared;
    Ok(json(
        StatusCode::OK,
        &shapes::app(&api, config.app_id, &config.app_slug),
    ))
}

async fn get_repo_installation(
    State(sim): State<GitHubSim>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Reply {
    sim.require_app_jwt(&headers)?;
    let installation_id = {
        let state = sim.shared.state.lock();
        state
            .store
            .repo_by_name(&format!("{owner}/{repo}"))
            .map(|r| r.installation_id)
    };
    sim.faults(installation_id, Route::GetRepoInstallation)
        .await?;
    let api = api_base(&sim, &headers);
    let state = sim.shared.state.lock();
    let installation = installation_id
        .and_then(|id| state.store.installation(id))
        .ok_or_else(|| not_found(DOCS_REPO_INSTALLATION))?;
    let config = &sim.shared;
    Ok(json(
        StatusCode::OK,
        &shapes::installation(&api, config.app_id, &config.app_slug, installation),
    ))
}

async fn list_comments(
    State(sim): State<GitHubSim>,
    Path((owner, repo, issue_number)): Path<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    let installation = sim.require_installation_token(&headers)?;
    let cycle = sim
        .faults(Some(installation), Route::ListIssueComments)
        .await?;
    let repo_id = sim.repo_in_installation(installation, &owner, &repo, DOCS_LIST_COMMENTS)?;
    let number = parse_number(&issue_number, DOCS_LIST_COMMENTS)?;
    comments_page(&sim, &headers, repo_id, number, query.as_deref(), cycle)
}

async fn list_comments_by_repository_id(
    State(sim): State<GitHubSim>,
    Path((repository_id, issue_number)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    let installation = sim.require_installation_token(&headers)?;
    let cycle = sim
        .faults(Some(installation), Route::ListIssueComments)
        .await?;
    let repo_id = repository_id
        .parse::<i64>()
        .ok()
        .filter(|id| {
            let state = sim.shared.state.lock();
            state
                .store
                .repo(*id)
                .is_some_and(|r| r.installation_id == installation)
        })
        .ok_or_else(|| not_found(DOCS_LIST_COMMENTS))?;
    let number = parse_number(&issue_number, DOCS_LIST_COMMENTS)?;
    comments_page(&sim, &headers, repo_id, number, query.as_deref(), cycle)
}

fn comments_page(
    sim: &GitHubSim,
    headers: &HeaderMap,
    repo_id: i64,
    number: u64,
    query: Option<&str>,
    cycle: LinkCycle,
) -> Reply {
    let api = api_base(sim, headers);
    let request = page_request(query);
    let mut state = sim.shared.state.lock();
    state
        .store
        .touch_pull(repo_id, number, Utc::now())
        .ok_or_else(|| not_found(DOCS_LIST_COMMENTS))?;
    let repo = state
        .store
        .repo(repo_id)
        .ok_or_else(|| not_found(DOCS_LIST_COMMENTS))?;
    let all = state.store.issue_comments(repo_id, number);
    let items: Vec<Value> = all[request.range(all.len())]
        .iter()
        .map(|c| shapes::comment(&api, repo, c))
        .collect();
    // GitHub links pages through the numeric repository id.
    let base = format!("{api}/repositories/{repo_id}/issues/{number}/comments");
    let link = if cycle.0 {
        Some(request.cyclic_link_header(&base, all.len()))
    } else {
        request.link_header(&base, all.len())
    };
    Ok(with_link(json(StatusCode::OK, &Value::Array(items)), link))
}

async fn get_issue(
    State(sim): State<GitHubSim>,
    Path((owner, repo, issue_number)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Reply {
    let installation = sim.require_installation_token(&headers)?;
    sim.faults(Some(installation), Route::GetIssue).await?;
    let repo_id = sim.repo_in_installation(installation, &owner, &repo, DOCS_GET_ISSUE)?;
    let number = parse_number(&issue_number, DOCS_GET_ISSUE)?;
    let api = api_base(&sim, &headers);
    let mut state = sim.shared.state.lock();
    let pull = state
        .store
        .touch_pull(repo_id, number, Utc::now())
        .ok_or_else(|| not_found(DOCS_GET_ISSUE))?
        .clone();
    let comments = state.store.issue_comments(repo_id, number).len();
    let repo = state
        .store
        .repo(repo_id)
        .ok_or_else(|| not_found(DOCS_GET_ISSUE))?;
    Ok(json(
        StatusCode::OK,
        &shapes::issue(&api, repo, &pull, comments),
    ))
}

async fn create_comment(
    State(sim): State<GitHubSim>,
    Path((owner, repo, issue_number)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let installation = sim.require_installation_token(&headers)?;
    sim.faults(Some(installation), Route::CreateIssueComment)
        .await?;
    let repo_id = sim.repo_in_installation(installation, &owner, &repo, DOCS_CREATE_COMMENT)?;
    let number = parse_number(&issue_number, DOCS_CREATE_COMMENT)?;
    sim.require_write(repo_id, DOCS_CREATE_COMMENT)?;
    let request = parse_json(&body, DOCS_CREATE_COMMENT)?;
    let text = comment_body(&request, DOCS_CREATE_COMMENT)?;

    let api = api_base(&sim, &headers);
    let now = Utc::now();
    let mut state = sim.shared.state.lock();
    state
        .store
        .touch_pull(repo_id, number, now)
        .ok_or_else(|| not_found(DOCS_CREATE_COMMENT))?;
    let author = format!("{}[bot]", sim.shared.app_slug);
    let id = state
        .store
        .add_comment(repo_id, number, &author, true, text, now)
        .id;
    state.record_write(GitHubWrite::CommentCreated {
        repo: format!("{owner}/{repo}"),
        number,
        comment_id: id,
    });
    let repo = state
        .store
        .repo(repo_id)
        .ok_or_else(|| not_found(DOCS_CREATE_COMMENT))?;
    let comment = state
        .store
        .comment_in(repo_id, id)
        .ok_or_else(|| not_found(DOCS_CREATE_COMMENT))?;
    let body = shapes::comment(&api, repo, comment);
    let mut response = json(StatusCode::CREATED, &body);
    if let Some(location) = body["url"]
        .as_str()
        .and_then(|u| HeaderValue::from_str(u).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn update_comment(
    State(sim): State<GitHubSim>,
    Path((owner, repo, comment_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let installation = sim.require_installation_token(&headers)?;
    sim.faults(Some(installation), Route::UpdateIssueComment)
        .await?;
    let repo_id = sim.repo_in_installation(installation, &owner, &repo, DOCS_UPDATE_COMMENT)?;
    let comment_id = parse_number(&comment_id, DOCS_UPDATE_COMMENT)?;
    sim.require_write(repo_id, DOCS_UPDATE_COMMENT)?;
    let request = parse_json(&body, DOCS_UPDATE_COMMENT)?;
    let text = comment_body(&request, DOCS_UPDATE_COMMENT)?;

    let api = api_base(&sim, &headers);
    let mut state = sim.shared.state.lock();
    let number = state
        .store
        .update_comment(repo_id, comment_id, text, Utc::now())
        .ok_or_else(|| not_found(DOCS_UPDATE_COMMENT))?
        .issue_number;
    state.record_write(GitHubWrite::CommentUpdated {
        repo: format!("{owner}/{repo}"),
        number,
        comment_id,
    });
    let repo = state
        .store
        .repo(repo_id)
        .ok_or_else(|| not_found(DOCS_UPDATE_COMMENT))?;
    let comment = state
        .store
        .comment_in(repo_id, comment_id)
        .ok_or_else(|| not_found(DOCS_UPDATE_COMMENT))?;
    Ok(json(StatusCode::OK, &shapes::comment(&api, repo, comment)))
}

async fn delete_comment(
    State(sim): State<GitHubSim>,
    Path((owner, repo, comment_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Reply {
    let installation = sim.require_installation_token(&headers)?;
    sim.faults(Some(installation), Route::DeleteIssueComment)
        .await?;
    let repo_id = sim.repo_in_installation(installation, &owner, &repo, DOCS_DELETE_COMMENT)?;
    let comment_id = parse_number(&comment_id, DOCS_DELETE_COMMENT)?;
    sim.require_write(repo_id, DOCS_DELETE_COMMENT)?;
    let mut state = sim.shared.state.lock();
    let number = state
        .store
        .delete_comment(repo_id, comment_id)
        .ok_or_else(|| not_found(DOCS_DELETE_COMMENT))?;
    state.record_write(GitHubWrite::CommentDeleted {
        repo: format!("{owner}/{repo}"),
        number,
        comment_id,
    });
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn update_pull_request(
    State(sim): State<GitHubSim>,
    Path((owner, repo, pull_number)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let installation = sim.require_installation_token(&headers)?;
    sim.faults(Some(installation), Route::UpdatePullRequest)
        .await?;
    let repo_id = sim.repo_in_installation(installation, &owner, &repo, DOCS_UPDATE_PULL)?;
    let number = parse_number(&pull_number, DOCS_UPDATE_PULL)?;
    sim.require_write(repo_id, DOCS_UPDATE_PULL)?;
    let request = parse_json(&body, DOCS_UPDATE_PULL)?;
    let wanted = match request.get("state") {
        None => None,
        Some(v) if v == "open" => Some(PullState::Open),
        Some(v) if v == "closed" => Some(PullState::Closed),
        Some(_) => {
            return Err(json(
                StatusCode::UNPROCESSABLE_ENTITY,
                &shapes::validation_failed(
                    "PullRequest",
                    "state",
                    "invalid",
                    None,
                    DOCS_UPDATE_PULL,
                ),
            )
            .into());
        }
    };

    let api = api_base(&sim, &headers);
    let now = Utc::now();
    let mut state = sim.shared.state.lock();
    let pull = state
        .store
        .touch_pull(repo_id, number, now)
        .ok_or_else(|| not_found(DOCS_UPDATE_PULL))?;
    let closing = wanted == Some(PullState::Closed) && pull.state == PullState::Open;
    match wanted {
        Some(PullState::Closed) if pull.state == PullState::Open => {
            pull.state = PullState::Closed;
            pull.closed_at = Some(now);
            pull.updated_at = now;
        }
        Some(PullState::Open) if pull.state == PullState::Closed => {
            pull.state = PullState::Open;
            pull.closed_at = None;
            pull.updated_at = now;
        }
        _ => {}
    }
    let pull = pull.clone();
    if closing {
        state.record_write(GitHubWrite::PullRequestClosed {
            repo: format!("{owner}/{repo}"),
            number,
        });
    }
    let repo = state
        .store
        .repo(repo_id)
        .ok_or_else(|| not_found(DOCS_UPDATE_PULL))?;
    Ok(json(
        StatusCode::OK,
        &shapes::pull_request(&api, repo, &pull),
    ))
}

async fn list_installation_repositories(
    State(sim): State<GitHubSim>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Reply {
    let installation = sim.require_installation_token(&headers)?;
    sim.faults(Some(installation), Route::ListInstallationRepositories)
        .await?;
    let api = api_base(&sim, &headers);
    let request = page_request(query.as_deref());
    let state = sim.shared.state.lock();
    let owner = state.store.installation(installation).ok_or_else(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "Bad credentials",
            DOCS_INSTALLATION_REPOS,
        )
    })?;
    let repos = state.store.installation_repos(installation);
    let items: Vec<Value> = repos[request.range(repos.len())]
        .iter()
        .map(|r| shapes::repository(&api, owner, r))
        .collect();
    let body = serde_json::json!({
        "total_count": repos.len(),
        "repository_selection": "selected",
        "repositories": items,
    });
    let link = request.link_header(&format!("{api}/installation/repositories"), repos.len());
    Ok(with_link(json(StatusCode::OK, &body), link))
}
