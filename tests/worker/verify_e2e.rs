//! `sitg-bot verify --replica URL`, end to end: the real binary checks real workers
//! serving GitHub's example deliveries against the simulators, and must pass a healthy
//! fleet with traffic and fail, naming what failed, a fleet that is not.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;

struct Verdict {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `sitg-bot verify ARGS` without blocking the runtime that serves the simulators.
async fn verify(args: &[String]) -> Verdict {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
            .arg("verify")
            .args(args)
            .output(),
    )
    .await
    .expect("verify ends within a minute")
    .expect("verify runs");
    Verdict {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn replica_args(urls: &[String]) -> Vec<String> {
    urls.iter()
        .flat_map(|u| ["--replica".to_owned(), u.clone()])
        .collect()
}

/// The table line of replica `url`.
fn row<'a>(v: &'a Verdict, url: &str) -> &'a str {
    v.stdout
        .lines()
        .find(|l| l.starts_with(&format!("{url} ")))
        .unwrap_or_else(|| panic!("no line for {url} in:\n{}", v.stdout))
}

/// A loopback URL nothing listens on.
fn closed_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    let port = listener.local_addr().expect("its address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_passes_a_healthy_fleet_with_traffic() {
    let (_examples, peers) = peers_for_examples().await;
    let fast = [("OUTBOX_POLL_INTERVAL_MS", "500")];
    let a = spawn_worker(&peers, &fast).await;
    let b = spawn_worker(&peers, &fast).await;
    let secret = peers.webhook_secret.expose().to_owned();
    let body = Arc::new(opened_body());
    // Each delivery makes the backend enqueue an action: forwarding and outbox both move.
    let to_a = a.traffic(&secret, Arc::clone(&body), Duration::from_millis(100));
    let to_b = b.traffic(&secret, Arc::clone(&body), Duration::from_millis(100));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let urls = [a.url(""), b.url("/")];
    let mut args = replica_args(&urls);
    args.extend(["--interval", "3", "--expect-traffic"].map(str::to_owned));
    let v = verify(&args).await;
    to_a.finish().await;
    to_b.finish().await;

    assert_eq!(
        v.code,
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        v.stdout,
        v.stderr
    );
    assert!(v.stdout.contains("checklist: passed"), "{}", v.stdout);
    // Which replica claims an action is not fixed (the one that forwarded its event
    // claims at once), so OUTBOX OK must move over the fleet, not on each replica.
    let mut outbox_ok = 0_i64;
    for url in [a.url(""), b.url("")] {
        let line = row(&v, &url);
        assert!(line.ends_with(" ok"), "{line}");
        let cells: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(cells[1], "200", "{line}");
        // PR FWD moved on both replicas; ERRORS did not.
        assert_ne!(cells[2], "+0", "{line}");
        assert_eq!(cells[7], "+0", "{line}");
        outbox_ok += cells[4].trim_start_matches('+').parse::<i64>().unwrap_or(0);
    }
    assert!(
        outbox_ok > 0,
        "no outbox success on any replica:\n{}",
        v.stdout
    );
    // What verify saw is what the workers count.
    let fleet_ok = a.metric("sitg_bot_outbox_actions_success_total").await
        + b.metric("sitg_bot_outbox_actions_success_total").await;
    assert!(fleet_ok > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_naming_a_down_replica_and_growing_errors() {
    let peers = peers().await;
    let worker = spawn_worker(&peers, &[("OUTBOX_POLL_INTERVAL_MS", "500")]).await;
    // Every claim now fails: the worker counts an error at each poll.
    peers.backend.set_unavailable(true);
    let down = closed_url();

    let mut args = replica_args(&[worker.url(""), down.clone()]);
    args.extend(["--interval", "3"].map(str::to_owned));
    let v = verify(&args).await;

    assert_eq!(
        v.code,
        Some(1),
        "stdout:\n{}\nstderr:\n{}",
        v.stdout,
        v.stderr
    );
    assert!(v.stdout.contains("checklist: FAILED"), "{}", v.stdout);
    let errors_line = format!("  - {}: sitg_bot_errors_total grew by ", worker.url(""));
    assert!(
        v.stdout.lines().any(|l| l.starts_with(&errors_line)),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout
            .lines()
            .any(|l| l.starts_with(&format!("  - {down}: /healthz: "))),
        "{}",
        v.stdout
    );
    assert!(row(&v, &down).ends_with("FAIL"));
    assert!(row(&v, &worker.url("")).ends_with("FAIL"));
    assert!(worker.metric("sitg_bot_errors_total").await > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_fails_an_idle_fleet_when_traffic_is_expected() {
    let peers = peers().await;
    let worker = spawn_worker(&peers, &[]).await;
    let mut args = replica_args(&[worker.url("")]);
    args.extend(["--interval", "1"].map(str::to_owned));

    let idle = verify(&args).await;
    assert_eq!(idle.code, Some(0), "{}{}", idle.stdout, idle.stderr);

    args.push("--expect-traffic".to_owned());
    let v = verify(&args).await;
    assert_eq!(v.code, Some(1), "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("  - forwarding: "), "{}", v.stdout);
    assert!(v.stdout.contains("  - outbox: "), "{}", v.stdout);
}

#[tokio::test]
async fn verify_refuses_bad_arguments_with_exit_code_2() {
    let v = verify(&["--replica".to_owned(), "10.0.0.5:9090".to_owned()]).await;
    assert_eq!(v.code, Some(2), "{}", v.stderr);
    assert!(
        v.stderr.contains("10.0.0.5:9090 is not a usable base URL"),
        "{}",
        v.stderr
    );
    let v = verify(&[]).await;
    assert_eq!(v.code, Some(2), "{}", v.stderr);
}
