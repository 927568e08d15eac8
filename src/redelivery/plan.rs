//! Which deliveries one sweep redelivers: a pure function of GitHub's delivery log.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::github::HookDelivery;

/// How long GitHub keeps deliveries it can redeliver on github.com (its documentation:
/// "redeliver webhook deliveries from the past 3 days"; GitHub Enterprise Server keeps
/// 7). The look-back is clamped below this so a redelivery is never asked for an
/// attempt GitHub has already dropped.
pub const GITHUB_RETENTION: Duration = Duration::from_secs(3 * 24 * 3600);

/// Margin kept below [`GITHUB_RETENTION`]: a sweep takes time, and clocks differ.
const RETENTION_MARGIN: Duration = Duration::from_secs(3600);

/// Status codes the worker answers on purpose to deliveries no redelivery can fix: a
/// bad signature (401), a malformed payload (400), a body over GitHub's 25 MB (413).
pub const REFUSED_STATUS_CODES: [u16; 3] = [400, 401, 413];

/// The bounds of one sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SweepPolicy {
    /// Only attempts made within this window are considered; clamped to GitHub's
    /// retention minus a margin.
    pub look_back: Duration,
    /// Most redeliveries one sweep requests; the oldest failures go first.
    pub max_redeliveries: usize,
    /// An event whose failed attempts reached this count is given up (a redelivery
    /// that keeps failing is not fixed by asking again).
    pub max_attempts_per_event: usize,
}

impl SweepPolicy {
    /// The window actually used: `look_back`, at most GitHub's retention minus a margin.
    pub fn effective_look_back(&self) -> Duration {
        self.look_back
            .min(GITHUB_RETENTION.saturating_sub(RETENTION_MARGIN))
    }

    /// The oldest `delivered_at` a sweep at `now` looks at.
    pub fn since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        let window = chrono::Duration::from_std(self.effective_look_back())
            .unwrap_or(chrono::Duration::zero());
        now - window
    }
}

/// What one sweep should do, and what it saw.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SweepPlan {
    /// The latest failed attempt of each event to redeliver, oldest event first, at
    /// most [`SweepPolicy::max_redeliveries`].
    pub redeliver: Vec<HookDelivery>,
    /// Events still undelivered (failed, not refused on purpose, not given up): the
    /// ones redelivered now plus those left for the next sweep by the bound.
    pub undelivered: usize,
    /// Undelivered events beyond the per-sweep bound, left for the next sweep.
    pub deferred: usize,
    /// Events whose latest attempt the worker refused on purpose (400, 401, 413).
    pub refused: usize,
    /// Events given up after [`SweepPolicy::max_attempts_per_event`] failed attempts.
    pub exhausted: usize,
    /// Age at `now` of the first failed attempt of the oldest undelivered event.
    pub oldest_undelivered_age: Option<Duration>,
}

/// Plans one sweep over `deliveries` (any order, several attempts per GUID) at `now`.
///
/// Per event (GUID), within the look-back window: nothing to do when any attempt
/// succeeded (a later success of the same GUID means the event arrived) or when the
/// latest attempt was refused on purpose; given up after too many failed attempts;
/// otherwise its latest attempt is redelivered — at most once per sweep, since each
/// GUID yields one entry.
pub fn plan_sweep(
    deliveries: &[HookDelivery],
    now: DateTime<Utc>,
    policy: &SweepPolicy,
) -> SweepPlan {
    let since = policy.since(now);
    let mut events: HashMap<&str, Vec<&HookDelivery>> = HashMap::new();
    for d in deliveries.iter().filter(|d| d.delivered_at >= since) {
        events.entry(d.guid.as_str()).or_default().push(d);
    }

    let mut plan = SweepPlan::default();
    // (first failure, latest attempt) of each undelivered event.
    let mut undelivered: Vec<(DateTime<Utc>, &HookDelivery)> = Vec::new();
    for attempts in events.values() {
        if attempts.iter().any(|d| d.succeeded()) {
            continue;
        }
        let Some(latest) = attempts.iter().max_by_key(|d| (d.delivered_at, d.id)) else {
            continue;
        };
        if REFUSED_STATUS_CODES.contains(&latest.status_code) {
            plan.refused += 1;
            continue;
        }
        if attempts.len() >= policy.max_attempts_per_event {
            plan.exhausted += 1;
            continue;
        }
        let first = attempts
            .iter()
            .map(|d| d.delivered_at)
            .min()
            .unwrap_or(latest.delivered_at);
        undelivered.push((first, latest));
    }
    undelivered.sort_by_key(|(first, latest)| (*first, latest.id));

    plan.undelivered = undelivered.len();
    plan.oldest_undelivered_age = undelivered
        .first()
        .map(|(first, _)| (now - *first).to_std().unwrap_or(Duration::ZERO));
    plan.deferred = undelivered.len().saturating_sub(policy.max_redeliveries);
    plan.redeliver = undelivered
        .into_iter()
        .take(policy.max_redeliveries)
        .map(|(_, latest)| latest.clone())
        .collect();
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs_ago: i64, now: DateTime<Utc>) -> DateTime<Utc> {
        now - chrono::Duration::seconds(secs_ago)
    }

    fn attempt(id: u64, guid: &str, secs_ago: i64, code: u16, now: DateTime<Utc>) -> HookDelivery {
        HookDelivery {
            id,
            guid: guid.to_owned(),
            delivered_at: at(secs_ago, now),
            redelivery: false,
            status: if (200..400).contains(&code) {
                "OK".to_owned()
            } else {
                format!("Invalid HTTP Response: {code}")
            },
            status_code: code,
            event: "pull_request".to_owned(),
            action: Some("opened".to_owned()),
        }
    }

    fn policy() -> SweepPolicy {
        SweepPolicy {
            look_back: Duration::from_secs(3600),
            max_redeliveries: 100,
            max_attempts_per_event: 5,
        }
    }

    fn ids(plan: &SweepPlan) -> Vec<u64> {
        plan.redeliver.iter().map(|d| d.id).collect()
    }

    #[test]
    fn redelivers_the_latest_failed_attempt_once_per_event() {
        let now = Utc::now();
        let log = [
            attempt(1, "a", 300, 503, now),
            attempt(2, "a", 200, 0, now),
            attempt(3, "b", 100, 502, now),
        ];
        let plan = plan_sweep(&log, now, &policy());
        assert_eq!(
            ids(&plan),
            vec![2, 3],
            "oldest event first, latest attempt of each"
        );
        assert_eq!(plan.undelivered, 2);
        assert_eq!(plan.oldest_undelivered_age, Some(Duration::from_secs(300)));
    }

    #[test]
    fn a_success_of_the_same_guid_settles_the_event() {
        let now = Utc::now();
        // Failed, then redelivered successfully; and success followed by a failed
        // redelivery someone asked for by hand: both arrived.
        let log = [
            attempt(1, "a", 300, 503, now),
            attempt(2, "a", 200, 200, now),
            attempt(3, "b", 300, 202, now),
            attempt(4, "b", 100, 503, now),
        ];
        let plan = plan_sweep(&log, now, &policy());
        assert!(plan.redeliver.is_empty(), "{plan:?}");
        assert_eq!(plan.undelivered, 0);
        assert_eq!(plan.oldest_undelivered_age, None);
    }

    #[test]
    fn deliveries_refused_on_purpose_are_left_alone() {
        let now = Utc::now();
        let log = [
            attempt(1, "sig", 10, 401, now),
            attempt(2, "bad", 10, 400, now),
            attempt(3, "big", 10, 413, now),
            attempt(4, "down", 10, 503, now),
        ];
        let plan = plan_sweep(&log, now, &policy());
        assert_eq!(ids(&plan), vec![4]);
        assert_eq!(plan.refused, 3);
    }

    #[test]
    fn bounded_per_sweep_oldest_first() {
        let now = Utc::now();
        let log: Vec<_> = (0..10)
            .map(|i| attempt(i, &format!("g{i}"), 100 - i as i64, 503, now))
            .collect();
        let plan = plan_sweep(
            &log,
            now,
            &SweepPolicy {
                max_redeliveries: 3,
                ..policy()
            },
        );
        assert_eq!(ids(&plan), vec![0, 1, 2]);
        assert_eq!(plan.undelivered, 10);
        assert_eq!(plan.deferred, 7);
    }

    #[test]
    fn look_back_bounds_and_never_exceeds_githubs_retention() {
        let now = Utc::now();
        let log = [
            attempt(1, "old", 7200, 503, now),
            attempt(2, "new", 60, 503, now),
        ];
        let plan = plan_sweep(&log, now, &policy());
        assert_eq!(ids(&plan), vec![2]);

        let week = SweepPolicy {
            look_back: Duration::from_secs(7 * 24 * 3600),
            ..policy()
        };
        assert!(week.effective_look_back() < GITHUB_RETENTION);
        let log = [attempt(1, "expired", 3 * 24 * 3600 - 60, 503, now)];
        assert!(plan_sweep(&log, now, &week).redeliver.is_empty());
    }

    #[test]
    fn an_event_that_keeps_failing_is_given_up() {
        let now = Utc::now();
        let log: Vec<_> = (0..5)
            .map(|i| attempt(i, "a", 500 - i as i64, 503, now))
            .collect();
        let plan = plan_sweep(&log, now, &policy());
        assert!(plan.redeliver.is_empty());
        assert_eq!(plan.exhausted, 1);
        let plan = plan_sweep(&log[..4], now, &policy());
        assert_eq!(ids(&plan), vec![3]);
    }
}
