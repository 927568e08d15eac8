//! The real `sitg-bot worker` binary, on real sockets, against the simulators, fed with
//! GitHub's own example payloads (`@octokit/webhooks-examples`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::support::*;
use futures::StreamExt;
use serde_json::{Value, json};
use sitg_sandbox::backend::{IngestOutcome, IngestRecord};

const PR_ACTIONS: [&str; 4] = ["opened", "reopened", "synchronize", "ready_for_review"];
const INSTALLATION_ACTIONS: [&str; 4] = ["created", "deleted", "suspend", "unsuspend"];
const INSTALLATION_REPOSITORIES_ACTIONS: [&str; 2] = ["added", "removed"];

fn forwarded(event: &str, action: Option<&str>) -> bool {
    let Some(action) = action else { return false };
    match event {
        "pull_request" => PR_ACTIONS.contains(&action),
        "installation" => INSTALLATION_ACTIONS.contains(&action),
        "installation_repositories" => INSTALLATION_REPOSITORIES_ACTIONS.contains(&action),
        _ => false,
    }
}

fn repos(list: Option<&Value>) -> Vec<Value> {
    list.and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .map(|r| json!({"id": r["id"], "full_name": r["full_name"]}))
                .collect()
        })
        .unwrap_or_default()
}

fn record_for<'a>(records: &'a [IngestRecord], delivery: &str) -> Option<&'a IngestRecord> {
    records.iter().find(|r| r.delivery_id == delivery)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_example_is_forwarded_with_the_right_fields_or_ignored() {
    let (examples, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    let secret = peers.webhook_secret.expose().to_owned();

    let mut expected_forwarded = 0;
    let mut seen_kinds = BTreeSet::new();
    for (i, example) in examples.all.iter().enumerate() {
        let delivery = format!("e2e-{i}-{}", uuid::Uuid::new_v4());
        let answer = worker
            .deliver(&secret, &example.event, &delivery, example.body())
            .await;
        let what = format!("{}.{}", example.event, example.action().unwrap_or("-"));
        if !forwarded(&example.event, example.action()) {
            assert_eq!(answer.status, 200, "{what}: {:?}", answer.body);
            assert_eq!(
                answer.body["status"], "ignored",
                "{what}: {:?}",
                answer.body
            );
            assert!(
                record_for(&peers.backend.events(), &delivery).is_none(),
                "{what} reached the backend"
            );
            continue;
        }
        expected_forwarded += 1;
        seen_kinds.insert(what.clone());
        assert_eq!(answer.status, 200, "{what}: {:?}", answer.body);
        assert_eq!(answer.body["status"], "forwarded", "{what}");
        assert_eq!(answer.body["ingest_status"], "ACCEPTED", "{what}");
        let events = peers.backend.events();
        let record =
            record_for(&events, &delivery).unwrap_or_else(|| panic!("{what} not at the backend"));
        assert_eq!(record.outcome, IngestOutcome::Accepted, "{what}");
        let sent = &record.body;
        let p = &example.payload;
        assert_eq!(sent["delivery_id"], delivery.as_str());
        assert_eq!(sent["action"], p["action"], "{what}");
        let event_time = sent["event_time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(event_time).is_ok(),
            "{what}: {event_time}"
        );
        match example.event.as_str() {
            "pull_request" => {
                // Payloads without `installation` (repository webhooks) are resolved
                // through GitHub; the simulator installs the App as installation 1.
                let installation = p.pointer("/installation/id").cloned().unwrap_or(json!(1));
                assert_eq!(sent["installation_id"], installation, "{what}");
                assert_eq!(
                    sent["repository"],
                    json!({"id": p["repository"]["id"], "full_name": p["repository"]["full_name"]}),
                    "{what}"
                );
                let pr = &p["pull_request"];
                assert_eq!(
                    sent["pull_request"],
                    json!({
                        "number": pr["number"],
                        "id": pr["id"],
                        "html_url": pr["html_url"],
                        "is_draft": pr["draft"],
                        "user": {"id": pr["user"]["id"], "login": pr["user"]["login"]},
                        "head_sha": pr["head"]["sha"],
                    }),
                    "{what}"
                );
            }
            event => {
                assert_eq!(sent["event_name"], event);
                let inst = &p["installation"];
                assert_eq!(
                    sent["installation"],
                    json!({"id": inst["id"], "account_login": inst["account"]["login"], "account_type": inst["account"]["type"]}),
                    "{what}"
                );
                if event == "installation" {
                    assert_eq!(sent["repositories_added"], json!([]));
                    assert_eq!(sent["repositories_removed"], json!([]));
                    let listed = repos(p.get("repositories"));
                    let action = p["action"].as_str().unwrap();
                    if listed.is_empty() && (action == "created" || action == "unsuspend") {
                        // Backfilled from GET /installation/repositories.
                        let got = sent["repositories"].as_array().unwrap();
                        assert_eq!(got.len(), 3, "{what}: {got:?}");
                        let login = inst["account"]["login"].as_str().unwrap();
                        assert!(
                            got.iter()
                                .all(|r| r["full_name"].as_str().unwrap().starts_with(login))
                        );
                    } else {
                        assert_eq!(sent["repositories"], json!(listed), "{what}");
                    }
                } else {
                    assert_eq!(sent["repositories"], json!([]));
                    assert_eq!(
                        sent["repositories_added"],
                        json!(repos(p.get("repositories_added"))),
                        "{what}"
                    );
                    assert_eq!(
                        sent["repositories_removed"],
                        json!(repos(p.get("repositories_removed"))),
                        "{what}"
                    );
                }
            }
        }
    }
    // Every kind of the list appeared in the examples.
    for kind in [
        "pull_request.opened",
        "pull_request.reopened",
        "pull_request.synchronize",
        "pull_request.ready_for_review",
        "installation.created",
        "installation.deleted",
        "installation.suspend",
        "installation.unsuspend",
        "installation_repositories.added",
        "installation_repositories.removed",
    ] {
        assert!(seen_kinds.contains(kind), "no example for {kind}");
    }
    let forwarded_at_backend = peers.backend.events().len();
    assert_eq!(forwarded_at_backend, expected_forwarded);
    let total = examples.all.len() as f64;
    assert_eq!(worker.metric("sitg_bot_webhook_events_total").await, total);
    assert_eq!(
        worker.metric("sitg_bot_webhook_ignored_total").await,
        total - expected_forwarded as f64
    );
    assert_eq!(
        worker
            .metric("sitg_bot_webhook_ingest_accepted_total")
            .await,
        expected_forwarded as f64
    );
    assert_eq!(peers.backend.stats().replays_rejected, 0);
    assert_eq!(peers.backend.stats().auth_failures_total(), 0);
    // The secrets the worker holds never reach its logs.
    let logs = worker.logs_text();
    for secret in [peers.webhook_secret.expose(), peers.hmac_secret.expose()] {
        assert!(!logs.contains(secret));
    }
    assert!(!logs.contains("PRIVATE KEY"));
}

fn opened_example() -> Vec<u8> {
    let examples = examples();
    let ex = examples
        .of("pull_request", Some("opened"))
        .find(|e| e.payload.get("installation").is_some())
        .expect("an opened example with an installation");
    ex.body()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_are_refused_with_401_and_counted() {
    let peers = peers().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    let body = opened_example();
    let base = |sig: Option<String>| {
        let mut h = vec![
            ("content-type", "application/json".to_owned()),
            ("x-github-event", "pull_request".to_owned()),
            ("x-github-delivery", uuid::Uuid::new_v4().to_string()),
        ];
        if let Some(sig) = sig {
            h.push(("x-hub-signature-256", sig));
        }
        h
    };
    let cases = [
        None,
        Some("sha256=nothex".to_owned()),
        Some(sign("wrong-secret", &body)),
        Some(sign(peers.webhook_secret.expose(), b"another body")),
    ];
    for sig in cases {
        let (status, answer) = worker.post_raw(&base(sig.clone()), body.clone()).await;
        assert_eq!(status, 401, "{sig:?}: {answer}");
        assert_eq!(answer["error"], "invalid_signature");
    }
    // An unvalidated delivery header is not copied whole into the logs (12 KiB: under
    // the 16 KiB request-head cap, past which the server answers 431 itself).
    let mut huge = base(Some(sign("wrong-secret", &body)));
    huge.retain(|(k, _)| *k != "x-github-delivery");
    huge.push(("x-github-delivery", "d".repeat(12 * 1024)));
    let (status, _) = worker.post_raw(&huge, body.clone()).await;
    assert_eq!(status, 401);
    let huge_id_logged = |logged: &Value| {
        logged["delivery_id"]
            .as_str()
            .is_some_and(|d| d.starts_with("ddd"))
    };
    assert!(
        eventually(Duration::from_secs(5), || {
            worker
                .events("webhook_signature_refused")
                .iter()
                .any(huge_id_logged)
        })
        .await
    );
    for logged in worker.events("webhook_signature_refused") {
        let id = logged["delivery_id"].as_str().unwrap_or_default();
        assert!(id.len() <= 200, "{} bytes of delivery id logged", id.len());
    }
    assert!(peers.backend.events().is_empty());
    assert_eq!(
        worker
            .metric("sitg_bot_webhook_signature_failures_total")
            .await,
        5.0
    );
    assert_eq!(worker.metric("sitg_bot_webhook_events_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_secret_with_a_trailing_newline_verifies_deliveries_signed_without_it() {
    // `kubectl create secret --from-file` keeps the file's final newline; the worker
    // trims surrounding white space of every secret, so GitHub's signature (made with
    // the secret as typed in its settings) verifies.
    let (_, peers) = peers_for_examples().await;
    let secret = peers.webhook_secret.expose().to_owned();
    let with_newline = format!("{secret}\n");
    let worker =
        spawn_webhook_worker(&peers, &[("GITHUB_WEBHOOK_SECRET", with_newline.as_str())]).await;
    let answer = worker
        .deliver(&secret, "pull_request", "trailing-nl-1", opened_example())
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_form_without_a_usable_payload_field_gets_400_naming_it() {
    let (_, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    let secret = peers.webhook_secret.expose().to_owned();
    for (i, form) in [&b"payload="[..], b"other=1", b"payload"]
        .into_iter()
        .enumerate()
    {
        let headers = [
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("x-github-event", "pull_request".to_owned()),
            (
                "x-github-delivery",
                format!("form-{i}-{}", uuid::Uuid::new_v4()),
            ),
            ("x-hub-signature-256", sign(&secret, form)),
        ];
        let (status, body) = worker.post_raw(&headers, form.to_vec()).await;
        let text = body.to_string();
        assert_eq!(status, 400, "{form:?}: {text}");
        assert!(text.contains("`payload`"), "{form:?}: {text}");
        assert!(!text.to_lowercase().contains("json"), "{form:?}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_previous_secret_is_accepted_during_a_rotation() {
    let (_, peers) = peers_for_examples().await;
    let worker =
        spawn_webhook_worker(&peers, &[("GITHUB_WEBHOOK_SECRET_PREVIOUS", "old-secret")]).await;
    let old = worker
        .deliver("old-secret", "pull_request", "rot-1", opened_example())
        .await;
    assert_eq!(old.status, 200, "{:?}", old.body);
    let new = worker
        .deliver(
            peers.webhook_secret.expose(),
            "pull_request",
            "rot-2",
            opened_example(),
        )
        .await;
    assert_eq!(new.status, 200);
    let neither = worker
        .deliver("older-secret", "pull_request", "rot-3", opened_example())
        .await;
    assert_eq!(neither.status, 401);
    assert_eq!(
        worker
            .metric("sitg_bot_webhook_previous_secret_total")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstorable_payloads_get_400_and_never_spend_the_delivery() {
    let (_, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    let secret = peers.webhook_secret.expose().to_owned();
    let good: Value = serde_json::from_slice(&opened_example()).unwrap();

    let mut long_sha = good.clone();
    long_sha["pull_request"]["head"]["sha"] = json!(format!(
        "{}0",
        good["pull_request"]["head"]["sha"].as_str().unwrap()
    ));
    let answer = worker
        .deliver(
            &secret,
            "pull_request",
            "spent-1",
            serde_json::to_vec(&long_sha).unwrap(),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("pull_request.head.sha"),
        "{:?}",
        answer.body
    );

    let mut no_login = good.clone();
    no_login["pull_request"]["user"]["login"] = json!("");
    let answer = worker
        .deliver(
            &secret,
            "pull_request",
            "spent-2",
            serde_json::to_vec(&no_login).unwrap(),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("pull_request.user.login")
    );

    let answer = worker
        .deliver(
            &secret,
            "pull_request",
            "spent-3",
            b"{\"action\": \"opened\",".to_vec(),
        )
        .await;
    assert_eq!(answer.status, 400);

    // A valid document followed by more bytes is not one payload.
    for (i, tail) in [&b"xyz"[..], &opened_example()].into_iter().enumerate() {
        let body = [opened_example().as_slice(), tail].concat();
        let answer = worker
            .deliver(&secret, "pull_request", &format!("spent-tail-{i}"), body)
            .await;
        assert_eq!(answer.status, 400, "{:?}", answer.body);
        assert!(
            answer.body["message"]
                .as_str()
                .unwrap()
                .starts_with("body:"),
            "{:?}",
            answer.body
        );
    }

    // Repository names the outbox would refuse to act on are refused at ingress.
    for (i, name) in ["../x", "o/r?x=1#"].into_iter().enumerate() {
        let mut bad_name = good.clone();
        bad_name["repository"]["full_name"] = json!(name);
        let answer = worker
            .deliver(
                &secret,
                "pull_request",
                &format!("spent-name-{i}"),
                serde_json::to_vec(&bad_name).unwrap(),
            )
            .await;
        assert_eq!(answer.status, 400, "{name}: {:?}", answer.body);
        assert!(
            answer.body["message"]
                .as_str()
                .unwrap()
                .contains("repository.full_name"),
            "{:?}",
            answer.body
        );
    }

    let answer = worker
        .deliver(
            &secret,
            "installation",
            "spent-4",
            serde_json::to_vec(&json!({"action": "created"})).unwrap(),
        )
        .await;
    assert_eq!(answer.status, 400);
    assert!(
        answer.body["message"]
            .as_str()
            .unwrap()
            .contains("installation")
    );

    assert!(
        peers.backend.events().is_empty(),
        "nothing may reach the backend"
    );
    // The delivery id was not spent: GitHub's redelivery of the fixed payload is accepted.
    let answer = worker
        .deliver(
            &secret,
            "pull_request",
            "spent-1",
            serde_json::to_vec(&good).unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.body["ingest_status"], "ACCEPTED");
    assert_eq!(worker.metric("sitg_bot_webhook_rejected_total").await, 8.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivery_is_reported_duplicate() {
    let (_, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    let secret = peers.webhook_secret.expose().to_owned();
    let first = worker
        .deliver(&secret, "pull_request", "dup-1", opened_example())
        .await;
    assert_eq!(first.body["ingest_status"], "ACCEPTED");
    let again = worker
        .deliver(&secret, "pull_request", "dup-1", opened_example())
        .await;
    assert_eq!(again.status, 200);
    assert_eq!(again.body["ingest_status"], "DUPLICATE");
    assert_eq!(
        worker
            .metric("sitg_bot_webhook_ingest_duplicate_total")
            .await,
        1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_25_mb_get_413_without_being_read_whole() {
    let peers = peers().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    // The bodies below stop sending (but stay open) once past the limit: the worker must
    // answer on its own, without waiting for the rest. A client that kept writing could
    // see its connection closed under it instead of the answer.
    let oversized = |declared: Option<u64>, sent_mb: usize| {
        let chunks = futures::stream::iter(
            (0..sent_mb).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024 * 1024])),
        )
        .chain(futures::stream::pending());
        let mut req = reqwest::Client::new()
            .post(worker.url("/webhooks/github"))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", "big")
            .header("x-hub-signature-256", "sha256=00")
            .body(reqwest::Body::wrap_stream(chunks));
        if let Some(len) = declared {
            req = req.header("content-length", len);
        }
        req.send()
    };
    // Declared too large: refused before any byte of the body is read.
    let declared = tokio::time::timeout(
        Duration::from_secs(10),
        oversized(Some(25 * 1024 * 1024 + 1), 0),
    )
    .await
    .expect("answered without the body")
    .expect("response");
    assert_eq!(declared.status(), 413);
    // Chunked, no length: cut off at the limit.
    let chunked = tokio::time::timeout(Duration::from_secs(10), oversized(None, 26))
        .await
        .expect("answered at the limit")
        .expect("response");
    assert_eq!(chunked.status(), 413);
    assert_eq!(worker.metric("sitg_bot_webhook_rejected_total").await, 2.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_outage_answers_5xx_inside_githubs_budget() {
    let (_, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    peers.backend.set_unavailable(true);
    let started = Instant::now();
    let answer = worker
        .deliver(
            peers.webhook_secret.expose(),
            "pull_request",
            "down-1",
            opened_example(),
        )
        .await;
    let took = started.elapsed();
    assert!(answer.status >= 500, "{}: {:?}", answer.status, answer.body);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(worker.metric("sitg_bot_errors_total").await >= 1.0);
    // Recovery needs no restart.
    peers.backend.set_unavailable(false);
    let answer = worker
        .deliver(
            peers.webhook_secret.expose(),
            "pull_request",
            "down-2",
            opened_example(),
        )
        .await;
    assert_eq!(answer.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installation_backfill_reads_every_page() {
    let peers = peers().await;
    let many: Vec<(i64, String)> = (1..=230)
        .map(|i| (50_000 + i, format!("big-org/repo-{i}")))
        .collect();
    peers
        .github
        .add_installation(777, "big-org", "Organization", many)
        .unwrap();
    let worker = spawn_webhook_worker(&peers, &[]).await;
    let body = json!({
        "action": "created",
        "installation": {"id": 777, "account": {"login": "big-org", "type": "Organization"}},
        "repository_selection": "all",
        "sender": {"login": "admin"}
    });
    let answer = worker
        .deliver(
            peers.webhook_secret.expose(),
            "installation",
            "fill-1",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let events = peers.backend.events();
    let sent = &record_for(&events, "fill-1").unwrap().body;
    let names: BTreeSet<&str> = sent["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["full_name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 230);
    assert!(names.contains("big-org/repo-230"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_installation_deleted_before_its_backfill_is_ignored_not_failed() {
    let peers = peers().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    // Installation 778 is unknown to GitHub: its token cannot be minted (404).
    let body = json!({
        "action": "unsuspend",
        "installation": {"id": 778, "account": {"login": "gone-org", "type": "Organization"}},
        "sender": {"login": "admin"}
    });
    let answer = worker
        .deliver(
            peers.webhook_secret.expose(),
            "installation",
            "gone-1",
            serde_json::to_vec(&body).unwrap(),
        )
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.body["status"], "ignored");
    assert!(record_for(&peers.backend.events(), "gone-1").is_none());
    assert_eq!(worker.metric("sitg_bot_errors_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_endpoints_answer() {
    let peers = peers().await;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut worker = spawn_worker(&peers, &[("METRICS_PORT", &metrics_port.to_string())]).await;
    let get = |url: String| {
        let client = worker.client.clone();
        async move { client.get(url).send().await.unwrap() }
    };
    assert_eq!(get(worker.url("/healthz")).await.status(), 200);
    assert_eq!(get(worker.url("/readyz")).await.status(), 200);
    let metrics = get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("sitg_bot_outbox_lag_seconds"));
    assert!(metrics.contains("sitg_bot_webhook_events_total"));
    assert_eq!(
        get(format!("http://127.0.0.1:{metrics_port}/readyz"))
            .await
            .status(),
        200
    );
    // The metrics port serves no webhooks.
    let resp = worker
        .client
        .post(format!("http://127.0.0.1:{metrics_port}/webhooks/github"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    // Readiness follows the backend.
    let backend_server = peers.backend_server;
    backend_server.shutdown().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while get(worker.url("/readyz")).await.status() != 503 {
        assert!(
            Instant::now() < deadline,
            "readiness must drop when the backend is gone"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = worker.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
}

/// A request whose body stops arriving: `declared` bytes announced, `sent` bytes sent,
/// then the stream stays open. Returns the status and JSON body of the answer.
async fn stalled_upload(url: String, declared: u64, sent: usize) -> (u16, Value) {
    let chunks = futures::stream::iter(
        std::iter::once(Ok::<_, std::io::Error>(vec![b' '; sent])).filter(move |_| sent > 0),
    )
    .chain(futures::stream::pending());
    let resp = reqwest::Client::new()
        .post(url)
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-hub-signature-256", "sha256=00")
        .header("content-length", declared)
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .expect("an answer");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

const MIB: u64 = 1024 * 1024;

async fn wait_for_reserved(worker: &WorkerProcess, cond: impl Fn(f64) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let reserved = worker.metric("sitg_bot_webhook_reserved_body_bytes").await;
        if cond(reserved) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "reserved body bytes stayed at {reserved}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_the_buffer_budget_get_503_and_the_budget_comes_back() {
    let (_, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[("WEBHOOK_BUFFER_LIMIT_MB", "25")]).await;
    // 20 of the 25 MB held by an upload that is still arriving: room is reserved for
    // the bytes received, not for the declared length.
    let holder = tokio::spawn(stalled_upload(
        worker.url("/webhooks/github"),
        21 * MIB,
        (20 * MIB) as usize,
    ));
    wait_for_reserved(&worker, |r| r >= (20 * MIB) as f64).await;

    // 10 MB more do not fit: refused once what arrived passes what is left.
    let (status, answer) = tokio::time::timeout(
        Duration::from_secs(10),
        stalled_upload(
            worker.url("/webhooks/github"),
            10 * MIB + 1,
            (10 * MIB) as usize,
        ),
    )
    .await
    .expect("answered without the body");
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"], "overloaded");
    // Log lines reach stdout through a background writer: wait for it, as elsewhere.
    assert!(
        eventually(Duration::from_secs(5), || {
            !worker.events("webhook_overloaded").is_empty()
        })
        .await
    );

    // A delivery that fits in what is left still goes through.
    let fits = worker
        .deliver(
            peers.webhook_secret.expose(),
            "pull_request",
            "budget-1",
            opened_example(),
        )
        .await;
    assert_eq!(fits.status, 200, "{:?}", fits.body);
    assert_eq!(fits.body["ingest_status"], "ACCEPTED");

    // Once the holder's request ends, its share is free again.
    let (status, _) = holder.await.unwrap();
    assert_eq!(status, 408);
    wait_for_reserved(&worker, |r| r == 0.0).await;
    let (status, answer) = worker
        .post_raw(
            &[
                ("x-github-event", "pull_request".to_owned()),
                ("x-github-delivery", "budget-2".to_owned()),
                ("x-hub-signature-256", "sha256=00".to_owned()),
            ],
            vec![b' '; (10 * MIB) as usize],
        )
        .await;
    assert_eq!(status, 401, "the budget was given back: {answer}");
    assert_eq!(
        worker
            .metric_with("sitg_bot_webhook_rejected_total", "reason=\"overloaded\"")
            .await,
        Some(1.0)
    );
}

/// A sender writes its whole body before it reads (GitHub does). Refused half-way, it
/// must still read the 503, not a connection reset: the worker reads the rest of the
/// body after answering instead of closing on unread bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_refused_half_way_still_reaches_its_503() {
    let (_, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[("WEBHOOK_BUFFER_LIMIT_MB", "25")]).await;
    let holder = tokio::spawn(stalled_upload(
        worker.url("/webhooks/github"),
        21 * MIB,
        (20 * MIB) as usize,
    ));
    wait_for_reserved(&worker, |r| r >= (20 * MIB) as f64).await;
    for attempt in 0..5 {
        let sent = reqwest::Client::new()
            .post(worker.url("/webhooks/github"))
            .header("x-github-event", "pull_request")
            .header("x-github-delivery", format!("half-way-{attempt}"))
            .header("x-hub-signature-256", "sha256=00")
            .body(vec![b' '; (20 * MIB) as usize])
            .send()
            .await;
        let resp = sent.unwrap_or_else(|err| panic!("attempt {attempt}: no answer: {err:?}"));
        assert_eq!(resp.status(), 503, "attempt {attempt}");
        let answer: Value = resp.json().await.unwrap();
        assert_eq!(answer["error"], "overloaded");
    }
    // The bytes read after the answer were thrown away, not kept.
    wait_for_reserved(&worker, |r| r < (21 * MIB) as f64).await;
    holder.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upload_gets_408_and_is_no_worker_error() {
    let peers = peers().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    let (status, answer) = tokio::time::timeout(
        Duration::from_secs(10),
        stalled_upload(worker.url("/webhooks/github"), 64 * 1024, 1024),
    )
    .await
    .expect("answered inside GitHub's 10 s");
    assert_eq!(status, 408, "{answer}");
    assert_eq!(answer["error"], "body_timeout");
    assert_eq!(worker.metric("sitg_bot_errors_total").await, 0.0);
    assert_eq!(
        worker
            .metric_with("sitg_bot_webhook_rejected_total", "reason=\"body_timeout\"")
            .await,
        Some(1.0)
    );
    wait_for_reserved(&worker, |r| r == 0.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_5xx_answer_names_no_internal_address() {
    let (_, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    let backend_url = peers.backend_server.base_url();
    let backend_addr = backend_url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    // Connection refused: the error the client sees names the URL it tried.
    peers.backend_server.shutdown().await.unwrap();
    let answer = worker
        .deliver(
            peers.webhook_secret.expose(),
            "pull_request",
            "addr-1",
            opened_example(),
        )
        .await;
    assert!(answer.status >= 500, "{}: {:?}", answer.status, answer.body);
    assert_eq!(answer.body["error"], "backend_unavailable");
    assert!(
        !answer.body["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty()
    );
    let text = answer.body.to_string();
    assert!(
        !text.contains(&backend_addr) && !text.contains("http://"),
        "{text}"
    );
    // The failure itself is logged, with its detail, for the operator.
    assert!(
        eventually(Duration::from_secs(5), || {
            !worker.events("webhook_forward_failed").is_empty()
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_closed_after_the_configured_header_timeout() {
    use tokio::io::AsyncReadExt;
    let peers = peers().await;
    let worker = spawn_webhook_worker(&peers, &[("HTTP_HEADER_READ_TIMEOUT_SECONDS", "5")]).await;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", worker.port))
        .await
        .unwrap();
    let mut rest = Vec::new();
    // The default (65 s) would keep it open past this generous bound.
    let closed = tokio::time::timeout(Duration::from_secs(40), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "connection still open after 40 s");
}
