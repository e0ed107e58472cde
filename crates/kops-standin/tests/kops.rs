//! The stand-in as kopsci's tests will use it: the documented CLI surface
//! and its rejections, the state-store layout on a copy of the fixtures,
//! the `update cluster` and `rolling-update cluster` output formats, the
//! simulated cloud, and the test controls.

mod support;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use support::{Bench, clean_command, edited_manifest, manifest, tree};

const MINIMAL: &str = "minimal-aws.example.com";

fn minimal_manifest() -> String {
    manifest(MINIMAL).to_string_lossy().into_owned()
}

/// A bench whose fixture cluster was applied once, so the cloud matches it.
fn applied_minimal() -> Bench {
    let bench = Bench::with_fixture(MINIMAL);
    bench
        .run(&["update", "cluster", "--name", MINIMAL, "--yes"])
        .ok();
    bench
}

// ---- CLI surface ----

#[test]
fn version_in_both_forms_and_from_the_environment() {
    let mut bench = Bench::new();
    assert_eq!(
        bench.run(&["version"]).ok().stdout,
        "Client version: 1.34.1 (git-v1.34.1)\n"
    );
    assert_eq!(bench.run(&["version", "--short"]).ok().stdout, "1.34.1\n");
    bench.set("KOPS_STANDIN_VERSION", "1.33.2");
    assert_eq!(bench.run(&["version", "--short"]).ok().stdout, "1.33.2\n");
}

#[test]
fn undocumented_flags_are_rejected_like_cobra() {
    let bench = Bench::with_fixture(MINIMAL);
    let before = bench.store_tree();
    for (args, flag) in [
        (
            vec!["update", "cluster", "--name", MINIMAL, "--foo"],
            "--foo",
        ),
        (
            vec!["update", "cluster", "--name", MINIMAL, "--dry-run"],
            "--dry-run",
        ),
        (
            vec!["rolling-update", "cluster", "--name", MINIMAL, "--bar=1"],
            "--bar",
        ),
        (vec!["replace", "-f", "x.yaml", "--yes"], "--yes"),
        (vec!["create", "-f", "x.yaml", "--force"], "--force"),
        (vec!["--foo", "version"], "--foo"),
        (vec!["get", "clusters", "--full", "--foo"], "--foo"),
        (vec!["delete", "instancegroup", "nodes", "--foo"], "--foo"),
    ] {
        let run = bench.run(&args).fails();
        assert_eq!(
            run.stderr,
            format!("Error: unknown flag: {flag}\n"),
            "{args:?}"
        );
        assert_eq!(run.stdout, "", "{args:?}");
    }
    assert_eq!(
        bench.error(&["rolling-update", "cluster", "-x"]),
        "Error: unknown shorthand flag: 'x' in -x\n"
    );
    assert_eq!(
        bench.error(&["create", "cluster", "--name", MINIMAL]),
        "Error: unknown command \"cluster\" for \"kops create\"\n"
    );
    assert_eq!(
        bench.error(&["toolbox", "template"]),
        "Error: unknown command \"toolbox\" for \"kops\"\n"
    );
    assert_eq!(
        bench.store_tree(),
        before,
        "a rejected command touched the store"
    );
}

#[test]
fn bad_values_are_rejected_like_pflag() {
    let bench = Bench::with_fixture(MINIMAL);
    assert_eq!(
        bench.error(&[
            "rolling-update",
            "cluster",
            "--name",
            MINIMAL,
            "--validation-timeout",
            "later",
        ]),
        "Error: invalid argument \"later\" for \"--validation-timeout\" flag: time: invalid duration \"later\"\n"
    );
    let run = bench
        .run(&["update", "cluster", "--name", MINIMAL, "--yes=sure"])
        .fails();
    assert!(
        run.stderr.contains("strconv.ParseBool: parsing \"sure\""),
        "{run:?}"
    );
    let run = bench.run(&["update", "cluster", "--name"]).fails();
    assert_eq!(run.stderr, "Error: flag needs an argument: --name\n");
}

#[test]
fn every_documented_flag_parses() {
    let bench = applied_minimal();
    bench
        .run(&[
            "update",
            "cluster",
            MINIMAL,
            "--admin=1h",
            "--allow-kops-downgrade",
            "--api-server",
            "https://api",
            "--create-kube-config=false",
            "--ignore-kubelet-version-skew",
            "--instance-group",
            "nodes",
            "--instance-group-roles",
            "node",
            "--internal",
            "--lifecycle-overrides",
            "SecurityGroup=Sync",
            "--out",
            "out",
            "--phase",
            "cluster",
            "--prune",
            "--ssh-public-key",
            "k.pub",
            "--target",
            "direct",
            "--use-kubeconfig",
            "--user",
            "u",
            "--config",
            "c.yaml",
            "-v",
            "2",
            "--alsologtostderrthreshold",
            "INFO",
            "--legacy_stderr_threshold_behavior=false",
        ])
        .ok();
    bench
        .run(&[
            "rolling-update",
            "cluster",
            MINIMAL,
            "--admin",
            "2h",
            "--api-server",
            "https://api",
            "--bastion-interval",
            "1s",
            "--cloudonly",
            "--control-plane-interval",
            "1s",
            "--drain-timeout",
            "1m",
            "--fail-on-drain-error=false",
            "--fail-on-validate-error=false",
            "--force",
            "--instance-group",
            "nodes",
            "--instance-group-roles",
            "node",
            "-i",
            "--node-interval",
            "1s",
            "--post-drain-delay",
            "1s",
            "--use-kubeconfig",
            "--validate-count",
            "1",
            "--validation-timeout",
            "10m",
        ])
        .ok();
    bench.run(&["get", "all", MINIMAL, "-o", "json"]).ok();
    bench
        .run(&["get", "clusters", MINIMAL, "--full", "-o", "yaml"])
        .ok();
    bench.run(&["version", "--server", "--name", MINIMAL]).ok();
    // kOps' own files were never asked for: no kubeconfig, no `out/`.
    assert!(tree(bench.cwd.path()).is_empty());
    assert!(tree(bench.home.path()).is_empty());
}

#[test]
fn cluster_name_comes_from_one_place_only() {
    let mut bench = applied_minimal();
    let run = bench
        .run(&["update", "cluster", MINIMAL, "--name", MINIMAL])
        .fails();
    assert_eq!(
        run.stderr,
        "Error: cannot specify cluster via --name and positional argument\n"
    );
    assert!(
        run.stdout
            .contains("Found multiple arguments which look like a cluster name")
    );
    // The classic mistake: a boolean flag given a separate value.
    let run = bench
        .run(&["update", "cluster", "--name", MINIMAL, "--yes", "false"])
        .fails();
    assert!(run.stdout.contains("\"false\" (as argument)"));
    let run = bench.run(&["update", "cluster"]).fails();
    assert_eq!(run.stderr, "Error: --name is required\n");
    bench.set("KOPS_CLUSTER_NAME", MINIMAL);
    assert!(
        bench
            .run(&["update", "cluster"])
            .ok()
            .stdout
            .ends_with("No changes need to be applied\n")
    );
}

#[test]
fn a_missing_state_store_is_kops_error() {
    let bench = Bench::new();
    let out = bench
        .command(&["get", "clusters"])
        .env_remove("KOPS_STATE_STORE")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .starts_with("Error: State Store: Required value: Please set the --state flag or export KOPS_STATE_STORE.")
    );
}

// ---- create / replace / get ----

#[test]
fn create_lays_out_the_store_like_kops() {
    let bench = Bench::new();
    let run = bench.run(&["create", "-f", &minimal_manifest()]).ok();
    assert_eq!(
        run.stdout,
        format!(
            "Created cluster/{MINIMAL}\nCreated instancegroup/nodes\nCreated instancegroup/master-us-test-1a\n\n\
             To deploy these resources, run: kops update cluster --name {MINIMAL} --yes\n\n"
        )
    );
    let keys: Vec<String> = bench.store_tree().into_keys().collect();
    assert_eq!(
        keys,
        vec![
            format!("{MINIMAL}/config"),
            format!("{MINIMAL}/instancegroup/master-us-test-1a"),
            format!("{MINIMAL}/instancegroup/nodes"),
        ]
    );
    let config = bench.read(&format!("{MINIMAL}/config"));
    assert!(
        config.contains("creationTimestamp: \"2016-12-10T22:42:27Z\""),
        "{config}"
    );
    assert!(config.starts_with("apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\n"));

    assert_eq!(
        bench.error(&["create", "-f", &minimal_manifest()]),
        format!("Error: cluster \"{MINIMAL}\" already exists\n")
    );
}

#[test]
fn replace_needs_force_for_new_objects_and_never_deletes_groups() {
    let bench = Bench::new();
    let run = bench.run(&["replace", "-f", &minimal_manifest()]).fails();
    assert_eq!(
        run.stderr,
        format!("Error: cluster {MINIMAL} does not exist (try adding --force flag)\n")
    );
    assert!(bench.store_tree().is_empty());
    bench
        .run(&["replace", "--force", "-f", &minimal_manifest()])
        .ok();

    // A manifest without the `nodes` group, and a new group without a
    // creation timestamp.
    let edited = edited_manifest(bench.cwd.path(), MINIMAL, |text| {
        let docs: Vec<&str> = text.split("\n---\n").collect();
        let master = docs[2].replace("name: master-us-test-1a", "name: extra");
        let master = master.replace("  creationTimestamp: \"2016-12-10T22:42:28Z\"\n", "");
        format!("{}\n---\n{}\n---\n{}", docs[0], docs[2], master)
    });
    let edited = edited.to_string_lossy().into_owned();
    let run = bench.run(&["replace", "-f", &edited]).fails();
    assert_eq!(
        run.stderr,
        "Error: instanceGroup: extra does not exist (try adding --force flag)\n"
    );
    bench.run(&["replace", "-f", &edited, "--force"]).ok();
    let groups = bench
        .run(&["get", "instancegroups", "--name", MINIMAL])
        .ok()
        .stdout;
    assert_eq!(
        groups,
        "NAME\t\t\tROLE\t\tMACHINETYPE\tMIN\tMAX\tZONES\n\
         extra\t\t\tControlPlane\tm3.medium\t1\t1\tus-test-1a\n\
         master-us-test-1a\tControlPlane\tm3.medium\t1\t1\tus-test-1a\n\
         nodes\t\t\tNode\t\tt2.medium\t2\t2\tus-test-1a\n"
    );
    let extra = bench.read(&format!("{MINIMAL}/instancegroup/extra"));
    let stamp = extra
        .lines()
        .find_map(|l| l.trim().strip_prefix("creationTimestamp: "))
        .expect("stamped");
    assert_eq!(stamp.len(), 22, "{stamp}"); // "YYYY-MM-DDTHH:MM:SSZ" quoted
}

#[test]
fn objects_must_be_kops_objects_for_a_known_cluster() {
    let bench = Bench::new();
    let bad = bench.cwd.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n",
    )
    .unwrap();
    let run = bench.run(&["create", "-f", &bad.to_string_lossy()]).fails();
    assert!(
        run.stderr.contains("no kind \"ConfigMap\" is registered"),
        "{run:?}"
    );
    std::fs::write(
        &bad,
        "apiVersion: kops.k8s.io/v1alpha2\nkind: InstanceGroup\nmetadata:\n  name: nodes\n  labels:\n    kops.k8s.io/cluster: nowhere.example.com\nspec:\n  role: Node\n",
    )
    .unwrap();
    let run = bench.run(&["create", "-f", &bad.to_string_lossy()]).fails();
    assert_eq!(
        run.stderr,
        "Error: cluster \"nowhere.example.com\" not found\n"
    );
    std::fs::write(
        &bad,
        "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata:\n  name: ../../etc\n",
    )
    .unwrap();
    bench.run(&["create", "-f", &bad.to_string_lossy()]).fails();
    assert!(bench.store_tree().is_empty());
}

#[test]
fn get_yaml_round_trips_what_replace_stored() {
    let bench = Bench::with_fixture(MINIMAL);
    bench.run(&["replace", "-f", &minimal_manifest()]).ok();
    let cluster = bench
        .run(&["get", "cluster", MINIMAL, "-o", "yaml"])
        .ok()
        .stdout;
    let groups = bench
        .run(&["get", "instancegroups", "--name", MINIMAL, "-o", "yaml"])
        .ok()
        .stdout;
    let docs = |text: &str| {
        let mut docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(text).unwrap();
        docs.sort_by_key(|d| d["metadata"]["name"].as_str().unwrap().to_string());
        docs
    };
    assert_eq!(
        docs(&format!("{cluster}---\n{groups}")),
        docs(&std::fs::read_to_string(manifest(MINIMAL)).unwrap())
    );
    // Several objects are separated as kOps separates them.
    assert!(groups.contains("\n---\n\napiVersion: kops.k8s.io/v1alpha2\nkind: InstanceGroup\n"));
}

// ---- update cluster ----

#[test]
fn a_new_cluster_dry_run_lists_creates_and_changes_nothing() {
    let bench = Bench::new();
    bench.run(&["create", "-f", &minimal_manifest()]).ok();
    let before = bench.store_tree();
    let run = bench.run(&["update", "cluster", "--name", MINIMAL]).ok();
    let out = run.stdout;
    assert!(out.starts_with("Will create resources:\n"), "{out}");
    assert!(!out.contains("Will modify resources:"));
    for line in [
        "  AutoscalingGroup/nodes.minimal-aws.example.com\n",
        "  \tMinSize             \t2\n",
        "  LaunchTemplate/master-us-test-1a.masters.minimal-aws.example.com\n",
        "  \tInstanceType        \tm3.medium\n",
        "  Keypair/kubernetes-ca\n",
        "  ManagedFile/cluster-completed.spec\n",
        "  \tLocation            \tcluster-completed.spec\n",
        "  VPC/minimal-aws.example.com\n",
        "  \tCIDR                \t172.20.0.0/16\n",
    ] {
        assert!(out.contains(line), "missing {line:?} in\n{out}");
    }
    assert!(
        out.ends_with("\nMust specify --yes to apply changes\n"),
        "{out}"
    );
    assert_eq!(bench.store_tree(), before, "a dry run wrote to the store");
    assert!(
        tree(bench.cloud.path()).is_empty(),
        "a dry run wrote to the cloud"
    );
}

#[test]
fn apply_then_nothing_to_do() {
    let bench = Bench::with_fixture(MINIMAL);
    let run = bench
        .run(&["update", "cluster", "--name", MINIMAL, "--yes"])
        .ok();
    assert!(run.stdout.contains("Cluster is starting."), "{run:?}");
    // kOps' files in the store, the cloud outside it.
    let store = bench.store_tree();
    assert_eq!(store[&format!("{MINIMAL}/kops-version.txt")], b"1.34.1\n");
    assert!(store.contains_key(&format!("{MINIMAL}/igconfig/node/nodes/nodeupconfig.yaml")));
    assert!(!store.keys().any(|k| k.contains("standin")));
    assert!(bench.cloud.path().join(format!("{MINIMAL}.json")).is_file());

    let run = bench.run(&["update", "cluster", "--name", MINIMAL]).ok();
    assert_eq!(run.stdout, "No changes need to be applied\n");
    let run = bench
        .run(&["update", "cluster", "--name", MINIMAL, "--yes"])
        .ok();
    assert!(
        run.stdout
            .contains("Cluster changes have been applied to the cloud.")
    );
}

#[test]
fn a_changed_manifest_shows_kops_style_modifications_and_deletions() {
    let bench = applied_minimal();
    let edited = edited_manifest(bench.cwd.path(), MINIMAL, |t| {
        t.replace("machineType: t2.medium", "machineType: t3.large")
            .replace(
                "  sshAccess:\n    - 0.0.0.0/0",
                "  sshAccess:\n    - 10.0.0.0/8",
            )
            .replace("kubernetesVersion: v1.34.0", "kubernetesVersion: v1.34.1")
    });
    bench
        .run(&["replace", "--force", "-f", &edited.to_string_lossy()])
        .ok();
    let out = bench.run(&["update", "cluster", MINIMAL]).ok().stdout;

    assert!(out.starts_with("Will create resources:\n  SecurityGroupRule/from-10.0.0.0/8-ingress-tcp-22to22-masters.minimal-aws.example.com\n"), "{out}");
    assert!(out.contains(
        "Will modify resources:\n  LaunchTemplate/master-us-test-1a.masters.minimal-aws.example.com\n  \tUserData            \n"
    ), "{out}");
    assert!(out.contains(
        "  LaunchTemplate/nodes.minimal-aws.example.com\n  \tInstanceType        \t t2.medium -> t3.large\n  \tUserData            \n"
    ), "{out}");
    // Multi-line field diffs: context, `-`/`+` lines, `...` for skipped lines.
    assert!(out.contains(
        "  ManagedFile/nodeupconfig-nodes\n  \tContents            \n  \t                    \t...\n"
    ), "{out}");
    assert!(out.contains("  \t                    \t- KubernetesVersion: \"1.34.0\"\n  \t                    \t+ KubernetesVersion: \"1.34.1\"\n"), "{out}");
    assert!(out.contains(
        "Items will be deleted only when the --prune flag is specified:\n  SecurityGroupRule    sg-"
    ), "{out}");
    assert!(
        out.contains(": port=22 protocol=tcp ip=0.0.0.0/0 ipv6=\n"),
        "{out}"
    );
    assert!(!out.contains("Items will be deleted during update:"));
    assert!(out.ends_with("\nMust specify --yes to apply changes\n"));

    let pruned = bench
        .run(&["update", "cluster", MINIMAL, "--prune"])
        .ok()
        .stdout;
    assert!(pruned.contains("Items will be deleted during update:\n  SecurityGroupRule    sg-"));
    assert!(!pruned.contains("--prune flag is specified"));

    // Applied without --prune the old rules stay; with it they go.
    bench.run(&["update", "cluster", MINIMAL, "--yes"]).ok();
    let out = bench.run(&["update", "cluster", MINIMAL]).ok().stdout;
    assert!(
        out.starts_with("Items will be deleted only when the --prune flag is specified:\n"),
        "{out}"
    );
    bench
        .run(&["update", "cluster", MINIMAL, "--yes", "--prune"])
        .ok();
    assert_eq!(
        bench.run(&["update", "cluster", MINIMAL]).ok().stdout,
        "No changes need to be applied\n"
    );
}

#[test]
fn a_snapshot_of_the_store_sees_the_same_cloud() {
    let live = applied_minimal();
    let live_before = live.store_tree();
    // The review workflow: copy the store, replace and dry-run on the copy.
    let snapshot = tempfile::tempdir().unwrap();
    support::copy_dir(live.store.path(), snapshot.path());
    let edited = edited_manifest(live.cwd.path(), MINIMAL, |t| {
        t.replace("maxSize: 2", "maxSize: 5")
    });
    let state = format!("--state=file://{}", snapshot.path().display());
    live.run(&[
        "replace",
        &state,
        "--force",
        "-f",
        &edited.to_string_lossy(),
    ])
    .ok();
    let out = live
        .run(&["update", "cluster", &state, "--name", MINIMAL])
        .ok()
        .stdout;
    assert_eq!(
        out,
        "Will modify resources:\n  AutoscalingGroup/nodes.minimal-aws.example.com\n  \tMaxSize             \t 2 -> 5\n\n\
         Must specify --yes to apply changes\n"
    );
    assert_eq!(live.store_tree(), live_before, "the live store changed");
}

#[test]
fn filters_and_overrides_narrow_the_plan() {
    let bench = applied_minimal();
    let edited = edited_manifest(bench.cwd.path(), MINIMAL, |t| {
        t.replace("machineType: t2.medium", "machineType: t3.large")
            .replace("machineType: m3.medium", "machineType: m5.large")
            .replace(
                "  kubernetesApiAccess:\n  - 0.0.0.0/0",
                "  kubernetesApiAccess:\n  - 10.1.0.0/16",
            )
    });
    bench
        .run(&["replace", "-f", &edited.to_string_lossy()])
        .ok();

    let out = bench
        .run(&["update", "cluster", MINIMAL, "--instance-group", "nodes"])
        .ok()
        .stdout;
    assert!(out.contains("LaunchTemplate/nodes."));
    assert!(!out.contains("LaunchTemplate/master-us-test-1a."));
    let out = bench
        .run(&[
            "update",
            "cluster",
            MINIMAL,
            "--instance-group-roles",
            "control-plane",
        ])
        .ok()
        .stdout;
    assert!(!out.contains("LaunchTemplate/nodes."));
    assert!(out.contains("LaunchTemplate/master-us-test-1a."));
    let out = bench
        .run(&["update", "cluster", MINIMAL, "--phase", "network"])
        .ok()
        .stdout;
    assert_eq!(out, "No changes need to be applied\n");
    let out = bench
        .run(&[
            "update",
            "cluster",
            MINIMAL,
            "--lifecycle-overrides",
            "SecurityGroupRule=Ignore",
        ])
        .ok()
        .stdout;
    assert!(!out.contains("SecurityGroupRule"), "{out}");

    let run = bench
        .run(&[
            "update",
            "cluster",
            MINIMAL,
            "--lifecycle-overrides",
            "SecurityGroupRule",
        ])
        .fails();
    assert!(
        run.stderr
            .contains("incorrect syntax for lifecycle-overrides")
    );
    assert_eq!(
        bench.error(&["update", "cluster", MINIMAL, "--instance-group", "nope"]),
        "Error: InstanceGroup \"nope\" not found\n"
    );
    let run = bench
        .run(&["update", "cluster", MINIMAL, "--target", "terraform"])
        .fails();
    assert!(run.stderr.contains("only --target=direct"));
}

#[test]
fn an_older_kops_refuses_unless_allowed() {
    let mut bench = applied_minimal();
    bench.set("KOPS_STANDIN_VERSION", "1.33.0");
    let run = bench.run(&["update", "cluster", MINIMAL]).fails();
    assert_eq!(
        run.stderr,
        "Error: kops version older than last used to update the cluster\n"
    );
    assert!(
        run.stdout
            .contains("The cluster was last updated by kops version 1.34.1")
    );
    let out = bench
        .run(&["update", "cluster", MINIMAL, "--allow-kops-downgrade"])
        .ok()
        .stdout;
    // Another version means another nodeup: every launch template changes.
    assert!(out.contains("  ManagedFile/kops-version.txt\n  \tContents            \n  \t                    \t- 1.34.1\n  \t                    \t+ 1.33.0\n"), "{out}");
    assert!(out.contains(
        "+ NODEUP_URL_AMD64=https://artifacts.k8s.io/binaries/kops/1.33.0/linux/amd64/nodeup"
    ));
}

#[test]
fn applying_needs_a_cloud_directory() {
    let bench = Bench::with_fixture(MINIMAL);
    let before = bench.store_tree();
    let out = bench
        .command(&["update", "cluster", MINIMAL, "--yes"])
        .env_remove("KOPS_STANDIN_CLOUD_DIR")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("KOPS_STANDIN_CLOUD_DIR is not set"));
    assert_eq!(bench.store_tree(), before);
}

// ---- rolling-update cluster ----

/// What `kops rolling-update cluster MINIMAL EXTRA…` prints on success.
fn rolling_update(bench: &Bench, extra: &[&str]) -> String {
    let args = [&["rolling-update", "cluster", MINIMAL][..], extra].concat();
    bench.run(&args).ok().stdout
}

#[test]
fn rolling_update_table_and_roll() {
    let bench = applied_minimal();
    let out = rolling_update(&bench, &[]);
    assert_eq!(
        out,
        "NAME\t\t\tSTATUS\tNEEDUPDATE\tREADY\tMIN\tTARGET\tMAX\tNODES\n\
         master-us-test-1a\tReady\t0\t\t1\t1\t1\t1\t1\n\
         nodes\t\t\tReady\t0\t\t2\t2\t2\t2\t2\n\
         \nNo rolling-update required.\n"
    );

    let edited = edited_manifest(bench.cwd.path(), MINIMAL, |t| {
        t.replace("machineType: t2.medium", "machineType: t3.large")
    });
    bench
        .run(&["replace", "-f", &edited.to_string_lossy()])
        .ok();
    // Not applied yet: the cloud has not changed, nothing to roll.
    assert!(rolling_update(&bench, &[]).ends_with("\nNo rolling-update required.\n"));
    bench.run(&["update", "cluster", MINIMAL, "--yes"]).ok();
    let out = rolling_update(&bench, &[]);
    assert_eq!(
        out,
        "NAME\t\t\tSTATUS\t\tNEEDUPDATE\tREADY\tMIN\tTARGET\tMAX\tNODES\n\
         master-us-test-1a\tReady\t\t0\t\t1\t1\t1\t1\t1\n\
         nodes\t\t\tNeedsUpdate\t2\t\t0\t2\t2\t2\t2\n\
         \nMust specify --yes to rolling-update.\n"
    );
    let out = rolling_update(&bench, &["--cloudonly"]);
    assert!(
        out.starts_with("NAME\t\t\tSTATUS\t\tNEEDUPDATE\tREADY\tMIN\tTARGET\tMAX\n"),
        "{out}"
    );
    assert!(
        out.contains("nodes\t\t\tNeedsUpdate\t2\t\t0\t2\t2\t2\n"),
        "{out}"
    );
    let out = rolling_update(&bench, &["--instance-group", "master-us-test-1a"]);
    assert!(out.ends_with("\nNo rolling-update required.\n"), "{out}");

    let run = bench
        .run(&["rolling-update", "cluster", MINIMAL, "--yes"])
        .ok();
    assert!(!run.stdout.contains("Must specify --yes"));
    assert!(
        run.stderr
            .contains("Rolling update completed for cluster \"minimal-aws.example.com\"!")
    );
    let out = rolling_update(&bench, &[]);
    assert!(
        out.contains("nodes\t\t\tReady\t0\t\t2\t2\t2\t2\t2\n"),
        "{out}"
    );
    assert!(out.ends_with("\nNo rolling-update required.\n"));

    // --force rolls what is up to date.
    let out = rolling_update(&bench, &["--force"]);
    assert!(
        out.ends_with("\nMust specify --yes to rolling-update.\n"),
        "{out}"
    );
}

#[test]
fn resizing_does_not_need_a_roll() {
    let bench = applied_minimal();
    let edited = edited_manifest(bench.cwd.path(), MINIMAL, |t| {
        t.replace("maxSize: 2\n  minSize: 2", "maxSize: 4\n  minSize: 3")
    });
    bench
        .run(&["replace", "-f", &edited.to_string_lossy()])
        .ok();
    bench.run(&["update", "cluster", MINIMAL, "--yes"]).ok();
    let out = rolling_update(&bench, &[]);
    assert!(
        out.contains("nodes\t\t\tReady\t0\t\t3\t3\t3\t4\t3\n"),
        "{out}"
    );
}

// ---- delete instancegroup ----

#[test]
fn delete_instance_group() {
    let bench = applied_minimal();
    let key = format!("{MINIMAL}/instancegroup/nodes");
    let run = bench
        .run(&["delete", "instancegroup", "nodes", "--name", MINIMAL])
        .fails();
    assert_eq!(run.stderr, "Error: EOF\n");
    assert!(
        run.stdout
            .contains("Do you really want to delete instance group \"nodes\"?")
    );
    let run = bench.run_with_input(&["delete", "ig", "nodes", "--name", MINIMAL], "n\n");
    assert_eq!(run.code, Some(1));
    assert!(bench.store_tree().contains_key(&key));

    assert_eq!(
        bench.error(&[
            "delete",
            "ig",
            "master-us-test-1a",
            "--name",
            MINIMAL,
            "--yes",
        ]),
        "Error: cannot delete the only control plane instance group\n"
    );
    assert_eq!(
        bench.error(&["delete", "ig", "nope", "--name", MINIMAL, "--yes"]),
        "Error: InstanceGroup \"nope\" not found\n"
    );

    let run = bench
        .run(&[
            "delete",
            "instancegroup",
            "nodes",
            "--name",
            MINIMAL,
            "--yes",
        ])
        .ok();
    assert_eq!(
        run.stdout,
        "InstanceGroup \"nodes\" found for deletion\n\nDeleted InstanceGroup: \"nodes\"\n"
    );
    assert!(!bench.store_tree().contains_key(&key));
    // Its cloud resources went at once, as with kOps.
    let out = rolling_update(&bench, &[]);
    assert!(!out.contains("nodes"), "{out}");
    let out = bench.run(&["update", "cluster", MINIMAL]).ok().stdout;
    assert!(!out.contains("nodes.minimal-aws.example.com\n"), "{out}");
}

// ---- test controls ----

#[test]
fn fail_control_fails_the_named_command_only() {
    let mut bench = applied_minimal();
    let before = bench.store_tree();
    bench.set("KOPS_STANDIN_FAIL", "update,replace");
    let run = bench.run(&["update", "cluster", MINIMAL, "--yes"]).fails();
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr
            .starts_with("Error: kops stand-in: \"update cluster\" failed"),
        "{run:?}"
    );
    bench.run(&["replace", "-f", &minimal_manifest()]).fails();
    assert_eq!(bench.store_tree(), before);
    bench.run(&["rolling-update", "cluster", MINIMAL]).ok();
    bench.set("KOPS_STANDIN_FAIL_MESSAGE", "AccessDenied: Access Denied");
    assert_eq!(
        bench.error(&["update", "cluster", MINIMAL]),
        "Error: AccessDenied: Access Denied\n"
    );
}

#[test]
fn hang_control_waits_for_sigterm_and_records_it() {
    let mut bench = applied_minimal();
    let log = bench.cwd.path().join("kops.log");
    bench.set("KOPS_STANDIN_HANG", "update");
    bench.set("KOPS_STANDIN_LOG", &log.to_string_lossy());
    let mut child = bench
        .command(&["update", "cluster", MINIMAL, "--yes"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.contains("hanging in \"update cluster\""), "{line}");
    std::thread::sleep(Duration::from_millis(100));
    assert!(child.try_wait().unwrap().is_none(), "did not hang");
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143));
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["signal"], "SIGTERM");
}

#[test]
fn log_control_records_argv_cwd_and_identity() {
    let mut bench = Bench::with_fixture(MINIMAL);
    let log = bench.cwd.path().join("kops.log");
    bench
        .set("KOPS_STANDIN_LOG", &log.to_string_lossy())
        .set("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/dryrun")
        .set("AWS_WEB_IDENTITY_TOKEN_FILE", "/tmp/token")
        .set("S3_ENDPOINT", "http://127.0.0.1:1")
        .set("UNRELATED_SECRET", "must-not-appear");
    bench.run(&["get", "clusters"]).ok();
    bench.run(&["update", "cluster", "--bogus"]).fails();
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["argv"], serde_json::json!(["get", "clusters"]));
    assert_eq!(
        lines[1]["argv"],
        serde_json::json!(["update", "cluster", "--bogus"])
    );
    assert_eq!(
        lines[0]["cwd"].as_str().unwrap(),
        bench.cwd.path().canonicalize().unwrap().to_string_lossy()
    );
    let env = lines[0]["env"].as_object().unwrap();
    assert_eq!(env["AWS_ROLE_ARN"], "arn:aws:iam::123456789012:role/dryrun");
    assert_eq!(env["S3_ENDPOINT"], "http://127.0.0.1:1");
    assert_eq!(env["KOPS_STATE_STORE"], bench.state_url().as_str());
    assert!(!env.contains_key("UNRELATED_SECRET"));
    assert!(!env.contains_key("HOME"));
}

#[test]
fn only_the_state_store_and_the_cloud_are_written() {
    let bench = Bench::new();
    bench.run(&["create", "-f", &minimal_manifest()]).ok();
    bench
        .run(&[
            "update",
            "cluster",
            MINIMAL,
            "--yes",
            "--admin",
            "--create-kube-config",
        ])
        .ok();
    bench
        .run(&["rolling-update", "cluster", MINIMAL, "--yes", "--force"])
        .ok();
    bench
        .run(&["delete", "ig", "nodes", "--name", MINIMAL, "--yes"])
        .ok();
    assert!(
        tree(bench.cwd.path()).is_empty(),
        "wrote into the working directory"
    );
    assert!(
        tree(bench.home.path()).is_empty(),
        "wrote into HOME (a kubeconfig?)"
    );
    let cloud: Vec<String> = tree(bench.cloud.path()).into_keys().collect();
    assert_eq!(cloud, vec![format!("{MINIMAL}.json")]);
}

#[test]
fn clean_environment_has_no_store() {
    let out = clean_command(&["version"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
}
