//! One stage's work on one cluster: [`ClusterRun`] holds what every step
//! needs (the fleet, the cluster, the settings, kops, the log, the report)
//! and has a method per step every stage shares — render, AWS identity,
//! snapshot of the live store, kops calls — each tagging failures with its
//! [`Step`]. A stage is a short composition of these steps run inside
//! [`ClusterRun::execute`], which always writes the report.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::aws::{AwsIdentity, resolve_identity, s3_for};
use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet};
use crate::fsutil::WorkDir;
use crate::kops::Kops;
use crate::process::{Invocation, Outcome, Runner};
use crate::stage::objects::{ManifestObjects, StoredObjects};
use crate::stage::plan::sha256_hex;
use crate::stage::report::{self, Action, MANIFEST_FILE, Report, StageKind, write_file};
use crate::stage::{KopsSetup, Log, StageSettings, Stop, cluster_report_dir, now_rfc3339};
use crate::state::{self, FilterSpec, Record, S3Settings, SnapshotOptions, StoreUrl};

/// A step of a stage: what a report says failed, and what the log's
/// sections are named after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Prepare,
    Render,
    Identity,
    Snapshot,
    PlanCheck,
    SpecDiff,
    KopsCreate,
    KopsReplace,
    KopsDeleteInstanceGroup,
    KopsUpdate,
    KopsUpdateYes,
    KopsRollingUpdate,
    ParseRollingUpdate,
    KopsReconcile,
    KopsPrune,
    KopsValidate,
    KopsDeleteCluster,
    KopsExportKubeconfig,
    Report,
}

impl Step {
    pub const ALL: [Step; 19] = [
        Step::Prepare,
        Step::Render,
        Step::Identity,
        Step::Snapshot,
        Step::PlanCheck,
        Step::SpecDiff,
        Step::KopsCreate,
        Step::KopsReplace,
        Step::KopsDeleteInstanceGroup,
        Step::KopsUpdate,
        Step::KopsUpdateYes,
        Step::KopsRollingUpdate,
        Step::ParseRollingUpdate,
        Step::KopsReconcile,
        Step::KopsPrune,
        Step::KopsValidate,
        Step::KopsDeleteCluster,
        Step::KopsExportKubeconfig,
        Step::Report,
    ];

    /// The name reports and logs use (`report.json`'s `failed_step`).
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Prepare => "prepare",
            Step::Render => "render",
            Step::Identity => "aws identity",
            Step::Snapshot => "snapshot",
            Step::PlanCheck => "plan check",
            Step::SpecDiff => "spec diff",
            Step::KopsCreate => "kops create",
            Step::KopsReplace => "kops replace",
            Step::KopsDeleteInstanceGroup => "kops delete instancegroup",
            Step::KopsUpdate => "kops update cluster",
            Step::KopsUpdateYes => "kops update cluster --yes",
            Step::KopsRollingUpdate => "kops rolling-update cluster",
            Step::ParseRollingUpdate => "parse rolling-update output",
            Step::KopsReconcile => "kops reconcile cluster",
            Step::KopsPrune => "kops update cluster --prune",
            Step::KopsValidate => "kops validate cluster",
            Step::KopsDeleteCluster => "kops delete cluster",
            Step::KopsExportKubeconfig => "kops export kubeconfig",
            Step::Report => "report",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Step {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Step {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Step, D::Error> {
        let name = String::deserialize(d)?;
        Step::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown step `{}`",
                    crate::text::escape_controls(&name)
                ))
            })
    }
}

/// What every cluster of one stage command shares.
pub struct Stage<'a> {
    pub fleet: &'a Fleet,
    pub kind: StageKind,
    /// Reports go to `<report_dir>/<cluster>/[<stage>/]`.
    pub report_dir: &'a Path,
    pub settings: &'a StageSettings,
    /// `None` for `dryrun --without-kops`.
    pub kops: Option<&'a KopsSetup>,
    pub stop: &'a Stop,
}

impl Stage<'_> {
    /// The report directory of `cluster` for this stage.
    pub fn dir(&self, cluster: &str) -> PathBuf {
        let dir = cluster_report_dir(self.report_dir, cluster);
        match self.kind.subdir() {
            Some(sub) => dir.join(sub),
            None => dir,
        }
    }
}

/// A rendered manifest, parsed.
pub struct Manifest {
    pub text: String,
    pub objects: ManifestObjects,
    pub sha256: String,
}

/// A private copy of a cluster's live state-store objects, usable as
/// `--state file://…`.
pub struct LiveCopy {
    /// The copy's store root (`DIR` of `file://DIR`).
    pub root: PathBuf,
    pub record: Record,
    /// `config` and `instancegroup/*` as they are now.
    pub stored: StoredObjects,
}

impl LiveCopy {
    /// `file://DIR`: what kops gets to work on the copy, never the live store.
    pub fn state_arg(&self) -> String {
        format!("file://{}", self.root.display())
    }

    pub fn cluster_dir(&self) -> PathBuf {
        self.root.join(&self.record.cluster)
    }

    /// `kops create` for a cluster the store does not have, else `replace`.
    pub fn action(&self) -> Action {
        if self.stored.exists() {
            Action::Replace
        } else {
            Action::Create
        }
    }
}

/// One stage on one cluster.
pub struct ClusterRun<'a> {
    stage: &'a Stage<'a>,
    pub cluster: &'a Cluster,
    pub log: Log,
    pub report: Report,
    /// The cluster's live store (`--state`, else the fleet's).
    store: Option<StoreUrl>,
    step: Step,
    identity: Option<AwsIdentity>,
    work: Option<WorkDir>,
}

/// What [`ClusterRun::execute`] leaves: the report as written, the steps'
/// result when they succeeded, and an interruption to pass on.
pub struct Finished<T> {
    pub report: Report,
    pub output: Option<T>,
    pub interrupted: Option<Error>,
    dir: PathBuf,
}

impl<T> Finished<T> {
    /// Writes one more file beside a complete, successful report (the dry
    /// run's `plan.json`): a failure to write it fails the report.
    /// `contents` returning `None` writes nothing.
    pub fn then_write(&mut self, name: &str, contents: impl FnOnce(&T) -> Result<Option<String>>) {
        let Some(output) = &self.output else { return };
        if self.report.failed.is_some() {
            return;
        }
        let written = contents(output).and_then(|text| match text {
            Some(text) => write_file(&self.dir, name, &text),
            None => Ok(()),
        });
        if let Err(e) = written {
            self.report.fail(Step::Report, &e);
            let _ = report::write_report(&self.dir, &self.report, false);
        }
    }

    /// The report, or the interruption that stopped the stage.
    pub fn into_result(self) -> Result<Report> {
        match self.interrupted {
            Some(e) => Err(e),
            None => Ok(self.report),
        }
    }
}

impl<'a> ClusterRun<'a> {
    pub fn new(stage: &'a Stage<'a>, cluster: &'a Cluster, log: Log) -> ClusterRun<'a> {
        let mut report = Report::new(stage.kind, &cluster.name, now_rfc3339());
        report.environment = Some(cluster.environment.clone());
        report.kops_version = stage.kops.map(|k| k.version.to_string());
        ClusterRun {
            stage,
            cluster,
            log,
            report,
            store: None,
            step: Step::Prepare,
            identity: None,
            work: None,
        }
    }

    pub fn fleet(&self) -> &'a Fleet {
        self.stage.fleet
    }

    pub fn name(&self) -> &'a str {
        &self.cluster.name
    }

    pub fn settings(&self) -> &'a StageSettings {
        self.stage.settings
    }

    /// This stage's report directory for the cluster.
    pub fn dir(&self) -> PathBuf {
        self.stage.dir(&self.cluster.name)
    }

    /// Runs `steps` inside the cluster's log section: the directory is
    /// created and `clear` (the files a previous run left) removed first,
    /// and the report is always written. A failed step is recorded in the
    /// report under its [`Step`]; only an interruption comes back as an
    /// error, after the report is written.
    pub fn execute<T>(
        mut self,
        clear: &[&str],
        steps: impl FnOnce(&mut ClusterRun<'a>) -> Result<T>,
    ) -> Finished<T> {
        let started = Instant::now();
        let dir = self.dir();
        let outcome = {
            let command = self.stage.kind.command();
            let _section = self.log.section(
                command,
                &format!("kopsci {command} {}", self.cluster.name),
                false,
            );
            self.prepare(&dir, clear).and_then(|()| steps(&mut self))
        };
        let (output, interrupted) = match outcome {
            Ok(output) => (Some(output), None),
            Err(e) => {
                self.report.fail(self.step, &e);
                let interrupted = matches!(e, Error::Interrupted { .. }).then_some(e);
                (None, interrupted)
            }
        };
        // Drop the private copy (keys included) before anything else.
        self.work = None;
        self.report.duration_seconds = started.elapsed().as_secs_f64();
        let terraform = self.stage.kind == StageKind::Dryrun && output.is_some();
        if let Err(e) = report::write_report(&dir, &self.report, terraform)
            && self.report.failed.is_none()
        {
            self.report.fail(Step::Report, &e);
        }
        Finished {
            report: self.report,
            output,
            interrupted,
            dir,
        }
    }

    fn prepare(&mut self, dir: &Path, clear: &[&str]) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        crate::stage::clear_previous(dir, clear)?;
        let store = self
            .stage
            .fleet
            .store_for(self.cluster, self.stage.settings.state.as_ref())?;
        self.report.state = Some(store.cluster_url(&self.cluster.name));
        self.store = Some(store);
        Ok(())
    }

    /// Enters `step`: failures from here on are tagged with it, and a
    /// signal that arrived stops the stage now.
    pub fn step(&mut self, step: Step) -> Result<()> {
        self.step = step;
        self.stage.stop.check()
    }

    /// The cluster's live store.
    pub fn store(&self) -> &StoreUrl {
        self.store
            .as_ref()
            .expect("the store is resolved before any step runs")
    }

    /// `--state` for kops calls on the live store.
    pub fn live_state_arg(&self) -> String {
        self.store().to_string()
    }

    /// Renders the cluster's manifest and writes `manifest.yaml`.
    pub fn render(&mut self) -> Result<Manifest> {
        self.step(Step::Render)?;
        let name = self.name();
        let text = {
            let _s = self.log.section("render", &format!("{name}: render"), true);
            self.stage.fleet.render_one(self.cluster)?
        };
        write_file(&self.dir(), MANIFEST_FILE, &text)?;
        let objects = ManifestObjects::parse(&text, name)?;
        Ok(Manifest {
            sha256: sha256_hex(text.as_bytes()),
            objects,
            text,
        })
    }

    /// The AWS identity of the cluster's stages: assumed once per run.
    pub fn identity(&mut self) -> Result<AwsIdentity> {
        if let Some(identity) = &self.identity {
            return Ok(identity.clone());
        }
        self.step(Step::Identity)?;
        let name = self.name();
        let identity = {
            let _s = self.cluster.aws.role_arn.as_ref().map(|role| {
                self.log
                    .section("identity", &format!("{name}: assume role {role}"), true)
            });
            resolve_identity(&self.cluster.aws, &self.stage.settings.sts)?
        };
        if !matches!(identity, AwsIdentity::Inherit { region: None }) {
            self.log.note(&identity.describe());
        }
        self.identity = Some(identity.clone());
        Ok(identity)
    }

    /// S3 settings that read the store as the cluster's identity.
    pub fn s3(&mut self) -> Result<S3Settings> {
        let identity = self.identity()?;
        Ok(s3_for(&identity, &self.stage.settings.s3))
    }

    /// A private work directory, removed when the run ends (or by the next
    /// run's sweep after a SIGKILL).
    pub fn work_dir(&mut self) -> Result<PathBuf> {
        if self.work.is_none() {
            let prefix = format!("kopsci-{}-", self.stage.kind.command());
            self.work = Some(WorkDir::create(&std::env::temp_dir(), &prefix)?);
        }
        Ok(self
            .work
            .as_ref()
            .map(|w| w.path().to_path_buf())
            .unwrap_or_default())
    }

    /// Copies the cluster's live objects into the work directory. The
    /// filter is always kopsci's default: what a plan's record covers is
    /// never chosen by the plan.
    pub fn snapshot(&mut self) -> Result<LiveCopy> {
        let s3 = self.s3()?;
        self.step(Step::Snapshot)?;
        let root = self.work_dir()?.join("state");
        let name = self.name();
        let store = self.store().clone();
        {
            let _s = self.log.section(
                "snapshot",
                &format!("{name}: snapshot of {}", store.cluster_url(name)),
                true,
            );
            let summary = state::snapshot(&SnapshotOptions {
                store,
                cluster: name.to_string(),
                out: root.clone(),
                filter: FilterSpec::default(),
                concurrency: self.stage.settings.concurrency,
                force: false,
                allow_empty: true,
                progress: false,
                s3,
            })?;
            self.log.note(&summary.line());
        }
        let record = Record::load(&root)?;
        let stored = StoredObjects::read(&root.join(name))?;
        Ok(LiveCopy {
            root,
            record,
            stored,
        })
    }

    /// kops as the cluster's identity, with its API server.
    pub fn kops(&mut self) -> Result<Kops> {
        let identity = self.identity()?;
        let setup = self.kops_setup()?;
        Ok(setup
            .kops(&identity)
            .with_api_server(self.cluster.apply.api_server.as_deref()))
    }

    pub fn kops_setup(&self) -> Result<&'a KopsSetup> {
        self.stage.kops.ok_or_else(|| Error::KopsNotFound {
            tried: "not looked for (--without-kops)".into(),
        })
    }

    /// Writes the manifest where kops can read it (`-f`), in the private
    /// work directory: no one else sees a partial file.
    pub fn manifest_file(&mut self, manifest: &Manifest) -> Result<PathBuf> {
        let path = self.work_dir()?.join(MANIFEST_FILE);
        std::fs::write(&path, &manifest.text).map_err(|e| Error::io(&path, e))?;
        Ok(path)
    }

    /// `kops create -f` or `kops replace --force -f` of the manifest on
    /// `state` (the live store, or a copy's `file://` URL).
    pub fn put_manifest(
        &mut self,
        manifest: &Manifest,
        action: Action,
        state: &str,
        what: &str,
    ) -> Result<()> {
        let path = self.manifest_file(manifest)?;
        let kops = self.kops()?;
        let (inv, step) = match action {
            Action::Create => (kops.create_file(&path, state), Step::KopsCreate),
            Action::Replace => (kops.replace_file(&path, state, true), Step::KopsReplace),
            Action::Delete => {
                return Err(Error::NotAbsent {
                    cluster: self.name().to_string(),
                    fleet: "a retired cluster's manifest is never applied".into(),
                });
            }
        };
        let header = format!("{}: {step} -f manifest.yaml {what}", self.name());
        self.run_kops(step, &header, &inv, true)?;
        Ok(())
    }

    /// Runs a kops call inside its own log section; a non-zero exit is an
    /// error tagged with `step`.
    pub fn run_kops(
        &mut self,
        step: Step,
        header: &str,
        inv: &Invocation,
        collapsed: bool,
    ) -> Result<Outcome> {
        self.run_kops_unchecked(step, header, inv, collapsed)?
            .checked(inv)
    }

    /// Runs a kops call and returns whatever it did: for calls whose
    /// output says more about a failure than the exit code (reconcile,
    /// validate).
    pub fn run_kops_unchecked(
        &mut self,
        step: Step,
        header: &str,
        inv: &Invocation,
        collapsed: bool,
    ) -> Result<Outcome> {
        match self.run_kops_to_end(step, header, inv, collapsed)? {
            (_, Some(interruption)) => Err(interruption),
            (outcome, None) => Ok(outcome),
        }
    }

    /// As [`ClusterRun::run_kops_unchecked`], with an interruption beside
    /// what kops printed before it stopped: for the long calls (reconcile,
    /// rolling update) whose report must say how far they got.
    pub fn run_kops_to_end(
        &mut self,
        step: Step,
        header: &str,
        inv: &Invocation,
        collapsed: bool,
    ) -> Result<(Outcome, Option<Error>)> {
        self.step(step)?;
        let section = step.as_str().replace(' ', "-");
        let (outcome, interrupted) = {
            let _s = self.log.section(&section, header, collapsed);
            Runner::new(self.log.echo()).run_to_end(inv)?
        };
        self.report.kops_seconds += outcome.duration.as_secs_f64();
        self.report.kops_commands.push(inv.command_line());
        Ok((outcome, interrupted))
    }

    /// Writes a file into the report directory.
    pub fn write(&self, name: &str, contents: &str) -> Result<()> {
        write_file(&self.dir(), name, contents)
    }

    /// A warning in the report and the log.
    pub fn warn(&mut self, text: String) {
        self.log
            .line(&format!("warning: {}: {text}", self.cluster.name));
        self.report.warnings.push(text);
    }
}
