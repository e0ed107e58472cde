//! `kopsci pipeline` on real git repositories: which clusters a commit
//! affects, the child pipeline generated for them (snapshots, and GitLab's
//! CI schema via `check-jsonschema`), and the CI/CD component.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Kopsci, Run, Sandbox, repo_root};

const FLEET: &str = concat!(
    crate::fleet::dev_prod_fleet_head!(),
    "  - name: dev-b.k8s.example.com
    environment: dev
    values: [values/clusters/dev-b.yaml]
  - name: prod-a.k8s.example.com
    environment: prod
    values: [values/clusters/prod-a.yaml]
"
);

const TEMPLATE: &str = "\
apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  name: {{ clusterName }}
spec:
  kubernetesVersion: {{ kubernetesVersion }}
  {{ include('api.yaml') }}
{% if spot is defined %}
  {{ include('spot.yaml') }}
{% endif %}
";

/// Every GitLab variable kopsci reads, so that tests running inside a
/// GitLab job do not see that job's values. Empty counts as unset.
const CI_VARIABLES: &[&str] = &[
    "GITLAB_CI",
    "CI_PIPELINE_SOURCE",
    "CI_COMMIT_BRANCH",
    "CI_COMMIT_SHA",
    "CI_COMMIT_BEFORE_SHA",
    "CI_DEFAULT_BRANCH",
    "CI_MERGE_REQUEST_IID",
    "CI_MERGE_REQUEST_DIFF_BASE_SHA",
    "CI_MERGE_REQUEST_EVENT_TYPE",
    "CI_MERGE_REQUEST_TARGET_BRANCH_SHA",
    "CI_API_V4_URL",
    "CI_PROJECT_ID",
    "CI_JOB_NAME",
    "CI_JOB_URL",
    "CI_PIPELINE_ID",
    "CI_PIPELINE_URL",
    "CI_SERVER_TLS_CA_FILE",
    "KOPSCI_GITLAB_TOKEN",
    "KOPSCI_IMAGE",
];

/// A kopsci invocation with no GitLab variables set.
pub fn kopsci_outside_ci(dir: &Path) -> Kopsci {
    let mut kopsci = Kopsci::new().current_dir(dir);
    for var in CI_VARIABLES {
        kopsci = kopsci.env(var, "");
    }
    kopsci
}

/// A git repository holding a fleet under `prefix` ("" or "infra/"), with
/// one commit.
struct Repo {
    sb: Sandbox,
    prefix: &'static str,
    base: String,
}

impl Repo {
    fn new(prefix: &'static str) -> Repo {
        let p = |rel: &str| format!("{prefix}{rel}");
        let sb = Sandbox::new()
            .file("README.md", "# fleet\n")
            .file(&p("kopsci.yaml"), FLEET)
            .file(&p("templates/cluster.yaml.j2"), TEMPLATE)
            .file(
                &p("templates/snippets/api.yaml"),
                "masterPublicName: api.{{ clusterName }}",
            )
            .file(&p("templates/snippets/spot.yaml"), "spot: {{ spot }}")
            .file(&p("values/base.yaml"), "kubernetesVersion: 1.33.0\n")
            .file(&p("values/env/dev.yaml"), "kubernetesVersion: 1.34.1\n")
            .file(&p("values/env/prod.yaml"), "nodes: 3\n")
            .file(&p("values/clusters/dev-a.yaml"), "nodes: 1\n")
            .file(&p("values/clusters/dev-b.yaml"), "spot: true\n")
            .file(&p("values/clusters/prod-a.yaml"), "nodes: 5\n");
        let mut repo = Repo {
            sb,
            prefix,
            base: String::new(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        repo.base = repo.commit("fleet");
        repo
    }

    fn git(&self, args: &[&str]) -> String {
        git_in(self.sb.path(), args)
    }

    /// Commits everything; returns the new commit.
    fn commit(&self, message: &str) -> String {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
        self.git(&["rev-parse", "HEAD"])
    }

    /// Changes a file of the fleet (relative to the fleet's directory) and
    /// commits it.
    fn change(&self, rel: &str, text: &str) -> String {
        self.change_top(&format!("{}{rel}", self.prefix), text)
    }

    /// Replaces `from` with `to` in [`FLEET`], as the fleet file, and
    /// commits it.
    fn edit_fleet(&self, from: &str, to: &str) -> String {
        assert!(FLEET.contains(from), "{from:?} is not in FLEET");
        self.change("kopsci.yaml", &FLEET.replace(from, to))
    }

    /// Changes a file relative to the top level and commits it.
    fn change_top(&self, rel: &str, text: &str) -> String {
        let path = self.sb.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, text).expect("write");
        self.commit(&format!("change {rel}"))
    }

    /// kopsci run from the repository's top level.
    fn kopsci(&self) -> Kopsci {
        let kopsci = kopsci_outside_ci(self.sb.path());
        if self.prefix.is_empty() {
            kopsci
        } else {
            kopsci.args(["--fleet", &format!("{}kopsci.yaml", self.prefix)])
        }
    }

    /// `kopsci pipeline --changed-since BASE ARGS…`.
    fn pipeline(&self, args: &[&str]) -> Run {
        self.pipeline_since(&self.base, args)
    }

    /// `kopsci pipeline --changed-since SINCE ARGS…`.
    fn pipeline_since(&self, since: &str, args: &[&str]) -> Run {
        self.kopsci()
            .args(["pipeline", "--changed-since", since])
            .args(args)
            .run()
    }

    /// The names of the dry-run jobs of a generated pipeline.
    fn dry_runs(&self, args: &[&str]) -> Vec<String> {
        let yaml = self.pipeline(args).success().stdout();
        dry_runs(&yaml)
    }

    /// Shortens the base commit in `text` to a stable placeholder.
    fn stable(&self, text: &str) -> String {
        text.replace(&self.base[..12], "<base>")
    }
}

/// Runs git in `dir` with a fixed identity, dates and no user config:
/// commits are the same on every run.
fn git_in(dir: &Path, args: &[&str]) -> String {
    crate::support::git(
        dir,
        args,
        &[
            ("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z"),
            ("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z"),
        ],
    )
}

fn jobs(yaml: &str) -> serde_json::Map<String, serde_json::Value> {
    let doc: serde_json::Value =
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{yaml}"));
    doc.as_object().cloned().expect("a mapping")
}

fn dry_runs(yaml: &str) -> Vec<String> {
    jobs(yaml)
        .keys()
        .filter_map(|k| k.strip_prefix("dryrun:").map(str::to_string))
        .collect()
}

/// Validates GitLab CI files against GitLab's own schema, offline, with
/// `check-jsonschema` from `.tools/` (`scripts/install-test-deps`).
pub fn validate_gitlab_ci(files: &[PathBuf]) {
    let tool = repo_root().join(".tools/bin/check-jsonschema");
    assert!(
        tool.exists(),
        "{} is missing: run scripts/install-test-deps (it installs check-jsonschema from PyPI into .tools/)",
        tool.display()
    );
    let out = Command::new(&tool)
        .args(["--builtin-schema", "vendor.gitlab-ci"])
        .args(files)
        .output()
        .expect("run check-jsonschema");
    assert!(
        out.status.success(),
        "GitLab CI schema validation failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Writes `yaml` into the sandbox and validates it.
fn validate_text(sb: &Sandbox, name: &str, yaml: &str) {
    let path = sb.join(name);
    std::fs::write(&path, yaml).expect("write pipeline");
    validate_gitlab_ci(&[path]);
}

const ALL: [&str; 3] = [
    "dev-a.k8s.example.com",
    "dev-b.k8s.example.com",
    "prod-a.k8s.example.com",
];

#[test]
fn a_values_change_selects_only_that_cluster() {
    let repo = Repo::new("");
    repo.change("values/clusters/dev-a.yaml", "nodes: 2\n");
    let yaml = repo.pipeline(&["--mr-note"]).success().stdout();
    assert_eq!(dry_runs(&yaml), ["dev-a.k8s.example.com"]);
    validate_text(&repo.sb, "mr.yml", &yaml);
    insta::assert_snapshot!("pipeline_merge_request_values_change", yaml);
}

#[test]
fn a_shared_template_change_selects_every_cluster_in_promotion_order() {
    let repo = Repo::new("");
    repo.change(
        "templates/cluster.yaml.j2",
        &TEMPLATE.replace("kind: Cluster", "kind: Cluster\n# changed"),
    );
    // A push to the default branch, as GitLab describes it.
    let yaml = repo
        .kopsci()
        .env("GITLAB_CI", "true")
        .env("CI_PIPELINE_SOURCE", "push")
        .env("CI_COMMIT_BRANCH", "main")
        .env("CI_DEFAULT_BRANCH", "main")
        .env("CI_COMMIT_BEFORE_SHA", &repo.base)
        .args(["pipeline", "--image", "registry.example.com/kopsci:1"])
        .run()
        .success()
        .stdout();
    assert_eq!(dry_runs(&yaml), ALL);
    let jobs = jobs(&yaml);
    // `apply: reconcile` (the default): one apply job per cluster.
    assert_eq!(
        jobs["apply:prod-a.k8s.example.com"]["needs"],
        serde_json::json!([
            {"job": "dryrun:prod-a.k8s.example.com", "artifacts": true},
            {"job": "apply:dev-a.k8s.example.com", "artifacts": false},
            {"job": "apply:dev-b.k8s.example.com", "artifacts": false},
        ])
    );
    assert_eq!(jobs["apply:dev-a.k8s.example.com"]["interruptible"], false);
    assert_eq!(jobs["apply:dev-a.k8s.example.com"]["timeout"], "3h");
    validate_text(&repo.sb, "main.yml", &yaml);
    insta::assert_snapshot!("pipeline_default_branch_template_change", yaml);
}

#[test]
fn a_readme_change_selects_nothing_and_still_gives_a_valid_pipeline() {
    let repo = Repo::new("");
    repo.change_top("README.md", "# fleet\n\nMore words.\n");
    let yaml = repo.pipeline(&[]).success().stdout();
    assert!(dry_runs(&yaml).is_empty(), "{yaml}");
    assert!(jobs(&yaml).contains_key("kopsci:nothing-to-do"), "{yaml}");
    validate_text(&repo.sb, "none.yml", &yaml);
    let with_note = repo.pipeline(&["--mr-note"]).success().stdout();
    assert!(jobs(&with_note).contains_key("kopsci:note"), "{with_note}");
    validate_text(&repo.sb, "none-note.yml", &with_note);
}

#[test]
fn a_snippet_only_one_cluster_renders_selects_only_it() {
    let repo = Repo::new("");
    repo.change("templates/snippets/spot.yaml", "spot: {{ spot }} # changed");
    assert_eq!(repo.dry_runs(&[]), ["dev-b.k8s.example.com"]);
    let explain = repo.pipeline(&["--explain"]).success().stdout();
    assert!(
        explain.contains(
            "  dev-b.k8s.example.com (dev)\n    - templates/snippets/spot.yaml changed (a snippet its render includes)\n"
        ),
        "{explain}"
    );
    // A snippet every cluster renders selects them all.
    repo.change(
        "templates/snippets/api.yaml",
        "masterPublicName: api2.{{ clusterName }}",
    );
    assert_eq!(repo.dry_runs(&[]), ALL);
}

/// A fleet-wide setting every cluster resolves: every cluster.
#[test]
fn a_fleet_file_change_selects_every_cluster() {
    let repo = Repo::new("");
    repo.edit_fleet("kops-state-example", "kops-state-other");
    assert_eq!(repo.dry_runs(&[]), ALL);
}

#[test]
fn a_fleet_file_change_selects_only_the_clusters_whose_entry_changed() {
    let repo = Repo::new("");
    // A comment and a reordered key: no cluster's entry changed.
    repo.change(
        "kopsci.yaml",
        &format!("# Our clusters.\n{FLEET}").replace(
            "    environment: dev\n    values: [values/clusters/dev-a.yaml]",
            "    values: [values/clusters/dev-a.yaml]\n    environment: dev",
        ),
    );
    assert!(repo.dry_runs(&[]).is_empty());
    // One cluster's settings.
    repo.edit_fleet(
        "values: [values/clusters/dev-b.yaml]",
        "values: [values/clusters/dev-b.yaml]\n    apply: update-roll",
    );
    assert_eq!(repo.dry_runs(&[]), ["dev-b.k8s.example.com"]);
    let explain = repo.pipeline(&["--explain"]).success().stdout();
    assert!(
        explain.contains(
            "  dev-b.k8s.example.com (dev)\n    - kopsci.yaml: `apply` changed (reconcile → update-roll)\n"
        ),
        "{explain}"
    );
    // An environment's setting: its clusters.
    repo.edit_fleet(
        "    values: [values/env/prod.yaml]\n",
        "    values: [values/env/prod.yaml]\n    auto_apply: true\n",
    );
    assert_eq!(repo.dry_runs(&[]), ["prod-a.k8s.example.com"]);
    // A new cluster: only it.
    repo.change(
        "kopsci.yaml",
        &format!("{FLEET}  - name: dev-c.k8s.example.com\n    environment: dev\n"),
    );
    assert_eq!(repo.dry_runs(&[]), ["dev-c.k8s.example.com"]);
}

/// A cluster removed from the fleet file is never selected (nothing may
/// delete it); `--explain` and the note say it left the fleet.
#[test]
fn a_cluster_that_left_the_fleet_is_reported_not_deleted() {
    let repo = Repo::new("");
    repo.edit_fleet("  - name: prod-a.k8s.example.com\n    environment: prod\n    values: [values/clusters/prod-a.yaml]\n",
            "");
    let explain = repo.pipeline(&["--explain"]).success().stdout();
    assert!(explain.contains("affected: 0 of 2 clusters\n"), "{explain}");
    assert!(
        explain.contains("left the fleet: 1 (")
            && explain.contains("  prod-a.k8s.example.com (prod): its cloud resources remain\n"),
        "{explain}"
    );
    let yaml = repo.pipeline(&["--mr-note"]).success().stdout();
    assert_eq!(
        jobs(&yaml)["kopsci:note"]["script"],
        serde_json::json!([
            "kopsci note --report-dir .kopsci/reports --left-the-fleet prod-a.k8s.example.com"
        ])
    );
    assert!(
        yaml.contains("#   prod-a.k8s.example.com: left the fleet"),
        "{yaml}"
    );
    validate_text(&repo.sb, "left.yml", &yaml);
    // The default branch deletes nothing.
    let yaml = repo
        .pipeline(&["--for", "default-branch"])
        .success()
        .stdout();
    assert!(!yaml.contains("delete:"), "{yaml}");
    assert!(jobs(&yaml).contains_key("kopsci:nothing-to-do"), "{yaml}");
}

#[test]
fn a_fleet_file_that_did_not_parse_at_the_base_selects_every_cluster() {
    let repo = Repo::new("");
    // The base itself holds a fleet file today's kopsci refuses.
    repo.change("kopsci.yaml", &format!("{FLEET}colour: blue\n"));
    let broken = repo.git(&["rev-parse", "HEAD"]);
    repo.change("kopsci.yaml", FLEET);
    let explain = repo
        .pipeline_since(&broken, &["--explain"])
        .success()
        .stdout();
    assert!(explain.contains("affected: 3 of 3 clusters"), "{explain}");
    assert!(
        explain.contains(
            "    - kopsci.yaml changed and its version at the base cannot be compared, so every cluster is affected: it does not parse at "
        ),
        "{explain}"
    );
}

/// The fleet file at the merge base is what counts, as for `git diff
/// BASE...HEAD`: a fleet change made on the target branch since the
/// branch started affects nothing here.
#[test]
fn the_fleet_file_is_compared_at_the_merge_base() {
    let repo = Repo::new("");
    repo.git(&["checkout", "-q", "-b", "topic"]);
    repo.edit_fleet(
        "values: [values/clusters/dev-a.yaml]",
        "values: [values/clusters/dev-a.yaml, values/env/prod.yaml]",
    );
    repo.git(&["checkout", "-q", "main"]);
    repo.edit_fleet("kops-state-example", "kops-state-moved");
    let main = repo.git(&["rev-parse", "HEAD"]);
    repo.git(&["checkout", "-q", "topic"]);
    let yaml = repo.pipeline_since(&main, &[]).success().stdout();
    assert_eq!(dry_runs(&yaml), ["dev-a.k8s.example.com"]);
}

#[test]
fn ignored_paths_affect_no_cluster() {
    let repo = Repo::new("infra/");
    repo.change(
        "kopsci.yaml",
        &format!("ignore: [\"infra/docs/**\", \"**/*.md\", \"infra/values/clusters/dev-a.yaml\"]\n{FLEET}"),
    );
    let base = repo.git(&["rev-parse", "HEAD"]);
    repo.change("docs/runbook.md", "# Runbook\n");
    repo.change(
        "templates/snippets/NOTES.md",
        "Why the snippets are as they are.\n",
    );
    // A declared input matched by a glob is ignored too, with a warning.
    repo.change("values/clusters/dev-a.yaml", "nodes: 9\n");
    let run = repo
        .pipeline_since(&base, &["--explain", "--out", "p.yml"])
        .success();
    let explain = run.stdout();
    assert!(explain.contains("affected: 0 of 3 clusters"), "{explain}");
    assert!(
        explain.contains("; 3 ignored (`ignore:`)\n")
            && explain.contains(
                "ignored: 3 files (matching the fleet's `ignore:` globs)\n  infra/docs/runbook.md\n  infra/templates/snippets/NOTES.md\n  infra/values/clusters/dev-a.yaml\n"
            ),
        "{explain}"
    );
    run.assert_stderr_has("infra/values/clusters/dev-a.yaml matches an `ignore:` glob of infra/kopsci.yaml but is (or is under) the declared input infra/values/clusters/dev-a.yaml");
    assert!(dry_runs(&repo.sb.read("p.yml")).is_empty());
    // Globs are relative to the repository's top level, not the fleet's
    // directory: a path as the fleet file writes it does not match.
    repo.change(
        "kopsci.yaml",
        &format!("ignore: [\"values/clusters/dev-b.yaml\"]\n{FLEET}"),
    );
    let base = repo.git(&["rev-parse", "HEAD"]);
    repo.change("values/clusters/dev-b.yaml", "spot: false\n");
    let yaml = repo.pipeline_since(&base, &[]).success().stdout();
    assert_eq!(dry_runs(&yaml), ["dev-b.k8s.example.com"]);
}

/// `--downstream-jobs`: the fleet repository's jobs join the default
/// branch's child pipeline after the cluster jobs they need.
#[test]
fn downstream_jobs_join_the_default_branch_after_their_clusters() {
    let repo = Repo::new("");
    repo.change_top(
        ".gitlab/after-apply.yml",
        "\
workloads:dev-a:
  needs: [\"apply:dev-a.k8s.example.com\"]
  resource_group: kops-dev-a.k8s.example.com
  script:
    - kopsci kubeconfig dev-a.k8s.example.com --out \"$CI_PROJECT_DIR/.kube/config\"
    - helm upgrade --install app charts/app
workloads:prod-a:
  needs: [\"apply:prod-a.k8s.example.com\"]
  script: [helm list]
",
    );
    let base = repo.git(&["rev-parse", "HEAD"]);
    repo.change("values/clusters/dev-a.yaml", "nodes: 2\n");
    let run = |kind: &str| {
        repo.pipeline_since(
            &base,
            &[
                "--for",
                kind,
                "--downstream-jobs",
                ".gitlab/after-apply.yml",
            ],
        )
    };
    let yaml = run("default-branch").success().stdout();
    validate_text(&repo.sb, "downstream.yml", &yaml);
    let jobs = jobs(&yaml);
    assert_eq!(jobs["workloads:dev-a"]["stage"], "downstream");
    assert_eq!(
        jobs["workloads:dev-a"]["needs"],
        serde_json::json!(["apply:dev-a.k8s.example.com"])
    );
    assert!(!jobs.contains_key("workloads:prod-a"), "{yaml}");
    assert!(
        yaml.contains("# downstream job `workloads:prod-a` left out: it needs `apply:prod-a.k8s.example.com`, not in this pipeline\n"),
        "{yaml}"
    );
    // Merge requests: only dry runs.
    assert!(
        !run("merge-request")
            .success()
            .stdout()
            .contains("workloads:")
    );
    // An empty value (the component's default) is none; a bad file is a
    // usage error naming it.
    repo.pipeline_since(&base, &["--downstream-jobs", ""])
        .success();
    repo.change_top(
        ".gitlab/after-apply.yml",
        "workloads:x:\n  stage: deploy\n  needs: [a]\n",
    );
    repo.kopsci()
        .args(["pipeline", "--downstream-jobs", ".gitlab/after-apply.yml"])
        .run()
        .fails_with(
            64,
            &[".gitlab/after-apply.yml: job `workloads:x`: leave out `stage:`"],
        );
}

/// The default branch follows each cluster's `apply:`, `auto_apply` and
/// `absent`, in one pipeline mixing all of them.
#[test]
fn the_default_branch_follows_each_clusters_strategy() {
    let repo = Repo::new("");
    let fleet = FLEET
        .replace(
            "    values: [values/env/dev.yaml]\n",
            "    values: [values/env/dev.yaml]\n    apply: update-roll\n    auto_apply: true\n",
        )
        .replace(
            "    values: [values/env/prod.yaml]\n",
            "    values: [values/env/prod.yaml]\n    apply: {timeout: 6h}\n",
        );
    repo.change(
        "kopsci.yaml",
        &format!("{fleet}  - name: old.k8s.example.com\n    environment: prod\n    absent: true\n"),
    );
    let yaml = repo
        .kopsci()
        .args([
            "pipeline",
            "--for",
            "default-branch",
            "--all",
            "--image",
            "registry.example.com/kopsci:1",
        ])
        .run()
        .success()
        .stdout();
    validate_text(&repo.sb, "mixed.yml", &yaml);
    let jobs = jobs(&yaml);
    assert!(jobs["update:dev-a.k8s.example.com"].get("when").is_none());
    assert_eq!(jobs["roll:dev-a.k8s.example.com"]["when"], "manual");
    assert_eq!(jobs["apply:prod-a.k8s.example.com"]["when"], "manual");
    assert_eq!(jobs["apply:prod-a.k8s.example.com"]["timeout"], "6h");
    assert_eq!(
        jobs["delete:old.k8s.example.com"]["environment"]["action"],
        "stop"
    );
    insta::assert_snapshot!("pipeline_default_branch_mixed_strategies", yaml);
}

#[test]
fn environment_values_select_their_environment() {
    let repo = Repo::new("");
    repo.change("values/env/prod.yaml", "nodes: 4\n");
    assert_eq!(repo.dry_runs(&[]), ["prod-a.k8s.example.com"]);
    repo.change("values/base.yaml", "kubernetesVersion: 1.33.1\n");
    assert_eq!(repo.dry_runs(&[]), ALL);
}

#[test]
fn explain_gives_every_reason_and_the_unaffected_clusters() {
    let repo = Repo::new("");
    repo.change("values/clusters/dev-a.yaml", "nodes: 2\n");
    repo.change("values/env/dev.yaml", "kubernetesVersion: 1.34.2\n");
    let out = repo.pipeline(&["--explain"]).success().stdout();
    insta::assert_snapshot!("pipeline_explain", repo.stable(&out));
}

#[test]
fn explain_with_out_writes_the_pipeline_too() {
    let repo = Repo::new("");
    repo.change("values/clusters/prod-a.yaml", "nodes: 6\n");
    let run = repo
        .pipeline(&["--explain", "--out", "child/pipeline.yml"])
        .success();
    run.assert_stdout_has("affected: 1 of 3 clusters");
    assert_eq!(
        dry_runs(&repo.sb.read("child/pipeline.yml")),
        ["prod-a.k8s.example.com"]
    );
    let run = repo.pipeline(&["--out", "child/pipeline.yml"]).success();
    assert!(run.stdout().is_empty(), "{}", run.stdout());
    run.assert_stderr_has(
        "1 of 3 clusters affected; merge-request pipeline written to child/pipeline.yml",
    );
}

#[test]
fn merge_request_pipelines_use_gitlabs_diff_base() {
    let repo = Repo::new("");
    repo.change("values/clusters/dev-b.yaml", "spot: false\n");
    let run = repo
        .kopsci()
        .env("GITLAB_CI", "true")
        .env("CI_PIPELINE_SOURCE", "merge_request_event")
        .env("CI_MERGE_REQUEST_DIFF_BASE_SHA", &repo.base)
        .env("CI_COMMIT_BRANCH", "")
        .env("CI_DEFAULT_BRANCH", "main")
        .args(["pipeline", "--explain", "--out", "p.yml"])
        .run()
        .success();
    assert!(
        run.stdout()
            .starts_with("pipeline: merge-request (CI_PIPELINE_SOURCE is merge_request_event)\n"),
        "{}",
        run.stdout()
    );
    assert!(
        run.stdout()
            .contains("...HEAD (base from CI_MERGE_REQUEST_DIFF_BASE_SHA)")
    );
    let jobs = jobs(&repo.sb.read("p.yml"));
    let names: Vec<&String> = jobs.keys().collect();
    assert_eq!(names, ["stages", "dryrun:dev-b.k8s.example.com"]);
}

#[test]
fn a_branch_that_is_not_the_default_gets_dry_runs_only() {
    let repo = Repo::new("");
    repo.change("values/clusters/dev-a.yaml", "nodes: 2\n");
    let yaml = repo
        .kopsci()
        .env("GITLAB_CI", "true")
        .env("CI_PIPELINE_SOURCE", "push")
        .env("CI_COMMIT_BRANCH", "feature")
        .env("CI_DEFAULT_BRANCH", "main")
        .env("CI_COMMIT_BEFORE_SHA", &repo.base)
        .args(["pipeline"])
        .run()
        .success()
        .stdout();
    assert!(!yaml.contains("update:"), "{yaml}");
    assert_eq!(dry_runs(&yaml), ["dev-a.k8s.example.com"]);
}

#[test]
fn the_fleet_may_live_in_a_subdirectory() {
    let repo = Repo::new("infra/");
    repo.change("values/clusters/dev-a.yaml", "nodes: 2\n");
    // From the top level with --fleet …
    let yaml = repo
        .pipeline(&["--for", "default-branch"])
        .success()
        .stdout();
    assert_eq!(dry_runs(&yaml), ["dev-a.k8s.example.com"]);
    assert_eq!(
        jobs(&yaml)["variables"]["KOPSCI_FLEET"],
        "infra/kopsci.yaml"
    );
    // … and from the fleet's own directory.
    let explain = kopsci_outside_ci(&repo.sb.join("infra"))
        .args(["pipeline", "--changed-since", &repo.base, "--explain"])
        .run()
        .success()
        .stdout();
    assert!(explain.contains("fleet: infra/kopsci.yaml\n"), "{explain}");
    assert!(
        explain.contains("    - infra/values/clusters/dev-a.yaml changed (cluster values)\n"),
        "{explain}"
    );
    // A README beside the fleet is not an input.
    repo.change("README.md", "# infra\n");
    let yaml = repo.pipeline_since("HEAD~1", &[]).success().stdout();
    assert!(dry_runs(&yaml).is_empty(), "{yaml}");
}

#[test]
fn without_a_base_every_cluster_is_selected() {
    let repo = Repo::new("");
    let explain = repo
        .kopsci()
        .args(["pipeline", "--explain"])
        .run()
        .success()
        .stdout();
    assert!(
        explain.contains("basis: every cluster: no base revision to count changes from"),
        "{explain}"
    );
    assert!(explain.contains("affected: 3 of 3 clusters"), "{explain}");
    // GitLab's all-zero "before" commit (new branch, schedule) means none.
    let yaml = repo
        .kopsci()
        .env(
            "CI_COMMIT_BEFORE_SHA",
            "0000000000000000000000000000000000000000",
        )
        .args(["pipeline"])
        .run()
        .success()
        .stdout();
    assert_eq!(dry_runs(&yaml), ALL);
    // … and the basis says it was all zeros, not unset.
    let explain = repo
        .kopsci()
        .env("CI_PIPELINE_SOURCE", "push")
        .env(
            "CI_COMMIT_BEFORE_SHA",
            "0000000000000000000000000000000000000000",
        )
        .args(["pipeline", "--explain"])
        .run()
        .success()
        .stdout();
    assert!(
        explain.contains(
            "basis: every cluster: no base revision to count changes from (no --changed-since or CI_MERGE_REQUEST_DIFF_BASE_SHA; new branch: CI_COMMIT_BEFORE_SHA is all zeros)\n"
        ),
        "{explain}"
    );
    // --all says so, whatever changed; it cannot be combined with a base.
    let explain = repo
        .kopsci()
        .args(["pipeline", "--all", "--explain"])
        .run()
        .success()
        .stdout();
    assert!(
        explain.contains("basis: every cluster: --all\n"),
        "{explain}"
    );
    repo.pipeline(&["--all"]).expect_code(64);
}

#[test]
fn a_before_sha_missing_from_the_clone_selects_everything() {
    let repo = Repo::new("");
    let yaml = repo
        .kopsci()
        .env(
            "CI_COMMIT_BEFORE_SHA",
            "1111111111111111111111111111111111111111",
        )
        .args(["pipeline"])
        .run()
        .success()
        .stdout();
    assert_eq!(dry_runs(&yaml), ALL);
}

#[test]
fn an_unknown_base_is_an_error_with_a_hint() {
    let repo = Repo::new("");
    let run = repo
        .pipeline_since("no-such-branch", &[])
        .fails_with(1, &["no commit `no-such-branch`", "GIT_DEPTH: 0"]);
    // The name came from --changed-since: passing it is no advice.
    assert!(
        !run.stderr().contains("pass --changed-since"),
        "{}",
        run.stderr()
    );
    // A base GitLab named that is missing may be replaced by one.
    repo.kopsci()
        .env("CI_MERGE_REQUEST_DIFF_BASE_SHA", "no-such-branch")
        .args(["pipeline"])
        .run()
        .fails_with(
            1,
            &["no commit `no-such-branch`", "or pass --changed-since"],
        );
}

#[test]
fn outside_a_git_repository_is_an_error() {
    let sb = Sandbox::new()
        .file("kopsci.yaml", FLEET)
        .file("templates/cluster.yaml.j2", TEMPLATE);
    kopsci_outside_ci(sb.path())
        .env(
            "GIT_CEILING_DIRECTORIES",
            sb.path().parent().expect("parent"),
        )
        .args(["pipeline", "--changed-since", "HEAD~1"])
        .run()
        .fails_with(
            1,
            &["git rev-parse --show-toplevel", "inside the git repository"],
        );
}

#[test]
fn every_option_reaches_a_valid_pipeline() {
    let repo = Repo::new("");
    repo.change("values/clusters/dev-a.yaml", "nodes: 2\n");
    let yaml = repo
        .pipeline(&[
            "--for",
            "default-branch",
            "--tag",
            "aws",
            "--kopsci-command",
            "./kopsci",
            "--report-dir",
            "out/reports",
            "--expire-in",
            "3 days",
            "--kops-version",
            "1.34.1",
            "--dryrun-environment=false",
            "--aws-oidc-audience",
            "sts.amazonaws.com",
        ])
        .success()
        .stdout();
    let jobs = jobs(&yaml);
    // The runner tag reaches the jobs that reach AWS (it was `default:
    // tags:`, which gave it to every job).
    assert!(!jobs.contains_key("default"), "{yaml}");
    for job in ["dryrun", "apply"] {
        assert_eq!(
            jobs[&format!("{job}:dev-a.k8s.example.com")]["tags"],
            serde_json::json!(["aws"]),
            "{job}"
        );
    }
    assert_eq!(jobs["variables"]["KOPS_VERSION"], "1.34.1");
    assert!(
        jobs["dryrun:dev-a.k8s.example.com"]
            .get("environment")
            .is_none()
    );
    assert_eq!(
        jobs["apply:dev-a.k8s.example.com"]["id_tokens"]["KOPSCI_ID_TOKEN"]["aud"],
        "sts.amazonaws.com"
    );
    assert_eq!(
        jobs["apply:dev-a.k8s.example.com"]["variables"]["AWS_ROLE_ARN"],
        "$KOPSCI_UPDATE_ROLE_ARN"
    );
    assert_eq!(
        jobs["apply:dev-a.k8s.example.com"]["script"][0],
        "./kopsci apply dev-a.k8s.example.com --report-dir out/reports"
    );
    validate_text(&repo.sb, "options.yml", &yaml);
}

/// The component's two documents (the `spec:` header and the jobs), each
/// valid against GitLab's schema, with every input declared and used.
#[test]
fn the_ci_component_is_valid_and_uses_every_input() {
    let text = std::fs::read_to_string(repo_root().join("templates/kopsci.yml"))
        .expect("templates/kopsci.yml");
    let (header, body) = text.split_once("\n---\n").expect("a spec header and `---`");
    let sb = Sandbox::new()
        .file("header.yml", &format!("{header}\n"))
        .file("body.yml", body);
    validate_gitlab_ci(&[sb.join("header.yml"), sb.join("body.yml")]);

    let spec: serde_json::Value = serde_saphyr::from_str(header).expect("header YAML");
    let declared: Vec<&String> = spec["spec"]["inputs"]
        .as_object()
        .expect("inputs")
        .keys()
        .collect();
    let used: std::collections::BTreeSet<&str> = body
        .split("$[[ inputs.")
        .skip(1)
        .filter_map(|rest| rest.split_once(" ]]").map(|(name, _)| name))
        .collect();
    for name in &declared {
        assert!(used.contains(name.as_str()), "input `{name}` is never used");
    }
    for name in &used {
        assert!(
            declared.iter().any(|d| d == name),
            "input `{name}` is used but not declared"
        );
    }
    // Which trigger job mirrors its child pipeline: the merge request's
    // and the schedule's (drift turns them red), not the default branch's,
    // whose child waits for people.
    let jobs: serde_json::Value = serde_saphyr::from_str(body).expect("body YAML");
    assert_eq!(jobs["kopsci:dryrun"]["trigger"]["strategy"], "depend");
    assert_eq!(jobs["kopsci:drift"]["trigger"]["strategy"], "depend");
    assert!(jobs["kopsci:deploy"]["trigger"].get("strategy").is_none());
    // Only kopsci:pipeline clones with history; it publishes the
    // environments' files of split pipelines too.
    assert_eq!(jobs["kopsci:pipeline"]["variables"]["GIT_DEPTH"], "0");
    assert_eq!(
        jobs["kopsci:pipeline"]["artifacts"]["paths"],
        serde_json::json!([".kopsci/child-pipeline.yml", ".kopsci/children/"])
    );
    // The flags the component passes exist.
    let script = body
        .split("kopsci pipeline")
        .nth(1)
        .and_then(|rest| rest.split("artifacts:").next())
        .expect("the kopsci pipeline command");
    let help = Kopsci::new()
        .args(["pipeline", "--help"])
        .run()
        .success()
        .stdout();
    for flag in script
        .split_whitespace()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap_or(w))
    {
        assert!(help.contains(flag), "`kopsci pipeline` has no {flag}");
    }
}

/// docs/gitlab.md's inputs table is the component's inputs with their
/// defaults, and its list of `kopsci pipeline` flags is `--help`'s.
#[test]
fn the_gitlab_guide_lists_the_components_inputs_and_the_pipeline_flags() {
    let root = repo_root();
    let component = std::fs::read_to_string(root.join("templates/kopsci.yml")).expect("component");
    let (header, _) = component.split_once("\n---\n").expect("a spec header");
    let spec: serde_json::Value = serde_saphyr::from_str(header).expect("header YAML");
    let declared: std::collections::BTreeMap<String, String> = spec["spec"]["inputs"]
        .as_object()
        .expect("inputs")
        .iter()
        .map(|(name, input)| {
            let default = match &input["default"] {
                serde_json::Value::String(s) if s.is_empty() => "\"\"".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (name.clone(), default)
        })
        .collect();
    let guide = std::fs::read_to_string(root.join("docs/gitlab.md")).expect("docs/gitlab.md");
    let section = guide
        .split("\n## The component and its inputs\n")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .expect("the inputs section");
    let documented: std::collections::BTreeMap<String, String> = section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.strip_prefix("| `")?.splitn(3, " | ").collect();
            let name = cells.first()?.strip_suffix('`')?;
            let default = cells.get(1)?.trim_matches('`');
            Some((name.to_string(), default.to_string()))
        })
        .collect();
    assert_eq!(documented, declared, "docs/gitlab.md's inputs table");

    let listed: std::collections::BTreeSet<&str> = section
        .split("Everything `kopsci pipeline` can do is a flag")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("the list of flags")
        .split('`')
        .filter(|w| w.starts_with("--"))
        .collect();
    let help = Kopsci::new()
        .args(["pipeline", "--help"])
        .run()
        .success()
        .stdout();
    let flags: std::collections::BTreeSet<&str> = help
        .lines()
        // Option lines only: `  -v, --verbose...`, `      --out <FILE>`.
        .filter(|line| line.starts_with("  -") || line.starts_with("      --"))
        .filter_map(|line| {
            line.split([' ', '[', '=', ',', '.'])
                .find(|w| w.starts_with("--"))
        })
        .filter(|f| !["--help", "--version", "--verbose", "--quiet", "--color"].contains(f))
        .collect();
    for flag in &listed {
        assert!(
            flags.contains(flag),
            "docs/gitlab.md lists {flag}, which `kopsci pipeline` lacks"
        );
    }
    for flag in &flags {
        assert!(
            listed.contains(flag)
                || guide.contains(&format!("`{flag}"))
                || guide.contains(&format!(" {flag} ")),
            "`kopsci pipeline {flag}` is not in docs/gitlab.md"
        );
    }
}

// ---------------------------------------------------------------------
// Drift, artifacts, fetch depth
// ---------------------------------------------------------------------

#[test]
fn scheduled_pipelines_check_every_cluster_for_drift() {
    let repo = Repo::new("");
    let schedule = || {
        repo.kopsci()
            .env("GITLAB_CI", "true")
            .env("CI_PIPELINE_SOURCE", "schedule")
            .env("CI_COMMIT_BRANCH", "main")
            .env("CI_DEFAULT_BRANCH", "main")
    };
    let run = schedule()
        .args(["pipeline", "--explain", "--out", "drift.yml"])
        .run()
        .success();
    assert!(
        run.stdout()
            .starts_with("pipeline: drift (CI_PIPELINE_SOURCE is schedule: drift detection)\n"),
        "{}",
        run.stdout()
    );
    run.assert_stdout_has("basis: every cluster: a drift pipeline checks every cluster\n");
    let yaml = repo.sb.read("drift.yml");
    validate_text(&repo.sb, "drift-check.yml", &yaml);
    let jobs = jobs(&yaml);
    assert_eq!(dry_runs(&yaml), ALL);
    // Nothing that applies.
    assert!(
        !jobs.keys().any(|k| k.starts_with("update:")
            || k.starts_with("roll:")
            || k.starts_with("apply:")
            || k.starts_with("delete:")),
        "{yaml}"
    );
    assert_eq!(jobs["stages"], serde_json::json!(["dryrun", "report"]));
    for cluster in ALL {
        let job = &jobs[&format!("dryrun:{cluster}")];
        assert_eq!(
            job["script"][0],
            format!("kopsci dryrun {cluster} --report-dir .kopsci/reports --detailed-exitcode")
        );
        // A drifted cluster fails its job: exit code 2 is no warning.
        assert!(job.get("allow_failure").is_none(), "{job}");
        assert_eq!(job["artifacts"]["when"], "always");
    }
    // The report: every dry run's artifacts (no `needs`, a later stage),
    // whatever they found, only with the token.
    let report = &jobs["kopsci:drift-report"];
    assert_eq!(
        report["script"],
        serde_json::json!(["kopsci drift --report-dir .kopsci/reports"])
    );
    assert_eq!(report["stage"], "report");
    assert!(report.get("needs").is_none());
    assert!(report.get("dependencies").is_none());
    assert_eq!(
        report["rules"],
        serde_json::json!([{"if": "$KOPSCI_GITLAB_TOKEN", "when": "always"}])
    );

    // The warning form, as asked.
    let yaml = schedule()
        .args(["pipeline", "--drift-allow-failure"])
        .run()
        .success()
        .stdout();
    assert_eq!(
        jobs_of(&yaml)["dryrun:prod-a.k8s.example.com"]["allow_failure"],
        serde_json::json!({"exit_codes": [2]})
    );
    validate_text(&repo.sb, "drift-warn.yml", &yaml);

    // Drift detection off: the schedule is a default-branch pipeline.
    let yaml = schedule()
        .args(["pipeline", "--drift-on-schedule=false"])
        .run()
        .success()
        .stdout();
    assert!(jobs_of(&yaml).contains_key("apply:prod-a.k8s.example.com"));
    // --for drift anywhere; a base makes no sense for it.
    let yaml = repo
        .kopsci()
        .args(["pipeline", "--for", "drift"])
        .run()
        .success()
        .stdout();
    assert_eq!(dry_runs(&yaml), ALL);
    repo.pipeline(&["--for", "drift"])
        .fails_with(64, &["--changed-since does not apply"]);
}

#[test]
fn artifacts_are_for_developers_and_cluster_jobs_fetch_one_commit() {
    let repo = Repo::new("");
    repo.change(
        "templates/cluster.yaml.j2",
        &TEMPLATE.replace("kind: Cluster", "kind: Cluster\n# changed"),
    );
    let yaml = repo
        .pipeline(&["--for", "default-branch", "--tag", "aws"])
        .success()
        .stdout();
    let jobs = jobs(&yaml);
    let mut with_artifacts = 0;
    for (name, job) in jobs.iter().filter(|(_, j)| j.get("artifacts").is_some()) {
        assert_eq!(job["artifacts"]["access"], "developer", "{name}");
        with_artifacts += 1;
    }
    assert_eq!(with_artifacts, 6, "dry runs and applies: {yaml}");
    for (name, job) in jobs.iter().filter(|(n, _)| n.contains(':')) {
        // Only kopsci:pipeline, in the parent, needs history.
        assert_eq!(job["variables"]["GIT_DEPTH"], "1", "{name}");
        assert_eq!(job["tags"], serde_json::json!(["aws"]), "{name}");
    }
    // The note runs anywhere.
    let mr = repo
        .pipeline(&["--mr-note", "--tag", "aws"])
        .success()
        .stdout();
    let note = &jobs_of(&mr)["kopsci:note"];
    assert!(note.get("tags").is_none(), "{note}");
    assert_eq!(note["artifacts"]["access"], "developer");
    // Older GitLab: `public: false`.
    let old = repo
        .pipeline(&[
            "--for",
            "default-branch",
            "--artifacts-access",
            "public-false",
        ])
        .success()
        .stdout();
    for (name, job) in jobs_of(&old)
        .iter()
        .filter(|(_, j)| j.get("artifacts").is_some())
    {
        assert_eq!(job["artifacts"]["public"], false, "{name}");
        assert!(job["artifacts"].get("access").is_none(), "{name}");
    }
    validate_text(&repo.sb, "access.yml", &yaml);
    validate_text(&repo.sb, "public.yml", &old);
}

/// [`jobs`], for tests whose own `jobs` variable hides it.
fn jobs_of(yaml: &str) -> serde_json::Map<String, serde_json::Value> {
    jobs(yaml)
}

// ---------------------------------------------------------------------
// A fleet of 1000 clusters
// ---------------------------------------------------------------------

/// Environments of the big fleet, in promotion order, with their sizes.
const BIG: [(&str, usize); 3] = [("test", 100), ("staging", 300), ("prod", 600)];

/// A git repository holding a fleet of 1000 clusters in three environments
/// (`test` → `staging` → `prod`), `staging` with `apply: update-roll`, the
/// others with the default `reconcile`.
fn big_fleet() -> Sandbox {
    let mut fleet = String::from("templates: [templates/cluster.yaml.j2]\nenvironments:\n");
    fleet.push_str(
        "  test: {}\n  staging: {needs: [test], apply: update-roll}\n  prod: {needs: [staging]}\nclusters:\n",
    );
    for (env, n) in BIG {
        for i in 0..n {
            fleet.push_str(&format!(
                "  - {{name: c{i:03}.{env}.k8s.example.com, environment: {env}}}\n"
            ));
        }
    }
    let sb = Sandbox::new()
        .file("kopsci.yaml", &fleet)
        .file("templates/cluster.yaml.j2", TEMPLATE);
    git_in(sb.path(), &["init", "-q", "-b", "main"]);
    git_in(sb.path(), &["add", "-A"]);
    git_in(sb.path(), &["commit", "-q", "-m", "fleet"]);
    sb
}

fn big_cluster(env: &str, i: usize) -> String {
    format!("c{i:03}.{env}.k8s.example.com")
}

/// Every job's `needs`, by name.
fn needs_graph(
    jobs: &serde_json::Map<String, serde_json::Value>,
) -> std::collections::BTreeMap<String, Vec<String>> {
    jobs.iter()
        .filter(|(_, j)| j.is_object() && j.get("stage").is_some())
        .map(|(name, job)| {
            let needs = job
                .get("needs")
                .and_then(|n| n.as_array())
                .map(|a| {
                    a.iter()
                        .map(|n| n["job"].as_str().expect("needs: job").to_string())
                        .collect()
                })
                .unwrap_or_default();
            (name.clone(), needs)
        })
        .collect()
}

/// Every job `from` waits for, directly or through others.
fn transitive_needs(
    graph: &std::collections::BTreeMap<String, Vec<String>>,
    from: &str,
) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    let mut stack = graph[from].clone();
    while let Some(job) = stack.pop() {
        if seen.insert(job.clone()) {
            stack.extend(graph.get(&job).into_iter().flatten().cloned());
        }
    }
    seen
}

#[test]
fn a_thousand_clusters_keep_promotion_order_within_fifty_needs() {
    let sb = big_fleet();
    // One pipeline: 2300 deployment jobs (test and prod apply, staging
    // updates and rolls), beyond GitLab's default 500, which kopsci
    // refuses unless told the instance allows them.
    kopsci_outside_ci(sb.path())
        .args(["pipeline", "--for", "default-branch", "--all"])
        .run()
        .fails_with(
            1,
            &[
                "2300 deployment jobs",
                "more than the 500 allowed",
                "--split-by-environment",
            ],
        );
    let yaml = kopsci_outside_ci(sb.path())
        .args([
            "pipeline",
            "--for",
            "default-branch",
            "--all",
            "--max-deployments",
            "0",
        ])
        .run()
        .success()
        .stdout();
    validate_text(&sb, "big.yml", &yaml);
    let jobs = jobs(&yaml);
    let graph = needs_graph(&jobs);
    for (name, needs) in &graph {
        assert!(needs.len() <= 50, "{name} needs {} jobs", needs.len());
        for need in needs {
            assert!(
                graph.contains_key(need),
                "{name} needs a missing job {need}"
            );
        }
    }
    let last = |kind: &str, env: &str, n: usize| -> Vec<String> {
        (0..n)
            .map(|i| format!("{kind}:{}", big_cluster(env, i)))
            .collect()
    };
    let [(test, n_test), (staging, n_staging), (prod, n_prod)] = BIG;
    // test waits for nothing of the later environments.
    for i in 0..n_test {
        let cluster = big_cluster(test, i);
        let before = transitive_needs(&graph, &format!("apply:{cluster}"));
        assert_eq!(
            before,
            [format!("dryrun:{cluster}")].into_iter().collect(),
            "{cluster}"
        );
    }
    // staging (update, roll): every test apply; prod (apply): every
    // staging roll and test apply.
    for (env, first, n, waits) in [
        (staging, "update", n_staging, last("apply", test, n_test)),
        (
            prod,
            "apply",
            n_prod,
            [
                last("roll", staging, n_staging),
                last("apply", test, n_test),
            ]
            .concat(),
        ),
    ] {
        for i in 0..n {
            let cluster = big_cluster(env, i);
            let before = transitive_needs(&graph, &format!("{first}:{cluster}"));
            assert!(before.contains(&format!("dryrun:{cluster}")), "{cluster}");
            for job in &waits {
                assert!(
                    before.contains(job),
                    "{first}:{cluster} does not wait for {job}"
                );
            }
            // Its own roll comes after it, never before.
            assert!(!before.contains(&format!("roll:{cluster}")), "{cluster}");
        }
    }
    // A roll waits for its own update.
    let cluster = big_cluster(staging, 0);
    assert_eq!(
        graph[&format!("roll:{cluster}")],
        [format!("update:{cluster}")]
    );
    assert_eq!(
        jobs["stages"],
        serde_json::json!([
            "dryrun",
            "apply-test",
            "gate-staging",
            "update-staging",
            "roll-staging",
            "gate-prod",
            "apply-prod"
        ])
    );
}

#[test]
fn a_thousand_clusters_split_into_environment_pipelines_within_the_limits() {
    let sb = big_fleet();
    let run = kopsci_outside_ci(sb.path())
        .env("CI_PIPELINE_ID", "4242")
        .env("CI_JOB_NAME", "kopsci:pipeline")
        .args([
            "pipeline",
            "--for",
            "default-branch",
            "--all",
            "--split-by-environment",
            "--out",
            ".kopsci/child-pipeline.yml",
        ])
        .run()
        .success();
    run.assert_stderr_has("(and its 6 environment pipelines)");
    let main = sb.read(".kopsci/child-pipeline.yml");
    let jobs = jobs(&main);
    // 500 deployments: 3 a cluster with update-roll (staging), 166 clusters
    // at most in a part; 2 with reconcile (prod), 250.
    let parts: Vec<(&str, Vec<&str>)> = vec![
        ("test", vec!["deploy:test"]),
        ("staging", vec!["deploy:staging:1", "deploy:staging:2"]),
        (
            "prod",
            vec!["deploy:prod:1", "deploy:prod:2", "deploy:prod:3"],
        ),
    ];
    let relay = &jobs["kopsci:children"];
    assert_eq!(
        relay["needs"],
        serde_json::json!([{"pipeline": "4242", "job": "kopsci:pipeline"}])
    );
    assert_eq!(
        relay["artifacts"]["paths"],
        serde_json::json!([".kopsci/children/"])
    );
    let graph = needs_graph(&jobs);
    let mut files = vec![sb.join(".kopsci/child-pipeline.yml")];
    let mut seen_clusters = Vec::new();
    for (env, triggers) in &parts {
        for trigger in triggers {
            let job = &jobs[*trigger];
            assert_eq!(job["trigger"]["strategy"], "depend", "{trigger}");
            assert_eq!(job["trigger"]["include"][0]["job"], "kopsci:children");
            let file = job["trigger"]["include"][0]["artifact"].as_str().unwrap();
            assert!(file.starts_with(".kopsci/children/"), "{file}");
            files.push(sb.join(file));
            let child = jobs_of(&sb.read(file));
            let deployments = child
                .values()
                .filter(|j| j.get("environment").is_some())
                .count();
            assert!(deployments <= 500, "{file}: {deployments}");
            for (name, job) in &child {
                if let Some(needs) = job.get("needs").and_then(|n| n.as_array()) {
                    assert!(needs.len() <= 50, "{file}: {name}");
                }
                if let Some(cluster) = name.strip_prefix("dryrun:") {
                    assert!(cluster.contains(&format!(".{env}.")), "{file}: {cluster}");
                    seen_clusters.push(cluster.to_string());
                }
            }
        }
    }
    seen_clusters.sort();
    let mut all: Vec<String> = BIG
        .iter()
        .flat_map(|(env, n)| (0..*n).map(move |i| big_cluster(env, i)))
        .collect();
    all.sort();
    assert_eq!(seen_clusters, all, "every cluster in exactly one part");
    // Promotion through the trigger jobs.
    let before = |t: &str| transitive_needs(&graph, t);
    for t in &parts[1].1 {
        assert!(before(t).contains("deploy:test"), "{t}");
    }
    for t in &parts[2].1 {
        for w in parts[0].1.iter().chain(&parts[1].1) {
            assert!(before(t).contains(*w), "{t} does not wait for {w}");
        }
    }
    // The first environment waits for its files only: the relay job, and
    // through it the parent pipeline's job that wrote them.
    for t in &parts[0].1 {
        assert_eq!(
            before(t),
            ["kopsci:children".to_string(), "kopsci:pipeline".to_string()]
                .into_iter()
                .collect()
        );
    }
    validate_gitlab_ci(&files);

    // The files need a place the trigger jobs can name.
    kopsci_outside_ci(sb.path())
        .args([
            "pipeline",
            "--for",
            "default-branch",
            "--all",
            "--split-by-environment",
        ])
        .run()
        .fails_with(64, &["give --out"]);
}

#[test]
fn a_merge_request_in_a_thousand_cluster_fleet_dry_runs_its_cluster() {
    let sb = big_fleet();
    let base = git_in(sb.path(), &["rev-parse", "HEAD"]);
    let fleet = sb.read("kopsci.yaml").replace(
        "  - {name: c007.prod.k8s.example.com, environment: prod}\n",
        "  - {name: c007.prod.k8s.example.com, environment: prod, values: [values/c007.yaml]}\n",
    );
    std::fs::write(sb.join("kopsci.yaml"), fleet).unwrap();
    git_in(sb.path(), &["add", "-A"]);
    git_in(sb.path(), &["commit", "-q", "-m", "values"]);
    std::fs::create_dir_all(sb.join("values")).unwrap();
    std::fs::write(sb.join("values/c007.yaml"), "nodes: 1\n").unwrap();
    let base2 = git_in(sb.path(), &["rev-parse", "HEAD"]);
    git_in(sb.path(), &["add", "-A"]);
    git_in(sb.path(), &["commit", "-q", "-m", "c007 values"]);
    // The fleet file changed, in one cluster's entry: that cluster only
    // (formerly every cluster, over the deployments limit).
    let yaml = kopsci_outside_ci(sb.path())
        .args(["pipeline", "--changed-since", &base, "--mr-note"])
        .run()
        .success()
        .stdout();
    assert_eq!(dry_runs(&yaml), ["c007.prod.k8s.example.com"]);
    // Every cluster (`--all`) is 1000 deployments: over GitLab's default…
    kopsci_outside_ci(sb.path())
        .args(["pipeline", "--all"])
        .run()
        .fails_with(1, &["1000 deployment jobs", "--dryrun-environment=false"]);
    // … and without environments for dry runs it fits.
    let yaml = kopsci_outside_ci(sb.path())
        .args(["pipeline", "--all", "--dryrun-environment=false"])
        .run()
        .success()
        .stdout();
    assert_eq!(dry_runs(&yaml).len(), 1000);
    // Only the cluster's values: one dry run.
    let yaml = kopsci_outside_ci(sb.path())
        .args(["pipeline", "--changed-since", &base2, "--mr-note"])
        .run()
        .success()
        .stdout();
    assert_eq!(dry_runs(&yaml), ["c007.prod.k8s.example.com"]);
    validate_text(&sb, "mr.yml", &yaml);
}
