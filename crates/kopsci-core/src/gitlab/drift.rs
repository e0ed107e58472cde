//! Drift issues: `kopsci drift` reads the dry-run reports of a scheduled
//! drift pipeline (`<report-dir>/<cluster>/report.json`, read and checked
//! as for the merge-request note) and keeps one GitLab issue per drifted
//! cluster — opened when a dry run first finds changes pending, updated
//! while they stay, closed by the first run that finds the cluster in sync.
//!
//! The drift signal itself is the dry-run jobs failing with
//! `--detailed-exitcode`; issues are the memory of it. A cluster whose dry
//! run failed says nothing about drift: its issue is left as it is.
//!
//! An issue is found again by the hidden first line of its description
//! (`<!-- kopsci-drift fleet=… cluster=… -->`), among the open issues
//! labelled [`DRIFT_LABEL`] that the token's user wrote.

use std::path::PathBuf;

use minijinja::Value;
use serde::Serialize;

use crate::errors::{Error, Result};
use crate::gitlab::ci_env::{CiEnv, TOKEN_VARIABLE};
use crate::gitlab::issues::{Issue, Issues};
use crate::gitlab::note::{
    ArtifactLinks, ClusterReport, api_from_ci, load_reports, marker_key, same_text,
};
use crate::markdown::{self, Pieces};

/// The label on every drift issue.
pub const DRIFT_LABEL: &str = "kopsci-drift";

/// The longest drift issue description, in characters (GitLab allows about
/// a million): past it, the report is left to the job's artifacts.
pub const ISSUE_BUDGET: usize = 100_000;

/// The hidden first line of `cluster`'s drift issue for fleet `fleet`.
pub fn drift_marker(fleet: &str, cluster: &str) -> String {
    format!(
        "<!-- kopsci-drift fleet={} cluster={} -->",
        marker_key(fleet),
        marker_key(cluster)
    )
}

/// What one cluster's dry run says about drift.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drift {
    /// Changes pending: the live cluster differs from what the fleet renders.
    Drifted,
    InSync,
    /// The dry run failed (or its report is unusable): nothing is known.
    Unknown(String),
}

/// What happened to a cluster's issue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IssueChange {
    Opened(Issue),
    Updated(Issue),
    /// The open issue already said exactly this.
    Unchanged(Issue),
    Closed(Issue),
    /// The dry run failed: the open issue stays as it is.
    LeftOpen(Issue),
    /// In sync (or unknown) and no open issue: nothing to do.
    None,
}

/// One cluster's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDrift {
    pub cluster: String,
    pub environment: Option<String>,
    pub drift: Drift,
    /// `N to create, M to modify, K to delete`.
    pub counts: String,
    pub removed_instance_groups: Vec<String>,
    /// `None` when issues were not managed.
    pub issue: Option<IssueChange>,
}

/// What `kopsci drift` was asked for.
#[derive(Debug, Clone)]
pub struct DriftRequest {
    /// The fleet file as the job names it: part of each issue's identity.
    pub fleet: String,
    pub report_dir: PathBuf,
}

/// What `kopsci drift` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftRun {
    pub clusters: Vec<ClusterDrift>,
    /// Why issues were not managed (no token), when they were not.
    pub unmanaged: Option<String>,
}

fn classify(report: &ClusterReport) -> Drift {
    let s = &report.summary;
    if let Some(why) = &s.failed {
        return Drift::Unknown(why.clone());
    }
    if let Some(stage) = &s.stage
        && stage != "dryrun"
    {
        return Drift::Unknown(format!(
            "a `{}` report, not a dry run's",
            stage.escape_debug()
        ));
    }
    if s.has_changes() {
        Drift::Drifted
    } else {
        Drift::InSync
    }
}

/// Everything around one cluster that goes into its issue.
#[derive(Debug, Serialize)]
struct IssueView<'a> {
    marker: String,
    fleet: &'a str,
    cluster: &'a str,
    environment: Option<&'a str>,
    counts: String,
    removed: &'a [String],
    commit: Option<&'a str>,
    pipeline_url: Option<&'a str>,
    report_url: Option<String>,
    browse: Option<String>,
}

/// The issue's title.
pub fn issue_title(fleet: &str, cluster: &str) -> String {
    format!("Drift: {cluster} differs from {}", marker_key(fleet))
}

/// Reads the drift pipeline's reports and, with a token, opens, updates or
/// closes each cluster's drift issue.
pub fn run(ci: &CiEnv, request: &DriftRequest) -> Result<DriftRun> {
    let reports = load_reports(&request.report_dir, &[])?;
    if reports.is_empty() {
        return Err(Error::Usage(format!(
            "no dry-run reports in {} (expected {}/CLUSTER/report.json): does the drift job get the dry-run jobs' artifacts?",
            request.report_dir.display(),
            request.report_dir.display()
        )));
    }
    let mut clusters: Vec<ClusterDrift> = reports
        .iter()
        .map(|r| ClusterDrift {
            cluster: r.summary.cluster.clone(),
            environment: r.summary.environment.clone(),
            drift: classify(r),
            counts: r.summary.counts(),
            removed_instance_groups: r.summary.removed_instance_groups.clone(),
            issue: None,
        })
        .collect();
    let Some(token) = ci.token() else {
        return Ok(DriftRun {
            clusters,
            unmanaged: Some(format!(
                "{TOKEN_VARIABLE} is not set: drift issues were not opened, updated or closed (add it as a masked CI/CD variable holding a token with the `api` scope; see docs/gitlab.md)"
            )),
        });
    };
    let project = ci.get("CI_PROJECT_ID").ok_or_else(|| {
        Error::Usage(
            "CI_PROJECT_ID is not set: `kopsci drift` manages issues from a GitLab CI job (or set CI_API_V4_URL and CI_PROJECT_ID)"
                .to_string(),
        )
    })?;
    let api = api_from_ci(ci, token.clone(), "`kopsci drift`")?;
    api.begin();
    let issues = Issues::new(&api, project)?;
    let open = issues.list_open(DRIFT_LABEL)?;
    let manager = IssueManager {
        ci,
        request,
        issues: &issues,
        open: &open,
        links: ArtifactLinks::new(ci.get("CI_JOB_URL"), &request.report_dir),
    };
    for (cluster, report) in clusters.iter_mut().zip(&reports) {
        // Each cluster's issue gets the whole time budget of its own.
        api.begin();
        cluster.issue = Some(manager.manage(cluster, report)?);
    }
    Ok(DriftRun {
        clusters,
        unmanaged: None,
    })
}

/// What a drift run needs to manage each cluster's issue.
struct IssueManager<'a> {
    ci: &'a CiEnv,
    request: &'a DriftRequest,
    issues: &'a Issues<'a>,
    open: &'a [Issue],
    links: Option<ArtifactLinks>,
}

impl IssueManager<'_> {
    /// Opens, updates, closes or leaves the cluster's issue.
    fn manage(&self, cluster: &ClusterDrift, report: &ClusterReport) -> Result<IssueChange> {
        let marker = drift_marker(&self.request.fleet, &cluster.cluster);
        let existing = self
            .open
            .iter()
            .find(|issue| issue.description.starts_with(&marker))
            .cloned();
        let view = IssueView {
            marker: marker.clone(),
            fleet: &self.request.fleet,
            cluster: &cluster.cluster,
            environment: cluster.environment.as_deref(),
            counts: cluster.counts.clone(),
            removed: &cluster.removed_instance_groups,
            commit: self
                .ci
                .get("CI_COMMIT_SHA")
                .map(|c| c.get(..12).unwrap_or(c)),
            pipeline_url: self.ci.get("CI_PIPELINE_URL"),
            report_url: match (&self.links, &report.details_path) {
                (Some(links), Some(path)) => Some(links.file(path)),
                _ => None,
            },
            browse: self.links.as_ref().map(ArtifactLinks::browse),
        };
        let mut pieces = Pieces::new("drift-issue.md", markdown::value(&view))?;
        let title = issue_title(&self.request.fleet, &cluster.cluster);
        Ok(match (&cluster.drift, existing) {
            (Drift::Drifted, existing) => {
                let description = drifted_description(&mut pieces, report)?;
                match existing {
                    Some(issue) if same_text(&issue.description, &description) => {
                        IssueChange::Unchanged(issue)
                    }
                    Some(issue) => {
                        IssueChange::Updated(self.issues.update(issue.iid, &title, &description)?)
                    }
                    None => IssueChange::Opened(self.issues.create(
                        &title,
                        &description,
                        DRIFT_LABEL,
                        &marker,
                    )?),
                }
            }
            (Drift::InSync, Some(issue)) => {
                let description = pieces.call("resolved", &[])?;
                IssueChange::Closed(self.issues.close(issue.iid, &title, &description)?)
            }
            (Drift::Unknown(_), Some(issue)) => IssueChange::LeftOpen(issue),
            (_, None) => IssueChange::None,
        })
    }
}

/// The open issue's description: with the dry-run report folded in while
/// it fits the budget.
fn drifted_description(pieces: &mut Pieces, report: &ClusterReport) -> Result<String> {
    if let Some(details) = &report.details
        && details.len() <= ISSUE_BUDGET * 4
    {
        let safe = markdown::untrusted(details);
        let description = pieces.call("drifted", &[Value::from(safe.trim_end())])?;
        if description.chars().count() <= ISSUE_BUDGET {
            return Ok(description);
        }
    }
    pieces.call("drifted", &[Value::from(())])
}
