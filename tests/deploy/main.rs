//! What ships besides the binary, checked with the real tools: the Helm chart (helm,
//! promtool, a control plane of its own), the image recipe (hadolint), the systemd unit
//! (systemd-analyze), the docs' paths and commands, and key provisioning against a
//! throw-away PostgreSQL. Built only with `--features external-tests`
//! (`scripts/test.sh` installs the tools and turns it on).

mod support;
// `metrics_stack` is shared with the operator tests, which include the support module
// under this name.
use support as deploy_support;

mod artifacts;
mod chart_install;
mod chart_keda;
mod chart_render;
mod metrics_stack;
mod node_autoscaling;
mod node_e2e;
mod node_rollout;
mod node_support;
mod provision_service_bot_key;
mod redeliver_units;
