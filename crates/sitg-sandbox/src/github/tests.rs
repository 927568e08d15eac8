//! The GitHub simulator over real sockets, with JWTs signed here by `jsonwebtoken` from a
//! freshly generated App key.

use std::sync::OnceLock;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{Value, json};

use super::*;
use crate::Served;
use crate::keys::{AppKeyPair, generate_app_key, tests::shared_key};

const APP_ID: u64 = 4242;
const INSTALLATION: i64 = 77;
const OTHER_INSTALLATION: i64 = 88;

fn other_key() -> &'static AppKeyPair {
    static KEY: OnceLock<AppKeyPair> = OnceLock::new();
    KEY.get_or_init(|| generate_app_key().unwrap())
}

fn jwt_with(key: &AppKeyPair, claims: &Value) -> String {
    let key = EncodingKey::from_rsa_pem(key.private_pem.expose().as_bytes()).unwrap();
    encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
}

fn good_jwt() -> String {
    let now = Utc::now().timestamp();
    jwt_with(
        shared_key(),
        &json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID}),
    )
}

fn default_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "accept",
        HeaderValue::from_static("application/vnd.github+json"),
    );
    headers.insert(
        "x-github-api-version",
        HeaderValue::from_static("2022-11-28"),
    );
    headers.insert("user-agent", HeaderValue::from_static("sitg-bot-tests"));
    headers
}

struct Harness {
    sim: GitHubSim,
    served: Served,
    http: reqwest::Client,
}

impl Harness {
    async fn start(config: GitHubSimConfig) -> Self {
        crate::tls::install_crypto_provider();
        let sim = GitHubSim::new(config).unwrap();
        sim.add_installation(
            INSTALLATION,
            "org",
            "Organization",
            [(999, "org/repo"), (1000, "org/other")],
        )
        .unwrap();
        sim.add_installation(
            OTHER_INSTALLATION,
            "someone",
            "User",
            [(555, "someone/theirs")],
        )
        .unwrap();
        let served = Served::bind_local(sim.router()).await.unwrap();
        let http = reqwest::Client::builder()
            .default_headers(default_headers())
            .build()
            .unwrap();
        Self { sim, served, http }
    }

    async fn default() -> Self {
        Self::start(GitHubSimConfig::new(
            APP_ID,
            shared_key().public_pem.clone(),
        ))
        .await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.served.base_url())
    }

    async fn mint_with(&self, installation: i64, jwt: &str) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/app/installations/{installation}/access_tokens")))
            .bearer_auth(jwt)
            .send()
            .await
            .unwrap()
    }

    async fn token(&self, installation: i64) -> String {
        let response = self.mint_with(installation, &good_jwt()).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_owned()
    }

    async fn get(&self, path_or_url: &str, token: &str) -> reqwest::Response {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_owned()
        } else {
            self.url(path_or_url)
        };
        self.http.get(url).bearer_auth(token).send().await.unwrap()
    }

    async fn send_json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> reqwest::Response {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }
}

/// `rel` → URL from a `Link` header, parsed by hand-rolled splitting only for the test's
/// assertions.
fn links(response: &reqwest::Response) -> BTreeMap<String, String> {
    let Some(value) = response.headers().get("link") else {
        return BTreeMap::new();
    };
    value
        .to_str()
        .unwrap()
        .split(", ")
        .map(|part| {
            let (url, rel) = part.split_once("; rel=").unwrap();
            (
                rel.trim_matches('"').to_owned(),
                url.trim_start_matches('<').trim_end_matches('>').to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_valid_app_jwt_mints_an_installation_token() {
    let h = Harness::default().await;
    let response = h.mint_with(INSTALLATION, &good_jwt()).await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("ghs_"));
    let expires_at: DateTime<Utc> = body["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires_at - Utc::now();
    assert!(ttl > chrono::Duration::minutes(59) && ttl <= chrono::Duration::hours(1));
    assert_eq!(body["permissions"]["pull_requests"], "write");

    // A string `iss` is fine too.
    let now = Utc::now().timestamp();
    let jwt = jwt_with(
        shared_key(),
        &json!({"iat": now - 60, "exp": now + 540, "iss": "4242"}),
    );
    assert_eq!(
        h.mint_with(INSTALLATION, &jwt).await.status(),
        StatusCode::CREATED
    );

    let stats = h.sim.stats();
    assert_eq!(stats.token_mints, 2);
    assert_eq!(stats.token_mints_by_installation[&INSTALLATION], 2);
    assert_eq!(stats.jwt_failures_total(), 0);
}

#[tokio::test]
async fn bad_app_jwts_get_401() {
    let h = Harness::default().await;
    let now = Utc::now().timestamp();
    let cases = [
        (
            jwt_with(
                other_key(),
                &json!({"iat": now - 60, "exp": now + 540, "iss": APP_ID}),
            ),
            JwtRejection::Undecodable,
        ),
        (
            jwt_with(
                shared_key(),
                &json!({"iat": now - 700, "exp": now - 100, "iss": APP_ID}),
            ),
            JwtRejection::Expired,
        ),
        (
            jwt_with(
                shared_key(),
                &json!({"iat": now, "exp": now + 3600, "iss": APP_ID}),
            ),
            JwtRejection::TooLong,
        ),
        (
            jwt_with(
                shared_key(),
                &json!({"iat": now + 120, "exp": now + 300, "iss": APP_ID}),
            ),
            JwtRejection::IssuedInFuture,
        ),
        (
            jwt_with(
                shared_key(),
                &json!({"iat": now - 60, "exp": now + 540, "iss": 1}),
            ),
            JwtRejection::WrongIssuer,
        ),
        ("not-a-jwt".to_owned(), JwtRejection::Undecodable),
    ];
    for (jwt, reason) in &cases {
        let response = h.mint_with(INSTALLATION, jwt).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{reason:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["message"], reason.message());
    }
    // An installation token is not an App JWT.
    let token = h.token(INSTALLATION).await;
    assert_eq!(
        h.mint_with(INSTALLATION, &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let stats = h.sim.stats();
    assert_eq!(stats.jwt_failures_total(), 7);
    assert_eq!(stats.jwt_failures[&JwtRejection::Undecodable], 3);
    assert_eq!(stats.token_mints, 1);
}

#[tokio::test]
async fn unknown_installations_are_404_and_repositories_resolve_theirs() {
    let h = Harness::default().await;
    let response = h.mint_with(31337, &good_jwt()).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Not Found");

    let response = h
        .http
        .get(h.url("/repos/ORG/Repo/installation"))
        .bearer_auth(good_jwt())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], INSTALLATION);
    assert_eq!(body["account"]["login"], "org");
    assert_eq!(body["app_id"], APP_ID);

    let response = h
        .http
        .get(h.url("/repos/org/missing/installation"))
        .bearer_auth(good_jwt())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn comments_paginate_with_link_headers_like_github() {
    let h = Harness::default().await;
    let marker = "<!-- sitg:gate:abc -->";
    h.sim
        .seed_comments("org/repo", 7, 250, |i| {
            if i == 230 {
                format!("gate\n\n{marker}")
            } else {
                format!("comment {i}")
            }
        })
        .unwrap();
    let token = h.token(INSTALLATION).await;

    let first = h
        .get("/repos/org/repo/issues/7/comments?per_page=100", &token)
        .await;
    assert_eq!(first.status(), StatusCode::OK);
    let rels = links(&first);
    let base = format!("{}/repositories/999/issues/7/comments", h.served.base_url());
    assert_eq!(rels["next"], format!("{base}?per_page=100&page=2"));
    assert_eq!(rels["last"], format!("{base}?per_page=100&page=3"));
    assert!(!rels.contains_key("prev"));

    // Follow `next` to the end, as a client must.
    let mut bodies = Vec::new();
    let mut pages = 0;
    let mut response = first;
    loop {
        pages += 1;
        let next = links(&response).get("next").cloned();
        let page: Vec<Value> = response.json().await.unwrap();
        bodies.extend(page.iter().map(|c| c["body"].as_str().unwrap().to_owned()));
        match next {
            Some(url) => response = h.get(&url, &token).await,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(bodies.len(), 250);
    assert_eq!(bodies[0], "comment 0");
    let found = bodies.iter().position(|b| b.contains(marker));
    assert_eq!(found, Some(230), "marker sits on page 3");

    // Defaults: 30 per page, at most 100.
    let page: Vec<Value> = h
        .get("/repos/org/repo/issues/7/comments", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.len(), 30);
    let page: Vec<Value> = h
        .get("/repos/org/repo/issues/7/comments?per_page=1000", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page.len(), 100);
    let first: &Value = &page[0];
    for field in ["id", "body", "created_at", "updated_at", "user", "html_url"] {
        assert!(!first[field].is_null(), "{field}");
    }
}

#[tokio::test]
async fn comments_are_created_updated_and_deleted() {
    let h = Harness::default().await;
    let token = h.token(INSTALLATION).await;
    let response = h
        .send_json(
            reqwest::Method::POST,
            "/repos/org/repo/issues/3/comments",
            &token,
            &json!({"body": "hello"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    assert!(response.headers().contains_key("location"));
    let created: Value = response.json().await.unwrap();
    let id = created["id"].as_u64().unwrap();
    assert_eq!(created["user"]["login"], "sitg-bot[bot]");
    assert_eq!(created["user"]["type"], "Bot");

    let response = h
        .send_json(
            reqwest::Method::PATCH,
            &format!("/repos/org/repo/issues/comments/{id}"),
            &token,
            &json!({"body": "updated"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(h.sim.comments("org/repo", 3)[0].body, "updated");

    let response = h
        .http
        .delete(h.url(&format!("/repos/org/repo/issues/comments/{id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert!(h.sim.comments("org/repo", 3).is_empty());
    let repo = "org/repo".to_owned();
    assert_eq!(
        h.sim.writes(),
        [
            GitHubWrite::CommentCreated {
                repo: repo.clone(),
                number: 3,
                comment_id: id
            },
            GitHubWrite::CommentUpdated {
                repo: repo.clone(),
                number: 3,
                comment_id: id
            },
            GitHubWrite::CommentDeleted {
                repo,
                number: 3,
                comment_id: id
            },
        ]
    );
    // A comment of another repository is not reachable through this one.
    let other = h
        .sim
        .seed_comments("org/other", 1, 1, |_| "x".into())
        .unwrap()[0];
    let response = h
        .send_json(
            reqwest::Method::PATCH,
            &format!("/repos/org/repo/issues/comments/{other}"),
            &token,
            &json!({"body": "y"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn oversized_comment_bodies_get_githubs_422() {
    let h = Harness::default().await;
    let token = h.token(INSTALLATION).await;
    let too_long = "x".repeat(MAX_COMMENT_CHARS + 1);
    let response = h
        .send_json(
            reqwest::Method::POST,
            "/repos/org/repo/issues/3/comments",
            &token,
            &json!({"body": too_long}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Validation Failed");
    assert_eq!(body["errors"][0]["field"], "body");
    assert_eq!(body["errors"][0]["resource"], "IssueComment");

    let fits = "x".repeat(MAX_COMMENT_CHARS);
    let response = h
        .send_json(
            reqwest::Method::POST,
            "/repos/org/repo/issues/3/comments",
            &token,
            &json!({"body": fits}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::CREATED);
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_u64()
        .unwrap();
    let response = h
        .send_json(
            reqwest::Method::PATCH,
            &format!("/repos/org/repo/issues/comments/{id}"),
            &token,
            &json!({"body": too_long}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn pull_requests_close_and_closing_twice_is_fine() {
    let h = Harness::default().await;
    let token = h.token(INSTALLATION).await;
    for _ in 0..2 {
        let response = h
            .send_json(
                reqwest::Method::PATCH,
                "/repos/org/repo/pulls/42",
                &token,
                &json!({"state": "closed"}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["state"], "closed");
        assert_eq!(body["number"], 42);
    }
    assert_eq!(
        h.sim.pull_request_state("org/repo", 42),
        Some(PullState::Closed)
    );
    // Only the first request changed anything.
    assert_eq!(
        h.sim.writes(),
        [GitHubWrite::PullRequestClosed {
            repo: "org/repo".into(),
            number: 42
        }]
    );
}

#[tokio::test]
async fn strict_mode_knows_only_added_pull_requests() {
    let mut config = GitHubSimConfig::new(APP_ID, shared_key().public_pem.clone());
    config.auto_create_pull_requests = false;
    let h = Harness::start(config).await;
    let token = h.token(INSTALLATION).await;
    let response = h.get("/repos/org/repo/issues/5/comments", &token).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    h.sim.add_pull_request("org/repo", 5).unwrap();
    let response = h.get("/repos/org/repo/issues/5/comments", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn tokens_are_scoped_to_their_installation() {
    let h = Harness::default().await;
    let token = h.token(OTHER_INSTALLATION).await;
    let response = h.get("/repos/org/repo/issues/1/comments", &token).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let response = h
        .get("/repos/org/repo/issues/1/comments", "ghs_forged")
        .await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");

    let token = h.token(INSTALLATION).await;
    h.sim.revoke_tokens();
    let response = h.get("/repos/org/repo/issues/1/comments", &token).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(h.sim.stats().bad_credentials, 2);
}

#[tokio::test]
async fn missing_write_permission_is_403_for_writes_only() {
    let h = Harness::default().await;
    h.sim.set_permission_denied("org/repo", true).unwrap();
    let token = h.token(INSTALLATION).await;
    let response = h
        .send_json(
            reqwest::Method::POST,
            "/repos/org/repo/issues/1/comments",
            &token,
            &json!({"body": "x"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Resource not accessible by integration");
    let response = h.get("/repos/org/repo/issues/1/comments", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn installation_repositories_are_paginated() {
    let h = Harness::default().await;
    let repos: Vec<(i64, String)> = (0..35)
        .map(|i| (5000 + i, format!("big/repo-{i:02}")))
        .collect();
    h.sim
        .add_installation(99, "big", "Enterprise", repos)
        .unwrap();
    let token = h.token(99).await;
    let first = h.get("/installation/repositories", &token).await;
    assert_eq!(first.status(), StatusCode::OK);
    let next = links(&first)["next"].clone();
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["total_count"], 35);
    assert_eq!(body["repositories"].as_array().unwrap().len(), 30);
    assert_eq!(body["repositories"][0]["full_name"], "big/repo-00");
    assert_eq!(body["repositories"][0]["owner"]["type"], "Enterprise");
    let second: Value = h.get(&next, &token).await.json().await.unwrap();
    assert_eq!(second["repositories"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn header_rules_of_the_contract_are_checked() {
    let h = Harness::default().await;
    let token = h.token(INSTALLATION).await;
    assert_eq!(h.sim.stats().header_violations, 0);

    let bare = reqwest::Client::new();
    let response = bare
        .get(h.url("/repos/org/repo/issues/1/comments"))
        .header("accept", "application/vnd.github+json")
        .header("x-github-api-version", "2022-11-28")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(response.text().await.unwrap().contains("User-Agent"));

    let response = bare
        .get(h.url("/repos/org/repo/issues/1/comments"))
        .header("user-agent", "x")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK, "served, but recorded");

    let response = bare
        .get(h.url("/repos/org/repo/issues/1/comments"))
        .header("user-agent", "x")
        .header("x-github-api-version", "1999-01-01")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let stats = h.sim.stats();
    // 1 (user-agent) + 2 (accept, version) + 2 (accept, version)
    assert_eq!(stats.header_violations, 5);
    assert_eq!(stats.header_violation_samples[0].header, "user-agent");
    assert_eq!(
        stats.header_violation_samples[0].route,
        Route::ListIssueComments
    );
}

#[tokio::test]
async fn server_errors_are_injected_for_the_next_requests() {
    let h = Harness::default().await;
    let token = h.token(INSTALLATION).await;
    h.sim.inject(FaultRule::new(Fault::Status(500)).next(2));
    h.sim
        .inject(FaultRule::new(Fault::Status(502)).installation(OTHER_INSTALLATION));
    for _ in 0..2 {
        let response = h.get("/repos/org/repo/issues/1/comments", &token).await;
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
    let response = h.get("/repos/org/repo/issues/1/comments", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    // The installation-scoped rule hits only its installation, mints included.
    let response = h.mint_with(OTHER_INSTALLATION, &good_jwt()).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let stats = h.sim.stats();
    assert_eq!(stats.faults_served, 3);
    assert_eq!(stats.responses_with(Route::ListIssueComments, 500), 2);
}

#[tokio::test]
async fn rate_limits_carry_githubs_headers() {
    let h = Harness::default().await;
    let token = h.token(INSTALLATION).await;
    h.sim.inject(
        FaultRule::new(Fault::SecondaryRateLimit {
            retry_after: Some(30),
        })
        .route(Route::CreateIssueComment)
        .next(1),
    );
    h.sim.inject(
        FaultRule::new(Fault::SecondaryRateLimit { retry_after: None })
            .route(Route::CreateIssueComment)
            .next(1),
    );
    h.sim.inject(
        FaultRule::new(Fault::PrimaryRateLimit {
            status: 429,
            reset_after: Duration::from_secs(120),
        })
        .route(Route::ListIssueComments)
        .next(1),
    );
    let comment = json!({"body": "x"});
    let post = || {
        h.send_json(
            reqwest::Method::POST,
            "/repos/org/repo/issues/1/comments",
            &token,
            &comment,
        )
    };
    let response = post().await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(response.headers()["retry-after"], "30");
    let body: Value = response.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("secondary rate limit")
    );

    let response = post().await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(!response.headers().contains_key("retry-after"));
    assert_ne!(response.headers()["x-ratelimit-remaining"], "0");

    let response = h.get("/repos/org/repo/issues/1/comments", &token).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["x-ratelimit-remaining"], "0");
    let reset: i64 = response.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let ahead = reset - Utc::now().timestamp();
    assert!((100..=120).contains(&ahead), "{ahead}");

    assert_eq!(post().await.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn mint_404_with_the_repository_resolving_to_another_installation() {
    let h = Harness::default().await;
    // The action names a stale installation; GitHub's mint answers 404 for it ...
    h.sim.inject(
        FaultRule::new(Fault::Status(404))
            .installation(INSTALLATION)
            .route(Route::CreateInstallationToken),
    );
    assert_eq!(
        h.mint_with(INSTALLATION, &good_jwt()).await.status(),
        StatusCode::NOT_FOUND
    );
    // ... while the repository now lives in another installation.
    h.sim
        .add_repository(OTHER_INSTALLATION, 999, "org/repo")
        .unwrap();
    let body: Value = h
        .http
        .get(h.url("/repos/org/repo/installation"))
        .bearer_auth(good_jwt())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["id"], OTHER_INSTALLATION);
    let token = h.token(OTHER_INSTALLATION).await;
    let response = h.get("/repos/org/repo/issues/1/comments", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn latency_delays_but_serves() {
    let h = Harness::default().await;
    let token = h.token(INSTALLATION).await;
    let id = h
        .sim
        .inject(FaultRule::new(Fault::Latency(Duration::from_millis(20))));
    let response = h.get("/repos/org/repo/issues/1/comments", &token).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(h.sim.remove_fault(id));
    assert_eq!(h.sim.stats().faults_served, 0);
}

#[tokio::test]
async fn unknown_routes_are_githubs_404() {
    let h = Harness::default().await;
    let response = h.get("/nope", "x").await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["message"], "Not Found");
    assert_eq!(h.sim.stats().requests_to(Route::Unknown), 1);
}

#[tokio::test]
async fn wait_for_sees_comments_written_over_http() {
    let h = Harness::default().await;
    let token = h.token(INSTALLATION).await;
    let sim = h.sim.clone();
    let waiter = tokio::spawn(async move {
        sim.wait_for(Duration::from_secs(10), |s| {
            s.comments("org/repo", 9).len() == 1
        })
        .await
    });
    h.send_json(
        reqwest::Method::POST,
        "/repos/org/repo/issues/9/comments",
        &token,
        &json!({"body": "x"}),
    )
    .await;
    assert!(waiter.await.unwrap());
}

#[tokio::test]
async fn listings_order_comments_by_creation_time() {
    let h = Harness::default().await;
    let now = Utc::now();
    let newer = h.sim.add_comment("org/repo", 4, "b", "newer", now).unwrap();
    let older = h
        .sim
        .add_comment(
            "org/repo",
            4,
            "a",
            "older",
            now - chrono::Duration::minutes(5),
        )
        .unwrap();
    let token = h.token(INSTALLATION).await;
    let page: Vec<Value> = h
        .get("/repos/org/repo/issues/4/comments", &token)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<u64> = page.iter().map(|c| c["id"].as_u64().unwrap()).collect();
    assert_eq!(ids, [older, newer]);
}

#[tokio::test]
async fn get_app_names_the_slug_with_the_app_jwt_only() {
    let h = Harness::default().await;
    let response = h.get("/app", &good_jwt()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], APP_ID);
    assert_eq!(body["slug"], "sitg-bot");
    let token = h.token(INSTALLATION).await;
    assert_eq!(
        h.get("/app", &token).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(h.sim.stats().requests_to(Route::GetApp), 2);
}

#[tokio::test]
async fn echo_faults_quote_the_request_and_record_the_credential() {
    let h = Harness::default().await;
    let token = h.token(INSTALLATION).await;
    h.sim.inject(
        FaultRule::new(Fault::EchoRequest {
            status: 403,
            json: false,
        })
        .route(Route::ListIssueComments)
        .next(1),
    );
    h.sim.inject(
        FaultRule::new(Fault::EchoRequest {
            status: 422,
            json: true,
        })
        .route(Route::ListIssueComments)
        .next(1),
    );
    let page = h.get("/repos/org/repo/issues/1/comments", &token).await;
    assert_eq!(page.status(), StatusCode::FORBIDDEN);
    let text = page.text().await.unwrap();
    assert!(text.contains(&format!("Bearer {token}")), "{text}");
    let json = h.get("/repos/org/repo/issues/1/comments", &token).await;
    assert_eq!(json.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: Value = json.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains(&token), "{body}");
    assert_eq!(
        h.sim.echoed_credentials(),
        vec![format!("Bearer {token}"), format!("Bearer {token}")]
    );
    // Served normally once the counted faults are spent.
    assert_eq!(
        h.get("/repos/org/repo/issues/1/comments", &token)
            .await
            .status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_issue_counts_its_comments_and_a_link_cycle_leads_back_to_page_one() {
    let h = Harness::default().await;
    h.sim
        .seed_comments("org/repo", 4, 150, |i| format!("c{i}"))
        .unwrap();
    let token = h.token(INSTALLATION).await;
    let issue: Value = h
        .get("/repos/org/repo/issues/4", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(issue["comments"], 150);
    assert_eq!(issue["number"], 4);
    h.sim
        .inject(FaultRule::new(Fault::LinkCycle).route(Route::ListIssueComments));
    let last = h
        .get(
            "/repos/org/repo/issues/4/comments?per_page=100&page=2",
            &token,
        )
        .await;
    assert_eq!(last.status(), StatusCode::OK);
    assert!(
        links(&last)["next"].ends_with("/repositories/999/issues/4/comments?per_page=100&page=1"),
        "{:?}",
        links(&last)
    );
    assert_eq!(h.sim.stats().requests_to(Route::GetIssue), 1);
}

#[tokio::test]
async fn a_strict_proxy_wants_the_length_of_a_bodyless_post() {
    let h = Harness::default().await;
    h.sim.set_require_content_length(true);
    assert_eq!(
        h.mint_with(INSTALLATION, &good_jwt()).await.status(),
        StatusCode::LENGTH_REQUIRED
    );
    let stated = h
        .http
        .post(h.url(&format!("/app/installations/{INSTALLATION}/access_tokens")))
        .bearer_auth(good_jwt())
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(stated.status(), StatusCode::CREATED);
    assert_eq!(h.sim.stats().length_required, 1);
}
