//! Runs the real `sitg-bot worker` binary on a loopback port against in-process
//! simulators (`sitg_sandbox::peers::Peers`), for the end-to-end tests and the
//! failure drills.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use sitg_sandbox::examples::{DeliveryAnswer, Examples, deliver, github_signature};
use sitg_sandbox::peers::Peers;

/// GitHub's example payloads; the test setup (scripts/fetch-fixtures.sh) installs them.
pub fn examples() -> Examples {
    Examples::load(&sitg_sandbox::examples::default_dir()).unwrap_or_else(|e| panic!("{e}"))
}

/// GitHub's examples and both simulators, the App installed on every account and
/// repository the examples name.
pub async fn peers_for_examples() -> (Examples, Peers) {
    let examples = examples();
    let peers = peers().await;
    peers
        .install_for_examples(&examples)
        .expect("the examples' installations are valid");
    (examples, peers)
}

/// [`spawn_worker`] with outbox polling off, for tests of the webhook path alone.
pub async fn spawn_webhook_worker(peers: &Peers, overrides: &[(&str, &str)]) -> WorkerProcess {
    let mut all = vec![("OUTBOX_POLLING_ENABLED", "false")];
    all.extend_from_slice(overrides);
    spawn_worker(peers, &all).await
}

/// Starts both simulators.
pub async fn peers() -> Peers {
    sitg_bot::tls::install_crypto_provider();
    Peers::start().await.expect("simulators start")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running worker process, killed on drop if still alive.
pub struct WorkerProcess {
    pub child: Child,
    pub port: u16,
    /// Every stdout line (JSON logs) seen so far.
    pub logs: Arc<Mutex<Vec<String>>>,
    pub client: reqwest::Client,
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spawns `sitg-bot worker` with `peers.worker_env(..)` plus `overrides` (a value of ""
/// removes the variable) and waits until `/readyz` answers 200.
pub async fn spawn_worker(peers: &Peers, overrides: &[(&str, &str)]) -> WorkerProcess {
    spawn_worker_logging(peers, overrides, "info", true).await
}

/// [`spawn_worker`] at log level `rust_log`; with `read_stdout` false nobody reads the
/// worker's stdout (a pipe that fills up: back-pressure) until
/// [`WorkerProcess::read_stdout`] is called.
pub async fn spawn_worker_logging(
    peers: &Peers,
    overrides: &[(&str, &str)],
    rust_log: &str,
    read_stdout: bool,
) -> WorkerProcess {
    let port = free_port();
    let worker_id = format!("e2e-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut env: BTreeMap<String, String> = peers.worker_env(port, &worker_id);
    for (k, v) in overrides {
        if v.is_empty() {
            env.remove(*k);
        } else {
            env.insert((*k).to_owned(), (*v).to_owned());
        }
    }
    let child = Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
        .arg("worker")
        .env_clear()
        .envs(&env)
        .env("RUST_LOG", rust_log)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("worker binary starts");
    let mut worker = WorkerProcess {
        child,
        port,
        logs: Arc::new(Mutex::new(Vec::new())),
        client: reqwest::Client::new(),
    };
    if read_stdout {
        worker.read_stdout();
    }
    worker.wait_ready(Duration::from_secs(20)).await;
    worker
}

impl WorkerProcess {
    /// Starts collecting stdout lines into [`WorkerProcess::logs`] (once; later calls
    /// do nothing). Returns the reader thread, which ends at the worker's exit.
    pub fn read_stdout(&mut self) -> Option<std::thread::JoinHandle<()>> {
        let stdout = self.child.stdout.take()?;
        let logs = Arc::clone(&self.logs);
        Some(std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                logs.lock().unwrap().push(line);
            }
        }))
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

    /// Delivers `body` as GitHub would, signed with `secret`.
    pub async fn deliver(
        &self,
        secret: &str,
        event: &str,
        delivery_id: &str,
        body: Vec<u8>,
    ) -> DeliveryAnswer {
        deliver(
            &self.client,
            &self.url("/webhooks/github"),
            secret,
            event,
            delivery_id,
            body,
        )
        .await
        .expect("worker answers")
    }

    /// POSTs a raw request to the webhook URL with the given headers.
    pub async fn post_raw(
        &self,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> (u16, serde_json::Value) {
        // A fresh client: a refused upload may leave the connection unusable.
        let mut req = reqwest::Client::new()
            .post(self.url("/webhooks/github"))
            .body(body);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("worker answers");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(serde_json::Value::Null);
        (status, body)
    }

    /// The `/metrics` exposition text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics body")
    }

    /// The value of an unlabelled metric (or the sum over its labels).
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.split([' ', '{']).next() == Some(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of one labelled series, e.g. `metric_with("x_total", "reason=\"a\"")`;
    /// `None` when the series is not exposed.
    pub async fn metric_with(&self, name: &str, labels: &str) -> Option<f64> {
        let text = self.metrics_text().await;
        let prefix = format!("{name}{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
    }

    /// Sends SIGTERM and waits for the exit, at most `within` (panics past it).
    pub async fn terminate(&mut self, within: Duration) -> ExitStatus {
        self.sigterm();
        match self.wait_exit(within).await {
            Some(status) => status,
            None => panic!("worker did not exit within {within:?}"),
        }
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

    /// Waits up to `timeout` for the process to exit. Async, so simulators on the
    /// test's runtime keep answering meanwhile.
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

    /// Log lines whose JSON `event` field equals `event`, parsed.
    pub fn events(&self, event: &str) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["event"] == event)
            .collect()
    }

    /// Every log line so far, for failure messages and checks that no secret is written.
    pub fn logs_text(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}

/// The `X-Hub-Signature-256` GitHub would send.
pub fn sign(secret: &str, body: &[u8]) -> String {
    github_signature(secret, body)
}

/// Polls `cond` until true or `timeout`; returns whether it became true.
pub async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cond()
}
