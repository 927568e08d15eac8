//! Two `sitg-bot operator` processes against one real API server: exactly one holds
//! the Lease and reconciles; when it is killed the other takes over; a stopped
//! leader releases the Lease.
//!
//! Needs `SITG_TEST_KUBECONFIG` (see `support/mod.rs`).

use std::path::PathBuf;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sitg_bot::operator::BotFleet;
use tokio::process::{Child, Command};

use crate::support::*;

struct Operator {
    identity: &'static str,
    metrics_port: u16,
    log: PathBuf,
    child: Child,
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").port()
}

fn spawn_operator(
    ns: &str,
    identity: &'static str,
    logs: &std::path::Path,
    extra_args: &[&str],
) -> Operator {
    let metrics_port = free_port();
    let log = logs.join(format!("{identity}.log"));
    let file = std::fs::File::create(&log).expect("log file");
    let child = Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
        .args([
            "operator",
            "--namespace",
            ns,
            "--lease-name",
            "sitg-bot-operator",
        ])
        .args(["--identity", identity])
        .args(extra_args)
        .args([
            "--lease-duration-seconds",
            "4",
            "--lease-grace-seconds",
            "1",
        ])
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .env("KUBECONFIG", kubeconfig_path())
        .env("RUST_LOG", "info")
        .stdout(file.try_clone().expect("log file handle"))
        .stderr(file)
        .kill_on_drop(true)
        .spawn()
        .expect("operator process starts");
    Operator {
        identity,
        metrics_port,
        log,
        child,
    }
}

/// A sample value of the operator's `/metrics`, `None` while it does not answer.
async fn metric(op: &Operator, name: &str) -> Option<f64> {
    let url = format!("http://127.0.0.1:{}/metrics", op.metrics_port);
    let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
    text.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .find_map(|value| value.trim().parse().ok())
}

async fn holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt("sitg-bot-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

#[tokio::test]
async fn one_of_two_operators_leads_and_the_other_takes_over() {
    sitg_bot::tls::install_crypto_provider();
    let (client, ns) = setup("op-leader").await;
    put_bot_secret(&client, &ns, "whsec").await;
    let logs = tempfile::tempdir().expect("log dir");
    // One of them also installs the CRD of its build (the upgrade path of the chart).
    let a = spawn_operator(&ns, "op-a", logs.path(), &["--apply-crd"]);
    let b = spawn_operator(&ns, "op-b", logs.path(), &[]);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);

    let first = wait_for("a Lease holder", || holder(&leases)).await;
    let (mut leader, mut follower) = match first.as_str() {
        "op-a" => (a, b),
        "op-b" => (b, a),
        other => panic!("unexpected Lease holder {other:?}"),
    };
    for op in [&leader, &follower] {
        wait_for("the metrics endpoint", || {
            metric(op, "sitg_bot_operator_leader")
        })
        .await;
    }

    create_fleet(&client, &ns, &sample_fleet("bots")).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    wait_for("the Deployment", || async {
        deployments.get_opt("bots").await.ok()?
    })
    .await;

    let leader_passes = metric(&leader, "sitg_bot_operator_reconciles_total").await;
    assert!(
        leader_passes.is_some_and(|n| n >= 1.0),
        "leader {}: {leader_passes:?}",
        leader.identity
    );
    assert_eq!(metric(&leader, "sitg_bot_operator_leader").await, Some(1.0));
    assert_eq!(
        metric(&follower, "sitg_bot_operator_reconciles_total").await,
        Some(0.0),
        "the follower {} reconciled (log: {})",
        follower.identity,
        follower.log.display()
    );
    assert_eq!(
        metric(&follower, "sitg_bot_operator_leader").await,
        Some(0.0)
    );
    assert_eq!(holder(&leases).await.as_deref(), Some(leader.identity));
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get("botfleets.sitg.io").await.expect("CRD");
    assert!(
        crd.metadata
            .managed_fields
            .iter()
            .flatten()
            .any(|m| m.manager.as_deref() == Some("sitg-bot-operator")),
        "--apply-crd did not apply the CRD"
    );

    // A crash: the Lease is not released and must expire.
    leader.child.kill().await.expect("leader killed");
    let taken = wait_for("the follower to take the Lease", || async {
        let h = holder(&leases).await?;
        (h == follower.identity).then_some(h)
    })
    .await;
    assert_eq!(taken, follower.identity);

    let fleets: Api<BotFleet> = Api::namespaced(client.clone(), &ns);
    fleets
        .patch(
            "bots",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("fleet scaled");
    wait_for("the new leader to apply 3 replicas", || async {
        let d = deployments.get_opt("bots").await.ok()??;
        (d.spec?.replicas == Some(3)).then_some(())
    })
    .await;
    assert!(
        metric(&follower, "sitg_bot_operator_reconciles_total")
            .await
            .is_some_and(|n| n >= 1.0)
    );
    assert_eq!(
        metric(&follower, "sitg_bot_operator_leader").await,
        Some(1.0)
    );

    // Losing the Lease stops the controller; it resumes once the Lease is free again.
    let intruder = json!({"spec": {
        "holderIdentity": "intruder",
        "leaseDurationSeconds": 4,
        "renewTime": k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
            k8s_openapi::jiff::Timestamp::now()
        ),
    }});
    leases
        .patch(
            "sitg-bot-operator",
            &PatchParams::default(),
            &Patch::Merge(&intruder),
        )
        .await
        .expect("lease stolen");
    wait_for("the operator to notice it lost the Lease", || async {
        (metric(&follower, "sitg_bot_operator_leader").await? == 0.0).then_some(())
    })
    .await;
    wait_for("the operator to lead again", || async {
        (metric(&follower, "sitg_bot_operator_leader").await? == 1.0).then_some(())
    })
    .await;
    fleets
        .patch(
            "bots",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"replicas": 4}})),
        )
        .await
        .expect("fleet scaled");
    wait_for("the re-elected leader to apply 4 replicas", || async {
        let d = deployments.get_opt("bots").await.ok()??;
        (d.spec?.replicas == Some(4)).then_some(())
    })
    .await;

    // A graceful stop (SIGTERM, as Kubernetes sends) releases the Lease.
    let pid = follower.child.id().expect("pid");
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let exit = tokio::time::timeout(WAIT, follower.child.wait())
        .await
        .expect("operator stops after SIGTERM")
        .expect("exit status");
    assert!(
        exit.success(),
        "exit {exit:?} (log: {})",
        follower.log.display()
    );
    wait_for("the Lease to be released", || async {
        let lease = leases.get("sitg-bot-operator").await.ok()?;
        lease.spec?.holder_identity.is_none().then_some(())
    })
    .await;

    // Every line of both operators reads well in a log pipeline: a human message, no
    // Rust Debug rendering in a value (issue 13, item 5).
    for op in [&leader, &follower] {
        let text = std::fs::read_to_string(&op.log).expect("operator log");
        let bad: Vec<String> = text
            .lines()
            .filter(|line| !line.trim().is_empty())
            .filter_map(|line| {
                let found = crate::log_check::problems(line, false);
                (!found.is_empty()).then(|| format!("{}: {line}", found.join(", ")))
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{}: lines that do not read well:\n{}",
            op.identity,
            bad.join("\n")
        );
        let starting = text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .find(|v| v["event"] == "operator_starting")
            .unwrap_or_else(|| panic!("{}: no operator_starting line:\n{text}", op.identity));
        assert_eq!(starting["scope"], "namespace", "{starting}");
        assert_eq!(starting["watched_namespace"], ns.as_str(), "{starting}");
    }
}

/// The Lease as the API server reports it: `None` when absent, else its holder.
async fn lease_holder(leases: &Api<Lease>) -> Option<Option<String>> {
    let lease = leases
        .get_opt("sitg-bot-operator")
        .await
        .expect("Lease readable")?;
    Some(lease.spec.and_then(|s| s.holder_identity))
}

/// Shutdown wins over every leadership change: SIGTERM at random moments — before
/// the Lease is won, while the controller starts, while it runs — always ends the
/// process with 0 within 2 s and leaves the Lease without a holder.
#[tokio::test]
async fn sigterm_at_random_moments_always_exits_and_releases_the_lease() {
    use rand::Rng;
    const CYCLES: usize = 50;
    const EXIT_BUDGET: std::time::Duration = std::time::Duration::from_secs(2);

    sitg_bot::tls::install_crypto_provider();
    // An empty namespace: the controller's first list returns at once, the case
    // where the shutdown raced the controller's start most often.
    let (client, ns) = setup("op-sigterm").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let logs = tempfile::tempdir().expect("log dir");
    let mut rng = rand::rng();
    let mut terminated_while_leading = 0;

    for cycle in 0..CYCLES {
        let identity: &'static str = format!("op-cycle-{cycle}").leak();
        let mut op = spawn_operator(&ns, identity, logs.path(), &[]);
        // Even cycles count from the moment the Lease is won (the controller is
        // starting or running), odd cycles from the moment the process serves
        // /metrics (its signal handler is installed; the Lease is not set up yet).
        if cycle % 2 == 0 {
            wait_for("the operator to take the Lease", || async {
                (lease_holder(&leases).await?? == identity).then_some(())
            })
            .await;
            tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(0..400))).await;
        } else {
            wait_for("the metrics endpoint", || {
                metric(&op, "sitg_bot_operator_leader")
            })
            .await;
            tokio::time::sleep(std::time::Duration::from_millis(rng.random_range(0..1500))).await;
        }
        if lease_holder(&leases).await.flatten().as_deref() == Some(identity) {
            terminated_while_leading += 1;
        }

        let pid = op.child.id().expect("pid");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits")),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM sent");
        let log = || std::fs::read_to_string(&op.log).unwrap_or_default();
        let exit = match tokio::time::timeout(EXIT_BUDGET, op.child.wait()).await {
            Ok(status) => status.expect("exit status"),
            Err(_) => panic!(
                "cycle {cycle}: no exit within {EXIT_BUDGET:?} of SIGTERM; log:\n{}",
                log()
            ),
        };
        assert!(
            exit.success(),
            "cycle {cycle}: exit {exit:?}; log:\n{}",
            log()
        );
        let holder = lease_holder(&leases).await.flatten();
        assert_eq!(
            holder,
            None,
            "cycle {cycle}: the Lease is still held after exit; log:\n{}",
            log()
        );
    }
    assert!(
        terminated_while_leading >= CYCLES / 2,
        "only {terminated_while_leading} of {CYCLES} SIGTERMs reached a leader"
    );
}
