//! `kopsci roll CLUSTER`: `kops rolling-update cluster` on the live store —
//! a preview parsed into a report, or with `--yes` the rolling update
//! itself. The user's extra kops flags (`--instance-group`, `--cloudonly`,
//! `--validation-timeout`, …) pass through; `--yes`, `--name` and `--state`
//! are kopsci's.
//!
//! The report goes to `<report dir>/<cluster>/roll/`.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::aws::AwsIdentity;
use crate::aws::resolve_identity;
use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet};
use crate::kops::parse_rolling_update_output;
use crate::process::Runner;
use crate::stage::report::{KOPS_ROLL_FILE, REPORT_JSON, REPORT_MD, Report, StageKind, write_file};
use crate::stage::{
    KopsSetup, Log, StageSettings, Stop, clear_previous, cluster_log, cluster_report_dir,
    run_cluster_stage, store_for,
};

/// The sub-directory of a cluster's report directory for `roll`.
pub const ROLL_DIR: &str = "roll";

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
    crate::kops::command::check_extra("kops rolling-update cluster", &opts.kops_args)?;
    let kops = KopsSetup::locate(opts.kops.as_deref(), fleet)?;
    let log = cluster_log(opts.settings.log, &cluster.name, false);
    let dir = cluster_report_dir(&opts.report_dir, &cluster.name).join(ROLL_DIR);
    run_cluster_stage(
        StageKind::Roll,
        cluster,
        &kops,
        &log,
        &dir,
        |report, step| steps(fleet, cluster, opts, &kops, &stop, &log, report, step),
    )
}

#[allow(clippy::too_many_arguments)]
fn steps(
    fleet: &Fleet,
    cluster: &Cluster,
    opts: &RollOptions,
    setup: &KopsSetup,
    stop: &Stop,
    log: &Log,
    report: &mut Report,
    step: &mut &'static str,
) -> Result<()> {
    let name = cluster.name.as_str();
    let dir = cluster_report_dir(&opts.report_dir, name).join(ROLL_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    clear_previous(&dir, &[REPORT_MD, REPORT_JSON, KOPS_ROLL_FILE])?;
    let store = store_for(fleet, cluster, opts.settings.state.as_deref())?;
    let state_arg = store.to_string();
    report.state = Some(store.cluster_url(name));

    *step = "aws identity";
    let identity = resolve_identity(&fleet.aws_for(cluster), &opts.settings.sts)?;
    if !matches!(identity, AwsIdentity::Inherit { region: None }) {
        log.note(&identity.describe());
    }

    *step = "kops rolling-update cluster";
    stop.check()?;
    let kops = setup.kops(&identity);
    let inv = kops.rolling_update(name, &state_arg, opts.yes, &opts.kops_args)?;
    let outcome = {
        let header = if opts.yes {
            format!("{name}: kops rolling-update cluster --yes")
        } else {
            format!("{name}: kops rolling-update cluster (preview)")
        };
        let _s = log.section("rolling-update", &header, false);
        Runner::new(log.echo()).run(&inv)?
    };
    write_file(
        &dir,
        KOPS_ROLL_FILE,
        &format!(
            "$ kops rolling-update cluster --name {name} --state {state_arg}{}{}\n{}",
            if opts.yes { " --yes" } else { "" },
            opts.kops_args
                .iter()
                .map(|a| format!(" {}", crate::process::shell_quote(a)))
                .collect::<String>(),
            outcome.stdout
        ),
    )?;
    report.kops_seconds = outcome.duration.as_secs_f64();
    report.kops_output = outcome.stdout.clone();
    *step = "parse rolling-update output";
    match parse_rolling_update_output(&outcome.stdout) {
        Ok(plan) => {
            report.changes_pending = !opts.yes && (plan.needs_roll || plan.pending().count() > 0);
            report.roll_plan = Some(plan);
        }
        // The roll itself succeeded: a table kopsci cannot read must not
        // turn a done rolling update into a failed job.
        Err(e) if opts.yes => report.warnings.push(e.to_string()),
        Err(e) => return Err(e),
    }
    Ok(())
}
