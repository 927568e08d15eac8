//! The log line check shared by the worker and operator tests (issue 13, item 5): a
//! line reads well in a log pipeline when it is a JSON object with a non-empty human
//! `message` and no Rust `Debug` rendering (`Some(…)`, `None`, `Namespace("…")`,
//! `Created { … }`, `["…"]`) in a value.

use serde_json::Value;

/// Why `value` looks like a Rust `Debug` rendering rather than a loggable value.
fn debug_rendering(value: &str) -> Option<&'static str> {
    let struct_like = regex::Regex::new(r"\b[A-Z][A-Za-z]+ \{ [a-z_]+: ").expect("regex");
    let tuple_like = regex::Regex::new(r#"\b[A-Z][A-Za-z]+\("|\b(Some|Ok|Err)\("#).expect("regex");
    if value == "None" {
        Some("None")
    } else if tuple_like.is_match(value) {
        Some("a tuple variant")
    } else if struct_like.is_match(value) {
        Some("a struct")
    } else if value.starts_with("[\"") && value.ends_with("\"]") {
        Some("a Vec")
    } else {
        None
    }
}

/// Problems of one JSON log line, empty when it is fine: not a JSON object, no
/// non-empty `message`, no `event` (when `require_event`; lines of dependencies have
/// none), or a string value that is a `Debug` rendering.
pub fn problems(line: &str, require_event: bool) -> Vec<String> {
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(line) else {
        return vec!["not a JSON object".to_owned()];
    };
    let mut found = Vec::new();
    match fields.get("message").and_then(Value::as_str) {
        Some(message) if !message.trim().is_empty() => {}
        _ => found.push("no message".to_owned()),
    }
    if require_event && fields.get("event").and_then(Value::as_str).is_none() {
        found.push("no event".to_owned());
    }
    for (key, value) in &fields {
        if let Some(kind) = value.as_str().and_then(debug_rendering) {
            found.push(format!("{key} is {kind}"));
        }
    }
    found
}

#[test]
fn the_checker_catches_the_renderings_it_is_for() {
    let line = r#"{"event":"x","message":"m","a":"Some(127.0.0.1:9)","b":"Namespace(\"bots\")","c":"None","d":"Created { comment_id: 1 }","e":"[\"Secret\"]"}"#;
    assert_eq!(problems(line, true).len(), 5, "{:?}", problems(line, true));
    assert_eq!(problems(r#"{"event":"x"}"#, true), ["no message"]);
    let fine = r#"{"event":"x","message":"m","error":"error sending request (connection refused)","addr":"127.0.0.1:9"}"#;
    assert!(
        problems(fine, true).is_empty(),
        "{:?}",
        problems(fine, true)
    );
}
