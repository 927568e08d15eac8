//! The worker binary refuses bad configuration with one line per bad variable, naming
//! it, and exit code 2, and never prints a secret; `sitg-bot worker --help` lists every
//! variable with its default and accepted values.

use std::process::Command;

use sitg_bot::contract::env;

const SECRET_WEBHOOK: &str = "webhook-secret-do-not-print";
const SECRET_HMAC: &str = "hmac-secret-do-not-print";

fn base_env() -> Vec<(&'static str, String)> {
    vec![
        ("PORT", "38999".to_owned()),
        ("GITHUB_WEBHOOK_SECRET", SECRET_WEBHOOK.to_owned()),
        ("GITHUB_APP_ID", "4242".to_owned()),
        (
            "GITHUB_APP_PRIVATE_KEY",
            "-----BEGIN RSA PRIVATE KEY-----\\nnot-really-a-key\\n-----END RSA PRIVATE KEY-----"
                .to_owned(),
        ),
        ("BACKEND_BASE_URL", "http://127.0.0.1:9".to_owned()),
        ("BACKEND_BOT_KEY_ID", "bck_test".to_owned()),
        ("BACKEND_INTERNAL_HMAC_SECRET", SECRET_HMAC.to_owned()),
    ]
}

fn run(env: &[(&str, String)]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
        .arg("worker")
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

fn with(
    env: &[(&'static str, String)],
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| *k != key).cloned().collect();
    if !value.is_empty() {
        env.push((key, value.to_owned()));
    }
    env
}

#[test]
fn a_missing_variable_is_named_on_one_line() {
    let (code, text) = run(&with(&base_env(), "BACKEND_BOT_KEY_ID", ""));
    assert_eq!(code, 2);
    assert_eq!(
        text.trim(),
        "sitg-bot: BACKEND_BOT_KEY_ID is required but not set"
    );
}

#[test]
fn an_invalid_value_names_the_variable_and_the_rule() {
    let (code, text) = run(&with(&base_env(), "OUTBOX_CLAIM_LIMIT", "0"));
    assert_eq!(code, 2);
    assert_eq!(
        text.trim(),
        "sitg-bot: OUTBOX_CLAIM_LIMIT must be 1..100, got \"0\""
    );
}

#[test]
fn an_unusable_private_key_is_refused_without_echoing_it() {
    let (code, text) = run(&base_env());
    assert_ne!(code, 0);
    assert!(text.contains("GITHUB_APP_PRIVATE_KEY"), "{text}");
    for secret in ["not-really-a-key", SECRET_WEBHOOK, SECRET_HMAC] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

#[test]
fn an_unparsable_log_filter_is_reported_not_silently_dropped() {
    // The key is not usable, so the worker stops right after logging starts; the
    // warning must be out by then.
    let (code, text) = run(&with(&base_env(), "RUST_LOG", "[[["));
    assert_ne!(code, 0);
    let warning = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["event"] == "log_filter_invalid")
        .unwrap_or_else(|| panic!("no log_filter_invalid line in:\n{text}"));
    assert_eq!(warning["variable"], "RUST_LOG");
    assert_eq!(warning["level"], "WARN");
}

#[test]
fn header_values_with_control_characters_are_refused_without_echoing_them() {
    for (var, value) in [
        ("BACKEND_SERVICE_TOKEN", "svc-token-do-not-print\u{1}x"),
        (
            "BACKEND_SERVICE_TOKEN",
            "svc-token-do-not-print\r\nx-injected: 1",
        ),
        ("BACKEND_BOT_KEY_ID", "bck-do-not-print\u{7f}"),
        ("BACKEND_BOT_KEY_ID", "bck-do-not-print\tx"),
    ] {
        assert_refused_without_echo(var, value);
    }
}

/// Starting with `var=value` exits 2 with one line naming `var` and not the value (every
/// test value holds `do-not-print`).
fn assert_refused_without_echo(var: &'static str, value: &str) {
    let (code, text) = run(&with(&base_env(), var, value));
    assert_eq!(code, 2, "{var}: {text}");
    let line = text.trim();
    assert!(
        line.starts_with(&format!("sitg-bot: {var} ")) && !line.contains('\n'),
        "{var}: {text}"
    );
    assert!(!text.contains("do-not-print"), "{var} value leaked: {text}");
}

#[test]
fn webhook_secrets_with_a_control_character_inside_are_refused_without_echoing_them() {
    for var in ["GITHUB_WEBHOOK_SECRET", "GITHUB_WEBHOOK_SECRET_PREVIOUS"] {
        for value in ["whsec-do-not-print\nrest", "whsec-do-not-print\u{1}"] {
            assert_refused_without_echo(var, value);
        }
    }
}

#[test]
fn three_bad_variables_are_reported_together_on_their_own_lines() {
    let mut env = with(&base_env(), "BACKEND_BOT_KEY_ID", "");
    env = with(&env, "OUTBOX_CLAIM_LIMIT", "0");
    env = with(&env, "BACKEND_SERVICE_TOKEN", "svc-token-do-not-print\u{1}");
    let (code, text) = run(&env);
    assert_eq!(code, 2, "{text}");
    let lines: Vec<&str> = text.trim().lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(
        lines[0], "sitg-bot: BACKEND_BOT_KEY_ID is required but not set",
        "{text}"
    );
    assert!(
        lines[1].starts_with("sitg-bot: BACKEND_SERVICE_TOKEN contains a control character"),
        "{text}"
    );
    assert_eq!(
        lines[2], "sitg-bot: OUTBOX_CLAIM_LIMIT must be 1..100, got \"0\"",
        "{text}"
    );
    for secret in [
        "do-not-print",
        "not-really-a-key",
        SECRET_WEBHOOK,
        SECRET_HMAC,
    ] {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

/// What the help must say of each variable of `contract::env::ALL`, written out here
/// from the contract's constants so a variable added without help fails this test.
fn expected_defaults() -> Vec<(&'static str, String)> {
    let required = || "required".to_owned();
    let default = |v: &dyn std::fmt::Display| format!("default: {v}");
    vec![
        (env::BIND_ADDRESS, default(&"0.0.0.0")),
        (env::PORT, required()),
        (env::METRICS_PORT, default(&"unset")),
        (env::GITHUB_WEBHOOK_SECRET, required()),
        (env::GITHUB_WEBHOOK_SECRET_PREVIOUS, default(&"unset")),
        (env::GITHUB_APP_ID, required()),
        (env::GITHUB_APP_PRIVATE_KEY, required()),
        (
            env::GITHUB_API_BASE_URL,
            default(&env::DEFAULT_GITHUB_API_BASE_URL),
        ),
        (env::BACKEND_BASE_URL, required()),
        (env::BACKEND_BOT_KEY_ID, required()),
        (env::BACKEND_INTERNAL_HMAC_SECRET, required()),
        (env::BACKEND_SERVICE_TOKEN, default(&"unset")),
        (env::WORKER_ID, default(&"host name")),
        (env::OUTBOX_POLLING_ENABLED, default(&true)),
        (env::OUTBOX_CLAIM_ON_EVENT, default(&true)),
        (
            env::OUTBOX_POLL_INTERVAL_MS,
            default(&env::DEFAULT_POLL_INTERVAL_MS),
        ),
        (env::OUTBOX_CLAIM_LIMIT, default(&env::DEFAULT_CLAIM_LIMIT)),
        (env::OUTBOX_CONCURRENCY, default(&env::DEFAULT_CONCURRENCY)),
        (
            env::SHUTDOWN_TIMEOUT_SECONDS,
            default(&env::DEFAULT_SHUTDOWN_TIMEOUT_SECONDS),
        ),
        (
            env::SHUTDOWN_DRAIN_SECONDS,
            default(&env::DEFAULT_SHUTDOWN_DRAIN_SECONDS),
        ),
        (
            env::HTTP_MAX_CONNECTIONS,
            default(&env::DEFAULT_HTTP_MAX_CONNECTIONS),
        ),
        (
            env::HTTP_HEADER_READ_TIMEOUT_SECONDS,
            default(&env::DEFAULT_HTTP_HEADER_READ_TIMEOUT_SECONDS),
        ),
        (
            env::HTTP_REQUEST_HEAD_TIMEOUT_SECONDS,
            default(&env::DEFAULT_HTTP_REQUEST_HEAD_TIMEOUT_SECONDS),
        ),
        (
            env::WEBHOOK_BUFFER_LIMIT_MB,
            default(&env::DEFAULT_WEBHOOK_BUFFER_LIMIT_MB),
        ),
        (env::WORKER_STATE_DIR, default(&"unset")),
        (env::STATE_DIRECTORY, default(&"unset")),
        (env::LOG_FORMAT, default(&"json")),
        (env::RUST_LOG, default(&env::DEFAULT_LOG_LEVEL)),
    ]
}

#[test]
fn help_lists_every_variable_with_its_default_and_no_secret_value() {
    let expected = expected_defaults();
    let names: Vec<&str> = expected.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        names,
        env::ALL,
        "the test's list must follow contract::env::ALL"
    );
    // The secrets of the environment must not show, whatever --help prints.
    let out = Command::new(env!("CARGO_BIN_EXE_sitg-bot"))
        .args(["worker", "--help"])
        .env_clear()
        .envs(base_env())
        .output()
        .expect("binary runs");
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    for (name, default) in &expected {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("{name} is not in the help:\n{text}"));
        assert!(line.contains(default.as_str()), "{name}: {line}");
    }
    for secret in [
        env::GITHUB_WEBHOOK_SECRET,
        env::GITHUB_WEBHOOK_SECRET_PREVIOUS,
        env::GITHUB_APP_PRIVATE_KEY,
        env::BACKEND_INTERNAL_HMAC_SECRET,
        env::BACKEND_SERVICE_TOKEN,
    ] {
        assert!(
            text.contains(&format!("  {secret} (secret) ")),
            "{secret} not marked secret:\n{text}"
        );
    }
    for value in [SECRET_WEBHOOK, SECRET_HMAC, "not-really-a-key"] {
        assert!(!text.contains(value), "{value} leaked: {text}");
    }
}
