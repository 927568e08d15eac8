//! The chart's KEDA alternative against KEDA's own schema: KEDA's CRDs (from its Go
//! module, `scripts/metrics-stack.sh keda-crds`) applied to the real API server of
//! `SITG_TEST_KUBECONFIG`, then the chart's ScaledObject and BotFleet dry-run there
//! (`kubectl apply --dry-run=server --validate=strict`), so the API server checks every
//! field against the structural schemas, unknown fields included.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use crate::support::*;
use serde_json::Value;

fn kubeconfig() -> PathBuf {
    match std::env::var_os("SITG_TEST_KUBECONFIG") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => panic!(
            "SITG_TEST_KUBECONFIG is not set: this test needs a real API server \
             (scripts/control-plane.sh up DIR; the project's test command does it)"
        ),
    }
}

fn kubectl() -> Command {
    let mut cmd = Command::new(kube_bin_dir().join("kubectl"));
    cmd.arg("--kubeconfig").arg(kubeconfig());
    cmd
}

/// `kubectl ARGS -f -` with `input` on stdin.
fn kubectl_stdin(args: &[&str], input: &str) -> Output {
    let mut child = kubectl()
        .args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("kubectl output")
}

fn keda_crd_dir() -> PathBuf {
    let out = run_ok(
        Command::new(repo_path("scripts/metrics-stack.sh")).arg("keda-crds"),
        "scripts/metrics-stack.sh keda-crds",
    );
    PathBuf::from(out.trim())
}

#[test]
fn the_scaled_object_passes_kedas_schema_on_a_real_api_server() {
    let crd = keda_crd_dir().join("keda.sh_scaledobjects.yaml");
    run_ok(
        kubectl()
            .args(["apply", "--server-side", "--force-conflicts", "-f"])
            .arg(&crd),
        "apply KEDA's ScaledObject CRD",
    );
    run_ok(
        kubectl().args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            repo_path("crds/botfleet.yaml").to_str().expect("path"),
        ]),
        "apply the BotFleet CRD",
    );
    for name in ["scaledobjects.keda.sh", "botfleets.sitg.io"] {
        wait_crd_established(kubectl, name);
    }
    let ns = format!("keda-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    run_ok(kubectl().args(["create", "namespace", &ns]), "namespace");

    let objects = helm_template(
        "sitg",
        &ns,
        &[
            "-f",
            repo_path("charts/sitg-bot/ci/keda-values.yaml")
                .to_str()
                .expect("path"),
        ],
    );
    let scaled = object(&objects, "ScaledObject", "bots").clone();
    let fleet = object(&objects, "BotFleet", "bots").clone();
    assert_eq!(fleet["spec"]["autoscaling"]["mode"], "external");
    assert_eq!(scaled["spec"]["scaleTargetRef"]["name"], "bots");
    let trigger = &scaled["spec"]["triggers"][0];
    assert_eq!(trigger["type"], "prometheus");
    assert_eq!(trigger["metricType"], "AverageValue");
    assert_eq!(
        trigger["metadata"]["query"],
        format!(
            "sum(max by (namespace, pod) (sitg_bot_outbox_lag_seconds{{namespace=\"{ns}\", pod=~\"bots-[a-z0-9]+-[a-z0-9]+\"}}))"
        )
    );
    assert_eq!(trigger["metadata"]["threshold"], "30");

    let dry_run = ["apply", "--dry-run=server", "--validate=strict"];
    for obj in [&scaled, &fleet] {
        let out = kubectl_stdin(&dry_run, &obj.to_string());
        assert!(
            out.status.success(),
            "the API server refused the chart's {}: {}",
            obj["kind"],
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // The schema is really applied: a wrong type and an unknown field are refused.
    let mut wrong_type = scaled.clone();
    wrong_type["spec"]["minReplicaCount"] = Value::from("two");
    let mut unknown = scaled.clone();
    unknown["spec"]["triggers"][0]["threshhold"] = Value::from("30");
    for (what, obj, expected) in [
        (
            "a string minReplicaCount",
            wrong_type,
            "spec.minReplicaCount",
        ),
        ("a misspelt trigger field", unknown, "threshhold"),
    ] {
        let out = kubectl_stdin(&dry_run, &obj.to_string());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what} was accepted");
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }
    run_ok(
        kubectl().args(["delete", "namespace", &ns, "--wait=false"]),
        "delete namespace",
    );
}
