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
/// or `sitg_bot=debug,info`), read by the log set-up; `info` when unset or invalid.
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
