//! The worker's environment variables: names, defaults and accepted ranges.
//!
//! `crate::worker::config` parses them; `crate::operator` sets them in the worker
//! Deployment and mirrors the ranges in the `BotFleet` schema. Adding a worker setting
//! means a name (and its default and range) here, its parsing in the worker config and
//! its value in `operator/build/deployment.rs`.

use std::ops::RangeInclusive;

/// `BIND_ADDRESS`: address the HTTP listeners bind (default `0.0.0.0`).
pub const BIND_ADDRESS: &str = "BIND_ADDRESS";
/// `PORT`: webhook, health and metrics listener (required).
pub const PORT: &str = "PORT";
/// `METRICS_PORT`: optional second listener for `/metrics`, `/healthz`, `/readyz`.
pub const METRICS_PORT: &str = "METRICS_PORT";
/// `GITHUB_WEBHOOK_SECRET` (secret, required).
pub const GITHUB_WEBHOOK_SECRET: &str = "GITHUB_WEBHOOK_SECRET";
/// `GITHUB_WEBHOOK_SECRET_PREVIOUS` (secret, optional): accepted during a rotation.
pub const GITHUB_WEBHOOK_SECRET_PREVIOUS: &str = "GITHUB_WEBHOOK_SECRET_PREVIOUS";
/// `GITHUB_APP_ID` (required): positive, below 2^63.
pub const GITHUB_APP_ID: &str = "GITHUB_APP_ID";
/// `GITHUB_APP_PRIVATE_KEY` (secret, required): PEM, `\n` escapes allowed.
pub const GITHUB_APP_PRIVATE_KEY: &str = "GITHUB_APP_PRIVATE_KEY";
/// `GITHUB_API_BASE_URL`: default [`DEFAULT_GITHUB_API_BASE_URL`].
pub const GITHUB_API_BASE_URL: &str = "GITHUB_API_BASE_URL";
/// `BACKEND_BASE_URL` (required): http(s) URL without credentials, query or fragment.
pub const BACKEND_BASE_URL: &str = "BACKEND_BASE_URL";
/// `BACKEND_BOT_KEY_ID` (required).
pub const BACKEND_BOT_KEY_ID: &str = "BACKEND_BOT_KEY_ID";
/// `BACKEND_INTERNAL_HMAC_SECRET` (secret, required).
pub const BACKEND_INTERNAL_HMAC_SECRET: &str = "BACKEND_INTERNAL_HMAC_SECRET";
/// `BACKEND_SERVICE_TOKEN` (secret, optional).
pub const BACKEND_SERVICE_TOKEN: &str = "BACKEND_SERVICE_TOKEN";
/// `WORKER_ID`: default host name plus a random suffix.
pub const WORKER_ID: &str = "WORKER_ID";
/// `OUTBOX_POLLING_ENABLED`: default `true`.
pub const OUTBOX_POLLING_ENABLED: &str = "OUTBOX_POLLING_ENABLED";
/// `OUTBOX_CLAIM_ON_EVENT`: default `true`.
pub const OUTBOX_CLAIM_ON_EVENT: &str = "OUTBOX_CLAIM_ON_EVENT";
/// `OUTBOX_POLL_INTERVAL_MS`: default [`DEFAULT_POLL_INTERVAL_MS`], in [`POLL_INTERVAL_MS_RANGE`].
pub const OUTBOX_POLL_INTERVAL_MS: &str = "OUTBOX_POLL_INTERVAL_MS";
/// `OUTBOX_CLAIM_LIMIT`: default [`DEFAULT_CLAIM_LIMIT`], in [`CLAIM_LIMIT_RANGE`].
pub const OUTBOX_CLAIM_LIMIT: &str = "OUTBOX_CLAIM_LIMIT";
/// `OUTBOX_CONCURRENCY`: default [`DEFAULT_CONCURRENCY`], in [`CONCURRENCY_RANGE`].
pub const OUTBOX_CONCURRENCY: &str = "OUTBOX_CONCURRENCY";
/// `SHUTDOWN_TIMEOUT_SECONDS`: default [`DEFAULT_SHUTDOWN_TIMEOUT_SECONDS`].
pub const SHUTDOWN_TIMEOUT_SECONDS: &str = "SHUTDOWN_TIMEOUT_SECONDS";
/// `SHUTDOWN_DRAIN_SECONDS`: default [`DEFAULT_SHUTDOWN_DRAIN_SECONDS`].
pub const SHUTDOWN_DRAIN_SECONDS: &str = "SHUTDOWN_DRAIN_SECONDS";
/// `HTTP_MAX_CONNECTIONS`: default [`DEFAULT_HTTP_MAX_CONNECTIONS`].
pub const HTTP_MAX_CONNECTIONS: &str = "HTTP_MAX_CONNECTIONS";
/// `HTTP_HEADER_READ_TIMEOUT_SECONDS`: default [`DEFAULT_HTTP_HEADER_READ_TIMEOUT_SECONDS`].
pub const HTTP_HEADER_READ_TIMEOUT_SECONDS: &str = "HTTP_HEADER_READ_TIMEOUT_SECONDS";
/// `HTTP_REQUEST_HEAD_TIMEOUT_SECONDS`: default [`DEFAULT_HTTP_REQUEST_HEAD_TIMEOUT_SECONDS`].
pub const HTTP_REQUEST_HEAD_TIMEOUT_SECONDS: &str = "HTTP_REQUEST_HEAD_TIMEOUT_SECONDS";
/// `WEBHOOK_BUFFER_LIMIT_MB`: default [`DEFAULT_WEBHOOK_BUFFER_LIMIT_MB`].
pub const WEBHOOK_BUFFER_LIMIT_MB: &str = "WEBHOOK_BUFFER_LIMIT_MB";
/// `WORKER_STATE_DIR`: absolute directory for the claim journal (optional).
pub const WORKER_STATE_DIR: &str = "WORKER_STATE_DIR";
/// `STATE_DIRECTORY`: set by systemd's `StateDirectory=`; the first entry stands in for
/// an unset [`WORKER_STATE_DIR`].
pub const STATE_DIRECTORY: &str = "STATE_DIRECTORY";
/// `LOG_FORMAT`: `json` (default) or `text`, see [`crate::contract::LogFormat`].
pub const LOG_FORMAT: &str = "LOG_FORMAT";
/// `RUST_LOG`: the log filter (`tracing-subscriber`'s `EnvFilter` syntax, e.g. `debug`
/// or `sitg_bot=debug,info`), default [`DEFAULT_LOG_LEVEL`]; read by
/// [`crate::telemetry::init`], not by the worker config.
pub const RUST_LOG: &str = "RUST_LOG";

/// Every variable the worker reads, in the order of the deployment guide.
pub const ALL: [&str; 28] = [
    BIND_ADDRESS,
    PORT,
    METRICS_PORT,
    GITHUB_WEBHOOK_SECRET,
    GITHUB_WEBHOOK_SECRET_PREVIOUS,
    GITHUB_APP_ID,
    GITHUB_APP_PRIVATE_KEY,
    GITHUB_API_BASE_URL,
    BACKEND_BASE_URL,
    BACKEND_BOT_KEY_ID,
    BACKEND_INTERNAL_HMAC_SECRET,
    BACKEND_SERVICE_TOKEN,
    WORKER_ID,
    OUTBOX_POLLING_ENABLED,
    OUTBOX_CLAIM_ON_EVENT,
    OUTBOX_POLL_INTERVAL_MS,
    OUTBOX_CLAIM_LIMIT,
    OUTBOX_CONCURRENCY,
    SHUTDOWN_TIMEOUT_SECONDS,
    SHUTDOWN_DRAIN_SECONDS,
    HTTP_MAX_CONNECTIONS,
    HTTP_HEADER_READ_TIMEOUT_SECONDS,
    HTTP_REQUEST_HEAD_TIMEOUT_SECONDS,
    WEBHOOK_BUFFER_LIMIT_MB,
    WORKER_STATE_DIR,
    STATE_DIRECTORY,
    LOG_FORMAT,
    // Read by the log set-up, not by the worker config; listed so a Deployment may set it.
    RUST_LOG,
];

/// Default `RUST_LOG` of the worker: `info`.
pub const DEFAULT_LOG_LEVEL: &str = "info";

/// Default `GITHUB_API_BASE_URL`.
pub const DEFAULT_GITHUB_API_BASE_URL: &str = "https://api.github.com";
/// Default `OUTBOX_POLL_INTERVAL_MS`.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 5_000;
/// Accepted `OUTBOX_POLL_INTERVAL_MS`: at least 500 ms, because the backend refuses two
/// claims by one worker in the same second, so polling faster only produces replays;
/// at most one hour.
pub const POLL_INTERVAL_MS_RANGE: RangeInclusive<u64> = 500..=3_600_000;
/// Default `OUTBOX_CLAIM_LIMIT`.
pub const DEFAULT_CLAIM_LIMIT: u32 = 25;
/// The backend clamps claim limits to this range (contract §1.4).
pub const CLAIM_LIMIT_RANGE: RangeInclusive<u32> = 1..=100;
/// Default `OUTBOX_CONCURRENCY`: actions executed at once.
pub const DEFAULT_CONCURRENCY: u64 = 16;
/// Accepted `OUTBOX_CONCURRENCY`.
pub const CONCURRENCY_RANGE: RangeInclusive<u64> = 1..=256;
/// Default `SHUTDOWN_TIMEOUT_SECONDS`: kept under Kubernetes' default 30 s grace period.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECONDS: u64 = 20;
/// Accepted `SHUTDOWN_TIMEOUT_SECONDS`.
pub const SHUTDOWN_TIMEOUT_SECONDS_RANGE: RangeInclusive<u64> = 1..=300;
/// Default `SHUTDOWN_DRAIN_SECONDS`.
pub const DEFAULT_SHUTDOWN_DRAIN_SECONDS: u64 = 0;
/// Accepted `SHUTDOWN_DRAIN_SECONDS`.
pub const SHUTDOWN_DRAIN_SECONDS_RANGE: RangeInclusive<u64> = 0..=60;
/// Default `HTTP_MAX_CONNECTIONS`.
pub const DEFAULT_HTTP_MAX_CONNECTIONS: u64 = 1024;
/// Accepted `HTTP_MAX_CONNECTIONS`.
pub const HTTP_MAX_CONNECTIONS_RANGE: RangeInclusive<u64> = 16..=65_536;
/// Default `HTTP_HEADER_READ_TIMEOUT_SECONDS`: above the 60 s idle timeout of AWS load
/// balancers and ingress-nginx, so the worker never closes a pooled connection first.
pub const DEFAULT_HTTP_HEADER_READ_TIMEOUT_SECONDS: u64 = 65;
/// Accepted `HTTP_HEADER_READ_TIMEOUT_SECONDS`.
pub const HTTP_HEADER_READ_TIMEOUT_SECONDS_RANGE: RangeInclusive<u64> = 5..=3600;
/// Default `HTTP_REQUEST_HEAD_TIMEOUT_SECONDS`: a request head is a few hundred bytes
/// that a real client sends at once; 10 s leaves room for a slow mobile link and cuts a
/// client trickling a header byte by byte (slowloris) long before the idle timeout.
pub const DEFAULT_HTTP_REQUEST_HEAD_TIMEOUT_SECONDS: u64 = 10;
/// Accepted `HTTP_REQUEST_HEAD_TIMEOUT_SECONDS`.
pub const HTTP_REQUEST_HEAD_TIMEOUT_SECONDS_RANGE: RangeInclusive<u64> = 1..=300;
/// Default `WEBHOOK_BUFFER_LIMIT_MB`.
pub const DEFAULT_WEBHOOK_BUFFER_LIMIT_MB: u64 = 64;
/// Accepted `WEBHOOK_BUFFER_LIMIT_MB`: at least 25 so one body of GitHub's 25 MB
/// maximum always fits.
pub const WEBHOOK_BUFFER_LIMIT_MB_RANGE: RangeInclusive<u64> = 25..=4096;

/// How `sitg-bot worker --help` describes one variable of [`ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarHelp {
    /// The variable's name.
    pub name: &'static str,
    /// `required`, or `default: …` (the value used when the variable is unset or empty).
    pub default: String,
    /// The accepted values (ranges are inclusive).
    pub accepted: String,
    /// Whether the value is a credential: shown as `(secret)`, never echoed.
    pub secret: bool,
}

/// The help of one variable of [`ALL`], built from the constants of this module (so
/// the help cannot drift from the parser's defaults and ranges); `None` for a name that
/// is not a worker variable.
pub fn describe(name: &str) -> Option<VarHelp> {
    fn range<T: std::fmt::Display>(r: &RangeInclusive<T>, unit: &str) -> String {
        format!("{}..{}{unit}", r.start(), r.end())
    }
    let url = "http(s) URL without user info, query or fragment";
    let header = "printable ASCII without spaces (sent in an HTTP header)";
    let boolean = "true or false (also 1/0, yes/no, on/off)";
    let (name, default, accepted, secret): (&'static str, String, String, bool) = match name {
        BIND_ADDRESS => (
            BIND_ADDRESS,
            "0.0.0.0".into(),
            "an IPv4 or IPv6 address".into(),
            false,
        ),
        PORT => (
            PORT,
            String::new(),
            "1..65535: webhooks, /metrics, /healthz, /readyz".into(),
            false,
        ),
        METRICS_PORT => (
            METRICS_PORT,
            "unset (metrics on PORT only)".into(),
            "1..65535: a second listener for /metrics, /healthz, /readyz".into(),
            false,
        ),
        GITHUB_WEBHOOK_SECRET => (
            GITHUB_WEBHOOK_SECRET,
            String::new(),
            "any text".into(),
            true,
        ),
        GITHUB_WEBHOOK_SECRET_PREVIOUS => (
            GITHUB_WEBHOOK_SECRET_PREVIOUS,
            "unset".into(),
            "any text; also accepted during a secret rotation".into(),
            true,
        ),
        GITHUB_APP_ID => (
            GITHUB_APP_ID,
            String::new(),
            format!("1..{}", i64::MAX),
            false,
        ),
        GITHUB_APP_PRIVATE_KEY => (
            GITHUB_APP_PRIVATE_KEY,
            String::new(),
            "PEM private key; \\n escapes allowed".into(),
            true,
        ),
        GITHUB_API_BASE_URL => (
            GITHUB_API_BASE_URL,
            DEFAULT_GITHUB_API_BASE_URL.into(),
            url.into(),
            false,
        ),
        BACKEND_BASE_URL => (BACKEND_BASE_URL, String::new(), url.into(), false),
        BACKEND_BOT_KEY_ID => (BACKEND_BOT_KEY_ID, String::new(), header.into(), false),
        BACKEND_INTERNAL_HMAC_SECRET => (
            BACKEND_INTERNAL_HMAC_SECRET,
            String::new(),
            "any text".into(),
            true,
        ),
        BACKEND_SERVICE_TOKEN => (BACKEND_SERVICE_TOKEN, "unset".into(), header.into(), true),
        WORKER_ID => (
            WORKER_ID,
            "host name plus a random suffix".into(),
            "1..128 characters of A-Z a-z 0-9 . _ -".into(),
            false,
        ),
        OUTBOX_POLLING_ENABLED => (OUTBOX_POLLING_ENABLED, "true".into(), boolean.into(), false),
        OUTBOX_CLAIM_ON_EVENT => (OUTBOX_CLAIM_ON_EVENT, "true".into(), boolean.into(), false),
        OUTBOX_POLL_INTERVAL_MS => (
            OUTBOX_POLL_INTERVAL_MS,
            DEFAULT_POLL_INTERVAL_MS.to_string(),
            range(&POLL_INTERVAL_MS_RANGE, " ms"),
            false,
        ),
        OUTBOX_CLAIM_LIMIT => (
            OUTBOX_CLAIM_LIMIT,
            DEFAULT_CLAIM_LIMIT.to_string(),
            range(&CLAIM_LIMIT_RANGE, " actions per claim"),
            false,
        ),
        OUTBOX_CONCURRENCY => (
            OUTBOX_CONCURRENCY,
            DEFAULT_CONCURRENCY.to_string(),
            range(&CONCURRENCY_RANGE, " actions at once"),
            false,
        ),
        SHUTDOWN_TIMEOUT_SECONDS => (
            SHUTDOWN_TIMEOUT_SECONDS,
            DEFAULT_SHUTDOWN_TIMEOUT_SECONDS.to_string(),
            range(&SHUTDOWN_TIMEOUT_SECONDS_RANGE, " s"),
            false,
        ),
        SHUTDOWN_DRAIN_SECONDS => (
            SHUTDOWN_DRAIN_SECONDS,
            DEFAULT_SHUTDOWN_DRAIN_SECONDS.to_string(),
            range(&SHUTDOWN_DRAIN_SECONDS_RANGE, " s"),
            false,
        ),
        HTTP_MAX_CONNECTIONS => (
            HTTP_MAX_CONNECTIONS,
            DEFAULT_HTTP_MAX_CONNECTIONS.to_string(),
            range(&HTTP_MAX_CONNECTIONS_RANGE, " per listener"),
            false,
        ),
        HTTP_HEADER_READ_TIMEOUT_SECONDS => (
            HTTP_HEADER_READ_TIMEOUT_SECONDS,
            DEFAULT_HTTP_HEADER_READ_TIMEOUT_SECONDS.to_string(),
            range(&HTTP_HEADER_READ_TIMEOUT_SECONDS_RANGE, " s"),
            false,
        ),
        HTTP_REQUEST_HEAD_TIMEOUT_SECONDS => (
            HTTP_REQUEST_HEAD_TIMEOUT_SECONDS,
            DEFAULT_HTTP_REQUEST_HEAD_TIMEOUT_SECONDS.to_string(),
            range(&HTTP_REQUEST_HEAD_TIMEOUT_SECONDS_RANGE, " s"),
            false,
        ),
        WEBHOOK_BUFFER_LIMIT_MB => (
            WEBHOOK_BUFFER_LIMIT_MB,
            DEFAULT_WEBHOOK_BUFFER_LIMIT_MB.to_string(),
            range(&WEBHOOK_BUFFER_LIMIT_MB_RANGE, " MiB"),
            false,
        ),
        WORKER_STATE_DIR => (
            WORKER_STATE_DIR,
            "unset (no claim journal)".into(),
            "an absolute directory path".into(),
            false,
        ),
        STATE_DIRECTORY => (
            STATE_DIRECTORY,
            "unset".into(),
            "absolute paths separated by ':' (systemd); the first stands in for WORKER_STATE_DIR"
                .into(),
            false,
        ),
        LOG_FORMAT => (LOG_FORMAT, "json".into(), "json or text".into(), false),
        RUST_LOG => (
            RUST_LOG,
            DEFAULT_LOG_LEVEL.into(),
            "a tracing filter, e.g. info,sitg_bot::outbox=debug".into(),
            false,
        ),
        _ => return None,
    };
    let default = if default.is_empty() {
        "required".to_owned()
    } else {
        format!("default: {default}")
    };
    Some(VarHelp {
        name,
        default,
        accepted,
        secret,
    })
}

/// The `Environment variables` section of `sitg-bot worker --help`: one line per
/// variable of [`ALL`], in that order, `NAME [(secret)]  required|default: …; accepted`.
/// Never shows a value of the environment.
pub fn worker_help() -> String {
    let mut out = String::from(
        "Environment variables (ranges inclusive; an empty value counts as unset; \
         secret values are never shown):\n",
    );
    for help in ALL.iter().filter_map(|name| describe(name)) {
        let name = if help.secret {
            format!("{} (secret)", help.name)
        } else {
            help.name.to_owned()
        };
        out.push_str(&format!(
            "  {name:<42} {}; {}\n",
            help.default, help.accepted
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variable_has_help_and_no_other_name_does() {
        for name in ALL {
            let help = describe(name).unwrap_or_else(|| panic!("{name} has no help"));
            assert_eq!(help.name, name);
        }
        assert_eq!(describe("PATH"), None);
        assert_eq!(worker_help().lines().count(), ALL.len() + 1);
    }

    #[test]
    fn help_shows_defaults_and_ranges_from_the_constants() {
        let help = describe(OUTBOX_POLL_INTERVAL_MS).unwrap();
        assert_eq!(help.default, "default: 5000");
        assert_eq!(help.accepted, "500..3600000 ms");
        assert_eq!(describe(PORT).unwrap().default, "required");
        assert!(describe(GITHUB_APP_PRIVATE_KEY).unwrap().secret);
        assert!(worker_help().contains("  BACKEND_SERVICE_TOKEN (secret) "));
    }
}
