//! `kopsci pipeline`: the GitLab child pipeline for the clusters a change
//! affects.

use std::path::PathBuf;

use clap::Args;

use crate::cli::GlobalArgs;
use crate::exit::Exit;

/// Emit a GitLab child pipeline: dry-run jobs for the clusters whose inputs
/// changed, and manual update → roll jobs per cluster in environment order.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci pipeline --out child-pipeline.yml
  kopsci pipeline --changed-since origin/main --explain")]
pub struct PipelineArgs {
    /// Base revision; clusters whose inputs changed since are affected.
    #[arg(long, env = "CI_MERGE_REQUEST_DIFF_BASE_SHA", value_name = "REF")]
    pub changed_since: Option<String>,

    /// Print why each cluster is (or is not) affected.
    #[arg(long)]
    pub explain: bool,

    /// Write the pipeline here instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(_global: &GlobalArgs, _args: PipelineArgs) -> anyhow::Result<Exit> {
    super::not_implemented("pipeline", 5)
}
