//! `kopsci delete CLUSTER`: retires a cluster the fleet marks `absent:
//! true` — a reviewed deletion. Without `--yes`, `kops delete cluster`'s
//! list of what would be deleted; with `--yes`, the deletion. A cluster
//! the fleet does not mark absent is never deleted.
//!
//! The report goes to `<report dir>/<cluster>/delete/`.

use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet};
use crate::stage::report::{Action, KOPS_DELETE_FILE, REPORT_JSON, REPORT_MD, StageKind};
use crate::stage::run::Step;
use crate::stage::{Report, StageOptions, run_single};

const DELETE_FILES: &[&str] = &[REPORT_MD, REPORT_JSON, KOPS_DELETE_FILE];

/// `kopsci delete`'s options.
#[derive(Debug, Clone)]
pub struct DeleteOptions {
    pub stage: StageOptions,
    /// Delete instead of previewing.
    pub yes: bool,
}

/// Previews or performs the deletion of an `absent: true` cluster.
pub fn delete(fleet: &Fleet, cluster: &Cluster, opts: &DeleteOptions) -> Result<Report> {
    run_single(
        fleet,
        cluster,
        StageKind::Delete,
        &opts.stage,
        DELETE_FILES,
        || {
            if cluster.absent {
                return Ok(());
            }
            Err(Error::NotAbsent {
                cluster: cluster.name.clone(),
                fleet: fleet.path().display().to_string(),
            })
        },
        |run| {
            run.report.action = Some(Action::Delete);
            if !run.snapshot()?.stored.exists() {
                // Already gone (a retried job, or never created): nothing
                // for kops to delete, and the report says so.
                return Ok(());
            }
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
        },
    )
}
