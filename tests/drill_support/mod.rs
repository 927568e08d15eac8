//! Shared by the failure drills (`tests/drill_*.rs`): the real `sitg-bot worker`
//! process against in-process simulators, GitHub-style deliveries with a deadline, and
//! readings from `/proc`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sitg_bot::sandbox::examples::{Examples, github_signature};
use sitg_bot::sandbox::peers::Peers;

/// GitHub waits this long for an answer, then records the delivery as failed.
pub const GITHUB_DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Starts both simulators.
pub async fn peers() -> Peers {
    sitg_bot::tls::install_crypto_provider();
    Peers::start().await.expect("the simulators start")
}

/// The body of GitHub's example `pull_request.opened` delivery with an installation
/// (about 25 KB), from `@octokit/webhooks-examples`.
pub fn opened_body() -> Vec<u8> {
    let examples = Examples::load(&sitg_bot::sandbox::examples::default_dir())
        .unwrap_or_else(|e| panic!("{e}"));
    examples
        .of("pull_request", Some("opened"))
        .find(|e| e.payload.get("installation").is_some())
        .map(|e| e.body())
        .expect("the package has a pull_request.opened example with an installation")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A `sitg-bot worker` process, killed on drop if still running.
pub struct Worker {
    child: Child,
    pub port: u16,
    pub worker_id: String,
    logs: Arc<Mutex<Vec<String>>>,
    client: reqwest::Client,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

impl Worker {
    /// Spawns `sitg-bot worker` with `peers.worker_env(..)` plus `overrides`, and waits
    /// until `/readyz` answers 200.
    pub async fn spawn(peers: &Peers, overrides: &[(&str, &str)]) -> Self {
        let port = free_port();
        let worker_id = format!("drill-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let mut env: BTreeMap<String, String> = peers.worker_env(port, &worker_id);
        for (k, v) in overrides {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
            .arg("worker")
            .env_clear()
            .envs(&env)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the worker binary starts");
        let logs = Arc::new(Mutex::new(Vec::new()));
        if let Some(stdout) = child.stdout.take() {
            let logs = Arc::clone(&logs);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    logs.lock().unwrap().push(line);
                }
            });
        }
        let worker = Self {
            child,
            port,
            worker_id,
            logs,
            client: reqwest::Client::builder()
                .timeout(GITHUB_DELIVERY_TIMEOUT)
                .build()
                .expect("an HTTP client"),
        };
        worker.wait_ready(Duration::from_secs(20)).await;
        worker
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits until `/readyz` answers 200; panics with the logs after `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) {
        assert!(
            self.readiness_within(timeout).await,
            "worker not ready within {timeout:?}; logs:\n{}",
            self.logs_text()
        );
    }

    /// Whether `/readyz` answers 200 within `timeout`.
    pub async fn readiness_within(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(self.url("/readyz")).send().await {
                if r.status() == 200 {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// A client sharing nothing with other deliveries' connections state but the pool.
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// Every stdout line (JSON logs) so far.
    pub fn logs(&self) -> Vec<String> {
        self.logs.lock().unwrap().clone()
    }

    pub fn logs_text(&self) -> String {
        self.logs().join("\n")
    }

    /// Log lines whose `event` field equals `event`, parsed.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.logs()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// VmRSS and VmHWM of the process, in KiB (from `/proc/PID/status`).
    pub fn memory_kib(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("the worker's /proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} in /proc status"))
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Sends SIGTERM, as Kubernetes does when it stops a pod.
    pub fn sigterm(&self) {
        let pid = i32::try_from(self.pid()).expect("a pid fits in i32");
        kill(Pid::from_raw(pid), Signal::SIGTERM).expect("SIGTERM delivered");
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `timeout` for the process to exit.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts sending one delivery every `every` in the background; see [`Traffic`].
    pub fn traffic(&self, secret: &str, body: Arc<Vec<u8>>, every: Duration) -> Traffic {
        Traffic::start(
            self.client.clone(),
            self.url("/webhooks/github"),
            secret,
            body,
            every,
        )
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
