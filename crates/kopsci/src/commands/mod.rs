//! One module per subcommand: its clap arguments and the call into
//! `kopsci_core` that carries it out.

use std::path::PathBuf;

use clap::Args;

pub mod drift;
pub mod meta;
pub mod migrate;
pub mod note;
pub mod pipeline;
pub mod render;
pub mod snapshot;
pub mod stages;

/// `--report-dir`, shared by every command that writes or reads reports.
#[derive(Debug, Clone, Args)]
pub struct ReportDirArgs {
    /// Reports directory: one sub-directory per cluster (`DIR/<cluster>/`).
    #[arg(long = "report-dir", value_name = "DIR", default_value = kopsci_core::DEFAULT_REPORT_DIR)]
    pub report_dir: PathBuf,
}
