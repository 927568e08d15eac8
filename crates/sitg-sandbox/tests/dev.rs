//! `sitg-sandbox dev --once --port 0` with real `sitg-bot worker` processes: the account
//! it prints is the one the README describes, and the workers stop cleanly.
//!
//! Needs the `sitg-bot` binary next to `sitg-sandbox` (plain `cargo test` in the
//! workspace builds both) or in `SITG_BOT_BIN`, and GitHub's example payloads
//! (`scripts/fetch-fixtures.sh`).

use std::path::PathBuf;
use std::process::Command;

fn worker_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("SITG_BOT_BIN").filter(|b| !b.is_empty()) {
        return PathBuf::from(bin);
    }
    let sandbox = PathBuf::from(env!("CARGO_BIN_EXE_sitg-sandbox"));
    let bin = sandbox.with_file_name("sitg-bot");
    assert!(
        bin.exists(),
        "{} missing: build it with `cargo build -p sitg-bot` (plain `cargo test` in the \
         workspace root does) or set SITG_BOT_BIN",
        bin.display()
    );
    bin
}

#[test]
fn dev_once_runs_the_fleet_and_prints_the_account() {
    let out = Command::new(env!("CARGO_BIN_EXE_sitg-sandbox"))
        .args(["dev", "--once", "--port", "0", "--worker-bin"])
        .arg(worker_bin())
        .env(
            "SITG_WEBHOOK_EXAMPLES",
            sitg_sandbox::examples::default_dir(),
        )
        .output()
        .expect("sitg-sandbox runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {}:\n{stdout}\n{stderr}",
        out.status
    );

    let secret = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("webhook secret"))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no webhook secret line:\n{stdout}"));
    assert_eq!(secret.len(), 64, "{secret:?}");
    assert!(secret.chars().all(|c| c.is_ascii_hexdigit()), "{secret:?}");
    assert!(
        stdout.contains(&format!("-hmac '{secret}'")),
        "the signing example uses the printed secret:\n{stdout}"
    );
    for expected in [
        "dev-worker-1",
        "dev-worker-2",
        "pull_request.opened",
        "forwarded, ingest",
        "ignored (",
        "(wrong secret)",
        "pull request Codertocat/Hello-World#7 closed",
        " done, 1 failed",
        "signature replays refused by the backend: 0",
        "Stopped; actions left claimed: 0.",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    let wrong = stdout
        .lines()
        .find(|l| l.contains("(wrong secret)"))
        .unwrap_or_default();
    assert!(wrong.contains(" 401 "), "{wrong}");
}
