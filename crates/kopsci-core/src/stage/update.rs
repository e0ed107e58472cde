//! `kopsci update CLUSTER`: apply what the dry run reviewed, and only that.
//!
//! 1. Render the manifest again and load the dry run's `plan.json`.
//! 2. Refuse (unless `--allow-stale`) when there is no plan, when it was
//!    made for another cluster, store or manifest, or when the live store
//!    changed since the dry run's snapshot (`snapshot verify` against the
//!    plan's record).
//! 3. `kops replace --force -f` (or `kops create -f` for a new cluster) on
//!    the live store; with `--prune-instance-groups`, `kops delete
//!    instancegroup NAME --yes` for each group the manifest dropped; then
//!    `kops update cluster --yes` with the user's extra flags.
//!
//! The report goes to `<report dir>/<cluster>/update/`, beside the dry
//! run's, which it never overwrites.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::aws::AwsIdentity;
use crate::aws::{resolve_identity, s3_for};
use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet, Overrides};
use crate::kops::parse_update_output;
use crate::process::Runner;
use crate::render::RenderOptions;
use crate::stage::objects::{ManifestObjects, StoredObjects};
use crate::stage::plan::{Plan, sha256_hex};
use crate::stage::report::{
    Action, CountsSource, KOPS_UPDATE_FILE, MANIFEST_FILE, REPORT_JSON, REPORT_MD, Report,
    StageKind, write_file,
};
use crate::stage::{
    KopsSetup, Log, StageSettings, Stop, clear_previous, cluster_log, cluster_report_dir,
    run_cluster_stage, store_for,
};
use crate::state::{self, FilterSpec, S3Settings, SnapshotOptions, StoreUrl};

/// The sub-directory of a cluster's report directory for `update`.
pub const UPDATE_DIR: &str = "update";

/// `kopsci update`'s options.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// Where the dry run wrote `<cluster>/plan.json`; the update's report
    /// goes to `<cluster>/update/`.
    pub report_dir: PathBuf,
    /// Apply even without a plan, or with a stale one.
    pub allow_stale: bool,
    /// Delete instance groups the manifest no longer has.
    pub prune_instance_groups: bool,
    pub kops: Option<PathBuf>,
    /// Extra flags for `kops update cluster`.
    pub kops_args: Vec<OsString>,
    pub settings: StageSettings,
}

/// What the update applies, decided from the plan or, when stale is
/// allowed, from the live store.
struct Decision {
    action: Action,
    removed: Vec<String>,
}

/// Updates one cluster. A failure of the cluster's own steps (stale plan,
/// kops failing) is in the returned report's `failed`; errors are for what
/// stops before any step (no kops) and for signals.
pub fn update(fleet: &Fleet, cluster: &Cluster, opts: &UpdateOptions) -> Result<Report> {
    let stop = Stop::watch()?;
    // Checked before the plan: a wrong kops must not get as far as the store.
    crate::kops::command::check_extra("kops update cluster", &opts.kops_args)?;
    let kops = KopsSetup::locate(opts.kops.as_deref(), fleet)?;
    let log = cluster_log(opts.settings.log, &cluster.name, false);
    let dir = cluster_report_dir(&opts.report_dir, &cluster.name).join(UPDATE_DIR);
    run_cluster_stage(
        StageKind::Update,
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
    opts: &UpdateOptions,
    setup: &KopsSetup,
    stop: &Stop,
    log: &Log,
    report: &mut Report,
    step: &mut &'static str,
) -> Result<()> {
    let name = cluster.name.as_str();
    let settings = &opts.settings;
    let plan_dir = cluster_report_dir(&opts.report_dir, name);
    let dir = plan_dir.join(UPDATE_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    clear_previous(
        &dir,
        &[REPORT_MD, REPORT_JSON, KOPS_UPDATE_FILE, MANIFEST_FILE],
    )?;
    let store = store_for(fleet, cluster, settings.state.as_deref())?;
    let state_arg = store.to_string();
    report.state = Some(store.cluster_url(name));

    *step = "render";
    stop.check()?;
    let manifest = fleet
        .render(&[cluster], &Overrides::default(), &RenderOptions::default())?
        .into_iter()
        .next()
        .map(|m| m.text)
        .unwrap_or_default();
    let objects = ManifestObjects::parse(&manifest, name)?;
    write_file(&dir, MANIFEST_FILE, &manifest)?;

    *step = "aws identity";
    let identity = resolve_identity(&fleet.aws_for(cluster), &settings.sts)?;
    if !matches!(identity, AwsIdentity::Inherit { region: None }) {
        log.note(&identity.describe());
    }
    let s3 = s3_for(&identity, &settings.s3);

    *step = "plan check";
    stop.check()?;
    let decision = {
        let _s = log.section("plan", &format!("{name}: check the dry run's plan"), false);
        check_plan(
            name,
            &plan_dir,
            &state_arg,
            &manifest,
            &objects,
            &store,
            &s3,
            settings.concurrency,
            opts.allow_stale,
            log,
            report,
        )?
    };
    report.action = Some(decision.action);
    report.removed_instance_groups = decision.removed.clone();

    let kops = setup.kops(&identity);
    let runner = Runner::new(log.echo());
    let work = crate::fsutil::WorkDir::create(&std::env::temp_dir(), "kopsci-update-")?;
    let manifest_path = work.path().join(MANIFEST_FILE);
    // A private temporary directory: no one else sees a partial file.
    std::fs::write(&manifest_path, &manifest).map_err(|e| Error::io(&manifest_path, e))?;

    let (inv, label) = match decision.action {
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
            &format!("{name}: {label} -f manifest.yaml on {state_arg}"),
            false,
        );
        report.kops_seconds += runner.run(&inv)?.duration.as_secs_f64();
    }

    if opts.prune_instance_groups {
        *step = "kops delete instancegroup";
        for group in &decision.removed {
            stop.check()?;
            let _s = log.section(
                &format!("prune-{group}"),
                &format!("{name}: kops delete instancegroup {group}"),
                false,
            );
            let deleted = runner.run(&kops.delete_instance_group(group, name, &state_arg))?;
            report.kops_seconds += deleted.duration.as_secs_f64();
            report.pruned_instance_groups.push(group.clone());
        }
    } else if !decision.removed.is_empty() {
        report.warnings.push(format!(
            "instance group(s) {} are in the state store but not in the manifest and were kept; pass --prune-instance-groups to delete them",
            decision.removed.join(", ")
        ));
    }

    *step = "kops update cluster --yes";
    stop.check()?;
    let outcome = {
        let _s = log.section(
            "kops-update",
            &format!("{name}: kops update cluster --yes"),
            false,
        );
        runner.run(&kops.update_cluster(name, &state_arg, true, &opts.kops_args)?)?
    };
    report.kops_seconds += outcome.duration.as_secs_f64();
    let applied = parse_update_output(&outcome.stdout);
    write_file(
        &dir,
        KOPS_UPDATE_FILE,
        &format!(
            "$ kops update cluster --name {name} --state {state_arg} --yes{}\n{}",
            opts.kops_args
                .iter()
                .map(|a| format!(" {}", crate::process::shell_quote(a)))
                .collect::<String>(),
            outcome.stdout
        ),
    )?;
    report.kops_output = outcome.stdout;
    report.update_plan = Some(applied);
    Ok(())
}

/// Loads and checks the plan; returns what to apply. Refuses a stale or
/// missing plan unless `allow_stale`, in which case the live store decides.
#[allow(clippy::too_many_arguments)]
fn check_plan(
    name: &str,
    plan_dir: &std::path::Path,
    state_arg: &str,
    manifest: &str,
    objects: &ManifestObjects,
    store: &StoreUrl,
    s3: &S3Settings,
    concurrency: usize,
    allow_stale: bool,
    log: &Log,
    report: &mut Report,
) -> Result<Decision> {
    let mut reasons = Vec::new();
    let plan = Plan::load(plan_dir)?;
    match &plan {
        None => reasons.push(format!(
            "no {} in {}: run `kopsci dryrun {name}` first (its report directory must reach this job)",
            crate::stage::PLAN_FILE,
            plan_dir.display()
        )),
        Some(plan) => {
            reasons.extend(plan.mismatches(name, state_arg, &sha256_hex(manifest.as_bytes())));
            if reasons.is_empty() {
                let verify = plan.verify_live(s3, concurrency)?;
                log.note(verify.render().trim_end());
                if verify.changed() {
                    let mut keys: Vec<String> = Vec::new();
                    for (label, list) in [
                        ("added", &verify.added),
                        ("removed", &verify.removed),
                        ("modified", &verify.modified),
                    ] {
                        keys.extend(list.iter().map(|k| format!("{label} {k}")));
                    }
                    reasons.push(format!(
                        "the live state store changed since the dry run's snapshot of {} ({}): {}",
                        plan.snapshot.time,
                        verify.source,
                        keys.join(", ")
                    ));
                }
            }
        }
    }
    if reasons.is_empty()
        && let Some(plan) = plan
    {
        log.note(&format!(
            "plan of {} is current: same manifest, live store unchanged",
            plan.created_at
        ));
        if plan.without_kops {
            report.warnings.push(
                "the plan comes from a `--without-kops` dry run: kops never previewed this change"
                    .into(),
            );
        }
        report.set_counts(
            plan.counts,
            if plan.without_kops {
                CountsSource::SpecDiff
            } else {
                CountsSource::Kops
            },
        );
        report.changes_pending = plan.changes_pending;
        return Ok(Decision {
            action: plan.action,
            removed: plan.removed_instance_groups,
        });
    }
    if !allow_stale {
        return Err(Error::StalePlan {
            cluster: name.to_string(),
            reasons,
        });
    }
    for reason in &reasons {
        report
            .warnings
            .push(format!("--allow-stale: applied although {reason}"));
        log.line(&format!("warning: {name}: --allow-stale: {reason}"));
    }
    // No trustworthy plan: read what the live store holds now.
    let work = crate::fsutil::WorkDir::create(&std::env::temp_dir(), "kopsci-update-")?;
    let out = work.path().join("state");
    state::snapshot(&SnapshotOptions {
        store: store.clone(),
        cluster: name.to_string(),
        out: out.clone(),
        filter: FilterSpec::default(),
        concurrency,
        force: false,
        allow_empty: true,
        progress: false,
        s3: s3.clone(),
    })?;
    let live = StoredObjects::read(&out.join(name))?;
    report.changes_pending = true;
    Ok(Decision {
        action: if live.exists() {
            Action::Replace
        } else {
            Action::Create
        },
        removed: live.removed_instance_groups(objects),
    })
}
