//! Unit tests of the fleet file: parsing, validation, resolution.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;
use crate::aws::{AwsSettings, ExternalId};
use crate::errors::{Error, FleetError};

fn parse(src: &str) -> Result<Fleet> {
    Fleet::parse(src, Path::new("kopsci.yaml"), Path::new("/fleet"))
}

const MINIMAL: &str = "\
state: s3://bucket/prefix
templates: [templates]
environments:
  dev: {}
  prod:
    needs: [dev]
    state: file:///srv/state
clusters:
  - {name: a.example.com, environment: dev}
  - {name: b.example.com, environment: prod, state: s3://other}
  - {name: c.example.com, environment: prod, values: [v/c.yaml]}
";

#[test]
fn paths_resolve_against_the_fleet_directory() {
    let fleet = parse(MINIMAL).unwrap();
    assert_eq!(fleet.templates(), [PathBuf::from("/fleet/templates")]);
    assert_eq!(fleet.manifests_dir(), PathBuf::from("/fleet/manifests"));
    assert_eq!(
        fleet.clusters()[2].values,
        [ValuesSource::File(PathBuf::from("/fleet/v/c.yaml"))]
    );
}

#[test]
fn state_store_precedence_cluster_then_environment_then_fleet() {
    let fleet = parse(MINIMAL).unwrap();
    let states: Vec<_> = fleet
        .clusters()
        .iter()
        .map(|c| fleet.state_for(c).map(|s| s.to_string()))
        .collect();
    assert_eq!(
        states,
        [
            Some("s3://bucket/prefix".to_string()),
            Some("s3://other".to_string()),
            Some("file:///srv/state".to_string())
        ]
    );
}

#[test]
fn select_keeps_order_and_collapses_duplicates() {
    let fleet = parse(MINIMAL).unwrap();
    let names = ["c.example.com", "a.example.com", "c.example.com"].map(String::from);
    let selected: Vec<_> = fleet
        .select(&names)
        .unwrap()
        .iter()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(selected, ["c.example.com", "a.example.com"]);
    assert!(matches!(
        fleet.select(&["x.example.com".to_string()]),
        Err(Error::UnknownCluster { .. })
    ));
}

#[test]
fn needs_cycles_are_found() {
    let err = parse(
            "templates: [t]\nenvironments:\n  a: {needs: [c]}\n  b: {needs: [a]}\n  c: {needs: [b]}\nclusters: []\n",
        )
        .unwrap_err()
        .to_string();
    assert!(err.contains("cycle"), "{err}");
    assert!(err.contains("a → c → b → a"), "{err}");
}

#[test]
fn check_flags_only_differing_manifests() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.example.com.yaml"), "same\n").unwrap();
    std::fs::write(dir.path().join("b.example.com.yaml"), "old\n").unwrap();
    let rendered = ["a.example.com", "b.example.com", "c.example.com"].map(|c| RenderedManifest {
        cluster: c.to_string(),
        text: if c == "a.example.com" {
            "same\n"
        } else {
            "new\n"
        }
        .to_string(),
    });
    let stale = check(dir.path(), &rendered).unwrap();
    let names: Vec<_> = stale.iter().map(|d| d.cluster.as_str()).collect();
    assert_eq!(names, ["b.example.com", "c.example.com"]);
    assert!(stale[0].unified(false).contains("-old\n+new\n"));
    assert!(stale[1].committed.is_none());
    assert!(stale[0].unified(true).contains("\x1b[32m+new\x1b[0m"));
}

const AWS: &str = "\
templates: [t]
aws:
  role_arn: arn:aws:iam::111111111111:role/kops
  region: eu-west-1
environments:
  dev: {}
  prod:
    aws:
      role_arn: arn:aws:iam::222222222222:role/kops
      external_id_env: PROD_EXTERNAL_ID
clusters:
  - {name: a.example.com, environment: dev}
  - name: b.example.com
    environment: prod
    aws: {region: us-east-2, session_name: kopsci-b, duration_seconds: 7200}
  - name: c.example.com
    environment: dev
    aws: {external_id: \"team-a:42\"}
";

#[test]
fn aws_settings_merge_fleet_then_environment_then_cluster() {
    let fleet = parse(AWS).unwrap();
    let aws: Vec<AwsSettings> = fleet.clusters().iter().map(|c| fleet.aws_for(c)).collect();
    assert_eq!(
        aws[0],
        AwsSettings {
            role_arn: Some("arn:aws:iam::111111111111:role/kops".into()),
            region: Some("eu-west-1".into()),
            ..AwsSettings::default()
        }
    );
    assert_eq!(
        aws[1],
        AwsSettings {
            role_arn: Some("arn:aws:iam::222222222222:role/kops".into()),
            external_id: Some(ExternalId::Env("PROD_EXTERNAL_ID".into())),
            region: Some("us-east-2".into()),
            session_name: Some("kopsci-b".into()),
            duration_seconds: Some(7200),
        }
    );
    assert_eq!(
        aws[2].external_id,
        Some(ExternalId::Literal("team-a:42".into()))
    );
    assert!(!format!("{:?}", aws[2]).contains("team-a:42"));
    // No `aws:` anywhere: kops inherits the job's identity.
    let plain = parse(MINIMAL).unwrap();
    assert_eq!(plain.aws_for(&plain.clusters()[0]), AwsSettings::default());
}

#[test]
fn invalid_aws_settings_name_the_key() {
    let cases = [
        (
            "aws: {role_arn: kops}",
            "aws.role_arn: expected an IAM role ARN",
        ),
        (
            "aws: {role_arn: \"arn:aws:iam::1:user/x\"}",
            "expected an IAM role ARN",
        ),
        ("aws: {region: EU WEST}", "aws.region"),
        ("aws: {rolearn: x}", "unknown field"),
        (
            "aws: {role_arn: \"arn:aws:iam::1:role/k\", duration_seconds: 60}",
            "aws.duration_seconds: expected 900 to 43200",
        ),
        (
            "aws: {role_arn: \"arn:aws:iam::1:role/k\", session_name: \"a b\"}",
            "aws.session_name",
        ),
        (
            "aws: {role_arn: \"arn:aws:iam::1:role/k\", external_id: x, external_id_env: Y}",
            "not both",
        ),
        (
            "aws: {role_arn: \"arn:aws:iam::1:role/k\", external_id: \"bad id!\"}",
            "aws.external_id: expected 2 to 1224",
        ),
        ("aws: {external_id: abc}", "only apply with aws.role_arn"),
    ];
    for (aws, want) in cases {
        let src = format!(
            "templates: [t]\n{aws}\nenvironments: {{dev: {{}}}}\nclusters: [{{name: a.example.com, environment: dev}}]\n"
        );
        let err = parse(&src).unwrap_err().to_string();
        assert!(err.contains(want), "{aws}: {err}");
        assert!(err.starts_with("kopsci.yaml:"), "{err}");
        assert!(!err.contains("bad id!"), "external ID echoed: {err}");
    }
    let err = parse("templates: [t]\nenvironments: {dev: {aws: {regio: x}}}\nclusters: []\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown field"), "{err}");
}

fn name_strategy() -> impl Strategy<Value = String> {
    proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", 1..4).prop_map(|l| l.join("."))
}

proptest! {
    #[test]
    fn parse_never_panics(src in ".{0,400}") {
        let _ = parse(&src);
    }

    #[test]
    fn parse_never_panics_on_near_valid_yaml(
        lines in proptest::collection::vec(
            prop_oneof![
                Just("templates: [t]".to_string()),
                Just("clusters:".to_string()),
                Just("- name: a.example.com".to_string()),
                Just("  environment: dev".to_string()),
                Just("environments: {dev: {needs: [dev]}}".to_string()),
                Just("state: s3://".to_string()),
                "[ -~]{0,20}",
            ],
            0..8,
        )
    ) {
        let _ = parse(&lines.join("\n"));
    }

    #[test]
    fn generated_fleets_parse_with_their_clusters(
        names in proptest::collection::btree_set(name_strategy(), 0..8),
        envs in proptest::collection::vec("[a-z]{1,6}", 1..4),
    ) {
        let mut envs = envs;
        envs.sort();
        envs.dedup();
        let mut src = String::from("templates: [templates]\nenvironments:\n");
        for (i, env) in envs.iter().enumerate() {
            src.push_str(&format!("  \"{env}\":\n"));
            if i > 0 {
                src.push_str(&format!("    needs: [\"{}\"]\n", envs[i - 1]));
            }
        }
        src.push_str("clusters:\n");
        for (i, name) in names.iter().enumerate() {
            src.push_str(&format!(
                "  - name: \"{name}\"\n    environment: \"{}\"\n",
                envs[i % envs.len()]
            ));
        }
        let fleet = parse(&src).map_err(|e| TestCaseError::fail(format!("{e}\n{src}")))?;
        let parsed: Vec<&str> = fleet.cluster_names();
        let expected: Vec<&str> = names.iter().map(String::as_str).collect();
        prop_assert_eq!(parsed, expected);
        for (i, cluster) in fleet.clusters().iter().enumerate() {
            prop_assert_eq!(&cluster.environment, &envs[i % envs.len()]);
        }
    }
}

const OPERATIONS: &str = "\
templates: [t]
apply: {strategy: reconcile, timeout: 2h}
validation_timeout: 20m
ignore: [\"docs/**\", \"*.md\"]
environments:
  dev:
    auto_apply: true
    prune_instance_groups: true
  prod:
    apply: update-roll
    needs: [dev]
    kops: {api_server: \"https://api.internal.prod.example.com\"}
clusters:
  - {name: a.example.com, environment: dev}
  - name: b.example.com
    environment: prod
    validate: false
    drain_timeout: 5m
    values: [v/b.yaml, {terraform_output: tf/b.json}]
  - {name: old.example.com, environment: prod, absent: true}
";

#[test]
fn apply_settings_resolve_fleet_then_environment_then_cluster() {
    let fleet = parse(OPERATIONS).unwrap();
    let [a, b, old] = fleet.clusters() else {
        panic!("three clusters")
    };
    assert_eq!(a.apply.strategy, ApplyStrategy::Reconcile);
    assert_eq!(a.apply.timeout.gitlab(), "2h");
    assert!(a.apply.auto_apply && a.apply.prune_instance_groups && a.apply.validate);
    assert_eq!(a.apply.validation_wait().go(), "20m");
    assert_eq!(b.apply.strategy, ApplyStrategy::UpdateRoll);
    assert!(!b.apply.auto_apply && !b.apply.prune_instance_groups && !b.apply.validate);
    assert_eq!(b.apply.drain_timeout.map(|t| t.go()), Some("5m".into()));
    assert_eq!(
        b.apply.api_server.as_deref(),
        Some("https://api.internal.prod.example.com")
    );
    assert_eq!(
        b.values,
        [
            ValuesSource::File(PathBuf::from("/fleet/v/b.yaml")),
            ValuesSource::TerraformOutput(PathBuf::from("/fleet/tf/b.json")),
        ]
    );
    assert!(old.absent && !a.absent);
    assert_eq!(
        fleet
            .present_clusters()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["a.example.com", "b.example.com"]
    );
    assert!(fleet.is_ignored("docs/setup/aws.md"));
    assert!(fleet.is_ignored("README.md"));
    assert!(!fleet.is_ignored("values/base.yaml"));
    // Defaults when nothing is set.
    let plain = parse(MINIMAL).unwrap();
    assert_eq!(plain.clusters()[0].apply, ApplySettings::default());
    assert_eq!(plain.clusters()[0].apply.timeout.gitlab(), "3h");
}

#[test]
fn invalid_operations_keys_name_the_key_and_position() {
    let cases = [
        (
            "apply: yolo",
            "kopsci.yaml:2:",
            "apply: unknown strategy `yolo`",
        ),
        (
            "apply: {timeout: soon}",
            "kopsci.yaml:2:",
            "apply.timeout: expected a duration",
        ),
        (
            "apply: {strategy: reconcile, retries: 3}",
            "kopsci.yaml",
            "unknown field `retries`",
        ),
        (
            "validation_timeout: 0s",
            "kopsci.yaml:2:",
            "validation_timeout",
        ),
        (
            "kops: {api_server: \"api.example.com\"}",
            "kopsci.yaml:2:",
            "kops.api_server: expected the API server's URL",
        ),
        ("ignore: [\"a[\"]", "kopsci.yaml:2:", "ignore: invalid glob"),
        (
            "state: s3://bad!bucket",
            "kopsci.yaml:2:",
            "invalid state store `s3://bad!bucket`",
        ),
        (
            "values: [{terraform: x.json}]",
            "kopsci.yaml",
            "unknown field `terraform`",
        ),
    ];
    for (line, at, want) in cases {
        let src = format!(
            "templates: [t]\n{line}\nenvironments: {{dev: {{}}}}\nclusters: [{{name: a.example.com, environment: dev}}]\n"
        );
        let err = parse(&src).unwrap_err().to_string();
        assert!(err.starts_with(at), "{line}: {err}");
        assert!(err.contains(want), "{line}: {err}");
    }
    let err = parse(
        "templates: [t]\nenvironments:\n  dev:\n    kops: {version: \">=1.30\"}\nclusters: []\n",
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("environments.dev.kops.version: the kops version is fleet-wide"),
        "{err}"
    );
}

#[test]
fn environment_names_are_validated_with_their_position() {
    for bad in ["\"prod\\nx\"", "\"a;b\"", "\"$(id)\"", "\"a b\""] {
        let src = format!("templates: [t]\nenvironments:\n  {bad}: {{}}\nclusters: []\n");
        let err = parse(&src).unwrap_err().to_string();
        assert!(err.starts_with("kopsci.yaml:3:"), "{bad}: {err}");
        assert!(err.contains("invalid environment name"), "{bad}: {err}");
        assert!(!err.contains('\n'), "{bad}: {err}");
    }
}

#[test]
fn unknown_names_suggest_the_closest_one() {
    let err = parse(
        "templates: [t]\nenvironments: {production: {}}\nclusters: [{name: a.example.com, environment: prodution}]\n",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("did you mean `production`?"), "{err}");
    let fleet = parse(MINIMAL).unwrap();
    let err = fleet.cluster("a.exmaple.com").unwrap_err().to_string();
    assert!(
        err.contains("unknown cluster `a.exmaple.com`; did you mean `a.example.com`?"),
        "{err}"
    );
    let err = fleet.cluster("zzz").unwrap_err().to_string();
    assert!(!err.contains("did you mean"), "{err}");
}

#[test]
fn state_urls_are_parsed_once_with_the_same_rules_as_state() {
    // A relative file:// store in the fleet file is taken from the fleet
    // file's directory; --state takes it from the current directory.
    let fleet = parse("templates: [t]\nstate: file://state\nenvironments: {dev: {}}\nclusters: [{name: a.example.com, environment: dev}]\n").unwrap();
    assert_eq!(
        fleet.state_for(&fleet.clusters()[0]).map(|s| s.to_string()),
        Some("file:///fleet/state".to_string())
    );
    let store = fleet
        .store_for(
            &fleet.clusters()[0],
            Some(&crate::state::StoreUrl::parse("s3://override").unwrap()),
        )
        .unwrap();
    assert_eq!(store.to_string(), "s3://override");
    let none = parse("templates: [t]\nenvironments: {dev: {}}\nclusters: [{name: a.example.com, environment: dev}]\n").unwrap();
    let err = none
        .store_for(&none.clusters()[0], None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no state store for cluster `a.example.com`"),
        "{err}"
    );
}

#[test]
fn a_missing_fleet_file_is_one_error_whichever_way_it_was_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("kopsci.yaml");
    for err in [
        Fleet::discover(Some(&missing)).unwrap_err(),
        Fleet::load(&missing).unwrap_err(),
    ] {
        assert!(
            matches!(&err, Error::Fleet(f) if matches!(**f, FleetError::NotFound { .. }))
                && err.is_usage(),
            "{err}"
        );
    }
}
