//! `kopsci snapshot`: copy a kOps state store to a local `file://` store,
//! and `kopsci snapshot verify`: has the live store changed since (or, with
//! `--local`, the local copy)?

use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::{Args, Subcommand};
use kopsci_core::Error;
use kopsci_core::state::{
    self, DEFAULT_CONCURRENCY, FilterSpec, S3Settings, SnapshotOptions, StoreUrl,
};

use crate::cli::GlobalArgs;
use crate::exit::Exit;

/// Copy a cluster's state store (S3 or file://) to a local directory that
/// `kops --state file://DIR` reads, with a record of every object.
///
/// etcd backup data (`backups/etcd/<name>/…` except `…/control/`) is left
/// out unless `--with-backups`. Without `--state`, the cluster's store comes
/// from the fleet file. S3 settings follow kOps: the AWS credential chain,
/// or `S3_ENDPOINT`, `S3_REGION`, `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`
/// for S3-compatible stores.
#[derive(Debug, Args)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = "Examples:
  kopsci snapshot --state s3://kops-state --name dev-a.k8s.example.com --out .kopsci/snap
  kops get cluster --state file://$PWD/.kopsci/snap --name dev-a.k8s.example.com
  kopsci snapshot verify .kopsci/snap           exit 3 when the live store changed
  kopsci snapshot verify --local .kopsci/snap   exit 3 when the local copy was altered"
)]
pub struct SnapshotArgs {
    #[command(subcommand)]
    pub action: Option<SnapshotAction>,

    /// State store: `s3://bucket[/prefix]` or `file:///path`. Default: the fleet file's.
    #[arg(long, env = "KOPS_STATE_STORE", value_name = "URL")]
    pub state: Option<String>,

    /// Cluster name.
    #[arg(
        long,
        env = "KOPS_CLUSTER_NAME",
        value_name = "CLUSTER",
        required = true
    )]
    pub name: Option<String>,

    /// Directory to create; the store root, so `DIR/<cluster>/config` exists.
    /// Default: `.kopsci/snapshots/<cluster>`.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,

    /// Replace DIR if it is empty or holds an intact previous snapshot: a
    /// valid record and nothing but the files it lists. Anything else is
    /// refused and nothing is deleted.
    #[arg(long)]
    pub force: bool,

    /// Keep etcd backup data too.
    #[arg(long)]
    pub with_backups: bool,

    /// Also copy keys matching GLOB (relative to the cluster, `**` crosses `/`), even etcd backups.
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,

    /// Skip keys matching GLOB; wins over everything else.
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,

    /// Succeed with an empty snapshot when the store has no such cluster yet.
    #[arg(long)]
    pub allow_empty: bool,

    #[command(flatten)]
    pub net: NetArgs,
}

/// Options for talking to the store.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Objects fetched at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub concurrency: usize,

    /// Attempts per S3 request, with backoff on throttling and 5xx.
    #[arg(long, env = "AWS_MAX_ATTEMPTS", value_name = "N", default_value_t = state::s3::DEFAULT_MAX_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
}

#[derive(Debug, Subcommand)]
pub enum SnapshotAction {
    /// Has the live store changed since the snapshot? (exit 3 when it has)
    ///
    /// Lists the live store with the snapshot's filters and compares every
    /// object's bytes (SHA-256) with the snapshot's record. This checks the
    /// live store against the record only: it does not look at the local
    /// files, so it cannot tell whether they were altered since. Use
    /// `--local` for that.
    ///
    /// Exit codes: 0 unchanged, 3 differences found, 1 error.
    #[command(after_help = "Examples:
  kopsci snapshot verify .kopsci/snap           live store changed since the snapshot?
  kopsci snapshot verify --local .kopsci/snap   local files still as the record says?")]
    Verify {
        /// The snapshot directory.
        dir: PathBuf,

        /// Check the local snapshot instead of the live store: re-hash its
        /// files against the record and report files added, removed or
        /// modified since it was taken. Reads nothing from the store.
        #[arg(long)]
        local: bool,

        #[command(flatten)]
        net: NetArgs,
    },
}

pub fn run(global: &GlobalArgs, args: SnapshotArgs) -> anyhow::Result<Exit> {
    match args.action {
        Some(SnapshotAction::Verify {
            ref dir,
            local: true,
            ..
        }) => {
            let report = state::verify_local(dir)?;
            print!("{}", report.render());
            Ok(differs_if(report.changed()))
        }
        Some(SnapshotAction::Verify {
            ref dir, ref net, ..
        }) => {
            let report = state::verify(dir, &s3_settings(net), net.concurrency)?;
            print!("{}", report.render());
            Ok(differs_if(report.changed()))
        }
        None => take(global, args),
    }
}

fn differs_if(changed: bool) -> Exit {
    if changed {
        Exit::Differs
    } else {
        Exit::Success
    }
}

fn take(global: &GlobalArgs, args: SnapshotArgs) -> anyhow::Result<Exit> {
    // clap requires --name unless `verify` is given.
    let Some(cluster) = args.name.clone() else {
        return Err(
            Error::Usage("name the cluster with --name or KOPS_CLUSTER_NAME".into()).into(),
        );
    };
    let state_url = match &args.state {
        Some(url) => url.clone(),
        None => fleet_state(global, &cluster)?,
    };
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(".kopsci/snapshots").join(&cluster));
    let opts = SnapshotOptions {
        store: StoreUrl::parse(&state_url)?,
        cluster,
        out,
        filter: FilterSpec {
            with_backups: args.with_backups,
            include: args.include,
            exclude: args.exclude,
        },
        concurrency: args.net.concurrency,
        force: args.force,
        allow_empty: args.allow_empty,
        progress: global.quiet == 0 && state::progress_wanted(),
        s3: s3_settings(&args.net),
    };
    // An interruption comes back as `Error::Interrupted` once the snapshot
    // has cleaned up; `Exit::for_error` turns it into 128+n.
    let summary = state::snapshot(&opts)?;
    if global.quiet == 0 {
        println!("{}", summary.line());
    }
    Ok(Exit::Success)
}

/// Fleet mode: the cluster's store as the fleet file declares it.
fn fleet_state(global: &GlobalArgs, cluster: &str) -> anyhow::Result<String> {
    let fleet = global.load_fleet().map_err(|e| {
        Error::Usage(format!(
            "no --state or KOPS_STATE_STORE given, and the fleet file cannot name the store: {e:#}"
        ))
    })?;
    let entry = fleet.cluster(cluster)?;
    match fleet.state_for(entry) {
        Some(url) => Ok(url.to_string()),
        None => Err(Error::Usage(format!(
            "the fleet file declares no state store for `{cluster}`; pass --state"
        ))
        .into()),
    }
}

fn s3_settings(net: &NetArgs) -> S3Settings {
    S3Settings {
        max_attempts: net.max_attempts,
        ..S3Settings::from_env()
    }
}
