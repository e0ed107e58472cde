//! `kopsci render` in `kops toolbox template` mode: flags, layering,
//! output handling and every bad input.

use crate::harness::{Run, Sandbox, yaml_documents};

const CLUSTER_TEMPLATE: &str = "\
apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  name: {{ clusterName }}
spec:
  kubernetesVersion: {{ kubernetesVersion }}
  networkCIDR: {{ network.cidr }}
  sshAccess: {{ sshAccess | tojson }}
";

const IG_TEMPLATE: &str = "\
{% for ig in instanceGroups %}---
apiVersion: kops.k8s.io/v1alpha2
kind: InstanceGroup
metadata:
  name: {{ ig.name }}
  labels:
    kops.k8s.io/cluster: {{ clusterName }}
spec:
  role: {{ ig.role }}
  machineType: {{ ig.machineType }}
  additionalUserData:
  - name: unit.sh
    type: text/x-shellscript
    content: |
      {{ include(\"unit.sh\", ig) | indent(6) }}
{% endfor %}";

fn sandbox() -> Sandbox {
    Sandbox::new()
        .file("templates/cluster.yaml.j2", CLUSTER_TEMPLATE)
        .file("templates/ig/instancegroups.yaml.j2", IG_TEMPLATE)
        .file("snippets/nested/unit.sh", "#!/bin/sh\necho {{ name }}\n")
        .file(
            "values/00-base.yaml",
            "kubernetesVersion: 1.33.0\nnetwork:\n  cidr: 10.0.0.0/16\n  zone: a\nsshAccess: [0.0.0.0/0]\n\
             instanceGroups:\n- {name: nodes, role: Node, machineType: t3.large}\n",
        )
        .file(
            "values/10-prod.yaml",
            "kubernetesVersion: 1.34.1\nnetwork:\n  cidr: 10.1.0.0/16\nsshAccess: [10.0.0.0/8]\n",
        )
}

fn render_args() -> Vec<&'static str> {
    vec![
        "render",
        "--values",
        "values",
        "--snippets",
        "snippets",
        "--template",
        "templates/cluster.yaml.j2",
        "--template",
        "templates/ig",
        "--name",
        "prod.k8s.example.com",
    ]
}

#[test]
fn renders_like_kops_toolbox_template() {
    let sb = sandbox();
    let out = sb.kopsci().args(render_args()).run().success().stdout();
    insta::assert_snapshot!("toolbox_render", out);
    let docs = yaml_documents(&out);
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0]["spec"]["kubernetesVersion"], "1.34.1");
    // Maps merge across layers; lists are replaced by the later layer.
    assert_eq!(docs[0]["spec"]["networkCIDR"], "10.1.0.0/16");
    assert_eq!(
        docs[0]["spec"]["sshAccess"],
        serde_json::json!(["10.0.0.0/8"])
    );
    assert_eq!(
        docs[1]["spec"]["additionalUserData"][0]["content"],
        "#!/bin/sh\necho nodes\n"
    );
}

#[test]
fn set_and_set_string_layer_on_top_with_kops_typing() {
    let sb = sandbox();
    let out = sb
        .kopsci()
        .args(render_args())
        .args([
            "--set",
            "kubernetesVersion=1.35.0,network.cidr=172.20.0.0/16",
        ])
        .args(["--set", "instanceGroups[0].machineType=m5.xlarge"])
        .args(["--set-string", "sshAccess={1.2.3.4/32,5.6.7.8/32}"])
        .run()
        .success()
        .stdout();
    let docs = yaml_documents(&out);
    assert_eq!(docs[0]["spec"]["kubernetesVersion"], "1.35.0");
    assert_eq!(docs[0]["spec"]["networkCIDR"], "172.20.0.0/16");
    assert_eq!(
        docs[0]["spec"]["sshAccess"],
        serde_json::json!(["1.2.3.4/32", "5.6.7.8/32"])
    );
    assert_eq!(docs[1]["spec"]["machineType"], "m5.xlarge");
}

#[test]
fn config_value_prints_merged_values() {
    let sb = sandbox();
    let value = |key: &str, extra: &[&str]| {
        sb.kopsci()
            .args(["render", "--values", "values", "--config-value", key])
            .args(extra)
            .run()
            .success()
            .stdout()
    };
    assert_eq!(value("kubernetesVersion", &[]), "1.34.1\n");
    assert_eq!(value("network.zone", &[]), "a\n");
    assert_eq!(value("network.nothing", &[]), "null\n");
    assert_eq!(value("count", &["--set", "count=3"]), "3\n");
    assert_eq!(value("flag", &["--set-string", "flag=true"]), "true\n");
    assert_eq!(value("network", &[]), "cidr: 10.1.0.0/16\nzone: a\n");
}

#[test]
fn values_may_be_comma_separated_and_order_matters() {
    let sb = sandbox();
    let key = ["--config-value", "kubernetesVersion"];
    let forward = sb
        .kopsci()
        .args([
            "render",
            "--values",
            "values/00-base.yaml,values/10-prod.yaml",
        ])
        .args(key)
        .run()
        .success()
        .stdout();
    let reverse = sb
        .kopsci()
        .args([
            "render",
            "--values",
            "values/10-prod.yaml",
            "--values",
            "values/00-base.yaml",
        ])
        .args(key)
        .run()
        .success()
        .stdout();
    assert_eq!(forward, "1.34.1\n");
    assert_eq!(reverse, "1.33.0\n");
}

/// kOps assigns `clusterName` from `--name` after loading the values and
/// `--set`s (cmd/kops/toolbox_template.go), so a migrated script renders the
/// name it passes, whatever a values file says.
#[test]
fn name_flag_wins_over_clustername_from_values_as_in_kops() {
    let sb = Sandbox::new()
        .file("v.yaml", "clusterName: from-values.example.com\n")
        .file("t.j2", "name: {{ clusterName }}\n");
    let render = |extra: &[&str], env: Option<&str>| {
        let mut cmd = sb
            .kopsci()
            .args(["render", "--values", "v.yaml", "--template", "t.j2"])
            .args(extra);
        if let Some(name) = env {
            cmd = cmd.env("KOPS_CLUSTER_NAME", name);
        }
        cmd.run().success().stdout()
    };
    assert_eq!(
        render(&["--name", "flag.example.com"], None),
        "name: flag.example.com\n"
    );
    // kops releases disagree on which name wins: the override is said.
    let run = sb
        .kopsci()
        .args(["render", "--values", "v.yaml", "--template", "t.j2"])
        .args(["--name", "flag.example.com"])
        .run()
        .success();
    assert!(
        run.stderr().contains(
            "--name flag.example.com overrides clusterName `from-values.example.com` from the values"
        ),
        "{}",
        run.stderr()
    );
    let same = sb
        .kopsci()
        .args(["render", "--values", "v.yaml", "--template", "t.j2"])
        .args(["--name", "from-values.example.com"])
        .run()
        .success();
    assert!(!same.stderr().contains("overrides"), "{}", same.stderr());
    assert_eq!(
        render(&[], Some("env.example.com")),
        "name: env.example.com\n"
    );
    // Over `--set` and `--set-string` too.
    assert_eq!(
        render(
            &[
                "--set",
                "clusterName=set.example.com",
                "--set-string",
                "clusterName=string.example.com",
                "--name",
                "flag.example.com",
            ],
            None
        ),
        "name: flag.example.com\n"
    );
    // `--config-value` sees the same context.
    let out = sb
        .kopsci()
        .args([
            "render",
            "--values",
            "v.yaml",
            "--config-value",
            "clusterName",
        ])
        .args(["--name", "flag.example.com"])
        .run()
        .success()
        .stdout();
    assert_eq!(out, "flag.example.com\n");
    // Without a name the values' `clusterName` stands.
    assert_eq!(render(&[], None), "name: from-values.example.com\n");
    let out = Sandbox::new()
        .file("t.j2", "name: {{ clusterName }}\n")
        .kopsci()
        .args(["render", "--template", "t.j2"])
        .env("KOPS_CLUSTER_NAME", "env.example.com")
        .run()
        .success()
        .stdout();
    assert_eq!(out, "name: env.example.com\n");
}

#[test]
fn documents_are_split_and_joined_like_kops() {
    let sb = Sandbox::new()
        .file("t/a.j2", "a: 1\n---\n\n---\nb: 2\n")
        .file("t/b.j2", "{# nothing #}\n")
        .file("t/c.j2", "---\nc: 3\n");
    let out = sb
        .kopsci()
        .args(["render", "--template", "t"])
        .run()
        .success()
        .stdout();
    assert_eq!(out, "a: 1\n---\nb: 2\n---\nc: 3\n");
}

#[test]
fn fail_on_missing_false_renders_undefined_as_empty() {
    let sb = Sandbox::new().file("t.j2", "a: '{{ nope }}'\n");
    sb.kopsci()
        .args(["render", "--template", "t.j2"])
        .run()
        .fails_with(1, &["t.j2:1", "nope"]);
    let out = sb
        .kopsci()
        .args(["render", "--template", "t.j2", "--fail-on-missing=false"])
        .run()
        .success()
        .stdout();
    assert_eq!(out, "a: ''\n");
}

#[test]
fn format_yaml_normalises_documents() {
    let sb = Sandbox::new().file("t.j2", "b:   [1,    2]\na:    {x: yes}\n---\nc: 'on'\n");
    let out = sb
        .kopsci()
        .args(["render", "--template", "t.j2", "--format-yaml"])
        .run()
        .success()
        .stdout();
    insta::assert_snapshot!("format_yaml", out);
    assert_eq!(yaml_documents(&out)[1]["c"], "on");
}

#[test]
fn out_writes_the_file_and_output_is_a_deprecated_alias() {
    let sb = sandbox();
    sb.kopsci()
        .args(render_args())
        .args(["--out", "out.yaml"])
        .run()
        .success();
    let first = sb.read("out.yaml");
    let run = sb
        .kopsci()
        .args(render_args())
        .args(["--output", "out2.yaml"])
        .run()
        .success();
    assert!(
        run.stderr().contains("--output is deprecated"),
        "{}",
        run.stderr()
    );
    assert_eq!(first, sb.read("out2.yaml"));
}

#[test]
fn filters_in_jinja_form() {
    let sb = Sandbox::new().file(
        "t.j2",
        "a: {{ 'hello' | b64encode }}\n\
         b: {{ 'aGVsbG8=' | b64decode }}\n\
         c: {{ 'x\"y' | quote }}\n\
         d: {{ 'abc' | sha256sum }}\n\
         e: {{ semver_compare('v1.34.1', '>=1.34.0, <1.35.0') }}\n\
         f: {{ missing | default('fallback') }}\n\
         g:{{ {'k': [1, 2]} | toyaml | nindent(2) }}\n",
    );
    let out = sb
        .kopsci()
        .args(["render", "--template", "t.j2"])
        .run()
        .success()
        .stdout();
    let doc = &yaml_documents(&out)[0];
    assert_eq!(doc["a"], "aGVsbG8=");
    assert_eq!(doc["b"], "hello");
    assert_eq!(doc["c"], "x\"y");
    assert_eq!(
        doc["d"],
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(doc["e"], true);
    assert_eq!(doc["f"], "fallback");
    assert_eq!(doc["g"], serde_json::json!({"k": [1, 2]}));
}

#[test]
fn required_names_what_is_missing() {
    Sandbox::new()
        .file(
            "t.j2",
            "a: {{ region | required('region must be set per cluster') }}\n",
        )
        .kopsci()
        .args(["render", "--template", "t.j2"])
        .run()
        .fails_with(1, &["region must be set per cluster", "t.j2:1"]);
}

// ---- bad input: one clear error, non-zero exit, no panic, no partial file

#[test]
fn missing_template_file() {
    Sandbox::new()
        .kopsci()
        .args(["render", "--template", "nope.j2"])
        .run()
        .fails_with(1, &["nope.j2"]);
}

#[test]
fn missing_values_file() {
    Sandbox::new()
        .file("t.j2", "a: 1\n")
        .kopsci()
        .args(["render", "--template", "t.j2", "--values", "missing.yaml"])
        .run()
        .fails_with(1, &["missing.yaml"]);
}

#[test]
fn malformed_values_name_file_line_and_column() {
    Sandbox::new()
        .file("t.j2", "a: 1\n")
        .file("v.yaml", "a: 1\nb: [1, 2\nc: 3\n")
        .kopsci()
        .args(["render", "--template", "t.j2", "--values", "v.yaml"])
        .run()
        .fails_with(1, &["v.yaml:3:"]);
}

#[test]
fn values_that_are_not_a_mapping() {
    Sandbox::new()
        .file("t.j2", "a: 1\n")
        .file("v.yaml", "- a\n- b\n")
        .kopsci()
        .args(["render", "--template", "t.j2", "--values", "v.yaml"])
        .run()
        .fails_with(1, &["v.yaml", "mapping"]);
}

#[test]
fn template_syntax_error_names_file_and_line() {
    Sandbox::new()
        .file("t.j2", "a: 1\nb: {% if x %}\nc: 2\n")
        .kopsci()
        .args(["render", "--template", "t.j2"])
        .run()
        .fails_with(1, &["t.j2:", "syntax error"]);
}

#[test]
fn undefined_variable_names_variable_file_and_line() {
    Sandbox::new()
        .file("v.yaml", "spec: {a: 1}\n")
        .file("t.j2", "a: 1\nb: {{ spec.missing }}\n")
        .kopsci()
        .args(["render", "--template", "t.j2", "--values", "v.yaml"])
        .run()
        .fails_with(1, &["t.j2:2", "spec.missing"]);
}

#[test]
fn errors_never_dump_values() {
    let secret = "s3cr3t-token-value";
    let run = Sandbox::new()
        .file("v.yaml", &format!("token: {secret}\nother: 1\n"))
        .file("t.j2", "a: {{ token }}\nb: {{ token ~ missing }}\n")
        .kopsci()
        .args(["render", "--template", "t.j2", "--values", "v.yaml"])
        .run()
        .fails_with(1, &["t.j2:2"]);
    assert!(
        !run.stderr().contains(secret),
        "secret leaked: {}",
        run.stderr()
    );
    assert!(!run.stdout().contains(secret), "partial output on stdout");
}

#[test]
fn rendered_output_must_be_yaml() {
    Sandbox::new()
        .file("t.j2", "a: 1\n---\nb: [unclosed\n")
        .kopsci()
        .args(["render", "--template", "t.j2"])
        .run()
        .fails_with(1, &["t.j2", "document 2", "line"]);
}

#[test]
fn malformed_set_expressions() {
    let sb = Sandbox::new().file("t.j2", "a: 1\n");
    for (flag, expr, shown) in [
        ("--set", "novalue", "novalue"),
        ("--set", "a[x]=1", "a[x]=…"),
        ("--set-string", "a={1,2", "a=…"),
    ] {
        sb.kopsci()
            .args(["render", "--template", "t.j2", flag, expr])
            .run()
            .fails_with(1, &[flag, shown]);
    }
    // Values may be credentials: errors show keys only.
    let run = sb
        .kopsci()
        .args([
            "render",
            "--template",
            "t.j2",
            "--set",
            "token=hunter2,b[x]=1",
        ])
        .run()
        .fails_with(1, &["token=…"]);
    assert!(!run.stderr().contains("hunter2"), "{}", run.stderr());
}

#[test]
fn unwritable_output_leaves_nothing_behind() {
    let sb = Sandbox::new().file("t.j2", "a: 1\n");
    sb.kopsci()
        .args([
            "render",
            "--template",
            "t.j2",
            "--out",
            "no/such/dir/out.yaml",
        ])
        .run()
        .fails_with(1, &["no/such/dir/out.yaml"]);
    assert!(!sb.join("no").exists());
}

#[test]
fn failed_render_keeps_the_previous_output() {
    let sb = Sandbox::new()
        .file("t.j2", "a: {{ missing }}\n")
        .file("out.yaml", "previous\n");
    sb.kopsci()
        .args(["render", "--template", "t.j2", "--out", "out.yaml"])
        .run()
        .fails_with(1, &["missing"]);
    assert_eq!(sb.read("out.yaml"), "previous\n");
    let leftovers: Vec<_> = std::fs::read_dir(sb.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".kopsci"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

#[test]
fn fleet_flags_need_the_fleet() {
    Sandbox::new()
        .file("t.j2", "a: 1\n")
        .kopsci()
        .args(["render", "--template", "t.j2", "--check"])
        .run()
        .fails_with(64, &["--template"]);
}

/// Strings a YAML 1.1 reader (kOps uses one) would take for booleans,
/// numbers, nulls, dates or sexagesimals if written plainly.
const YAML11_TRAPS: &[&str] = &[
    "yes",
    "no",
    "on",
    "off",
    "y",
    "n",
    "Y",
    "NO",
    "Off",
    "TRUE",
    "0755",
    "012",
    "1.10",
    "1e3",
    "~",
    "null",
    "",
    "2016-12-10",
    "2001-12-14t21:59:43.10-05:00",
    "0x1F",
    "1_000",
    ".inf",
    "-.inf",
    ".NaN",
    "nan",
    "=",
    "<<",
    ":x",
    "- a",
    "#c",
    "a: b",
    "true",
    "+1",
    "0b101",
    "1:20",
    "190:20:30",
    "0o17",
    "-0",
    "1,000",
    "@x",
    "`x",
    "!x",
    "&x",
    "*x",
    "%x",
    "|",
    "> x",
    "? x",
    "[a]",
    "{a}",
    "a #b",
    "trailing ",
    "  lead",
    "tab\there",
    "multi\nline\n",
];

#[test]
fn yaml_written_by_kopsci_reads_back_identically_in_a_yaml_1_1_reader() {
    let list = serde_json::to_string(YAML11_TRAPS).unwrap();
    let sb = Sandbox::new()
        .file("v.json", &format!("{{\"traps\": {list}}}"))
        .file("t.j2", "plain:\n{{ traps | toyaml | indent(2, true) }}\n");
    // Both writers: `toyaml` in a template and `--format-yaml`.
    sb.kopsci()
        .args([
            "render",
            "--values",
            "v.json",
            "--template",
            "t.j2",
            "--format-yaml",
            "--out",
            "out.yaml",
        ])
        .run()
        .success();
    // PyYAML implements YAML 1.1, as kOps' reader does.
    let python = std::process::Command::new("python3")
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
        .arg(sb.join("out.yaml"))
        .env(
            "PYTHONPATH",
            crate::harness::repo_root().join(".tools/py/pyyaml"),
        )
        .output()
        .expect("python3 runs");
    assert!(
        python.status.success(),
        "PyYAML (installed by scripts/install-test-deps) failed: {}",
        String::from_utf8_lossy(&python.stderr)
    );
    let read_back: serde_json::Value = serde_json::from_slice(&python.stdout).unwrap();
    assert_eq!(read_back["plain"], serde_json::json!(YAML11_TRAPS));
}

fn file_mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The umask kopsci inherits from this process.
fn umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("Umask:")).unwrap();
    u32::from_str_radix(line["Umask:".len()..].trim(), 8).unwrap()
}

#[test]
fn out_never_turns_a_committed_manifest_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let sb = Sandbox::new()
        .file("t.j2", "a: 1\n")
        .file("out.yaml", "old\n")
        .file("group.yaml", "old\n");
    std::fs::set_permissions(sb.join("out.yaml"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(
        sb.join("group.yaml"),
        std::fs::Permissions::from_mode(0o664),
    )
    .unwrap();
    for (out, mode) in [("out.yaml", 0o644), ("group.yaml", 0o664)] {
        sb.kopsci()
            .args(["render", "--template", "t.j2", "--out", out])
            .run()
            .success();
        assert_eq!(sb.read(out), "a: 1\n");
        assert_eq!(file_mode(&sb.join(out)), mode, "{out}");
    }
    // A new file gets what any new file gets: 0666 less the umask.
    sb.kopsci()
        .args(["render", "--template", "t.j2", "--out", "new.yaml"])
        .run()
        .success();
    assert_eq!(file_mode(&sb.join("new.yaml")), 0o666 & !umask());

    // Fleet mode writes `<cluster>.yaml` files the same way.
    let fleet = Sandbox::new()
        .file(
            "kopsci.yaml",
            "state: s3://bucket\ntemplates: [t.j2]\nenvironments:\n  dev: {}\nclusters:\n\
             - name: a.example.com\n  environment: dev\n- name: b.example.com\n  environment: dev\n",
        )
        .file("t.j2", "name: {{ clusterName }}\n")
        .file("manifests/a.example.com.yaml", "old\n");
    let committed = fleet.join("manifests/a.example.com.yaml");
    std::fs::set_permissions(&committed, std::fs::Permissions::from_mode(0o644)).unwrap();
    fleet
        .kopsci()
        .args(["render", "--all", "--out", "manifests"])
        .run()
        .success();
    assert_eq!(
        fleet.read("manifests/a.example.com.yaml"),
        "name: a.example.com\n"
    );
    assert_eq!(file_mode(&committed), 0o644);
    assert_eq!(
        file_mode(&fleet.join("manifests/b.example.com.yaml")),
        0o666 & !umask()
    );
}

/// What `terraform output -json` prints (Terraform 1.x); shared with the
/// unit tests in kopsci-core's values.rs.
const TERRAFORM_OUTPUT: &str = include_str!("../../../../tests/fixtures/terraform-output.json");

const TF_SECRET: &str = "tf-s3cr3t-4f9a";

/// `kopsci render --values-terraform TF ARGS…` in `sb`.
fn render_terraform(sb: &Sandbox, tf: &str, args: &[&str]) -> Run {
    sb.kopsci()
        .args(["render", "--values-terraform", tf])
        .args(args)
        .run()
}

/// Neither output of `run` holds the sensitive Terraform output.
fn assert_secret_not_shown(run: &Run) {
    assert!(!run.stdout().contains(TF_SECRET), "{}", run.stdout());
    assert!(!run.stderr().contains(TF_SECRET), "{}", run.stderr());
}

fn terraform_sandbox() -> Sandbox {
    Sandbox::new()
        .file("tf.json", TERRAFORM_OUTPUT)
        .file("base.yaml", "node_count: 1\nregion: eu-west-1\n")
        .file("override.yaml", "node_count: 5\n")
        .file(
            "t.j2",
            "name: {{ cluster_name }}\nnodes: {{ node_count }}\nregion: {{ region }}\n\
             subnets: {{ private_subnet_ids | tojson }}\n\
             cidr: {{ subnets['eu-west-1a'].cidr }}\n\
             secret: {{ oidc_client_secret | b64encode }}\n",
        )
}

#[test]
fn terraform_outputs_are_a_values_layer_in_command_line_order() {
    let sb = terraform_sandbox();
    let render = |args: &[&str]| {
        let out = sb
            .kopsci()
            .arg("render")
            .args(args)
            .args(["--template", "t.j2"])
            .run()
            .success()
            .stdout();
        yaml_documents(&out).remove(0)
    };
    let doc = render(&["--values", "base.yaml", "--values-terraform", "tf.json"]);
    assert_eq!(doc["name"], "prod.k8s.example.com");
    assert_eq!(doc["nodes"], 3);
    assert_eq!(doc["region"], "eu-west-1");
    assert_eq!(
        doc["subnets"],
        serde_json::json!(["subnet-0a1b2c3d4e5f60001", "subnet-0a1b2c3d4e5f60002"])
    );
    assert_eq!(doc["cidr"], "10.0.32.0/19");
    // The manifest holds the sensitive value: that is what it is for.
    assert_eq!(doc["secret"], "dGYtczNjcjN0LTRmOWE=");
    // Order on the command line is layer order, across both flags.
    let doc = render(&[
        "--values-terraform",
        "tf.json",
        "--values",
        "base.yaml,override.yaml",
    ]);
    assert_eq!(doc["nodes"], 5);
    let doc = render(&[
        "--values",
        "override.yaml",
        "--values-terraform",
        "tf.json",
        "--values",
        "base.yaml",
    ]);
    assert_eq!(doc["nodes"], 1);
    let doc = render(&[
        "--values",
        "base.yaml",
        "--values",
        "override.yaml",
        "--values-terraform",
        "tf.json",
    ]);
    assert_eq!(doc["nodes"], 3);
    // `--values-terraform` alone selects toolbox mode, like `--values`.
    let out = render_terraform(&sb, "tf.json", &["--config-value", "node_count"])
        .success()
        .stdout();
    assert_eq!(out, "3\n");
}

#[test]
fn sensitive_terraform_outputs_are_never_printed() {
    let sb = terraform_sandbox();
    let run = render_terraform(&sb, "tf.json", &["--config-value", "oidc_client_secret"])
        .fails_with(1, &["oidc_client_secret", "sensitive"]);
    assert_secret_not_shown(&run);
    // A failing render that uses the value does not show it either.
    let sb = sb.file(
        "bad.j2",
        "a: {{ oidc_client_secret }}\nb: {{ oidc_client_secret ~ nope }}\nc: {{ oidc_client_secret | int }}\n",
    );
    let run = render_terraform(&sb, "tf.json", &["--template", "bad.j2"])
        .fails_with(1, &["bad.j2:2:", "nope"]);
    assert_secret_not_shown(&run);
    // Nor does a template that makes the value its error message.
    for (i, template) in [
        "a: {{ sprig_fail(oidc_client_secret) }}\n",
        "a: {{ nope | required(\"x\" ~ oidc_client_secret) }}\n",
    ]
    .into_iter()
    .enumerate()
    {
        let name = format!("fail{i}.j2");
        let sb = terraform_sandbox().file(&name, template);
        let run = render_terraform(&sb, "tf.json", &["--template", &name])
            .fails_with(1, &[&format!("{name}:1:"), "(sensitive)"]);
        assert!(!run.stderr().contains(TF_SECRET), "{}", run.stderr());
    }
}

#[test]
fn a_file_that_is_not_terraform_output_names_file_line_and_column() {
    let sb = Sandbox::new()
        .file("t.j2", "a: 1\n")
        // A plain values file given as Terraform output.
        .file("plain.json", "{\n  \"vpc_id\": \"vpc-0123\"\n}\n")
        // `terraform output -json oidc_client_secret` prints the bare value.
        .file("one.json", &format!("\"{TF_SECRET}\"\n"));
    render_terraform(&sb, "plain.json", &["--template", "t.j2"])
        .fails_with(1, &["plain.json:2:13: output `vpc_id` is a string"]);
    let run = render_terraform(&sb, "one.json", &["--template", "t.j2"]).fails_with(
        1,
        &["one.json:1:1: not the output of `terraform output -json`"],
    );
    assert!(!run.stderr().contains(TF_SECRET), "{}", run.stderr());
}

#[test]
fn tojson_and_join_of_a_misspelt_key_are_errors_under_fail_on_missing() {
    let sb = Sandbox::new()
        .file("v.yaml", "sshAccess: [10.0.0.0/8]\n")
        .file("json.j2", "sshAccess: {{ sshAcces | tojson }}\n")
        .file("join.j2", "cidrs: '{{ sshAcces | join(\",\") }}'\n");
    for (template, column) in [("json.j2", 15), ("join.j2", 12)] {
        sb.kopsci()
            .args(["render", "--values", "v.yaml", "--template", template])
            .run()
            .fails_with(
                1,
                &[&format!(
                    "{template}:1:{column}: undefined variable `sshAcces`"
                )],
            );
    }
    // Lenient mode keeps rendering them as before.
    let out = |template: &str| {
        sb.kopsci()
            .args(["render", "--values", "v.yaml", "--template", template])
            .arg("--fail-on-missing=false")
            .run()
            .success()
            .stdout()
    };
    assert_eq!(out("json.j2"), "sshAccess: null\n");
    assert_eq!(out("join.j2"), "cidrs: ''\n");
}

#[test]
fn hostile_templates_fail_fast_with_a_render_budget_error() {
    let mut sb = Sandbox::new()
        .file(
            "loop.j2",
            "a: {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\n",
        )
        .file("self.j2", "a: {{ include('me') }}\n")
        .file("snippets/me", "x{{ include('me') }}")
        .file("fanout.j2", "a: {{ include('s0') }}\n");
    // Each snippet includes the next one twice: 2^40 renders.
    for level in 0..40 {
        sb = sb.file(
            &format!("snippets/s{level}"),
            &format!(
                "{{{{ include('s{n}') }}}}{{{{ include('s{n}') }}}}",
                n = level + 1
            ),
        );
    }
    let sb = sb.file("snippets/s40", "x");
    for (template, what) in [
        ("loop.j2", "more than 5000000 steps"),
        ("fanout.j2", "more than 5000000 steps"),
        ("self.j2", "include nesting deeper than 64 levels"),
    ] {
        sb.kopsci()
            .args(["render", "--snippets", "snippets", "--template", template])
            .args(["--out", "out.yaml"])
            .run()
            .fails_with(
                1,
                &[
                    &format!("template `{template}` exceeded the render budget: {what}"),
                    "a loop or include that never ends?",
                ],
            );
        assert!(!sb.join("out.yaml").exists(), "{template}: partial output");
    }
}
