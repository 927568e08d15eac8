//! The environment a real worker pod of a fleet starts with, resolved from what the
//! API server stores exactly as the kubelet would: every variable the worker reads is
//! there, with the fleet's settings and the referenced Secret values.
//!
//! Needs `SITG_TEST_KUBECONFIG` (see `support/mod.rs`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;
use sitg_bot::operator::crd::SecretKeyRef;

use crate::support::env::resolve_env;
use crate::support::*;

#[tokio::test]
async fn worker_pods_get_every_variable_the_worker_reads() {
    let (client, ns) = setup("op-env").await;
    put_bot_secret(&client, &ns, "whsec-current").await;
    put_secret(
        &client,
        &ns,
        "rotation",
        &[("previous", "whsec-previous"), ("token", "service-token")],
    )
    .await;
    let _controller = start_controller(&client, &ns);
    let mut fleet = sample_fleet("bots");
    fleet.spec.outbox.poll_interval_ms = 750;
    fleet.spec.outbox.claim_limit = 50;
    fleet.spec.github.previous_webhook_secret_ref = Some(SecretKeyRef {
        name: "rotation".into(),
        key: "previous".into(),
    });
    fleet.spec.backend.service_token_ref = Some(SecretKeyRef {
        name: "rotation".into(),
        key: "token".into(),
    });
    create_fleet(&client, &ns, &fleet).await;

    // A pod the real ReplicaSet controller made from the operator's template.
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
    let pod_name = pod.metadata.name.clone().expect("pod name");
    let container = &pod.spec.as_ref().expect("pod spec").containers[0];
    assert_eq!(container.args.as_deref(), Some(&["worker".to_owned()][..]));

    let env = resolve_env(&client, &ns, &pod_name, container).await;
    let expected: BTreeMap<String, String> = [
        ("PORT", "8080"),
        ("METRICS_PORT", "9090"),
        ("LOG_FORMAT", "json"),
        ("GITHUB_APP_ID", "4242"),
        ("GITHUB_API_BASE_URL", "https://api.github.com"),
        ("GITHUB_WEBHOOK_SECRET", "whsec-current"),
        ("GITHUB_WEBHOOK_SECRET_PREVIOUS", "whsec-previous"),
        ("GITHUB_APP_PRIVATE_KEY", PEM),
        ("BACKEND_BASE_URL", "https://sitg.example"),
        ("BACKEND_BOT_KEY_ID", "bck_test_1"),
        ("BACKEND_INTERNAL_HMAC_SECRET", "hmac-secret"),
        ("BACKEND_SERVICE_TOKEN", "service-token"),
        ("OUTBOX_POLLING_ENABLED", "true"),
        ("OUTBOX_POLL_INTERVAL_MS", "750"),
        ("OUTBOX_CLAIM_LIMIT", "50"),
        ("SHUTDOWN_DRAIN_SECONDS", "5"),
        ("WORKER_STATE_DIR", "/var/lib/sitg-bot"),
        ("WORKER_ID", pod_name.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(env, expected);
}

/// The pod spec really configures a working worker: the env of a pod the operator's
/// Deployment produced, resolved as the kubelet would, starts the real binary against
/// the simulators and `/readyz` answers 200. Only the two ports (off 8080/9090, which
/// the test host may already use) and the state directory (the pod's emptyDir; here a
/// temporary one) are moved; every other variable is taken as resolved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolved_pod_env_starts_a_ready_worker() {
    sitg_bot::tls::install_crypto_provider();
    let peers = sitg_sandbox::peers::Peers::start()
        .await
        .expect("simulators");
    let (client, ns) = setup("op-run").await;
    put_secret(
        &client,
        &ns,
        "bot",
        &[
            ("webhook", peers.webhook_secret.expose()),
            ("private-key", peers.app_key.private_pem.expose()),
            ("hmac", peers.hmac_secret.expose()),
        ],
    )
    .await;
    let _controller = start_controller(&client, &ns);
    let mut fleet = sample_fleet("live");
    fleet.spec.github.app_id = sitg_sandbox::peers::SANDBOX_APP_ID as i64;
    fleet.spec.github.api_base_url = peers.github_server.base_url();
    fleet.spec.backend.base_url = peers.backend_server.base_url();
    fleet.spec.backend.bot_key_id = sitg_sandbox::peers::SANDBOX_KEY_ID.to_owned();
    create_fleet(&client, &ns, &fleet).await;

    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let pod = wait_for("a worker pod", || async {
        pods.list(&ListParams::default().labels("app.kubernetes.io/instance=live"))
            .await
            .ok()?
            .items
            .into_iter()
            .next()
    })
    .await;
    let pod_name = pod.metadata.name.clone().expect("pod name");
    let container = &pod.spec.as_ref().expect("pod spec").containers[0];
    let mut env = resolve_env(&client, &ns, &pod_name, container).await;
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port")
    };
    let (port, metrics_port) = (free(), free());
    env.insert("PORT".into(), port.to_string());
    env.insert("METRICS_PORT".into(), metrics_port.to_string());
    // The pod mounts an emptyDir there; on the test host, a directory of its own.
    let state = tempfile::tempdir().expect("tempdir");
    env.insert(
        "WORKER_STATE_DIR".into(),
        state.path().display().to_string(),
    );

    let mut worker = std::process::Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
        .args(container.args.clone().unwrap_or_default())
        .env_clear()
        .envs(&env)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("worker starts");
    let http = reqwest::Client::new();
    let ready = async {
        loop {
            let status = http
                .get(format!("http://127.0.0.1:{metrics_port}/readyz"))
                .send()
                .await
                .map(|r| r.status().as_u16());
            if matches!(status, Ok(200)) {
                return;
            }
            if let Ok(Some(exit)) = worker.try_wait() {
                panic!("worker exited with {exit} on the pod's env");
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    };
    let became_ready = tokio::time::timeout(std::time::Duration::from_secs(30), ready).await;
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(became_ready.is_ok(), "/readyz never answered 200");
    // The worker's claims reached the simulated backend, signed with the pod's key.
    assert_eq!(peers.backend.stats().auth_failures_total(), 0);
}
