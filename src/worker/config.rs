//! Worker configuration from the environment (deployment guide, section 2).
//!
//! Every variable is read through one lookup function so tests can feed a map instead of
//! the process environment. A missing or invalid value becomes a [`ConfigError`] that
//! names the variable and says what is wrong; the value of a secret is never echoed.
//! Every variable is checked, and all problems come back together as [`ConfigErrors`],
//! so one run of a misconfigured worker lists everything to fix.

use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use crate::contract::LogFormat;
use crate::contract::env::*;
use crate::secret::SecretString;

/// A configuration problem, naming the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or empty.
    #[error("{var} is required but not set")]
    Missing { var: &'static str },
    /// A variable is set to something unusable; `reason` never contains a secret.
    #[error("{var} {reason}")]
    Invalid { var: &'static str, reason: String },
}

impl ConfigError {
    fn invalid(var: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            var,
            reason: reason.into(),
        }
    }

    /// The environment variable the error is about.
    pub fn variable(&self) -> &'static str {
        match self {
            Self::Missing { var } | Self::Invalid { var, .. } => var,
        }
    }
}

/// Every configuration problem of one environment (never empty), in the order of
/// [`crate::contract::env::ALL`]; displayed one problem per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(Vec<ConfigError>);

fn lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    /// The problems, one per variable.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// The variables with a problem, in order.
    pub fn variables(&self) -> Vec<&'static str> {
        self.0.iter().map(ConfigError::variable).collect()
    }
}

/// The typed configuration of one worker replica.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// `BIND_ADDRESS` (default `0.0.0.0`): address the HTTP listeners bind.
    pub bind_address: IpAddr,
    /// `PORT`: webhook, health and metrics listener.
    pub port: u16,
    /// `METRICS_PORT` (optional): a second listener serving only `/metrics`, `/healthz`
    /// and `/readyz`, so a Service can expose metrics on their own port.
    pub metrics_port: Option<u16>,
    /// `GITHUB_WEBHOOK_SECRET`.
    pub webhook_secret: SecretString,
    /// `GITHUB_WEBHOOK_SECRET_PREVIOUS` (optional): still accepted while a rotation is
    /// under way, so deliveries signed with the old secret are not lost.
    pub webhook_secret_previous: Option<SecretString>,
    /// `GITHUB_APP_ID`.
    pub github_app_id: u64,
    /// `GITHUB_APP_PRIVATE_KEY`, with `\n` escapes already turned into newlines.
    pub github_app_private_key: SecretString,
    /// `GITHUB_API_BASE_URL` (default `https://api.github.com`).
    pub github_api_base_url: Url,
    /// `BACKEND_BASE_URL`, trailing slashes stripped (contract §1).
    pub backend_base_url: String,
    /// `BACKEND_BOT_KEY_ID`.
    pub backend_bot_key_id: String,
    /// `BACKEND_INTERNAL_HMAC_SECRET`.
    pub backend_internal_hmac_secret: SecretString,
    /// `BACKEND_SERVICE_TOKEN` (optional; an empty value counts as unset).
    pub backend_service_token: Option<SecretString>,
    /// `WORKER_ID` (default: host name plus a random suffix, unique per process).
    pub worker_id: String,
    /// `OUTBOX_POLLING_ENABLED` (default `true`).
    pub outbox_polling_enabled: bool,
    /// `OUTBOX_POLL_INTERVAL_MS` (default 5000, at least 500).
    pub outbox_poll_interval: Duration,
    /// `OUTBOX_CLAIM_ON_EVENT` (default `true`): claim at once when the backend answers
    /// a forwarded event with `enqueued_actions > 0`, not only on the poll interval.
    pub outbox_claim_on_event: bool,
    /// `OUTBOX_CLAIM_LIMIT` (default 25, 1..100).
    pub outbox_claim_limit: u32,
    /// `OUTBOX_CONCURRENCY` (default 16, 1..256): actions executed at once.
    pub outbox_concurrency: usize,
    /// `SHUTDOWN_TIMEOUT_SECONDS` (default 20, 1..300): how long a SIGTERM may take to
    /// finish in-flight work; kept under Kubernetes' default 30 s grace period.
    pub shutdown_timeout: Duration,
    /// `SHUTDOWN_DRAIN_SECONDS` (default 0, 0..60): after SIGTERM, how long the worker
    /// keeps accepting webhooks while `/readyz` already answers 503, so a load balancer
    /// has time to stop routing to it (Kubernetes removes endpoints asynchronously).
    pub shutdown_drain: Duration,
    /// `HTTP_MAX_CONNECTIONS` (default 1024, 16..65536): open connections per listener;
    /// at the cap, the connection that has waited longest without a request in
    /// progress is closed to make room (new ones wait in the kernel's accept queue only
    /// while every connection has a request in progress).
    pub http_max_connections: usize,
    /// `HTTP_HEADER_READ_TIMEOUT_SECONDS` (default 65, 5..3600): how long a client may
    /// take to send a request's head, counted from when the server starts waiting for
    /// it — which, on a keep-alive connection, includes the idle time since the last
    /// response. Keep it above the load balancer's idle timeout, or the balancer may
    /// send a delivery on a connection the worker is closing.
    pub http_header_read_timeout: Duration,
    /// `HTTP_REQUEST_HEAD_TIMEOUT_SECONDS` (default 10, 1..300): how long a request's
    /// line and headers may take to arrive, counted from their first byte (from the
    /// accept for a connection's first request). Bounds slowloris clients whatever the
    /// idle timeout above.
    pub http_request_head_timeout: Duration,
    /// `WEBHOOK_BUFFER_LIMIT_MB` (default 64, 25..4096): bytes of webhook bodies held in
    /// memory at once, over all requests; a request that does not fit gets 503. At least
    /// 25 so one body of GitHub's 25 MB maximum always fits.
    pub webhook_buffer_limit_bytes: usize,
    /// `LOG_FORMAT` (`json` default, or `text`).
    pub log_format: LogFormat,
    /// `WORKER_STATE_DIR`, else `STATE_DIRECTORY` (set by systemd's `StateDirectory=`;
    /// the first of its colon-separated paths): where the claim journal lives. Unset:
    /// no journal, and actions held by a killed worker stay claimed.
    pub state_dir: Option<std::path::PathBuf>,
    /// Secret variables whose value had surrounding white space (a trailing newline from
    /// a file, say), which was removed; the caller logs their names, never the values.
    pub trimmed_secrets: Vec<&'static str>,
}

impl WorkerConfig {
    /// Reads the configuration from the process environment.
    ///
    /// Returns every problem found, each a [`ConfigError`] naming its variable.
    pub fn from_env() -> Result<Self, ConfigErrors> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the configuration through `lookup` (variable name → value).
    ///
    /// Every variable is checked, so the error lists all the problems of the
    /// environment at once (at most one per variable, in the order of
    /// [`crate::contract::env::ALL`]).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        let env = Env {
            lookup: &lookup,
            trimmed: std::cell::RefCell::default(),
            errors: std::cell::RefCell::default(),
        };
        let bind_address = env
            .check(match env.get(BIND_ADDRESS) {
                None => Ok(IpAddr::from([0, 0, 0, 0])),
                Some(raw) => raw.parse().map_err(|_| {
                    ConfigError::invalid(
                        BIND_ADDRESS,
                        format!("must be an IP address, got {raw:?}"),
                    )
                }),
            })
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let port = env.check(
            env.port(PORT)
                .and_then(|port| port.ok_or(ConfigError::Missing { var: PORT })),
        );
        let metrics_port = env.check(env.port(METRICS_PORT)).flatten();
        // Surrounding white space (a trailing newline from `--from-file`) is trimmed as
        // for every secret; a control character inside is a badly pasted value, which
        // would make every delivery fail its signature check while the worker reports
        // ready.
        let webhook_secret = env.check(env.required_secret(GITHUB_WEBHOOK_SECRET).and_then(
            |secret| no_control(GITHUB_WEBHOOK_SECRET, secret.expose()).map(|()| secret),
        ));
        let webhook_secret_previous = env
            .check(
                env.optional_secret(GITHUB_WEBHOOK_SECRET_PREVIOUS)
                    .map(|secret| {
                        no_control(GITHUB_WEBHOOK_SECRET_PREVIOUS, secret.expose()).map(|()| secret)
                    })
                    .transpose(),
            )
            .flatten();
        let github_app_id = env.check(env.positive_u64(GITHUB_APP_ID));
        let github_app_private_key =
            env.check(env.required_secret(GITHUB_APP_PRIVATE_KEY).and_then(|raw| {
                let pem = SecretString::new(unescape_pem(raw.expose()));
                if pem.expose().contains("-----BEGIN") {
                    Ok(pem)
                } else {
                    Err(ConfigError::invalid(
                        GITHUB_APP_PRIVATE_KEY,
                        "must be a PEM private key (-----BEGIN ... PRIVATE KEY-----)",
                    ))
                }
            }));
        let github_api_base_url =
            env.check(env.url(GITHUB_API_BASE_URL, DEFAULT_GITHUB_API_BASE_URL));
        let backend_base_url = env.check(
            env.required(BACKEND_BASE_URL)
                .and_then(|raw| parse_http_url(BACKEND_BASE_URL, &raw))
                .map(|url| url.as_str().trim_end_matches('/').to_owned()),
        );
        let backend_bot_key_id = env.check(
            env.required(BACKEND_BOT_KEY_ID)
                .and_then(|id| header_safe(BACKEND_BOT_KEY_ID, &id).map(|()| id)),
        );
        let backend_internal_hmac_secret =
            env.check(env.required_secret(BACKEND_INTERNAL_HMAC_SECRET));
        let backend_service_token = env
            .check(
                env.optional_secret(BACKEND_SERVICE_TOKEN)
                    .map(|token| header_safe(BACKEND_SERVICE_TOKEN, token.expose()).map(|()| token))
                    .transpose(),
            )
            .flatten();
        let worker_id = env.check(match env.get(WORKER_ID) {
            Some(id) => validate_worker_id(&id),
            None => Ok(default_worker_id()),
        });
        let outbox_polling_enabled = env
            .check(env.boolean(OUTBOX_POLLING_ENABLED, true))
            .unwrap_or(true);
        let outbox_claim_on_event = env
            .check(env.boolean(OUTBOX_CLAIM_ON_EVENT, true))
            .unwrap_or(true);
        let ranged = |var, default, range| {
            env.check(env.ranged_u64(var, default, range))
                .unwrap_or(default)
        };
        let poll_ms = ranged(
            OUTBOX_POLL_INTERVAL_MS,
            DEFAULT_POLL_INTERVAL_MS,
            POLL_INTERVAL_MS_RANGE,
        );
        let claim_limit = ranged(
            OUTBOX_CLAIM_LIMIT,
            u64::from(DEFAULT_CLAIM_LIMIT),
            u64::from(*CLAIM_LIMIT_RANGE.start())..=u64::from(*CLAIM_LIMIT_RANGE.end()),
        );
        let concurrency = ranged(OUTBOX_CONCURRENCY, DEFAULT_CONCURRENCY, CONCURRENCY_RANGE);
        let shutdown_secs = ranged(
            SHUTDOWN_TIMEOUT_SECONDS,
            DEFAULT_SHUTDOWN_TIMEOUT_SECONDS,
            SHUTDOWN_TIMEOUT_SECONDS_RANGE,
        );
        let drain_secs = ranged(
            SHUTDOWN_DRAIN_SECONDS,
            DEFAULT_SHUTDOWN_DRAIN_SECONDS,
            SHUTDOWN_DRAIN_SECONDS_RANGE,
        );
        let max_connections = ranged(
            HTTP_MAX_CONNECTIONS,
            DEFAULT_HTTP_MAX_CONNECTIONS,
            HTTP_MAX_CONNECTIONS_RANGE,
        );
        let header_secs = ranged(
            HTTP_HEADER_READ_TIMEOUT_SECONDS,
            DEFAULT_HTTP_HEADER_READ_TIMEOUT_SECONDS,
            HTTP_HEADER_READ_TIMEOUT_SECONDS_RANGE,
        );
        let head_secs = ranged(
            HTTP_REQUEST_HEAD_TIMEOUT_SECONDS,
            DEFAULT_HTTP_REQUEST_HEAD_TIMEOUT_SECONDS,
            HTTP_REQUEST_HEAD_TIMEOUT_SECONDS_RANGE,
        );
        let buffer_mb = ranged(
            WEBHOOK_BUFFER_LIMIT_MB,
            DEFAULT_WEBHOOK_BUFFER_LIMIT_MB,
            WEBHOOK_BUFFER_LIMIT_MB_RANGE,
        );
        let state_dir = env
            .check(match env.get(WORKER_STATE_DIR) {
                Some(dir) => absolute_dir(WORKER_STATE_DIR, &dir).map(Some),
                None => env
                    .get(STATE_DIRECTORY)
                    .and_then(|dirs| dirs.split(':').next().map(str::to_owned))
                    .map(|dir| absolute_dir(STATE_DIRECTORY, &dir))
                    .transpose(),
            })
            .flatten();
        let log_format = env
            .check(match env.get(LOG_FORMAT) {
                None => Ok(LogFormat::Json),
                Some(raw) => LogFormat::parse(&raw).ok_or_else(|| {
                    ConfigError::invalid(
                        LOG_FORMAT,
                        format!("must be \"json\" or \"text\", got {raw:?}"),
                    )
                }),
            })
            .unwrap_or(LogFormat::Json);

        let errors = env.errors.take();
        // A `None` above always comes with its error recorded.
        let (
            true,
            Some(port),
            Some(webhook_secret),
            Some(github_app_id),
            Some(github_app_private_key),
            Some(github_api_base_url),
            Some(backend_base_url),
            Some(backend_bot_key_id),
            Some(backend_internal_hmac_secret),
            Some(worker_id),
        ) = (
            errors.is_empty(),
            port,
            webhook_secret,
            github_app_id,
            github_app_private_key,
            github_api_base_url,
            backend_base_url,
            backend_bot_key_id,
            backend_internal_hmac_secret,
            worker_id,
        )
        else {
            return Err(ConfigErrors(errors));
        };

        Ok(Self {
            bind_address,
            port,
            metrics_port,
            webhook_secret,
            webhook_secret_previous,
            github_app_id,
            github_app_private_key,
            github_api_base_url,
            backend_base_url,
            backend_bot_key_id,
            backend_internal_hmac_secret,
            backend_service_token,
            worker_id,
            outbox_polling_enabled,
            outbox_poll_interval: Duration::from_millis(poll_ms),
            outbox_claim_on_event,
            // In range 1..=100 by construction, so the conversion cannot fail.
            outbox_claim_limit: u32::try_from(claim_limit).unwrap_or(DEFAULT_CLAIM_LIMIT),
            outbox_concurrency: usize::try_from(concurrency).unwrap_or(16),
            shutdown_timeout: Duration::from_secs(shutdown_secs),
            shutdown_drain: Duration::from_secs(drain_secs),
            // Both in range by construction, far below usize::MAX.
            http_max_connections: usize::try_from(max_connections).unwrap_or(1024),
            http_header_read_timeout: Duration::from_secs(header_secs),
            http_request_head_timeout: Duration::from_secs(head_secs),
            webhook_buffer_limit_bytes: usize::try_from(buffer_mb * 1024 * 1024)
                .unwrap_or(usize::MAX),
            log_format,
            state_dir,
            trimmed_secrets: env.trimmed_secrets(),
        })
    }
}

/// Variable lookup with the parsing rules shared by all variables: surrounding white
/// space is ignored and an empty value counts as unset.
struct Env<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
    trimmed: std::cell::RefCell<Vec<&'static str>>,
    /// The problems found so far, in the order the variables were read.
    errors: std::cell::RefCell<Vec<ConfigError>>,
}

impl Env<'_> {
    /// The value, or `None` with the error recorded for [`ConfigErrors`].
    fn check<T>(&self, result: Result<T, ConfigError>) -> Option<T> {
        result
            .map_err(|err| self.errors.borrow_mut().push(err))
            .ok()
    }

    fn get(&self, var: &str) -> Option<String> {
        (self.lookup)(var)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn required(&self, var: &'static str) -> Result<String, ConfigError> {
        self.get(var).ok_or(ConfigError::Missing { var })
    }

    fn required_secret(&self, var: &'static str) -> Result<SecretString, ConfigError> {
        self.required(var).map(|value| self.secret(var, value))
    }

    fn optional_secret(&self, var: &'static str) -> Option<SecretString> {
        self.get(var).map(|value| self.secret(var, value))
    }

    /// Wraps a trimmed secret, remembering the variable when trimming changed it.
    fn secret(&self, var: &'static str, value: String) -> SecretString {
        let raw_len = (self.lookup)(var).map_or(0, |raw| raw.len());
        if raw_len != value.len() {
            self.trimmed.borrow_mut().push(var);
        }
        SecretString::new(value)
    }

    fn trimmed_secrets(&self) -> Vec<&'static str> {
        self.trimmed.borrow().clone()
    }

    fn port(&self, var: &'static str) -> Result<Option<u16>, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(None);
        };
        match raw.parse::<u16>() {
            Ok(port) if port > 0 => Ok(Some(port)),
            _ => Err(ConfigError::invalid(
                var,
                format!("must be a port number 1..65535, got {raw:?}"),
            )),
        }
    }

    fn positive_u64(&self, var: &'static str) -> Result<u64, ConfigError> {
        let raw = self.required(var)?;
        // GitHub's ids are signed 64-bit numbers.
        match raw.parse::<i64>() {
            Ok(n) if n > 0 => Ok(n.unsigned_abs()),
            _ => Err(ConfigError::invalid(
                var,
                format!("must be a positive integer below 2^63, got {raw:?}"),
            )),
        }
    }

    fn ranged_u64(
        &self,
        var: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<u64, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        match raw.parse::<u64>() {
            Ok(n) if range.contains(&n) => Ok(n),
            _ => Err(ConfigError::invalid(
                var,
                format!("must be {}..{}, got {raw:?}", range.start(), range.end()),
            )),
        }
    }

    fn boolean(&self, var: &'static str, default: bool) -> Result<bool, ConfigError> {
        let Some(raw) = self.get(var) else {
            return Ok(default);
        };
        match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(true),
            "false" | "0" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::invalid(
                var,
                format!("must be true or false, got {raw:?}"),
            )),
        }
    }

    fn url(&self, var: &'static str, default: &str) -> Result<Url, ConfigError> {
        parse_http_url(var, &self.get(var).unwrap_or_else(|| default.to_owned()))
    }
}

/// Refuses a value sent in an HTTP header (`x-sitg-key-id`, `authorization: Bearer …`)
/// that is not printable ASCII without spaces: a control character would make every
/// request fail to build, so the worker would start, report ready and fail each call as
/// "backend could not be reached". The value itself is never shown (it may be a secret).
fn header_safe(var: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.bytes().all(|b| b.is_ascii_graphic()) {
        return Ok(());
    }
    let what = if value.bytes().any(|b| b.is_ascii_control()) {
        "a control character"
    } else if value.contains(' ') {
        "a space"
    } else {
        "a non-ASCII character"
    };
    Err(ConfigError::invalid(
        var,
        format!(
            "contains {what}; it is sent in an HTTP header and must be printable ASCII \
             without spaces (value not shown)"
        ),
    ))
}

/// Refuses a secret with a control character inside (after trimming): a line break in
/// the middle of a badly pasted Secret. Spaces and non-ASCII stay allowed, since GitHub
/// accepts them in a webhook secret. The value itself is never shown.
fn no_control(var: &'static str, value: &str) -> Result<(), ConfigError> {
    if value.chars().any(char::is_control) {
        return Err(ConfigError::invalid(
            var,
            "contains a control character (a line break inside a pasted value?) \
             (value not shown)",
        ));
    }
    Ok(())
}

fn absolute_dir(var: &'static str, raw: &str) -> Result<std::path::PathBuf, ConfigError> {
    let path = std::path::PathBuf::from(raw);
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(ConfigError::invalid(
            var,
            format!("must be an absolute directory path, got {raw:?}"),
        ))
    }
}

/// The value as shown in an error: withheld when it may carry a credential (user
/// info, a query or a fragment, where tokens tend to be put).
fn shown_url(raw: &str) -> String {
    if raw.contains(['@', '?', '#']) {
        "a value with user info, a query or a fragment (not shown: it may hold a credential)"
            .to_owned()
    } else {
        format!("{raw:?}")
    }
}

fn parse_http_url(var: &'static str, raw: &str) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| {
        ConfigError::invalid(
            var,
            format!("must be an http(s) URL, got {} ({e})", shown_url(raw)),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(ConfigError::invalid(
            var,
            format!("must be an http(s) URL with a host, got {}", shown_url(raw)),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // Credentials in a URL end up in logs; the backend and GitHub get theirs from
        // the dedicated variables.
        return Err(ConfigError::invalid(
            var,
            "must not carry user:password@ (use the secret variables instead)",
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::invalid(
            var,
            "must not carry a query or fragment",
        ));
    }
    Ok(url)
}

/// Turns the literal two-character `\n` escapes that env files use for multi-line PEM
/// into newlines; a PEM that already has real newlines is returned unchanged.
pub fn unescape_pem(raw: &str) -> String {
    let trimmed = raw.trim().trim_matches('"');
    if trimmed.contains('\n') {
        trimmed.to_owned()
    } else {
        trimmed.replace("\\r\\n", "\n").replace("\\n", "\n")
    }
}

/// `WORKER_ID` appears inside signed messages separated by `:` (contract §1.1), so it
/// must not contain `:` or white space; 1..=128 characters.
fn validate_worker_id(id: &str) -> Result<String, ConfigError> {
    let ok_chars = id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if id.len() > 128 || !ok_chars {
        return Err(ConfigError::invalid(
            WORKER_ID,
            format!("must be 1..128 characters of A-Z a-z 0-9 . _ -, got {id:?}"),
        ));
    }
    Ok(id.to_owned())
}

/// Host name plus eight random hex digits: unique per process even when two replicas
/// share a host, which the backend requires (two claims by one id in the same second
/// collide).
fn default_worker_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| {
            h.trim()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                .take(100)
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "sitg-bot".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}", &suffix[..8])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    const PEM: &str = "-----BEGIN RSA PRIVATE KEY-----\\nMIIB\\n-----END RSA PRIVATE KEY-----\\n";

    fn base() -> HashMap<&'static str, String> {
        HashMap::from([
            ("PORT", "3101".to_owned()),
            ("GITHUB_WEBHOOK_SECRET", "whsec".to_owned()),
            ("GITHUB_APP_ID", "12345".to_owned()),
            ("GITHUB_APP_PRIVATE_KEY", PEM.to_owned()),
            ("BACKEND_BASE_URL", "https://sitg.example/".to_owned()),
            ("BACKEND_BOT_KEY_ID", "bck_live_1".to_owned()),
            (
                "BACKEND_INTERNAL_HMAC_SECRET",
                "hmac-secret-value".to_owned(),
            ),
        ])
    }

    /// Loads `env`, expecting at most one problem (one bad variable makes one error).
    fn load(env: &HashMap<&'static str, String>) -> Result<WorkerConfig, ConfigError> {
        WorkerConfig::from_lookup(|k| env.get(k).cloned()).map_err(|errors| {
            assert_eq!(errors.errors().len(), 1, "{errors}");
            errors.errors()[0].clone()
        })
    }

    #[test]
    fn every_problem_is_reported_at_once_in_variable_order() {
        let mut env = base();
        env.remove("BACKEND_BOT_KEY_ID");
        env.insert("OUTBOX_CLAIM_LIMIT", "0".to_owned());
        env.insert("GITHUB_APP_PRIVATE_KEY", "topsecretkeymaterial".to_owned());
        env.insert("LOG_FORMAT", "xml".to_owned());
        env.insert("PORT", "http".to_owned());
        let errors = WorkerConfig::from_lookup(|k| env.get(k).cloned()).unwrap_err();
        assert_eq!(
            errors.variables(),
            [
                "PORT",
                "GITHUB_APP_PRIVATE_KEY",
                "BACKEND_BOT_KEY_ID",
                "OUTBOX_CLAIM_LIMIT",
                "LOG_FORMAT"
            ]
        );
        let text = errors.to_string();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(!text.contains("topsecretkeymaterial"), "{text}");
        assert_eq!(
            text.lines().nth(2),
            Some("BACKEND_BOT_KEY_ID is required but not set")
        );
    }

    #[test]
    fn defaults_follow_the_guide() {
        let c = load(&base()).unwrap();
        assert_eq!(c.port, 3101);
        assert_eq!(c.github_api_base_url.as_str(), "https://api.github.com/");
        assert_eq!(c.backend_base_url, "https://sitg.example");
        assert!(c.outbox_polling_enabled);
        assert_eq!(c.outbox_poll_interval, Duration::from_millis(5000));
        assert_eq!(c.outbox_claim_limit, 25);
        assert!(c.backend_service_token.is_none());
        assert!(c.webhook_secret_previous.is_none());
        assert_eq!(c.log_format, LogFormat::Json);
        assert!(
            c.github_app_private_key
                .expose()
                .contains("KEY-----\nMIIB\n")
        );
    }

    #[test]
    fn every_required_variable_is_named_when_missing() {
        for var in [
            "PORT",
            "GITHUB_WEBHOOK_SECRET",
            "GITHUB_APP_ID",
            "GITHUB_APP_PRIVATE_KEY",
            "BACKEND_BASE_URL",
            "BACKEND_BOT_KEY_ID",
            "BACKEND_INTERNAL_HMAC_SECRET",
        ] {
            let mut env = base();
            env.remove(var);
            let err = load(&env).unwrap_err();
            assert_eq!(err, ConfigError::Missing { var });
            assert_eq!(err.to_string(), format!("{var} is required but not set"));
            // Present but blank counts as missing too.
            env.insert(var, "   ".to_owned());
            assert_eq!(load(&env).unwrap_err(), ConfigError::Missing { var });
        }
    }

    #[test]
    fn hardening_settings_have_safe_defaults_and_bounds() {
        let c = load(&base()).unwrap();
        assert_eq!(c.shutdown_drain, Duration::ZERO);
        assert_eq!(c.http_max_connections, 1024);
        assert_eq!(c.http_header_read_timeout, Duration::from_secs(65));
        assert_eq!(c.http_request_head_timeout, Duration::from_secs(10));
        assert_eq!(c.webhook_buffer_limit_bytes, 64 * 1024 * 1024);
        let mut env = base();
        env.insert("SHUTDOWN_DRAIN_SECONDS", "5".to_owned());
        env.insert("HTTP_MAX_CONNECTIONS", "16".to_owned());
        env.insert("WEBHOOK_BUFFER_LIMIT_MB", "25".to_owned());
        let c = load(&env).unwrap();
        assert_eq!(c.shutdown_drain, Duration::from_secs(5));
        assert_eq!(c.http_max_connections, 16);
        assert_eq!(c.webhook_buffer_limit_bytes, 25 * 1024 * 1024);
        // One body of GitHub's 25 MB maximum must always fit.
        for (var, bad) in [
            ("WEBHOOK_BUFFER_LIMIT_MB", "24"),
            ("SHUTDOWN_DRAIN_SECONDS", "61"),
            ("HTTP_MAX_CONNECTIONS", "15"),
            ("HTTP_HEADER_READ_TIMEOUT_SECONDS", "4"),
            ("HTTP_REQUEST_HEAD_TIMEOUT_SECONDS", "0"),
        ] {
            let mut env = base();
            env.insert(var, bad.to_owned());
            assert_eq!(load(&env).unwrap_err().variable(), var);
        }
    }

    #[test]
    fn app_ids_beyond_githubs_signed_64_bits_are_refused() {
        let mut env = base();
        env.insert("GITHUB_APP_ID", "9223372036854775807".to_owned());
        assert_eq!(load(&env).unwrap().github_app_id, 9_223_372_036_854_775_807);
        env.insert("GITHUB_APP_ID", "9223372036854775808".to_owned());
        assert_eq!(load(&env).unwrap_err().variable(), "GITHUB_APP_ID");
    }

    #[test]
    fn trimmed_secrets_are_named_for_a_warning() {
        let mut env = base();
        env.insert("GITHUB_WEBHOOK_SECRET", "  whsec \n".to_owned());
        let c = load(&env).unwrap();
        assert_eq!(c.webhook_secret.expose(), "whsec");
        assert_eq!(c.trimmed_secrets, vec!["GITHUB_WEBHOOK_SECRET"]);
        assert!(load(&base()).unwrap().trimmed_secrets.is_empty());
    }

    #[test]
    fn url_errors_never_show_a_value_that_may_hold_a_credential() {
        for raw in [
            "https://sitg.io/?token=hunter2",
            "https://us er:hunter2@sitg io",
            "ftp://u:hunter2@sitg.io",
            "https://sitg.io/#hunter2",
        ] {
            let mut env = base();
            env.insert("BACKEND_BASE_URL", raw.to_owned());
            let message = load(&env).unwrap_err().to_string();
            assert!(message.starts_with("BACKEND_BASE_URL "), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let mut env = base();
        env.insert("BACKEND_BASE_URL", "not a url".to_owned());
        assert!(
            load(&env)
                .unwrap_err()
                .to_string()
                .contains("\"not a url\"")
        );
    }

    #[test]
    fn claim_limit_message_names_range_and_value() {
        let mut env = base();
        env.insert("OUTBOX_CLAIM_LIMIT", "0".to_owned());
        assert_eq!(
            load(&env).unwrap_err().to_string(),
            "OUTBOX_CLAIM_LIMIT must be 1..100, got \"0\""
        );
        env.insert("OUTBOX_CLAIM_LIMIT", "100".to_owned());
        assert_eq!(load(&env).unwrap().outbox_claim_limit, 100);
    }

    #[test]
    fn invalid_values_are_refused_with_the_variable_named() {
        let cases = [
            ("PORT", "0"),
            ("PORT", "http"),
            ("METRICS_PORT", "70000"),
            ("GITHUB_APP_ID", "-3"),
            ("GITHUB_APP_PRIVATE_KEY", "not a pem"),
            ("GITHUB_API_BASE_URL", "ftp://x"),
            ("BACKEND_BASE_URL", "sitg.io"),
            ("BACKEND_BASE_URL", "https://sitg.io/?a=b"),
            ("BACKEND_BASE_URL", "https://user:pw@sitg.io"),
            ("GITHUB_API_BASE_URL", "https://token@ghe.example/api/v3"),
            ("WORKER_ID", "a:b"),
            ("WORKER_ID", "has space"),
            ("OUTBOX_POLLING_ENABLED", "maybe"),
            ("OUTBOX_POLL_INTERVAL_MS", "499"),
            ("OUTBOX_CLAIM_LIMIT", "101"),
            ("OUTBOX_CONCURRENCY", "0"),
            ("SHUTDOWN_TIMEOUT_SECONDS", "x"),
            ("LOG_FORMAT", "xml"),
            ("BIND_ADDRESS", "localhost"),
            ("BACKEND_BOT_KEY_ID", "bck\u{7f}1"),
            ("BACKEND_BOT_KEY_ID", "bck\u{1}live"),
            ("BACKEND_SERVICE_TOKEN", "tok\nen"),
            ("BACKEND_SERVICE_TOKEN", "tok en"),
            ("BACKEND_SERVICE_TOKEN", "tokén"),
            ("GITHUB_WEBHOOK_SECRET", "wh\nsec"),
            ("GITHUB_WEBHOOK_SECRET_PREVIOUS", "old\r\nsecret"),
        ];
        for (var, value) in cases {
            let mut env = base();
            env.insert(var, value.to_owned());
            let err = load(&env).unwrap_err();
            assert_eq!(err.variable(), var, "{var}={value}: {err}");
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }

    #[test]
    fn secrets_never_appear_in_errors_or_debug() {
        let mut env = base();
        env.insert("GITHUB_APP_PRIVATE_KEY", "topsecretkeymaterial".to_owned());
        let err = load(&env).unwrap_err();
        assert!(!err.to_string().contains("topsecretkeymaterial"));
        let c = load(&base()).unwrap();
        let debug = format!("{c:?}");
        for secret in ["whsec", "hmac-secret-value", "MIIB"] {
            assert!(!debug.contains(secret), "{secret} leaked into {debug}");
        }
    }

    #[test]
    fn optional_values_parse() {
        let mut env = base();
        env.insert("GITHUB_WEBHOOK_SECRET_PREVIOUS", "old".to_owned());
        env.insert("BACKEND_SERVICE_TOKEN", "".to_owned());
        env.insert("WORKER_ID", "bot-worker-prod-1".to_owned());
        env.insert("OUTBOX_POLLING_ENABLED", "false".to_owned());
        env.insert("OUTBOX_POLL_INTERVAL_MS", "500".to_owned());
        env.insert("METRICS_PORT", "9090".to_owned());
        let c = load(&env).unwrap();
        assert_eq!(c.webhook_secret_previous.unwrap().expose(), "old");
        assert!(c.backend_service_token.is_none());
        assert_eq!(c.worker_id, "bot-worker-prod-1");
        assert!(!c.outbox_polling_enabled);
        assert_eq!(c.outbox_poll_interval, Duration::from_millis(500));
        assert_eq!(c.metrics_port, Some(9090));
    }

    #[test]
    fn state_dir_from_worker_state_dir_or_systemd() {
        let mut env = base();
        assert_eq!(load(&env).unwrap().state_dir, None);
        env.insert(
            "STATE_DIRECTORY",
            "/var/lib/sitg-bot-worker-1:/var/lib/x".to_owned(),
        );
        assert_eq!(
            load(&env).unwrap().state_dir.as_deref(),
            Some(std::path::Path::new("/var/lib/sitg-bot-worker-1"))
        );
        env.insert("WORKER_STATE_DIR", "/state".to_owned());
        assert_eq!(
            load(&env).unwrap().state_dir.as_deref(),
            Some(std::path::Path::new("/state"))
        );
        env.insert("WORKER_STATE_DIR", "state".to_owned());
        assert_eq!(load(&env).unwrap_err().variable(), "WORKER_STATE_DIR");
    }

    #[test]
    fn default_worker_ids_are_unique_per_process_start() {
        let a = load(&base()).unwrap().worker_id;
        let b = load(&base()).unwrap().worker_id;
        assert_ne!(a, b);
        assert!(validate_worker_id(&a).is_ok());
    }

    #[test]
    fn pem_with_real_newlines_is_kept() {
        let real = "-----BEGIN PRIVATE KEY-----\nAAA\n-----END PRIVATE KEY-----\n";
        assert_eq!(unescape_pem(real), real.trim());
        assert_eq!(
            unescape_pem("\"-----BEGIN X-----\\nAAA\\n-----END X-----\\n\""),
            "-----BEGIN X-----\nAAA\n-----END X-----\n"
        );
        assert_eq!(
            unescape_pem("-----BEGIN X-----\\r\\nAAA\\r\\n-----END X-----"),
            "-----BEGIN X-----\nAAA\n-----END X-----"
        );
    }
}
