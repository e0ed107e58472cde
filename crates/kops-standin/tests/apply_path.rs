//! The stand-in's apply path as kopsci's apply, validate and retire jobs
//! use it: `reconcile cluster`, `validate cluster`, `export kubeconfig`,
//! `delete cluster`, the CLI each played kOps version has, and the test
//! controls for validation and mid-roll failures.

mod support;

use std::io::Read;

use base64::Engine;
use serde_json::Value;
use support::{Bench, edited_manifest, manifest, tree};

const C: &str = "minimal-aws.example.com";

fn minimal_manifest() -> String {
    manifest(C).to_string_lossy().into_owned()
}

/// A bench whose fixture cluster was applied once, so the cloud matches it.
fn applied() -> Bench {
    let bench = Bench::with_fixture(C);
    bench.run(&["update", "cluster", "--name", C, "--yes"]).ok();
    bench
}

/// `applied()` after a Kubernetes upgrade was replaced into the store (not
/// yet applied): every group's launch template will change.
fn upgrade_pending() -> Bench {
    let bench = applied();
    let edited = edited_manifest(bench.cwd.path(), C, |t| {
        t.replace("kubernetesVersion: v1.34.0", "kubernetesVersion: v1.34.1")
    });
    bench
        .run(&["replace", "--force", "-f", &edited.to_string_lossy()])
        .ok();
    bench
}

/// Asserts that `needles` occur in `text` in this order.
#[track_caller]
fn assert_in_order(text: &str, needles: &[&str]) {
    let mut from = 0;
    for needle in needles {
        match text[from..].find(needle) {
            Some(i) => from += i + needle.len(),
            None => panic!("{needle:?} missing (or out of order) after byte {from} in\n{text}"),
        }
    }
}

/// The rolling-update table's rows by group name: (status, needupdate).
fn roll_status(bench: &Bench) -> Vec<(String, String, String)> {
    let out = bench.run(&["rolling-update", "cluster", C]).ok().stdout;
    out.lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .map(|l| {
            let cells: Vec<&str> = l.split('\t').filter(|c| !c.is_empty()).collect();
            (
                cells[0].to_string(),
                cells[1].to_string(),
                cells[2].to_string(),
            )
        })
        .collect()
}

fn all_ready(bench: &Bench) -> bool {
    roll_status(bench)
        .iter()
        .all(|(_, s, n)| s == "Ready" && n == "0")
}

/// Every JSON document of a `validate -o json` output, in order (they are
/// printed back to back, without separators).
fn json_docs(text: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .map(|d| d.expect("valid JSON"))
        .collect()
}

// ---- played versions ----

#[test]
fn each_version_has_its_own_commands_and_flags() {
    let mut bench = Bench::new();
    bench.run(&["create", "-f", &minimal_manifest()]).ok();
    let before = bench.store_tree();

    bench.set("KOPS_STANDIN_VERSION", "1.28");
    assert_eq!(bench.run(&["version", "--short"]).ok().stdout, "1.28.0\n");
    let run = bench.run(&["update", "cluster", C, "--prune"]).fails();
    assert_eq!(run.stderr, "Error: unknown flag: --prune\n");
    assert_eq!(run.stdout, "");
    assert_eq!(
        bench.error(&["update", "cluster", C, "--prune=false"]),
        "Error: unknown flag: --prune\n"
    );
    // pflag names the first unknown flag of the command line.
    assert_eq!(
        bench.error(&[
            "update",
            "cluster",
            C,
            "--instance-group-roles=node",
            "--prune",
        ]),
        "Error: unknown flag: --instance-group-roles\n"
    );
    // cobra finds the command before it parses flags.
    let run = bench.run(&["reconcile", "cluster", C, "--bogus"]).fails();
    assert_eq!(
        run.stderr,
        "Error: unknown command \"reconcile\" for \"kops\"\n"
    );
    bench.run(&["update", "cluster", C]).ok();

    bench.set("KOPS_STANDIN_VERSION", "1.30.4");
    assert!(
        bench
            .run(&["update", "cluster", C, "--prune"])
            .ok()
            .stdout
            .ends_with("Must specify --yes to apply changes\n")
    );
    assert_eq!(
        bench.error(&["update", "cluster", C, "--instance-group-roles", "node"]),
        "Error: unknown flag: --instance-group-roles\n"
    );
    let run = bench
        .run(&["--name", C, "reconcile", "cluster", "--yes"])
        .fails();
    assert_eq!(
        run.stderr,
        "Error: unknown command \"reconcile\" for \"kops\"\n"
    );
    // rolling-update has had --instance-group-roles for long.
    bench
        .run(&[
            "rolling-update",
            "cluster",
            C,
            "--instance-group-roles",
            "node",
        ])
        .ok();

    for version in ["1.31.0", "1.34.1"] {
        bench.set("KOPS_STANDIN_VERSION", version);
        bench
            .run(&[
                "update",
                "cluster",
                C,
                "--prune",
                "--instance-group-roles=control-plane",
            ])
            .ok();
        bench.run(&["reconcile", "cluster", C]).ok();
    }
    assert_eq!(
        bench.store_tree(),
        before,
        "a refused command wrote the store"
    );

    bench.set("KOPS_STANDIN_VERSION", "latest");
    let run = bench.run(&["version"]).fails();
    assert!(
        run.stderr
            .contains("KOPS_STANDIN_VERSION=\"latest\" is not a kOps version")
    );
}

#[test]
fn kops_before_1_20_prints_no_target_column() {
    let mut bench = Bench::new();
    bench.run(&["create", "-f", &minimal_manifest()]).ok();
    bench.set("KOPS_STANDIN_VERSION", "1.19.1");
    bench.run(&["update", "cluster", C, "--yes"]).ok();
    assert_eq!(
        bench.run(&["rolling-update", "cluster", C]).ok().stdout,
        "NAME\t\t\tSTATUS\tNEEDUPDATE\tREADY\tMIN\tMAX\tNODES\n\
         master-us-test-1a\tReady\t0\t\t1\t1\t1\t1\n\
         nodes\t\t\tReady\t0\t\t2\t2\t2\t2\n\
         \nNo rolling-update required.\n"
    );
    bench.set("KOPS_STANDIN_VERSION", "1.20.0");
    let out = bench.run(&["rolling-update", "cluster", C]).ok().stdout;
    assert!(out.starts_with("NAME\t\t\tSTATUS\tNEEDUPDATE\tREADY\tMIN\tTARGET\tMAX\tNODES\n"));
}

// ---- reconcile cluster ----

#[test]
fn reconcile_without_yes_is_the_update_dry_run() {
    let bench = upgrade_pending();
    let before = bench.store_tree();
    let cloud_before = tree(bench.cloud.path());
    let reconcile = bench.run(&["reconcile", "cluster", C]).ok();
    let update = bench.run(&["update", "cluster", C]).ok();
    assert_eq!(reconcile.stdout, update.stdout);
    assert!(
        reconcile
            .stdout
            .ends_with("\nMust specify --yes to apply changes\n")
    );
    assert!(
        !reconcile
            .stdout
            .contains("Updating control plane configuration")
    );
    assert_eq!(bench.store_tree(), before);
    assert_eq!(tree(bench.cloud.path()), cloud_before);
}

#[test]
fn reconcile_accepts_its_documented_flags_only() {
    let bench = applied();
    bench
        .run(&[
            "reconcile",
            "cluster",
            "--name",
            C,
            "--allow-kops-downgrade",
            "--api-server",
            "https://api.example",
            "--use-kubeconfig=false",
            "-y=false",
            "--config",
            "c.yaml",
            "-v",
            "2",
        ])
        .ok();
    refuses_unknown_flags_and_a_missing_name(
        &bench,
        &["reconcile", "cluster"],
        &[
            "--prune",
            "--instance-group-roles=node",
            "--target=direct",
            "--admin",
        ],
    );
}

/// What `kops update cluster C` (a preview) prints.
fn update_preview(bench: &Bench) -> String {
    bench.run(&["update", "cluster", C]).ok().stdout
}

/// `COMMAND C FLAG` is refused for each flag kOps does not document for
/// the command, and `COMMAND` without a cluster asks for its name.
fn refuses_unknown_flags_and_a_missing_name(bench: &Bench, command: &[&str], flags: &[&str]) {
    for flag in flags {
        let run = bench.run(&[command, &[C, flag]].concat()).fails();
        let name = flag.split('=').next().unwrap();
        assert_eq!(run.stderr, format!("Error: unknown flag: {name}\n"));
    }
    let run = bench.run(command).fails();
    assert_eq!(run.stderr, "Error: --name is required\n");
}

#[test]
fn reconcile_updates_and_rolls_the_control_plane_before_the_nodes() {
    let bench = upgrade_pending();
    let run = bench.run(&["reconcile", "cluster", C, "--yes"]).ok();
    assert_in_order(
        &run.stdout,
        &[
            "Updating control plane configuration\n",
            "Cluster changes have been applied to the cloud.",
            "Waiting for the kubernetes API to be served\n",
            "Validating cluster minimal-aws.example.com\n\nINSTANCE GROUPS\n",
            "\nYour cluster minimal-aws.example.com is ready\n",
            "Performing rolling-update for control plane\n",
            "NAME\t\t\tSTATUS\t\tNEEDUPDATE\tREADY\tMIN\tTARGET\tMAX\tNODES\n\
             master-us-test-1a\tNeedsUpdate\t1\t\t0\t1\t1\t1\t1\n",
            "Updating node configuration\n",
            "Cluster changes have been applied to the cloud.",
            "Performing rolling-update for nodes\n",
            "master-us-test-1a\tReady\t\t0\t\t1\t1\t1\t1\t1\n\
             nodes\t\t\tNeedsUpdate\t2\t\t0\t2\t2\t2\t2\n",
            "Pruning old resources that are no longer used\n",
            "Cluster changes have been applied to the cloud.",
        ],
    );
    // The API wait checks the control plane only.
    let wait = &run.stdout[run.stdout.find("Waiting for").unwrap()
        ..run
            .stdout
            .find("Performing rolling-update for control plane")
            .unwrap()];
    assert!(!wait.contains("nodes"), "{wait}");
    // While the control plane rolled, the nodes' launch template was old:
    // the control plane's instance was replaced before any node's.
    assert_in_order(
        &run.stderr,
        &[
            "in group \"master-us-test-1a.masters.minimal-aws.example.com\"",
            "Rolling update completed",
            "in group \"nodes.minimal-aws.example.com\"",
            "in group \"nodes.minimal-aws.example.com\"",
            "Rolling update completed",
        ],
    );
    assert!(all_ready(&bench));
    assert_eq!(update_preview(&bench), "No changes need to be applied\n");
}

#[test]
fn reconcile_prunes_last() {
    let bench = applied();
    let edited = edited_manifest(bench.cwd.path(), C, |t| {
        t.replace(
            "  sshAccess:\n    - 0.0.0.0/0",
            "  sshAccess:\n    - 10.0.0.0/8",
        )
    });
    bench
        .run(&["replace", "-f", &edited.to_string_lossy()])
        .ok();
    assert!(
        update_preview(&bench)
            .contains("Items will be deleted only when the --prune flag is specified:")
    );
    bench.run(&["reconcile", "cluster", C, "--yes"]).ok();
    assert_eq!(update_preview(&bench), "No changes need to be applied\n");
}

/// `reconcile cluster --yes` on a pending upgrade, with the roll of
/// `group` (`KOPS_STANDIN_ROLL_FAIL`) failing; the run failed.
fn reconcile_with_a_failing_roll(group: &str) -> (Bench, support::Run) {
    let mut bench = upgrade_pending();
    bench.set("KOPS_STANDIN_ROLL_FAIL", group);
    let run = bench.run(&["reconcile", "cluster", C, "--yes"]).fails();
    (bench, run)
}

fn last_line(text: &str) -> &str {
    text.lines().last().unwrap()
}

#[test]
fn a_failed_node_roll_stops_reconcile_and_a_rerun_resumes() {
    let (bench, run) = reconcile_with_a_failing_roll("nodes:1");
    assert_eq!(
        last_line(&run.stderr),
        "Error: error validating cluster after removing a node: cluster did not validate within a duration of \"15m0s\""
    );
    assert!(
        run.stderr
            .contains("] Cluster did not validate within 15m0s\n")
    );
    assert!(run.stdout.contains("Performing rolling-update for nodes\n"));
    assert!(!run.stdout.contains("Pruning old resources"));
    // The control plane is done, one node of two was replaced.
    let status = roll_status(&bench);
    assert_eq!(
        status,
        vec![
            ("master-us-test-1a".into(), "Ready".into(), "0".into()),
            ("nodes".into(), "NeedsUpdate".into(), "1".into()),
        ]
    );

    // The same job again (the control fails only once): the control plane
    // is skipped, the nodes finish, pruning runs.
    let run = bench.run(&["reconcile", "cluster", C, "--yes"]).ok();
    assert_in_order(
        &run.stdout,
        &[
            "Performing rolling-update for control plane\n",
            "master-us-test-1a\tReady\t0\t\t1\t1\t1\t1\t1\n\nNo rolling-update required.\n",
            "Performing rolling-update for nodes\n",
            "nodes\t\t\tNeedsUpdate\t1\t\t1\t2\t2\t2\t2\n",
            "Pruning old resources that are no longer used\n",
        ],
    );
    assert_eq!(run.stderr.matches("Stopping instance").count(), 1);
    assert!(all_ready(&bench));
}

#[test]
fn a_failed_control_plane_roll_stops_before_the_nodes_are_touched() {
    let (bench, run) = reconcile_with_a_failing_roll("master-us-test-1a");
    assert_eq!(
        last_line(&run.stderr),
        "Error: control plane not healthy after update, stopping rolling-update: \
         \"error validating cluster after removing a node: cluster did not validate within a duration of \\\"15m0s\\\"\""
    );
    assert!(!run.stdout.contains("Updating node configuration"));
    // The nodes' launch template was not updated, so nothing says they
    // need a roll yet; their update is still pending.
    let status = roll_status(&bench);
    assert_eq!(status[1], ("nodes".into(), "Ready".into(), "0".into()));
    assert!(update_preview(&bench).contains("  LaunchTemplate/nodes.minimal-aws.example.com\n"));
    // The group's only instance was replaced before validation failed, so
    // a re-run finds the control plane updated (the control fires only in
    // a group that still needs updating) and goes on with the nodes.
    bench.run(&["reconcile", "cluster", C, "--yes"]).ok();
    assert!(all_ready(&bench));
}

#[test]
fn rolling_update_failure_rolls_the_other_node_groups_and_resumes() {
    let mut bench = upgrade_pending();
    bench.run(&["update", "cluster", C, "--yes"]).ok();
    bench.set("KOPS_STANDIN_ROLL_FAIL", "nodes");
    let run = bench
        .run(&["rolling-update", "cluster", C, "--yes"])
        .fails();
    assert_eq!(
        last_line(&run.stderr),
        "Error: error validating cluster after removing a node: cluster did not validate within a duration of \"15m0s\""
    );
    assert!(!run.stderr.contains("Rolling update completed"));
    let status = roll_status(&bench);
    assert_eq!(status[0].1, "Ready", "the control plane rolled first");
    assert_eq!(
        status[1],
        ("nodes".into(), "NeedsUpdate".into(), "1".into())
    );
    // `--validation-timeout` is the one kOps names.
    let run = bench
        .run(&[
            "rolling-update",
            "cluster",
            C,
            "--yes",
            "--validation-timeout=1h",
        ])
        .fails();
    assert!(
        run.stderr.contains("within a duration of \"1h0m0s\""),
        "{run:?}"
    );
    bench.env.clear();
    bench.run(&["rolling-update", "cluster", C, "--yes"]).ok();
    assert!(all_ready(&bench));
}

// ---- validate cluster ----

/// `kops validate cluster C -o json EXTRA…`.
fn validate_json(bench: &Bench, extra: &[&str]) -> support::Run {
    bench.run(&[&["validate", "cluster", C, "-o", "json"][..], extra].concat())
}

#[test]
fn validate_an_unreachable_cluster() {
    let bench = Bench::with_fixture(C);
    let run = validate_json(&bench, &[]).fails();
    assert_eq!(run.stdout, "");
    assert_eq!(
        run.stderr,
        "Error: Validation failed: unexpected error during validation: unable to resolve Kubernetes cluster API URL dns: lookup api.minimal-aws.example.com: no such host\n"
    );
    let run = bench
        .run(&[
            "validate",
            "cluster",
            C,
            "--wait",
            "30s",
            "--interval",
            "10s",
        ])
        .fails();
    assert_eq!(run.stdout, "Validating cluster minimal-aws.example.com\n\n");
    assert_eq!(
        run.stderr.matches("(will retry): unexpected error").count(),
        3
    );
    assert!(
        run.stderr
            .ends_with("Error: Validation failed: wait time exceeded during validation\n")
    );
    let run = bench
        .run(&["validate", "cluster", "--name", "nowhere.example.com"])
        .fails();
    assert!(
        run.stderr.starts_with("Error: Validation failed: "),
        "{run:?}"
    );
    assert_eq!(
        bench.error(&["validate", "cluster"]),
        "Error: --name is required\n"
    );
}

#[test]
fn validate_json_of_a_healthy_cluster() {
    let bench = applied();
    let run = validate_json(&bench, &[]).ok();
    assert!(
        run.stdout.starts_with("{\"nodes\":[{\"name\":\"i-"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.ends_with("}]}"),
        "Go writes no newline: {:?}",
        run.stdout
    );
    let docs = json_docs(&run.stdout);
    assert_eq!(docs.len(), 1);
    let doc = docs[0].as_object().unwrap();
    assert_eq!(
        doc.keys().collect::<Vec<_>>(),
        vec!["nodes"],
        "empty failures left out"
    );
    let nodes = doc["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for node in nodes {
        let keys: Vec<&String> = node.as_object().unwrap().keys().collect();
        assert_eq!(keys, vec!["name", "zone", "role", "hostname", "status"]);
        assert_eq!(node["status"], "True");
        assert_eq!(node["zone"], "us-test-1a");
        assert_eq!(node["hostname"], node["name"]);
    }
    let roles: Vec<&str> = nodes.iter().map(|n| n["role"].as_str().unwrap()).collect();
    assert_eq!(roles, vec!["control-plane", "node", "node"]);

    let yaml = bench
        .run(&["validate", "cluster", C, "-o", "yaml"])
        .ok()
        .stdout;
    assert!(yaml.starts_with("nodes:\n- hostname: i-"), "{yaml}");
    assert!(yaml.contains("  role: control-plane\n  status: \"True\"\n  zone: us-test-1a\n"));

    let table = bench.run(&["validate", "cluster", C]).ok().stdout;
    let ids: Vec<&str> = nodes.iter().map(|n| n["name"].as_str().unwrap()).collect();
    let mut node_rows = [
        format!("{}\tcontrol-plane\tTrue", ids[0]),
        format!("{}\tnode\t\tTrue", ids[1]),
        format!("{}\tnode\t\tTrue", ids[2]),
    ];
    node_rows.sort();
    assert_eq!(
        table,
        format!(
            "Validating cluster {C}\n\n\
             INSTANCE GROUPS\n\
             NAME\t\t\tROLE\t\tMACHINETYPE\tMIN\tMAX\tSUBNETS\n\
             master-us-test-1a\tControlPlane\tm3.medium\t1\t1\tus-test-1a\n\
             nodes\t\t\tNode\t\tt2.medium\t2\t2\tus-test-1a\n\
             \nNODE STATUS\n\
             NAME\t\t\tROLE\t\tREADY\n{}\n\
             \nYour cluster {C} is ready\n",
            node_rows.join("\n")
        )
    );
}

#[test]
fn validate_fails_as_the_control_asks() {
    let mut bench = applied();
    bench.set("KOPS_STANDIN_VALIDATE", "fail");
    let run = validate_json(&bench, &[]).fails();
    assert_eq!(
        run.stderr,
        "Error: Validation failed: cluster not yet healthy\n"
    );
    let doc = &json_docs(&run.stdout)[0];
    let failures = doc["failures"].as_array().unwrap();
    let kinds: Vec<&str> = failures
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["Node", "Pod"]);
    let node = failures[0]["name"].as_str().unwrap();
    assert_eq!(
        failures[0]["message"],
        format!("node \"{node}\" of role \"node\" is not ready")
    );
    assert!(
        failures[1]["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-system/coredns-")
    );
    assert!(
        failures[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("system-cluster-critical pod \"coredns-")
    );
    let unready: Vec<&Value> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "False")
        .collect();
    assert_eq!(unready.len(), 1);
    assert_eq!(unready[0]["name"], node);

    // The table form: the errors table, then the verdict.
    let run = bench.run(&["validate", "cluster", C]).fails();
    assert_in_order(
        &run.stdout,
        &[
            "NODE STATUS\n",
            "\tnode\t\tFalse\n",
            "\nVALIDATION ERRORS\nKIND\tNAME",
            "\tMESSAGE\n",
            &format!("Node\t{node}"),
            "Pod\tkube-system/coredns-",
            "\nValidation Failed\n",
        ],
    );
    assert!(run.stdout.ends_with("\nValidation Failed\n"));

    // One unready worker may be tolerated; the pod still fails.
    let run = validate_json(&bench, &["--max-unready-nodes", "1"]).fails();
    let kinds: Vec<String> = json_docs(&run.stdout)[0]["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds, vec!["Pod"]);

    // --wait retries until the time is up; every attempt is printed.
    let run = validate_json(&bench, &["--wait", "30s", "--interval=10s"]).fails();
    assert_eq!(json_docs(&run.stdout).len(), 3);
    assert_eq!(
        run.stderr
            .matches("(will retry): cluster not yet healthy")
            .count(),
        3
    );
    assert!(
        run.stderr
            .ends_with("Error: Validation failed: wait time exceeded during validation\n")
    );
}

#[test]
fn validate_fails_n_times_then_passes_across_invocations() {
    let mut bench = applied();
    bench.set("KOPS_STANDIN_VALIDATE", "fail:3");
    // One attempt per invocation without --wait.
    validate_json(&bench, &[]).fails();
    // Two more failing attempts, then a pass: the last document is the
    // verdict.
    let run = validate_json(&bench, &["--wait", "10m"]).ok();
    let docs = json_docs(&run.stdout);
    assert_eq!(docs.len(), 3, "{}", run.stdout);
    assert!(docs[0].get("failures").is_some());
    assert!(docs[1].get("failures").is_some());
    assert!(docs[2].get("failures").is_none());
    assert!(run.stdout.contains("]}{\""), "back to back: {}", run.stdout);
    bench.run(&["validate", "cluster", C]).ok();
}

#[test]
fn validate_count_needs_consecutive_passes() {
    let bench = applied();
    let run = bench
        .run(&["validate", "cluster", C, "--count", "2", "-o", "json"])
        .fails();
    assert_eq!(
        last_line(&run.stderr),
        "Error: Validation failed: cluster passed validation 1 consecutive times"
    );
    let run = bench
        .run(&[
            "validate", "cluster", C, "--count", "2", "--wait", "1m", "-o", "json",
        ])
        .ok();
    assert_eq!(json_docs(&run.stdout).len(), 2);
    assert!(
        run.stderr
            .contains("(will retry): cluster passed validation 1 consecutive times")
    );
}

#[test]
fn validate_flags_and_kubeconfig() {
    let bench = applied();
    let kubeconfig = bench.cwd.path().join("kc");
    let kc = kubeconfig.to_string_lossy().into_owned();
    let run = bench
        .run(&["validate", "cluster", C, "--kubeconfig", &kc])
        .fails();
    assert_eq!(
        run.stderr,
        format!(
            "Error: Validation failed: cannot load kubecfg settings for \"{C}\": stat {kc}: no such file or directory\n"
        )
    );
    bench
        .run(&["export", "kubeconfig", C, "--admin", "--kubeconfig", &kc])
        .ok();
    bench
        .run(&[
            "validate",
            "cluster",
            "--name",
            C,
            "--kubeconfig",
            &kc,
            "--api-server",
            "https://api.example",
            "--count",
            "1",
            "--interval",
            "5s",
            "--max-unready-nodes",
            "0",
            "-o",
            "table",
            "--use-kubeconfig",
            "--wait",
            "1m",
        ])
        .ok();
    let run = bench.run(&["validate", "cluster", C, "-o", "xml"]).fails();
    assert!(
        run.stderr
            .ends_with("Error: Validation failed: unknown output format: \"xml\"\n"),
        "{run:?}"
    );
    for flag in ["--yes", "--full", "--cloudonly"] {
        assert_eq!(
            bench.error(&["validate", "cluster", C, flag]),
            format!("Error: unknown flag: {flag}\n")
        );
    }
    assert_eq!(
        bench.error(&["validate", "cluster", C, "--count", "two"]),
        "Error: invalid argument \"two\" for \"--count\" flag: strconv.ParseInt: parsing \"two\": invalid syntax\n"
    );
    let mut bench = bench;
    bench.set("KOPS_STANDIN_VALIDATE", "sometimes");
    let run = bench.run(&["validate", "cluster", C]).fails();
    assert!(
        run.stderr.contains("KOPS_STANDIN_VALIDATE=\"sometimes\""),
        "{run:?}"
    );
}

// ---- export kubeconfig ----

fn read_yaml(path: &std::path::Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn named<'a>(config: &'a Value, list: &str, name: &str) -> &'a Value {
    config[list]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {list} entry {name}: {config}"))
}

#[test]
fn export_kubeconfig_writes_a_private_merged_file() {
    use std::os::unix::fs::PermissionsExt;
    let bench = applied();
    let store_before = bench.store_tree();
    let kubeconfig = bench.cwd.path().join("kube").join("config");
    let kc = kubeconfig.to_string_lossy().into_owned();
    std::fs::create_dir_all(kubeconfig.parent().unwrap()).unwrap();
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: other\n  cluster:\n    server: https://other\n\
         contexts:\n- name: other\n  context:\n    cluster: other\n    user: other\n\
         users:\n- name: other\n  user:\n    token: t\ncurrent-context: other\n",
    )
    .unwrap();

    let run = bench
        .run(&[
            "export",
            "kubeconfig",
            "--name",
            C,
            "--kubeconfig",
            &kc,
            "--admin=1h",
        ])
        .ok();
    assert_eq!(
        run.stdout,
        format!("kOps has set your kubectl context to {C}\n")
    );
    assert_eq!(run.stderr, "");
    let mode = std::fs::metadata(&kubeconfig).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let config = read_yaml(&kubeconfig);
    assert_eq!(config["current-context"], C);
    assert_eq!(
        named(&config, "clusters", "other")["cluster"]["server"],
        "https://other"
    );
    assert_eq!(named(&config, "users", "other")["user"]["token"], "t");
    let cluster = &named(&config, "clusters", C)["cluster"];
    assert_eq!(cluster["server"], format!("https://api.{C}"));
    // The CA comes from the store's kubernetes-ca keyset.
    let keyset = bench.read(&format!("{C}/pki/private/kubernetes-ca/keyset.yaml"));
    let ca = cluster["certificate-authority-data"].as_str().unwrap();
    assert!(keyset.contains(&format!("publicMaterial: {ca}\n")), "{ca}");
    assert_eq!(
        named(&config, "contexts", C)["context"],
        serde_json::json!({"cluster": C, "user": C})
    );
    let user = &named(&config, "users", C)["user"];
    let b64 = base64::engine::general_purpose::STANDARD;
    let pem = String::from_utf8(
        b64.decode(user["client-certificate-data"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    let body = pem.lines().nth(1).unwrap();
    let facts = String::from_utf8(b64.decode(body).unwrap()).unwrap();
    assert!(facts.contains("O=system:masters"), "{facts}");
    assert!(user["client-key-data"].is_string());

    // --user and --internal: the context names the existing user.
    bench
        .run(&[
            "export",
            "kubeconfig",
            C,
            "--kubeconfig",
            &kc,
            "--user",
            "other",
            "--internal",
        ])
        .ok();
    let config = read_yaml(&kubeconfig);
    assert_eq!(named(&config, "contexts", C)["context"]["user"], "other");
    assert_eq!(
        named(&config, "clusters", C)["cluster"]["server"],
        format!("https://api.internal.{C}")
    );
    // --api-server is used as given; --auth-plugin execs kops.
    bench
        .run(&[
            "export",
            "kubecfg",
            C,
            "--kubeconfig",
            &kc,
            "--api-server",
            "https://10.0.0.1:443",
            "--auth-plugin",
        ])
        .ok();
    let config = read_yaml(&kubeconfig);
    assert_eq!(
        named(&config, "clusters", C)["cluster"]["server"],
        "https://10.0.0.1:443"
    );
    let exec = &named(&config, "users", C)["user"]["exec"];
    assert_eq!(exec["command"], "kops");
    assert_eq!(
        exec["args"],
        serde_json::json!([
            "helpers",
            "kubectl-auth",
            format!("--cluster={C}"),
            format!("--state={}", bench.state_url())
        ])
    );
    assert_eq!(bench.store_tree(), store_before, "export wrote the store");
}

#[test]
fn export_kubeconfig_defaults_and_refusals() {
    let mut bench = applied();
    // No credential: kOps warns.
    let run = bench.run(&["export", "kubeconfig", C]).ok();
    assert!(
        run.stderr
            .contains("Exported kubeconfig with no user authentication")
    );
    assert!(
        bench.home.path().join(".kube/config").is_file(),
        "$HOME/.kube/config"
    );
    let via_env = bench.cwd.path().join("from-env");
    bench.set("KUBECONFIG", &via_env.to_string_lossy());
    bench.run(&["export", "kubeconfig", C, "--admin"]).ok();
    assert_eq!(read_yaml(&via_env)["current-context"], C);

    assert_eq!(
        bench.error(&["export", "kubeconfig", C, "--admin", "--user", "u"]),
        "Error: cannot use both --admin and --user\n"
    );
    assert_eq!(
        bench.error(&["export", "kubeconfig", C, "--all"]),
        "Error: cannot use both --all flag and positional arguments\n"
    );
    let run = bench
        .run(&["export", "kubeconfig", "--all", "--admin"])
        .ok();
    assert_eq!(
        run.stdout,
        format!("kOps has set your kubectl context to {C}\n")
    );
    refuses_unknown_flags_and_a_missing_name(
        &bench,
        &["export", "kubeconfig"],
        &["--yes", "--create-kube-config"],
    );
}

// ---- delete cluster ----

#[test]
fn delete_cluster_previews_then_deletes() {
    let bench = applied();
    let before = bench.store_tree();
    let cloud_before = tree(bench.cloud.path());
    let run = bench.run(&["delete", "cluster", "--name", C]).ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines[0], "TYPE\t\t\tNAME\t\t\t\t\t\t\t\t\t\t\tID");
    for expected in [
        "autoscaling-group\tnodes.minimal-aws.example.com\t\t\t\t\t\t\t\tnodes.minimal-aws.example.com",
        "iam-role\t\tmasters.minimal-aws.example.com\t\t\t\t\t\t\t\tmasters.minimal-aws.example.com",
    ] {
        assert!(
            lines.contains(&expected),
            "missing {expected:?} in\n{}",
            run.stdout
        );
    }
    for kind in [
        "autoscaling-config\t",
        "dhcp-options\t",
        "instance\t",
        "internet-gateway\t",
        "keypair\t",
        "route-table\t",
        "security-group\t",
        "subnet\t",
        "vpc\t",
    ] {
        assert!(lines.iter().any(|l| l.starts_with(kind)), "no {kind:?} row");
    }
    // Rows sorted, three instances for the three nodes.
    let rows = &lines[1..lines.len() - 2];
    let mut sorted = rows.to_vec();
    sorted.sort();
    assert_eq!(rows, sorted.as_slice());
    assert_eq!(
        rows.iter().filter(|l| l.starts_with("instance\t")).count(),
        3
    );
    assert!(
        run.stdout
            .ends_with("\n\nMust specify --yes to delete cluster\n")
    );
    assert_eq!(bench.store_tree(), before, "the preview deleted something");
    assert_eq!(tree(bench.cloud.path()), cloud_before);

    let run = bench.run(&["delete", "cluster", C, "--yes"]).ok();
    assert_in_order(
        &run.stdout,
        &[
            "\n\ninstance:i-",
            "\tok\n",
            "vpc:vpc-",
            "\tok\n",
            "dhcp-options:dopt-",
        ],
    );
    assert!(
        run.stdout
            .ends_with(&format!("\tok\n\nDeleted cluster: \"{C}\"\n"))
    );
    assert!(
        !bench
            .store_tree()
            .keys()
            .any(|k| k.starts_with(&format!("{C}/"))),
        "cluster objects left: {:?}",
        bench.store_tree().keys().collect::<Vec<_>>()
    );
    let run = bench.run(&["get", "clusters"]).ok();
    assert_eq!(run.stderr, "No clusters found\n");
    let cloud: Value = serde_json::from_slice(
        &std::fs::read(bench.cloud.path().join(format!("{C}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(cloud["resources"], serde_json::json!({}));
    assert_eq!(cloud["groups"], serde_json::json!({}));
    assert_eq!(
        bench.error(&["delete", "cluster", C, "--yes"]),
        format!("Error: cluster \"{C}\" not found\n")
    );
}

#[test]
fn delete_cluster_without_cloud_unregister_and_refusals() {
    // Never applied: nothing in the cloud, only the state to unregister.
    let bench = Bench::with_fixture(C);
    let run = bench.run(&["delete", "cluster", C]).ok();
    assert_eq!(
        run.stdout,
        "No cloud resources to delete\n\nMust specify --yes to unregister the cluster\n"
    );

    // A file kOps does not know: nothing is removed from the store.
    let stray = bench.store.path().join(C).join("notes.txt");
    std::fs::write(&stray, "mine").unwrap();
    let before = bench.store_tree();
    assert_eq!(
        bench.error(&["delete", "cluster", C, "--yes"]),
        format!(
            "Error: error removing cluster from state store: refusing to delete: unknown file found: {}/{C}/notes.txt\n",
            bench.state_url()
        )
    );
    assert_eq!(bench.store_tree(), before);
    std::fs::remove_file(&stray).unwrap();

    // --unregister leaves the cloud alone.
    let bench = applied();
    let cloud_before = tree(bench.cloud.path());
    let run = bench
        .run(&[
            "delete",
            "cluster",
            "--name",
            C,
            "--unregister",
            "--yes",
            "--count",
            "3",
            "--interval",
            "1s",
            "--wait",
            "1m",
        ])
        .ok();
    assert_eq!(run.stdout, format!("\nDeleted cluster: \"{C}\"\n"));
    assert_eq!(tree(bench.cloud.path()), cloud_before);
    assert!(bench.store_tree().is_empty());

    // --external deletes cloud resources of a cluster without state.
    assert_eq!(
        bench.error(&["delete", "cluster", C, "--external", "--yes"]),
        "Error: --region is required (when --external)\n"
    );
    let run = bench
        .run(&[
            "delete",
            "cluster",
            C,
            "--external",
            "--region",
            "us-test-1",
            "--yes",
        ])
        .ok();
    assert!(
        run.stdout
            .ends_with(&format!("\tok\n\nDeleted cluster: \"{C}\"\n"))
    );

    refuses_unknown_flags_and_a_missing_name(
        &bench,
        &["delete", "cluster"],
        &["--force", "--prune"],
    );
}

// ---- the invocation log across the apply path ----

#[test]
fn the_log_records_every_command_in_order() {
    let mut bench = upgrade_pending();
    let log = bench.cwd.path().join("kops.jsonl");
    bench.set("KOPS_STANDIN_LOG", &log.to_string_lossy());
    bench.run(&["reconcile", "cluster", C, "--yes"]).ok();
    bench
        .run(&["validate", "cluster", C, "--wait", "10m", "-o", "json"])
        .ok();
    bench.run(&["delete", "cluster", C]).ok();
    let mut text = String::new();
    std::fs::File::open(&log)
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let argvs: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["argv"].clone())
        .collect();
    assert_eq!(
        argvs,
        vec![
            serde_json::json!(["reconcile", "cluster", C, "--yes"]),
            serde_json::json!(["validate", "cluster", C, "--wait", "10m", "-o", "json"]),
            serde_json::json!(["delete", "cluster", C]),
        ]
    );
}
