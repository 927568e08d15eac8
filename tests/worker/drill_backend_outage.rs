//! Failure drill: the backend goes away under steady webhook traffic and comes back.
//!
//! GitHub gives a delivery 10 s and records anything else as failed, so during the
//! outage every delivery must get a 5xx (never a hang, never a 2xx that would lose the
//! event); memory must stay flat while deliveries keep failing; and when the backend
//! returns on the same address the same worker process forwards again, with no restart.
//! The CI run keeps the outage to 12 s; docs/benchmarks.md gives the 60 s command.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use sitg_sandbox::Served;
use sitg_sandbox::backend::GatePolicy;

/// Outage length; `SITG_DRILL_OUTAGE_SECS` makes the documented long run.
fn outage() -> Duration {
    let secs = std::env::var("SITG_DRILL_OUTAGE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    Duration::from_secs(secs)
}

/// RSS growth tolerated over the second half of the outage. A worker that kept every
/// failed 25 KB delivery would grow by ~1.2 MB per second at this rate, ~7 MB over the
/// 6 s measured in CI; the settled worker stays within ±0.5 MB.
const RSS_GROWTH_LIMIT_KIB: u64 = 4 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_outage_under_steady_traffic() {
    let _alone = one_drill_at_a_time().await;
    let peers = peers().await;
    peers.backend.set_policy(GatePolicy {
        enqueue_actions: false,
        ..GatePolicy::default()
    });
    let mut worker = spawn_worker(&peers, &[("OUTBOX_POLLING_ENABLED", "false")]).await;
    let pid = worker.pid();
    let secret = peers.webhook_secret.expose().to_owned();
    let body = Arc::new(opened_body());
    let backend_addr = peers.backend_server.addr();
    let backend = peers.backend.clone();
    let sitg_sandbox::peers::Peers {
        backend_server,
        github_server: _github_server,
        ..
    } = peers;

    // 50 deliveries per second, each on its own connection slot.
    let traffic = worker.traffic(&secret, Arc::clone(&body), Duration::from_millis(20));
    tokio::time::sleep(Duration::from_secs(2)).await;

    let down_at = Instant::now();
    backend_server
        .shutdown()
        .await
        .expect("the backend stops cleanly");
    let outage = outage();
    // Readiness drops after three failed probes (a single lost request must not pull
    // every replica out of the load balancer): within a few seconds.
    let unready_by = Instant::now() + Duration::from_secs(10);
    while worker.readiness_within(Duration::from_millis(100)).await {
        assert!(
            Instant::now() < unready_by,
            "readiness must report the unreachable backend"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // RSS once a second. The first half of the outage is warm-up: the allocator grows
    // to the number of deliveries in flight (~60 while each retries for about a second)
    // and stays there, which took 6 to 8 s in debug builds.
    let mut rss = Vec::new();
    while down_at.elapsed() < outage {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss.push((down_at.elapsed(), worker.memory_kib().0));
    }
    let settled: Vec<u64> = rss
        .iter()
        .filter(|(at, _)| *at >= outage / 2)
        .map(|(_, kib)| *kib)
        .collect();
    let (rss_early, rss_late) = (settled[0], *settled.last().unwrap());
    eprintln!("RSS during the outage (s, KiB): {rss:?}");

    let up_at = Instant::now();
    let _backend_again = Served::bind(backend.router(), backend_addr)
        .await
        .expect("the backend comes back on the same address");
    assert!(
        worker.readiness_within(Duration::from_secs(5)).await,
        "readiness returns once the backend answers"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let answers = traffic.finish().await;

    assert!(worker.is_running(), "the worker must survive the outage");
    assert_eq!(worker.pid(), pid);

    let hung: Vec<_> = answers.iter().filter(|a| a.status.is_err()).collect();
    assert!(
        hung.is_empty(),
        "{} of {} deliveries got no answer within GitHub's 10 s, e.g. {:?}",
        hung.len(),
        answers.len(),
        hung.first()
    );
    let status = |a: &Answered| a.status.clone().unwrap_or_default();
    let before: Vec<_> = answers
        .iter()
        .filter(|a| a.sent_at + Duration::from_millis(300) < down_at)
        .collect();
    let during: Vec<_> = answers
        .iter()
        .filter(|a| a.sent_at > down_at + Duration::from_millis(500) && a.sent_at + a.took < up_at)
        .collect();
    let after: Vec<_> = answers
        .iter()
        .filter(|a| a.sent_at > up_at + Duration::from_secs(1))
        .collect();
    assert!(before.len() > 50 && during.len() > 100 && after.len() > 50);
    assert!(
        before.iter().all(|a| status(a) == 200),
        "before: {before:?}"
    );
    let not_5xx: Vec<_> = during
        .iter()
        .filter(|a| !(500..=599).contains(&status(a)))
        .collect();
    assert!(
        not_5xx.is_empty(),
        "during the outage every delivery must fail with a 5xx: {not_5xx:?}"
    );
    assert!(
        during.iter().all(|a| a.took < GITHUB_DELIVERY_TIMEOUT),
        "a failure must come within GitHub's budget"
    );
    let not_ok: Vec<_> = after.iter().filter(|a| status(a) != 200).collect();
    assert!(
        not_ok.is_empty(),
        "after the backend returned: {not_ok:?}\n{}",
        worker.logs_text()
    );
    assert!(
        rss_late <= rss_early + RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {rss_early} KiB to {rss_late} KiB during the outage"
    );
    eprintln!(
        "outage drill: {} deliveries ({} during a {:?} outage), RSS {} → {} KiB",
        answers.len(),
        during.len(),
        outage,
        rss_early,
        rss_late
    );
}
