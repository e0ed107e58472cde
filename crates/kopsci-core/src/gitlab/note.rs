//! The merge-request note: one note per merge request (and fleet) that
//! summarises every dry run, created once and then edited in place.
//!
//! ## What it reads: `<report-dir>/<cluster>/report.json`
//!
//! The dry run writes one `report.json` per cluster (`stage::report::Report`,
//! documented in `docs/reports.md`). The note reads only the fields of
//! [`ClusterSummary`], a subset of that report, all optional; everything
//! else in the file is ignored:
//!
//! ```json
//! {
//!   "cluster": "dev-a.k8s.example.com",
//!   "environment": "dev",
//!   "create": 1, "update": 2, "delete": 0,
//!   "changes_pending": true,
//!   "removed_instance_groups": ["nodes-b"],
//!   "kops_skipped": null,
//!   "failed": null,
//!   "failed_step": null
//! }
//! ```
//!
//! Counts are those of `kops update cluster`'s parsed plan;
//! `changes_pending` says whether anything is to apply at all (without it,
//! non-zero counts or removed instance groups mean changes);
//! `removed_instance_groups` are instance groups in the state store but no
//! longer in the manifest; `kops_skipped` is set when the dry run ran
//! without kops; `failed` is a one-line reason when the dry run failed
//! (counts are then meaningless). The Markdown report `report.md` beside it
//! (or `report_md_path`, relative to the cluster's directory) is folded
//! into the note under `<details>`. A cluster the pipeline expected but
//! that has no `report.json` is shown as failed.
//!
//! Deletions are read too: `action: "delete"` (an `absent: true`
//! cluster) with `deletion`, and `update_plan.delete` /
//! `update_plan.delete_on_prune` (what `kops update cluster` deletes, now
//! or when it prunes). So are the other stages' results, should the note
//! be given them: `stage`, `pruned_instance_groups`, `roll_plan`,
//! `validation` and `phases`, so an apply is never called a dry run.
//!
//! ## What it says
//!
//! Deletions first, in a section of their own at every size: the whole
//! cluster (`absent: true`), removed instance groups and kOps' resources to
//! delete, whether or not they are pruned now, with what the fleet does
//! about them. Then clusters that left the fleet (`--left-the-fleet`: in
//! the fleet file at the merge request's base, not at its head), which
//! kopsci never deletes. Then the results, validation failures, and which
//! clusters the default branch applies without a click (`auto_apply`, and
//! `auto_roll` with `update-roll`), from the fleet file at the head; an
//! unreadable fleet file is a warning line, never a failure.
//!
//! Reports are artifacts, so not trusted: clusters are named, never given
//! as paths, and must be kOps cluster names; a `report.json` whose
//! `cluster` is another cluster, a symbolic link or an oversized file is
//! shown as failed; all report text goes through `crate::markdown`'s
//! filters (no mentions, references, quick actions or HTML).
//!
//! ## Where it goes
//!
//! GitLab REST API v4 (`CI_API_V4_URL`, `CI_PROJECT_ID`,
//! `CI_MERGE_REQUEST_IID`) with `KOPSCI_GITLAB_TOKEN`. The note starts with
//! a hidden marker (`<!-- kopsci-note fleet=… -->`); the note to edit is
//! the one by the token's own user that starts with it, so a marker copied
//! into someone else's comment is never touched. An unchanged body is not
//! rewritten. A created or edited note counts only when GitLab answers
//! with that note (its id and body).
//!
//! ## Size
//!
//! GitLab refuses notes over 1,000,000 characters; the note keeps to a
//! budget far below that ([`DEFAULT_NOTE_BUDGET`]). It summarises by
//! environment and result when there are many clusters, lists per-cluster
//! results in a table while that table takes at most half the budget (else
//! only clusters with changes, deletions or failures get a row, and at worst
//! clusters are only named), and adds per-cluster details only for clusters
//! with changes, deletions or failures, while they fit — those of clusters
//! that delete something first; the rest are links to the job's artifacts,
//! and a line says the note was truncated. The destructive section comes
//! right after the heading at every level (shorter at the higher ones), so
//! even a note cut short keeps it.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use indexmap::IndexMap;
use minijinja::Value;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::errors::{Error, Result};
use crate::fleet::{ApplyStrategy, Cluster, Fleet};
use crate::gitlab::api::{Attempt, Failure, GitLabApi, Method, Response, encode_segment};
use crate::gitlab::ci_env::CiEnv;
use crate::markdown::{self, Pieces};

/// GitLab's limit on a note's length, in characters.
pub const GITLAB_NOTE_MAX_CHARS: usize = 1_000_000;

/// The note's default length budget: a tenth of GitLab's limit, which is
/// still a long read.
pub const DEFAULT_NOTE_BUDGET: usize = 100_000;

/// The file a dry run writes per cluster.
pub const REPORT_JSON: &str = "report.json";

/// Larger report files are not read: a report is at most a few megabytes
/// of diff, and an edited artifact must not exhaust the job's memory.
const MAX_REPORT_BYTES: u64 = 16 * 1024 * 1024;

/// Above this many clusters the note starts with a per-environment summary.
const SUMMARY_FROM: usize = 10;

/// What the note needs from a cluster's `report.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// The cluster; the directory name when the file leaves it out.
    #[serde(default)]
    pub cluster: String,
    /// The stage that wrote the report (`dryrun`, `update`, `roll`).
    #[serde(default)]
    pub stage: Option<String>,
    #[serde(default)]
    pub environment: Option<String>,
    #[serde(default)]
    pub create: usize,
    #[serde(default)]
    pub update: usize,
    #[serde(default)]
    pub delete: usize,
    /// Whether anything is to apply; inferred from the counts and removed
    /// instance groups when absent.
    #[serde(default)]
    pub changes_pending: Option<bool>,
    #[serde(default)]
    pub removed_instance_groups: Vec<String>,
    /// Set when the dry run ran without kops (spec diff only), saying why.
    #[serde(default)]
    pub kops_skipped: Option<String>,
    /// Why the dry run failed, when it did.
    #[serde(default)]
    pub failed: Option<String>,
    /// The step that failed.
    #[serde(default)]
    pub failed_step: Option<String>,
    /// The Markdown report, relative to the cluster's report directory.
    #[serde(default)]
    pub report_md_path: Option<String>,
    /// What kops was asked to do: `create`, `replace`, or `delete` (an
    /// `absent: true` cluster).
    #[serde(default)]
    pub action: Option<String>,
    /// Removed instance groups that `update` or `apply` deleted.
    #[serde(default)]
    pub pruned_instance_groups: Vec<String>,
    /// What `kops update cluster` said it deletes.
    #[serde(default)]
    pub update_plan: Option<PlanDeletions>,
    /// `kops delete cluster`'s list, for a cluster being deleted.
    #[serde(default)]
    pub deletion: Option<String>,
    /// `kops validate cluster` after an apply or a roll.
    #[serde(default)]
    pub validation: Option<ValidationSummary>,
    /// `kops reconcile cluster`'s phases that started.
    #[serde(default)]
    pub phases: Vec<String>,
    /// `kops rolling-update cluster`'s table and conclusion.
    #[serde(default)]
    pub roll_plan: Option<RollSummary>,
}

/// The deletions of a report's `update_plan` (the rest is not read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDeletions {
    /// `Items will be deleted during update`.
    #[serde(default)]
    pub delete: Vec<ResourceRef>,
    /// `Items will be deleted only when the --prune flag is specified`.
    #[serde(default)]
    pub delete_on_prune: Vec<ResourceRef>,
}

/// A kOps resource (task) by type and name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceRef {
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub name: String,
}

impl ResourceRef {
    /// `Type/name`, as kOps lists it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

/// A report's `validation`, as far as the note shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationSummary {
    #[serde(default)]
    pub passed: bool,
    #[serde(default)]
    pub attempts: usize,
    #[serde(default)]
    pub failures: Vec<crate::kops::ValidationFailure>,
    /// kops' output when it was not JSON.
    #[serde(default)]
    pub unparsed: String,
}

/// A report's `roll_plan`, as far as the note shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollSummary {
    #[serde(default)]
    pub rows: Vec<RollRowSummary>,
    /// What kOps concluded: a rolling update is required, or not.
    #[serde(default)]
    pub required: Option<bool>,
    /// The roll ran.
    #[serde(default)]
    pub applied: bool,
}

/// One instance group of a rolling-update table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RollRowSummary {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub need_update: Option<u64>,
}

impl ClusterSummary {
    /// `N to create, M to modify, K to delete`.
    pub fn counts(&self) -> String {
        format!(
            "{} to create, {} to modify, {} to delete",
            self.create, self.update, self.delete
        )
    }

    /// Whether anything is to apply (meaningless for a failed report).
    pub fn has_changes(&self) -> bool {
        self.changes_pending.unwrap_or_else(|| {
            self.create + self.update + self.delete > 0 || !self.removed_instance_groups.is_empty()
        })
    }

    /// Whether the note shows this cluster's details: it failed, has
    /// something to apply, or deletes something.
    pub fn noteworthy(&self) -> bool {
        self.failed.is_some() || self.has_changes() || self.is_destructive()
    }

    /// The stage that wrote the report; a report that does not say is a
    /// dry run's (the note's usual input).
    pub fn stage(&self) -> &str {
        self.stage.as_deref().unwrap_or("dryrun")
    }

    /// Whether the report is about deleting the whole cluster.
    pub fn deletes_cluster(&self) -> bool {
        self.action.as_deref() == Some("delete") || self.stage() == "delete"
    }

    /// kOps resources deleted when the change is applied.
    pub fn deleted_on_update(&self) -> Vec<String> {
        self.update_plan
            .iter()
            .flat_map(|p| &p.delete)
            .map(ResourceRef::label)
            .collect()
    }

    /// kOps resources deleted when kOps prunes (`--prune`, the last phase
    /// of `kops reconcile cluster`).
    pub fn deleted_on_prune(&self) -> Vec<String> {
        self.update_plan
            .iter()
            .flat_map(|p| &p.delete_on_prune)
            .map(ResourceRef::label)
            .collect()
    }

    /// Whether anything in the report deletes something: the cluster,
    /// instance groups or cloud resources, whether or not they are pruned.
    pub fn is_destructive(&self) -> bool {
        self.deletes_cluster()
            || !self.removed_instance_groups.is_empty()
            || self
                .update_plan
                .as_ref()
                .is_some_and(|p| !p.delete.is_empty() || !p.delete_on_prune.is_empty())
    }

    /// The result in a few words (no failure): counts, or what the stage
    /// did. Plain text made of numbers and fixed words only.
    pub fn headline(&self) -> String {
        match self.stage() {
            "update" | "apply" => format!("applied: {}", self.counts()),
            "roll" => match &self.roll_plan {
                None => "no rolling-update table".to_string(),
                Some(plan) => {
                    let pending = plan
                        .rows
                        .iter()
                        .filter(|r| {
                            r.need_update.is_some_and(|n| n > 0) || r.status == "NeedsUpdate"
                        })
                        .count();
                    match (plan.applied, plan.required) {
                        (true, _) => "rolling update done".to_string(),
                        (false, Some(false)) => "no rolling update required".to_string(),
                        (false, _) if pending > 0 => {
                            format!("{pending} instance group(s) need a rolling update")
                        }
                        (false, _) => "a rolling update is required".to_string(),
                    }
                }
            },
            "delete" => match (&self.deletion, self.changes_pending) {
                (Some(_), Some(false)) => "deleted".to_string(),
                (Some(_), _) => "deletion previewed".to_string(),
                (None, _) => "not in the state store: nothing to delete".to_string(),
            },
            _ if self.deletes_cluster() => {
                if self.has_changes() || self.deletion.is_some() {
                    "the whole cluster is to be deleted (absent: true)".to_string()
                } else {
                    "absent: true, not in the state store: nothing to delete".to_string()
                }
            }
            _ if self.has_changes() => self.counts(),
            _ => "no changes".to_string(),
        }
    }
}

/// The title of a stage's reports, as the note's heading names them.
fn stage_title(stage: &str) -> &'static str {
    match stage {
        "dryrun" => "dry run",
        "update" => "update",
        "roll" => "rolling update",
        "apply" => "apply",
        "delete" => "deletion",
        _ => "results",
    }
}

/// A report directory or `--left-the-fleet` name must be a cluster name
/// (never a path): the one check the fleet file and the command line use.
fn check_cluster_name(name: &str) -> Result<()> {
    crate::names::ClusterName::parse(name)?;
    Ok(())
}

/// One cluster's summary and its Markdown details, as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterReport {
    pub summary: ClusterSummary,
    /// The report's path relative to the report directory, for links.
    pub details_path: Option<String>,
    /// `report.md` as the file has it: untrusted Markdown.
    pub details: Option<String>,
}

/// Loads the reports of `clusters` from `report_dir`, in that order; with
/// no clusters named, of every sub-directory named like a cluster that has
/// a `report.json`, in name order. A missing, unreadable or foreign report
/// becomes a failed summary, so that one broken dry run never hides the
/// others. A name that is not a cluster name is an error.
pub fn load_reports(report_dir: &Path, clusters: &[String]) -> Result<Vec<ClusterReport>> {
    for name in clusters {
        check_cluster_name(name)?;
    }
    let names: Vec<String> = if clusters.is_empty() {
        let entries = match std::fs::read_dir(report_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(report_dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(report_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if std::fs::symlink_metadata(entry.path().join(REPORT_JSON)).is_err() {
                continue;
            }
            if check_cluster_name(&name).is_err() {
                tracing::warn!(
                    "{}: not a cluster name, skipped",
                    markdown::terminal(&entry.path().display().to_string())
                );
                continue;
            }
            names.push(name);
        }
        names.sort();
        names
    } else {
        clusters.to_vec()
    };
    Ok(names
        .iter()
        .map(|name| load_one(report_dir, name))
        .collect())
}

/// A regular file's text, refusing symbolic links and files over
/// [`MAX_REPORT_BYTES`].
fn read_report_file(path: &Path) -> std::io::Result<String> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Err(std::io::Error::other("a symbolic link, not read"));
    }
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > MAX_REPORT_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {} MiB, not read",
            MAX_REPORT_BYTES / 1024 / 1024
        )));
    }
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(MAX_REPORT_BYTES)
        .read_to_string(&mut text)?;
    Ok(text)
}

fn load_one(report_dir: &Path, cluster: &str) -> ClusterReport {
    let dir = report_dir.join(cluster);
    let path = dir.join(REPORT_JSON);
    let failed = |why: String| ClusterReport {
        summary: ClusterSummary {
            cluster: cluster.to_string(),
            failed: Some(why),
            ..ClusterSummary::default()
        },
        details_path: None,
        details: None,
    };
    if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.file_type().is_symlink()) {
        return failed(format!(
            "{}: a symbolic link, not a report directory",
            dir.display()
        ));
    }
    let text = match read_report_file(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return failed(
                "no report.json: the dry-run job stopped before writing its report (see its log)"
                    .to_string(),
            );
        }
        Err(e) => return failed(Error::io(&path, e).to_string()),
    };
    let mut summary: ClusterSummary = match serde_json::from_str(&text) {
        Ok(summary) => summary,
        Err(e) => {
            return failed(
                Error::Report {
                    path: path.clone(),
                    message: format!("not a kopsci report: {e}"),
                }
                .to_string(),
            );
        }
    };
    if summary.cluster.is_empty() {
        summary.cluster = cluster.to_string();
    }
    if summary.cluster != cluster {
        // A report copied (or edited) from another cluster's directory must
        // not speak for this one.
        return failed(format!(
            "{}: the report is for cluster `{}`, not `{cluster}`: refused",
            path.display(),
            summary.cluster.escape_debug()
        ));
    }
    // The Markdown report must stay inside the cluster's directory: the
    // note is public to everyone who can see the merge request.
    let relative = summary
        .report_md_path
        .clone()
        .unwrap_or_else(|| "report.md".to_string());
    let safe = Path::new(&relative)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let (details_path, details) = if safe {
        match read_report_file(&dir.join(&relative)) {
            Ok(text) => (Some(format!("{cluster}/{relative}")), Some(text)),
            Err(_) => (None, None),
        }
    } else {
        (None, None)
    };
    ClusterReport {
        summary,
        details_path,
        details,
    }
}

/// Links into the job's artifacts, when the job has a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArtifactLinks {
    /// `CI_JOB_URL`.
    pub job_url: String,
    /// The report directory as a path inside the artifacts archive.
    pub report_dir: String,
}

impl ArtifactLinks {
    /// Links for `report_dir` as the job wrote it; none for an absolute
    /// path, which is not where artifacts keep it.
    pub fn new(job_url: Option<&str>, report_dir: &Path) -> Option<ArtifactLinks> {
        let job_url = job_url?.trim_end_matches('/');
        if report_dir.is_absolute() {
            return None;
        }
        let dir = report_dir
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(p) => Some(p.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("/");
        Some(ArtifactLinks {
            job_url: job_url.to_string(),
            report_dir: dir,
        })
    }

    /// The report directory in GitLab's artifact browser.
    pub fn browse(&self) -> String {
        format!("{}/artifacts/browse/{}", self.job_url, self.report_dir)
    }

    /// One file of the report directory.
    pub fn file(&self, relative: &str) -> String {
        format!(
            "{}/artifacts/file/{}/{relative}",
            self.job_url, self.report_dir
        )
    }
}

/// How the fleet file at the merge request's head applies one cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FleetEntry {
    pub environment: String,
    pub strategy: ApplyStrategy,
    pub auto_apply: bool,
    pub auto_roll: bool,
    pub prune_instance_groups: bool,
    pub absent: bool,
}

impl FleetEntry {
    fn new(cluster: &Cluster) -> FleetEntry {
        FleetEntry {
            environment: cluster.environment.clone(),
            strategy: cluster.apply.strategy,
            auto_apply: cluster.apply.auto_apply,
            auto_roll: cluster.apply.auto_roll,
            prune_instance_groups: cluster.apply.prune_instance_groups,
            absent: cluster.absent,
        }
    }

    /// The default-branch job that applies the change: `apply`, or
    /// `update` (then `roll`).
    fn job(&self) -> &'static str {
        match self.strategy {
            ApplyStrategy::Reconcile => "apply",
            ApplyStrategy::UpdateRoll => "update",
        }
    }

    /// The change is applied after merge without a click. Deleting a
    /// whole cluster never is.
    fn applies_by_itself(&self) -> bool {
        self.auto_apply && !self.absent
    }
}

/// What the note knows of the fleet file: each cluster's apply settings,
/// or why the file could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetInfo {
    /// The file as the job names it.
    pub file: String,
    pub clusters: std::result::Result<IndexMap<String, FleetEntry>, String>,
}

/// Longest reason shown for an unreadable fleet file.
const FLEET_ERROR_MAX_CHARS: usize = 300;

impl FleetInfo {
    pub fn new(file: &str, fleet: &Fleet) -> FleetInfo {
        FleetInfo {
            file: file.to_string(),
            clusters: Ok(fleet
                .clusters()
                .iter()
                .map(|c| (c.name.clone(), FleetEntry::new(c)))
                .collect()),
        }
    }

    /// Loads `file`. An unreadable or invalid fleet file is not an error:
    /// the note is still worth posting, and says what it could not tell.
    pub fn load(file: &str) -> FleetInfo {
        match Fleet::load(Path::new(file)) {
            Ok(fleet) => FleetInfo::new(file, &fleet),
            Err(e) => {
                let message = e.to_string();
                tracing::warn!(
                    "the fleet file {} could not be read, so the note cannot say which clusters apply automatically after merge: {}",
                    markdown::terminal(file),
                    markdown::terminal(&message)
                );
                let first = message.lines().next().unwrap_or_default();
                let reason: String = match first.char_indices().nth(FLEET_ERROR_MAX_CHARS) {
                    Some((at, _)) => format!("{}…", &first[..at]),
                    None => first.to_string(),
                };
                FleetInfo {
                    file: file.to_string(),
                    clusters: Err(reason),
                }
            }
        }
    }

    fn entry(&self, cluster: &str) -> Option<&FleetEntry> {
        self.clusters.as_ref().ok().and_then(|c| c.get(cluster))
    }
}

/// Everything around the summaries that goes into the note.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteContext {
    /// The hidden first line that finds the note again.
    pub marker: String,
    pub commit: Option<String>,
    pub pipeline_url: Option<String>,
    pub artifacts: Option<ArtifactLinks>,
    /// The fleet file at the merge request's head; `None` when not read.
    pub fleet: Option<FleetInfo>,
    /// Clusters in the fleet file at the merge request's base but not at
    /// its head.
    pub left_the_fleet: Vec<String>,
}

/// A fleet file name as it can appear in a hidden marker: `--` and `>`
/// cannot appear inside an HTML comment, control characters never.
pub fn marker_key(fleet: &str) -> String {
    fleet
        .replace("--", "-")
        .chars()
        .filter(|c| !c.is_control() && *c != '>')
        .collect()
}

/// The marker for the fleet file `fleet`: a fleet repository with two
/// fleets gets two notes.
pub fn marker(fleet: &str) -> String {
    format!("<!-- kopsci-note fleet={} -->", marker_key(fleet))
}

/// One row of the note's table, as the template sees it.
#[derive(Debug, Serialize)]
struct Row<'a> {
    cluster: &'a str,
    environment: Option<&'a str>,
    failed: Option<&'a str>,
    step: Option<&'a str>,
    counts: String,
    /// The result in a few words ([`ClusterSummary::headline`]).
    headline: String,
    changes: bool,
    removed: usize,
    pruned: usize,
    spec_only: bool,
    destructive: bool,
    /// `passed` or `failed`; none when validation did not run.
    validation: Option<&'static str>,
    /// The `kops reconcile cluster` phase a failed apply stopped in.
    stopped_in: Option<&'static str>,
    noteworthy: bool,
}

impl<'a> Row<'a> {
    fn new(s: &'a ClusterSummary, fleet: Option<&'a FleetEntry>) -> Row<'a> {
        // A cluster the fleet deletes is destructive even when its dry run
        // failed before saying so.
        let destructive = s.is_destructive() || fleet.is_some_and(|f| f.absent);
        Row {
            cluster: &s.cluster,
            environment: s
                .environment
                .as_deref()
                .or(fleet.map(|f| f.environment.as_str())),
            failed: s.failed.as_deref(),
            step: s.failed_step.as_deref(),
            counts: s.counts(),
            headline: s.headline(),
            changes: s.has_changes(),
            removed: s.removed_instance_groups.len(),
            pruned: s.pruned_instance_groups.len(),
            spec_only: s.kops_skipped.is_some(),
            destructive,
            validation: s
                .validation
                .as_ref()
                .map(|v| if v.passed { "passed" } else { "failed" }),
            stopped_in: s
                .failed
                .as_ref()
                .and(s.phases.last())
                .and_then(|p| serde_json::from_value(serde_json::Value::from(p.as_str())).ok())
                .map(crate::kops::ReconcilePhase::line),
            noteworthy: s.noteworthy() || destructive,
        }
    }
}

/// One environment's line of the summary.
#[derive(Debug, Default, Serialize)]
struct EnvironmentSummary<'a> {
    name: Option<&'a str>,
    total: usize,
    changed: usize,
    unchanged: usize,
    failed: usize,
    changed_names: Vec<&'a str>,
    unchanged_names: Vec<&'a str>,
    failed_names: Vec<&'a str>,
}

/// One cluster of the destructive section.
#[derive(Debug, Serialize)]
struct DestructiveView<'a> {
    cluster: &'a str,
    environment: Option<&'a str>,
    /// The whole cluster: `planned` (kops listed what it deletes),
    /// `deleted`, `absent` (the fleet deletes it, not previewed: the dry
    /// run failed), `nothing` (the store holds no such cluster), or none.
    cluster_deletion: Option<&'static str>,
    removed: &'a [String],
    /// What becomes of the removed instance groups: `pruned`, `kept` (a
    /// stage ran without pruning), `prune` / `keep` (what the fleet says
    /// the default branch does), `unknown` (no fleet).
    removed_fate: &'static str,
    /// kOps resources deleted when the change is applied.
    on_update: Vec<String>,
    /// kOps resources deleted only when kOps prunes.
    on_prune: Vec<String>,
    /// The default-branch job that applies the change (`apply` or
    /// `update`); none without the fleet.
    job: Option<&'static str>,
    /// The change is applied after merge without a click.
    automatic: bool,
    /// A dry run's plan, not what a stage did.
    planned: bool,
}

impl<'a> DestructiveView<'a> {
    fn new(
        row: &Row<'a>,
        s: &'a ClusterSummary,
        fleet: Option<&FleetEntry>,
    ) -> DestructiveView<'a> {
        let planned = matches!(s.stage(), "dryrun");
        let cluster_deletion = if s.stage() == "delete" && s.changes_pending == Some(false) {
            Some(if s.deletion.is_some() {
                "deleted"
            } else {
                "nothing"
            })
        } else if s.deletes_cluster() && s.failed.is_none() {
            Some(if s.has_changes() || s.deletion.is_some() {
                "planned"
            } else {
                "nothing"
            })
        } else if s.deletes_cluster() || fleet.is_some_and(|f| f.absent) {
            Some("absent")
        } else {
            None
        };
        let removed_fate = match (planned, fleet) {
            _ if !s.pruned_instance_groups.is_empty() => "pruned",
            (false, _) => "kept",
            (true, Some(f)) if f.prune_instance_groups => "prune",
            (true, Some(_)) => "keep",
            (true, None) => "unknown",
        };
        DestructiveView {
            cluster: row.cluster,
            environment: row.environment,
            cluster_deletion,
            removed: &s.removed_instance_groups,
            removed_fate,
            on_update: s.deleted_on_update(),
            on_prune: s.deleted_on_prune(),
            job: fleet.map(FleetEntry::job),
            automatic: planned && fleet.is_some_and(FleetEntry::applies_by_itself),
            planned,
        }
    }
}

/// A cluster whose validation failed, with kOps' failures.
#[derive(Debug, Serialize)]
struct ValidationView<'a> {
    cluster: &'a str,
    environment: Option<&'a str>,
    failures: &'a [crate::kops::ValidationFailure],
    /// kops printed something that was not a result.
    unparsed: bool,
}

/// Clusters of one environment that the default branch applies without a
/// click, the same way.
#[derive(Debug, Serialize)]
struct AutoGroup<'a> {
    environment: &'a str,
    strategy: ApplyStrategy,
    auto_roll: bool,
    clusters: Vec<&'a str>,
}

/// The note template's context.
#[derive(Debug, Serialize)]
struct NoteView<'a> {
    marker: &'a str,
    /// Above this many clusters, a summary per environment comes first.
    summary_from: usize,
    /// What the reports are of: `dry run`, `apply`…, or `results` when
    /// they are of different stages.
    title: &'static str,
    total: usize,
    changed: usize,
    failed: usize,
    clusters: Vec<Row<'a>>,
    environments: Vec<EnvironmentSummary<'a>>,
    destructive: Vec<DestructiveView<'a>>,
    validation_failed: Vec<ValidationView<'a>>,
    /// Clusters that left the fleet.
    left: Vec<&'a str>,
    fleet_file: Option<&'a str>,
    /// Why the fleet file could not be read.
    fleet_error: Option<&'a str>,
    /// Clusters applied after merge without a click; none when the fleet
    /// file was not read.
    auto: Option<Vec<AutoGroup<'a>>>,
    commit: Option<&'a str>,
    pipeline_url: Option<&'a str>,
    browse: Option<String>,
}

/// Per-environment counts and names, in the reports' order, with the
/// totals of changed and failed clusters.
fn by_environment<'a: 'r, 'r>(
    summaries: impl Iterator<Item = (&'a ClusterSummary, &'r Row<'a>)>,
) -> (Vec<EnvironmentSummary<'a>>, usize, usize) {
    let mut environments: IndexMap<Option<&str>, EnvironmentSummary> = IndexMap::new();
    let (mut changed, mut failed) = (0, 0);
    for (s, row) in summaries {
        let env = row.environment;
        let e = environments
            .entry(env)
            .or_insert_with(|| EnvironmentSummary {
                name: env,
                ..EnvironmentSummary::default()
            });
        e.total += 1;
        if s.failed.is_some() {
            failed += 1;
            e.failed += 1;
            e.failed_names.push(&s.cluster);
        } else if s.has_changes() {
            changed += 1;
            e.changed += 1;
            e.changed_names.push(&s.cluster);
        } else {
            e.unchanged += 1;
            e.unchanged_names.push(&s.cluster);
        }
    }
    (environments.into_values().collect(), changed, failed)
}

/// "dry run", the one stage all reports come from, or "results".
fn note_title(reports: &[ClusterReport]) -> &'static str {
    let mut stages = reports.iter().filter_map(|r| r.summary.stage.as_deref());
    match stages.next() {
        None => "dry run",
        Some(first) if stages.all(|s| s == first) => stage_title(first),
        Some(_) => "results",
    }
}

impl<'a> NoteView<'a> {
    fn new(reports: &'a [ClusterReport], ctx: &'a NoteContext) -> NoteView<'a> {
        let fleet = ctx.fleet.as_ref();
        let entry = |s: &ClusterSummary| fleet.and_then(|f| f.entry(&s.cluster));
        let clusters: Vec<Row> = reports
            .iter()
            .map(|r| Row::new(&r.summary, entry(&r.summary)))
            .collect();
        let summaries = || reports.iter().map(|r| &r.summary).zip(&clusters);
        let (environments, changed, failed) = by_environment(summaries());
        let destructive = summaries()
            .filter(|(_, row)| row.destructive)
            .map(|(s, row)| DestructiveView::new(row, s, entry(s)))
            .collect();
        let validation_failed = summaries()
            .filter_map(|(s, row)| {
                let v = s.validation.as_ref().filter(|v| !v.passed)?;
                Some(ValidationView {
                    cluster: row.cluster,
                    environment: row.environment,
                    failures: &v.failures,
                    unparsed: !v.unparsed.trim().is_empty(),
                })
            })
            .collect();
        let title = note_title(reports);
        NoteView {
            marker: &ctx.marker,
            summary_from: SUMMARY_FROM,
            title,
            total: reports.len(),
            changed,
            failed,
            environments,
            destructive,
            validation_failed,
            left: left_the_fleet(&ctx.left_the_fleet, fleet),
            fleet_file: fleet.map(|f| f.file.as_str()),
            // What happens after merge is a merge request's question: the
            // reports of an apply or a roll are past it.
            fleet_error: fleet
                .filter(|_| title == "dry run")
                .and_then(|f| f.clusters.as_ref().err())
                .map(String::as_str),
            auto: fleet
                .filter(|f| f.clusters.is_ok() && title == "dry run")
                .map(|f| auto_groups(reports, f)),
            clusters,
            commit: ctx.commit.as_deref().map(|c| c.get(..12).unwrap_or(c)),
            pipeline_url: ctx.pipeline_url.as_deref(),
            browse: ctx.artifacts.as_ref().map(ArtifactLinks::browse),
        }
    }
}

/// The clusters that left the fleet, once each; one the fleet file still
/// has did not leave it (and is said so in the log).
fn left_the_fleet<'a>(names: &'a [String], fleet: Option<&FleetInfo>) -> Vec<&'a str> {
    let mut left: Vec<&str> = Vec::new();
    for name in names {
        if left.contains(&name.as_str()) {
            continue;
        }
        if fleet.is_some_and(|f| f.entry(name).is_some()) {
            tracing::warn!(
                "--left-the-fleet {}: the fleet file still has this cluster, so it did not leave the fleet; left out of the note",
                markdown::terminal(name)
            );
            continue;
        }
        left.push(name);
    }
    left
}

/// The note's clusters that the default branch applies without a click,
/// by environment and strategy, in report order.
fn auto_groups<'a>(reports: &'a [ClusterReport], fleet: &'a FleetInfo) -> Vec<AutoGroup<'a>> {
    let mut groups: IndexMap<(&str, &str, bool), AutoGroup> = IndexMap::new();
    for s in reports.iter().map(|r| &r.summary) {
        let Some(entry) = fleet.entry(&s.cluster).filter(|e| e.applies_by_itself()) else {
            continue;
        };
        let auto_roll = entry.strategy == ApplyStrategy::UpdateRoll && entry.auto_roll;
        groups
            .entry((&entry.environment, entry.strategy.as_str(), auto_roll))
            .or_insert_with(|| AutoGroup {
                environment: &entry.environment,
                strategy: entry.strategy,
                auto_roll,
                clusters: Vec::new(),
            })
            .clusters
            .push(&s.cluster);
    }
    groups.into_values().collect()
}

/// The note's Markdown, at most `max_chars` characters.
pub fn render_note(
    reports: &[ClusterReport],
    ctx: &NoteContext,
    max_chars: usize,
) -> Result<String> {
    let view = NoteView::new(reports, ctx);
    let mut pieces = Pieces::new("note.md", markdown::value(&view))?;
    let footer = pieces.call("footer", &[])?;
    let notice = pieces.call("notice", &[])?;
    let reserved = chars(&footer) + chars(&notice);
    let head = match summary_head(&mut pieces, reserved, max_chars)? {
        Head::Fits(head) => head,
        Head::TooLong(names_only) => {
            // Even names only do not fit: cut and say so. The marker
            // survives whatever the limit: it is how the note is found
            // again.
            let room = max_chars.saturating_sub(reserved + 2);
            let keep = room.max(chars(&ctx.marker) + 1);
            let cut: String = names_only.chars().take(keep).collect();
            return Ok(fit(format!("{cut}…\n{notice}{footer}"), max_chars));
        }
    };
    let budget = max_chars - chars(&head) - chars(&footer);
    let body = details_within(&mut pieces, reports, &view, ctx, &notice, budget)?;
    Ok(format!("{head}{body}{footer}"))
}

enum Head {
    Fits(String),
    /// The least detailed summary, still over the budget.
    TooLong(String),
}

/// The most detailed summary that leaves half the budget for details; else
/// the most detailed that fits at all.
fn summary_head(pieces: &mut Pieces, reserved: usize, max_chars: usize) -> Result<Head> {
    let mut heads = Vec::new();
    for level in 1..=3 {
        let head = pieces.call("head", &[Value::from(level)])?;
        if chars(&head) + reserved <= max_chars / 2 {
            return Ok(Head::Fits(head));
        }
        heads.push(head);
    }
    Ok(
        match heads.iter().position(|h| chars(h) + reserved <= max_chars) {
            Some(at) => Head::Fits(heads.swap_remove(at)),
            None => Head::TooLong(heads.pop().unwrap_or_default()),
        },
    )
}

/// The details of the noteworthy clusters, destructive ones first, within
/// `budget` characters; those left out are linked, and the notice says so.
fn details_within(
    pieces: &mut Pieces,
    reports: &[ClusterReport],
    view: &NoteView,
    ctx: &NoteContext,
    notice: &str,
    mut budget: usize,
) -> Result<String> {
    let mut body = String::new();
    let mut truncated = false;
    // Destructive clusters' details come first: what a change deletes must
    // be in the note even when the rest does not fit.
    let mut order: Vec<usize> = (0..reports.len()).collect();
    order.sort_by_key(|&i| !view.clusters[i].destructive);
    for (report, row) in order.iter().map(|&i| (&reports[i], &view.clusters[i])) {
        if !row.noteworthy {
            continue;
        }
        let Some(details) = &report.details else {
            continue;
        };
        // Escaping only lengthens: a report far over the budget is not
        // worth sanitising to find that out.
        let block = if details.len() <= budget.saturating_mul(4) {
            let safe = markdown::untrusted(details);
            Some(pieces.call(
                "details",
                &[markdown::value(row), Value::from(safe.trim_end())],
            )?)
        } else {
            None
        };
        // Room for the truncation notice stays reserved until the end.
        if let Some(block) = block
            && chars(&block) + chars(notice) <= budget
        {
            budget -= chars(&block);
            body.push_str(&block);
            continue;
        }
        truncated = true;
        let link = match (&ctx.artifacts, &report.details_path) {
            (Some(links), Some(path)) => Value::from(links.file(path)),
            _ => Value::from(()),
        };
        let line = pieces.call("left_out", &[markdown::value(row), link])?;
        if chars(&line) + chars(notice) <= budget {
            budget -= chars(&line);
            body.push_str(&line);
        }
    }
    if truncated {
        body.push_str(notice);
    }
    Ok(body)
}

/// A last guard for absurdly small limits: the text cut to `max` characters.
fn fit(text: String, max: usize) -> String {
    if chars(&text) <= max {
        text
    } else {
        text.chars().take(max).collect()
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// The merge request a note goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteTarget {
    /// `CI_PROJECT_ID` (or a URL-encoded project path).
    pub project: String,
    /// `CI_MERGE_REQUEST_IID`.
    pub merge_request_iid: String,
}

impl NoteTarget {
    fn notes_path(&self) -> String {
        format!(
            "/projects/{}/merge_requests/{}/notes",
            encode_segment(&self.project),
            encode_segment(&self.merge_request_iid)
        )
    }
}

/// What happened to the note.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoteOutcome {
    Created(u64),
    Updated(u64),
    /// The note already said exactly this.
    Unchanged(u64),
}

/// Pages of notes read at most while looking for ours (100 notes each).
const MAX_PAGES: usize = 50;

/// Whether GitLab's copy of a text is the text sent: GitLab may store line
/// ends as `\r\n` and drop trailing whitespace.
pub fn same_text(stored: &str, sent: &str) -> bool {
    let norm = |s: &str| s.replace("\r\n", "\n").trim_end().to_string();
    norm(stored) == norm(sent)
}

/// The id of the note in `response` when it is the note sent (`body`, and
/// id `expected` when editing one); otherwise why not. A 2xx that is not
/// the note means nothing was written, whatever the status says.
fn sent_note(
    response: &Response,
    expected: Option<u64>,
    body: &str,
) -> std::result::Result<u64, Failure> {
    let id = response.body.get("id").and_then(serde_json::Value::as_u64);
    let stored = response
        .body
        .get("body")
        .and_then(serde_json::Value::as_str);
    match (id, stored) {
        (Some(id), Some(stored)) if expected.is_none_or(|e| e == id) && same_text(stored, body) => {
            Ok(id)
        }
        (Some(id), Some(_)) if expected.is_none_or(|e| e == id) => Err(Failure::Invalid(format!(
            "HTTP {} but note {id} in the response does not hold the text kopsci sent",
            response.status
        ))),
        _ => Err(Failure::Invalid(format!(
            "HTTP {} but the response is not the note kopsci {}",
            response.status,
            match expected {
                Some(id) => format!("edited (note {id})"),
                None => "created".to_string(),
            }
        ))),
    }
}

/// Creates the note, or edits the one that starts with `marker`.
pub fn upsert_note(
    api: &GitLabApi,
    target: &NoteTarget,
    marker: &str,
    body: &str,
) -> Result<NoteOutcome> {
    api.begin();
    let me = current_user(api)?;
    let payload = json!({ "body": body });
    if let Some(outcome) = update_existing(api, target, me, marker, body, &payload)? {
        return Ok(outcome);
    }
    // A POST is not idempotent: before retrying one that may have reached
    // GitLab, look again for the note it may have created.
    let path = target.notes_path();
    api.with_retries(Method::Post, &path, |number, timeout| {
        if number > 1
            && let Some(outcome) = update_existing(api, target, me, marker, body, &payload)?
        {
            return Ok(Attempt::Done(outcome));
        }
        Ok(
            match api
                .call(Method::Post, &path, Some(&payload), timeout)
                .and_then(|response| sent_note(&response, None, body))
            {
                Ok(id) => Attempt::Done(NoteOutcome::Created(id)),
                Err(failure) => Attempt::Failed(failure),
            },
        )
    })
}

/// The token's user id.
pub fn current_user(api: &GitLabApi) -> Result<u64> {
    api.request(Method::Get, "/user", None)?
        .body
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| Error::GitLab {
            request: "GET /user".to_string(),
            message: "the response has no user id".to_string(),
        })
}

/// Edits our note if there is one.
fn update_existing(
    api: &GitLabApi,
    target: &NoteTarget,
    me: u64,
    marker: &str,
    body: &str,
    payload: &serde_json::Value,
) -> Result<Option<NoteOutcome>> {
    let Some((id, current)) = find_note(api, target, me, marker)? else {
        return Ok(None);
    };
    if current == body {
        return Ok(Some(NoteOutcome::Unchanged(id)));
    }
    let path = format!("{}/{id}", target.notes_path());
    api.with_retries(Method::Put, &path, |_, timeout| {
        Ok(
            match api
                .call(Method::Put, &path, Some(payload), timeout)
                .and_then(|response| sent_note(&response, Some(id), body))
            {
                Ok(_) => Attempt::Done(()),
                Err(failure) => Attempt::Failed(failure),
            },
        )
    })?;
    Ok(Some(NoteOutcome::Updated(id)))
}

/// A JSON array from a listing, or an error saying what came instead.
pub fn listing<'a>(response: &'a Response, request: &str) -> Result<&'a Vec<serde_json::Value>> {
    response.body.as_array().ok_or_else(|| Error::GitLab {
        request: request.to_string(),
        message: format!(
            "HTTP {} but the response is not a list: is CI_API_V4_URL the API root (https://gitlab.example.com/api/v4)?",
            response.status
        ),
    })
}

/// Our note: by user `me`, not a system note, starting with `marker`. The
/// oldest wins should there be several.
fn find_note(
    api: &GitLabApi,
    target: &NoteTarget,
    me: u64,
    marker: &str,
) -> Result<Option<(u64, String)>> {
    let mut page = "1".to_string();
    for _ in 0..MAX_PAGES {
        let response = api.request(
            Method::Get,
            &format!(
                "{}?sort=asc&order_by=created_at&per_page=100&page={}",
                target.notes_path(),
                encode_segment(&page)
            ),
            None,
        )?;
        let notes = listing(&response, &format!("GET {}", target.notes_path()))?;
        for note in notes {
            let author = note
                .pointer("/author/id")
                .and_then(serde_json::Value::as_u64);
            let system = note
                .get("system")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false);
            let text = note.get("body").and_then(serde_json::Value::as_str);
            let id = note.get("id").and_then(serde_json::Value::as_u64);
            if let (Some(id), Some(text), Some(author)) = (id, text, author)
                && author == me
                && !system
                && text.starts_with(marker)
            {
                return Ok(Some((id, text.to_string())));
            }
        }
        match &response.next_page {
            Some(next) if !notes.is_empty() => page = next.clone(),
            _ => break,
        }
    }
    Ok(None)
}

/// Where `kopsci note` writes the body it posts, next to the reports.
pub fn body_path(report_dir: &Path) -> PathBuf {
    report_dir.join("merge-request-note.md")
}

/// What `kopsci note` was asked for.
#[derive(Debug, Clone)]
pub struct NoteRequest {
    /// The fleet file as the job names it: the note's identity.
    pub fleet: String,
    pub report_dir: PathBuf,
    /// Clusters the pipeline dry-ran; every report found when empty.
    pub clusters: Vec<String>,
    pub max_chars: usize,
    /// Only build the note (and write it next to the reports).
    pub dry_run: bool,
    /// Clusters in the fleet file at the merge request's base that are
    /// gone at its head (`--left-the-fleet`).
    pub left_the_fleet: Vec<String>,
}

/// What `kopsci note` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoteRun {
    /// Built, not posted (`dry_run`).
    Built { body: String },
    /// Not posted, and why: one line for the job log.
    Skipped { hint: String },
    Posted {
        outcome: NoteOutcome,
        merge_request: String,
    },
}

/// The API client for the CI job's GitLab, or a usage error naming what is
/// missing. `what` says what the client is for, in the message.
pub fn api_from_ci(ci: &CiEnv, token: crate::secret::Secret, what: &str) -> Result<GitLabApi> {
    let api_url = ci.get("CI_API_V4_URL").ok_or_else(|| {
        Error::Usage(format!(
            "CI_API_V4_URL is not set: {what} runs in a GitLab CI job (or set CI_API_V4_URL and CI_PROJECT_ID)"
        ))
    })?;
    let ca_file = ci
        .get("CI_SERVER_TLS_CA_FILE")
        .or_else(|| ci.get("SSL_CERT_FILE"))
        .map(Path::new);
    GitLabApi::new(api_url, token, ca_file)
}

/// Builds the merge-request note from the reports, writes it next to them
/// (`merge-request-note.md`, kept with the job's artifacts) and, in a
/// merge-request pipeline with a token, posts it.
pub fn publish(ci: &CiEnv, request: &NoteRequest) -> Result<NoteRun> {
    for name in &request.left_the_fleet {
        check_cluster_name(name)?;
    }
    let reports = load_reports(&request.report_dir, &request.clusters)?;
    let ctx = NoteContext {
        marker: marker(&request.fleet),
        commit: ci.get("CI_COMMIT_SHA").map(str::to_string),
        pipeline_url: ci.get("CI_PIPELINE_URL").map(str::to_string),
        artifacts: ArtifactLinks::new(ci.get("CI_JOB_URL"), &request.report_dir),
        fleet: Some(FleetInfo::load(&request.fleet)),
        left_the_fleet: request.left_the_fleet.clone(),
    };
    let body = render_note(&reports, &ctx, request.max_chars)?;
    std::fs::create_dir_all(&request.report_dir).map_err(|e| Error::io(&request.report_dir, e))?;
    crate::fsutil::write_atomic(&body_path(&request.report_dir), body.as_bytes())?;
    if request.dry_run {
        return Ok(NoteRun::Built { body });
    }
    let Some(iid) = ci.get("CI_MERGE_REQUEST_IID") else {
        return Ok(NoteRun::Skipped {
            hint: "not a merge-request pipeline (no CI_MERGE_REQUEST_IID): no note posted"
                .to_string(),
        });
    };
    let Some(token) = ci.token() else {
        return Ok(NoteRun::Skipped {
            hint: format!(
                "{} is not set: no merge-request note posted (add it as a masked CI/CD variable holding a token with the `api` scope; see docs/gitlab.md)",
                crate::gitlab::ci_env::TOKEN_VARIABLE
            ),
        });
    };
    let missing = |name: &str| {
        Error::Usage(format!(
            "{name} is not set: `kopsci note` posts from a GitLab merge-request pipeline (or set CI_API_V4_URL, CI_PROJECT_ID and CI_MERGE_REQUEST_IID)"
        ))
    };
    if ci.get("CI_API_V4_URL").is_none() {
        return Err(missing("CI_API_V4_URL"));
    }
    let project = ci
        .get("CI_PROJECT_ID")
        .ok_or_else(|| missing("CI_PROJECT_ID"))?;
    let api = api_from_ci(ci, token.clone(), "`kopsci note`")?;
    let target = NoteTarget {
        project: project.to_string(),
        merge_request_iid: iid.to_string(),
    };
    let outcome = upsert_note(&api, &target, &ctx.marker, &body)?;
    Ok(NoteRun::Posted {
        outcome,
        merge_request: format!("!{iid}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        cluster: &str,
        counts: (usize, usize, usize),
        details: Option<&str>,
    ) -> ClusterReport {
        ClusterReport {
            summary: ClusterSummary {
                cluster: cluster.into(),
                environment: Some("dev".into()),
                create: counts.0,
                update: counts.1,
                delete: counts.2,
                ..ClusterSummary::default()
            },
            details_path: details.map(|_| format!("{cluster}/report.md")),
            details: details.map(str::to_string),
        }
    }

    /// Renders the note for `reports` within `limit`, and checks it keeps
    /// to the limit.
    fn note_within(reports: &[ClusterReport], limit: usize) -> String {
        let note = render_note(reports, &ctx(), limit).unwrap();
        let chars = note.chars().count();
        assert!(
            chars <= limit,
            "{chars} characters over the limit of {limit}"
        );
        note
    }

    fn ctx() -> NoteContext {
        NoteContext {
            marker: marker("kopsci.yaml"),
            commit: Some("0123456789abcdef0123".into()),
            pipeline_url: Some("https://gitlab.example.com/g/p/-/pipelines/7".into()),
            artifacts: ArtifactLinks::new(
                Some("https://gitlab.example.com/g/p/-/jobs/9"),
                Path::new(".kopsci/reports"),
            ),
            fleet: None,
            left_the_fleet: Vec::new(),
        }
    }

    #[test]
    fn summary_table_details_and_footer() {
        let mut failed = report("b.example.com", (0, 0, 0), None);
        failed.summary.failed = Some("`kops update cluster` failed | exit 1\n<b>".into());
        failed.summary.failed_step = Some("kops update".into());
        let mut removed = report("c.example.com", (0, 0, 0), None);
        removed.summary.removed_instance_groups = vec!["nodes-b".into()];
        let mut spec_only = report("e.example.com", (0, 0, 0), None);
        spec_only.summary.changes_pending = Some(true);
        spec_only.summary.kops_skipped = Some("--without-kops".into());
        let reports = vec![
            report("a.example.com", (1, 2, 0), Some("diff here\n")),
            failed,
            removed,
            report("d.example.com", (0, 0, 0), None),
            spec_only,
        ];
        let note = render_note(&reports, &ctx(), GITLAB_NOTE_MAX_CHARS).unwrap();
        assert!(note.starts_with("<!-- kopsci-note fleet=kopsci.yaml -->\n### kopsci dry run: 5 clusters, 3 with changes, 1 destructive, 1 failed\n\n### :warning: Destructive changes\n"), "{note}");
        assert!(
            note.contains("| `a.example.com` (dev) | 1 to create, 2 to modify, 0 to delete |\n"),
            "{note}"
        );
        assert!(note.contains("| `b.example.com` (dev) | :x: **failed** (kops update): 'kops update cluster' failed \\| exit 1 &lt;b&gt; |\n"), "{note}");
        assert!(
            note.contains("| `d.example.com` (dev) | no changes |\n"),
            "{note}"
        );
        assert!(note.contains("| `e.example.com` (dev) | 0 to create, 0 to modify, 0 to delete (spec diff only: kops did not run) |\n"), "{note}");
        assert!(note.contains("- `c.example.com` (dev):\n  - Removed instance groups `nodes-b` (in the state store, no longer in the manifest): deleted only with `prune_instance_groups: true` in the fleet (or `--prune-instance-groups`).\n"), "{note}");
        assert!(note.contains("| `c.example.com` (dev) | :warning: 0 to create, 0 to modify, 0 to delete, 1 removed instance group |\n"), "{note}");
        assert!(note.contains("<details><summary><code>a.example.com</code>: 1 to create, 2 to modify, 0 to delete</summary>\n\ndiff here\n\n</details>\n"), "{note}");
        assert!(note.ends_with("<sub>kopsci · commit 0123456789ab · [pipeline](https://gitlab.example.com/g/p/-/pipelines/7) · [all reports](https://gitlab.example.com/g/p/-/jobs/9/artifacts/browse/.kopsci/reports)</sub>\n"), "{note}");
        assert!(!note.contains("Truncated"));
    }

    #[test]
    fn no_reports_says_nothing_is_affected() {
        let note = render_note(&[], &ctx(), GITLAB_NOTE_MAX_CHARS).unwrap();
        assert!(
            note.contains("No cluster is affected by this change."),
            "{note}"
        );
    }

    #[test]
    fn long_details_are_replaced_by_links_within_the_limit() {
        let big = "x".repeat(5_000);
        let reports = vec![
            report("a.example.com", (1, 0, 0), Some("small")),
            report("b.example.com", (1, 0, 0), Some(&big)),
            report("c.example.com", (1, 0, 0), Some("small too")),
        ];
        let limit = 2_500;
        let note = note_within(&reports, limit);
        assert!(note.contains("small\n"), "{note}");
        assert!(note.contains("small too"), "{note}");
        assert!(note.contains("- `b.example.com`: details left out ([report](https://gitlab.example.com/g/p/-/jobs/9/artifacts/file/.kopsci/reports/b.example.com/report.md))"), "{note}");
        assert!(note.contains("**Truncated**"), "{note}");
        assert!(note.ends_with("</sub>\n"));
    }

    #[test]
    fn even_a_huge_table_stays_under_the_limit() {
        let reports: Vec<ClusterReport> = (0..500)
            .map(|i| report(&format!("c{i}.example.com"), (i, 0, 0), Some("d")))
            .collect();
        for limit in [200, 1_000, 10_000] {
            let note = note_within(&reports, limit);
            assert!(note.starts_with("<!-- kopsci-note"), "{note}");
            if limit > 500 {
                assert!(note.contains("**Truncated**"), "{note}");
            }
        }
    }

    #[test]
    fn reports_load_with_missing_and_broken_ones_as_failures() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write(
            "a.example.com/report.json",
            r#"{"cluster":"a.example.com","create":1,"update":2,"delete":3,"removed_instance_groups":["ig"],"extra":{"kept":"out"}}"#,
        );
        write("a.example.com/report.md", "# details\n");
        write("b.example.com/report.json", "{not json");
        write(
            "d.example.com/report.json",
            r#"{"create":0,"report_md_path":"../a.example.com/report.md"}"#,
        );
        let clusters: Vec<String> = ["a", "b", "c", "d"]
            .iter()
            .map(|c| format!("{c}.example.com"))
            .collect();
        let reports = load_reports(dir.path(), &clusters).unwrap();
        assert_eq!(
            reports[0].summary.counts(),
            "1 to create, 2 to modify, 3 to delete"
        );
        assert_eq!(reports[0].details.as_deref(), Some("# details\n"));
        assert_eq!(
            reports[0].details_path.as_deref(),
            Some("a.example.com/report.md")
        );
        assert!(
            reports[1]
                .summary
                .failed
                .as_deref()
                .unwrap()
                .contains("not a kopsci report"),
            "{:?}",
            reports[1]
        );
        assert!(
            reports[2]
                .summary
                .failed
                .as_deref()
                .unwrap()
                .starts_with("no report.json")
        );
        assert_eq!(reports[3].summary.cluster, "d.example.com");
        assert_eq!(
            reports[3].details, None,
            "a report path leaving its directory is ignored"
        );
        // Without names: every directory that has a report.json, sorted.
        let found: Vec<String> = load_reports(dir.path(), &[])
            .unwrap()
            .into_iter()
            .map(|r| r.summary.cluster)
            .collect();
        assert_eq!(found, ["a.example.com", "b.example.com", "d.example.com"]);
        assert!(
            load_reports(&dir.path().join("none"), &[])
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn markers_cannot_close_the_comment() {
        assert_eq!(
            marker("a--b>c.yaml"),
            "<!-- kopsci-note fleet=a-bc.yaml -->"
        );
    }

    #[test]
    fn cluster_names_are_names_never_paths() {
        for good in ["dev.k8s.example.com", "a", "x-1.k8s.local"] {
            check_cluster_name(good).unwrap();
        }
        for bad in [
            "",
            "../x",
            "a/b",
            "/etc",
            "..",
            ".",
            "A.example.com",
            "a\u{7}b",
            "a b",
            "-a",
            "a..b",
            "a_b",
            "@all",
        ] {
            let err = check_cluster_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid cluster name"), "{bad:?}: {err}");
            assert!(
                !err.contains('\u{7}'),
                "control characters are escaped: {err}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(load_reports(dir.path(), &["../../etc".to_string()]).is_err());
    }

    #[test]
    fn a_report_for_another_cluster_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let cluster = dir.path().join("a.example.com");
        std::fs::create_dir_all(&cluster).unwrap();
        std::fs::write(
            cluster.join("report.json"),
            r#"{"cluster":"prod.example.com","create":0}"#,
        )
        .unwrap();
        std::fs::write(cluster.join("report.md"), "all fine").unwrap();
        let reports = load_reports(dir.path(), &["a.example.com".to_string()]).unwrap();
        let failed = reports[0].summary.failed.as_deref().unwrap();
        assert!(
            failed.contains("the report is for cluster `prod.example.com`, not `a.example.com`"),
            "{failed}"
        );
        assert_eq!(reports[0].summary.cluster, "a.example.com");
        assert_eq!(reports[0].details, None);
    }

    #[test]
    fn symlinked_reports_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(
            outside.path().join("report.json"),
            r#"{"cluster":"a.example.com","create":9}"#,
        )
        .unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("a.example.com")).unwrap();
        std::fs::create_dir_all(dir.path().join("b.example.com")).unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("report.json"),
            dir.path().join("b.example.com/report.json"),
        )
        .unwrap();
        let names = ["a.example.com".to_string(), "b.example.com".to_string()];
        for report in load_reports(dir.path(), &names).unwrap() {
            let failed = report.summary.failed.as_deref().unwrap_or_default();
            assert!(failed.contains("symbolic link"), "{report:?}");
        }
    }

    #[test]
    fn report_text_cannot_mention_people_or_break_the_note() {
        let mut failed = report(
            "b.example.com",
            (0, 0, 0),
            Some("boom @all\n</details>\n<img src=x>\n/merge\n"),
        );
        failed.summary.failed = Some("kops said @alice see #12 and !3".into());
        failed.summary.environment = Some("dev @bob".into());
        let mut removed = report("c.example.com", (0, 0, 0), None);
        removed.summary.removed_instance_groups = vec!["ig @carol".into()];
        let note = render_note(&[failed, removed], &ctx(), GITLAB_NOTE_MAX_CHARS).unwrap();
        for mention in [
            "@all", "@alice", "@bob", "@carol", "#12", "!3", "<img", "\n/merge",
        ] {
            assert!(!note.contains(mention), "{mention:?} in:\n{note}");
        }
        // One `<details>` and its own closer: the report's stray closer is text.
        assert_eq!(note.matches("<details>").count(), 1, "{note}");
        assert_eq!(note.matches("</details>").count(), 1, "{note}");
    }

    #[test]
    fn two_hundred_changed_clusters_fit_the_budget_and_are_all_named() {
        let details = format!("```diff\n{}```\n", "+ changed line\n".repeat(300));
        let reports: Vec<ClusterReport> = (0..200)
            .map(|i| {
                let mut r = report(&format!("c{i:03}.example.com"), (1, 2, 0), Some(&details));
                r.summary.environment = Some(["dev", "staging", "prod"][i % 3].into());
                r
            })
            .collect();
        let note = note_within(&reports, DEFAULT_NOTE_BUDGET);
        for i in 0..200 {
            assert!(
                note.contains(&format!("`c{i:03}.example.com`")),
                "c{i:03} missing"
            );
        }
        assert!(
            note.contains("| Environment | Clusters | With changes | No changes | Failed |"),
            "{note}"
        );
        assert!(note.contains("| `dev` | 67 | 67 | 0 | 0 |"), "{note}");
        assert!(note.contains("**Truncated**"), "{note}");
        assert!(note.contains("<details>"), "some details still fit");
    }

    #[test]
    fn at_fleet_scale_the_summary_degrades_to_names() {
        let reports: Vec<ClusterReport> = (0..1000)
            .map(|i| {
                report(
                    &format!("cluster-{i:04}.k8s.example.com"),
                    (usize::from(i % 10 == 0), 0, 0),
                    Some("d"),
                )
            })
            .collect();
        let note = note_within(&reports, DEFAULT_NOTE_BUDGET);
        for i in 0..1000 {
            assert!(
                note.contains(&format!("cluster-{i:04}.")),
                "cluster-{i:04} missing"
            );
        }
        // Only clusters with changes get a row; the others are named by environment.
        assert!(
            note.contains("| `cluster-0010.k8s.example.com` (dev) | 1 to create"),
            "{note}"
        );
        assert!(!note.contains("| `cluster-0011.k8s.example.com`"), "{note}");
        assert!(
            note.contains("- `dev`, no changes (900): `cluster-0001.k8s.example.com`, "),
            "{note}"
        );
        // Details only for clusters with changes.
        assert_eq!(note.matches("<details>").count(), 100, "{note}");
    }

    const FLEET: &str = "\
templates: [t]
environments:
  dev:
    auto_apply: true
    prune_instance_groups: true
  qa:
    apply: update-roll
    auto_apply: true
    needs: [dev]
  staging:
    apply: update-roll
    auto_apply: true
    auto_roll: true
    needs: [qa]
  prod:
    needs: [staging]
clusters:
  - {name: dev-a.example.com, environment: dev}
  - {name: dev-b.example.com, environment: dev}
  - {name: dev-old.example.com, environment: dev, absent: true}
  - {name: qa-a.example.com, environment: qa}
  - {name: staging-a.example.com, environment: staging}
  - {name: prod-a.example.com, environment: prod}
";

    fn fleet_ctx() -> NoteContext {
        let fleet = Fleet::parse(FLEET, Path::new("kopsci.yaml"), Path::new("/fleet")).unwrap();
        NoteContext {
            fleet: Some(FleetInfo::new("kopsci.yaml", &fleet)),
            ..ctx()
        }
    }

    fn resources(list: &[&str]) -> Vec<ResourceRef> {
        list.iter()
            .map(|r| {
                let (kind, name) = r.split_once('/').unwrap();
                ResourceRef {
                    kind: kind.into(),
                    name: name.into(),
                }
            })
            .collect()
    }

    /// A dry run that deletes: a removed group and kOps resources.
    fn deleting(cluster: &str, env: &str) -> ClusterReport {
        let mut r = report(cluster, (0, 1, 2), Some("the destructive diff\n"));
        r.summary.environment = Some(env.into());
        r.summary.stage = Some("dryrun".into());
        r.summary.changes_pending = Some(true);
        r.summary.removed_instance_groups = vec!["nodes-old".into()];
        r.summary.update_plan = Some(PlanDeletions {
            delete: resources(&["AutoscalingGroup/nodes-old.example.com"]),
            delete_on_prune: resources(&["SecurityGroupRule/old-rule"]),
        });
        r
    }

    #[test]
    fn deletions_lead_the_note_with_what_the_fleet_does_with_them() {
        let mut absent = report(
            "dev-old.example.com",
            (0, 0, 0),
            Some("kops delete preview\n"),
        );
        absent.summary.action = Some("delete".into());
        absent.summary.changes_pending = Some(true);
        absent.summary.deletion = Some("TYPE NAME ID\ninstance nodes i-1\n".into());
        let mut qa = deleting("qa-a.example.com", "qa");
        qa.summary.update_plan = Some(PlanDeletions {
            delete: Vec::new(),
            delete_on_prune: resources(&["SecurityGroupRule/old-rule"]),
        });
        let reports = vec![
            report("dev-b.example.com", (1, 0, 0), Some("plain change\n")),
            deleting("dev-a.example.com", "dev"),
            absent,
            qa,
            deleting("prod-a.example.com", "prod"),
        ];
        let note = render_note(&reports, &fleet_ctx(), GITLAB_NOTE_MAX_CHARS).unwrap();
        if std::env::var_os("KOPSCI_DUMP_NOTE").is_some() {
            eprintln!("{note}");
        }
        assert!(
            note.contains("### kopsci dry run: 5 clusters, 5 with changes, 4 destructive\n\n### :warning: Destructive changes\n"),
            "{note}"
        );
        let section = note
            .split("### :warning: Destructive changes")
            .nth(1)
            .and_then(|rest| rest.split("| Cluster | Result |").next())
            .unwrap();
        // dev prunes, automatically; prod keeps the groups for now.
        assert!(section.contains("- `dev-a.example.com` (dev):\n  - Removed instance groups `nodes-old` (in the state store, no longer in the manifest): the default branch's `apply` job deletes them (`prune_instance_groups: true`) — **automatically after merge** (`auto_apply: true`).\n"), "{section}");
        assert!(section.contains("  - kOps resources deleted when the change is applied, by the `apply` job — **automatically after merge** (`auto_apply: true`): `AutoscalingGroup/nodes-old.example.com`\n"), "{section}");
        assert!(section.contains("  - kOps resources deleted when kOps prunes old resources, which the `apply` job does last — **automatically after merge** (`auto_apply: true`): `SecurityGroupRule/old-rule`\n"), "{section}");
        assert!(section.contains("- `prod-a.example.com` (prod):\n  - Removed instance groups `nodes-old` (in the state store, no longer in the manifest): kept for now, as `prune_instance_groups` is off"), "{section}");
        assert!(!section.contains("`prod-a.example.com` (prod):\n  - Removed instance groups `nodes-old` (in the state store, no longer in the manifest): the default"), "{section}");
        // update-roll: `update` does not prune kOps resources.
        assert!(section.contains("- `qa-a.example.com` (qa):\n  - Removed instance groups `nodes-old` (in the state store, no longer in the manifest): kept for now"), "{section}");
        assert!(section.contains("  - kOps resources deleted when kOps prunes old resources: the `update` job keeps them (`kops update cluster` without `--prune`), `kopsci apply` or `kops update cluster --prune --yes` deletes them: `SecurityGroupRule/old-rule`\n"), "{section}");
        // The absent cluster: deleted by a manual job, never automatically,
        // although its environment applies by itself.
        assert!(section.contains("- `dev-old.example.com` (dev):\n  - **The whole cluster is deleted** (`absent: true` in the fleet): a manual `delete` job on the default branch runs `kops delete cluster --yes`, which deletes its cloud resources and its state. It never runs by itself.\n"), "{section}");
        assert!(!section.contains("dev-b"), "{section}");
        assert!(note.contains("| `dev-old.example.com` (dev) | :warning: the whole cluster is to be deleted (absent: true) |"), "{note}");
        // Destructive details first, then the rest.
        let first = note
            .find("<details><summary><code>dev-a.example.com</code>")
            .unwrap();
        let plain = note
            .find("<details><summary><code>dev-b.example.com</code>")
            .unwrap();
        assert!(first < plain, "{note}");
    }

    #[test]
    fn destructive_clusters_keep_their_section_and_details_over_budget() {
        let big = format!("```diff\n{}```\n", "+ changed line\n".repeat(2_000));
        let mut reports: Vec<ClusterReport> = (0..1000)
            .map(|i| {
                report(
                    &format!("cluster-{i:04}.k8s.example.com"),
                    (1, 0, 0),
                    Some(&big),
                )
            })
            .collect();
        reports.push(deleting("zz-deletes.k8s.example.com", "dev"));
        let note = note_within(&reports, DEFAULT_NOTE_BUDGET);
        assert!(note.contains("**Truncated**"), "over budget");
        let head = note.split("| Environment |").next().unwrap();
        assert!(
            head.contains("### :warning: Destructive changes"),
            "the section comes before the tables: {head}"
        );
        assert!(
            head.contains("`zz-deletes.k8s.example.com` (dev)"),
            "{head}"
        );
        // Even at the shortest level the section says what is deleted.
        assert!(
            head.contains("1 removed instance group")
                && head.contains("2 kOps resources to delete"),
            "{head}"
        );
        // The last cluster's details made it; many earlier ones did not.
        assert!(
            note.contains("<details><summary><code>zz-deletes.k8s.example.com</code>"),
            "destructive details come first"
        );
        assert!(
            note.matches("<details>").count() < 100,
            "most details are left out"
        );

        // A budget far too small for the tables still keeps the section,
        // right after the heading.
        let note = note_within(&reports, 1_000);
        assert!(
            note.contains("### :warning: Destructive changes") && note.contains("zz-deletes"),
            "{note}"
        );
    }

    #[test]
    fn an_absent_cluster_whose_dry_run_failed_is_still_a_deletion() {
        let mut failed = report("dev-old.example.com", (0, 0, 0), None);
        failed.summary.failed = Some("snapshot failed".into());
        let note = render_note(&[failed], &fleet_ctx(), GITLAB_NOTE_MAX_CHARS).unwrap();
        assert!(note.contains("1 destructive, 1 failed"), "{note}");
        assert!(note.contains("  - **The whole cluster is to be deleted** (`absent: true` in the fleet), by a manual `delete` job on the default branch; this report does not show what `kops delete cluster` deletes.\n"), "{note}");
    }

    #[test]
    fn auto_applied_clusters_are_listed_by_environment() {
        let reports: Vec<ClusterReport> = [
            ("dev-a.example.com", "dev"),
            ("dev-b.example.com", "dev"),
            ("dev-old.example.com", "dev"),
            ("qa-a.example.com", "qa"),
            ("staging-a.example.com", "staging"),
            ("prod-a.example.com", "prod"),
            // Not in the fleet file at all.
            ("stray.example.com", "dev"),
        ]
        .iter()
        .map(|(c, env)| {
            let mut r = report(c, (1, 0, 0), None);
            r.summary.environment = Some((*env).into());
            r
        })
        .collect();
        let note = render_note(&reports, &fleet_ctx(), GITLAB_NOTE_MAX_CHARS).unwrap();
        assert!(note.contains("**After merge**, the default branch applies these clusters without a click (`auto_apply: true`):\n\n\
- `dev`: `apply` runs by itself (`kops reconcile cluster`: control plane, then nodes): `dev-a.example.com`, `dev-b.example.com`\n\
- `qa`: `update` runs by itself, `roll` waits for a click: `qa-a.example.com`\n\
- `staging`: `update`, then `roll`, run by themselves (`auto_roll: true`): `staging-a.example.com`\n\n\
Any other cluster waits for a click on its manual jobs.\n"), "{note}");
        let after = note.split("**After merge**").nth(1).unwrap();
        for never in ["prod-a", "dev-old", "stray"] {
            assert!(!after.contains(never), "{never}: {after}");
        }

        // Only manual environments: said so.
        let prod = vec![report("prod-a.example.com", (1, 0, 0), None)];
        let note = render_note(&prod, &fleet_ctx(), GITLAB_NOTE_MAX_CHARS).unwrap();
        assert!(note.contains("**After merge**, nothing is applied without a click: every cluster's jobs on the default branch are manual.\n"), "{note}");

        // Without the fleet file, nothing is claimed either way.
        let note = render_note(&prod, &ctx(), GITLAB_NOTE_MAX_CHARS).unwrap();
        assert!(!note.contains("After merge"), "{note}");
    }

    #[test]
    fn an_unreadable_fleet_file_is_a_warning_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kopsci.yaml");
        std::fs::write(&path, "clusters: [oops\n").unwrap();
        let file = path.display().to_string();
        for info in [
            FleetInfo::load(&file),
            FleetInfo::load(&dir.path().join("missing.yaml").display().to_string()),
        ] {
            let reason = info.clusters.clone().unwrap_err();
            assert!(!reason.contains('\n') && !reason.is_empty(), "{reason}");
            let ctx = NoteContext {
                fleet: Some(info),
                ..ctx()
            };
            let note = render_note(
                &[report("a.example.com", (1, 0, 0), None)],
                &ctx,
                GITLAB_NOTE_MAX_CHARS,
            )
            .unwrap();
            let line = note
                .lines()
                .find(|l| l.starts_with("> :warning: `"))
                .unwrap_or_else(|| panic!("{note}"));
            assert!(
                line.ends_with("), so this note cannot say which clusters are applied automatically after merge."),
                "{line}"
            );
        }
    }

    #[test]
    fn clusters_that_left_the_fleet_are_listed_never_deleted() {
        let ctx = NoteContext {
            left_the_fleet: vec![
                "gone.example.com".into(),
                "gone.example.com".into(),
                // Still in the fleet file: it did not leave.
                "prod-a.example.com".into(),
            ],
            ..fleet_ctx()
        };
        let note = render_note(
            &[report("dev-a.example.com", (1, 0, 0), None)],
            &ctx,
            GITLAB_NOTE_MAX_CHARS,
        )
        .unwrap();
        assert!(note.contains(", 1 left the fleet\n"), "{note}");
        assert!(note.contains("### :warning: Left the fleet\n\n- `gone.example.com`: left the fleet: its cloud resources remain\n\nIn `kopsci.yaml` at the merge request's base but not any more. kopsci never deletes a cluster that leaves the fleet"), "{note}");
        assert!(
            note.contains("To delete a cluster, keep its entry with `absent: true` instead"),
            "{note}"
        );
        assert_eq!(note.matches("gone.example.com").count(), 1, "{note}");
        assert!(!note.contains("`prod-a.example.com`: left"), "{note}");

        // A merge request that only removes a cluster still says so.
        let note = render_note(&[], &ctx, GITLAB_NOTE_MAX_CHARS).unwrap();
        assert!(
            note.contains(
                "### kopsci dry run: 1 cluster left the fleet\n\n\n### :warning: Left the fleet\n"
            ) || note.contains(
                "### kopsci dry run: 1 cluster left the fleet\n\n### :warning: Left the fleet\n"
            ),
            "{note}"
        );
        assert!(
            note.contains("No cluster is affected by this change."),
            "{note}"
        );
    }

    #[test]
    fn apply_roll_and_delete_reports_are_not_called_dry_runs() {
        let mut apply = report("a.example.com", (1, 2, 0), Some("apply report"));
        apply.summary.stage = Some("apply".into());
        apply.summary.changes_pending = Some(true);
        apply.summary.phases = vec!["update-control-plane".into()];
        apply.summary.validation = Some(ValidationSummary {
            passed: false,
            attempts: 3,
            failures: vec![crate::kops::ValidationFailure {
                kind: "Machine".into(),
                name: "i-0abc @ops".into(),
                message: "machine \"i-0abc\" has not yet joined | cluster".into(),
            }],
            unparsed: String::new(),
        });
        let note = render_note(
            std::slice::from_ref(&apply),
            &fleet_ctx(),
            GITLAB_NOTE_MAX_CHARS,
        )
        .unwrap();
        assert!(!note.contains("After merge"), "{note}");
        assert!(
            note.contains("### kopsci apply: 1 cluster, 1 with changes\n"),
            "{note}"
        );
        assert!(!note.contains("dry run"), "{note}");
        assert!(note.contains("| `a.example.com` (dev) | applied: 1 to create, 2 to modify, 0 to delete; :x: **validation failed** |"), "{note}");
        assert!(note.contains(":x: **Validation failed** (`kops validate cluster`):\n\n| Cluster | Type | Name | Message |\n| --- | --- | --- | --- |\n| `a.example.com` (dev) | Machine | `i-0abc @ops` | machine \"i-0abc\" has not yet joined \\| cluster |\n"), "{note}");

        let mut roll = report("b.example.com", (0, 0, 0), None);
        roll.summary.stage = Some("roll".into());
        roll.summary.roll_plan = Some(RollSummary {
            rows: vec![RollRowSummary {
                name: "nodes".into(),
                status: "NeedsUpdate".into(),
                need_update: Some(2),
            }],
            required: Some(true),
            applied: false,
        });
        roll.summary.changes_pending = Some(true);
        let mut deleted = report("c.example.com", (0, 0, 0), None);
        deleted.summary.stage = Some("delete".into());
        deleted.summary.action = Some("delete".into());
        deleted.summary.changes_pending = Some(false);
        deleted.summary.deletion = Some("deleted".into());
        let note = render_note(&[apply, roll, deleted], &ctx(), GITLAB_NOTE_MAX_CHARS).unwrap();
        assert!(note.contains("### kopsci results: 3 clusters"), "{note}");
        assert!(
            note.contains("| `b.example.com` (dev) | 1 instance group(s) need a rolling update |"),
            "{note}"
        );
        assert!(
            note.contains("| `c.example.com` (dev) | :warning: deleted |"),
            "{note}"
        );
        assert!(note.contains("Everything these reports deleted, or left for a later prune:\n\n- `c.example.com` (dev):\n  - **The whole cluster was deleted** (`kops delete cluster --yes`).\n"), "{note}");
        assert!(!note.contains("dry run"), "{note}");
    }

    #[test]
    fn report_fields_the_note_reads_parse_from_a_real_report() {
        let mut r = crate::stage::report::Report::new(
            crate::stage::report::StageKind::Apply,
            "a.example.com",
            "t".into(),
        );
        r.update_plan = Some(crate::kops::parse_update_output(
            "Will create resources:\n  Instance/new\n\nItems will be deleted during update:\n  AutoscalingGroup/nodes-old\n\nMust specify --yes to apply changes\n",
        ));
        r.removed_instance_groups = vec!["nodes-old".into()];
        r.phases = vec![
            crate::kops::ReconcilePhase::UpdateControlPlane,
            crate::kops::ReconcilePhase::WaitForApi,
        ];
        r.failed = Some("`kops reconcile cluster` failed".into());
        r.validation = Some(crate::kops::parse_validate_output(
            r#"{"failures":[{"type":"Machine","name":"i-1","message":"not ready"}]}"#,
            false,
        ));
        let summary: ClusterSummary = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        assert_eq!(summary.stage(), "apply");
        assert_eq!(summary.deleted_on_update(), r.deleted_resources());
        assert!(summary.is_destructive() && r.is_destructive());
        let v = summary.validation.clone().unwrap();
        assert!(!v.passed);
        assert_eq!(v.failures[0].name, "i-1");
        let note = render_note(
            &[ClusterReport {
                summary,
                details_path: None,
                details: None,
            }],
            &ctx(),
            GITLAB_NOTE_MAX_CHARS,
        )
        .unwrap();
        assert!(
            note.contains("| `a.example.com` | :x: **failed**: 'kops reconcile cluster' failed (stopped in: Waiting for the kubernetes API to be served) |"),
            "{note}"
        );
    }
}
