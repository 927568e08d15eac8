//! Every log line of the real worker reads well in a log pipeline (issue 13, item 5):
//! a JSON object with a non-empty human `message` beside its `event`, and no Rust
//! `Debug` rendering (`Some(…)`, `None`, `Namespace("…")`, `Created { … }`) in a
//! value. The worker goes through start, a webhook delivery, an outbox claim with its
//! claim journal, and a SIGTERM shutdown.

use std::time::Duration;

use crate::log_check::problems;
use crate::support::*;
use sitg_sandbox::backend::{ActionStatus, NewAction};

const INSTALLATION: i64 = 7_713;
const REPO: &str = "log-org/lines";

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
            let found = problems(line, true);
            (!found.is_empty()).then(|| format!("{}: {line}", found.join(", ")))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "lines that do not read well:\n{}",
        bad.join("\n")
    );
}
