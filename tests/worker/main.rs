//! The worker end to end: the real `sitg-bot worker` binary on real sockets against the
//! simulators of `sitg-sandbox`, fed with GitHub's own example payloads
//! (`scripts/fetch-fixtures.sh` installs them), its configuration refusals, properties
//! of the webhook path, and the failure drills. Needs no tool beyond cargo.

mod support;

mod claim_journal_e2e;
mod config_cli;
// Needs Debian's prometheus (scripts/install-ship-deps.sh).
#[cfg(feature = "external-tests")]
mod dashboard_prometheus;
mod drill_backend_outage;
mod drill_github_faults;
mod drill_sigterm;
mod foreign_comments;
mod gate_latency;
mod ingress_e2e;
mod log_backpressure;
#[path = "../common/log_check.rs"]
mod log_check;
mod log_lines;
mod outbox_e2e;
mod outbox_hardening;
mod outbox_lag;
mod prop_webhook;
mod redelivery_e2e;
mod secret_redaction;
mod verify_e2e;
mod webhook_e2e;
