//! `kopsci pipeline`: the GitLab child pipeline for the clusters a change
//! affects.

use std::io::Write;
use std::path::PathBuf;

use clap::{ArgAction, Args, ValueEnum};
use kopsci_core::gitlab::pipeline::{self, KOPS_DOWNLOAD_URL, PipelineOptions, Request};
use kopsci_core::gitlab::{CiEnv, PipelineKind};

use crate::cli::GlobalArgs;
use crate::exit::Exit;

/// Emit a GitLab child pipeline: dry-run jobs for the clusters whose inputs
/// changed, and on the default branch manual update → roll jobs per cluster
/// in environment order.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci pipeline --out child-pipeline.yml     In CI: base and pipeline kind from GitLab's variables
  kopsci pipeline --changed-since origin/main --explain
                                               Which clusters a branch affects, and why
  kopsci pipeline --for default-branch --all   Update and roll jobs for every cluster

Changes are counted from --changed-since, else CI_MERGE_REQUEST_DIFF_BASE_SHA
(CI_MERGE_REQUEST_TARGET_BRANCH_SHA in merged-results pipelines), else
CI_COMMIT_BEFORE_SHA; without any, every cluster is selected. Only committed
changes count (`git diff BASE...HEAD`).")]
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

    /// Authenticate the cluster jobs to AWS with a GitLab ID token for this
    /// audience: dry runs assume $KOPSCI_DRYRUN_ROLE_ARN, update and roll
    /// $KOPSCI_UPDATE_ROLE_ARN (empty: the runner's own credentials).
    #[arg(long, value_name = "AUDIENCE")]
    pub aws_oidc_audience: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Dry runs (and the merge-request note) only.
    MergeRequest,
    /// Dry runs, then manual update and roll jobs.
    DefaultBranch,
}

pub fn run(global: &GlobalArgs, args: PipelineArgs) -> anyhow::Result<Exit> {
    let fleet = global.load_fleet()?;
    let cwd = std::env::current_dir()?;
    let kind = args.target.map(|k| match k {
        KindArg::MergeRequest => PipelineKind::MergeRequest,
        KindArg::DefaultBranch => PipelineKind::DefaultBranch,
    });
    let mut options = PipelineOptions::new(kind.unwrap_or(PipelineKind::MergeRequest));
    options.kopsci = args.kopsci_command;
    options.image = args.image.filter(|i| !i.trim().is_empty());
    options.tags = args.tags;
    options.report_dir = args.report_dir;
    options.expire_in = args.expire_in;
    options.mr_note = args.mr_note;
    options.dryrun_environment = args.dryrun_environment;
    options.kops_version = args.kops_version.filter(|v| !v.trim().is_empty());
    options.kops_download_url = args.kops_download_url;
    options.aws_oidc_audience = args.aws_oidc_audience.filter(|a| !a.trim().is_empty());
    let request = Request {
        changed_since: args.changed_since,
        all: args.all,
        kind,
        options,
    };
    let generated = pipeline::generate_child_pipeline(&fleet, &CiEnv::from_env(), &cwd, request)?;

    let mut stdout = std::io::stdout().lock();
    if args.explain {
        write!(stdout, "{}", generated.explanation)?;
    }
    match &args.out {
        Some(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|e| kopsci_core::Error::io(dir, e))?;
            }
            kopsci_core::fsutil::write_atomic(path, generated.yaml.as_bytes())?;
            if !args.explain {
                eprintln!(
                    "kopsci pipeline: {} of {} clusters affected; {} pipeline written to {}",
                    generated.selection.affected_count(),
                    generated.selection.clusters.len(),
                    generated.kind.name(),
                    path.display()
                );
            }
        }
        None if !args.explain => write!(stdout, "{}", generated.yaml)?,
        None => {}
    }
    stdout.flush()?;
    Ok(Exit::Success)
}
