//! `kopsci dryrun`, `kopsci update` and `kopsci roll`: the stage commands
//! that wrap kops.

use std::path::PathBuf;

use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Exit;

/// Prove a change without touching the live state store: render, snapshot
/// the store, `kops replace`/`create` and `kops update cluster` against the
/// snapshot, and write reports.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci dryrun --all                         Dry-run every cluster of kopsci.yaml
  kopsci dryrun dev-a.k8s.example.com --detailed-exitcode
  kopsci dryrun --all --without-kops          Everything kopsci owns, no kops binary")]
pub struct DryrunArgs {
    /// Clusters of the fleet to dry-run.
    #[arg(value_name = "CLUSTER")]
    pub clusters: Vec<String>,

    /// Dry-run every cluster of the fleet.
    #[arg(long, conflicts_with = "clusters")]
    pub all: bool,

    /// Where reports go; one sub-directory per cluster.
    #[arg(long, value_name = "DIR", default_value = ".kopsci/reports")]
    pub report_dir: PathBuf,

    /// Exit 0 when nothing changes, 2 when changes are pending, 1 on error.
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Skip kops: diff the rendered manifest against the stored spec only.
    #[arg(long)]
    pub without_kops: bool,

    /// kops binary to run (default: `kops` on PATH).
    #[arg(long, env = "KOPSCI_KOPS", value_name = "PATH")]
    pub kops: Option<PathBuf>,
}

/// Apply a reviewed dry run to the live state store: check the plan is not
/// stale, `kops replace`/`create`, optionally prune removed instance groups,
/// then `kops update cluster --yes`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci update dev-a.k8s.example.com
  kopsci update dev-a.k8s.example.com --prune-instance-groups
  kopsci update dev-a.k8s.example.com -- --lifecycle-overrides IAMRole=ExistsAndWarnIfChanges")]
pub struct UpdateArgs {
    /// The cluster to update.
    #[arg(value_name = "CLUSTER")]
    pub cluster: String,

    /// Where the dry run wrote its reports (and `plan.json`).
    #[arg(long, value_name = "DIR", default_value = ".kopsci/reports")]
    pub report_dir: PathBuf,

    /// Apply even if the plan is missing or the live store changed since.
    #[arg(long)]
    pub allow_stale: bool,

    /// Delete instance groups that are in the store but not in the manifest.
    #[arg(long)]
    pub prune_instance_groups: bool,

    /// kops binary to run (default: `kops` on PATH).
    #[arg(long, env = "KOPSCI_KOPS", value_name = "PATH")]
    pub kops: Option<PathBuf>,

    /// Extra flags passed to `kops update cluster`.
    #[arg(last = true, value_name = "KOPS_FLAGS")]
    pub kops_args: Vec<String>,
}

/// Preview a rolling update (parsed into a report), or run it with `--yes`.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci roll dev-a.k8s.example.com
  kopsci roll dev-a.k8s.example.com --yes -- --instance-group nodes --validation-timeout 20m")]
pub struct RollArgs {
    /// The cluster to roll.
    #[arg(value_name = "CLUSTER")]
    pub cluster: String,

    /// Perform the rolling update instead of previewing it.
    #[arg(long)]
    pub yes: bool,

    /// kops binary to run (default: `kops` on PATH).
    #[arg(long, env = "KOPSCI_KOPS", value_name = "PATH")]
    pub kops: Option<PathBuf>,

    /// Extra flags passed to `kops rolling-update cluster`.
    #[arg(last = true, value_name = "KOPS_FLAGS")]
    pub kops_args: Vec<String>,
}

pub fn dryrun(_global: &GlobalArgs, _args: DryrunArgs) -> anyhow::Result<Exit> {
    super::not_implemented("dryrun", 4)
}

pub fn update(_global: &GlobalArgs, _args: UpdateArgs) -> anyhow::Result<Exit> {
    super::not_implemented("update", 4)
}

pub fn roll(_global: &GlobalArgs, _args: RollArgs) -> anyhow::Result<Exit> {
    super::not_implemented("roll", 4)
}
