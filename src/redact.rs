//! Credential redaction: the one place every text that leaves the process through a log
//! line or a report to the backend passes, so a peer's error body that echoes a request
//! (proxies and some GitHub Enterprise error pages do) can never carry a credential out.
//!
//! The process registers each credential it holds *by value* when it gets it:
//! `GITHUB_WEBHOOK_SECRET` (and the previous one), `BACKEND_INTERNAL_HMAC_SECRET`,
//! `BACKEND_SERVICE_TOKEN`, `GITHUB_APP_PRIVATE_KEY`, every App JWT it signs and every
//! installation access token it is given. [`redact`] replaces each registered value (and
//! its JSON-escaped form, as it appears inside a JSON log line) by `[redacted]`, and
//! also every request signature (`sha256=` followed by 64 hex digits: the backend's
//! `x-sitg-signature`, GitHub's `X-Hub-Signature-256`), whose values change with every
//! request. [`peer_text`] does the same and caps the text at [`MAX_PEER_TEXT_BYTES`];
//! it is what a peer's error `message` goes through before it is kept in an error.
//!
//! Used by: the log writer (`crate::telemetry`, every line, on the writer thread),
//! GitHub's error `message` (`crate::github`), the backend's `error.code`/`message`
//! and the `failure_message` of every result report (`crate::backend`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::OnceLock;

use parking_lot::RwLock;
use regex::Regex;

/// What a redacted credential is replaced by.
pub const REDACTED: &str = "[redacted]";

/// The most bytes of peer-supplied text kept (in errors, logs and `failure_message`).
pub const MAX_PEER_TEXT_BYTES: usize = 512;

/// Values shorter than this are not registered: replacing every occurrence of a
/// two-letter string would garble the log, and a credential that short protects nothing.
pub const MIN_REDACTED_LEN: usize = 8;

/// A request signature: `sha256=` and 64 hex digits.
const SIGNATURE_PATTERN: &str = r"sha256=[0-9a-fA-F]{64}";

struct Registry {
    /// Slot name (e.g. `installation_token:42`) → value.
    values: BTreeMap<String, String>,
    /// Bumped by every change of `values`.
    generation: u64,
    /// Matches every registered value and every signature.
    matcher: Option<Regex>,
}

static REGISTRY: RwLock<Registry> = RwLock::new(Registry {
    values: BTreeMap::new(),
    generation: 0,
    matcher: None,
});

/// The signature pattern alone, for before anything is registered.
static SIGNATURES: OnceLock<Option<Regex>> = OnceLock::new();

/// One pattern for every value (and its JSON-escaped form, as it appears inside a JSON
/// log line) and every signature.
fn compile(values: &[String]) -> Option<Regex> {
    let mut literals: Vec<String> = Vec::new();
    for value in values {
        literals.push(value.clone());
        if let Ok(quoted) = serde_json::to_string(value) {
            let escaped = &quoted[1..quoted.len() - 1];
            if escaped != value {
                literals.push(escaped.to_owned());
            }
        }
    }
    // Longest first: a value that contains another is replaced whole.
    literals.sort_by_key(|l| std::cmp::Reverse(l.len()));
    literals.dedup();
    let mut pattern = String::from(SIGNATURE_PATTERN);
    for literal in &literals {
        pattern.push('|');
        pattern.push_str(&regex::escape(literal));
    }
    // Escaped literals and a fixed pattern always compile; the size limit is far above
    // any real set (thousands of installation tokens of 40 bytes).
    regex::RegexBuilder::new(&pattern)
        .size_limit(256 * 1024 * 1024)
        .build()
        .ok()
}

fn registry_write() -> parking_lot::RwLockWriteGuard<'static, Registry> {
    REGISTRY.write()
}

/// Applies `change` to the values; when it changed them, compiles the new pattern
/// outside the lock (log lines keep being redacted with the old one meanwhile) and
/// installs it unless a later change already did.
fn update(change: impl FnOnce(&mut BTreeMap<String, String>) -> bool) {
    let (values, generation) = {
        let mut registry = registry_write();
        if !change(&mut registry.values) && registry.matcher.is_some() {
            return;
        }
        registry.generation += 1;
        let values: Vec<String> = registry.values.values().cloned().collect();
        (values, registry.generation)
    };
    let matcher = compile(&values);
    let mut registry = registry_write();
    if registry.generation == generation {
        registry.matcher = matcher;
    }
}

/// Registers `value` under `slot`, replacing what the slot held. Empty values and
/// values shorter than [`MIN_REDACTED_LEN`] bytes are not registered (the slot is
/// cleared).
pub fn remember(slot: impl Into<String>, value: &str) {
    let slot = slot.into();
    update(|values| {
        if value.len() < MIN_REDACTED_LEN {
            values.remove(&slot).is_some()
        } else {
            values.insert(slot, value.to_owned()).as_deref() != Some(value)
        }
    });
}

/// Registers `value` under `slot` and keeps the slot's previous value under
/// `{slot}:previous`: for credentials that are replaced while the old one may still be
/// in flight (App JWTs, installation access tokens).
pub fn remember_rotating(slot: &str, value: &str) {
    if value.len() < MIN_REDACTED_LEN {
        return;
    }
    update(|values| {
        if values.get(slot).map(String::as_str) == Some(value) {
            return false;
        }
        if let Some(old) = values.insert(slot.to_owned(), value.to_owned()) {
            values.insert(format!("{slot}:previous"), old);
        }
        true
    });
}

/// `text` with every registered credential and every request signature replaced by
/// [`REDACTED`]. Borrows when nothing matched.
pub fn redact(text: &str) -> Cow<'_, str> {
    let registry = REGISTRY.read();
    match &registry.matcher {
        Some(matcher) => match matcher.replace_all(text, REDACTED) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            Cow::Owned(owned) => Cow::Owned(owned),
        },
        // Nothing registered yet (or a pattern that did not build): signatures only.
        None => match SIGNATURES.get_or_init(|| Regex::new(SIGNATURE_PATTERN).ok()) {
            Some(signature) => match signature.replace_all(text, REDACTED) {
                Cow::Borrowed(_) => Cow::Borrowed(text),
                Cow::Owned(owned) => Cow::Owned(owned),
            },
            None => Cow::Borrowed(text),
        },
    }
}

/// Text a peer sent (an error `message`, `error.code`, a `failure_message`), made safe
/// to keep: `also` (credentials of the request at hand that are not registered, e.g.
/// the signature just sent) and every registered credential replaced by [`REDACTED`],
/// control characters but newline and tab replaced by spaces, then cut to at most
/// [`MAX_PEER_TEXT_BYTES`] bytes on a character boundary (ending in `…` when cut).
pub fn peer_text(text: &str, also: &[&str]) -> String {
    let mut out = text.to_owned();
    for value in also.iter().filter(|v| !v.is_empty()) {
        if out.contains(value) {
            out = out.replace(value, REDACTED);
        }
    }
    let mut out = redact(&out).into_owned();
    if out
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        out = out
            .chars()
            .map(|c| {
                if c.is_control() && c != '\n' && c != '\t' {
                    ' '
                } else {
                    c
                }
            })
            .collect();
    }
    cap(out, MAX_PEER_TEXT_BYTES)
}

/// `text` cut to at most `max` bytes on a character boundary, ending in `…` when cut.
pub fn cap(mut text: String, max: usize) -> String {
    const ELLIPSIS: &str = "…";
    if text.len() <= max {
        return text;
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(ELLIPSIS);
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_and_signatures_are_redacted() {
        remember("test:a", "svc-token-0123456789");
        remember_rotating("test:jwt", "eyJhbGciOiJSUzI1NiJ9.first.sig");
        remember_rotating("test:jwt", "eyJhbGciOiJSUzI1NiJ9.second.sig");
        let signature = format!("sha256={}", "ab".repeat(32));
        let text = format!(
            "authorization: Bearer svc-token-0123456789\nx-sitg-signature: {signature}\n\
             old eyJhbGciOiJSUzI1NiJ9.first.sig new eyJhbGciOiJSUzI1NiJ9.second.sig"
        );
        let out = redact(&text);
        for secret in [
            "svc-token-0123456789",
            signature.as_str(),
            "first.sig",
            "second.sig",
        ] {
            assert!(!out.contains(secret), "{secret} in {out}");
        }
        assert!(out.contains("authorization: Bearer [redacted]"), "{out}");
        assert_eq!(redact("nothing secret here"), "nothing secret here");
    }

    #[test]
    fn json_escaped_forms_are_redacted_too() {
        remember("test:quoted", "pa\"ss\\word-with-quotes");
        let line = serde_json::json!({ "error": "echo pa\"ss\\word-with-quotes" }).to_string();
        let out = redact(&line);
        assert!(!out.contains("word-with-quotes"), "{out}");
    }

    #[test]
    fn short_values_are_not_registered() {
        remember("test:short", "abc");
        assert_eq!(redact("abc abc"), "abc abc");
    }

    #[test]
    fn peer_text_is_capped_on_a_char_boundary_after_redaction() {
        let long = "é".repeat(600);
        let out = peer_text(&long, &[]);
        assert!(out.len() <= MAX_PEER_TEXT_BYTES, "{}", out.len());
        assert!(out.ends_with('…'));
        let secret = "request-only-credential";
        let text = format!("{}{secret}", "x".repeat(500));
        // Redacted before the cut: no prefix of the credential survives.
        let out = peer_text(&text, &[secret]);
        assert!(!out.contains("request-only"), "{out}");
        assert_eq!(peer_text("a\u{1}b\nc", &[]), "a b\nc");
    }
}
