//! Which clusters a change affects, and why.
//!
//! A cluster is affected when any of its inputs changed:
//!
//! * the fleet file itself (it declares everything else),
//! * any template (every cluster renders every template),
//! * the base values, its environment's values, its own values (a declared
//!   directory counts as changed when anything under it changed, so files
//!   added, moved or deleted inside it are noticed),
//! * any snippet its render actually reaches, found by rendering it
//!   ([`TemplateSet::render_tracked`]). A snippet that only another
//!   cluster's values switch on does not affect it.
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
use crate::fleet::{Cluster, Fleet, Overrides};
use crate::gitlab::ci_env::{BaseRevision, BaseSource};
use crate::gitlab::git::{Git, lexical_absolute};
use crate::render::{RenderOptions, TemplateSet};

/// Files changed between a base revision and `HEAD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changes {
    pub base: BaseRevision,
    /// The base's full commit name.
    pub base_commit: String,
    /// Changed paths, relative to the repository's top level, sorted.
    pub files: Vec<PathBuf>,
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
    })
}

/// What a declared input is to a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InputRole {
    FleetFile,
    Template,
    BaseValues,
    /// The values of the named environment.
    EnvironmentValues(String),
    ClusterValues,
}

impl std::fmt::Display for InputRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InputRole::FleetFile => f.write_str("the fleet file"),
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    /// One line saying what the selection is based on.
    pub basis: String,
    pub clusters: Vec<ClusterChoice>,
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
            };
        }
        Scope::Changes(changes) => changes,
    };
    let basis = format!(
        "{} changed in {}...HEAD (base from {})",
        plural(changes.files.len(), "file"),
        short(&changes.base_commit),
        changes.base.source
    );

    let declared = |paths: &[PathBuf], role: InputRole| -> Vec<Input> {
        paths
            .iter()
            .filter_map(|p| repo.in_repo(p))
            .map(|path| Input {
                path,
                role: role.clone(),
            })
            .collect()
    };
    let mut shared = declared(&[fleet.path().to_path_buf()], InputRole::FleetFile);
    shared.extend(declared(fleet.templates(), InputRole::Template));
    shared.extend(declared(
        &paths_of(fleet.base_values()),
        InputRole::BaseValues,
    ));

    let snippet_roots: Vec<PathBuf> = fleet
        .snippets()
        .iter()
        .filter_map(|p| repo.in_repo(p))
        .collect();
    let snippets_changed = changes
        .files
        .iter()
        .any(|f| snippet_roots.iter().any(|root| f.starts_with(root)));
    let snippet_use = snippets_changed.then(|| SnippetUse::find(fleet, repo));

    let clusters = fleet
        .clusters()
        .iter()
        .map(|cluster| {
            let mut inputs: Vec<&Input> = shared.iter().collect();
            let env_inputs = fleet
                .environments()
                .find(|e| e.name == cluster.environment)
                .map(|e| {
                    declared(
                        &paths_of(&e.values),
                        InputRole::EnvironmentValues(e.name.clone()),
                    )
                })
                .unwrap_or_default();
            let own = declared(&paths_of(&cluster.values), InputRole::ClusterValues);
            inputs.extend(env_inputs.iter());
            inputs.extend(own.iter());

            let mut reasons = Vec::new();
            for file in &changes.files {
                if let Some(input) = inputs.iter().find(|i| file.starts_with(&i.path)) {
                    reasons.push(describe_match(file, input));
                }
            }
            if let Some(uses) = &snippet_use {
                match uses.for_cluster(cluster) {
                    Ok(used) => {
                        for file in &changes.files {
                            if used.contains(file)
                                && !reasons.iter().any(|r| r.file() == Some(file.as_path()))
                            {
                                reasons.push(Reason::Snippet { file: file.clone() });
                            }
                        }
                    }
                    Err(why) => reasons.push(why),
                }
            }
            ClusterChoice {
                cluster: cluster.name.clone(),
                environment: cluster.environment.clone(),
                reasons,
            }
        })
        .collect();
    Selection { basis, clusters }
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
    out
}

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
            fx.file(
                "infra/kopsci.yaml",
                "templates: [templates/c.yaml.j2]\nsnippets: [../shared/snippets]\nvalues: [values/base.yaml]\n\
                 environments:\n  dev: {values: [values/dev]}\n  prod: {needs: [dev]}\n\
                 clusters:\n  - {name: a.example.com, environment: dev, values: [values/a.yaml]}\n\
                 \x20 - {name: b.example.com, environment: prod, values: [values/b.yaml]}\n",
            );
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
            let (fleet, repo) = self.fleet();
            let scope = Scope::Changes(Changes {
                base: BaseRevision {
                    rev: "base".into(),
                    source: BaseSource::Flag,
                },
                base_commit: "0123456789abcdef".into(),
                files: files.iter().map(PathBuf::from).collect(),
            });
            select(&fleet, &scope, &repo)
                .clusters
                .into_iter()
                .map(|c| (c.cluster, c.reasons.iter().map(Reason::to_string).collect()))
                .collect()
        }
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
            "infra/kopsci.yaml",
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
}
