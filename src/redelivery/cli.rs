//! `sitg-bot redeliver`: one sweep from the command line (a systemd timer runs it
//! every minute), configured like the worker's GitHub settings.

use std::path::PathBuf;
use std::time::Duration;

use url::Url;

use super::metrics::RedeliveryMetrics;
use super::plan::SweepPolicy;
use super::sweep::{SweepReport, Sweeper};
use super::textfile;
use crate::github::{GitHubClient, GitHubConfig};
use crate::secret::SecretString;
use crate::worker::config::unescape_pem;

/// Options of `sitg-bot redeliver`; each also comes from the environment variable named.
#[derive(Debug, Clone, clap::Args)]
pub struct RedeliverArgs {
    /// The App id (`GITHUB_APP_ID`), as for the worker.
    #[arg(long, env = "GITHUB_APP_ID")]
    pub app_id: u64,
    /// The App's private key PEM (`GITHUB_APP_PRIVATE_KEY`): real newlines or `\n` escapes.
    #[arg(long = "app-private-key", env = "GITHUB_APP_PRIVATE_KEY", hide_env_values = true, value_parser = secret)]
    pub app_private_key: SecretString,
    /// GitHub's REST API (`GITHUB_API_BASE_URL`).
    #[arg(long, env = "GITHUB_API_BASE_URL", default_value = crate::github::DEFAULT_API_BASE_URL)]
    pub api_base_url: Url,
    /// Look-back window in seconds; clamped below GitHub's 3-day retention.
    #[arg(long, env = "REDELIVERY_LOOK_BACK_SECONDS", default_value_t = 86_400,
          value_parser = clap::value_parser!(u64).range(60..=259_200))]
    pub look_back_seconds: u64,
    /// Most redeliveries requested by one sweep.
    #[arg(long, env = "REDELIVERY_MAX_PER_SWEEP", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub max_per_sweep: u64,
    /// Failed attempts after which an event is given up.
    #[arg(long, env = "REDELIVERY_MAX_ATTEMPTS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=20))]
    pub max_attempts: u64,
    /// Write the sweep's metrics here in Prometheus text format (for node_exporter's
    /// textfile collector); counters carry over between runs through `--state-dir`.
    #[arg(long, env = "REDELIVERY_METRICS_FILE")]
    pub metrics_file: Option<PathBuf>,
    /// Where counters are kept between runs (systemd's `StateDirectory=` sets
    /// `STATE_DIRECTORY`).
    #[arg(long, env = "STATE_DIRECTORY")]
    pub state_dir: Option<PathBuf>,
}

fn secret(raw: &str) -> Result<SecretString, String> {
    let pem = unescape_pem(raw);
    if pem.contains("-----BEGIN") {
        Ok(SecretString::new(pem))
    } else {
        Err("must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)".to_owned())
    }
}

impl RedeliverArgs {
    /// The sweep's bounds.
    pub fn policy(&self) -> SweepPolicy {
        SweepPolicy {
            look_back: Duration::from_secs(self.look_back_seconds),
            max_redeliveries: usize::try_from(self.max_per_sweep).unwrap_or(usize::MAX),
            max_attempts_per_event: usize::try_from(self.max_attempts).unwrap_or(usize::MAX),
        }
    }

    /// The GitHub client settings, as the worker builds them.
    pub fn github_config(&self) -> GitHubConfig {
        GitHubConfig {
            api_base_url: self.api_base_url.clone(),
            app_id: self.app_id,
            private_key_pem: self.app_private_key.clone(),
            user_agent: crate::worker::USER_AGENT.to_owned(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// Why `sitg-bot redeliver` failed.
#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    #[error("GitHub client: {0}")]
    GitHub(#[from] crate::github::GitHubError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("metrics file: {0}")]
    Textfile(#[from] textfile::TextfileError),
}

/// Runs one sweep. The metrics file (when asked for) is written even when listing
/// failed, so the failure shows in `sitg_bot_redelivery_failures_total`.
///
/// # Errors
/// A bad key or base URL, unlistable deliveries, an unwritable metrics or state file.
pub async fn run(args: RedeliverArgs) -> Result<SweepReport, RedeliverError> {
    let registry = prometheus::Registry::new();
    let github = GitHubClient::new(args.github_config(), &registry)?;
    let metrics = RedeliveryMetrics::register(&registry)?;
    let counters = match &args.state_dir {
        Some(dir) => Some(textfile::Counters::load(dir)?),
        None => None,
    };
    if let Some(counters) = &counters {
        counters.restore(&metrics);
    }
    let sweeper = Sweeper::new(github, args.policy(), metrics.clone());
    let result = sweeper.sweep().await;
    if let Some(dir) = &args.state_dir {
        textfile::Counters::of(&metrics).save(dir)?;
    }
    if let Some(path) = &args.metrics_file {
        textfile::write_metrics(path, &registry)?;
    }
    Ok(result?)
}
