//! `kopsci delete CLUSTER`: retires a cluster the fleet marks `absent:
//! true` — a reviewed deletion. Without `--yes`, `kops delete cluster`'s
//! list of what would be deleted; with `--yes`, the deletion. A cluster
//! the fleet does not mark absent is never deleted.
//!
//! The report goes to `<report dir>/<cluster>/delete/`.

use std::path::PathBuf;

use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet};
use crate::stage::report::{Action, KOPS_DELETE_FILE, REPORT_JSON, REPORT_MD, StageKind};
use crate::stage::run::{ClusterRun, Stage, Step};
use crate::stage::{KopsSetup, Report, StageSettings, Stop, clear_stage_files, cluster_log};

const DELETE_FILES: &[&str] = &[REPORT_MD, REPORT_JSON, KOPS_DELETE_FILE];

/// `kopsci delete`'s options.
#[derive(Debug, Clone)]
pub struct DeleteOptions {
    pub report_dir: PathBuf,
    /// Delete instead of previewing.
    pub yes: bool,
    pub kops: Option<PathBuf>,
    pub settings: StageSettings,
}

/// Previews or performs the deletion of an `absent: true` cluster.
pub fn delete(fleet: &Fleet, cluster: &Cluster, opts: &DeleteOptions) -> Result<Report> {
    if !cluster.absent {
        return Err(Error::NotAbsent {
            cluster: cluster.name.clone(),
            fleet: fleet.path().display().to_string(),
        });
    }
    let stop = Stop::watch()?;
    clear_stage_files(
        &opts.report_dir,
        StageKind::Delete,
        &[cluster],
        DELETE_FILES,
    )?;
    let kops = KopsSetup::locate(opts.kops.as_deref(), fleet)?;
    let stage = Stage {
        fleet,
        kind: StageKind::Delete,
        report_dir: &opts.report_dir,
        settings: &opts.settings,
        kops: Some(&kops),
        stop: &stop,
    };
    let log = cluster_log(opts.settings.log, &cluster.name, false);
    ClusterRun::new(&stage, cluster, log)
        .execute(DELETE_FILES, |run| {
            run.report.action = Some(Action::Delete);
            let name = run.name();
            let state = run.live_state_arg();
            let inv = run.kops()?.delete_cluster(name, &state, opts.yes);
            let header = if opts.yes {
                format!("{name}: kops delete cluster --yes")
            } else {
                format!("{name}: kops delete cluster (preview)")
            };
            let outcome = run.run_kops(Step::KopsDeleteCluster, &header, &inv, false)?;
            run.write(
                KOPS_DELETE_FILE,
                &format!("$ {}\n{}", inv.command_line(), outcome.stdout),
            )?;
            run.report.changes_pending = !opts.yes;
            run.report.deletion = Some(outcome.stdout.clone());
            run.report.kops_output = outcome.stdout;
            Ok(())
        })
        .into_result()
}
