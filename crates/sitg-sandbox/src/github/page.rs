//! GitHub's REST pagination: `per_page` (default 30, at most 100) and `page` (from 1)
//! query parameters, and the `Link` response header with `prev`, `next`, `last` and
//! `first` relations.

use std::ops::Range;

/// Default page size of GitHub list endpoints.
pub const DEFAULT_PER_PAGE: usize = 30;
/// Largest page size GitHub honours.
pub const MAX_PER_PAGE: usize = 100;

/// A requested page, after GitHub's lenient parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    /// Items per page, 1..=100.
    pub per_page: usize,
    /// Whether `per_page` was given (GitHub repeats it in the links when it was).
    pub per_page_given: bool,
    /// Page number, from 1.
    pub page: usize,
}

impl PageRequest {
    /// Parses the raw query values: a missing, zero or unparsable value gets the default,
    /// a `per_page` above 100 is lowered to 100.
    pub fn parse(per_page: Option<&str>, page: Option<&str>) -> Self {
        let given = per_page
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|n| *n > 0);
        Self {
            per_page: given.unwrap_or(DEFAULT_PER_PAGE).min(MAX_PER_PAGE),
            per_page_given: given.is_some(),
            page: page
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| *n > 0)
                .unwrap_or(1),
        }
    }

    /// Index range of this page within `total` items (empty past the end).
    pub fn range(&self, total: usize) -> Range<usize> {
        let start = self.per_page.saturating_mul(self.page - 1).min(total);
        let end = start.saturating_add(self.per_page).min(total);
        start..end
    }

    /// Number of pages for `total` items (at least 1).
    pub fn last_page(&self, total: usize) -> usize {
        total.div_ceil(self.per_page).max(1)
    }

    /// The `Link` header value for `total` items, or None when everything fits on one
    /// page. `base` is the absolute URL without query (`https://api.github.com/...`).
    /// Relations appear in GitHub's order: prev, next, last, first.
    pub fn link_header(&self, base: &str, total: usize) -> Option<String> {
        let last = self.last_page(total);
        if last <= 1 {
            return None;
        }
        let url = |page: usize| {
            if self.per_page_given {
                format!("<{base}?per_page={}&page={page}>", self.per_page)
            } else {
                format!("<{base}?page={page}>")
            }
        };
        let mut links = Vec::new();
        if self.page > 1 {
            links.push(format!("{}; rel=\"prev\"", url((self.page - 1).min(last))));
        }
        if self.page < last {
            links.push(format!("{}; rel=\"next\"", url(self.page + 1)));
            links.push(format!("{}; rel=\"last\"", url(last)));
        }
        if self.page > 1 {
            links.push(format!("{}; rel=\"first\"", url(1)));
        }
        Some(links.join(", "))
    }
}

impl PageRequest {
    /// [`Self::link_header`] of a broken server: on the last page (a single page
    /// included) the `next` relation points back to page 1, so following `next` never
    /// ends.
    pub fn cyclic_link_header(&self, base: &str, total: usize) -> String {
        let last = self.last_page(total);
        let first = if self.per_page_given {
            format!("<{base}?per_page={}&page=1>", self.per_page)
        } else {
            format!("<{base}?page=1>")
        };
        match self.link_header(base, total) {
            Some(links) if self.page < last => links,
            Some(links) => format!("{first}; rel=\"next\", {links}"),
            None => format!("{first}; rel=\"next\""),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing_is_lenient_like_github() {
        assert_eq!(
            PageRequest::parse(None, None),
            PageRequest {
                per_page: 30,
                per_page_given: false,
                page: 1
            }
        );
        let p = PageRequest::parse(Some("500"), Some("3"));
        assert_eq!((p.per_page, p.page), (100, 3));
        let p = PageRequest::parse(Some("abc"), Some("0"));
        assert_eq!((p.per_page, p.per_page_given, p.page), (30, false, 1));
    }

    #[test]
    fn ranges_cover_all_items_once() {
        let total = 250;
        let mut seen = 0;
        for page in 1..=4 {
            let p = PageRequest::parse(Some("100"), Some(&page.to_string()));
            seen += p.range(total).len();
        }
        assert_eq!(seen, 250);
        assert!(
            PageRequest::parse(Some("100"), Some("9"))
                .range(total)
                .is_empty()
        );
    }

    #[test]
    fn links_follow_githubs_order() {
        let base = "https://api.github.com/repositories/1/issues/2/comments";
        let first = PageRequest::parse(Some("100"), None);
        assert_eq!(
            first.link_header(base, 250).unwrap(),
            format!(
                "<{base}?per_page=100&page=2>; rel=\"next\", <{base}?per_page=100&page=3>; rel=\"last\""
            )
        );
        let middle = PageRequest::parse(None, Some("2"));
        assert_eq!(
            middle.link_header(base, 90).unwrap(),
            format!(
                "<{base}?page=1>; rel=\"prev\", <{base}?page=3>; rel=\"next\", \
                 <{base}?page=3>; rel=\"last\", <{base}?page=1>; rel=\"first\""
            )
        );
        let last = PageRequest::parse(Some("100"), Some("3"));
        assert_eq!(
            last.link_header(base, 250).unwrap(),
            format!(
                "<{base}?per_page=100&page=2>; rel=\"prev\", <{base}?per_page=100&page=1>; rel=\"first\""
            )
        );
        assert_eq!(first.link_header(base, 100), None);
    }

    #[test]
    fn a_cyclic_header_leads_from_the_last_page_back_to_the_first() {
        let base = "https://api.github.com/repositories/1/issues/2/comments";
        let last = PageRequest::parse(Some("100"), Some("3"));
        assert!(
            last.cyclic_link_header(base, 250)
                .starts_with(&format!("<{base}?per_page=100&page=1>; rel=\"next\", "))
        );
        let only = PageRequest::parse(Some("100"), None);
        assert_eq!(
            only.cyclic_link_header(base, 5),
            format!("<{base}?per_page=100&page=1>; rel=\"next\"")
        );
        let middle = PageRequest::parse(Some("100"), Some("2"));
        assert_eq!(
            middle.cyclic_link_header(base, 250),
            middle.link_header(base, 250).unwrap()
        );
    }
}
