//! `kopsci migrate`: the reference fleet written by hand in kOps' Go
//! template syntax (examples/gotemplate) converts and renders the committed
//! manifests byte for byte; the examples of kOps' cluster_template.md
//! convert and render as that page says; command lines become fleets;
//! unsupported constructs stop the conversion with `file:line:col`.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::harness::{Run, Sandbox, repo_root, yaml_documents};

fn example_dir() -> PathBuf {
    repo_root().join("examples/gotemplate")
}

/// The reference fleet's clusters, in fleet-file order.
fn reference_clusters() -> Vec<String> {
    let text = std::fs::read_to_string(repo_root().join("kopsci.yaml")).expect("kopsci.yaml");
    let fleet: Value = serde_saphyr::from_str(&text).expect("kopsci.yaml is YAML");
    fleet["clusters"]
        .as_array()
        .expect("clusters")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect()
}

/// The reference fleet file with its templates and snippets replaced by
/// the converted ones in `converted`, every other path made absolute, and
/// manifests in `manifests`. Written as JSON, which is YAML.
fn fleet_with_templates(converted: &Path, manifests: &Path) -> String {
    let root = repo_root();
    let text = std::fs::read_to_string(root.join("kopsci.yaml")).expect("kopsci.yaml");
    let mut fleet: Value = serde_saphyr::from_str(&text).expect("kopsci.yaml is YAML");
    let absolute = |v: &mut Value| {
        if let Some(list) = v.as_array_mut() {
            for item in list {
                let path = root.join(item.as_str().expect("a path"));
                *item = Value::String(path.display().to_string());
            }
        }
    };
    fleet["templates"] = serde_json::json!([
        converted.join("cluster.yaml").display().to_string(),
        converted.join("instancegroups.yaml").display().to_string(),
    ]);
    fleet["snippets"] = serde_json::json!([converted.join("snippets").display().to_string()]);
    absolute(&mut fleet["values"]);
    for env in fleet["environments"]
        .as_object_mut()
        .expect("environments")
        .values_mut()
    {
        absolute(&mut env["values"]);
    }
    for cluster in fleet["clusters"].as_array_mut().expect("clusters") {
        absolute(&mut cluster["values"]);
    }
    fleet["manifests"] = Value::String(manifests.display().to_string());
    serde_json::to_string_pretty(&fleet).expect("JSON")
}

/// Converts examples/gotemplate/templates with `--map-order ORDER`, renders
/// the reference fleet with the result, and returns the directory holding
/// `<cluster>.yaml` for every cluster.
fn render_converted_fleet(sandbox: &Sandbox, order: &str) -> PathBuf {
    let converted = sandbox.join(&format!("jinja-{order}"));
    let run = sandbox
        .kopsci()
        .current_dir(example_dir())
        .args([
            "migrate",
            "template",
            "templates",
            "--map-order",
            order,
            "--out",
        ])
        .arg(&converted)
        .run()
        .success();
    // The value snippet uses Helm's toYaml and cluster.yaml Helm's required:
    // converted, and said so.
    let stderr = run.stderr();
    assert!(
        stderr.contains("templates/snippets/value:15:42: note: toYaml is Helm's"),
        "{stderr}"
    );
    assert!(
        stderr.contains("templates/cluster.yaml:42:18: note: required is Helm's"),
        "{stderr}"
    );
    let manifests = sandbox.join(&format!("manifests-{order}"));
    let fleet = sandbox.join(&format!("fleet-{order}.yaml"));
    std::fs::write(&fleet, fleet_with_templates(&converted, &manifests)).unwrap();
    sandbox
        .kopsci()
        .arg("--fleet")
        .arg(&fleet)
        .args(["render", "--all", "--out"])
        .arg(&manifests)
        .run()
        .success();
    manifests
}

#[test]
fn reference_fleet_in_go_syntax_renders_the_committed_manifests_byte_for_byte() {
    let sandbox = Sandbox::new();
    // The Jinja originals, rendered now (as `render --check` also proves,
    // these are the committed manifests).
    let originals = sandbox.join("originals");
    sandbox
        .kopsci()
        .current_dir(repo_root())
        .args(["render", "--all", "--out"])
        .arg(&originals)
        .run()
        .success();
    // kopsci keeps the values files' key order, which the reference fleet's
    // manifests follow; kops cannot (its values are Go maps), so only
    // `--map-order values` can give the very same bytes.
    let converted = render_converted_fleet(&sandbox, "values");
    let clusters = reference_clusters();
    assert_eq!(clusters.len(), 10, "the reference fleet has ten clusters");
    for cluster in &clusters {
        let name = format!("{cluster}.yaml");
        let rendered = std::fs::read_to_string(converted.join(&name)).expect("rendered");
        let committed = std::fs::read_to_string(repo_root().join("manifests").join(&name))
            .expect("committed manifest");
        let original = std::fs::read_to_string(originals.join(&name)).expect("original");
        assert_eq!(original, committed, "{cluster}: manifests/ is stale");
        assert!(
            rendered == committed,
            "{cluster}: the converted Go templates render differently:\n{}",
            first_difference(&committed, &rendered)
        );
    }
}

#[test]
fn reference_fleet_in_go_syntax_with_gos_sorted_maps_renders_the_same_documents() {
    // What kops itself would render from the Go templates: maps visited in
    // key order. Same data as the committed manifests; only the order of
    // map keys (and of instance groups of one role) differs.
    let sandbox = Sandbox::new();
    let converted = render_converted_fleet(&sandbox, "sorted");
    let mut reordered = 0;
    for cluster in reference_clusters() {
        let name = format!("{cluster}.yaml");
        let rendered = std::fs::read_to_string(converted.join(&name)).expect("rendered");
        let committed = std::fs::read_to_string(repo_root().join("manifests").join(&name))
            .expect("committed manifest");
        if rendered != committed {
            reordered += 1;
        }
        assert_eq!(
            by_kind_and_name(&yaml_documents(&rendered)),
            by_kind_and_name(&yaml_documents(&committed)),
            "{cluster}: the documents differ"
        );
    }
    // The check above must be about something: sorted maps do change bytes.
    assert!(reordered > 0, "no manifest changed with sorted map keys");
}

/// Documents keyed by kind and name; maps compare without regard to key
/// order (serde_json's maps are order-insensitive in equality).
fn by_kind_and_name(docs: &[Value]) -> std::collections::BTreeMap<String, Value> {
    docs.iter()
        .map(|d| {
            (
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap_or("?"),
                    d["metadata"]["name"].as_str().unwrap_or("?")
                ),
                d.clone(),
            )
        })
        .collect()
}

/// `kopsci render --values V… --template TEMPLATE EXTRA…`.
fn render_with_values(sandbox: &Sandbox, values: &[&str], template: &str, extra: &[&str]) -> Run {
    let mut kopsci = sandbox.kopsci().arg("render");
    for v in values {
        kopsci = kopsci.args(["--values", *v]);
    }
    kopsci.args(["--template", template]).args(extra).run()
}

/// `kopsci migrate template SOURCE --out OUT EXTRA…`, which succeeds.
fn migrate_template(sandbox: &Sandbox, source: &str, out: &str, extra: &[&str]) -> Run {
    sandbox
        .kopsci()
        .args(["migrate", "template", source, "--out", out])
        .args(extra)
        .run()
        .success()
}

fn first_difference(expected: &str, actual: &str) -> String {
    for (i, (e, a)) in expected.lines().zip(actual.lines()).enumerate() {
        if e != a {
            return format!("line {}:\n  expected: {e:?}\n  rendered: {a:?}", i + 1);
        }
    }
    format!(
        "{} lines expected, {} rendered",
        expected.lines().count(),
        actual.lines().count()
    )
}

/// The `kops toolbox template` command of every target of the example's
/// Makefile, continuation lines included.
fn makefile_commands() -> Vec<String> {
    let text = std::fs::read_to_string(example_dir().join("Makefile")).expect("Makefile");
    let mut commands = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_start_matches('\t');
        match current.as_mut() {
            Some(command) => {
                command.push('\n');
                command.push_str(line);
            }
            None if line.starts_with("kops toolbox template") => current = Some(line.to_string()),
            None => continue,
        }
        if !line.ends_with('\\')
            && let Some(done) = current.take()
        {
            commands.push(done);
        }
    }
    commands
}

#[test]
fn every_makefile_line_becomes_a_fleet_that_renders_its_manifest() {
    let commands = makefile_commands();
    let clusters = reference_clusters();
    assert_eq!(
        commands.len(),
        clusters.len(),
        "one Makefile target per cluster"
    );
    let sandbox = Sandbox::new();
    for (command, cluster) in commands.iter().zip(&clusters) {
        assert!(command.contains(&format!("--name {cluster} ")), "{command}");
        let out = sandbox.join(cluster);
        // The line as `make -n` prints it: one argument, shell-split by kopsci.
        sandbox
            .kopsci()
            .current_dir(example_dir())
            .args(["migrate", "command", "--map-order", "values", "--out"])
            .arg(&out)
            .arg("--")
            .arg(command)
            .run()
            .success();
        let fleet = std::fs::read_to_string(out.join("kopsci.yaml")).expect("kopsci.yaml");
        assert!(fleet.contains(&format!("  - name: {cluster}\n")), "{fleet}");
        let run = sandbox
            .kopsci()
            .arg("--fleet")
            .arg(out.join("kopsci.yaml"))
            .args(["render", cluster])
            .run()
            .success();
        let committed = std::fs::read_to_string(
            repo_root()
                .join("manifests")
                .join(format!("{cluster}.yaml")),
        )
        .expect("committed manifest");
        assert!(
            run.stdout() == committed,
            "{cluster}:\n{}",
            first_difference(&committed, &run.stdout())
        );
    }
}

// -- kOps' cluster_template.md ------------------------------------------------

#[test]
fn cluster_template_instance_group_example_with_channel_functions() {
    let sandbox = Sandbox::new()
        .file(
            "cluster.tmpl.yaml",
            "\
apiVersion: kops.k8s.io/v1alpha2
kind: InstanceGroup
metadata:
  labels:
  kops.k8s.io/cluster: {{.clusterName}}.{{.dnsZone}}
  name: nodes
spec:
  image: {{ ChannelRecommendedImage .cloud .kubernetesVersion .architecture }}
  kubernetesVersion: {{ ChannelRecommendedKubernetesUpgradeVersion .kubernetesVersion }}
  machineType: m4.large
  maxPrice: \"0.5\"
  maxSize: 20
  minSize: 15
  role: Node
  rootVolumeSize: 100
  subnets:
  - {{.awsRegion}}a
  - {{.awsRegion}}b
  - {{.awsRegion}}c
",
        )
        .file(
            "values.yaml",
            "clusterName: eu1\nkubernetesVersion: 1.7.1\ndnsZone: k8s.example.com\nawsRegion: eu-west-1\ncloud: aws\narchitecture: amd64\n",
        );
    let run = migrate_template(&sandbox, "cluster.tmpl.yaml", "jinja", &[]);
    // The channel functions are reported as values to set.
    let stderr = run.stderr();
    assert!(
        stderr.contains("cluster.tmpl.yaml:8:13: note: `ChannelRecommendedImage .cloud .kubernetesVersion .architecture` needs a value")
            && stderr.contains("set `channelRecommendedImage` in your values"),
        "{stderr}"
    );
    assert!(
        stderr.contains("set `channelRecommendedKubernetesUpgradeVersion` in your values"),
        "{stderr}"
    );
    // Until they are set, the render says which value is missing.
    render_with_values(&sandbox, &["values.yaml"], "jinja/cluster.tmpl.yaml", &[])
        .fails_with(1, &["set `channelRecommendedImage` in your values"]);
    let sandbox = sandbox.file(
        "channel.yaml",
        "channelRecommendedImage: kope.io/k8s-1.7-debian-jessie-amd64-hvm-ebs-2017-07-28\nchannelRecommendedKubernetesUpgradeVersion: 1.7.2\n",
    );
    let run = render_with_values(
        &sandbox,
        &["values.yaml", "channel.yaml"],
        "jinja/cluster.tmpl.yaml",
        &[],
    )
    .success();
    assert_eq!(
        run.stdout(),
        "\
apiVersion: kops.k8s.io/v1alpha2
kind: InstanceGroup
metadata:
  labels:
  kops.k8s.io/cluster: eu1.k8s.example.com
  name: nodes
spec:
  image: kope.io/k8s-1.7-debian-jessie-amd64-hvm-ebs-2017-07-28
  kubernetesVersion: 1.7.2
  machineType: m4.large
  maxPrice: \"0.5\"
  maxSize: 20
  minSize: 15
  role: Node
  rootVolumeSize: 100
  subnets:
  - eu-west-1a
  - eu-west-1b
  - eu-west-1c
"
    );
}

#[test]
fn cluster_template_snippets_example() {
    let sandbox = Sandbox::new()
        .file(
            "cluster.yaml",
            "\
apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  name: {{ .environment }}.{{ .dns_zone }}
spec:
  docker:
    {{ include \"docker\" . | indent 4 }}
  additionalPolicies:
    master: |
      {{ include \"masters.json\" . | indent 6 }}
    node: |
      {{ include \"nodes.json\" . | indent 6 }}
",
        )
        .file(
            "snippets/docker",
            "bridge: \"\"\nlogLevel: {{ .logLevel }}\n",
        )
        .file(
            "snippets/masters.json",
            "[\n  {\"Effect\": \"Allow\", \"Action\": [\"ec2:*\"]}\n]\n",
        )
        // The namespace is flat: components/nodes.json is `nodes.json`.
        .file(
            "snippets/components/nodes.json",
            "[\n  {\"Effect\": \"Allow\", \"Action\": [\"s3:Get*\"]}\n]\n",
        )
        .file(
            "dev.yaml",
            "environment: dev\ndns_zone: k8s.example.com\nlogLevel: warn\n",
        );
    sandbox
        .kopsci()
        .args([
            "migrate",
            "command",
            "--out",
            "fleet",
            "--",
            "kops",
            "toolbox",
            "template",
            "--values",
            "dev.yaml",
            "--template",
            "cluster.yaml",
            "--snippets",
            "snippets",
            "--name",
            "dev.k8s.example.com",
        ])
        .run()
        .success();
    assert_eq!(
        sandbox.read("fleet/templates/cluster.yaml"),
        "\
apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  name: {{ environment }}.{{ dns_zone }}
spec:
  docker:
    {{ include(\"docker\") | kops_indent(4) }}
  additionalPolicies:
    master: |
      {{ include(\"masters.json\") | kops_indent(6) }}
    node: |
      {{ include(\"nodes.json\") | kops_indent(6) }}
"
    );
    let run = sandbox
        .kopsci()
        .args([
            "--fleet",
            "fleet/kopsci.yaml",
            "render",
            "dev.k8s.example.com",
        ])
        .run()
        .success();
    // kOps' indent keeps each snippet's trailing newline: hence the blank
    // lines, as kops renders them.
    assert_eq!(
        run.stdout(),
        "\
apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  name: dev.k8s.example.com
spec:
  docker:
    bridge: \"\"
    logLevel: warn

  additionalPolicies:
    master: |
      [
        {\"Effect\": \"Allow\", \"Action\": [\"ec2:*\"]}
      ]

    node: |
      [
        {\"Effect\": \"Allow\", \"Action\": [\"s3:Get*\"]}
      ]

"
    );
}

#[test]
fn cluster_template_defaults_example_needs_fail_on_missing_false() {
    let sandbox = Sandbox::new()
        .file(
            "ig.yaml",
            "\
{{- $image := \"ami-12345678\" }}{{ $instance := \"m4.large\" }}{{ $node := .node -}}
image: {{ default $image $node.image }}
machineType: {{ default $instance $node.machine_type }}
maxSize: {{ default \"10\" $node.max_size }}
minSize: {{ default \"1\" $node.min_size }}
",
        )
        .file(
            "values.yaml",
            "node:\n  machine_type: t3.large\n  max_size: 3\n",
        );
    // As the page says, `default` on a missing key needs
    // --fail-on-missing=false; with the default, kops fails, and so does
    // the conversion's render.
    migrate_template(&sandbox, "ig.yaml", "strict", &[]);
    render_with_values(&sandbox, &["values.yaml"], "strict/ig.yaml", &[])
        .fails_with(1, &["undefined variable"]);
    migrate_template(&sandbox, "ig.yaml", "lenient", &["--fail-on-missing=false"]);
    let run = render_with_values(
        &sandbox,
        &["values.yaml"],
        "lenient/ig.yaml",
        &["--fail-on-missing=false"],
    )
    .success();
    assert_eq!(
        run.stdout(),
        "image: ami-12345678\nmachineType: t3.large\nmaxSize: 3\nminSize: 1\n"
    );
}

#[test]
fn cluster_template_tojson_example() {
    let sandbox = Sandbox::new()
        .file(
            "t.yaml",
            "# template\nspec:\n  kubernetesApiAccess: {{.allowedIPs | toJson }}\n",
        )
        .file("values.yaml", "allowedIPs:\n- 1.2.3.4/32\n- 4.3.2.1/32\n");
    migrate_template(&sandbox, "t.yaml", "jinja", &[]);
    let run = render_with_values(&sandbox, &["values.yaml"], "jinja/t.yaml", &[]).success();
    assert_eq!(
        run.stdout(),
        "# template\nspec:\n  kubernetesApiAccess: [\"1.2.3.4/32\",\"4.3.2.1/32\"]\n"
    );
}

#[test]
fn cluster_template_set_example_becomes_a_values_layer() {
    let sandbox = Sandbox::new().file(
        "t.yaml",
        "version: {{ toJson .version }}\nfoo: {{ toJson .foo }}\n",
    );
    let kops = "kops toolbox template --template t.yaml --name a.example.com \
                --set 'version=1.0,foo.bar=baz' --set-string 'foo.myArray={1,2,3}' \
                --set 'foo.myArray[1]=false,foo.myArray[3]=4'";
    sandbox
        .kopsci()
        .args(["migrate", "command", "--out", "fleet", "--", kops])
        .run()
        .success();
    let layer: Value =
        serde_saphyr::from_str(&sandbox.read("fleet/values/kops-set.yaml")).expect("YAML");
    // kops applies every --set before any --set-string (the page lists them
    // as if read left to right; kops' code does not): the string list wins.
    assert_eq!(
        layer,
        serde_json::json!({"version": "1.0", "foo": {"bar": "baz", "myArray": ["1", "2", "3"]}})
    );
    let fleet = sandbox
        .kopsci()
        .args(["--fleet", "fleet/kopsci.yaml", "render", "a.example.com"])
        .run()
        .success();
    assert_eq!(
        fleet.stdout(),
        "version: \"1.0\"\nfoo: {\"bar\":\"baz\",\"myArray\":[\"1\",\"2\",\"3\"]}\n"
    );
}

// -- errors ---------------------------------------------------------------------

#[test]
fn unsupported_constructs_stop_the_conversion_and_write_nothing() {
    let sandbox = Sandbox::new()
        .file("templates/a.yaml", "a: {{ .a }}\n")
        .file(
            "templates/b.yaml",
            "b: 1\nc: {{ now | date \"2006\" }}\n{{ define \"x\" }}y{{ end }}\n",
        )
        .file("templates/c.yaml", "d: {{ .d | html }}\n");
    let run = sandbox
        .kopsci()
        .args(["migrate", "template", "templates", "--out", "out"])
        .run()
        .fails_with(
            1,
            &[
                "templates/b.yaml:3:4: unsupported: {{define}}",
                "templates/c.yaml:1:12: unsupported: html (",
            ],
        );
    assert!(!sandbox.join("out").exists(), "{}", run.stderr());
}

#[test]
fn every_unsupported_construct_of_a_file_is_listed() {
    let sandbox = Sandbox::new().file(
        "t.yaml",
        "a: {{ now }}\nb: {{ slice .l 1 }}\nc: {{ env \"X\" }}\n",
    );
    let run = sandbox
        .kopsci()
        .args(["migrate", "template", "t.yaml", "--out", "out"])
        .run()
        .fails_with(
            1,
            &[
                "t.yaml:1:7: unsupported: now (",
                "t.yaml:2:7: unsupported: slice (",
                "t.yaml:3:7: unsupported: env (",
            ],
        );
    assert!(run.stderr().contains("use substr"), "{}", run.stderr());
    // One problem per line, not one line of escaped `\n`s.
    let stderr = run.stderr();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines[0].starts_with("error: t.yaml:1:7: unsupported: now ("),
        "{lines:?}"
    );
    assert!(
        lines[1].starts_with("t.yaml:2:7: unsupported: slice ("),
        "{lines:?}"
    );
    assert!(
        lines[2].starts_with("t.yaml:3:7: unsupported: env ("),
        "{lines:?}"
    );
    assert!(!stderr.contains("\\n"), "{stderr}");
}

#[test]
fn unknown_kops_flags_are_usage_errors() {
    let sandbox = Sandbox::new().file("t.yaml", "a: 1\n");
    sandbox
        .kopsci()
        .args([
            "migrate",
            "command",
            "--",
            "kops",
            "toolbox",
            "template",
            "--template",
            "t.yaml",
            "--name",
            "a.example.com",
            "--valuez",
            "v.yaml",
        ])
        .run()
        .fails_with(64, &["unknown flag `--valuez`", "--values"]);
    sandbox
        .kopsci()
        .args(["migrate", "command", "--", "kops get clusters"])
        .run()
        .fails_with(64, &["expected `kops toolbox template"]);
    sandbox
        .kopsci()
        .args([
            "migrate",
            "command",
            "--",
            "kops toolbox template --template $(T) --name a",
        ])
        .run()
        .fails_with(64, &["expansion"]);
}

#[test]
fn command_without_out_prints_the_fleet_and_writes_nothing() {
    let sandbox = Sandbox::new()
        .file("t/cluster.yaml", "name: {{ .clusterName }}\n")
        .file("v.yaml", "clusterName: a.example.com\n");
    let run = sandbox
        .kopsci()
        .args([
            "migrate",
            "command",
            "--",
            "kops toolbox template --values v.yaml --template t --set x=1",
        ])
        .run()
        .success();
    assert_eq!(
        run.stdout(),
        "\
# Migrated by `kopsci migrate command` from:
#   kops toolbox template --values v.yaml --set x=… --template t --name a.example.com
# Render with `kopsci render a.example.com`; see docs/fleet-file.md.
templates:
  - templates
values:
  - v.yaml
  - values/kops-set.yaml
environments:
  default: {}
clusters:
  - name: a.example.com
    environment: default
"
    );
    assert!(run.stderr().contains("nothing written"), "{}", run.stderr());
    assert!(!sandbox.join("templates").exists());
    assert!(!sandbox.join("values").exists());
}

#[test]
fn existing_files_and_the_templates_themselves_are_never_overwritten() {
    let sandbox = Sandbox::new()
        .file("templates/cluster.yaml", "name: {{ .clusterName }}\n")
        .file("fleet/kopsci.yaml", "# mine\n");
    let kops = "kops toolbox template --template templates/cluster.yaml --name a.example.com";
    sandbox
        .kopsci()
        .args(["migrate", "command", "--out", "fleet", "--", kops])
        .run()
        .fails_with(64, &["fleet/kopsci.yaml exists", "--force"]);
    assert_eq!(sandbox.read("fleet/kopsci.yaml"), "# mine\n");
    // `--out .` would put templates/cluster.yaml over the Go template.
    sandbox
        .kopsci()
        .args(["migrate", "command", "--force", "--out", ".", "--", kops])
        .run()
        .fails_with(64, &["refusing to overwrite the Go template"]);
    assert_eq!(
        sandbox.read("templates/cluster.yaml"),
        "name: {{ .clusterName }}\n"
    );
    sandbox
        .kopsci()
        .args([
            "migrate", "command", "--force", "--out", "fleet", "--", kops,
        ])
        .run()
        .success();
    assert!(sandbox.read("fleet/kopsci.yaml").contains("a.example.com"));
}

#[test]
fn conflicting_cluster_names_are_refused() {
    let sandbox = Sandbox::new()
        .file("t.yaml", "name: {{ .clusterName }}\n")
        .file("v.yaml", "clusterName: from-values.example.com\n");
    sandbox
        .kopsci()
        .args([
            "migrate",
            "command",
            "--",
            "kops toolbox template --values v.yaml --template t.yaml --name other.example.com",
        ])
        .run()
        .fails_with(64, &["from-values.example.com", "other.example.com"]);
    Sandbox::new()
        .file("t.yaml", "a: 1\n")
        .kopsci()
        .args([
            "migrate",
            "command",
            "--",
            "kops toolbox template --template t.yaml",
        ])
        .run()
        .fails_with(64, &["no cluster name"]);
}

#[test]
fn help_shows_examples() {
    for args in [
        vec!["migrate", "--help"],
        vec!["migrate", "template", "--help"],
        vec!["migrate", "command", "--help"],
    ] {
        let run = Sandbox::new().kopsci().args(&args).run().success();
        let out = run.stdout();
        assert!(out.contains("Examples:"), "{args:?}: {out}");
        assert!(out.contains("kopsci migrate"), "{args:?}: {out}");
    }
}
