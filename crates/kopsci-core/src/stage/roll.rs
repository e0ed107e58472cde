//! `kopsci roll CLUSTER`: `kops rolling-update cluster` on the live store —
//! a preview parsed into a report, or with `--yes` the rolling update
//! itself, followed by the validation gate. The user's extra kops flags
//! (`--instance-group`, `--cloudonly`, …) pass through; `--yes`, `--name`
//! and `--state` are kopsci's. The fleet's `drain_timeout` and
//! `validation_timeout` become `--drain-timeout` / `--validation-timeout`
//! unless the extra flags set them.
//!
//! The report goes to `<report dir>/<cluster>/roll/`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet};
use crate::kops::command::{check_extra, sets_flag};
use crate::kops::parse_rolling_update_output;
use crate::stage::report::{KOPS_ROLL_FILE, KOPS_VALIDATE_FILE, REPORT_JSON, REPORT_MD, StageKind};
use crate::stage::run::{ClusterRun, Stage, Step};
use crate::stage::validate::validate_cluster;
use crate::stage::{KopsSetup, Report, StageSettings, Stop, clear_stage_files, cluster_log};

/// The sub-directory of a cluster's report directory for `roll`.
pub const ROLL_DIR: &str = "roll";

const ROLL_FILES: &[&str] = &[REPORT_MD, REPORT_JSON, KOPS_ROLL_FILE, KOPS_VALIDATE_FILE];

/// `kopsci roll`'s options.
#[derive(Debug, Clone)]
pub struct RollOptions {
    pub report_dir: PathBuf,
    /// Replace instances instead of previewing.
    pub yes: bool,
    pub kops: Option<PathBuf>,
    /// Extra flags for `kops rolling-update cluster`.
    pub kops_args: Vec<OsString>,
    pub settings: StageSettings,
}

/// Previews or runs the rolling update of one cluster. The cluster's own
/// failures are in the report's `failed`.
pub fn roll(fleet: &Fleet, cluster: &Cluster, opts: &RollOptions) -> Result<Report> {
    let stop = Stop::watch()?;
    clear_stage_files(&opts.report_dir, StageKind::Roll, &[cluster], ROLL_FILES)?;
    // After clearing: the old report must not outlive the refusal.
    crate::stage::refuse_absent(cluster, "roll")?;
    check_extra("kops rolling-update cluster", &opts.kops_args)?;
    let kops = KopsSetup::locate(opts.kops.as_deref(), fleet)?;
    let stage = Stage {
        fleet,
        kind: StageKind::Roll,
        report_dir: &opts.report_dir,
        settings: &opts.settings,
        kops: Some(&kops),
        stop: &stop,
    };
    let log = cluster_log(opts.settings.log, &cluster.name, false);
    ClusterRun::new(&stage, cluster, log)
        .execute(ROLL_FILES, |run| {
            if opts.yes {
                crate::stage::apply::warn_short_session(run);
            }
            rolling_update(run, opts.yes, &opts.kops_args)?;
            if opts.yes {
                validate_cluster(run)?;
            }
            Ok(())
        })
        .into_result()
}

/// The fleet's timeouts as rolling-update flags, unless the user's own
/// flags set them.
pub(crate) fn roll_flags(run: &ClusterRun, extra: &[OsString]) -> Vec<OsString> {
    let apply = &run.cluster.apply;
    let mut flags: Vec<OsString> = extra.to_vec();
    if let Some(drain) = apply.drain_timeout
        && !sets_flag(extra, "--drain-timeout")
    {
        flags.push(format!("--drain-timeout={}", drain.go()).into());
    }
    if let Some(timeout) = apply.validation_timeout
        && !sets_flag(extra, "--validation-timeout")
    {
        flags.push(format!("--validation-timeout={}", timeout.go()).into());
    }
    flags
}

/// `kops rolling-update cluster [--yes]`, parsed into the report.
pub(crate) fn rolling_update(run: &mut ClusterRun, yes: bool, extra: &[OsString]) -> Result<()> {
    let name = run.name();
    let state = run.live_state_arg();
    let flags = if yes {
        roll_flags(run, extra)
    } else {
        extra.to_vec()
    };
    let inv = run.kops()?.rolling_update(name, &state, yes, &flags)?;
    let header = if yes {
        format!("{name}: kops rolling-update cluster --yes")
    } else {
        format!("{name}: kops rolling-update cluster (preview)")
    };
    // Written before the exit code is looked at: after a failed roll,
    // what kops replaced before it stopped is what the reader needs.
    let outcome = run.run_kops_unchecked(Step::KopsRollingUpdate, &header, &inv, false)?;
    run.write(
        KOPS_ROLL_FILE,
        &format!("$ {}\n{}", inv.command_line(), outcome.stdout),
    )?;
    run.report.kops_output.push_str(&outcome.stdout);
    if !outcome.success() {
        return Err(Error::KopsFailed {
            command: inv.label(),
            status: outcome.status(),
            code: outcome.code,
            stderr_tail: outcome.stderr_tail(crate::process::runner::STDERR_TAIL_LINES),
        });
    }
    run.step(Step::ParseRollingUpdate)?;
    match parse_rolling_update_output(&outcome.stdout) {
        Ok(plan) => {
            run.report.changes_pending = !yes && (plan.needs_roll || plan.pending().count() > 0);
            run.report.roll_plan = Some(plan);
        }
        // The roll itself succeeded: a table kopsci cannot read must not
        // turn a done rolling update into a failed job.
        Err(e) if yes => run.report.warnings.push(e.to_string()),
        Err(e) => return Err(e),
    }
    Ok(())
}
