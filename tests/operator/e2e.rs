//! The operator against a real kube-apiserver, etcd and kube-controller-manager
//! (garbage collector, Deployment and ReplicaSet controllers): what the API server
//! stores after the controller ran.
//!
//! Needs `SITG_TEST_KUBECONFIG` (see `support/mod.rs`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::{Container, EnvVar, Secret, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde_json::json;
use sitg_bot::operator::apply::owns_replicas;
use sitg_bot::operator::build::CHECKSUM_ANNOTATION;
use sitg_bot::operator::crd::{AutoscalingMode, AutoscalingSpec, DefaultImage};
use sitg_bot::operator::{BotFleet, reconcile_fleet};

use crate::support::*;

fn container(d: &Deployment) -> &Container {
    &d.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("pod spec")
        .containers[0]
}

fn env(d: &Deployment) -> BTreeMap<String, EnvVar> {
    container(d)
        .env
        .clone()
        .unwrap_or_default()
        .into_iter()
        .map(|e| (e.name.clone(), e))
        .collect()
}

fn checksum(d: &Deployment) -> Option<String> {
    d.spec
        .as_ref()?
        .template
        .metadata
        .as_ref()?
        .annotations
        .as_ref()?
        .get(CHECKSUM_ANNOTATION)
        .cloned()
}

fn condition(fleet: &BotFleet, type_: &str) -> Option<(String, String)> {
    fleet
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn get<K>(client: &Client, ns: &str, name: &str) -> Option<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .expect("read")
}

fn recorder(client: &Client) -> Recorder {
    Recorder::new(
        client.clone(),
        Reporter {
            controller: "sitg.io/botfleet-operator".into(),
            instance: Some("test".into()),
        },
    )
}

#[tokio::test]
async fn a_fleet_gets_every_child_with_its_fields() {
    let (client, ns) = setup("op-create").await;
    put_bot_secret(&client, &ns, "whsec-one").await;
    let _controller = start_controller(&client, &ns);
    let fleet = create_fleet(&client, &ns, &sample_fleet("bots")).await;
    let uid = fleet.uid().expect("uid");

    let deployment: Deployment = wait_for("the Deployment", || get(&client, &ns, "bots")).await;
    let owner = &deployment.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("BotFleet", uid.as_str())
    );
    assert_eq!(owner.controller, Some(true));
    let spec = deployment.spec.as_ref().expect("spec");
    assert_eq!(spec.replicas, Some(2));
    let rolling = spec
        .strategy
        .as_ref()
        .and_then(|s| s.rolling_update.as_ref())
        .expect("rolling update");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(0)));
    let c = container(&deployment);
    assert_eq!(c.image.as_deref(), Some("ghcr.io/sitg/sitg-bot:0.0.0-test"));
    assert_eq!(c.args.as_deref(), Some(&["worker".to_owned()][..]));
    let sc = c
        .security_context
        .as_ref()
        .expect("container security context");
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(
        c.liveness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.as_deref()),
        Some("/healthz")
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .and_then(|h| h.path.as_deref()),
        Some("/readyz")
    );
    let env = env(&deployment);
    assert_eq!(env["PORT"].value.as_deref(), Some("8080"));
    assert_eq!(env["METRICS_PORT"].value.as_deref(), Some("9090"));
    assert_eq!(env["GITHUB_APP_ID"].value.as_deref(), Some("4242"));
    assert_eq!(
        env["BACKEND_BASE_URL"].value.as_deref(),
        Some("https://sitg.example")
    );
    assert_eq!(
        env["BACKEND_BOT_KEY_ID"].value.as_deref(),
        Some("bck_test_1")
    );
    assert_eq!(
        env["OUTBOX_POLL_INTERVAL_MS"].value.as_deref(),
        Some("5000")
    );
    assert_eq!(env["OUTBOX_CLAIM_LIMIT"].value.as_deref(), Some("25"));
    assert_eq!(env["OUTBOX_POLLING_ENABLED"].value.as_deref(), Some("true"));
    let webhook_ref = env["GITHUB_WEBHOOK_SECRET"]
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secretKeyRef");
    assert_eq!(
        (webhook_ref.name.as_str(), webhook_ref.key.as_str()),
        ("bots-worker-env", "GITHUB_WEBHOOK_SECRET")
    );
    let worker_id = env["WORKER_ID"]
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("fieldRef");
    assert_eq!(worker_id.field_path, "metadata.name");
    assert!(checksum(&deployment).is_some_and(|c| c.len() == 64));

    let secret: Secret = wait_for("the worker env Secret", || {
        get(&client, &ns, "bots-worker-env")
    })
    .await;
    assert_eq!(secret.owner_references()[0].uid, uid);
    let data = secret.data.expect("data");
    assert_eq!(data["GITHUB_WEBHOOK_SECRET"].0, b"whsec-one");
    assert_eq!(data["GITHUB_APP_PRIVATE_KEY"].0, PEM.as_bytes());
    assert_eq!(data["BACKEND_INTERNAL_HMAC_SECRET"].0, b"hmac-secret");
    assert_eq!(data.len(), 3);

    let service: Service = wait_for("the Service", || get(&client, &ns, "bots")).await;
    assert_eq!(service.owner_references()[0].uid, uid);
    let service_spec = service.spec.expect("service spec");
    let ports: Vec<_> = service_spec
        .ports
        .expect("ports")
        .into_iter()
        .map(|p| (p.name.unwrap_or_default(), p.port))
        .collect();
    assert_eq!(
        ports,
        [("http".to_owned(), 80), ("metrics".to_owned(), 9090)]
    );
    assert_eq!(
        service_spec
            .selector
            .as_ref()
            .and_then(|s| s.get("app.kubernetes.io/instance")),
        Some(&"bots".to_owned())
    );

    let pdb: PodDisruptionBudget = wait_for("the PDB", || get(&client, &ns, "bots")).await;
    assert_eq!(pdb.owner_references()[0].uid, uid);
    assert_eq!(
        pdb.spec.and_then(|s| s.max_unavailable),
        Some(IntOrString::Int(1))
    );
    assert!(
        get::<HorizontalPodAutoscaler>(&client, &ns, "bots")
            .await
            .is_none()
    );

    // The real Deployment controller creates the pods; the fleet's status follows.
    let fleets: Api<BotFleet> = Api::namespaced(client.clone(), &ns);
    let stored = wait_for("status with 2 replicas", || async {
        let f = fleets.get("bots").await.ok()?;
        let s = f.status.as_ref()?;
        (s.replicas == 2 && s.observed_generation == f.metadata.generation).then_some(f)
    })
    .await;
    let status = stored.status.as_ref().expect("status");
    assert_eq!(status.desired_replicas, 2);
    assert_eq!(
        status.selector,
        "app.kubernetes.io/instance=bots,app.kubernetes.io/name=sitg-bot"
    );
    // No kubelet runs here, so pods never become ready.
    assert_eq!(
        condition(&stored, "Ready"),
        Some(("False".into(), "ReplicasNotReady".into()))
    );
    assert_eq!(
        condition(&stored, "Degraded"),
        Some(("False".into(), "ReconcileSucceeded".into()))
    );
    assert_eq!(
        condition(&stored, "Progressing").map(|c| c.0),
        Some("True".into())
    );
}

/// A change that makes a sample fleet invalid.
type Mutation = Box<dyn Fn(&mut BotFleet)>;

#[tokio::test]
async fn invalid_fleets_are_refused_by_the_api_server() {
    let (client, ns) = setup("op-invalid").await;
    let api: Api<BotFleet> = Api::namespaced(client.clone(), &ns);

    let cases: Vec<(&str, Mutation, &str)> = vec![
        (
            "poll interval below 500 ms",
            Box::new(|f| f.spec.outbox.poll_interval_ms = 100),
            "spec.outbox.pollIntervalMs in body should be greater than or equal to 500",
        ),
        (
            "claim limit above 100",
            Box::new(|f| f.spec.outbox.claim_limit = 101),
            "spec.outbox.claimLimit in body should be less than or equal to 100",
        ),
        (
            "minReplicas above maxReplicas",
            Box::new(|f| {
                f.spec.autoscaling = Some(AutoscalingSpec {
                    enabled: true,
                    mode: AutoscalingMode::Hpa,
                    min_replicas: 5,
                    max_replicas: 2,
                    target_outbox_lag_seconds: 30,
                    behavior: None,
                })
            }),
            "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas",
        ),
        (
            "relative backend URL",
            Box::new(|f| f.spec.backend.base_url = "/internal".into()),
            "must be an absolute http or https URL",
        ),
        (
            "ftp GitHub API URL",
            Box::new(|f| f.spec.github.api_base_url = "ftp://api.github.com".into()),
            "must be an absolute http or https URL",
        ),
        (
            "autoscaling without outbox polling",
            Box::new(|f| {
                f.spec.outbox.polling_enabled = false;
                f.spec.autoscaling = Some(AutoscalingSpec {
                    enabled: true,
                    mode: AutoscalingMode::Hpa,
                    min_replicas: 2,
                    max_replicas: 4,
                    target_outbox_lag_seconds: 30,
                    behavior: None,
                });
            }),
            "autoscaling scales on outbox lag, so it needs outbox.pollingEnabled: true",
        ),
    ];
    for (what, mutate, expected) in cases {
        let mut fleet = sample_fleet("bad");
        mutate(&mut fleet);
        match api.create(&PostParams::default(), &fleet).await {
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
    let long_name = sample_fleet(&"b".repeat(53));
    match api.create(&PostParams::default(), &long_name).await {
        Err(kube::Error::Api(status)) => assert!(
            status
                .message
                .contains("metadata.name must be at most 52 characters"),
            "{}",
            status.message
        ),
        other => panic!("expected a refusal of a 53-character name, got {other:?}"),
    }

    // What a user sees from `kubectl apply`.
    let manifest = format!(
        r#"apiVersion: sitg.io/v1alpha1
kind: BotFleet
metadata:
  name: bad
  namespace: {ns}
spec:
  github: {{appId: 1, webhookSecretRef: {{name: bot, key: w}}, privateKeyRef: {{name: bot, key: p}}}}
  backend: {{baseUrl: "not a url", botKeyId: k, hmacSecretRef: {{name: bot, key: h}}}}
  outbox: {{pollIntervalMs: 100}}
  autoscaling: {{minReplicas: 5, maxReplicas: 2}}
"#
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.yaml");
    std::fs::write(&file, manifest).expect("manifest written");
    let output = std::process::Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(["apply", "-f"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", kubectl_path().display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "kubectl accepted an invalid fleet"
    );
    for expected in [
        "The BotFleet \"bad\" is invalid",
        "spec.outbox.pollIntervalMs in body should be greater than or equal to 500",
        "spec.backend.baseUrl: Invalid value",
        "must be an absolute http or https URL",
        "autoscaling.minReplicas must be less than or equal to autoscaling.maxReplicas",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(api.get_opt("bad").await.expect("read").is_none());
}

/// Resource versions of everything the operator writes for fleet `name`.
async fn resource_versions(client: &Client, ns: &str, name: &str) -> Vec<(String, Option<String>)> {
    let env_secret = format!("{name}-worker-env");
    vec![
        (
            "BotFleet".into(),
            get::<BotFleet>(client, ns, name)
                .await
                .and_then(|o| o.resource_version()),
        ),
        (
            "Secret".into(),
            get::<Secret>(client, ns, &env_secret)
                .await
                .and_then(|o| o.resource_version()),
        ),
        (
            "Service".into(),
            get::<Service>(client, ns, name)
                .await
                .and_then(|o| o.resource_version()),
        ),
        (
            "Deployment".into(),
            get::<Deployment>(client, ns, name)
                .await
                .and_then(|o| o.resource_version()),
        ),
        (
            "PodDisruptionBudget".into(),
            get::<PodDisruptionBudget>(client, ns, name)
                .await
                .and_then(|o| o.resource_version()),
        ),
        (
            "HorizontalPodAutoscaler".into(),
            get::<HorizontalPodAutoscaler>(client, ns, name)
                .await
                .and_then(|o| o.resource_version()),
        ),
    ]
}

/// Waits until the Deployment controller has caught up with the Deployment and its
/// resourceVersion holds still for a second.
async fn wait_deployment_settled(client: &Client, ns: &str, name: &str) {
    wait_for("the Deployment to settle", || async {
        let d: Deployment = get(client, ns, name).await?;
        let want = d.spec.as_ref()?.replicas?;
        let s = d.status.as_ref()?;
        let caught_up = s.observed_generation == d.metadata.generation
            && s.replicas == Some(want)
            && s.updated_replicas == Some(want);
        if !caught_up {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let again: Deployment = get(client, ns, name).await?;
        (again.resource_version() == d.resource_version()).then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_pass_over_an_unchanged_fleet_writes_nothing() {
    // No controller runs here: the test drives the passes itself.
    let (client, ns) = setup("op-idem").await;
    put_bot_secret(&client, &ns, "whsec").await;
    let recorder = recorder(&client);
    let api: Api<BotFleet> = Api::namespaced(client.clone(), &ns);

    let mut autoscaled = sample_fleet("scaled");
    autoscaled.spec.autoscaling = Some(AutoscalingSpec {
        enabled: true,
        mode: AutoscalingMode::Hpa,
        min_replicas: 2,
        max_replicas: 6,
        target_outbox_lag_seconds: 30,
        behavior: None,
    });
    for fleet in [sample_fleet("fixed"), autoscaled] {
        let name = fleet.name_any();
        create_fleet(&client, &ns, &fleet).await;

        let first = reconcile_fleet(
            &client,
            &recorder,
            &api.get(&name).await.expect("fleet"),
            &DefaultImage::default(),
        )
        .await
        .expect("first pass");
        assert!(first.changed.contains(&"Deployment"), "{name}: {first:?}");
        assert!(first.status_written, "{name}: {first:?}");
        wait_deployment_settled(&client, &ns, &name).await;
        // Picks up the settled Deployment status.
        reconcile_fleet(
            &client,
            &recorder,
            &api.get(&name).await.expect("fleet"),
            &DefaultImage::default(),
        )
        .await
        .expect("second pass");

        // Let the clock pass a whole second, the precision of stored timestamps, so a
        // pass that stamps "now" into anything would show up as a write.
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let before = resource_versions(&client, &ns, &name).await;
        let report = reconcile_fleet(
            &client,
            &recorder,
            &api.get(&name).await.expect("fleet"),
            &DefaultImage::default(),
        )
        .await
        .expect("third pass");
        let after = resource_versions(&client, &ns, &name).await;
        assert!(report.wrote_nothing(), "{name}: {report:?}");
        assert_eq!(
            before, after,
            "{name}: a pass over an unchanged fleet changed objects"
        );
    }
    let hpa: HorizontalPodAutoscaler = get(&client, &ns, "scaled")
        .await
        .expect("HPA of the autoscaled fleet");
    assert_eq!(hpa.spec.map(|s| s.max_replicas), Some(6));
    assert!(
        get::<HorizontalPodAutoscaler>(&client, &ns, "fixed")
            .await
            .is_none()
    );
}

#[tokio::test]
async fn hand_edits_of_children_are_put_back() {
    let (client, ns) = setup("op-drift").await;
    put_bot_secret(&client, &ns, "whsec").await;
    let _controller = start_controller(&client, &ns);
    create_fleet(&client, &ns, &sample_fleet("bots")).await;
    let built: Deployment = wait_for("the Deployment", || get(&client, &ns, "bots")).await;
    let _: Service = wait_for("the Service", || get(&client, &ns, "bots")).await;
    let env_names = |d: &Deployment| -> Vec<String> {
        let mut names: Vec<String> = container(d)
            .env
            .iter()
            .flatten()
            .map(|e| e.name.clone())
            .collect();
        names.sort();
        names
    };

    // A hand edit, as `kubectl edit` would make it (an Update by another manager).
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let edit = json!({"spec": {"template": {"spec": {"containers": [
        {"name": "worker", "image": "attacker/evil:1", "env": [{"name": "OUTBOX_CLAIM_LIMIT", "value": "99"}]}
    ]}}}});
    deployments
        .patch("bots", &PatchParams::default(), &Patch::Strategic(&edit))
        .await
        .expect("hand edit");
    let repaired = wait_for("the image and env to be put back", || async {
        let d: Deployment = get(&client, &ns, "bots").await?;
        let c = container(&d);
        let claim = env(&d).get("OUTBOX_CLAIM_LIMIT")?.value.clone();
        (c.image.as_deref() == Some("ghcr.io/sitg/sitg-bot:0.0.0-test")
            && claim.as_deref() == Some("25"))
        .then_some(d)
    })
    .await;
    assert_eq!(
        env_names(&repaired),
        env_names(&built),
        "no duplicate or stray env entries"
    );

    // A deleted child comes back.
    Api::<Service>::namespaced(client.clone(), &ns)
        .delete("bots", &DeleteParams::default())
        .await
        .expect("service deleted");
    let old_uid = repaired.uid();
    let service: Service = wait_for("the Service to be recreated", || async {
        let s: Service = get(&client, &ns, "bots").await?;
        s.metadata.deletion_timestamp.is_none().then_some(s)
    })
    .await;
    assert_eq!(
        service
            .labels()
            .get("app.kubernetes.io/managed-by")
            .map(String::as_str),
        Some("sitg-bot-operator")
    );
    // The Deployment was repaired in place, not recreated.
    assert_eq!(
        deployments.get("bots").await.expect("deployment").uid(),
        old_uid
    );

    // A hand-edited owned Secret is put back too.
    put_secret(
        &client,
        &ns,
        "bots-worker-env",
        &[("GITHUB_WEBHOOK_SECRET", "tampered")],
    )
    .await;
    wait_for("the worker env Secret to be put back", || async {
        let s: Secret = get(&client, &ns, "bots-worker-env").await?;
        (s.data?.get("GITHUB_WEBHOOK_SECRET")?.0 == b"whsec").then_some(())
    })
    .await;
}

#[tokio::test]
async fn rotating_a_referenced_secret_rolls_the_fleet() {
    let (client, ns) = setup("op-rotate").await;
    put_bot_secret(&client, &ns, "whsec-old").await;
    let _controller = start_controller(&client, &ns);
    create_fleet(&client, &ns, &sample_fleet("bots")).await;
    let before: Deployment = wait_for("the Deployment", || get(&client, &ns, "bots")).await;
    let old_checksum = checksum(&before).expect("checksum");
    wait_deployment_settled(&client, &ns, "bots").await;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), &ns);
    let list = ListParams::default().labels("app.kubernetes.io/instance=bots");
    assert_eq!(
        rs_api.list(&list).await.expect("replicasets").items.len(),
        1
    );

    put_bot_secret(&client, &ns, "whsec-new").await;
    let after: Deployment = wait_for("a new checksum on the pod template", || async {
        let d: Deployment = get(&client, &ns, "bots").await?;
        (checksum(&d)? != old_checksum).then_some(d)
    })
    .await;
    assert!(after.metadata.generation > before.metadata.generation);
    let secret: Secret = get(&client, &ns, "bots-worker-env")
        .await
        .expect("env secret");
    assert_eq!(
        secret.data.expect("data")["GITHUB_WEBHOOK_SECRET"].0,
        b"whsec-new"
    );
    // The real Deployment controller starts a new ReplicaSet for the new template.
    wait_for("a second ReplicaSet", || async {
        (rs_api.list(&list).await.ok()?.items.len() == 2).then_some(())
    })
    .await;

    // A change to a key the fleet does not reference does not roll it.
    let current = checksum(&after).expect("checksum");
    put_secret(
        &client,
        &ns,
        "bot",
        &[
            ("webhook", "whsec-new"),
            ("private-key", PEM),
            ("hmac", "hmac-secret"),
            ("unrelated", "x"),
        ],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let d: Deployment = get(&client, &ns, "bots").await.expect("deployment");
    assert_eq!(checksum(&d), Some(current));
}

#[tokio::test]
async fn a_missing_secret_degrades_the_fleet_until_it_appears() {
    let (client, ns) = setup("op-missing").await;
    let controller = start_controller(&client, &ns);
    let fleet = create_fleet(&client, &ns, &sample_fleet("bots")).await;
    let api: Api<BotFleet> = Api::namespaced(client.clone(), &ns);

    let degraded = wait_for("Degraded=True", || async {
        let f = api.get("bots").await.ok()?;
        (condition(&f, "Degraded")? == ("True".into(), "SecretNotFound".into())).then_some(f)
    })
    .await;
    let message = degraded
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Degraded"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("\"bot\""), "{message}");
    assert_eq!(
        degraded.status.as_ref().and_then(|s| s.observed_generation),
        fleet.metadata.generation
    );
    // `kubectl get`'s STATUS column (the API server's table from the CRD's printer
    // columns) names the cause, not the consequence (Ready: DeploymentMissing).
    let table = kubectl_get_wide(&ns, "bots");
    assert_eq!(table["STATUS"], "SecretNotFound", "{table:?}");
    assert!(table["MESSAGE"].contains("\"bot\""), "{table:?}");
    // Conditions are a list map keyed by type: the API server refuses two of a type.
    let mut twice = degraded.status.clone().expect("status");
    twice.conditions.push(twice.conditions[0].clone());
    let refused = api
        .patch_status(
            "bots",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": twice.conditions}})),
        )
        .await
        .expect_err("a duplicate condition type is refused");
    assert!(refused.to_string().contains("Duplicate value"), "{refused}");
    assert!(get::<Deployment>(&client, &ns, "bots").await.is_none());

    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let warning = wait_for("a SecretNotFound event", || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("SecretNotFound")
                    && e.type_.as_deref() == Some("Warning")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("bots")
            })
    })
    .await;
    assert!(
        warning
            .note
            .unwrap_or_default()
            .contains("spec.github.webhookSecretRef")
    );
    assert!(
        controller
            .metrics
            .reconcile_errors
            .with_label_values(&["secret_not_found"])
            .get()
            >= 1
    );

    // A Secret without the referenced key: still degraded, with another reason.
    put_secret(
        &client,
        &ns,
        "bot",
        &[("webhook", "w"), ("private-key", PEM)],
    )
    .await;
    wait_for("Degraded=True/SecretKeyNotFound", || async {
        let f = api.get("bots").await.ok()?;
        (condition(&f, "Degraded")? == ("True".into(), "SecretKeyNotFound".into())).then_some(())
    })
    .await;

    put_bot_secret(&client, &ns, "whsec").await;
    let recovered = wait_for("Degraded=False", || async {
        let f = api.get("bots").await.ok()?;
        (condition(&f, "Degraded")?.0 == "False").then_some(f)
    })
    .await;
    assert_eq!(
        condition(&recovered, "Degraded").map(|c| c.1),
        Some("ReconcileSucceeded".into())
    );
    let _: Deployment = wait_for("the Deployment after recovery", || {
        get(&client, &ns, "bots")
    })
    .await;
    // No kubelet runs the pods: the column moves on to the next thing to look at.
    let table = wait_for("STATUS ReplicasNotReady", || async {
        let table = kubectl_get_wide(&ns, "bots");
        (table["STATUS"] == "ReplicasNotReady").then_some(table)
    })
    .await;
    assert_eq!(table["MESSAGE"], "0/2 worker pods ready", "{table:?}");
}

/// `kubectl get botfleet NAME -o wide` as column name → value.
fn kubectl_get_wide(ns: &str, name: &str) -> BTreeMap<String, String> {
    let out = std::process::Command::new(kubectl_path())
        .arg("--kubeconfig")
        .arg(kubeconfig_path())
        .args(["-n", ns, "get", "botfleet", name, "-o", "wide"])
        .output()
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines = text.lines();
    let header = lines.next().expect("header");
    let row = lines.next().expect("one row");
    // Columns are aligned: each starts where its header starts.
    let starts: Vec<(usize, &str)> = header
        .match_indices(|c: char| c != ' ')
        .filter(|(i, _)| *i == 0 || header.as_bytes()[i - 1] == b' ')
        .map(|(i, _)| (i, header[i..].split(' ').next().unwrap_or_default()))
        .collect();
    starts
        .iter()
        .enumerate()
        .map(|(n, (start, title))| {
            let end = starts
                .get(n + 1)
                .map_or(row.len(), |(next, _)| *next)
                .min(row.len());
            let cell = row.get(*start..end).unwrap_or_default().trim();
            ((*title).to_owned(), cell.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn autoscaling_switches_between_the_hpa_and_fixed_replicas() {
    let (client, ns) = setup("op-hpa").await;
    put_bot_secret(&client, &ns, "whsec").await;
    let _controller = start_controller(&client, &ns);
    let mut fleet = sample_fleet("bots");
    fleet.spec.replicas = 3;
    create_fleet(&client, &ns, &fleet).await;
    let api: Api<BotFleet> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_for("3 fixed replicas", || async {
        let d = deployments.get_opt("bots").await.ok()??;
        (d.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    assert!(
        get::<HorizontalPodAutoscaler>(&client, &ns, "bots")
            .await
            .is_none()
    );

    let on = json!({"spec": {"autoscaling": {
        "enabled": true, "minReplicas": 2, "maxReplicas": 7, "targetOutboxLagSeconds": 45,
        "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}},
    }}});
    api.patch("bots", &PatchParams::default(), &Patch::Merge(&on))
        .await
        .expect("autoscaling on");
    let hpa: HorizontalPodAutoscaler = wait_for("the HPA", || get(&client, &ns, "bots")).await;
    let spec = hpa.spec.expect("hpa spec");
    assert_eq!(spec.scale_target_ref.name, "bots");
    assert_eq!(spec.scale_target_ref.kind, "Deployment");
    assert_eq!((spec.min_replicas, spec.max_replicas), (Some(2), 7));
    let scale_down = spec
        .behavior
        .as_ref()
        .and_then(|b| b.scale_down.as_ref())
        .expect("the fleet's behavior reaches the HPA");
    assert_eq!(scale_down.stabilization_window_seconds, Some(30));
    let metric = &spec.metrics.expect("metrics")[0];
    assert_eq!(metric.type_, "Pods");
    let pods = metric.pods.as_ref().expect("pods metric");
    assert_eq!(pods.metric.name, "sitg_bot_outbox_lag_seconds");
    assert_eq!(pods.target.type_, "AverageValue");
    assert_eq!(pods.target.average_value, Some(Quantity("45".into())));
    // The operator let go of `replicas` without resetting it.
    let handed_over = wait_for("replicas handed over", || async {
        let d = deployments.get("bots").await.ok()?;
        (!owns_replicas(&d)).then_some(d)
    })
    .await;
    assert_eq!(handed_over.spec.as_ref().and_then(|s| s.replicas), Some(3));
    // Stand in for the autoscaler (no HPA controller runs here): it scales the
    // Deployment, and the operator must not fight it.
    let scale = json!({"spec": {"replicas": 5}});
    deployments
        .patch_scale("bots", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scale");
    let annotate = json!({"spec": {"podAnnotations": {"touch": "1"}}});
    api.patch("bots", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("touch fleet");
    wait_for("the new pod annotation", || async {
        let d = deployments.get("bots").await.ok()?;
        let a = d
            .spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("touch")
            .cloned();
        (a.as_deref() == Some("1")).then_some(())
    })
    .await;
    assert_eq!(
        deployments
            .get("bots")
            .await
            .expect("d")
            .spec
            .and_then(|s| s.replicas),
        Some(5)
    );

    let off = json!({"spec": {"replicas": 4, "autoscaling": {"enabled": false}}});
    api.patch("bots", &PatchParams::default(), &Patch::Merge(&off))
        .await
        .expect("autoscaling off");
    wait_for("the HPA to go and 4 fixed replicas", || async {
        let gone = get::<HorizontalPodAutoscaler>(&client, &ns, "bots")
            .await
            .is_none();
        let d = deployments.get("bots").await.ok()?;
        (gone && d.spec.as_ref()?.replicas == Some(4) && owns_replicas(&d)).then_some(())
    })
    .await;
}

#[tokio::test]
async fn deleting_the_fleet_removes_its_children() {
    let (client, ns) = setup("op-delete").await;
    put_bot_secret(&client, &ns, "whsec").await;
    let _controller = start_controller(&client, &ns);
    let mut fleet = sample_fleet("bots");
    fleet.spec.autoscaling = Some(AutoscalingSpec {
        enabled: true,
        mode: AutoscalingMode::Hpa,
        min_replicas: 2,
        max_replicas: 3,
        target_outbox_lag_seconds: 30,
        behavior: None,
    });
    create_fleet(&client, &ns, &fleet).await;
    let _: HorizontalPodAutoscaler = wait_for("the HPA", || get(&client, &ns, "bots")).await;
    let _: PodDisruptionBudget = wait_for("the PDB", || get(&client, &ns, "bots")).await;

    Api::<BotFleet>::namespaced(client.clone(), &ns)
        .delete("bots", &DeleteParams::background())
        .await
        .expect("fleet deleted");
    // The real garbage collector follows the owner references.
    wait_for("every child to be collected", || async {
        let left = [
            get::<Deployment>(&client, &ns, "bots").await.is_some(),
            get::<Service>(&client, &ns, "bots").await.is_some(),
            get::<PodDisruptionBudget>(&client, &ns, "bots")
                .await
                .is_some(),
            get::<HorizontalPodAutoscaler>(&client, &ns, "bots")
                .await
                .is_some(),
            get::<Secret>(&client, &ns, "bots-worker-env")
                .await
                .is_some(),
        ];
        left.iter().all(|present| !present).then_some(())
    })
    .await;
    // The user's Secret is not the fleet's to delete.
    assert!(get::<Secret>(&client, &ns, "bot").await.is_some());
    let fleet = Api::<BotFleet>::namespaced(client.clone(), &ns)
        .get_opt("bots")
        .await
        .expect("read");
    assert!(fleet.is_none());
}

#[tokio::test]
async fn a_status_write_does_not_trigger_a_pass_of_the_same_generation() {
    let (client, ns) = setup("op-status").await;
    put_bot_secret(&client, &ns, "whsec").await;
    let controller = start_controller(&client, &ns);
    create_fleet(&client, &ns, &sample_fleet("bots")).await;
    let api: Api<BotFleet> = Api::namespaced(client.clone(), &ns);
    wait_for("the Deployment", || get::<Deployment>(&client, &ns, "bots")).await;
    wait_deployment_settled(&client, &ns, "bots").await;
    wait_for("status with 2 replicas", || async {
        let f = api.get("bots").await.ok()?;
        (f.status?.replicas == 2).then_some(())
    })
    .await;
    let passes = wait_for("the pass count to settle", || async {
        let n = controller.metrics.reconciles.get();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        (controller.metrics.reconciles.get() == n).then_some(n)
    })
    .await;

    // A status-only change (here by another writer) bumps the resourceVersion but not
    // the generation: no pass may run, so the odd value stays.
    let odd = json!({"status": {"readyReplicas": 7}});
    api.patch_status("bots", &PatchParams::default(), &Patch::Merge(&odd))
        .await
        .expect("status patched");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(controller.metrics.reconciles.get(), passes);
    let stored = api.get("bots").await.expect("fleet");
    assert_eq!(stored.status.map(|s| s.ready_replicas), Some(7));

    // A spec change is a new generation: a pass runs and rewrites the status.
    let scale = json!({"spec": {"replicas": 3}});
    api.patch("bots", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("fleet scaled");
    wait_for("the status of the new generation", || async {
        let f = api.get("bots").await.ok()?;
        let s = f.status?;
        (s.observed_generation == f.metadata.generation
            && s.desired_replicas == 3
            && s.ready_replicas == 0)
            .then_some(())
    })
    .await;
    assert!(controller.metrics.reconciles.get() > passes);
}

#[tokio::test]
async fn external_autoscaling_removes_the_hpa_and_leaves_replicas_alone() {
    let (client, ns) = setup("op-external").await;
    put_bot_secret(&client, &ns, "whsec").await;
    let _controller = start_controller(&client, &ns);
    let mut fleet = sample_fleet("bots");
    fleet.spec.autoscaling = Some(AutoscalingSpec {
        enabled: true,
        mode: AutoscalingMode::Hpa,
        min_replicas: 2,
        max_replicas: 6,
        target_outbox_lag_seconds: 30,
        behavior: None,
    });
    create_fleet(&client, &ns, &fleet).await;
    let _: HorizontalPodAutoscaler = wait_for("the HPA", || get(&client, &ns, "bots")).await;
    let api: Api<BotFleet> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // What the chart writes when its KEDA ScaledObject is on.
    let external = json!({"spec": {"autoscaling": {"mode": "external"}}});
    api.patch("bots", &PatchParams::default(), &Patch::Merge(&external))
        .await
        .expect("mode external");
    wait_for("the operator's HPA to go", || async {
        get::<HorizontalPodAutoscaler>(&client, &ns, "bots")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    // KEDA's own HPA scales the Deployment (stood in for here: no KEDA runs).
    let scale = json!({"spec": {"replicas": 4}});
    deployments
        .patch_scale("bots", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scale");
    let annotate = json!({"spec": {"podAnnotations": {"touch": "1"}}});
    api.patch("bots", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("touch fleet");
    let d = wait_for("the new pod annotation", || async {
        let d = deployments.get("bots").await.ok()?;
        let touched = d
            .spec
            .as_ref()?
            .template
            .metadata
            .as_ref()?
            .annotations
            .as_ref()?
            .get("touch")
            .is_some();
        touched.then_some(d)
    })
    .await;
    assert!(!owns_replicas(&d), "the operator must not own replicas");
    assert_eq!(d.spec.and_then(|s| s.replicas), Some(4));
    assert!(
        get::<HorizontalPodAutoscaler>(&client, &ns, "bots")
            .await
            .is_none()
    );
}
