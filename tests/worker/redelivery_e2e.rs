//! Failed webhook deliveries come back: the GitHub simulator sends steady webhook
//! traffic to a real worker process while the backend is down, records every attempt
//! as GitHub's delivery log does, and `sitg-bot redeliver` (the real binary, one
//! sweep) asks it to redeliver what failed. Every event recorded as failed must then
//! reach the backend exactly once, with no duplicate.
//!
//! The drill keeps the backend down for 60 s; the CI run keeps it to 15 s,
//! which changes only the number of failed deliveries (about 150 instead of 600):
//! `SITG_REDELIVERY_OUTAGE_SECS=60` makes the long run (docs/operations.md).

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;
use std::time::Duration;

use crate::support::*;
use sitg_sandbox::backend::{GatePolicy, IngestOutcome};
use sitg_sandbox::github::HookAttempt;
use sitg_sandbox::peers::{Peers, SANDBOX_APP_ID};

fn outage() -> Duration {
    let secs = std::env::var("SITG_REDELIVERY_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(15);
    Duration::from_secs(secs)
}

/// One delivery every 100 ms.
const EVERY: Duration = Duration::from_millis(100);

/// Output of one `sitg-bot redeliver` run.
struct Sweep {
    ok: bool,
    events: Vec<serde_json::Value>,
    stderr: String,
}

fn redeliver(peers: &Peers, state: &std::path::Path) -> Sweep {
    let out = Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
        .arg("redeliver")
        .env_clear()
        .env("GITHUB_APP_ID", SANDBOX_APP_ID.to_string())
        .env(
            "GITHUB_APP_PRIVATE_KEY",
            peers.app_key.private_pem.expose().replace('\n', "\\n"),
        )
        .env("GITHUB_API_BASE_URL", peers.github_server.base_url())
        .env("REDELIVERY_MAX_PER_SWEEP", "1000")
        .env("STATE_DIRECTORY", state)
        .env("REDELIVERY_METRICS_FILE", state.join("redeliver.prom"))
        .output()
        .expect("sitg-bot redeliver runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    Sweep {
        ok: out.status.success(),
        events: stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl Sweep {
    fn named(&self, event: &str) -> Vec<&serde_json::Value> {
        self.events.iter().filter(|e| e["event"] == event).collect()
    }
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failed_delivery_is_redelivered_and_reaches_the_backend_once() {
    let _drill = one_drill_at_a_time().await;
    let peers = peers().await;
    peers.backend.set_policy(GatePolicy {
        enqueue_actions: false,
        ..GatePolicy::default()
    });
    let worker = spawn_webhook_worker(&peers, &[]).await;
    peers
        .github
        .set_webhook(worker.url("/webhooks/github"), &peers.webhook_secret);
    let body = bytes::Bytes::from(opened_body());

    // Steady traffic from "GitHub": each delivery on its own task, as GitHub does.
    let stop = tokio_util::sync::CancellationToken::new();
    let traffic = {
        let (github, stop, body) = (peers.github.clone(), stop.clone(), body.clone());
        tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut tick = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                let (github, body) = (github.clone(), body.clone());
                sent.push(tokio::spawn(async move {
                    github.deliver("pull_request", body).await
                }));
            }
            sent
        })
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    peers.backend.set_unavailable(true);
    tokio::time::sleep(outage()).await;
    peers.backend.set_unavailable(false);
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let mut first: Vec<HookAttempt> = Vec::new();
    for handle in traffic.await.expect("traffic task") {
        first.push(handle.await.expect("a delivery"));
    }

    let failed: BTreeSet<String> = first
        .iter()
        .filter(|a| !a.succeeded())
        .map(|a| a.guid.clone())
        .collect();
    let expected_failures = (outage().as_millis() / EVERY.as_millis()) as usize;
    assert!(
        failed.len() >= expected_failures * 8 / 10 && first.len() > failed.len() + 20,
        "{} of {} deliveries failed during a {:?} outage",
        failed.len(),
        first.len(),
        outage()
    );
    let not_5xx: Vec<_> = first
        .iter()
        .filter(|a| !a.succeeded() && !(500..=599).contains(&a.status_code))
        .collect();
    assert!(
        not_5xx.is_empty(),
        "an unavailable backend must give 5xx: {not_5xx:?}"
    );

    // One sweep after the backend is back.
    let state = tempfile::tempdir().expect("tempdir");
    let sweep = redeliver(&peers, state.path());
    assert!(sweep.ok, "redeliver failed: {}", sweep.stderr);
    let requested = sweep.named("webhook_redelivery_requested");
    let requested_guids: BTreeSet<String> = requested
        .iter()
        .map(|e| e["guid"].as_str().expect("guid").to_owned())
        .collect();
    assert_eq!(
        requested.len(),
        failed.len(),
        "one redelivery per failed event"
    );
    assert_eq!(requested_guids, failed);
    assert!(
        requested
            .iter()
            .all(|e| e["delivery_id"].as_u64().is_some() && e["github_event"] == "pull_request"),
        "each line names the delivery id and the event: {:?}",
        requested.first()
    );

    // GitHub redelivers in the background; each redelivery must succeed.
    let delivered_again = peers
        .github
        .wait_for(Duration::from_secs(30), |github| {
            let redelivered: BTreeSet<String> = github
                .hook_attempts()
                .into_iter()
                .filter(|a| a.redelivery && a.succeeded())
                .map(|a| a.guid)
                .collect();
            failed.is_subset(&redelivered)
        })
        .await;
    assert!(
        delivered_again,
        "not every failed event was redelivered successfully"
    );
    let attempts = peers.github.hook_attempts();
    let redeliveries = attempts.iter().filter(|a| a.redelivery).count();
    assert_eq!(redeliveries, failed.len(), "each event redelivered once");

    // The backend saw every event exactly once: accepted once, never a duplicate.
    let mut accepted: BTreeMap<String, usize> = BTreeMap::new();
    let mut duplicates = 0;
    for record in peers.backend.events() {
        match record.outcome {
            IngestOutcome::Accepted => *accepted.entry(record.delivery_id).or_default() += 1,
            IngestOutcome::Duplicate => duplicates += 1,
            _ => {}
        }
    }
    let sent: BTreeSet<String> = first.iter().map(|a| a.guid.clone()).collect();
    let missing: Vec<_> = sent.iter().filter(|g| !accepted.contains_key(*g)).collect();
    assert!(missing.is_empty(), "never reached the backend: {missing:?}");
    assert!(
        accepted.values().all(|n| *n == 1),
        "an event accepted twice"
    );
    assert_eq!(duplicates, 0, "duplicates reached the backend");

    // A second sweep finds nothing left, and the counters carried over.
    let again = redeliver(&peers, state.path());
    assert!(again.ok, "{}", again.stderr);
    assert!(again.named("webhook_redelivery_requested").is_empty());
    let summary = again.named("webhook_redelivery_sweep");
    assert_eq!(summary.len(), 1);
    assert_eq!(summary[0]["undelivered"], 0);
    let text = std::fs::read_to_string(state.path().join("redeliver.prom")).expect("metrics file");
    assert_eq!(
        metric(&text, "sitg_bot_redeliveries_requested_total"),
        Some(failed.len() as f64),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "sitg_bot_redelivery_oldest_failed_delivery_age_seconds"
        ),
        Some(0.0)
    );
    assert_eq!(metric(&text, "sitg_bot_redelivery_sweeps_total"), Some(2.0));
    eprintln!(
        "redelivery drill: {} deliveries, {} failed during a {:?} outage, all redelivered once, 0 duplicates",
        first.len(),
        failed.len(),
        outage()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_refused_on_purpose_are_not_redelivered() {
    let peers = peers().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    // A webhook secret the worker does not know: every delivery gets 401.
    peers.github.set_webhook(
        worker.url("/webhooks/github"),
        &sitg_sandbox::secret::SecretString::new("not-the-secret"),
    );
    let refused = peers.github.deliver("pull_request", opened_body()).await;
    assert_eq!(refused.status_code, 401);
    // Malformed JSON with the right secret: 400.
    peers
        .github
        .set_webhook(worker.url("/webhooks/github"), &peers.webhook_secret);
    let malformed = peers
        .github
        .deliver("pull_request", &b"{not json"[..])
        .await;
    assert_eq!(malformed.status_code, 400);

    let state = tempfile::tempdir().expect("tempdir");
    let sweep = redeliver(&peers, state.path());
    assert!(sweep.ok, "{}", sweep.stderr);
    assert!(sweep.named("webhook_redelivery_requested").is_empty());
    let summary = sweep.named("webhook_redelivery_sweep");
    assert_eq!(summary[0]["refused"], 2, "{summary:?}");
    assert_eq!(peers.github.hook_attempts().len(), 2, "nothing re-sent");
}
