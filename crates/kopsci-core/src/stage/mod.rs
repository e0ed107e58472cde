//! The stage commands: `dryrun` (render → snapshot → kops replace/create and
//! kops update against the snapshot → reports), `update` (check the plan,
//! apply to the live store) and `roll` (kops rolling-update, parsed).
//!
//! Every stage works cluster by cluster and reports per cluster; what is
//! shared lives here: finding and checking kops, the store and AWS identity
//! of a cluster, stopping cleanly on SIGINT/SIGTERM between steps, running
//! several clusters at once with a bound, and the per-cluster report
//! directory.

pub mod dryrun;
pub mod objects;
pub mod plan;
pub mod report;
pub mod roll;
pub mod sections;
pub mod spec_diff;
pub mod update;

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
pub use dryrun::{DryrunOptions, dryrun};
pub use plan::{PLAN_FILE, Plan};
pub use report::{Report, StageKind};
pub use roll::{RollOptions, roll};
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
    pub state: Option<String>,
    pub s3: S3Settings,
    pub sts: StsClientSettings,
    /// Objects fetched at once by snapshots and verification.
    pub concurrency: usize,
    pub log: LogStyle,
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
}

/// The live store of a cluster: the override, else the fleet's.
pub fn store_for(fleet: &Fleet, cluster: &Cluster, state: Option<&str>) -> Result<StoreUrl> {
    let state = state.map(StoreUrl::parse).transpose()?;
    fleet.store_for(cluster, state.as_ref())
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

/// Runs the steps of a single-cluster kops stage (`update`, `roll`) inside
/// its log section and always writes the report: a failing step is recorded
/// in `failed` under the step's name, and only an interruption comes back
/// as an error, after the report is written.
pub(crate) fn run_cluster_stage(
    kind: report::StageKind,
    cluster: &crate::fleet::Cluster,
    kops: &KopsSetup,
    log: &Log,
    dir: &Path,
    steps: impl FnOnce(&mut report::Report, &mut &'static str) -> Result<()>,
) -> Result<report::Report> {
    let started = std::time::Instant::now();
    let mut report = report::Report::new(kind, &cluster.name, now_rfc3339());
    report.environment = Some(cluster.environment.clone());
    report.kops_version = Some(kops.version.to_string());
    let mut step = "prepare";
    let outcome = {
        let command = kind.command();
        let _section = log.section(
            command,
            &format!("kopsci {command} {}", cluster.name),
            false,
        );
        steps(&mut report, &mut step)
    };
    let interrupted = match outcome {
        Ok(()) => None,
        Err(e) => {
            report.fail(step, &e);
            matches!(e, Error::Interrupted { .. }).then_some(e)
        }
    };
    report.duration_seconds = started.elapsed().as_secs_f64();
    if let Err(e) = report::write_report(dir, &report, false)
        && report.failed.is_none()
    {
        report.fail("report", &e);
    }
    match interrupted {
        Some(e) => Err(e),
        None => Ok(report),
    }
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
