//! Top-level command-line definition: global options and the subcommands.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::commands;

/// Version string: crate version plus the git commit it was built from.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("KOPSCI_GIT_COMMIT"),
    ")"
);

const AFTER_HELP: &str = "\
Exit codes:
  0    success, nothing pending
  1    error
  2    usage error; with `dryrun --detailed-exitcode`: changes pending
  3    differences found (`render --check`, `snapshot verify`)

Examples:
  kopsci render --all --out manifests      Render every cluster of kopsci.yaml
  kopsci render --check                    Fail if committed manifests are stale
  kopsci render --values v.yaml --template t.yaml.j2
                                           Use like `kops toolbox template`

Environment:
  KOPSCI_FLEET        fleet file (default: kopsci.yaml)
  KOPSCI_LOG          log filter, overrides -v/-q (e.g. `debug`)
  NO_COLOR            disable colour
  KOPS_STATE_STORE    default state store (as in kOps)
  KOPS_CLUSTER_NAME   default cluster name (as in kOps)";

/// Run kOps clusters from GitLab CI: render manifests from Jinja templates,
/// dry-run changes against a snapshot of the state store, then update and
/// roll what was reviewed.
#[derive(Debug, Parser)]
#[command(name = "kopsci", version = VERSION, after_long_help = AFTER_HELP, propagate_version = true)]
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
    Pipeline(commands::pipeline::PipelineArgs),
    Migrate(commands::migrate::MigrateArgs),
    Note(commands::note::NoteArgs),
    Completions(commands::meta::CompletionsArgs),
    Man(commands::meta::ManArgs),
}
