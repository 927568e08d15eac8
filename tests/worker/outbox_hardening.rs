//! Hardening of the outbox against faulty peers (issue 9, items 5–8 and 10–12): the real
//! worker binary against the simulators, each peer fault injected where the worker
//! meets it — lost claim answers, rate limits, endless pagination, duplicate ids in a
//! claim, unreadable result answers, `410 Gone`, strict proxies and a hung backend at
//! shutdown.

use std::time::Duration;

use crate::support::*;
use sitg_sandbox::backend::{ActionStatus, AnswerFault, Endpoint, NewAction};
use sitg_sandbox::github::{Fault, FaultRule, Route};
use sitg_sandbox::peers::Peers;
use uuid::Uuid;

const INSTALLATION: i64 = 61;
const REPO_ID: i64 = 6100;
const REPO: &str = "harden-org/repo";

async fn setup() -> Peers {
    let peers = peers().await;
    peers
        .github
        .add_installation(
            INSTALLATION,
            "harden-org",
            "Organization",
            [(REPO_ID, REPO)],
        )
        .expect("installation");
    peers
}

fn enqueue(peers: &Peers, installation: i64, repo_id: i64, repo: &str, count: i64) -> Vec<Uuid> {
    (1..=count)
        .map(|pr| {
            peers.backend.enqueue_action(NewAction::upsert_comment(
                installation,
                repo_id,
                repo,
                pr,
                "Stake before review.",
                &format!("sitg:gate:{}", Uuid::new_v4()),
            ))
        })
        .collect()
}

fn count(peers: &Peers, ids: &[Uuid], status: ActionStatus) -> usize {
    ids.iter()
        .filter(|id| {
            peers
                .backend
                .action(**id)
                .is_some_and(|a| a.status == status)
        })
        .count()
}

/// Item 5. The backend marks actions `CLAIMED` before answering; a claim whose answer
/// is lost — slower than the worker's attempt timeout, or cut off mid-body — may hold a
/// batch. The worker must not resend it while that answer may still be on its way, nor
/// within the same poll cycle, and must count and log each lost answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_whose_answer_is_lost_is_not_resent_within_the_cycle() {
    const POLL: Duration = Duration::from_secs(5);
    const ANSWER_DELAY: Duration = Duration::from_secs(10);
    let peers = setup().await;
    let ids = enqueue(&peers, INSTALLATION, REPO_ID, REPO, 15);
    // First claim: processed, answered only after 10 s (the worker waits 8 s at most).
    peers
        .backend
        .fault_next_answers(Endpoint::Claim, AnswerFault::Delay(ANSWER_DELAY), 1);
    let mut worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_CLAIM_LIMIT", "5"),
            ("OUTBOX_POLL_INTERVAL_MS", "5000"),
        ],
    )
    .await;
    assert!(
        peers
            .backend
            .wait_for(Duration::from_secs(10), |b| b.stats().answer_faults_served
                == 1)
            .await
    );
    // Second claim: processed, then the connection is reset half-way through the body.
    peers
        .backend
        .fault_next_answers(Endpoint::Claim, AnswerFault::ResetMidBody, 1);
    let third_claim = peers
        .backend
        .wait_for(Duration::from_secs(40), |b| {
            b.stats().claim_requests_at.len() >= 3
        })
        .await;
    assert!(third_claim, "{}", worker.logs_text());
    let at = peers.backend.stats().claim_requests_at;
    let gap = |i: usize| (at[i + 1] - at[i]).to_std().unwrap_or_default();
    assert!(
        gap(0) >= ANSWER_DELAY,
        "a claim was resent {:?} after one whose answer was still on its way\n{}",
        gap(0),
        worker.logs_text()
    );
    // The reset is seen right after the backend processed the claim; the next claim
    // waits for the next poll (a little slack for the clock reading in the simulator).
    assert!(
        gap(1) >= POLL - Duration::from_millis(300),
        "a claim was resent {:?} after one cut off mid-body\n{}",
        gap(1),
        worker.logs_text()
    );

    // The third claim worked: its five actions are applied; the first two batches stay
    // CLAIMED by this worker, which never saw their ids, and say so.
    assert!(
        eventually(Duration::from_secs(20), || count(
            &peers,
            &ids,
            ActionStatus::Done
        ) == 5)
        .await,
        "{}",
        worker.logs_text()
    );
    assert_eq!(count(&peers, &ids, ActionStatus::Claimed), 10);
    assert_eq!(
        worker
            .metric("sitg_bot_outbox_claim_answers_lost_total")
            .await,
        2.0
    );
    let lost = worker.events("outbox_claim_answer_lost");
    assert_eq!(lost.len(), 2, "{}", worker.logs_text());
    for line in &lost {
        assert_eq!(line["limit"], 5, "{line}");
        assert!(line["worker_id"].as_str().is_some_and(|w| !w.is_empty()));
        assert!(line["sent_at"].is_string(), "{line}");
    }
    assert_eq!(peers.backend.stats().replays_rejected, 0);
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{}", worker.logs_text());
}

const OTHER_INSTALLATION: i64 = 62;
const OTHER_REPO_ID: i64 = 6200;
const OTHER_REPO: &str = "other-org/repo";

async fn setup_two() -> Peers {
    let peers = setup().await;
    peers
        .github
        .add_installation(
            OTHER_INSTALLATION,
            "other-org",
            "Organization",
            [(OTHER_REPO_ID, OTHER_REPO)],
        )
        .expect("second installation");
    peers
}

/// Item 6. A secondary rate limit without `retry-after` pauses installation A for 60 s.
/// Its actions wait that pause out without an execution slot, so with two slots the
/// actions of installation B are applied while A is still paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_installation_holds_no_execution_slot() {
    let peers = setup_two().await;
    peers.github.inject(
        FaultRule::new(Fault::SecondaryRateLimit { retry_after: None })
            .installation(INSTALLATION)
            .next(1),
    );
    // A's actions are the oldest: they are first in the claim and take the slots first.
    let limited = enqueue(&peers, INSTALLATION, REPO_ID, REPO, 3);
    let other = enqueue(&peers, OTHER_INSTALLATION, OTHER_REPO_ID, OTHER_REPO, 4);
    let mut worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_CONCURRENCY", "2"),
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
        ],
    )
    .await;
    let others_done = peers
        .backend
        .wait_for(Duration::from_secs(30), |_| {
            count(&peers, &other, ActionStatus::Done) == other.len()
        })
        .await;
    assert!(
        others_done,
        "installation B waited for A's rate limit: {:?}\n{}",
        other
            .iter()
            .map(|id| peers.backend.action(*id).map(|a| a.status))
            .collect::<Vec<_>>(),
        worker.logs_text()
    );
    // A is still paused (60 s): nothing of it ran past the refusal, nothing reported.
    assert_eq!(
        count(&peers, &limited, ActionStatus::Claimed),
        limited.len()
    );
    assert_eq!(peers.github.stats().faults_served, 1);
    assert!(
        (1..=3).all(|pr| peers.github.comments(REPO, pr).is_empty()),
        "no comment of the limited installation"
    );

    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{}", worker.logs_text());
    assert_eq!(peers.backend.claimed_count(), 0);
    for id in &limited {
        let action = peers.backend.action(*id).expect("action");
        assert_eq!(action.results.len(), 1, "{action:?}");
        assert_eq!(
            action.last_failure_code(),
            Some("WORKER_SHUTDOWN"),
            "{action:?}"
        );
    }
}

/// Item 7. An installation limited for an hour (`429`, reset in 3600 s): its actions
/// are held (not `PENDING`) instead of being released at once, and a full batch of them
/// does not trigger an immediate re-claim, so claims stay at the poll interval and no
/// action circles through claim and report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_hour_long_rate_limit_causes_no_claim_loop() {
    const POLL: Duration = Duration::from_secs(2);
    const WINDOW: Duration = Duration::from_secs(14);
    let peers = setup().await;
    peers.github.inject(
        FaultRule::new(Fault::PrimaryRateLimit {
            status: 429,
            reset_after: Duration::from_secs(3600),
        })
        .installation(INSTALLATION),
    );
    let ids = enqueue(&peers, INSTALLATION, REPO_ID, REPO, 5);
    let mut worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_CLAIM_LIMIT", "5"),
            ("OUTBOX_POLL_INTERVAL_MS", "2000"),
        ],
    )
    .await;
    assert!(
        peers
            .backend
            .wait_for(Duration::from_secs(10), |b| {
                !b.stats().claim_requests_at.is_empty()
            })
            .await
    );
    let first = peers.backend.stats().claim_requests_at[0];
    tokio::time::sleep(WINDOW).await;

    let stats = peers.backend.stats();
    let in_window = stats
        .claim_requests_at
        .iter()
        .filter(|at| (**at - first).to_std().unwrap_or_default() <= WINDOW)
        .count();
    // One claim per poll, plus the immediate one after the first full batch (before the
    // limit was known) and one of slack.
    let bound = (WINDOW.as_secs() / POLL.as_secs()) as usize + 3;
    assert!(
        in_window <= bound,
        "{in_window} claims in {WINDOW:?} at a {POLL:?} poll interval\n{}",
        worker.logs_text()
    );
    for id in &ids {
        let action = peers.backend.action(*id).expect("action");
        assert!(
            action.results.len() <= 1,
            "reported {} times in {WINDOW:?}: {action:?}",
            action.results.len()
        );
    }
    // One request found the limit; every later call waited for it without a request.
    assert_eq!(peers.github.stats().faults_served, 1);

    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{}", worker.logs_text());
    assert_eq!(peers.backend.claimed_count(), 0);
}

/// Item 8. Comment pages whose `Link: rel="next"` leads from the last page back to the
/// first: the listing stops at a page it already read, or past the pages the issue's
/// comment count can fill, and the action fails with a code of its own after a few
/// requests instead of 500 pages times three attempts, circling for ever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_header_cycle_fails_the_action_after_a_few_pages() {
    let peers = setup().await;
    // 250 comments by a person: three pages of 100.
    peers
        .github
        .seed_comments(REPO, 1, 250, |i| format!("comment {i}"))
        .expect("comments");
    peers.github.inject(
        FaultRule::new(Fault::LinkCycle)
            .installation(INSTALLATION)
            .route(Route::ListIssueComments),
    );
    let ids = enqueue(&peers, INSTALLATION, REPO_ID, REPO, 1);
    let mut worker = spawn_worker(&peers, &[("OUTBOX_POLL_INTERVAL_MS", "500")]).await;
    let failed = peers
        .backend
        .wait_for(Duration::from_secs(30), |b| {
            b.action(ids[0])
                .is_some_and(|a| a.status == ActionStatus::Failed)
        })
        .await;
    let action = peers.backend.action(ids[0]).expect("action");
    assert!(failed, "{action:?}\n{}", worker.logs_text());
    assert_eq!(action.results.len(), 1, "{action:?}");
    assert_eq!(action.last_failure_code(), Some("GITHUB_PAGINATION_LOOP"));
    let stats = peers.github.stats();
    // Three pages, the first page again by its other URL, then the revisit: at most the
    // comment count's pages plus one of slack, and one look at the issue.
    assert!(
        stats.requests_to(Route::ListIssueComments) <= 4,
        "{:?}",
        stats.requests
    );
    assert_eq!(
        stats.requests_to(Route::GetIssue),
        1,
        "{:?}",
        stats.requests
    );
    assert_eq!(peers.github.comments(REPO, 1).len(), 250, "nothing posted");
    assert_eq!(
        worker
            .metric_with(
                "sitg_bot_outbox_action_failures_total",
                "code=\"GITHUB_PAGINATION_LOOP\""
            )
            .await,
        Some(1.0)
    );
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{}", worker.logs_text());
}

/// Item 11. A claim answer listing one action twice: it runs once and is reported
/// once (no second report refused 409, no false `action_left_claimed`). A result
/// answered 200 with a body that is not JSON was accepted: not "left claimed" either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_id_runs_once_and_an_unreadable_2xx_is_not_left_claimed() {
    let peers = setup().await;
    peers
        .backend
        .fault_next_answers(Endpoint::Claim, AnswerFault::DuplicateActions, 1);
    let first = enqueue(&peers, INSTALLATION, REPO_ID, REPO, 1);
    let mut worker = spawn_worker(&peers, &[("OUTBOX_POLL_INTERVAL_MS", "500")]).await;
    assert!(
        peers
            .backend
            .wait_for(Duration::from_secs(20), |b| {
                b.action(first[0])
                    .is_some_and(|a| a.status == ActionStatus::Done)
            })
            .await,
        "{}",
        worker.logs_text()
    );
    // Give a second task, if there were one, time to list and report as well.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let action = peers.backend.action(first[0]).expect("action");
    assert_eq!(action.results.len(), 1, "{action:?}");
    assert_eq!(peers.backend.stats().result_conflicts, 0);
    assert_eq!(
        peers.github.stats().requests_to(Route::ListIssueComments),
        1
    );
    assert_eq!(worker.events("outbox_claim_duplicate_ids").len(), 1);

    peers
        .backend
        .fault_next_answers(Endpoint::Result, AnswerFault::NotJson, 1);
    let second = peers.backend.enqueue_action(NewAction::upsert_comment(
        INSTALLATION,
        REPO_ID,
        REPO,
        2,
        "Stake before review.",
        "sitg:gate:unreadable-answer",
    ));
    assert!(
        peers
            .backend
            .wait_for(Duration::from_secs(20), |b| {
                b.action(second)
                    .is_some_and(|a| a.status == ActionStatus::Done)
                    && b.stats().answer_faults_served == 2
            })
            .await,
        "{}",
        worker.logs_text()
    );
    assert!(
        eventually(Duration::from_secs(5), || {
            !worker.events("action_report_answer_unreadable").is_empty()
        })
        .await,
        "{}",
        worker.logs_text()
    );
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{}", worker.logs_text());
    eventually(Duration::from_secs(5), || {
        !worker.events("worker_stopped").is_empty()
    })
    .await;
    assert!(
        worker.events("action_left_claimed").is_empty(),
        "{}",
        worker.logs_text()
    );
    assert!(worker.events("action_report_refused").is_empty());
}

/// Item 12. GitHub's `410 Gone` is permanent: `FAILED` / `GITHUB_GONE` at once, not
/// retried as `EXECUTION_ERROR`. And behind a strict HTTP/1.1 proxy (411 for a POST
/// without `Content-Length`) the body-less token mint still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_is_permanent_and_the_token_mint_states_its_length() {
    let peers = setup_two().await;
    peers.github.set_require_content_length(true);
    peers.github.inject(
        FaultRule::new(Fault::Status(410))
            .installation(OTHER_INSTALLATION)
            .route(Route::ListIssueComments),
    );
    let applied = enqueue(&peers, INSTALLATION, REPO_ID, REPO, 1);
    let gone = enqueue(&peers, OTHER_INSTALLATION, OTHER_REPO_ID, OTHER_REPO, 1);
    let mut worker = spawn_worker(&peers, &[("OUTBOX_POLL_INTERVAL_MS", "500")]).await;
    let settled = peers
        .backend
        .wait_for(Duration::from_secs(30), |b| {
            b.action(applied[0])
                .is_some_and(|a| a.status == ActionStatus::Done)
                && b.action(gone[0])
                    .is_some_and(|a| a.status == ActionStatus::Failed)
        })
        .await;
    let (a, g) = (
        peers.backend.action(applied[0]).expect("action"),
        peers.backend.action(gone[0]).expect("action"),
    );
    assert!(
        settled,
        "{a:?}\n{g:?}\n{:?}\n{}",
        peers.github.stats(),
        worker.logs_text()
    );
    assert_eq!(g.results.len(), 1, "{g:?}");
    assert_eq!(g.last_failure_code(), Some("GITHUB_GONE"));
    assert_eq!(peers.github.stats().length_required, 0);
    assert!(peers.github.stats().token_mints >= 2);
    let exit = worker.terminate(Duration::from_secs(30)).await;
    assert!(exit.success(), "{}", worker.logs_text());
}

/// Item 10. The backend hangs (every call waits 60 s) while the worker holds actions
/// and a claim is under way. With `SHUTDOWN_TIMEOUT_SECONDS=5` and a 1 s drain, SIGTERM
/// ends the process within drain + timeout + 1 s, and every action it still holds is
/// logged as left claimed, by id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_hung_backend_keeps_the_shutdown_budget() {
    let _alone = one_drill_at_a_time().await;
    const DRAIN: Duration = Duration::from_secs(1);
    const TIMEOUT: Duration = Duration::from_secs(5);
    let peers = setup().await;
    // GitHub is slow too: actions are mid-call at the signal.
    peers
        .github
        .inject(FaultRule::new(Fault::Latency(Duration::from_secs(3))));
    let ids = enqueue(&peers, INSTALLATION, REPO_ID, REPO, 6);
    let mut worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_CLAIM_LIMIT", "3"),
            ("OUTBOX_POLL_INTERVAL_MS", "500"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "5"),
            ("SHUTDOWN_DRAIN_SECONDS", "1"),
        ],
    )
    .await;
    assert!(
        peers
            .backend
            .wait_for(Duration::from_secs(20), |b| b.claimed_count() == ids.len())
            .await,
        "{}",
        worker.logs_text()
    );
    // Now the backend hangs: the next claim and every report wait 60 s.
    peers.backend.set_latency(Duration::from_secs(60));
    let claims = peers.backend.stats().requests_to(Endpoint::Claim);
    let secret = peers.webhook_secret.expose().to_owned();
    let traffic = worker.traffic(
        &secret,
        std::sync::Arc::new(opened_body()),
        Duration::from_millis(200),
    );
    assert!(
        peers
            .backend
            .wait_for(Duration::from_secs(10), |b| {
                b.stats().requests_to(Endpoint::Claim) > claims
            })
            .await,
        "a claim is under way"
    );

    let signalled = std::time::Instant::now();
    worker.sigterm();
    let exit = worker
        .wait_exit(DRAIN + TIMEOUT + Duration::from_secs(1))
        .await;
    let took = signalled.elapsed();
    traffic.finish().await;
    assert!(
        exit.is_some(),
        "still running {took:?} after SIGTERM\n{}",
        worker.logs_text()
    );
    eventually(Duration::from_secs(5), || {
        !worker.events("outbox_stopped").is_empty()
    })
    .await;
    let logged: std::collections::BTreeSet<String> = worker
        .events("action_left_claimed")
        .iter()
        .filter_map(|l| l["action_id"].as_str().map(str::to_owned))
        .collect();
    for id in &ids {
        assert!(
            logged.contains(&id.to_string()),
            "{id} is still CLAIMED but was not logged\n{}",
            worker.logs_text()
        );
    }
    assert_eq!(peers.backend.claimed_count(), ids.len());
}
