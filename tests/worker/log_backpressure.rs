//! Claim and result records survive a stdout that does not keep up (issue 9, item 9):
//! the real worker, logging at `trace` (thousands of lines), with its stdout a pipe that
//! nobody reads while it claims and executes 800 actions (about 20 lines each). Other lines may be
//! dropped then; the `outbox_claimed` lines (the only record for releasing actions after
//! a SIGKILL) and the `action_reported` lines may not.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::*;
use sitg_sandbox::backend::{ActionStatus, NewAction};
use uuid::Uuid;

const INSTALLATION: i64 = 61;
const REPO_ID: i64 = 6100;
const REPO: &str = "backpressure-org/repo";
const ACTIONS: i64 = 800;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_ids_are_all_logged_when_stdout_is_back_pressured() {
    let _alone = one_drill_at_a_time().await;
    let peers = peers().await;
    peers
        .github
        .add_installation(
            INSTALLATION,
            "backpressure-org",
            "Organization",
            [(REPO_ID, REPO)],
        )
        .unwrap();
    let ids: Vec<Uuid> = (1..=ACTIONS)
        .map(|pr| {
            peers.backend.enqueue_action(NewAction::upsert_comment(
                INSTALLATION,
                REPO_ID,
                REPO,
                pr,
                "Please stake before review.",
                &format!("sitg:gate:{}", Uuid::new_v4()),
            ))
        })
        .collect();

    let mut worker = spawn_worker_logging(
        &peers,
        &[
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
            ("OUTBOX_CLAIM_LIMIT", "100"),
        ],
        "trace",
        false,
    )
    .await;
    // Every action is executed and reported while nobody reads stdout.
    let done = peers
        .backend
        .wait_for(Duration::from_secs(90), |b| {
            ids.iter().all(|id| {
                b.action(*id)
                    .is_some_and(|a| a.status == ActionStatus::Done)
            })
        })
        .await;
    assert!(
        done,
        "{} of {ACTIONS} actions done",
        peers.backend.count(ActionStatus::Done)
    );
    // The back-pressure was real: the lossy queue dropped lines meanwhile.
    let dropped = worker.metric("sitg_bot_log_lines_dropped_total").await;
    // Then stdout is read, the worker stopped, and its log read to the end.
    let reader = worker.read_stdout().expect("stdout not read yet");
    worker.terminate(Duration::from_secs(30)).await;
    tokio::task::spawn_blocking(move || reader.join())
        .await
        .expect("reader task")
        .expect("reader thread");

    let logged_claims: BTreeSet<String> = worker
        .events("outbox_claimed")
        .iter()
        .filter_map(|e| e["action_ids"].as_str().map(str::to_owned))
        .flat_map(|ids| ids.split(',').map(str::to_owned).collect::<Vec<_>>())
        .collect();
    let logged_reports: BTreeSet<String> = worker
        .events("action_reported")
        .iter()
        .filter_map(|e| e["action_id"].as_str().map(str::to_owned))
        .collect();
    let missing_claims: Vec<String> = ids
        .iter()
        .map(Uuid::to_string)
        .filter(|id| !logged_claims.contains(id))
        .collect();
    let missing_reports = ids
        .iter()
        .map(Uuid::to_string)
        .filter(|id| !logged_reports.contains(id))
        .count();
    let lines = worker.logs.lock().unwrap().len();
    assert!(
        missing_claims.is_empty(),
        "{} of {ACTIONS} claimed ids missing from outbox_claimed lines ({lines} lines read), \
         e.g. {:?}",
        missing_claims.len(),
        missing_claims.first()
    );
    assert_eq!(
        missing_reports, 0,
        "action_reported lines missing ({lines} lines read)"
    );
    assert_eq!(
        worker.events("outbox_stopped").len(),
        1,
        "the outbox's last line is a record too"
    );
    assert!(
        dropped > 0.0,
        "no log line was dropped: stdout was not back-pressured ({lines} lines read)"
    );
}
