//! `kopsci dryrun`: prove a change without touching the live state store.
//!
//! Per cluster: render the manifest → snapshot the live store into a
//! private temporary directory → `kops create -f` (cluster not in the
//! store) or `kops replace --force -f` against `--state file://<snapshot>`
//! → `kops update cluster` against the snapshot, without `--yes` → reports
//! and `plan.json`. kops is only ever given the snapshot's URL; the live
//! store is only ever read.
//!
//! With `--without-kops`, the kops steps are replaced by kopsci's own spec
//! diff ([`spec_diff`]), and the report says the cloud-level plan was
//! skipped.

use std::fmt::Write as _;
use std::path::PathBuf;

use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet};
use crate::kops::{UpdatePlan, parse_update_output};
use crate::stage::objects::{StoredObjects, state_diff};
use crate::stage::plan::{PLAN_FILE, PLAN_FORMAT, Plan, sha256_hex};
use crate::stage::report::{
    Action, CountsSource, KOPS_DELETE_FILE, KOPS_UPDATE_FILE, MANIFEST_FILE, REPORT_JSON,
    REPORT_MD, STATE_DIFF_FILE, StageKind, TERRAFORM_REPORT,
};
use crate::stage::run::{ClusterRun, LiveCopy, Manifest, Stage, Step};
use crate::stage::spec_diff::spec_diff;
use crate::stage::{
    KopsSetup, Log, StageResult, StageSettings, Stop, bounded, clear_stage_files, cluster_log,
    now_rfc3339,
};

/// What the report says when kops did not run.
pub const KOPS_SKIPPED: &str =
    "kops was not run (`--without-kops`): the cloud-level plan was skipped.";

/// Every file a dry run writes into a cluster's report directory.
pub const DRYRUN_FILES: &[&str] = &[
    MANIFEST_FILE,
    STATE_DIFF_FILE,
    KOPS_UPDATE_FILE,
    KOPS_DELETE_FILE,
    REPORT_MD,
    REPORT_JSON,
    TERRAFORM_REPORT,
    PLAN_FILE,
];

/// `kopsci dryrun`'s options.
#[derive(Debug, Clone)]
pub struct DryrunOptions {
    /// Reports go to `<report_dir>/<cluster>/`.
    pub report_dir: PathBuf,
    /// Skip kops entirely (`--without-kops`).
    pub without_kops: bool,
    /// `--kops`: the kops binary (else `KOPSCI_KOPS`, else `PATH`).
    pub kops: Option<PathBuf>,
    /// Clusters at once.
    pub jobs: usize,
    pub settings: StageSettings,
}

/// Dry-runs `clusters`. Errors only for what stops every cluster (no kops,
/// wrong kops version, a signal); a cluster's own failure is in its report.
pub fn dryrun(fleet: &Fleet, clusters: &[&Cluster], opts: &DryrunOptions) -> Result<StageResult> {
    let stop = Stop::watch()?;
    std::fs::create_dir_all(&opts.report_dir).map_err(|e| Error::io(&opts.report_dir, e))?;
    clear_stage_files(&opts.report_dir, StageKind::Dryrun, clusters, DRYRUN_FILES)?;
    let kops = if opts.without_kops {
        None
    } else {
        Some(KopsSetup::locate(opts.kops.as_deref(), fleet)?)
    };
    if kops.is_none() {
        // Said once up front, and again in every report.
        Log::live(opts.settings.log, "kopsci").note(KOPS_SKIPPED);
    }
    let stage = Stage {
        fleet,
        kind: StageKind::Dryrun,
        report_dir: &opts.report_dir,
        settings: &opts.settings,
        kops: kops.as_ref(),
        stop: &stop,
    };
    let parallel = clusters.len() > 1 && opts.jobs > 1;
    let reports = bounded(clusters, opts.jobs, |cluster| {
        if stop.check().is_err() {
            return None;
        }
        let log = cluster_log(opts.settings.log, &cluster.name, parallel);
        let mut finished =
            ClusterRun::new(&stage, cluster, log.clone()).execute(DRYRUN_FILES, steps);
        // Last, so that a plan only ever sits beside a complete report.
        finished.then_write(PLAN_FILE, |plan| {
            plan.as_ref().map(Plan::to_json).transpose()
        });
        log.flush();
        Some(finished.report)
    });
    // Every cluster has stopped and removed its snapshot by now.
    stop.check()?;
    Ok(StageResult { reports })
}

/// One cluster's dry run; the plan `update` and `apply` check, or none for
/// a cluster the fleet retires.
fn steps(run: &mut ClusterRun) -> Result<Option<Plan>> {
    if run.cluster.absent {
        delete_preview(run)?;
        return Ok(None);
    }
    let manifest = run.render()?;
    let live = run.snapshot()?;
    run.report.action = Some(live.action());
    run.report.removed_instance_groups = live.stored.removed_instance_groups(&manifest.objects);
    if run.kops_setup().is_ok() {
        with_kops(run, &manifest, &live)?;
    } else {
        without_kops(run, &manifest, &live)?;
    }
    run.step(Step::Report)?;
    let record_json = live.record.to_json();
    Ok(Some(Plan {
        format: PLAN_FORMAT.to_string(),
        cluster: run.name().to_string(),
        state: run.live_state_arg(),
        manifest_sha256: manifest.sha256.clone(),
        action: live.action(),
        removed_instance_groups: run.report.removed_instance_groups.clone(),
        changes_pending: run.report.changes_pending,
        counts: run.report.counts(),
        kops_version: run.report.kops_version.clone(),
        without_kops: run.kops_setup().is_err(),
        created_at: now_rfc3339(),
        snapshot_sha256: sha256_hex(record_json.as_bytes()),
        snapshot: live.record,
    }))
}

/// `--without-kops`: kopsci's own spec diff instead of kops' plan.
fn without_kops(run: &mut ClusterRun, manifest: &Manifest, live: &LiveCopy) -> Result<()> {
    run.step(Step::SpecDiff)?;
    let name = run.name();
    let _s = run.log.section(
        "specdiff",
        &format!("{name}: spec diff (kops skipped)"),
        true,
    );
    let diff = spec_diff(&manifest.objects, &live.stored)?;
    let report = &mut run.report;
    report.set_counts(diff.counts(), CountsSource::SpecDiff);
    report.changes_pending = diff.has_changes();
    report.spec_changes = diff.objects;
    report.state_diff = diff.text;
    report.kops_skipped = Some(KOPS_SKIPPED.to_string());
    run.write(STATE_DIFF_FILE, &run.report.state_diff)?;
    run.write(KOPS_UPDATE_FILE, &format!("{KOPS_SKIPPED}\n"))
}

/// kops replace/create and kops update against the private copy: kops
/// only ever gets the copy's `file://` URL.
fn with_kops(run: &mut ClusterRun, manifest: &Manifest, live: &LiveCopy) -> Result<()> {
    let copy = live.state_arg();
    run.put_manifest(manifest, live.action(), &copy, "(against the snapshot)")?;
    let after = StoredObjects::read(&live.cluster_dir())?;
    run.report.state_diff = state_diff(&live.stored, &after);
    // The raw diff also shows how kOps re-serialises objects; the
    // semantic one says what actually changed.
    run.report.spec_changes = spec_diff(&manifest.objects, &live.stored)?.objects;
    run.write(STATE_DIFF_FILE, &run.report.state_diff)?;

    let name = run.name();
    let inv = run.kops()?.update_cluster(name, &copy, false, &[])?;
    let header = format!("{name}: kops update cluster (dry run against the snapshot)");
    let outcome = run.run_kops(Step::KopsUpdate, &header, &inv, false)?;
    let plan = parse_update_output(&outcome.stdout);
    let report = &mut run.report;
    report.set_counts(plan.counts(), CountsSource::Kops);
    report.changes_pending = plan.needs_apply
        || !report.state_diff.is_empty()
        || !report.removed_instance_groups.is_empty();
    report.warnings.extend(
        plan.warnings
            .iter()
            .map(|w| format!("kops update output: {w}")),
    );
    run.write(
        KOPS_UPDATE_FILE,
        &kops_update_text(name, &outcome.stdout, &plan),
    )?;
    run.report.kops_output = outcome.stdout;
    run.report.update_plan = Some(plan);
    Ok(())
}

/// An `absent: true` cluster: what `kops delete cluster` would delete,
/// asked of a private copy of the store (kops never sees the live one in a
/// dry run).
fn delete_preview(run: &mut ClusterRun) -> Result<()> {
    let live = run.snapshot()?;
    run.report.action = Some(Action::Delete);
    if !live.stored.exists() {
        run.warn(format!(
            "`absent: true`, and {} holds no such cluster: nothing to delete",
            run.store().cluster_url(run.name())
        ));
        return Ok(());
    }
    run.report.changes_pending = true;
    let name = run.name();
    if run.kops_setup().is_err() {
        run.report.kops_skipped = Some(KOPS_SKIPPED.to_string());
        run.report.deletion = Some(format!(
            "kops delete cluster --name {name} (kops skipped: the cloud resources were not listed)"
        ));
        return Ok(());
    }
    let inv = run.kops()?.delete_cluster(name, &live.state_arg(), false);
    let header = format!("{name}: kops delete cluster (preview against the snapshot)");
    let outcome = run.run_kops(Step::KopsDeleteCluster, &header, &inv, false)?;
    run.write(
        KOPS_DELETE_FILE,
        &format!(
            "$ kops delete cluster --name {name} --state file://<snapshot>\n{}",
            outcome.stdout
        ),
    )?;
    run.report.deletion = Some(outcome.stdout.clone());
    run.report.kops_output = outcome.stdout;
    Ok(())
}

/// `kops-update.txt`: kops' own output, then what kopsci made of it.
pub fn kops_update_text(cluster: &str, stdout: &str, plan: &UpdatePlan) -> String {
    let mut out =
        format!("$ kops update cluster --name {cluster} --state file://<snapshot>\n{stdout}");
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let _ = writeln!(
        out,
        "\n--- parsed by kopsci: {}{}",
        plan.counts().summary(),
        if plan.needs_apply {
            " (changes pending)"
        } else {
            " (no changes)"
        }
    );
    for (label, list) in [
        ("create", &plan.create),
        ("modify", &plan.modify),
        ("delete on --prune", &plan.delete_on_prune),
        ("delete", &plan.delete),
    ] {
        for resource in list {
            let _ = writeln!(out, "{label}: {}/{}", resource.kind, resource.name);
            for field in &resource.fields {
                let value = field.value.replace('\n', "\n      ");
                let _ = writeln!(out, "    {}: {value}", field.field);
            }
        }
    }
    for warning in &plan.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kops_update_text_keeps_the_output_and_adds_the_parse() {
        let out = "Will modify resources:\n  AutoscalingGroup/nodes.c\n  \tMaxSize             \t 2 -> 5\n\nMust specify --yes to apply changes\n";
        let plan = parse_update_output(out);
        let text = kops_update_text("c", out, &plan);
        assert_eq!(
            text,
            format!(
                "$ kops update cluster --name c --state file://<snapshot>\n{out}\n\
                 --- parsed by kopsci: 0 to create, 1 to modify, 0 to delete (changes pending)\n\
                 modify: AutoscalingGroup/nodes.c\n    MaxSize: 2 -> 5\n"
            )
        );
    }
}
