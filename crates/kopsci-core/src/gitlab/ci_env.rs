//! The GitLab CI/CD predefined variables kopsci reads, gathered once into a
//! plain map so that every decision taken from them (which kind of pipeline
//! this is, which revision changes are counted from, where the merge-request
//! note goes) can be tested without touching the process environment.
//!
//! Variables that are set but empty count as unset: GitLab exports some of
//! them empty (`CI_COMMIT_BRANCH` in tag pipelines, for instance).

use std::collections::BTreeMap;

use crate::secret::Secret;

/// The variables kopsci reads. Only these are copied from the environment.
const NAMES: &[&str] = &[
    "GITLAB_CI",
    "CI_PIPELINE_SOURCE",
    "CI_COMMIT_BRANCH",
    "CI_COMMIT_SHA",
    "CI_COMMIT_BEFORE_SHA",
    "CI_DEFAULT_BRANCH",
    "CI_MERGE_REQUEST_IID",
    "CI_MERGE_REQUEST_DIFF_BASE_SHA",
    "CI_MERGE_REQUEST_EVENT_TYPE",
    "CI_MERGE_REQUEST_TARGET_BRANCH_SHA",
    "CI_API_V4_URL",
    "CI_PROJECT_ID",
    "CI_JOB_NAME",
    "CI_JOB_URL",
    "CI_PIPELINE_ID",
    "CI_PIPELINE_URL",
    "CI_SERVER_TLS_CA_FILE",
    "SSL_CERT_FILE",
];

/// The variable holding the token for merge-request notes. Read from the
/// environment only (never a flag), so it never shows in a process list.
pub const TOKEN_VARIABLE: &str = "KOPSCI_GITLAB_TOKEN";

/// A snapshot of the GitLab CI variables kopsci uses.
#[derive(Clone, Default)]
pub struct CiEnv {
    vars: BTreeMap<String, String>,
    token: Option<Secret>,
}

impl std::fmt::Debug for CiEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CiEnv")
            .field("vars", &self.vars)
            .field("token", &self.token)
            .finish()
    }
}

/// Which child pipeline to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipelineKind {
    /// Dry runs only (and the merge-request note): merge requests and any
    /// branch other than the default one.
    MergeRequest,
    /// Dry runs, then the jobs that apply (apply, or update and roll) or
    /// delete: the default branch.
    DefaultBranch,
    /// Dry runs of every cluster with `--detailed-exitcode`, nothing
    /// applied: scheduled pipelines.
    Drift,
}

impl PipelineKind {
    pub fn name(self) -> &'static str {
        match self {
            PipelineKind::MergeRequest => "merge-request",
            PipelineKind::DefaultBranch => "default-branch",
            PipelineKind::Drift => "drift",
        }
    }
}

/// Where the revision that changes are counted from came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseSource {
    /// `--changed-since` on the command line.
    Flag,
    /// A CI variable, named.
    Variable(&'static str),
}

impl std::fmt::Display for BaseSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BaseSource::Flag => f.write_str("--changed-since"),
            BaseSource::Variable(name) => f.write_str(name),
        }
    }
}

/// The revision changes are counted from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseRevision {
    pub rev: String,
    pub source: BaseSource,
}

impl CiEnv {
    /// Reads the variables kopsci uses from the process environment.
    pub fn from_env() -> CiEnv {
        let mut env = CiEnv::from_pairs(
            NAMES
                .iter()
                .filter_map(|name| std::env::var(name).ok().map(|v| (*name, v))),
        );
        env.token = std::env::var(TOKEN_VARIABLE)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .map(|t| Secret::new(t.trim()));
        env
    }

    /// A snapshot from explicit pairs (tests, or a caller that already has
    /// the variables). Empty values are dropped.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, String)>) -> CiEnv {
        CiEnv {
            vars: pairs
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
            token: None,
        }
    }

    /// Sets the note token (tests).
    pub fn with_token(mut self, token: Option<Secret>) -> CiEnv {
        self.token = token;
        self
    }

    /// A variable's value, `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str)
    }

    /// The merge-request note token, when set.
    pub fn token(&self) -> Option<&Secret> {
        self.token.as_ref()
    }

    /// Whether this runs inside a GitLab CI job.
    pub fn in_gitlab_ci(&self) -> bool {
        self.get("GITLAB_CI") == Some("true")
    }

    /// Which child pipeline this pipeline should get, and why; scheduled
    /// pipelines get drift detection.
    pub fn pipeline_kind(&self) -> (PipelineKind, String) {
        self.pipeline_kind_with(true)
    }

    /// Which child pipeline this pipeline should get, and why.
    ///
    /// Scheduled pipelines get drift detection when `drift_on_schedule`
    /// (dry runs only either way). Otherwise only a branch pipeline of the
    /// default branch gets apply (or update and roll) jobs; everything else (merge
    /// requests, other branches, tags, runs outside CI) gets dry runs only,
    /// so that a mistake here can never offer to apply an unreviewed
    /// change.
    pub fn pipeline_kind_with(&self, drift_on_schedule: bool) -> (PipelineKind, String) {
        if drift_on_schedule && self.get("CI_PIPELINE_SOURCE") == Some("schedule") {
            return (
                PipelineKind::Drift,
                "CI_PIPELINE_SOURCE is schedule: drift detection".to_string(),
            );
        }
        if self.get("CI_PIPELINE_SOURCE") == Some("merge_request_event") {
            return (
                PipelineKind::MergeRequest,
                "CI_PIPELINE_SOURCE is merge_request_event".to_string(),
            );
        }
        match (self.get("CI_COMMIT_BRANCH"), self.get("CI_DEFAULT_BRANCH")) {
            (Some(branch), Some(default)) if branch == default => (
                PipelineKind::DefaultBranch,
                format!("CI_COMMIT_BRANCH is the default branch `{default}`"),
            ),
            (Some(branch), _) => (
                PipelineKind::MergeRequest,
                format!("branch `{branch}` is not the default branch: dry runs only"),
            ),
            _ if self.in_gitlab_ci() => (
                PipelineKind::MergeRequest,
                "not a branch pipeline: dry runs only".to_string(),
            ),
            _ => (
                PipelineKind::MergeRequest,
                "outside GitLab CI: dry runs only; --for default-branch adds the apply (or update and roll) jobs"
                    .to_string(),
            ),
        }
    }

    /// The revision changed files are counted from: `flag` when given;
    /// in a merged-results pipeline the target branch's commit (the merge
    /// commit's other parent, so only the merge request's own changes
    /// count); in other merge-request pipelines the merge request's diff
    /// base; on a branch the commit before the push. `None` when there is
    /// none (a scheduled or web-started pipeline, a new branch, a run
    /// outside CI): every cluster is then selected.
    pub fn base_revision(&self, flag: Option<&str>) -> Option<BaseRevision> {
        if let Some(rev) = flag.filter(|r| !r.trim().is_empty()) {
            return Some(BaseRevision {
                rev: rev.trim().to_string(),
                source: BaseSource::Flag,
            });
        }
        let mut candidates: Vec<&'static str> = Vec::new();
        if self.get("CI_MERGE_REQUEST_EVENT_TYPE") == Some("merged_result") {
            candidates.push("CI_MERGE_REQUEST_TARGET_BRANCH_SHA");
        }
        candidates.push("CI_MERGE_REQUEST_DIFF_BASE_SHA");
        // GitLab sets the commit before the push to all zeros when there is
        // none (new branch, merge-request pipelines, schedules).
        candidates.push("CI_COMMIT_BEFORE_SHA");
        candidates.into_iter().find_map(|name| {
            self.get(name)
                .filter(|v| !v.chars().all(|c| c == '0'))
                .map(|rev| BaseRevision {
                    rev: rev.to_string(),
                    source: BaseSource::Variable(name),
                })
        })
    }
}

impl CiEnv {
    /// What `CI_COMMIT_BEFORE_SHA` says when [`base_revision`](Self::base_revision)
    /// found none: unset, or all zeros (a new branch, or a pipeline no
    /// push started).
    pub fn no_base(&self) -> crate::gitlab::affected::NoBase {
        use crate::gitlab::affected::NoBase;
        match self.get("CI_COMMIT_BEFORE_SHA") {
            Some(sha) if sha.chars().all(|c| c == '0') => match self.get("CI_PIPELINE_SOURCE") {
                None | Some("push") => NoBase::NewBranch,
                Some(source) => NoBase::ZerosFor(source.to_string()),
            },
            _ => NoBase::Unset,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&'static str, &str)]) -> CiEnv {
        CiEnv::from_pairs(pairs.iter().map(|(k, v)| (*k, v.to_string())))
    }

    #[test]
    fn pipeline_kind_is_default_branch_only_on_the_default_branch() {
        let mr = env(&[
            ("GITLAB_CI", "true"),
            ("CI_PIPELINE_SOURCE", "merge_request_event"),
            ("CI_DEFAULT_BRANCH", "main"),
        ]);
        assert_eq!(mr.pipeline_kind().0, PipelineKind::MergeRequest);
        let main = env(&[
            ("GITLAB_CI", "true"),
            ("CI_PIPELINE_SOURCE", "push"),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_DEFAULT_BRANCH", "main"),
        ]);
        assert_eq!(main.pipeline_kind().0, PipelineKind::DefaultBranch);
        let feature = env(&[
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_BRANCH", "feature"),
            ("CI_DEFAULT_BRANCH", "main"),
        ]);
        let (kind, why) = feature.pipeline_kind();
        assert_eq!(kind, PipelineKind::MergeRequest);
        assert!(why.contains("feature"), "{why}");
        let tag = env(&[
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_BRANCH", ""),
            ("CI_DEFAULT_BRANCH", "main"),
        ]);
        assert_eq!(tag.pipeline_kind().0, PipelineKind::MergeRequest);
        assert_eq!(env(&[]).pipeline_kind().0, PipelineKind::MergeRequest);
    }

    #[test]
    fn schedules_get_drift_detection_unless_it_is_off() {
        let schedule = env(&[
            ("GITLAB_CI", "true"),
            ("CI_PIPELINE_SOURCE", "schedule"),
            ("CI_COMMIT_BRANCH", "main"),
            ("CI_DEFAULT_BRANCH", "main"),
        ]);
        let (kind, why) = schedule.pipeline_kind();
        assert_eq!(kind, PipelineKind::Drift);
        assert!(why.contains("schedule"), "{why}");
        // Off: the schedule is a default-branch pipeline like any other.
        assert_eq!(
            schedule.pipeline_kind_with(false).0,
            PipelineKind::DefaultBranch
        );
    }

    #[test]
    fn an_all_zero_before_sha_is_told_apart_from_none() {
        use crate::gitlab::affected::NoBase;
        let zeros = "0000000000000000000000000000000000000000";
        assert_eq!(env(&[]).no_base(), NoBase::Unset);
        assert_eq!(
            env(&[("CI_COMMIT_BEFORE_SHA", zeros)]).no_base(),
            NoBase::NewBranch
        );
        assert_eq!(
            env(&[
                ("CI_COMMIT_BEFORE_SHA", zeros),
                ("CI_PIPELINE_SOURCE", "push")
            ])
            .no_base(),
            NoBase::NewBranch
        );
        assert_eq!(
            env(&[
                ("CI_COMMIT_BEFORE_SHA", zeros),
                ("CI_PIPELINE_SOURCE", "web")
            ])
            .no_base(),
            NoBase::ZerosFor("web".into())
        );
    }

    #[test]
    fn base_revision_precedence() {
        let all = env(&[
            ("CI_MERGE_REQUEST_DIFF_BASE_SHA", "base"),
            ("CI_MERGE_REQUEST_TARGET_BRANCH_SHA", "target"),
            ("CI_COMMIT_BEFORE_SHA", "before"),
        ]);
        assert_eq!(
            all.base_revision(Some("origin/main")),
            Some(BaseRevision {
                rev: "origin/main".into(),
                source: BaseSource::Flag
            })
        );
        let base = all.base_revision(None).unwrap();
        assert_eq!(base.rev, "base");
        assert_eq!(base.source.to_string(), "CI_MERGE_REQUEST_DIFF_BASE_SHA");

        let merged = env(&[
            ("CI_MERGE_REQUEST_EVENT_TYPE", "merged_result"),
            ("CI_MERGE_REQUEST_DIFF_BASE_SHA", "base"),
            ("CI_MERGE_REQUEST_TARGET_BRANCH_SHA", "target"),
        ]);
        assert_eq!(merged.base_revision(None).unwrap().rev, "target");

        let push = env(&[("CI_COMMIT_BEFORE_SHA", "before")]);
        assert_eq!(push.base_revision(None).unwrap().rev, "before");
        let new_branch = env(&[(
            "CI_COMMIT_BEFORE_SHA",
            "0000000000000000000000000000000000000000",
        )]);
        assert_eq!(new_branch.base_revision(None), None);
        assert_eq!(new_branch.base_revision(Some("  ")), None);
    }

    #[test]
    fn debug_never_shows_the_token() {
        let env = CiEnv::default().with_token(Some(Secret::new("glpat-secret")));
        assert!(!format!("{env:?}").contains("glpat"));
    }
}
