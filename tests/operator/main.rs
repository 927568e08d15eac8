//! The operator: its CRD against `crds/botfleet.yaml` (no cluster needed) and, with
//! `--features external-tests`, the controller, the leader election and the worker
//! pods' environment on a real API server (`scripts/control-plane.sh up DIR`, then
//! `SITG_TEST_KUBECONFIG=DIR/kubeconfig`; `scripts/test.sh` does both).

mod crd;

#[cfg(feature = "external-tests")]
mod e2e;
#[cfg(feature = "external-tests")]
mod leader;
#[cfg(feature = "external-tests")]
#[path = "../common/log_check.rs"]
mod log_check;
#[cfg(feature = "external-tests")]
mod metrics_pipeline;
#[cfg(feature = "external-tests")]
mod pod_settings;
#[cfg(feature = "external-tests")]
mod redelivery;
#[cfg(feature = "external-tests")]
mod support;
#[cfg(feature = "external-tests")]
mod verify_botfleet;
#[cfg(feature = "external-tests")]
mod worker_env;
