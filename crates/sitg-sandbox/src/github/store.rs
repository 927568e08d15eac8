//! What the GitHub simulator holds: installations, their repositories, pull requests,
//! issue comments and installation access tokens. Pure logic, no HTTP.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;

/// Open or closed, as GitHub's `state` field says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PullState {
    /// `open`
    Open,
    /// `closed`
    Closed,
}

impl PullState {
    /// GitHub's wire value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}

/// An issue comment, for inspection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssueComment {
    /// Comment id (GitHub-sized numbers).
    pub id: u64,
    /// Markdown body.
    pub body: String,
    /// Author login; `{app_slug}[bot]` for comments written through an installation token.
    pub author_login: String,
    /// True when written by the App.
    pub author_is_bot: bool,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last update time.
    pub updated_at: DateTime<Utc>,
}

/// Why a setup or inspection call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// No repository with that full name.
    #[error("unknown repository {0}")]
    UnknownRepository(String),
    /// No installation with that id.
    #[error("unknown installation {0}")]
    UnknownInstallation(i64),
    /// A full name that is not `owner/name`.
    #[error("repository name {0:?} is not owner/name")]
    InvalidName(String),
}

#[derive(Clone, Debug)]
pub(crate) struct Installation {
    pub(crate) id: i64,
    pub(crate) account_login: String,
    pub(crate) account_type: String,
    pub(crate) account_id: i64,
    pub(crate) created_at: DateTime<Utc>,
}

#[derive(Clone, Debug)]
pub(crate) struct Pull {
    pub(crate) number: u64,
    pub(crate) id: i64,
    pub(crate) state: PullState,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) closed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Repo {
    pub(crate) id: i64,
    pub(crate) owner: String,
    pub(crate) name: String,
    pub(crate) installation_id: i64,
    pub(crate) permission_denied: bool,
    pub(crate) pulls: BTreeMap<u64, Pull>,
    pub(crate) created_at: DateTime<Utc>,
}

impl Repo {
    pub(crate) fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Comment {
    pub(crate) id: u64,
    pub(crate) repo_id: i64,
    pub(crate) issue_number: u64,
    pub(crate) public: IssueComment,
    pub(crate) author_id: i64,
}

struct Token {
    installation_id: i64,
    expires_at: DateTime<Utc>,
}

/// A body GitHub refuses for an issue comment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BodyRefusal {
    Missing,
    TooLong,
}

/// GitHub's limit on issue comment bodies, in characters.
pub const MAX_COMMENT_CHARS: usize = 65_536;

pub(crate) fn check_comment_body(body: Option<&str>) -> Result<&str, BodyRefusal> {
    let body = body.ok_or(BodyRefusal::Missing)?;
    if body.chars().count() > MAX_COMMENT_CHARS {
        return Err(BodyRefusal::TooLong);
    }
    Ok(body)
}

pub(crate) struct Store {
    installations: BTreeMap<i64, Installation>,
    repos: BTreeMap<i64, Repo>,
    repo_by_name: HashMap<String, i64>,
    comments: BTreeMap<u64, Comment>,
    issue_comments: HashMap<(i64, u64), Vec<u64>>,
    tokens: HashMap<String, Token>,
    next_comment_id: u64,
    next_pull_id: i64,
    next_account_id: i64,
    auto_create_pulls: bool,
}

fn name_key(full_name: &str) -> String {
    full_name.to_ascii_lowercase()
}

fn split_full_name(full_name: &str) -> Result<(&str, &str), SetupError> {
    match full_name.split_once('/') {
        Some((owner, name)) if !owner.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((owner, name))
        }
        _ => Err(SetupError::InvalidName(full_name.to_owned())),
    }
}

impl Store {
    pub(crate) fn new(auto_create_pulls: bool) -> Self {
        Self {
            installations: BTreeMap::new(),
            repos: BTreeMap::new(),
            repo_by_name: HashMap::new(),
            comments: BTreeMap::new(),
            issue_comments: HashMap::new(),
            tokens: HashMap::new(),
            // Real comment ids are this large; small ids would hide i32 truncation bugs.
            next_comment_id: 2_100_000_000,
            next_pull_id: 1_800_000_000,
            next_account_id: 9_000_000,
            auto_create_pulls,
        }
    }

    pub(crate) fn add_installation(
        &mut self,
        id: i64,
        account_login: &str,
        account_type: &str,
        now: DateTime<Utc>,
    ) {
        let account_id = self.next_account_id;
        self.next_account_id += 1;
        self.installations.insert(
            id,
            Installation {
                id,
                account_login: account_login.to_owned(),
                account_type: account_type.to_owned(),
                account_id,
                created_at: now,
            },
        );
    }

    pub(crate) fn remove_installation(&mut self, id: i64) -> bool {
        let existed = self.installations.remove(&id).is_some();
        let gone: Vec<i64> = self
            .repos
            .values()
            .filter(|r| r.installation_id == id)
            .map(|r| r.id)
            .collect();
        for repo_id in gone {
            if let Some(repo) = self.repos.remove(&repo_id) {
                self.repo_by_name.remove(&name_key(&repo.full_name()));
            }
        }
        self.tokens.retain(|_, t| t.installation_id != id);
        existed
    }

    /// Adds a repository to an installation, or moves it there.
    pub(crate) fn add_repository(
        &mut self,
        installation_id: i64,
        repo_id: i64,
        full_name: &str,
        now: DateTime<Utc>,
    ) -> Result<(), SetupError> {
        if !self.installations.contains_key(&installation_id) {
            return Err(SetupError::UnknownInstallation(installation_id));
        }
        let (owner, name) = split_full_name(full_name)?;
        if let Some(old) = self.repos.get(&repo_id) {
            self.repo_by_name.remove(&name_key(&old.full_name()));
        }
        let previous = self.repos.remove(&repo_id);
        let repo = Repo {
            id: repo_id,
            owner: owner.to_owned(),
            name: name.to_owned(),
            installation_id,
            permission_denied: previous.as_ref().is_some_and(|r| r.permission_denied),
            pulls: previous.map(|r| r.pulls).unwrap_or_default(),
            created_at: now,
        };
        self.repo_by_name.insert(name_key(full_name), repo_id);
        self.repos.insert(repo_id, repo);
        Ok(())
    }

    pub(crate) fn installation(&self, id: i64) -> Option<&Installation> {
        self.installations.get(&id)
    }

    pub(crate) fn repo_by_name(&self, full_name: &str) -> Option<&Repo> {
        let id = self.repo_by_name.get(&name_key(full_name))?;
        self.repos.get(id)
    }

    fn repo_id(&self, full_name: &str) -> Result<i64, SetupError> {
        self.repo_by_name
            .get(&name_key(full_name))
            .copied()
            .ok_or_else(|| SetupError::UnknownRepository(full_name.to_owned()))
    }

    pub(crate) fn repo(&self, id: i64) -> Option<&Repo> {
        self.repos.get(&id)
    }

    /// Repositories of an installation, by full name.
    pub(crate) fn installation_repos(&self, installation_id: i64) -> Vec<&Repo> {
        let mut repos: Vec<&Repo> = self
            .repos
            .values()
            .filter(|r| r.installation_id == installation_id)
            .collect();
        repos.sort_by_key(|r| name_key(&r.full_name()));
        repos
    }

    pub(crate) fn set_permission_denied(
        &mut self,
        full_name: &str,
        denied: bool,
    ) -> Result<(), SetupError> {
        let id = self.repo_id(full_name)?;
        if let Some(repo) = self.repos.get_mut(&id) {
            repo.permission_denied = denied;
        }
        Ok(())
    }

    fn new_pull(&mut self, number: u64, now: DateTime<Utc>) -> Pull {
        let id = self.next_pull_id;
        self.next_pull_id += 1;
        Pull {
            number,
            id,
            state: PullState::Open,
            created_at: now,
            updated_at: now,
            closed_at: None,
        }
    }

    pub(crate) fn add_pull_request(
        &mut self,
        full_name: &str,
        number: u64,
        now: DateTime<Utc>,
    ) -> Result<(), SetupError> {
        let repo_id = self.repo_id(full_name)?;
        let pull = self.new_pull(number, now);
        if let Some(repo) = self.repos.get_mut(&repo_id) {
            repo.pulls.entry(number).or_insert(pull);
        }
        Ok(())
    }

    /// The pull request, created on first touch when auto-creation is on.
    pub(crate) fn touch_pull(
        &mut self,
        repo_id: i64,
        number: u64,
        now: DateTime<Utc>,
    ) -> Option<&mut Pull> {
        let exists = self.repos.get(&repo_id)?.pulls.contains_key(&number);
        if !exists {
            if !self.auto_create_pulls || number == 0 {
                return None;
            }
            let pull = self.new_pull(number, now);
            self.repos.get_mut(&repo_id)?.pulls.insert(number, pull);
        }
        self.repos.get_mut(&repo_id)?.pulls.get_mut(&number)
    }

    pub(crate) fn pull_state(&self, full_name: &str, number: u64) -> Option<PullState> {
        let repo = self.repo_by_name(full_name)?;
        repo.pulls.get(&number).map(|p| p.state)
    }

    pub(crate) fn add_comment(
        &mut self,
        repo_id: i64,
        issue_number: u64,
        author_login: &str,
        author_is_bot: bool,
        body: &str,
        at: DateTime<Utc>,
    ) -> &Comment {
        let id = self.next_comment_id;
        self.next_comment_id += 1;
        let comment = Comment {
            id,
            repo_id,
            issue_number,
            author_id: if author_is_bot { 41_898_282 } else { 583_231 },
            public: IssueComment {
                id,
                body: body.to_owned(),
                author_login: author_login.to_owned(),
                author_is_bot,
                created_at: at,
                updated_at: at,
            },
        };
        self.issue_comments
            .entry((repo_id, issue_number))
            .or_default()
            .push(id);
        self.comments.entry(id).or_insert(comment)
    }

    /// Comments of one issue or pull request, oldest first (by creation time, then id),
    /// as GitHub lists them.
    pub(crate) fn issue_comments(&self, repo_id: i64, issue_number: u64) -> Vec<&Comment> {
        let mut comments: Vec<&Comment> = self
            .issue_comments
            .get(&(repo_id, issue_number))
            .map(|ids| ids.iter().filter_map(|id| self.comments.get(id)).collect())
            .unwrap_or_default();
        comments.sort_by_key(|c| (c.public.created_at, c.id));
        comments
    }

    pub(crate) fn comments_of(&self, full_name: &str, number: u64) -> Vec<IssueComment> {
        self.repo_id(full_name)
            .map(|repo_id| {
                self.issue_comments(repo_id, number)
                    .into_iter()
                    .map(|c| c.public.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(crate) fn repo_id_of(&self, full_name: &str) -> Result<i64, SetupError> {
        self.repo_id(full_name)
    }

    /// The comment when it belongs to `repo_id`.
    pub(crate) fn comment_in(&self, repo_id: i64, comment_id: u64) -> Option<&Comment> {
        self.comments
            .get(&comment_id)
            .filter(|c| c.repo_id == repo_id)
    }

    pub(crate) fn update_comment(
        &mut self,
        repo_id: i64,
        comment_id: u64,
        body: &str,
        now: DateTime<Utc>,
    ) -> Option<&Comment> {
        let comment = self
            .comments
            .get_mut(&comment_id)
            .filter(|c| c.repo_id == repo_id)?;
        comment.public.body = body.to_owned();
        comment.public.updated_at = now;
        Some(comment)
    }

    /// Deletes the comment when it belongs to `repo_id`; returns its issue number.
    pub(crate) fn delete_comment(&mut self, repo_id: i64, comment_id: u64) -> Option<u64> {
        let comment = self.comment_in(repo_id, comment_id)?;
        let key = (comment.repo_id, comment.issue_number);
        self.comments.remove(&comment_id);
        if let Some(ids) = self.issue_comments.get_mut(&key) {
            ids.retain(|id| *id != comment_id);
        }
        Some(key.1)
    }

    /// A new installation access token, or None for an unknown installation.
    pub(crate) fn mint_token(
        &mut self,
        installation_id: i64,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<String> {
        self.installations.get(&installation_id)?;
        self.tokens.retain(|_, t| t.expires_at > now);
        let suffix: String = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(36)
            .map(char::from)
            .collect();
        let token = format!("ghs_{suffix}");
        self.tokens.insert(
            token.clone(),
            Token {
                installation_id,
                expires_at,
            },
        );
        Some(token)
    }

    /// The installation of a live token.
    pub(crate) fn token_installation(&self, token: &str, now: DateTime<Utc>) -> Option<i64> {
        self.tokens
            .get(token)
            .filter(|t| t.expires_at > now)
            .map(|t| t.installation_id)
    }

    pub(crate) fn revoke_tokens(&mut self) {
        self.tokens.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let now = Utc::now();
        let mut s = Store::new(true);
        s.add_installation(1, "org", "Organization", now);
        s.add_repository(1, 10, "org/Repo", now).unwrap();
        s
    }

    #[test]
    fn repository_names_are_case_insensitive_and_checked() {
        let mut s = store();
        assert_eq!(s.repo_by_name("ORG/repo").map(|r| r.id), Some(10));
        assert_eq!(
            s.add_repository(1, 11, "org/a/b", Utc::now()),
            Err(SetupError::InvalidName("org/a/b".into()))
        );
        assert_eq!(
            s.add_repository(2, 11, "org/b", Utc::now()),
            Err(SetupError::UnknownInstallation(2))
        );
    }

    #[test]
    fn tokens_expire_and_die_with_their_installation() {
        let mut s = store();
        let now = Utc::now();
        let token = s
            .mint_token(1, now + chrono::Duration::hours(1), now)
            .unwrap();
        assert!(token.starts_with("ghs_") && token.len() == 40);
        assert_eq!(s.token_installation(&token, now), Some(1));
        assert_eq!(
            s.token_installation(&token, now + chrono::Duration::hours(2)),
            None
        );
        assert_eq!(s.mint_token(2, now, now), None);
        s.remove_installation(1);
        assert_eq!(s.token_installation(&token, now), None);
        assert!(s.repo_by_name("org/repo").is_none());
    }

    #[test]
    fn comments_keep_order_and_stay_in_their_repository() {
        let mut s = store();
        let now = Utc::now();
        s.add_installation(2, "other", "User", now);
        s.add_repository(2, 20, "other/x", now).unwrap();
        let a = s.add_comment(10, 1, "u", false, "a", now).id;
        let b = s.add_comment(10, 1, "u", false, "b", now).id;
        assert!(s.update_comment(20, a, "hijack", now).is_none());
        assert_eq!(s.delete_comment(20, a), None);
        assert_eq!(s.delete_comment(10, a), Some(1));
        let left: Vec<u64> = s.issue_comments(10, 1).iter().map(|c| c.id).collect();
        assert_eq!(left, [b]);
    }

    #[test]
    fn comment_bodies_follow_githubs_limit_in_characters() {
        let fits = "é".repeat(MAX_COMMENT_CHARS);
        assert!(check_comment_body(Some(&fits)).is_ok());
        let over = "a".repeat(MAX_COMMENT_CHARS + 1);
        assert_eq!(check_comment_body(Some(&over)), Err(BodyRefusal::TooLong));
        assert_eq!(check_comment_body(None), Err(BodyRefusal::Missing));
    }

    #[test]
    fn pulls_are_created_on_first_touch_only_when_enabled() {
        let mut s = store();
        assert!(s.touch_pull(10, 5, Utc::now()).is_some());
        let mut strict = Store::new(false);
        let now = Utc::now();
        strict.add_installation(1, "org", "Organization", now);
        strict.add_repository(1, 10, "org/repo", now).unwrap();
        assert!(strict.touch_pull(10, 5, now).is_none());
        strict.add_pull_request("org/repo", 5, now).unwrap();
        assert!(strict.touch_pull(10, 5, now).is_some());
    }
}
