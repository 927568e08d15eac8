//! Following GitHub's paginated lists through the RFC 8288 `Link` header.

use std::collections::HashSet;

use http::HeaderMap;
use http::header::LINK;
use url::Url;

use super::error::GitHubError;

/// GitHub's largest `per_page`.
pub(super) const PER_PAGE: &str = "100";
/// [`PER_PAGE`] as a number.
pub(super) const PER_PAGE_COUNT: usize = 100;
/// Pages followed before giving up on a list (100 items each): a guard against a
/// `Link` chain that never ends, far above any real pull request or installation.
pub(super) const MAX_PAGES: usize = 500;

/// The error of a list that ran past [`MAX_PAGES`]: [`GitHubError::InvalidResponse`]
/// naming `what`.
pub(super) fn too_many_pages(what: &str) -> GitHubError {
    GitHubError::InvalidResponse(format!("{what}: more than {MAX_PAGES} pages"))
}

/// Why a `Link` header could not be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PaginationError {
    #[error("malformed Link header")]
    Malformed,
    #[error("Link rel=\"next\" is not a valid URL")]
    InvalidUrl,
    /// The installation token must never be sent to another host than the API's.
    #[error("Link rel=\"next\" points outside the GitHub API origin")]
    ForeignOrigin,
}

/// The `rel="next"` URL of a paginated response, or `None` on the last page.
///
/// The URL must share `api_base`'s origin (scheme, host, port), since the caller will
/// send its bearer token there.
pub(crate) fn next_page_url(
    headers: &HeaderMap,
    api_base: &Url,
) -> Result<Option<Url>, PaginationError> {
    let values: Vec<&str> = headers
        .get_all(LINK)
        .iter()
        .map(|v| v.to_str().map_err(|_| PaginationError::Malformed))
        .collect::<Result<_, _>>()?;
    if values.is_empty() {
        return Ok(None);
    }
    let links =
        parse_link_header::parse(&values.join(", ")).map_err(|_| PaginationError::Malformed)?;
    let Some(next) = links.get(&Some("next".to_owned())) else {
        return Ok(None);
    };
    let url = Url::parse(&next.raw_uri).map_err(|_| PaginationError::InvalidUrl)?;
    if url.origin() != api_base.origin() {
        return Err(PaginationError::ForeignOrigin);
    }
    Ok(Some(url))
}

/// Why a listing was stopped before its last page.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum PageLoop {
    /// `rel="next"` pointed at a page already read.
    #[error("Link rel=\"next\" leads back to a page already read, after {pages} pages")]
    Revisited { pages: usize },
    /// More pages than the list can fill.
    #[error("more than {limit} pages, more than the list can fill")]
    TooMany { limit: usize },
}

/// The pages one listing has read: refuses a `next` page already read and more pages
/// than `limit`, so a `Link` chain that never ends costs a bounded number of requests.
#[derive(Debug)]
pub(crate) struct PageGuard {
    seen: HashSet<String>,
    limit: usize,
}

impl PageGuard {
    /// A listing that starts at `first` and may read `limit` pages (at least one).
    pub(crate) fn new(first: &Url, limit: usize) -> Self {
        Self {
            seen: HashSet::from([first.as_str().to_owned()]),
            limit: limit.max(1),
        }
    }

    /// Pages read or about to be, the first included.
    pub(crate) fn pages(&self) -> usize {
        self.seen.len()
    }

    /// Lowers the page limit (never below the pages already admitted).
    pub(crate) fn limit_to(&mut self, pages: usize) {
        self.limit = self.limit.min(pages.max(self.pages()));
    }

    /// Admits `next` as the next page to read.
    ///
    /// # Errors
    /// [`PageLoop::Revisited`] for a URL already read, [`PageLoop::TooMany`] past the limit.
    pub(crate) fn admit(&mut self, next: &Url) -> Result<(), PageLoop> {
        if self.seen.contains(next.as_str()) {
            return Err(PageLoop::Revisited {
                pages: self.pages(),
            });
        }
        if self.pages() >= self.limit {
            return Err(PageLoop::TooMany { limit: self.limit });
        }
        self.seen.insert(next.as_str().to_owned());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_link(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(LINK, value.parse().unwrap());
        h
    }

    fn base() -> Url {
        Url::parse("https://api.github.com").unwrap()
    }

    #[test]
    fn finds_next_among_githubs_relations() {
        let h = with_link(
            "<https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=2>; rel=\"next\", \
             <https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=3>; rel=\"last\"",
        );
        let next = next_page_url(&h, &base()).unwrap().unwrap();
        assert_eq!(
            next.as_str(),
            "https://api.github.com/repositories/1/issues/2/comments?per_page=100&page=2"
        );
    }

    #[test]
    fn last_page_has_no_next() {
        let h = with_link(
            "<https://api.github.com/x?page=1>; rel=\"prev\", <https://api.github.com/x?page=1>; rel=\"first\"",
        );
        assert_eq!(next_page_url(&h, &base()).unwrap(), None);
        assert_eq!(next_page_url(&HeaderMap::new(), &base()).unwrap(), None);
    }

    #[test]
    fn next_on_another_host_is_refused() {
        let h = with_link("<https://evil.example/x?page=2>; rel=\"next\"");
        assert_eq!(
            next_page_url(&h, &base()),
            Err(PaginationError::ForeignOrigin)
        );
        let h = with_link("<http://api.github.com/x?page=2>; rel=\"next\"");
        assert_eq!(
            next_page_url(&h, &base()),
            Err(PaginationError::ForeignOrigin)
        );
    }

    #[test]
    fn same_origin_with_a_path_prefix_is_followed() {
        let ghes = Url::parse("http://127.0.0.1:8080/api/v3/").unwrap();
        let h = with_link(
            "<http://127.0.0.1:8080/api/v3/installation/repositories?page=2>; rel=\"next\"",
        );
        assert!(next_page_url(&h, &ghes).unwrap().is_some());
    }

    #[test]
    fn the_guard_refuses_revisits_and_pages_past_its_limit() {
        let page = |n: usize| Url::parse(&format!("https://api.github.com/x?page={n}")).unwrap();
        let mut guard = PageGuard::new(&page(1), 500);
        guard.admit(&page(2)).unwrap();
        assert_eq!(guard.admit(&page(1)), Err(PageLoop::Revisited { pages: 2 }));
        guard.limit_to(3);
        guard.admit(&page(3)).unwrap();
        assert_eq!(guard.admit(&page(4)), Err(PageLoop::TooMany { limit: 3 }));
        // A limit below what was read already keeps what was read.
        guard.limit_to(1);
        assert_eq!(guard.admit(&page(5)), Err(PageLoop::TooMany { limit: 3 }));
    }

    #[test]
    fn garbage_is_malformed() {
        let h = with_link("<https://api.github.com/x?page=2>; rel");
        assert_eq!(next_page_url(&h, &base()), Err(PaginationError::Malformed));
    }
}
