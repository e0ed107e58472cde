//! `kopsci pipeline`: the GitLab child pipeline for the clusters a change
//! affects.

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};
use kopsci_core::gitlab::pipeline::ci::AccessLevel;
use kopsci_core::gitlab::pipeline::downstream::DownstreamJobs;
use kopsci_core::gitlab::pipeline::{
    self, ArtifactsAccess, GITLAB_MAX_DEPLOYMENTS, KOPS_DOWNLOAD_URL, Limits, PipelineOptions,
    Request,
};
use kopsci_core::gitlab::{CiEnv, PipelineKind};

use crate::cli::GlobalArgs;
use crate::exit::Exit;

/// Emit a GitLab child pipeline: dry-run jobs for the clusters whose inputs
/// changed; on the default branch per cluster, in environment order, a
/// manual apply job (`apply: reconcile`, the default) or update → roll jobs
/// (`apply: update-roll`), and a manual delete job for clusters marked
/// `absent: true`; in scheduled pipelines a drift check of every cluster.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci pipeline --out child-pipeline.yml     In CI: base and pipeline kind from GitLab's variables
  kopsci pipeline --changed-since origin/main --explain
                                               Which clusters a branch affects, and why
  kopsci pipeline --for default-branch --all   Apply (or update and roll) jobs for every cluster
  kopsci pipeline --for drift                  Dry runs of every cluster that fail on drift
  kopsci pipeline --for default-branch --all --split-by-environment --out .kopsci/child-pipeline.yml
                                               One child pipeline per environment (in .kopsci/children/)
  kopsci pipeline --downstream-jobs .gitlab/after-apply.yml
                                               Your jobs (`needs: [apply:CLUSTER]`) after the cluster jobs

Changes are counted from --changed-since, else CI_MERGE_REQUEST_DIFF_BASE_SHA
(CI_MERGE_REQUEST_TARGET_BRANCH_SHA in merged-results pipelines), else
CI_COMMIT_BEFORE_SHA; without any, every cluster is selected. Only committed
changes count (`git diff BASE...HEAD`). A change to the fleet file affects
only the clusters whose resolved entry changed (the file at the merge base
is compared with HEAD's); paths matching its `ignore:` globs affect none.
Scheduled pipelines (CI_PIPELINE_SOURCE=schedule) check every cluster for
drift.

GitLab limits: 50 `needs` per job (promotion beyond that goes through gate
jobs), 500 deployment jobs per pipeline by default (--max-deployments),
jobs per pipeline by plan (--max-jobs; GitLab.com: 500 Free, 1500 Premium,
2000 Ultimate).")]
pub struct PipelineArgs {
    /// Base revision; clusters whose inputs changed since are affected.
    #[arg(long, value_name = "REF")]
    pub changed_since: Option<String>,

    /// Select every cluster, whatever changed.
    #[arg(long, conflicts_with = "changed_since")]
    pub all: bool,

    /// Print why each cluster is (or is not) affected; the YAML is then
    /// written only with --out.
    #[arg(long)]
    pub explain: bool,

    /// Write the pipeline here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Which pipeline to generate (default: detected from CI_PIPELINE_SOURCE,
    /// CI_COMMIT_BRANCH and CI_DEFAULT_BRANCH; dry runs only unless this is
    /// the default branch).
    #[arg(long = "for", value_enum, value_name = "KIND")]
    pub target: Option<KindArg>,

    /// Scheduled pipelines (CI_PIPELINE_SOURCE=schedule) get a drift
    /// pipeline; `=false`: the pipeline their branch would get.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    pub drift_on_schedule: bool,

    /// Drift pipelines: a drifted cluster's job warns (`allow_failure:
    /// exit_codes: [2]`) instead of failing. Only pending changes exit 2
    /// (usage errors exit 64), so a broken job still fails.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    pub drift_allow_failure: bool,

    /// Default-branch pipelines: one child pipeline per environment (and
    /// per part of one too big for the limits), started in promotion
    /// order; the files go to `children/` beside --out.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    pub split_by_environment: bool,

    /// Most jobs GitLab allows in one pipeline (ci_pipeline_size); 0: not
    /// checked.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub max_jobs: usize,

    /// Most deployment jobs (jobs with an environment) GitLab allows in one
    /// pipeline (ci_pipeline_deployments); 0: not checked.
    #[arg(long, value_name = "N", default_value_t = GITLAB_MAX_DEPLOYMENTS)]
    pub max_deployments: usize,

    /// Image of the generated jobs (default: the runner's).
    #[arg(long, env = "KOPSCI_IMAGE", value_name = "IMAGE")]
    pub image: Option<String>,

    /// Runner tag for the generated jobs (repeatable).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// How the generated jobs run kopsci.
    #[arg(long, value_name = "COMMAND", default_value = "kopsci")]
    pub kopsci_command: String,

    /// Where the dry runs write their reports, relative to the project directory.
    #[arg(long, value_name = "DIR", default_value = kopsci_core::DEFAULT_REPORT_DIR)]
    pub report_dir: String,

    /// How long GitLab keeps the jobs' artifacts.
    #[arg(long, value_name = "DURATION", default_value = "1 week")]
    pub expire_in: String,

    /// Who may download the jobs' artifacts (`artifacts:access`, GitLab
    /// 16.11+); `public-false` writes the older `artifacts:public: false`.
    #[arg(long, value_enum, value_name = "ACCESS", default_value = "developer")]
    pub artifacts_access: AccessArg,

    /// Add a job that posts the merge-request note (merge-request pipelines).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = false, default_missing_value = "true", action = ArgAction::Set)]
    pub mr_note: bool,

    /// Give dry-run jobs their GitLab environment (`action: prepare`);
    /// `=false` when protected environments would stop developers' dry runs.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_value_t = true, default_missing_value = "true", action = ArgAction::Set)]
    pub dryrun_environment: bool,

    /// Install this kops release in the jobs unless their image has it.
    #[arg(long, value_name = "VERSION")]
    pub kops_version: Option<String>,

    /// Where kops releases are downloaded from (a mirror for offline runners).
    #[arg(long, value_name = "URL", default_value = KOPS_DOWNLOAD_URL)]
    pub kops_download_url: String,

    /// Default-branch pipelines: jobs of the fleet repository (a YAML file
    /// of jobs) added after the cluster jobs they `needs:`, such as a
    /// workload deploy after `apply:CLUSTER`; empty: none.
    #[arg(long, value_name = "FILE")]
    pub downstream_jobs: Option<String>,

    /// Authenticate the cluster jobs to AWS with a GitLab ID token for this
    /// audience: dry runs assume $KOPSCI_DRYRUN_ROLE_ARN, apply, update, roll and delete
    /// $KOPSCI_UPDATE_ROLE_ARN (empty: the runner's own credentials).
    #[arg(long, value_name = "AUDIENCE")]
    pub aws_oidc_audience: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Dry runs (and the merge-request note) only.
    MergeRequest,
    /// Dry runs, then apply (or update and roll) and delete jobs.
    DefaultBranch,
    /// Dry runs of every cluster with --detailed-exitcode; nothing applied.
    Drift,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AccessArg {
    /// Members with the Developer role or higher.
    Developer,
    /// Members with the Maintainer role or higher.
    Maintainer,
    /// Anyone who can see the pipeline.
    All,
    /// Nobody (jobs still pass them on).
    None,
    /// `public: false`: the same as `developer`, for GitLab before 16.11.
    PublicFalse,
}

impl From<AccessArg> for ArtifactsAccess {
    fn from(arg: AccessArg) -> ArtifactsAccess {
        match arg {
            AccessArg::Developer => ArtifactsAccess::Level(AccessLevel::Developer),
            AccessArg::Maintainer => ArtifactsAccess::Level(AccessLevel::Maintainer),
            AccessArg::All => ArtifactsAccess::Level(AccessLevel::All),
            AccessArg::None => ArtifactsAccess::Level(AccessLevel::None),
            AccessArg::PublicFalse => ArtifactsAccess::PublicFalse,
        }
    }
}

pub fn run(global: &GlobalArgs, args: PipelineArgs) -> anyhow::Result<Exit> {
    let fleet = global.load_fleet()?;
    let cwd = std::env::current_dir()?;
    let kind = args.target.map(|k| match k {
        KindArg::MergeRequest => PipelineKind::MergeRequest,
        KindArg::DefaultBranch => PipelineKind::DefaultBranch,
        KindArg::Drift => PipelineKind::Drift,
    });
    let mut options = PipelineOptions::new(kind.unwrap_or(PipelineKind::MergeRequest));
    options.kopsci = args.kopsci_command;
    options.image = args.image.filter(|i| !i.trim().is_empty());
    options.tags = args.tags;
    options.report_dir = args.report_dir;
    options.expire_in = args.expire_in;
    options.artifacts_access = args.artifacts_access.into();
    options.drift_allow_failure = args.drift_allow_failure;
    options.split_by_environment = args.split_by_environment;
    options.limits = Limits {
        max_jobs: args.max_jobs,
        max_deployments: args.max_deployments,
    };
    if let Some(dir) = children_dir(args.out.as_deref()) {
        options.children_dir = dir;
    }
    options.mr_note = args.mr_note;
    options.dryrun_environment = args.dryrun_environment;
    options.kops_version = args.kops_version.filter(|v| !v.trim().is_empty());
    options.kops_download_url = args.kops_download_url;
    options.aws_oidc_audience = args.aws_oidc_audience.filter(|a| !a.trim().is_empty());
    options.downstream = args
        .downstream_jobs
        .filter(|f| !f.trim().is_empty())
        .map(|f| DownstreamJobs::load(std::path::Path::new(&f)))
        .transpose()?;
    let request = Request {
        changed_since: args.changed_since,
        all: args.all,
        kind,
        drift_on_schedule: args.drift_on_schedule,
        options,
    };
    let generated = pipeline::generate_child_pipeline(&fleet, &CiEnv::from_env(), &cwd, request)?;
    if !generated.children.is_empty() {
        check_children_location(args.out.as_deref())?;
    }

    let mut stdout = std::io::stdout().lock();
    if args.explain {
        write!(stdout, "{}", generated.explanation)?;
    }
    match &args.out {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| kopsci_core::Error::io(dir, e))?;
            }
            // The environments' files first: the main one names them.
            for (child, yaml) in &generated.children {
                let child = std::path::Path::new(child);
                if let Some(dir) = child.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| kopsci_core::Error::io(dir, e))?;
                }
                kopsci_core::fsutil::write_atomic(child, yaml.as_bytes())?;
            }
            kopsci_core::fsutil::write_atomic(path, generated.yaml.as_bytes())?;
            if !args.explain {
                eprintln!(
                    "kopsci pipeline: {} of {} clusters affected; {} pipeline written to {}{}",
                    generated.selection.affected_count(),
                    generated.selection.clusters.len(),
                    generated.kind.name(),
                    path.display(),
                    match generated.children.len() {
                        0 => String::new(),
                        n => format!(" (and its {n} environment pipelines)"),
                    }
                );
            }
        }
        None if !args.explain => write!(stdout, "{}", generated.yaml)?,
        None => {}
    }
    stdout.flush()?;
    Ok(Exit::Success)
}

/// Where split pipelines' environment files go: `children/` beside
/// `--out`, as the trigger jobs name them (relative to the project
/// directory, which the job runs in).
fn children_dir(out: Option<&std::path::Path>) -> Option<String> {
    let out = out?;
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.join("children"))
        .unwrap_or_else(|| PathBuf::from("children"));
    Some(dir.display().to_string())
}

fn check_children_location(out: Option<&std::path::Path>) -> anyhow::Result<()> {
    match out {
        None => Err(kopsci_core::Error::Usage(
            "--split-by-environment writes one file per environment beside the main one: give --out".to_string(),
        )
        .into()),
        Some(path) if path.is_absolute() || path.components().any(|c| c == std::path::Component::ParentDir) => {
            Err(kopsci_core::Error::Usage(format!(
                "--split-by-environment: --out {} must be a relative path inside the project directory: the trigger jobs include the environments' files by that path",
                path.display()
            ))
            .into())
        }
        Some(_) => Ok(()),
    }
}
