//! `kopsci dryrun`, `update` and `roll` end to end: the real binary, a copy
//! of the reference fleet, a real S3 server (SeaweedFS) seeded with the kOps
//! fixture store, and the kops stand-in (`crates/kops-standin`), whose
//! invocation log (`KOPS_STANDIN_LOG`) shows exactly what kops was given.
//!
//! Every test that dry-runs against the server asserts the live bucket is
//! byte-identical before and after: a dry run never writes to the live
//! store.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::{Kopsci, Run, Sandbox, repo_root};
use crate::support::sts::{Canary, FakeSts};
use crate::support::{self, S3Server};

pub(crate) const BUCKET: &str = "kops-state";
pub(crate) const STATE: &str = "s3://kops-state";
pub(crate) const CLUSTER: &str = "minimal-aws.example.com";

fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let rel = entry.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

/// A copy of the reference fleet (`kopsci.yaml`, templates, values).
pub(crate) fn fleet_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let root = repo_root();
    copy_tree(&root.join("templates"), &sb.join("templates"));
    copy_tree(&root.join("values"), &sb.join("values"));
    std::fs::copy(root.join("kopsci.yaml"), sb.join("kopsci.yaml")).expect("copy fleet");
    sb
}

/// Appends YAML to a file of the sandbox.
pub(crate) fn append(sb: &Sandbox, rel: &str, yaml: &str) {
    let path = sb.join(rel);
    let mut text = std::fs::read_to_string(&path).expect("read");
    text.push_str(yaml);
    std::fs::write(path, text).expect("write");
}

/// Makes the minimal cluster's nodes bigger: an ASG change only.
pub(crate) const BIGGER_NODES: &str = "instanceGroups:\n  nodes:\n    maxSize: 5\n";
/// Gives its nodes another machine type: a launch-template change, so the
/// instances then need a rolling update.
pub(crate) const NEW_MACHINE_TYPE: &str = "instanceGroups:\n  nodes:\n    machineType: t3.large\n";

/// A fleet copy, an S3 server holding the fixture cluster(s), the stand-in's
/// invocation log and simulated cloud, and a private TMPDIR.
pub(crate) struct World {
    pub(crate) sb: Sandbox,
    pub(crate) server: S3Server,
    tmp: PathBuf,
}

impl World {
    /// The server holds `clusters` from the fixture store at the bucket root.
    pub(crate) fn with(clusters: &[&str]) -> World {
        let sb = fleet_sandbox();
        let server = S3Server::start();
        server.create_bucket(BUCKET);
        for cluster in clusters {
            server.seed_dir(
                BUCKET,
                cluster,
                &support::kops_state_fixtures().join(cluster),
            );
        }
        let tmp = sb.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        std::fs::create_dir_all(sb.join("cloud")).unwrap();
        World { sb, server, tmp }
    }

    pub(crate) fn new() -> World {
        World::with(&[CLUSTER])
    }

    /// kopsci in the fleet copy, reaching the server, using the stand-in.
    pub(crate) fn kopsci(&self) -> Kopsci {
        let mut k = self
            .sb
            .kopsci()
            .isolated()
            .env("KOPSCI_KOPS", support::standin())
            .env("KOPS_STANDIN_LOG", self.sb.join("kops-calls.jsonl"))
            .env("KOPS_STANDIN_CLOUD_DIR", self.sb.join("cloud"))
            .env("TMPDIR", &self.tmp);
        for (key, value) in self.server.env() {
            k = k.env(key, value);
        }
        k
    }

    /// `kopsci <command> --state s3://kops-state <rest>`.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        self.kopsci()
            .arg(args[0])
            .args(["--state", STATE])
            .args(&args[1..])
            .run()
    }

    pub(crate) fn bucket(&self) -> BTreeMap<String, Vec<u8>> {
        self.server.objects(BUCKET)
    }

    /// The stand-in's invocations so far.
    pub(crate) fn calls(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.sb.join("kops-calls.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("log line is JSON"))
            .collect()
    }

    /// The argv of every call, joined, with the snapshot's temporary path
    /// replaced by `<snapshot>`.
    pub(crate) fn argvs(&self) -> Vec<String> {
        self.calls()
            .iter()
            .filter_map(|c| c.get("argv"))
            .map(|argv| {
                let words: Vec<String> = argv
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|w| w.as_str().unwrap().to_string())
                    .collect();
                normalize(&self.sb, &words.join(" "))
            })
            .collect()
    }

    /// Runs the stand-in directly (test set-up), as kopsci would.
    fn kops(&self, args: &[&str]) {
        let mut cmd = std::process::Command::new(support::standin());
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if key.starts_with("AWS_") || key.starts_with("S3_") || key.starts_with("KOPS") {
                cmd.env_remove(&key);
            }
        }
        cmd.envs(self.server.env())
            .env("KOPS_STANDIN_CLOUD_DIR", self.sb.join("cloud"))
            .args(args);
        let out = cmd.output().expect("run the stand-in");
        assert!(
            out.status.success(),
            "kops {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Makes the cloud run the fixture cluster as stored, as if it had been
    /// applied long ago.
    pub(crate) fn apply_fixture(&self, cluster: &str) {
        self.kops(&[
            "update", "cluster", "--name", cluster, "--state", STATE, "--yes",
        ]);
    }

    pub(crate) fn report(&self, cluster: &str) -> serde_json::Value {
        let text = self
            .sb
            .read(&format!(".kopsci/reports/{cluster}/report.json"));
        serde_json::from_str(&text).expect("report.json is JSON")
    }

    pub(crate) fn tmp_entries(&self) -> Vec<String> {
        support::entries(&self.tmp)
    }

    /// Asserts no stage left a private directory or file behind.
    #[track_caller]
    pub(crate) fn assert_no_debris(&self) {
        let debris = self.tmp_entries();
        assert!(debris.is_empty(), "debris: {debris:?}");
    }

    /// Whether the live store holds [`CLUSTER`]'s instance group `name`.
    pub(crate) fn has_group(&self, name: &str) -> bool {
        self.bucket()
            .contains_key(&format!("{CLUSTER}/instancegroup/{name}"))
    }
}

/// Replaces temporary paths so outputs compare across runs: a stage's
/// private directory `[SANDBOX]/tmp/kopsci-<stage>-XXXXXX/` holds
/// `<snapshot>` (`state/`) and `<manifest>` (`manifest.yaml`).
fn normalize(sb: &Sandbox, text: &str) -> String {
    let mut out = text.replace(&sb.path().display().to_string(), "[SANDBOX]");
    for prefix in [
        "kopsci-dryrun-",
        "kopsci-update-",
        "kopsci-apply-",
        "kopsci-delete-",
    ] {
        while let Some(start) = out.find(prefix) {
            let end = out[start..]
                .find(['/', ' ', '\n'])
                .map(|e| start + e)
                .unwrap_or(out.len());
            out.replace_range(start..end, "<work>");
        }
    }
    out.replace("[SANDBOX]/tmp/<work>/state", "<snapshot>")
        .replace("[SANDBOX]/tmp/<work>/manifest.yaml", "<manifest>")
}

// ---------------------------------------------------------------------
// Without kops (a `file://` store, no server)
// ---------------------------------------------------------------------

#[test]
fn readme_main_job_dry_runs_the_bundled_store_without_kops() {
    let root = repo_root();
    let store = root.join("examples/state");
    let before = support::tree(&store);
    let reports = tempfile::tempdir().unwrap();
    let run = Kopsci::new()
        .isolated()
        .current_dir(&root)
        .args([
            "dryrun",
            "--all",
            "--without-kops",
            "--state",
            "file://examples/state",
            "--report-dir",
        ])
        .arg(reports.path())
        .run()
        .success();
    let lines: Vec<String> = run.stdout().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 10, "{}", run.stdout());
    for cluster in support::fixture_clusters() {
        assert!(
            lines.contains(&format!(
                "{cluster}: 0 to create, 0 to modify, 0 to delete (spec diff only, kops skipped)"
            )),
            "{cluster} not unchanged:\n{}",
            run.stdout()
        );
        let dir = reports.path().join(&cluster);
        for file in [
            "manifest.yaml",
            "state.diff",
            "kops-update.txt",
            "report.md",
            "report.json",
            "gitlab-terraform-report.json",
            "plan.json",
        ] {
            assert!(dir.join(file).is_file(), "{cluster}: no {file}");
        }
        let md = std::fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(
            md.contains("kops was not run (`--without-kops`): the cloud-level plan was skipped."),
            "{md}"
        );
    }
    assert_eq!(support::tree(&store), before, "the bundled store changed");
}

#[test]
fn without_kops_a_changed_cluster_is_a_spec_diff_with_removed_groups() {
    let sb = fleet_sandbox();
    // The live store: the fixture, plus an instance group the manifest lacks.
    let store = sb.join("state");
    copy_tree(
        &support::kops_state_fixtures().join(CLUSTER),
        &store.join(CLUSTER),
    );
    let old_group = sb.read("state/minimal-aws.example.com/instancegroup/nodes");
    std::fs::write(
        store.join(CLUSTER).join("instancegroup/nodes-old"),
        old_group.replace("name: nodes", "name: nodes-old"),
    )
    .unwrap();
    append(
        &sb,
        "values/clusters/minimal-aws.yaml",
        "instanceGroups:\n  nodes:\n    maxSize: 5\n  gpu:\n    role: Node\n    machineType: g4dn.xlarge\n",
    );
    let before = support::tree(&store);
    let run = sb
        .kopsci()
        .isolated()
        .args(["dryrun", CLUSTER, "--without-kops", "--detailed-exitcode"])
        .arg("--state")
        .arg(format!("file://{}", store.display()))
        .run()
        .expect_code(2);
    assert_eq!(
        run.stdout(),
        "minimal-aws.example.com: 1 to create, 1 to modify, 1 to delete (spec diff only, kops skipped); \
         1 instance group(s) removed from the manifest: nodes-old\n"
    );
    assert_eq!(support::tree(&store), before, "the live store changed");

    let dir = format!(".kopsci/reports/{CLUSTER}");
    let report: serde_json::Value =
        serde_json::from_str(&sb.read(&format!("{dir}/report.json"))).unwrap();
    assert_eq!(
        report["removed_instance_groups"],
        serde_json::json!(["nodes-old"])
    );
    assert_eq!(report["counts_source"], "spec-diff");
    assert_eq!(report["changes_pending"], true);
    assert!(report["failed"].is_null());
    assert_eq!(
        sb.read(&format!("{dir}/gitlab-terraform-report.json")),
        "{\"create\":1,\"update\":1,\"delete\":1}\n"
    );
    let diff = sb.read(&format!("{dir}/state.diff"));
    assert!(diff.contains("-  maxSize: 2\n+  maxSize: 5\n"), "{diff}");
    assert!(!diff.contains("creationTimestamp"), "{diff}");
    insta::assert_snapshot!(
        "without_kops_report_md",
        normalize(&sb, &sb.read(&format!("{dir}/report.md")))
    );
}

#[test]
fn one_failing_cluster_does_not_hide_the_others_and_sections_nest() {
    let sb = fleet_sandbox();
    append(
        &sb,
        "values/clusters/complex.yaml",
        "clusterName: other.example.com\n",
    );
    let store = repo_root().join("examples/state");
    let run = sb
        .kopsci()
        .isolated()
        .env("GITLAB_CI", "true")
        .args([
            "dryrun",
            "complex.example.com",
            CLUSTER,
            "ha.example.com",
            "--without-kops",
            "--jobs",
            "3",
        ])
        .arg("--state")
        .arg(format!("file://{}", store.display()))
        .run()
        .fails_with(1, &["1 of 3 cluster(s) failed: complex.example.com"]);
    let stdout = run.stdout();
    assert!(stdout.contains("complex.example.com: FAILED: "), "{stdout}");
    assert!(
        stdout.contains("sets clusterName to `other.example.com`"),
        "{stdout}"
    );
    for ok in [CLUSTER, "ha.example.com"] {
        assert!(stdout.contains(&format!("{ok}: 0 to create")), "{stdout}");
        assert!(
            sb.join(&format!(".kopsci/reports/{ok}/plan.json"))
                .is_file()
        );
    }
    let failed: serde_json::Value =
        serde_json::from_str(&sb.read(".kopsci/reports/complex.example.com/report.json")).unwrap();
    assert_eq!(failed["failed_step"], "render");
    assert!(
        !sb.join(".kopsci/reports/complex.example.com/plan.json")
            .exists()
    );
    assert!(
        !sb.join(".kopsci/reports/complex.example.com/gitlab-terraform-report.json")
            .exists()
    );
    assert!(
        sb.read(".kopsci/reports/complex.example.com/report.md")
            .starts_with("#### `complex.example.com` (prod) — dry run failed at `render`")
    );

    // GitLab sections: each cluster's log is one contiguous, balanced block.
    let stderr = run.stderr();
    for cluster in ["complex.example.com", CLUSTER, "ha.example.com"] {
        let start = format!(":{cluster}_dryrun\r\x1b[0Kkopsci dryrun {cluster}\n");
        let end = format!(":{cluster}_dryrun\r\x1b[0K\n");
        let s = stderr
            .find(&start)
            .unwrap_or_else(|| panic!("no start for {cluster}:\n{stderr:?}"));
        let e = stderr
            .rfind(&end)
            .unwrap_or_else(|| panic!("no end for {cluster}"));
        let block = &stderr[s..e];
        let starts = block.matches("section_start:").count();
        let ends = block.matches("section_end:").count();
        // `block` runs from inside the cluster's own start marker to inside
        // its end marker: every inner section is closed, plus that end.
        assert!(starts >= 1, "{cluster}: no step sections\n{block:?}");
        assert_eq!(ends, starts + 1, "{cluster}: unbalanced\n{block:?}");
        for other in ["complex.example.com", CLUSTER, "ha.example.com"] {
            if other != cluster {
                assert!(
                    !block.contains(&format!(":{other}_")),
                    "{cluster} block holds {other}"
                );
            }
        }
        assert!(
            block.contains(&format!(":{cluster}_snapshot[collapsed=true]\r"))
                || cluster == "complex.example.com"
        );
    }
}

#[test]
fn missing_kops_is_an_error_that_names_without_kops() {
    let sb = fleet_sandbox();
    sb.kopsci()
        .isolated()
        .env("PATH", "/nonexistent")
        .args(["dryrun", CLUSTER, "--state", "file:///nonexistent"])
        .run()
        .fails_with(1, &["kops not found", "--without-kops"]);
    sb.kopsci()
        .isolated()
        .args(["dryrun", CLUSTER, "--kops", "/nonexistent/kops"])
        .run()
        .fails_with(
            1,
            &["`/nonexistent/kops` from --kops is not an executable file"],
        );
    sb.kopsci()
        .isolated()
        .args(["dryrun"])
        .run()
        .fails_with(64, &["name the clusters to dry-run, or pass --all"]);
}

#[test]
fn a_kops_version_outside_the_fleet_requirement_is_refused() {
    let sb = fleet_sandbox();
    sb.kopsci()
        .isolated()
        .env("KOPSCI_KOPS", support::standin())
        .env("KOPS_STANDIN_VERSION", "1.33.2")
        .args(["dryrun", CLUSTER, "--state", "file:///nonexistent"])
        .run()
        .fails_with(
            1,
            &[
                "kops 1.33.2",
                "does not satisfy the required version `>=1.34.0, <1.35.0`",
            ],
        );
}

// ---------------------------------------------------------------------
// With kops (the stand-in) against S3
// ---------------------------------------------------------------------

#[test]
fn new_cluster_takes_the_create_path_and_never_touches_the_bucket() {
    // The bucket holds another cluster only.
    let world = World::with(&["complex.example.com"]);
    let before = world.bucket();
    let run = world
        .run(&["dryrun", CLUSTER, "--detailed-exitcode"])
        .expect_code(2);
    assert!(
        run.stdout().starts_with("minimal-aws.example.com: "),
        "{}",
        run.stdout()
    );
    assert_eq!(
        world.bucket(),
        before,
        "the dry run wrote to the live bucket"
    );
    let calls = world.argvs();
    assert_eq!(
        calls,
        [
            "version",
            "create -f <manifest> --state file://<snapshot>",
            "update cluster --name minimal-aws.example.com --state file://<snapshot>",
        ]
    );
    let report = world.report(CLUSTER);
    assert_eq!(report["action"], "create");
    assert_eq!(report["counts_source"], "kops");
    assert!(report["create"].as_u64().unwrap() > 10, "{report}");
    let diff = world
        .sb
        .read(&format!(".kopsci/reports/{CLUSTER}/state.diff"));
    assert!(diff.starts_with("--- /dev/null\n+++ b/config\n"), "{diff}");
    assert!(
        !diff.contains("pki/") && !diff.contains("secrets/"),
        "{diff}"
    );
    world.assert_no_debris();
}

#[test]
fn changed_cluster_dry_run_then_update_then_a_clean_dry_run() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    append(&world.sb, "values/clusters/minimal-aws.yaml", BIGGER_NODES);
    let before = world.bucket();

    let run = world
        .run(&["dryrun", CLUSTER, "--detailed-exitcode"])
        .expect_code(2);
    assert_eq!(
        world.bucket(),
        before,
        "the dry run wrote to the live bucket"
    );
    let report = world.report(CLUSTER);
    assert_eq!(report["action"], "replace");
    assert_eq!(report["update"].as_u64(), Some(1), "{}", run.stdout());
    assert_eq!(report["changes_pending"], true);
    let dir = format!(".kopsci/reports/{CLUSTER}");
    let diff = world.sb.read(&format!("{dir}/state.diff"));
    assert!(diff.contains("+  maxSize: 5\n"), "{diff}");
    let kops_update = world.sb.read(&format!("{dir}/kops-update.txt"));
    assert!(
        kops_update.contains("Will modify resources:"),
        "{kops_update}"
    );
    assert!(
        kops_update.contains(
            "--- parsed by kopsci: 0 to create, 1 to modify, 0 to delete (changes pending)"
        ),
        "{kops_update}"
    );
    let plan: serde_json::Value =
        serde_json::from_str(&world.sb.read(&format!("{dir}/plan.json"))).unwrap();
    assert_eq!(plan["state"], STATE);
    assert_eq!(plan["snapshot"]["source"], STATE);
    assert_eq!(plan["manifest_sha256"].as_str().unwrap().len(), 64);
    insta::assert_snapshot!(
        "changed_cluster_report_md",
        normalize(&world.sb, &world.sb.read(&format!("{dir}/report.md")))
    );

    // Apply it.
    world.run(&["update", CLUSTER]).success();
    let after = world.bucket();
    let key = format!("{CLUSTER}/instancegroup/nodes");
    assert!(
        String::from_utf8_lossy(&after[&key]).contains("maxSize: 5"),
        "the update did not reach the bucket"
    );
    let calls = world.argvs();
    let n = calls.len();
    // The counts in the update's report are kops' own preview, run on the
    // live store after replace, never the plan's.
    assert_eq!(
        calls[n - 4..],
        [
            "version".to_string(),
            format!("replace -f <manifest> --state {STATE} --force"),
            format!("update cluster --name {CLUSTER} --state {STATE}"),
            format!("update cluster --name {CLUSTER} --state {STATE} --yes"),
        ]
    );
    let update: serde_json::Value =
        serde_json::from_str(&world.sb.read(&format!("{dir}/update/report.json"))).unwrap();
    assert_eq!(update["stage"], "update");
    assert!(update["failed"].is_null(), "{update}");
    world.assert_no_debris();

    // Nothing left to do: the next dry run is clean, exit 0.
    let before = world.bucket();
    let run = world
        .run(&["dryrun", CLUSTER, "--detailed-exitcode"])
        .success();
    assert_eq!(
        run.stdout(),
        "minimal-aws.example.com: 0 to create, 0 to modify, 0 to delete\n"
    );
    assert_eq!(world.bucket(), before);
    let report = world.report(CLUSTER);
    assert_eq!(report["changes_pending"], false);
    assert_eq!(world.sb.read(&format!("{dir}/state.diff")), "");
}

#[test]
fn removed_instance_group_is_reported_then_pruned() {
    let world = World::new();
    let nodes = world.bucket()[&format!("{CLUSTER}/instancegroup/nodes")].clone();
    let old = String::from_utf8(nodes)
        .unwrap()
        .replace("name: nodes", "name: nodes-old");
    world
        .server
        .put(BUCKET, &format!("{CLUSTER}/instancegroup/nodes-old"), old);
    let before = world.bucket();
    world.run(&["dryrun", CLUSTER]).success();
    assert_eq!(world.bucket(), before);
    let report = world.report(CLUSTER);
    assert_eq!(
        report["removed_instance_groups"],
        serde_json::json!(["nodes-old"])
    );
    let md = world
        .sb
        .read(&format!(".kopsci/reports/{CLUSTER}/report.md"));
    assert!(md.contains("**Removed instance groups**"), "{md}");
    assert!(md.contains("- `nodes-old`"), "{md}");

    // Without --prune-instance-groups the group stays, with a warning.
    let run = world.run(&["update", CLUSTER]).success();
    run.assert_stdout_has("1 instance group(s) removed from the manifest: nodes-old");
    assert!(world.has_group("nodes-old"));

    // Dry run again (the store changed), then prune.
    world.run(&["dryrun", CLUSTER]).success();
    let run = world
        .run(&["update", CLUSTER, "--prune-instance-groups"])
        .success();
    run.assert_stdout_has("pruned: nodes-old");
    assert!(!world.has_group("nodes-old"));
    assert!(world.argvs().contains(&format!(
        "delete instancegroup nodes-old --name {CLUSTER} --state {STATE} --yes"
    )));
    let update: serde_json::Value = serde_json::from_str(
        &world
            .sb
            .read(&format!(".kopsci/reports/{CLUSTER}/update/report.json")),
    )
    .unwrap();
    assert_eq!(
        update["pruned_instance_groups"],
        serde_json::json!(["nodes-old"])
    );
}

#[test]
fn a_stale_or_missing_plan_is_refused() {
    let world = World::new();
    append(&world.sb, "values/clusters/minimal-aws.yaml", BIGGER_NODES);

    // No dry run yet.
    world.run(&["update", CLUSTER]).fails_with(
        1,
        &[
            "refusing a stale plan",
            "no plan.json",
            "kopsci dryrun minimal-aws.example.com",
        ],
    );

    world.run(&["dryrun", CLUSTER]).success();
    // Someone changes the live store after the review.
    let key = format!("{CLUSTER}/instancegroup/nodes");
    let edited = String::from_utf8(world.bucket()[&key].clone())
        .unwrap()
        .replace("machineType: t2.medium", "machineType: t2.large");
    world.server.put(BUCKET, &key, edited);
    let extra = String::from_utf8(world.bucket()[&key].clone())
        .unwrap()
        .replace("name: nodes", "name: extra");
    world
        .server
        .put(BUCKET, &format!("{CLUSTER}/instancegroup/extra"), extra);
    let changed = world.bucket();
    let calls_before = world.calls().len();
    let run = world.run(&["update", CLUSTER]).fails_with(
        1,
        &[
            "cluster `minimal-aws.example.com`: refusing a stale plan",
            "the live state store changed since the dry run's snapshot",
            "added instancegroup/extra",
            "modified instancegroup/nodes",
            "--allow-stale",
        ],
    );
    assert_eq!(
        world.bucket(),
        changed,
        "a refused update wrote to the store"
    );
    let new_calls: Vec<String> = world.argvs()[calls_before..].to_vec();
    assert_eq!(new_calls, ["version"], "kops ran: {new_calls:?}");
    let update: serde_json::Value = serde_json::from_str(
        &world
            .sb
            .read(&format!(".kopsci/reports/{CLUSTER}/update/report.json")),
    )
    .unwrap();
    assert_eq!(update["failed_step"], "plan check", "{}", run.stderr());

    // A new dry run makes the plan current again; then the manifest changes.
    world.run(&["dryrun", CLUSTER]).success();
    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        "  gpu:\n    role: Node\n",
    );
    world.run(&["update", CLUSTER]).fails_with(
        1,
        &["the rendered manifest differs from the one the dry run reviewed"],
    );

    // --allow-stale applies anyway, and says so. The counts it reports are
    // the ones kops printed for this change, never the stale plan's.
    let run = world.run(&["update", CLUSTER, "--allow-stale"]).success();
    assert!(world.has_group("gpu"));
    let update: serde_json::Value = serde_json::from_str(
        &world
            .sb
            .read(&format!(".kopsci/reports/{CLUSTER}/update/report.json")),
    )
    .unwrap();
    assert!(
        update["warnings"][0]
            .as_str()
            .unwrap()
            .starts_with("--allow-stale: applied although the rendered manifest differs"),
        "{update}"
    );
    assert_eq!(update["counts_source"], "kops", "{update}");
    let created = update["update_plan"]["create"].as_array().unwrap().len();
    assert!(created > 0, "{update}");
    assert_eq!(update["create"], created);
    let line = format!(
        "{CLUSTER}: applied: {created} to create, {} to modify, {} to delete",
        update["update"], update["delete"]
    );
    assert!(run.stdout().starts_with(&line), "{}", run.stdout());
}

#[test]
fn roll_previews_then_rolls() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    // Nothing to roll on a freshly applied cluster.
    let run = world
        .run(&["roll", CLUSTER, "--detailed-exitcode"])
        .success();
    assert_eq!(
        run.stdout(),
        "minimal-aws.example.com: no rolling update required\n"
    );

    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        NEW_MACHINE_TYPE,
    );
    world.run(&["dryrun", CLUSTER]).success();
    world.run(&["update", CLUSTER]).success();

    let before = world.bucket();
    let run = world.run(&["roll", CLUSTER]).success();
    assert_eq!(
        run.stdout(),
        "minimal-aws.example.com: 1 instance group(s) need a rolling update\n"
    );
    world
        .run(&["roll", CLUSTER, "--detailed-exitcode"])
        .expect_code(2);
    assert_eq!(world.bucket(), before, "a preview changed the store");
    let report: serde_json::Value = serde_json::from_str(
        &world
            .sb
            .read(&format!(".kopsci/reports/{CLUSTER}/roll/report.json")),
    )
    .unwrap();
    let rows = report["roll_plan"]["rows"].as_array().unwrap();
    let nodes = rows.iter().find(|r| r["name"] == "nodes").unwrap();
    assert_eq!(nodes["status"], "NeedsUpdate");
    assert_eq!(nodes["need_update"], 2);
    let md = world
        .sb
        .read(&format!(".kopsci/reports/{CLUSTER}/roll/report.md"));
    assert!(md.contains("| `nodes` | NeedsUpdate | 2 |"), "{md}");

    let run = world
        .run(&["roll", CLUSTER, "--yes", "--", "--instance-group", "nodes"])
        .success();
    assert_eq!(
        run.stdout(),
        "minimal-aws.example.com: rolling update done\n"
    );
    assert!(world.argvs().contains(&format!(
        "rolling-update cluster --name {CLUSTER} --state {STATE} --yes --instance-group nodes"
    )));
    let run = world.run(&["roll", CLUSTER]).success();
    assert_eq!(
        run.stdout(),
        "minimal-aws.example.com: no rolling update required\n"
    );

    // kopsci's own flags cannot be smuggled in after `--`.
    world
        .run(&["roll", CLUSTER, "--", "--yes"])
        .fails_with(64, &["extra flag `--yes`", "is not allowed"]);
}

#[test]
fn kops_failing_fails_the_cluster_with_its_error_and_leaves_no_plan() {
    let world = World::new();
    let before = world.bucket();
    let run = world
        .kopsci()
        .env("KOPS_STANDIN_FAIL", "update")
        .env("KOPS_STANDIN_FAIL_MESSAGE", "AccessDenied: Access Denied")
        .args(["dryrun", CLUSTER, "--state", STATE])
        .run()
        .fails_with(1, &["1 of 1 cluster(s) failed: minimal-aws.example.com"]);
    run.assert_stdout_has("minimal-aws.example.com: FAILED: `kops update cluster` failed with exit code 1: Error: AccessDenied: Access Denied");
    assert_eq!(world.bucket(), before);
    let report = world.report(CLUSTER);
    assert_eq!(report["failed_step"], "kops update cluster");
    assert!(
        !world
            .sb
            .join(&format!(".kopsci/reports/{CLUSTER}/plan.json"))
            .exists()
    );
    world.assert_no_debris();
}

#[test]
fn sigterm_during_kops_stops_kops_and_leaves_no_debris() {
    let world = World::new();
    let before = world.bucket();
    let mut child = world
        .kopsci()
        .env("KOPS_STANDIN_HANG", "update")
        .args(["dryrun", CLUSTER, "--state", STATE])
        .spawn();
    // kopsci echoes kops' stderr live: wait for the stand-in to say it hangs
    // (by then it handles signals), reading on a thread so nothing blocks.
    let stderr_pipe = child.stderr.take().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let sink = Arc::clone(&seen);
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr_pipe).lines() {
            let Ok(line) = line else { break };
            let mut text = sink.lock().unwrap();
            text.push_str(&line);
            text.push('\n');
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while !seen.lock().unwrap().contains("kops stand-in: hanging in") {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kops update never hung:\n{}", seen.lock().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stderr = seen.lock().unwrap().clone();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("error: interrupted by SIGTERM"), "{stderr}");
    assert!(
        world.calls().iter().any(|c| c["signal"] == "SIGTERM"),
        "kops never got SIGTERM: {:?}",
        world.calls()
    );
    world.assert_no_debris();
    assert!(
        !world
            .sb
            .join(&format!(".kopsci/reports/{CLUSTER}/plan.json"))
            .exists()
    );
    assert_eq!(world.bucket(), before);
}

/// The credentials [`mock_sts`] hands out for every `AssumeRole`.
pub(crate) const ASSUMED: Canary = Canary {
    access_key_id: "ASIAASSUMEDROLEKEY",
    secret_access_key: "assumed-secret-value",
    session_token: "assumed-session-token",
};

/// A fake STS answering every `AssumeRole` with [`ASSUMED`]; keeps the
/// request bodies.
pub(crate) fn mock_sts() -> FakeSts {
    FakeSts::start_with(&ASSUMED)
}

/// Asserts the kops `call` got exactly the identity [`mock_sts`] handed out
/// (region eu-west-1), and no other `AWS_*` setting.
#[track_caller]
pub(crate) fn assert_assumed_identity(call: &serde_json::Value, sts: &FakeSts) {
    let aws: BTreeMap<&str, &str> = call["env"]
        .as_object()
        .expect("the call's environment")
        .iter()
        .filter(|(k, _)| k.starts_with("AWS_"))
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    assert_eq!(
        aws,
        BTreeMap::from([
            ("AWS_ACCESS_KEY_ID", ASSUMED.access_key_id),
            ("AWS_CONFIG_FILE", "/dev/null"),
            ("AWS_DEFAULT_REGION", "eu-west-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("AWS_ENDPOINT_URL_STS", sts.endpoint()),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_SECRET_ACCESS_KEY", ASSUMED.secret_access_key),
            ("AWS_SESSION_TOKEN", ASSUMED.session_token),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null"),
        ]),
        "{}",
        call["argv"]
    );
}

#[test]
fn kops_gets_exactly_the_assumed_identity() {
    let world = World::new();
    let sts = mock_sts();
    let before = world.bucket();
    append(
        &world.sb,
        "kopsci.yaml",
        "aws:\n  role_arn: arn:aws:iam::123456789012:role/kops\n  external_id: team-a-external\n  region: eu-west-1\n",
    );
    let run = world
        .kopsci()
        .env("AWS_ACCESS_KEY_ID", "AKIACALLERKEY")
        .env("AWS_SECRET_ACCESS_KEY", "caller-secret-value")
        .env("AWS_PROFILE", "ci-profile")
        .env("AWS_ROLE_ARN", "arn:aws:iam::999999999999:role/gitlab-oidc")
        .env("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/token")
        .env("AWS_ENDPOINT_URL_STS", sts.endpoint())
        .env("CI_JOB_ID", "4242")
        .args(["dryrun", CLUSTER, "--state", STATE])
        .run()
        .success();
    let form = sts.requests().join("\n");
    for part in [
        "Action=AssumeRole",
        "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fkops",
        "ExternalId=team-a-external",
        "RoleSessionName=kopsci-4242",
    ] {
        assert!(form.contains(part), "{part} not in {form}");
    }
    let calls = world.calls();
    let aws_calls: Vec<&serde_json::Value> =
        calls.iter().filter(|c| c["argv"][0] != "version").collect();
    assert_eq!(aws_calls.len(), 2, "{calls:?}");
    for call in aws_calls {
        assert_assumed_identity(call, &sts);
        let env = call["env"].as_object().unwrap();
        // The store settings pass through untouched.
        assert_eq!(env["S3_ENDPOINT"], world.server.endpoint().as_str());
    }
    let shown = format!("{}{}", run.stdout(), run.stderr());
    for secret in [
        "assumed-secret-value",
        "assumed-session-token",
        "caller-secret-value",
        "team-a-external",
    ] {
        assert!(!shown.contains(secret), "{secret} printed:\n{shown}");
    }
    assert_eq!(world.bucket(), before);
    assert!(
        shown.contains("assumed role arn:aws:iam::123456789012:role/kops"),
        "{shown}"
    );
}

#[test]
fn without_a_role_kops_inherits_the_job_identity() {
    let world = World::new();
    let before = world.bucket();
    world
        .kopsci()
        .env("AWS_ACCESS_KEY_ID", "AKIAJOBKEY")
        .env("AWS_SECRET_ACCESS_KEY", "job-secret")
        .env("AWS_PROFILE", "job-profile")
        .args(["dryrun", CLUSTER, "--state", STATE])
        .run()
        .success();
    for call in world.calls().iter().filter(|c| c.get("argv").is_some()) {
        let env = &call["env"];
        assert_eq!(env["AWS_ACCESS_KEY_ID"], "AKIAJOBKEY");
        assert_eq!(env["AWS_PROFILE"], "job-profile");
        assert!(env.get("AWS_SESSION_TOKEN").is_none());
    }
    assert_eq!(world.bucket(), before);
}
