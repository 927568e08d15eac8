//! [`GitHubClient`] against a local HTTP mock of the GitHub REST API (wiremock on
//! 127.0.0.1). Each test states the requests GitHub must see; the full simulator of
//! `crates/sitg-sandbox/` exercises the client end to end elsewhere.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use url::Url;
use wiremock::matchers::{bearer_token, body_json, method, path, query_param};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use super::jwt::{AppJwtClaims, test_keys::test_key};
use super::*;
use crate::contract::RepoFullName;

const APP_ID: u64 = 4242;

fn config(base: &str) -> GitHubConfig {
    GitHubConfig {
        api_base_url: Url::parse(base).unwrap(),
        app_id: APP_ID,
        private_key_pem: SecretString::new(test_key().pkcs8_pem.clone()),
        user_agent: "sitg-bot-test/1".to_owned(),
        request_timeout: Duration::from_secs(10),
    }
}

fn client(server: &MockServer) -> GitHubClient {
    GitHubClient::new(config(&server.uri()), &prometheus::Registry::new()).unwrap()
}

fn repo() -> RepoFullName {
    RepoFullName::parse("octo-org/hello").unwrap()
}

fn token_body(token: &str) -> Value {
    let expires_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    json!({ "token": token, "expires_at": expires_at, "permissions": {} })
}

/// Mints `token` for `installation_id`, expecting exactly `times` mints.
async fn mount_mint(server: &MockServer, installation_id: u64, token: &str, times: u64) {
    Mock::given(method("POST"))
        .and(path(format!(
            "/app/installations/{installation_id}/access_tokens"
        )))
        .respond_with(ResponseTemplate::new(201).set_body_json(token_body(token)))
        .expect(times)
        .named(format!("mint {installation_id}"))
        .mount(server)
        .await;
}

/// Answers the mint with `tok-1`, `tok-2`, … in turn.
struct SequentialTokens(AtomicUsize);

impl Respond for SequentialTokens {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
        ResponseTemplate::new(201).set_body_json(token_body(&format!("tok-{n}")))
    }
}

async fn requests_to(server: &MockServer, verb: &str, p: &str) -> usize {
    server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == p)
        .count()
}

const COMMENTS: &str = "/repos/octo-org/hello/issues/7/comments";
const MARKER: &str = "<!-- sitg:gate:1 -->";

fn marked_body(text: &str) -> String {
    format!("{text}\n\n{MARKER}")
}

#[tokio::test]
async fn requests_carry_githubs_headers_and_a_verifiable_jwt() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .and(bearer_token("tok"))
        .and(body_json(json!({ "state": "closed" })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "closed" })))
        .expect(1)
        .mount(&server)
        .await;

    client(&server)
        .close_pull_request(1, &repo(), 7)
        .await
        .unwrap();

    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    for r in &requests {
        assert_eq!(r.headers["accept"], "application/vnd.github+json");
        assert_eq!(r.headers["x-github-api-version"], "2022-11-28");
        assert_eq!(r.headers["user-agent"], "sitg-bot-test/1");
    }
    let auth = requests[0].headers["authorization"].to_str().unwrap();
    let jwt = auth.strip_prefix("Bearer ").unwrap();
    let key = DecodingKey::from_rsa_pem(test_key().public_pem.as_bytes()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[APP_ID.to_string()]);
    let claims = jsonwebtoken::decode::<AppJwtClaims>(jwt, &key, &validation)
        .unwrap()
        .claims;
    assert!(claims.exp - claims.iat <= 600);
}

#[tokio::test]
async fn ghes_base_path_is_kept() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/api/v3/app/installations/1/access_tokens"))
        .respond_with(ResponseTemplate::new(201).set_body_json(token_body("tok")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/api/v3/repos/octo-org/hello/pulls/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "closed" })))
        .expect(1)
        .mount(&server)
        .await;
    let base = format!("{}/api/v3", server.uri());
    let client = GitHubClient::new(config(&base), &prometheus::Registry::new()).unwrap();
    client.close_pull_request(1, &repo(), 7).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_upserts_of_one_installation_share_one_mint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/1/access_tokens"))
        .respond_with(
            ResponseTemplate::new(201)
                .set_body_json(token_body("tok"))
                .set_delay(Duration::from_millis(200)),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(wiremock::matchers::path_regex(
            r"^/repos/octo-org/hello/issues/\d+/comments$",
        ))
        .and(bearer_token("tok"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .expect(50)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::path_regex(
            r"^/repos/octo-org/hello/issues/\d+/comments$",
        ))
        .and(bearer_token("tok"))
        .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": 99 })))
        .expect(50)
        .mount(&server)
        .await;

    let client = client(&server);
    let tasks: Vec<_> = (1..=25)
        .map(|pr| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .upsert_marked_comment(1, &repo(), pr, &marked_body("gate"), MARKER)
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap(),
            CommentUpsert::Created { comment_id: 99 }
        );
    }
    // 25 actions: one mint, one list and one create each.
    assert_eq!(server.received_requests().await.unwrap().len(), 51);

    // The cached token serves the next claim too.
    for pr in 1..=25 {
        client
            .upsert_marked_comment(1, &repo(), pr, &marked_body("gate"), MARKER)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn unauthorized_evicts_the_token_and_retries_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/1/access_tokens"))
        .respond_with(SequentialTokens(AtomicUsize::new(0)))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .and(bearer_token("tok-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "closed" })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({ "message": "Bad credentials" })),
        )
        .with_priority(10)
        .expect(1)
        .mount(&server)
        .await;

    client(&server)
        .close_pull_request(1, &repo(), 7)
        .await
        .unwrap();
}

#[tokio::test]
async fn persistent_unauthorized_is_retryable_after_one_remint() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/1/access_tokens"))
        .respond_with(SequentialTokens(AtomicUsize::new(0)))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({ "message": "Bad credentials" })),
        )
        .expect(2)
        .mount(&server)
        .await;

    let err = client(&server)
        .close_pull_request(1, &repo(), 7)
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::Unauthorized), "{err:?}");
    assert!(err.is_retryable());
    assert_eq!(err.failure_code().as_str(), "EXECUTION_ERROR");
}

#[tokio::test]
async fn stale_installation_falls_back_to_the_repositorys_installation() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/1/access_tokens"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo-org/hello/installation"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "id": 2, "app_id": APP_ID })),
        )
        .expect(1)
        .mount(&server)
        .await;
    mount_mint(&server, 2, "tok-2", 1).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .and(bearer_token("tok-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "closed" })))
        .expect(2)
        .mount(&server)
        .await;

    let client = client(&server);
    client.close_pull_request(1, &repo(), 7).await.unwrap();
    // The mapping and the token are remembered: no second mint or lookup.
    client.close_pull_request(1, &repo(), 7).await.unwrap();
    // The lookup was made with the App JWT, not an installation token.
    let lookup = server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .find(|r| r.url.path() == "/repos/octo-org/hello/installation")
        .unwrap();
    let auth = lookup.headers["authorization"].to_str().unwrap();
    assert_eq!(auth.matches('.').count(), 2, "a JWT has three parts");
}

#[tokio::test]
async fn unknown_installation_is_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/app/installations/1/access_tokens"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })))
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo-org/hello/installation"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    let err = client
        .upsert_marked_comment(1, &repo(), 7, &marked_body("x"), MARKER)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GitHubError::InstallationNotFound { installation_id: 1 }
        ),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.failure_code().as_str(), "INSTALLATION_NOT_FOUND");

    // Without a repository there is nothing to resolve through: no lookup.
    let err = client.list_installation_repositories(1).await.unwrap_err();
    assert!(
        matches!(
            err,
            GitHubError::InstallationNotFound { installation_id: 1 }
        ),
        "{err:?}"
    );
}

/// 250 comments, 100 a page, linked with `rel="next"`; `marked` ids carry the marker
/// with the given text.
struct PagedComments {
    /// wiremock reports requests as `http://localhost/…`, so links are built on this.
    base: String,
    marked: Vec<(u64, String)>,
}

impl PagedComments {
    fn page_url(&self, req: &Request, page: u64) -> String {
        format!("{}{}?per_page=100&page={page}", self.base, req.url.path())
    }
}

impl Respond for PagedComments {
    fn respond(&self, req: &Request) -> ResponseTemplate {
        let page: u64 = req
            .url
            .query_pairs()
            .find(|(k, _)| k == "page")
            .map_or(1, |(_, v)| v.parse().unwrap());
        assert_eq!(
            req.url
                .query_pairs()
                .find(|(k, _)| k == "per_page")
                .unwrap()
                .1,
            "100"
        );
        let first = (page - 1) * 100 + 1;
        let last = (page * 100).min(250);
        let comments: Vec<Value> = (first..=last)
            .map(|id| {
                match self.marked.iter().find(|(m, _)| *m == id) {
                    Some((_, body)) => json!({
                        "id": id, "body": body,
                        "user": { "login": "sitg-bot[bot]", "type": "Bot" },
                        "performed_via_github_app": { "id": APP_ID },
                    }),
                    // People may quote the marker; their comments are never ours.
                    None if id == 5 => json!({
                        "id": id, "body": MARKER, "user": { "login": "someone", "type": "User" }
                    }),
                    None => json!({ "id": id, "body": format!("comment {id}"), "user": { "login": "someone", "type": "User" } }),
                }
            })
            .collect();
        let mut template = ResponseTemplate::new(200).set_body_json(comments);
        let mut links = Vec::new();
        if last < 250 {
            links.push(format!("<{}>; rel=\"next\"", self.page_url(req, page + 1)));
        }
        links.push(format!("<{}>; rel=\"last\"", self.page_url(req, 3)));
        template = template.insert_header("link", links.join(", "));
        template
    }
}

/// The pull request's issue with its comment count, read once a listing has a second
/// page (it bounds the pages followed).
async fn mount_issue(server: &MockServer, comments: usize) {
    Mock::given(method("GET"))
        .and(path("/repos/octo-org/hello/issues/7"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "number": 7, "comments": comments })),
        )
        .expect(1)
        .mount(server)
        .await;
}

#[tokio::test]
async fn marker_on_page_three_is_found_and_updated() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    mount_issue(&server, 250).await;
    Mock::given(method("GET"))
        .and(path(COMMENTS))
        .respond_with(PagedComments {
            base: server.uri(),
            marked: vec![(230, marked_body("old"))],
        })
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/issues/comments/230"))
        .and(body_json(json!({ "body": marked_body("new") })))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 230 })))
        .expect(1)
        .mount(&server)
        .await;

    let outcome = client(&server)
        .upsert_marked_comment(1, &repo(), 7, &marked_body("new"), MARKER)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CommentUpsert::Updated {
            comment_id: 230,
            duplicates_deleted: 0
        }
    );
    assert_eq!(requests_to(&server, "POST", COMMENTS).await, 0);
}

#[tokio::test]
async fn duplicates_are_deleted_keeping_the_oldest() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    mount_issue(&server, 250).await;
    Mock::given(method("GET"))
        .and(path(COMMENTS))
        .respond_with(PagedComments {
            base: server.uri(),
            marked: vec![
                (40, marked_body("old")),
                (150, marked_body("new")),
                (249, marked_body("new")),
            ],
        })
        .expect(3)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/issues/comments/40"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "id": 40 })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/repos/octo-org/hello/issues/comments/150"))
        .respond_with(ResponseTemplate::new(204))
        .expect(1)
        .mount(&server)
        .await;
    // Another replica got there first.
    Mock::given(method("DELETE"))
        .and(path("/repos/octo-org/hello/issues/comments/249"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })))
        .expect(1)
        .mount(&server)
        .await;

    let outcome = client(&server)
        .upsert_marked_comment(1, &repo(), 7, &marked_body("new"), MARKER)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CommentUpsert::Updated {
            comment_id: 40,
            duplicates_deleted: 1
        }
    );
}

#[tokio::test]
async fn created_then_unchanged() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    let client = client(&server);

    {
        let _list = Mock::given(method("GET"))
            .and(path(COMMENTS))
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!([{ "id": 3, "body": "hello" }])),
            )
            .expect(1)
            .mount_as_scoped(&server)
            .await;
        let _create = Mock::given(method("POST"))
            .and(path(COMMENTS))
            .and(body_json(json!({ "body": marked_body("gate") })))
            .respond_with(ResponseTemplate::new(201).set_body_json(json!({ "id": 11 })))
            .expect(1)
            .mount_as_scoped(&server)
            .await;
        let outcome = client
            .upsert_marked_comment(1, &repo(), 7, &marked_body("gate"), MARKER)
            .await
            .unwrap();
        assert_eq!(outcome, CommentUpsert::Created { comment_id: 11 });
    }

    // The bot comment names no App: its login is compared with the App's own.
    Mock::given(method("GET"))
        .and(path("/app"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({ "id": APP_ID, "slug": "sitg-bot" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(COMMENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([
            { "id": 3, "body": "hello" },
            { "id": 9, "body": marked_body("other"), "user": { "login": "other-app[bot]", "type": "Bot" } },
            { "id": 11, "body": marked_body("gate"), "user": { "login": "sitg-bot[bot]", "type": "Bot" } }
        ])))
        .expect(1)
        .mount(&server)
        .await;
    let outcome = client
        .upsert_marked_comment(1, &repo(), 7, &marked_body("gate"), MARKER)
        .await
        .unwrap();
    assert_eq!(
        outcome,
        CommentUpsert::Unchanged {
            comment_id: 11,
            duplicates_deleted: 0
        }
    );
    assert_eq!(
        requests_to(&server, "PATCH", "/repos/octo-org/hello/issues/comments/11").await,
        0
    );
}

#[tokio::test]
async fn blank_or_missing_marker_is_refused_without_a_request() {
    let server = MockServer::start().await;
    let client = client(&server);
    let err = client
        .upsert_marked_comment(1, &repo(), 7, "body", " ")
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::ValidationFailed { .. }));
    let err = client
        .upsert_marked_comment(1, &repo(), 7, "body", MARKER)
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::ValidationFailed { .. }));
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn permission_403_is_permanent_and_pauses_nothing() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "4999")
                .set_body_json(json!({ "message": "Resource not accessible by integration" })),
        )
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    let err = client.close_pull_request(1, &repo(), 7).await.unwrap_err();
    match &err {
        GitHubError::PermissionDenied { message } => {
            assert!(message.contains("Resource not accessible by integration"))
        }
        other => panic!("{other:?}"),
    }
    assert!(!err.is_retryable());
    assert_eq!(err.failure_code().as_str(), "GITHUB_PERMISSION_DENIED");
    assert_eq!(client.installation_paused_until(1), None);
}

#[tokio::test]
async fn secondary_limit_with_retry_after_pauses_only_that_installation() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok-1", 1).await;
    mount_mint(&server, 2, "tok-2", 1).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .and(bearer_token("tok-1"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("retry-after", "120")
                .set_body_json(json!({ "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again." })),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .and(bearer_token("tok-2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "closed" })))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    let before = Instant::now();
    let err = client.close_pull_request(1, &repo(), 7).await.unwrap_err();
    let GitHubError::RateLimited {
        installation_id: 1,
        retry_at,
        secondary: true,
    } = err
    else {
        panic!("{err:?}")
    };
    assert!(err.is_retryable());
    assert_eq!(err.failure_code().as_str(), "GITHUB_RATE_LIMITED");
    assert!(retry_at >= before + Duration::from_secs(120));
    assert_eq!(client.installation_paused_until(1), Some(retry_at));

    // Paused: refused at once, GitHub sees nothing more for installation 1.
    let again = client
        .upsert_marked_comment(1, &repo(), 7, &marked_body("x"), MARKER)
        .await
        .unwrap_err();
    assert!(matches!(
        again,
        GitHubError::RateLimited {
            installation_id: 1,
            ..
        }
    ));
    assert_eq!(requests_to(&server, "GET", COMMENTS).await, 0);

    // Installation 2 is not affected.
    assert_eq!(client.installation_paused_until(2), None);
    client.close_pull_request(2, &repo(), 7).await.unwrap();
}

#[tokio::test]
async fn secondary_limit_without_headers_pauses_at_least_a_minute() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    Mock::given(method("GET"))
        .and(path(COMMENTS))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "4000")
                .set_body_json(json!({ "message": "You have exceeded a secondary rate limit." })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let before = Instant::now();
    let err = client
        .upsert_marked_comment(1, &repo(), 7, &marked_body("x"), MARKER)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            GitHubError::RateLimited {
                secondary: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(client.installation_paused_until(1).unwrap() >= before + Duration::from_secs(60));
}

#[tokio::test]
async fn primary_limit_on_the_mint_pauses_until_reset() {
    let server = MockServer::start().await;
    let reset = chrono::Utc::now().timestamp() + 600;
    Mock::given(method("POST"))
        .and(path("/app/installations/1/access_tokens"))
        .respond_with(
            ResponseTemplate::new(403)
                .insert_header("x-ratelimit-remaining", "0")
                .insert_header("x-ratelimit-reset", reset.to_string().as_str())
                .set_body_json(json!({ "message": "API rate limit exceeded" })),
        )
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let err = client.list_installation_repositories(1).await.unwrap_err();
    assert!(
        matches!(
            err,
            GitHubError::RateLimited {
                installation_id: 1,
                secondary: false,
                ..
            }
        ),
        "{err:?}"
    );
    let until = client.installation_paused_until(1).unwrap();
    let wait = until.saturating_duration_since(Instant::now());
    assert!(
        wait > Duration::from_secs(500) && wait <= Duration::from_secs(601),
        "{wait:?}"
    );
    // No second mint while paused.
    assert!(client.list_installation_repositories(1).await.is_err());
}

#[tokio::test]
async fn validation_failed_is_permanent_unless_the_pull_request_is_closed() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({ "message": "Validation Failed" })),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "open" })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/8"))
        .respond_with(
            ResponseTemplate::new(422).set_body_json(json!({ "message": "Validation Failed" })),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/repos/octo-org/hello/pulls/8"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({ "state": "closed" })))
        .expect(1)
        .mount(&server)
        .await;

    let client = client(&server);
    let err = client.close_pull_request(1, &repo(), 7).await.unwrap_err();
    assert!(
        matches!(err, GitHubError::ValidationFailed { .. }),
        "{err:?}"
    );
    assert!(!err.is_retryable());
    assert_eq!(err.failure_code().as_str(), "GITHUB_VALIDATION_FAILED");
    client.close_pull_request(1, &repo(), 8).await.unwrap();
}

#[tokio::test]
async fn comment_422_is_validation_failed() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    Mock::given(method("GET"))
        .and(path(COMMENTS))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!([])))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(COMMENTS))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({
            "message": "Validation Failed",
            "errors": [{ "resource": "IssueComment", "code": "custom", "field": "body", "message": "body is too long (maximum is 65536 characters)" }]
        })))
        .mount(&server)
        .await;
    let err = client(&server)
        .upsert_marked_comment(1, &repo(), 7, &marked_body("x"), MARKER)
        .await
        .unwrap_err();
    match err {
        GitHubError::ValidationFailed { message } => {
            assert!(message.contains("too long"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_error_is_retryable() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    Mock::given(method("GET"))
        .and(path(COMMENTS))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let client = client(&server);
    let err = client
        .upsert_marked_comment(1, &repo(), 7, &marked_body("x"), MARKER)
        .await
        .unwrap_err();
    assert!(
        matches!(err, GitHubError::Server { status: 500 }),
        "{err:?}"
    );
    assert!(err.is_retryable());
    assert_eq!(err.failure_code().as_str(), "EXECUTION_ERROR");
    assert_eq!(client.installation_paused_until(1), None);
}

#[tokio::test]
async fn not_found_repository_is_permanent() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .respond_with(ResponseTemplate::new(404).set_body_json(json!({ "message": "Not Found" })))
        .mount(&server)
        .await;
    let err = client(&server)
        .close_pull_request(1, &repo(), 7)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, GitHubError::NotFound { resource } if resource == "/repos/octo-org/hello/pulls/7"),
        "{err:?}"
    );
    assert_eq!(err.failure_code().as_str(), "GITHUB_NOT_FOUND");
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn installation_repositories_follow_every_page() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    let page2 = format!(
        "{}/installation/repositories?per_page=100&page=2",
        server.uri()
    );
    Mock::given(method("GET"))
        .and(path("/installation/repositories"))
        .and(query_param("page", "2"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "total_count": 3,
            "repositories": [{ "id": 3, "full_name": "octo-org/c", "private": false }]
        })))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/installation/repositories"))
        .and(query_param("per_page", "100"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "link",
                    format!("<{page2}>; rel=\"next\", <{page2}>; rel=\"last\"").as_str(),
                )
                .set_body_json(json!({
                    "total_count": 3,
                    "repositories": [
                        { "id": 1, "full_name": "octo-org/a" },
                        { "id": 2, "full_name": "octo-org/b" }
                    ]
                })),
        )
        .with_priority(10)
        .expect(1)
        .mount(&server)
        .await;

    let repos = client(&server)
        .list_installation_repositories(1)
        .await
        .unwrap();
    let names: Vec<_> = repos.iter().map(|r| (r.id, r.full_name.as_str())).collect();
    assert_eq!(
        names,
        [(1, "octo-org/a"), (2, "octo-org/b"), (3, "octo-org/c")]
    );
}

#[tokio::test]
async fn next_link_to_another_host_is_not_followed() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    Mock::given(method("GET"))
        .and(path("/installation/repositories"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header(
                    "link",
                    "<http://elsewhere.invalid/steal?page=2>; rel=\"next\"",
                )
                .set_body_json(json!({ "total_count": 1, "repositories": [] })),
        )
        .mount(&server)
        .await;
    let err = client(&server)
        .list_installation_repositories(1)
        .await
        .unwrap_err();
    assert!(matches!(err, GitHubError::InvalidResponse(_)), "{err:?}");
}

#[tokio::test]
async fn metrics_count_requests_mints_and_rate_limits() {
    let server = MockServer::start().await;
    mount_mint(&server, 1, "tok", 1).await;
    Mock::given(method("GET"))
        .and(path(COMMENTS))
        .respond_with(ResponseTemplate::new(429).insert_header("retry-after", "30"))
        .mount(&server)
        .await;
    let registry = prometheus::Registry::new();
    let client = GitHubClient::new(config(&server.uri()), &registry).unwrap();
    let _ = client
        .upsert_marked_comment(1, &repo(), 7, &marked_body("x"), MARKER)
        .await;
    let text = prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap();
    assert!(
        text.contains("sitg_bot_github_installation_token_mints_total 1"),
        "{text}"
    );
    assert!(
        text.contains(r#"sitg_bot_github_rate_limited_total{kind="secondary"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"sitg_bot_github_requests_total{route="list_comments",status_class="4xx"} 1"#
        ),
        "{text}"
    );
    assert!(text.contains(r#"sitg_bot_github_requests_total{route="create_installation_token",status_class="2xx"} 1"#), "{text}");
    assert!(
        text.contains("sitg_bot_github_request_duration_seconds_bucket"),
        "{text}"
    );
}

#[tokio::test]
async fn transport_failure_is_retryable_and_names_no_secret() {
    // A port nothing listens on: bind, learn the port, close.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = GitHubClient::new(
        config(&format!("http://127.0.0.1:{port}")),
        &prometheus::Registry::new(),
    )
    .unwrap();
    let err = client.list_installation_repositories(1).await.unwrap_err();
    assert!(matches!(err, GitHubError::Transport(_)), "{err:?}");
    assert!(err.is_retryable());
    let text = format!("{err} {err:?}");
    assert!(
        text.contains("/app/installations/1/access_tokens"),
        "{text}"
    );
    assert!(!text.contains("Bearer") && !text.contains("eyJ"), "{text}");
}

#[tokio::test]
async fn debug_output_holds_no_key_or_token() {
    let server = MockServer::start().await;
    // The 401 makes the client mint a second token.
    mount_mint(&server, 1, "tok-secret-value", 2).await;
    Mock::given(method("PATCH"))
        .and(path("/repos/octo-org/hello/pulls/7"))
        .respond_with(ResponseTemplate::new(401))
        .mount(&server)
        .await;
    let cfg = config(&server.uri());
    let client = GitHubClient::new(cfg.clone(), &prometheus::Registry::new()).unwrap();
    let err = client.close_pull_request(1, &repo(), 7).await.unwrap_err();
    let key_line = test_key().pkcs8_pem.lines().nth(1).unwrap().to_owned();
    for text in [
        format!("{cfg:?}"),
        format!("{client:?}"),
        format!("{err:?} {err}"),
    ] {
        assert!(!text.contains(&key_line), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
        assert!(!text.contains("tok-secret-value"), "{text}");
    }
}

#[test]
fn bad_private_key_fails_construction() {
    let mut cfg = config("https://api.github.com");
    cfg.private_key_pem = SecretString::new("not a key");
    let err = GitHubClient::new(cfg, &prometheus::Registry::new()).unwrap_err();
    assert!(
        matches!(err, GitHubError::Key(KeyError::NotRsaPrivateKeyPem)),
        "{err:?}"
    );
    // Configuration is at fault, not an action: actions are kept for a fixed fleet.
    assert!(err.is_retryable());
}

#[test]
fn client_can_be_shared_across_tasks() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<GitHubClient>();
}
