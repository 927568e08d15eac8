//! The App's webhook as GitHub runs it: the simulator sends deliveries to the worker
//! (signed, with GitHub's headers and 10 s timeout), records every attempt's outcome,
//! lists them at `GET /app/hook/deliveries` (newest first, cursor pagination through
//! `Link`) and re-sends one on `POST /app/hook/deliveries/{delivery_id}/attempts`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::{DateTime, Utc};
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::GitHubSim;
use super::faults::Route;
use super::http::{Refusal, api_base, error, json as json_response, with_link};
use super::shapes;
use crate::examples::github_signature;
use crate::secret::SecretString;

/// GitHub waits this long for the answer to a delivery, then records it as failed.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The hook id GitHub puts in `X-GitHub-Hook-ID`.
const HOOK_ID: u64 = 424_242;

const DOCS_LIST: &str =
    "https://docs.github.com/rest/apps/webhooks#list-deliveries-for-an-app-webhook";
const DOCS_REDELIVER: &str =
    "https://docs.github.com/rest/apps/webhooks#redeliver-a-delivery-for-an-app-webhook";

/// One delivery attempt, as GitHub records it ("Simple webhook delivery").
#[derive(Clone, Debug, PartialEq)]
pub struct HookAttempt {
    /// The attempt's id (grows with time).
    pub id: u64,
    /// The event's GUID, sent as `X-GitHub-Delivery`; kept by redeliveries.
    pub guid: String,
    /// When the attempt was made.
    pub delivered_at: DateTime<Utc>,
    /// A redelivery (asked for through the API).
    pub redelivery: bool,
    /// Seconds the attempt took.
    pub duration: f64,
    /// `OK`, `Invalid HTTP Response: {code}`, `failed to connect` or `timed out`.
    pub status: String,
    /// The worker's HTTP status; 0 when no answer arrived.
    pub status_code: u16,
    /// `X-GitHub-Event`.
    pub event: String,
    /// The payload's `action`.
    pub action: Option<String>,
    /// The payload's `installation.id`.
    pub installation_id: Option<i64>,
    /// The payload's `repository.id`.
    pub repository_id: Option<i64>,
}

impl HookAttempt {
    /// GitHub's `status=success`: a status code of 200..=399.
    pub fn succeeded(&self) -> bool {
        (200..=399).contains(&self.status_code)
    }

    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "guid": self.guid,
            "delivered_at": shapes::timestamp(self.delivered_at),
            "redelivery": self.redelivery,
            "duration": self.duration,
            "status": self.status,
            "status_code": self.status_code,
            "event": self.event,
            "action": self.action,
            "installation_id": self.installation_id,
            "repository_id": self.repository_id,
            "throttled_at": null,
        })
    }
}

/// An event the App's webhook sends: what every attempt of it carries.
struct HookEvent {
    guid: String,
    event: String,
    action: Option<String>,
    installation_id: Option<i64>,
    repository_id: Option<i64>,
    body: Bytes,
}

struct Target {
    url: String,
    secret: SecretString,
}

#[derive(Default)]
struct Log {
    events: HashMap<String, Arc<HookEvent>>,
    /// Oldest first; ids increase.
    attempts: Vec<HookAttempt>,
    next_id: u64,
}

/// The webhook sender's state, part of the simulator's shared state.
pub(super) struct Hooks {
    target: Mutex<Option<Target>>,
    log: Mutex<Log>,
    http: reqwest::Client,
}

impl Hooks {
    pub(super) fn new() -> Self {
        crate::tls::install_crypto_provider();
        Self {
            target: Mutex::new(None),
            log: Mutex::new(Log {
                next_id: 1,
                ..Log::default()
            }),
            // An unusable builder only happens without a TLS backend, which this
            // crate always has; fall back to the default client rather than panic.
            http: reqwest::Client::builder()
                .timeout(DELIVERY_TIMEOUT)
                .build()
                .unwrap_or_default(),
        }
    }
}

impl GitHubSim {
    /// Points the App's webhook at `url` (the worker's `/webhooks/github`), signed with
    /// `secret`.
    pub fn set_webhook(&self, url: impl Into<String>, secret: &SecretString) {
        *self.shared.hooks.target.lock() = Some(Target {
            url: url.into(),
            secret: secret.clone(),
        });
    }

    /// Sends a new event (fresh GUID) to the webhook and records the attempt. With no
    /// webhook set the attempt is recorded as `failed to connect`.
    pub async fn deliver(&self, event: &str, body: impl Into<Bytes>) -> HookAttempt {
        let body: Bytes = body.into();
        let payload: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let id_at = |pointer: &str| payload.pointer(pointer).and_then(Value::as_i64);
        let hook_event = Arc::new(HookEvent {
            guid: uuid::Uuid::new_v4().to_string(),
            event: event.to_owned(),
            action: payload
                .get("action")
                .and_then(Value::as_str)
                .map(str::to_owned),
            installation_id: id_at("/installation/id"),
            repository_id: id_at("/repository/id"),
            body,
        });
        self.shared
            .hooks
            .log
            .lock()
            .events
            .insert(hook_event.guid.clone(), Arc::clone(&hook_event));
        self.attempt(&hook_event, false).await
    }

    /// Every attempt so far, oldest first.
    pub fn hook_attempts(&self) -> Vec<HookAttempt> {
        self.shared.hooks.log.lock().attempts.clone()
    }

    async fn attempt(&self, event: &HookEvent, redelivery: bool) -> HookAttempt {
        let delivered_at = Utc::now();
        let started = Instant::now();
        let target = self.shared.hooks.target.lock().as_ref().map(|t| {
            (
                t.url.clone(),
                github_signature(t.secret.expose(), &event.body),
            )
        });
        let (status, status_code) = match target {
            None => ("failed to connect".to_owned(), 0),
            Some((url, signature)) => {
                let mut request = self
                    .shared
                    .hooks
                    .http
                    .post(url)
                    .header("content-type", "application/json")
                    .header("user-agent", "GitHub-Hookshot/sitg-sandbox")
                    .header("x-github-event", &event.event)
                    .header("x-github-delivery", &event.guid)
                    .header("x-github-hook-id", HOOK_ID.to_string())
                    .header("x-github-hook-installation-target-type", "integration")
                    .header(
                        "x-github-hook-installation-target-id",
                        self.shared.app_id.to_string(),
                    )
                    .header("x-hub-signature-256", signature)
                    .body(event.body.clone());
                if redelivery {
                    // Not a GitHub header; lets a test tell attempts apart in logs.
                    request = request.header("x-sitg-sandbox-redelivery", "true");
                }
                match request.send().await {
                    Ok(response) => {
                        let code = response.status().as_u16();
                        // The attempt ends when the whole answer arrived.
                        match response.bytes().await {
                            Ok(_) if (200..=399).contains(&code) => ("OK".to_owned(), code),
                            Ok(_) => (format!("Invalid HTTP Response: {code}"), code),
                            Err(e) if e.is_timeout() => ("timed out".to_owned(), 0),
                            Err(_) => ("failed to connect".to_owned(), 0),
                        }
                    }
                    Err(e) if e.is_timeout() => ("timed out".to_owned(), 0),
                    Err(_) => ("failed to connect".to_owned(), 0),
                }
            }
        };
        let mut log = self.shared.hooks.log.lock();
        let attempt = HookAttempt {
            id: log.next_id,
            guid: event.guid.clone(),
            delivered_at,
            redelivery,
            duration: started.elapsed().as_secs_f64(),
            status,
            status_code,
            event: event.event.clone(),
            action: event.action.clone(),
            installation_id: event.installation_id,
            repository_id: event.repository_id,
        };
        log.next_id += 1;
        log.attempts.push(attempt.clone());
        drop(log);
        self.shared.changes.bump();
        attempt
    }
}

/// `per_page` (default 30, at most 100), `cursor` (`v1_{id}`: start at that attempt)
/// and `status` (`success` / `failure`) of a list request.
struct ListQuery {
    per_page: usize,
    cursor: Option<u64>,
    status: Option<bool>,
}

fn list_query(query: Option<&str>) -> Result<ListQuery, Refusal> {
    let mut q = ListQuery {
        per_page: 30,
        cursor: None,
        status: None,
    };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "per_page" => {
                q.per_page = value.parse::<usize>().unwrap_or(30).clamp(1, 100);
            }
            "cursor" => {
                let id = value.strip_prefix("v1_").and_then(|id| id.parse().ok());
                q.cursor =
                    Some(id.ok_or_else(|| {
                        error(StatusCode::BAD_REQUEST, "Invalid cursor", DOCS_LIST)
                    })?);
            }
            "status" => {
                q.status = match value.as_ref() {
                    "success" => Some(true),
                    "failure" => Some(false),
                    _ => {
                        return Err(error(
                            StatusCode::UNPROCESSABLE_ENTITY,
                            "Validation Failed",
                            DOCS_LIST,
                        )
                        .into());
                    }
                };
            }
            _ => {}
        }
    }
    Ok(q)
}

pub(super) async fn list_hook_deliveries(
    State(sim): State<GitHubSim>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    sim.require_app_jwt(&headers)?;
    sim.faults(None, Route::ListHookDeliveries).await?;
    let q = list_query(query.as_deref())?;
    let log = sim.shared.hooks.log.lock();
    let mut matching = log
        .attempts
        .iter()
        .rev()
        .filter(|a| q.cursor.is_none_or(|c| a.id <= c))
        .filter(|a| q.status.is_none_or(|s| a.succeeded() == s));
    let page: Vec<Value> = matching
        .by_ref()
        .take(q.per_page)
        .map(HookAttempt::to_json)
        .collect();
    let next = matching.next().map(|a| a.id);
    drop(log);
    let link = next.map(|id| {
        let mut url = format!(
            "{}/app/hook/deliveries?per_page={}&cursor=v1_{id}",
            api_base(&sim, &headers),
            q.per_page
        );
        if let Some(s) = q.status {
            url.push_str(if s {
                "&status=success"
            } else {
                "&status=failure"
            });
        }
        format!("<{url}>; rel=\"next\"")
    });
    Ok(with_link(
        json_response(StatusCode::OK, &Value::Array(page)),
        link,
    ))
}

pub(super) async fn redeliver_hook_delivery(
    State(sim): State<GitHubSim>,
    Path(delivery_id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    sim.require_app_jwt(&headers)?;
    sim.faults(None, Route::RedeliverHookDelivery).await?;
    let event = {
        let log = sim.shared.hooks.log.lock();
        delivery_id
            .parse::<u64>()
            .ok()
            .and_then(|id| log.attempts.iter().find(|a| a.id == id))
            .and_then(|a| log.events.get(&a.guid).cloned())
    };
    let Some(event) = event else {
        return Err(error(StatusCode::NOT_FOUND, "Not Found", DOCS_REDELIVER).into());
    };
    // GitHub accepts at once and delivers in the background.
    let sender = sim.clone();
    tokio::spawn(async move {
        sender.attempt(&event, true).await;
    });
    Ok(json_response(StatusCode::ACCEPTED, &json!({})))
}
