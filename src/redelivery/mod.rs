//! Redelivery of failed webhook deliveries. GitHub never redelivers by itself; a
//! sweep lists the App's recent deliveries, finds the events no attempt delivered and
//! asks GitHub to send each once more.
//!
//! - `plan`: [`plan_sweep`], the pure decision over GitHub's delivery log;
//! - `sweep`: [`Sweeper`], one sweep with a GitHub client, logs and metrics;
//! - `metrics`: the `sitg_bot_redelivery*` series;
//! - `cli`: `sitg-bot redeliver`, one sweep from a systemd timer;
//! - `textfile`: the one-shot command's metrics file and counters kept between runs.

pub mod cli;
mod metrics;
mod plan;
mod sweep;
pub mod textfile;

pub use metrics::{FailureReason, RedeliveryMetrics};
pub use plan::{GITHUB_RETENTION, REFUSED_STATUS_CODES, SweepPlan, SweepPolicy, plan_sweep};
pub use sweep::{SweepReport, Sweeper};
