//! The chart's Grafana dashboard against a real Prometheus holding a real scrape: the
//! real `sitg-bot worker` runs against the simulators and takes GitHub's example
//! payloads and outbox actions, Debian's `prometheus` scrapes its `/metrics` (a static
//! target labelled like a PodMonitor target), and every PromQL expression of
//! `charts/sitg-bot/dashboards/sitg-bot.json` goes through the HTTP query API: it must
//! parse and return series. A renamed metric or label leaves a panel empty and fails.
//!
//! Needs `prometheus` on PATH (`scripts/install-ship-deps.sh`) and the example payloads
//! (`scripts/fetch-fixtures.sh`); built with `--features external-tests`.
//!
//! With `SITG_DASHBOARD_PREVIEW_DIR=DIR` the run lasts a few minutes of varied traffic
//! and writes each panel's range query result to DIR, for
//! `scripts/dashboard-preview.py DIR/panels.json docs/dashboard.png`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sitg_sandbox::backend::NewAction;
use sitg_sandbox::github::{Fault, FaultRule};

use crate::support::*;

const DASHBOARD: &str = "charts/sitg-bot/dashboards/sitg-bot.json";
/// Labels a Prometheus Operator PodMonitor gives every worker target.
const NAMESPACE: &str = "bots";
const POD: &str = "bots-5d8f7c9b4-x2x7q";
/// What Grafana substitutes for `$__rate_interval` at a 1 s scrape interval is about
/// 4 s; a wider window keeps every rate defined between the test's bursts.
const RATE_INTERVAL: &str = "30s";
/// Metrics of other exporters (kube-state-metrics): no such exporter runs here, so
/// their panels may be empty, but they must parse.
const EXTERNAL_PREFIXES: [&str; 1] = ["kube_"];
const REPO: &str = "octo-org/widgets";
const INSTALLATION: i64 = 31;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One PromQL expression of the dashboard and where it sits.
struct Target {
    panel: String,
    legend: String,
    expr: String,
}

fn targets(dashboard: &Value) -> Vec<Target> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push(Target {
                panel: panel["title"].as_str().expect("title").to_owned(),
                legend: target["legendFormat"].as_str().unwrap_or("").to_owned(),
                expr: target["expr"].as_str().expect("expr").to_owned(),
            });
        }
    }
    out
}

/// The expression as Grafana sends it with "All" selected in both variables.
fn as_sent(expr: &str) -> String {
    expr.replace("$__rate_interval", RATE_INTERVAL)
        .replace("$namespace", ".+")
        .replace("$pod", ".+")
}

fn is_external(expr: &str) -> bool {
    EXTERNAL_PREFIXES.iter().any(|p| {
        expr.match_indices(p).any(|(i, _)| {
            // A metric name starts the word: not `sitg_bot_kube_…`.
            i == 0
                || !expr.as_bytes()[i - 1].is_ascii_alphanumeric() && expr.as_bytes()[i - 1] != b'_'
        })
    })
}

/// Debian's `prometheus` with one static target, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: &str, pod: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("sitg-dashboard-prom.")
            .tempdir()
            .expect("tempdir");
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "bots/sitg-bot-workers",
                "static_configs": [{
                    "targets": [target],
                    "labels": {"namespace": NAMESPACE, "pod": pod, "container": "worker"},
                }],
            }],
        });
        // JSON is YAML: no second serialiser needed.
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config.to_string()).expect("write config");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("prometheus on PATH (scripts/install-ship-deps.sh)");
        let prometheus = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let client = reqwest::Client::new();
        let ready = eventually_async(Duration::from_secs(30), || async {
            client
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        })
        .await;
        assert!(ready, "prometheus not ready within 30 s");
        prometheus
    }

    /// `{url}/api/v1/{path}?{params}`, form-encoded.
    fn api(&self, path: &str, params: &[(&str, &str)]) -> url::Url {
        let mut url = url::Url::parse(&format!("{}/api/v1/{path}", self.url)).expect("URL");
        url.query_pairs_mut().extend_pairs(params);
        url
    }

    /// `GET /api/v1/query`: the `data` object; panics with Prometheus' error otherwise.
    async fn query(&self, expr: &str) -> Value {
        let body: Value = reqwest::Client::new()
            .get(self.api("query", &[("query", expr)]))
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("JSON answer");
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"].clone()
    }

    async fn query_range(&self, expr: &str, start: f64, end: f64) -> Value {
        let (start, end) = (start.to_string(), end.to_string());
        let body: Value = reqwest::Client::new()
            .get(self.api(
                "query_range",
                &[
                    ("query", expr),
                    ("start", &start),
                    ("end", &end),
                    ("step", "2"),
                ],
            ))
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("JSON answer");
        assert_eq!(body["status"], "success", "{expr}: {body}");
        body["data"].clone()
    }

    /// The value of a one-series instant query, if it has exactly one series.
    async fn scalar(&self, expr: &str) -> Option<f64> {
        let data = self.query(expr).await;
        let result = data["result"].as_array()?;
        (result.len() == 1).then(|| result[0]["value"][1].as_str()?.parse().ok())?
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn eventually_async<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

fn upsert(pr: i64) -> NewAction {
    NewAction::upsert_comment(
        INSTALLATION,
        9001,
        REPO,
        pr,
        "This pull request waits for its author to stake.",
        &format!("sitg:gate:{}", uuid::Uuid::new_v4()),
    )
}

/// Every example once, one badly signed delivery, and `actions` outbox actions.
async fn traffic(
    worker: &WorkerProcess,
    peers: &sitg_sandbox::peers::Peers,
    round: usize,
    actions: i64,
) {
    let examples = examples();
    let secret = peers.webhook_secret.expose().to_owned();
    for (i, example) in examples.all.iter().enumerate() {
        let delivery = format!("dash-{round}-{i}-{}", uuid::Uuid::new_v4());
        worker
            .deliver(&secret, &example.event, &delivery, example.body())
            .await;
    }
    worker
        .deliver(
            "not-the-secret",
            "pull_request",
            &format!("dash-bad-{round}"),
            b"{}".to_vec(),
        )
        .await;
    for pr in 0..actions {
        peers
            .backend
            .enqueue_action(upsert(1 + pr + 1000 * round as i64));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_expression_returns_series_from_a_real_scrape() {
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_path(DASHBOARD)).expect("dashboard"))
            .expect("the dashboard is JSON");
    let targets = targets(&dashboard);
    assert!(
        targets.len() >= 20,
        "the dashboard has its panels: {}",
        targets.len()
    );

    let (_examples, peers) = peers_for_examples().await;
    peers
        .github
        .add_installation(INSTALLATION, "octo-org", "Organization", [(9001, REPO)])
        .expect("installation");
    let worker = spawn_worker(&peers, &[("OUTBOX_POLL_INTERVAL_MS", "500")]).await;
    let prometheus = Prometheus::start(&format!("127.0.0.1:{}", worker.port), POD).await;
    let preview = std::env::var_os("SITG_DASHBOARD_PREVIEW_DIR").map(PathBuf::from);
    // Traffic only after the first scrape: rates measure increases between samples.
    let scraped = eventually_async(Duration::from_secs(30), || async {
        prometheus.scalar("up").await == Some(1.0)
    })
    .await;
    assert!(scraped, "prometheus scraped the worker");
    let started = chrono::Utc::now().timestamp() as f64;

    traffic(&worker, &peers, 0, 20).await;
    if preview.is_some() {
        // A few minutes with bursts, a GitHub outage and a rate limit, so that every
        // panel has a shape worth looking at.
        for round in 1..=12 {
            tokio::time::sleep(Duration::from_secs(8)).await;
            let fault = match round {
                4 => Some(peers.github.inject(FaultRule::new(Fault::Status(502)))),
                8 => Some(
                    peers
                        .github
                        .inject(FaultRule::new(Fault::SecondaryRateLimit {
                            retry_after: Some(2),
                        })),
                ),
                _ => None,
            };
            traffic(&worker, &peers, round, 10 * (round as i64 % 4 + 1)).await;
            if let Some(fault) = fault {
                tokio::time::sleep(Duration::from_secs(6)).await;
                peers.github.remove_fault(fault);
            }
        }
    }

    // The actions are done, and Prometheus has scraped since: its rates see the run.
    let done = eventually_async(Duration::from_secs(60), || async {
        prometheus
            .scalar("sitg_bot_outbox_actions_success_total")
            .await
            .is_some_and(|v| v >= 20.0)
            && prometheus
                .scalar("sum(sitg_bot_webhook_pull_request_forwarded_total)")
                .await
                .is_some_and(|v| v > 0.0)
    })
    .await;
    assert!(
        done,
        "the run reached Prometheus; worker logs:\n{}",
        worker.logs_text()
    );
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut empty = Vec::new();
    let mut external = 0;
    for target in &targets {
        let expr = as_sent(&target.expr);
        let data = prometheus.query(&expr).await;
        assert_eq!(data["resultType"], "vector", "{expr}");
        let series = data["result"].as_array().expect("result").len();
        if is_external(&target.expr) {
            external += 1;
        } else if series == 0 {
            empty.push(format!("{} / {}: {expr}", target.panel, target.legend));
        }
    }
    assert!(
        empty.is_empty(),
        "dashboard expressions without series (renamed metric or label?):\n{}",
        empty.join("\n")
    );
    assert_eq!(
        external, 1,
        "only the kube-state-metrics expression may be empty"
    );

    // What the traffic did shows in the panels, not just zeros.
    for (expr, what) in [
        (
            "sum(rate(sitg_bot_webhook_pull_request_forwarded_total[1m]))",
            "forwarded webhooks",
        ),
        (
            "sum(rate(sitg_bot_webhook_signature_failures_total[1m]))",
            "signature failures",
        ),
        (
            "sum(rate(sitg_bot_outbox_actions_success_total[1m]))",
            "succeeded actions",
        ),
        (
            "sum(rate(sitg_bot_github_requests_total{status_class=\"2xx\"}[1m]))",
            "GitHub 2xx",
        ),
        (
            "sum(rate(sitg_bot_backend_requests_total{status_class=\"2xx\"}[1m]))",
            "backend 2xx",
        ),
    ] {
        let value = prometheus.scalar(expr).await.unwrap_or(0.0);
        assert!(value > 0.0, "{what}: {expr} = {value}");
    }

    // Renamed metrics and labels: the new names are scraped, the former ones still are
    // (one release), and the dashboard uses only the new ones.
    for expr in [
        "sitg_bot_webhook_reserved_body_bytes",
        "sitg_bot_webhook_body_bytes_reserved",
        "sitg_bot_backend_requests_total{status_class=~\".+\", status=~\".+\"}",
    ] {
        let data = prometheus.query(expr).await;
        let series = data["result"].as_array().expect("result").len();
        assert!(series > 0, "{expr}: no series");
    }
    let dashboard_text = dashboard.to_string();
    for deprecated in [
        "sitg_bot_webhook_body_bytes_reserved",
        "(endpoint, status)",
        "{{status}}",
    ] {
        assert!(
            !dashboard_text.contains(deprecated),
            "the dashboard uses the deprecated {deprecated}"
        );
    }

    // The template variables (Grafana's label_values) find the pod.
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("variables")
    {
        let Some(query) = variable["query"]["query"].as_str() else {
            continue;
        };
        let inner = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
            .expect("label_values(metric, label)");
        let (selector, label) = inner.rsplit_once(", ").expect("metric, label");
        let selector = as_sent(selector);
        let values: Value = reqwest::Client::new()
            .get(prometheus.api(&format!("label/{label}/values"), &[("match[]", &selector)]))
            .send()
            .await
            .expect("prometheus answers")
            .json()
            .await
            .expect("JSON");
        let want = if label == "pod" { POD } else { NAMESPACE };
        assert!(
            values["data"]
                .as_array()
                .is_some_and(|v| v.iter().any(|x| x == want)),
            "variable {}: {query} → {values}",
            variable["name"]
        );
    }

    if let Some(dir) = preview {
        std::fs::create_dir_all(&dir).expect("preview dir");
        let end = chrono::Utc::now().timestamp() as f64;
        let mut panels = Vec::new();
        for panel in dashboard["panels"].as_array().expect("panels") {
            let Some(list) = panel["targets"].as_array() else {
                continue;
            };
            let mut series = Vec::new();
            for target in list {
                let expr = as_sent(target["expr"].as_str().expect("expr"));
                let data = prometheus.query_range(&expr, started, end).await;
                series.push(json!({
                    "legend": target["legendFormat"],
                    "expr": expr,
                    "result": data["result"],
                }));
            }
            panels.push(json!({
                "title": panel["title"],
                "unit": panel["fieldConfig"]["defaults"]["unit"],
                "gridPos": panel["gridPos"],
                "targets": series,
            }));
        }
        std::fs::write(
            dir.join("panels.json"),
            serde_json::to_string_pretty(&json!({"start": started, "end": end, "panels": panels}))
                .expect("json"),
        )
        .expect("write panels.json");
    }
}
