//! The gate comment without waiting for the poll: when the backend answers a forwarded
//! `pull_request.opened` with `enqueued_actions > 0`, the worker that forwarded it
//! claims at once (`OUTBOX_CLAIM_ON_EVENT`, default on).
//!
//! The first test checks the behaviour with a one-minute poll interval (the comment can
//! only come from the claim the event triggered). The second measures delivery → gate
//! comment POST on the GitHub simulator at the default 5 s poll interval, with the
//! wake-up off and on, and prints p50/p99: 20 pull requests per mode, or
//! `SITG_GATE_LATENCY_PRS=N` (docs/benchmarks.md). It asserts only that every pull
//! request got its comment; the figures are printed, not checked.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use parking_lot::Mutex;
use sitg_sandbox::github::GitHubWrite;
use sitg_sandbox::peers::Peers;

/// The example `pull_request.opened` payload as pull request `number`.
fn opened(number: u64) -> Vec<u8> {
    let mut payload: serde_json::Value =
        serde_json::from_slice(&opened_body()).expect("example JSON");
    payload["pull_request"]["number"] = number.into();
    payload["pull_request"]["id"] = (5_000_000 + number).into();
    payload["number"] = number.into();
    serde_json::to_vec(&payload).expect("JSON")
}

/// First time a comment was created on each pull request number, as the GitHub
/// simulator applies the POST.
fn watch_comments(peers: &Peers) -> Arc<Mutex<BTreeMap<u64, Instant>>> {
    let seen = Arc::new(Mutex::new(BTreeMap::new()));
    let (github, out) = (peers.github.clone(), Arc::clone(&seen));
    let mut changes = github.subscribe();
    tokio::spawn(async move {
        loop {
            let now = Instant::now();
            for write in github.writes() {
                if let GitHubWrite::CommentCreated { number, .. } = write {
                    out.lock().entry(number).or_insert(now);
                }
            }
            if changes.changed().await.is_err() {
                return;
            }
        }
    });
    seen
}

/// Sends `count` new pull requests, one every `every`; returns when each was sent.
async fn open_pull_requests(
    peers: &Peers,
    first: u64,
    count: u64,
    every: Duration,
) -> BTreeMap<u64, Instant> {
    let mut sent = BTreeMap::new();
    let mut tick = tokio::time::interval(every);
    for number in first..first + count {
        tick.tick().await;
        sent.insert(number, Instant::now());
        let attempt = peers.github.deliver("pull_request", opened(number)).await;
        assert_eq!(attempt.status_code, 200, "{attempt:?}");
    }
    sent
}

async fn all_commented(
    seen: &Mutex<BTreeMap<u64, Instant>>,
    sent: &BTreeMap<u64, Instant>,
    timeout: Duration,
) -> bool {
    eventually(timeout, || {
        let seen = seen.lock();
        sent.keys().all(|n| seen.contains_key(n))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_event_that_enqueued_actions_is_claimed_at_once() {
    let (_examples, peers) = peers_for_examples().await;
    // A poll a minute: only the claim the event triggers can post within the test.
    let worker = spawn_worker(&peers, &[("OUTBOX_POLL_INTERVAL_MS", "60000")]).await;
    peers
        .github
        .set_webhook(worker.url("/webhooks/github"), &peers.webhook_secret);
    let seen = watch_comments(&peers);
    // The start-up claim found nothing; later events each wake the outbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent = open_pull_requests(&peers, 1000, 5, Duration::from_millis(300)).await;
    assert!(
        all_commented(&seen, &sent, Duration::from_secs(20)).await,
        "gate comments without waiting for the poll; logs:\n{}",
        worker.logs_text()
    );
    assert_eq!(
        worker.metric("sitg_bot_outbox_claim_wakeups_total").await,
        5.0
    );
    let created = peers
        .github
        .writes()
        .into_iter()
        .filter(|w| matches!(w, GitHubWrite::CommentCreated { .. }))
        .count();
    assert_eq!(created, 5, "one gate comment per pull request");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// Delivery → comment POST over `count` pull requests, one every 100 ms.
async fn measure(claim_on_event: bool, count: u64) -> Vec<Duration> {
    let (_examples, peers) = peers_for_examples().await;
    let flag = if claim_on_event { "true" } else { "false" };
    let worker = spawn_worker(
        &peers,
        &[
            ("OUTBOX_POLL_INTERVAL_MS", "5000"),
            ("OUTBOX_CLAIM_ON_EVENT", flag),
        ],
    )
    .await;
    peers
        .github
        .set_webhook(worker.url("/webhooks/github"), &peers.webhook_secret);
    let seen = watch_comments(&peers);
    let sent = open_pull_requests(&peers, 2000, count, Duration::from_millis(100)).await;
    assert!(all_commented(&seen, &sent, Duration::from_secs(60)).await);
    let seen = seen.lock();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(n, at)| seen[n].saturating_duration_since(*at))
        .collect();
    latencies.sort();
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_comment_latency_at_the_default_poll_interval() {
    // 20 pull requests per mode in CI; docs/benchmarks.md runs 200.
    let count = std::env::var("SITG_GATE_LATENCY_PRS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(20);
    let _drill = one_drill_at_a_time().await;
    for claim_on_event in [false, true] {
        let latencies = measure(claim_on_event, count).await;
        assert_eq!(latencies.len() as u64, count);
        let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
        eprintln!(
            "gate latency, OUTBOX_CLAIM_ON_EVENT={claim_on_event}: {count} PRs, p50 {:?}, p99 {:?}, mean {:?}, max {:?}",
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            mean,
            latencies[latencies.len() - 1],
        );
    }
}
