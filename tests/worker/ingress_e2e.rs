//! The webhook ingress against hostile clients and racing replicas: the real
//! `sitg-bot worker` binary on real sockets, against the simulators.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::support::*;

/// Share of signed deliveries that must get a 2xx while an attack runs.
const REQUIRED_SUCCESS: f64 = 0.99;

/// `(2xx answers, all answers)` of `answered`, with the first failures for a message.
fn successes(answered: &[Answered]) -> (usize, usize, Vec<String>) {
    let ok = answered
        .iter()
        .filter(|a| matches!(a.status, Ok(s) if (200..300).contains(&s)))
        .count();
    let failures = answered
        .iter()
        .filter(|a| !matches!(a.status, Ok(s) if (200..300).contains(&s)))
        .take(5)
        .map(|a| format!("{:?} after {:?}", a.status, a.took))
        .collect();
    (ok, answered.len(), failures)
}

fn assert_mostly_ok(what: &str, answered: &[Answered]) {
    let (ok, all, failures) = successes(answered);
    assert!(all > 0, "{what}: no delivery was sent");
    #[allow(clippy::cast_precision_loss)] // counts far below 2^52
    let share = ok as f64 / all as f64;
    assert!(
        share >= REQUIRED_SUCCESS,
        "{what}: {ok} of {all} signed deliveries got 2xx; first failures: {failures:?}"
    );
}

/// Clients that open a connection, send a request head announcing a 16 MiB body with no
/// signature, and never send the body; each reconnects as soon as the worker lets go.
struct HeaderOnlyClients {
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    /// Heads sent so far, over all clients and reconnections.
    heads_sent: Arc<AtomicUsize>,
}

impl HeaderOnlyClients {
    fn start(port: u16, count: usize) -> Self {
        let stop = CancellationToken::new();
        let heads_sent = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..count {
            let (stop, heads_sent) = (stop.clone(), Arc::clone(&heads_sent));
            tasks.spawn(async move {
                while !stop.is_cancelled() {
                    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    };
                    let head = format!(
                        "POST /webhooks/github HTTP/1.1\r\nhost: worker\r\n\
                         content-type: application/json\r\nx-github-event: pull_request\r\n\
                         x-github-delivery: {}\r\ncontent-length: 16777216\r\n\r\n",
                        uuid::Uuid::new_v4()
                    );
                    if stream.write_all(head.as_bytes()).await.is_err() {
                        continue;
                    }
                    heads_sent.fetch_add(1, Ordering::Relaxed);
                    // Hold the connection until the worker answers or closes it.
                    let mut sink = Vec::new();
                    tokio::select! {
                        _ = stream.read_to_end(&mut sink) => {}
                        () = stop.cancelled() => {}
                    }
                }
            });
        }
        Self {
            stop,
            tasks,
            heads_sent,
        }
    }

    async fn wait_for_heads(&self, at_least: usize) {
        assert!(
            eventually(Duration::from_secs(20), || {
                self.heads_sent.load(Ordering::Relaxed) >= at_least
            })
            .await,
            "only {} request heads sent",
            self.heads_sent.load(Ordering::Relaxed)
        );
    }

    async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Issue 9, item 1: the body budget is reserved as bytes arrive, so clients that only
/// claim big bodies hold none of it. Four of them per 64 MB of budget (enough to take it
/// all if `Content-Length` were reserved up front), then a hundred, each renewing its
/// claim whenever the worker's 5 s body deadline lets it go, while signed deliveries
/// arrive at 20 per second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_only_bodies_hold_no_budget() {
    let _drill = one_drill_at_a_time().await;
    let (_, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[("WEBHOOK_BUFFER_LIMIT_MB", "64")]).await;
    let body = Arc::new(opened_body());
    let secret = peers.webhook_secret.expose().to_owned();

    for clients in [4, 100] {
        let attack = HeaderOnlyClients::start(worker.port, clients);
        attack.wait_for_heads(clients).await;
        // Longer than the 5 s body deadline, so renewed claims are covered too.
        let traffic = worker.traffic(&secret, Arc::clone(&body), Duration::from_millis(50));
        tokio::time::sleep(Duration::from_secs(6)).await;
        let answered = traffic.finish().await;
        attack.stop().await;
        assert_mostly_ok(&format!("{clients} header-only clients"), &answered);
    }
    assert_eq!(
        worker
            .metric_with("sitg_bot_webhook_rejected_total", "reason=\"overloaded\"")
            .await,
        Some(0.0),
        "claims alone must never exhaust the budget"
    );
}

/// Issue 9, item 3: GitHub's other content type, `application/x-www-form-urlencoded`,
/// carries the JSON document percent-encoded in a `payload` field and is signed over the
/// form as sent. Such a delivery is forwarded like a JSON one; another media type gets
/// 415 naming it, never a JSON parse message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_encoded_delivery_is_decoded_and_forwarded() {
    let (_, peers) = peers_for_examples().await;
    let worker = spawn_webhook_worker(&peers, &[]).await;
    let secret = peers.webhook_secret.expose().to_owned();
    let json = opened_body();
    let form: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", std::str::from_utf8(&json).expect("UTF-8 JSON"))
        .finish();
    let delivery = uuid::Uuid::new_v4().to_string();
    let headers = |content_type: &str, body: &[u8]| {
        vec![
            ("content-type", content_type.to_owned()),
            ("x-github-event", "pull_request".to_owned()),
            ("x-github-delivery", delivery.clone()),
            ("x-hub-signature-256", sign(&secret, body)),
        ]
    };
    let (status, answer) = worker
        .post_raw(
            &headers("application/x-www-form-urlencoded", form.as_bytes()),
            form.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["status"], "forwarded", "{answer}");
    assert_eq!(answer["ingest_status"], "ACCEPTED", "{answer}");
    let events = peers.backend.events();
    let record = events
        .iter()
        .find(|r| r.delivery_id == delivery)
        .expect("the form delivery reached the backend");
    let sent: serde_json::Value = serde_json::from_slice(&json).expect("the example is JSON");
    assert_eq!(
        record.body["pull_request"]["head_sha"],
        sent["pull_request"]["head"]["sha"]
    );

    // The signature is over the form: the decoded JSON signed instead is refused.
    let (status, _) = worker
        .post_raw(
            &headers("application/x-www-form-urlencoded", &json),
            form.clone().into_bytes(),
        )
        .await;
    assert_eq!(status, 401);

    // A form without the field, and a media type that is neither.
    let (status, answer) = worker
        .post_raw(
            &headers("application/x-www-form-urlencoded", b"data=1"),
            b"data=1".to_vec(),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("payload"),
        "{answer}"
    );
    let (status, answer) = worker
        .post_raw(&headers("text/plain", &json), json.clone())
        .await;
    assert_eq!(status, 415, "{answer}");
    assert_eq!(answer["error"], "unsupported_media_type", "{answer}");
    assert!(
        answer["message"]
            .as_str()
            .unwrap_or_default()
            .contains("text/plain"),
        "{answer}"
    );
    assert_eq!(
        worker
            .metric_with(
                "sitg_bot_webhook_rejected_total",
                "reason=\"unsupported_media_type\""
            )
            .await,
        Some(1.0)
    );
}

/// Issue 9, item 4: one delivery reaching two replicas at once (a load balancer's
/// retry). Both sign the same backend message, often in the same second, and the backend
/// refuses the second signature as a replay (403). The replica refused signs again in
/// the next second and answers what the backend says then (`DUPLICATE`), not 502; and
/// it never reports the backend as refusing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_at_two_replicas_is_answered_2xx_by_both() {
    let (_, peers) = peers_for_examples().await;
    let first = spawn_webhook_worker(&peers, &[]).await;
    let second = spawn_webhook_worker(&peers, &[]).await;
    let secret = peers.webhook_secret.expose().to_owned();
    let body = opened_body();
    for round in 0..10 {
        let delivery = format!("race-{round}-{}", uuid::Uuid::new_v4());
        let (a, b) = tokio::join!(
            first.deliver(&secret, "pull_request", &delivery, body.clone()),
            second.deliver(&secret, "pull_request", &delivery, body.clone()),
        );
        let mut statuses = [
            a.body["ingest_status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            b.body["ingest_status"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ];
        statuses.sort();
        assert!(
            a.status == 200 && b.status == 200,
            "round {round}: {} {:?} / {} {:?}",
            a.status,
            a.body,
            b.status,
            b.body
        );
        assert_eq!(statuses, ["ACCEPTED", "DUPLICATE"], "round {round}");
    }
    // The race did happen (both signed in the same second at least once), or this test
    // proved nothing.
    assert!(
        peers.backend.stats().replays_rejected > 0,
        "no delivery was signed by both replicas in the same second"
    );
    for worker in [&first, &second] {
        assert!(
            worker.events("backend_refusing").is_empty(),
            "{}",
            worker.logs_text()
        );
        assert_eq!(worker.metric("sitg_bot_backend_refusing").await, 0.0);
    }
    let retried = first.metric("sitg_bot_backend_replay_retries_total").await
        + second.metric("sitg_bot_backend_replay_retries_total").await;
    #[allow(clippy::cast_precision_loss)] // a handful
    let replays = peers.backend.stats().replays_rejected as f64;
    assert_eq!(retried, replays, "every replay refusal was signed again");
}

/// How an attacking connection behaves.
#[derive(Clone, Copy, Debug)]
enum Loiter {
    /// Connects and sends nothing.
    Silent,
    /// Sends one request, reads the answer, then keeps the connection idle.
    KeepAlive,
    /// Sends a request line, then one header byte per second (slowloris).
    Trickle,
}

/// How long an attacking connection closed by the worker waits before it opens again.
/// Every eviction costs the worker an accept and a close, so this sets the churn the
/// attack causes (thousands of connections: hundreds a second), kept within what a
/// debug build on a loaded two-core machine serves alongside the deliveries.
const RENEW_AFTER: Duration = Duration::from_secs(5);

/// `count` attacking connections, a third of each [`Loiter`] kind; each opens again
/// [`RENEW_AFTER`] after the worker closes it, so the pressure lasts.
struct Loiterers {
    stop: CancellationToken,
    tasks: tokio::task::JoinSet<()>,
    connects: Arc<AtomicUsize>,
}

impl Loiterers {
    fn start(port: u16, count: usize) -> Self {
        let stop = CancellationToken::new();
        let connects = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..count {
            let kind = [Loiter::Silent, Loiter::KeepAlive, Loiter::Trickle][i % 3];
            let (stop, connects) = (stop.clone(), Arc::clone(&connects));
            tasks.spawn(async move {
                while !stop.is_cancelled() {
                    if let Ok(stream) = TcpStream::connect(("127.0.0.1", port)).await {
                        connects.fetch_add(1, Ordering::Relaxed);
                        tokio::select! {
                            () = loiter(stream, kind) => {}
                            () = stop.cancelled() => return,
                        }
                    }
                    tokio::select! {
                        () = tokio::time::sleep(RENEW_AFTER) => {}
                        () = stop.cancelled() => return,
                    }
                }
            });
        }
        Self {
            stop,
            tasks,
            connects,
        }
    }

    async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}

/// Keeps `stream` open in the way of `kind` until the worker closes it.
async fn loiter(stream: TcpStream, kind: Loiter) {
    let (mut read, mut write) = stream.into_split();
    let opening: &[u8] = match kind {
        Loiter::Silent => b"",
        Loiter::KeepAlive => b"GET /healthz HTTP/1.1\r\nhost: worker\r\n\r\n",
        Loiter::Trickle => b"POST /webhooks/github HTTP/1.1\r\nhost: worker\r\nx-slow: ",
    };
    if write.write_all(opening).await.is_err() {
        return;
    }
    let trickle = async {
        if matches!(kind, Loiter::Trickle) {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if write.write_all(b"a").await.is_err() {
                    return;
                }
            }
        }
        std::future::pending::<()>().await;
    };
    let mut sink = Vec::new();
    tokio::select! {
        _ = read.read_to_end(&mut sink) => {}
        () = trickle => {}
    }
}

/// Issue 9, item 2: many times `HTTP_MAX_CONNECTIONS` idle, silent and slowloris
/// connections on the webhook port, each renewed when closed. At the cap the connection
/// waiting longest without a request in progress makes room, a head has its own
/// deadline, and the probes live on the metrics port: signed deliveries sent meanwhile
/// get 2xx within a second, and every liveness and readiness probe succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_never_keep_deliveries_out() {
    const CAP: usize = 128;
    const ATTACKERS: usize = 2_000;
    const DELIVERIES: usize = 20;
    let _drill = one_drill_at_a_time().await;
    let (_, peers) = peers_for_examples().await;
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
        .to_string();
    let cap = CAP.to_string();
    let worker = spawn_webhook_worker(
        &peers,
        &[
            ("HTTP_MAX_CONNECTIONS", cap.as_str()),
            ("METRICS_PORT", metrics_port.as_str()),
        ],
    )
    .await;
    let ops = |path: &str| format!("http://127.0.0.1:{metrics_port}{path}");
    let attack = Loiterers::start(worker.port, ATTACKERS);
    // Every attacker connected once (past the cap, the kernel completes connections
    // the worker has not accepted yet), or as many as could within the bound.
    eventually(Duration::from_secs(15), || {
        attack.connects.load(Ordering::Relaxed) >= ATTACKERS
    })
    .await;

    // The kubelet's probes: every 250 ms, each with the Deployment's 2 s timeout.
    let probes_stop = CancellationToken::new();
    let probes = tokio::spawn({
        let (stop, live, ready) = (probes_stop.clone(), ops("/healthz"), ops("/readyz"));
        async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .pool_max_idle_per_host(0)
                .build()
                .expect("a client");
            let mut failures = Vec::new();
            let mut sent = 0;
            while !stop.is_cancelled() {
                for url in [&live, &ready] {
                    sent += 1;
                    match client.get(url.as_str()).send().await {
                        Ok(r) if r.status() == 200 => {}
                        other => failures.push(format!("{url}: {other:?}")),
                    }
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            (sent, failures)
        }
    });

    // GitHub opens a connection per delivery; one a second, each given 1 s. GitHub is
    // another host: its client runs on a runtime of its own, so the 2,000 attacker
    // tasks of this process do not delay its writes (which would measure the test, not
    // the worker).
    let body = opened_body();
    let signature = sign(peers.webhook_secret.expose(), &body);
    let url = worker.url("/webhooks/github");
    let answered = tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("the delivering runtime");
        runtime.block_on(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(1))
                .pool_max_idle_per_host(0)
                .build()
                .expect("a client");
            let mut answered = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            for _ in 0..DELIVERIES {
                tick.tick().await;
                answered.push(deliver_once(&client, &url, &signature, &body).await);
            }
            answered
        })
    })
    .await
    .expect("the delivering thread");
    probes_stop.cancel();
    let (probes_sent, probe_failures) = probes.await.expect("the probe task");
    let connects = attack.connects.load(Ordering::Relaxed);
    attack.stop().await;

    assert_mostly_ok(
        &format!("{ATTACKERS} loitering connections ({connects} opened) against a cap of {CAP}"),
        &answered,
    );
    assert!(probes_sent > 0);
    assert!(
        probe_failures.is_empty(),
        "{} of {probes_sent} probes failed: {:?}",
        probe_failures.len(),
        &probe_failures[..probe_failures.len().min(5)]
    );
    // The attack did fill the cap: connections were closed to make room.
    let evicted = worker
        .metric_with(
            "sitg_bot_http_connections_closed_total",
            "listener=\"main\",reason=\"evicted\"",
        )
        .await
        .unwrap_or(0.0);
    assert!(evicted > 0.0, "no connection was evicted");
}
