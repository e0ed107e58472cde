//! `kopsci pipeline` on real git repositories: which clusters a commit
//! affects, the child pipeline generated for them (snapshots, and GitLab's
//! CI schema via `check-jsonschema`), and the CI/CD component.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{Kopsci, Run, Sandbox, repo_root};

const FLEET: &str = "\
state: s3://kops-state-example
templates:
  - templates/cluster.yaml.j2
snippets:
  - templates/snippets
values:
  - values/base.yaml
environments:
  dev:
    values: [values/env/dev.yaml]
  prod:
    values: [values/env/prod.yaml]
    needs: [dev]
clusters:
  - name: dev-a.k8s.example.com
    environment: dev
    values: [values/clusters/dev-a.yaml]
  - name: dev-b.k8s.example.com
    environment: dev
    values: [values/clusters/dev-b.yaml]
  - name: prod-a.k8s.example.com
    environment: prod
    values: [values/clusters/prod-a.yaml]
";

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
    "CI_JOB_URL",
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
        let out = Command::new("git")
            .args(args)
            .current_dir(self.sb.path())
            // Fixed identity and dates: commits are the same on every run.
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "kopsci tests")
            .env("GIT_AUTHOR_EMAIL", "tests@example.com")
            .env("GIT_COMMITTER_NAME", "kopsci tests")
            .env("GIT_COMMITTER_EMAIL", "tests@example.com")
            .env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z")
            .env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z")
            .output()
            .expect("run git");
        assert!(out.status.success(), "git {args:?}: {out:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
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
        self.kopsci()
            .args(["pipeline", "--changed-since", &self.base])
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
    assert_eq!(
        jobs["update:prod-a.k8s.example.com"]["needs"],
        serde_json::json!([
            {"job": "dryrun:prod-a.k8s.example.com", "artifacts": true},
            {"job": "roll:dev-a.k8s.example.com", "artifacts": false},
            {"job": "roll:dev-b.k8s.example.com", "artifacts": false},
        ])
    );
    assert_eq!(jobs["roll:dev-a.k8s.example.com"]["interruptible"], false);
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

#[test]
fn a_fleet_file_change_selects_every_cluster() {
    let repo = Repo::new("");
    repo.change(
        "kopsci.yaml",
        &FLEET.replace("kops-state-example", "kops-state-other"),
    );
    assert_eq!(repo.dry_runs(&[]), ALL);
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
    assert!(
        run.stdout().contains("affected: 1 of 3 clusters"),
        "{}",
        run.stdout()
    );
    assert_eq!(
        dry_runs(&repo.sb.read("child/pipeline.yml")),
        ["prod-a.k8s.example.com"]
    );
    let run = repo.pipeline(&["--out", "child/pipeline.yml"]).success();
    assert!(run.stdout().is_empty(), "{}", run.stdout());
    assert!(
        run.stderr().contains(
            "1 of 3 clusters affected; merge-request pipeline written to child/pipeline.yml"
        ),
        "{}",
        run.stderr()
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
    let yaml = repo
        .kopsci()
        .args(["pipeline", "--changed-since", "HEAD~1"])
        .run()
        .success()
        .stdout();
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
    repo.kopsci()
        .args(["pipeline", "--changed-since", "no-such-branch"])
        .run()
        .fails_with(1, &["no commit `no-such-branch`", "GIT_DEPTH: 0"]);
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
    assert_eq!(jobs["default"]["tags"], serde_json::json!(["aws"]));
    assert_eq!(jobs["variables"]["KOPS_VERSION"], "1.34.1");
    assert!(
        jobs["dryrun:dev-a.k8s.example.com"]
            .get("environment")
            .is_none()
    );
    assert_eq!(
        jobs["roll:dev-a.k8s.example.com"]["id_tokens"]["KOPSCI_ID_TOKEN"]["aud"],
        "sts.amazonaws.com"
    );
    assert_eq!(
        jobs["update:dev-a.k8s.example.com"]["script"][0],
        "./kopsci update dev-a.k8s.example.com --report-dir out/reports"
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
