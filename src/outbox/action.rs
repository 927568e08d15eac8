//! Validation of claimed actions and rendering of the comment body (contract §2).
//!
//! An action that fails validation is reported `FAILED` with a code and is never turned
//! into a request URL.

use chrono::{DateTime, Utc};

use crate::backend::types::ClaimedAction;
use crate::contract::{FailureCode, RepoFullName};

/// GitHub's limit on an issue comment body, in characters.
pub const GITHUB_COMMENT_LIMIT: usize = 65_536;

/// The two action types of contract §1.4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionKind {
    /// `UPSERT_PR_COMMENT`
    UpsertPrComment,
    /// `CLOSE_PR_WITH_COMMENT`
    ClosePrWithComment,
}

impl ActionKind {
    /// Every action type: [`validate`] accepts these names, and
    /// `sitg_bot_outbox_action_duration_seconds` has a series for each from the start.
    pub const ALL: [Self; 2] = [Self::UpsertPrComment, Self::ClosePrWithComment];

    /// The wire name, also the `action_type` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UpsertPrComment => "UPSERT_PR_COMMENT",
            Self::ClosePrWithComment => "CLOSE_PR_WITH_COMMENT",
        }
    }
}

/// A claimed action whose every field checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidAction {
    pub id: String,
    pub kind: ActionKind,
    pub installation_id: u64,
    pub repo: RepoFullName,
    pub pr_number: u64,
    /// The marker as it appears in the comment: `<!-- {comment_marker} -->`.
    pub marker: String,
    /// The full comment body: trimmed markdown, a blank line, the marker; cut to
    /// GitHub's limit when needed.
    pub body: String,
    /// How many times the backend has handed this action out, this claim included.
    pub attempts: u32,
}

/// Why an action cannot be executed: reported `FAILED` with `code`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct InvalidAction {
    pub code: FailureCode,
    pub message: String,
}

fn invalid(message: impl Into<String>) -> InvalidAction {
    InvalidAction {
        code: FailureCode::InvalidActionPayload,
        message: message.into(),
    }
}

fn positive(value: &serde_json::Value, field: &str) -> Result<u64, InvalidAction> {
    match value.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => Err(invalid(format!("{field} must be a positive integer"))),
    }
}

fn non_empty<'a>(payload: &'a serde_json::Value, field: &str) -> Result<&'a str, InvalidAction> {
    match payload.get(field).and_then(|v| v.as_str()) {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(invalid(format!(
            "payload.{field} must be a non-empty string"
        ))),
    }
}

/// Checks a claimed action against contract §2.
///
/// Returns `UNSUPPORTED_ACTION` for an unknown `action_type` and
/// `INVALID_ACTION_PAYLOAD` naming the field for anything else.
pub fn validate(action: &ClaimedAction) -> Result<ValidAction, InvalidAction> {
    let Some(name) = action.action_type.as_str() else {
        return Err(invalid("action_type must be a string"));
    };
    let kind = ActionKind::ALL
        .into_iter()
        .find(|k| k.as_str() == name)
        .ok_or_else(|| InvalidAction {
            code: FailureCode::UnsupportedAction,
            message: format!("action_type {name:?} is not supported"),
        })?;
    let installation_id = positive(&action.installation_id, "installation_id")?;
    let pr_number = positive(&action.github_pr_number, "github_pr_number")?;
    let repo_text = action
        .repo_full_name
        .as_str()
        .ok_or_else(|| invalid("repo_full_name must be a string"))?;
    let repo = RepoFullName::parse(repo_text)
        .map_err(|e| invalid(format!("repo_full_name is not owner/repo ({e})")))?;
    let markdown = non_empty(&action.payload, "comment_markdown")?;
    let marker = marker_html(non_empty(&action.payload, "comment_marker")?)?;
    let body = render_body(markdown, &marker)?;
    Ok(ValidAction {
        id: action.id.clone(),
        kind,
        installation_id,
        repo,
        pr_number,
        marker,
        body,
        attempts: action.attempts,
    })
}

/// The hidden HTML comment carrying `marker`: `<!-- {marker} -->`, or the marker itself
/// when it already is an HTML comment.
pub fn marker_html(marker: &str) -> Result<String, InvalidAction> {
    let marker = marker.trim();
    let inner = match marker.strip_prefix("<!--") {
        Some(rest) => rest.strip_suffix("-->").ok_or_else(|| {
            invalid("payload.comment_marker starts an HTML comment it does not end")
        })?,
        None => marker,
    };
    // Inside a comment, "--" could end it early and put text on the page; control
    // characters have no place in a marker.
    if inner.trim().is_empty() || inner.contains("--") || inner.chars().any(char::is_control) {
        return Err(invalid(
            "payload.comment_marker must be non-empty, without \"--\" or control characters",
        ));
    }
    Ok(format!("<!-- {} -->", inner.trim()))
}

/// Visible note placed where a too-long comment was cut.
const TRUNCATION_NOTE: &str = "\n\n_… this comment was shortened to fit GitHub's size limit._";

fn github_len(s: &str) -> usize {
    // GitHub counts UTF-16 code units; counting them never underestimates.
    s.encode_utf16().count()
}

/// Trimmed markdown, a blank line, the marker. A body over GitHub's 65,536-character
/// limit keeps the marker and as much of the markdown as fits, followed by a visible
/// note.
pub fn render_body(markdown: &str, marker: &str) -> Result<String, InvalidAction> {
    let markdown = markdown.trim();
    let full = format!("{markdown}\n\n{marker}");
    if github_len(&full) <= GITHUB_COMMENT_LIMIT {
        return Ok(full);
    }
    let reserved = github_len(TRUNCATION_NOTE) + 2 + github_len(marker);
    let Some(budget) = GITHUB_COMMENT_LIMIT.checked_sub(reserved) else {
        return Err(invalid(
            "payload.comment_marker is longer than a GitHub comment",
        ));
    };
    let mut used = 0;
    let mut cut = 0;
    for (index, ch) in markdown.char_indices() {
        let width = ch.len_utf16();
        if used + width > budget {
            break;
        }
        used += width;
        cut = index + ch.len_utf8();
    }
    Ok(format!(
        "{}{TRUNCATION_NOTE}\n\n{marker}",
        markdown[..cut].trim_end()
    ))
}

/// Seconds since the action's `created_at`; `None` when it is absent or not RFC 3339.
pub fn age_seconds(action: &ClaimedAction, now: DateTime<Utc>) -> Option<f64> {
    let created = DateTime::parse_from_rfc3339(action.created_at.as_deref()?).ok()?;
    let age = now.signed_duration_since(created.with_timezone(&Utc));
    Some((age.num_milliseconds().max(0) as f64) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claimed(overrides: serde_json::Value) -> ClaimedAction {
        let mut base = json!({
            "id": "6f1c1a40-0000-4000-8000-000000000001",
            "action_type": "UPSERT_PR_COMMENT",
            "installation_id": 123,
            "github_repo_id": 999,
            "repo_full_name": "org/repo",
            "github_pr_number": 42,
            "challenge_id": null,
            "payload": {"comment_markdown": "  Please stake.  \n", "comment_marker": "sitg:gate:abc"},
            "attempts": 1,
            "created_at": "2026-11-30T12:00:00Z"
        });
        for (k, v) in overrides.as_object().unwrap() {
            base[k] = v.clone();
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn a_valid_action_renders_body_and_marker() {
        let a = validate(&claimed(json!({}))).unwrap();
        assert_eq!(a.kind, ActionKind::UpsertPrComment);
        assert_eq!(a.installation_id, 123);
        assert_eq!(a.repo.to_string(), "org/repo");
        assert_eq!(a.pr_number, 42);
        assert_eq!(a.marker, "<!-- sitg:gate:abc -->");
        assert_eq!(a.body, "Please stake.\n\n<!-- sitg:gate:abc -->");
        let close = validate(&claimed(json!({"action_type": "CLOSE_PR_WITH_COMMENT"}))).unwrap();
        assert_eq!(close.kind, ActionKind::ClosePrWithComment);
    }

    #[test]
    fn a_marker_that_is_already_a_comment_is_kept() {
        let a = validate(&claimed(
            json!({"payload": {"comment_markdown": "x", "comment_marker": "<!-- sitg:gate:1 -->"}}),
        ))
        .unwrap();
        assert_eq!(a.marker, "<!-- sitg:gate:1 -->");
        assert_eq!(a.body, "x\n\n<!-- sitg:gate:1 -->");
    }

    #[test]
    fn every_action_kind_is_in_all_and_accepted_by_its_wire_name() {
        // Exhaustive on purpose (no wildcard): a new variant does not compile until it
        // is given a position, and the assertion then requires it in `ALL`.
        let position = |k: ActionKind| match k {
            ActionKind::UpsertPrComment => 0,
            ActionKind::ClosePrWithComment => 1,
        };
        for (i, kind) in ActionKind::ALL.into_iter().enumerate() {
            assert_eq!(position(kind), i, "{kind:?} out of place in ALL");
            let action = validate(&claimed(json!({"action_type": kind.as_str()}))).unwrap();
            assert_eq!(action.kind, kind);
        }
        assert_eq!(
            ActionKind::ALL.map(ActionKind::as_str),
            ["UPSERT_PR_COMMENT", "CLOSE_PR_WITH_COMMENT"]
        );
    }

    #[test]
    fn invalid_actions_get_codes_and_never_a_url() {
        // The wire values, spelled as the backend reads them.
        const INVALID_ACTION_PAYLOAD: &str = "INVALID_ACTION_PAYLOAD";
        const UNSUPPORTED_ACTION: &str = "UNSUPPORTED_ACTION";
        let cases = [
            (json!({"action_type": "DELETE_REPO"}), UNSUPPORTED_ACTION),
            (json!({"action_type": null}), INVALID_ACTION_PAYLOAD),
            (json!({"installation_id": 0}), INVALID_ACTION_PAYLOAD),
            (json!({"installation_id": "123"}), INVALID_ACTION_PAYLOAD),
            (json!({"github_pr_number": -1}), INVALID_ACTION_PAYLOAD),
            (
                json!({"repo_full_name": "org/repo/../../x"}),
                INVALID_ACTION_PAYLOAD,
            ),
            (json!({"repo_full_name": "org/.."}), INVALID_ACTION_PAYLOAD),
            (json!({"repo_full_name": "org"}), INVALID_ACTION_PAYLOAD),
            (
                json!({"repo_full_name": "o rg/repo"}),
                INVALID_ACTION_PAYLOAD,
            ),
            (json!({"repo_full_name": 5}), INVALID_ACTION_PAYLOAD),
            (
                json!({"payload": {"comment_markdown": "", "comment_marker": "m"}}),
                INVALID_ACTION_PAYLOAD,
            ),
            (
                json!({"payload": {"comment_markdown": "x", "comment_marker": "  "}}),
                INVALID_ACTION_PAYLOAD,
            ),
            (
                json!({"payload": {"comment_markdown": "x"}}),
                INVALID_ACTION_PAYLOAD,
            ),
            (
                json!({"payload": {"comment_markdown": "x", "comment_marker": "a -- b"}}),
                INVALID_ACTION_PAYLOAD,
            ),
            (
                json!({"payload": {"comment_markdown": "x", "comment_marker": "<!-- open"}}),
                INVALID_ACTION_PAYLOAD,
            ),
            (json!({"payload": null}), INVALID_ACTION_PAYLOAD),
        ];
        for (overrides, code) in cases {
            let err = validate(&claimed(overrides.clone())).unwrap_err();
            assert_eq!(err.code.as_str(), code, "{overrides}: {err}");
        }
    }

    #[test]
    fn long_bodies_are_cut_keeping_the_marker() {
        let marker = "<!-- sitg:gate:abc -->";
        let long = "é".repeat(70_000);
        let body = render_body(&long, marker).unwrap();
        assert!(body.encode_utf16().count() <= GITHUB_COMMENT_LIMIT);
        assert!(body.ends_with(&format!("\n\n{marker}")));
        assert!(body.contains("shortened to fit"));
        // Astral characters count twice for GitHub; the cut still fits.
        let emoji = "🦀".repeat(40_000);
        let body = render_body(&emoji, marker).unwrap();
        assert!(body.encode_utf16().count() <= GITHUB_COMMENT_LIMIT);
        assert!(body.ends_with(marker));
        // A body that fits is left alone.
        let fits = "a".repeat(GITHUB_COMMENT_LIMIT - 2 - marker.len());
        assert_eq!(
            render_body(&fits, marker).unwrap().len(),
            GITHUB_COMMENT_LIMIT
        );
    }

    #[test]
    fn age_is_measured_from_created_at() {
        let now = DateTime::parse_from_rfc3339("2026-11-30T12:00:30Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(age_seconds(&claimed(json!({})), now), Some(30.0));
        assert_eq!(
            age_seconds(&claimed(json!({"created_at": "yesterday"})), now),
            None
        );
    }
}
