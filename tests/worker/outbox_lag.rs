//! What `sitg_bot_outbox_lag_seconds` says, on the real worker: the age of the oldest
//! action in the replica's last claim, 0 when the claim came back empty. An idle worker
//! shows 0; a worker whose claims are capped (at most `OUTBOX_CLAIM_LIMIT` actions per
//! claim and one claim per second, since each claim's signature is single-use within
//! its second) below the rate at which work arrives shows a lag that grows with the
//! backlog's age, one claim of exactly the limit after another; once the backlog is
//! gone it is 0 again. That is
//! what makes the average over pods a signal for the HPA: it measures how long work
//! waits, whatever the cause of the wait.

use std::time::Duration;

use sitg_sandbox::backend::ActionStatus;
use sitg_sandbox::standalone::{bench_action, bench_repositories};

use crate::support::*;

const LAG: &str = "sitg_bot_outbox_lag_seconds";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_is_zero_when_idle_grows_under_a_capped_backlog_and_returns_to_zero() {
    let peers = peers().await;
    for (installation, repo_id, name) in bench_repositories() {
        peers
            .github
            .add_installation(
                installation,
                &format!("bench-org-{installation}"),
                "Organization",
                [(repo_id, name.as_str())],
            )
            .ok();
    }
    let worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_CLAIM_LIMIT", "1"),
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
        ],
    )
    .await;

    // Idle: claims come back empty.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(worker.metric("sitg_bot_outbox_claim_total").await >= 2.0);
    assert_eq!(worker.metric(LAG).await, 0.0);

    // One action per claim, one claim per second, against a backlog of 15 enqueued at
    // once: the head of the queue ages by a second every second.
    for n in 0..15 {
        peers.backend.enqueue_action(bench_action(n));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let early = worker.metric(LAG).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let late = worker.metric(LAG).await;
    assert!(early > 0.5, "lag under a backlog: {early}");
    assert!(
        late >= early + 2.0,
        "the lag grows with the backlog's age: {early} then {late}"
    );
    // The cap is visible: every claim brought exactly OUTBOX_CLAIM_LIMIT actions while
    // work waited in the backend.
    let claims = worker.metric("sitg_bot_outbox_claim_total").await;
    let claimed = worker.metric("sitg_bot_outbox_actions_claimed_total").await;
    assert!(
        (3.0..=claims).contains(&claimed),
        "{claimed} actions in {claims} claims"
    );
    assert!(peers.backend.pending_count() > 0);

    // The backlog drains, the next empty claim says 0.
    let drained = eventually(Duration::from_secs(30), || {
        peers.backend.pending_count() == 0 && peers.backend.claimed_count() == 0
    })
    .await;
    let logs = worker.logs_text();
    let tail: Vec<&str> = logs.lines().rev().take(15).collect();
    assert!(
        drained,
        "backlog not drained: {:?} {} pending, {} claimed, {} done, {} failed",
        tail,
        peers.backend.pending_count(),
        peers.backend.claimed_count(),
        peers.backend.count(ActionStatus::Done),
        peers.backend.count(ActionStatus::Failed)
    );
    let mut zero = false;
    for _ in 0..40 {
        if worker.metric(LAG).await == 0.0 {
            zero = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(
        zero,
        "lag back to 0 after the backlog: {}",
        worker.metric(LAG).await
    );
}
