//! `kopsci update CLUSTER`: apply what the dry run reviewed, and only that
//! (the `update-roll` strategy's first job).
//!
//! 1. Render the manifest again and copy the live store it will write.
//! 2. Check the dry run's `plan.json` against both ([`plan::check`]):
//!    refused (unless `--allow-stale`) when there is no plan, when it was
//!    made for another cluster, store or manifest, or when the live store
//!    changed since. What to apply is recomputed, never read from the plan.
//! 3. Refuse a Kubernetes version change with kops 1.31+: `update` then
//!    `roll` is the sequence kOps' upgrade guide says can crash kubelets.
//! 4. `kops replace --force -f` (or `create -f`) on the live store; a
//!    `kops update cluster` preview for the counts; with pruning, `kops
//!    delete instancegroup NAME --yes` for each group the manifest dropped;
//!    then `kops update cluster --yes` with the user's extra flags.
//!
//! The report goes to `<report dir>/<cluster>/update/`, beside the dry
//! run's, which it never overwrites.

use std::ffi::OsString;

use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet};
use crate::kops::command::check_extra;
use crate::kops::parse_update_output;
use crate::stage::plan::{self, Decision};
use crate::stage::report::{
    CountsSource, KOPS_UPDATE_FILE, MANIFEST_FILE, REPORT_JSON, REPORT_MD, StageKind,
};
use crate::stage::run::{ClusterRun, LiveCopy, Manifest, Step};
use crate::stage::{Report, StageOptions, cluster_report_dir, run_single};

/// The sub-directory of a cluster's report directory for `update`.
pub const UPDATE_DIR: &str = "update";

/// Files `update` writes (and removes first).
pub const UPDATE_FILES: &[&str] = &[REPORT_MD, REPORT_JSON, KOPS_UPDATE_FILE, MANIFEST_FILE];

/// kOps' upgrade guide, quoted when kopsci refuses the old sequence.
pub const SKEW_GUIDE: &str = "kOps' upgrade guide (upgrading-kubernetes.md): \"Violating this policy when upgrading to Kubernetes 1.31 can cause newer kubelets to crash.\" \u{2014} \"To upgrade a cluster to Kubernetes 1.31 or newer, use the new `kops reconcile cluster` command\"";

/// `kopsci update`'s options.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// Where the dry run wrote `<cluster>/plan.json` (the update's report
    /// goes to `<cluster>/update/`), kops and the settings.
    pub stage: StageOptions,
    /// Apply even without a plan, or with a stale one.
    pub allow_stale: bool,
    /// Delete instance groups the manifest no longer has (also on with the
    /// fleet's `prune_instance_groups: true`).
    pub prune_instance_groups: bool,
    /// Change the Kubernetes version with `update` then `roll` although
    /// kops has `reconcile`.
    pub allow_version_skew: bool,
    /// Extra flags for `kops update cluster`.
    pub kops_args: Vec<OsString>,
}

/// Updates one cluster. A failure of the cluster's own steps (stale plan,
/// kops failing) is in the returned report's `failed`; errors are for what
/// stops before any step (no kops) and for signals.
pub fn update(fleet: &Fleet, cluster: &Cluster, opts: &UpdateOptions) -> Result<Report> {
    run_single(
        fleet,
        cluster,
        StageKind::Update,
        &opts.stage,
        UPDATE_FILES,
        // Before the plan: a wrong flag must not get as far as the store.
        || check_extra("kops update cluster", &opts.kops_args),
        |run| {
            put_reviewed(
                run,
                &opts.stage.report_dir,
                opts.allow_stale,
                opts.prune_instance_groups,
                |run, manifest, live| {
                    guard_version_skew(run, manifest, live, opts.allow_version_skew)
                },
            )?;
            let name = run.name();
            let state = run.live_state_arg();
            let inv = run
                .kops()?
                .update_cluster(name, &state, true, &opts.kops_args)?;
            let header = format!("{name}: kops update cluster --yes");
            let outcome = run.run_kops(Step::KopsUpdateYes, &header, &inv, false)?;
            run.write(
                KOPS_UPDATE_FILE,
                &format!("$ {}\n{}", inv.command_line(), outcome.stdout),
            )?;
            run.report.kops_output = outcome.stdout;
            Ok(())
        },
    )
}

/// Render, copy the live store, check the plan, then put the reviewed
/// manifest into the live store, preview what kops will do (the counts in
/// the report are kops' own, never the plan's), and prune removed instance
/// groups when asked. `guard` runs between the plan check and the first
/// write. Shared by `update` and `apply`.
pub(crate) fn put_reviewed(
    run: &mut ClusterRun,
    report_dir: &std::path::Path,
    allow_stale: bool,
    prune_flag: bool,
    guard: impl FnOnce(&mut ClusterRun, &Manifest, &LiveCopy) -> Result<()>,
) -> Result<Decision> {
    let manifest = run.render()?;
    let live = run.snapshot()?;
    let plan_dir = cluster_report_dir(report_dir, run.name());
    let prune = prune_flag || run.cluster.apply.prune_instance_groups;
    let decision = plan::check(run, &plan_dir, &manifest, &live, allow_stale, prune)?;
    run.report.action = Some(decision.action);
    run.report.removed_instance_groups = decision.removed.clone();
    guard(run, &manifest, &live)?;
    if prune {
        // Group names come from the store's keys: one kops would read as a
        // flag is refused before anything is written, not half-way through.
        for group in &decision.removed {
            crate::names::check_object_name(group)?;
        }
    }

    let name = run.name();
    let state = run.live_state_arg();
    run.put_manifest(&manifest, decision.action, &state, &format!("on {state}"))?;

    let preview = run.kops()?.update_cluster(name, &state, false, &[])?;
    let header = format!("{name}: kops update cluster (what --yes will do)");
    let outcome = run.run_kops(Step::KopsUpdate, &header, &preview, true)?;
    let plan = parse_update_output(&outcome.stdout);
    run.report.set_counts(plan.counts(), CountsSource::Kops);
    run.report.changes_pending = plan.needs_apply || !decision.removed.is_empty();
    run.report.update_plan = Some(plan);

    if prune {
        let kops = run.kops()?;
        for group in &decision.removed {
            let inv = kops.delete_instance_group(group, name, &state)?;
            let header = format!("{name}: kops delete instancegroup {group}");
            run.run_kops(Step::KopsDeleteInstanceGroup, &header, &inv, false)?;
            run.report.pruned_instance_groups.push(group.clone());
        }
    } else if !decision.removed.is_empty() {
        run.warn(format!(
            "instance group(s) {} are in the state store but not in the manifest and were kept; set `prune_instance_groups: true` in the fleet (or pass --prune-instance-groups) to delete them",
            decision.removed.join(", ")
        ));
    }
    Ok(decision)
}

/// With kops 1.31+, a Kubernetes version change must go through `kops
/// reconcile cluster` (`kopsci apply`): `update` launches new nodes that
/// join control planes not yet rolled.
fn guard_version_skew(
    run: &mut ClusterRun,
    manifest: &Manifest,
    live: &LiveCopy,
    allowed: bool,
) -> Result<()> {
    let setup = run.kops_setup()?;
    if !setup.has_reconcile() {
        return Ok(());
    }
    let Some((from, to)) = kubernetes_version_change(manifest, live) else {
        return Ok(());
    };
    if allowed {
        run.warn(format!(
            "--allow-version-skew: Kubernetes {from} → {to} with `update` then `roll`; {SKEW_GUIDE}"
        ));
        return Ok(());
    }
    Err(Error::VersionSkew {
        cluster: run.name().to_string(),
        from,
        to,
        kops: setup.version.to_string(),
        guide: SKEW_GUIDE,
    })
}

/// `spec.kubernetesVersion` stored → rendered, when they differ.
pub(crate) fn kubernetes_version_change(
    manifest: &Manifest,
    live: &LiveCopy,
) -> Option<(String, String)> {
    let rendered = manifest
        .objects
        .cluster
        .pointer("/spec/kubernetesVersion")
        .and_then(|v| v.as_str())?
        .to_string();
    let stored_text = live.stored.config.as_deref()?;
    let stored: crate::values::Value = crate::yaml::from_str(stored_text, "config").ok()?;
    let stored = stored
        .pointer("/spec/kubernetesVersion")
        .and_then(|v| v.as_str())?
        .to_string();
    (stored != rendered).then_some((stored, rendered))
}
