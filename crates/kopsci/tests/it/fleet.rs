//! `kopsci render` in fleet mode: `kopsci.yaml`, layers per cluster,
//! `--all`, `--out DIR`, `--check`, `--explain` and fleet-file errors.

use crate::harness::{Sandbox, yaml_documents};

/// The start of a fleet file with `dev` and `prod` (which needs `dev`)
/// environments and the cluster `dev-a`, as a literal for `concat!`; the
/// pipeline tests add clusters after it.
macro_rules! dev_prod_fleet_head {
    () => {
        "\
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
"
    };
}
pub(crate) use dev_prod_fleet_head;

const FLEET: &str = concat!(
    dev_prod_fleet_head!(),
    "  - name: prod-a.k8s.example.com
    environment: prod
    values: [values/clusters/prod-a.yaml]
"
);

fn fleet() -> Sandbox {
    Sandbox::new()
        .file("kopsci.yaml", FLEET)
        .file(
            "templates/cluster.yaml.j2",
            "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata:\n  name: {{ clusterName }}\n\
             spec:\n  kubernetesVersion: {{ kubernetesVersion }}\n  {{ include('api.yaml') }}\n",
        )
        .file("templates/snippets/api.yaml", "masterPublicName: api.{{ clusterName }}")
        .file("values/base.yaml", "kubernetesVersion: 1.33.0\nnodes: {min: 1, max: 3}\n")
        .file("values/env/dev.yaml", "kubernetesVersion: 1.34.1\n")
        .file("values/env/prod.yaml", "nodes: {max: 10}\n")
        .file("values/clusters/dev-a.yaml", "clusterName: dev-a.k8s.example.com\n")
        .file("values/clusters/prod-a.yaml", "nodes: {min: 3}\n")
}

#[test]
fn renders_one_cluster_with_its_layers() {
    let sb = fleet();
    let out = sb
        .kopsci()
        .args(["render", "dev-a.k8s.example.com"])
        .run()
        .success()
        .stdout();
    let doc = &yaml_documents(&out)[0];
    assert_eq!(doc["metadata"]["name"], "dev-a.k8s.example.com");
    assert_eq!(doc["spec"]["kubernetesVersion"], "1.34.1");
    assert_eq!(doc["spec"]["masterPublicName"], "api.dev-a.k8s.example.com");
}

#[test]
fn all_out_dir_then_check_is_clean() {
    let sb = fleet();
    sb.kopsci()
        .args(["render", "--all", "--out", "manifests"])
        .run()
        .success();
    assert!(
        sb.read("manifests/prod-a.k8s.example.com.yaml")
            .contains("kubernetesVersion: 1.33.0")
    );
    insta::assert_snapshot!(
        "fleet_dev_a",
        sb.read("manifests/dev-a.k8s.example.com.yaml")
    );
    let run = sb.kopsci().args(["render", "--check"]).run().success();
    assert!(run.stdout().is_empty(), "{}", run.stdout());
}

#[test]
fn check_reports_stale_and_missing_manifests() {
    let sb = fleet();
    sb.kopsci()
        .args(["render", "--all", "--out", "manifests"])
        .run()
        .success();
    std::fs::write(
        sb.join("values/env/dev.yaml"),
        "kubernetesVersion: 1.35.0\n",
    )
    .unwrap();
    std::fs::remove_file(sb.join("manifests/prod-a.k8s.example.com.yaml")).unwrap();
    let run = sb.kopsci().args(["render", "--check"]).run().expect_code(3);
    let out = run.stdout();
    assert!(out.contains("-  kubernetesVersion: 1.34.1"), "{out}");
    assert!(out.contains("+  kubernetesVersion: 1.35.0"), "{out}");
    assert!(out.contains("/dev/null (missing)"), "{out}");
    run.assert_stderr_has("2 of 2 manifest(s)");
}

#[test]
fn explain_shows_every_layer_and_the_winner() {
    let sb = fleet();
    let out = sb
        .kopsci()
        .args([
            "render",
            "--explain",
            "kubernetesVersion",
            "dev-a.k8s.example.com",
        ])
        .args(["--set", "other=1"])
        .run()
        .success()
        .stdout();
    insta::assert_snapshot!("explain_kubernetes_version", out);
    let out = sb
        .kopsci()
        .args(["render", "--explain", "nodes.min", "prod-a.k8s.example.com"])
        .run()
        .success()
        .stdout();
    assert!(out.contains("wins: values/clusters/prod-a.yaml"), "{out}");
}

#[test]
fn set_applies_to_fleet_clusters() {
    let sb = fleet();
    let out = sb
        .kopsci()
        .args([
            "render",
            "prod-a.k8s.example.com",
            "--set",
            "kubernetesVersion=1.36.0",
        ])
        .run()
        .success()
        .stdout();
    assert_eq!(
        yaml_documents(&out)[0]["spec"]["kubernetesVersion"],
        "1.36.0"
    );
}

#[test]
fn config_value_for_a_fleet_cluster() {
    let out = fleet()
        .kopsci()
        .args([
            "render",
            "prod-a.k8s.example.com",
            "--config-value",
            "nodes",
        ])
        .run()
        .success()
        .stdout();
    assert_eq!(out, "min: 3\nmax: 10\n");
}

#[test]
fn a_layer_setting_another_cluster_name_is_an_error() {
    let sb = fleet().file(
        "values/clusters/prod-a.yaml",
        "clusterName: dev-a.k8s.example.com\n",
    );
    sb.kopsci().args(["render", "--all"]).run().fails_with(
        1,
        &[
            "values/clusters/prod-a.yaml",
            "clusterName",
            "prod-a.k8s.example.com",
        ],
    );
    sb.kopsci()
        .args([
            "render",
            "dev-a.k8s.example.com",
            "--set",
            "clusterName=x.example.com",
        ])
        .run()
        .fails_with(1, &["--set clusterName=x.example.com", "clusterName"]);
}

#[test]
fn unknown_cluster_lists_the_fleet() {
    fleet()
        .kopsci()
        .args(["render", "nope.example.com"])
        .run()
        .fails_with(
            64,
            &[
                "unknown cluster `nope.example.com`",
                "dev-a.k8s.example.com",
            ],
        );
}

#[test]
fn clusters_must_be_named_or_all() {
    fleet()
        .kopsci()
        .args(["render"])
        .run()
        .fails_with(64, &["--all"]);
}

#[test]
fn no_fleet_file_is_a_usage_error() {
    Sandbox::new()
        .kopsci()
        .args(["render", "--all"])
        .run()
        .fails_with(64, &["kopsci.yaml", "--template"]);
}

#[test]
fn fleet_flag_points_elsewhere() {
    let sb = fleet();
    let out = sb
        .kopsci()
        .current_dir(std::env::temp_dir())
        .args(["--fleet"])
        .arg(sb.join("kopsci.yaml"))
        .args(["render", "dev-a.k8s.example.com"])
        .run()
        .success()
        .stdout();
    assert!(out.contains("api.dev-a.k8s.example.com"), "{out}");
}

#[test]
fn invalid_fleet_files_say_which_key_and_what_was_expected() {
    let cases: &[(&str, &[&str])] = &[
        (
            "templates: [t]\nclusters: []\ntemplate: x\n",
            &["kopsci.yaml:3:", "unknown field `template`"],
        ),
        (
            "templates: [t]\nenvironments: {dev: {}}\nclusters:\n- name: a.example.com\n  environment: stage\n",
            &["kopsci.yaml:5:", "unknown environment `stage`", "dev"],
        ),
        (
            "templates: [t]\nenvironments: {dev: {}}\nclusters:\n- name: A_B\n  environment: dev\n",
            &["kopsci.yaml:4:", "invalid cluster name `A_B`"],
        ),
        (
            "templates: [t]\nclusters:\n- environment: dev\n",
            &["kopsci.yaml", "missing field `name`"],
        ),
        (
            "templates: [t]\nstate: http://x\nclusters: []\n",
            &["kopsci.yaml:2:", "s3://bucket"],
        ),
        (
            "templates: [t]\nenvironments:\n  a: {needs: [b]}\n  b: {needs: [a]}\nclusters: []\n",
            &["cycle"],
        ),
        ("templates: []\nclusters: []\n", &["`templates`"]),
        (
            "templates: [t]\nkops: {version: banana}\nclusters: []\n",
            &["kopsci.yaml:2:", "kops.version"],
        ),
        (
            "templates: [t]\nenvironments: {dev: {}}\nclusters:\n- {name: a.example.com, environment: dev}\n- {name: a.example.com, environment: dev}\n",
            &["kopsci.yaml:5:", "declared twice"],
        ),
    ];
    for (text, fragments) in cases {
        Sandbox::new()
            .file("kopsci.yaml", text)
            .kopsci()
            .args(["render", "--all"])
            .run()
            .fails_with(1, fragments);
    }
}

#[test]
fn a_failing_cluster_writes_no_manifest() {
    let sb = fleet().file("values/clusters/prod-a.yaml", "kubernetesVersion: {{\n");
    sb.kopsci()
        .args(["render", "--all", "--out", "manifests"])
        .run()
        .fails_with(
            1,
            &["prod-a.k8s.example.com", "values/clusters/prod-a.yaml:1:"],
        );
    assert!(!sb.join("manifests/dev-a.k8s.example.com.yaml").exists());
}

#[test]
fn terraform_outputs_are_a_fleet_values_layer_and_sensitive_ones_are_never_printed() {
    let tf = r#"{
  "kubernetesVersion": {"sensitive": false, "type": "string", "value": "1.34.2"},
  "vpc_secret": {"sensitive": true, "type": "string", "value": "s3cr3t-canary"}
}"#;
    let sb = fleet()
        .file(
            "kopsci.yaml",
            &FLEET.replace(
                "    values: [values/clusters/dev-a.yaml]\n",
                "    values: [values/clusters/dev-a.yaml, {terraform_output: tf/dev.json}]\n",
            ),
        )
        .file("tf/dev.json", tf);
    let out = sb
        .kopsci()
        .args(["render", "dev-a.k8s.example.com"])
        .run()
        .success()
        .stdout();
    assert_eq!(
        yaml_documents(&out)[0]["spec"]["kubernetesVersion"],
        "1.34.2",
        "the Terraform layer comes last and wins"
    );
    let explained = sb
        .kopsci()
        .args(["render", "--explain", "vpc_secret", "dev-a.k8s.example.com"])
        .run()
        .success()
        .stdout();
    assert!(explained.contains("(sensitive)"), "{explained}");
    assert!(explained.contains("tf/dev.json"), "{explained}");
    assert!(!explained.contains("s3cr3t-canary"), "{explained}");
    let run = sb
        .kopsci()
        .args([
            "render",
            "--config-value",
            "vpc_secret",
            "dev-a.k8s.example.com",
        ])
        .run()
        .fails_with(1, &["sensitive Terraform output"]);
    assert!(!run.stdout().contains("s3cr3t-canary"));
    assert!(!run.stderr().contains("s3cr3t-canary"));
    // A template that makes the value its error message does not print it.
    let sb = sb.file(
        "templates/cluster.yaml.j2",
        "{{ sprig_fail(vpc_secret) }}\n",
    );
    let run = sb
        .kopsci()
        .args(["render", "dev-a.k8s.example.com"])
        .run()
        .fails_with(1, &["cluster.yaml.j2:1:", "(sensitive)"]);
    assert!(!run.stderr().contains("s3cr3t-canary"), "{}", run.stderr());
}
