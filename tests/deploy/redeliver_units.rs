//! The redelivery timer and its service (`deploy/systemd/sitg-bot-redeliver.*`):
//! `systemd-analyze verify` in a root tree holding the binary, a timer that fires every
//! minute, a one-shot hardened service running `sitg-bot redeliver`, and an env example
//! the command accepts.
//!

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::support::{repo_path, systemd_analyze};

const SERVICE: &str = "deploy/systemd/sitg-bot-redeliver.service";
const TIMER: &str = "deploy/systemd/sitg-bot-redeliver.timer";
const ENV_EXAMPLE: &str = "deploy/env/bot-redeliver.env.example";

/// A root tree for `systemd-analyze --root`: the host's system units, the binary at
/// /usr/local/bin/sitg-bot (unless `with_binary` is false), both units and the env
/// file in their documented places.
fn systemd_root(with_binary: bool) -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("tempdir");
    let r = root.path();
    let system_units = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.join("timers.target").exists())
        .expect("the host's systemd units (Debian package systemd)");
    std::fs::create_dir_all(r.join("usr/lib/systemd")).expect("mkdir");
    let copied = Command::new("cp")
        .arg("-R")
        .arg(system_units)
        .arg(r.join("usr/lib/systemd/system"))
        .status()
        .expect("cp");
    assert!(copied.success(), "copying system units");
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
    for unit in [SERVICE, TIMER] {
        let name = Path::new(unit).file_name().expect("file name");
        std::fs::copy(repo_path(unit), r.join("etc/systemd/system").join(name)).expect("copy unit");
    }
    std::fs::copy(repo_path(ENV_EXAMPLE), r.join("etc/sitg/bot-redeliver.env")).expect("copy env");
    root
}

fn verify(root: &Path) -> std::process::Output {
    Command::new(systemd_analyze())
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(["sitg-bot-redeliver.timer", "sitg-bot-redeliver.service"])
        .output()
        .expect("systemd-analyze runs")
}

#[test]
fn redeliver_units_verify() {
    let root = systemd_root(true);
    let out = verify(root.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "systemd-analyze verify:\n{stderr}"
    );
    let bare = systemd_root(false);
    let out = verify(bare.path());
    assert!(
        !out.status.success(),
        "verify passed without /usr/local/bin/sitg-bot"
    );
}

/// `section.Key` → values, in order.
fn directives(relative: &str) -> BTreeMap<String, Vec<String>> {
    let text = std::fs::read_to_string(repo_path(relative)).expect("read unit");
    let mut section = String::new();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
        } else if let Some((k, v)) = line.split_once('=') {
            out.entry(format!("{section}.{k}"))
                .or_default()
                .push(v.to_owned());
        }
    }
    out
}

fn one<'a>(map: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    match map.get(key).map(Vec::as_slice) {
        Some([value]) => value,
        other => panic!("{key}: expected one value, found {other:?}"),
    }
}

#[test]
fn the_timer_runs_one_hardened_sweep_every_minute() {
    let timer = directives(TIMER);
    assert_eq!(one(&timer, "Timer.OnUnitActiveSec"), "1min");
    assert_eq!(one(&timer, "Install.WantedBy"), "timers.target");

    let service = directives(SERVICE);
    assert_eq!(one(&service, "Service.Type"), "oneshot");
    assert_eq!(
        one(&service, "Service.ExecStart"),
        "/usr/local/bin/sitg-bot redeliver"
    );
    assert_eq!(
        one(&service, "Service.EnvironmentFile"),
        "/etc/sitg/bot-redeliver.env"
    );
    // Counters carried between sweeps live in the state directory (STATE_DIRECTORY).
    assert_eq!(
        one(&service, "Service.StateDirectory"),
        "sitg-bot-redeliver"
    );
    for (key, value) in [
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("PrivateDevices", "yes"),
        ("CapabilityBoundingSet", ""),
        ("MemoryDenyWriteExecute", "yes"),
    ] {
        assert_eq!(one(&service, &format!("Service.{key}")), value, "{key}");
    }
    assert!(
        !service.contains_key("Install.WantedBy"),
        "the timer starts the service, nothing else"
    );
}

/// The env example's values are accepted by `sitg-bot redeliver` (its placeholder key
/// is no key, so the command must get as far as reading it).
#[test]
fn env_example_is_accepted_by_the_command() {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -a; . {}; set +a; exec {} redeliver",
            repo_path(ENV_EXAMPLE).display(),
            env!("CARGO_BIN_EXE_sitg-bot"),
        ))
        .env_clear()
        .output()
        .expect("bash");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Every value parsed; only the placeholder key is refused, and not shown.
    assert!(stderr.contains("GitHub client"), "{stderr}");
    assert!(
        !stderr.contains("replace-with"),
        "a secret leaked: {stderr}"
    );
}
