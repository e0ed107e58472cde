//! Top-level command-line definition: global options and the subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use kopsci_core::fleet::Fleet;

use crate::commands;

/// Version string: crate version plus the git commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KOPSCI_GIT_COMMIT"),
    ")"
);

/// The long help's epilogue: the exit-code table (from [`crate::exit`]),
/// examples and environment variables.
fn after_help() -> String {
    format!(
        "{}
Examples:
  kopsci render --all --out manifests      Render every cluster of kopsci.yaml
  kopsci render --check                    Fail if committed manifests are stale
  kopsci render --values v.yaml --template t.yaml.j2
                                           Use like `kops toolbox template`

Environment:
  KOPSCI_FLEET        fleet file (default: kopsci.yaml)
  KOPSCI_LOG          log filter, overrides -v/-q (e.g. `debug`); the AWS SDK's
                      and HTTP logs stop at debug; credentials are always redacted
  NO_COLOR            disable colour
  KOPS_STATE_STORE    default state store (as in kOps)
  KOPS_CLUSTER_NAME   default cluster name (as in kOps)",
        crate::exit::help_table()
    )
}

/// Run kOps clusters from GitLab CI: render manifests from Jinja templates,
/// dry-run changes against a snapshot of the state store, then update and
/// roll what was reviewed.
#[derive(Debug, Parser)]
#[command(name = "kopsci", version = VERSION, after_long_help = after_help(), propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Fleet file declaring templates, values, environments and clusters.
    #[arg(long, global = true, env = "KOPSCI_FLEET", value_name = "FILE")]
    pub fleet: Option<PathBuf>,

    /// More log output (repeat for more: -v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Less log output (-q errors only, -qq nothing).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub quiet: u8,

    /// When to use colour. `NO_COLOR` always wins.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto, value_name = "WHEN")]
    pub color: ColorChoice,
}

impl GlobalArgs {
    /// The fleet file: `--fleet` / `KOPSCI_FLEET`, else `kopsci.yaml` here.
    /// A file that is not there is a usage error whichever way it was
    /// named, so the exit code does not depend on how it was given.
    pub fn load_fleet(&self) -> anyhow::Result<Fleet> {
        if let Some(path) = &self.fleet
            && !path.exists()
        {
            return Err(kopsci_core::Error::Usage(format!(
                "fleet file {} not found (from --fleet or KOPSCI_FLEET)",
                path.display()
            ))
            .into());
        }
        Ok(Fleet::discover(self.fleet.as_deref())?)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    Render(commands::render::RenderArgs),
    Snapshot(commands::snapshot::SnapshotArgs),
    Dryrun(commands::stages::DryrunArgs),
    Update(commands::stages::UpdateArgs),
    Roll(commands::stages::RollArgs),
    Apply(commands::stages::ApplyArgs),
    Delete(commands::stages::DeleteArgs),
    Kubeconfig(commands::stages::KubeconfigArgs),
    Pipeline(commands::pipeline::PipelineArgs),
    Migrate(commands::migrate::MigrateArgs),
    Note(commands::note::NoteArgs),
    Drift(commands::drift::DriftArgs),
    Completions(commands::meta::CompletionsArgs),
    Man(commands::meta::ManArgs),
}
