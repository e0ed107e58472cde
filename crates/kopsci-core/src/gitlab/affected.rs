//! Which clusters a change affects, and why.
//!
//! A cluster is affected when any of its inputs changed:
//!
//! * its own resolved entry in the fleet file: the fleet file at the merge
//!   base is parsed and compared with the one at `HEAD` ([`FleetChange`]),
//!   so a comment, a reordering or a new cluster elsewhere affects nothing
//!   (when the old file cannot be read or parsed, every cluster is
//!   affected, with that reason);
//! * any template (every cluster renders every template),
//! * the base values, its environment's values, its own values (a declared
//!   directory counts as changed when anything under it changed, so files
//!   added, moved or deleted inside it are noticed),
//! * any snippet its render actually reaches, found by rendering it
//!   ([`TemplateSet::render_tracked`]). A snippet that only another
//!   cluster's values switch on does not affect it.
//!
//! A cluster marked `absent: true` is never rendered: only changes to what
//! its deletion uses (becoming absent, its state store, its `aws:`
//! settings, `kops.version`) affect it. Changed paths matching the fleet's
//! `ignore:` globs (relative to the repository's top level) at `HEAD` and
//! at the base alike are left out first, so a glob never hides the change
//! that adds it; the fleet file itself never is. Clusters in the fleet
//! file at the base and gone at `HEAD` have *left the fleet*: they are
//! listed, never selected, as nothing may delete them.
//!
//! Renders happen only when a changed file is under a declared snippet
//! path, so a change elsewhere costs one `git diff`. A cluster whose render
//! fails while snippets changed is selected (its dry run shows the error);
//! so is every cluster when the templates themselves do not load.
//!
//! Paths are compared relative to the git top level, which is how `git diff`
//! names them: the fleet file may live in a sub-directory of the
//! repository, and its paths may even leave that directory (`../shared`).
//! Every choice carries its reasons; unaffected clusters are listed too.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};
use crate::fleet::{ApplySettings, Cluster, Fleet, Overrides};
use crate::fsutil::lexical_absolute;
use crate::gitlab::ci_env::{BaseRevision, BaseSource};
use crate::gitlab::git::Git;
use crate::render::{RenderOptions, TemplateSet};

/// Files changed between a base revision and `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub base: BaseRevision,
    /// The base's full commit name.
    pub base_commit: String,
    /// Changed paths, relative to the repository's top level, sorted.
    pub files: Vec<PathBuf>,
    /// The fleet file as it was at the merge base, when it changed.
    pub fleet_at_base: FleetAtBase,
}

/// The fleet file at the merge base of a change.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FleetAtBase {
    /// Not read: the fleet file did not change.
    #[default]
    NotRead,
    /// Its text in commit `commit`.
    Text { commit: String, text: String },
    /// Commit `commit` has no fleet file: every cluster is new.
    Missing { commit: String },
    /// It could not be read (git's error).
    Unreadable(String),
}

/// What the selection is based on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Files changed since a base revision.
    Changes(Changes),
    /// Every cluster, for the reason given.
    Everything(Everything),
}

/// Why every cluster is selected, whatever changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Everything {
    /// `--all`.
    AllFlag,
    /// A drift pipeline checks every cluster.
    Drift,
    /// No revision to count changes from.
    NoBase(NoBase),
    /// The commit before the push is not in the clone (after a force-push,
    /// or a clone too shallow): the git error.
    BeforePushMissing(String),
}

/// What `CI_COMMIT_BEFORE_SHA` said when there was no base revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoBase {
    /// Unset (outside CI, or not given).
    Unset,
    /// All zeros in a push pipeline: the push created the branch.
    NewBranch,
    /// All zeros in a pipeline of another `CI_PIPELINE_SOURCE` (`web`,
    /// `api`, `trigger`…), where GitLab has no commit before.
    ZerosFor(String),
}

impl std::fmt::Display for Everything {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Everything::AllFlag => f.write_str("--all"),
            Everything::Drift => f.write_str("a drift pipeline checks every cluster"),
            Everything::NoBase(NoBase::Unset) => f.write_str(
                "no base revision to count changes from (no --changed-since, CI_MERGE_REQUEST_DIFF_BASE_SHA or CI_COMMIT_BEFORE_SHA)",
            ),
            Everything::NoBase(NoBase::NewBranch) => f.write_str(
                "no base revision to count changes from (no --changed-since or CI_MERGE_REQUEST_DIFF_BASE_SHA; new branch: CI_COMMIT_BEFORE_SHA is all zeros)",
            ),
            Everything::NoBase(NoBase::ZerosFor(source)) => write!(
                f,
                "no base revision to count changes from (no --changed-since or CI_MERGE_REQUEST_DIFF_BASE_SHA; CI_COMMIT_BEFORE_SHA is all zeros, as GitLab sets it in `{source}` pipelines)"
            ),
            Everything::BeforePushMissing(error) => {
                write!(f, "the commit before the push is not in this clone ({error})")
            }
        }
    }
}

/// Where the repository is, for turning fleet paths (relative to the
/// current directory) into paths relative to the top level.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoPaths {
    toplevel: PathBuf,
    cwd: PathBuf,
}

impl RepoPaths {
    /// Asks git for the top level of the repository around `cwd`.
    pub fn discover(git: &Git, cwd: &Path) -> Result<RepoPaths> {
        let toplevel = git.toplevel()?;
        Ok(RepoPaths::new(&toplevel, cwd))
    }

    /// Both directories are canonicalised (when they exist) so that a
    /// symlinked working directory compares equal to git's resolved top
    /// level.
    pub fn new(toplevel: &Path, cwd: &Path) -> RepoPaths {
        let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        RepoPaths {
            toplevel: canon(toplevel),
            cwd: canon(cwd),
        }
    }

    pub fn toplevel(&self) -> &Path {
        &self.toplevel
    }

    /// `path` (relative to the current directory, or absolute) relative to
    /// the top level; `None` when it lies outside the repository.
    pub fn in_repo(&self, path: &Path) -> Option<PathBuf> {
        lexical_absolute(&self.cwd, path)
            .strip_prefix(&self.toplevel)
            .ok()
            .map(Path::to_path_buf)
    }

    /// Like [`in_repo`](Self::in_repo), falling back to the path as given
    /// for display.
    pub fn display(&self, path: &Path) -> String {
        match self.in_repo(path) {
            Some(p) if p.as_os_str().is_empty() => ".".to_string(),
            Some(p) => p.display().to_string(),
            None => path.display().to_string(),
        }
    }
}

/// The files changed since `base`, from git.
pub fn changes_since(git: &Git, base: BaseRevision) -> Result<Changes> {
    // Passing --changed-since is advice only for a base kopsci found by
    // itself: a named one that is missing is the name's problem.
    let or_flag = match base.source {
        BaseSource::Flag => "",
        BaseSource::Variable(_) => ", or pass --changed-since",
    };
    let Some(base_commit) = git.resolve_commit(&base.rev)? else {
        let message = match base.source {
            BaseSource::Flag => format!(
                "no commit `{}` (from --changed-since) in this clone: check the name; a shallow clone may not reach it: set GIT_DEPTH: 0 on the job that runs `kopsci pipeline`, or fetch it first (`git fetch origin {}`)",
                base.rev, base.rev
            ),
            BaseSource::Variable(_) => format!(
                "no commit `{}` (from {}) in this clone; a shallow clone may not reach it: set GIT_DEPTH: 0 on the job that runs `kopsci pipeline`{or_flag}",
                base.rev, base.source
            ),
        };
        return Err(Error::Git {
            command: format!("git rev-parse --verify {}^{{commit}}", base.rev),
            message,
        });
    };
    let files = git.changed_files_advising(&base_commit, "HEAD", or_flag)?;
    Ok(Changes {
        base,
        base_commit,
        files,
        fleet_at_base: FleetAtBase::NotRead,
    })
}

/// Reads the fleet file (`fleet_in_repo`, relative to the top level) as it
/// was where `changes` counts from — the merge base of the base revision
/// and `HEAD`, as `git diff BASE...HEAD` does — when it is among the
/// changed files. A failure is kept as [`FleetAtBase::Unreadable`]: the
/// selection then falls back to every cluster, never to none.
pub fn read_fleet_at_base(git: &Git, changes: &mut Changes, fleet_in_repo: &Path) {
    if !changes.files.iter().any(|f| f == fleet_in_repo) {
        return;
    }
    let path = slash_path(fleet_in_repo);
    changes.fleet_at_base = match git.merge_base(&changes.base_commit, "HEAD") {
        Err(e) => FleetAtBase::Unreadable(e.to_string()),
        Ok(commit) => match git.file_at(&commit, &path) {
            Ok(Some(text)) => FleetAtBase::Text { commit, text },
            Ok(None) => FleetAtBase::Missing { commit },
            Err(e) => FleetAtBase::Unreadable(e.to_string()),
        },
    };
}

/// A repository path as git and `ignore:` globs write it.
fn slash_path(path: &Path) -> String {
    path.components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// What a declared input is to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputRole {
    Template,
    BaseValues,
    /// The values of the named environment.
    EnvironmentValues(String),
    ClusterValues,
}

impl std::fmt::Display for InputRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputRole::Template => f.write_str("template"),
            InputRole::BaseValues => f.write_str("base values"),
            InputRole::EnvironmentValues(env) => write!(f, "environment `{env}` values"),
            InputRole::ClusterValues => f.write_str("cluster values"),
        }
    }
}

/// Why a cluster is affected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// A changed file that is a declared input of the cluster, or lies
    /// under one (`under`: the declared directory).
    Input {
        file: PathBuf,
        role: InputRole,
        under: Option<PathBuf>,
    },
    /// A changed snippet the cluster's render includes.
    Snippet { file: PathBuf },
    /// The cluster's resolved entry in the fleet file (`file`) changed.
    Fleet { file: PathBuf, change: FleetChange },
    /// The fleet file (`file`) changed and its version at the base could
    /// not be read or parsed (why): every cluster is affected.
    FleetUnreadableAtBase { file: PathBuf, error: String },
    /// Snippets changed and the cluster's render fails: its dry run shows
    /// why.
    RenderFails(String),
    /// Snippets changed and the templates do not load at all.
    TemplatesBroken(String),
    /// Every cluster is selected.
    Everything(Everything),
}

impl Reason {
    /// The changed file this reason names, if any.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Reason::Input { file, .. } | Reason::Snippet { file } => Some(file),
            _ => None,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Input {
                file,
                role,
                under: None,
            } => write!(f, "{} changed ({role})", file.display()),
            Reason::Input {
                file,
                role,
                under: Some(dir),
            } => write!(
                f,
                "{} changed (under {role}: {})",
                file.display(),
                dir.display()
            ),
            Reason::Snippet { file } => write!(
                f,
                "{} changed (a snippet its render includes)",
                file.display()
            ),
            Reason::Fleet { file, change } => write!(f, "{}: {change}", file.display()),
            Reason::FleetUnreadableAtBase { file, error } => write!(
                f,
                "{} changed and its version at the base cannot be compared, so every cluster is affected: {error}",
                file.display()
            ),
            Reason::RenderFails(error) => write!(
                f,
                "snippets changed and its render fails, so it is dry-run to show why: {error}"
            ),
            Reason::TemplatesBroken(error) => write!(
                f,
                "snippets changed and the templates do not load, so every cluster's dry run must show it: {error}"
            ),
            Reason::Everything(why) => write!(f, "{why}"),
        }
    }
}

/// What changed in a cluster's resolved fleet-file entry between the base
/// and `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetChange {
    /// The cluster was not in the fleet file at the base.
    NewCluster,
    /// There was no fleet file at the base.
    NewFleetFile,
    /// It moved to another environment.
    Environment { from: String, to: String },
    /// Its own `values:` list.
    Values,
    /// Its environment's `values:` list.
    EnvironmentValues(String),
    /// The fleet-wide `values:` list.
    BaseValues,
    /// The fleet-wide `templates:` list.
    Templates,
    /// The fleet-wide `snippets:` list.
    Snippets,
    /// `kops.version` (unset: `None`).
    KopsVersion {
        from: Option<String>,
        to: Option<String>,
    },
    /// The state store in effect for it (its own, its environment's or the
    /// fleet's).
    StateStore {
        from: Option<String>,
        to: Option<String>,
    },
    /// Its resolved `aws:` settings: the keys that differ (values left out:
    /// an external ID is a secret).
    Aws(Vec<&'static str>),
    /// One of its resolved apply settings, by its key in the fleet file.
    Apply {
        setting: &'static str,
        from: String,
        to: String,
    },
    /// `absent: true` set (`true`) or removed (`false`).
    Absent(bool),
}

impl std::fmt::Display for FleetChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let or_unset = |v: &Option<String>| v.clone().unwrap_or_else(|| "unset".to_string());
        match self {
            FleetChange::NewCluster => f.write_str("a new cluster"),
            FleetChange::NewFleetFile => f.write_str("the fleet file is new: every cluster is new"),
            FleetChange::Environment { from, to } => {
                write!(f, "moved from environment `{from}` to `{to}`")
            }
            FleetChange::Values => f.write_str("its `values` list changed"),
            FleetChange::EnvironmentValues(env) => {
                write!(f, "environment `{env}`'s `values` list changed")
            }
            FleetChange::BaseValues => f.write_str("the fleet's `values` list changed"),
            FleetChange::Templates => f.write_str("the fleet's `templates` list changed"),
            FleetChange::Snippets => f.write_str("the fleet's `snippets` list changed"),
            FleetChange::KopsVersion { from, to } => write!(
                f,
                "`kops.version` changed ({} → {})",
                or_unset(from),
                or_unset(to)
            ),
            FleetChange::StateStore { from, to } => write!(
                f,
                "its state store changed ({} → {})",
                or_unset(from),
                or_unset(to)
            ),
            FleetChange::Aws(keys) => write!(
                f,
                "its `aws` settings changed ({})",
                keys.iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            FleetChange::Apply { setting, from, to } => {
                write!(f, "`{setting}` changed ({from} → {to})")
            }
            FleetChange::Absent(true) => f.write_str("now `absent: true`: a reviewed deletion"),
            FleetChange::Absent(false) => f.write_str("no longer `absent: true`"),
        }
    }
}

impl FleetChange {
    /// Whether the change matters to a cluster that is `absent: true` at
    /// `HEAD`: only what its deletion uses does.
    fn matters_when_absent(&self) -> bool {
        matches!(
            self,
            FleetChange::NewCluster
                | FleetChange::NewFleetFile
                | FleetChange::Absent(_)
                | FleetChange::StateStore { .. }
                | FleetChange::Aws(_)
                | FleetChange::KopsVersion { .. }
        )
    }
}

/// How a cluster's resolved entry differs between `base` and `head`, in
/// the order the fleet file's keys are usually read: fleet-wide, then its
/// environment, then its own.
pub fn fleet_changes(base: &Fleet, head: &Fleet, cluster: &Cluster) -> Vec<FleetChange> {
    let Some(old) = base.clusters().iter().find(|c| c.name == cluster.name) else {
        return vec![FleetChange::NewCluster];
    };
    let mut changes = Vec::new();
    if base.templates() != head.templates() {
        changes.push(FleetChange::Templates);
    }
    if base.snippets() != head.snippets() {
        changes.push(FleetChange::Snippets);
    }
    if base.base_values() != head.base_values() {
        changes.push(FleetChange::BaseValues);
    }
    if base.kops_version() != head.kops_version() {
        changes.push(FleetChange::KopsVersion {
            from: base.kops_version().map(ToString::to_string),
            to: head.kops_version().map(ToString::to_string),
        });
    }
    if old.environment != cluster.environment {
        changes.push(FleetChange::Environment {
            from: old.environment.clone(),
            to: cluster.environment.clone(),
        });
    } else {
        let values = |fleet: &Fleet| {
            fleet
                .environment(&cluster.environment)
                .map(|e| e.values.clone())
        };
        if values(base) != values(head) {
            changes.push(FleetChange::EnvironmentValues(cluster.environment.clone()));
        }
    }
    if old.values != cluster.values {
        changes.push(FleetChange::Values);
    }
    let (from, to) = (base.state_for(old), head.state_for(cluster));
    if from != to {
        changes.push(FleetChange::StateStore {
            from: from.map(ToString::to_string),
            to: to.map(ToString::to_string),
        });
    }
    let aws = aws_keys_changed(&old.aws, &cluster.aws);
    if !aws.is_empty() {
        changes.push(FleetChange::Aws(aws));
    }
    changes.extend(apply_changes(&old.apply, &cluster.apply));
    if old.absent != cluster.absent {
        changes.push(FleetChange::Absent(cluster.absent));
    }
    changes
}

fn aws_keys_changed(a: &crate::aws::AwsSettings, b: &crate::aws::AwsSettings) -> Vec<&'static str> {
    let mut keys = Vec::new();
    if a.role_arn != b.role_arn {
        keys.push("role_arn");
    }
    if a.external_id != b.external_id {
        keys.push("external_id");
    }
    if a.region != b.region {
        keys.push("region");
    }
    if a.session_name != b.session_name {
        keys.push("session_name");
    }
    if a.duration_seconds != b.duration_seconds {
        keys.push("duration_seconds");
    }
    keys
}

/// Every apply setting that differs, named by its key in the fleet file.
fn apply_changes(a: &ApplySettings, b: &ApplySettings) -> Vec<FleetChange> {
    fn opt<T: ToString>(v: &Option<T>) -> String {
        v.as_ref()
            .map(ToString::to_string)
            .unwrap_or_else(|| "unset".to_string())
    }
    let pairs: [(&'static str, String, String); 9] = [
        ("apply", a.strategy.to_string(), b.strategy.to_string()),
        (
            "apply.timeout",
            a.timeout.to_string(),
            b.timeout.to_string(),
        ),
        (
            "prune_instance_groups",
            a.prune_instance_groups.to_string(),
            b.prune_instance_groups.to_string(),
        ),
        (
            "auto_apply",
            a.auto_apply.to_string(),
            b.auto_apply.to_string(),
        ),
        (
            "auto_roll",
            a.auto_roll.to_string(),
            b.auto_roll.to_string(),
        ),
        ("validate", a.validate.to_string(), b.validate.to_string()),
        (
            "validation_timeout",
            opt(&a.validation_timeout),
            opt(&b.validation_timeout),
        ),
        (
            "drain_timeout",
            opt(&a.drain_timeout),
            opt(&b.drain_timeout),
        ),
        ("kops.api_server", opt(&a.api_server), opt(&b.api_server)),
    ];
    pairs
        .into_iter()
        .filter(|(_, from, to)| from != to)
        .map(|(setting, from, to)| FleetChange::Apply { setting, from, to })
        .collect()
}

/// A cluster in the fleet file at the base that is gone at `HEAD`: its
/// cloud resources, if any, remain, and nothing in the pipeline touches
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeftCluster {
    pub cluster: String,
    /// Its environment at the base.
    pub environment: String,
    /// It was `absent: true` at the base (its deletion may have run).
    pub was_absent: bool,
}

/// One cluster's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterChoice {
    pub cluster: String,
    pub environment: String,
    /// Why the cluster is affected; empty when it is not.
    pub reasons: Vec<Reason>,
}

impl ClusterChoice {
    pub fn affected(&self) -> bool {
        !self.reasons.is_empty()
    }
}

/// Every cluster of the fleet, in fleet order, with its verdict.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selection {
    /// One line saying what the selection is based on.
    pub basis: String,
    pub clusters: Vec<ClusterChoice>,
    /// Clusters in the fleet file at the base and gone at `HEAD`, in the
    /// base's order.
    pub left: Vec<LeftCluster>,
    /// Changed paths left out by the fleet's `ignore:` globs.
    pub ignored: Vec<PathBuf>,
}

impl Selection {
    pub fn affected(&self) -> impl Iterator<Item = &ClusterChoice> {
        self.clusters.iter().filter(|c| c.affected())
    }

    pub fn affected_count(&self) -> usize {
        self.affected().count()
    }
}

/// An input declared in the fleet file: a file, or a directory standing for
/// everything under it.
struct Input {
    path: PathBuf,
    role: InputRole,
}

/// Decides, for every cluster of `fleet`, whether `scope` affects it.
pub fn select(fleet: &Fleet, scope: &Scope, repo: &RepoPaths) -> Selection {
    let changes = match scope {
        Scope::Everything(reason) => {
            return Selection {
                basis: format!("every cluster: {reason}"),
                clusters: fleet
                    .clusters()
                    .iter()
                    .map(|c| ClusterChoice {
                        cluster: c.name.clone(),
                        environment: c.environment.clone(),
                        reasons: vec![Reason::Everything(reason.clone())],
                    })
                    .collect(),
                ..Selection::default()
            };
        }
        Scope::Changes(changes) => changes,
    };
    let fleet_file = repo.in_repo(fleet.path());
    let at_base = FleetDiff::new(fleet, changes, fleet_file.as_deref());
    // The fleet file is never ignored: it declares everything else. A glob
    // the change itself adds does not hide that change's own files: a path
    // is ignored only when the base's globs ignored it too.
    let (ignored, files): (Vec<&PathBuf>, Vec<&PathBuf>) = changes.files.iter().partition(|f| {
        let path = slash_path(f);
        Some(f.as_path()) != fleet_file.as_deref()
            && fleet.is_ignored(&path)
            && match &at_base {
                FleetDiff::Unchanged => true,
                FleetDiff::Compared { base, .. } => base.is_ignored(&path),
                FleetDiff::New { .. } | FleetDiff::Unreadable { .. } => false,
            }
    });
    let mut basis = format!(
        "{} changed in {}...HEAD (base from {})",
        plural(changes.files.len(), "file"),
        short(&changes.base_commit),
        changes.base.source
    );
    if !ignored.is_empty() {
        basis.push_str(&format!("; {} ignored (`ignore:`)", ignored.len()));
    }
    warn_ignored_inputs(fleet, repo, &ignored);
    let selector = Selector::new(fleet, repo, at_base, files);
    Selection {
        basis,
        clusters: fleet
            .clusters()
            .iter()
            .map(|cluster| selector.choose(cluster))
            .collect(),
        left: selector.left_the_fleet(),
        ignored: ignored.into_iter().cloned().collect(),
    }
}

/// What [`select`] knows once per change set: the changed files (ignored
/// ones left out), the inputs every cluster shares, snippet use and the
/// fleet file at the base.
struct Selector<'a> {
    fleet: &'a Fleet,
    repo: &'a RepoPaths,
    files: Vec<&'a PathBuf>,
    shared: Vec<Input>,
    snippet_use: Option<SnippetUse<'a>>,
    at_base: FleetDiff,
}

impl<'a> Selector<'a> {
    fn new(
        fleet: &'a Fleet,
        repo: &'a RepoPaths,
        at_base: FleetDiff,
        files: Vec<&'a PathBuf>,
    ) -> Selector<'a> {
        let mut shared = declared(repo, fleet.templates(), InputRole::Template);
        shared.extend(declared(
            repo,
            &paths_of(fleet.base_values()),
            InputRole::BaseValues,
        ));
        let snippet_roots: Vec<PathBuf> = fleet
            .snippets()
            .iter()
            .filter_map(|p| repo.in_repo(p))
            .collect();
        let snippets_changed = files
            .iter()
            .any(|f| snippet_roots.iter().any(|root| f.starts_with(root)));
        Selector {
            fleet,
            repo,
            shared,
            snippet_use: snippets_changed.then(|| SnippetUse::find(fleet, repo)),
            at_base,
            files,
        }
    }

    fn choose(&self, cluster: &Cluster) -> ClusterChoice {
        let mut reasons = self.fleet_reasons(cluster);
        // An absent cluster is never rendered: no file it would render
        // from can affect it.
        if !cluster.absent {
            self.file_reasons(cluster, &mut reasons);
        }
        ClusterChoice {
            cluster: cluster.name.clone(),
            environment: cluster.environment.clone(),
            reasons,
        }
    }

    /// How the cluster's entry in the fleet file changed since the base.
    fn fleet_reasons(&self, cluster: &Cluster) -> Vec<Reason> {
        match &self.at_base {
            FleetDiff::Unchanged => Vec::new(),
            FleetDiff::Unreadable { file, error } => vec![Reason::FleetUnreadableAtBase {
                file: file.clone(),
                error: error.clone(),
            }],
            FleetDiff::New { file } => vec![Reason::Fleet {
                file: file.clone(),
                change: FleetChange::NewFleetFile,
            }],
            FleetDiff::Compared { file, base } => fleet_changes(base, self.fleet, cluster)
                .into_iter()
                .filter(|c| !cluster.absent || c.matters_when_absent())
                .map(|change| Reason::Fleet {
                    file: file.clone(),
                    change,
                })
                .collect(),
        }
    }

    /// The changed files the cluster renders from: declared inputs, then
    /// the snippets its templates include.
    fn file_reasons(&self, cluster: &Cluster, reasons: &mut Vec<Reason>) {
        let env_inputs = self
            .fleet
            .environment(&cluster.environment)
            .map(|e| {
                declared(
                    self.repo,
                    &paths_of(&e.values),
                    InputRole::EnvironmentValues(e.name.clone()),
                )
            })
            .unwrap_or_default();
        let own = declared(
            self.repo,
            &paths_of(&cluster.values),
            InputRole::ClusterValues,
        );
        let inputs: Vec<&Input> = self.shared.iter().chain(&env_inputs).chain(&own).collect();
        for file in &self.files {
            if let Some(input) = inputs.iter().find(|i| file.starts_with(&i.path)) {
                reasons.push(describe_match(file, input));
            }
        }
        let Some(uses) = &self.snippet_use else {
            return;
        };
        match uses.for_cluster(cluster) {
            Ok(used) => {
                for file in &self.files {
                    if used.contains(*file)
                        && !reasons.iter().any(|r| r.file() == Some(file.as_path()))
                    {
                        reasons.push(Reason::Snippet {
                            file: (*file).clone(),
                        });
                    }
                }
            }
            Err(why) => reasons.push(why),
        }
    }

    /// Clusters of the fleet file at the base that `HEAD` no longer has.
    fn left_the_fleet(&self) -> Vec<LeftCluster> {
        let FleetDiff::Compared { base, .. } = &self.at_base else {
            return Vec::new();
        };
        base.clusters()
            .iter()
            .filter(|old| self.fleet.clusters().iter().all(|c| c.name != old.name))
            .map(|old| LeftCluster {
                cluster: old.name.clone(),
                environment: old.environment.clone(),
                was_absent: old.absent,
            })
            .collect()
    }
}

/// The fleet file's `paths` that lie in the repository, as inputs of `role`.
fn declared(repo: &RepoPaths, paths: &[PathBuf], role: InputRole) -> Vec<Input> {
    paths
        .iter()
        .filter_map(|p| repo.in_repo(p))
        .map(|path| Input {
            path,
            role: role.clone(),
        })
        .collect()
}

/// An `ignore:` glob wins over a declared input; say so in the job log, as
/// a glob that is too wide would otherwise hide a change from review.
fn warn_ignored_inputs(fleet: &Fleet, repo: &RepoPaths, ignored: &[&PathBuf]) {
    if ignored.is_empty() {
        return;
    }
    let mut declared: Vec<PathBuf> = fleet.templates().to_vec();
    declared.extend(fleet.snippets().iter().cloned());
    declared.extend(paths_of(fleet.base_values()));
    for env in fleet.environments() {
        declared.extend(paths_of(&env.values));
    }
    for cluster in fleet.present_clusters() {
        declared.extend(paths_of(&cluster.values));
    }
    let declared: Vec<PathBuf> = declared.iter().filter_map(|p| repo.in_repo(p)).collect();
    for file in ignored {
        if let Some(input) = declared.iter().find(|d| file.starts_with(d)) {
            tracing::warn!(
                "{} matches an `ignore:` glob of {} but is (or is under) the declared input {}: its change affects no cluster",
                file.display(),
                repo.display(fleet.path()),
                input.display()
            );
        }
    }
}

/// The fleet file at the base, ready to compare with `HEAD`'s.
enum FleetDiff {
    /// It did not change.
    Unchanged,
    /// It did not exist.
    New {
        file: PathBuf,
    },
    /// It could not be read or parsed: why.
    Unreadable {
        file: PathBuf,
        error: String,
    },
    Compared {
        file: PathBuf,
        base: Box<Fleet>,
    },
}

impl FleetDiff {
    fn new(fleet: &Fleet, changes: &Changes, fleet_file: Option<&Path>) -> FleetDiff {
        let Some(file) = fleet_file.filter(|f| changes.files.iter().any(|c| c == f)) else {
            return FleetDiff::Unchanged;
        };
        let file = file.to_path_buf();
        match &changes.fleet_at_base {
            FleetAtBase::NotRead => FleetDiff::Unreadable {
                file,
                error: "it was not read".to_string(),
            },
            FleetAtBase::Missing { .. } => FleetDiff::New { file },
            FleetAtBase::Unreadable(error) => FleetDiff::Unreadable {
                file,
                error: error.clone(),
            },
            // Parsed as if it were today's file (same path, same root), so
            // that its resolved paths compare equal to today's.
            FleetAtBase::Text { commit, text } => {
                match Fleet::parse(text, fleet.path(), fleet.root()) {
                    Ok(base) => FleetDiff::Compared {
                        file,
                        base: Box::new(base),
                    },
                    Err(e) => FleetDiff::Unreadable {
                        file,
                        error: format!("it does not parse at {}: {e}", short(commit)),
                    },
                }
            }
        }
    }
}

fn describe_match(file: &Path, input: &Input) -> Reason {
    Reason::Input {
        file: file.to_path_buf(),
        role: input.role.clone(),
        under: (file != input.path).then(|| input.path.clone()),
    }
}

/// Which snippets each cluster's render reaches, found by rendering.
enum SnippetUse<'a> {
    Loaded {
        fleet: &'a Fleet,
        repo: &'a RepoPaths,
        templates: Box<TemplateSet>,
    },
    /// The templates do not load at all (the error): every cluster is
    /// affected.
    Broken(String),
}

impl<'a> SnippetUse<'a> {
    fn find(fleet: &'a Fleet, repo: &'a RepoPaths) -> SnippetUse<'a> {
        match TemplateSet::load(fleet.templates(), fleet.snippets()) {
            Ok(templates) => SnippetUse::Loaded {
                fleet,
                repo,
                templates: Box::new(templates),
            },
            Err(e) => SnippetUse::Broken(e.to_string()),
        }
    }

    /// The snippet files (relative to the top level) the cluster's render
    /// reaches, or the reason to select it anyway.
    fn for_cluster(&self, cluster: &Cluster) -> std::result::Result<BTreeSet<PathBuf>, Reason> {
        match self {
            SnippetUse::Broken(error) => Err(Reason::TemplatesBroken(error.clone())),
            SnippetUse::Loaded {
                fleet,
                repo,
                templates,
            } => {
                let rendered = fleet
                    .context(cluster, &Overrides::default())
                    .and_then(|ctx| templates.render_tracked(&ctx, &RenderOptions::default()));
                match rendered {
                    Ok((_, used)) => Ok(used.iter().filter_map(|p| repo.in_repo(p)).collect()),
                    Err(e) => Err(Reason::RenderFails(e.to_string())),
                }
            }
        }
    }
}

/// The explanation `kopsci pipeline --explain` prints.
pub fn format_explanation(selection: &Selection, repo: &RepoPaths, fleet: &Fleet) -> String {
    /// Reasons listed per cluster before the rest are counted.
    const MAX_REASONS: usize = 8;
    let mut out = format!(
        "fleet: {}\nbasis: {}\n",
        repo.display(fleet.path()),
        selection.basis
    );
    let affected: Vec<&ClusterChoice> = selection.affected().collect();
    let unaffected: Vec<&ClusterChoice> = selection
        .clusters
        .iter()
        .filter(|c| !c.affected())
        .collect();
    out.push_str(&format!(
        "affected: {} of {}\n",
        affected.len(),
        plural(selection.clusters.len(), "cluster")
    ));
    for choice in &affected {
        out.push_str(&format!("  {} ({})\n", choice.cluster, choice.environment));
        for reason in choice.reasons.iter().take(MAX_REASONS) {
            out.push_str(&format!("    - {reason}\n"));
        }
        if choice.reasons.len() > MAX_REASONS {
            out.push_str(&format!(
                "    - … and {} more\n",
                choice.reasons.len() - MAX_REASONS
            ));
        }
    }
    out.push_str(&format!("not affected: {}\n", unaffected.len()));
    for choice in &unaffected {
        out.push_str(&format!(
            "  {} ({}): none of its inputs changed\n",
            choice.cluster, choice.environment
        ));
    }
    if !selection.left.is_empty() {
        out.push_str(&format!(
            "left the fleet: {} (in the fleet file at the base, gone now; nothing deletes them: mark a cluster `absent: true` to delete it)\n",
            selection.left.len()
        ));
        for left in &selection.left {
            let note = if left.was_absent {
                "it was `absent: true`: check that its deletion ran"
            } else {
                "its cloud resources remain"
            };
            out.push_str(&format!(
                "  {} ({}): {note}\n",
                left.cluster, left.environment
            ));
        }
    }
    if !selection.ignored.is_empty() {
        out.push_str(&format!(
            "ignored: {} (matching the fleet's `ignore:` globs)\n",
            plural(selection.ignored.len(), "file")
        ));
        for file in selection.ignored.iter().take(MAX_IGNORED) {
            out.push_str(&format!("  {}\n", file.display()));
        }
        if selection.ignored.len() > MAX_IGNORED {
            out.push_str(&format!(
                "  … and {} more\n",
                selection.ignored.len() - MAX_IGNORED
            ));
        }
    }
    out
}

/// Ignored files listed by `--explain` before the rest are counted.
const MAX_IGNORED: usize = 20;

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

fn plural(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

/// The paths of values entries, whatever their kind.
fn paths_of(values: &[crate::fleet::ValuesSource]) -> Vec<std::path::PathBuf> {
    values.iter().map(|v| v.path().to_path_buf()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fx {
        dir: tempfile::TempDir,
    }

    impl Fx {
        fn new() -> Fx {
            let fx = Fx {
                dir: tempfile::tempdir().unwrap(),
            };
            fx.file("infra/kopsci.yaml", FLEET);
            fx.file(
                "infra/templates/c.yaml.j2",
                "name: {{ clusterName }}\n{% if special is defined %}x: {{ include('special') }}\n{% endif %}y: {{ include('common') }}\n",
            );
            fx.file("shared/snippets/special", "s");
            fx.file("shared/snippets/common", "c");
            fx.file("shared/snippets/unused", "u");
            fx.file("infra/values/base.yaml", "a: 1\n");
            fx.file("infra/values/dev/x.yaml", "a: 2\n");
            fx.file("infra/values/a.yaml", "special: true\n");
            fx.file("infra/values/b.yaml", "b: 1\n");
            fx
        }

        fn file(&self, rel: &str, text: &str) {
            let path = self.dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        fn fleet(&self) -> (Fleet, RepoPaths) {
            let cwd = self.dir.path().join("infra");
            let fleet = Fleet::load(&cwd.join("kopsci.yaml")).unwrap();
            (fleet, RepoPaths::new(self.dir.path(), &cwd))
        }

        fn select(&self, files: &[&str]) -> Vec<(String, Vec<String>)> {
            verdicts(&self.selection(files, FleetAtBase::NotRead))
        }

        fn selection(&self, files: &[&str], fleet_at_base: FleetAtBase) -> Selection {
            let (fleet, repo) = self.fleet();
            let scope = Scope::Changes(Changes {
                base: BaseRevision {
                    rev: "base".into(),
                    source: BaseSource::Flag,
                },
                base_commit: "0123456789abcdef".into(),
                files: files.iter().map(PathBuf::from).collect(),
                fleet_at_base,
            });
            select(&fleet, &scope, &repo)
        }

        /// The fleet file is now `head`; it was `FLEET` at the base.
        fn fleet_change(&self, head: &str) -> Selection {
            self.file("infra/kopsci.yaml", head);
            self.selection(
                &["infra/kopsci.yaml"],
                FleetAtBase::Text {
                    commit: "0123456789abcdef".into(),
                    text: FLEET.to_string(),
                },
            )
        }
    }

    const FLEET: &str = "\
templates: [templates/c.yaml.j2]
snippets: [../shared/snippets]
values: [values/base.yaml]
environments:
  dev: {values: [values/dev]}
  prod: {needs: [dev]}
clusters:
  - {name: a.example.com, environment: dev, values: [values/a.yaml]}
  - {name: b.example.com, environment: prod, values: [values/b.yaml]}
";

    fn verdicts(selection: &Selection) -> Vec<(String, Vec<String>)> {
        selection
            .clusters
            .iter()
            .map(|c| {
                (
                    c.cluster.clone(),
                    c.reasons.iter().map(Reason::to_string).collect(),
                )
            })
            .collect()
    }

    fn affected(result: &[(String, Vec<String>)]) -> Vec<&str> {
        result
            .iter()
            .filter(|(_, r)| !r.is_empty())
            .map(|(c, _)| c.as_str())
            .collect()
    }

    #[test]
    fn inputs_select_the_clusters_that_use_them() {
        let fx = Fx::new();
        assert_eq!(affected(&fx.select(&["README.md"])), Vec::<&str>::new());
        assert_eq!(
            affected(&fx.select(&["infra/values/a.yaml"])),
            ["a.example.com"]
        );
        assert_eq!(
            affected(&fx.select(&["infra/values/dev/new.yaml"])),
            ["a.example.com"]
        );
        for shared in [
            "infra/templates/c.yaml.j2",
            "infra/values/base.yaml",
            "shared/snippets/common",
        ] {
            assert_eq!(
                affected(&fx.select(&[shared])),
                ["a.example.com", "b.example.com"],
                "{shared}"
            );
        }
        assert_eq!(
            affected(&fx.select(&["shared/snippets/special"])),
            ["a.example.com"]
        );
        assert_eq!(
            affected(&fx.select(&["shared/snippets/unused"])),
            Vec::<&str>::new()
        );
        // A file beside the fleet that is not an input.
        assert_eq!(
            affected(&fx.select(&["infra/values/c.yaml", "infra/manifests/a.example.com.yaml"])),
            Vec::<&str>::new()
        );
    }

    #[test]
    fn a_changed_terraform_output_selects_the_clusters_that_use_it() {
        let fx = Fx::new();
        fx.file(
            "infra/kopsci.yaml",
            &FLEET.replace(
                "values: [values/b.yaml]",
                "values: [values/b.yaml, {terraform_output: tf/b.json}]",
            ),
        );
        fx.file(
            "infra/tf/b.json",
            r#"{"vpc": {"value": "vpc-1", "sensitive": true}}"#,
        );
        let result = fx.select(&["infra/tf/b.json"]);
        assert_eq!(affected(&result), ["b.example.com"]);
        assert_eq!(result[1].1, ["infra/tf/b.json changed (cluster values)"]);
    }

    #[test]
    fn reasons_name_the_file_and_its_role() {
        let fx = Fx::new();
        let result = fx.select(&["infra/values/a.yaml", "infra/values/dev/x.yaml"]);
        assert_eq!(
            result[0].1,
            [
                "infra/values/a.yaml changed (cluster values)",
                "infra/values/dev/x.yaml changed (under environment `dev` values: infra/values/dev)"
            ]
        );
        let result = fx.select(&["shared/snippets/special"]);
        assert_eq!(
            result[0].1,
            ["shared/snippets/special changed (a snippet its render includes)"]
        );
    }

    #[test]
    fn a_failing_render_selects_its_cluster_when_snippets_changed() {
        let fx = Fx::new();
        fx.file("infra/values/b.yaml", "clusterName: other.example.com\n");
        let result = fx.select(&["shared/snippets/special"]);
        assert_eq!(affected(&result), ["a.example.com", "b.example.com"]);
        assert!(
            result[1].1[0].starts_with("snippets changed and its render fails"),
            "{:?}",
            result[1].1
        );
        // Without a snippet change nothing is rendered, so nothing fails.
        assert_eq!(affected(&fx.select(&["README.md"])), Vec::<&str>::new());
    }

    #[test]
    fn broken_templates_select_everything_when_snippets_changed() {
        let fx = Fx::new();
        fx.file("shared/snippets/bad", "{% if %}");
        let result = fx.select(&["shared/snippets/bad"]);
        assert_eq!(affected(&result), ["a.example.com", "b.example.com"]);
        assert!(result[0].1[0].contains("do not load"), "{:?}", result[0].1);
    }

    #[test]
    fn everything_scope_and_explanation() {
        let fx = Fx::new();
        let (fleet, repo) = fx.fleet();
        let selection = select(
            &fleet,
            &Scope::Everything(Everything::NoBase(NoBase::Unset)),
            &repo,
        );
        assert_eq!(selection.affected_count(), 2);
        let text = format_explanation(&selection, &repo, &fleet);
        assert!(text.starts_with("fleet: infra/kopsci.yaml\nbasis: every cluster: no base revision to count changes from (no --changed-since, CI_MERGE_REQUEST_DIFF_BASE_SHA or CI_COMMIT_BEFORE_SHA)\naffected: 2 of 2 clusters\n"), "{text}");
        assert!(text.ends_with("not affected: 0\n"), "{text}");
    }

    #[test]
    fn repo_paths_are_relative_to_the_top_level() {
        let fx = Fx::new();
        let (_, repo) = fx.fleet();
        assert_eq!(
            repo.in_repo(Path::new("values/a.yaml")),
            Some(PathBuf::from("infra/values/a.yaml"))
        );
        assert_eq!(
            repo.in_repo(Path::new("../shared/snippets")),
            Some(PathBuf::from("shared/snippets"))
        );
        assert_eq!(repo.in_repo(Path::new("/elsewhere/x")), None);
        assert_eq!(repo.display(Path::new("..")), ".");
    }

    #[test]
    fn a_fleet_file_change_affects_only_the_clusters_whose_entry_changed() {
        let fx = Fx::new();
        let case = |head: String| {
            let selection = fx.fleet_change(&head);
            let result = verdicts(&selection);
            (
                affected(&result)
                    .into_iter()
                    .map(String::from)
                    .collect::<Vec<_>>(),
                result
                    .iter()
                    .flat_map(|(_, r)| r.iter().cloned())
                    .collect::<Vec<_>>(),
                selection,
            )
        };
        let a = "a.example.com";
        let b = "b.example.com";
        // Formatting and comments: nothing.
        let (hit, _, _) = case(format!("# The fleet.\n{FLEET}").replace(
            ", values: [values/a.yaml]}",
            ",  values: [ values/a.yaml ] }",
        ));
        assert!(hit.is_empty(), "{hit:?}");
        for (head, expected, reason) in [
            (
                FLEET.replace(
                    "values: [values/a.yaml]",
                    "values: [values/a.yaml, values/a2.yaml]",
                ),
                vec![a],
                "infra/kopsci.yaml: its `values` list changed",
            ),
            (
                FLEET.replace(
                    "dev: {values: [values/dev]}",
                    "dev: {values: [values/dev, values/more]}",
                ),
                vec![a],
                "infra/kopsci.yaml: environment `dev`'s `values` list changed",
            ),
            (
                FLEET.replace("templates: [templates/c.yaml.j2]", "templates: [templates]"),
                vec![a, b],
                "infra/kopsci.yaml: the fleet's `templates` list changed",
            ),
            (
                FLEET.replace(
                    "snippets: [../shared/snippets]",
                    "snippets: [../shared/snippets, snip]",
                ),
                vec![a, b],
                "infra/kopsci.yaml: the fleet's `snippets` list changed",
            ),
            (
                FLEET.replace(
                    "values: [values/base.yaml]",
                    "values: [values/base.yaml, {terraform_output: tf.json}]",
                ),
                vec![a, b],
                "infra/kopsci.yaml: the fleet's `values` list changed",
            ),
            (
                format!("kops: {{version: \">=1.34.0\"}}\n{FLEET}"),
                vec![a, b],
                "infra/kopsci.yaml: `kops.version` changed (unset → >=1.34.0)",
            ),
            (
                format!("state: s3://kops-state\n{FLEET}"),
                vec![a, b],
                "infra/kopsci.yaml: its state store changed (unset → s3://kops-state)",
            ),
            (
                FLEET.replace(
                    "prod: {needs: [dev]}",
                    "prod: {needs: [dev], state: s3://prod-state}",
                ),
                vec![b],
                "infra/kopsci.yaml: its state store changed (unset → s3://prod-state)",
            ),
            (
                FLEET.replace(
                    "prod: {needs: [dev]}",
                    "prod: {needs: [dev], auto_apply: true}",
                ),
                vec![b],
                "infra/kopsci.yaml: `auto_apply` changed (false → true)",
            ),
            (
                FLEET.replace(
                    "prod: {needs: [dev]}",
                    "prod: {needs: [dev], apply: {strategy: update-roll, timeout: 4h}}",
                ),
                vec![b],
                "infra/kopsci.yaml: `apply` changed (reconcile → update-roll)",
            ),
            (
                format!("apply: {{timeout: 1h}}\n{FLEET}"),
                vec![a, b],
                "infra/kopsci.yaml: `apply.timeout` changed (3h → 1h)",
            ),
            (
                FLEET.replace(
                    "environment: prod,",
                    "environment: prod, kops: {api_server: \"https://api.internal\"},",
                ),
                vec![b],
                "infra/kopsci.yaml: `kops.api_server` changed (unset → https://api.internal)",
            ),
            (
                FLEET.replace(
                    "dev: {values: [values/dev]}",
                    "dev: {values: [values/dev], aws: {region: eu-west-1}}",
                ),
                vec![a],
                "infra/kopsci.yaml: its `aws` settings changed (`region`)",
            ),
            (
                FLEET.replace(
                    "{name: b.example.com, environment: prod,",
                    "{name: b.example.com, environment: dev,",
                ),
                vec![b],
                "infra/kopsci.yaml: moved from environment `prod` to `dev`",
            ),
            (
                format!("{FLEET}  - {{name: c.example.com, environment: prod}}\n"),
                vec!["c.example.com"],
                "infra/kopsci.yaml: a new cluster",
            ),
            (
                FLEET.replace(
                    "values: [values/a.yaml]}",
                    "values: [values/a.yaml], absent: true}",
                ),
                vec![a],
                "infra/kopsci.yaml: now `absent: true`: a reviewed deletion",
            ),
        ] {
            let (hit, reasons, _) = case(head.clone());
            assert_eq!(hit, expected, "{head}");
            assert!(reasons.contains(&reason.to_string()), "{reasons:?}\n{head}");
        }
        // Promotion order is no input of a cluster.
        let (hit, _, _) = case(FLEET.replace("prod: {needs: [dev]}", "prod: {}"));
        assert!(hit.is_empty(), "{hit:?}");
        // A cluster removed: nothing to dry-run, and it has left the fleet.
        let (hit, _, selection) = case(FLEET.replace(
            "  - {name: b.example.com, environment: prod, values: [values/b.yaml]}\n",
            "",
        ));
        assert!(hit.is_empty(), "{hit:?}");
        assert_eq!(
            selection.left,
            [LeftCluster {
                cluster: b.to_string(),
                environment: "prod".to_string(),
                was_absent: false,
            }]
        );
    }

    #[test]
    fn a_fleet_file_that_cannot_be_compared_affects_every_cluster() {
        let fx = Fx::new();
        let file = ["infra/kopsci.yaml"];
        let unreadable = fx.selection(
            &file,
            FleetAtBase::Unreadable("`git merge-base` failed: no merge base".into()),
        );
        assert_eq!(unreadable.affected_count(), 2);
        assert_eq!(
            verdicts(&unreadable)[0].1,
            [
                "infra/kopsci.yaml changed and its version at the base cannot be compared, so every cluster is affected: `git merge-base` failed: no merge base"
            ]
        );
        let unparsable = fx.selection(
            &file,
            FleetAtBase::Text {
                commit: "0123456789abcdef0000".into(),
                text: "templates: [t]\nclusters: {oops: 1}\n".into(),
            },
        );
        assert_eq!(unparsable.affected_count(), 2);
        let reason = &verdicts(&unparsable)[1].1[0];
        assert!(
            reason.contains("cannot be compared")
                && reason.contains("it does not parse at 0123456789ab: "),
            "{reason}"
        );
        let new = fx.selection(
            &file,
            FleetAtBase::Missing {
                commit: "0123".into(),
            },
        );
        assert_eq!(
            verdicts(&new)[0].1,
            ["infra/kopsci.yaml: the fleet file is new: every cluster is new"]
        );
        // Unchanged, it is never read.
        assert_eq!(
            fx.selection(&["README.md"], FleetAtBase::NotRead)
                .affected_count(),
            0
        );
    }

    #[test]
    fn absent_clusters_are_affected_only_by_what_their_deletion_uses() {
        let fx = Fx::new();
        fx.file(
            "infra/kopsci.yaml",
            &FLEET.replace(
                "values: [values/a.yaml]}",
                "values: [values/a.yaml], absent: true}",
            ),
        );
        let none: Vec<&str> = Vec::new();
        // Never rendered: templates, values and snippets do not matter.
        for file in [
            "infra/templates/c.yaml.j2",
            "infra/values/a.yaml",
            "infra/values/base.yaml",
            "shared/snippets/special",
        ] {
            let result = fx.select(&[file]);
            assert!(
                !affected(&result).contains(&"a.example.com"),
                "{file}: {result:?}"
            );
        }
        let base = FLEET.replace(
            "values: [values/a.yaml]}",
            "values: [values/a.yaml], absent: true}",
        );
        let at = |head: String| {
            fx.file("infra/kopsci.yaml", &head);
            verdicts(&fx.selection(
                &["infra/kopsci.yaml"],
                FleetAtBase::Text {
                    commit: "0".into(),
                    text: base.clone(),
                },
            ))
        };
        assert_eq!(
            affected(&at(base.replace(
                "values: [values/a.yaml]",
                "values: [values/other.yaml]"
            ))),
            none
        );
        assert_eq!(
            affected(&at(format!("state: s3://elsewhere\n{base}"))),
            ["a.example.com", "b.example.com"]
        );
        assert_eq!(
            affected(&at(
                base.replace("templates: [templates/c.yaml.j2]", "templates: [t2]")
            )),
            ["b.example.com"]
        );
    }

    #[test]
    fn ignored_paths_affect_nothing_and_are_listed() {
        let fx = Fx::new();
        fx.file(
            "infra/kopsci.yaml",
            &format!("ignore: [\"**/*.md\", \"infra/kopsci.yaml\", \"docs/**\"]\n{FLEET}"),
        );
        let selection = fx.selection(
            &[
                "docs/setup.md",
                "infra/values/dev/README.md",
                "infra/values/a.yaml",
            ],
            FleetAtBase::NotRead,
        );
        // A README inside a declared values directory would count without
        // the glob.
        assert_eq!(affected(&verdicts(&selection)), ["a.example.com"]);
        assert_eq!(
            selection.ignored,
            [
                PathBuf::from("docs/setup.md"),
                PathBuf::from("infra/values/dev/README.md")
            ]
        );
        assert!(
            selection.basis.ends_with("; 2 ignored (`ignore:`)"),
            "{}",
            selection.basis
        );
        // The globs match paths from the repository's top level.
        let without = fx.selection(&["infra/values/dev/x.yaml"], FleetAtBase::NotRead);
        assert!(without.ignored.is_empty());
        assert_eq!(affected(&verdicts(&without)), ["a.example.com"]);
        // The fleet file is never ignored, whatever the globs say.
        let fleet = fx.selection(&["infra/kopsci.yaml"], FleetAtBase::NotRead);
        assert!(fleet.ignored.is_empty());
        assert_eq!(fleet.affected_count(), 2);
        let (fleet_file, repo) = fx.fleet();
        let text = format_explanation(&selection, &repo, &fleet_file);
        assert!(
            text.ends_with("ignored: 2 files (matching the fleet's `ignore:` globs)\n  docs/setup.md\n  infra/values/dev/README.md\n"),
            "{text}"
        );
    }

    /// A glob a change adds cannot hide that change's own files: only the
    /// globs the base already had ignore paths.
    #[test]
    fn a_glob_added_by_the_change_does_not_hide_its_own_files() {
        let fx = Fx::new();
        let head = format!("ignore: [\"infra/values/**\", \"**/*.md\"]\n{FLEET}");
        fx.file("infra/kopsci.yaml", &head);
        let changed = ["infra/kopsci.yaml", "infra/values/a.yaml", "docs/x.md"];
        let added = fx.selection(
            &changed,
            FleetAtBase::Text {
                commit: "0".into(),
                text: FLEET.to_string(),
            },
        );
        assert!(added.ignored.is_empty(), "{:?}", added.ignored);
        assert_eq!(affected(&verdicts(&added)), ["a.example.com"]);
        // Once the base has the globs, they ignore.
        let had = fx.selection(
            &changed,
            FleetAtBase::Text {
                commit: "0".into(),
                text: format!("ignore: [\"**/*.md\", \"infra/values/**\"]\n{FLEET}\n# old\n"),
            },
        );
        assert_eq!(
            had.ignored,
            [
                PathBuf::from("infra/values/a.yaml"),
                PathBuf::from("docs/x.md")
            ]
        );
        assert!(affected(&verdicts(&had)).is_empty());
        // Only the globs both have ignore.
        let narrower = fx.selection(
            &changed,
            FleetAtBase::Text {
                commit: "0".into(),
                text: format!("ignore: [\"**/*.md\"]\n{FLEET}"),
            },
        );
        assert_eq!(narrower.ignored, [PathBuf::from("docs/x.md")]);
        assert_eq!(affected(&verdicts(&narrower)), ["a.example.com"]);
    }

    #[test]
    fn the_explanation_lists_clusters_that_left_the_fleet() {
        let fx = Fx::new();
        let base = format!(
            "{FLEET}  - {{name: c.example.com, environment: dev}}\n  - {{name: old.example.com, environment: prod, absent: true}}\n"
        );
        fx.file("infra/kopsci.yaml", FLEET);
        let selection = fx.selection(
            &["infra/kopsci.yaml"],
            FleetAtBase::Text {
                commit: "0".into(),
                text: base,
            },
        );
        assert_eq!(selection.affected_count(), 0);
        let (fleet, repo) = fx.fleet();
        let text = format_explanation(&selection, &repo, &fleet);
        assert!(
            text.ends_with(
                "left the fleet: 2 (in the fleet file at the base, gone now; nothing deletes them: mark a cluster `absent: true` to delete it)\n  c.example.com (dev): its cloud resources remain\n  old.example.com (prod): it was `absent: true`: check that its deletion ran\n"
            ),
            "{text}"
        );
    }
}
