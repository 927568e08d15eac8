//! `sitg-bot verify --botfleet`, against the real API server: the fleet's pods are
//! found through its labels and asked through the pod proxy; pods that are not
//! Running and Ready fail the checklist by name, and a fleet that does not exist stops
//! the command with exit code 2.

use std::time::Duration;

use crate::support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::api::ListParams;

async fn verify(args: &[&str]) -> (Option<i32>, String, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
            .arg("verify")
            .args(args)
            .env("KUBECONFIG", kubeconfig_path())
            .output(),
    )
    .await
    .expect("verify ends within a minute")
    .expect("verify runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_names_each_pod_of_the_fleet_that_is_not_ready() {
    let (client, ns) = setup("verify").await;
    put_bot_secret(&client, &ns, "whsec").await;
    create_fleet(&client, &ns, &sample_fleet("bots")).await;
    let _controller = start_controller(&client, &ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    // The controller-manager makes the pods; with no node they stay Pending.
    let names: Vec<String> = wait_for("the fleet's two pods", || {
        let pods = pods.clone();
        async move {
            let list = pods
                .list(&ListParams::default().labels("app.kubernetes.io/instance=bots"))
                .await
                .ok()?;
            let names: Vec<String> = list
                .items
                .into_iter()
                .filter_map(|p| p.metadata.name)
                .collect();
            (names.len() == 2).then_some(names)
        }
    })
    .await;

    let (code, stdout, stderr) =
        verify(&["--botfleet", "bots", "--namespace", &ns, "--interval", "1"]).await;
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    for name in &names {
        assert!(
            stdout.contains(&format!("  - {name}: pod is Pending, not Running")),
            "{name} not named in:\n{stdout}"
        );
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{stdout}"));
        assert!(
            line.contains("not ready") && line.ends_with("FAIL"),
            "{line}"
        );
    }

    let (code, _, stderr) = verify(&["--botfleet", "nobody", "--namespace", &ns]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("BotFleet {ns}/nobody not found")),
        "{stderr}"
    );
}
