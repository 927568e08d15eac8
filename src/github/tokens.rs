//! Installation access tokens, cached per installation with one mint in flight at a
//! time.
//!
//! A claim of 25 actions of one installation arrives at once; they must share one
//! `POST /app/installations/{id}/access_tokens`. Each installation has an async mutex
//! held across the mint: callers queue behind it and then find the fresh token. A
//! mint that fails (or is redirected to another installation, see [`super::redirect`])
//! is handed to the callers that were already queued, so a failing mint is not repeated
//! once per caller.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use parking_lot::Mutex;

use super::error::GitHubError;
use super::redirect::Redirect;
use crate::secret::SecretString;

/// A cached token is replaced this long before GitHub's `expires_at`.
pub(crate) const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);

/// What a mint produced.
pub(crate) enum MintOutcome {
    /// A token for this installation, valid until `expires_at`.
    Minted {
        token: SecretString,
        expires_at: DateTime<Utc>,
    },
    /// This installation id is stale; the repository now belongs to another one.
    Redirect(Redirect),
}

/// What a caller gets: a token, or the installation to ask instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Acquired {
    Token(SecretString),
    Redirect(Redirect),
}

/// The instant a token expiring at `expires_at` must be replaced, measured from
/// `now_utc` / `now`. A token with less than the margin left is used once and replaced.
pub(crate) fn token_refresh_at(
    expires_at: DateTime<Utc>,
    now_utc: DateTime<Utc>,
    now: Instant,
) -> Instant {
    let left = (expires_at - now_utc).to_std().unwrap_or(Duration::ZERO);
    now + left.saturating_sub(TOKEN_REFRESH_MARGIN)
}

struct CachedToken {
    token: SecretString,
    refresh_at: Instant,
}

enum Unsuccessful {
    Failed(GitHubError),
    Redirected(Redirect),
}

#[derive(Default)]
struct Slot {
    token: Option<CachedToken>,
    /// The last mint that gave no token, and when it finished.
    last_unsuccessful: Option<(Instant, Unsuccessful)>,
}

/// Per-installation token cache.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<u64, Arc<tokio::sync::Mutex<Slot>>>>,
}

impl TokenCache {
    /// The cached token of `installation_id`, minting one with `mint` when none is
    /// valid.
    ///
    /// `stale` is a token GitHub just refused with 401: if it is still the cached one it
    /// is dropped and a new one minted (one re-mint however many callers saw the 401).
    pub(crate) async fn get_or_mint<F, Fut>(
        &self,
        installation_id: u64,
        stale: Option<&SecretString>,
        mint: F,
    ) -> Result<Acquired, GitHubError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<MintOutcome, GitHubError>>,
    {
        let slot = self.slot(installation_id);
        let queued_at = Instant::now();
        let mut slot = slot.lock().await;
        let now = Instant::now();

        if let Some(cached) = &slot.token {
            let refused = stale.is_some_and(|s| *s == cached.token);
            if refused {
                slot.token = None;
            } else if now < cached.refresh_at {
                return Ok(Acquired::Token(cached.token.clone()));
            }
        }
        // A mint that finished while this caller was queued answers for it too.
        if let Some((finished, outcome)) = &slot.last_unsuccessful {
            if *finished >= queued_at {
                return match outcome {
                    Unsuccessful::Failed(err) => Err(err.clone()),
                    Unsuccessful::Redirected(other) => Ok(Acquired::Redirect(*other)),
                };
            }
        }

        let result = mint().await;
        let finished = Instant::now();
        match result {
            Ok(MintOutcome::Minted { token, expires_at }) => {
                slot.token = Some(CachedToken {
                    token: token.clone(),
                    refresh_at: token_refresh_at(expires_at, Utc::now(), finished),
                });
                slot.last_unsuccessful = None;
                Ok(Acquired::Token(token))
            }
            Ok(MintOutcome::Redirect(other)) => {
                slot.last_unsuccessful = Some((finished, Unsuccessful::Redirected(other)));
                Ok(Acquired::Redirect(other))
            }
            Err(err) => {
                slot.last_unsuccessful = Some((finished, Unsuccessful::Failed(err.clone())));
                Err(err)
            }
        }
    }

    fn slot(&self, installation_id: u64) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock();
        Arc::clone(slots.entry(installation_id).or_default())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn minted(value: &str, valid_for: chrono::Duration) -> MintOutcome {
        MintOutcome::Minted {
            token: SecretString::new(value),
            expires_at: Utc::now() + valid_for,
        }
    }

    #[test]
    fn refresh_is_five_minutes_before_expiry() {
        let now_utc = Utc::now();
        let now = Instant::now();
        let at = token_refresh_at(now_utc + chrono::Duration::minutes(60), now_utc, now);
        assert_eq!(at - now, Duration::from_secs(55 * 60));
        let at = token_refresh_at(now_utc + chrono::Duration::minutes(2), now_utc, now);
        assert_eq!(at, now);
        let at = token_refresh_at(now_utc - chrono::Duration::minutes(2), now_utc, now);
        assert_eq!(at, now);
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_mint() {
        let cache = TokenCache::default();
        let mints = AtomicUsize::new(0);
        let calls = (0..25).map(|_| {
            cache.get_or_mint(7, None, || async {
                mints.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(minted("t1", chrono::Duration::hours(1)))
            })
        });
        let results = futures::future::join_all(calls).await;
        assert_eq!(mints.load(Ordering::SeqCst), 1);
        for r in results {
            assert_eq!(r.unwrap(), Acquired::Token(SecretString::new("t1")));
        }
    }

    #[tokio::test]
    async fn stale_token_is_replaced_once() {
        let cache = TokenCache::default();
        let first = cache
            .get_or_mint(7, None, || async {
                Ok(minted("old", chrono::Duration::hours(1)))
            })
            .await
            .unwrap();
        assert_eq!(first, Acquired::Token(SecretString::new("old")));
        let stale = SecretString::new("old");
        let mints = AtomicUsize::new(0);
        for _ in 0..3 {
            let got = cache
                .get_or_mint(7, Some(&stale), || async {
                    mints.fetch_add(1, Ordering::SeqCst);
                    Ok(minted("new", chrono::Duration::hours(1)))
                })
                .await
                .unwrap();
            assert_eq!(got, Acquired::Token(SecretString::new("new")));
        }
        assert_eq!(mints.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn nearly_expired_token_is_reminted() {
        let cache = TokenCache::default();
        cache
            .get_or_mint(7, None, || async {
                Ok(minted("short", chrono::Duration::minutes(4)))
            })
            .await
            .unwrap();
        let got = cache
            .get_or_mint(7, None, || async {
                Ok(minted("long", chrono::Duration::hours(1)))
            })
            .await
            .unwrap();
        assert_eq!(got, Acquired::Token(SecretString::new("long")));
    }

    #[tokio::test]
    async fn failure_is_shared_with_queued_callers_only() {
        let cache = TokenCache::default();
        let mints = AtomicUsize::new(0);
        let calls = (0..5).map(|_| {
            cache.get_or_mint(9, None, || async {
                mints.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Err(GitHubError::Server { status: 502 })
            })
        });
        let results = futures::future::join_all(calls).await;
        assert_eq!(mints.load(Ordering::SeqCst), 1);
        assert!(
            results
                .iter()
                .all(|r| matches!(r, Err(GitHubError::Server { status: 502 })))
        );
        // A caller arriving later tries again.
        let later = cache
            .get_or_mint(9, None, || async {
                mints.fetch_add(1, Ordering::SeqCst);
                Ok(minted("t", chrono::Duration::hours(1)))
            })
            .await
            .unwrap();
        assert_eq!(later, Acquired::Token(SecretString::new("t")));
        assert_eq!(mints.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn installations_have_separate_tokens() {
        let cache = TokenCache::default();
        let a = cache
            .get_or_mint(1, None, || async {
                Ok(minted("a", chrono::Duration::hours(1)))
            })
            .await;
        let b = cache
            .get_or_mint(2, None, || async {
                Ok(minted("b", chrono::Duration::hours(1)))
            })
            .await;
        assert_eq!(a.unwrap(), Acquired::Token(SecretString::new("a")));
        assert_eq!(b.unwrap(), Acquired::Token(SecretString::new("b")));
    }
}
