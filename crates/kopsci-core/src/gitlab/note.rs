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
//! ## Where it goes
//!
//! GitLab REST API v4 (`CI_API_V4_URL`, `CI_PROJECT_ID`,
//! `CI_MERGE_REQUEST_IID`) with `KOPSCI_GITLAB_TOKEN`. The note starts with
//! a hidden marker (`<!-- kopsci-note fleet=… -->`); the note to edit is
//! the one by the token's own user that starts with it, so a marker copied
//! into someone else's comment is never touched. An unchanged body is not
//! rewritten.
//!
//! ## Size
//!
//! GitLab refuses notes over 1,000,000 characters. The summary table and
//! removed instance groups always come first; per-cluster details are added
//! while they fit, the rest replaced by links to the job's artifacts, and a
//! line says the note was truncated.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::errors::{Error, Result};
use crate::gitlab::api::{GitLabApi, Method, encode_segment};
use crate::gitlab::ci_env::CiEnv;

/// GitLab's limit on a note's length, in characters.
pub const GITLAB_NOTE_MAX_CHARS: usize = 1_000_000;

/// The file a dry run writes per cluster.
pub const REPORT_JSON: &str = "report.json";

/// What the note needs from a cluster's `report.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterSummary {
    /// The cluster; the directory name when the file leaves it out.
    #[serde(default)]
    pub cluster: String,
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
}

impl ClusterSummary {
    /// `N to create, M to modify, K to delete`.
    pub fn counts(&self) -> String {
        format!(
            "{} to create, {} to modify, {} to delete",
            self.create, self.update, self.delete
        )
    }

    fn has_changes(&self) -> bool {
        self.changes_pending.unwrap_or_else(|| {
            self.create + self.update + self.delete > 0 || !self.removed_instance_groups.is_empty()
        })
    }

    /// The table cell: the failure, or the counts.
    fn result(&self) -> String {
        if let Some(why) = &self.failed {
            let step = self
                .failed_step
                .as_deref()
                .map(|s| format!(" ({})", cell(s)))
                .unwrap_or_default();
            return format!(":x: **failed**{step}: {}", cell(why));
        }
        let mut text = if self.has_changes() {
            self.counts()
        } else {
            "no changes".to_string()
        };
        match self.removed_instance_groups.len() {
            0 => {}
            1 => text.push_str(", 1 removed instance group"),
            n => text.push_str(&format!(", {n} removed instance groups")),
        }
        if self.kops_skipped.is_some() {
            text.push_str(" (spec diff only: kops did not run)");
        }
        text
    }
}

/// One cluster's summary and its Markdown details, as loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterReport {
    pub summary: ClusterSummary,
    /// The report's path relative to the report directory, for links.
    pub details_path: Option<String>,
    pub details: Option<String>,
}

/// Loads the reports of `clusters` from `report_dir`, in that order; with
/// no clusters named, of every sub-directory that has a `report.json`, in
/// name order. A missing or unreadable report becomes a failed summary, so
/// that one broken dry run never hides the others.
pub fn load_reports(report_dir: &Path, clusters: &[String]) -> Result<Vec<ClusterReport>> {
    let names: Vec<String> = if clusters.is_empty() {
        let entries = match std::fs::read_dir(report_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(report_dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(report_dir, e))?;
            if entry.path().join(REPORT_JSON).is_file() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
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
    let text = match std::fs::read_to_string(&path) {
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
        match std::fs::read_to_string(dir.join(&relative)) {
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

    fn browse(&self) -> String {
        format!("{}/artifacts/browse/{}", self.job_url, self.report_dir)
    }

    fn file(&self, relative: &str) -> String {
        format!(
            "{}/artifacts/file/{}/{relative}",
            self.job_url, self.report_dir
        )
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
}

/// The marker for the fleet file `fleet`: a fleet repository with two
/// fleets gets two notes. `--` cannot appear inside an HTML comment.
pub fn marker(fleet: &str) -> String {
    let key: String = fleet
        .replace("--", "-")
        .chars()
        .filter(|c| !c.is_control() && *c != '>')
        .collect();
    format!("<!-- kopsci-note fleet={key} -->")
}

/// The note's Markdown, at most `max_chars` characters.
pub fn render_note(reports: &[ClusterReport], ctx: &NoteContext, max_chars: usize) -> String {
    let mut head = format!("{}\n", ctx.marker);
    let failed = reports
        .iter()
        .filter(|r| r.summary.failed.is_some())
        .count();
    let changed = reports
        .iter()
        .filter(|r| r.summary.failed.is_none() && r.summary.has_changes())
        .count();
    if reports.is_empty() {
        head.push_str("### kopsci dry run\n\nNo cluster is affected by this change.\n");
    } else {
        head.push_str(&format!(
            "### kopsci dry run: {}, {changed} with changes{}\n\n| Cluster | Result |\n| --- | --- |\n",
            plural(reports.len(), "cluster"),
            if failed > 0 {
                format!(", {failed} failed")
            } else {
                String::new()
            }
        ));
        for report in reports {
            let s = &report.summary;
            head.push_str(&format!("| {} | {} |\n", cluster_cell(s), s.result()));
        }
        let removed: Vec<&ClusterSummary> = reports
            .iter()
            .map(|r| &r.summary)
            .filter(|s| !s.removed_instance_groups.is_empty())
            .collect();
        if !removed.is_empty() {
            head.push_str(
                "\n:warning: **Removed instance groups**: in the state store but no longer in the manifest. `kopsci update` deletes them only with `--prune-instance-groups`.\n\n",
            );
            for s in removed {
                let groups: Vec<String> = s
                    .removed_instance_groups
                    .iter()
                    .map(|g| format!("`{}`", cell(g)))
                    .collect();
                head.push_str(&format!("- `{}`: {}\n", s.cluster, groups.join(", ")));
            }
        }
    }

    let mut footer = String::from("\n---\n<sub>kopsci");
    if let Some(commit) = &ctx.commit {
        footer.push_str(&format!(" · commit {}", commit.get(..12).unwrap_or(commit)));
    }
    if let Some(url) = &ctx.pipeline_url {
        footer.push_str(&format!(" · [pipeline]({url})"));
    }
    if let Some(links) = &ctx.artifacts {
        footer.push_str(&format!(" · [all reports]({})", links.browse()));
    }
    footer.push_str("</sub>\n");

    let notice = match &ctx.artifacts {
        Some(links) => format!(
            "\n**Truncated** to stay under GitLab's note size limit: the full reports are in [the job's artifacts]({}).\n",
            links.browse()
        ),
        None => "\n**Truncated** to stay under GitLab's note size limit: the full reports are in the job's artifacts.\n".to_string(),
    };

    let fixed = chars(&head) + chars(&footer);
    if fixed + chars(&notice) > max_chars {
        // Even the summary does not fit: cut it and say so.
        let room = max_chars.saturating_sub(chars(&footer) + chars(&notice) + 2);
        // The marker survives whatever the limit: it is how the note is
        // found again.
        let keep = room.max(chars(&ctx.marker) + 1);
        let cut: String = head.chars().take(keep).collect();
        return fit(format!("{cut}…\n{notice}{footer}"), max_chars);
    }
    let mut budget = max_chars - fixed;
    let mut body = String::new();
    let mut truncated = false;
    for report in reports {
        let Some(details) = &report.details else {
            continue;
        };
        let block = format!(
            "\n<details><summary><code>{}</code>: {}</summary>\n\n{}\n\n</details>\n",
            report.summary.cluster,
            match &report.summary.failed {
                Some(_) => "failed".to_string(),
                None => report.summary.counts(),
            },
            details.trim_end()
        );
        // Room for the truncation notice stays reserved until the end.
        if chars(&block) + chars(&notice) <= budget {
            budget -= chars(&block);
            body.push_str(&block);
            continue;
        }
        truncated = true;
        let link = match (&ctx.artifacts, &report.details_path) {
            (Some(links), Some(path)) => format!(" ([report]({}))", links.file(path)),
            _ => String::new(),
        };
        let line = format!("\n- `{}`: details left out{link}\n", report.summary.cluster);
        if chars(&line) + chars(&notice) <= budget {
            budget -= chars(&line);
            body.push_str(&line);
        }
    }
    if truncated {
        body.push_str(&notice);
    }
    format!("{head}{body}{footer}")
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

fn cluster_cell(summary: &ClusterSummary) -> String {
    match &summary.environment {
        Some(env) => format!("`{}` ({})", summary.cluster, cell(env)),
        None => format!("`{}`", summary.cluster),
    }
}

/// Text made safe for one Markdown table cell: one line, no pipes, no HTML.
fn cell(text: &str) -> String {
    const MAX: usize = 300;
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let line: String = match line.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    };
    line.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('|', "\\|")
        .replace('`', "'")
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
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

/// Creates the note, or edits the one that starts with `marker`.
pub fn upsert_note(
    api: &GitLabApi,
    target: &NoteTarget,
    marker: &str,
    body: &str,
) -> Result<NoteOutcome> {
    let me = api
        .request(Method::Get, "/user", None)?
        .body
        .get("id")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| Error::GitLab {
            request: "GET /user".to_string(),
            message: "the response has no user id".to_string(),
        })?;
    let payload = json!({ "body": body });
    if let Some(outcome) = update_existing(api, target, me, marker, body, &payload)? {
        return Ok(outcome);
    }
    // A POST is not idempotent: before retrying one that may have reached
    // GitLab, look again for the note it may have created.
    let path = target.notes_path();
    let policy = api.retry_policy();
    let mut retry = 0;
    loop {
        match api.call(Method::Post, &path, Some(&payload)) {
            Ok(response) => {
                let id = response
                    .body
                    .get("id")
                    .and_then(serde_json::Value::as_u64)
                    .unwrap_or_default();
                return Ok(NoteOutcome::Created(id));
            }
            Err(failure) => {
                retry += 1;
                if !failure.retryable() || retry >= policy.attempts {
                    return Err(api.error(Method::Post, &path, &failure, retry));
                }
                api.wait(Method::Post, &path, &failure, retry);
                if let Some(outcome) = update_existing(api, target, me, marker, body, &payload)? {
                    return Ok(outcome);
                }
            }
        }
    }
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
    api.request(
        Method::Put,
        &format!("{}/{id}", target.notes_path()),
        Some(payload),
    )?;
    Ok(Some(NoteOutcome::Updated(id)))
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
        let notes = response.body.as_array().cloned().unwrap_or_default();
        for note in &notes {
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
        match response.next_page {
            Some(next) if !notes.is_empty() => page = next,
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

/// Builds the merge-request note from the reports, writes it next to them
/// (`merge-request-note.md`, kept with the job's artifacts) and, in a
/// merge-request pipeline with a token, posts it.
pub fn publish(ci: &CiEnv, request: &NoteRequest) -> Result<NoteRun> {
    let reports = load_reports(&request.report_dir, &request.clusters)?;
    let ctx = NoteContext {
        marker: marker(&request.fleet),
        commit: ci.get("CI_COMMIT_SHA").map(str::to_string),
        pipeline_url: ci.get("CI_PIPELINE_URL").map(str::to_string),
        artifacts: ArtifactLinks::new(ci.get("CI_JOB_URL"), &request.report_dir),
    };
    let body = render_note(&reports, &ctx, request.max_chars);
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
    let api_url = ci
        .get("CI_API_V4_URL")
        .ok_or_else(|| missing("CI_API_V4_URL"))?;
    let project = ci
        .get("CI_PROJECT_ID")
        .ok_or_else(|| missing("CI_PROJECT_ID"))?;
    let ca_file = ci
        .get("CI_SERVER_TLS_CA_FILE")
        .or_else(|| ci.get("SSL_CERT_FILE"))
        .map(Path::new);
    let api = GitLabApi::new(api_url, token.clone(), ca_file)?;
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

    fn ctx() -> NoteContext {
        NoteContext {
            marker: marker("kopsci.yaml"),
            commit: Some("0123456789abcdef0123".into()),
            pipeline_url: Some("https://gitlab.example.com/g/p/-/pipelines/7".into()),
            artifacts: ArtifactLinks::new(
                Some("https://gitlab.example.com/g/p/-/jobs/9"),
                Path::new(".kopsci/reports"),
            ),
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
        let note = render_note(&reports, &ctx(), GITLAB_NOTE_MAX_CHARS);
        assert!(note.starts_with("<!-- kopsci-note fleet=kopsci.yaml -->\n### kopsci dry run: 5 clusters, 3 with changes, 1 failed\n"), "{note}");
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
        assert!(note.contains("- `c.example.com`: `nodes-b`\n"), "{note}");
        assert!(note.contains("| `c.example.com` (dev) | 0 to create, 0 to modify, 0 to delete, 1 removed instance group |\n"), "{note}");
        assert!(note.contains("<details><summary><code>a.example.com</code>: 1 to create, 2 to modify, 0 to delete</summary>\n\ndiff here\n\n</details>\n"), "{note}");
        assert!(note.ends_with("<sub>kopsci · commit 0123456789ab · [pipeline](https://gitlab.example.com/g/p/-/pipelines/7) · [all reports](https://gitlab.example.com/g/p/-/jobs/9/artifacts/browse/.kopsci/reports)</sub>\n"), "{note}");
        assert!(!note.contains("Truncated"));
    }

    #[test]
    fn no_reports_says_nothing_is_affected() {
        let note = render_note(&[], &ctx(), GITLAB_NOTE_MAX_CHARS);
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
        let note = render_note(&reports, &ctx(), limit);
        assert!(note.chars().count() <= limit, "{}", note.chars().count());
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
            let note = render_note(&reports, &ctx(), limit);
            assert!(
                note.chars().count() <= limit,
                "{limit}: {}",
                note.chars().count()
            );
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
}
