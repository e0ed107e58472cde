//! `kopsci apply CLUSTER`: the one-step apply kOps recommends from 1.31.
//!
//! 1. The same guard as `update`: render, copy the live store, check the
//!    dry run's plan (a live store changed only by an earlier apply of the
//!    same manifest is a resumed apply, not a stale plan), put the reviewed
//!    manifest into the live store, preview the counts, prune removed
//!    instance groups when the fleet or `--prune-instance-groups` says so.
//! 2. kops 1.31+: `kops reconcile cluster --yes`, which updates and rolls
//!    the control plane before the nodes and prunes last — the sequence
//!    kOps' upgrade guide requires for Kubernetes 1.31+. Older kops (which
//!    only supports Kubernetes up to 1.30, where the kubelet skew crash
//!    does not occur): `update cluster --yes`, `rolling-update cluster
//!    --yes`, then `update cluster --prune --yes` where kops has `--prune`
//!    (1.29+). Decided by the kops version found, not by a setting.
//! 3. The validation gate: `kops validate cluster --wait`.
//!
//! The report goes to `<report dir>/<cluster>/apply/`.

use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet};
use crate::kops::{parse_rolling_update_output, phase_sections, reconcile_phases};
use crate::stage::report::{
    KOPS_APPLY_FILE, KOPS_ROLL_FILE, KOPS_VALIDATE_FILE, MANIFEST_FILE, REPORT_JSON, REPORT_MD,
    StageKind,
};
use crate::stage::roll::rolling_update;
use crate::stage::run::{ClusterRun, Step};
use crate::stage::update::put_reviewed;
use crate::stage::validate::validate_cluster;
use crate::stage::{Report, StageOptions, run_single};

const APPLY_FILES: &[&str] = &[
    REPORT_MD,
    REPORT_JSON,
    MANIFEST_FILE,
    KOPS_APPLY_FILE,
    KOPS_ROLL_FILE,
    KOPS_VALIDATE_FILE,
];

/// `kopsci apply`'s options.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// Where the dry run wrote `<cluster>/plan.json` (the apply's report
    /// goes to `<cluster>/apply/`), kops and the settings.
    pub stage: StageOptions,
    pub allow_stale: bool,
    /// Delete removed instance groups (also on with the fleet's
    /// `prune_instance_groups: true`).
    pub prune_instance_groups: bool,
}

/// Applies one cluster's reviewed change. The cluster's own failures are
/// in the report's `failed`.
pub fn apply(fleet: &Fleet, cluster: &Cluster, opts: &ApplyOptions) -> Result<Report> {
    run_single(
        fleet,
        cluster,
        StageKind::Apply,
        &opts.stage,
        APPLY_FILES,
        || Ok(()),
        |run| {
            warn_short_session(run);
            put_reviewed(
                run,
                &opts.stage.report_dir,
                opts.allow_stale,
                opts.prune_instance_groups,
                |_, _, _| Ok(()),
            )?;
            if run.kops_setup()?.has_reconcile() {
                reconcile(run)?;
            } else {
                update_then_roll(run)?;
            }
            validate_cluster(run)
        },
    )
}

/// `kops reconcile cluster --yes`, its phases in the report; on failure,
/// the phase it stopped in.
fn reconcile(run: &mut ClusterRun) -> Result<()> {
    let name = run.name();
    let state = run.live_state_arg();
    let inv = run.kops()?.reconcile(name, &state, true);
    let header = format!("{name}: kops reconcile cluster --yes");
    let (outcome, interrupted) = run.run_kops_to_end(Step::KopsReconcile, &header, &inv, false)?;
    run.write(
        KOPS_APPLY_FILE,
        &format!("$ {}\n{}", inv.command_line(), outcome.stdout),
    )?;
    run.report.phases = reconcile_phases(&outcome.stdout);
    // The rolling-update tables kOps prints inside the roll phases; the
    // last one readable is the state the roll left.
    for (_, text) in phase_sections(&outcome.stdout) {
        if let Ok(plan) = parse_rolling_update_output(&text)
            && !plan.rows.is_empty()
        {
            run.report.roll_plan = Some(plan);
        }
    }
    run.report.kops_output = outcome.stdout.clone();
    // Stopped by a signal: the phases above say where.
    if let Some(interruption) = interrupted {
        return Err(interruption);
    }
    if outcome.success() {
        return Ok(());
    }
    let phase = run
        .report
        .phases
        .last()
        .map(|p| p.line().to_string())
        .unwrap_or_else(|| "before its first phase".to_string());
    Err(Error::ReconcileFailed {
        cluster: name.to_string(),
        phase,
        status: outcome.status(),
        stderr_tail: outcome.stderr_tail(crate::process::runner::STDERR_TAIL_LINES),
    })
}

/// kops before 1.31: `update --yes`, `rolling-update --yes`, then `update
/// --prune --yes` where kops has it.
fn update_then_roll(run: &mut ClusterRun) -> Result<()> {
    let name = run.name();
    let state = run.live_state_arg();
    let kops = run.kops()?;
    let inv = kops.update_cluster(name, &state, true, &[])?;
    let outcome = run.run_kops(
        Step::KopsUpdateYes,
        &format!("{name}: kops update cluster --yes"),
        &inv,
        false,
    )?;
    let mut log = format!("$ {}\n{}", inv.command_line(), outcome.stdout);
    run.report.kops_output = outcome.stdout;
    // Written now, so that a roll failing next leaves it.
    run.write(KOPS_APPLY_FILE, &log)?;
    rolling_update(run, true, &[])?;
    if run.kops_setup()?.has_prune() {
        let inv = kops.update_prune(name, &state);
        let outcome = run.run_kops(
            Step::KopsPrune,
            &format!("{name}: kops update cluster --prune --yes"),
            &inv,
            false,
        )?;
        log.push_str(&format!("$ {}\n{}", inv.command_line(), outcome.stdout));
    }
    run.write(KOPS_APPLY_FILE, &log)
}

/// An assumed-role session shorter than the job's timeout can expire in
/// the middle of a long roll.
pub(crate) fn warn_short_session(run: &mut ClusterRun) {
    let timeout = run.cluster.apply.timeout;
    if let Some(session) = run.cluster.aws.session_seconds()
        && u64::from(session) < timeout.as_secs()
    {
        run.warn(format!(
            "the assumed-role session lasts {session} s (`aws.duration_seconds`), less than the job's timeout of {} (`apply.timeout`): a long roll can outlive its credentials; raise aws.duration_seconds (up to the role's maximum session duration)",
            timeout.gitlab()
        ));
    }
}
