//! The Helm chart without a cluster: `helm lint --strict`, `helm template` with the
//! default, the namespaced and the all-features values (objects parsed with serde-saphyr
//! and checked field by field, and against the operator's own builders), the values
//! schema refusing bad values, and the monitoring rules under `promtool`.
//!
//! Needs helm (`scripts/control-plane.sh build`) and promtool
//! (`scripts/install-ship-deps.sh`).

use std::collections::BTreeMap;
use std::process::Command;

use crate::support::*;
use clap::{Args, FromArgMatches};
use serde_json::{Value, json};
use sitg_bot::contract::operator_env;
use sitg_bot::operator::build::{self, LAG_METRIC};
use sitg_bot::operator::crd::{DEFAULT_IMAGE_REPOSITORY, DefaultImage};
use sitg_bot::operator::dereference::{SecretValues, secret_refs};
use sitg_bot::operator::validate::validate;
use sitg_bot::operator::{BotFleet, OperatorOptions};

const RELEASE: &str = "sitg-bot";
const NAMESPACE: &str = "sitg-system";
const ALL_FEATURES: &str = "charts/sitg-bot/ci/all-features-values.yaml";
const NAMESPACED: &str = "charts/sitg-bot/ci/namespaced-values.yaml";

fn render(values: Option<&str>) -> Vec<Value> {
    let file;
    let args: Vec<&str> = match values {
        Some(relative) => {
            file = repo_path(relative).display().to_string();
            vec!["--values", file.as_str()]
        }
        None => vec![],
    };
    helm_template(RELEASE, NAMESPACE, &args)
}

/// The operator's options as its clap parser reads the container's args.
fn operator_options(deployment: &Value) -> OperatorOptions {
    let args = strings(&deployment["spec"]["template"]["spec"]["containers"][0]["args"]);
    assert_eq!(
        args[0], "operator",
        "the container runs `sitg-bot operator`"
    );
    let command = OperatorOptions::augment_args(clap::Command::new("operator"));
    let matches = command
        .try_get_matches_from(args.iter().copied())
        .unwrap_or_else(|e| panic!("the binary refuses the chart's args {args:?}: {e}"));
    OperatorOptions::from_arg_matches(&matches).expect("options from matches")
}

/// One RBAC policy rule.
#[derive(Debug, PartialEq, Eq)]
struct Rule {
    groups: Vec<String>,
    resources: Vec<String>,
    names: Vec<String>,
    verbs: Vec<String>,
}

fn rule(groups: &[&str], resources: &[&str], names: &[&str], verbs: &[&str]) -> Rule {
    let owned = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
    Rule {
        groups: owned(groups),
        resources: owned(resources),
        names: owned(names),
        verbs: owned(verbs),
    }
}

/// The rules of a Role or ClusterRole.
fn rules(role: &Value) -> Vec<Rule> {
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|r| Rule {
            groups: list(&r["apiGroups"]),
            resources: list(&r["resources"]),
            names: list(&r["resourceNames"]),
            verbs: list(&r["verbs"]),
        })
        .collect()
}

/// Exactly what the reconcile uses (the table in src/operator/mod.rs).
fn expected_reconcile_rules() -> Vec<Rule> {
    let write = ["get", "list", "watch", "create", "patch"];
    vec![
        rule(&["sitg.io"], &["botfleets"], &[], &["get", "list", "watch"]),
        rule(&["sitg.io"], &["botfleets/status"], &[], &["get", "patch"]),
        rule(&[""], &["secrets", "services"], &[], &write),
        rule(&["apps"], &["deployments"], &[], &write),
        rule(&["policy"], &["poddisruptionbudgets"], &[], &write),
        rule(
            &["autoscaling"],
            &["horizontalpodautoscalers"],
            &[],
            &["get", "list", "watch", "create", "patch", "delete"],
        ),
        rule(&["events.k8s.io"], &["events"], &[], &["create", "patch"]),
    ]
}

fn assert_no_wildcards(objects: &[Value]) {
    for role in objects
        .iter()
        .filter(|o| o["kind"] == "Role" || o["kind"] == "ClusterRole")
    {
        for rule in role["rules"].as_array().expect("rules") {
            for field in ["apiGroups", "resources", "verbs"] {
                assert!(
                    !strings(&rule[field]).contains(&"*"),
                    "wildcard in {}/{}: {rule}",
                    role["kind"],
                    role["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn chart_crd_is_a_copy_of_the_repo_crd() {
    // One source of truth: crds/botfleet.yaml is `sitg-bot crd`'s output (tested by
    // the operator), and the chart ships the same bytes.
    assert!(
        read("charts/sitg-bot/crds/botfleet.yaml") == read("crds/botfleet.yaml"),
        "charts/sitg-bot/crds/botfleet.yaml differs from crds/botfleet.yaml: \
         run `cp crds/botfleet.yaml charts/sitg-bot/crds/botfleet.yaml`"
    );
}

#[test]
fn chart_version_and_image_follow_the_crate() {
    let chart = yaml(&read("charts/sitg-bot/Chart.yaml"));
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(chart["version"], version, "chart version = crate version");
    assert_eq!(
        chart["appVersion"], version,
        "appVersion = crate version (the image tag)"
    );
    let values = yaml(&read("charts/sitg-bot/values.yaml"));
    assert_eq!(values["image"]["repository"], DEFAULT_IMAGE_REPOSITORY);
    assert_eq!(values["image"]["tag"], "", "an empty tag means appVersion");
    let objects = render(None);
    let deployment = object(&objects, "Deployment", RELEASE);
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        format!("{DEFAULT_IMAGE_REPOSITORY}:{version}"),
        "the operator runs the image a BotFleet deploys by default"
    );
}

#[test]
fn lint_strict_passes_with_every_values_file() {
    for values in [None, Some(ALL_FEATURES), Some(NAMESPACED)] {
        let mut cmd = Command::new(helm());
        cmd.args(["lint", "--strict"]).arg(chart_dir());
        if let Some(file) = values {
            cmd.arg("--values").arg(repo_path(file));
        }
        let out = run_ok(&mut cmd, "helm lint --strict");
        assert!(out.contains("0 chart(s) failed"), "{out}");
    }
}

#[test]
fn default_render_installs_the_operator_with_cluster_rbac() {
    let objects = render(None);
    assert_eq!(
        kinds_and_names(&objects),
        vec![
            ("ClusterRole".into(), "sitg-bot".into()),
            ("ClusterRole".into(), "sitg-bot-crd".into()),
            ("ClusterRoleBinding".into(), "sitg-bot".into()),
            ("ClusterRoleBinding".into(), "sitg-bot-crd".into()),
            ("Deployment".into(), "sitg-bot".into()),
            // The `helm test` hook: helm template prints it, helm install does not create it.
            ("Pod".into(), "sitg-bot-test-healthz".into()),
            ("PodDisruptionBudget".into(), "sitg-bot".into()),
            ("Role".into(), "sitg-bot-leader-election".into()),
            ("RoleBinding".into(), "sitg-bot-leader-election".into()),
            ("Service".into(), "sitg-bot".into()),
            ("ServiceAccount".into(), "sitg-bot".into()),
        ],
        "default values: no BotFleet, no monitoring objects, no NetworkPolicy"
    );

    let deployment = object(&objects, "Deployment", RELEASE);
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    assert_eq!(spec["strategy"]["rollingUpdate"]["maxUnavailable"], 0);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "sitg-bot");
    assert_eq!(pod["automountServiceAccountToken"], true);
    assert_eq!(
        spec["selector"]["matchLabels"], spec["template"]["metadata"]["labels"],
        "the selector matches the pod labels"
    );
    assert_eq!(
        spec["selector"]["matchLabels"]["app.kubernetes.io/component"], "operator",
        "operator pods are never selected by a fleet's worker selector"
    );
    // Restricted Pod Security Standard.
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &pod["containers"][0];
    let sc = &container["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    // Probes on the operator's /healthz, on the port it listens on.
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/healthz", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "metrics", "{probe}");
    }
    assert_eq!(container["ports"][0]["name"], "metrics");
    assert_eq!(container["ports"][0]["containerPort"], 8080);
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());
    let env: BTreeMap<&str, &Value> = container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| (e["name"].as_str().expect("name"), e))
        .collect();
    assert_eq!(
        env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
        "the leader identity is the pod name"
    );
    // The operator's own image, the worker image of fleets that pin none.
    assert_eq!(
        env[operator_env::OPERATOR_IMAGE_REPOSITORY]["value"],
        DEFAULT_IMAGE_REPOSITORY
    );
    assert_eq!(
        env[operator_env::OPERATOR_IMAGE_TAG]["value"],
        env!("CARGO_PKG_VERSION"),
        "an empty image.tag is the chart's appVersion"
    );
    assert_eq!(
        format!(
            "{}:{}",
            env[operator_env::OPERATOR_IMAGE_REPOSITORY]["value"]
                .as_str()
                .expect("repository"),
            env[operator_env::OPERATOR_IMAGE_TAG]["value"]
                .as_str()
                .expect("tag")
        ),
        container["image"].as_str().expect("image"),
        "the operator is told the image it runs"
    );

    let options = operator_options(deployment);
    assert_eq!(
        options.namespace, None,
        "cluster scope watches every namespace"
    );
    assert!(options.apply_crd, "the CRD upgrade path is on by default");
    assert_eq!(options.lease_name, "sitg-bot");
    assert_eq!(options.lease_namespace.as_deref(), Some(NAMESPACE));
    assert_eq!(options.metrics_addr.port(), 8080);
    assert_eq!(options.lease_duration_seconds, 15);

    let pdb = object(&objects, "PodDisruptionBudget", RELEASE);
    assert_eq!(pdb["spec"]["selector"], spec["selector"]);
}

#[test]
fn default_rbac_grants_only_what_the_reconcile_uses() {
    let objects = render(None);
    assert_no_wildcards(&objects);
    let role = object(&objects, "ClusterRole", RELEASE);
    assert_eq!(rules(role), expected_reconcile_rules());

    let binding = object(&objects, "ClusterRoleBinding", RELEASE);
    assert_eq!(binding["roleRef"]["name"], RELEASE);
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "sitg-bot", "namespace": NAMESPACE}])
    );

    // The CRD upgrade path may touch one CRD only, and never create or delete one.
    let crd_role = object(&objects, "ClusterRole", "sitg-bot-crd");
    assert_eq!(
        rules(crd_role),
        vec![rule(
            &["apiextensions.k8s.io"],
            &["customresourcedefinitions"],
            &["botfleets.sitg.io"],
            &["get", "list", "watch", "patch"],
        )]
    );

    let lease_role = object(&objects, "Role", "sitg-bot-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        rules(lease_role),
        vec![
            rule(
                &["coordination.k8s.io"],
                &["leases"],
                &["sitg-bot"],
                &["get", "patch"]
            ),
            rule(&["coordination.k8s.io"], &["leases"], &[], &["create"]),
        ]
    );
}

#[test]
fn crd_upgrade_path_can_be_switched_off() {
    let objects = helm_template(RELEASE, NAMESPACE, &["--set", "crds.applyOnStart=false"]);
    assert!(
        !kinds_and_names(&objects).contains(&("ClusterRole".into(), "sitg-bot-crd".into())),
        "no CRD permissions without --apply-crd"
    );
    let options = operator_options(object(&objects, "Deployment", RELEASE));
    assert!(!options.apply_crd);
}

#[test]
fn namespaced_render_uses_a_role_and_watches_one_namespace() {
    let objects = render(Some(NAMESPACED));
    assert_no_wildcards(&objects);
    let cluster_scoped: Vec<_> = objects
        .iter()
        .filter(|o| o["kind"] == "ClusterRole" || o["kind"] == "ClusterRoleBinding")
        .collect();
    assert!(
        cluster_scoped.is_empty(),
        "namespace scope without --apply-crd needs nothing cluster-wide: {cluster_scoped:?}"
    );
    let role = object(&objects, "Role", RELEASE);
    assert_eq!(role["metadata"]["namespace"], "bots");
    assert_eq!(rules(role), expected_reconcile_rules());
    let binding = object(&objects, "RoleBinding", RELEASE);
    assert_eq!(binding["metadata"]["namespace"], "bots");
    assert_eq!(binding["subjects"][0]["namespace"], NAMESPACE);

    let options = operator_options(object(&objects, "Deployment", RELEASE));
    assert_eq!(options.namespace.as_deref(), Some("bots"));
    assert_eq!(
        options.lease_namespace.as_deref(),
        Some(NAMESPACE),
        "the Lease stays in the release namespace, where its Role is"
    );
    assert!(!options.apply_crd);

    let fleet = object(&objects, "BotFleet", "bots");
    assert_eq!(
        fleet["metadata"]["namespace"], "bots",
        "the fleet lands where the operator looks"
    );
    let monitor = object(&objects, "ServiceMonitor", "sitg-bot-workers");
    assert_eq!(
        monitor["spec"]["namespaceSelector"],
        json!({"matchNames": ["bots"]})
    );
}

/// Runs the operator's own pipeline (validate, build) on a rendered BotFleet, as the
/// operator would once the referenced Secrets exist.
fn children_of(fleet_object: &Value) -> build::Children {
    let mut fleet: BotFleet =
        serde_json::from_value(fleet_object.clone()).expect("the rendered BotFleet is a BotFleet");
    fleet.metadata.uid = Some("00000000-0000-4000-8000-000000000001".to_owned());
    let values = SecretValues::from_pairs(secret_refs(&fleet.spec).into_iter().map(|u| {
        let value = if u.env == "GITHUB_APP_PRIVATE_KEY" {
            "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
        } else {
            "value"
        };
        (u.env, value.as_bytes().to_vec())
    }));
    build::children(
        &validate(&fleet, values, &DefaultImage::default()).expect("the rendered fleet validates"),
    )
}

fn assert_selects(selector: &Value, labels: &BTreeMap<String, String>, what: &str) {
    for (key, value) in selector.as_object().expect("matchLabels") {
        assert_eq!(
            labels.get(key).map(String::as_str),
            value.as_str(),
            "{what}: selector {key}={value} does not match labels {labels:?}"
        );
    }
}

#[test]
fn all_features_render_monitors_what_the_operator_builds() {
    let objects = render(Some(ALL_FEATURES));
    let deployment = object(&objects, "Deployment", RELEASE);
    assert_eq!(deployment["spec"]["replicas"], 3);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "registry"}]));
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");

    // The BotFleet from values: a valid BotFleet running the chart's image.
    let fleet = object(&objects, "BotFleet", "bots");
    assert_eq!(fleet["metadata"]["namespace"], NAMESPACE);
    assert_eq!(
        fleet["spec"]["image"]["repository"],
        DEFAULT_IMAGE_REPOSITORY
    );
    assert_eq!(fleet["spec"]["image"]["tag"], "0.1.0");
    let children = children_of(fleet);
    let template = &children.deployment.spec.as_ref().expect("spec").template;
    let pod_labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    let container_ports: Vec<String> = template.spec.as_ref().expect("pod spec").containers[0]
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.clone())
        .collect();

    // PodMonitor: selects the worker pods the operator builds, on their metrics port,
    // in every namespace (cluster scope).
    let pod_monitor = object(&objects, "PodMonitor", "sitg-bot-workers");
    assert_eq!(
        pod_monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_selects(
        &pod_monitor["spec"]["selector"]["matchLabels"],
        &pod_labels,
        "PodMonitor",
    );
    let endpoint = &pod_monitor["spec"]["podMetricsEndpoints"][0];
    assert!(container_ports.contains(&endpoint["port"].as_str().unwrap_or_default().to_owned()));
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(
        pod_monitor["spec"]["namespaceSelector"],
        json!({"any": true})
    );

    // The operator's PodMonitor selects the operator pods only.
    let operator_monitor = object(&objects, "PodMonitor", "sitg-bot-operator");
    assert_eq!(
        operator_monitor["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let operator_labels: BTreeMap<String, String> =
        serde_json::from_value(deployment["spec"]["template"]["metadata"]["labels"].clone())
            .expect("labels");
    let worker_selector = serde_json::to_value(
        children
            .deployment
            .spec
            .as_ref()
            .and_then(|s| s.selector.match_labels.clone()),
    )
    .expect("json");
    let overlap = worker_selector
        .as_object()
        .expect("worker selector")
        .iter()
        .all(|(k, v)| operator_labels.get(k).map(String::as_str) == v.as_str());
    assert!(
        !overlap,
        "the fleet's worker selector must not select the operator pods"
    );

    // The HPA asks for the metric the adapter rule serves.
    let hpa = children
        .horizontal_pod_autoscaler
        .expect("autoscaled fleet has an HPA");
    let hpa_metric = &hpa.spec.expect("hpa spec").metrics.expect("metrics")[0];
    assert_eq!(hpa_metric.type_, "Pods");
    let config = object(&objects, "ConfigMap", "sitg-bot-prometheus-adapter-rule");
    let adapter = yaml(config["data"]["config.yaml"].as_str().expect("config.yaml"));
    let rule = &adapter["rules"][0];
    assert_eq!(rule["name"]["as"], LAG_METRIC);
    assert_eq!(
        hpa_metric.pods.as_ref().expect("pods metric").metric.name,
        LAG_METRIC
    );
    assert_eq!(rule["resources"]["overrides"]["pod"]["resource"], "pod");
    assert_eq!(
        rule["resources"]["overrides"]["namespace"]["resource"],
        "namespace"
    );
    let example = yaml(&read("examples/prometheus-adapter-values.yaml"));
    assert_eq!(
        &example["rules"]["custom"][0], rule,
        "examples/prometheus-adapter-values.yaml carries the chart's rule"
    );

    let alerts: Vec<&str> = object(&objects, "PrometheusRule", RELEASE)["spec"]["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().expect("rules"))
        .map(|r| r["alert"].as_str().expect("alert name"))
        .collect();
    assert_eq!(
        alerts,
        [
            "SitgBotErrorsGrowing",
            "SitgBotRetryableFailuresGrowing",
            "SitgBotActionsFailing",
            "SitgBotNoWebhookDeliveries",
            "SitgBotWebhookSignatureFailures",
            "SitgBotOutboxLagHigh",
            "SitgBotBackendRefusing",
            "SitgBotClaimAnswersLost",
            "SitgBotClaimJournalUnwritable",
            "SitgBotWebhookDeliveriesUndelivered",
            "SitgBotRedeliveryFailing",
            "SitgBotOperatorReconcileErrors",
            "SitgBotOperatorNoLeader",
        ]
    );
}

#[test]
fn service_monitor_selects_the_worker_service() {
    let objects = helm_template(
        RELEASE,
        NAMESPACE,
        &[
            "--values",
            repo_path(ALL_FEATURES).to_str().expect("utf-8 path"),
            "--set",
            "monitoring.podMonitor.enabled=false",
            "--set",
            "monitoring.serviceMonitor.enabled=true",
        ],
    );
    let children = children_of(object(&objects, "BotFleet", "bots"));
    let service = children.service;
    let labels = service.metadata.labels.clone().expect("service labels");
    let port_names: Vec<String> = service
        .spec
        .expect("service spec")
        .ports
        .into_iter()
        .flatten()
        .filter_map(|p| p.name)
        .collect();
    let monitor = object(&objects, "ServiceMonitor", "sitg-bot-workers");
    assert_selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &labels,
        "ServiceMonitor",
    );
    let port = monitor["spec"]["endpoints"][0]["port"]
        .as_str()
        .expect("port");
    assert!(
        port_names.iter().any(|p| p == port),
        "{port} not in {port_names:?}"
    );
    assert!(
        of_kind(&objects, "PodMonitor")
            .iter()
            .all(|m| m["metadata"]["name"] != "sitg-bot-workers")
    );
}

#[test]
fn bad_values_fail_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--set", "operator.replicas=-1"],
            "at '/operator/replicas': minimum",
        ),
        (
            &["--set", "rbac.scope=cluster-wide"],
            "value must be one of 'cluster', 'namespace'",
        ),
        (
            &["--set", "operator.replcias=2"],
            "additional properties 'replcias' not allowed",
        ),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            "at '/image/pullPolicy'",
        ),
        (
            &["--set", "monitoring.prometheusRule.window=15min"],
            "at '/monitoring/prometheusRule/window'",
        ),
        (
            &["--set", "botFleet.create=true"],
            "at '/botFleet/spec': missing properties 'github', 'backend'",
        ),
        (
            &[
                "--set",
                "botFleet.name=a-fleet-name-that-is-far-too-long-for-the-names-of-its-pods",
            ],
            "at '/botFleet/name'",
        ),
        (
            &[
                "--set",
                "monitoring.podMonitor.enabled=true",
                "--set",
                "monitoring.serviceMonitor.enabled=true",
            ],
            "enable only one",
        ),
        (
            &[
                "--values",
                NAMESPACED,
                "--set",
                "botFleet.namespace=elsewhere",
            ],
            "botFleet.namespace \"elsewhere\" is not watched",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                if a.ends_with(".yaml") {
                    repo_path(a).display().to_string()
                } else {
                    (*a).to_owned()
                }
            })
            .collect();
        let out = run(Command::new(helm())
            .args(["template", RELEASE])
            .arg(chart_dir())
            .args(&args));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "helm template accepted {args:?}");
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn example_botfleet_is_a_valid_botfleet() {
    let example = yaml(&read("examples/botfleet.yaml"));
    let fleet: BotFleet =
        serde_json::from_value(example.clone()).expect("examples/botfleet.yaml is a BotFleet");
    assert_eq!(example["apiVersion"], "sitg.io/v1alpha1");
    assert!(
        fleet.spec.autoscaling_enabled(),
        "the example shows the autoscaled production fleet"
    );
    // The Secret the docs and NOTES.txt create holds these keys.
    let mut refs: Vec<(String, String)> = secret_refs(&fleet.spec)
        .into_iter()
        .map(|u| (u.reference.name.clone(), u.reference.key.clone()))
        .collect();
    refs.sort();
    assert_eq!(
        refs,
        [
            ("sitg-bot".to_owned(), "hmac-secret".to_owned()),
            ("sitg-bot".to_owned(), "private-key".to_owned()),
            ("sitg-bot".to_owned(), "webhook-secret".to_owned()),
        ]
    );
    let notes = read("charts/sitg-bot/templates/NOTES.txt");
    for key in ["webhook-secret", "private-key", "hmac-secret"] {
        assert!(
            notes.contains(&format!("--from-literal={key}="))
                || notes.contains(&format!("--from-file={key}=")),
            "NOTES.txt creates {key}"
        );
    }
    let children = children_of(&example_with_namespace(example));
    assert!(children.horizontal_pod_autoscaler.is_some());
}

#[test]
fn example_ingress_routes_webhooks_to_the_fleet_service() {
    let ingress = yaml(&read("examples/ingress.yaml"));
    assert_eq!(ingress["kind"], "Ingress");
    let paths = &ingress["spec"]["rules"][0]["http"]["paths"];
    assert_eq!(
        paths.as_array().map(Vec::len),
        Some(1),
        "only the webhook path is public"
    );
    assert_eq!(paths[0]["path"], "/webhooks/github");
    assert_eq!(paths[0]["pathType"], "Exact");
    let example = example_with_namespace(yaml(&read("examples/botfleet.yaml")));
    let service = children_of(&example).service;
    let backend = &paths[0]["backend"]["service"];
    assert_eq!(backend["name"].as_str(), service.metadata.name.as_deref());
    let port = service
        .spec
        .expect("service spec")
        .ports
        .into_iter()
        .flatten()
        .find(|p| p.name.as_deref() == backend["port"]["name"].as_str())
        .expect("the Ingress names a port of the fleet's Service");
    assert_eq!(
        port.target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::String("http".into()))
    );
}

fn example_with_namespace(mut example: Value) -> Value {
    example["metadata"]["namespace"] = json!("bots");
    example
}

/// promtool: the PrometheusRule's `.spec` is a valid rules file, and the alerts fire
/// (and stay quiet) as charts/sitg-bot/ci/prometheus-rules.test.yaml expects.
#[test]
fn prometheus_rule_passes_promtool() {
    let objects = render(Some(ALL_FEATURES));
    let rule = object(&objects, "PrometheusRule", RELEASE);
    let dir = tempfile::tempdir().expect("tempdir");
    let rules_file = dir.path().join("sitg-bot-rules.yaml");
    std::fs::write(
        &rules_file,
        serde_saphyr::to_string(&rule["spec"]).expect("yaml"),
    )
    .expect("write rules");
    let out = run_ok(
        Command::new(promtool())
            .args(["check", "rules"])
            .arg(&rules_file),
        "promtool check rules",
    );
    assert!(out.contains("SUCCESS: 13 rules found"), "{out}");

    let test_file = dir.path().join("prometheus-rules.test.yaml");
    std::fs::copy(
        repo_path("charts/sitg-bot/ci/prometheus-rules.test.yaml"),
        &test_file,
    )
    .expect("copy test");
    let out = run_ok(
        Command::new(promtool())
            .args(["test", "rules"])
            .arg(&test_file),
        "promtool test rules",
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The adapter's metricsQuery, expanded as prometheus-adapter does for a request of
/// `pods/*/sitg_bot_outbox_lag_seconds` in namespace `bots`, yields one value per pod
/// (the maximum over duplicate scrapes) and nothing from other namespaces.
#[test]
fn prometheus_adapter_rule_serves_the_lag_per_pod() {
    let objects = render(Some(ALL_FEATURES));
    let config = object(&objects, "ConfigMap", "sitg-bot-prometheus-adapter-rule");
    let adapter = yaml(config["data"]["config.yaml"].as_str().expect("config.yaml"));
    let rule = &adapter["rules"][0];
    let query = rule["metricsQuery"]
        .as_str()
        .expect("metricsQuery")
        .replace("<<.Series>>", LAG_METRIC)
        .replace(
            "<<.LabelMatchers>>",
            r#"namespace="bots",pod=~"bots-a|bots-b""#,
        )
        .replace("<<.GroupBy>>", "pod");
    assert!(!query.contains("<<"), "unexpanded placeholder in {query}");
    let series_query = rule["seriesQuery"].as_str().expect("seriesQuery");
    let tests = json!({
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": r#"sitg_bot_outbox_lag_seconds{job="pods",namespace="bots",pod="bots-a"}"#, "values": "12x10"},
                {"series": r#"sitg_bot_outbox_lag_seconds{job="services",namespace="bots",pod="bots-a"}"#, "values": "15x10"},
                {"series": r#"sitg_bot_outbox_lag_seconds{job="pods",namespace="bots",pod="bots-b"}"#, "values": "40x10"},
                {"series": r#"sitg_bot_outbox_lag_seconds{job="pods",namespace="other",pod="bots-a"}"#, "values": "99x10"},
                {"series": r#"sitg_bot_outbox_lag_seconds{job="pods",namespace="",pod="stray"}"#, "values": "7x10"},
            ],
            "promql_expr_test": [
                {
                    "expr": query,
                    "eval_time": "5m",
                    "exp_samples": [
                        {"labels": r#"{pod="bots-a"}"#, "value": 15},
                        {"labels": r#"{pod="bots-b"}"#, "value": 40},
                    ],
                },
                {
                    "expr": format!("count({series_query})"),
                    "eval_time": "5m",
                    "exp_samples": [{"labels": "{}", "value": 4}],
                },
            ],
        }],
    });
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("adapter.test.yaml");
    std::fs::write(&file, serde_saphyr::to_string(&tests).expect("yaml")).expect("write");
    let out = run_ok(
        Command::new(promtool()).args(["test", "rules"]).arg(&file),
        "promtool test rules (adapter query)",
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

/// Every `helm install|upgrade RELEASE charts/sitg-bot ...` of docs/deployment.md,
/// rendered with the same flags: the documented values pass the schema and render.
#[test]
fn documented_helm_commands_render() {
    let mut rendered = 0;
    for words in doc_commands("docs/deployment.md") {
        let [helm_word, verb, release, chart, flags @ ..] = words.as_slice() else {
            continue;
        };
        if helm_word != "helm"
            || !matches!(verb.as_str(), "install" | "upgrade")
            || chart != "charts/sitg-bot"
        {
            continue;
        }
        // Flags of a live install that `helm template` has no use for.
        let args: Vec<&str> = flags
            .iter()
            .map(String::as_str)
            .filter(|f| !matches!(*f, "--create-namespace" | "--reuse-values" | "--wait"))
            .collect();
        let text = run_ok(
            Command::new(helm())
                .args(["template", release])
                .arg(chart_dir())
                .args(&args),
            &format!("helm template for `{}`", words.join(" ")),
        );
        let objects = yaml_docs(&text);
        assert!(object(&objects, "Deployment", "sitg-bot")["kind"] == "Deployment");
        if args.iter().any(|a| a.starts_with("botFleet.spec=")) {
            let fleet: BotFleet =
                serde_json::from_value(object(&objects, "BotFleet", "sitg-bot").clone())
                    .expect("the documented fleet is a BotFleet");
            assert_eq!(fleet.metadata.namespace.as_deref(), Some("sitg-bots"));
        }
        rendered += 1;
    }
    assert!(
        rendered >= 5,
        "found {rendered} helm commands in docs/deployment.md"
    );
}

#[test]
fn chart_readme_is_generated_from_values() {
    // helm-docs (scripts/chart-readme.sh) renders README.md.gotmpl with the `# --`
    // comments of values.yaml; a changed value or comment must come with the README.
    run_ok(
        Command::new(repo_path("scripts/chart-readme.sh")).arg("--check"),
        "scripts/chart-readme.sh --check (run scripts/chart-readme.sh to update)",
    );
    let readme = read("charts/sitg-bot/README.md");
    for key in [
        "networkPolicy.workers.enabled",
        "monitoring.grafanaDashboard.enabled",
        "operator.metricsPort",
    ] {
        assert!(readme.contains(&format!("| {key} |")), "README lists {key}");
    }
    let chart = yaml(&read("charts/sitg-bot/Chart.yaml"));
    let icon = chart["icon"].as_str().expect("Chart.yaml has an icon");
    let file = icon
        .strip_prefix("https://raw.githubusercontent.com/sitg/sitg-bot/main/")
        .expect("the icon is the repository's own file");
    assert!(read(file).starts_with("<svg"), "{file} is an SVG");
}

#[test]
fn helm_test_pod_probes_the_operator_service() {
    let text = run_ok(
        Command::new(helm())
            .args(["template", RELEASE])
            .arg(chart_dir())
            .args([
                "--namespace",
                NAMESPACE,
                "--show-only",
                "templates/tests/test-healthz.yaml",
            ]),
        "helm template --show-only the test",
    );
    let pod = yaml(&text);
    assert_eq!(pod["metadata"]["annotations"]["helm.sh/hook"], "test");
    assert_eq!(pod["spec"]["restartPolicy"], "Never");
    let objects = render(None);
    let service = object(&objects, "Service", RELEASE);
    let deployment = object(&objects, "Deployment", RELEASE);
    assert_eq!(
        service["spec"]["selector"], deployment["spec"]["selector"]["matchLabels"],
        "the Service routes to the operator pods"
    );
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "metrics");
    let port = service["spec"]["ports"][0]["port"].as_i64().expect("port");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(
        container["image"], deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "the test runs the operator's image"
    );
    assert_eq!(
        strings(&container["args"]),
        [
            "probe",
            &format!("http://{RELEASE}.{NAMESPACE}.svc:{port}/healthz"),
            "--timeout-seconds=10",
        ]
    );
    // The binary accepts the args (chart_install runs them against a real operator).
    let out = run(Command::new(env!("CARGO_BIN_EXE_sitg-bot")).args(["probe", "--help"]));
    assert!(out.status.success());
}

#[test]
fn network_policies_select_what_the_operator_builds() {
    let objects = render(Some(ALL_FEATURES));
    let fleet = object(&objects, "BotFleet", "bots");
    let children = children_of(fleet);
    let template = &children.deployment.spec.as_ref().expect("spec").template;
    let pod_labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .expect("pod labels");
    let ports: BTreeMap<String, i32> = template.spec.as_ref().expect("pod spec").containers[0]
        .ports
        .iter()
        .flatten()
        .filter_map(|p| Some((p.name.clone()?, p.container_port)))
        .collect();

    // Workers: in, the two named ports the operator declares; out, backend, GitHub, DNS.
    let workers = object(&objects, "NetworkPolicy", "sitg-bot-workers");
    assert_eq!(
        workers["metadata"]["namespace"], NAMESPACE,
        "the fleet's namespace"
    );
    assert_selects(
        &workers["spec"]["podSelector"]["matchLabels"],
        &pod_labels,
        "worker NetworkPolicy",
    );
    assert_eq!(workers["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    let ingress_ports: Vec<&str> = workers["spec"]["ingress"]
        .as_array()
        .expect("ingress")
        .iter()
        .flat_map(|r| r["ports"].as_array().expect("ports"))
        .map(|p| p["port"].as_str().expect("a named port"))
        .collect();
    assert_eq!(ingress_ports, ["http", "metrics"]);
    for name in &ingress_ports {
        assert!(
            ports.contains_key(*name),
            "worker container has port {name}: {ports:?}"
        );
    }
    let egress = workers["spec"]["egress"].as_array().expect("egress");
    assert_eq!(egress.len(), 3, "backend, GitHub, DNS: {egress:?}");
    let dns = &egress[2];
    assert_eq!(
        dns["ports"],
        json!([{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}])
    );
    assert_eq!(
        dns["to"][0]["podSelector"]["matchLabels"]["k8s-app"],
        "kube-dns"
    );
    for rule in &egress[..2] {
        assert_eq!(rule["ports"], json!([{"port": 443, "protocol": "TCP"}]));
        assert_eq!(rule["to"][0]["ipBlock"]["cidr"], "0.0.0.0/0");
    }

    // The operator: in, its metrics port (the helm test Pod included); out, API server
    // and DNS.
    let operator = object(&objects, "NetworkPolicy", "sitg-bot-operator");
    let deployment = object(&objects, "Deployment", RELEASE);
    assert_eq!(
        operator["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let ingress = &operator["spec"]["ingress"][0];
    assert_eq!(
        ingress["ports"],
        json!([{"port": "metrics", "protocol": "TCP"}])
    );
    let from = ingress["from"]
        .as_array()
        .expect("metricsFrom in all-features values");
    let text = run_ok(
        Command::new(helm())
            .args(["template", RELEASE])
            .arg(chart_dir())
            .args([
                "--namespace",
                NAMESPACE,
                "--show-only",
                "templates/tests/test-healthz.yaml",
            ]),
        "helm template --show-only the test",
    );
    let test_labels: BTreeMap<String, String> =
        serde_json::from_value(yaml(&text)["metadata"]["labels"].clone()).expect("labels");
    assert!(
        from.iter().any(|peer| peer.get("podSelector").is_some()
            && peer["podSelector"]["matchLabels"]
                .as_object()
                .is_some_and(|m| m
                    .iter()
                    .all(|(k, v)| test_labels.get(k).map(String::as_str) == v.as_str()))),
        "the helm test Pod may reach the operator: {from:?}"
    );
    assert_eq!(
        operator["spec"]["egress"][0]["ports"],
        json!([{"port": 443, "protocol": "TCP"}, {"port": 6443, "protocol": "TCP"}])
    );

    // More namespaces: one policy each.
    let objects = helm_template(
        RELEASE,
        NAMESPACE,
        &[
            "--set",
            "networkPolicy.workers.enabled=true",
            "--set",
            "networkPolicy.workers.namespaces={team-a,team-b}",
        ],
    );
    let namespaces: Vec<&str> = of_kind(&objects, "NetworkPolicy")
        .iter()
        .map(|p| p["metadata"]["namespace"].as_str().expect("namespace"))
        .collect();
    assert_eq!(namespaces, ["team-a", "team-b"]);
}

#[test]
fn grafana_dashboard_config_map_carries_the_dashboard() {
    let objects = render(Some(ALL_FEATURES));
    let config = object(&objects, "ConfigMap", "sitg-bot-dashboard");
    assert_eq!(config["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: Value = serde_json::from_str(
        config["data"]["sitg-bot.json"]
            .as_str()
            .expect("sitg-bot.json"),
    )
    .expect("the ConfigMap holds JSON");
    let file: Value =
        serde_json::from_str(&read("charts/sitg-bot/dashboards/sitg-bot.json")).expect("JSON");
    assert_eq!(
        shipped, file,
        "the ConfigMap holds dashboards/sitg-bot.json"
    );
    assert_eq!(file["uid"], "sitg-bot-fleet");
    // Off by default.
    assert!(of_kind(&render(None), "ConfigMap").is_empty());
}
