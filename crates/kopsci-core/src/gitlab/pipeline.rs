//! The child pipeline `kopsci pipeline` emits: GitLab CI YAML for the
//! clusters a change affects, built from the typed jobs of [`ci`].
//!
//! * **Merge requests** (and any branch but the default one) get one
//!   dry-run job per affected cluster and, with `mr_note`, a `kopsci:note`
//!   job that posts the merge-request note from their reports.
//! * **The default branch** gets the dry runs again (on the merged result),
//!   then per cluster what its fleet entry says (`apply:`): one `apply`
//!   job (`reconcile`, the default: `kops reconcile cluster`, control plane
//!   first) or an `update` job then a `roll` job (`update-roll`); each
//!   first job `needs:` its dry run with artifacts (the `plan.json` it
//!   checks). A cluster marked `absent: true` gets one `delete` job
//!   instead. These jobs are manual, except the apply (or update) jobs of
//!   clusters with `auto_apply: true` and the roll jobs of those with
//!   `auto_roll: true`; deletions always are.
//! * **Drift** (scheduled pipelines, `--for drift`) gets a dry run of every
//!   cluster with `--detailed-exitcode` and nothing that applies: a cluster
//!   whose live state differs from what the fleet renders fails its job
//!   (exit code 2), so the pipeline turns red. A last `kopsci:drift-report`
//!   job, when `KOPSCI_GITLAB_TOKEN` is set, runs `kopsci drift` over every
//!   dry run's reports (a later stage without `needs`, so it gets every dry
//!   run's artifacts however many there are).
//!
//! Every job of a cluster shares `resource_group: kops-<cluster>`, so two
//! pipelines never work on one cluster at once, and names the GitLab
//! environment `<environment>/<cluster>`: `action: prepare` for dry runs
//! (nothing is deployed), `action: start` for apply, update and roll (they
//! change the cluster, and a protected environment must guard them),
//! `action: stop` for delete. Those are `interruptible: false`: a newer
//! pipeline must never cancel a half-applied change. Apply, roll and
//! delete get the fleet's `apply.timeout` as GitLab `timeout:` (long rolls
//! outlast GitLab's default hour). Only the cluster jobs get the runner `tags` (they
//! reach AWS); the note, report, gate and message jobs run anywhere. Cluster
//! jobs fetch the commit only (`GIT_DEPTH: 1`): they render from the
//! working tree and need no history.
//!
//! **Dry-run exit codes.** Outside drift pipelines the dry run runs without
//! `--detailed-exitcode`: pending changes are the normal outcome of a merge
//! request, and GitLab's merge-request widget shows their counts from the
//! terraform report (`artifacts:reports:terraform`) and the note lists
//! them. Using exit code 2 with `allow_failure: exit_codes: [2]` was
//! considered and rejected: every merge request with changes would show its
//! dry runs as warnings, and artifacts of a failed job upload only with
//! `when: always`, which the update job must not rely on. (Usage errors
//! exit 64, never 2.) Dry-run artifacts are still uploaded `when: always`,
//! so a failed dry run keeps its kops output for debugging; `update` needs
//! a *successful* dry run.
//!
//! **Promotion.** Environments are ordered by their `needs` (stages
//! `apply-<env>`, `update-<env>`, `roll-<env>`, `delete-<env>` each, those
//! it uses, in that order). A cluster's first job (apply or update) waits
//! for the *last* job (apply, or roll) of every affected cluster of the
//! nearest environments it depends on that have any (environments with
//! none are looked through), so `prod` changes only after `dev` finished,
//! whichever strategy each cluster uses. Deletions take no part: they wait
//! for their own dry run only, and nothing waits for them. GitLab allows
//! [`GITLAB_MAX_NEEDS`] `needs` per job: beyond that the first jobs need
//! *gates* instead, no-op jobs (stage `gate-<env>`) that each need up to
//! 50 jobs, or 50 gates of the level below, so the order holds at any
//! size. Manual jobs are `allow_failure: false`: otherwise a failed (or
//! never started) update would count as done and let its roll, or the
//! next environment, proceed.
//!
//! **Limits.** GitLab refuses a pipeline with more jobs than its plan
//! allows (`ci_pipeline_size`: none by default on self-managed GitLab,
//! 500–2000 on GitLab.com) or more deployments (jobs with an
//! `environment`, `ci_pipeline_deployments`: 500 by default everywhere);
//! [`Limits`] checks both before GitLab does. With `split_by_environment`
//! a default-branch pipeline becomes one child pipeline per environment
//! (and per part of an environment too big for the limits), started in
//! promotion order by trigger jobs that mirror them (`strategy: depend`).
//!
//! **AWS.** With `aws_oidc_audience`, cluster jobs get a GitLab ID token
//! (`id_tokens`) written to a file for the AWS SDKs' web-identity
//! provider, and `AWS_ROLE_ARN` from `$KOPSCI_DRYRUN_ROLE_ARN` (dry runs)
//! or `$KOPSCI_UPDATE_ROLE_ARN` (apply, update, roll, delete): the read-only and the write
//! role are CI/CD variables, so they can be scoped to environments and the
//! write one protected.
//!
//! The output is deterministic: environments in dependency order (ties in
//! fleet-file order), clusters in fleet-file order.

pub mod ci;
pub mod downstream;
mod split;

use std::collections::BTreeSet;
use std::path::Path;

use indexmap::IndexMap;

use crate::errors::{Error, Result};
use crate::fleet::{ApplyStrategy, Cluster, Fleet};
use crate::gitlab::affected::{
    Everything, RepoPaths, Scope, Selection, changes_since, format_explanation, read_fleet_at_base,
    select,
};
use crate::gitlab::ci_env::{BaseSource, CiEnv, PipelineKind};
use crate::gitlab::git::Git;
use crate::process::shell_quote;

use downstream::DownstreamJobs;

use ci::{
    AccessLevel, AllowFailure, Artifacts, ClusterSetup, Defaults, DeployJob, Document, DryRunJob,
    Environment, EnvironmentAction, GateJob, GlobalVariables, IdToken, IdTokens, Job, JobVariables,
    MessageJob, Need, ReportJob, Reports, Rule, When,
};

/// GitLab's limit on `needs:` entries per job (`ci_needs_size_limit`, 50
/// on GitLab.com and by default on self-managed GitLab).
pub const GITLAB_MAX_NEEDS: usize = 50;

/// GitLab's default limit on deployment jobs (jobs with an `environment`)
/// per pipeline (`ci_pipeline_deployments`), on every plan.
pub const GITLAB_MAX_DEPLOYMENTS: usize = 500;

/// GitLab's default limit on the size of a dynamic child pipeline's YAML
/// (`max_artifacts_content_include_size`, 5 MiB).
pub const GITLAB_MAX_CHILD_YAML_BYTES: usize = 5 * 1024 * 1024;

/// The GitLab ID token given to cluster jobs with `aws_oidc_audience`.
pub const ID_TOKEN_VARIABLE: &str = "KOPSCI_ID_TOKEN";

/// Where cluster jobs write that token for the AWS SDKs, relative to the
/// project directory.
pub const WEB_IDENTITY_TOKEN_FILE: &str = ".kopsci/web-identity-token";

/// The CI/CD variable holding the role dry runs assume (read-only).
pub const DRYRUN_ROLE_VARIABLE: &str = "KOPSCI_DRYRUN_ROLE_ARN";

/// The CI/CD variable holding the role apply, update, roll and delete
/// assume (write).
pub const UPDATE_ROLE_VARIABLE: &str = "KOPSCI_UPDATE_ROLE_ARN";

/// Where kops releases are downloaded from when `kops_version` is set.
pub const KOPS_DOWNLOAD_URL: &str = "https://github.com/kubernetes/kops/releases/download";

/// The variable whose presence adds the drift report job's run.
pub const TOKEN_VARIABLE: &str = crate::gitlab::ci_env::TOKEN_VARIABLE;

/// Who may download the generated jobs' artifacts (reports and plans can
/// hold user data and hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArtifactsAccess {
    /// `access: <level>` (GitLab 16.11+).
    Level(AccessLevel),
    /// `public: false`, the form GitLab understood before 16.11.
    PublicFalse,
}

/// The GitLab limits a generated pipeline must stay within; 0 means not
/// checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Jobs per pipeline (`ci_pipeline_size`).
    pub max_jobs: usize,
    /// Deployment jobs per pipeline (`ci_pipeline_deployments`).
    pub max_deployments: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_jobs: 0,
            max_deployments: GITLAB_MAX_DEPLOYMENTS,
        }
    }
}

/// How the child pipeline is generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOptions {
    pub kind: PipelineKind,
    /// The command jobs run kopsci with.
    pub kopsci: String,
    /// The jobs' image; the runner's default when `None`.
    pub image: Option<String>,
    /// Runner tags for the jobs that reach AWS (dry run, update, roll).
    pub tags: Vec<String>,
    /// Where dry runs write their reports, relative to the project directory.
    pub report_dir: String,
    /// `artifacts:expire_in` of every job.
    pub expire_in: String,
    /// Who may download the artifacts.
    pub artifacts_access: ArtifactsAccess,
    /// The fleet file relative to the repository's top level (jobs run
    /// there); passed to jobs as `KOPSCI_FLEET` unless it is `kopsci.yaml`.
    pub fleet: String,
    /// Add the merge-request note job (merge-request pipelines only).
    pub mr_note: bool,
    /// Give dry-run jobs their `environment` (`action: prepare`). Off for
    /// projects whose protected environments would stop developers' dry
    /// runs, or whose dry runs would pass the deployment limit.
    pub dryrun_environment: bool,
    /// Install this kops release in every job when the image has another.
    pub kops_version: Option<String>,
    /// Base URL of kops releases (a mirror, for runners without GitHub).
    pub kops_download_url: String,
    /// Authenticate cluster jobs to AWS with a GitLab ID token for this
    /// audience (`sts.amazonaws.com`): dry runs assume the role in
    /// `KOPSCI_DRYRUN_ROLE_ARN`, apply, update, roll and delete the one in
    /// `KOPSCI_UPDATE_ROLE_ARN` (CI/CD variables, which may be scoped to
    /// environments and protected).
    pub aws_oidc_audience: Option<String>,
    /// Drift pipelines: a drifted cluster's job is a warning
    /// (`allow_failure: exit_codes: [2]`) rather than a failure.
    pub drift_allow_failure: bool,
    /// Default-branch pipelines: one child pipeline per environment.
    pub split_by_environment: bool,
    /// The limits checked.
    pub limits: Limits,
    /// Split pipelines: where the environments' files go, relative to the
    /// project directory (the trigger jobs include them from there).
    pub children_dir: String,
    /// Split pipelines: the job that writes these files, and its pipeline
    /// (`CI_JOB_NAME`, `CI_PIPELINE_ID`).
    pub generator_job: String,
    pub generator_pipeline: Option<String>,
    /// Default-branch pipelines: the fleet repository's jobs to run after
    /// the cluster jobs they `needs:`.
    pub downstream: Option<DownstreamJobs>,
}

impl PipelineOptions {
    /// The defaults for `kind`.
    pub fn new(kind: PipelineKind) -> PipelineOptions {
        PipelineOptions {
            kind,
            kopsci: "kopsci".to_string(),
            image: None,
            tags: Vec::new(),
            report_dir: crate::DEFAULT_REPORT_DIR.to_string(),
            expire_in: "1 week".to_string(),
            artifacts_access: ArtifactsAccess::Level(AccessLevel::Developer),
            fleet: crate::fleet::DEFAULT_FLEET_FILE.to_string(),
            mr_note: false,
            dryrun_environment: true,
            kops_version: None,
            kops_download_url: KOPS_DOWNLOAD_URL.to_string(),
            aws_oidc_audience: None,
            drift_allow_failure: false,
            split_by_environment: false,
            limits: Limits::default(),
            children_dir: ".kopsci/children".to_string(),
            generator_job: "kopsci:pipeline".to_string(),
            generator_pipeline: None,
            downstream: None,
        }
    }
}

/// Job names, one place.
pub fn dryrun_job(cluster: &str) -> String {
    format!("dryrun:{cluster}")
}
pub fn apply_job(cluster: &str) -> String {
    format!("apply:{cluster}")
}
pub fn delete_job(cluster: &str) -> String {
    format!("delete:{cluster}")
}
pub fn update_job(cluster: &str) -> String {
    format!("update:{cluster}")
}
pub fn roll_job(cluster: &str) -> String {
    format!("roll:{cluster}")
}
pub const NOTE_JOB: &str = "kopsci:note";
pub const NOTHING_JOB: &str = "kopsci:nothing-to-do";
pub const DRIFT_REPORT_JOB: &str = "kopsci:drift-report";

/// Environments in promotion order: every environment after those it
/// `needs`, ties in fleet-file order. The fleet file was checked for cycles
/// when it was loaded; should one slip through, the rest follow in file
/// order rather than being dropped.
pub fn environment_order(fleet: &Fleet) -> Vec<String> {
    let envs: Vec<(String, Vec<String>)> = fleet
        .environments()
        .map(|e| (e.name.clone(), e.needs.clone()))
        .collect();
    let mut placed: Vec<String> = Vec::with_capacity(envs.len());
    while placed.len() < envs.len() {
        let next = envs
            .iter()
            .find(|(name, needs)| {
                !placed.contains(name) && needs.iter().all(|n| placed.contains(n))
            })
            .or_else(|| envs.iter().find(|(name, _)| !placed.contains(name)));
        match next {
            Some((name, _)) => placed.push(name.clone()),
            None => break,
        }
    }
    placed
}

/// What the default branch does with an affected cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rollout {
    /// `apply: reconcile`: one `apply` job.
    Apply,
    /// `apply: update-roll`: an `update` job, then a `roll` job.
    UpdateRoll,
    /// `absent: true`: one `delete` job, outside promotion.
    Delete,
}

impl Rollout {
    /// Jobs per cluster in a default-branch pipeline, its dry run included.
    fn jobs(self) -> usize {
        match self {
            Rollout::Apply | Rollout::Delete => 2,
            Rollout::UpdateRoll => 3,
        }
    }
}

/// An affected cluster, with the fleet entry its jobs follow.
#[derive(Debug, Clone, Copy)]
struct Target<'a> {
    cluster: &'a Cluster,
}

impl<'a> Target<'a> {
    fn name(&self) -> &'a str {
        &self.cluster.name
    }

    fn env(&self) -> &'a str {
        &self.cluster.environment
    }

    fn rollout(&self) -> Rollout {
        match (self.cluster.absent, self.cluster.apply.strategy) {
            (true, _) => Rollout::Delete,
            (false, ApplyStrategy::Reconcile) => Rollout::Apply,
            (false, ApplyStrategy::UpdateRoll) => Rollout::UpdateRoll,
        }
    }

    /// The job the next environments wait for: the one that finishes the
    /// cluster's change. Deletions have none.
    fn last_job(&self) -> Option<String> {
        match self.rollout() {
            Rollout::Apply => Some(apply_job(self.name())),
            Rollout::UpdateRoll => Some(roll_job(self.name())),
            Rollout::Delete => None,
        }
    }
}

/// The nearest environments `environment` (transitively) needs that have
/// affected clusters to promote: those whose changes must finish before
/// its own start.
fn predecessor_environments(
    fleet: &Fleet,
    environment: &str,
    affected: &[Target],
) -> BTreeSet<String> {
    let needs_of = |env: &str| -> Vec<String> {
        fleet
            .environment(env)
            .map(|e| e.needs.clone())
            .unwrap_or_default()
    };
    let has_promoted = |env: &str| {
        affected
            .iter()
            .any(|t| t.env() == env && t.rollout() != Rollout::Delete)
    };
    let mut seen = BTreeSet::new();
    let mut stack = needs_of(environment);
    let mut gates = BTreeSet::new();
    while let Some(env) = stack.pop() {
        if !seen.insert(env.clone()) {
            continue;
        }
        if has_promoted(&env) {
            gates.insert(env);
        } else {
            stack.extend(needs_of(&env));
        }
    }
    gates
}

/// The jobs that must finish before `environment`'s clusters change: the
/// last job of each affected cluster of its predecessor environments, in
/// promotion order.
fn promotion_predecessors(fleet: &Fleet, environment: &str, affected: &[Target]) -> Vec<String> {
    let envs = predecessor_environments(fleet, environment, affected);
    affected
        .iter()
        .filter(|t| envs.contains(t.env()))
        .filter_map(Target::last_job)
        .collect()
}

/// The affected clusters, environments in promotion order, clusters in
/// fleet order within each.
fn affected_in_order<'a>(
    fleet: &'a Fleet,
    selection: &Selection,
    order: &[String],
) -> Result<Vec<Target<'a>>> {
    let by_name: std::collections::HashMap<&str, &Cluster> = fleet
        .clusters()
        .iter()
        .map(|c| (c.name.as_str(), c))
        .collect();
    let mut chosen = Vec::with_capacity(selection.affected_count());
    for choice in selection.affected() {
        let cluster = by_name.get(choice.cluster.as_str()).ok_or_else(|| {
            Error::Pipeline(format!(
                "cluster `{}` was selected but is not in {}",
                choice.cluster,
                fleet.path().display()
            ))
        })?;
        chosen.push(Target { cluster });
    }
    let mut affected = Vec::with_capacity(chosen.len());
    for env in order {
        affected.extend(chosen.iter().filter(|t| t.env() == env));
    }
    Ok(affected)
}

/// A pipeline being put together: its stages and jobs, in order.
struct Builder {
    stages: Vec<String>,
    jobs: IndexMap<String, Job>,
}

impl Builder {
    fn new() -> Builder {
        Builder {
            stages: Vec::new(),
            jobs: IndexMap::new(),
        }
    }

    fn stage(&mut self, name: &str) {
        if !self.stages.iter().any(|s| s == name) {
            self.stages.push(name.to_string());
        }
    }

    fn job(&mut self, name: String, job: Job) {
        self.jobs.insert(name, job);
    }

    /// Adds the downstream jobs whose `needs` this pipeline holds; one
    /// line per job left out.
    fn downstream(&mut self, options: &PipelineOptions) -> Result<Vec<String>> {
        match &options.downstream {
            Some(downstream) => downstream.add_to(&mut self.jobs, &mut self.stages),
            None => Ok(Vec::new()),
        }
    }

    /// Jobs that a job with `room` free `needs` entries must need so as to
    /// wait for every job of `targets`: `targets` itself when they fit,
    /// else gate jobs named `<prefix>:<n>` in stage `stage`, each needing at
    /// most [`GITLAB_MAX_NEEDS`] targets (or gates of the level below), in
    /// as many levels as it takes.
    fn fan_in(
        &mut self,
        mut targets: Vec<String>,
        room: usize,
        prefix: &str,
        stage: &str,
    ) -> Vec<String> {
        let mut made = 0;
        while targets.len() > room {
            self.stage(stage);
            let gates = targets.len().div_ceil(GITLAB_MAX_NEEDS);
            let mut next = Vec::with_capacity(gates);
            let mut rest = targets.as_slice();
            for i in 0..gates {
                // Spread evenly: the last gates never hold a remainder of one.
                let take = rest.len().div_ceil(gates - i);
                let (group, tail) = rest.split_at(take);
                rest = tail;
                made += 1;
                let name = format!("{prefix}:{made}");
                self.job(name.clone(), gate_job(stage, group));
                next.push(name);
            }
            targets = next;
        }
        targets
    }

    /// The YAML, headed by `header`, after checking it against `limits`.
    fn finish(self, header: String, options: &PipelineOptions, advice: Advice) -> Result<String> {
        check_limits(&self.jobs, &options.limits, advice)?;
        let doc = Document {
            stages: self.stages,
            variables: global_variables(options),
            default: Defaults {
                image: options.image.clone(),
            },
            jobs: self.jobs,
        };
        let yaml = crate::yaml::to_string(&doc)?;
        let text = format!("{header}{yaml}");
        if text.len() > GITLAB_MAX_CHILD_YAML_BYTES {
            tracing::warn!(
                "the generated pipeline is {} bytes, more than the {GITLAB_MAX_CHILD_YAML_BYTES} GitLab accepts by default for a child pipeline (max_artifacts_content_include_size); {}",
                text.len(),
                advice.jobs
            );
        }
        Ok(text)
    }
}

/// Refuses a pipeline GitLab would refuse: more `needs` in a job than
/// GitLab allows (a bug, as gates should have prevented it), more jobs or
/// deployments than `limits`.
fn check_limits(jobs: &IndexMap<String, Job>, limits: &Limits, advice: Advice) -> Result<()> {
    if let Some((name, job)) = jobs
        .iter()
        .find(|(_, j)| j.needs().len() > GITLAB_MAX_NEEDS)
    {
        return Err(Error::Pipeline(format!(
            "job `{name}` would need {} jobs, more than the {GITLAB_MAX_NEEDS} GitLab allows",
            job.needs().len()
        )));
    }
    if limits.max_jobs > 0 && jobs.len() > limits.max_jobs {
        return Err(Error::Pipeline(format!(
            "the pipeline would have {} jobs, more than the {} allowed (--max-jobs, input max_jobs; GitLab's ci_pipeline_size: 500 on GitLab.com Free, 1500 Premium, 2000 Ultimate, no limit by default on self-managed GitLab); {}",
            jobs.len(),
            limits.max_jobs,
            advice.jobs
        )));
    }
    let deployments = jobs.values().filter(|j| j.is_deployment()).count();
    if limits.max_deployments > 0 && deployments > limits.max_deployments {
        return Err(Error::Pipeline(format!(
            "the pipeline would have {deployments} deployment jobs (jobs with an `environment`, dry runs included), more than the {} allowed (--max-deployments, input max_deployments; GitLab's ci_pipeline_deployments, {GITLAB_MAX_DEPLOYMENTS} by default; 0 turns the check off where an administrator raised or removed it); {}",
            limits.max_deployments, advice.deployments
        )));
    }
    Ok(())
}

/// The output of [`generate_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Files {
    /// The child pipeline the parent triggers.
    pub main: String,
    /// Split pipelines: the environments' pipelines the main one starts,
    /// as (path relative to the project directory, YAML).
    pub children: Vec<(String, String)>,
}

/// The child pipeline YAML for `selection`. With `split_by_environment`
/// this is the pipeline that starts the environments' own; see
/// [`generate_files`] for all of them.
pub fn generate(fleet: &Fleet, selection: &Selection, options: &PipelineOptions) -> Result<String> {
    generate_files(fleet, selection, options).map(|f| f.main)
}

/// Every file of the child pipeline for `selection`.
pub fn generate_files(
    fleet: &Fleet,
    selection: &Selection,
    options: &PipelineOptions,
) -> Result<Files> {
    let order = environment_order(fleet);
    let affected = affected_in_order(fleet, selection, &order)?;
    let header = header(selection, options, None);
    let main = match options.kind {
        PipelineKind::MergeRequest => {
            let mut b = dry_runs(&affected, options);
            if options.mr_note {
                b.stage("report");
                let clusters: Vec<&str> = affected.iter().map(Target::name).collect();
                let left: Vec<&str> = selection.left.iter().map(|l| l.cluster.as_str()).collect();
                b.job(NOTE_JOB.to_string(), note_job(&clusters, &left, options));
            }
            nothing_to_do(&mut b);
            b.finish(header, options, DRY_RUN_ADVICE)?
        }
        PipelineKind::Drift => {
            let mut b = dry_runs(&affected, options);
            if !affected.is_empty() {
                b.stage("report");
                b.job(DRIFT_REPORT_JOB.to_string(), drift_report_job(options));
            }
            nothing_to_do(&mut b);
            b.finish(header, options, DRIFT_ADVICE)?
        }
        PipelineKind::DefaultBranch if options.split_by_environment && !affected.is_empty() => {
            return split::generate(fleet, selection, &affected, &order, options);
        }
        PipelineKind::DefaultBranch => {
            let mut b = deploy(fleet, &affected, &order, options);
            let notes = b.downstream(options)?;
            nothing_to_do(&mut b);
            b.finish(with_notes(header, &notes), options, SPLIT_ADVICE)?
        }
    };
    Ok(Files {
        main,
        children: Vec::new(),
    })
}

/// What to do when a pipeline passes a limit: for the job limit, and for
/// the deployment limit.
#[derive(Debug, Clone, Copy)]
struct Advice {
    jobs: &'static str,
    deployments: &'static str,
}

const DRY_RUN_ADVICE: Advice = Advice {
    jobs: "merge-request pipelines are not split (their note reads every dry run): change fewer clusters at once",
    deployments: "give dry runs no environment (--dryrun-environment=false, the component's input dryrun_environment: false; dry runs then count as no deployment), or change fewer clusters at once",
};
// A drift pipeline checks every cluster: there is no change to make
// smaller.
const DRIFT_ADVICE: Advice = Advice {
    jobs: "a drift pipeline dry-runs every cluster of the fleet in one child pipeline and is not split: raise --max-jobs (input max_jobs) to what the instance allows, or turn scheduled drift detection off (--drift-on-schedule=false, input drift: false)",
    deployments: "give dry runs no environment (--dryrun-environment=false, the component's input dryrun_environment: false; dry runs then count as no deployment)",
};
const SPLIT: &str = "pass --split-by-environment (the component's input split_by_environment: true): one child pipeline per environment, or per part of one, started in promotion order";
const SPLIT_ADVICE: Advice = Advice {
    jobs: SPLIT,
    deployments: SPLIT,
};

/// A dry run per affected cluster.
fn dry_runs(affected: &[Target], options: &PipelineOptions) -> Builder {
    let mut b = Builder::new();
    if !affected.is_empty() {
        b.stage("dryrun");
    }
    for t in affected {
        b.job(dryrun_job(t.name()), dryrun(t.name(), t.env(), options));
    }
    b
}

/// Dry runs, then per environment in promotion order what each cluster's
/// fleet entry asks for: an apply, or an update then a roll, once the
/// environments it needs finished (through gates when they are many); a
/// deletion for a cluster marked `absent: true`.
fn deploy(
    fleet: &Fleet,
    affected: &[Target],
    order: &[String],
    options: &PipelineOptions,
) -> Builder {
    let mut b = dry_runs(affected, options);
    for env in order {
        let here: Vec<&Target> = affected.iter().filter(|t| t.env() == env).collect();
        let of = |rollout: Rollout| -> Vec<&Target> {
            here.iter()
                .copied()
                .filter(|t| t.rollout() == rollout)
                .collect()
        };
        let (applies, updates, deletes) = (
            of(Rollout::Apply),
            of(Rollout::UpdateRoll),
            of(Rollout::Delete),
        );
        let waits = if applies.is_empty() && updates.is_empty() {
            Vec::new()
        } else {
            // One `needs` entry is the job's own dry run.
            b.fan_in(
                promotion_predecessors(fleet, env, affected),
                GITLAB_MAX_NEEDS - 1,
                &format!("gate:{env}"),
                &format!("gate-{env}"),
            )
        };
        if !applies.is_empty() {
            let stage = format!("apply-{env}");
            b.stage(&stage);
            for t in &applies {
                b.job(apply_job(t.name()), apply(t, &stage, &waits, options));
            }
        }
        if !updates.is_empty() {
            let (update_stage, roll_stage) = (format!("update-{env}"), format!("roll-{env}"));
            b.stage(&update_stage);
            b.stage(&roll_stage);
            for t in &updates {
                b.job(
                    update_job(t.name()),
                    update(t, &update_stage, &waits, options),
                );
            }
            for t in &updates {
                b.job(roll_job(t.name()), roll(t, &roll_stage, options));
            }
        }
        if !deletes.is_empty() {
            let stage = format!("delete-{env}");
            b.stage(&stage);
            for t in &deletes {
                b.job(delete_job(t.name()), delete(t, &stage, options));
            }
        }
    }
    b
}

/// GitLab refuses a pipeline without jobs: say plainly that there is
/// nothing to do.
fn nothing_to_do(b: &mut Builder) {
    if b.jobs.is_empty() {
        b.stage("dryrun");
        b.job(
            NOTHING_JOB.to_string(),
            Job::Message(MessageJob {
                stage: "dryrun".to_string(),
                script: vec!["echo 'kopsci: no cluster is affected by this change'".to_string()],
                interruptible: true,
                variables: JobVariables::no_checkout(),
            }),
        );
    }
}

/// The comment at the top: what was generated, and why each cluster is
/// (or is not) in it. `part` names the clusters of a split pipeline's
/// part; all clusters are listed otherwise.
fn header(
    selection: &Selection,
    options: &PipelineOptions,
    part: Option<(&str, &[&str])>,
) -> String {
    let kind = options.kind.name();
    let mut out = match part {
        None => format!(
            "# Generated by `kopsci pipeline` for a {kind} pipeline; do not edit.\n# {} of {} clusters affected:\n",
            selection.affected_count(),
            selection.clusters.len()
        ),
        Some((what, clusters)) => format!(
            "# Generated by `kopsci pipeline` for a {kind} pipeline, {what}; do not edit.\n# {} clusters:\n",
            clusters.len()
        ),
    };
    let only: Option<BTreeSet<&str>> = part.map(|(_, clusters)| clusters.iter().copied().collect());
    for choice in &selection.clusters {
        if only
            .as_ref()
            .is_some_and(|only| !only.contains(choice.cluster.as_str()))
        {
            continue;
        }
        let why = match choice.reasons.first() {
            None => "not affected".to_string(),
            Some(first) if choice.reasons.len() > 1 => {
                format!(
                    "{} (+{} more)",
                    one_line(&first.to_string()),
                    choice.reasons.len() - 1
                )
            }
            Some(first) => one_line(&first.to_string()),
        };
        out.push_str(&format!("#   {}: {why}\n", choice.cluster));
    }
    if part.is_none() {
        for left in &selection.left {
            out.push_str(&format!(
                "#   {}: left the fleet (in the fleet file at the base, gone now; nothing here deletes it)\n",
                left.cluster
            ));
        }
    }
    out
}

/// The header with one comment line per note.
fn with_notes(mut header: String, notes: &[String]) -> String {
    for note in notes {
        header.push_str(&format!("# {}\n", one_line(note)));
    }
    header
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn global_variables(options: &PipelineOptions) -> GlobalVariables {
    GlobalVariables {
        fleet: (options.fleet != crate::fleet::DEFAULT_FLEET_FILE).then(|| options.fleet.clone()),
        kops_version: options.kops_version.clone(),
        kops_download_url: options
            .kops_version
            .as_ref()
            .map(|_| options.kops_download_url.clone()),
    }
}

/// What every cluster job (dry run, update, roll) needs besides its
/// command: the runner tags, the commit only, kops installed, and with
/// `aws_oidc_audience` a GitLab ID token handed to the AWS SDKs (and
/// kops) as a web identity, for the role in `role_variable`.
fn cluster_setup(role_variable: &str, options: &PipelineOptions) -> ClusterSetup {
    let mut setup = ClusterSetup {
        tags: options.tags.clone(),
        variables: JobVariables {
            git_depth: Some("1".to_string()),
            ..JobVariables::default()
        },
        ..ClusterSetup::default()
    };
    if let Some(audience) = &options.aws_oidc_audience {
        setup.id_tokens = Some(IdTokens {
            kopsci: IdToken {
                aud: audience.clone(),
            },
        });
        setup.variables.aws_role_arn = Some(format!("${role_variable}"));
        setup.variables.aws_web_identity_token_file =
            Some(format!("$CI_PROJECT_DIR/{WEB_IDENTITY_TOKEN_FILE}"));
        setup.variables.aws_role_session_name = Some("kopsci-$CI_JOB_ID".to_string());
        // The SDKs read the token from a file; GitLab gives it as a
        // variable. It stays out of every artifact path.
        setup.before_script.push(format!(
            "mkdir -p .kopsci && printf '%s' \"${ID_TOKEN_VARIABLE}\" > {WEB_IDENTITY_TOKEN_FILE}"
        ));
    }
    if options.kops_version.is_some() {
        setup
            .before_script
            .extend(install_kops_script().iter().map(|l| l.to_string()));
    }
    setup
}

/// Installs `$KOPS_VERSION` into `.kopsci/bin` unless the image already
/// has it, checking the release's published SHA-256.
fn install_kops_script() -> Vec<&'static str> {
    vec![
        r#"if [ "$(kops version --short 2>/dev/null)" != "$KOPS_VERSION" ]; then case "$(uname -m)" in aarch64|arm64) kops_arch=arm64 ;; *) kops_arch=amd64 ;; esac; kops_url="$KOPSCI_KOPS_DOWNLOAD_URL/v$KOPS_VERSION/kops-linux-$kops_arch"; mkdir -p .kopsci/bin && curl -fsSL -o .kopsci/bin/kops "$kops_url" && echo "$(curl -fsSL "$kops_url.sha256")  .kopsci/bin/kops" | sha256sum -c - && chmod +x .kopsci/bin/kops; fi"#,
        r#"export PATH="$PWD/.kopsci/bin:$PATH""#,
    ]
}

fn cluster_dir(options: &PipelineOptions, cluster: &str) -> String {
    format!("{}/{cluster}", options.report_dir.trim_end_matches('/'))
}

fn report_dir_arg(options: &PipelineOptions) -> String {
    shell_quote(options.report_dir.as_ref())
}

fn environment(env: &str, cluster: &str, action: EnvironmentAction) -> Environment {
    Environment {
        name: format!("{env}/{cluster}"),
        action,
    }
}

/// `artifacts:` keeping `paths`, with the expiry and access every job gets.
fn artifacts(options: &PipelineOptions, when: Option<When>, paths: Vec<String>) -> Artifacts {
    let (access, public) = match options.artifacts_access {
        ArtifactsAccess::Level(level) => (Some(level), None),
        ArtifactsAccess::PublicFalse => (None, Some(false)),
    };
    Artifacts {
        when,
        expire_in: options.expire_in.clone(),
        access,
        public,
        paths,
        reports: None,
    }
}

fn dryrun(cluster: &str, env: &str, options: &PipelineOptions) -> Job {
    let dir = cluster_dir(options, cluster);
    let drift = options.kind == PipelineKind::Drift;
    let mut command = format!(
        "{} dryrun {cluster} --report-dir {}",
        options.kopsci,
        report_dir_arg(options)
    );
    if drift {
        command.push_str(" --detailed-exitcode");
    }
    let mut artifacts = artifacts(options, Some(When::Always), vec![format!("{dir}/")]);
    artifacts.reports = Some(Reports {
        terraform: format!("{dir}/gitlab-terraform-report.json"),
    });
    Job::DryRun(DryRunJob {
        stage: "dryrun".to_string(),
        script: vec![command],
        resource_group: format!("kops-{cluster}"),
        environment: options
            .dryrun_environment
            .then(|| environment(env, cluster, EnvironmentAction::Prepare)),
        interruptible: true,
        allow_failure: (drift && options.drift_allow_failure).then(|| AllowFailure::ExitCodes {
            exit_codes: vec![2],
        }),
        setup: cluster_setup(DRYRUN_ROLE_VARIABLE, options),
        artifacts,
    })
}

/// A job that changes the cluster: blocking, never cancelled, in the
/// cluster's resource group and environment, as the update role; manual
/// unless `automatic`.
fn deploy_job(
    t: &Target,
    stage: &str,
    needs: Vec<Need>,
    command: String,
    automatic: bool,
    options: &PipelineOptions,
) -> DeployJob {
    DeployJob {
        stage: stage.to_string(),
        needs,
        when: (!automatic).then_some(When::Manual),
        allow_failure: false,
        interruptible: false,
        timeout: None,
        script: vec![command],
        resource_group: format!("kops-{}", t.name()),
        environment: environment(t.env(), t.name(), EnvironmentAction::Start),
        setup: cluster_setup(UPDATE_ROLE_VARIABLE, options),
        artifacts: Some(artifacts(
            options,
            Some(When::Always),
            vec![format!("{}/", cluster_dir(options, t.name()))],
        )),
    }
}

/// `kopsci STAGE CLUSTER --report-dir DIR` and the rest.
fn cluster_command(options: &PipelineOptions, stage: &str, cluster: &str, rest: &str) -> String {
    format!(
        "{} {stage} {cluster} --report-dir {}{rest}",
        options.kopsci,
        report_dir_arg(options)
    )
}

/// The first job of a change needs its dry run's artifacts (the plan it
/// checks) and the jobs of earlier environments.
fn first_needs(cluster: &str, waits: &[String]) -> Vec<Need> {
    let mut needs = vec![Need::job(dryrun_job(cluster), true)];
    needs.extend(waits.iter().map(|w| Need::job(w.clone(), false)));
    needs
}

fn apply(t: &Target, stage: &str, waits: &[String], options: &PipelineOptions) -> Job {
    let settings = &t.cluster.apply;
    let mut job = deploy_job(
        t,
        stage,
        first_needs(t.name(), waits),
        cluster_command(options, "apply", t.name(), ""),
        settings.auto_apply,
        options,
    );
    job.timeout = Some(settings.timeout.gitlab());
    Job::Deploy(job)
}

fn update(t: &Target, stage: &str, waits: &[String], options: &PipelineOptions) -> Job {
    Job::Deploy(deploy_job(
        t,
        stage,
        first_needs(t.name(), waits),
        cluster_command(options, "update", t.name(), ""),
        t.cluster.apply.auto_apply,
        options,
    ))
}

fn roll(t: &Target, stage: &str, options: &PipelineOptions) -> Job {
    let settings = &t.cluster.apply;
    let needs = vec![Need::job(update_job(t.name()), false)];
    // Rolling replaces instances: the update role, not the dry run's.
    let mut job = deploy_job(
        t,
        stage,
        needs,
        cluster_command(options, "roll", t.name(), " --yes"),
        settings.auto_roll,
        options,
    );
    job.timeout = Some(settings.timeout.gitlab());
    Job::Deploy(job)
}

/// Deletes a cluster marked `absent: true`: always a click, after its dry
/// run showed what goes; stops the cluster's GitLab environment.
fn delete(t: &Target, stage: &str, options: &PipelineOptions) -> Job {
    let needs = vec![Need::job(dryrun_job(t.name()), false)];
    let mut job = deploy_job(
        t,
        stage,
        needs,
        cluster_command(options, "delete", t.name(), " --yes"),
        false,
        options,
    );
    job.environment.action = EnvironmentAction::Stop;
    job.timeout = Some(t.cluster.apply.timeout.gitlab());
    Job::Deploy(job)
}

/// A no-op job that succeeds once every job of `group` has.
fn gate_job(stage: &str, group: &[String]) -> Job {
    Job::Gate(GateJob {
        stage: stage.to_string(),
        needs: group.iter().map(|g| Need::job(g.clone(), false)).collect(),
        variables: JobVariables::no_checkout(),
        script: vec![format!(
            "echo 'kopsci: {} jobs this gate waits for succeeded'",
            group.len()
        )],
    })
}

/// `left`: clusters that left the fleet, for the note to list.
fn note_job(clusters: &[&str], left: &[&str], options: &PipelineOptions) -> Job {
    let mut command = format!(
        "{} note --report-dir {}",
        options.kopsci,
        report_dir_arg(options)
    );
    // Cluster names are checked kOps names, quoted all the same: the
    // script is a shell's.
    for cluster in left {
        command.push_str(" --left-the-fleet ");
        command.push_str(&shell_quote(cluster.as_ref()));
    }
    for cluster in clusters {
        command.push(' ');
        command.push_str(&shell_quote(cluster.as_ref()));
    }
    // No `needs`: a job downloads the artifacts of every job of the earlier
    // stages, with no limit on how many; `when: always` posts failures too.
    Job::Report(ReportJob {
        stage: "report".to_string(),
        when: Some(When::Always),
        rules: Vec::new(),
        allow_failure: true,
        interruptible: true,
        variables: report_job_variables(),
        script: vec![command],
        artifacts: Some(artifacts(
            options,
            Some(When::Always),
            vec![format!("{}/", options.report_dir.trim_end_matches('/'))],
        )),
    })
}

/// `kopsci drift` over every dry run's reports, when the token to open
/// issues with is set: no `needs`, so it gets the artifacts of every dry
/// run of the earlier stage, however many; it runs whatever they found.
fn drift_report_job(options: &PipelineOptions) -> Job {
    Job::Report(ReportJob {
        stage: "report".to_string(),
        when: None,
        rules: vec![Rule {
            condition: format!("${TOKEN_VARIABLE}"),
            when: Some(When::Always),
        }],
        allow_failure: true,
        interruptible: true,
        variables: report_job_variables(),
        script: vec![format!(
            "{} drift --report-dir {}",
            options.kopsci,
            report_dir_arg(options)
        )],
        artifacts: None,
    })
}

/// Report jobs read reports from their artifacts only: a fresh checkout
/// (never a runner's leftover directory, as `GIT_STRATEGY: none` could
/// leave) of the one commit.
fn report_job_variables() -> JobVariables {
    JobVariables {
        git_depth: Some("1".to_string()),
        ..JobVariables::default()
    }
}

/// What `kopsci pipeline` was asked for, beyond the fleet.
#[derive(Debug, Clone)]
pub struct Request {
    /// `--changed-since`.
    pub changed_since: Option<String>,
    /// `--all`: every cluster, whatever changed.
    pub all: bool,
    /// `--for`; detected from the CI variables when `None`.
    pub kind: Option<PipelineKind>,
    /// Scheduled pipelines are drift pipelines (when `kind` is detected).
    pub drift_on_schedule: bool,
    /// Everything else; its `kind` and `fleet` are filled in here.
    pub options: PipelineOptions,
}

/// The outcome of `kopsci pipeline`.
#[derive(Debug, Clone)]
pub struct Generated {
    pub kind: PipelineKind,
    pub selection: Selection,
    /// What `--explain` prints.
    pub explanation: String,
    pub yaml: String,
    /// Split pipelines: the environments' files, as (path, YAML).
    pub children: Vec<(String, String)>,
}

/// Finds the affected clusters of `fleet` (in the git repository around
/// `cwd`) and generates their child pipeline.
pub fn generate_child_pipeline(
    fleet: &Fleet,
    ci: &CiEnv,
    cwd: &Path,
    request: Request,
) -> Result<Generated> {
    let git = Git::new(cwd);
    let repo = RepoPaths::discover(&git, cwd)?;
    let (kind, kind_reason) = match request.kind {
        Some(kind) => (kind, "--for".to_string()),
        None => ci.pipeline_kind_with(request.drift_on_schedule),
    };
    let fleet_in_repo = repo.in_repo(fleet.path()).ok_or_else(|| {
        Error::Usage(format!(
            "the fleet file {} is outside the git repository at {}",
            fleet.path().display(),
            repo.toplevel().display()
        ))
    })?;
    let mut scope = scope(&git, ci, kind, &request)?;
    if let Scope::Changes(changes) = &mut scope {
        read_fleet_at_base(&git, changes, &fleet_in_repo);
    }
    let selection = select(fleet, &scope, &repo);
    let mut options = request.options;
    options.kind = kind;
    options.fleet = fleet_in_repo.display().to_string();
    if let Some(job) = ci.get("CI_JOB_NAME") {
        options.generator_job = job.to_string();
    }
    options.generator_pipeline = ci.get("CI_PIPELINE_ID").map(str::to_string);
    let files = generate_files(fleet, &selection, &options)?;
    let explanation = format!(
        "pipeline: {} ({kind_reason})\n{}",
        kind.name(),
        format_explanation(&selection, &repo, fleet)
    );
    Ok(Generated {
        kind,
        selection,
        explanation,
        yaml: files.main,
        children: files.children,
    })
}

/// Which clusters to consider: every one for `--all` and drift pipelines,
/// else those whose inputs changed since the base revision.
fn scope(git: &Git, ci: &CiEnv, kind: PipelineKind, request: &Request) -> Result<Scope> {
    if kind == PipelineKind::Drift {
        if request.changed_since.is_some() {
            return Err(Error::Usage(
                "a drift pipeline checks every cluster; --changed-since does not apply to it"
                    .to_string(),
            ));
        }
        return Ok(Scope::Everything(Everything::Drift));
    }
    if request.all {
        return Ok(Scope::Everything(Everything::AllFlag));
    }
    let Some(base) = ci.base_revision(request.changed_since.as_deref()) else {
        return Ok(Scope::Everything(Everything::NoBase(ci.no_base())));
    };
    let before_push = base.source == BaseSource::Variable("CI_COMMIT_BEFORE_SHA");
    match changes_since(git, base) {
        Ok(changes) => Ok(Scope::Changes(changes)),
        // After a force-push the old head may not exist in the clone at
        // all; dry-running everything is the safe answer, where a named
        // base that is missing is a mistake to report.
        Err(e) if before_push => Ok(Scope::Everything(Everything::BeforePushMissing(
            e.to_string(),
        ))),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::affected::{ClusterChoice, Reason};
    use serde_json::json;
    use std::path::Path;

    fn fleet(src: &str) -> Fleet {
        Fleet::parse(src, Path::new("kopsci.yaml"), Path::new("/fleet")).unwrap()
    }

    /// `update-roll` fleet-wide: the tests written before `apply` existed
    /// keep checking that path.
    const FLEET: &str = "\
templates: [t]
apply: update-roll
environments:
  prod: {needs: [staging]}
  staging: {needs: [dev]}
  dev: {}
  lab: {}
clusters:
  - {name: p.example.com, environment: prod}
  - {name: d1.example.com, environment: dev}
  - {name: s.example.com, environment: staging}
  - {name: d2.example.com, environment: dev}
  - {name: l.example.com, environment: lab}
";

    fn selection(fleet: &Fleet, affected: &[&str]) -> Selection {
        Selection {
            basis: "test".into(),
            clusters: fleet
                .clusters()
                .iter()
                .map(|c| ClusterChoice {
                    cluster: c.name.clone(),
                    environment: c.environment.clone(),
                    reasons: if affected.contains(&c.name.as_str()) {
                        vec![Reason::Everything(Everything::AllFlag)]
                    } else {
                        vec![]
                    },
                })
                .collect(),
            ..Selection::default()
        }
    }

    fn default_branch(fleet: &Fleet, affected: &[&str]) -> serde_json::Value {
        let sel = selection(fleet, affected);
        generated(fleet, &sel, PipelineKind::DefaultBranch)
    }

    fn job_names(doc: &serde_json::Value) -> Vec<&str> {
        doc.as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .filter(|k| *k != "stages" && *k != "variables" && *k != "default")
            .collect()
    }

    fn parse(yaml: &str) -> serde_json::Value {
        crate::yaml::from_str(yaml, "pipeline").unwrap()
    }

    /// The pipeline of `kind` with default options, parsed.
    fn generated(fleet: &Fleet, sel: &Selection, kind: PipelineKind) -> serde_json::Value {
        parse(&generate(fleet, sel, &PipelineOptions::new(kind)).unwrap())
    }

    #[test]
    fn environments_follow_their_needs_then_file_order() {
        assert_eq!(
            environment_order(&fleet(FLEET)),
            ["dev", "staging", "prod", "lab"]
        );
    }

    #[test]
    fn updates_wait_for_the_nearest_affected_environment() {
        let fleet = fleet(FLEET);
        // staging has nothing affected: prod waits for dev's rolls.
        let sel = selection(
            &fleet,
            &["p.example.com", "d1.example.com", "d2.example.com"],
        );
        let yaml = generate(
            &fleet,
            &sel,
            &PipelineOptions::new(PipelineKind::DefaultBranch),
        )
        .unwrap();
        let doc = parse(&yaml);
        assert_eq!(
            doc["stages"],
            json!([
                "dryrun",
                "update-dev",
                "roll-dev",
                "update-prod",
                "roll-prod"
            ])
        );
        assert_eq!(
            doc["update:p.example.com"]["needs"],
            json!([
                {"job": "dryrun:p.example.com", "artifacts": true},
                {"job": "roll:d1.example.com", "artifacts": false},
                {"job": "roll:d2.example.com", "artifacts": false},
            ])
        );
        assert_eq!(
            doc["update:d1.example.com"]["needs"],
            json!([{"job": "dryrun:d1.example.com", "artifacts": true}])
        );
        // With staging affected, prod waits for staging only.
        let sel = selection(
            &fleet,
            &["p.example.com", "s.example.com", "d1.example.com"],
        );
        let doc = generated(&fleet, &sel, PipelineKind::DefaultBranch);
        assert_eq!(
            doc["update:p.example.com"]["needs"][1],
            json!({"job": "roll:s.example.com", "artifacts": false})
        );
        assert_eq!(
            doc["update:p.example.com"]["needs"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn merge_request_pipelines_only_dry_run() {
        let fleet = fleet(FLEET);
        let sel = selection(&fleet, &["p.example.com", "l.example.com"]);
        let mut options = PipelineOptions::new(PipelineKind::MergeRequest);
        options.mr_note = true;
        let doc = parse(&generate(&fleet, &sel, &options).unwrap());
        let jobs: Vec<&String> = doc
            .as_object()
            .unwrap()
            .keys()
            .filter(|k| *k != "stages")
            .collect();
        assert_eq!(
            jobs,
            [
                "dryrun:p.example.com",
                "dryrun:l.example.com",
                "kopsci:note"
            ]
        );
        assert_eq!(
            doc["kopsci:note"]["script"][0],
            "kopsci note --report-dir .kopsci/reports p.example.com l.example.com"
        );
        assert_eq!(
            doc["dryrun:p.example.com"]["environment"],
            json!({"name": "prod/p.example.com", "action": "prepare"})
        );
    }

    #[test]
    fn nothing_affected_still_gives_a_valid_pipeline() {
        let fleet = fleet(FLEET);
        let sel = selection(&fleet, &[]);
        for kind in [PipelineKind::MergeRequest, PipelineKind::DefaultBranch] {
            let doc = generated(&fleet, &sel, kind);
            assert_eq!(doc["stages"], json!(["dryrun"]));
            assert!(doc[NOTHING_JOB]["script"].is_array());
        }
        let mut options = PipelineOptions::new(PipelineKind::MergeRequest);
        options.mr_note = true;
        let doc = parse(&generate(&fleet, &sel, &options).unwrap());
        assert_eq!(doc["stages"], json!(["report"]));
        assert_eq!(
            doc[NOTE_JOB]["script"][0],
            "kopsci note --report-dir .kopsci/reports"
        );
    }

    /// Formerly `too_many_needs_is_an_error`: 51 clusters before an
    /// environment are now waited for through gates.
    #[test]
    fn more_rolls_than_needs_allow_are_waited_for_through_gates() {
        let mut src = String::from(
            "templates: [t]\napply: update-roll\nenvironments:\n  a: {}\n  b: {needs: [a]}\nclusters:\n",
        );
        for i in 0..GITLAB_MAX_NEEDS {
            src.push_str(&format!("  - {{name: a{i}.example.com, environment: a}}\n"));
        }
        src.push_str("  - {name: b.example.com, environment: b}\n");
        let fleet = fleet(&src);
        let names: Vec<String> = fleet
            .cluster_names()
            .iter()
            .map(|s| s.to_string())
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let sel = selection(&fleet, &refs);
        let doc = generated(&fleet, &sel, PipelineKind::DefaultBranch);
        assert_eq!(
            doc["update:b.example.com"]["needs"],
            json!([
                {"job": "dryrun:b.example.com", "artifacts": true},
                {"job": "gate:b:1", "artifacts": false},
            ])
        );
        // All 50 rolls in one gate: 50 needs is GitLab's limit, not beyond.
        let gate = &doc["gate:b:1"];
        let needs = gate["needs"].as_array().unwrap();
        assert_eq!(needs.len(), 50);
        for (i, need) in needs.iter().enumerate() {
            assert_eq!(
                need,
                &json!({"job": format!("roll:a{i}.example.com"), "artifacts": false})
            );
        }
        assert_eq!(gate["stage"], "gate-b");
        assert_eq!(gate["variables"]["GIT_STRATEGY"], "none");
        assert!(gate.get("tags").is_none());
        assert_eq!(
            doc["stages"],
            json!([
                "dryrun", "update-a", "roll-a", "gate-b", "update-b", "roll-b"
            ])
        );
        // Merge-request pipelines have no needs at all.
        assert!(
            generate(
                &fleet,
                &sel,
                &PipelineOptions::new(PipelineKind::MergeRequest)
            )
            .is_ok()
        );
    }

    #[test]
    fn gates_form_a_tree_of_at_most_fifty_needs_each() {
        let mut b = Builder::new();
        let targets: Vec<String> = (0..3000).map(|i| format!("j{i}")).collect();
        let top = b.fan_in(targets.clone(), 49, "gate:x", "gate-x");
        // 3000 → 60 gates of 50 → 2 gates of 30.
        assert_eq!(top, ["gate:x:61", "gate:x:62"]);
        assert_eq!(b.jobs.len(), 62);
        assert_eq!(b.stages, ["gate-x"]);
        // Every target is reached from the top, each job needs ≤ 50.
        let mut reached = BTreeSet::new();
        let mut stack = top.clone();
        while let Some(name) = stack.pop() {
            match b.jobs.get(&name) {
                Some(job) => {
                    assert!(job.needs().len() <= GITLAB_MAX_NEEDS, "{name}");
                    stack.extend(job.needs().iter().map(|n| n.name().to_string()));
                }
                None => {
                    reached.insert(name);
                }
            }
        }
        assert_eq!(reached, targets.into_iter().collect::<BTreeSet<_>>());
        // Few targets need no gate.
        let mut b = Builder::new();
        let few: Vec<String> = (0..49).map(|i| format!("j{i}")).collect();
        assert_eq!(b.fan_in(few.clone(), 49, "g", "s"), few);
        assert!(b.jobs.is_empty() && b.stages.is_empty());
    }

    #[test]
    fn limits_are_checked_with_what_to_do() {
        let fleet = fleet(FLEET);
        let all = [
            "p.example.com",
            "d1.example.com",
            "s.example.com",
            "d2.example.com",
            "l.example.com",
        ];
        let sel = selection(&fleet, &all);
        let mut options = PipelineOptions::new(PipelineKind::DefaultBranch);
        // 5 clusters × 3 deployment jobs.
        options.limits.max_deployments = 14;
        let err = generate(&fleet, &sel, &options).unwrap_err().to_string();
        assert!(err.contains("15 deployment jobs"), "{err}");
        assert!(err.contains("--split-by-environment"), "{err}");
        options.limits.max_deployments = 15;
        assert!(generate(&fleet, &sel, &options).is_ok());
        options.limits.max_jobs = 14;
        let err = generate(&fleet, &sel, &options).unwrap_err().to_string();
        assert!(err.contains("15 jobs, more than the 14 allowed"), "{err}");
        // Split, the same limits fit: parts of at most 4 clusters.
        options.split_by_environment = true;
        let files = generate_files(&fleet, &sel, &options).unwrap();
        assert_eq!(files.children.len(), 4, "dev, staging, prod, lab");
        // Dry runs: the advice is to drop their environment.
        let mut options = PipelineOptions::new(PipelineKind::MergeRequest);
        options.limits.max_deployments = 4;
        let err = generate(&fleet, &sel, &options).unwrap_err().to_string();
        assert!(err.contains("--dryrun-environment=false"), "{err}");
        options.dryrun_environment = false;
        assert!(generate(&fleet, &sel, &options).is_ok());
        options.limits.max_jobs = 4;
        let err = generate(&fleet, &sel, &options).unwrap_err().to_string();
        assert!(err.contains("change fewer clusters"), "{err}");
        // Drift checks every cluster: no change to make smaller.
        let mut options = PipelineOptions::new(PipelineKind::Drift);
        options.limits.max_deployments = 4;
        let err = generate(&fleet, &sel, &options).unwrap_err().to_string();
        assert!(err.contains("--dryrun-environment=false"), "{err}");
        assert!(!err.contains("fewer clusters"), "{err}");
        options.limits.max_deployments = 0;
        options.limits.max_jobs = 5;
        let err = generate(&fleet, &sel, &options).unwrap_err().to_string();
        assert!(
            err.contains("6 jobs") && err.contains("drift: false"),
            "{err}"
        );
        assert!(!err.contains("fewer clusters"), "{err}");
        // 0: not checked.
        let mut options = PipelineOptions::new(PipelineKind::DefaultBranch);
        options.limits = Limits {
            max_jobs: 0,
            max_deployments: 0,
        };
        assert!(generate(&fleet, &sel, &options).is_ok());
    }

    #[test]
    fn oidc_gives_dry_runs_and_updates_their_own_roles() {
        let fleet = fleet(FLEET);
        let sel = selection(&fleet, &["d1.example.com"]);
        let mut options = PipelineOptions::new(PipelineKind::DefaultBranch);
        options.aws_oidc_audience = Some("sts.amazonaws.com".into());
        options.kops_version = Some("1.34.1".into());
        let doc = parse(&generate(&fleet, &sel, &options).unwrap());
        let dry = &doc["dryrun:d1.example.com"];
        assert_eq!(
            dry["id_tokens"],
            json!({"KOPSCI_ID_TOKEN": {"aud": "sts.amazonaws.com"}})
        );
        assert_eq!(dry["variables"]["AWS_ROLE_ARN"], "$KOPSCI_DRYRUN_ROLE_ARN");
        assert_eq!(
            dry["variables"]["AWS_WEB_IDENTITY_TOKEN_FILE"],
            "$CI_PROJECT_DIR/.kopsci/web-identity-token"
        );
        assert_eq!(
            dry["before_script"][0],
            "mkdir -p .kopsci && printf '%s' \"$KOPSCI_ID_TOKEN\" > .kopsci/web-identity-token"
        );
        assert_eq!(dry["before_script"].as_array().unwrap().len(), 3);
        for job in ["update:d1.example.com", "roll:d1.example.com"] {
            assert_eq!(
                doc[job]["variables"]["AWS_ROLE_ARN"], "$KOPSCI_UPDATE_ROLE_ARN",
                "{job}"
            );
        }
        // The token file is never part of the artifacts.
        assert!(
            !dry["artifacts"]["paths"][0]
                .as_str()
                .unwrap()
                .contains("web-identity")
        );
    }

    #[test]
    fn options_reach_the_jobs() {
        let fleet = fleet(FLEET);
        let sel = selection(&fleet, &["d1.example.com"]);
        let mut options = PipelineOptions::new(PipelineKind::DefaultBranch);
        options.kopsci = "./bin/kopsci".into();
        options.image = Some("registry.example.com/kopsci:1".into());
        options.tags = vec!["aws".into()];
        options.report_dir = "out dir/".into();
        options.fleet = "infra/kopsci.yaml".into();
        options.kops_version = Some("1.34.1".into());
        options.dryrun_environment = false;
        let doc = parse(&generate(&fleet, &sel, &options).unwrap());
        assert_eq!(doc["variables"]["KOPSCI_FLEET"], "infra/kopsci.yaml");
        assert_eq!(doc["variables"]["KOPS_VERSION"], "1.34.1");
        assert_eq!(doc["default"]["image"], "registry.example.com/kopsci:1");
        // The tag reaches the jobs that reach AWS (it was `default: tags:`).
        assert!(doc["default"].get("tags").is_none());
        for job in [
            "dryrun:d1.example.com",
            "update:d1.example.com",
            "roll:d1.example.com",
        ] {
            assert_eq!(doc[job]["tags"], json!(["aws"]), "{job}");
        }
        assert!(doc["default"].get("before_script").is_none());
        assert_eq!(
            doc["dryrun:d1.example.com"]["before_script"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        let dry = &doc["dryrun:d1.example.com"];
        assert_eq!(
            dry["script"][0],
            "./bin/kopsci dryrun d1.example.com --report-dir 'out dir/'"
        );
        assert_eq!(
            dry["artifacts"]["reports"]["terraform"],
            "out dir/d1.example.com/gitlab-terraform-report.json"
        );
        assert!(dry.get("environment").is_none());
        // Formerly `./bin/kopsci roll d1.example.com --yes`: the roll's
        // report (its validation) is now kept as an artifact.
        assert_eq!(
            doc["roll:d1.example.com"]["script"][0],
            "./bin/kopsci roll d1.example.com --report-dir 'out dir/' --yes"
        );
        assert_eq!(
            doc["roll:d1.example.com"]["artifacts"]["paths"],
            json!(["out dir/d1.example.com/"])
        );
    }

    const RECONCILE: &str = "\
templates: [t]
environments:
  prod: {needs: [staging]}
  staging: {needs: [dev]}
  dev: {}
clusters:
  - {name: p.example.com, environment: prod}
  - {name: d1.example.com, environment: dev}
  - {name: s.example.com, environment: staging}
  - {name: d2.example.com, environment: dev}
";

    #[test]
    fn reconcile_clusters_get_one_manual_apply_job_with_the_fleets_timeout() {
        let fleet = fleet(&RECONCILE.replace(
            "  - {name: d2.example.com, environment: dev}",
            "  - {name: d2.example.com, environment: dev, apply: {timeout: 1h30m}}",
        ));
        let doc = default_branch(
            &fleet,
            &["p.example.com", "d1.example.com", "d2.example.com"],
        );
        assert_eq!(doc["stages"], json!(["dryrun", "apply-dev", "apply-prod"]));
        assert_eq!(
            job_names(&doc),
            [
                "dryrun:d1.example.com",
                "dryrun:d2.example.com",
                "dryrun:p.example.com",
                "apply:d1.example.com",
                "apply:d2.example.com",
                "apply:p.example.com",
            ]
        );
        let apply = &doc["apply:d1.example.com"];
        assert_eq!(
            apply,
            &json!({
                "stage": "apply-dev",
                "needs": [{"job": "dryrun:d1.example.com", "artifacts": true}],
                "when": "manual",
                "allow_failure": false,
                "interruptible": false,
                "timeout": "3h",
                "script": ["kopsci apply d1.example.com --report-dir .kopsci/reports"],
                "resource_group": "kops-d1.example.com",
                "environment": {"name": "dev/d1.example.com", "action": "start"},
                "variables": {"GIT_DEPTH": "1"},
                "artifacts": {
                    "when": "always",
                    "expire_in": "1 week",
                    "access": "developer",
                    "paths": [".kopsci/reports/d1.example.com/"],
                },
            })
        );
        assert_eq!(doc["apply:d2.example.com"]["timeout"], "1h 30m");
        // prod (staging unaffected, looked through) waits for dev's applies.
        assert_eq!(
            doc["apply:p.example.com"]["needs"],
            json!([
                {"job": "dryrun:p.example.com", "artifacts": true},
                {"job": "apply:d1.example.com", "artifacts": false},
                {"job": "apply:d2.example.com", "artifacts": false},
            ])
        );
        // No flag that could contradict the fleet's prune setting: the
        // stage reads the fleet.
        for name in job_names(&doc) {
            let script = doc[name]["script"][0].as_str().unwrap();
            assert!(!script.contains("prune"), "{name}: {script}");
        }
    }

    /// Promotion waits for each cluster's last job, whatever its strategy:
    /// the apply of a reconcile cluster, the roll of an update-roll one.
    #[test]
    fn promotion_holds_across_a_fleet_mixing_strategies() {
        let src = "\
templates: [t]
environments:
  dev: {apply: update-roll}
  staging: {needs: [dev]}
  prod: {needs: [staging], apply: update-roll}
clusters:
  - {name: d1.example.com, environment: dev}
  - {name: d2.example.com, environment: dev, apply: reconcile}
  - {name: s1.example.com, environment: staging}
  - {name: s2.example.com, environment: staging, apply: {strategy: update-roll, timeout: 5h}}
  - {name: p.example.com, environment: prod}
";
        let fleet = fleet(src);
        let all = fleet.cluster_names();
        let doc = default_branch(&fleet, &all);
        assert_eq!(
            doc["stages"],
            json!([
                "dryrun",
                "apply-dev",
                "update-dev",
                "roll-dev",
                "apply-staging",
                "update-staging",
                "roll-staging",
                "update-prod",
                "roll-prod"
            ])
        );
        let needs = |job: &str| -> Vec<String> {
            doc[job]["needs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["job"].as_str().unwrap().to_string())
                .collect()
        };
        for first in ["apply:s1.example.com", "update:s2.example.com"] {
            assert_eq!(
                needs(first)[1..],
                ["roll:d1.example.com", "apply:d2.example.com"],
                "{first}"
            );
        }
        assert_eq!(
            needs("update:p.example.com"),
            [
                "dryrun:p.example.com",
                "apply:s1.example.com",
                "roll:s2.example.com"
            ]
        );
        assert_eq!(needs("roll:s2.example.com"), ["update:s2.example.com"]);
        // The roll gets the fleet's timeout; the update does not need one.
        assert_eq!(doc["roll:s2.example.com"]["timeout"], "5h");
        assert_eq!(doc["roll:p.example.com"]["timeout"], "3h");
        assert!(doc["update:p.example.com"].get("timeout").is_none());
        for job in [
            "apply:d2.example.com",
            "update:d1.example.com",
            "roll:d1.example.com",
        ] {
            assert_eq!(doc[job]["when"], "manual", "{job}");
            assert_eq!(doc[job]["interruptible"], false, "{job}");
        }
        assert!(doc.get("apply:d1.example.com").is_none());
        assert!(doc.get("update:d2.example.com").is_none());
    }

    #[test]
    fn absent_clusters_get_one_manual_delete_job_outside_promotion() {
        let src = "\
templates: [t]
environments:
  dev: {auto_apply: true}
  prod: {needs: [dev]}
clusters:
  - {name: old.example.com, environment: dev, absent: true}
  - {name: d.example.com, environment: dev}
  - {name: p.example.com, environment: prod}
  - {name: gone.example.com, environment: prod, absent: true, apply: {timeout: 2h}}
";
        let fleet = fleet(src);
        let doc = default_branch(
            &fleet,
            &["old.example.com", "p.example.com", "gone.example.com"],
        );
        assert_eq!(
            doc["stages"],
            json!(["dryrun", "delete-dev", "apply-prod", "delete-prod"])
        );
        assert_eq!(
            job_names(&doc),
            [
                "dryrun:old.example.com",
                "dryrun:p.example.com",
                "dryrun:gone.example.com",
                "delete:old.example.com",
                "apply:p.example.com",
                "delete:gone.example.com",
            ]
        );
        let delete = &doc["delete:old.example.com"];
        // Never automatic, even in an auto_apply environment.
        assert_eq!(delete["when"], "manual");
        assert_eq!(delete["allow_failure"], false);
        assert_eq!(delete["interruptible"], false);
        assert_eq!(delete["resource_group"], "kops-old.example.com");
        assert_eq!(
            delete["environment"],
            json!({"name": "dev/old.example.com", "action": "stop"})
        );
        assert_eq!(
            delete["needs"],
            json!([{"job": "dryrun:old.example.com", "artifacts": false}])
        );
        assert_eq!(
            delete["script"],
            json!(["kopsci delete old.example.com --report-dir .kopsci/reports --yes"])
        );
        assert_eq!(delete["timeout"], "3h");
        assert_eq!(doc["delete:gone.example.com"]["timeout"], "2h");
        // A deletion is nothing to promote: prod waits for no dev job.
        assert_eq!(
            doc["apply:p.example.com"]["needs"],
            json!([{"job": "dryrun:p.example.com", "artifacts": true}])
        );
        // With a dev cluster to promote, prod waits for it, not the deletion.
        let doc = default_branch(
            &fleet,
            &["old.example.com", "d.example.com", "p.example.com"],
        );
        assert_eq!(
            doc["apply:p.example.com"]["needs"][1],
            json!({"job": "apply:d.example.com", "artifacts": false})
        );
        assert_eq!(
            doc["apply:p.example.com"]["needs"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
        // Merge requests dry-run it (the preview of the deletion), nothing else.
        let sel = selection(&fleet, &["old.example.com"]);
        let mr = generated(&fleet, &sel, PipelineKind::MergeRequest);
        assert_eq!(job_names(&mr), ["dryrun:old.example.com"]);
    }

    #[test]
    fn auto_apply_runs_the_first_job_without_a_click_and_the_roll_waits_for_auto_roll() {
        let src = "\
templates: [t]
environments:
  dev: {auto_apply: true}
  staging: {needs: [dev], apply: update-roll, auto_apply: true}
  qa: {needs: [dev], apply: update-roll, auto_apply: true, auto_roll: true}
  prod: {needs: [staging, qa]}
clusters:
  - {name: d.example.com, environment: dev}
  - {name: s.example.com, environment: staging}
  - {name: q.example.com, environment: qa}
  - {name: p.example.com, environment: prod}
";
        let fleet = fleet(src);
        let all = fleet.cluster_names();
        let doc = default_branch(&fleet, &all);
        for job in [
            "apply:d.example.com",
            "update:s.example.com",
            "update:q.example.com",
            "roll:q.example.com",
        ] {
            assert!(
                doc[job].get("when").is_none(),
                "{job} is manual: {}",
                doc[job]
            );
        }
        for job in ["roll:s.example.com", "apply:p.example.com"] {
            assert_eq!(doc[job]["when"], "manual", "{job}");
        }
        // Automatic, yet still guarded like the manual ones.
        for job in [
            "apply:d.example.com",
            "update:s.example.com",
            "roll:q.example.com",
        ] {
            assert_eq!(doc[job]["interruptible"], false, "{job}");
            assert_eq!(doc[job]["allow_failure"], false, "{job}");
            assert!(
                doc[job]["resource_group"]
                    .as_str()
                    .unwrap()
                    .starts_with("kops-")
            );
            assert_eq!(doc[job]["environment"]["action"], "start", "{job}");
        }
        // The automatic update still checks the dry run's plan.
        assert_eq!(
            doc["update:s.example.com"]["needs"],
            json!([
                {"job": "dryrun:s.example.com", "artifacts": true},
                {"job": "apply:d.example.com", "artifacts": false},
            ])
        );
        assert_eq!(
            doc["apply:p.example.com"]["needs"],
            json!([
                {"job": "dryrun:p.example.com", "artifacts": true},
                {"job": "roll:s.example.com", "artifacts": false},
                {"job": "roll:q.example.com", "artifacts": false},
            ])
        );
    }

    #[test]
    fn the_note_lists_clusters_that_left_the_fleet_quoted() {
        let fleet = fleet(FLEET);
        let mut sel = selection(&fleet, &["d1.example.com"]);
        for name in ["gone.example.com", "a b; rm -rf ~"] {
            sel.left.push(crate::gitlab::affected::LeftCluster {
                cluster: name.to_string(),
                environment: "dev".to_string(),
                was_absent: false,
            });
        }
        let mut options = PipelineOptions::new(PipelineKind::MergeRequest);
        options.mr_note = true;
        let yaml = generate(&fleet, &sel, &options).unwrap();
        let doc = parse(&yaml);
        let script = doc[NOTE_JOB]["script"][0].as_str().unwrap();
        assert_eq!(
            script,
            "kopsci note --report-dir .kopsci/reports --left-the-fleet gone.example.com --left-the-fleet 'a b; rm -rf ~' d1.example.com"
        );
        assert_eq!(
            shlex::split(script).unwrap()[7],
            "a b; rm -rf ~",
            "one shell word"
        );
        assert!(
            yaml.contains("#   gone.example.com: left the fleet"),
            "{yaml}"
        );
        // Nothing else affected: the note still runs with them.
        let mut none = selection(&fleet, &[]);
        none.left = sel.left.clone();
        let doc = parse(&generate(&fleet, &none, &options).unwrap());
        assert_eq!(
            doc[NOTE_JOB]["script"][0],
            "kopsci note --report-dir .kopsci/reports --left-the-fleet gone.example.com --left-the-fleet 'a b; rm -rf ~'"
        );
    }

    #[test]
    fn split_pipelines_follow_each_clusters_strategy() {
        let src = RECONCILE.replace("  dev: {}", "  dev: {apply: update-roll}");
        let fleet = fleet(&src);
        let all = fleet.cluster_names();
        let sel = selection(&fleet, &all);
        let mut options = PipelineOptions::new(PipelineKind::DefaultBranch);
        options.split_by_environment = true;
        let files = generate_files(&fleet, &sel, &options).unwrap();
        let names: Vec<Vec<String>> = files
            .children
            .iter()
            .map(|(_, yaml)| {
                job_names(&parse(yaml))
                    .into_iter()
                    .map(String::from)
                    .collect()
            })
            .collect();
        assert_eq!(
            names,
            [
                vec![
                    "dryrun:d1.example.com",
                    "dryrun:d2.example.com",
                    "update:d1.example.com",
                    "update:d2.example.com",
                    "roll:d1.example.com",
                    "roll:d2.example.com"
                ],
                vec!["dryrun:s.example.com", "apply:s.example.com"],
                vec!["dryrun:p.example.com", "apply:p.example.com"],
            ]
        );
    }

    const DOWNSTREAM: &str = "\
workloads:p:
  needs: [\"apply:p.example.com\"]
  script: [kopsci kubeconfig p.example.com --out \"$CI_PROJECT_DIR/.kube/config\"]
workloads:s:
  needs: [\"apply:s.example.com\"]
  script: [helm list]
";

    #[test]
    fn downstream_jobs_follow_the_cluster_jobs_they_need() {
        let fleet = fleet(RECONCILE);
        let sel = selection(&fleet, &["p.example.com", "d1.example.com"]);
        let mut options = PipelineOptions::new(PipelineKind::DefaultBranch);
        options.downstream =
            Some(DownstreamJobs::parse(DOWNSTREAM, ".gitlab/after-apply.yml").unwrap());
        let yaml = generate(&fleet, &sel, &options).unwrap();
        let doc = parse(&yaml);
        assert_eq!(
            doc["workloads:p"],
            json!({
                "stage": "downstream",
                "needs": ["apply:p.example.com"],
                "script": ["kopsci kubeconfig p.example.com --out \"$CI_PROJECT_DIR/.kube/config\""],
            })
        );
        assert!(doc.get("workloads:s").is_none());
        assert_eq!(
            doc["stages"].as_array().unwrap().last().unwrap(),
            "downstream"
        );
        assert!(
            yaml.contains("# downstream job `workloads:s` left out: it needs `apply:s.example.com`, not in this pipeline\n"),
            "{yaml}"
        );
        // Merge requests and drift never get them.
        for kind in [PipelineKind::MergeRequest, PipelineKind::Drift] {
            options.kind = kind;
            let doc = parse(&generate(&fleet, &sel, &options).unwrap());
            assert!(doc.get("workloads:p").is_none(), "{kind:?}");
        }
        // Split: in the environment pipeline holding the cluster's apply.
        options.kind = PipelineKind::DefaultBranch;
        options.split_by_environment = true;
        let files = generate_files(&fleet, &sel, &options).unwrap();
        let with: Vec<bool> = files
            .children
            .iter()
            .map(|(_, y)| parse(y).get("workloads:p").is_some())
            .collect();
        assert_eq!(with, [false, true], "dev, prod");
        assert!(
            files
                .main
                .contains("# downstream job `workloads:s` left out: no environment pipeline holds"),
            "{}",
            files.main
        );
        assert!(
            !files.main.contains("`workloads:p` left out"),
            "{}",
            files.main
        );
    }
}
