//! GitLab project issues that kopsci manages (drift issues): listed by
//! label and author, told apart by a hidden marker at the start of their
//! description, created, edited and closed — each answer checked to be the
//! issue that was sent, as for notes.
//!
//! Only issues written by the token's own user are ever edited or closed,
//! so a marker copied into someone else's issue is never touched. Labels
//! narrow the listing; should someone remove kopsci's label from an issue,
//! kopsci no longer sees it and opens a new one.

use serde_json::json;

use crate::errors::Result;
use crate::gitlab::api::{Attempt, Failure, GitLabApi, Method, Response, encode_segment};
use crate::gitlab::note::{current_user, listing, same_text};

/// Pages of issues read at most (100 issues each).
const MAX_PAGES: usize = 50;

/// One issue, as kopsci needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// The project-level id (`#12`).
    pub iid: u64,
    pub title: String,
    pub description: String,
    /// `opened` or `closed`.
    pub state: String,
    pub web_url: Option<String>,
}

impl Issue {
    /// The issue in a GitLab answer, when it has the fields kopsci needs.
    pub fn from_json(value: &serde_json::Value) -> Option<Issue> {
        let text = |key: &str| value.get(key).and_then(serde_json::Value::as_str);
        Some(Issue {
            iid: value.get("iid").and_then(serde_json::Value::as_u64)?,
            title: text("title")?.to_string(),
            description: text("description").unwrap_or_default().to_string(),
            state: text("state")?.to_string(),
            web_url: text("web_url").map(str::to_string),
        })
    }
}

/// The issues of one project, as the token's user.
#[derive(Debug)]
pub struct Issues<'a> {
    api: &'a GitLabApi,
    project: String,
    me: u64,
}

impl<'a> Issues<'a> {
    /// Issues of `project` (`CI_PROJECT_ID` or a project path); asks GitLab
    /// who the token's user is.
    pub fn new(api: &'a GitLabApi, project: &str) -> Result<Issues<'a>> {
        Ok(Issues {
            api,
            project: project.to_string(),
            me: current_user(api)?,
        })
    }

    fn path(&self) -> String {
        format!("/projects/{}/issues", encode_segment(&self.project))
    }

    /// Every open issue with `label` written by the token's user, oldest
    /// first.
    pub fn list_open(&self, label: &str) -> Result<Vec<Issue>> {
        let mut issues = Vec::new();
        let mut page = "1".to_string();
        for _ in 0..MAX_PAGES {
            let path = format!(
                "{}?state=opened&labels={}&author_id={}&order_by=created_at&sort=asc&per_page=100&page={}",
                self.path(),
                encode_segment(label),
                self.me,
                encode_segment(&page)
            );
            let response = self.api.request(Method::Get, &path, None)?;
            let listed = listing(&response, &format!("GET {}", self.path()))?;
            for value in listed {
                let author = value
                    .pointer("/author/id")
                    .and_then(serde_json::Value::as_u64);
                if let Some(issue) = Issue::from_json(value)
                    && author == Some(self.me)
                    && issue.state == "opened"
                {
                    issues.push(issue);
                }
            }
            match &response.next_page {
                Some(next) if !listed.is_empty() => page = next.clone(),
                _ => break,
            }
        }
        Ok(issues)
    }

    /// The oldest open issue with `label` whose description starts with
    /// `marker`.
    pub fn find_open(&self, label: &str, marker: &str) -> Result<Option<Issue>> {
        Ok(self
            .list_open(label)?
            .into_iter()
            .find(|issue| issue.description.starts_with(marker)))
    }

    /// Opens an issue. A POST is not idempotent: before retrying one that
    /// may have reached GitLab, it looks for the issue by `marker`.
    pub fn create(
        &self,
        title: &str,
        description: &str,
        label: &str,
        marker: &str,
    ) -> Result<Issue> {
        let path = self.path();
        let payload = json!({ "title": title, "description": description, "labels": label });
        self.api
            .with_retries(Method::Post, &path, |number, timeout| {
                if number > 1
                    && let Some(issue) = self.find_open(label, marker)?
                {
                    return Ok(Attempt::Done(issue));
                }
                Ok(
                    match self
                        .api
                        .call(Method::Post, &path, Some(&payload), timeout)
                        .and_then(|r| sent_issue(&r, None, title, description, "opened"))
                    {
                        Ok(issue) => Attempt::Done(issue),
                        Err(failure) => Attempt::Failed(failure),
                    },
                )
            })
    }

    /// Rewrites issue `iid`'s title and description.
    pub fn update(&self, iid: u64, title: &str, description: &str) -> Result<Issue> {
        self.put(
            iid,
            json!({ "title": title, "description": description }),
            title,
            description,
            "opened",
        )
    }

    /// Closes issue `iid` with a last description.
    pub fn close(&self, iid: u64, title: &str, description: &str) -> Result<Issue> {
        self.put(
            iid,
            json!({ "title": title, "description": description, "state_event": "close" }),
            title,
            description,
            "closed",
        )
    }

    fn put(
        &self,
        iid: u64,
        payload: serde_json::Value,
        title: &str,
        description: &str,
        state: &str,
    ) -> Result<Issue> {
        let path = format!("{}/{iid}", self.path());
        self.api.with_retries(Method::Put, &path, |_, timeout| {
            Ok(
                match self
                    .api
                    .call(Method::Put, &path, Some(&payload), timeout)
                    .and_then(|r| sent_issue(&r, Some(iid), title, description, state))
                {
                    Ok(issue) => Attempt::Done(issue),
                    Err(failure) => Attempt::Failed(failure),
                },
            )
        })
    }
}

/// The issue in `response` when it is the one sent (title, description,
/// state, and iid `expected` when editing); otherwise why not.
fn sent_issue(
    response: &Response,
    expected: Option<u64>,
    title: &str,
    description: &str,
    state: &str,
) -> std::result::Result<Issue, Failure> {
    let what = match expected {
        Some(iid) => format!("edited (#{iid})"),
        None => "created".to_string(),
    };
    let Some(issue) = Issue::from_json(&response.body) else {
        return Err(Failure::Invalid(format!(
            "HTTP {} but the response is not the issue kopsci {what}",
            response.status
        )));
    };
    if expected.is_some_and(|iid| iid != issue.iid)
        || !same_text(&issue.title, title)
        || !same_text(&issue.description, description)
        || issue.state != state
    {
        return Err(Failure::Invalid(format!(
            "HTTP {} but issue #{} in the response is not what kopsci {what} (title, description or state differ)",
            response.status, issue.iid
        )));
    }
    Ok(issue)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(body: serde_json::Value) -> Response {
        Response {
            status: 201,
            body,
            next_page: None,
        }
    }

    #[test]
    fn an_answer_counts_only_when_it_is_the_issue_sent() {
        let good = json!({"iid": 4, "title": "t", "description": "d\n", "state": "opened"});
        let issue = sent_issue(&response(good.clone()), None, "t", "d", "opened").unwrap();
        assert_eq!(issue.iid, 4);
        assert!(sent_issue(&response(good.clone()), Some(5), "t", "d", "opened").is_err());
        assert!(sent_issue(&response(good.clone()), None, "t", "other", "opened").is_err());
        assert!(sent_issue(&response(good), Some(4), "t", "d", "closed").is_err());
        let err = sent_issue(&response(json!([])), None, "t", "d", "opened").unwrap_err();
        assert!(!err.retryable());
    }
}
