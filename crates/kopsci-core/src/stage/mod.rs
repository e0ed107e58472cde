//! The stage commands, each a short composition of the per-cluster steps
//! in [`run`]: `dryrun` (render → snapshot → kops replace/create and kops
//! update against the snapshot → reports and a plan), `update` (check the
//! plan, apply to the live store), `roll` (kops rolling-update, parsed),
//! `apply` (check the plan, then `kops reconcile cluster` — kOps' one-step
//! apply — and validate), `delete` (retire an `absent: true` cluster).
//!
//! What the stages share lives here: finding and checking kops, stopping
//! cleanly on SIGINT/SIGTERM between steps, and the per-cluster report
//! directory.

pub mod apply;
pub mod delete;
pub mod dryrun;
pub mod kubeconfig;
pub mod objects;
pub mod plan;
pub mod report;
pub mod roll;
pub mod run;
pub mod sections;
pub mod spec_diff;
pub mod update;
mod validate;

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};

use crate::aws::AwsIdentity;
use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet};
use crate::kops::Kops;
use crate::process::signals::Forwarding;
use crate::process::{Echo, Runner};
use crate::state::{S3Settings, StoreUrl};

pub use crate::aws::StsClientSettings;
pub use apply::{ApplyOptions, apply};
pub use delete::{DeleteOptions, delete};
pub use dryrun::{DryrunOptions, dryrun};
pub use kubeconfig::{KubeconfigOptions, kubeconfig};
pub use plan::{PLAN_FILE, Plan};
pub use report::{Report, StageKind};
pub use roll::{RollOptions, roll};
pub use run::Step;
pub use sections::{Log, LogStyle};
pub use update::{UpdateOptions, update};

/// Default number of clusters a stage works on at once. Each one mostly
/// waits on kops or S3, so this is about not flooding the job log and the
/// cloud APIs, not about CPUs.
pub const DEFAULT_JOBS: usize = 4;

/// Settings every stage shares.
#[derive(Debug, Clone)]
pub struct StageSettings {
    /// `--state` / `KOPS_STATE_STORE`: overrides the fleet's store for every
    /// cluster. A relative `file://` path is taken from the current
    /// directory.
    pub state: Option<StoreUrl>,
    pub s3: S3Settings,
    pub sts: StsClientSettings,
    /// Objects fetched at once by snapshots and verification.
    pub concurrency: usize,
    pub log: LogStyle,
}

/// What every single-cluster stage command (`update`, `roll`, `apply`,
/// `delete`) takes besides its own flags.
#[derive(Debug, Clone)]
pub struct StageOptions {
    /// Reports go to `<report_dir>/<cluster>/<stage>/`; the dry run's plan
    /// is read from `<report_dir>/<cluster>/`.
    pub report_dir: PathBuf,
    /// `--kops`: the kops binary (else `KOPSCI_KOPS`, else `PATH`).
    pub kops: Option<PathBuf>,
    pub settings: StageSettings,
}

/// Runs one stage on one cluster: the files a previous run left are
/// removed before anything can fail, `refuse` (the stage's own checks of
/// its flags) and the absent check run, kops is located and its version
/// checked, and `steps` run inside [`ClusterRun::execute`], which always
/// writes the report.
pub(crate) fn run_single(
    fleet: &Fleet,
    cluster: &Cluster,
    kind: StageKind,
    options: &StageOptions,
    files: &[&str],
    refuse: impl FnOnce() -> Result<()>,
    steps: impl FnOnce(&mut run::ClusterRun) -> Result<()>,
) -> Result<Report> {
    let stop = Stop::watch()?;
    clear_stage_files(&options.report_dir, kind, &[cluster], files)?;
    // After clearing: an old report must not outlive a refusal.
    refuse()?;
    if cluster.absent && kind != StageKind::Delete {
        return Err(Error::Absent {
            cluster: cluster.name.clone(),
        });
    }
    let kops = KopsSetup::locate(options.kops.as_deref(), fleet)?;
    let stage = run::Stage {
        fleet,
        kind,
        report_dir: &options.report_dir,
        settings: &options.settings,
        kops: Some(&kops),
        stop: &stop,
    };
    let log = cluster_log(options.settings.log, &cluster.name, false);
    run::ClusterRun::new(&stage, cluster, log)
        .execute(files, steps)
        .into_result()
}

/// A located kops that passed the fleet's version check.
#[derive(Debug, Clone)]
pub struct KopsSetup {
    pub program: PathBuf,
    pub version: semver::Version,
}

impl KopsSetup {
    /// Finds kops (`--kops`, `KOPSCI_KOPS`, `PATH`) and checks `kops version`
    /// against the fleet's `kops.version`.
    pub fn locate(flag: Option<&Path>, fleet: &Fleet) -> Result<KopsSetup> {
        let program = crate::kops::locate(flag)?;
        let version = crate::kops::version::verify(
            &Runner::new(Echo::Off),
            &Kops::new(&program),
            fleet.kops_version(),
        )?;
        tracing::info!("using kops {version} at {}", program.display());
        Ok(KopsSetup { program, version })
    }

    /// kops calls as `identity`.
    pub fn kops(&self, identity: &AwsIdentity) -> Kops {
        Kops::new(&self.program).with_identity(identity)
    }

    fn at_least(&self, major: u64, minor: u64) -> bool {
        (self.version.major, self.version.minor) >= (major, minor)
    }

    /// `kops reconcile cluster` and `update cluster --instance-group-roles`
    /// arrived in kOps 1.31.
    pub fn has_reconcile(&self) -> bool {
        self.at_least(1, 31)
    }

    /// `kops update cluster --prune` arrived in kOps 1.29.
    pub fn has_prune(&self) -> bool {
        self.at_least(1, 29)
    }
}

/// Where a cluster's reports go: `<report dir>/<cluster>/`.
pub fn cluster_report_dir(report_dir: &Path, cluster: &str) -> PathBuf {
    report_dir.join(cluster)
}

/// Now, RFC 3339 in UTC (as the snapshot record writes it).
pub fn now_rfc3339() -> String {
    // Whole seconds: sub-second digits only make reports harder to read.
    DateTime::from_secs(DateTime::from(SystemTime::now()).secs())
        .fmt(DateTimeFormat::DateTime)
        .unwrap_or_default()
}

/// Watches for SIGINT/SIGTERM over a whole stage, so that a signal arriving
/// between kops calls (when no child is there to forward it to) still stops
/// the stage at its next step. Running kops children get the signal from
/// the runner's own forwarding.
pub struct Stop {
    forwarding: Forwarding,
}

impl Stop {
    pub fn watch() -> Result<Stop> {
        let forwarding =
            Forwarding::start(|_| {}).map_err(|e| Error::io("SIGINT/SIGTERM handlers", e))?;
        Ok(Stop { forwarding })
    }

    /// [`Error::Interrupted`] once a signal arrived.
    pub fn check(&self) -> Result<()> {
        match self.forwarding.received() {
            Some(interruption) => Err(interruption.into()),
            None => Ok(()),
        }
    }
}

/// Every cluster's report, in the order the clusters were given.
#[derive(Debug, Clone, Default)]
pub struct StageResult {
    pub reports: Vec<Report>,
}

impl StageResult {
    pub fn failed(&self) -> Vec<&Report> {
        self.reports.iter().filter(|r| r.failed.is_some()).collect()
    }

    pub fn changes_pending(&self) -> bool {
        self.reports.iter().any(|r| r.changes_pending)
    }
}

pub(crate) use crate::pool::bounded;

/// The log for one cluster: live when it is the only one running,
/// buffered otherwise (see [`sections`]).
pub(crate) fn cluster_log(style: LogStyle, cluster: &str, parallel: bool) -> Log {
    if parallel {
        Log::buffered(style, cluster)
    } else {
        Log::live(style, cluster)
    }
}

/// Removes the files a previous run of `kind` left for each cluster — before
/// anything can fail, kops missing or the wrong version included — so that
/// a failed run never leaves an old plan or report looking current.
pub(crate) fn clear_stage_files(
    report_dir: &Path,
    kind: StageKind,
    clusters: &[&Cluster],
    names: &[&str],
) -> Result<()> {
    for cluster in clusters {
        let mut dir = cluster_report_dir(report_dir, &cluster.name);
        if let Some(sub) = kind.subdir() {
            dir = dir.join(sub);
        }
        clear_previous(&dir, names)?;
    }
    Ok(())
}

/// Removes the files a previous run of this stage left in `dir`, so that a
/// failed run never leaves an old plan or report looking current.
pub(crate) fn clear_previous(dir: &Path, names: &[&str]) -> Result<()> {
    for name in names {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let t = now_rfc3339();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
