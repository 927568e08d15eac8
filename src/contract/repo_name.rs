//! Repository full names (`owner/name`), checked against the characters GitHub allows
//! before any of them becomes part of a request URL.

use std::fmt;
use std::str::FromStr;

/// Longest GitHub account (user or organisation) login.
const MAX_OWNER_LEN: usize = 39;
/// Longest GitHub repository name.
const MAX_NAME_LEN: usize = 100;

/// A validated repository full name, `owner/name`.
///
/// - owner: 1..=39 ASCII alphanumerics or single hyphens, neither first nor last;
/// - name: 1..=100 of `A-Z a-z 0-9 . _ -`, and not `.` or `..`.
///
/// `Display` prints `owner/name`. Case is kept as given (GitHub itself compares
/// case-insensitively).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RepoFullName {
    owner: String,
    name: String,
}

/// Why a string is not a repository full name. The offending value is left out on
/// purpose: it comes from outside and the caller already has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRepoName {
    /// Not exactly one `/` separating two parts.
    #[error("repository full name must be \"owner/name\" with exactly one '/'")]
    Shape,
    /// The owner part breaks GitHub's login rules.
    #[error(
        "repository owner must be 1 to 39 letters, digits or single hyphens, not starting or ending with a hyphen"
    )]
    Owner,
    /// The name part breaks GitHub's repository-name rules.
    #[error(
        "repository name must be 1 to 100 of letters, digits, '.', '_' or '-', and not \".\" or \"..\""
    )]
    Name,
}

impl RepoFullName {
    /// Parses and validates `owner/name`.
    ///
    /// # Errors
    /// [`InvalidRepoName`] for anything GitHub would not accept, e.g. `""`, `"a b/c"`,
    /// `"org/.."` or `"org/repo/../../x"`.
    pub fn parse(s: &str) -> Result<Self, InvalidRepoName> {
        let (owner, name) = s.split_once('/').ok_or(InvalidRepoName::Shape)?;
        if name.contains('/') {
            return Err(InvalidRepoName::Shape);
        }
        if !is_valid_owner(owner) {
            return Err(InvalidRepoName::Owner);
        }
        if !is_valid_name(name) {
            return Err(InvalidRepoName::Name);
        }
        Ok(Self {
            owner: owner.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The account (user or organisation) login.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// The repository name without its owner.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for RepoFullName {
    type Err = InvalidRepoName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for RepoFullName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.owner, self.name)
    }
}

fn is_valid_owner(owner: &str) -> bool {
    (1..=MAX_OWNER_LEN).contains(&owner.len())
        && owner
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
        && !owner.contains("--")
}

fn is_valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != ".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_names_github_allows() {
        for s in [
            "org/repo",
            "a/b",
            "Octo-Cat/Hello-World",
            "o1/.github",
            "org/repo.rs",
            "org/under_score",
            "org/...",
            "org/-leading-hyphen-is-fine-in-repos",
            &format!("{}/{}", "a".repeat(39), "r".repeat(100)),
        ] {
            let parsed = RepoFullName::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(parsed.to_string(), s);
        }
        let r = RepoFullName::parse("octo-org/my.repo").unwrap();
        assert_eq!((r.owner(), r.name()), ("octo-org", "my.repo"));
    }

    #[test]
    fn rejects_names_github_does_not_allow() {
        use InvalidRepoName::*;
        let cases: &[(&str, InvalidRepoName)] = &[
            ("", Shape),
            ("org", Shape),
            ("org/repo/../../x", Shape),
            ("org/repo/", Shape),
            ("/repo", Owner),
            ("-org/repo", Owner),
            ("org-/repo", Owner),
            ("o--rg/repo", Owner),
            ("a b/c", Owner),
            ("o_rg/repo", Owner),
            ("org./repo", Owner),
            ("ørg/repo", Owner),
            ("org/", Name),
            ("org/..", Name),
            ("org/.", Name),
            ("org/a b", Name),
            ("org/a%2f", Name),
            ("org/repo?x=1", Name),
            ("org/repo#x", Name),
            ("org/rëpo", Name),
            ("org/a\\b", Name),
        ];
        for (s, want) in cases {
            assert_eq!(RepoFullName::parse(s), Err(*want), "{s:?}");
        }
        let long_owner = format!("{}/r", "a".repeat(40));
        assert_eq!(RepoFullName::parse(&long_owner), Err(Owner));
        let long_name = format!("o/{}", "r".repeat(101));
        assert_eq!(RepoFullName::parse(&long_name), Err(Name));
    }
}
