//! The BotFleet's production pod settings (`imagePullSecrets`, spreading, affinity,
//! `priorityClassName`, extra labels, log level) on a real API server: the CEL rules
//! refuse what the Pod API would refuse later, the operator's server-side apply puts
//! each setting on the Deployment, takes it off again when the spec drops it, and the
//! ReplicaSet controller's pods pass the API server's admission with them (the
//! `Priority` plugin resolves the class into `spec.priority`).
//!
//! Needs `SITG_TEST_KUBECONFIG` (see `support/mod.rs`).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodSpec};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::json;
use sitg_bot::operator::BotFleet;

use crate::support::*;

fn pod_spec(d: &Deployment) -> &PodSpec {
    d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod template spec")
}

fn rust_log(d: &Deployment) -> Option<String> {
    pod_spec(d).containers[0]
        .env
        .iter()
        .flatten()
        .find(|e| e.name == "RUST_LOG")
        .and_then(|e| e.value.clone())
}

async fn get_deployment(client: &Client, ns: &str) -> Option<Deployment> {
    Api::<Deployment>::namespaced(client.clone(), ns)
        .get_opt("bots")
        .await
        .expect("read Deployment")
}

/// Creates a PriorityClass named after the namespace (PriorityClasses are cluster-wide).
async fn priority_class(client: &Client, ns: &str) -> String {
    let name = format!("{ns}-high");
    let class = PriorityClass {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        value: 100_000,
        description: Some("sitg-bot operator tests".to_owned()),
        ..Default::default()
    };
    Api::<PriorityClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("PriorityClass created");
    name
}

#[tokio::test]
async fn production_pod_settings_reach_the_deployment_and_its_pods() {
    let (client, ns) = setup("op-podspec").await;
    put_bot_secret(&client, &ns, "whsec").await;
    let class = priority_class(&client, &ns).await;
    let _controller = start_controller(&client, &ns);

    let mut fleet = sample_fleet("bots");
    let extra: serde_json::Value = json!({
        "imagePullSecrets": [{"name": "registry-credentials"}],
        "priorityClassName": class,
        "podLabels": {"cost-centre": "platform"},
        "logLevel": "debug",
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [
                {"key": "node.example/pool", "operator": "In", "values": ["bots"]}
            ]}}
        ]}},
    });
    let mut value = serde_json::to_value(&fleet).expect("fleet serialises");
    for (k, v) in extra.as_object().expect("object") {
        value["spec"][k] = v.clone();
    }
    fleet = serde_json::from_value(value).expect("fleet with pod settings");
    create_fleet(&client, &ns, &fleet).await;

    let d = wait_for("the Deployment with the pod settings", || async {
        let d = get_deployment(&client, &ns).await?;
        pod_spec(&d).priority_class_name.is_some().then_some(d)
    })
    .await;
    let p = pod_spec(&d);
    assert_eq!(p.priority_class_name.as_deref(), Some(class.as_str()));
    assert_eq!(
        p.image_pull_secrets
            .iter()
            .flatten()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["registry-credentials"]
    );
    let preferred = p
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .expect("node affinity stored");
    assert_eq!(preferred[0].weight, 10);
    let spread = p
        .topology_spread_constraints
        .clone()
        .expect("default spread");
    assert_eq!(
        spread
            .iter()
            .map(|c| (c.topology_key.as_str(), c.when_unsatisfiable.as_str()))
            .collect::<Vec<_>>(),
        [
            ("kubernetes.io/hostname", "ScheduleAnyway"),
            ("topology.kubernetes.io/zone", "ScheduleAnyway")
        ]
    );
    assert_eq!(rust_log(&d).as_deref(), Some("debug"));
    let labels = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .expect("template labels");
    assert_eq!(labels["cost-centre"], "platform");

    // The ReplicaSet controller's pods passed admission with the class resolved.
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = wait_for("a worker pod", || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/instance=bots"))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let spec = pod.spec.as_ref().expect("pod spec");
    assert_eq!(spec.priority, Some(100_000));
    assert_eq!(
        pod.metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("cost-centre"))
            .map(String::as_str),
        Some("platform")
    );

    // Dropping the settings takes them off the Deployment (the operator's apply no
    // longer owns them); an empty spread list turns spreading off.
    let fleets: Api<BotFleet> = Api::namespaced(client.clone(), &ns);
    fleets
        .patch(
            "bots",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "logLevel": null, "priorityClassName": null, "imagePullSecrets": null,
                "affinity": null, "podLabels": null, "topologySpreadConstraints": []
            }})),
        )
        .await
        .expect("fleet patched");
    let d = wait_for("the settings to be taken off", || async {
        let d = get_deployment(&client, &ns).await?;
        let p = pod_spec(&d);
        (p.priority_class_name.is_none()
            && p.image_pull_secrets.is_none()
            && p.affinity.is_none()
            && p.topology_spread_constraints
                .as_deref()
                .unwrap_or_default()
                .is_empty())
        .then_some(d)
    })
    .await;
    assert_eq!(rust_log(&d), None);

    Api::<PriorityClass>::all(client.clone())
        .delete(&class, &DeleteParams::default())
        .await
        .expect("PriorityClass deleted");
}

#[tokio::test]
async fn pod_settings_the_pod_api_would_refuse_are_refused_at_apply() {
    let (client, ns) = setup("op-podspec-invalid").await;
    let api: Api<BotFleet> = Api::namespaced(client.clone(), &ns);
    let cases = [
        (
            "a pod label the operator selects by",
            json!({"podLabels": {"app.kubernetes.io/instance": "other"}}),
            "podLabels cannot set app.kubernetes.io/name, instance, component or managed-by",
        ),
        (
            "minDomains with ScheduleAnyway",
            json!({"topologySpreadConstraints": [{"maxSkew": 1,
                "topologyKey": "topology.kubernetes.io/zone",
                "whenUnsatisfiable": "ScheduleAnyway", "minDomains": 3}]}),
            "minDomains (>= 1) only goes with whenUnsatisfiable: DoNotSchedule",
        ),
        (
            "maxSkew 0",
            json!({"topologySpreadConstraints": [{"maxSkew": 0,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "DoNotSchedule"}]}),
            "each topology spread constraint needs maxSkew >= 1",
        ),
        (
            "an unnamed pull secret",
            json!({"imagePullSecrets": [{"name": ""}]}),
            "every imagePullSecrets entry needs a name",
        ),
        (
            "an unknown log level",
            json!({"logLevel": "verbose"}),
            "spec.logLevel: Unsupported value: \"verbose\"",
        ),
    ];
    for (what, extra, expected) in cases {
        let mut value = serde_json::to_value(sample_fleet("bad")).expect("fleet serialises");
        for (k, v) in extra.as_object().expect("object") {
            value["spec"][k] = v.clone();
        }
        // Sent as JSON so values the Rust types cannot hold (an unknown level) reach
        // the API server as a user's manifest would.
        let raw: Api<kube::api::DynamicObject> = Api::namespaced_with(
            client.clone(),
            &ns,
            &kube::api::ApiResource::erase::<BotFleet>(&()),
        );
        let object: kube::api::DynamicObject =
            serde_json::from_value(value).expect("dynamic object");
        match raw.create(&PostParams::default(), &object).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 422, "{what}: {status:?}");
                assert!(
                    status.message.contains(expected),
                    "{what}: {}",
                    status.message
                );
            }
            other => panic!("{what}: expected a 422 refusal, got {other:?}"),
        }
    }
    assert!(api.get_opt("bad").await.expect("read").is_none());
}
