//! The backend simulator's HTTP surface: the four `/internal/v2` routes, checked in the
//! real backend's order (content type 415 → body shape 422 → authentication 403/401 →
//! validation 400 → processing), plus fault switches and request accounting.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, MatchedPath, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, http};
use chrono::Utc;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use uuid::Uuid;

use super::auth::{self, AuthFailure, AuthHeaders};
use super::store::{IngestReply, ResultRefusal};
use super::wire::{
    ClaimRequest, ClaimResponse, InstallationSyncIngest, PullRequestIngest, ResultRequest,
    ResultResponse,
};
use super::{AnswerFault, BackendSim, Endpoint};

/// Route templates, as axum matches them.
const PULL_REQUEST_PATH: &str = "/internal/v2/github/events/pull-request";
const INSTALLATION_SYNC_PATH: &str = "/internal/v2/github/events/installation-sync";
const CLAIM_PATH: &str = "/internal/v2/bot-actions/claim";
const RESULT_PATH: &str = "/internal/v2/bot-actions/{action_id}/result";

pub(super) fn router(sim: BackendSim) -> Router {
    Router::new()
        .route(PULL_REQUEST_PATH, post(ingest_pull_request))
        .route(INSTALLATION_SYNC_PATH, post(ingest_installation_sync))
        .route(CLAIM_PATH, post(claim))
        .route(RESULT_PATH, post(report_result))
        .route_layer(middleware::from_fn_with_state(
            sim.clone(),
            faults_and_accounting,
        ))
        .with_state(sim)
}

fn endpoint_of(path: &str) -> Option<Endpoint> {
    match path {
        PULL_REQUEST_PATH => Some(Endpoint::PullRequestIngest),
        INSTALLATION_SYNC_PATH => Some(Endpoint::InstallationSync),
        CLAIM_PATH => Some(Endpoint::Claim),
        RESULT_PATH => Some(Endpoint::Result),
        _ => None,
    }
}

/// Counts every request and response per endpoint and applies the fault switches
/// before anything else, like a load balancer in front of the backend would.
async fn faults_and_accounting(
    State(sim): State<BackendSim>,
    req: Request,
    next: Next,
) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| endpoint_of(p.as_str()));
    if let Some(endpoint) = endpoint {
        sim.shared.state.lock().stats.count_request(endpoint);
    }

    let (latency, fault, echo) = {
        let mut faults = sim.shared.faults.lock();
        let echo = faults.take_echo();
        let (latency, fault) = faults.next_request();
        (latency, fault, echo)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut response = match fault {
        Some(status) => error(status, fault_code(status), "injected fault"),
        None if echo => echo_request(&sim, req).await,
        None => next.run(req).await,
    };
    let fault = fault.or(echo.then_some(StatusCode::BAD_GATEWAY));
    let answer_fault = match (fault, endpoint) {
        (None, Some(endpoint)) => sim.shared.faults.lock().next_answer(endpoint),
        _ => None,
    };
    if let Some(answer_fault) = answer_fault {
        sim.shared.state.lock().stats.answer_faults_served += 1;
        sim.shared.changes.bump();
        response = mangle(answer_fault, response).await;
    }

    if let Some(endpoint) = endpoint {
        let mut state = sim.shared.state.lock();
        state.stats.count_response(endpoint, response.status());
        if fault.is_some() {
            state.stats.faults_served += 1;
        }
    }
    sim.shared.changes.bump();
    response
}

/// 502 whose `error.message` quotes the whole request (line, headers, body), as some
/// proxies' error pages do; records the credential headers it sent back.
async fn echo_request(sim: &BackendSim, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1024 * 1024)
        .await
        .unwrap_or_default();
    let mut text = format!("{} {} HTTP/1.1\n", parts.method, parts.uri);
    let mut credentials = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == http::header::AUTHORIZATION || name.as_str() == "x-sitg-signature" {
            credentials.push(value.clone());
        }
        text.push_str(&format!("{name}: {value}\n"));
    }
    text.push('\n');
    text.push_str(&String::from_utf8_lossy(&body));
    sim.shared.faults.lock().echoed.extend(credentials);
    error(
        StatusCode::BAD_GATEWAY,
        "BAD_GATEWAY",
        &format!("upstream connect error; the request was: {text}"),
    )
}

/// Applies an [`AnswerFault`] to an answer already produced.
async fn mangle(fault: AnswerFault, response: Response) -> Response {
    match fault {
        AnswerFault::Delay(delay) => {
            tokio::time::sleep(delay).await;
            response
        }
        AnswerFault::NotJson if response.status().is_success() => (
            StatusCode::OK,
            [(http::header::CONTENT_TYPE, "text/plain")],
            "OK",
        )
            .into_response(),
        AnswerFault::NotJson => response,
        AnswerFault::ResetMidBody => {
            let (mut parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let half = bytes.slice(..bytes.len() / 2);
            parts.headers.remove(http::header::CONTENT_LENGTH);
            let chunks: [Result<Bytes, std::io::Error>; 2] = [
                Ok(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected connection reset",
                )),
            ];
            Response::from_parts(parts, Body::from_stream(futures_util::stream::iter(chunks)))
        }
        AnswerFault::DuplicateActions => {
            let (mut parts, body) = response.into_parts();
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let mut value: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            if let Some(actions) = value.get_mut("actions").and_then(Value::as_array_mut) {
                let copies = actions.clone();
                actions.extend(copies);
            }
            let bytes = serde_json::to_vec(&value).unwrap_or_default();
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(parts, Body::from(bytes))
        }
    }
}

fn fault_code(status: StatusCode) -> &'static str {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        "SERVICE_UNAVAILABLE"
    } else {
        "INTERNAL_ERROR"
    }
}

/// `{"error":{"code":..,"message":..}}` with `status`.
fn error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({ "error": { "code": code, "message": message } });
    (status, Json(body)).into_response()
}

fn auth_error(failure: AuthFailure) -> Response {
    if failure.is_unauthorized() {
        error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", failure.message())
    } else {
        error(StatusCode::FORBIDDEN, "FORBIDDEN", failure.message())
    }
}

fn validation_error(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "VALIDATION_ERROR", message)
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn auth_headers(headers: &HeaderMap) -> AuthHeaders<'_> {
    AuthHeaders {
        key_id: header(headers, "x-sitg-key-id"),
        timestamp: header(headers, "x-sitg-timestamp"),
        signature: header(headers, "x-sitg-signature"),
        authorization: header(headers, http::header::AUTHORIZATION.as_str()),
    }
}

/// A JSON body checked exactly as axum's `Json` checks it (415 without a JSON content
/// type, 400 on syntax errors, 422 plain text on a wrong shape), keeping the raw JSON
/// for the event record.
struct ShapedJson<T> {
    value: T,
    raw: Value,
}

impl<S, T> FromRequest<S> for ShapedJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let (parts, body) = req.into_parts();
        let bytes = Bytes::from_request(Request::from_parts(parts.clone(), body), state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Json(value) =
            Json::<T>::from_request(Request::from_parts(parts, Body::from(bytes.clone())), state)
                .await
                .map_err(IntoResponse::into_response)?;
        // The typed parse succeeded, so the bytes are valid JSON.
        let raw = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Self { value, raw })
    }
}

async fn ingest_pull_request(
    State(sim): State<BackendSim>,
    headers: HeaderMap,
    body: ShapedJson<PullRequestIngest>,
) -> Response {
    let now = Utc::now();
    let event = body.value;
    let mut state = sim.shared.state.lock();
    let message = auth::pull_request_message(&event.delivery_id);
    if let Err(failure) = state.authenticate(&auth_headers(&headers), &message, now) {
        return auth_error(failure);
    }
    if event.delivery_id.is_empty() {
        return validation_error("delivery_id must not be empty");
    }
    match state.store.ingest_pull_request(&event, body.raw, now) {
        IngestReply::Ok(reply) => Json(reply).into_response(),
        IngestReply::ProcessingFailed(reason) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", reason)
        }
    }
}

async fn ingest_installation_sync(
    State(sim): State<BackendSim>,
    headers: HeaderMap,
    body: ShapedJson<InstallationSyncIngest>,
) -> Response {
    let now = Utc::now();
    let event = body.value;
    let mut state = sim.shared.state.lock();
    let message = auth::installation_sync_message(&event.delivery_id);
    if let Err(failure) = state.authenticate(&auth_headers(&headers), &message, now) {
        return auth_error(failure);
    }
    if event.delivery_id.is_empty() {
        return validation_error("delivery_id must not be empty");
    }
    match state.store.ingest_installation_sync(&event, body.raw, now) {
        IngestReply::Ok(reply) => Json(reply).into_response(),
        IngestReply::ProcessingFailed(reason) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", reason)
        }
    }
}

async fn claim(
    State(sim): State<BackendSim>,
    headers: HeaderMap,
    body: ShapedJson<ClaimRequest>,
) -> Response {
    let now = Utc::now();
    let request = body.value;
    let mut state = sim.shared.state.lock();
    let message = auth::claim_message(&request.worker_id);
    if let Err(failure) = state.authenticate(&auth_headers(&headers), &message, now) {
        return auth_error(failure);
    }
    if request.worker_id.is_empty() {
        return validation_error("worker_id must not be empty");
    }
    let actions = state.store.claim(&request.worker_id, request.limit, now);
    state.stats.claims += 1;
    state.stats.actions_claimed += actions.len() as u64;
    if actions.is_empty() {
        state.stats.empty_claims += 1;
    }
    Json(ClaimResponse { actions }).into_response()
}

async fn report_result(
    State(sim): State<BackendSim>,
    Path(action_id): Path<String>,
    headers: HeaderMap,
    body: ShapedJson<ResultRequest>,
) -> Response {
    let now = Utc::now();
    let request = body.value;
    let mut state = sim.shared.state.lock();
    let message = auth::result_message(&action_id, &request.worker_id, request.outcome.as_str());
    if let Err(failure) = state.authenticate(&auth_headers(&headers), &message, now) {
        return auth_error(failure);
    }
    let Ok(id) = Uuid::parse_str(&action_id) else {
        return validation_error("action_id must be a UUID");
    };
    if request.worker_id.is_empty() {
        return validation_error("worker_id must not be empty");
    }
    let reported = state.store.report(
        id,
        &request.worker_id,
        request.outcome,
        request.failure_code,
        request.failure_message,
        now,
    );
    match reported {
        Ok(status) => {
            state.stats.results_accepted += 1;
            Json(ResultResponse { id, status }).into_response()
        }
        Err(ResultRefusal::NotClaimedByWorker) => {
            state.stats.result_conflicts += 1;
            error(
                StatusCode::CONFLICT,
                "CONFLICT",
                "action is not claimed by this worker",
            )
        }
        Err(ResultRefusal::NotFound) => error(StatusCode::NOT_FOUND, "NOT_FOUND", "no such action"),
    }
}
