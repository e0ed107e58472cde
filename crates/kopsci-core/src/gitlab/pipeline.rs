//! The child pipeline `kopsci pipeline` emits: GitLab CI YAML for the
//! clusters a change affects.
//!
//! * **Merge requests** (and any branch but the default one) get one
//!   dry-run job per affected cluster and, with `mr_note`, a `kopsci:note`
//!   job that posts the merge-request note from their reports.
//! * **The default branch** gets the dry runs again (on the merged result),
//!   then per cluster a manual `update` job that `needs:` its dry run with
//!   artifacts (the `plan.json` it checks), then a manual `roll` job.
//!
//! Every job of a cluster shares `resource_group: kops-<cluster>`, so two
//! pipelines never work on one cluster at once, and names the GitLab
//! environment `<environment>/<cluster>`: `action: prepare` for dry runs
//! (nothing is deployed), `action: start` for update and roll (they change
//! the cluster, and a protected environment must guard them). Update and
//! roll are `interruptible: false`: a newer pipeline must never cancel a
//! half-applied change.
//!
//! **Dry-run exit codes.** The dry run runs without `--detailed-exitcode`:
//! pending changes are the normal outcome of a merge request, and GitLab's
//! merge-request widget shows their counts from the terraform report
//! (`artifacts:reports:terraform`) and the note lists them. Using exit code
//! 2 with `allow_failure: exit_codes: [2]` was considered and rejected:
//! every merge request with changes would show its dry runs as warnings,
//! and artifacts of a failed job upload only with `when: always`, which the
//! update job must not rely on. (Usage errors exit 64, never 2.) Dry-run
//! artifacts are still uploaded `when: always`, so a failed dry run keeps
//! its kops output for debugging; `update` needs a *successful* dry run.
//!
//! **Promotion.** Environments are ordered by their `needs` (a stage pair
//! `update-<env>`, `roll-<env>` each, in that order). A cluster's update
//! job also `needs:` the roll jobs of the nearest environments it depends
//! on that have affected clusters (environments with none are looked
//! through), so `prod` is updated only after `dev` was rolled. Manual jobs
//! are `allow_failure: false`: otherwise a failed (or never started) update
//! would count as done and let its roll, or the next environment, proceed.
//!
//! **AWS.** With `aws_oidc_audience`, cluster jobs get a GitLab ID token
//! (`id_tokens`) written to a file for the AWS SDKs' web-identity
//! provider, and `AWS_ROLE_ARN` from `$KOPSCI_DRYRUN_ROLE_ARN` (dry runs)
//! or `$KOPSCI_UPDATE_ROLE_ARN` (update, roll): the read-only and the write
//! role are CI/CD variables, so they can be scoped to environments and the
//! write one protected.
//!
//! The output is deterministic: environments in dependency order (ties in
//! fleet-file order), clusters in fleet-file order.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::errors::{Error, Result};
use crate::fleet::Fleet;
use crate::gitlab::affected::{
    RepoPaths, Scope, Selection, changes_since, format_explanation, select,
};
use crate::gitlab::ci_env::{BaseSource, CiEnv, PipelineKind};
use crate::gitlab::git::Git;
use crate::process::shell_quote;

/// GitLab's default limit on `needs:` entries per job.
pub const GITLAB_MAX_NEEDS: usize = 50;

/// The GitLab ID token given to cluster jobs with `aws_oidc_audience`.
pub const ID_TOKEN_VARIABLE: &str = "KOPSCI_ID_TOKEN";

/// Where cluster jobs write that token for the AWS SDKs, relative to the
/// project directory.
pub const WEB_IDENTITY_TOKEN_FILE: &str = ".kopsci/web-identity-token";

/// The CI/CD variable holding the role dry runs assume (read-only).
pub const DRYRUN_ROLE_VARIABLE: &str = "KOPSCI_DRYRUN_ROLE_ARN";

/// The CI/CD variable holding the role update and roll assume (write).
pub const UPDATE_ROLE_VARIABLE: &str = "KOPSCI_UPDATE_ROLE_ARN";

/// Where kops releases are downloaded from when `kops_version` is set.
pub const KOPS_DOWNLOAD_URL: &str = "https://github.com/kubernetes/kops/releases/download";

/// How the child pipeline is generated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineOptions {
    pub kind: PipelineKind,
    /// The command jobs run kopsci with.
    pub kopsci: String,
    /// The jobs' image; the runner's default when `None`.
    pub image: Option<String>,
    /// Runner tags for every job.
    pub tags: Vec<String>,
    /// Where dry runs write their reports, relative to the project directory.
    pub report_dir: String,
    /// `artifacts:expire_in` of every job.
    pub expire_in: String,
    /// The fleet file relative to the repository's top level (jobs run
    /// there); passed to jobs as `KOPSCI_FLEET` unless it is `kopsci.yaml`.
    pub fleet: String,
    /// Add the merge-request note job (merge-request pipelines only).
    pub mr_note: bool,
    /// Give dry-run jobs their `environment` (`action: prepare`). Off for
    /// projects whose protected environments would stop developers' dry
    /// runs.
    pub dryrun_environment: bool,
    /// Install this kops release in every job when the image has another.
    pub kops_version: Option<String>,
    /// Base URL of kops releases (a mirror, for runners without GitHub).
    pub kops_download_url: String,
    /// Authenticate cluster jobs to AWS with a GitLab ID token for this
    /// audience (`sts.amazonaws.com`): dry runs assume the role in
    /// `KOPSCI_DRYRUN_ROLE_ARN`, update and roll the one in
    /// `KOPSCI_UPDATE_ROLE_ARN` (CI/CD variables, which may be scoped to
    /// environments and protected).
    pub aws_oidc_audience: Option<String>,
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
            fleet: crate::fleet::DEFAULT_FLEET_FILE.to_string(),
            mr_note: false,
            dryrun_environment: true,
            kops_version: None,
            kops_download_url: KOPS_DOWNLOAD_URL.to_string(),
            aws_oidc_audience: None,
        }
    }
}

/// Job names, one place.
pub fn dryrun_job(cluster: &str) -> String {
    format!("dryrun:{cluster}")
}
pub fn update_job(cluster: &str) -> String {
    format!("update:{cluster}")
}
pub fn roll_job(cluster: &str) -> String {
    format!("roll:{cluster}")
}
pub const NOTE_JOB: &str = "kopsci:note";
pub const NOTHING_JOB: &str = "kopsci:nothing-to-do";

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

/// The affected clusters whose roll must finish before `environment`'s
/// updates: those of the nearest environments it (transitively) needs that
/// have affected clusters. In fleet order.
fn promotion_predecessors(
    fleet: &Fleet,
    environment: &str,
    affected: &[(&str, &str)],
) -> Vec<String> {
    let needs_of = |env: &str| -> Vec<String> {
        fleet
            .environments()
            .find(|e| e.name == env)
            .map(|e| e.needs.clone())
            .unwrap_or_default()
    };
    let has_affected = |env: &str| affected.iter().any(|(_, e)| *e == env);
    let mut seen = BTreeSet::new();
    let mut stack = needs_of(environment);
    let mut gates = BTreeSet::new();
    while let Some(env) = stack.pop() {
        if !seen.insert(env.clone()) {
            continue;
        }
        if has_affected(&env) {
            gates.insert(env);
        } else {
            stack.extend(needs_of(&env));
        }
    }
    affected
        .iter()
        .filter(|(_, env)| gates.contains(*env))
        .map(|(cluster, _)| cluster.to_string())
        .collect()
}

/// The child pipeline YAML for `selection`.
pub fn generate(fleet: &Fleet, selection: &Selection, options: &PipelineOptions) -> Result<String> {
    let order = environment_order(fleet);
    // Affected clusters, environments in promotion order, clusters in fleet
    // order within each.
    let mut affected: Vec<(&str, &str)> = Vec::new();
    for env in &order {
        for choice in selection.affected().filter(|c| c.environment == *env) {
            affected.push((choice.cluster.as_str(), choice.environment.as_str()));
        }
    }
    let deploy = options.kind == PipelineKind::DefaultBranch;
    let note = options.mr_note && options.kind == PipelineKind::MergeRequest;

    let mut stages: Vec<String> = Vec::new();
    let mut jobs: Vec<(String, Value)> = Vec::new();
    if !affected.is_empty() {
        stages.push("dryrun".to_string());
    }
    for (cluster, env) in &affected {
        jobs.push((dryrun_job(cluster), dryrun(cluster, env, options)));
    }
    if deploy {
        for env in &order {
            let clusters: Vec<&str> = affected
                .iter()
                .filter(|(_, e)| e == env)
                .map(|(c, _)| *c)
                .collect();
            if clusters.is_empty() {
                continue;
            }
            let update_stage = format!("update-{env}");
            let roll_stage = format!("roll-{env}");
            let gates = promotion_predecessors(fleet, env, &affected);
            if gates.len() + 1 > GITLAB_MAX_NEEDS {
                return Err(Error::Pipeline(format!(
                    "environment `{env}` would wait for the roll jobs of {} clusters, more than the {GITLAB_MAX_NEEDS} `needs` GitLab allows per job; split the environments it needs into smaller ones",
                    gates.len()
                )));
            }
            for cluster in &clusters {
                jobs.push((
                    update_job(cluster),
                    update(cluster, env, &update_stage, &gates, options),
                ));
            }
            for cluster in &clusters {
                jobs.push((roll_job(cluster), roll(cluster, env, &roll_stage, options)));
            }
            stages.push(update_stage);
            stages.push(roll_stage);
        }
    }
    if note {
        stages.push("report".to_string());
        let clusters: Vec<&str> = affected.iter().map(|(c, _)| *c).collect();
        jobs.push((NOTE_JOB.to_string(), note_job(&clusters, options)));
    }
    if jobs.is_empty() {
        // GitLab refuses a pipeline without jobs; say plainly that there
        // is nothing to do.
        stages.push("dryrun".to_string());
        jobs.push((
            NOTHING_JOB.to_string(),
            json!({
                "stage": "dryrun",
                "script": ["echo 'kopsci: no cluster is affected by this change'"],
                "interruptible": true,
            }),
        ));
    }

    let mut root = Map::new();
    root.insert("stages".into(), json!(stages));
    let variables = variables(options);
    if !variables.is_empty() {
        root.insert("variables".into(), Value::Object(variables));
    }
    let default = defaults(options);
    if !default.is_empty() {
        root.insert("default".into(), Value::Object(default));
    }
    for (name, job) in jobs {
        root.insert(name, job);
    }
    let yaml = crate::yaml::to_string(&Value::Object(root))?;
    Ok(format!("{}{yaml}", header(selection, options)))
}

fn header(selection: &Selection, options: &PipelineOptions) -> String {
    let mut out = format!(
        "# Generated by `kopsci pipeline` for a {} pipeline; do not edit.\n# {} of {} clusters affected:\n",
        options.kind.name(),
        selection.affected_count(),
        selection.clusters.len()
    );
    for choice in &selection.clusters {
        let why = match choice.reasons.first() {
            None => "not affected".to_string(),
            Some(first) if choice.reasons.len() > 1 => {
                format!("{} (+{} more)", one_line(first), choice.reasons.len() - 1)
            }
            Some(first) => one_line(first),
        };
        out.push_str(&format!("#   {}: {why}\n", choice.cluster));
    }
    out
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn variables(options: &PipelineOptions) -> Map<String, Value> {
    let mut vars = Map::new();
    if options.fleet != crate::fleet::DEFAULT_FLEET_FILE {
        vars.insert("KOPSCI_FLEET".into(), json!(options.fleet));
    }
    if let Some(version) = &options.kops_version {
        vars.insert("KOPS_VERSION".into(), json!(version));
        vars.insert(
            "KOPSCI_KOPS_DOWNLOAD_URL".into(),
            json!(options.kops_download_url),
        );
    }
    vars
}

fn defaults(options: &PipelineOptions) -> Map<String, Value> {
    let mut default = Map::new();
    if let Some(image) = &options.image {
        default.insert("image".into(), json!(image));
    }
    if !options.tags.is_empty() {
        default.insert("tags".into(), json!(options.tags));
    }
    default
}

/// What every cluster job (dry run, update, roll) needs besides its
/// command: kops installed, and with `aws_oidc_audience` a GitLab ID token
/// handed to the AWS SDKs (and kops) as a web identity, for the role in
/// `role_variable`.
fn add_cluster_setup(job: &mut Map<String, Value>, role_variable: &str, options: &PipelineOptions) {
    let mut before: Vec<String> = Vec::new();
    if let Some(audience) = &options.aws_oidc_audience {
        job.insert(
            "id_tokens".into(),
            json!({ ID_TOKEN_VARIABLE: {"aud": audience} }),
        );
        job.insert(
            "variables".into(),
            json!({
                "AWS_ROLE_ARN": format!("${role_variable}"),
                "AWS_WEB_IDENTITY_TOKEN_FILE": format!("$CI_PROJECT_DIR/{WEB_IDENTITY_TOKEN_FILE}"),
                "AWS_ROLE_SESSION_NAME": "kopsci-$CI_JOB_ID",
            }),
        );
        // The SDKs read the token from a file; GitLab gives it as a
        // variable. It stays out of every artifact path.
        before.push(format!(
            "mkdir -p .kopsci && printf '%s' \"${ID_TOKEN_VARIABLE}\" > {WEB_IDENTITY_TOKEN_FILE}"
        ));
    }
    if options.kops_version.is_some() {
        before.extend(install_kops_script().iter().map(|l| l.to_string()));
    }
    if !before.is_empty() {
        job.insert("before_script".into(), json!(before));
    }
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

fn environment(env: &str, cluster: &str, action: &str) -> Value {
    json!({"name": format!("{env}/{cluster}"), "action": action})
}

fn dryrun(cluster: &str, env: &str, options: &PipelineOptions) -> Value {
    let dir = cluster_dir(options, cluster);
    let mut job = Map::new();
    job.insert("stage".into(), json!("dryrun"));
    job.insert(
        "script".into(),
        json!([format!(
            "{} dryrun {cluster} --report-dir {}",
            options.kopsci,
            report_dir_arg(options)
        )]),
    );
    job.insert("resource_group".into(), json!(format!("kops-{cluster}")));
    if options.dryrun_environment {
        job.insert("environment".into(), environment(env, cluster, "prepare"));
    }
    job.insert("interruptible".into(), json!(true));
    add_cluster_setup(&mut job, DRYRUN_ROLE_VARIABLE, options);
    job.insert(
        "artifacts".into(),
        json!({
            "when": "always",
            "expire_in": options.expire_in,
            "paths": [format!("{dir}/")],
            "reports": {"terraform": format!("{dir}/gitlab-terraform-report.json")},
        }),
    );
    Value::Object(job)
}

fn update(
    cluster: &str,
    env: &str,
    stage: &str,
    gates: &[String],
    options: &PipelineOptions,
) -> Value {
    let mut needs = vec![json!({"job": dryrun_job(cluster), "artifacts": true})];
    needs.extend(
        gates
            .iter()
            .map(|g| json!({"job": roll_job(g), "artifacts": false})),
    );
    let mut job = manual_job(stage, json!(needs));
    job.insert(
        "script".into(),
        json!([format!(
            "{} update {cluster} --report-dir {}",
            options.kopsci,
            report_dir_arg(options)
        )]),
    );
    job.insert("resource_group".into(), json!(format!("kops-{cluster}")));
    job.insert("environment".into(), environment(env, cluster, "start"));
    add_cluster_setup(&mut job, UPDATE_ROLE_VARIABLE, options);
    job.insert(
        "artifacts".into(),
        json!({
            "when": "always",
            "expire_in": options.expire_in,
            "paths": [format!("{}/", cluster_dir(options, cluster))],
        }),
    );
    Value::Object(job)
}

/// The part update and roll jobs share: manual, blocking, never cancelled.
fn manual_job(stage: &str, needs: Value) -> Map<String, Value> {
    let mut job = Map::new();
    job.insert("stage".into(), json!(stage));
    job.insert("needs".into(), needs);
    job.insert("when".into(), json!("manual"));
    job.insert("allow_failure".into(), json!(false));
    job.insert("interruptible".into(), json!(false));
    job
}

fn roll(cluster: &str, env: &str, stage: &str, options: &PipelineOptions) -> Value {
    let mut job = manual_job(
        stage,
        json!([{"job": update_job(cluster), "artifacts": false}]),
    );
    job.insert(
        "script".into(),
        json!([format!("{} roll {cluster} --yes", options.kopsci)]),
    );
    job.insert("resource_group".into(), json!(format!("kops-{cluster}")));
    job.insert("environment".into(), environment(env, cluster, "start"));
    // Rolling replaces instances: the update role, not the dry run's.
    add_cluster_setup(&mut job, UPDATE_ROLE_VARIABLE, options);
    Value::Object(job)
}

fn note_job(clusters: &[&str], options: &PipelineOptions) -> Value {
    let mut command = format!(
        "{} note --report-dir {}",
        options.kopsci,
        report_dir_arg(options)
    );
    for cluster in clusters {
        command.push(' ');
        command.push_str(cluster);
    }
    // No `needs`: a job downloads the artifacts of every job of the earlier
    // stages, with no limit on how many; `when: always` posts failures too.
    json!({
        "stage": "report",
        "when": "always",
        "allow_failure": true,
        "interruptible": true,
        "script": [command],
        "artifacts": {
            "when": "always",
            "expire_in": options.expire_in,
            "paths": [format!("{}/", options.report_dir.trim_end_matches('/'))],
        },
    })
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
        None => ci.pipeline_kind(),
    };
    let scope = if request.all {
        Scope::Everything("--all".to_string())
    } else {
        match ci.base_revision(request.changed_since.as_deref()) {
            None => Scope::Everything(
                "no base revision to count changes from (no --changed-since, CI_MERGE_REQUEST_DIFF_BASE_SHA or CI_COMMIT_BEFORE_SHA)"
                    .to_string(),
            ),
            Some(base) => {
                let before_push = base.source == BaseSource::Variable("CI_COMMIT_BEFORE_SHA");
                match changes_since(&git, base) {
                    Ok(changes) => Scope::Changes(changes),
                    // After a force-push the old head may not exist in the
                    // clone at all; dry-running everything is the safe
                    // answer, where a named base that is missing is a
                    // mistake to report.
                    Err(e) if before_push => Scope::Everything(format!(
                        "the commit before the push is not in this clone ({e})"
                    )),
                    Err(e) => return Err(e),
                }
            }
        }
    };
    let selection = select(fleet, &scope, &repo);
    let fleet_in_repo = repo.in_repo(fleet.path()).ok_or_else(|| {
        Error::Usage(format!(
            "the fleet file {} is outside the git repository at {}",
            fleet.path().display(),
            repo.toplevel().display()
        ))
    })?;
    let mut options = request.options;
    options.kind = kind;
    options.fleet = fleet_in_repo.display().to_string();
    let yaml = generate(fleet, &selection, &options)?;
    let explanation = format!(
        "pipeline: {} ({kind_reason})\n{}",
        kind.name(),
        format_explanation(&selection, &repo, fleet)
    );
    Ok(Generated {
        kind,
        selection,
        explanation,
        yaml,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gitlab::affected::ClusterChoice;
    use std::path::Path;

    fn fleet(src: &str) -> Fleet {
        Fleet::parse(src, Path::new("kopsci.yaml"), Path::new("/fleet")).unwrap()
    }

    const FLEET: &str = "\
templates: [t]
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
                        vec!["x changed".into()]
                    } else {
                        vec![]
                    },
                })
                .collect(),
        }
    }

    fn parse(yaml: &str) -> serde_json::Value {
        crate::yaml::from_str(yaml, "pipeline").unwrap()
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
        let doc = parse(
            &generate(
                &fleet,
                &sel,
                &PipelineOptions::new(PipelineKind::DefaultBranch),
            )
            .unwrap(),
        );
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
            let doc = parse(&generate(&fleet, &sel, &PipelineOptions::new(kind)).unwrap());
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

    #[test]
    fn too_many_needs_is_an_error() {
        let mut src =
            String::from("templates: [t]\nenvironments:\n  a: {}\n  b: {needs: [a]}\nclusters:\n");
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
        let err = generate(
            &fleet,
            &sel,
            &PipelineOptions::new(PipelineKind::DefaultBranch),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("more than the 50 `needs`"),
            "{err}"
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
        assert_eq!(doc["default"]["tags"], json!(["aws"]));
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
        assert_eq!(
            doc["roll:d1.example.com"]["script"][0],
            "./bin/kopsci roll d1.example.com --yes"
        );
    }
}
