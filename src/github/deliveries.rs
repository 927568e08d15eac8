//! The App webhook's delivery log: listing recent deliveries and asking GitHub to
//! redeliver one (GitHub never redelivers a failed delivery by itself).

use chrono::{DateTime, Utc};
use http::{Method, StatusCode};
use serde::Deserialize;

use super::client::GitHubClient;
use super::error::GitHubError;
use super::metrics::Route;
use super::pagination::{MAX_PAGES, PER_PAGE, too_many_pages};
use super::transport::{Call, Installation, parse_json};

/// One delivery attempt of the App's webhook, as `GET /app/hook/deliveries` lists it
/// (GitHub's "Simple webhook delivery"; only the fields the redelivery sweep reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct HookDelivery {
    /// The attempt's id: what `POST /app/hook/deliveries/{delivery_id}/attempts` takes.
    pub id: u64,
    /// The event's GUID (`X-GitHub-Delivery`), shared by every attempt of one event.
    pub guid: String,
    /// When GitHub made the attempt.
    pub delivered_at: DateTime<Utc>,
    /// True for a redelivery.
    #[serde(default)]
    pub redelivery: bool,
    /// GitHub's summary of the answer: `OK`, `Invalid HTTP Response: 503`,
    /// `failed to connect`, `timed out`, …
    #[serde(default)]
    pub status: String,
    /// The HTTP status the worker answered; 0 when none arrived (connection refused,
    /// GitHub's 10 s timeout).
    #[serde(default)]
    pub status_code: u16,
    /// The event name (`X-GitHub-Event`).
    pub event: String,
    /// The payload's `action`, when the event has one.
    #[serde(default)]
    pub action: Option<String>,
}

impl HookDelivery {
    /// GitHub's own classification (the `status=success` filter of the list endpoint):
    /// a `status_code` of 200..=399 was delivered.
    pub fn succeeded(&self) -> bool {
        (200..=399).contains(&self.status_code)
    }
}

/// Installation id that keys rate-limit pauses of App-level calls (no installation is 0).
const APP_LEVEL: u64 = 0;

impl GitHubClient {
    /// The App webhook's delivery attempts made at or after `since`, newest first.
    ///
    /// Per GitHub REST: `GET /app/hook/deliveries?per_page=100` with the App JWT,
    /// following the `Link: rel="next"` cursor while the page's oldest attempt is not
    /// older than `since` (GitHub lists newest first). Attempts older than `since` are
    /// dropped.
    ///
    /// # Errors
    /// Any [`GitHubError`]; [`GitHubError::InvalidResponse`] past 500 pages.
    pub async fn list_hook_deliveries(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<HookDelivery>, GitHubError> {
        let call = app_call(Route::ListHookDeliveries);
        let mut url = self.transport().endpoint(&["app", "hook", "deliveries"])?;
        url.query_pairs_mut().append_pair("per_page", PER_PAGE);
        let mut deliveries = Vec::new();
        for _ in 0..MAX_PAGES {
            let reply = self
                .transport()
                .app_request(call, Method::GET, url.clone())
                .await?;
            let reply = self.transport().check(call, reply, &url)?;
            let page: Vec<HookDelivery> = parse_json(&reply.body, "hook deliveries")?;
            let reached_since = page.iter().any(|d| d.delivered_at < since);
            deliveries.extend(page.into_iter().filter(|d| d.delivered_at >= since));
            if reached_since {
                return Ok(deliveries);
            }
            match self.transport().next_page(&reply.headers)? {
                Some(next) => url = next,
                None => return Ok(deliveries),
            }
        }
        Err(too_many_pages("hook deliveries"))
    }

    /// Asks GitHub to deliver the event of attempt `delivery_id` once more (same GUID,
    /// a new attempt with `redelivery: true`).
    ///
    /// Per GitHub REST: `POST /app/hook/deliveries/{delivery_id}/attempts` with the App
    /// JWT, answered 202.
    ///
    /// # Errors
    /// [`GitHubError::NotFound`] for an attempt GitHub no longer keeps; 400 and 422
    /// become [`GitHubError::ValidationFailed`]; otherwise any [`GitHubError`].
    pub async fn redeliver_hook_delivery(&self, delivery_id: u64) -> Result<(), GitHubError> {
        let call = app_call(Route::RedeliverHookDelivery);
        let id = delivery_id.to_string();
        let url = self
            .transport()
            .endpoint(&["app", "hook", "deliveries", &id, "attempts"])?;
        let reply = self
            .transport()
            .app_request(call, Method::POST, url.clone())
            .await?;
        if reply.status == StatusCode::BAD_REQUEST {
            return Err(GitHubError::ValidationFailed {
                message: format!("GitHub refused to redeliver delivery {delivery_id} (400)"),
            });
        }
        self.transport().check(call, reply, &url).map(|_| ())
    }
}

fn app_call(route: Route) -> Call<'static> {
    Call {
        route,
        installation: Installation {
            id: APP_LEVEL,
            repo: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_githubs_example_and_classifies_status_codes() {
        // From @octokit/openapi, components/examples/hook-delivery-items.
        let body = br#"[{"id":12345678,"guid":"0b989ba4-242f-11e5-81e1-c7b6966d2516","delivered_at":"2019-06-03T00:57:16Z","redelivery":false,"duration":0.27,"status":"OK","status_code":200,"event":"issues","action":"opened","installation_id":123,"repository_id":456,"throttled_at":"2019-06-03T00:57:16Z"},
            {"id":123456789,"guid":"0b989ba4-242f-11e5-81e1-c7b6966d2516","delivered_at":"2019-06-04T00:57:16Z","redelivery":true,"duration":0.28,"status":"failed to connect","status_code":0,"event":"issues","action":null,"installation_id":null,"repository_id":null,"throttled_at":null}]"#;
        let page: Vec<HookDelivery> = serde_json::from_slice(body).unwrap();
        assert_eq!(page.len(), 2);
        assert!(page[0].succeeded());
        assert_eq!(page[0].action.as_deref(), Some("opened"));
        assert!(!page[1].succeeded());
        assert!(page[1].redelivery);
        assert_eq!(page[1].action, None);
        for (code, ok) in [
            (0, false),
            (199, false),
            (200, true),
            (302, true),
            (400, false),
            (503, false),
        ] {
            let d = HookDelivery {
                status_code: code,
                ..page[0].clone()
            };
            assert_eq!(d.succeeded(), ok, "{code}");
        }
    }
}
