//! `sitg-sandbox serve`: both simulators in their own process, for load harnesses that
//! run the worker as a separate (pinned) process.
//!
//! On start it prints the environment a worker needs, one `KEY=VALUE` per line (the
//! env-file format of systemd's `EnvironmentFile=`; the App key is one line with `\n`
//! escapes), optionally writes the same lines to `--env-file` and as a JSON object to
//! `--json`, and serves until SIGINT or SIGTERM. Besides the worker's variables the
//! output holds `SITG_SANDBOX_CONTROL_URL`, the base of a small control API:
//!
//! | request | effect |
//! | --- | --- |
//! | `GET /stats` | both simulators' counters and the outbox by status, as JSON |
//! | `POST /actions?count=N` | puts `N` `UPSERT_PR_COMMENT` actions in the outbox |
//! | `GET /deliveries` | `{"pull_request": {DELIVERY_ID: N}}`: the backend's ingest requests per delivery, duplicates included (a delivery forwarded twice has 2) |
//! | `PUT /github/latency?ms=N` | every GitHub simulator answer from now on waits `N` ms (replaces the previous value, `--github-latency-ms` included; 0: none) |
//!
//! `/stats` also counts per `worker_id` (the claimer's, as claims and results name it):
//! `workers.<id>.claims` (actions handed out to it), `.succeeded` (its `SUCCEEDED`
//! reports) and `.released` (its `RETRYABLE_FAILURE` / `WORKER_SHUTDOWN` reports: what a
//! stopping worker gave back unexecuted).
//!
//! The credentials are generated per run and worthless outside it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Served;
use super::backend::{ActionStatus, BackendSim, BackendStats, GatePolicy, NewAction, Outcome};
use super::github::{Fault, FaultId, FaultRule, GitHubSim, GitHubStats};
use super::peers::{Listen, Peers, PeersError};

/// Installations the outbox actions of the control API are spread over.
pub const BENCH_INSTALLATIONS: i64 = 4;
/// Repositories per installation.
pub const BENCH_REPOSITORIES_PER_INSTALLATION: i64 = 5;
/// Most actions one `POST /actions` may enqueue.
pub const MAX_ENQUEUE: u32 = 100_000;
/// Largest latency `PUT /github/latency` accepts, in milliseconds.
pub const MAX_GITHUB_LATENCY_MS: u64 = 60_000;

/// Options of `sitg-sandbox serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// `PORT` written into the worker environment (the simulators take free ports).
    #[arg(long, default_value_t = 3100)]
    pub worker_port: u16,
    /// `WORKER_ID` written into the worker environment.
    #[arg(long, default_value = "bench-worker-1")]
    pub worker_id: String,
    /// Milliseconds the GitHub simulator waits before answering each request.
    #[arg(long, default_value_t = 0)]
    pub github_latency_ms: u64,
    /// Milliseconds the backend simulator waits before answering each request; 0 (the
    /// default) answers at once.
    #[arg(long, default_value_t = 0)]
    pub backend_latency_ms: u64,
    /// Accepted pull-request events enqueue no action (webhook benchmarks: keeps the
    /// outbox empty while millions of deliveries pass).
    #[arg(long)]
    pub no_enqueue: bool,
    /// `UPSERT_PR_COMMENT` actions put in the outbox at start.
    #[arg(long, default_value_t = 0)]
    pub actions: u32,
    /// Port of the control API (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub control_port: u16,
    /// Address the simulators and the control API bind: 127.0.0.1 (the default) keeps
    /// them on this machine; in a pod, 0.0.0.0 or the pod IP.
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: std::net::IpAddr,
    /// Port of the GitHub simulator (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub github_port: u16,
    /// Port of the backend simulator (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub backend_port: u16,
    /// Host named in the printed URLs (`GITHUB_API_BASE_URL`, `BACKEND_BASE_URL`,
    /// `SITG_SANDBOX_CONTROL_URL`), e.g. the pod IP; default: the bind address, or
    /// 127.0.0.1 when that is unspecified (0.0.0.0 or ::).
    #[arg(long)]
    pub advertise_host: Option<String>,
    /// Also write the `KEY=VALUE` lines to this file (replaced atomically once everything
    /// listens, so a script can wait for it to appear).
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Also write the environment as one JSON object to this file (atomically).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// Why the sandbox could not start.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(transparent)]
    Peers(#[from] PeersError),
    #[error("could not set up the GitHub simulator: {0}")]
    Setup(#[from] super::github::SetupError),
    #[error("{path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("could not bind the control API: {0}")]
    Bind(std::io::Error),
}

/// `(installation id, "owner/name")` of the repositories the bench actions target.
pub fn bench_repositories() -> Vec<(i64, i64, String)> {
    (1..=BENCH_INSTALLATIONS)
        .flat_map(|installation| {
            (1..=BENCH_REPOSITORIES_PER_INSTALLATION).map(move |r| {
                let repo_id = installation * 1_000 + r;
                (
                    installation,
                    repo_id,
                    format!("bench-org-{installation}/repo-{r}"),
                )
            })
        })
        .collect()
}

/// The `n`-th bench action: an upsert of a gate comment on its own pull request, so
/// every action costs GitHub one comment listing and one comment creation.
pub fn bench_action(n: u64) -> NewAction {
    let repos = bench_repositories();
    let (installation, repo_id, name) = &repos[(n % repos.len() as u64) as usize];
    let marker = format!("sitg:gate:{}", uuid::Uuid::new_v4());
    NewAction::upsert_comment(
        *installation,
        *repo_id,
        name,
        i64::try_from(n + 1).unwrap_or(i64::MAX),
        "This pull request waits for its author to stake.",
        &marker,
    )
}

#[derive(Clone)]
struct Control {
    backend: BackendSim,
    github: GitHubSim,
    /// The GitHub latency rule in force (`--github-latency-ms` or `PUT /github/latency`).
    latency: Arc<Mutex<Option<FaultId>>>,
}

impl Control {
    fn new(backend: BackendSim, github: GitHubSim) -> Self {
        Self {
            backend,
            github,
            latency: Arc::default(),
        }
    }

    /// Replaces the GitHub simulator's latency rule: every answer waits `latency`
    /// (none when zero).
    fn set_github_latency(&self, latency: Duration) {
        let mut current = self.latency.lock();
        if let Some(id) = current.take() {
            self.github.remove_fault(id);
        }
        if !latency.is_zero() {
            *current = Some(self.github.inject(FaultRule::new(Fault::Latency(latency))));
        }
    }
}

#[derive(Deserialize)]
struct EnqueueQuery {
    count: u32,
}

#[derive(Deserialize)]
struct LatencyQuery {
    ms: u64,
}

fn status_counts(backend: &BackendSim) -> Value {
    json!({
        "pending": backend.count(ActionStatus::Pending),
        "claimed": backend.count(ActionStatus::Claimed),
        "done": backend.count(ActionStatus::Done),
        "failed": backend.count(ActionStatus::Failed),
    })
}

fn backend_json(stats: &BackendStats) -> Value {
    let by_endpoint: BTreeMap<String, u64> = stats
        .requests
        .iter()
        .map(|(e, n)| (format!("{e:?}"), *n))
        .collect();
    let responses: BTreeMap<String, BTreeMap<u16, u64>> = stats
        .responses
        .iter()
        .map(|(e, by)| (format!("{e:?}"), by.clone()))
        .collect();
    json!({
        "requests": by_endpoint,
        "responses": responses,
        "auth_failures": stats.auth_failures_total(),
        "replays_rejected": stats.replays_rejected,
        "claims": stats.claims,
        "empty_claims": stats.empty_claims,
        "actions_claimed": stats.actions_claimed,
        "results_accepted": stats.results_accepted,
        "result_conflicts": stats.result_conflicts,
        "faults_served": stats.faults_served,
    })
}

fn github_json(stats: &GitHubStats) -> Value {
    let requests: BTreeMap<String, BTreeMap<u16, u64>> = stats
        .requests
        .iter()
        .map(|(r, by)| (format!("{r:?}"), by.clone()))
        .collect();
    json!({
        "total_requests": stats.total_requests(),
        "api_requests": stats.api_requests(),
        "token_mints": stats.token_mints,
        "jwt_failures": stats.jwt_failures_total(),
        "bad_credentials": stats.bad_credentials,
        "header_violations": stats.header_violations,
        "faults_served": stats.faults_served,
        "requests": requests,
    })
}

/// `{worker_id: {"claims", "succeeded", "released"}}` over every action's history.
fn workers_json(backend: &BackendSim) -> Value {
    #[derive(Default)]
    struct PerWorker {
        claims: u64,
        succeeded: u64,
        released: u64,
    }
    let mut workers: BTreeMap<String, PerWorker> = BTreeMap::new();
    for action in backend.actions() {
        for claim in &action.claims {
            workers.entry(claim.worker_id.clone()).or_default().claims += 1;
        }
        for result in &action.results {
            let w = workers.entry(result.worker_id.clone()).or_default();
            match result.outcome {
                Outcome::Succeeded => w.succeeded += 1,
                Outcome::RetryableFailure
                    if result.failure_code.as_deref() == Some("WORKER_SHUTDOWN") =>
                {
                    w.released += 1
                }
                _ => {}
            }
        }
    }
    workers
        .into_iter()
        .map(|(id, w)| {
            (
                id,
                json!({"claims": w.claims, "succeeded": w.succeeded, "released": w.released}),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

async fn stats(State(c): State<Control>) -> Json<Value> {
    Json(json!({
        "backend": backend_json(&c.backend.stats()),
        "outbox": status_counts(&c.backend),
        "github": github_json(&c.github.stats()),
        "workers": workers_json(&c.backend),
    }))
}

async fn github_latency(
    State(c): State<Control>,
    Query(q): Query<LatencyQuery>,
) -> (StatusCode, Json<Value>) {
    if q.ms > MAX_GITHUB_LATENCY_MS {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("ms must be at most {MAX_GITHUB_LATENCY_MS}")})),
        );
    }
    c.set_github_latency(Duration::from_millis(q.ms));
    (StatusCode::OK, Json(json!({"github_latency_ms": q.ms})))
}

async fn enqueue(
    State(c): State<Control>,
    Query(q): Query<EnqueueQuery>,
) -> (StatusCode, Json<Value>) {
    if q.count > MAX_ENQUEUE {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": format!("count must be at most {MAX_ENQUEUE}")})),
        );
    }
    enqueue_actions(&c.backend, q.count);
    (
        StatusCode::OK,
        Json(json!({"enqueued": q.count, "outbox": status_counts(&c.backend)})),
    )
}

fn enqueue_actions(backend: &BackendSim, count: u32) {
    let first = backend.actions().len() as u64;
    for n in 0..u64::from(count) {
        backend.enqueue_action(bench_action(first + n));
    }
}

async fn deliveries(State(c): State<Control>) -> Json<Value> {
    Json(json!({"pull_request": c.backend.ingest_requests("pull_request")}))
}

fn control_router(control: Control) -> Router {
    Router::new()
        .route("/stats", get(stats))
        .route("/deliveries", get(deliveries))
        .route("/actions", post(enqueue))
        .route("/github/latency", put(github_latency))
        .with_state(control)
}

/// Writes `contents` to `path` through a temporary file in the same directory, so a
/// reader never sees half a file.
fn write_atomically(path: &Path, contents: &str) -> Result<(), SandboxError> {
    let err = |source| SandboxError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, contents).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// Starts the simulators, prints the environment and serves until `shutdown` completes.
///
/// Errors: simulators or control API that cannot start, files that cannot be written.
pub async fn run(
    args: SandboxArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SandboxError> {
    crate::tls::install_crypto_provider();
    let advertised_host = match &args.advertise_host {
        Some(host) => host.clone(),
        None if args.bind_address.is_unspecified() => "127.0.0.1".to_owned(),
        None => args.bind_address.to_string(),
    };
    let peers = Peers::start_on(&Listen {
        bind_address: args.bind_address,
        github_port: args.github_port,
        backend_port: args.backend_port,
        advertised_host: Some(advertised_host),
    })
    .await?;
    if args.no_enqueue {
        peers.backend.set_policy(GatePolicy {
            enqueue_actions: false,
            ..GatePolicy::default()
        });
    }
    if args.backend_latency_ms > 0 {
        peers
            .backend
            .set_latency(Duration::from_millis(args.backend_latency_ms));
    }
    let control_state = Control::new(peers.backend.clone(), peers.github.clone());
    control_state.set_github_latency(Duration::from_millis(args.github_latency_ms));
    let repositories = bench_repositories();
    for installation in 1..=BENCH_INSTALLATIONS {
        let repos = repositories
            .iter()
            .filter(|(i, _, _)| *i == installation)
            .map(|(_, id, name)| (*id, name.as_str()));
        peers.github.add_installation(
            installation,
            &format!("bench-org-{installation}"),
            "Organization",
            repos,
        )?;
    }
    enqueue_actions(&peers.backend, args.actions);

    let control = Served::bind(
        control_router(control_state),
        std::net::SocketAddr::new(args.bind_address, args.control_port),
    )
    .await
    .map_err(SandboxError::Bind)?;

    let mut env = peers.worker_env(args.worker_port, &args.worker_id);
    env.insert(
        "SITG_SANDBOX_CONTROL_URL".to_owned(),
        peers.url_of(&control),
    );
    let lines: String = env.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&env).unwrap_or_default();
        write_atomically(path, &text)?;
    }
    if let Some(path) = &args.env_file {
        write_atomically(path, &lines)?;
    }
    {
        let mut out = std::io::stdout().lock();
        // A closed stdout (the harness only reads the env file) must not stop the sandbox.
        let _ = out.write_all(lines.as_bytes());
        let _ = out.flush();
    }
    shutdown.await;
    drop(control);
    drop(peers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_actions_spread_over_installations_and_repositories() {
        let repos = bench_repositories();
        assert_eq!(
            repos.len() as i64,
            BENCH_INSTALLATIONS * BENCH_REPOSITORIES_PER_INSTALLATION
        );
        let a = bench_action(0);
        let b = bench_action(1);
        assert_ne!(a.repo_full_name, b.repo_full_name);
        assert_ne!(a.github_pr_number, b.github_pr_number);
        assert_eq!(
            bench_action(repos.len() as u64).repo_full_name,
            a.repo_full_name
        );
    }

    #[tokio::test]
    async fn simulators_bind_the_given_ports_and_advertise_the_given_host() {
        crate::tls::install_crypto_provider();
        let free = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .unwrap()
        };
        let (github_port, backend_port) = (free(), free());
        let peers = Peers::start_on(&Listen {
            bind_address: std::net::IpAddr::from([127, 0, 0, 1]),
            github_port,
            backend_port,
            advertised_host: Some("sim.test".to_owned()),
        })
        .await
        .unwrap();
        assert_eq!(peers.github_server.addr().port(), github_port);
        assert_eq!(peers.backend_server.addr().port(), backend_port);
        let env = peers.worker_env(3100, "w");
        assert_eq!(
            env["GITHUB_API_BASE_URL"],
            format!("http://sim.test:{github_port}")
        );
        assert_eq!(
            env["BACKEND_BASE_URL"],
            format!("http://sim.test:{backend_port}")
        );
        // Served for real on the bound port.
        let answer = reqwest::get(format!("http://127.0.0.1:{github_port}/"))
            .await
            .unwrap();
        assert!(answer.status().as_u16() > 0);
    }

    #[tokio::test]
    async fn control_api_enqueues_and_counts() {
        crate::tls::install_crypto_provider();
        let peers = Peers::start().await.unwrap();
        let served = Served::bind_local(control_router(Control::new(
            peers.backend.clone(),
            peers.github.clone(),
        )))
        .await
        .unwrap();
        let client = reqwest::Client::new();
        let answer: Value = client
            .post(format!("{}/actions?count=3", served.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["outbox"]["pending"], 3);
        let stats: Value = client
            .get(format!("{}/stats", served.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats["outbox"]["pending"], 3);
        assert_eq!(stats["github"]["token_mints"], 0);
        let deliveries: Value = client
            .get(format!("{}/deliveries", served.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(deliveries, json!({"pull_request": {}}));
        let too_many = client
            .post(format!(
                "{}/actions?count={}",
                served.base_url(),
                MAX_ENQUEUE + 1
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(too_many.status(), 400);
    }

    /// `PUT /github/latency` delays every GitHub simulator answer from then on, a second
    /// call replaces the first, 0 removes it; `/stats` counts claims and reports per worker.
    #[tokio::test]
    async fn control_api_sets_github_latency_and_counts_per_worker() {
        crate::tls::install_crypto_provider();
        let peers = Peers::start().await.unwrap();
        let served = Served::bind_local(control_router(Control::new(
            peers.backend.clone(),
            peers.github.clone(),
        )))
        .await
        .unwrap();
        let client = reqwest::Client::new();
        let github = peers.github_server.base_url();
        // `GET /app` with an App JWT: a route the faults apply to.
        let now = chrono::Utc::now().timestamp();
        let key =
            jsonwebtoken::EncodingKey::from_rsa_pem(peers.app_key.private_pem.expose().as_bytes())
                .unwrap();
        let jwt = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &json!({"iat": now - 60, "exp": now + 540, "iss": crate::peers::SANDBOX_APP_ID}),
            &key,
        )
        .unwrap();
        let timed_get = || async {
            let start = std::time::Instant::now();
            let answer = client
                .get(format!("{github}/app"))
                .bearer_auth(&jwt)
                .header("accept", "application/vnd.github+json")
                .header("user-agent", "sitg-sandbox-test")
                .send()
                .await
                .unwrap();
            assert_eq!(answer.status(), 200);
            start.elapsed()
        };
        let set = |ms: u64| {
            let (client, url) = (client.clone(), served.base_url());
            async move {
                client
                    .put(format!("{url}/github/latency?ms={ms}"))
                    .send()
                    .await
                    .unwrap()
            }
        };
        assert_eq!(set(400).await.status(), 200);
        assert!(timed_get().await >= Duration::from_millis(400));
        // Replaced, not added up: 400 + 300 would be 700.
        assert_eq!(set(300).await.status(), 200);
        let replaced = timed_get().await;
        assert!(replaced >= Duration::from_millis(300), "{replaced:?}");
        assert!(replaced < Duration::from_millis(700), "{replaced:?}");
        assert_eq!(set(0).await.status(), 200);
        assert!(timed_get().await < Duration::from_millis(300));
        assert_eq!(set(MAX_GITHUB_LATENCY_MS + 1).await.status(), 400);

        // Per worker: claims, successes and shutdown releases, as the store recorded them.
        let ids: Vec<_> = (0..3)
            .map(|n| peers.backend.enqueue_action(bench_action(n)))
            .collect();
        let now = chrono::Utc::now();
        let claimed = peers.backend.claim_for_test("pod-a", 2, now);
        assert_eq!(claimed.len(), 2);
        peers
            .backend
            .report_for_test(ids[0], "pod-a", Outcome::Succeeded, None, now)
            .unwrap();
        peers
            .backend
            .report_for_test(
                ids[1],
                "pod-a",
                Outcome::RetryableFailure,
                Some("WORKER_SHUTDOWN".into()),
                now,
            )
            .unwrap();
        assert_eq!(peers.backend.claim_for_test("pod-b", 5, now).len(), 2);
        let stats: Value = client
            .get(format!("{}/stats", served.base_url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            stats["workers"],
            json!({
                "pod-a": {"claims": 2, "succeeded": 1, "released": 1},
                "pod-b": {"claims": 2, "succeeded": 0, "released": 0},
            })
        );
    }
}
