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

use crate::errors::Result;
use crate::fleet::{Cluster, Fleet};
use crate::kops::command::{check_extra, sets_flag};
use crate::kops::parse_rolling_update_output;
use crate::stage::report::{KOPS_ROLL_FILE, KOPS_VALIDATE_FILE, REPORT_JSON, REPORT_MD, StageKind};
use crate::stage::run::{ClusterRun, Step};
use crate::stage::validate::validate_cluster;
use crate::stage::{Report, StageOptions, run_single};

/// The sub-directory of a cluster's report directory for `roll`.
pub const ROLL_DIR: &str = "roll";

const ROLL_FILES: &[&str] = &[REPORT_MD, REPORT_JSON, KOPS_ROLL_FILE, KOPS_VALIDATE_FILE];

/// `kopsci roll`'s options.
#[derive(Debug, Clone)]
pub struct RollOptions {
    pub stage: StageOptions,
    /// Replace instances instead of previewing.
    pub yes: bool,
    /// Extra flags for `kops rolling-update cluster`.
    pub kops_args: Vec<OsString>,
}

/// Previews or runs the rolling update of one cluster. The cluster's own
/// failures are in the report's `failed`.
pub fn roll(fleet: &Fleet, cluster: &Cluster, opts: &RollOptions) -> Result<Report> {
    run_single(
        fleet,
        cluster,
        StageKind::Roll,
        &opts.stage,
        ROLL_FILES,
        || check_extra("kops rolling-update cluster", &opts.kops_args),
        |run| {
            if opts.yes {
                crate::stage::apply::warn_short_session(run);
            }
            rolling_update(run, opts.yes, &opts.kops_args)?;
            if opts.yes {
                validate_cluster(run)?;
            }
            Ok(())
        },
    )
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
    let (outcome, interrupted) =
        run.run_kops_to_end(Step::KopsRollingUpdate, &header, &inv, false)?;
    run.write(
        KOPS_ROLL_FILE,
        &format!("$ {}\n{}", inv.command_line(), outcome.stdout),
    )?;
    run.report.kops_output.push_str(&outcome.stdout);
    if let Some(interruption) = interrupted {
        return Err(interruption);
    }
    let outcome = outcome.checked(&inv)?;
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
