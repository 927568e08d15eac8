//! Failure drill: GitHub answers 500, a secondary rate limit, or very slowly, in bursts,
//! while the worker executes its outbox; one installation fails for the whole run.
//!
//! The backend requeues a `RETRYABLE_FAILURE` at once and forever (contract §1.6), so
//! what must hold is: bursts are ridden out (every action eventually applied, reported
//! `RETRYABLE_FAILURE` in between or retried inside the worker), an action that always
//! fails is re-claimed at a bounded rate (no hot loop), and after SIGTERM nothing stays
//! `CLAIMED`.

use std::time::{Duration, Instant};

use crate::support::*;
use sitg_sandbox::backend::{ActionStatus, NewAction, Outcome};
use sitg_sandbox::github::{Fault, FaultRule};
use uuid::Uuid;

/// Installations and what happens to them.
const SERVER_ERRORS: i64 = 11;
const SECONDARY_LIMIT: i64 = 12;
const SLOW: i64 = 13;
const ALWAYS_FAILING: i64 = 14;
const ACTIONS_PER_INSTALLATION: i64 = 4;

fn repo(installation: i64) -> String {
    format!("drill-org-{installation}/repo")
}

fn enqueue(peers: &sitg_sandbox::peers::Peers, installation: i64, count: i64) -> Vec<Uuid> {
    (1..=count)
        .map(|n| {
            peers.backend.enqueue_action(NewAction::upsert_comment(
                installation,
                installation * 100,
                &repo(installation),
                n,
                "Please stake before this pull request is reviewed.",
                &format!("sitg:gate:{}", Uuid::new_v4()),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_fault_bursts_are_ridden_out_without_a_hot_loop() {
    let _alone = one_drill_at_a_time().await;
    let peers = peers().await;
    for installation in [SERVER_ERRORS, SECONDARY_LIMIT, SLOW, ALWAYS_FAILING] {
        peers
            .github
            .add_installation(
                installation,
                &format!("drill-org-{installation}"),
                "Organization",
                [(installation * 100, repo(installation))],
            )
            .unwrap();
    }
    // Bursts: more 500s than one claim's three attempts of four actions can use up, so
    // some actions are reported RETRYABLE_FAILURE and come back; a secondary limit with
    // retry-after; four requests of 5 s each; and one installation that never recovers.
    peers.github.inject(
        FaultRule::new(Fault::Status(500))
            .installation(SERVER_ERRORS)
            .next(16),
    );
    peers.github.inject(
        FaultRule::new(Fault::SecondaryRateLimit {
            retry_after: Some(2),
        })
        .installation(SECONDARY_LIMIT)
        .next(3),
    );
    peers.github.inject(
        FaultRule::new(Fault::Latency(Duration::from_secs(5)))
            .installation(SLOW)
            .next(4),
    );
    peers
        .github
        .inject(FaultRule::new(Fault::Status(502)).installation(ALWAYS_FAILING));

    let mut recovering = Vec::new();
    for installation in [SERVER_ERRORS, SECONDARY_LIMIT, SLOW] {
        recovering.extend(enqueue(&peers, installation, ACTIONS_PER_INSTALLATION));
    }
    let stuck = enqueue(&peers, ALWAYS_FAILING, 1)[0];

    let started = Instant::now();
    let mut worker = spawn_worker(&peers, &[("OUTBOX_POLL_INTERVAL_MS", "500")]).await;
    let all_applied = peers
        .backend
        .wait_for(Duration::from_secs(45), |b| {
            recovering.iter().all(|id| {
                b.action(*id)
                    .is_some_and(|a| a.status == ActionStatus::Done)
            })
        })
        .await;
    let window = started.elapsed();
    assert!(
        all_applied,
        "actions after bursts: {:?}\n{}",
        recovering
            .iter()
            .map(|id| peers.backend.action(*id).map(|a| (a.status, a.attempts)))
            .collect::<Vec<_>>(),
        worker.logs_text()
    );

    // Bursts were answered by reports or in-worker retries, never by a lost action.
    for id in &recovering {
        let action = peers.backend.action(*id).unwrap();
        let (last, earlier) = action.results.split_last().unwrap();
        assert_eq!(last.outcome, Outcome::Succeeded, "{action:?}");
        for r in earlier {
            assert_eq!(r.outcome, Outcome::RetryableFailure, "{action:?}");
        }
        assert_eq!(action.claims.len(), action.results.len(), "{action:?}");
    }
    let server_error_retries: usize = recovering
        .iter()
        .filter_map(|id| peers.backend.action(*id))
        .filter(|a| a.installation_id == SERVER_ERRORS)
        .map(|a| a.results.len() - 1)
        .sum();
    assert!(
        server_error_retries > 0,
        "a 500 burst longer than the in-worker retries must be reported RETRYABLE_FAILURE"
    );
    assert!(
        peers
            .github
            .writes()
            .iter()
            .filter(|w| matches!(w, sitg_sandbox::github::GitHubWrite::CommentCreated { .. }))
            .count()
            >= recovering.len()
    );

    // No hot loop: the backend hands the failing action back at once, every time; the
    // worker's retries and hold keep it to a few claims, not one per second.
    let failing = peers.backend.action(stuck).unwrap();
    let claims = failing.claims.len();
    let per_second_bound = 1 + window.as_secs() as usize / 4;
    assert!(
        claims >= 1 && claims <= per_second_bound,
        "{claims} claims of an always-failing action in {window:?}"
    );
    for r in &failing.results {
        assert_eq!(r.outcome, Outcome::RetryableFailure);
        assert_eq!(r.failure_code.as_deref(), Some("EXECUTION_ERROR"), "{r:?}");
    }

    worker.sigterm();
    let exit = worker.wait_exit(Duration::from_secs(30)).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "{exit:?}\n{}",
        worker.logs_text()
    );
    assert_eq!(peers.backend.claimed_count(), 0, "nothing may stay claimed");
    let failing = peers.backend.action(stuck).unwrap();
    assert_eq!(failing.claims.len(), failing.results.len());
    assert_eq!(failing.status, ActionStatus::Pending);
    assert_eq!(peers.backend.stats().replays_rejected, 0);
    eprintln!(
        "github fault drill: {} actions applied in {window:?}; the failing one claimed {} times",
        recovering.len(),
        failing.claims.len()
    );
}
