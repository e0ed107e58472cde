//! The apply half end to end — `kopsci apply` (kOps' `reconcile`, or the
//! older update → rolling-update → prune sequence), the version-skew guard
//! of `update`, the validation gate, resumed applies, pruning from the
//! fleet, retiring `absent: true` clusters, `kubeconfig`, tampered plans
//! and reports that never mislead — against a real S3 server (SeaweedFS)
//! and the kops stand-in, whose invocation log shows exactly what kops was
//! given and in which order.

use std::os::unix::fs::PermissionsExt;

use serde_json::{Value, json};

use crate::stages::{
    BIGGER_NODES, BUCKET, CLUSTER, NEW_MACHINE_TYPE, STATE, World, append, assert_assumed_identity,
    mock_sts,
};

/// `kopsci apply`'s report, or another stage's (`update`, `roll`, `delete`).
fn stage_report(world: &World, stage: &str) -> Value {
    let text = world
        .sb
        .read(&format!(".kopsci/reports/{CLUSTER}/{stage}/report.json"));
    serde_json::from_str(&text).expect("report.json is JSON")
}

fn stage_file(world: &World, stage: &str, file: &str) -> String {
    world
        .sb
        .read(&format!(".kopsci/reports/{CLUSTER}/{stage}/{file}"))
}

/// Replaces text in a file of the sandbox (exactly once).
fn edit(world: &World, rel: &str, from: &str, to: &str) {
    let path = world.sb.join(rel);
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.matches(from).count(), 1, "{from:?} in {rel}:\n{text}");
    std::fs::write(path, text.replacen(from, to, 1)).expect("write");
}

/// The calls made since the log had `from` lines.
fn calls_since(world: &World, from: usize) -> Vec<String> {
    world.argvs()[from..].to_vec()
}

/// The live store's object, as text.
fn live(world: &World, key: &str) -> String {
    let objects = world.bucket();
    let bytes = objects
        .get(&format!("{CLUSTER}/{key}"))
        .unwrap_or_else(|| panic!("no {key} in the bucket"));
    String::from_utf8_lossy(bytes).into_owned()
}

/// The cluster as applied long ago with Kubernetes v1.33.5: the fleet's
/// values (v1.34.0) are then a minor upgrade, the change kOps' upgrade
/// guide is about.
fn world_on_kubernetes_1_33() -> World {
    let world = World::new();
    let key = format!("{CLUSTER}/config");
    let config =
        live(&world, "config").replace("kubernetesVersion: v1.34.0", "kubernetesVersion: v1.33.5");
    assert!(config.contains("v1.33.5"));
    world.server.put(BUCKET, &key, config);
    world.apply_fixture(CLUSTER);
    world
}

/// Commands that write the live store or the cloud, by their argv: every
/// mutating kops command with `--yes`, and `create`/`replace`, whichever
/// store they name.
fn writes(calls: &[String]) -> Vec<String> {
    calls
        .iter()
        .filter(|c| {
            let live = c.contains(&format!("--state {STATE}"));
            let mutating = c.starts_with("replace ")
                || c.starts_with("create ")
                || (c.split(' ').any(|w| w == "--yes"));
            live && mutating
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------
// 1. apply with kops 1.31+: reconcile, and nothing else writes
// ---------------------------------------------------------------------

#[test]
fn apply_upgrades_kubernetes_with_reconcile_and_nothing_else_writes_the_store() {
    let world = world_on_kubernetes_1_33();
    let before = world.bucket();
    world
        .run(&["dryrun", CLUSTER, "--detailed-exitcode"])
        .expect_code(2);
    assert!(world.bucket() == before, "the dry run wrote the live store");

    let from = world.calls().len();
    let run = world.run(&["apply", CLUSTER]).success();
    let calls = calls_since(&world, from);
    assert_eq!(
        calls,
        [
            "version".to_string(),
            format!("replace -f <manifest> --state {STATE} --force"),
            format!("update cluster --name {CLUSTER} --state {STATE}"),
            format!("reconcile cluster --name {CLUSTER} --state {STATE} --yes"),
            format!("validate cluster --name {CLUSTER} --state {STATE} --wait 15m -o json"),
        ],
        "{}",
        run.stderr()
    );
    // Of the commands that write, only `replace` and `reconcile`: never
    // `update cluster --yes` or `rolling-update --yes`, which is the
    // sequence the upgrade guide says crashes kubelets.
    assert_eq!(
        writes(&calls),
        [
            format!("replace -f <manifest> --state {STATE} --force"),
            format!("reconcile cluster --name {CLUSTER} --state {STATE} --yes"),
        ]
    );
    assert!(
        live(&world, "config").contains("kubernetesVersion: v1.34.0"),
        "the upgrade did not reach the store"
    );

    let report = stage_report(&world, "apply");
    assert_eq!(report["stage"], "apply");
    assert!(report["failed"].is_null(), "{report}");
    assert_eq!(report["action"], "replace");
    assert_eq!(
        report["phases"],
        json!([
            "update-control-plane",
            "wait-for-api",
            "roll-control-plane",
            "update-nodes",
            "roll-nodes",
            "prune"
        ])
    );
    assert_eq!(report["validation"]["passed"], true, "{report}");
    assert!(
        report["validation"]["failures"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(!report["validation"]["nodes"].as_array().unwrap().is_empty());
    assert_eq!(report["kops_commands"].as_array().unwrap().len(), 4);
    // The rolling-update table kOps printed in the node roll, parsed: the
    // control plane was rolled before, the nodes then.
    let rows = report["roll_plan"]["rows"].as_array().unwrap();
    let status = |group: &str| {
        rows.iter()
            .find(|r| r["name"] == group)
            .map(|r| r["status"].clone())
            .unwrap_or_else(|| panic!("no {group} in {}", report["roll_plan"]))
    };
    assert_eq!(status("master-us-test-1a"), "Ready");
    assert_eq!(status("nodes"), "NeedsUpdate");
    let md = stage_file(&world, "apply", "report.md");
    assert!(md.contains("Performing rolling-update for nodes"), "{md}");
    assert!(
        md.contains("| `nodes` | NeedsUpdate |"),
        "no rolling-update table in:\n{md}"
    );
    let kops_apply = stage_file(&world, "apply", "kops-apply.txt");
    assert!(
        kops_apply.contains("Pruning old resources that are no longer used"),
        "{kops_apply}"
    );
    world.assert_no_debris();

    // Everything rolled: nothing left for a rolling update, and the next
    // dry run is clean.
    let run = world.run(&["roll", CLUSTER]).success();
    assert_eq!(
        run.stdout(),
        format!("{CLUSTER}: no rolling update required\n")
    );
    world
        .run(&["dryrun", CLUSTER, "--detailed-exitcode"])
        .success();
}

// ---------------------------------------------------------------------
// 2. update-roll on kops 1.31+ refuses a Kubernetes version change
// ---------------------------------------------------------------------

#[test]
fn update_refuses_a_kubernetes_upgrade_that_kops_can_reconcile() {
    let world = world_on_kubernetes_1_33();
    append(&world.sb, "kopsci.yaml", "apply: update-roll\n");
    world.run(&["dryrun", CLUSTER]).success();
    let before = world.bucket();
    let from = world.calls().len();
    world.run(&["update", CLUSTER]).fails_with(
        1,
        &[
            "refusing to change Kubernetes v1.33.5 → v1.34.0 with `kopsci update` then `kopsci roll` (kops 1.34.1)",
            "Violating this policy when upgrading to Kubernetes 1.31 can cause newer kubelets to crash.",
            "use the new `kops reconcile cluster` command",
            "kopsci apply minimal-aws.example.com",
            "--allow-version-skew",
        ],
    );
    assert!(world.bucket() == before, "a refused update wrote the store");
    assert_eq!(calls_since(&world, from), ["version"]);
    let report = stage_report(&world, "update");
    assert_eq!(report["failed_step"], "plan check");

    // The override takes the risk, says so, and applies.
    let run = world
        .run(&["update", CLUSTER, "--allow-version-skew"])
        .success();
    run.assert_stderr_has(
        "warning: minimal-aws.example.com: --allow-version-skew: Kubernetes v1.33.5 → v1.34.0",
    );
    let report = stage_report(&world, "update");
    assert!(report["failed"].is_null(), "{report}");
    assert!(
        report["warnings"].as_array().unwrap().iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("can cause newer kubelets to crash")),
        "{report}"
    );
    assert!(live(&world, "config").contains("kubernetesVersion: v1.34.0"));
    let calls = calls_since(&world, from + 1);
    assert!(
        calls.contains(&format!(
            "update cluster --name {CLUSTER} --state {STATE} --yes"
        )),
        "{calls:?}"
    );
    assert!(
        !calls.iter().any(|c| c.starts_with("reconcile")),
        "{calls:?}"
    );
}

// ---------------------------------------------------------------------
// 3. kops before 1.31: update → rolling-update (→ update --prune)
// ---------------------------------------------------------------------

/// kopsci with extra environment, `--state s3://kops-state` after the
/// command.
fn run_env(world: &World, env: &[(&str, &str)], args: &[&str]) -> crate::harness::Run {
    let mut k = world.kopsci();
    for (key, value) in env {
        k = k.env(key, value);
    }
    k.arg(args[0])
        .args(["--state", STATE])
        .args(&args[1..])
        .run()
}

/// Creates the cluster with an older kops and applies a machine-type
/// change; returns the calls of that second apply. The fixture stores
/// carry `kops-version.txt` 1.34.0-beta.1, which an older kops refuses to
/// update (kOps' downgrade check), so the cluster starts from an empty
/// store: `kopsci apply` takes the create path, then the older kops writes
/// its own version.
fn apply_with_old_kops(kops_version: &str, kubernetes: &str) -> (World, Vec<String>) {
    let world = created_with_old_kops(kops_version, kubernetes);
    let env = [("KOPS_STANDIN_VERSION", kops_version)];
    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        NEW_MACHINE_TYPE,
    );
    run_env(&world, &env, &["dryrun", CLUSTER]).success();
    let from = world.calls().len();
    let run = run_env(&world, &env, &["apply", CLUSTER]).success();
    assert_eq!(
        run.stdout(),
        format!("{CLUSTER}: applied: 0 to create, 1 to modify, 0 to delete\n"),
        "{}",
        run.stderr()
    );
    let calls = calls_since(&world, from);
    for call in world.argvs() {
        assert!(
            !call.starts_with("reconcile"),
            "kops {kops_version} got {call}"
        );
    }
    let report = stage_report(&world, "apply");
    assert!(report["failed"].is_null(), "{report}");
    assert_eq!(report["phases"], json!([]));
    assert_eq!(report["validation"]["passed"], true);
    // The nodes were replaced: nothing is left to roll.
    let after = run_env(&world, &env, &["roll", CLUSTER]).success();
    assert_eq!(
        after.stdout(),
        format!("{CLUSTER}: no rolling update required\n")
    );
    (world, calls)
}

/// A cluster created by `kopsci apply` with an older kops.
fn created_with_old_kops(kops_version: &str, kubernetes: &str) -> World {
    let world = World::with(&[]);
    edit(
        &world,
        "kopsci.yaml",
        "version: \">=1.34.0, <1.35.0\"",
        "version: \">=1.28.0, <1.35.0\"",
    );
    edit(
        &world,
        "values/clusters/minimal-aws.yaml",
        "kubernetesVersion: v1.34.0",
        &format!("kubernetesVersion: {kubernetes}"),
    );
    let env = [("KOPS_STANDIN_VERSION", kops_version)];
    run_env(&world, &env, &["dryrun", CLUSTER]).success();
    assert_eq!(world.report(CLUSTER)["action"], "create");
    let from = world.calls().len();
    run_env(&world, &env, &["apply", CLUSTER]).success();
    let created = calls_since(&world, from);
    assert_eq!(created[1], format!("create -f <manifest> --state {STATE}"));
    assert_eq!(
        live(&world, "kops-version.txt").trim(),
        kops_version,
        "the cluster was not created by kops {kops_version}"
    );
    assert_eq!(stage_report(&world, "apply")["action"], "create");
    world
}

#[test]
fn kops_1_30_applies_with_update_then_rolling_update_then_prune() {
    let (world, calls) = apply_with_old_kops("1.30.4", "v1.29.9");
    assert_eq!(
        calls,
        [
            "version".to_string(),
            format!("replace -f <manifest> --state {STATE} --force"),
            format!("update cluster --name {CLUSTER} --state {STATE}"),
            format!("update cluster --name {CLUSTER} --state {STATE} --yes"),
            format!("rolling-update cluster --name {CLUSTER} --state {STATE} --yes"),
            format!("update cluster --name {CLUSTER} --state {STATE} --prune --yes"),
            format!("validate cluster --name {CLUSTER} --state {STATE} --wait 15m -o json"),
        ]
    );
    let log = stage_file(&world, "apply", "kops-apply.txt");
    let update = log.find("--state s3://kops-state --yes\n").unwrap();
    let prune = log.find("--prune --yes\n").unwrap();
    assert!(update < prune, "{log}");
    let report = stage_report(&world, "apply");
    let rows = report["roll_plan"]["rows"].as_array().unwrap();
    assert!(
        rows.iter().any(|r| r["name"] == "nodes"),
        "{}",
        report["roll_plan"]
    );

    // kops 1.30 has no `reconcile` (and supports Kubernetes only up to
    // 1.30, where the kubelet skew crash does not occur): `update` of a
    // Kubernetes upgrade is not refused.
    edit(
        &world,
        "values/clusters/minimal-aws.yaml",
        "kubernetesVersion: v1.29.9",
        "kubernetesVersion: v1.30.6",
    );
    let env = [("KOPS_STANDIN_VERSION", "1.30.4")];
    run_env(&world, &env, &["dryrun", CLUSTER]).success();
    let run = run_env(&world, &env, &["update", CLUSTER]).success();
    assert!(!run.stderr().contains("skew"), "{}", run.stderr());
    assert!(live(&world, "config").contains("kubernetesVersion: v1.30.6"));
    assert_eq!(stage_report(&world, "update")["warnings"], json!([]));
}

#[test]
fn kops_1_28_applies_without_prune_which_it_does_not_have() {
    let (_world, calls) = apply_with_old_kops("1.28.5", "v1.28.9");
    assert_eq!(
        calls,
        [
            "version".to_string(),
            format!("replace -f <manifest> --state {STATE} --force"),
            format!("update cluster --name {CLUSTER} --state {STATE}"),
            format!("update cluster --name {CLUSTER} --state {STATE} --yes"),
            format!("rolling-update cluster --name {CLUSTER} --state {STATE} --yes"),
            format!("validate cluster --name {CLUSTER} --state {STATE} --wait 15m -o json"),
        ]
    );
}

#[test]
fn kops_1_30_apply_failing_mid_roll_keeps_its_output_and_resumes() {
    let world = created_with_old_kops("1.30.4", "v1.30.6");
    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        NEW_MACHINE_TYPE,
    );
    let env = [
        ("KOPS_STANDIN_VERSION", "1.30.4"),
        ("KOPS_STANDIN_ROLL_FAIL", "nodes:1"),
    ];
    run_env(&world, &env, &["dryrun", CLUSTER]).success();
    let from = world.calls().len();
    run_env(&world, &env, &["apply", CLUSTER])
        .fails_with(1, &["`kops rolling-update cluster` failed"]);
    let calls = calls_since(&world, from);
    assert_eq!(
        calls.last().unwrap(),
        &format!("rolling-update cluster --name {CLUSTER} --state {STATE} --yes")
    );
    let report = stage_report(&world, "apply");
    assert_eq!(report["failed_step"], "kops rolling-update cluster");
    // What kops did before it failed stays in the report directory.
    let log = stage_file(&world, "apply", "kops-apply.txt");
    assert!(
        log.contains(&format!(
            "update cluster --name {CLUSTER} --state {STATE} --yes\n"
        )),
        "{log}"
    );
    let roll = stage_file(&world, "apply", "kops-rolling-update.txt");
    assert!(roll.contains("NeedsUpdate"), "{roll}");
    let detail = report["failed_detail"].to_string();
    assert!(detail.contains("did not validate"), "{detail}");

    // The retry resumes, and finishes with the prune.
    let from = world.calls().len();
    let run = run_env(&world, &env, &["apply", CLUSTER]).success();
    run.assert_stderr_has("resuming an earlier apply");
    let calls = calls_since(&world, from);
    assert_eq!(
        calls[3..6],
        [
            format!("update cluster --name {CLUSTER} --state {STATE} --yes"),
            format!("rolling-update cluster --name {CLUSTER} --state {STATE} --yes"),
            format!("update cluster --name {CLUSTER} --state {STATE} --prune --yes"),
        ]
    );
}

// ---------------------------------------------------------------------
// 4. The validation gate fails the job
// ---------------------------------------------------------------------

#[test]
fn a_failed_validation_fails_the_apply_with_the_table_in_the_report() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    append(&world.sb, "values/clusters/minimal-aws.yaml", BIGGER_NODES);
    append(&world.sb, "kopsci.yaml", "validation_timeout: 30s\n");
    world.run(&["dryrun", CLUSTER]).success();
    let from = world.calls().len();
    let run = run_env(
        &world,
        &[("KOPS_STANDIN_VALIDATE", "fail")],
        &["apply", CLUSTER],
    )
    .fails_with(
        1,
        &[
            "cluster `minimal-aws.example.com` did not validate within 30s",
            "2 failure(s)",
            "docs/troubleshooting.md",
        ],
    );
    let calls = calls_since(&world, from);
    assert_eq!(
        calls.last().unwrap(),
        &format!("validate cluster --name {CLUSTER} --state {STATE} --wait 30s -o json"),
        "{}",
        run.stderr()
    );
    // The change itself was applied; the gate is what failed.
    assert!(live(&world, "instancegroup/nodes").contains("maxSize: 5"));

    let report = stage_report(&world, "apply");
    assert_eq!(report["failed_step"], "kops validate cluster");
    let validation = &report["validation"];
    assert_eq!(validation["passed"], false);
    // --wait 30s at the default 10s interval: three attempts.
    assert_eq!(validation["attempts"], 3, "{validation}");
    let failures = validation["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 2, "{validation}");
    assert!(failures.iter().any(|f| f["type"] == "Pod"), "{validation}");
    assert!(
        failures
            .iter()
            .any(|f| f["type"] == "Machine" || f["type"] == "Node"),
        "{validation}"
    );

    let md = stage_file(&world, "apply", "report.md");
    assert!(
        md.starts_with(
            "#### `minimal-aws.example.com` (prod) — apply failed at `kops validate cluster`"
        ),
        "{md}"
    );
    assert!(
        md.contains("**Validation failed** (`kops validate cluster`, 3 attempt(s)):"),
        "{md}"
    );
    // reconcile finished every phase: it is not where the apply stopped.
    assert!(
        md.contains("`kops reconcile cluster` phases:\n\n1. Updating control plane"),
        "{md}"
    );
    assert!(!md.contains("stopped in the last one"), "{md}");
    assert!(
        md.contains("| type | name | message |\n| --- | --- | --- |\n"),
        "{md}"
    );
    for f in failures {
        let name = f["name"].as_str().unwrap();
        assert!(md.contains(&format!("`{name}`")), "{name} not in {md}");
    }
    let raw = stage_file(&world, "apply", "kops-validate.txt");
    assert!(raw.starts_with("$ "), "{raw}");
}

/// A kops that prints reconcile's first phases, then rolls the control
/// plane until a signal stops it (as real kops, killed mid-roll); every
/// other command is the stand-in's.
fn kops_stopped_mid_reconcile(world: &World) -> std::path::PathBuf {
    let path = world.sb.join("kops-mid-reconcile");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\n\
             if [ \"$1\" = reconcile ]; then\n\
             printf 'Updating control plane configuration\\nWaiting for the kubernetes API to be served\\nPerforming rolling-update for control plane\\n'\n\
             trap 'exit 143' TERM\n\
             echo 'rolling the control plane' >&2\n\
             while :; do sleep 0.1; done\n\
             fi\n\
             exec {} \"$@\"\n",
            crate::support::standin().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn sigterm_mid_reconcile_reports_the_phase_it_stopped_in() {
    use std::io::BufRead;
    let world = World::new();
    world.apply_fixture(CLUSTER);
    append(&world.sb, "values/clusters/minimal-aws.yaml", BIGGER_NODES);
    world.run(&["dryrun", CLUSTER]).success();
    let mut child = world
        .kopsci()
        .env("KOPSCI_KOPS", kops_stopped_mid_reconcile(&world))
        .args(["apply", CLUSTER, "--state", STATE])
        .spawn();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if line.contains("rolling the control plane") {
                let _ = tx.send(());
            }
            seen.push_str(&line);
            seen.push('\n');
        }
        seen
    });
    if rx.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
        let _ = child.kill();
        panic!("reconcile never started:\n{}", reader.join().unwrap());
    }
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("error: interrupted by SIGTERM"), "{stderr}");

    let report = stage_report(&world, "apply");
    assert_eq!(report["failed"], "interrupted by SIGTERM");
    assert_eq!(report["failed_step"], "kops reconcile cluster");
    assert_eq!(
        report["phases"],
        json!(["update-control-plane", "wait-for-api", "roll-control-plane"])
    );
    let md = stage_file(&world, "apply", "report.md");
    assert!(
        md.contains("`kops reconcile cluster` phases (it stopped in the last one):"),
        "{md}"
    );
    assert!(
        md.contains("3. Performing rolling-update for control plane\n"),
        "{md}"
    );
    let raw = stage_file(&world, "apply", "kops-apply.txt");
    assert!(
        raw.starts_with("$ ") && raw.contains(" reconcile cluster --name "),
        "{raw}"
    );
    assert!(
        raw.contains("Performing rolling-update for control plane"),
        "{raw}"
    );
    // Nothing half-written: no plan of this stage, no private copies.
    world.assert_no_debris();
}

// ---------------------------------------------------------------------
// 5. A retried apply resumes
// ---------------------------------------------------------------------

#[test]
fn a_retried_apply_after_a_failed_roll_resumes_instead_of_being_stale() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        NEW_MACHINE_TYPE,
    );
    world.run(&["dryrun", CLUSTER]).success();
    let reviewed = world.bucket();
    let roll_fail = [("KOPS_STANDIN_ROLL_FAIL", "nodes:1")];
    let run = run_env(&world, &roll_fail, &["apply", CLUSTER])
        .fails_with(1, &["Performing rolling-update for nodes"]);
    let report = stage_report(&world, "apply");
    assert_eq!(
        report["failed_step"],
        "kops reconcile cluster",
        "{}",
        run.stderr()
    );
    assert_eq!(
        report["phases"].as_array().unwrap().last().unwrap(),
        "roll-nodes"
    );
    assert!(
        report["validation"].is_null(),
        "validated after a failed roll"
    );
    let md = stage_file(&world, "apply", "report.md");
    assert!(md.contains("phases (it stopped in the last one)"), "{md}");
    // The first attempt wrote the live store: the plan's snapshot no
    // longer matches it.
    assert!(world.bucket() != reviewed, "the live store is unchanged");
    assert!(live(&world, "instancegroup/nodes").contains("t3.large"));

    // The same job again (the stand-in fails the roll only once).
    let from = world.calls().len();
    let run = run_env(&world, &roll_fail, &["apply", CLUSTER]).success();
    run.assert_stderr_has(
        "but only as applying this same reviewed manifest changes it: resuming an earlier apply",
    );
    let report = stage_report(&world, "apply");
    assert!(report["failed"].is_null(), "{report}");
    assert_eq!(report["validation"]["passed"], true);
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("resuming an earlier apply"),
        "{report}"
    );
    let calls = calls_since(&world, from);
    assert!(calls.contains(&format!(
        "reconcile cluster --name {CLUSTER} --state {STATE} --yes"
    )));
    let run = world.run(&["roll", CLUSTER]).success();
    assert_eq!(
        run.stdout(),
        format!("{CLUSTER}: no rolling update required\n")
    );

    // Resuming is not a loophole: a live store changed in any other way
    // is still refused.
    let key = format!("{CLUSTER}/instancegroup/nodes");
    let edited = live(&world, "instancegroup/nodes").replace("maxSize: 2", "maxSize: 9");
    world.server.put(BUCKET, &key, edited);
    world.run(&["apply", CLUSTER]).fails_with(
        1,
        &["refusing a stale plan", "modified instancegroup/nodes"],
    );
}

// ---------------------------------------------------------------------
// 11. roll --yes and the validation gate
// ---------------------------------------------------------------------

#[test]
fn roll_yes_validates_afterwards_unless_the_fleet_opts_out() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        NEW_MACHINE_TYPE,
    );
    world.run(&["dryrun", CLUSTER]).success();
    world.run(&["update", CLUSTER]).success();

    // A preview never validates.
    let from = world.calls().len();
    world.run(&["roll", CLUSTER]).success();
    assert!(
        !calls_since(&world, from)
            .iter()
            .any(|c| c.starts_with("validate")),
        "{:?}",
        calls_since(&world, from)
    );
    assert!(stage_report(&world, "roll")["validation"].is_null());

    // The roll succeeds, the cluster does not validate: the job fails.
    let from = world.calls().len();
    run_env(
        &world,
        &[("KOPS_STANDIN_VALIDATE", "fail")],
        &["roll", CLUSTER, "--yes"],
    )
    .fails_with(1, &["did not validate within 15m"]);
    assert_eq!(
        calls_since(&world, from)[1..],
        [
            format!("rolling-update cluster --name {CLUSTER} --state {STATE} --yes"),
            format!("validate cluster --name {CLUSTER} --state {STATE} --wait 15m -o json"),
        ]
    );
    let report = stage_report(&world, "roll");
    assert_eq!(report["failed_step"], "kops validate cluster");
    assert_eq!(report["validation"]["passed"], false);
    assert!(stage_file(&world, "roll", "report.md").contains("**Validation failed**"));

    // Once healthy, the gate passes.
    run_env(
        &world,
        &[("KOPS_STANDIN_VALIDATE", "pass")],
        &["roll", CLUSTER, "--yes"],
    )
    .success();
    let report = stage_report(&world, "roll");
    assert_eq!(report["validation"]["passed"], true, "{report}");
    assert!(stage_file(&world, "roll", "report.md").contains("**Validation passed**"));

    // `validate: false` in the fleet: no gate, whatever the cluster says.
    append(&world.sb, "kopsci.yaml", "validate: false\n");
    let from = world.calls().len();
    let run = run_env(
        &world,
        &[("KOPS_STANDIN_VALIDATE", "fail")],
        &["roll", CLUSTER, "--yes"],
    )
    .success();
    run.assert_stderr_has("validation skipped: `validate: false` in the fleet");
    let calls = calls_since(&world, from);
    assert!(
        !calls.iter().any(|c| c.starts_with("validate")),
        "{calls:?}"
    );
    assert!(stage_report(&world, "roll")["validation"].is_null());
}

// ---------------------------------------------------------------------
// 6. prune_instance_groups from the fleet
// ---------------------------------------------------------------------

/// Puts an instance group the manifest does not have into the live store.
fn add_stored_group(world: &World, name: &str) {
    let group = live(world, "instancegroup/nodes").replace("name: nodes", &format!("name: {name}"));
    world
        .server
        .put(BUCKET, &format!("{CLUSTER}/instancegroup/{name}"), group);
}

fn delete_group_call(name: &str) -> String {
    format!("delete instancegroup {name} --name {CLUSTER} --state {STATE} --yes")
}

#[test]
fn the_fleets_prune_setting_reaches_apply_and_update() {
    let world = World::new();
    add_stored_group(&world, "nodes-old");
    world.apply_fixture(CLUSTER);
    let key = format!("{CLUSTER}/instancegroup/nodes-old");

    // Default (no pruning): the group is kept, with a warning.
    world.run(&["dryrun", CLUSTER]).success();
    let run = world.run(&["apply", CLUSTER]).success();
    run.assert_stderr_has(
        "instance group(s) nodes-old are in the state store but not in the manifest and were kept",
    );
    assert!(world.bucket().contains_key(&key));
    assert!(!world.argvs().iter().any(|c| c.starts_with("delete ")));
    let report = stage_report(&world, "apply");
    assert_eq!(report["removed_instance_groups"], json!(["nodes-old"]));
    assert_eq!(report["pruned_instance_groups"], json!([]));
    assert!(stage_file(&world, "apply", "report.md").contains("**Removed instance groups**"));

    // `prune_instance_groups: true` for the environment: apply deletes it.
    edit(
        &world,
        "kopsci.yaml",
        "  prod:\n    values: [values/env/prod.yaml]\n",
        "  prod:\n    values: [values/env/prod.yaml]\n    prune_instance_groups: true\n",
    );
    world.run(&["dryrun", CLUSTER]).success();
    let from = world.calls().len();
    world.run(&["apply", CLUSTER]).success();
    let calls = calls_since(&world, from);
    let delete = calls
        .iter()
        .position(|c| *c == delete_group_call("nodes-old"));
    let reconcile = calls
        .iter()
        .position(|c| c.starts_with("reconcile cluster"));
    assert!(
        matches!((delete, reconcile), (Some(d), Some(r)) if d < r),
        "{calls:?}"
    );
    assert!(
        !world.bucket().contains_key(&key),
        "nodes-old was not pruned"
    );
    let report = stage_report(&world, "apply");
    assert_eq!(report["pruned_instance_groups"], json!(["nodes-old"]));
    assert!(stage_file(&world, "apply", "report.md").contains("**Pruned instance groups**"));

    // And `update` (the update-roll strategy) follows the same setting.
    add_stored_group(&world, "nodes-older");
    world.run(&["dryrun", CLUSTER]).success();
    let from = world.calls().len();
    let run = world.run(&["update", CLUSTER]).success();
    run.assert_stdout_has("pruned: nodes-older");
    assert!(calls_since(&world, from).contains(&delete_group_call("nodes-older")));
    assert!(!world.has_group("nodes-older"));
    // The manifest's own groups are never touched.
    assert!(world.has_group("nodes"));
}

// ---------------------------------------------------------------------
// 7. Retiring an `absent: true` cluster
// ---------------------------------------------------------------------

#[test]
fn an_absent_cluster_is_previewed_then_deleted_and_only_when_absent() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    edit(
        &world,
        "kopsci.yaml",
        "    values: [values/clusters/minimal-aws.yaml]\n",
        "    values: [values/clusters/minimal-aws.yaml]\n    absent: true\n",
    );
    let before = world.bucket();
    let cloud_before = std::fs::read(world.sb.join(&format!("cloud/{CLUSTER}.json"))).unwrap();

    // The MR dry run previews the deletion against a copy.
    let from = world.calls().len();
    world.run(&["dryrun", CLUSTER]).success();
    assert!(world.bucket() == before, "the dry run wrote the live store");
    assert_eq!(
        calls_since(&world, from),
        [
            "version".to_string(),
            format!("delete cluster --name {CLUSTER} --state file://<snapshot>"),
        ]
    );
    let report = world.report(CLUSTER);
    assert_eq!(report["action"], "delete");
    assert_eq!(report["changes_pending"], true);
    let deletion = report["deletion"].as_str().unwrap();
    assert!(
        deletion.contains("Must specify --yes to delete cluster"),
        "{deletion}"
    );
    assert!(deletion.contains("autoscaling-config"), "{deletion}");
    assert!(
        !world
            .sb
            .join(&format!(".kopsci/reports/{CLUSTER}/plan.json"))
            .exists(),
        "a retired cluster has nothing to apply"
    );
    assert!(
        !world
            .sb
            .join(&format!(".kopsci/reports/{CLUSTER}/manifest.yaml"))
            .exists()
    );
    let md = world
        .sb
        .read(&format!(".kopsci/reports/{CLUSTER}/report.md"));
    assert!(
        md.contains("The whole cluster is deleted (`absent: true` in the fleet)"),
        "{md}"
    );
    assert!(
        world
            .sb
            .read(&format!(".kopsci/reports/{CLUSTER}/kops-delete.txt"))
            .starts_with(&format!(
                "$ kops delete cluster --name {CLUSTER} --state file://<snapshot>\n"
            ))
    );
    // Nothing applies it, not even past the plan check.
    for stage in ["apply", "update", "roll"] {
        let from = world.calls().len();
        world
            .run(&[stage, CLUSTER, "--allow-stale"][..if stage == "roll" { 2 } else { 3 }])
            .fails_with(
                64,
                &["cluster `minimal-aws.example.com` is `absent: true` in the fleet"],
            );
        assert!(calls_since(&world, from).is_empty(), "{stage}: kops ran");
    }
    assert!(world.bucket() == before, "the live store changed");

    // `kopsci delete` previews on the live store (kops is read-only
    // without --yes).
    let from = world.calls().len();
    let run = world.run(&["delete", CLUSTER]).success();
    assert!(world.bucket() == before, "{}", run.stderr());
    assert_eq!(
        calls_since(&world, from)[1..],
        [format!("delete cluster --name {CLUSTER} --state {STATE}")]
    );
    let report = stage_report(&world, "delete");
    assert_eq!(report["changes_pending"], true);
    assert!(
        report["deletion"]
            .as_str()
            .unwrap()
            .contains("Must specify --yes")
    );
    assert_eq!(
        std::fs::read(world.sb.join(&format!("cloud/{CLUSTER}.json"))).unwrap(),
        cloud_before
    );

    // --yes deletes: state and cloud resources gone.
    world.run(&["delete", CLUSTER, "--yes"]).success();
    let left: Vec<String> = world
        .bucket()
        .into_keys()
        .filter(|k| k.starts_with(&format!("{CLUSTER}/")))
        .collect();
    assert!(left.is_empty(), "left in the bucket: {left:?}");
    let report = stage_report(&world, "delete");
    assert!(report["failed"].is_null(), "{report}");
    assert_eq!(report["changes_pending"], false);
    assert!(
        report["deletion"]
            .as_str()
            .unwrap()
            .contains(&format!("Deleted cluster: \"{CLUSTER}\""))
    );

    // A cluster the fleet keeps is never deleted.
    let world = World::new();
    let before = world.bucket();
    let from = world.calls().len();
    world.run(&["delete", CLUSTER, "--yes"]).fails_with(
        64,
        &[
            "refusing to delete cluster `minimal-aws.example.com`",
            "does not mark it `absent: true`",
        ],
    );
    assert!(world.bucket() == before, "the live store changed");
    assert!(calls_since(&world, from).is_empty(), "kops ran");
}

// ---------------------------------------------------------------------
// 8. Tampered plans (issue 10, item 2)
// ---------------------------------------------------------------------

fn plan_path(world: &World) -> std::path::PathBuf {
    world
        .sb
        .join(&format!(".kopsci/reports/{CLUSTER}/plan.json"))
}

/// Edits plan.json as an attacker who can rewrite artifacts would, then
/// recomputes `snapshot_sha256` over the edited record (the record file's
/// JSON form: pretty, two-space indent, trailing newline) so that the
/// checksum holds.
fn tamper(world: &World, edit: impl FnOnce(&mut Value)) {
    let path = plan_path(world);
    let mut plan: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let original_sha = plan["snapshot_sha256"].as_str().unwrap().to_string();
    // The checksum recomputes as the attacker's tool computes it: check
    // that on the untouched record first.
    assert_eq!(record_sha(&plan["snapshot"]), original_sha, "recomputation");
    edit(&mut plan);
    plan["snapshot_sha256"] = Value::String(record_sha(&plan["snapshot"]));
    std::fs::write(&path, serde_json::to_string_pretty(&plan).unwrap()).unwrap();
}

fn record_sha(record: &Value) -> String {
    use sha2::Digest;
    let mut text = serde_json::to_string_pretty(record).unwrap();
    text.push('\n');
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Runs `args` expecting a refusal at the plan check that names every
/// fragment, wrote nothing and ran no kops beyond `kops version`.
fn refused(world: &World, args: &[&str], fragments: &[&str]) {
    let before = world.bucket();
    let from = world.calls().len();
    world.run(args).fails_with(1, fragments);
    assert!(world.bucket() == before, "{args:?} wrote the store");
    assert_eq!(calls_since(world, from), ["version"], "{args:?}");
    let stage = args[0];
    assert_eq!(stage_report(world, stage)["failed_step"], "plan check");
}

#[test]
fn a_plan_naming_a_manifest_group_as_removed_is_refused_as_edited() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    append(&world.sb, "values/clusters/minimal-aws.yaml", BIGGER_NODES);
    world.run(&["dryrun", CLUSTER]).success();
    tamper(&world, |plan| {
        plan["removed_instance_groups"] = json!(["nodes"]);
    });
    for args in [
        &["update", CLUSTER, "--prune-instance-groups"][..],
        &["apply", CLUSTER, "--prune-instance-groups"][..],
    ] {
        refused(
            &world,
            args,
            &[
                "refusing a stale plan",
                "plan.json says Replace with removed instance groups [nodes]",
                "give Replace with []: the plan was edited",
            ],
        );
    }
    assert!(!world.argvs().iter().any(|c| c.starts_with("delete ")));
    // Untampered, the same plan applies.
    world.run(&["dryrun", CLUSTER]).success();
    world
        .run(&["update", CLUSTER, "--prune-instance-groups"])
        .success();
    assert!(world.has_group("nodes"));
}

#[test]
fn a_plan_pointing_at_another_store_is_refused() {
    let world = World::new();
    append(&world.sb, "values/clusters/minimal-aws.yaml", BIGGER_NODES);
    world.run(&["dryrun", CLUSTER]).success();
    // The attacker's copy of the store, as the plan's record describes it.
    world.server.create_bucket("attacker-copy");
    for (key, body) in world.bucket() {
        world.server.put("attacker-copy", &key, body);
    }
    let original = std::fs::read_to_string(plan_path(&world)).unwrap();

    // The record's source only.
    tamper(&world, |plan| {
        plan["snapshot"]["source"] = json!("s3://attacker-copy");
    });
    refused(
        &world,
        &["update", CLUSTER],
        &[
            "the plan was made against state store `s3://attacker-copy`, not `s3://kops-state`, the store this job writes",
        ],
    );
    // The plan's state and the record's source together.
    std::fs::write(plan_path(&world), &original).unwrap();
    tamper(&world, |plan| {
        plan["state"] = json!("s3://attacker-copy");
        plan["snapshot"]["source"] = json!("s3://attacker-copy");
    });
    refused(
        &world,
        &["apply", CLUSTER],
        &["the plan was made against state store `s3://attacker-copy`"],
    );
    // Even when the job itself is pointed at the copy, the live store the
    // fleet names for the cluster is not what the plan reviewed.
    std::fs::write(plan_path(&world), &original).unwrap();
    tamper(&world, |plan| {
        plan["state"] = json!("s3://attacker-copy");
    });
    refused(
        &world,
        &["update", CLUSTER],
        &["the plan was made against state store `s3://attacker-copy`"],
    );
}

#[test]
fn a_plan_recorded_with_filters_is_refused() {
    let world = World::new();
    append(&world.sb, "values/clusters/minimal-aws.yaml", BIGGER_NODES);
    world.run(&["dryrun", CLUSTER]).success();
    tamper(&world, |plan| {
        // A record that leaves out what the attacker changes.
        let record = plan["snapshot"].as_object_mut().unwrap();
        record["filter"]["exclude"] = json!(["instancegroup/**"]);
        let objects = record["objects"].as_array_mut().unwrap();
        objects.retain(|o| !o["key"].as_str().unwrap().starts_with("instancegroup/"));
    });
    refused(
        &world,
        &["apply", CLUSTER],
        &["the plan's snapshot was taken with non-default filters"],
    );
}

#[test]
fn instance_group_names_never_reach_kops_as_flags() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    for name in ["--yes", "-v=10"] {
        add_stored_group(&world, name);
    }
    world.run(&["dryrun", CLUSTER]).success();
    let report = world.report(CLUSTER);
    assert_eq!(report["removed_instance_groups"], json!(["--yes", "-v=10"]));
    let before = world.bucket();
    let from = world.calls().len();
    let run = world.run(&["update", CLUSTER, "--prune-instance-groups"]);
    let calls = calls_since(&world, from);
    for call in world.calls() {
        let argv: Vec<&str> = call["argv"]
            .as_array()
            .map(|a| a.iter().map(|w| w.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert!(!argv.contains(&"-v=10"), "{argv:?}");
        if argv.starts_with(&["delete", "instancegroup"]) {
            panic!("kops was asked to delete {argv:?}");
        }
    }
    let stderr = run.stderr();
    assert_eq!(run.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`--yes`"), "{stderr}");
    // Refused before anything was written.
    assert!(world.bucket() == before, "the store was written: {calls:?}");
    assert_eq!(calls, ["version"], "{stderr}");
    assert!(
        stderr.contains("invalid kOps object name `--yes`"),
        "{stderr}"
    );
    assert_eq!(stage_report(&world, "update")["failed_step"], "plan check");

    // From the manifest: a group named like a flag reaches kops only
    // inside the manifest file, never on its command line.
    for name in ["--yes", "-v=10"] {
        world
            .server
            .delete(BUCKET, &format!("{CLUSTER}/instancegroup/{name}"));
    }
    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        "instanceGroups:\n  -v=10:\n    role: Node\n",
    );
    let before = world.bucket();
    let run = world
        .run(&["dryrun", CLUSTER])
        .fails_with(1, &["1 of 1 cluster(s) failed"]);
    // kOps' own validation of the manifest, against the snapshot.
    run.assert_stdout_has("metadata.name: Invalid value: \"-v=10\"");
    assert!(!plan_path(&world).exists());
    world
        .run(&["update", CLUSTER])
        .fails_with(1, &["refusing a stale plan", "no plan.json"]);
    for call in world.argvs() {
        assert!(!call.split(' ').any(|w| w == "-v=10"), "kops got {call}");
    }
    assert!(world.bucket() == before, "the store was written");
}

// ---------------------------------------------------------------------
// 9. kubeconfig
// ---------------------------------------------------------------------

#[test]
fn kubeconfig_is_private_whole_and_exported_as_the_resolved_identity() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    let sts = mock_sts();
    append(
        &world.sb,
        "kopsci.yaml",
        "aws:\n  role_arn: arn:aws:iam::123456789012:role/kops\n  region: eu-west-1\n",
    );
    let out = world.sb.join("kube/config");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    // kops merges into an existing file; kopsci replaces it whole.
    std::fs::write(
        &out,
        "apiVersion: v1\nkind: Config\nusers:\n- name: stale-user\n",
    )
    .unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o644)).unwrap();
    let kubeconfig = |extra: &[(&str, &str)], admin: &[&str]| {
        let mut k = world
            .kopsci()
            .env("AWS_ACCESS_KEY_ID", "AKIACALLERKEY")
            .env("AWS_SECRET_ACCESS_KEY", "caller-secret-value")
            .env("AWS_ENDPOINT_URL_STS", sts.endpoint());
        for (key, value) in extra {
            k = k.env(key, value);
        }
        k.args(["kubeconfig", CLUSTER, "--state", STATE, "--out"])
            .arg(&out)
            .args(admin)
            .run()
    };

    // kops failing leaves the old file as it was, and no debris.
    kubeconfig(&[("KOPS_STANDIN_FAIL", "export")], &["--admin", "30m"])
        .fails_with(1, &["`kops export kubeconfig` failed"]);
    assert!(world.sb.read("kube/config").contains("stale-user"));
    assert_eq!(support_entries(&world, "kube"), ["config"]);

    let from = world.calls().len();
    let run = kubeconfig(&[], &["--admin", "30m"]).success();
    let shown = format!("{}{}", run.stdout(), run.stderr());
    for secret in [
        "assumed-secret-value",
        "assumed-session-token",
        "caller-secret-value",
    ] {
        assert!(!shown.contains(secret), "{secret} printed:\n{shown}");
    }
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let text = world.sb.read("kube/config");
    assert!(
        !text.contains("stale-user"),
        "merged into the old file:\n{text}"
    );
    let config = crate::harness::yaml_documents(&text).remove(0);
    assert_eq!(config["current-context"], CLUSTER);
    assert_eq!(config["clusters"][0]["name"], CLUSTER);
    assert!(
        config["users"][0]["user"]["client-certificate-data"].is_string(),
        "{text}"
    );
    assert_eq!(support_entries(&world, "kube"), ["config"], "debris");

    let calls = world.calls();
    let call = &calls[from + 1];
    let argv: Vec<&str> = call["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(
        argv[..6],
        ["export", "kubeconfig", "--name", CLUSTER, "--state", STATE]
    );
    assert_eq!(argv[6], "--kubeconfig");
    // kops wrote a private file beside the target, moved into place whole.
    let written = std::path::Path::new(argv[7]);
    assert_eq!(written.file_name().unwrap(), "config");
    assert_eq!(
        written.parent().unwrap().parent().unwrap(),
        out.parent()
            .unwrap()
            .canonicalize()
            .unwrap_or(out.parent().unwrap().to_path_buf())
    );
    assert!(
        written
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with(".kopsci-kubeconfig-"),
        "{argv:?}"
    );
    assert_eq!(argv[8..], ["--admin=30m"]);
    assert_assumed_identity(call, &sts);

    // The default lifetime is an hour; an absent cluster has none.
    let from = world.calls().len();
    kubeconfig(&[], &[]).success();
    let last = world.calls()[from + 1]["argv"].clone();
    assert_eq!(last.as_array().unwrap().last().unwrap(), "--admin=1h");

    edit(
        &world,
        "kopsci.yaml",
        "    values: [values/clusters/minimal-aws.yaml]\n",
        "    values: [values/clusters/minimal-aws.yaml]\n    absent: true\n",
    );
    let before = world.sb.read("kube/config");
    kubeconfig(&[], &[]).fails_with(64, &["is `absent: true` in the fleet"]);
    assert_eq!(world.sb.read("kube/config"), before);
}

#[test]
fn a_kubeconfig_written_into_the_report_dir_is_refused() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    std::fs::create_dir_all(world.sb.join("custom/reports")).unwrap();
    std::os::unix::fs::symlink(world.sb.join("custom/reports"), world.sb.join("kube")).unwrap();
    let from = world.calls().len();
    for (out, report_dir) in [
        // The default report directory, which cluster jobs keep as artifacts.
        (format!(".kopsci/reports/{CLUSTER}/kubeconfig"), None),
        (".kopsci/reports/kubeconfig".to_string(), None),
        // Another one, and a symlinked directory leading into it.
        (
            "custom/reports/kubeconfig".to_string(),
            Some("custom/reports"),
        ),
        ("kube/config".to_string(), Some("custom/reports")),
    ] {
        let mut k = world
            .kopsci()
            .args(["kubeconfig", CLUSTER, "--state", STATE, "--out", &out]);
        if let Some(dir) = report_dir {
            k = k.args(["--report-dir", dir]);
        }
        k.run().fails_with(
            64,
            &[
                "refusing to write the admin kubeconfig",
                "inside the report directory",
            ],
        );
        assert!(!world.sb.join(&out).exists(), "{out} written");
    }
    // kops was never asked for a credential.
    assert!(
        !calls_since(&world, from)
            .iter()
            .any(|c| c.starts_with("export ")),
        "{:?}",
        calls_since(&world, from)
    );
    // Beside the reports is fine.
    world
        .kopsci()
        .args([
            "kubeconfig",
            CLUSTER,
            "--state",
            STATE,
            "--out",
            ".kube/config",
        ])
        .run()
        .success();
    assert!(world.sb.join(".kube/config").is_file());
}

fn support_entries(world: &World, rel: &str) -> Vec<String> {
    crate::support::entries(&world.sb.join(rel))
}

// ---------------------------------------------------------------------
// 10. Reports never mislead
// ---------------------------------------------------------------------

/// Every plan and report a stage leaves for the cluster.
const STAGE_FILES: &[(&str, &str)] = &[
    ("dryrun", "plan.json"),
    ("dryrun", "report.json"),
    ("dryrun", "report.md"),
    ("apply", "apply/report.json"),
    ("apply", "apply/report.md"),
    ("update", "update/report.json"),
    ("roll", "roll/report.json"),
];

fn report_path(world: &World, rel: &str) -> std::path::PathBuf {
    world.sb.join(&format!(".kopsci/reports/{CLUSTER}/{rel}"))
}

#[test]
fn a_stage_stopped_before_the_cluster_leaves_no_old_plan_or_report() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    append(&world.sb, "values/clusters/minimal-aws.yaml", BIGGER_NODES);
    // Real reports of every stage.
    world.run(&["dryrun", CLUSTER]).success();
    world.run(&["update", CLUSTER]).success();
    world.run(&["roll", CLUSTER]).success();
    world.run(&["dryrun", CLUSTER]).success();
    world.run(&["apply", CLUSTER]).success();
    for (_, rel) in STAGE_FILES {
        assert!(report_path(&world, rel).is_file(), "no {rel}");
    }

    for (stage, rel) in STAGE_FILES {
        // A kops outside the fleet's `kops.version`.
        if !report_path(&world, rel).exists() {
            std::fs::write(report_path(&world, rel), "{\"planted\": true}\n").unwrap();
        }
        run_env(
            &world,
            &[("KOPS_STANDIN_VERSION", "1.33.2")],
            &[stage, CLUSTER],
        )
        .fails_with(1, &["does not satisfy the required version"]);
        assert!(!report_path(&world, rel).exists(), "{stage} left {rel}");

        // No kops at all.
        std::fs::write(report_path(&world, rel), "{\"planted\": true}\n").unwrap();
        run_env(
            &world,
            &[("KOPSCI_KOPS", "/nonexistent/kops")],
            &[stage, CLUSTER],
        )
        .fails_with(
            1,
            &["`/nonexistent/kops` from KOPSCI_KOPS is not an executable file"],
        );
        assert!(!report_path(&world, rel).exists(), "{stage} left {rel}");
    }

    // A flag kopsci controls, refused before kops runs, clears them too.
    for (stage, rel) in [
        ("update", "update/report.json"),
        ("roll", "roll/report.json"),
    ] {
        std::fs::write(report_path(&world, rel), "{\"planted\": true}\n").unwrap();
        world
            .run(&[stage, CLUSTER, "--", "--state=s3://elsewhere"])
            .fails_with(64, &["--state"]);
        assert!(!report_path(&world, rel).exists(), "{stage} left {rel}");
    }
}

#[test]
fn a_missing_file_store_is_named_as_the_state_store() {
    let world = World::new();
    let missing = world.sb.join("no-such-store");
    let state = format!("file://{}", missing.display());
    let expected = format!(
        "the state store {state} does not exist: check --state (KOPS_STATE_STORE) or the fleet's `state:`"
    );
    let run = world
        .kopsci()
        .args(["dryrun", CLUSTER, "--state", &state])
        .run()
        .fails_with(1, &["1 of 1 cluster(s) failed"]);
    run.assert_stdout_has(&format!("{CLUSTER}: FAILED: {expected}"));
    assert_eq!(world.report(CLUSTER)["failed_step"], "snapshot");
    for stage in ["update", "apply"] {
        world
            .kopsci()
            .args([stage, CLUSTER, "--state", &state])
            .run()
            .fails_with(1, &[&expected]);
        assert_eq!(stage_report(&world, stage)["failed_step"], "snapshot");
    }
    world
        .kopsci()
        .args(["snapshot", "--name", CLUSTER, "--state", &state, "--out"])
        .arg(world.sb.join("snap"))
        .run()
        .fails_with(1, &[&expected]);
    assert!(!missing.exists());
}

#[test]
fn a_retried_apply_that_pruned_a_group_resumes() {
    let world = World::new();
    add_stored_group(&world, "nodes-old");
    world.apply_fixture(CLUSTER);
    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        NEW_MACHINE_TYPE,
    );
    append(&world.sb, "kopsci.yaml", "prune_instance_groups: true\n");
    world.run(&["dryrun", CLUSTER]).success();
    let roll_fail = [("KOPS_STANDIN_ROLL_FAIL", "nodes:1")];
    run_env(&world, &roll_fail, &["apply", CLUSTER]).fails_with(1, &["rolling-update for nodes"]);
    assert!(!world.has_group("nodes-old"));
    assert_eq!(
        stage_report(&world, "apply")["pruned_instance_groups"],
        json!(["nodes-old"])
    );

    // The retry finds the group gone — pruned by the first attempt, as the
    // reviewed manifest says — and resumes.
    let run = run_env(&world, &roll_fail, &["apply", CLUSTER]).success();
    run.assert_stderr_has("resuming an earlier apply");
    run.assert_stderr_has("removed instancegroup/nodes-old");
    let report = stage_report(&world, "apply");
    assert_eq!(report["validation"]["passed"], true);

    // Without pruning, a group that vanished from the store is not
    // something this apply did: refused.
    let world = World::new();
    add_stored_group(&world, "nodes-old");
    world.apply_fixture(CLUSTER);
    world.run(&["dryrun", CLUSTER]).success();
    world
        .server
        .delete(BUCKET, &format!("{CLUSTER}/instancegroup/nodes-old"));
    world.run(&["apply", CLUSTER]).fails_with(
        1,
        &["refusing a stale plan", "removed instancegroup/nodes-old"],
    );
}

// ---------------------------------------------------------------------
// 12. The fleet's timeouts, API server and session length reach kops
// ---------------------------------------------------------------------

/// `drain_timeout` and `validation_timeout` become the flags kOps documents
/// for them, only on the commands that document them; `kops.api_server`
/// becomes `--api-server` on exactly the commands whose docs list it; and
/// an assumed-role session shorter than the job's timeout is warned about.
#[test]
fn the_fleets_timeouts_and_api_server_reach_the_documented_kops_flags() {
    const API: &str = "https://api.internal.example.com";
    let world = World::new();
    world.apply_fixture(CLUSTER);
    let sts = mock_sts();
    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        NEW_MACHINE_TYPE,
    );
    append(
        &world.sb,
        "kopsci.yaml",
        "drain_timeout: 5m\nvalidation_timeout: 90s\naws:\n  role_arn: arn:aws:iam::123456789012:role/kops\n  duration_seconds: 3600\n  region: eu-west-1\n",
    );
    edit(
        &world,
        "kopsci.yaml",
        "  prod:\n    values: [values/env/prod.yaml]\n",
        &format!(
            "  prod:\n    values: [values/env/prod.yaml]\n    kops: {{api_server: \"{API}\"}}\n"
        ),
    );
    let as_role = |args: &[&str]| {
        world
            .kopsci()
            .env("AWS_ACCESS_KEY_ID", "AKIACALLERKEY")
            .env("AWS_SECRET_ACCESS_KEY", "caller-secret-value")
            .env("AWS_ENDPOINT_URL_STS", sts.endpoint())
            .arg(args[0])
            .args(["--state", STATE])
            .args(&args[1..])
            .run()
    };
    let api = format!("--api-server {API}");
    let cluster = format!("--name {CLUSTER} --state {STATE}");

    let from = world.calls().len();
    as_role(&["dryrun", CLUSTER]).success();
    let dry = calls_since(&world, from);
    assert!(
        dry.iter()
            .any(|c| c.starts_with("update cluster") && c.ends_with(&api)),
        "{dry:?}"
    );

    // apply: the preview, reconcile and validate get --api-server;
    // reconcile documents no drain or validation timeout, so it gets
    // neither, and the gate waits the fleet's validation_timeout.
    let from = world.calls().len();
    let run = as_role(&["apply", CLUSTER]).success();
    let warning = "the assumed-role session lasts 3600 s (`aws.duration_seconds`), less than the job's timeout of 3h (`apply.timeout`)";
    run.assert_stderr_has(warning);
    assert!(
        stage_report(&world, "apply")["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w.as_str().unwrap().starts_with(warning)),
        "{}",
        stage_report(&world, "apply")
    );
    assert_eq!(
        calls_since(&world, from),
        [
            "version".to_string(),
            format!("replace -f <manifest> --state {STATE} --force"),
            format!("update cluster {cluster} {api}"),
            format!("reconcile cluster {cluster} --yes {api}"),
            format!("validate cluster {cluster} --wait 1m30s -o json {api}"),
        ],
        "{}",
        run.stderr()
    );

    // roll --yes: the timeouts as rolling-update flags; the user's own
    // flag wins over the fleet's.
    let from = world.calls().len();
    as_role(&["roll", CLUSTER, "--yes", "--", "--drain-timeout=20m"]).success();
    assert_eq!(
        calls_since(&world, from)[1..],
        [
            format!(
                "rolling-update cluster {cluster} --yes {api} --drain-timeout=20m --validation-timeout=1m30s"
            ),
            format!("validate cluster {cluster} --wait 1m30s -o json {api}"),
        ]
    );
    // A preview neither waits nor warns about a session it does not need.
    let from = world.calls().len();
    let run = as_role(&["roll", CLUSTER]).success();
    assert_eq!(
        calls_since(&world, from)[1..],
        [format!("rolling-update cluster {cluster} {api}")]
    );
    assert!(!run.stderr().contains("assumed-role session"));

    // A job timeout within the session: no warning.
    append(&world.sb, "kopsci.yaml", "apply: {timeout: 30m}\n");
    let run = as_role(&["roll", CLUSTER, "--yes"]).success();
    assert!(
        !run.stderr().contains("assumed-role session"),
        "{}",
        run.stderr()
    );
}

// ---------------------------------------------------------------------
// 13. What kOps will delete is destructive in report.md, pruned or not
// ---------------------------------------------------------------------

/// Narrowing `sshAccess` makes kOps delete the old rule, but only with
/// `--prune`: the dry run's report.md puts it in the destructive section
/// all the same, and `apply` (whose reconcile prunes last) deletes it.
#[test]
fn resources_kops_deletes_only_on_prune_are_destructive_in_the_report() {
    let world = World::new();
    world.apply_fixture(CLUSTER);
    append(
        &world.sb,
        "values/clusters/minimal-aws.yaml",
        "sshAccess: [10.0.0.0/8]\n",
    );
    world.run(&["dryrun", CLUSTER]).success();
    let report = world.report(CLUSTER);
    let pruned = report["update_plan"]["delete_on_prune"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!pruned.is_empty(), "{}", report["update_plan"]);
    assert!(report["delete"].as_u64().unwrap() >= 1, "{report}");
    let md = world
        .sb
        .read(&format!(".kopsci/reports/{CLUSTER}/report.md"));
    let (_, destructive) = md
        .split_once("### :warning: Destructive changes\n")
        .unwrap_or_else(|| panic!("no destructive section:\n{md}"));
    assert!(destructive.contains("kOps resources to delete:"), "{md}");
    for item in &pruned {
        let name = format!(
            "{}/{}",
            item["kind"].as_str().unwrap(),
            item["name"].as_str().unwrap()
        );
        assert!(
            destructive.contains(&format!("`{name}`")),
            "{name} not in:\n{md}"
        );
    }
    // Before the folded details: a reviewer sees it without opening them.
    let section = md.find("### :warning: Destructive changes").unwrap();
    assert!(
        md.find("<details>").is_none_or(|details| section < details),
        "{md}"
    );

    let from = world.calls().len();
    world.run(&["apply", CLUSTER]).success();
    assert!(
        calls_since(&world, from)
            .iter()
            .any(|c| c.starts_with("reconcile cluster")),
    );
    let apply_md = stage_file(&world, "apply", "report.md");
    assert!(
        apply_md.contains("### :warning: Destructive changes"),
        "{apply_md}"
    );
    world
        .run(&["dryrun", CLUSTER, "--detailed-exitcode"])
        .success();
}
