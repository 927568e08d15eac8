//! `sitg-bot dev`: the whole fleet on one machine, with no account and no cluster.
//!
//! Starts the backend and GitHub simulators, two worker replicas in front of them,
//! pushes GitHub's example payloads through the webhook URL, lets the backend enqueue
//! actions that the workers execute on the simulated GitHub, and prints an account of
//! what happened. Keeps serving until Ctrl-C (or exits after the account with `--once`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, WorkerConfig};
use crate::sandbox::backend::{ActionStatus, IngestOutcome, NewAction};
use crate::sandbox::examples::{self, Examples, deliver};
use crate::sandbox::github::GitHubWrite;
use crate::sandbox::peers::Peers;
use crate::worker::{self, Listeners};

/// Options of `sitg-bot dev`.
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
}

struct RunningWorker {
    name: String,
    addr: SocketAddr,
    handle: tokio::task::JoinHandle<Result<(), worker::WorkerError>>,
}

async fn listen(port: u16) -> anyhow::Result<TcpListener> {
    match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => Ok(l),
        // A busy default port should not stop a demo: take any free one.
        Err(_) if port != 0 => Ok(TcpListener::bind(("127.0.0.1", 0)).await?),
        Err(e) => Err(e.into()),
    }
}

async fn start_worker(
    peers: &Peers,
    name: &str,
    port: u16,
    shutdown: &CancellationToken,
) -> anyhow::Result<RunningWorker> {
    let listener = listen(port).await?;
    let addr = listener.local_addr()?;
    let env: BTreeMap<String, String> = peers.worker_env(addr.port(), name);
    let mut config = WorkerConfig::from_lookup(|k| env.get(k).cloned())?;
    config.log_format = LogFormat::Text;
    let state = worker::build_state(&config)?;
    let handle = tokio::spawn(worker::run(
        config,
        state,
        Listeners {
            main: listener,
            metrics: None,
        },
        shutdown.clone(),
    ));
    Ok(RunningWorker {
        name: name.to_owned(),
        addr,
        handle,
    })
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
    let _log = crate::telemetry::init(LogFormat::Text, "error");
    let examples = Examples::load(&args.examples)?;
    let peers = Peers::start().await.context("starting the simulators")?;
    peers.install_for_examples(&examples)?;

    let shutdown = CancellationToken::new();
    let second_port = if args.port == 0 { 0 } else { args.port + 1 };
    let workers = vec![
        start_worker(&peers, "dev-worker-1", args.port, &shutdown).await?,
        start_worker(&peers, "dev-worker-2", second_port, &shutdown).await?,
    ];
    println!("sitg-bot dev");
    println!("  backend simulator  {}", peers.backend_server.base_url());
    println!("  GitHub simulator   {}", peers.github_server.base_url());
    for w in &workers {
        println!("  {:<18} http://{}/webhooks/github", w.name, w.addr);
    }
    // Let readiness settle (each worker probes the backend once at start).
    tokio::time::sleep(Duration::from_millis(300)).await;

    println!("\nWebhook deliveries (GitHub's example payloads, signed like GitHub):");
    let client = reqwest::Client::new();
    let secret = peers.webhook_secret.expose().to_owned();
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

    if args.once {
        shutdown.cancel();
    } else {
        println!("\nServing; send your own deliveries to the URLs above. Ctrl-C stops.");
        wait_for_ctrl_c(&shutdown).await;
    }
    shutdown.cancel();
    for w in workers {
        w.handle.await??;
    }
    let left = peers.backend.claimed_count();
    println!("Stopped; actions left claimed: {left}.");
    Ok(())
}

async fn wait_for_ctrl_c(shutdown: &CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
        () = shutdown.cancelled() => {}
    }
}
