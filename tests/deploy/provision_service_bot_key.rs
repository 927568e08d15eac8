//! `deploy/scripts/provision-service-bot-key.sh` against a real PostgreSQL (a
//! throw-away cluster per test, from Debian's `postgresql` package), with the table of
//! `deploy/sql/service_bot_keys.sql`.
//!
//! The proof that matters: a request the worker signs with the printed secret
//! (`sitg_bot::backend::RequestSigner`) verifies against the stored row the way the
//! backend checks it, knowing only `secret_hash` (contract §1.1: the HMAC key is the
//! SHA-256 digest whose hex the row stores).

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::*;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use sitg_bot::backend::{RequestSigner, SignedMessage};
use sitg_bot::secret::SecretString;

const SCRIPT: &str = "deploy/scripts/provision-service-bot-key.sh";

/// The PostgreSQL server binaries: `$SITG_PG_BIN_DIR`, else the newest
/// /usr/lib/postgresql/<major>/bin (Debian's layout), else `initdb` on PATH.
fn pg_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SITG_PG_BIN_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|bin| bin.join("initdb").exists())
        .max_by_key(|bin| {
            bin.parent()
                .and_then(|p| p.file_name())
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse::<u32>().ok())
                .unwrap_or(0)
        });
    debian
        .or_else(|| on_path("initdb").and_then(|p| p.parent().map(Path::to_path_buf)))
        .expect(
            "PostgreSQL server binaries not found: scripts/install-ship-deps.sh (apt: postgresql)",
        )
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A PostgreSQL cluster in a temporary directory on a free loopback port, with the
/// `service_bot_keys` table; stopped on drop.
struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Postgres {
    fn start() -> Self {
        let bin = pg_bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("sitg-pg.")
            .tempdir()
            .expect("tempdir");
        if running_as_root() {
            // initdb refuses to run as root: the cluster belongs to user postgres.
            let uid = run_ok(
                Command::new("id").args(["-u", "postgres"]),
                "id -u postgres",
            );
            let gid = run_ok(
                Command::new("id").args(["-g", "postgres"]),
                "id -g postgres",
            );
            std::os::unix::fs::chown(
                dir.path(),
                Some(uid.trim().parse().expect("uid")),
                Some(gid.trim().parse().expect("gid")),
            )
            .expect("chown the cluster directory to postgres");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let pg = Self { dir, bin, port };
        let data = pg.dir.path().join("data");
        run_ok(
            &mut pg.as_owner(
                "initdb",
                &[
                    "-D",
                    data.to_str().expect("utf-8"),
                    "--auth=trust",
                    "--username=postgres",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
            ),
            "initdb",
        );
        let options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            pg.dir.path().display()
        );
        let log = pg.dir.path().join("postgres.log");
        run_ok(
            &mut pg.as_owner(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().expect("utf-8"),
                    "-o",
                    &options,
                    "-l",
                    log.to_str().expect("utf-8"),
                    "-w",
                    "start",
                ],
            ),
            "pg_ctl start",
        );
        pg.psql("postgres", &["-c", "CREATE DATABASE sitg"]);
        let schema = repo_path("deploy/sql/service_bot_keys.sql");
        pg.psql("sitg", &["-f", schema.to_str().expect("utf-8")]);
        pg
    }

    /// `BIN/program args`, as user postgres when this process is root.
    fn as_owner(&self, program: &str, args: &[&str]) -> Command {
        let exe = self.bin.join(program);
        if running_as_root() {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(exe).args(args);
            cmd
        } else {
            let mut cmd = Command::new(exe);
            cmd.args(args);
            cmd
        }
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/sitg", self.port)
    }

    fn psql(&self, db: &str, args: &[&str]) -> String {
        let url = format!("postgres://postgres@127.0.0.1:{}/{db}", self.port);
        run_ok(
            Command::new("psql")
                .args(["--no-psqlrc", "--quiet", "--no-align", "--tuples-only"])
                .args(["--set", "ON_ERROR_STOP=1", "--dbname", &url])
                .args(args),
            "psql",
        )
    }

    /// The row of `key_id`, or None.
    fn row(&self, key_id: &str) -> Option<Row> {
        // key_id is a test constant of safe characters; the separator is not in any value.
        let out = self.psql(
            "sitg",
            &[
                "--field-separator=|",
                "-c",
                &format!(
                    "SELECT key_id, secret_hash, active, revoked_at IS NOT NULL, \
                     extract(epoch FROM created_at)::bigint FROM service_bot_keys WHERE key_id = '{key_id}'"
                ),
            ],
        );
        let line = out.lines().next()?;
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 5, "row: {line}");
        Some(Row {
            key_id: fields[0].to_owned(),
            secret_hash: fields[1].to_owned(),
            active: fields[2] == "t",
            revoked: fields[3] == "t",
            created_at: fields[4].parse().expect("epoch"),
        })
    }

    fn count(&self) -> usize {
        self.psql("sitg", &["-c", "SELECT count(*) FROM service_bot_keys"])
            .trim()
            .parse()
            .expect("count")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self
            .as_owner(
                "pg_ctl",
                &[
                    "-D",
                    data.to_str().unwrap_or_default(),
                    "-m",
                    "immediate",
                    "stop",
                ],
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[derive(Debug)]
struct Row {
    key_id: String,
    secret_hash: String,
    active: bool,
    revoked: bool,
    created_at: i64,
}

/// Runs the script with `args`, an optional stdin, and `DATABASE_URL` if given.
fn provision(args: &[&str], database_url: Option<&str>, stdin: Option<&str>) -> Output {
    let mut cmd = Command::new(repo_path(SCRIPT));
    cmd.args(args).env_remove("DATABASE_URL");
    if let Some(url) = database_url {
        cmd.env("DATABASE_URL", url);
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run the provisioning script");
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(text) = stdin {
            pipe.write_all(text.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("script output")
}

/// The printed env block: exactly the three variables, in order.
fn env_block(out: &Output) -> (String, String) {
    assert!(
        out.status.success(),
        "script failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout.clone()).expect("utf-8");
    let lines: Vec<(&str, &str)> = stdout
        .lines()
        .map(|l| l.split_once('=').expect("KEY=value line"))
        .collect();
    let keys: Vec<&str> = lines.iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "BACKEND_BOT_KEY_ID",
            "BACKEND_INTERNAL_HMAC_SECRET",
            "BACKEND_SERVICE_TOKEN"
        ]
    );
    assert_eq!(lines[2].1, "", "BACKEND_SERVICE_TOKEN is printed empty");
    (lines[0].1.to_owned(), lines[1].1.to_owned())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// The backend's check of contract §1.1, knowing only the stored row: the key is the
/// 32 bytes whose hex follows `sha256:`; the signature must equal
/// HMAC-SHA256(key, "{timestamp}.{message}").
fn backend_verifies(
    secret_hash: &str,
    timestamp: &str,
    message: &str,
    signature_header: &str,
) -> bool {
    let hex_key = secret_hash
        .strip_prefix("sha256:")
        .expect("secret_hash starts with sha256:");
    let key = hex::decode(hex_key).expect("hex digest");
    assert_eq!(key.len(), 32, "a SHA-256 digest");
    let Some(signature) = signature_header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut mac = <Hmac<Sha256> as hmac::KeyInit>::new_from_slice(&key).expect("any key length");
    mac.update(format!("{timestamp}.{message}").as_bytes());
    mac.verify_slice(&signature).is_ok()
}

/// Signs a claim as the worker does with the printed variables and checks it the way
/// the backend does against the stored row.
fn worker_request_verifies(row: &Row, key_id: &str, secret: &str) -> bool {
    let signer = RequestSigner::new(key_id, &SecretString::new(secret.to_owned()));
    let message = SignedMessage::Claim {
        worker_id: "bot-worker-prod-1",
    }
    .to_string();
    let headers = signer.headers(now(), &message);
    assert_eq!(headers.key_id, row.key_id, "x-sitg-key-id names the row");
    backend_verifies(
        &row.secret_hash,
        &headers.timestamp,
        &message,
        &headers.signature,
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn help_and_input_validation_without_a_database() {
    let help = provision(&["--help"], None, None);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--key-id",
        "--secret",
        "--database-url",
        "DATABASE_URL",
        "--only-print",
        "--rotate",
        "--help",
    ] {
        assert!(text.contains(flag), "--help mentions {flag}:\n{text}");
    }

    let secret = "0123456789abcdef0123456789abcdef-given";
    let out = provision(
        &[
            "--only-print",
            "--key-id",
            "bck_test_print",
            "--secret",
            secret,
        ],
        None,
        None,
    );
    assert_eq!(
        env_block(&out),
        ("bck_test_print".to_owned(), secret.to_owned())
    );
    assert!(stderr(&out).is_empty(), "--only-print writes nothing else");

    // Generated values: a bck_live_ key id and 64 hex characters of secret, fresh each time.
    let (id1, secret1) = env_block(&provision(&["--only-print"], None, None));
    let (id2, secret2) = env_block(&provision(&["--only-print"], None, None));
    assert!(id1.starts_with("bck_live_") && id1 != id2);
    assert!(
        secret1.len() == 64 && secret1.chars().all(|c| c.is_ascii_hexdigit()) && secret1 != secret2
    );

    let short = "too-short-secret";
    let refusals: &[(&[&str], Option<&str>, &str)] = &[
        (
            &["--only-print", "--key-id", "bad id"],
            None,
            "--key-id must match",
        ),
        (
            &["--only-print", "--key-id", "-leading-dash"],
            None,
            "--key-id must match",
        ),
        (
            &["--only-print", "--secret", short],
            None,
            "the secret must be 32 to 512",
        ),
        (
            &[
                "--only-print",
                "--secret",
                "0123456789abcdef0123456789abcdef'x",
            ],
            None,
            "the secret must be",
        ),
        (&["--key-id", "bck_x"], None, "no database"),
        (
            &["--key-id", "bck_x"],
            Some("mysql://db/sitg"),
            "postgres:// or postgresql://",
        ),
        (
            &["--rotate"],
            Some("postgres://127.0.0.1/x"),
            "--rotate needs --key-id",
        ),
        (
            &[
                "--revoke",
                "--key-id",
                "bck_x",
                "--secret",
                "0123456789abcdef0123456789abcdef",
            ],
            Some("postgres://127.0.0.1/x"),
            "--revoke takes no secret",
        ),
        (
            &["--rotate", "--revoke", "--key-id", "bck_x"],
            None,
            "choose one of",
        ),
        (&["--frobnicate"], None, "unknown argument"),
    ];
    for (args, url, expected) in refusals {
        let out = provision(args, *url, None);
        assert_eq!(out.status.code(), Some(2), "{args:?} exits 2");
        let message = stderr(&out);
        assert!(
            message.contains(expected),
            "{args:?}: expected {expected:?} in {message}"
        );
        assert!(out.stdout.is_empty(), "{args:?} prints no env block");
        assert!(
            !message.contains(short),
            "a refused secret is not echoed: {message}"
        );
    }
}

#[test]
fn created_key_verifies_worker_signatures_as_the_backend_checks_them() {
    let pg = Postgres::start();
    // As in the deployment guide: only DATABASE_URL, everything else generated.
    let before = now() as i64;
    let out = provision(&[], Some(&pg.url()), None);
    let (key_id, secret) = env_block(&out);
    let row = pg.row(&key_id).expect("the row exists");
    assert_eq!(row.key_id, key_id);
    let digest = hex::encode(Sha256::digest(secret.as_bytes()));
    assert_eq!(
        row.secret_hash,
        format!("sha256:{digest}"),
        "sha256: + hex(SHA-256(secret))"
    );
    assert!(row.active && !row.revoked);
    assert!(
        (before - 5..=now() as i64 + 5).contains(&row.created_at),
        "created_at is now"
    );

    // The secret is printed once, in the env block; neither it nor the hash (which is
    // the HMAC key) appears in the messages.
    let messages = stderr(&out);
    assert!(
        messages.contains(&format!("created service bot key {key_id}")),
        "{messages}"
    );
    assert!(
        !messages.contains(&secret) && !messages.contains(&digest),
        "{messages}"
    );

    assert!(
        worker_request_verifies(&row, &key_id, &secret),
        "signed with the printed secret"
    );
    assert!(
        !worker_request_verifies(&row, &key_id, &format!("{secret}x")),
        "another secret does not verify"
    );

    // The same key id again: refused, row untouched.
    let again = provision(&["--key-id", &key_id], Some(&pg.url()), None);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr(&again).contains("already exists: pass --rotate"));
    assert!(again.stdout.is_empty());
    assert_eq!(pg.row(&key_id).expect("row").secret_hash, row.secret_hash);
    assert_eq!(pg.count(), 1);

    // --database-url works as DATABASE_URL does.
    let out = provision(
        &["--database-url", &pg.url(), "--key-id", "bck_test_flag"],
        None,
        None,
    );
    let (flag_id, flag_secret) = env_block(&out);
    let flag_row = pg
        .row(&flag_id)
        .expect("row created through --database-url");
    assert!(worker_request_verifies(&flag_row, &flag_id, &flag_secret));

    // A database that cannot be reached: exit 1, no env block.
    let out = provision(
        &["--key-id", "bck_test_down"],
        Some("postgres://postgres@127.0.0.1:1/sitg"),
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
}

#[test]
fn rotation_keeps_the_key_id_and_replaces_the_hash_then_revocation_refuses_it() {
    let pg = Postgres::start();
    let key_id = "bck_test_rotate";
    let first = "first-secret-0123456789abcdef0123456789";
    let second = "second-secret-0123456789abcdef012345678";

    // Secrets from a file and from stdin keep them off the command line.
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), format!("{first}\n")).expect("write");
    let out = provision(
        &[
            "--key-id",
            key_id,
            "--secret-file",
            file.path().to_str().expect("utf-8"),
        ],
        Some(&pg.url()),
        None,
    );
    assert_eq!(env_block(&out), (key_id.to_owned(), first.to_owned()));
    let created = pg.row(key_id).expect("row");
    assert!(worker_request_verifies(&created, key_id, first));

    std::thread::sleep(Duration::from_millis(1100));
    let out = provision(
        &["--rotate", "--key-id", key_id, "--secret-file", "-"],
        Some(&pg.url()),
        Some(second),
    );
    assert_eq!(env_block(&out), (key_id.to_owned(), second.to_owned()));
    assert!(stderr(&out).contains("previous secret no longer verifies"));
    let rotated = pg.row(key_id).expect("row");
    assert_eq!(pg.count(), 1, "rotation replaces, never adds");
    assert_eq!(rotated.key_id, key_id);
    assert_ne!(rotated.secret_hash, created.secret_hash, "a new hash");
    assert_eq!(rotated.created_at, created.created_at, "the same row");
    assert!(rotated.active && !rotated.revoked);
    assert!(
        worker_request_verifies(&rotated, key_id, second),
        "the new secret verifies"
    );
    assert!(
        !worker_request_verifies(&rotated, key_id, first),
        "the old secret no longer does"
    );

    let missing = provision(
        &["--rotate", "--key-id", "bck_test_missing"],
        Some(&pg.url()),
        None,
    );
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("no key bck_test_missing to rotate"));
    assert_eq!(pg.count(), 1);

    let out = provision(&["--revoke", "--key-id", key_id], Some(&pg.url()), None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "revocation prints no secret");
    let revoked = pg.row(key_id).expect("row");
    assert!(!revoked.active && revoked.revoked);
    assert_eq!(revoked.secret_hash, rotated.secret_hash);
}
