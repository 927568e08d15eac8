//! Failure drill: SIGTERM while the worker holds more claimed actions than it executes
//! at once and webhooks are in flight — what Kubernetes does at every rollout.
//!
//! Must hold: webhooks received before the signal are answered (forwarded, 200);
//! every claimed action is reported exactly once (applied, or released as
//! `RETRYABLE_FAILURE` `WORKER_SHUTDOWN`), so nothing stays `CLAIMED` (contract §1.4);
//! the process exits 0 inside Kubernetes' default 30 s grace period.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use sitg_sandbox::backend::{ActionStatus, GatePolicy, NewAction, Outcome};
use sitg_sandbox::github::{Fault, FaultRule};
use uuid::Uuid;

const INSTALLATION: i64 = 21;
/// Two claims' worth at the default limit of 25, more than `OUTBOX_CONCURRENCY` (16).
const ACTIONS: i64 = 40;
/// Kubernetes' default `terminationGracePeriodSeconds`.
const GRACE_PERIOD: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_full_batch_and_live_webhooks() {
    let _alone = one_drill_at_a_time().await;
    let peers = peers().await;
    let repos: Vec<(i64, String)> = (1..=5)
        .map(|r| (INSTALLATION * 100 + r, format!("term-org/repo-{r}")))
        .collect();
    peers
        .github
        .add_installation(INSTALLATION, "term-org", "Organization", repos.clone())
        .unwrap();
    // Every GitHub call takes 1.5 s, so executing actions are mid-call at the signal;
    // every backend call 400 ms, so webhooks are mid-forward.
    peers
        .github
        .inject(FaultRule::new(Fault::Latency(Duration::from_millis(1500))));
    peers.backend.set_latency(Duration::from_millis(400));
    // The deliveries' own gate actions would join the outbox; keep it to the 40 below.
    peers.backend.set_policy(GatePolicy {
        enqueue_actions: false,
        ..GatePolicy::default()
    });
    let ids: BTreeSet<Uuid> = (0..ACTIONS)
        .map(|n| {
            let (repo_id, name) = &repos[(n % 5) as usize];
            peers.backend.enqueue_action(NewAction::upsert_comment(
                INSTALLATION,
                *repo_id,
                name,
                n + 1,
                "Stake to keep this pull request open.",
                &format!("sitg:gate:{}", Uuid::new_v4()),
            ))
        })
        .collect();

    let mut worker = spawn_worker(&peers, &[("OUTBOX_POLL_INTERVAL_MS", "500")]).await;
    let secret = peers.webhook_secret.expose().to_owned();
    let traffic = worker.traffic(&secret, Arc::new(opened_body()), Duration::from_millis(25));

    let all_claimed = peers
        .backend
        .wait_for(Duration::from_secs(20), |b| {
            b.count(ActionStatus::Claimed) == ACTIONS as usize
        })
        .await;
    assert!(all_claimed, "{}", worker.logs_text());
    tokio::time::sleep(Duration::from_millis(700)).await;

    let term_at = Instant::now();
    worker.sigterm();
    let exit = worker.wait_exit(GRACE_PERIOD).await;
    let stopped_in = term_at.elapsed();
    let answers = traffic.finish().await;

    assert!(
        exit.is_some_and(|s| s.success()),
        "exit {exit:?} after {stopped_in:?}\n{}",
        worker.logs_text()
    );

    // Deliveries sent well before the signal were inside the worker (the backend holds
    // each 400 ms) when it arrived: each must be answered and forwarded.
    let in_flight: Vec<_> = answers
        .iter()
        .filter(|a| a.sent_at + Duration::from_millis(150) < term_at)
        .collect();
    let unanswered: Vec<_> = in_flight
        .iter()
        .filter(|a| a.status.as_ref().ok() != Some(&200))
        .collect();
    assert!(in_flight.len() > 20);
    assert!(
        unanswered.is_empty(),
        "{} of {} deliveries received before SIGTERM were not answered 200: {:?}",
        unanswered.len(),
        in_flight.len(),
        unanswered.first()
    );

    // Every claimed action reported exactly once; nothing left CLAIMED.
    assert_eq!(peers.backend.claimed_count(), 0);
    let mut applied = 0;
    let mut released = 0;
    for id in &ids {
        let action = peers.backend.action(*id).unwrap();
        assert_eq!(action.claims.len(), 1, "{action:?}");
        assert_eq!(action.results.len(), 1, "{action:?}");
        let result = &action.results[0];
        match result.outcome {
            Outcome::Succeeded => applied += 1,
            Outcome::RetryableFailure => {
                assert_eq!(result.failure_code.as_deref(), Some("WORKER_SHUTDOWN"));
                released += 1;
            }
            Outcome::Failed => panic!("{action:?}"),
        }
    }
    assert!(
        applied > 0 && released > 0,
        "applied {applied}, released {released}\n{}",
        worker.logs_text()
    );
    assert!(worker.events("action_left_claimed").is_empty());
    assert_eq!(peers.backend.stats().replays_rejected, 0);
    eprintln!(
        "sigterm drill: exit 0 after {stopped_in:?}; {applied} applied, {released} released; {} webhooks in flight answered",
        in_flight.len()
    );
}

/// The drain Kubernetes needs: after SIGTERM the pod stays in the Service's endpoints
/// until every node has seen its removal, so deliveries keep arriving for a few
/// seconds. With `SHUTDOWN_DRAIN_SECONDS` the worker answers `/readyz` 503 at once but
/// keeps accepting new connections for that long, then stops and exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_keeps_serving_new_connections_during_the_drain() {
    let _alone = one_drill_at_a_time().await;
    const DRAIN_SECONDS: u64 = 5;
    let peers = peers().await;
    let mut worker = spawn_worker(
        &peers,
        &[("SHUTDOWN_DRAIN_SECONDS", &DRAIN_SECONDS.to_string())],
    )
    .await;
    // A client per request: each one opens a new connection, as a request routed here
    // by another node would.
    let fresh = || reqwest::Client::new();

    worker.sigterm();
    let mut readiness = None;
    for _ in 0..100 {
        match fresh().get(worker.url("/readyz")).send().await {
            Ok(r) if r.status() == 503 => {
                readiness = Some(503);
                break;
            }
            Ok(r) => readiness = Some(r.status().as_u16()),
            Err(err) => panic!(
                "new connection refused during the drain: {err}\n{}",
                worker.logs_text()
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(readiness, Some(503), "{}", worker.logs_text());

    let secret = peers.webhook_secret.expose().to_owned();
    let body = opened_body();
    let answered = deliver_once(
        &fresh(),
        &worker.url("/webhooks/github"),
        &sign(&secret, &body),
        &body,
    )
    .await;
    assert_eq!(answered.status, Ok(200), "{}", worker.logs_text());
    let health = fresh().get(worker.url("/healthz")).send().await;
    assert_eq!(health.map(|r| r.status().as_u16()).ok(), Some(200));

    let exit = worker.wait_exit(GRACE_PERIOD).await;
    assert!(
        exit.is_some_and(|s| s.success()),
        "exit {exit:?}\n{}",
        worker.logs_text()
    );
    // The reader of the worker's stdout may still be draining the pipe after the exit.
    eventually(Duration::from_secs(5), || {
        !worker.events("worker_draining").is_empty()
    })
    .await;
    let draining = worker.events("worker_draining");
    assert_eq!(draining.len(), 1, "{}", worker.logs_text());
    assert_eq!(draining[0]["seconds"], DRAIN_SECONDS);
    assert!(
        fresh().get(worker.url("/healthz")).send().await.is_err(),
        "still serving after exit"
    );
}
