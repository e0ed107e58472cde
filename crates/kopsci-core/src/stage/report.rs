//! Stage reports: `report.json` (machine-readable, read by the merge-request
//! note), `report.md` (the same for people, with the diff and kops' output
//! folded in `<details>`) and `gitlab-terraform-report.json` (the counts
//! GitLab's merge-request widget shows). The schema is documented in
//! `docs/reports.md`; fields are only ever added.

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};
use crate::kops::{Counts, ReconcilePhase, RollPlan, UpdatePlan, Validation};
use crate::stage::run::Step;
use crate::stage::spec_diff::ObjectChange;

/// A fenced code block that content can never close early.
pub use crate::markdown::fenced;

/// The `format` of reports this version writes.
pub const REPORT_FORMAT: &str = "kopsci-report/v1";

pub const REPORT_JSON: &str = "report.json";
pub const REPORT_MD: &str = "report.md";
pub const TERRAFORM_REPORT: &str = "gitlab-terraform-report.json";
pub const MANIFEST_FILE: &str = "manifest.yaml";
pub const STATE_DIFF_FILE: &str = "state.diff";
pub const KOPS_UPDATE_FILE: &str = "kops-update.txt";
pub const KOPS_ROLL_FILE: &str = "kops-rolling-update.txt";
pub const KOPS_DELETE_FILE: &str = "kops-delete.txt";
pub const KOPS_APPLY_FILE: &str = "kops-apply.txt";
pub const KOPS_VALIDATE_FILE: &str = "kops-validate.txt";

/// Which stage wrote a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StageKind {
    Dryrun,
    Update,
    Roll,
    Apply,
    Delete,
}

impl StageKind {
    /// The kopsci subcommand that runs this stage.
    pub fn command(self) -> &'static str {
        match self {
            StageKind::Dryrun => "dryrun",
            StageKind::Update => "update",
            StageKind::Roll => "roll",
            StageKind::Apply => "apply",
            StageKind::Delete => "delete",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            StageKind::Dryrun => "dry run",
            StageKind::Update => "update",
            StageKind::Roll => "rolling update",
            StageKind::Apply => "apply",
            StageKind::Delete => "deletion",
        }
    }

    /// The sub-directory of a cluster's report directory this stage writes
    /// to; the dry run writes to the cluster's directory itself.
    pub fn subdir(self) -> Option<&'static str> {
        match self {
            StageKind::Dryrun => None,
            other => Some(other.command()),
        }
    }
}

/// What `kops` was asked to do with the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// `kops create -f`: the cluster is not in the store yet.
    Create,
    /// `kops replace --force -f`.
    Replace,
    /// `kops delete cluster`: the fleet marks the cluster `absent: true`.
    Delete,
}

/// Where the counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CountsSource {
    /// Parsed from `kops update cluster`: cloud resources.
    Kops,
    /// kopsci's spec diff (`--without-kops`): kOps objects.
    SpecDiff,
    /// Nothing was counted (roll, failures).
    None,
}

/// One stage's result for one cluster: `report.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Always [`REPORT_FORMAT`].
    pub format: String,
    pub stage: StageKind,
    pub cluster: String,
    pub environment: Option<String>,
    /// The cluster's directory in the live state store.
    pub state: Option<String>,
    /// Resources to create / modify / delete (see `counts_source`).
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    /// `N to create, M to modify, K to delete`.
    pub summary: String,
    pub counts_source: CountsSource,
    /// Anything to apply: kOps' plan, a changed stored spec, removed
    /// instance groups, or (roll) instances to replace.
    pub changes_pending: bool,
    /// Instance groups in the store but not in the manifest.
    pub removed_instance_groups: Vec<String>,
    /// Instance groups `update --prune-instance-groups` deleted.
    pub pruned_instance_groups: Vec<String>,
    pub action: Option<Action>,
    pub kops_version: Option<String>,
    /// Set when kops did not run, saying why and what was skipped.
    pub kops_skipped: Option<String>,
    /// `kops update cluster`, parsed.
    pub update_plan: Option<UpdatePlan>,
    /// `kops rolling-update cluster`, parsed.
    pub roll_plan: Option<RollPlan>,
    /// kopsci's spec diff (`--without-kops`).
    pub spec_changes: Vec<ObjectChange>,
    /// `state.diff`: what replace changed under `config` and `instancegroup/`.
    pub state_diff: String,
    /// kops' standard output for the parsed step.
    pub kops_output: String,
    pub warnings: Vec<String>,
    /// `null`, or what failed (one line).
    pub failed: Option<String>,
    /// The step that failed.
    pub failed_step: Option<Step>,
    /// The last lines kops wrote to stderr when it failed.
    pub failed_detail: Vec<String>,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// Wall time of the whole stage for this cluster.
    pub duration_seconds: f64,
    /// Of that, time spent waiting for kops.
    pub kops_seconds: f64,
    /// Every kops command the stage ran, in order.
    #[serde(default)]
    pub kops_commands: Vec<String>,
    /// `kops reconcile cluster --yes`: the phases that started, in order;
    /// after a failure the last one is where it stopped.
    #[serde(default)]
    pub phases: Vec<ReconcilePhase>,
    /// `kops validate cluster` after an apply or a roll.
    #[serde(default)]
    pub validation: Option<Validation>,
    /// `absent: true` clusters: `kops delete cluster`'s list of what is (or
    /// was) deleted.
    #[serde(default)]
    pub deletion: Option<String>,
}

impl Report {
    /// An empty report for `cluster`, before anything ran.
    pub fn new(stage: StageKind, cluster: &str, started_at: String) -> Report {
        Report {
            format: REPORT_FORMAT.to_string(),
            stage,
            cluster: cluster.to_string(),
            environment: None,
            state: None,
            create: 0,
            update: 0,
            delete: 0,
            summary: Counts::default().summary(),
            counts_source: CountsSource::None,
            changes_pending: false,
            removed_instance_groups: Vec::new(),
            pruned_instance_groups: Vec::new(),
            action: None,
            kops_version: None,
            kops_skipped: None,
            update_plan: None,
            roll_plan: None,
            spec_changes: Vec::new(),
            state_diff: String::new(),
            kops_output: String::new(),
            warnings: Vec::new(),
            failed: None,
            failed_step: None,
            failed_detail: Vec::new(),
            started_at,
            duration_seconds: 0.0,
            kops_seconds: 0.0,
            kops_commands: Vec::new(),
            phases: Vec::new(),
            validation: None,
            deletion: None,
        }
    }

    pub fn set_counts(&mut self, counts: Counts, source: CountsSource) {
        self.create = counts.create;
        self.update = counts.update;
        self.delete = counts.delete;
        self.summary = counts.summary();
        self.counts_source = source;
    }

    pub fn counts(&self) -> Counts {
        Counts {
            create: self.create,
            update: self.update,
            delete: self.delete,
        }
    }

    /// Records a failure at `step`.
    pub fn fail(&mut self, step: Step, err: &Error) {
        self.failed = Some(err.to_string());
        self.failed_step = Some(step);
        if let Error::KopsFailed { stderr_tail, .. } = err {
            self.failed_detail = stderr_tail.clone();
        }
    }

    /// One line for the job log: the summary or the failure.
    pub fn line(&self) -> String {
        match &self.failed {
            Some(failed) => format!("{}: FAILED: {failed}", self.cluster),
            None => format!("{}: {}", self.cluster, self.headline()),
        }
    }

    /// What the stage did, in a few words (the job log's line without the
    /// cluster; the roll report's title).
    pub fn headline(&self) -> String {
        let mut line = match self.stage {
            StageKind::Roll => {
                // What kops concluded decides the headline; the rows only
                // say how many groups.
                let plan = self.roll_plan.as_ref();
                let pending = plan.map(|p| p.pending().count()).unwrap_or(0);
                match plan.map(|p| (p.applied, p.required)) {
                    Some((true, _)) => "rolling update done".to_string(),
                    Some((false, Some(false))) => "no rolling update required".to_string(),
                    Some((false, _)) if pending > 0 => {
                        format!("{pending} instance group(s) need a rolling update")
                    }
                    Some((false, _)) => "a rolling update is required".to_string(),
                    None => "no rolling-update table".to_string(),
                }
            }
            StageKind::Update | StageKind::Apply => format!("applied: {}", self.summary),
            StageKind::Delete => match &self.deletion {
                Some(_) if self.changes_pending => "deletion previewed".to_string(),
                Some(_) => "deleted".to_string(),
                None => "not in the state store: nothing to delete".to_string(),
            },
            StageKind::Dryrun => self.summary.clone(),
        };
        if self.kops_skipped.is_some() {
            line.push_str(" (spec diff only, kops skipped)");
        }
        if !self.removed_instance_groups.is_empty() {
            let verb = if self.pruned_instance_groups.is_empty() {
                "removed from the manifest"
            } else {
                "pruned"
            };
            let _ = write!(
                line,
                "; {} instance group(s) {verb}: {}",
                self.removed_instance_groups.len(),
                self.removed_instance_groups.join(", ")
            );
        }
        line
    }

    pub fn to_json(&self) -> Result<String> {
        let mut text =
            serde_json::to_string_pretty(self).map_err(|e| Error::YamlWrite(e.to_string()))?;
        text.push('\n');
        Ok(text)
    }

    /// `{"create":N,"update":M,"delete":K}` for `artifacts:reports:terraform`.
    pub fn terraform_json(&self) -> String {
        format!(
            "{{\"create\":{},\"update\":{},\"delete\":{}}}\n",
            self.create, self.update, self.delete
        )
    }

    /// What kOps says it will delete (`Type/name`), with or without
    /// `--prune`: a reviewer must never miss one.
    pub fn deleted_resources(&self) -> Vec<String> {
        self.update_plan
            .iter()
            .flat_map(|plan| plan.delete.iter().chain(&plan.delete_on_prune))
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect()
    }

    /// Whether anything in this report deletes something: the cluster,
    /// instance groups, or cloud resources.
    pub fn is_destructive(&self) -> bool {
        self.action == Some(Action::Delete)
            || !self.removed_instance_groups.is_empty()
            || !self.deleted_resources().is_empty()
    }

    /// `report.md`, rendered from the embedded `report.md.j2` template.
    pub fn markdown(&self) -> String {
        self.render_markdown().unwrap_or_else(|e| {
            // The template is embedded and tested: this is a bug, but the
            // report must still say something rather than nothing.
            format!(
                "#### {} — the report could not be rendered\n\n{}",
                crate::markdown::code(&self.cluster),
                crate::markdown::fenced(&e.to_string(), "text")
            )
        })
    }

    fn render_markdown(&self) -> Result<String> {
        let failure = self.failed.as_ref().map(|failed| {
            let mut detail = failed.clone();
            if !self.failed_detail.is_empty() {
                detail.push_str("\n\nlast lines of kops' stderr:\n");
                detail.push_str(&self.failed_detail.join("\n"));
            }
            detail
        });
        let headline = match self.stage {
            StageKind::Roll | StageKind::Delete => self.headline(),
            _ => self.summary.clone(),
        };
        let resources = self
            .update_plan
            .as_ref()
            .filter(|plan| plan.has_changes())
            .map(|plan| {
                let mut text = String::new();
                for (label, list) in [
                    ("create", &plan.create),
                    ("modify", &plan.modify),
                    ("delete (with --prune)", &plan.delete_on_prune),
                    ("delete", &plan.delete),
                ] {
                    for r in list {
                        let _ = writeln!(text, "{label:<8} {}/{}", r.kind, r.name);
                    }
                }
                text
            });
        let deleted_resources = self.deleted_resources();
        let destructive = self.is_destructive();
        let phase_lines: std::collections::BTreeMap<String, &str> = ReconcilePhase::ALL
            .into_iter()
            .map(|p| {
                let key = serde_json::to_value(p)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                (key, p.line())
            })
            .collect();
        let ctx = minijinja::context! {
            r => crate::markdown::value(self),
            destructive,
            deleted_resources,
            phase_lines,
            title => self.stage.title(),
            headline,
            failure,
            step => self.failed_step.map(Step::as_str).unwrap_or("?"),
            resources,
            state => self.state.as_deref().unwrap_or("the state store"),
        };
        crate::markdown::render("report.md", ctx)
    }
}

/// Writes `contents` to `dir/name` atomically: a temporary file in `dir`,
/// renamed into place. Unlike [`crate::fsutil::write_atomic`] it does not
/// fsync: a report is rewritten by the next run anyway, and seven fsyncs per
/// cluster were most of a `--without-kops` dry run's wall time.
pub fn write_file(dir: &Path, name: &str, contents: &str) -> Result<()> {
    use std::io::Write as _;
    let path = dir.join(name);
    let mut tmp = tempfile::Builder::new()
        .prefix(".kopsci-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(&path, e))?;
    tmp.write_all(contents.as_bytes())
        .map_err(|e| Error::io(&path, e))?;
    tmp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
    Ok(())
}

/// Writes `report.json` and `report.md`; with `terraform`, also the
/// terraform report (only for a successful dry run: a failed one has no
/// counts to show).
pub fn write_report(dir: &Path, report: &Report, terraform: bool) -> Result<()> {
    write_file(dir, REPORT_MD, &report.markdown())?;
    if terraform {
        write_file(dir, TERRAFORM_REPORT, &report.terraform_json())?;
    }
    // Last: its presence means the others are complete.
    write_file(dir, REPORT_JSON, &report.to_json()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_outgrow_backticks_in_the_content() {
        assert_eq!(fenced("a\n", "diff"), "```diff\na\n```\n");
        assert_eq!(fenced("x ```` y", ""), "`````\nx ```` y\n`````\n");
    }

    #[test]
    fn terraform_report_is_the_three_counts() {
        let mut r = Report::new(StageKind::Dryrun, "c", "t".into());
        r.set_counts(
            Counts {
                create: 1,
                update: 2,
                delete: 3,
            },
            CountsSource::Kops,
        );
        assert_eq!(
            r.terraform_json(),
            "{\"create\":1,\"update\":2,\"delete\":3}\n"
        );
        let v: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
        for key in [
            "cluster",
            "create",
            "update",
            "delete",
            "removed_instance_groups",
            "failed",
        ] {
            assert!(v.get(key).is_some(), "{key}");
        }
        assert!(v["failed"].is_null());
        assert_eq!(r.line(), "c: 1 to create, 2 to modify, 3 to delete");
    }

    #[test]
    fn roll_and_update_reports_read_as_such() {
        let text = "NAME\tSTATUS\tNEEDUPDATE\tREADY\tMIN\tTARGET\tMAX\tNODES\n\
                    nodes\tNeedsUpdate\t2\t0\t2\t2\t2\t2\n\nMust specify --yes to rolling-update.\n";
        let mut roll = Report::new(StageKind::Roll, "c", "t".into());
        roll.roll_plan = Some(crate::kops::parse_rolling_update_output(text).unwrap());
        roll.changes_pending = true;
        assert_eq!(roll.line(), "c: 1 instance group(s) need a rolling update");
        let md = roll.markdown();
        assert!(
            md.starts_with("#### `c` — 1 instance group(s) need a rolling update\n"),
            "{md}"
        );
        assert!(
            md.contains("| `nodes` | NeedsUpdate | 2 | 0 | 2 | 2 | 2 |"),
            "{md}"
        );

        let mut update = Report::new(StageKind::Update, "c", "t".into());
        update.removed_instance_groups = vec!["old".into()];
        update.pruned_instance_groups = vec!["old".into()];
        assert_eq!(
            update.line(),
            "c: applied: 0 to create, 0 to modify, 0 to delete; 1 instance group(s) pruned: old"
        );
        assert!(update.markdown().contains("**Pruned instance groups**"));
    }

    /// The roll headline is kOps' conclusion, whatever the rows say: a
    /// table kopsci cannot read still needs a rolling update when kOps
    /// asks for `--yes`, and the unread row is in the report with the raw
    /// table.
    #[test]
    fn the_roll_headline_is_what_kops_concluded_not_a_row_count() {
        let roll = |text: &str| {
            let mut r = Report::new(StageKind::Roll, "c", "t".into());
            r.roll_plan = Some(crate::kops::parse_rolling_update_output(text).unwrap());
            r
        };
        let unreadable = roll(
            "NAME\tSTATUS\tNEEDUPDATE\tREADY\tMIN\tTARGET\tMAX\tNODES\n\
             nodes\tNeedsUpdate\tmany\t0\t2\t2\t2\t2\n\
             \nMust specify --yes to rolling-update.\n",
        );
        assert!(unreadable.roll_plan.as_ref().unwrap().rows.is_empty());
        assert_eq!(unreadable.line(), "c: a rolling update is required");
        let md = unreadable.markdown();
        assert!(
            md.starts_with("#### `c` — a rolling update is required\n"),
            "{md}"
        );
        assert!(md.contains("could not read"), "{md}");
        assert!(md.contains("nodes\tNeedsUpdate\tmany"), "{md}");

        // Older kOps: no TARGET column; kOps says nothing is due.
        let old = roll(
            "NAME\tSTATUS\tNEEDUPDATE\tREADY\tMIN\tMAX\tNODES\n\
             nodes\tReady\t0\t2\t2\t2\t2\n\
             \nNo rolling-update required.\n",
        );
        let plan = old.roll_plan.as_ref().unwrap();
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].target, None);
        assert_eq!(old.line(), "c: no rolling update required");
    }

    #[test]
    fn a_failed_report_says_where_and_why() {
        let mut r = Report::new(StageKind::Dryrun, "c", "t".into());
        r.fail(
            Step::KopsUpdate,
            &Error::KopsFailed {
                command: "kops update cluster".into(),
                status: "exit code 1".into(),
                code: 1,
                stderr_tail: vec!["W1121 x".into(), "Error: boom".into()],
            },
        );
        let md = r.markdown();
        assert!(
            md.starts_with("#### `c` — dry run failed at `kops update cluster`\n"),
            "{md}"
        );
        assert!(
            md.contains("failed with exit code 1: Error: boom\n\nlast lines of kops' stderr:\nW1121 x\nError: boom\n"),
            "{md}"
        );
        assert_eq!(
            r.line(),
            "c: FAILED: `kops update cluster` failed with exit code 1: Error: boom"
        );
    }
}
