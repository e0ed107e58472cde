//! The commands, and what they share: the state store and cluster name as
//! kOps resolves them (`--state`/`KOPS_STATE_STORE`,
//! `--name`/`KOPS_CLUSTER_NAME` or a positional `CLUSTER`), the client
//! version, and the simulated cloud.

mod apply_file;
mod delete;
mod export;
mod get;
mod reconcile;
mod rolling_update;
mod update;
mod validate;
mod version;

use anyhow::{Result, anyhow, bail};

use crate::cli::{
    Cli, Command, DeleteCommand, ExportCommand, ReconcileCommand, RollingUpdateCommand,
    UpdateCommand, ValidateCommand,
};
use crate::cloud::CloudDir;
use crate::objects::check_cluster_name;
use crate::played::Played;
use crate::store::{self, Store};
use crate::ui;

/// Settings every command may use.
pub struct Context {
    /// `--name`, else `KOPS_CLUSTER_NAME`.
    pub cluster_name: Option<String>,
    /// `--state`, else `KOPS_STATE_STORE`.
    pub state: Option<String>,
    /// The played kOps version as kOps prints it (`1.34.1`).
    pub version: String,
    pub played: Played,
    pub cloud: CloudDir,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Context {
    pub fn new(cli: &Cli, played: Played) -> Context {
        Context {
            cluster_name: cli.global.name.clone().or_else(|| env("KOPS_CLUSTER_NAME")),
            state: cli.global.state.clone().or_else(|| env("KOPS_STATE_STORE")),
            version: played.text.clone(),
            played,
            cloud: CloudDir::from_env(),
        }
    }

    /// The state store, or kOps' message when none is configured.
    pub fn store(&self) -> Result<Box<dyn Store>> {
        let Some(url) = &self.state else {
            bail!(
                "State Store: Required value: Please set the --state flag or export KOPS_STATE_STORE.\n\
                 For example, a valid value follows the format s3://<bucket>.\n\
                 You can find the supported stores in https://kops.sigs.k8s.io/state."
            );
        };
        store::open(url)
    }

    /// The cluster from `--name`/`KOPS_CLUSTER_NAME` or a single positional
    /// argument, with kOps' checks: giving both is an error even when they
    /// agree, and so are several positional arguments (kOps' hint about
    /// boolean flags included).
    pub fn cluster_from_args(&self, args: &[String]) -> Result<String> {
        let name = match (args, &self.cluster_name) {
            ([], Some(name)) => name.clone(),
            ([], None) => bail!("--name is required"),
            ([arg], None) => arg.clone(),
            _ => {
                let mut text =
                    String::from("\nFound multiple arguments which look like a cluster name\n");
                if let Some(name) = &self.cluster_name {
                    text.push_str(&format!("\t{name:?} (via flag)\n"));
                }
                for arg in args {
                    text.push_str(&format!("\t{arg:?} (as argument)\n"));
                }
                text.push_str("\nThis often happens if you specify an argument to a boolean flag without using =\n");
                text.push_str(
                    "For example: use `--bastion=true` or `--bastion`, not `--bastion true`\n\n",
                );
                ui::out(&text);
                if args.len() == 1 {
                    bail!("cannot specify cluster via --name and positional argument");
                }
                bail!("expected a single <clustername> to be passed as an argument");
            }
        };
        check_cluster_name(&name)?;
        Ok(name)
    }

    /// `--name`/`KOPS_CLUSTER_NAME`, required.
    pub fn required_cluster(&self) -> Result<String> {
        let name = self
            .cluster_name
            .clone()
            .ok_or_else(|| anyhow!("--name is required"))?;
        check_cluster_name(&name)?;
        Ok(name)
    }
}

/// Runs the parsed command.
pub fn run(cli: &Cli, ctx: &Context) -> Result<()> {
    match &cli.command {
        Command::Version(args) => version::run(ctx, args),
        Command::Create(args) => {
            no_extra_args(&args.args, "create")?;
            apply_file::create(ctx, &args.filenames)
        }
        Command::Replace(args) => {
            no_extra_args(&args.args, "replace")?;
            apply_file::replace(ctx, &args.filenames, args.force.unwrap_or(false))
        }
        Command::Get(args) => get::run(ctx, args),
        Command::Update(args) => match &args.command {
            UpdateCommand::Cluster(args) => update::run(ctx, args),
        },
        Command::RollingUpdate(args) => match &args.command {
            RollingUpdateCommand::Cluster(args) => rolling_update::run(ctx, args),
        },
        Command::Reconcile(args) => match &args.command {
            ReconcileCommand::Cluster(args) => reconcile::run(ctx, args),
        },
        Command::Validate(args) => match &args.command {
            ValidateCommand::Cluster(args) => validate::run(ctx, args),
        },
        Command::Export(args) => match &args.command {
            ExportCommand::Kubeconfig(args) => export::run(ctx, args),
        },
        Command::Delete(args) => match &args.command {
            Some(DeleteCommand::Cluster(args)) => delete::cluster(ctx, args),
            Some(DeleteCommand::Instancegroup { args, yes }) => {
                delete::instance_group(ctx, args, yes.unwrap_or(false))
            }
            None if !args.args.is_empty() => bail!(
                "unknown command {:?} for \"kops delete\"",
                args.args.first().map(String::as_str).unwrap_or_default()
            ),
            None if args.filenames.is_empty() => {
                ui::out(
                    "Delete clusters, instancegroups, instances, and secrets.\n\nUsage:\n  kops delete {-f FILENAME}... [flags]\n  kops delete [command]\n",
                );
                Ok(())
            }
            None => bail!(
                "the kops stand-in does not model `kops delete -f`; use `kops delete cluster` or `kops delete instancegroup` \
                 (see crates/kops-standin/README.md)"
            ),
        },
    }
}

/// Commands without positional arguments reject them as cobra does for
/// commands that have subcommands in kOps.
fn no_extra_args(args: &[String], command: &str) -> Result<()> {
    match args.first() {
        Some(arg) => bail!("unknown command {arg:?} for \"kops {command}\""),
        None => Ok(()),
    }
}
