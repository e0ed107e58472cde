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
use std::time::Instant;

use crate::aws::AwsIdentity;
use crate::aws::{resolve_identity, s3_for};
use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet, Overrides};
use crate::kops::{UpdatePlan, parse_update_output};
use crate::process::Runner;
use crate::render::RenderOptions;
use crate::stage::objects::{ManifestObjects, StoredObjects, state_diff};
use crate::stage::plan::{PLAN_FILE, PLAN_FORMAT, Plan, sha256_hex};
use crate::stage::report::{
    self, Action, CountsSource, KOPS_UPDATE_FILE, MANIFEST_FILE, REPORT_JSON, REPORT_MD, Report,
    STATE_DIFF_FILE, StageKind, TERRAFORM_REPORT, write_file,
};
use crate::stage::spec_diff::spec_diff;
use crate::stage::{
    KopsSetup, Log, StageResult, StageSettings, Stop, bounded, clear_previous, cluster_log,
    cluster_report_dir, now_rfc3339, store_for,
};
use crate::state::{self, FilterSpec, Record, SnapshotOptions};

/// What the report says when kops did not run.
pub const KOPS_SKIPPED: &str =
    "kops was not run (`--without-kops`): the cloud-level plan was skipped.";

/// Every file a dry run writes into a cluster's report directory.
pub const DRYRUN_FILES: &[&str] = &[
    MANIFEST_FILE,
    STATE_DIFF_FILE,
    KOPS_UPDATE_FILE,
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
    let kops = if opts.without_kops {
        None
    } else {
        Some(KopsSetup::locate(opts.kops.as_deref(), fleet)?)
    };
    std::fs::create_dir_all(&opts.report_dir).map_err(|e| Error::io(&opts.report_dir, e))?;
    if kops.is_none() {
        // Said once up front, and again in every report.
        Log::live(opts.settings.log, "kopsci").note(KOPS_SKIPPED);
    }
    let parallel = clusters.len() > 1 && opts.jobs > 1;
    let reports = bounded(clusters, opts.jobs, |cluster| {
        if stop.check().is_err() {
            return None;
        }
        let log = cluster_log(opts.settings.log, &cluster.name, parallel);
        let report = dryrun_cluster(fleet, cluster, opts, kops.as_ref(), &stop, &log);
        log.flush();
        Some(report)
    });
    // Every cluster has stopped and removed its snapshot by now.
    stop.check()?;
    Ok(StageResult { reports })
}

fn dryrun_cluster(
    fleet: &Fleet,
    cluster: &Cluster,
    opts: &DryrunOptions,
    kops: Option<&KopsSetup>,
    stop: &Stop,
    log: &Log,
) -> Report {
    let started = Instant::now();
    let mut report = Report::new(StageKind::Dryrun, &cluster.name, now_rfc3339());
    report.environment = Some(cluster.environment.clone());
    let dir = cluster_report_dir(&opts.report_dir, &cluster.name);
    let _section = log.section("dryrun", &format!("kopsci dryrun {}", cluster.name), false);
    let mut step = "prepare";
    let plan = match steps(
        fleet,
        cluster,
        opts,
        kops,
        stop,
        log,
        &mut report,
        &mut step,
    ) {
        Ok(plan) => Some(plan),
        Err(e) => {
            report.fail(step, &e);
            None
        }
    };
    report.duration_seconds = started.elapsed().as_secs_f64();
    let written = report::write_report(&dir, &report, plan.is_some()).and_then(|()| {
        // Last, so that a plan only ever sits beside a complete report.
        match &plan {
            Some(plan) => write_file(&dir, PLAN_FILE, &plan.to_json()?),
            None => Ok(()),
        }
    });
    if let Err(e) = written {
        report.fail("report", &e);
    }
    report
}

#[allow(clippy::too_many_arguments)]
fn steps(
    fleet: &Fleet,
    cluster: &Cluster,
    opts: &DryrunOptions,
    kops: Option<&KopsSetup>,
    stop: &Stop,
    log: &Log,
    report: &mut Report,
    step: &mut &'static str,
) -> Result<Plan> {
    let name = cluster.name.as_str();
    let settings = &opts.settings;
    let dir = cluster_report_dir(&opts.report_dir, name);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    clear_previous(&dir, DRYRUN_FILES)?;
    let store = store_for(fleet, cluster, settings.state.as_deref())?;
    report.state = Some(store.cluster_url(name));

    *step = "render";
    stop.check()?;
    let manifest = {
        let _s = log.section("render", &format!("{name}: render"), true);
        fleet
            .render(&[cluster], &Overrides::default(), &RenderOptions::default())?
            .into_iter()
            .next()
            .map(|m| m.text)
            .unwrap_or_default()
    };
    write_file(&dir, MANIFEST_FILE, &manifest)?;
    let objects = ManifestObjects::parse(&manifest, name)?;

    *step = "aws identity";
    let aws = fleet.aws_for(cluster);
    let identity = {
        let _s = aws
            .role_arn
            .as_ref()
            .map(|role| log.section("identity", &format!("{name}: assume role {role}"), true));
        resolve_identity(&aws, &settings.sts)?
    };
    if !matches!(identity, AwsIdentity::Inherit { region: None }) {
        log.note(&identity.describe());
    }
    let s3 = s3_for(&identity, &settings.s3);

    *step = "snapshot";
    stop.check()?;
    let work = crate::fsutil::WorkDir::create(&std::env::temp_dir(), "kopsci-dryrun-")?;
    let snapshot_dir = work.path().join("state");
    {
        let _s = log.section(
            "snapshot",
            &format!("{name}: snapshot of {}", store.cluster_url(name)),
            true,
        );
        let summary = state::snapshot(&SnapshotOptions {
            store: store.clone(),
            cluster: name.to_string(),
            out: snapshot_dir.clone(),
            filter: FilterSpec::default(),
            concurrency: settings.concurrency,
            force: false,
            allow_empty: true,
            progress: false,
            s3,
        })?;
        log.note(&summary.line());
    }
    let record = Record::load(&snapshot_dir)?;
    let cluster_dir = snapshot_dir.join(name);
    let before = StoredObjects::read(&cluster_dir)?;
    let action = if before.exists() {
        Action::Replace
    } else {
        Action::Create
    };
    report.action = Some(action);
    report.removed_instance_groups = before.removed_instance_groups(&objects);

    match kops {
        None => {
            *step = "spec diff";
            let _s = log.section(
                "specdiff",
                &format!("{name}: spec diff (kops skipped)"),
                true,
            );
            let diff = spec_diff(&objects, &before)?;
            report.set_counts(diff.counts(), CountsSource::SpecDiff);
            report.changes_pending = diff.has_changes();
            report.spec_changes = diff.objects;
            report.state_diff = diff.text;
            report.kops_skipped = Some(KOPS_SKIPPED.to_string());
            write_file(&dir, STATE_DIFF_FILE, &report.state_diff)?;
            write_file(&dir, KOPS_UPDATE_FILE, &format!("{KOPS_SKIPPED}\n"))?;
        }
        Some(setup) => {
            let kops = setup.kops(&identity);
            let runner = Runner::new(log.echo());
            let state_arg = format!("file://{}", snapshot_dir.display());
            let manifest_path = work.path().join(MANIFEST_FILE);
            // A private temporary directory: no one else sees a partial file.
            std::fs::write(&manifest_path, &manifest).map_err(|e| Error::io(&manifest_path, e))?;
            report.kops_version = Some(setup.version.to_string());

            let (inv, label) = match action {
                Action::Create => (kops.create_file(&manifest_path, &state_arg), "kops create"),
                Action::Replace => (
                    kops.replace_file(&manifest_path, &state_arg, true),
                    "kops replace",
                ),
            };
            *step = label;
            stop.check()?;
            {
                let _s = log.section(
                    "apply",
                    &format!("{name}: {label} -f manifest.yaml (against the snapshot)"),
                    true,
                );
                report.kops_seconds += runner.run(&inv)?.duration.as_secs_f64();
            }
            let after = StoredObjects::read(&cluster_dir)?;
            report.state_diff = state_diff(&before, &after);
            // The raw diff also shows how kOps re-serialises objects; the
            // semantic one says what actually changed.
            report.spec_changes = spec_diff(&objects, &before)?.objects;
            write_file(&dir, STATE_DIFF_FILE, &report.state_diff)?;

            *step = "kops update cluster";
            stop.check()?;
            let outcome = {
                let _s = log.section(
                    "update",
                    &format!("{name}: kops update cluster (dry run against the snapshot)"),
                    false,
                );
                runner.run(&kops.update_cluster(name, &state_arg, false, &[])?)?
            };
            report.kops_seconds += outcome.duration.as_secs_f64();
            let plan = parse_update_output(&outcome.stdout);
            report.set_counts(plan.counts(), CountsSource::Kops);
            report.changes_pending = plan.needs_apply
                || !report.state_diff.is_empty()
                || !report.removed_instance_groups.is_empty();
            report.warnings.extend(
                plan.warnings
                    .iter()
                    .map(|w| format!("kops update output: {w}")),
            );
            write_file(
                &dir,
                KOPS_UPDATE_FILE,
                &kops_update_text(name, &outcome.stdout, &plan),
            )?;
            report.kops_output = outcome.stdout;
            report.update_plan = Some(plan);
        }
    }
    *step = "report";
    let record_json = record.to_json();
    Ok(Plan {
        format: PLAN_FORMAT.to_string(),
        cluster: name.to_string(),
        state: store.to_string(),
        manifest_sha256: sha256_hex(manifest.as_bytes()),
        action,
        removed_instance_groups: report.removed_instance_groups.clone(),
        changes_pending: report.changes_pending,
        counts: report.counts(),
        kops_version: report.kops_version.clone(),
        without_kops: kops.is_none(),
        created_at: now_rfc3339(),
        snapshot_sha256: sha256_hex(record_json.as_bytes()),
        snapshot: record,
    })
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
