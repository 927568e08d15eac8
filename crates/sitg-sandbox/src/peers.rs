//! Both simulators started together, with the credentials a worker needs to talk to
//! them: what `sitg-sandbox dev`, the end-to-end tests and the benchmarks stand on.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::Served;
use super::backend::{BackendSim, BackendSimConfig};
use super::examples::Examples;
use super::github::{GitHubSim, GitHubSimConfig, GitHubSimError, SetupError};
use super::keys::{AppKeyPair, KeyError, generate_app_key};
use crate::secret::SecretString;

/// App id of the simulated GitHub App.
pub const SANDBOX_APP_ID: u64 = 4242;
/// Bot key id of the simulated backend.
pub const SANDBOX_KEY_ID: &str = "bck_sandbox";

/// The simulators could not start.
#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error("could not generate the App key: {0}")]
    Key(#[from] KeyError),
    #[error("could not start the GitHub simulator: {0}")]
    GitHub(#[from] GitHubSimError),
    #[error("could not set up the GitHub simulator: {0}")]
    Setup(#[from] SetupError),
    #[error("could not bind a simulator: {0}")]
    Bind(#[from] std::io::Error),
}

/// Where the simulators listen and which host their URLs name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listen {
    /// Address both simulators bind (127.0.0.1 by default; 0.0.0.0 in a pod).
    pub bind_address: IpAddr,
    /// Port of the GitHub simulator (0: a free one).
    pub github_port: u16,
    /// Port of the backend simulator (0: a free one).
    pub backend_port: u16,
    /// Host (name or IP) put into the URLs of the worker environment, e.g. a pod IP;
    /// `None`: the bound IP address.
    pub advertised_host: Option<String>,
}

impl Default for Listen {
    /// Free loopback ports, URLs naming 127.0.0.1.
    fn default() -> Self {
        Self {
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            github_port: 0,
            backend_port: 0,
            advertised_host: None,
        }
    }
}

/// A running backend simulator and GitHub simulator (on loopback ports, unless started
/// with [`Peers::start_on`]).
pub struct Peers {
    pub backend: BackendSim,
    pub github: GitHubSim,
    pub backend_server: Served,
    pub github_server: Served,
    pub app_key: AppKeyPair,
    pub webhook_secret: SecretString,
    pub hmac_secret: SecretString,
    /// Host the worker environment's URLs name instead of the bound IP address.
    pub advertised_host: Option<String>,
}

fn random_secret() -> SecretString {
    SecretString::new(format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    ))
}

impl Peers {
    /// Generates an App key and fresh secrets, starts both simulators on 127.0.0.1:0.
    pub async fn start() -> Result<Self, PeersError> {
        Self::start_on(&Listen::default()).await
    }

    /// Like [`Peers::start`], on the address and ports of `listen`.
    ///
    /// Errors: key generation, simulator set-up, binding either socket (e.g. a port in use).
    pub async fn start_on(listen: &Listen) -> Result<Self, PeersError> {
        let app_key = generate_app_key()?;
        let webhook_secret = random_secret();
        let hmac_secret = random_secret();
        let backend = BackendSim::new(BackendSimConfig::new(
            SANDBOX_KEY_ID,
            hmac_secret.expose().to_owned(),
        ));
        let github = GitHubSim::new(GitHubSimConfig::new(
            SANDBOX_APP_ID,
            app_key.public_pem.clone(),
        ))?;
        let backend_server = Served::bind(
            backend.router(),
            SocketAddr::new(listen.bind_address, listen.backend_port),
        )
        .await?;
        let github_server = Served::bind(
            github.router(),
            SocketAddr::new(listen.bind_address, listen.github_port),
        )
        .await?;
        Ok(Self {
            backend,
            github,
            backend_server,
            github_server,
            app_key,
            webhook_secret,
            hmac_secret,
            advertised_host: listen.advertised_host.clone(),
        })
    }

    /// `http://HOST:PORT` of `server`: HOST is the advertised host when set, else the
    /// bound IP address.
    pub fn url_of(&self, server: &Served) -> String {
        match &self.advertised_host {
            Some(host) if host.contains(':') && !host.starts_with('[') => {
                format!("http://[{host}]:{}", server.addr().port())
            }
            Some(host) => format!("http://{host}:{}", server.addr().port()),
            None => server.base_url(),
        }
    }

    /// The environment of a worker replica listening on `port` against these peers,
    /// exactly as the deployment guide's variables (secrets included: only for the
    /// simulators' throw-away credentials).
    pub fn worker_env(&self, port: u16, worker_id: &str) -> BTreeMap<String, String> {
        [
            ("PORT", port.to_string()),
            ("BIND_ADDRESS", "127.0.0.1".to_owned()),
            ("WORKER_ID", worker_id.to_owned()),
            (
                "GITHUB_WEBHOOK_SECRET",
                self.webhook_secret.expose().to_owned(),
            ),
            ("GITHUB_APP_ID", SANDBOX_APP_ID.to_string()),
            // As env files carry it: one line with `\n` escapes.
            (
                "GITHUB_APP_PRIVATE_KEY",
                self.app_key.private_pem.expose().replace('\n', "\\n"),
            ),
            ("GITHUB_API_BASE_URL", self.url_of(&self.github_server)),
            ("BACKEND_BASE_URL", self.url_of(&self.backend_server)),
            ("BACKEND_BOT_KEY_ID", SANDBOX_KEY_ID.to_owned()),
            (
                "BACKEND_INTERNAL_HMAC_SECRET",
                self.hmac_secret.expose().to_owned(),
            ),
            ("OUTBOX_POLLING_ENABLED", "true".to_owned()),
            ("OUTBOX_POLL_INTERVAL_MS", "1000".to_owned()),
            ("OUTBOX_CLAIM_LIMIT", "25".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Installs the App on every installation and repository the examples name, so
    /// the GitHub simulator can answer for them (token mints, repository backfill,
    /// installation look-ups, comments).
    pub fn install_for_examples(&self, examples: &Examples) -> Result<(), PeersError> {
        // Installations first: a repository named by both an installation example and a
        // pull request example ends up in the pull request's installation.
        for example in examples.of("installation", None) {
            let p = &example.payload;
            let Some(id) = p.pointer("/installation/id").and_then(|v| v.as_i64()) else {
                continue;
            };
            let login = p
                .pointer("/installation/account/login")
                .and_then(|v| v.as_str())
                .unwrap_or("octo-org");
            let kind = p
                .pointer("/installation/account/type")
                .and_then(|v| v.as_str())
                .unwrap_or("Organization");
            let repos: Vec<(i64, String)> = p
                .get("repositories")
                .and_then(|r| r.as_array())
                .map(|list| {
                    list.iter()
                        .filter_map(|r| {
                            Some((
                                r.get("id")?.as_i64()?,
                                r.get("full_name")?.as_str()?.to_owned(),
                            ))
                        })
                        .collect()
                })
                .unwrap_or_default();
            // Installations whose examples list no repository get a few, so the
            // backfill of contract §1.3 has something to find.
            let repos = if repos.is_empty() {
                (1..=3)
                    .map(|i| (id * 1000 + i, format!("{login}/backfilled-{i}")))
                    .collect()
            } else {
                repos
            };
            self.github.add_installation(id, login, kind, repos)?;
        }
        for example in &examples.all {
            let p = &example.payload;
            let Some(repo) = p.get("repository") else {
                continue;
            };
            let (Some(repo_id), Some(full_name)) = (
                repo.get("id").and_then(|v| v.as_i64()),
                repo.get("full_name").and_then(|v| v.as_str()),
            ) else {
                continue;
            };
            let installation_id = p
                .pointer("/installation/id")
                .and_then(|v| v.as_i64())
                .unwrap_or(1);
            let owner = repo
                .pointer("/owner/login")
                .and_then(|v| v.as_str())
                .unwrap_or("octo-org");
            let owner_type = repo
                .pointer("/owner/type")
                .and_then(|v| v.as_str())
                .unwrap_or("Organization");
            if self
                .github
                .add_repository(installation_id, repo_id, full_name)
                .is_err()
            {
                self.github.add_installation(
                    installation_id,
                    owner,
                    owner_type,
                    [(repo_id, full_name)],
                )?;
            }
        }
        Ok(())
    }
}
