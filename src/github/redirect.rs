//! The stale-installation redirect (contract §2).
//!
//! An action may name an installation id GitHub no longer knows: the App was removed
//! from an account and installed again, and the new installation has another id. The
//! token mint for the stale id answers 404; when the call names a repository,
//! `GET /repos/{owner}/{repo}/installation` names the installation that holds it now,
//! and the call is made with that installation's token instead.
//!
//! This module owns every decision of that redirect, and its memory:
//! - [`Redirect`]: what a mint produces instead of a token (the token cache hands it to
//!   the callers queued behind the same mint, so the lookup is not repeated per caller);
//! - [`Redirects`]: which stale id now means which installation (learnt from the
//!   repository lookup, forgotten when the lookup no longer confirms it), which
//!   installation's token a call uses, what a mint 404 becomes, and where a caller
//!   holding a [`Redirect`] goes (once: a redirect is never followed twice).
//!
//! The requests themselves (mint, repository lookup) are [`super::installation_auth`]'s.

use std::collections::HashMap;

use parking_lot::Mutex;
use tracing::info;

use super::error::GitHubError;
use super::transport::Installation;
use crate::contract::RepoFullName;

/// A stale installation id's replacement: GitHub named installation `to` for the
/// call's repository after the mint for the id asked for answered 404.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Redirect {
    to: u64,
}

impl Redirect {
    /// Where a caller holding this redirect goes: the installation whose token serves
    /// `installation`.
    ///
    /// # Errors
    /// [`GitHubError::InstallationNotFound`] (for `installation.id`) when the call names
    /// no repository: without one a stale id is never resolved, so another
    /// installation's token is never borrowed for it (it would list someone else's
    /// repositories). This happens to a caller queued behind the mint of a call that
    /// had a repository.
    pub(super) fn follow(self, installation: Installation<'_>) -> Result<u64, GitHubError> {
        match installation.repo {
            Some(_) => Ok(self.to),
            None => Err(not_found(installation.id)),
        }
    }
}

/// The stale installation ids learnt so far, and the redirect's rules. One per client.
#[derive(Default)]
pub(super) struct Redirects {
    /// Installation ids found stale (mint 404) → the installation GitHub named for the
    /// repository instead.
    aliases: Mutex<HashMap<u64, u64>>,
}

impl Redirects {
    /// The installation whose token serves `installation`: the one learnt for its id
    /// when the call names a repository, else its own id (see [`Redirect::follow`] for
    /// why a call without a repository is never redirected).
    pub(super) fn target(&self, installation: Installation<'_>) -> u64 {
        match installation.repo {
            Some(_) => self.alias(installation.id).unwrap_or(installation.id),
            None => installation.id,
        }
    }

    /// What the mint 404 of `target`, asked for on behalf of `requested`, becomes, given
    /// `found`: the installation `GET /repos/{owner}/{repo}/installation` named for
    /// `repo` (`None` when that answered 404).
    ///
    /// Another installation than `target` is a [`Redirect`] to it, remembered for
    /// `requested` (forgotten when it is `requested` itself: the id is valid again).
    /// Otherwise whatever was learnt for `requested` is forgotten.
    ///
    /// # Errors
    /// [`GitHubError::InstallationNotFound`] (for `requested`) when the repository has
    /// no installation, or the one GitHub just refused.
    pub(super) fn resolve(
        &self,
        requested: u64,
        repo: &RepoFullName,
        target: u64,
        found: Option<u64>,
    ) -> Result<Redirect, GitHubError> {
        match found {
            Some(found) if found != target => {
                info!(
                    event = "installation_resolved_from_repository",
                    installation_id = requested,
                    resolved_installation_id = found,
                    repo = %repo,
                    "installation not found; using the repository's installation"
                );
                self.set_alias(requested, (found != requested).then_some(found));
                Ok(Redirect { to: found })
            }
            _ => {
                self.set_alias(requested, None);
                Err(not_found(requested))
            }
        }
    }

    /// What a caller gets when the mint of the installation it was redirected to
    /// produced another redirect: a redirect is followed once.
    pub(super) fn redirected_twice(requested: u64) -> GitHubError {
        not_found(requested)
    }

    fn alias(&self, installation_id: u64) -> Option<u64> {
        self.aliases.lock().get(&installation_id).copied()
    }

    fn set_alias(&self, installation_id: u64, resolved: Option<u64>) {
        let mut aliases = self.aliases.lock();
        match resolved {
            Some(resolved) => aliases.insert(installation_id, resolved),
            None => aliases.remove(&installation_id),
        };
    }
}

/// The error of a call whose installation cannot be used: [`GitHubError::InstallationNotFound`]
/// naming `requested`, the id the caller knows.
pub(super) fn not_found(requested: u64) -> GitHubError {
    GitHubError::InstallationNotFound {
        installation_id: requested,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> RepoFullName {
        RepoFullName::parse("octo-org/hello").unwrap()
    }

    fn with_repo(id: u64, repo: &RepoFullName) -> Installation<'_> {
        Installation {
            id,
            repo: Some(repo),
        }
    }

    fn without_repo(id: u64) -> Installation<'static> {
        Installation { id, repo: None }
    }

    #[test]
    fn a_learnt_redirect_serves_calls_with_a_repository_only() {
        let redirects = Redirects::default();
        let repo = repo();
        assert_eq!(redirects.target(with_repo(7, &repo)), 7);
        let redirect = redirects.resolve(7, &repo, 7, Some(9)).unwrap();
        assert_eq!(redirect.follow(with_repo(7, &repo)).unwrap(), 9);
        assert_eq!(redirects.target(with_repo(7, &repo)), 9);
        // Without a repository, never another installation's token.
        assert_eq!(redirects.target(without_repo(7)), 7);
        assert!(matches!(
            redirect.follow(without_repo(7)),
            Err(GitHubError::InstallationNotFound { installation_id: 7 })
        ));
    }

    #[test]
    fn a_lookup_that_does_not_confirm_forgets_the_redirect() {
        let redirects = Redirects::default();
        let repo = repo();
        redirects.resolve(7, &repo, 7, Some(9)).unwrap();
        // The replacement is stale too and the repository has no installation now.
        assert!(matches!(
            redirects.resolve(7, &repo, 9, None),
            Err(GitHubError::InstallationNotFound { installation_id: 7 })
        ));
        assert_eq!(redirects.target(with_repo(7, &repo)), 7);
        // The repository names the installation just refused: not found either.
        redirects.resolve(7, &repo, 7, Some(9)).unwrap();
        assert!(redirects.resolve(7, &repo, 9, Some(9)).is_err());
        assert_eq!(redirects.target(with_repo(7, &repo)), 7);
    }

    #[test]
    fn a_redirect_back_to_the_id_asked_for_is_not_remembered() {
        let redirects = Redirects::default();
        let repo = repo();
        redirects.resolve(7, &repo, 7, Some(9)).unwrap();
        // 9 went stale and the repository is back on 7.
        let redirect = redirects.resolve(7, &repo, 9, Some(7)).unwrap();
        assert_eq!(redirect.follow(with_repo(7, &repo)).unwrap(), 7);
        assert_eq!(redirects.target(with_repo(7, &repo)), 7);
    }
}
