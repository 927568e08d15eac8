//! # sitg-bot
//!
//! One binary for the SITG GitHub App's bot fleet:
//!
//! - [`contract`]: what the worker and the operator must agree on: environment variable
//!   names, defaults and ranges, metric names, shared value types.
//! - [`secret`]: a wrapper that keeps secret values out of `Debug`, logs and errors.
//! - [`redact`]: credentials by value, removed from every log line and peer text.
//! - [`backend`]: the SITG backend's `/internal/v2` client (request signing, contract types).
//! - [`github`]: GitHub App authentication (JWT, installation access tokens) and the REST
//!   calls the outbox needs, with rate-limit handling.
//! - [`webhook`]: pure webhook logic: signature verification and event normalisation.
//! - [`outbox`]: action validation and execution, and the claim/report loop.
//! - [`redelivery`]: the sweep that asks GitHub to redeliver failed webhook deliveries.
//! - [`worker`]: the HTTP server (webhook ingress, health, metrics) and shutdown.
//! - [`metrics`]: the Prometheus registry with the counter names operators watch.
//! - [`operator`]: the `BotFleet` custom resource and its controller.
//! - [`probe`]: `sitg-bot probe URL`, the HTTP check the chart's `helm test` runs.
//! - [`verify`]: `sitg-bot verify`, the production verification checklist.

pub mod backend;
pub mod build_info;
pub mod contract;
pub mod github;
pub mod metrics;
pub mod operator;
pub mod outbox;
pub mod probe;
pub mod redact;
pub mod redelivery;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod verify;
pub mod webhook;
pub mod worker;
