//! The backend simulator over real sockets, driven by a signer written here from the
//! contract's formula (independent of `auth.rs`, whose formula is pinned to an
//! `openssl`-computed value in its own tests).

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::*;
use crate::Served;

const KEY_ID: &str = "bot-key-1";
const SECRET: &str = "correct horse battery staple";

fn sign(secret: &str, timestamp: i64, message: &str) -> String {
    let key = Sha256::digest(secret.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{timestamp}.{message}").as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn now() -> i64 {
    Utc::now().timestamp()
}

struct Harness {
    sim: BackendSim,
    served: Served,
    http: reqwest::Client,
}

impl Harness {
    async fn start(config: BackendSimConfig) -> Self {
        crate::tls::install_crypto_provider();
        let sim = BackendSim::new(config);
        let served = Served::bind_local(sim.router()).await.unwrap();
        Self {
            sim,
            served,
            http: reqwest::Client::new(),
        }
    }

    async fn default() -> Self {
        Self::start(BackendSimConfig::new(KEY_ID, SECRET)).await
    }

    /// A signed JSON POST at `timestamp`.
    async fn post_at(
        &self,
        path: &str,
        message: &str,
        body: &Value,
        timestamp: i64,
    ) -> reqwest::Response {
        self.http
            .post(format!("{}{path}", self.served.base_url()))
            .header("x-sitg-key-id", KEY_ID)
            .header("x-sitg-timestamp", timestamp.to_string())
            .header("x-sitg-signature", sign(SECRET, timestamp, message))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    async fn ingest_pr(&self, body: &Value, timestamp: i64) -> reqwest::Response {
        let delivery = body["delivery_id"].as_str().unwrap();
        self.post_at(
            "/internal/v2/github/events/pull-request",
            &format!("github-event:pull_request:{delivery}"),
            body,
            timestamp,
        )
        .await
    }

    async fn claim_at(&self, worker: &str, limit: i64, timestamp: i64) -> reqwest::Response {
        self.post_at(
            "/internal/v2/bot-actions/claim",
            &format!("bot-actions-claim:{worker}"),
            &json!({ "worker_id": worker, "limit": limit }),
            timestamp,
        )
        .await
    }

    async fn claim(&self, worker: &str, limit: i64) -> Vec<Value> {
        let response = self.claim_at(worker, limit, now()).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["actions"].as_array().unwrap().clone()
    }

    async fn report_at(
        &self,
        id: &str,
        worker: &str,
        outcome: &str,
        timestamp: i64,
    ) -> reqwest::Response {
        self.post_at(
            &format!("/internal/v2/bot-actions/{id}/result"),
            &format!("bot-action-result:{id}:{worker}:{outcome}"),
            &json!({
                "worker_id": worker, "outcome": outcome,
                "failure_code": null, "failure_message": null,
            }),
            timestamp,
        )
        .await
    }
}

fn pr_body(delivery: &str, head_sha: &str) -> Value {
    json!({
        "delivery_id": delivery,
        "event_time": "2024-05-01T12:00:00Z",
        "installation_id": 123,
        "action": "opened",
        "repository": { "id": 999, "full_name": "org/repo" },
        "pull_request": {
            "number": 42, "id": 1001,
            "html_url": "https://github.com/org/repo/pull/42",
            "is_draft": false,
            "user": { "id": 2002, "login": "contrib" },
            "head_sha": head_sha,
        }
    })
}

fn sha() -> String {
    "0123456789abcdef0123456789abcdef01234567".to_owned()
}

fn upsert(n: i64) -> NewAction {
    NewAction::upsert_comment(123, 999, "org/repo", n, "hello", "sitg:gate:x")
}

#[tokio::test]
async fn signed_pull_request_is_accepted_and_enqueues_a_gate_comment() {
    let h = Harness::default().await;
    let body = pr_body("d-1", &sha());
    let response = h.ingest_pr(&body, now()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["ingest_status"], "ACCEPTED");
    assert_eq!(reply["enqueued_actions"], 1);
    let challenge = reply["challenge_id"].as_str().unwrap();

    let events = h.sim.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].body, body);
    assert_eq!(events[0].outcome, IngestOutcome::Accepted);

    let claimed = h.claim("w1", 10).await;
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0]["action_type"], "UPSERT_PR_COMMENT");
    assert_eq!(claimed[0]["installation_id"], 123);
    assert_eq!(claimed[0]["github_repo_id"], 999);
    assert_eq!(claimed[0]["repo_full_name"], "org/repo");
    assert_eq!(claimed[0]["github_pr_number"], 42);
    assert_eq!(claimed[0]["challenge_id"], challenge);
    assert_eq!(claimed[0]["attempts"], 1);
    assert_eq!(
        claimed[0]["payload"]["comment_marker"],
        format!("sitg:gate:{challenge}")
    );
}

#[tokio::test]
async fn a_replayed_signature_is_refused_and_counted() {
    let h = Harness::default().await;
    let ts = now();
    let first = h.ingest_pr(&pr_body("d-1", &sha()), ts).await;
    assert_eq!(first.status(), StatusCode::OK);
    let replay = h.ingest_pr(&pr_body("d-1", &sha()), ts).await;
    assert_eq!(replay.status(), StatusCode::FORBIDDEN);
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"]["code"], "FORBIDDEN");
    let stats = h.sim.stats();
    assert_eq!(stats.replays_rejected, 1);
    assert_eq!(h.sim.events().len(), 1);
}

#[tokio::test]
async fn two_claims_by_one_worker_in_one_second_collide() {
    let h = Harness::default().await;
    h.sim.enqueue_action(upsert(1));
    let ts = now();
    assert_eq!(h.claim_at("w1", 5, ts).await.status(), StatusCode::OK);
    h.sim.enqueue_action(upsert(2));
    assert_eq!(
        h.claim_at("w1", 5, ts).await.status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(h.sim.pending_count(), 1);
    assert_eq!(h.sim.stats().replays_rejected, 1);
}

#[tokio::test]
async fn timestamps_outside_the_skew_window_are_forbidden() {
    let h = Harness::default().await;
    for ts in [now() - 400, now() + 400] {
        let response = h.ingest_pr(&pr_body("d-1", &sha()), ts).await;
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    assert_eq!(h.sim.stats().auth_failures[&AuthFailure::Skew], 2);
    assert!(h.sim.events().is_empty());
}

#[tokio::test]
async fn wrong_key_or_wrong_secret_is_forbidden() {
    let h = Harness::default().await;
    let ts = now();
    let message = "bot-actions-claim:w1";
    let url = format!("{}/internal/v2/bot-actions/claim", h.served.base_url());
    let body = json!({"worker_id": "w1", "limit": 1});
    for (key_id, secret) in [("other-key", SECRET), (KEY_ID, "wrong secret")] {
        let response = h
            .http
            .post(&url)
            .header("x-sitg-key-id", key_id)
            .header("x-sitg-timestamp", ts.to_string())
            .header("x-sitg-signature", sign(secret, ts, message))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
    }
    let failures = h.sim.stats().auth_failures;
    assert_eq!(failures[&AuthFailure::UnknownKey], 1);
    assert_eq!(failures[&AuthFailure::BadSignature], 1);
}

#[tokio::test]
async fn content_type_and_shape_are_checked_before_the_signature() {
    let h = Harness::default().await;
    let url = format!(
        "{}/internal/v2/github/events/pull-request",
        h.served.base_url()
    );
    // No content type, no signature at all: 415, not 403.
    let response = h
        .http
        .post(&url)
        .body(pr_body("d-1", &sha()).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // JSON of the wrong shape, unsigned: 422 plain text, not 403.
    let mut wrong = pr_body("d-1", &sha());
    wrong["installation_id"] = json!("123");
    let response = h.http.post(&url).json(&wrong).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");

    assert_eq!(h.sim.stats().auth_failures_total(), 0);
    assert!(h.sim.events().is_empty());
}

#[tokio::test]
async fn a_redelivery_is_a_duplicate_and_enqueues_nothing() {
    let h = Harness::default().await;
    let body = pr_body("d-1", &sha());
    assert_eq!(h.ingest_pr(&body, now() - 1).await.status(), StatusCode::OK);
    let response = h.ingest_pr(&body, now()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(
        reply,
        json!({"ingest_status": "DUPLICATE", "challenge_id": null, "enqueued_actions": 0})
    );
    assert_eq!(h.sim.actions().len(), 1);
}

#[tokio::test]
async fn ingest_requests_are_counted_per_delivery_duplicates_included() {
    let h = Harness::default().await;
    let twice = pr_body("d-twice", &sha());
    let once = pr_body("d-once", &sha());
    assert_eq!(
        h.ingest_pr(&twice, now() - 1).await.status(),
        StatusCode::OK
    );
    assert_eq!(h.ingest_pr(&twice, now()).await.status(), StatusCode::OK);
    assert_eq!(h.ingest_pr(&once, now()).await.status(), StatusCode::OK);
    let counts = h.sim.ingest_requests("pull_request");
    assert_eq!(
        counts,
        BTreeMap::from([("d-once".to_owned(), 1), ("d-twice".to_owned(), 2)])
    );
    assert!(h.sim.ingest_requests("installation").is_empty());
}

#[tokio::test]
async fn an_overlong_head_sha_burns_the_delivery() {
    let h = Harness::default().await;
    let bad = pr_body("d-1", &format!("{}0", sha()));
    let response = h.ingest_pr(&bad, now() - 1).await;
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "INTERNAL_ERROR");

    // The corrected redelivery is lost: the id was spent before processing.
    let response = h.ingest_pr(&pr_body("d-1", &sha()), now()).await;
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["ingest_status"], "DUPLICATE");
    assert!(h.sim.actions().is_empty());
    let outcomes: Vec<_> = h.sim.events().iter().map(|e| e.outcome).collect();
    assert_eq!(outcomes, [IngestOutcome::Failed, IngestOutcome::Duplicate]);
}

#[tokio::test]
async fn draft_pull_requests_are_ignored() {
    let h = Harness::default().await;
    let mut body = pr_body("d-1", &sha());
    body["pull_request"]["is_draft"] = json!(true);
    let reply: Value = h.ingest_pr(&body, now()).await.json().await.unwrap();
    assert_eq!(reply["ingest_status"], "IGNORED");
    assert_eq!(reply["challenge_id"], Value::Null);
    assert_eq!(h.sim.pending_count(), 0);
}

#[tokio::test]
async fn claim_limit_is_clamped_to_1_through_100() {
    let h = Harness::default().await;
    for n in 0..150 {
        h.sim.enqueue_action(upsert(n + 1));
    }
    assert_eq!(h.claim("w-low", 0).await.len(), 1);
    assert_eq!(h.claim("w-high", 1000).await.len(), 100);
    assert_eq!(h.sim.pending_count(), 49);
    assert_eq!(h.sim.claimed_count(), 101);
}

#[tokio::test]
async fn concurrent_claims_by_two_workers_never_share_an_action() {
    let h = Harness::default().await;
    for n in 0..60 {
        h.sim.enqueue_action(upsert(n + 1));
    }
    let (a, b) = tokio::join!(h.claim("w1", 40), h.claim("w2", 40));
    assert_eq!(a.len() + b.len(), 60);
    let ids_a: std::collections::HashSet<_> = a.iter().map(|x| x["id"].clone()).collect();
    assert!(b.iter().all(|x| !ids_a.contains(&x["id"])));
    for (actions, worker) in [(&a, "w1"), (&b, "w2")] {
        for x in actions.iter() {
            let id = Uuid::parse_str(x["id"].as_str().unwrap()).unwrap();
            assert_eq!(
                h.sim.action(id).unwrap().claimed_by.as_deref(),
                Some(worker)
            );
        }
    }
}

#[tokio::test]
async fn claim_takes_the_oldest_first_in_no_particular_order() {
    let h = Harness::default().await;
    let ids: Vec<_> = (0..5)
        .map(|n| h.sim.enqueue_action(upsert(n + 1)))
        .collect();
    let claimed = h.claim("w1", 3).await;
    let mut got: Vec<_> = claimed
        .iter()
        .map(|x| Uuid::parse_str(x["id"].as_str().unwrap()).unwrap())
        .collect();
    assert_ne!(got, ids[..3], "order must not be relied upon");
    got.sort_by_key(|id| ids.iter().position(|x| x == id));
    assert_eq!(got, ids[..3]);
}

#[tokio::test]
async fn results_need_the_claiming_worker() {
    let h = Harness::default().await;
    let id = h.sim.enqueue_action(upsert(1)).to_string();
    // Not claimed yet. (Each report of one message needs its own second.)
    assert_eq!(
        h.report_at(&id, "w1", "SUCCEEDED", now() - 2)
            .await
            .status(),
        StatusCode::CONFLICT
    );
    h.claim("w1", 1).await;
    let response = h.report_at(&id, "w2", "SUCCEEDED", now()).await;
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "CONFLICT");

    let response = h.report_at(&id, "w1", "SUCCEEDED", now() - 1).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"id": id, "status": "DONE"}));
    // Already reported.
    assert_eq!(
        h.report_at(&id, "w1", "SUCCEEDED", now()).await.status(),
        StatusCode::CONFLICT
    );
    assert_eq!(h.sim.stats().result_conflicts, 3);
}

#[tokio::test]
async fn a_retryable_failure_is_claimable_again_at_once() {
    let h = Harness::default().await;
    let uuid = h.sim.enqueue_action(upsert(1));
    let id = uuid.to_string();
    h.claim("w1", 1).await;
    let response = h.report_at(&id, "w1", "RETRYABLE_FAILURE", now()).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "PENDING");
    let again = h.claim("w2", 1).await;
    assert_eq!(again[0]["id"], id.as_str());
    assert_eq!(again[0]["attempts"], 2);
    let record = h.sim.action(uuid).unwrap();
    assert_eq!(record.results.len(), 1);
    assert_eq!(record.results[0].outcome, Outcome::RetryableFailure);
    assert_eq!(record.claims.len(), 2);
}

#[tokio::test]
async fn failed_results_keep_their_code() {
    let h = Harness::default().await;
    let uuid = h.sim.enqueue_action(upsert(1));
    h.claim("w1", 1).await;
    let ts = now();
    let id = uuid.to_string();
    let response = h
        .post_at(
            &format!("/internal/v2/bot-actions/{id}/result"),
            &format!("bot-action-result:{id}:w1:FAILED"),
            &json!({"worker_id": "w1", "outcome": "FAILED",
                    "failure_code": "INVALID_ACTION_PAYLOAD", "failure_message": "bad"}),
            ts,
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let record = h.sim.action(uuid).unwrap();
    assert_eq!(record.status, ActionStatus::Failed);
    assert_eq!(record.last_failure_code(), Some("INVALID_ACTION_PAYLOAD"));
}

#[tokio::test]
async fn service_token_is_enforced_when_configured() {
    let mut config = BackendSimConfig::new(KEY_ID, SECRET);
    config.service_token = Some(SecretString::new("svc-token"));
    let h = Harness::start(config).await;
    let response = h.claim_at("w1", 1, now()).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let ts = now() - 1;
    let response = h
        .http
        .post(format!(
            "{}/internal/v2/bot-actions/claim",
            h.served.base_url()
        ))
        .header("x-sitg-key-id", KEY_ID)
        .header("x-sitg-timestamp", ts.to_string())
        .header("x-sitg-signature", sign(SECRET, ts, "bot-actions-claim:w1"))
        .header("authorization", "Bearer svc-token")
        .json(&json!({"worker_id": "w1", "limit": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

#[tokio::test]
async fn installation_sync_is_deduplicated_and_needs_all_three_arrays() {
    let h = Harness::default().await;
    let body = json!({
        "delivery_id": "d-9", "event_time": "2024-05-01T12:00:00Z",
        "event_name": "installation", "action": "created",
        "installation": {"id": 5, "account_login": "org", "account_type": "Enterprise"},
        "repositories_added": [], "repositories_removed": [],
        "repositories": [{"id": 1, "full_name": "org/a"}, {"id": 2, "full_name": "org/b"}],
    });
    let path = "/internal/v2/github/events/installation-sync";
    let message = "github-event:installation-sync:d-9";
    let reply: Value = h
        .post_at(path, message, &body, now() - 1)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        reply,
        json!({"ingest_status": "ACCEPTED", "updated_installation_id": 5, "updated_repositories": 2})
    );
    let reply: Value = h
        .post_at(path, message, &body, now())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        reply,
        json!({"ingest_status": "DUPLICATE", "updated_installation_id": null, "updated_repositories": 0})
    );
    let installations = h.sim.installations();
    assert_eq!(installations[0].account_type, "Enterprise");
    assert_eq!(installations[0].repositories.len(), 2);

    let mut missing = body.clone();
    missing["delivery_id"] = json!("d-10");
    missing
        .as_object_mut()
        .unwrap()
        .remove("repositories_removed");
    let response = h
        .post_at(path, "github-event:installation-sync:d-10", &missing, now())
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn unavailable_backend_answers_503_and_changes_nothing() {
    let h = Harness::default().await;
    h.sim.set_unavailable(true);
    let response = h.ingest_pr(&pr_body("d-1", &sha()), now() - 1).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    h.sim.set_unavailable(false);
    // The same signature is still fresh: the fault recorded nothing.
    let response = h.ingest_pr(&pr_body("d-1", &sha()), now() - 1).await;
    assert_eq!(response.status(), StatusCode::OK);

    h.sim.fail_next_requests(1);
    assert_eq!(
        h.claim_at("w1", 1, now()).await.status(),
        StatusCode::INTERNAL_SERVER_ERROR
    );
    let stats = h.sim.stats();
    assert_eq!(stats.faults_served, 2);
    assert_eq!(stats.responses_with(Endpoint::PullRequestIngest, 503), 1);
    assert_eq!(stats.requests_to(Endpoint::PullRequestIngest), 2);
}

#[tokio::test]
async fn wait_for_sees_changes_made_through_http() {
    let h = Harness::default().await;
    let id = h.sim.enqueue_action(upsert(1));
    let sim = h.sim.clone();
    let waiter = tokio::spawn(async move {
        sim.wait_for(Duration::from_secs(10), |s| {
            s.action(id).is_some_and(|a| a.status == ActionStatus::Done)
        })
        .await
    });
    h.claim("w1", 1).await;
    h.report_at(&id.to_string(), "w1", "SUCCEEDED", now()).await;
    assert!(waiter.await.unwrap());
}

#[tokio::test]
async fn an_echo_fault_quotes_the_signed_request_and_processes_nothing() {
    let h = Harness::default().await;
    h.sim.enqueue_action(upsert(1));
    h.sim.echo_next_requests(1);
    let timestamp = now();
    let response = h.claim_at("w1", 1, timestamp).await;
    assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "BAD_GATEWAY");
    let signature = sign(SECRET, timestamp, "bot-actions-claim:w1");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&signature), "{message}");
    assert!(message.contains("\"worker_id\":\"w1\""), "{message}");
    assert_eq!(h.sim.echoed_credentials(), vec![signature]);
    // Nothing was claimed and the signature was not spent on the backend.
    assert_eq!(h.sim.pending_count(), 1);
    assert_eq!(h.claim("w1", 1).await.len(), 1);
}

#[tokio::test]
async fn answer_faults_apply_after_the_claim_was_carried_out() {
    let h = Harness::default().await;
    for n in 1..=4 {
        h.sim.enqueue_action(upsert(n));
    }
    // Cut off mid-body: the client sees an error, the backend has claimed.
    h.sim
        .fault_next_answers(Endpoint::Claim, AnswerFault::ResetMidBody, 1);
    let ts = now();
    let sent = h
        .http
        .post(format!(
            "{}/internal/v2/bot-actions/claim",
            h.served.base_url()
        ))
        .header("x-sitg-key-id", KEY_ID)
        .header("x-sitg-timestamp", ts.to_string())
        .header(
            "x-sitg-signature",
            sign(SECRET, ts, "bot-actions-claim:w-1"),
        )
        .json(&json!({ "worker_id": "w-1", "limit": 1 }))
        .send()
        .await;
    let cut = match sent {
        Ok(response) => response.bytes().await.map(|_| ()),
        Err(err) => Err(err),
    };
    assert!(cut.is_err(), "{cut:?}");
    assert_eq!(h.sim.claimed_count(), 1);
    // Every action twice in one answer.
    h.sim
        .fault_next_answers(Endpoint::Claim, AnswerFault::DuplicateActions, 1);
    let doubled = h.claim("w-2", 1).await;
    assert_eq!(doubled.len(), 2);
    assert_eq!(doubled[0]["id"], doubled[1]["id"]);
    // Late: the answer comes after the delay, the claim was made before it.
    h.sim.fault_next_answers(
        Endpoint::Claim,
        AnswerFault::Delay(Duration::from_millis(300)),
        1,
    );
    let started = std::time::Instant::now();
    assert_eq!(h.claim("w-3", 1).await.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(300));
    // A result accepted with a body that is not JSON.
    let id = doubled[0]["id"].as_str().unwrap().to_owned();
    h.sim
        .fault_next_answers(Endpoint::Result, AnswerFault::NotJson, 1);
    let response = h.report_at(&id, "w-2", "SUCCEEDED", now()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.text().await.unwrap(), "OK");
    assert_eq!(
        h.sim.action(Uuid::parse_str(&id).unwrap()).unwrap().status,
        ActionStatus::Done
    );
    let stats = h.sim.stats();
    assert_eq!(stats.answer_faults_served, 4);
    assert_eq!(stats.claim_requests_at.len(), 3);
}
