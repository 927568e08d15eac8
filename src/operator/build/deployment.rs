//! The worker Deployment.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
    SeccompProfile, SecretKeySelector, SecurityContext, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{child_meta, labels, pod_selector, selector_labels, worker_env_secret_name};
use crate::contract::LogFormat;
use crate::contract::env;
use crate::operator::validate::{Scaling, ValidFleet};

/// Pod-template annotation holding [`super::worker_env_checksum`]; a new value rolls
/// the pods, so a rotated Secret reaches every worker without a manual restart.
pub const CHECKSUM_ANNOTATION: &str = "sitg.io/worker-env-checksum";
/// Container port of `POST /webhooks/github` (`PORT`).
pub const WEBHOOK_PORT: i32 = 8080;
/// Container port of the second listener serving `/metrics`, `/healthz`, `/readyz`
/// (`METRICS_PORT`).
pub const METRICS_PORT: i32 = 9090;
/// `SHUTDOWN_DRAIN_SECONDS` of the worker: after SIGTERM it keeps serving this long
/// with `/readyz` at 503, because kube-proxy and ingress controllers learn of the
/// pod's endpoint removal only after the signal, and GitHub does not redeliver a
/// refused delivery.
const SHUTDOWN_DRAIN_SECONDS: i64 = 5;
const _: () = assert!(
    *env::SHUTDOWN_DRAIN_SECONDS_RANGE.start() <= SHUTDOWN_DRAIN_SECONDS as u64
        && SHUTDOWN_DRAIN_SECONDS as u64 <= *env::SHUTDOWN_DRAIN_SECONDS_RANGE.end()
);
/// The worker's in-flight budget after the drain (`SHUTDOWN_TIMEOUT_SECONDS`, left at
/// its default): claimed actions reported and open requests answered.
const WORKER_SHUTDOWN_TIMEOUT_SECONDS: i64 = env::DEFAULT_SHUTDOWN_TIMEOUT_SECONDS as i64;
/// Seconds the kubelet waits after SIGTERM before SIGKILL: the drain plus the worker's
/// in-flight budget, with room to spare so a SIGKILL never strands a claimed action.
const TERMINATION_GRACE_SECONDS: i64 = 40;
const _: () = assert!(
    TERMINATION_GRACE_SECONDS >= SHUTDOWN_DRAIN_SECONDS + WORKER_SHUTDOWN_TIMEOUT_SECONDS + 5
);
/// The non-root user of the image (distroless `nonroot`).
const RUN_AS_USER: i64 = 65532;

/// Builds the Deployment running `sitg-bot worker`.
///
/// `replicas` is set only for [`Scaling::Fixed`]; with autoscaling (the operator's or
/// an external one) the field is left out of the applied configuration so the
/// HorizontalPodAutoscaler owns it.
pub fn deployment(fleet: &ValidFleet, worker_env_checksum: &str) -> Deployment {
    let mut annotations = fleet.pod_annotations.clone();
    annotations.insert(
        CHECKSUM_ANNOTATION.to_owned(),
        worker_env_checksum.to_owned(),
    );
    let replicas = match fleet.scaling {
        Scaling::Fixed(n) => Some(n),
        Scaling::Autoscaled { .. } | Scaling::External => None,
    };
    Deployment {
        metadata: child_meta(fleet, fleet.name.clone()),
        spec: Some(DeploymentSpec {
            replicas,
            selector: pod_selector(&fleet.name),
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".to_owned()),
                rolling_update: Some(RollingUpdateDeployment {
                    // Never drop below the wanted count during a roll: webhooks keep
                    // flowing while a rotated secret reaches the pods.
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            revision_history_limit: Some(5),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(fleet)),
                    annotations: Some(annotations),
                    ..Default::default()
                }),
                spec: Some(pod_spec(fleet)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The pod template's labels: the spec's extra labels under the operator's own, which
/// win (the API server already refuses a fleet that sets them).
fn pod_labels(fleet: &ValidFleet) -> BTreeMap<String, String> {
    let mut all = fleet.pod_labels.clone();
    all.extend(labels(&fleet.name));
    all
}

/// Topology keys of the default spread: one node, then one zone, is what a fleet must
/// survive losing.
const DEFAULT_SPREAD_KEYS: [&str; 2] = ["kubernetes.io/hostname", "topology.kubernetes.io/zone"];

/// The spec's spread constraints, or the default spread over nodes and zones; each
/// constraint without a `labelSelector` selects the fleet's pods. Skew is counted per
/// rollout revision (`matchLabelKeys: pod-template-hash`), so a rollout's surge pod is
/// not pushed away by the pods it replaces.
fn topology_spread_constraints(fleet: &ValidFleet) -> Vec<TopologySpreadConstraint> {
    let selector = || LabelSelector {
        match_labels: Some(selector_labels(&fleet.name)),
        ..Default::default()
    };
    match &fleet.topology_spread_constraints {
        Some(given) => given
            .iter()
            .cloned()
            .map(|c| TopologySpreadConstraint {
                label_selector: c.label_selector.clone().or_else(|| Some(selector())),
                ..c
            })
            .collect(),
        None => DEFAULT_SPREAD_KEYS
            .iter()
            .map(|key| TopologySpreadConstraint {
                max_skew: 1,
                topology_key: (*key).to_owned(),
                when_unsatisfiable: "ScheduleAnyway".to_owned(),
                label_selector: Some(selector()),
                match_label_keys: Some(vec!["pod-template-hash".to_owned()]),
                ..Default::default()
            })
            .collect(),
    }
}

fn pod_spec(fleet: &ValidFleet) -> PodSpec {
    PodSpec {
        containers: vec![worker_container(fleet)],
        // The worker never calls the Kubernetes API.
        automount_service_account_token: Some(false),
        // Service links would add one variable per Service of the namespace.
        enable_service_links: Some(false),
        termination_grace_period_seconds: Some(TERMINATION_GRACE_SECONDS),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(RUN_AS_USER),
            run_as_group: Some(RUN_AS_USER),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        node_selector: fleet.node_selector.clone(),
        tolerations: fleet.tolerations.clone(),
        image_pull_secrets: fleet.image_pull_secrets.clone(),
        topology_spread_constraints: Some(topology_spread_constraints(fleet)),
        affinity: fleet.affinity.clone(),
        priority_class_name: fleet.priority_class_name.clone(),
        volumes: Some(vec![
            Volume {
                name: "tmp".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("16Mi".to_owned())),
                    ..Default::default()
                }),
                ..Default::default()
            },
            // The claim journal: an emptyDir lives as long as the pod, so a worker
            // container restarted after an OOM kill finds what it held (and WORKER_ID,
            // the pod name, is the same).
            Volume {
                name: STATE_VOLUME.to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(Quantity("16Mi".to_owned())),
                    ..Default::default()
                }),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// The pod volume holding the worker's claim journal, and where it is mounted.
const STATE_VOLUME: &str = "state";
const STATE_DIR: &str = "/var/lib/sitg-bot";

fn worker_container(fleet: &ValidFleet) -> Container {
    Container {
        name: "worker".to_owned(),
        image: Some(fleet.image.clone()),
        image_pull_policy: Some(fleet.pull_policy.as_str().to_owned()),
        args: Some(vec!["worker".to_owned()]),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".to_owned()),
                container_port: WEBHOOK_PORT,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: METRICS_PORT,
                protocol: Some("TCP".to_owned()),
                ..Default::default()
            },
        ]),
        env: Some(worker_env(fleet)),
        resources: Some(fleet.resources.clone()),
        liveness_probe: Some(http_probe("/healthz", 10, 3)),
        readiness_probe: Some(http_probe("/readyz", 5, 2)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            privileged: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..Default::default()
            },
            VolumeMount {
                name: STATE_VOLUME.to_owned(),
                mount_path: STATE_DIR.to_owned(),
                ..Default::default()
            },
        ]),
        ..Default::default()
    }
}

/// The worker environment: plain values for the non-secret settings, `secretKeyRef`s
/// into the worker env Secret for the secret ones, and `WORKER_ID` from the pod name.
fn worker_env(fleet: &ValidFleet) -> Vec<EnvVar> {
    let s = &fleet.settings;
    let plain: BTreeMap<&str, String> = BTreeMap::from([
        (env::PORT, WEBHOOK_PORT.to_string()),
        (env::METRICS_PORT, METRICS_PORT.to_string()),
        (env::LOG_FORMAT, LogFormat::Json.as_str().to_owned()),
        (env::GITHUB_APP_ID, s.github_app_id.to_string()),
        (env::GITHUB_API_BASE_URL, s.github_api_base_url.clone()),
        (env::BACKEND_BASE_URL, s.backend_base_url.clone()),
        (env::BACKEND_BOT_KEY_ID, s.backend_bot_key_id.clone()),
        (
            env::OUTBOX_POLLING_ENABLED,
            s.outbox_polling_enabled.to_string(),
        ),
        (
            env::OUTBOX_POLL_INTERVAL_MS,
            s.outbox_poll_interval_ms.to_string(),
        ),
        (env::OUTBOX_CLAIM_LIMIT, s.outbox_claim_limit.to_string()),
        (
            env::SHUTDOWN_DRAIN_SECONDS,
            SHUTDOWN_DRAIN_SECONDS.to_string(),
        ),
        (env::WORKER_STATE_DIR, STATE_DIR.to_owned()),
    ]);
    let mut plain = plain;
    if let Some(level) = fleet.log_level {
        plain.insert(env::RUST_LOG, level.as_str().to_owned());
    }
    let secret_name = worker_env_secret_name(&fleet.name);
    let mut env: Vec<EnvVar> = plain
        .into_iter()
        .map(|(name, value)| EnvVar {
            name: name.to_owned(),
            value: Some(value),
            ..Default::default()
        })
        .collect();
    env.extend(fleet.secrets.iter().map(|(name, _)| EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret_name.clone(),
                key: name.to_owned(),
                optional: Some(false),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }));
    env.push(EnvVar {
        name: env::WORKER_ID.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".to_owned()),
                field_path: "metadata.name".to_owned(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    env
}

/// A probe on the metrics port (`METRICS_PORT`), which serves `/healthz` and `/readyz`
/// too: the webhook port is public, and a flood of idle or slow clients there must not
/// make the kubelet restart or unroute the pods.
fn http_probe(path: &str, period_seconds: i32, failure_threshold: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("metrics".to_owned()),
            scheme: Some("HTTP".to_owned()),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        timeout_seconds: Some(2),
        failure_threshold: Some(failure_threshold),
        success_threshold: Some(1),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::testing::sample_view;

    fn env_map(d: &Deployment) -> BTreeMap<String, EnvVar> {
        container(d)
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect()
    }

    fn container(d: &Deployment) -> &Container {
        &pod(d).containers[0]
    }

    fn pod(d: &Deployment) -> &PodSpec {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .expect("pod spec")
    }

    fn plain(env: &BTreeMap<String, EnvVar>, name: &str) -> Option<String> {
        env.get(name).and_then(|e| e.value.clone())
    }

    #[test]
    fn fixed_replicas_and_rollout_strategy() {
        let d = deployment(&sample_view(), "abc");
        let spec = d.spec.as_ref().expect("spec");
        assert_eq!(spec.replicas, Some(2));
        let strategy = spec.strategy.as_ref().expect("strategy");
        assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
        let rolling = strategy.rolling_update.as_ref().expect("rolling");
        assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
        assert_eq!(rolling.max_surge, Some(IntOrString::Int(1)));
        assert_eq!(
            spec.selector.match_labels.as_ref(),
            Some(&super::super::selector_labels("bots"))
        );
        let template_labels = spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref())
            .expect("template labels");
        for (k, v) in super::super::selector_labels("bots") {
            assert_eq!(template_labels.get(&k), Some(&v));
        }
    }

    #[test]
    fn autoscaled_fleet_leaves_replicas_to_the_hpa() {
        let mut view = sample_view();
        view.scaling = Scaling::Autoscaled {
            min_replicas: 2,
            max_replicas: 6,
            target_outbox_lag_seconds: 30,
        };
        let d = deployment(&view, "abc");
        assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), None);
    }

    #[test]
    fn checksum_and_pod_annotations() {
        let mut view = sample_view();
        view.pod_annotations
            .insert("sidecar.example/inject".to_owned(), "false".to_owned());
        let d = deployment(&view, "deadbeef");
        let annotations = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .expect("annotations");
        assert_eq!(annotations[CHECKSUM_ANNOTATION], "deadbeef");
        assert_eq!(annotations["sidecar.example/inject"], "false");
    }

    #[test]
    fn replicas_spread_over_nodes_and_zones_by_default() {
        let d = deployment(&sample_view(), "abc");
        let spread = pod(&d)
            .topology_spread_constraints
            .clone()
            .expect("spread constraints");
        let keys: Vec<&str> = spread.iter().map(|c| c.topology_key.as_str()).collect();
        assert_eq!(
            keys,
            ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        );
        for c in &spread {
            assert_eq!(c.max_skew, 1);
            // A one-node cluster must still schedule every replica.
            assert_eq!(c.when_unsatisfiable, "ScheduleAnyway");
            assert_eq!(
                c.label_selector
                    .as_ref()
                    .and_then(|s| s.match_labels.clone()),
                Some(super::super::selector_labels("bots"))
            );
            assert_eq!(
                c.match_label_keys.as_deref(),
                Some(&["pod-template-hash".to_owned()][..])
            );
        }
    }

    #[test]
    fn spread_given_in_the_spec_replaces_the_default() {
        let mut view = sample_view();
        view.topology_spread_constraints = Some(vec![]);
        let d = deployment(&view, "abc");
        assert_eq!(pod(&d).topology_spread_constraints, Some(vec![]));

        view.topology_spread_constraints = Some(vec![TopologySpreadConstraint {
            max_skew: 2,
            topology_key: "topology.kubernetes.io/zone".to_owned(),
            when_unsatisfiable: "DoNotSchedule".to_owned(),
            ..Default::default()
        }]);
        let d = deployment(&view, "abc");
        let spread = pod(&d).topology_spread_constraints.clone().expect("spread");
        assert_eq!(spread.len(), 1);
        assert_eq!(spread[0].max_skew, 2);
        assert_eq!(spread[0].when_unsatisfiable, "DoNotSchedule");
        assert_eq!(
            spread[0]
                .label_selector
                .as_ref()
                .and_then(|s| s.match_labels.clone()),
            Some(super::super::selector_labels("bots")),
            "a constraint without labelSelector selects the fleet's pods"
        );
    }

    #[test]
    fn production_pod_settings_reach_the_pod_template() {
        use k8s_openapi::api::core::v1::{Affinity, LocalObjectReference, NodeAffinity};
        let mut view = sample_view();
        view.image_pull_secrets = Some(vec![LocalObjectReference {
            name: "registry".to_owned(),
        }]);
        view.priority_class_name = Some("bots-high".to_owned());
        let affinity = Affinity {
            node_affinity: Some(NodeAffinity::default()),
            ..Default::default()
        };
        view.affinity = Some(affinity.clone());
        view.pod_labels
            .insert("cost-centre".to_owned(), "platform".to_owned());
        view.pod_labels
            .insert("app.kubernetes.io/name".to_owned(), "other".to_owned());
        view.log_level = Some(crate::operator::crd::LogLevel::Debug);
        let d = deployment(&view, "abc");
        let p = pod(&d);
        assert_eq!(
            p.image_pull_secrets.as_ref().map(|s| s[0].name.as_str()),
            Some("registry")
        );
        assert_eq!(p.priority_class_name.as_deref(), Some("bots-high"));
        assert_eq!(p.affinity.as_ref(), Some(&affinity));
        let labels = d
            .spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .expect("labels");
        assert_eq!(labels["cost-centre"], "platform");
        // The operator's labels win: the selector must keep matching.
        assert_eq!(labels["app.kubernetes.io/name"], "sitg-bot");
        assert_eq!(plain(&env_map(&d), env::RUST_LOG).as_deref(), Some("debug"));
    }

    #[test]
    fn no_log_level_leaves_rust_log_unset() {
        let d = deployment(&sample_view(), "abc");
        assert_eq!(plain(&env_map(&d), env::RUST_LOG), None);
        let p = pod(&d);
        assert_eq!(p.image_pull_secrets, None);
        assert_eq!(p.priority_class_name, None);
        assert_eq!(p.affinity, None);
    }

    #[test]
    fn container_runs_the_worker_hardened() {
        let d = deployment(&sample_view(), "abc");
        let c = container(&d);
        assert_eq!(c.name, "worker");
        assert_eq!(c.image.as_deref(), Some("ghcr.io/sitg/sitg-bot:1.2.3"));
        assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
        assert_eq!(c.args.as_deref(), Some(&["worker".to_owned()][..]));
        let sc = c.security_context.as_ref().expect("security context");
        assert_eq!(sc.allow_privilege_escalation, Some(false));
        assert_eq!(sc.read_only_root_filesystem, Some(true));
        assert_eq!(sc.run_as_non_root, Some(true));
        assert_eq!(
            sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
            Some(vec!["ALL".to_owned()])
        );
        let p = pod(&d);
        let psc = p.security_context.as_ref().expect("pod security context");
        assert_eq!(psc.run_as_non_root, Some(true));
        assert_eq!(psc.run_as_user, Some(65532));
        assert_eq!(
            psc.seccomp_profile.as_ref().map(|s| s.type_.as_str()),
            Some("RuntimeDefault")
        );
        assert_eq!(p.termination_grace_period_seconds, Some(40));
        assert_eq!(p.automount_service_account_token, Some(false));
        assert_eq!(p.enable_service_links, Some(false));
        let mounts = c.volume_mounts.as_ref().expect("mounts");
        assert_eq!(mounts[0].mount_path, "/tmp");
        let volumes = p.volumes.as_ref().expect("volumes");
        assert_eq!(volumes[0].name, mounts[0].name);
        assert!(volumes[0].empty_dir.is_some());
        // The claim journal outlives container restarts: an emptyDir, mounted where
        // WORKER_STATE_DIR points.
        assert_eq!(mounts[1].mount_path, "/var/lib/sitg-bot");
        assert_eq!(volumes[1].name, mounts[1].name);
        assert!(volumes[1].empty_dir.is_some());
        let env = c.env.as_ref().expect("env");
        assert!(env.iter().any(
            |e| e.name == "WORKER_STATE_DIR" && e.value.as_deref() == Some("/var/lib/sitg-bot")
        ));
    }

    #[test]
    fn probes_hit_health_and_readiness() {
        let d = deployment(&sample_view(), "abc");
        let c = container(&d);
        let live = c.liveness_probe.as_ref().and_then(|p| p.http_get.as_ref());
        let ready = c.readiness_probe.as_ref().and_then(|p| p.http_get.as_ref());
        assert_eq!(live.and_then(|h| h.path.as_deref()), Some("/healthz"));
        assert_eq!(ready.and_then(|h| h.path.as_deref()), Some("/readyz"));
        // Both on the metrics port, which the Deployment enables: the webhook port
        // is public and may be flooded.
        for probe in [live, ready] {
            assert_eq!(
                probe.map(|h| h.port.clone()),
                Some(IntOrString::String("metrics".to_owned()))
            );
        }
        let ports: Vec<_> = c
            .ports
            .iter()
            .flatten()
            .map(|p| (p.name.as_deref(), p.container_port))
            .collect();
        assert_eq!(ports, [(Some("http"), 8080), (Some("metrics"), 9090)]);
    }

    #[test]
    fn env_configures_every_worker_variable() {
        let d = deployment(&sample_view(), "abc");
        let env = env_map(&d);
        assert_eq!(plain(&env, "PORT").as_deref(), Some("8080"));
        assert_eq!(plain(&env, "METRICS_PORT").as_deref(), Some("9090"));
        assert_eq!(plain(&env, "LOG_FORMAT").as_deref(), Some("json"));
        assert_eq!(plain(&env, "GITHUB_APP_ID").as_deref(), Some("4242"));
        assert_eq!(
            plain(&env, "GITHUB_API_BASE_URL").as_deref(),
            Some("https://api.github.com")
        );
        assert_eq!(
            plain(&env, "BACKEND_BASE_URL").as_deref(),
            Some("https://sitg.example")
        );
        assert_eq!(
            plain(&env, "BACKEND_BOT_KEY_ID").as_deref(),
            Some("bck_test_1")
        );
        assert_eq!(
            plain(&env, "OUTBOX_POLLING_ENABLED").as_deref(),
            Some("true")
        );
        assert_eq!(
            plain(&env, "OUTBOX_POLL_INTERVAL_MS").as_deref(),
            Some("5000")
        );
        assert_eq!(plain(&env, "OUTBOX_CLAIM_LIMIT").as_deref(), Some("25"));
        assert_eq!(plain(&env, "SHUTDOWN_DRAIN_SECONDS").as_deref(), Some("5"));
        for secret_var in [
            "GITHUB_WEBHOOK_SECRET",
            "GITHUB_APP_PRIVATE_KEY",
            "BACKEND_INTERNAL_HMAC_SECRET",
        ] {
            let e = &env[secret_var];
            assert!(e.value.is_none(), "{secret_var} must not be inline");
            let r = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .expect("secretKeyRef");
            assert_eq!(r.name, "bots-worker-env");
            assert_eq!(r.key, secret_var);
        }
        assert!(!env.contains_key("GITHUB_WEBHOOK_SECRET_PREVIOUS"));
        assert!(!env.contains_key("BACKEND_SERVICE_TOKEN"));
        let worker_id = env["WORKER_ID"]
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .expect("fieldRef");
        assert_eq!(worker_id.field_path, "metadata.name");
        // Nothing from the Secret's values leaks into the pod template.
        let text = serde_json::to_string(&d).expect("json");
        assert!(!text.contains("whsec-current"));
    }

    /// The contract between the two sides, checked without a cluster: the env of the
    /// Deployment the operator builds, resolved the way the kubelet would (Secret keys
    /// from the fleet's Secret values, `WORKER_ID` from the pod name), parses in the
    /// worker's own config parser.
    #[test]
    fn worker_env_contract() {
        use crate::worker::WorkerConfig;
        let mut view = sample_view();
        view.secrets = crate::operator::dereference::SecretValues::from_pairs(
            view.secrets.iter().map(|(k, v)| (k, v.0.clone())).chain([
                (
                    env::GITHUB_WEBHOOK_SECRET_PREVIOUS,
                    b"whsec-previous".to_vec(),
                ),
                (env::BACKEND_SERVICE_TOKEN, b"service-token".to_vec()),
            ]),
        );
        let d = deployment(&view, "abc");
        let pod_name = "bots-7d4b9c-x2x9q";
        let mut resolved = BTreeMap::new();
        for e in container(&d).env.clone().unwrap_or_default() {
            assert!(
                env::ALL.contains(&e.name.as_str()),
                "{} is set by the operator but unknown to the worker",
                e.name
            );
            let value = match (&e.value, &e.value_from) {
                (Some(value), None) => value.clone(),
                (None, Some(from)) => match (&from.secret_key_ref, &from.field_ref) {
                    (Some(r), None) => {
                        assert_eq!(r.name, "bots-worker-env");
                        let bytes = view.secrets.get(&r.key).expect("key in the env Secret");
                        String::from_utf8(bytes.0.clone()).expect("UTF-8")
                    }
                    (None, Some(f)) => {
                        assert_eq!(f.field_path, "metadata.name");
                        pod_name.to_owned()
                    }
                    other => panic!("{}: unexpected source {other:?}", e.name),
                },
                other => panic!("{}: unexpected value {other:?}", e.name),
            };
            assert!(
                resolved.insert(e.name.clone(), value).is_none(),
                "{} twice",
                e.name
            );
        }
        let config = WorkerConfig::from_lookup(|name| resolved.get(name).cloned())
            .unwrap_or_else(|e| panic!("the operator's env does not parse: {e}"));
        assert_eq!(i32::from(config.port), WEBHOOK_PORT);
        assert_eq!(config.metrics_port.map(i32::from), Some(METRICS_PORT));
        assert_eq!(config.worker_id, pod_name);
        assert_eq!(config.github_app_id, 4242);
        assert_eq!(config.backend_base_url, "https://sitg.example");
        assert_eq!(config.outbox_claim_limit, 25);
        assert!(config.webhook_secret_previous.is_some());
        assert!(config.backend_service_token.is_some());
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(
            config.shutdown_drain.as_secs(),
            SHUTDOWN_DRAIN_SECONDS as u64
        );
        // The grace period covers the drain plus the worker's own shutdown budget.
        let grace = pod(&d).termination_grace_period_seconds.expect("grace");
        let needed = config.shutdown_drain + config.shutdown_timeout;
        assert!(grace as u64 > needed.as_secs(), "{grace} s < {needed:?}");
    }
}
