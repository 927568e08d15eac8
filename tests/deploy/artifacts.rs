//! The container image recipe, the systemd unit, the env examples and the docs:
//!
//! - `Dockerfile`: `hadolint` clean (plain, and with deploy/hadolint.yaml requiring
//!   the OCI labels and trusted registries); the final stage runs the binary the chart
//!   and the operator expect, as the user their pods run as, on their ports;
//! - `deploy/systemd/sitg-bot-worker@.service`: `systemd-analyze verify` in a root
//!   tree holding the binary, and `systemd-analyze security` under a threshold;
//! - `deploy/env/*.env.example`: every variable the worker reads, with values the
//!   worker's own configuration parser accepts;
//! - `docs/*.md`: every path they name exists, every `sitg-bot` subcommand they run
//!   is one the binary has.
//!
//! Needs hadolint and systemd-analyze (`scripts/install-ship-deps.sh`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::support::*;
use sitg_bot::operator::build::{METRICS_PORT, WEBHOOK_PORT};
use sitg_bot::operator::crd::DEFAULT_IMAGE_REPOSITORY;
use sitg_bot::worker::WorkerConfig;

const UNIT: &str = "deploy/systemd/sitg-bot-worker@.service";
const ENV_TEMPLATE: &str = "deploy/env/bot-worker.env.example";
const REPLICA_ENVS: [&str; 2] = [
    "deploy/env/bot-worker-1.env.example",
    "deploy/env/bot-worker-2.env.example",
];
/// Highest accepted `systemd-analyze security` exposure, in its 0..100 scale
/// (the unit scores 12, shown as 1.2; 15 leaves room for systemd's scoring changes
/// but not for a dropped hardening directive).
const SECURITY_THRESHOLD: u32 = 15;
/// The non-root user of the image and of every pod (distroless `nonroot`).
const NONROOT: &str = "65532";

// ---------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------

/// The Dockerfile's instructions as (INSTRUCTION, arguments), continuation lines
/// joined and comments dropped.
fn dockerfile_instructions() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (instruction, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((instruction.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

fn hadolint_ok(args: &[&str]) {
    let out = run(Command::new(hadolint())
        .args(args)
        .arg(repo_path("Dockerfile")));
    assert!(
        out.status.success(),
        "hadolint {args:?} Dockerfile found problems:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dockerfile_passes_hadolint() {
    hadolint_ok(&["--failure-threshold", "warning"]);
    let config = repo_path("deploy/hadolint.yaml");
    hadolint_ok(&["--config", config.to_str().expect("utf-8 path")]);
}

#[test]
fn hadolint_config_catches_a_missing_label() {
    // The label schema is enforced, not decorative: drop one label and lint fails.
    let text = read("Dockerfile");
    let without: String = text
        .lines()
        .filter(|l| !l.contains("org.opencontainers.image.licenses"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(without, text);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("Dockerfile");
    std::fs::write(&file, without).expect("write");
    let out = run(Command::new(hadolint())
        .arg("--config")
        .arg(repo_path("deploy/hadolint.yaml"))
        .arg(&file));
    assert!(
        !out.status.success(),
        "hadolint accepted a Dockerfile without the licenses label"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("DL3049"));
}

#[test]
fn dockerfile_builds_the_image_the_chart_and_the_operator_expect() {
    let instructions = dockerfile_instructions();
    let last_from = instructions
        .iter()
        .rposition(|(i, _)| i == "FROM")
        .expect("a FROM");
    let froms: Vec<&str> = instructions
        .iter()
        .filter(|(i, _)| i == "FROM")
        .map(|(_, a)| a.as_str())
        .collect();
    assert!(froms.len() >= 3, "multi-stage: {froms:?}");
    // The dependencies outlive a source change: the cargo registry and target dir are
    // build-cache mounts of the RUN that compiles, so a rebuild compiles only the project.
    let build = instructions
        .iter()
        .find(|(i, a)| i == "RUN" && a.contains("cargo build --release --locked"))
        .map(|(_, a)| a.as_str())
        .expect("cargo build --release --locked");
    for cached in [
        "--mount=type=cache,target=/usr/local/cargo/registry",
        "--mount=type=cache,target=/src/target",
    ] {
        assert!(build.contains(cached), "cargo build runs with {cached}");
    }
    // The simulators' image is a target of the same recipe, sharing its builder.
    let sandbox = instructions
        .iter()
        .position(|(i, a)| i == "FROM" && a.ends_with(" AS sandbox"))
        .expect("a stage `sandbox`");
    assert!(
        instructions[sandbox..last_from]
            .iter()
            .any(|(i, a)| i == "COPY" && a.ends_with("/usr/local/bin/sitg-sandbox")),
        "the sandbox stage ships sitg-sandbox"
    );

    let final_stage = &instructions[last_from..];
    assert_eq!(
        final_stage[0].1, "gcr.io/distroless/cc-debian12:nonroot",
        "distroless runtime of the same Debian release as the builder"
    );
    assert!(
        froms[0].contains("bookworm"),
        "builder on Debian 12 like the runtime: {}",
        froms[0]
    );
    let get = |name: &str| -> Vec<&str> {
        final_stage
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, a)| a.as_str())
            .collect()
    };
    assert_eq!(
        get("USER"),
        [format!("{NONROOT}:{NONROOT}")],
        "numeric non-root user"
    );
    let entrypoint: Vec<String> =
        serde_json::from_str(get("ENTRYPOINT")[0]).expect("exec-form ENTRYPOINT");
    assert_eq!(entrypoint, ["/usr/local/bin/sitg-bot"]);
    let cmd: Vec<String> = serde_json::from_str(get("CMD")[0]).expect("exec-form CMD");
    assert_eq!(cmd, ["worker"]);
    let exposed: BTreeSet<i32> = get("EXPOSE")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|p| p.parse().expect("port"))
        .collect();
    assert_eq!(exposed, BTreeSet::from([WEBHOOK_PORT, METRICS_PORT]));
    assert!(
        get("COPY")
            .iter()
            .any(|a| a.ends_with("/usr/local/bin/sitg-bot"))
    );
    let version_arg = format!("VERSION={}", env!("CARGO_PKG_VERSION"));
    assert!(
        get("ARG").contains(&version_arg.as_str()),
        "ARG {version_arg}"
    );

    // The chart's operator pods and the operator's worker pods run as the image user.
    let chart = helm_template("sitg-bot", "sitg-system", &[]);
    let deployment = object(&chart, "Deployment", "sitg-bot");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"].to_string(),
        NONROOT
    );

    // The documented build command tags the image the chart and BotFleet default to.
    let tag = format!("{DEFAULT_IMAGE_REPOSITORY}:{}", env!("CARGO_PKG_VERSION"));
    for doc in ["Dockerfile", "docs/deployment.md"] {
        assert!(
            read(doc).contains(&format!("docker build -t {tag}")),
            "{doc} builds {tag}"
        );
    }
}

#[test]
fn dockerignore_keeps_build_output_and_secrets_out_of_the_context() {
    let patterns: BTreeSet<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect();
    for needed in ["target/", ".git/", "**/*.pem", "**/*.key", "**/.env"] {
        assert!(patterns.contains(needed), ".dockerignore lacks {needed}");
    }
    for kept in ["src/", "Cargo.toml", "Cargo.lock", "crds/"] {
        assert!(
            !patterns.contains(kept),
            ".dockerignore must not drop {kept}"
        );
    }
}

// ---------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------

/// A root tree for `systemd-analyze --root`: the host's system units (targets the
/// unit depends on), the binary at /usr/local/bin/sitg-bot, the unit and replica
/// env files in their documented places.
fn systemd_root(with_binary: bool) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("multi-user.target").exists())
        .expect("the host's systemd units (Debian package systemd)");
    std::fs::create_dir_all(r.join("usr/lib/systemd")).expect("mkdir");
    run_ok(
        Command::new("cp")
            .arg("-R")
            .arg(system_units)
            .arg(r.join("usr/lib/systemd/system")),
        "copying system units",
    );
    for dir in ["usr/local/bin", "etc/systemd/system", "etc/sitg"] {
        std::fs::create_dir_all(r.join(dir)).expect("mkdir");
    }
    if with_binary {
        std::fs::copy(
            env!("CARGO_BIN_EXE_sitg-bot"),
            r.join("usr/local/bin/sitg-bot"),
        )
        .expect("copy binary");
    }
    std::fs::copy(
        repo_path(UNIT),
        r.join("etc/systemd/system/sitg-bot-worker@.service"),
    )
    .expect("copy unit");
    for (n, file) in REPLICA_ENVS.iter().enumerate() {
        std::fs::copy(
            repo_path(file),
            r.join(format!("etc/sitg/bot-worker-{}.env", n + 1)),
        )
        .expect("copy env");
    }
    root
}

fn analyze(args: &[&str], root: &Path) -> std::process::Output {
    run(Command::new(systemd_analyze())
        .args(args)
        .arg(format!("--root={}", root.display()))
        .args(["sitg-bot-worker@1.service", "sitg-bot-worker@2.service"]))
}

#[test]
fn systemd_unit_verifies() {
    let root = systemd_root(true);
    let out = analyze(&["verify"], root.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on unknown directives but reports them: both must be clean.
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );

    // The check looks at ExecStart: without the binary it fails.
    let bare = systemd_root(false);
    let out = analyze(&["verify"], bare.path());
    assert!(
        !out.status.success(),
        "verify passed without /usr/local/bin/sitg-bot"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("/usr/local/bin/sitg-bot"));
}

#[test]
fn systemd_unit_exposure_is_below_the_threshold() {
    let root = systemd_root(true);
    let out = analyze(
        &[
            "security",
            "--offline=yes",
            &format!("--threshold={SECURITY_THRESHOLD}"),
        ],
        root.path(),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above {SECURITY_THRESHOLD}:\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout
            .matches("Overall exposure level for sitg-bot-worker@")
            .count(),
        2,
        "{stdout}"
    );
}

/// `Key=Value` directives of the unit's sections, in order.
fn unit_directives() -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut out = Vec::new();
    for line in read(UNIT).lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.push((section.clone(), k.to_owned(), v.to_owned()));
        }
    }
    out
}

#[test]
fn systemd_unit_runs_the_worker_hardened() {
    let directives = unit_directives();
    let service: BTreeMap<&str, Vec<&str>> = directives
        .iter()
        .filter(|(s, _, _)| s == "Service")
        .fold(BTreeMap::new(), |mut map, (_, k, v)| {
            map.entry(k.as_str()).or_default().push(v.as_str());
            map
        });
    let one = |key: &str| -> &str {
        match service.get(key).map(Vec::as_slice) {
            Some([value]) => value,
            other => panic!("[Service] {key}: expected one value, found {other:?}"),
        }
    };
    assert_eq!(one("ExecStart"), "/usr/local/bin/sitg-bot worker");
    assert_eq!(one("EnvironmentFile"), "/etc/sitg/bot-worker-%i.env");
    assert_eq!(one("User"), "sitg");
    assert_eq!(one("Restart"), "always");
    assert_eq!(
        one("RestartPreventExitStatus"),
        "2",
        "config errors exit 2 (src/main.rs)"
    );
    // The guide's hardening, and the stricter settings that cost nothing.
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("PrivateTmp", "yes"),
        ("ProtectHome", "yes"),
        ("ProtectSystem", "strict"),
        ("CapabilityBoundingSet", ""),
        ("PrivateDevices", "yes"),
        ("MemoryDenyWriteExecute", "yes"),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallArchitectures", "native"),
    ] {
        assert_eq!(one(key), value, "[Service] {key}");
    }
    assert!(
        !service.contains_key("ReadWritePaths"),
        "the worker writes only its state directory"
    );
    assert_eq!(
        one("StateDirectory"),
        "sitg-bot/worker-%i",
        "one claim journal per replica, kept across restarts"
    );
    let stop: u64 = one("TimeoutStopSec").parse().expect("seconds");
    let template = env_file(ENV_TEMPLATE);
    let shutdown: u64 = template["SHUTDOWN_TIMEOUT_SECONDS"]
        .parse()
        .expect("seconds");
    assert!(
        stop > shutdown,
        "systemd must not SIGKILL a worker still releasing actions"
    );
}

// ---------------------------------------------------------------------------
// Env examples
// ---------------------------------------------------------------------------

/// The variables an env file sets, read by a shell the way the unit's
/// `EnvironmentFile=` reads them (the examples use only syntax both agree on).
fn env_file(relative: &str) -> BTreeMap<String, String> {
    let out = run_ok(
        Command::new("bash")
            .env_clear()
            .args(["-c", r#"set -a; . "$1"; set +a; env -0"#, "env-file"])
            .arg(repo_path(relative)),
        "reading an env file",
    );
    out.split('\0')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| !matches!(*k, "PWD" | "SHLVL" | "_" | "OLDPWD"))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// Parses `vars` with the worker's configuration code and returns the variables it
/// asked for.
fn worker_config(vars: &BTreeMap<String, String>) -> (WorkerConfig, BTreeSet<String>) {
    let asked = Mutex::new(BTreeSet::new());
    let config = WorkerConfig::from_lookup(|name| {
        asked.lock().expect("lock").insert(name.to_owned());
        vars.get(name).cloned()
    })
    .unwrap_or_else(|e| panic!("the worker refuses the example: {e}"));
    (config, asked.into_inner().expect("lock"))
}

#[test]
fn env_template_lists_every_worker_variable_with_its_source() {
    let vars = env_file(ENV_TEMPLATE);
    let (config, asked) = worker_config(&vars);
    let listed: BTreeSet<String> = vars.keys().cloned().collect();
    // STATE_DIRECTORY comes from the unit's StateDirectory=, not from the env file.
    let missing: Vec<_> = asked
        .difference(&listed)
        .filter(|k| k.as_str() != "STATE_DIRECTORY")
        .collect();
    assert!(missing.is_empty(), "{ENV_TEMPLATE} lacks {missing:?}");
    // RUST_LOG is read by the log filter, not by the configuration code.
    let extra: Vec<_> = listed
        .difference(&asked)
        .filter(|k| k.as_str() != "RUST_LOG")
        .collect();
    assert!(
        extra.is_empty(),
        "{ENV_TEMPLATE} lists variables the worker never reads: {extra:?}"
    );
    assert!(vars.contains_key("RUST_LOG"));

    // Each variable comes with a comment saying where its value comes from.
    let text = read(ENV_TEMPLATE);
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        if let Some((key, _)) = line.split_once('=').filter(|_| !line.starts_with('#')) {
            assert!(
                i > 0 && (lines[i - 1].starts_with('#') || lines[i - 1].contains('=')),
                "{key} has no comment above it"
            );
        }
    }
    // The PEM's \n escapes become line breaks; the placeholders are valid values.
    assert!(
        config
            .github_app_private_key
            .expose()
            .contains("\n-----END RSA PRIVATE KEY-----")
    );
    assert_eq!(config.port, 3101);
    assert_eq!(config.worker_id, "bot-worker-prod-1");
    assert!(
        config.webhook_secret_previous.is_none(),
        "an empty value means unset"
    );
}

#[test]
fn replica_env_files_differ_only_in_port_metrics_port_and_worker_id() {
    let template = env_file(ENV_TEMPLATE);
    let mut seen = BTreeSet::new();
    for (n, file) in REPLICA_ENVS.iter().enumerate() {
        let vars = env_file(file);
        assert_eq!(
            vars.keys().collect::<Vec<_>>(),
            template.keys().collect::<Vec<_>>(),
            "{file} sets the template's variables"
        );
        for (key, value) in &vars {
            if !matches!(key.as_str(), "PORT" | "METRICS_PORT" | "WORKER_ID") {
                assert_eq!(value, &template[key], "{file}: {key}");
            }
        }
        let (config, _) = worker_config(&vars);
        assert_eq!(config.worker_id, format!("bot-worker-prod-{}", n + 1));
        assert!(
            seen.insert((config.port, config.metrics_port, config.worker_id.clone())),
            "{file} repeats another replica's ports or id"
        );
    }
    let ports: BTreeSet<u16> = seen
        .iter()
        .flat_map(|(p, m, _)| [Some(*p), *m])
        .flatten()
        .collect();
    assert_eq!(
        ports.len(),
        2 * REPLICA_ENVS.len(),
        "no two listeners share a port"
    );
}

// ---------------------------------------------------------------------------
// Docs
// ---------------------------------------------------------------------------

const DOCS: [&str; 3] = [
    "docs/deployment.md",
    "docs/operations.md",
    "docs/architecture.md",
];

#[test]
fn docs_name_only_files_that_exist() {
    let path = regex::Regex::new(
        r"(?:^|[\s`(\[])((?:charts|crates|crds|deploy|docs|examples|scripts|src|tests)/[A-Za-z0-9_./@-]*[A-Za-z0-9_@-])",
    )
    .expect("regex");
    for doc in DOCS {
        let text = read(doc);
        let mut checked = 0;
        for capture in path.captures_iter(&text) {
            let relative = &capture[1];
            let candidate: PathBuf = repo_path(relative);
            assert!(
                candidate.exists(),
                "{doc} names {relative}, which does not exist"
            );
            checked += 1;
        }
        assert!(checked > 0, "{doc} names no repository file");
    }
}

/// `sitg-bot ...` command lines in the docs' code blocks, cut at the first shell
/// operator.
fn documented_invocations() -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for doc in DOCS {
        for words in doc_commands(doc) {
            if !(words[0] == "sitg-bot" || words[0].ends_with("/sitg-bot")) {
                continue;
            }
            let args: Vec<String> = words[1..]
                .iter()
                .take_while(|w| !matches!(w.as_str(), "|" | ">" | ">>" | "&&" | ";" | "&"))
                .cloned()
                .collect();
            if !args.is_empty() {
                out.push((doc.to_owned(), args));
            }
        }
    }
    out
}

#[test]
fn docs_run_only_commands_the_binary_accepts() {
    let invocations = documented_invocations();
    assert!(
        invocations.iter().any(|(_, a)| a[0] == "operator"),
        "the docs show how to run the operator: {invocations:?}"
    );
    for (doc, args) in &invocations {
        // clap checks every flag before it honours --help.
        run_ok(
            Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
                .args(args)
                .arg("--help"),
            &format!("{doc}: sitg-bot {}", args.join(" ")),
        );
    }
}

#[test]
fn operations_runbook_explains_every_metric() {
    let name = regex::Regex::new(r#""(sitg_bot_[a-z_]+)""#).expect("regex");
    let mut metrics = BTreeSet::new();
    let mut stack = vec![repo_path("src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("read source");
                for capture in name.captures_iter(&text) {
                    let metric = &capture[1];
                    // Histogram series suffixes appear in tests, not as metric names.
                    if !["_bucket", "_count", "_sum"]
                        .iter()
                        .any(|s| metric.ends_with(s))
                    {
                        metrics.insert(metric.to_owned());
                    }
                }
            }
        }
    }
    assert!(metrics.len() > 25, "found the metric names: {metrics:?}");
    let runbook = read("docs/operations.md");
    let missing: Vec<_> = metrics
        .iter()
        .filter(|m| !runbook.contains(&format!("`{m}`")) && !runbook.contains(&format!("`{m}{{")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/operations.md does not explain {missing:?}"
    );
}
