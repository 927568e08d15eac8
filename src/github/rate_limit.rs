//! GitHub rate limits: reading a refused response into a pause, and the per-installation
//! pause board that keeps later calls from hitting GitHub while the pause lasts.
//!
//! Rules (GitHub REST docs, "Rate limits for the REST API"): a primary limit answers 403
//! or 429 with `x-ratelimit-remaining: 0`, usable again at `x-ratelimit-reset` (UTC epoch
//! seconds); a secondary limit answers 403 or 429 with a message saying so, and then
//! `retry-after` (seconds) wins, else `x-ratelimit-reset` when remaining is 0, else wait
//! at least one minute.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use http::{HeaderMap, StatusCode};
use parking_lot::Mutex;

/// Pause after a secondary limit that names no time.
pub(crate) const SECONDARY_DEFAULT_PAUSE: Duration = Duration::from_secs(60);
/// Upper bound on any pause: a primary window is one hour, so a longer value means a
/// clock or header we should not believe.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// Which of GitHub's limits refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateLimitKind {
    Primary,
    Secondary,
}

impl RateLimitKind {
    /// Bounded metric label.
    pub(crate) fn as_label(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Secondary => "secondary",
        }
    }
}

/// How long to leave an installation alone after a refused request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimitPause {
    pub kind: RateLimitKind,
    pub wait: Duration,
}

/// Decides whether a response is a rate-limit refusal and for how long to pause.
///
/// `message` is GitHub's error `message` (or the raw body); `now_unix_secs` the local
/// wall clock in UTC epoch seconds. Returns `None` for every other response, notably the
/// 403 "Resource not accessible by integration" of a missing App permission.
pub(crate) fn rate_limit_pause(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now_unix_secs: u64,
) -> Option<RateLimitPause> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let remaining_is_zero = header_u64(headers, "x-ratelimit-remaining") == Some(0);
    let retry_after = header_u64(headers, "retry-after").map(Duration::from_secs);
    let until_reset = if remaining_is_zero {
        header_u64(headers, "x-ratelimit-reset")
            .map(|reset| Duration::from_secs(reset.saturating_sub(now_unix_secs)))
    } else {
        None
    };
    let says_secondary = mentions_secondary_limit(message);

    let kind = if remaining_is_zero && !says_secondary {
        RateLimitKind::Primary
    } else {
        RateLimitKind::Secondary
    };
    let wait = match (retry_after, until_reset) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    let wait = match wait {
        Some(w) => w,
        // A 429 is a rate limit by definition even when it says nothing more.
        None if says_secondary || remaining_is_zero || status == StatusCode::TOO_MANY_REQUESTS => {
            SECONDARY_DEFAULT_PAUSE
        }
        None => return None,
    };
    Some(RateLimitPause {
        kind,
        // Never zero (the reset second may already have begun), never unbounded.
        wait: wait.clamp(Duration::from_secs(1), MAX_PAUSE),
    })
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

/// GitHub words it "You have exceeded a secondary rate limit"; older answers spoke of
/// "abuse detection".
fn mentions_secondary_limit(message: &str) -> bool {
    let lower = message.to_ascii_lowercase();
    lower.contains("secondary rate limit") || lower.contains("abuse detection")
}

/// A pause in force for one installation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pause {
    pub until: Instant,
    pub secondary: bool,
}

/// Installations paused by a rate limit, keyed by installation id.
#[derive(Debug, Default)]
pub(crate) struct PauseBoard {
    pauses: Mutex<HashMap<u64, Pause>>,
}

impl PauseBoard {
    /// Pauses `installation_id` until `until`, keeping a later pause already in force.
    pub(crate) fn pause(&self, installation_id: u64, until: Instant, secondary: bool) -> Pause {
        let mut pauses = self.lock();
        let entry = pauses
            .entry(installation_id)
            .or_insert(Pause { until, secondary });
        if until > entry.until {
            *entry = Pause { until, secondary };
        }
        *entry
    }

    /// The pause in force at `now`, if any; forgets pauses that have run out.
    pub(crate) fn current(&self, installation_id: u64, now: Instant) -> Option<Pause> {
        let mut pauses = self.lock();
        match pauses.get(&installation_id) {
            Some(p) if p.until > now => Some(*p),
            Some(_) => {
                pauses.remove(&installation_id);
                None
            }
            None => None,
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, HashMap<u64, Pause>> {
        // The map stays consistent even if a holder panicked: every update is one insert.
        self.pauses.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn decide(
        status: u16,
        pairs: &[(&'static str, &str)],
        message: &str,
    ) -> Option<RateLimitPause> {
        rate_limit_pause(
            StatusCode::from_u16(status).unwrap(),
            &headers(pairs),
            message,
            NOW,
        )
    }

    #[test]
    fn primary_limit_waits_until_reset() {
        let reset = (NOW + 1234).to_string();
        for status in [403, 429] {
            let p = decide(
                status,
                &[
                    ("x-ratelimit-remaining", "0"),
                    ("x-ratelimit-reset", &reset),
                ],
                "API rate limit exceeded for installation ID 1.",
            )
            .unwrap();
            assert_eq!(p.kind, RateLimitKind::Primary);
            assert_eq!(p.wait, Duration::from_secs(1234));
        }
    }

    #[test]
    fn reset_in_the_past_still_pauses_a_little() {
        let reset = (NOW - 5).to_string();
        let p = decide(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            "",
        )
        .unwrap();
        assert_eq!(p.wait, Duration::from_secs(1));
    }

    #[test]
    fn absurd_reset_is_capped() {
        let reset = (NOW + 10 * 24 * 3600).to_string();
        let p = decide(
            429,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            "",
        )
        .unwrap();
        assert_eq!(p.wait, MAX_PAUSE);
    }

    #[test]
    fn secondary_limit_honours_retry_after() {
        let p = decide(
            403,
            &[("retry-after", "30"), ("x-ratelimit-remaining", "4999")],
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        )
        .unwrap();
        assert_eq!(
            p,
            RateLimitPause {
                kind: RateLimitKind::Secondary,
                wait: Duration::from_secs(30)
            }
        );
    }

    #[test]
    fn secondary_limit_without_headers_waits_a_minute() {
        let p = decide(403, &[], "You have exceeded a secondary rate limit.").unwrap();
        assert_eq!(
            p,
            RateLimitPause {
                kind: RateLimitKind::Secondary,
                wait: SECONDARY_DEFAULT_PAUSE
            }
        );
        let p = decide(403, &[], "You have triggered an abuse detection mechanism.").unwrap();
        assert_eq!(p.wait, SECONDARY_DEFAULT_PAUSE);
    }

    #[test]
    fn secondary_limit_with_remaining_zero_uses_reset() {
        let reset = (NOW + 90).to_string();
        let p = decide(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            "You have exceeded a secondary rate limit",
        )
        .unwrap();
        assert_eq!(
            p,
            RateLimitPause {
                kind: RateLimitKind::Secondary,
                wait: Duration::from_secs(90)
            }
        );
    }

    #[test]
    fn the_later_of_retry_after_and_reset_wins() {
        let reset = (NOW + 10).to_string();
        let p = decide(
            429,
            &[
                ("retry-after", "40"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            "",
        )
        .unwrap();
        assert_eq!(p.wait, Duration::from_secs(40));
    }

    #[test]
    fn bare_429_is_a_rate_limit() {
        let p = decide(429, &[], "").unwrap();
        assert_eq!(p.wait, SECONDARY_DEFAULT_PAUSE);
    }

    #[test]
    fn permission_403_is_not_a_rate_limit() {
        assert_eq!(
            decide(
                403,
                &[("x-ratelimit-remaining", "4990")],
                "Resource not accessible by integration"
            ),
            None
        );
        assert_eq!(
            decide(403, &[], "Must have admin rights to Repository."),
            None
        );
    }

    #[test]
    fn other_statuses_are_never_rate_limits() {
        for status in [200, 401, 404, 422, 500, 503] {
            assert_eq!(
                decide(
                    status,
                    &[("retry-after", "5"), ("x-ratelimit-remaining", "0")],
                    "secondary rate limit"
                ),
                None
            );
        }
    }

    #[test]
    fn garbage_headers_are_ignored() {
        assert_eq!(
            decide(
                403,
                &[("retry-after", "soon"), ("x-ratelimit-remaining", "none")],
                "Forbidden"
            ),
            None
        );
    }

    #[test]
    fn board_keeps_the_later_pause_and_forgets_expired_ones() {
        let board = PauseBoard::default();
        let now = Instant::now();
        board.pause(1, now + Duration::from_secs(60), true);
        board.pause(1, now + Duration::from_secs(10), false);
        assert_eq!(
            board.current(1, now),
            Some(Pause {
                until: now + Duration::from_secs(60),
                secondary: true
            })
        );
        assert_eq!(board.current(2, now), None);
        assert_eq!(board.current(1, now + Duration::from_secs(61)), None);
        assert_eq!(board.current(1, now), None, "expired pause is forgotten");
    }
}
