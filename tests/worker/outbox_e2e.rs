//! The outbox, end to end: the real worker binary claims actions from the backend
//! simulator, executes them on the GitHub simulator and reports each result.

use std::time::{Duration, Instant};

use crate::support::*;
use sitg_sandbox::backend::{ActionRecord, ActionStatus, NewAction, Outcome};
use sitg_sandbox::github::{Fault, FaultRule, Route};
use sitg_sandbox::peers::Peers;
use uuid::Uuid;

const REPO: &str = "octo-org/widgets";
const INSTALLATION: i64 = 31;

async fn setup() -> Peers {
    let peers = peers().await;
    peers
        .github
        .add_installation(INSTALLATION, "octo-org", "Organization", [(9001, REPO)])
        .unwrap();
    peers
}

fn upsert(pr: i64, markdown: &str, marker: &str) -> NewAction {
    NewAction::upsert_comment(INSTALLATION, 9001, REPO, pr, markdown, marker)
}

async fn settled(peers: &Peers, ids: &[Uuid], timeout: Duration) -> Vec<ActionRecord> {
    let ok = eventually(timeout, || {
        ids.iter().all(|id| {
            matches!(
                peers.backend.action(*id).map(|a| a.status),
                Some(ActionStatus::Done | ActionStatus::Failed)
            )
        })
    })
    .await;
    let records: Vec<ActionRecord> = ids
        .iter()
        .map(|id| peers.backend.action(*id).unwrap())
        .collect();
    assert!(ok, "actions did not settle: {records:#?}");
    records
}

fn fast_poll() -> [(&'static str, &'static str); 1] {
    [("OUTBOX_POLL_INTERVAL_MS", "500")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_marked_comment_on_page_three_is_updated_not_duplicated() {
    let peers = setup().await;
    let marker = "sitg:gate:page-three";
    // 250 comments a second apart; the App's marked one is the 231st (page 3 of 100).
    let start = chrono::Utc::now() - chrono::Duration::seconds(300);
    for i in 0..250 {
        let at = start + chrono::Duration::seconds(i);
        let (author, body) = if i == 230 {
            (
                "sitg-bot[bot]",
                format!("old gate text\n\n<!-- {marker} -->"),
            )
        } else {
            ("octocat", format!("comment {i}"))
        };
        peers
            .github
            .add_comment(REPO, 42, author, &body, at)
            .unwrap();
    }
    let id = peers
        .backend
        .enqueue_action(upsert(42, "New gate text.", marker));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    let records = settled(&peers, &[id], Duration::from_secs(20)).await;
    assert_eq!(records[0].status, ActionStatus::Done);
    let comments = peers.github.comments(REPO, 42);
    assert_eq!(comments.len(), 250, "no new comment may appear");
    let marked: Vec<_> = comments
        .iter()
        .filter(|c| c.body.contains(marker))
        .collect();
    assert_eq!(marked.len(), 1);
    assert_eq!(
        marked[0].body,
        format!("New gate text.\n\n<!-- {marker} -->")
    );
    assert_eq!(comments[230].id, marked[0].id);
    // 3 pages listed + 1 update + 1 token mint.
    let stats = peers.github.stats();
    assert_eq!(stats.requests_to(Route::ListIssueComments), 3);
    assert_eq!(stats.requests_to(Route::UpdateIssueComment), 1);
    assert_eq!(stats.requests_to(Route::CreateIssueComment), 0);
    assert_eq!(
        stats.header_violations, 0,
        "{:?}",
        stats.header_violation_samples
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_comment_is_created_then_updated_in_place() {
    let peers = setup().await;
    let first = peers.backend.enqueue_action(upsert(
        7,
        "  Stake 10 USDC to keep this PR open.\n",
        "sitg:gate:c1",
    ));
    let worker = spawn_worker(&peers, &fast_poll()).await;
    settled(&peers, &[first], Duration::from_secs(20)).await;
    let comments = peers.github.comments(REPO, 7);
    assert_eq!(comments.len(), 1);
    assert_eq!(
        comments[0].body,
        "Stake 10 USDC to keep this PR open.\n\n<!-- sitg:gate:c1 -->"
    );
    assert!(comments[0].author_is_bot);
    let second =
        peers
            .backend
            .enqueue_action(upsert(7, "Stake received, thank you.", "sitg:gate:c1"));
    settled(&peers, &[second], Duration::from_secs(20)).await;
    let comments = peers.github.comments(REPO, 7);
    assert_eq!(comments.len(), 1);
    assert_eq!(
        comments[0].body,
        "Stake received, thank you.\n\n<!-- sitg:gate:c1 -->"
    );
    assert_eq!(
        worker.metric("sitg_bot_outbox_actions_success_total").await,
        2.0
    );
    assert!(worker.metric("sitg_bot_outbox_claim_total").await >= 2.0);
    assert_eq!(
        worker.metric("sitg_bot_outbox_actions_claimed_total").await,
        2.0
    );
    // Every claimed id is in the logs, so stuck ones can be released by hand.
    let claimed_ids: String = worker
        .events("outbox_claimed")
        .iter()
        .map(|e| e["action_ids"].to_string())
        .collect();
    assert!(claimed_ids.contains(&first.to_string()) && claimed_ids.contains(&second.to_string()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_with_comment_closes_the_pull_request_and_comments() {
    let peers = setup().await;
    peers.github.add_pull_request(REPO, 9).unwrap();
    let id = peers.backend.enqueue_action(NewAction::close_with_comment(
        INSTALLATION,
        9001,
        REPO,
        9,
        "Closed: no stake.",
        "sitg:close:9",
        "NO_STAKE",
    ));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    let records = settled(&peers, &[id], Duration::from_secs(20)).await;
    assert_eq!(records[0].status, ActionStatus::Done);
    assert_eq!(
        peers.github.pull_request_state(REPO, 9).map(|s| s.as_str()),
        Some("closed")
    );
    let comments = peers.github.comments(REPO, 9);
    assert_eq!(comments.len(), 1);
    assert!(comments[0].body.ends_with("<!-- sitg:close:9 -->"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_and_unsupported_actions_fail_without_touching_github() {
    let peers = setup().await;
    let traversal = peers.backend.enqueue_action(NewAction {
        repo_full_name: "org/repo/../../x".to_owned(),
        ..upsert(1, "x", "m")
    });
    let empty = peers.backend.enqueue_action(upsert(1, "", "sitg:gate:e"));
    let unknown = peers.backend.enqueue_action(NewAction {
        action_type: "MERGE_PR".to_owned(),
        ..upsert(1, "x", "m")
    });
    let zero = peers.backend.enqueue_action(upsert(0, "x", "m"));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    let records = settled(
        &peers,
        &[traversal, empty, unknown, zero],
        Duration::from_secs(20),
    )
    .await;
    let codes: Vec<_> = records
        .iter()
        .map(|r| (r.status, r.last_failure_code().map(str::to_owned)))
        .collect();
    assert_eq!(
        codes,
        vec![
            (
                ActionStatus::Failed,
                Some("INVALID_ACTION_PAYLOAD".to_owned())
            ),
            (
                ActionStatus::Failed,
                Some("INVALID_ACTION_PAYLOAD".to_owned())
            ),
            (ActionStatus::Failed, Some("UNSUPPORTED_ACTION".to_owned())),
            (
                ActionStatus::Failed,
                Some("INVALID_ACTION_PAYLOAD".to_owned())
            ),
        ]
    );
    assert_eq!(
        peers.github.stats().total_requests(),
        0,
        "GitHub must not be called"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_installation_fails_as_installation_not_found() {
    let peers = setup().await;
    let id = peers.backend.enqueue_action(NewAction::upsert_comment(
        999_999,
        1,
        "nobody/nothing",
        1,
        "x",
        "sitg:gate:x",
    ));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    let records = settled(&peers, &[id], Duration::from_secs(20)).await;
    assert_eq!(records[0].status, ActionStatus::Failed);
    assert_eq!(
        records[0].last_failure_code(),
        Some("INSTALLATION_NOT_FOUND")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_installation_id_falls_back_to_the_repositorys_installation() {
    let peers = setup().await;
    // The backend still names installation 30; GitHub moved the repository to 31.
    let id = peers.backend.enqueue_action(NewAction::upsert_comment(
        30,
        9001,
        REPO,
        3,
        "moved",
        "sitg:gate:moved",
    ));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    let records = settled(&peers, &[id], Duration::from_secs(20)).await;
    assert_eq!(records[0].status, ActionStatus::Done, "{records:#?}");
    assert_eq!(peers.github.comments(REPO, 3).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_github_refusals_fail_with_their_own_code() {
    let peers = setup().await;
    peers.github.set_permission_denied(REPO, true).unwrap();
    let id = peers.backend.enqueue_action(upsert(5, "x", "sitg:gate:p"));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    let records = settled(&peers, &[id], Duration::from_secs(20)).await;
    assert_eq!(records[0].status, ActionStatus::Failed);
    assert_eq!(
        records[0].last_failure_code(),
        Some("GITHUB_PERMISSION_DENIED")
    );
    assert_eq!(records[0].attempts, 1, "a permanent refusal is not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_500s_are_retried_in_the_worker_then_reported_retryable() {
    let peers = setup().await;
    peers.github.inject(
        FaultRule::new(Fault::Status(500))
            .route(Route::ListIssueComments)
            .next(3),
    );
    let id = peers.backend.enqueue_action(upsert(11, "x", "sitg:gate:r"));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    let records = settled(&peers, &[id], Duration::from_secs(40)).await;
    let record = &records[0];
    // Three attempts inside the worker hit the three 500s: reported RETRYABLE once,
    // then the requeued action succeeds on its next claim.
    assert_eq!(
        record.results.first().map(|r| r.outcome),
        Some(Outcome::RetryableFailure),
        "{record:#?}"
    );
    assert_eq!(
        record
            .results
            .first()
            .and_then(|r| r.failure_code.as_deref()),
        Some("EXECUTION_ERROR")
    );
    assert_eq!(record.status, ActionStatus::Done);
    assert_eq!(record.attempts, 2);
    // On its second claim the action was held (attempts = 2 → 1 s) before executing,
    // so a failing action cannot circle in a hot loop.
    let held = record.results[1].at - record.claims[1].at;
    assert!(held >= chrono::Duration::milliseconds(900), "{held:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_retries_never_trips_the_single_use_signature_check() {
    let peers = setup().await;
    peers
        .github
        .inject(FaultRule::new(Fault::Status(502)).for_duration(Duration::from_secs(4)));
    let ids: Vec<Uuid> = (0..30)
        .map(|i| {
            peers
                .backend
                .enqueue_action(upsert(100 + i, "x", &format!("sitg:gate:b{i}")))
        })
        .collect();
    let _worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
            ("OUTBOX_CLAIM_LIMIT", "10"),
        ],
    )
    .await;
    let records = settled(&peers, &ids, Duration::from_secs(60)).await;
    assert!(
        records.iter().all(|r| r.status == ActionStatus::Done),
        "{records:#?}"
    );
    let stats = peers.backend.stats();
    assert_eq!(stats.replays_rejected, 0, "{stats:#?}");
    assert_eq!(stats.auth_failures_total(), 0, "{stats:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_over_githubs_limit_are_cut_keeping_the_marker() {
    let peers = setup().await;
    let id = peers
        .backend
        .enqueue_action(upsert(12, &"x".repeat(70_000), "sitg:gate:long"));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    let records = settled(&peers, &[id], Duration::from_secs(20)).await;
    assert_eq!(records[0].status, ActionStatus::Done);
    let body = &peers.github.comments(REPO, 12)[0].body;
    assert!(body.chars().count() <= 65_536);
    assert!(body.ends_with("<!-- sitg:gate:long -->"));
    assert!(body.contains("shortened"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_duplicates_are_collapsed_onto_the_oldest() {
    let peers = setup().await;
    let now = chrono::Utc::now();
    let oldest = peers
        .github
        .add_comment(
            REPO,
            13,
            "sitg-bot[bot]",
            "a\n\n<!-- sitg:gate:d -->",
            now - chrono::Duration::seconds(60),
        )
        .unwrap();
    peers
        .github
        .add_comment(
            REPO,
            13,
            "sitg-bot[bot]",
            "b\n\n<!-- sitg:gate:d -->",
            now - chrono::Duration::seconds(30),
        )
        .unwrap();
    let id = peers.backend.enqueue_action(upsert(13, "c", "sitg:gate:d"));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    settled(&peers, &[id], Duration::from_secs(20)).await;
    let comments = peers.github.comments(REPO, 13);
    assert_eq!(comments.len(), 1);
    assert_eq!(comments[0].id, oldest);
    assert_eq!(comments[0].body, "c\n\n<!-- sitg:gate:d -->");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_25_claimed_actions_reports_all_25() {
    let peers = setup().await;
    // GitHub is slow: every action is still running or waiting when SIGTERM comes.
    peers
        .github
        .inject(FaultRule::new(Fault::Latency(Duration::from_secs(3))));
    let ids: Vec<Uuid> = (0..25)
        .map(|i| {
            peers
                .backend
                .enqueue_action(upsert(200 + i, "x", &format!("sitg:gate:s{i}")))
        })
        .collect();
    let mut worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_CONCURRENCY", "4"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "20"),
        ],
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), || peers.backend.claimed_count()
            == 25)
        .await,
        "25 claimed"
    );
    let started = Instant::now();
    let status = worker.terminate(Duration::from_secs(30)).await;
    assert!(status.success(), "exit {status:?}");
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(
        peers.backend.claimed_count(),
        0,
        "no action may stay claimed; logs:\n{}",
        worker.logs_text()
    );
    for id in &ids {
        let record = peers.backend.action(*id).unwrap();
        assert_eq!(record.results.len(), 1, "{record:#?}");
        assert!(
            matches!(record.status, ActionStatus::Done | ActionStatus::Pending),
            "{record:#?}"
        );
    }
    let released = ids
        .iter()
        .filter(|id| {
            peers.backend.action(**id).unwrap().last_failure_code() == Some("WORKER_SHUTDOWN")
        })
        .count();
    assert!(released > 0, "unstarted actions are released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_outage_while_reporting_loses_no_result() {
    let peers = setup().await;
    // GitHub takes 2 s, long enough to take the backend down while the action runs.
    peers
        .github
        .inject(FaultRule::new(Fault::Latency(Duration::from_secs(2))).next(2));
    let id = peers
        .backend
        .enqueue_action(upsert(300, "x", "sitg:gate:outage"));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    assert!(
        eventually(Duration::from_secs(10), || peers.backend.claimed_count()
            == 1)
        .await
    );
    peers.backend.set_unavailable(true);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        peers.backend.claimed_count(),
        1,
        "the result cannot have landed yet"
    );
    peers.backend.set_unavailable(false);
    let records = settled(&peers, &[id], Duration::from_secs(40)).await;
    assert_eq!(records[0].status, ActionStatus::Done, "{records:#?}");
    assert_eq!(records[0].results.len(), 1);
    assert_eq!(peers.backend.stats().replays_rejected, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_on_one_comment_apply_in_order_without_duplicates() {
    let peers = setup().await;
    let base = chrono::Utc::now() - chrono::Duration::seconds(10);
    let ids: Vec<Uuid> = (1..=4)
        .map(|v| {
            peers.backend.enqueue_action(NewAction {
                created_at: Some(base + chrono::Duration::seconds(v)),
                ..upsert(400, &format!("version {v}"), "sitg:gate:ordered")
            })
        })
        .collect();
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    settled(&peers, &ids, Duration::from_secs(20)).await;
    let comments = peers.github.comments(REPO, 400);
    assert_eq!(comments.len(), 1, "{comments:#?}");
    assert_eq!(comments[0].body, "version 4\n\n<!-- sitg:gate:ordered -->");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persons_comment_quoting_the_marker_is_never_touched() {
    let peers = setup().await;
    let quoted = "I saw <!-- sitg:gate:quoted --> in the source";
    let theirs = peers
        .github
        .add_comment(REPO, 401, "mallory", quoted, chrono::Utc::now())
        .unwrap();
    let id = peers
        .backend
        .enqueue_action(upsert(401, "Gate text.", "sitg:gate:quoted"));
    let _worker = spawn_worker(&peers, &fast_poll()).await;
    settled(&peers, &[id], Duration::from_secs(20)).await;
    let comments = peers.github.comments(REPO, 401);
    assert_eq!(comments.len(), 2);
    let person = comments
        .iter()
        .find(|c| c.id == theirs)
        .expect("their comment stays");
    assert_eq!(person.body, quoted);
    assert!(
        comments
            .iter()
            .any(|c| c.author_is_bot && c.body == "Gate text.\n\n<!-- sitg:gate:quoted -->")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_actions_do_not_starve_the_rest_of_the_queue() {
    let peers = setup().await;
    peers
        .github
        .add_installation(
            32,
            "healthy-org",
            "Organization",
            [(9100, "healthy-org/app")],
        )
        .unwrap();
    // Installation 31 always fails; its actions are older, so the backend hands them
    // out first, again and again.
    peers
        .github
        .inject(FaultRule::new(Fault::Status(500)).installation(INSTALLATION));
    let old = chrono::Utc::now() - chrono::Duration::seconds(60);
    for i in 0..8 {
        peers.backend.enqueue_action(NewAction {
            created_at: Some(old),
            ..upsert(500 + i, "x", &format!("sitg:gate:f{i}"))
        });
    }
    let healthy = peers.backend.enqueue_action(NewAction::upsert_comment(
        32,
        9100,
        "healthy-org/app",
        1,
        "ok",
        "sitg:gate:healthy",
    ));
    let _worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
            ("OUTBOX_CLAIM_LIMIT", "2"),
        ],
    )
    .await;
    let records = settled(&peers, &[healthy], Duration::from_secs(30)).await;
    assert_eq!(records[0].status, ActionStatus::Done);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_hmac_secret_is_named_in_readiness_metrics_and_logs() {
    let peers = setup().await;
    let worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
            ("BACKEND_INTERNAL_HMAC_SECRET", "not-the-provisioned-secret"),
        ],
    )
    .await;
    // The claim loop signs with the wrong secret; the simulator answers 403.
    let client = reqwest::Client::new();
    let mut warnings = serde_json::Value::Null;
    let flagged = {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = client.get(worker.url("/readyz")).send().await.unwrap();
            // Still ready: the backend answers, and readiness must not hinge on a call
            // that a webhook-only worker would never make again.
            assert_eq!(ready.status(), 200);
            let body: serde_json::Value = ready.json().await.unwrap();
            if !body["warnings"].is_null() {
                warnings = body["warnings"].clone();
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    assert!(
        flagged,
        "no warning in /readyz; logs:\n{}",
        worker.logs_text()
    );
    let hint = warnings[0].as_str().unwrap();
    assert!(
        hint.contains("403") && hint.contains("BACKEND_INTERNAL_HMAC_SECRET"),
        "{hint}"
    );
    assert_eq!(worker.metric("sitg_bot_backend_refusing").await, 1.0);
    // Log lines reach stdout through a background writer: wait for the first one.
    eventually(Duration::from_secs(5), || {
        !worker.events("backend_refusing").is_empty()
    })
    .await;
    let logged = worker.events("backend_refusing");
    assert_eq!(logged.len(), 1, "logged once, not on every claim");
    assert_eq!(logged[0]["status"], 403);
    assert!(!worker.logs_text().contains("not-the-provisioned-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_healthy_worker_reports_no_refusal() {
    let peers = setup().await;
    let id = peers
        .backend
        .enqueue_action(upsert(7, "Gate text.", "sitg:gate:ok"));
    let worker = spawn_worker(&peers, &fast_poll()).await;
    settled(&peers, &[id], Duration::from_secs(20)).await;
    let body: serde_json::Value = reqwest::get(worker.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body, serde_json::json!({"status": "ready"}));
    assert_eq!(worker.metric("sitg_bot_backend_refusing").await, 0.0);
}
