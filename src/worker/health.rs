//! `/healthz`, `/readyz` and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::json;

use super::state::AppState;

/// Liveness: the process serves HTTP. Always 200; a wedged process does not answer.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Readiness: 200 when the worker can do its job — not stopping and the backend
/// answering HTTP; 503 with the reasons otherwise. A 200 carries `warnings` when the
/// backend's last answer said this worker is misconfigured (see
/// [`crate::backend::Refusal`]), for the rollout checklist, and when the claim journal
/// cannot be written (the outbox then claims nothing; webhooks still flow).
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let mut reasons = Vec::new();
    if state.lifecycle.is_shutting_down() {
        reasons.push("shutting down");
    }
    if !state.backend.is_reachable() {
        reasons.push("backend unreachable");
    }
    if reasons.is_empty() {
        let mut warnings: Vec<String> = Vec::new();
        if let Some(refusal) = state.backend.refusal() {
            warnings.push(refusal.hint().to_string());
        }
        // Webhooks still flow; only the outbox stops claiming.
        if let Some(problem) = state.journal.as_ref().and_then(|j| j.problem()) {
            warnings.push(format!("not claiming outbox actions: {problem}"));
        }
        if warnings.is_empty() {
            (StatusCode::OK, Json(json!({"status": "ready"})))
        } else {
            (
                StatusCode::OK,
                Json(json!({"status": "ready", "warnings": warnings})),
            )
        }
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "reasons": reasons})),
        )
    }
}

/// Prometheus text exposition.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
