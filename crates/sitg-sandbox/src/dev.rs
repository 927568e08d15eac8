//! `sitg-sandbox dev`: the whole fleet on one machine, with no account and no cluster.
//!
//! Starts the backend and GitHub simulators and two real `sitg-bot worker` processes in
//! front of them (configured from the environment, as users run them), pushes GitHub's
//! example payloads through the webhook URL, lets the backend enqueue actions that the
//! workers execute on the simulated GitHub, and prints an account of what happened,
//! with the webhook secret so a user can sign deliveries of their own. Keeps serving
//! until Ctrl-C (or exits after the account with `--once`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::backend::{ActionStatus, IngestOutcome, NewAction};
use crate::examples::{self, Examples, deliver};
use crate::github::GitHubWrite;
use crate::peers::Peers;

/// How long a worker may take to answer `/readyz` with 200 after it was started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a worker may take to exit after SIGTERM: its default
/// `SHUTDOWN_TIMEOUT_SECONDS` (20) plus a margin.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// Options of `sitg-sandbox dev`.
#[derive(Debug, Clone, clap::Args)]
pub struct DevArgs {
    /// Directory of the `@octokit/webhooks-examples` package.
    #[arg(long, env = "SITG_WEBHOOK_EXAMPLES", default_value = examples::DEFAULT_PACKAGE_DIR)]
    pub examples: PathBuf,
    /// Port of the first worker; the second takes the next one. 0 picks free ports.
    #[arg(long, default_value_t = 3101)]
    pub port: u16,
    /// Print the account and exit instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// The `sitg-bot` binary the workers run (default: `sitg-bot` next to this
    /// executable, where `cargo build` puts both).
    #[arg(long, env = "SITG_BOT_BIN")]
    pub worker_bin: Option<PathBuf>,
}

/// One `sitg-bot worker` child process, killed if dropped while still running.
struct RunningWorker {
    name: String,
    addr: SocketAddr,
    child: Child,
}

/// `sitg-bot` next to the running executable.
fn default_worker_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the sitg-sandbox executable")?;
    let dir = exe
        .parent()
        .context("the sitg-sandbox executable has no directory")?;
    Ok(dir.join("sitg-bot"))
}

/// Free loopback ports for the workers: each of `wanted` itself when it is free, else
/// (or for 0) any free one. All probes are held until every port is chosen, so no two
/// workers get the same one; they are closed before the workers bind, a window in which
/// another process could take a port (the worker then exits naming `PORT`).
fn pick_ports(wanted: &[u16]) -> anyhow::Result<Vec<u16>> {
    let mut probes = Vec::with_capacity(wanted.len());
    for &port in wanted {
        probes.push(match std::net::TcpListener::bind(("127.0.0.1", port)) {
            Ok(l) => l,
            // A busy default port should not stop a demo: take any free one.
            Err(_) if port != 0 => std::net::TcpListener::bind(("127.0.0.1", 0))?,
            Err(e) => return Err(e.into()),
        });
    }
    probes.iter().map(|p| Ok(p.local_addr()?.port())).collect()
}

fn start_worker(bin: &Path, peers: &Peers, name: &str, port: u16) -> anyhow::Result<RunningWorker> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Only the variables of the deployment guide, as a systemd env file would give them;
    // RUST_LOG passes through so a user can turn the workers' logs up.
    let rust_log = std::env::var("RUST_LOG").unwrap_or_else(|_| "error".to_owned());
    let child = Command::new(bin)
        .arg("worker")
        .env_clear()
        .envs(peers.worker_env(port, name))
        .env("LOG_FORMAT", "text")
        .env("RUST_LOG", rust_log)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| {
            format!(
                "starting {} worker (build it with `cargo build -p sitg-bot`, or pass \
                 --worker-bin / SITG_BOT_BIN)",
                bin.display()
            )
        })?;
    Ok(RunningWorker {
        name: name.to_owned(),
        addr,
        child,
    })
}

impl RunningWorker {
    /// Waits until `/readyz` answers 200 (the worker listens and has reached the
    /// backend once).
    async fn ready(&mut self, client: &reqwest::Client) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        let url = format!("http://{}/readyz", self.addr);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!("{} exited before it was ready: {status}", self.name);
            }
            if let Ok(r) = client.get(&url).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("{} not ready within {READY_TIMEOUT:?}", self.name)
    }

    /// SIGTERM, as Kubernetes and systemd stop a worker, then waits for the exit.
    async fn stop(mut self) -> anyhow::Result<()> {
        if self.child.try_wait()?.is_none() {
            if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
                // ESRCH: it exited meanwhile; the wait below reports how.
                let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
            }
        }
        let status: ExitStatus = tokio::time::timeout(EXIT_TIMEOUT, self.child.wait())
            .await
            .with_context(|| {
                format!("{} still running {EXIT_TIMEOUT:?} after SIGTERM", self.name)
            })??;
        if !status.success() {
            bail!("{} exited with {status}", self.name);
        }
        Ok(())
    }
}

/// The examples pushed through the webhook URL: every forwarded kind once, plus a few
/// that are ignored.
fn chosen(examples: &Examples) -> Vec<&examples::Example> {
    let picks: [(&str, Option<&str>); 10] = [
        ("pull_request", Some("opened")),
        ("pull_request", Some("reopened")),
        ("pull_request", Some("synchronize")),
        ("pull_request", Some("ready_for_review")),
        ("pull_request", Some("closed")),
        ("installation", Some("created")),
        ("installation", Some("unsuspend")),
        ("installation_repositories", Some("added")),
        ("installation_repositories", Some("removed")),
        ("ping", None),
    ];
    picks
        .iter()
        .filter_map(|(event, action)| {
            examples
                .of(event, *action)
                .find(|e| e.payload.get("installation").is_some() || e.event == "ping")
        })
        .collect()
}

/// Runs the demonstration; see the module documentation.
pub async fn run(args: DevArgs) -> anyhow::Result<()> {
    crate::tls::install_crypto_provider();
    let bin = match &args.worker_bin {
        Some(bin) => bin.clone(),
        None => default_worker_bin()?,
    };
    let examples = Examples::load(&args.examples)?;
    let peers = Peers::start().await.context("starting the simulators")?;
    peers.install_for_examples(&examples)?;

    let second_port = if args.port == 0 {
        0
    } else {
        args.port.checked_add(1).unwrap_or(0)
    };
    let ports = pick_ports(&[args.port, second_port])?;
    let mut workers = vec![
        start_worker(&bin, &peers, "dev-worker-1", ports[0])?,
        start_worker(&bin, &peers, "dev-worker-2", ports[1])?,
    ];
    let client = reqwest::Client::new();
    for w in &mut workers {
        w.ready(&client).await?;
    }
    let secret = peers.webhook_secret.expose().to_owned();
    println!("sitg-sandbox dev: the sitg-bot fleet on local simulators");
    println!("  backend simulator  {}", peers.backend_server.base_url());
    println!("  GitHub simulator   {}", peers.github_server.base_url());
    for w in &workers {
        println!("  {:<18} http://{}/webhooks/github", w.name, w.addr);
    }
    // The simulators' throw-away credentials: printing them is the point.
    println!("  webhook secret     {secret}");
    println!("  worker binary      {}", bin.display());
    println!(
        "\nSign a delivery of your own with the webhook secret (GitHub's X-Hub-Signature-256):"
    );
    println!("  {}", curl_example(&secret, workers[0].addr));

    println!("\nWebhook deliveries (GitHub's example payloads, signed like GitHub):");
    for (i, example) in chosen(&examples).into_iter().enumerate() {
        let target = &workers[i % workers.len()];
        let url = format!("http://{}/webhooks/github", target.addr);
        let delivery = uuid::Uuid::new_v4().to_string();
        let answer = deliver(
            &client,
            &url,
            &secret,
            &example.event,
            &delivery,
            example.body(),
        )
        .await?;
        let what = match example.action() {
            Some(action) => format!("{}.{action}", example.event),
            None => example.event.clone(),
        };
        let detail = match answer.body.get("status").and_then(|s| s.as_str()) {
            Some("forwarded") => format!(
                "forwarded, ingest {}",
                answer.body["ingest_status"].as_str().unwrap_or("?")
            ),
            Some("ignored") => {
                format!("ignored ({})", answer.body["reason"].as_str().unwrap_or(""))
            }
            _ => answer.body.to_string(),
        };
        println!(
            "  {:<40} → {} {} {detail}",
            what, target.name, answer.status
        );
    }
    // A delivery with a wrong signature, as a misconfigured secret would produce.
    let bad = deliver(
        &client,
        &format!("http://{}/webhooks/github", workers[0].addr),
        "wrong-secret",
        "ping",
        "bad-1",
        b"{}".to_vec(),
    )
    .await?;
    println!(
        "  {:<40} → {} {} (wrong secret)",
        "ping signed with a wrong secret", workers[0].name, bad.status
    );

    // A pull request the backend decided to close, as it does for contributors who do
    // not stake.
    peers.backend.enqueue_action(NewAction::close_with_comment(
        1,
        186853002,
        "Codertocat/Hello-World",
        7,
        "This pull request was closed: no stake was posted in time.",
        "sitg:close:dev-7",
        "NO_STAKE",
    ));
    // One action the backend should never have produced, to show a FAILED report.
    peers.backend.enqueue_action(NewAction::upsert_comment(
        1,
        1,
        "org/repo/../../x",
        1,
        "never posted",
        "sitg:gate:invalid",
    ));

    println!("\nOutbox (executed by the workers on the GitHub simulator):");
    let settled = peers
        .backend
        .wait_for(Duration::from_secs(30), |b| {
            b.pending_count() == 0 && b.claimed_count() == 0
        })
        .await;
    if !settled {
        println!("  (actions still pending after 30 s)");
    }
    for action in peers.backend.actions() {
        let failure = action
            .last_failure_code()
            .map(|c| format!(" [{c}]"))
            .unwrap_or_default();
        println!(
            "  {} {:<22} {:<28} #{:<4} {:?}{failure} by {}",
            action.id,
            action.action_type,
            action.repo_full_name,
            action.github_pr_number,
            action.status,
            action
                .claims
                .last()
                .map(|c| c.worker_id.as_str())
                .unwrap_or("-"),
        );
    }

    println!("\nGitHub writes:");
    for write in peers.github.writes() {
        match write {
            GitHubWrite::CommentCreated {
                repo,
                number,
                comment_id,
            } => println!("  comment {comment_id} created on {repo}#{number}"),
            GitHubWrite::CommentUpdated {
                repo,
                number,
                comment_id,
            } => println!("  comment {comment_id} updated on {repo}#{number}"),
            GitHubWrite::CommentDeleted {
                repo,
                number,
                comment_id,
            } => println!("  comment {comment_id} deleted on {repo}#{number}"),
            GitHubWrite::PullRequestClosed { repo, number } => {
                println!("  pull request {repo}#{number} closed")
            }
        }
    }

    let events = peers.backend.events();
    let count = |o: IngestOutcome| events.iter().filter(|e| e.outcome == o).count();
    let done = peers.backend.count(ActionStatus::Done);
    let failed = peers.backend.count(ActionStatus::Failed);
    println!("\nSummary:");
    println!(
        "  events at the backend: {} accepted, {} duplicate, {} ignored, {} failed",
        count(IngestOutcome::Accepted),
        count(IngestOutcome::Duplicate),
        count(IngestOutcome::Ignored),
        count(IngestOutcome::Failed),
    );
    println!("  actions: {done} done, {failed} failed");
    println!(
        "  signature replays refused by the backend: {}",
        peers.backend.stats().replays_rejected
    );
    for w in &workers {
        println!("  metrics of {}: http://{}/metrics", w.name, w.addr);
    }

    if !args.once {
        println!("\nServing; send your own deliveries to the URLs above. Ctrl-C stops.");
        wait_for_ctrl_c().await;
    }
    for w in workers {
        w.stop().await?;
    }
    let left = peers.backend.claimed_count();
    println!("Stopped; actions left claimed: {left}.");
    Ok(())
}

/// A shell line that signs a `ping` delivery with `secret` and posts it to `addr`.
fn curl_example(secret: &str, addr: SocketAddr) -> String {
    format!(
        "body='{{\"zen\":\"hi\"}}'; curl -sS -H 'Content-Type: application/json' \
         -H 'X-GitHub-Event: ping' -H 'X-GitHub-Delivery: my-1' \
         -H \"X-Hub-Signature-256: sha256=$(printf %s \"$body\" | openssl dgst -sha256 -hmac '{secret}' -r | cut -d' ' -f1)\" \
         --data \"$body\" http://{addr}/webhooks/github"
    )
}

/// Ctrl-C also reaches the workers (one process group); SIGTERM reaches only us.
async fn wait_for_ctrl_c() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
}
