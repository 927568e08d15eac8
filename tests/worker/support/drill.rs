//! Shared by the failure drills (`drill_*.rs`): GitHub-style deliveries with a deadline,
//! steady background traffic, and one drill at a time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::process::{WorkerProcess, examples};
use sitg_sandbox::examples::github_signature;

/// Holds the drills' lock: they measure one worker under load (GitHub's 10 s delivery
/// budget, the 30 s grace period, memory growth), so no two of them share the machine.
pub async fn one_drill_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static DRILLS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    DRILLS.lock().await
}

/// GitHub waits this long for an answer, then records the delivery as failed.
pub const GITHUB_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The body of GitHub's example `pull_request.opened` delivery with an installation
/// (about 25 KB), from `@octokit/webhooks-examples`.
pub fn opened_body() -> Vec<u8> {
    examples()
        .of("pull_request", Some("opened"))
        .find(|e| e.payload.get("installation").is_some())
        .map(|e| e.body())
        .expect("the package has a pull_request.opened example with an installation")
}

/// What became of one delivery.
#[derive(Debug, Clone)]
pub struct Answered {
    /// When the request was started.
    pub sent_at: Instant,
    /// HTTP status, or the transport error (a timeout after [`GITHUB_DELIVERY_TIMEOUT`]
    /// included).
    pub status: Result<u16, String>,
    /// Time from send to answer or error.
    pub took: Duration,
}

impl WorkerProcess {
    /// Starts sending one delivery every `every` in the background; see [`Traffic`].
    pub fn traffic(&self, secret: &str, body: Arc<Vec<u8>>, every: Duration) -> Traffic {
        // Deliveries give up when GitHub would, so a hung answer shows as an error.
        let client = reqwest::Client::builder()
            .timeout(GITHUB_DELIVERY_TIMEOUT)
            .build()
            .expect("an HTTP client");
        Traffic::start(client, self.url("/webhooks/github"), secret, body, every)
    }
}

/// One `pull_request` delivery of `body` with a fresh delivery id, answered when the
/// worker answers or when GitHub would give up ([`GITHUB_DELIVERY_TIMEOUT`]).
pub async fn deliver_once(
    client: &reqwest::Client,
    url: &str,
    signature: &str,
    body: &[u8],
) -> Answered {
    let sent_at = Instant::now();
    let result = client
        .post(url)
        .header("content-type", "application/json")
        .header("x-github-event", "pull_request")
        .header("x-github-delivery", uuid::Uuid::new_v4().to_string())
        .header("x-hub-signature-256", signature)
        .body(body.to_vec())
        .send()
        .await;
    let status = match result {
        // The answer counts once its body has arrived.
        Ok(response) => {
            let status = response.status().as_u16();
            response
                .bytes()
                .await
                .map(|_| status)
                .map_err(|e| format!("{e:?}"))
        }
        Err(e) => Err(format!("{e:?}")),
    };
    Answered {
        sent_at,
        status,
        took: sent_at.elapsed(),
    }
}

/// Steady webhook traffic: one delivery every `every`, each on its own task so a slow
/// answer never delays the next send (GitHub does not wait either).
pub struct Traffic {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Vec<tokio::task::JoinHandle<Answered>>>,
}

impl Traffic {
    fn start(
        client: reqwest::Client,
        url: String,
        secret: &str,
        body: Arc<Vec<u8>>,
        every: Duration,
    ) -> Self {
        let signature = Arc::new(github_signature(secret, &body));
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let mut sent = Vec::new();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stopped.cancelled() => break,
                }
                let (client, url, signature, body) = (
                    client.clone(),
                    url.clone(),
                    Arc::clone(&signature),
                    Arc::clone(&body),
                );
                sent.push(tokio::spawn(async move {
                    deliver_once(&client, &url, &signature, &body).await
                }));
            }
            sent
        });
        Self { stop, task }
    }

    /// Stops sending and waits for every delivery's answer (each ends within
    /// [`GITHUB_DELIVERY_TIMEOUT`]).
    pub async fn finish(self) -> Vec<Answered> {
        self.stop.cancel();
        let handles = self.task.await.expect("the traffic task");
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(h.await.expect("a delivery task"));
        }
        out
    }
}
