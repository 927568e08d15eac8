//! `sitg-bot verify`: the production verification checklist as one command.
//!
//! Against a list of replica metrics URLs (the systemd layout) or a `BotFleet`'s pods
//! (through the Kubernetes API server's pod proxy), it checks that:
//!
//! 1. every replica answers `/healthz` with 200;
//! 2. `/metrics` scrapes twice, `--interval` seconds apart;
//! 3. with `--expect-traffic`, the forwarding counters
//!    (`sitg_bot_webhook_pull_request_forwarded_total` +
//!    `sitg_bot_webhook_installation_sync_forwarded_total`) and
//!    `sitg_bot_outbox_actions_success_total` moved, summed over the fleet;
//! 4. `sitg_bot_errors_total` stayed flat on every replica;
//! 5. on every replica, retryable + failed actions are at most `--max-failure-ratio` of
//!    the actions it reported in the window;
//!
//! and prints one table line per replica. Exit code 0 when every check held, 1 when one
//! failed (each failure named on its own line), 2 when the command could not run
//! (bad arguments, no kubeconfig, fleet not found).

pub mod checklist;
pub mod scrape;
pub mod source;
pub mod table;

use std::time::Duration;

use clap::Args;

pub use checklist::{Observation, Policy, Report, evaluate};
pub use scrape::Snapshot;
pub use source::{Endpoint, Fetcher, Replica, SourceError};

/// Arguments of `sitg-bot verify`.
#[derive(Debug, Clone, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["replica", "botfleet"])))]
pub struct VerifyArgs {
    /// Metrics base URL of one replica (repeatable), e.g. http://10.0.0.5:9090 for a
    /// systemd host's METRICS_PORT; `/healthz` and `/metrics` are appended.
    #[arg(long, value_name = "URL")]
    pub replica: Vec<String>,
    /// Name of a BotFleet: its pods are checked through the API server's pod proxy,
    /// with the kubeconfig's credentials (needs get on pods/proxy and botfleets).
    #[arg(long, value_name = "NAME", conflicts_with = "replica")]
    pub botfleet: Option<String>,
    /// Namespace of the BotFleet (default: the kubeconfig's namespace).
    #[arg(long, value_name = "NS", requires = "botfleet")]
    pub namespace: Option<String>,
    /// Seconds between the two scrapes.
    #[arg(long, value_name = "SECONDS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub interval: u64,
    /// Traffic flows during the window: forwarding and outbox success must move.
    #[arg(long)]
    pub expect_traffic: bool,
    /// Largest share of each replica's reported actions that may be retryable or
    /// failed within the window, 0..1.
    #[arg(long, value_name = "RATIO", default_value_t = 0.1, value_parser = parse_ratio)]
    pub max_failure_ratio: f64,
    /// Seconds each request may take.
    #[arg(long, value_name = "SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub timeout: u64,
}

fn parse_ratio(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("must be a number in 0..1, got {raw:?}")),
    }
}

/// `verify` could not run at all (as opposed to a checklist that failed).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Resolves the replicas, observes each one and evaluates the checklist.
///
/// # Errors
/// [`VerifyError`] when the replicas cannot be listed; an unreachable replica is a
/// failed check in the [`Report`], not an error.
pub async fn run(args: &VerifyArgs) -> Result<Report, VerifyError> {
    let timeout = Duration::from_secs(args.timeout);
    let (replicas, fetcher) = match &args.botfleet {
        Some(fleet) => {
            let client = kube::Client::try_default()
                .await
                .map_err(SourceError::KubeConfig)?;
            let replicas =
                source::replicas_of_fleet(&client, fleet, args.namespace.as_deref()).await?;
            (replicas, Fetcher::new(Some(client), timeout))
        }
        None => (
            source::replicas_from_urls(&args.replica)?,
            Fetcher::new(None, timeout),
        ),
    };
    let policy = Policy {
        expect_traffic: args.expect_traffic,
        max_failure_ratio: args.max_failure_ratio,
        interval_seconds: args.interval,
    };
    let observations = observe(&replicas, &fetcher, Duration::from_secs(args.interval)).await;
    Ok(evaluate(&observations, &policy))
}

/// Asks every replica at once: `/healthz` and a first scrape, then after `interval` a
/// second scrape.
pub async fn observe(
    replicas: &[Replica],
    fetcher: &Fetcher,
    interval: Duration,
) -> Vec<Observation> {
    let first = futures::future::join_all(replicas.iter().map(|r| async move {
        if r.unavailable.is_some() {
            return (Err("not asked".to_owned()), Err("not asked".to_owned()));
        }
        let health = fetcher.get(&r.endpoint, "/healthz").await.map(|(s, _)| s);
        (health, scrape(fetcher, &r.endpoint).await)
    }))
    .await;
    tokio::time::sleep(interval).await;
    let second = futures::future::join_all(replicas.iter().map(|r| async move {
        if r.unavailable.is_some() {
            return Err("not asked".to_owned());
        }
        scrape(fetcher, &r.endpoint).await
    }))
    .await;
    replicas
        .iter()
        .zip(first)
        .zip(second)
        .map(|((r, (health, first)), second)| Observation {
            replica: r.name.clone(),
            unavailable: r.unavailable.clone(),
            health,
            first,
            second,
        })
        .collect()
}

async fn scrape(fetcher: &Fetcher, endpoint: &Endpoint) -> Result<Snapshot, String> {
    let (status, body) = fetcher.get(endpoint, "/metrics").await?;
    if status != 200 {
        return Err(format!("answered {status}, not 200"));
    }
    Snapshot::parse(&body).map_err(|e| e.to_string())
}
