//! The command line: exactly the commands and flags of the kOps CLI
//! reference (`reference/kops/kops_*.md`) that the stand-in models, parsed
//! with clap set up to behave like cobra/pflag: persistent flags anywhere,
//! `--flag value` and `--flag=value`, booleans that only take `=value`
//! (`--yes=false`; `--yes false` leaves `false` as an argument, as in kOps),
//! comma-separated string slices, Go durations. Parse errors are reworded
//! into cobra's messages (`Error: unknown flag: --foo`).

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::goflags;

#[derive(Parser, Debug)]
#[command(
    name = "kops",
    about = "kOps is Kubernetes Operations (kopsci's test stand-in: a documented subset).",
    disable_version_flag = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalFlags,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every kOps command inherits.
#[derive(Args, Debug, Clone, Default)]
pub struct GlobalFlags {
    /// Name of cluster. Overrides KOPS_CLUSTER_NAME environment variable
    #[arg(long, global = true, value_name = "string")]
    pub name: Option<String>,
    /// Location of state storage (kops 'config' file). Overrides KOPS_STATE_STORE environment variable
    #[arg(long, global = true, value_name = "string")]
    pub state: Option<String>,
    /// yaml config file (default is $HOME/.kops.yaml); accepted, not read
    #[arg(long, global = true, value_name = "string")]
    pub config: Option<String>,
    /// number for the log level verbosity
    #[arg(short = 'v', long = "v", global = true, value_name = "Level", value_parser = goflags::level)]
    pub verbosity: Option<i32>,
    /// logs at or above this threshold go to stderr when -alsologtostderr=true (no effect when -logtostderr=true)
    #[arg(long, global = true, value_name = "severity", value_parser = goflags::severity)]
    pub alsologtostderrthreshold: Option<String>,
    /// If true, stderrthreshold is ignored when logtostderr=true (legacy behavior)
    #[arg(long = "legacy_stderr_threshold_behavior", global = true, num_args = 0..=1,
          require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub legacy_stderr_threshold_behavior: Option<bool>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the kOps version information.
    Version(VersionArgs),
    /// Create a resource by command line, filename or stdin.
    Create(CreateArgs),
    /// Replace cluster resources.
    Replace(ReplaceArgs),
    /// Get one or many resources.
    Get(GetArgs),
    /// Update a cluster.
    Update(UpdateArgs),
    /// Rolling update a cluster.
    #[command(name = "rolling-update")]
    RollingUpdate(RollingUpdateArgs),
    /// Delete clusters, instancegroups, instances, and secrets.
    Delete(DeleteArgs),
    /// Reconcile a cluster.
    Reconcile(ReconcileArgs),
    /// Validate a kOps cluster.
    Validate(ValidateArgs),
    /// Export configuration.
    Export(ExportArgs),
}

#[derive(Args, Debug)]
pub struct VersionArgs {
    /// show the kOps version that made the last change to the state store.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub server: Option<bool>,
    /// only print the main kOps version. Useful for scripting.
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub short: Option<bool>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// Filename to use to create the resource
    #[arg(short = 'f', long = "filename", value_name = "strings", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub filenames: Vec<String>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct ReplaceArgs {
    /// A list of one or more files separated by a comma.
    #[arg(short = 'f', long = "filename", value_name = "strings", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub filenames: Vec<String>,
    /// Force any changes, which will also create any non-existing resource
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub force: Option<bool>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct GetArgs {
    /// output format. One of: table, yaml, json
    #[arg(short = 'o', long, global = true, value_name = "string", value_parser = goflags::output_format)]
    pub output: Option<String>,
    #[command(subcommand)]
    pub command: Option<GetCommand>,
    /// `kops get [CLUSTER]`: everything of a cluster.
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum GetCommand {
    /// Display all resources for a cluster.
    All {
        #[arg(value_name = "CLUSTER")]
        args: Vec<String>,
    },
    /// Get one or many clusters.
    #[command(alias = "cluster")]
    Clusters {
        /// Show fully populated configuration
        #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
        full: Option<bool>,
        #[arg(value_name = "CLUSTER")]
        names: Vec<String>,
    },
    /// Get one or many instance groups.
    #[command(aliases = ["instancegroup", "ig"])]
    Instancegroups {
        #[arg(value_name = "INSTANCE_GROUP")]
        names: Vec<String>,
    },
}

#[derive(Args, Debug)]
#[command(arg_required_else_help = true)]
pub struct UpdateArgs {
    #[command(subcommand)]
    pub command: UpdateCommand,
}

#[derive(Subcommand, Debug)]
pub enum UpdateCommand {
    /// Update a cluster.
    Cluster(UpdateClusterArgs),
}

#[derive(Args, Debug, Default)]
pub struct UpdateClusterArgs {
    #[arg(value_name = "CLUSTER")]
    pub args: Vec<String>,
    /// Also export a cluster admin user credential with the specified lifetime and add it to the cluster context
    #[arg(long, value_name = "duration", num_args = 0..=1, require_equals = true, default_missing_value = "18h0m0s", value_parser = goflags::duration)]
    pub admin: Option<i128>,
    /// Allow an older version of kOps to update the cluster than last used
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub allow_kops_downgrade: Option<bool>,
    /// Override the API server used when communicating with the cluster kube-apiserver
    #[arg(long, value_name = "string")]
    pub api_server: Option<String>,
    /// Will control automatically creating the kube config file on your local filesystem (default true)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub create_kube_config: Option<bool>,
    /// Setting this to true will force updating the kubernetes version on all instance groups
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub ignore_kubelet_version_skew: Option<bool>,
    /// Instance groups to update (defaults to all if not specified)
    #[arg(long, value_name = "strings", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub instance_group: Vec<String>,
    /// Instance group roles to update (control-plane,apiserver,node,bastion,etcd,scheduler,kubecontrollermanager)
    #[arg(long, value_name = "strings", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub instance_group_roles: Vec<String>,
    /// Use the cluster's internal DNS name. Implies --create-kube-config
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub internal: Option<bool>,
    /// comma separated list of phase overrides, example: SecurityGroups=Ignore,InternetGateway=ExistsAndWarnIfChanges
    #[arg(long, value_name = "strings", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub lifecycle_overrides: Vec<String>,
    /// Path to write any local output
    #[arg(long, value_name = "string")]
    pub out: Option<String>,
    /// Subset of tasks to run: cluster, network, security
    #[arg(long, value_name = "string", value_parser = goflags::phase)]
    pub phase: Option<String>,
    /// Delete old revisions of cloud resources that were needed during an upgrade
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub prune: Option<bool>,
    /// SSH public key to use (deprecated: use kops create secret instead)
    #[arg(long, value_name = "string")]
    pub ssh_public_key: Option<String>,
    /// Target - "direct", "terraform" (default direct)
    #[arg(long, value_name = "target", value_parser = goflags::target)]
    pub target: Option<String>,
    /// Use the server endpoint from the local kubeconfig instead of inferring from cluster name
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub use_kubeconfig: Option<bool>,
    /// Existing user in kubeconfig file to use.  Implies --create-kube-config
    #[arg(long, value_name = "string")]
    pub user: Option<String>,
    /// Create cloud resources, without --yes update is in dry run mode
    #[arg(short = 'y', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub yes: Option<bool>,
}

#[derive(Args, Debug)]
#[command(arg_required_else_help = true)]
pub struct RollingUpdateArgs {
    #[command(subcommand)]
    pub command: RollingUpdateCommand,
}

#[derive(Subcommand, Debug)]
pub enum RollingUpdateCommand {
    /// Rolling update a cluster.
    Cluster(RollingUpdateClusterArgs),
}

#[derive(Args, Debug, Default)]
pub struct RollingUpdateClusterArgs {
    #[arg(value_name = "CLUSTER")]
    pub args: Vec<String>,
    /// a cluster admin user credential with the specified lifetime (default 18h0m0s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub admin: Option<i128>,
    /// Override the API server used when communicating with the cluster kube-apiserver
    #[arg(long, value_name = "string")]
    pub api_server: Option<String>,
    /// Time to wait between restarting bastions (default 15s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub bastion_interval: Option<i128>,
    /// Perform rolling update without validating cluster status (will cause downtime)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub cloudonly: Option<bool>,
    /// Time to wait between restarting control plane nodes (default 15s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub control_plane_interval: Option<i128>,
    /// Maximum time to wait for a node to drain (default 15m0s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub drain_timeout: Option<i128>,
    /// Fail if draining a node fails (default true)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub fail_on_drain_error: Option<bool>,
    /// Fail if the cluster fails to validate (default true)
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub fail_on_validate_error: Option<bool>,
    /// Force rolling update, even if no changes
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub force: Option<bool>,
    /// Instance groups to update (defaults to all if not specified)
    #[arg(long, value_name = "strings", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub instance_group: Vec<String>,
    /// Instance group roles to update (control-plane,apiserver,node,bastion,etcd,scheduler,kubecontrollermanager)
    #[arg(long, value_name = "strings", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub instance_group_roles: Vec<String>,
    /// Prompt to continue after each instance is updated
    #[arg(short = 'i', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub interactive: Option<bool>,
    /// Time to wait between restarting worker nodes (default 15s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub node_interval: Option<i128>,
    /// Time to wait after draining each node (default 5s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub post_drain_delay: Option<i128>,
    /// Use the server endpoint from the local kubeconfig instead of inferring from cluster name
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub use_kubeconfig: Option<bool>,
    /// Number of times that a cluster needs to be validated after single node update (default 2)
    #[arg(long, value_name = "int32", value_parser = goflags::int32)]
    pub validate_count: Option<i32>,
    /// Maximum time to wait for a cluster to validate (default 15m0s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub validation_timeout: Option<i128>,
    /// Perform rolling update immediately; without --yes rolling-update executes a dry-run
    #[arg(short = 'y', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub yes: Option<bool>,
}

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct DeleteArgs {
    /// Filename to use to delete the resource
    #[arg(short = 'f', long = "filename", value_name = "strings", value_delimiter = ',', action = clap::ArgAction::Append)]
    pub filenames: Vec<String>,
    /// Specify --yes to immediately delete the resource
    #[arg(short = 'y', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub yes: Option<bool>,
    #[command(subcommand)]
    pub command: Option<DeleteCommand>,
    #[arg(hide = true)]
    pub args: Vec<String>,
}

#[derive(Subcommand, Debug)]
pub enum DeleteCommand {
    /// Delete a cluster.
    Cluster(DeleteClusterArgs),
    /// Delete instance group.
    #[command(aliases = ["instancegroups", "ig"])]
    Instancegroup {
        #[arg(value_name = "INSTANCE_GROUP")]
        args: Vec<String>,
        /// Specify --yes to immediately delete the instance group
        #[arg(short = 'y', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
        yes: Option<bool>,
    },
}

#[derive(Args, Debug, Default)]
pub struct DeleteClusterArgs {
    #[arg(value_name = "CLUSTER")]
    pub args: Vec<String>,
    /// Number of consecutive failures to make progress deleting the cluster resources
    #[arg(long, value_name = "int", value_parser = goflags::int)]
    pub count: Option<i64>,
    /// Delete an external cluster
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub external: Option<bool>,
    /// Time in duration to wait between deletion attempts (default 10s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub interval: Option<i128>,
    /// External cluster's cloud region
    #[arg(long, value_name = "string")]
    pub region: Option<String>,
    /// Don't delete cloud resources, just unregister the cluster
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub unregister: Option<bool>,
    /// Amount of time to wait for the cluster resources to de deleted (default 10m0s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub wait: Option<i128>,
    /// Specify --yes to delete the cluster
    #[arg(short = 'y', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub yes: Option<bool>,
}

#[derive(Args, Debug)]
#[command(arg_required_else_help = true)]
pub struct ReconcileArgs {
    #[command(subcommand)]
    pub command: ReconcileCommand,
}

#[derive(Subcommand, Debug)]
pub enum ReconcileCommand {
    /// Reconcile a cluster.
    Cluster(ReconcileClusterArgs),
}

#[derive(Args, Debug, Default)]
pub struct ReconcileClusterArgs {
    #[arg(value_name = "CLUSTER")]
    pub args: Vec<String>,
    /// Allow an older version of kOps to update the cluster than last used
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub allow_kops_downgrade: Option<bool>,
    /// Override the API server used when communicating with the cluster kube-apiserver
    #[arg(long, value_name = "string")]
    pub api_server: Option<String>,
    /// Use the server endpoint from the local kubeconfig instead of inferring from cluster name
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub use_kubeconfig: Option<bool>,
    /// Create cloud resources, without --yes reconcile is in dry run mode
    #[arg(short = 'y', long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub yes: Option<bool>,
}

#[derive(Args, Debug)]
#[command(arg_required_else_help = true)]
pub struct ValidateArgs {
    #[command(subcommand)]
    pub command: ValidateCommand,
}

#[derive(Subcommand, Debug)]
pub enum ValidateCommand {
    /// Validate a kOps cluster.
    Cluster(ValidateClusterArgs),
}

#[derive(Args, Debug, Default)]
pub struct ValidateClusterArgs {
    #[arg(value_name = "CLUSTER")]
    pub args: Vec<String>,
    /// Override the API server used when communicating with the cluster kube-apiserver
    #[arg(long, value_name = "string")]
    pub api_server: Option<String>,
    /// Number of consecutive successful validations required
    #[arg(long, value_name = "int", value_parser = goflags::int)]
    pub count: Option<i64>,
    /// Time in duration to wait between validation attempts (default 10s)
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub interval: Option<i128>,
    /// Path to the kubeconfig file
    #[arg(long, value_name = "string")]
    pub kubeconfig: Option<String>,
    /// The maximum number of non-ready worker nodes tolerated during validation
    #[arg(long, value_name = "int", value_parser = goflags::int)]
    pub max_unready_nodes: Option<i64>,
    /// Output format. One of json|yaml|table. (default "table")
    #[arg(short = 'o', long, value_name = "string")]
    pub output: Option<String>,
    /// Use the server endpoint from the local kubeconfig instead of inferring from cluster name
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub use_kubeconfig: Option<bool>,
    /// Amount of time to wait for the cluster to become ready
    #[arg(long, value_name = "duration", value_parser = goflags::duration)]
    pub wait: Option<i128>,
}

#[derive(Args, Debug)]
#[command(arg_required_else_help = true)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub command: ExportCommand,
}

#[derive(Subcommand, Debug)]
pub enum ExportCommand {
    /// Export kubeconfig.
    #[command(alias = "kubecfg")]
    Kubeconfig(ExportKubeconfigArgs),
}

#[derive(Args, Debug, Default)]
pub struct ExportKubeconfigArgs {
    #[arg(value_name = "CLUSTER")]
    pub args: Vec<String>,
    /// Also export a cluster admin user credential with the specified lifetime and add it to the cluster context
    #[arg(long, value_name = "duration", num_args = 0..=1, require_equals = true, default_missing_value = "18h0m0s", value_parser = goflags::duration)]
    pub admin: Option<i128>,
    /// Export all clusters from the kOps state store
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub all: Option<bool>,
    /// Override the API server used when communicating with the cluster kube-apiserver
    #[arg(long, value_name = "string")]
    pub api_server: Option<String>,
    /// Use the kOps authentication plugin
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub auth_plugin: Option<bool>,
    /// Use the cluster's internal DNS name
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "true", value_parser = goflags::boolean)]
    pub internal: Option<bool>,
    /// Filename of the kubeconfig to create
    #[arg(long, value_name = "string")]
    pub kubeconfig: Option<String>,
    /// Existing user in kubeconfig file to use
    #[arg(long, value_name = "string")]
    pub user: Option<String>,
}

impl Cli {
    /// The command path (`update cluster`), for messages and test controls.
    pub fn command_path(&self) -> String {
        match &self.command {
            Command::Version(_) => "version".into(),
            Command::Create(_) => "create".into(),
            Command::Replace(_) => "replace".into(),
            Command::Get(g) => match &g.command {
                None => "get".into(),
                Some(GetCommand::All { .. }) => "get all".into(),
                Some(GetCommand::Clusters { .. }) => "get clusters".into(),
                Some(GetCommand::Instancegroups { .. }) => "get instancegroups".into(),
            },
            Command::Update(_) => "update cluster".into(),
            Command::RollingUpdate(_) => "rolling-update cluster".into(),
            Command::Delete(d) => match &d.command {
                None => "delete".into(),
                Some(DeleteCommand::Cluster(_)) => "delete cluster".into(),
                Some(DeleteCommand::Instancegroup { .. }) => "delete instancegroup".into(),
            },
            Command::Reconcile(_) => "reconcile cluster".into(),
            Command::Validate(_) => "validate cluster".into(),
            Command::Export(_) => "export kubeconfig".into(),
        }
    }
}

/// What to do after a failed parse.
pub enum ParseFailure {
    /// Help was asked for (or a command needs a subcommand): print it, exit 0.
    Help(String),
    /// A usage error, worded as cobra words it: print `Error: …`, exit 1.
    Usage(String),
}

/// Turns a clap error into cobra's behaviour.
pub fn cobra_failure(err: &clap::Error, argv: &[String]) -> ParseFailure {
    let context = |kind: ContextKind| match err.get(kind) {
        Some(ContextValue::String(s)) => s.clone(),
        Some(ContextValue::Strings(v)) => v.first().cloned().unwrap_or_default(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingSubcommand
        | ErrorKind::DisplayVersion => ParseFailure::Help(err.render().to_string()),
        ErrorKind::UnknownArgument => {
            let arg = context(ContextKind::InvalidArg);
            ParseFailure::Usage(unknown_argument(&arg, argv))
        }
        ErrorKind::InvalidSubcommand => ParseFailure::Usage(format!(
            "unknown command {} for {}",
            goflags::quote(&context(ContextKind::InvalidSubcommand)),
            goflags::quote(&command_path(argv))
        )),
        ErrorKind::InvalidValue | ErrorKind::ValueValidation => {
            let flag = flag_name(&context(ContextKind::InvalidArg));
            let value = context(ContextKind::InvalidValue);
            if err.kind() == ErrorKind::InvalidValue && value.is_empty() {
                return ParseFailure::Usage(needs_argument(&flag));
            }
            let reason = std::error::Error::source(err)
                .map(|s| s.to_string())
                .unwrap_or_else(|| "invalid value".to_string());
            ParseFailure::Usage(format!(
                "invalid argument {} for {} flag: {reason}",
                goflags::quote(&value),
                goflags::quote(&flag)
            ))
        }
        _ => {
            let rendered = err.render().to_string();
            let first = rendered.lines().next().unwrap_or_default();
            ParseFailure::Usage(first.trim_start_matches("error: ").to_string())
        }
    }
}

/// pflag's messages for what it does not know.
fn unknown_argument(arg: &str, argv: &[String]) -> String {
    if let Some(long) = arg.strip_prefix("--") {
        let name = long.split('=').next().unwrap_or(long);
        return format!("unknown flag: --{name}");
    }
    if let Some(short) = arg.strip_prefix('-')
        && let Some(c) = short.chars().next()
    {
        // pflag names the whole cluster of shorthands it was parsing.
        let cluster = argv
            .iter()
            .find(|a| a.starts_with('-') && !a.starts_with("--") && a[1..].contains(c))
            .cloned()
            .unwrap_or_else(|| arg.to_string());
        return format!("unknown shorthand flag: '{c}' in {cluster}");
    }
    format!(
        "unknown command {} for {}",
        goflags::quote(arg),
        goflags::quote(&command_path(argv))
    )
}

fn needs_argument(flag: &str) -> String {
    match flag.strip_prefix('-') {
        Some(short) if !short.starts_with('-') => {
            format!("flag needs an argument: '{short}' in {flag}")
        }
        _ => format!("flag needs an argument: {flag}"),
    }
}

/// `--validation-timeout <duration>` → `--validation-timeout`.
fn flag_name(rendered: &str) -> String {
    let first = rendered.split([' ', '=', '[']).next().unwrap_or(rendered);
    // clap renders `-o, --output`; pflag names the long form.
    first.trim_end_matches(',').to_string()
}

/// The subcommand words in `argv` (`["update", "cluster"]`), walking
/// clap's command tree as [`command_path`] does.
pub fn command_words(argv: &[String]) -> Vec<String> {
    command_path(argv)
        .split(' ')
        .skip(1)
        .map(str::to_string)
        .collect()
}

/// The subcommand path in `argv` (`kops update cluster`), walking clap's
/// command tree; flags and their values are skipped.
fn command_path(argv: &[String]) -> String {
    let root = Cli::command();
    let mut path = vec!["kops".to_string()];
    let mut current = &root;
    for arg in argv {
        if arg.starts_with('-') {
            continue;
        }
        match current
            .get_subcommands()
            .find(|s| s.get_name() == arg || s.get_all_aliases().any(|a| a == arg))
        {
            Some(sub) => {
                path.push(sub.get_name().to_string());
                current = sub;
            }
            None => {
                if current.has_subcommands() && path.len() > 1 {
                    break;
                }
            }
        }
    }
    path.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let argv: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut full = vec!["kops".to_string()];
        full.extend(argv.clone());
        Cli::try_parse_from(full).map_err(|e| match cobra_failure(&e, &argv) {
            ParseFailure::Help(_) => "HELP".to_string(),
            ParseFailure::Usage(m) => m,
        })
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn unknown_flags_are_worded_like_cobra() {
        assert_eq!(
            parse(&["update", "cluster", "--foo"]).unwrap_err(),
            "unknown flag: --foo"
        );
        assert_eq!(
            parse(&["update", "cluster", "--foo=bar"]).unwrap_err(),
            "unknown flag: --foo"
        );
        assert_eq!(
            parse(&["rolling-update", "cluster", "-x"]).unwrap_err(),
            "unknown shorthand flag: 'x' in -x"
        );
        assert_eq!(
            parse(&["frobnicate"]).unwrap_err(),
            "unknown command \"frobnicate\" for \"kops\""
        );
        // A flag of another command is unknown here.
        assert_eq!(
            parse(&["replace", "-f", "x.yaml", "--yes"]).unwrap_err(),
            "unknown flag: --yes"
        );
    }

    #[test]
    fn values_are_checked_like_pflag() {
        assert_eq!(
            parse(&["rolling-update", "cluster", "--validation-timeout", "soon"]).unwrap_err(),
            "invalid argument \"soon\" for \"--validation-timeout\" flag: time: invalid duration \"soon\""
        );
        assert_eq!(
            parse(&["update", "cluster", "--yes=maybe"]).unwrap_err(),
            "invalid argument \"maybe\" for \"--yes\" flag: strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
        assert!(
            parse(&["get", "clusters", "-o", "xml"])
                .unwrap_err()
                .contains("unknown output format")
        );
        assert_eq!(
            parse(&["update", "cluster", "--name"]).unwrap_err(),
            "flag needs an argument: --name"
        );
    }

    #[test]
    fn documented_forms_parse() {
        let cli = parse(&[
            "rolling-update",
            "cluster",
            "c.example.com",
            "--yes",
            "--cloudonly",
            "--instance-group",
            "a,b",
            "--instance-group=c",
            "--validation-timeout=10m",
            "--fail-on-validate-error=false",
            "-v",
            "2",
        ])
        .unwrap();
        let Command::RollingUpdate(RollingUpdateArgs {
            command: RollingUpdateCommand::Cluster(args),
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(args.args, vec!["c.example.com"]);
        assert_eq!(args.instance_group, vec!["a", "b", "c"]);
        assert_eq!(args.fail_on_validate_error, Some(false));
        assert_eq!(args.validation_timeout, Some(600_000_000_000));
        assert_eq!(cli.global.verbosity, Some(2));

        let cli = parse(&[
            "--state",
            "file:///s",
            "get",
            "ig",
            "--name",
            "c",
            "-o",
            "yaml",
        ])
        .unwrap();
        assert_eq!(cli.command_path(), "get instancegroups");
        assert_eq!(cli.global.name.as_deref(), Some("c"));

        let cli = parse(&[
            "update",
            "cluster",
            "--admin",
            "--lifecycle-overrides",
            "SecurityGroup=Ignore",
        ])
        .unwrap();
        let Command::Update(UpdateArgs {
            command: UpdateCommand::Cluster(args),
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(args.admin, Some(64_800_000_000_000));

        assert!(parse(&["replace", "-f", "-", "--force"]).is_ok());
        assert!(parse(&["delete", "ig", "nodes", "--name", "c", "-y"]).is_ok());
        assert!(parse(&["version", "--short"]).is_ok());
        assert_eq!(parse(&["update"]).unwrap_err(), "HELP");
        assert_eq!(parse(&["version", "--help"]).unwrap_err(), "HELP");
    }

    #[test]
    fn a_bool_flag_does_not_take_a_separate_value() {
        // `--yes true` leaves `true` as an argument, which kOps then
        // takes for a cluster name.
        let cli = parse(&["update", "cluster", "--yes", "true"]).unwrap();
        let Command::Update(UpdateArgs {
            command: UpdateCommand::Cluster(args),
        }) = cli.command
        else {
            panic!("wrong command");
        };
        assert_eq!(args.yes, Some(true));
        assert_eq!(args.args, vec!["true"]);
    }
}
