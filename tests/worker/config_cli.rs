//! The worker binary refuses bad configuration with one line naming the variable and a
//! non-zero exit, and never prints a secret.

use std::process::Command;

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
        let (code, text) = run(&with(&base_env(), var, value));
        assert_eq!(code, 2, "{var}: {text}");
        let line = text.trim();
        assert!(
            line.starts_with(&format!("sitg-bot: {var} ")) && !line.contains('\n'),
            "{var}: {text}"
        );
        assert!(!text.contains("do-not-print"), "{var} value leaked: {text}");
    }
}
