//! The claim journal, end to end: a worker killed with SIGKILL while holding claimed
//! actions releases them when it starts again with the same `WORKER_ID` and state
//! directory; a journal that cannot be written stops the claiming and says why.

use std::time::{Duration, Instant};

use crate::support::*;

use sitg_sandbox::backend::{ActionStatus, NewAction, Outcome};
use sitg_sandbox::github::{Fault, FaultRule};
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

fn enqueue(peers: &Peers, n: i64, tag: &str) -> Vec<Uuid> {
    (0..n)
        .map(|i| {
            peers.backend.enqueue_action(NewAction::upsert_comment(
                INSTALLATION,
                9001,
                REPO,
                300 + i,
                "Gate text.",
                &format!("sitg:gate:{tag}{i}"),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_with_25_claimed_actions_then_restart_releases_all_25() {
    let peers = setup().await;
    // GitHub hangs: every claimed action is still running or waiting when the kill comes.
    let slow = peers
        .github
        .inject(FaultRule::new(Fault::Latency(Duration::from_secs(120))));
    let ids = enqueue(&peers, 25, "k");
    let state = tempfile::tempdir().expect("tempdir");
    let state_dir = state.path().to_str().expect("utf-8 path").to_owned();
    let worker_id = "journal-e2e-1";
    let env = [
        ("WORKER_ID", worker_id),
        ("WORKER_STATE_DIR", state_dir.as_str()),
        ("OUTBOX_CONCURRENCY", "4"),
    ];
    let mut first = spawn_worker(&peers, &env).await;
    assert!(
        eventually(Duration::from_secs(10), || peers.backend.claimed_count()
            == 25)
        .await,
        "25 claimed; logs:\n{}",
        first.logs_text()
    );
    // The ids are journalled right after the claim's answer, before anything runs (a
    // kill in between those few milliseconds leaves them to `sitg-bot release`).
    let journal_dir = state.path().join("claims").join(worker_id);
    let journalled = || std::fs::read_dir(&journal_dir).map_or(0, |d| d.count());
    assert!(
        eventually(Duration::from_secs(5), || journalled() == 25).await,
        "one journal entry per claimed action, found {}",
        journalled()
    );
    first.child.kill().expect("SIGKILL");
    first.child.wait().expect("reaped");
    assert_eq!(
        peers.backend.claimed_count(),
        25,
        "killed without reporting: all 25 stay claimed"
    );

    // GitHub answers again; a new process with the same WORKER_ID starts.
    assert!(peers.github.remove_fault(slow));
    let started = Instant::now();
    let second = spawn_worker(&peers, &env).await;
    let released = |peers: &Peers| {
        ids.iter()
            .filter(|id| {
                peers.backend.action(**id).is_some_and(|a| {
                    a.results.first().is_some_and(|r| {
                        r.worker_id == worker_id
                            && r.outcome == Outcome::RetryableFailure
                            && r.failure_code.as_deref() == Some("WORKER_RESTARTED")
                    })
                })
            })
            .count()
    };
    assert!(
        eventually(
            Duration::from_secs(5).saturating_sub(started.elapsed()),
            || { released(&peers) == 25 }
        )
        .await,
        "{} of 25 released within 5 s of the start; logs:\n{}",
        released(&peers),
        second.logs_text()
    );
    let release_lines = second.events("claim_journal_releasing");
    assert_eq!(release_lines.len(), 1);
    assert_eq!(release_lines[0]["count"], 25);

    // Released, claimed again and executed: each pull request ends with one comment.
    assert!(
        eventually(Duration::from_secs(30), || {
            ids.iter()
                .all(|id| peers.backend.action(*id).map(|a| a.status) == Some(ActionStatus::Done))
        })
        .await,
        "all done after the restart; logs:\n{}",
        second.logs_text()
    );
    for i in 0..25 {
        assert_eq!(
            peers.github.comments(REPO, 300 + i).len(),
            1,
            "PR {}",
            300 + i
        );
    }
    assert!(
        eventually(Duration::from_secs(5), || {
            std::fs::read_dir(state.path().join("claims").join(worker_id))
                .map(|d| d.count() == 0)
                .unwrap_or(false)
        })
        .await,
        "reported actions leave the journal"
    );
    assert_eq!(
        second
            .metric("sitg_bot_outbox_claim_journal_released_total")
            .await,
        25.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_journal_stops_claiming_and_says_why() {
    let peers = setup().await;
    let ids = enqueue(&peers, 3, "u");
    let dir = tempfile::tempdir().expect("tempdir");
    // A file where the state directory should be: nothing can be written below it.
    let blocked = dir.path().join("state");
    std::fs::write(&blocked, b"").expect("write");
    let worker = spawn_worker(
        &peers,
        &[
            ("WORKER_STATE_DIR", blocked.to_str().expect("utf-8")),
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
        ],
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        peers.backend.stats().claims,
        0,
        "no claim without a journal"
    );
    assert_eq!(peers.backend.pending_count(), 3);
    let ready: serde_json::Value = worker
        .client
        .get(worker.url("/readyz"))
        .send()
        .await
        .expect("readyz")
        .json()
        .await
        .expect("json");
    let warnings = ready["warnings"].to_string();
    assert!(
        ready["status"] == "ready" && warnings.contains("not claiming outbox actions"),
        "{ready}"
    );
    assert_eq!(
        worker
            .metric("sitg_bot_outbox_claim_journal_writable")
            .await,
        0.0
    );
    assert!(!worker.events("outbox_claiming_paused").is_empty());

    // Writable again: claiming resumes by itself.
    std::fs::remove_file(&blocked).expect("unblock");
    assert!(
        eventually(Duration::from_secs(15), || {
            ids.iter()
                .all(|id| peers.backend.action(*id).map(|a| a.status) == Some(ActionStatus::Done))
        })
        .await,
        "claims resume; logs:\n{}",
        worker.logs_text()
    );
    assert_eq!(
        worker
            .metric("sitg_bot_outbox_claim_journal_writable")
            .await,
        1.0
    );
}

/// The journal lost with its node: `sitg-bot release` gives the actions back by hand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_by_hand_after_the_journal_is_lost() {
    let peers = setup().await;
    let slow = peers
        .github
        .inject(FaultRule::new(Fault::Latency(Duration::from_secs(120))));
    let ids = enqueue(&peers, 3, "r");
    let worker_id = "journal-e2e-lost";
    let mut worker = spawn_worker(&peers, &[("WORKER_ID", worker_id)]).await;
    assert!(
        eventually(Duration::from_secs(10), || peers.backend.claimed_count()
            == 3)
        .await
    );
    worker.child.kill().expect("SIGKILL");
    worker.child.wait().expect("reaped");
    peers.github.remove_fault(slow);

    let release = |ids: &[Uuid]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
            .arg("release")
            .args(["--worker-id", worker_id])
            .args(ids.iter().map(Uuid::to_string))
            .env_clear()
            .env("BACKEND_BASE_URL", peers.backend_server.base_url())
            .env("BACKEND_BOT_KEY_ID", sitg_sandbox::peers::SANDBOX_KEY_ID)
            .env("BACKEND_INTERNAL_HMAC_SECRET", peers.hmac_secret.expose())
            .output()
            .expect("sitg-bot release runs")
    };
    let out = release(&ids);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.matches("released (PENDING)").count(), 3, "{stdout}");
    for id in &ids {
        let record = peers.backend.action(*id).expect("action");
        assert_eq!(record.status, ActionStatus::Pending);
        assert_eq!(record.last_failure_code(), Some("RELEASED_BY_OPERATOR"));
    }
    // Released already: the backend refuses (409) and the command says so.
    let again = release(&ids[..1]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("not released"));
}
