//! Every log line of the real worker reads well in a log pipeline (issue 13, item 5):
//! a JSON object with a non-empty human `message` beside its `event`, and no Rust
//! `Debug` rendering (`Some(…)`, `None`, `Namespace("…")`, `Created { … }`) in a
//! value. The worker goes through start, a webhook delivery, an outbox claim with its
//! claim journal, and a SIGTERM shutdown.

use std::time::Duration;

use crate::support::*;
use serde_json::Value;
use sitg_sandbox::backend::{ActionStatus, NewAction};

const INSTALLATION: i64 = 7_713;
const REPO: &str = "log-org/lines";

/// Why `value` looks like a Rust `Debug` rendering rather than a loggable value.
fn debug_rendering(value: &str) -> Option<&'static str> {
    let struct_like = regex::Regex::new(r"\b[A-Z][A-Za-z]+ \{ [a-z_]+: ").expect("regex");
    let tuple_like = regex::Regex::new(r#"\b[A-Z][A-Za-z]+\("|\b(Some|Ok|Err)\("#).expect("regex");
    if value == "None" {
        Some("None")
    } else if tuple_like.is_match(value) {
        Some("a tuple variant")
    } else if struct_like.is_match(value) {
        Some("a struct")
    } else if value.starts_with("[\"") && value.ends_with("\"]") {
        Some("a Vec")
    } else {
        None
    }
}

/// Problems of one JSON log line, empty when it is fine.
fn problems(line: &str) -> Vec<String> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
        return vec!["not a JSON object".to_owned()];
    };
    let mut found = Vec::new();
    match fields.get("message").and_then(Value::as_str) {
        Some(message) if !message.trim().is_empty() => {}
        _ => found.push("no message".to_owned()),
    }
    if fields.get("event").and_then(Value::as_str).is_none() {
        found.push("no event".to_owned());
    }
    for (key, value) in &fields {
        if let Some(kind) = value.as_str().and_then(debug_rendering) {
            found.push(format!("{key} is {kind}"));
        }
    }
    found
}

#[test]
fn the_checker_catches_the_renderings_it_is_for() {
    let line = r#"{"event":"x","message":"m","a":"Some(127.0.0.1:9)","b":"Namespace(\"bots\")","c":"None","d":"Created { comment_id: 1 }","e":"[\"Secret\"]"}"#;
    assert_eq!(problems(line).len(), 5, "{:?}", problems(line));
    assert_eq!(problems(r#"{"event":"x"}"#), ["no message"]);
    let fine = r#"{"event":"x","message":"m","error":"error sending request (connection refused)","addr":"127.0.0.1:9"}"#;
    assert!(problems(fine).is_empty(), "{:?}", problems(fine));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_line_has_a_message_and_no_debug_value() {
    let (_examples, peers) = peers_for_examples().await;
    peers
        .github
        .add_installation(INSTALLATION, "log-org", "Organization", [(77_130, REPO)])
        .unwrap();
    let action = peers.backend.enqueue_action(NewAction::upsert_comment(
        INSTALLATION,
        77_130,
        REPO,
        3,
        "Stake to keep this PR open.",
        "sitg:gate:log-lines",
    ));
    let state = tempfile::tempdir().expect("tempdir");
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port().to_string())
        .expect("a free port");
    let mut worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
            ("METRICS_PORT", &metrics_port),
            (
                "WORKER_STATE_DIR",
                state.path().to_str().expect("utf-8 path"),
            ),
        ],
    )
    .await;
    let secret = peers.webhook_secret.expose().to_owned();
    let delivery = uuid::Uuid::new_v4().to_string();
    let answer = worker
        .deliver(&secret, "pull_request", &delivery, opened_body())
        .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    let done = eventually(Duration::from_secs(30), || {
        peers
            .backend
            .action(action)
            .is_some_and(|a| a.status == ActionStatus::Done)
            && !worker.events("action_reported").is_empty()
    })
    .await;
    assert!(done, "action not done:\n{}", worker.logs_text());
    let status = worker.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    // The reader thread has the last lines once the pipe closed.
    assert!(
        eventually(Duration::from_secs(5), || !worker
            .events("worker_stopped")
            .is_empty())
        .await,
        "{}",
        worker.logs_text()
    );

    for event in [
        "worker_starting",
        "outbox_started",
        "webhook_forwarded",
        "outbox_claimed",
        "comment_upserted",
        "action_reported",
        "signal",
        "worker_stopping",
        "outbox_stopped",
        "worker_stopped",
    ] {
        assert!(
            !worker.events(event).is_empty(),
            "no {event} line:\n{}",
            worker.logs_text()
        );
    }
    let starting = &worker.events("worker_starting")[0];
    assert_eq!(
        starting["metrics_addr"],
        format!("127.0.0.1:{metrics_port}").as_str()
    );
    let logs = worker.logs.lock().unwrap().clone();
    let bad: Vec<String> = logs
        .iter()
        .filter_map(|line| {
            let found = problems(line);
            (!found.is_empty()).then(|| format!("{}: {line}", found.join(", ")))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "lines that do not read well:\n{}",
        bad.join("\n")
    );
}
