//! `kopsci dryrun`, `update`, `roll`, `apply`, `delete` and `kubeconfig`:
//! the stage commands that wrap kops. Parsing and exit codes only; the
//! stages live in `kopsci_core::stage`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Args;
use clap::builder::RangedU64ValueParser;
use kopsci_core::Error;
use kopsci_core::fleet::Timeout;
use kopsci_core::fleet::{Cluster, Fleet};
use kopsci_core::names::ClusterName;
use kopsci_core::stage::{
    self, ApplyOptions, DEFAULT_JOBS, DeleteOptions, DryrunOptions, KubeconfigOptions, LogStyle,
    Report, RollOptions, StageOptions, StageSettings, StsClientSettings, UpdateOptions,
};
use kopsci_core::state::{DEFAULT_CONCURRENCY, S3Settings, StoreUrl};

use crate::cli::GlobalArgs;
use crate::commands::ReportDirArgs;
use crate::exit::{self, Exit};
use crate::logging;

/// Options shared by the stage commands.
#[derive(Debug, Args)]
pub struct StageArgs {
    /// State store for every cluster, instead of the fleet file's:
    /// `s3://bucket[/prefix]` or `file://PATH` (a relative PATH is taken
    /// from the current directory).
    #[arg(long, env = "KOPS_STATE_STORE", value_name = "URL", value_parser = parse_store)]
    pub state: Option<StoreUrl>,

    /// kops binary to run (default: `KOPSCI_KOPS`, else `kops` on PATH).
    // `KOPSCI_KOPS` is read by the library, not by clap, so that an error
    // names where the path came from.
    #[arg(long, value_name = "PATH")]
    pub kops: Option<PathBuf>,

    /// State-store objects fetched at once (snapshots and plan checks).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_CONCURRENCY,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub concurrency: usize,

    /// Attempts per S3 request, with backoff on throttling and 5xx.
    #[arg(long, env = "AWS_MAX_ATTEMPTS", value_name = "N",
          default_value_t = kopsci_core::state::s3::DEFAULT_MAX_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: u32,
}

/// Prove a change without touching the live state store: render, snapshot
/// the store, `kops replace`/`create` and `kops update cluster` against the
/// snapshot, and write reports.
///
/// Reports go to REPORT_DIR/<cluster>/: manifest.yaml, state.diff,
/// kops-update.txt, report.md, report.json, gitlab-terraform-report.json and
/// plan.json (what `kopsci update` checks). Clusters run concurrently; one
/// failing does not stop the others, and the exit code is 1 if any failed.
#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  kopsci dryrun --all                         Dry-run every cluster of kopsci.yaml
  kopsci dryrun dev-a.k8s.example.com --detailed-exitcode
  kopsci dryrun --all --without-kops          Everything kopsci owns, no kops binary
  kopsci dryrun --all --without-kops --state file://examples/state

{}", exit::summary(&[Exit::Success, Exit::Error, Exit::Pending, Exit::Usage, Exit::Interrupted(0)])))]
pub struct DryrunArgs {
    /// Clusters of the fleet to dry-run.
    #[arg(value_name = "CLUSTER", value_parser = parse_cluster)]
    pub clusters: Vec<String>,

    /// Dry-run every cluster of the fleet.
    #[arg(long, conflicts_with = "clusters")]
    pub all: bool,

    #[command(flatten)]
    pub reports: ReportDirArgs,

    /// Exit 0 when nothing changes, 2 when changes are pending (1 on error,
    /// 64 on a usage error).
    #[arg(long)]
    pub detailed_exitcode: bool,

    /// Skip kops: diff the rendered manifest against the stored spec only
    /// (the cloud-level plan is skipped, and the reports say so).
    #[arg(long)]
    pub without_kops: bool,

    /// Clusters dry-run at once.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_JOBS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=256))]
    pub jobs: usize,

    #[command(flatten)]
    pub stage: StageArgs,
}

/// Apply a reviewed dry run to the live state store: check the plan is not
/// stale, `kops replace`/`create`, optionally prune removed instance groups,
/// then `kops update cluster --yes`.
///
/// The plan is REPORT_DIR/<cluster>/plan.json from `kopsci dryrun`; it is
/// stale when the rendered manifest differs from the reviewed one or the
/// live store changed since the dry run's snapshot. The update's report
/// goes to REPORT_DIR/<cluster>/update/.
#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  kopsci update dev-a.k8s.example.com
  kopsci update dev-a.k8s.example.com --prune-instance-groups
  kopsci update dev-a.k8s.example.com -- --lifecycle-overrides IAMRole=ExistsAndWarnIfChanges

{}", exit::summary(&[Exit::Success, Exit::Error, Exit::Usage, Exit::Interrupted(0)])))]
pub struct UpdateArgs {
    /// The cluster to update.
    #[arg(value_name = "CLUSTER", value_parser = parse_cluster)]
    pub cluster: String,

    #[command(flatten)]
    pub reports: ReportDirArgs,

    /// Apply even if the plan is missing or the live store changed since.
    #[arg(long)]
    pub allow_stale: bool,

    /// Delete instance groups that are in the store but not in the manifest.
    #[arg(long)]
    pub prune_instance_groups: bool,

    /// Change the Kubernetes version with `update` then `roll` even with
    /// kops 1.31+, where kOps' upgrade guide says this can crash kubelets
    /// (use `kopsci apply` instead).
    #[arg(long)]
    pub allow_version_skew: bool,

    #[command(flatten)]
    pub stage: StageArgs,

    /// Extra flags passed to `kops update cluster`.
    #[arg(last = true, value_name = "KOPS_FLAGS")]
    pub kops_args: Vec<OsString>,
}

/// Preview a rolling update (parsed into a report), or run it with `--yes`.
///
/// The report goes to REPORT_DIR/<cluster>/roll/. Exit 0 when nothing
/// needs a rolling update (and, without --detailed-exitcode, for a preview
/// that found some).
#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  kopsci roll dev-a.k8s.example.com
  kopsci roll dev-a.k8s.example.com --yes -- --instance-group nodes --validation-timeout 20m

{}", exit::summary(&[Exit::Success, Exit::Error, Exit::Pending, Exit::Usage, Exit::Interrupted(0)])))]
pub struct RollArgs {
    /// The cluster to roll.
    #[arg(value_name = "CLUSTER", value_parser = parse_cluster)]
    pub cluster: String,

    /// Perform the rolling update instead of previewing it.
    #[arg(long)]
    pub yes: bool,

    #[command(flatten)]
    pub reports: ReportDirArgs,

    /// Preview: exit 2 when instance groups need a rolling update.
    #[arg(long)]
    pub detailed_exitcode: bool,

    #[command(flatten)]
    pub stage: StageArgs,

    /// Extra flags passed to `kops rolling-update cluster`.
    #[arg(last = true, value_name = "KOPS_FLAGS")]
    pub kops_args: Vec<OsString>,
}

/// Apply a reviewed dry run the way kOps recommends from 1.31: check the
/// plan is current, `kops replace`/`create`, then `kops reconcile cluster
/// --yes` (control plane updated and rolled before the nodes, old resources
/// pruned last), then `kops validate cluster`.
///
/// With a kops older than 1.31 (Kubernetes up to 1.30), the sequence kOps
/// documents for it: `update cluster --yes`, `rolling-update cluster
/// --yes`, `update cluster --prune --yes` (kOps 1.29+). A retried apply
/// after a failure resumes: a live store changed only by applying this same
/// reviewed manifest is not a stale plan. The report goes to
/// REPORT_DIR/<cluster>/apply/.
#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  kopsci apply dev-a.k8s.example.com
  kopsci apply dev-a.k8s.example.com --prune-instance-groups

{}", exit::summary(&[Exit::Success, Exit::Error, Exit::Usage, Exit::Interrupted(0)])))]
pub struct ApplyArgs {
    /// The cluster to apply.
    #[arg(value_name = "CLUSTER", value_parser = parse_cluster)]
    pub cluster: String,

    #[command(flatten)]
    pub reports: ReportDirArgs,

    /// Apply even if the plan is missing or the live store changed since.
    #[arg(long)]
    pub allow_stale: bool,

    /// Delete instance groups that are in the store but not in the manifest
    /// (also on with `prune_instance_groups: true` in the fleet).
    #[arg(long)]
    pub prune_instance_groups: bool,

    #[command(flatten)]
    pub stage: StageArgs,
}

/// Retire a cluster the fleet marks `absent: true`: preview `kops delete
/// cluster`, or delete it with `--yes`. A cluster the fleet does not mark
/// absent is refused. The report goes to REPORT_DIR/<cluster>/delete/.
#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  kopsci delete old.k8s.example.com          Preview what would be deleted
  kopsci delete old.k8s.example.com --yes    Delete it

{}", exit::summary(&[Exit::Success, Exit::Error, Exit::Usage, Exit::Interrupted(0)])))]
pub struct DeleteArgs {
    /// The cluster to delete (`absent: true` in the fleet).
    #[arg(value_name = "CLUSTER", value_parser = parse_cluster)]
    pub cluster: String,

    /// Delete instead of previewing.
    #[arg(long)]
    pub yes: bool,

    #[command(flatten)]
    pub reports: ReportDirArgs,

    #[command(flatten)]
    pub stage: StageArgs,
}

/// Write a short-lived admin kubeconfig for a cluster (`kops export
/// kubeconfig --admin`), as the AWS identity kopsci resolves for it — for
/// jobs that deploy workloads after an apply. The file is 0600; keep it
/// out of artifacts (a FILE inside the report directory is refused).
#[derive(Debug, Args)]
#[command(after_help = format!("Examples:
  kopsci kubeconfig dev-a.k8s.example.com --out \"$CI_PROJECT_DIR/.kube/config\"
  kopsci kubeconfig dev-a.k8s.example.com --out kubeconfig --admin 30m

{}", exit::summary(&[Exit::Success, Exit::Error, Exit::Usage])))]
pub struct KubeconfigArgs {
    /// The cluster.
    #[arg(value_name = "CLUSTER", value_parser = parse_cluster)]
    pub cluster: String,

    /// Where to write the kubeconfig (replaced whole).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,

    /// Lifetime of the admin credential (`30m`, `1h`, `2h30m`).
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_timeout)]
    pub admin: Timeout,

    #[command(flatten)]
    pub reports: ReportDirArgs,

    #[command(flatten)]
    pub stage: StageArgs,
}

/// A cluster name, checked as the fleet checks it.
pub fn parse_cluster(name: &str) -> Result<String, String> {
    ClusterName::parse(name)
        .map(ClusterName::into_string)
        .map_err(|e| e.to_string())
}

fn parse_timeout(text: &str) -> Result<Timeout, String> {
    Timeout::parse(text)
}

/// `--state`, parsed once with the same rules as the fleet file's `state:`.
pub fn parse_store(url: &str) -> Result<StoreUrl, String> {
    StoreUrl::parse(url).map_err(|e| e.to_string())
}

fn settings(global: &GlobalArgs, args: &StageArgs) -> StageSettings {
    StageSettings {
        state: args.state.clone(),
        s3: S3Settings {
            max_attempts: args.max_attempts,
            ..S3Settings::from_env()
        },
        sts: StsClientSettings::from_env(),
        concurrency: args.concurrency,
        log: LogStyle::from_env(global.quiet > 0),
    }
}

/// The options every single-cluster stage takes.
fn stage_options(global: &GlobalArgs, reports: ReportDirArgs, args: &StageArgs) -> StageOptions {
    StageOptions {
        report_dir: reports.report_dir,
        kops: args.kops.clone(),
        settings: settings(global, args),
    }
}

fn fleet(global: &GlobalArgs) -> anyhow::Result<Fleet> {
    global.load_fleet()
}

fn one_cluster<'a>(fleet: &'a Fleet, name: &str) -> anyhow::Result<&'a Cluster> {
    Ok(fleet.cluster(name)?)
}

/// Prints the report line, or turns a failed cluster into the one error.
fn finish(report: &Report, pending: bool) -> anyhow::Result<Exit> {
    if let Some(failed) = &report.failed {
        return Err(anyhow::anyhow!("{failed}"));
    }
    println!("{}", logging::sanitize(&report.line()));
    Ok(if pending {
        Exit::Pending
    } else {
        Exit::Success
    })
}

pub fn dryrun(global: &GlobalArgs, args: DryrunArgs) -> anyhow::Result<Exit> {
    let fleet = fleet(global)?;
    if !args.all && args.clusters.is_empty() {
        return Err(Error::Usage("name the clusters to dry-run, or pass --all".into()).into());
    }
    let clusters: Vec<&Cluster> = if args.all {
        fleet.clusters().iter().collect()
    } else {
        fleet.select(&args.clusters)?
    };
    let opts = DryrunOptions {
        report_dir: args.reports.report_dir,
        without_kops: args.without_kops,
        kops: args.stage.kops.clone(),
        jobs: args.jobs,
        settings: settings(global, &args.stage),
    };
    let result = stage::dryrun(&fleet, &clusters, &opts)?;
    for report in &result.reports {
        println!("{}", logging::sanitize(&report.line()));
    }
    let failed = result.failed();
    if !failed.is_empty() {
        let names: Vec<&str> = failed.iter().map(|r| r.cluster.as_str()).collect();
        return Err(anyhow::anyhow!(
            "{} of {} cluster(s) failed: {} (see their report.md in {})",
            failed.len(),
            result.reports.len(),
            names.join(", "),
            opts.report_dir.display()
        ));
    }
    Ok(if args.detailed_exitcode && result.changes_pending() {
        Exit::Pending
    } else {
        Exit::Success
    })
}

/// Runs one stage on the one cluster named on the command line.
fn stage_on_one_cluster<O>(
    global: &GlobalArgs,
    cluster: &str,
    opts: &O,
    stage: fn(&Fleet, &Cluster, &O) -> kopsci_core::Result<Report>,
) -> anyhow::Result<Report> {
    let fleet = fleet(global)?;
    let cluster = one_cluster(&fleet, cluster)?;
    Ok(stage(&fleet, cluster, opts)?)
}

pub fn update(global: &GlobalArgs, args: UpdateArgs) -> anyhow::Result<Exit> {
    let opts = UpdateOptions {
        stage: stage_options(global, args.reports, &args.stage),
        allow_stale: args.allow_stale,
        prune_instance_groups: args.prune_instance_groups,
        allow_version_skew: args.allow_version_skew,
        kops_args: args.kops_args,
    };
    let report = stage_on_one_cluster(global, &args.cluster, &opts, stage::update)?;
    finish(&report, false)
}

pub fn roll(global: &GlobalArgs, args: RollArgs) -> anyhow::Result<Exit> {
    let opts = RollOptions {
        stage: stage_options(global, args.reports, &args.stage),
        yes: args.yes,
        kops_args: args.kops_args,
    };
    let report = stage_on_one_cluster(global, &args.cluster, &opts, stage::roll)?;
    finish(&report, args.detailed_exitcode && report.changes_pending)
}

pub fn apply(global: &GlobalArgs, args: ApplyArgs) -> anyhow::Result<Exit> {
    let opts = ApplyOptions {
        stage: stage_options(global, args.reports, &args.stage),
        allow_stale: args.allow_stale,
        prune_instance_groups: args.prune_instance_groups,
    };
    let report = stage_on_one_cluster(global, &args.cluster, &opts, stage::apply)?;
    finish(&report, false)
}

pub fn delete(global: &GlobalArgs, args: DeleteArgs) -> anyhow::Result<Exit> {
    let opts = DeleteOptions {
        stage: stage_options(global, args.reports, &args.stage),
        yes: args.yes,
    };
    let report = stage_on_one_cluster(global, &args.cluster, &opts, stage::delete)?;
    finish(&report, false)
}

pub fn kubeconfig(global: &GlobalArgs, args: KubeconfigArgs) -> anyhow::Result<Exit> {
    let fleet = fleet(global)?;
    let cluster = one_cluster(&fleet, &args.cluster)?;
    let opts = KubeconfigOptions {
        out: args.out,
        report_dir: args.reports.report_dir,
        admin: args.admin,
        kops: args.stage.kops.clone(),
        settings: settings(global, &args.stage),
    };
    stage::kubeconfig(&fleet, cluster, &opts)?;
    Ok(Exit::Success)
}
