//! The reference fleet (`kopsci.yaml` at the repository root) reproduces
//! real kOps manifests: each of its clusters, rendered by the built binary
//! from the one shared template set and its values layers, parses to the
//! same documents as the manifest kOps' own integration tests use
//! (`tests/fixtures/manifests/<cluster>.yaml`, vendored from kOps).
//! Key order and formatting may differ; data and document order may not.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use crate::harness::{Kopsci, repo_root};

/// Fewer reproduced clusters than this and the reference fleet no longer
/// proves much.
const MIN_REPRODUCED: usize = 5;

fn fixtures_dir() -> PathBuf {
    let dir = repo_root().join("tests/fixtures/manifests");
    assert!(
        dir.is_dir(),
        "the kOps fixture manifests are missing: expected them in {}",
        dir.display()
    );
    dir
}

/// Runs the built `kopsci` in `dir`, the way a CI job would.
fn kopsci(dir: &Path, args: &[&str]) -> Output {
    Kopsci::new().current_dir(dir).args(args).run().output
}

#[track_caller]
fn assert_success(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({})\n--- stdout\n{stdout}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

fn documents(text: &str, origin: &str) -> Result<Vec<Value>, String> {
    serde_saphyr::from_multiple(text).map_err(|e| format!("{origin} is not valid YAML: {e}"))
}

/// The names of the fleet's clusters, in fleet-file order.
fn fleet_clusters(root: &Path) -> Vec<String> {
    let path = root.join("kopsci.yaml");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let fleet: Value = serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    fleet["clusters"]
        .as_array()
        .unwrap_or_else(|| panic!("{} has no clusters list", path.display()))
        .iter()
        .map(|c| c["name"].as_str().expect("cluster name").to_string())
        .collect()
}

fn show(value: &Value) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// Every path where `rendered` differs from `expected`, one line each.
fn differences(path: &str, expected: &Value, rendered: &Value, out: &mut Vec<String>) {
    match (expected, rendered) {
        (Value::Object(e), Value::Object(r)) => {
            let join = |key: &str| {
                if path.is_empty() {
                    key.to_string()
                } else {
                    format!("{path}.{key}")
                }
            };
            for (key, ev) in e {
                let sub = join(key);
                match r.get(key) {
                    Some(rv) => differences(&sub, ev, rv, out),
                    None => out.push(format!("{sub}: missing (fixture has {})", show(ev))),
                }
            }
            for (key, rv) in r {
                if !e.contains_key(key) {
                    out.push(format!(
                        "{}: not in the fixture (rendered {})",
                        join(key),
                        show(rv)
                    ));
                }
            }
        }
        (Value::Array(e), Value::Array(r)) if e.len() == r.len() => {
            for (i, (ev, rv)) in e.iter().zip(r).enumerate() {
                differences(&format!("{path}[{i}]"), ev, rv, out);
            }
        }
        _ if expected != rendered => out.push(format!(
            "{path}: fixture has {}, rendered {}",
            show(expected),
            show(rendered)
        )),
        _ => {}
    }
}

fn describe(doc: &Value) -> String {
    format!(
        "{} {}",
        doc["kind"].as_str().unwrap_or("?"),
        doc["metadata"]["name"].as_str().unwrap_or("?")
    )
}

/// Compares one cluster's rendered documents with its fixture's; `None`
/// when they are equal, else a readable account of every difference.
fn compare(cluster: &str, expected: &[Value], rendered: &[Value]) -> Option<String> {
    if expected == rendered {
        return None;
    }
    let mut report = vec![format!(
        "{cluster}: rendered {} documents, the fixture has {}",
        rendered.len(),
        expected.len()
    )];
    for i in 0..expected.len().max(rendered.len()) {
        match (expected.get(i), rendered.get(i)) {
            (Some(e), Some(r)) if e != r => {
                report.push(format!(
                    "  document {i} (fixture: {}, rendered: {}):",
                    describe(e),
                    describe(r)
                ));
                let mut lines = Vec::new();
                differences("", e, r, &mut lines);
                report.extend(lines.into_iter().map(|l| format!("    {l}")));
            }
            (Some(e), None) => report.push(format!("  document {i} missing: {}", describe(e))),
            (None, Some(r)) => report.push(format!("  document {i} extra: {}", describe(r))),
            _ => {}
        }
    }
    Some(report.join("\n"))
}

#[test]
fn reference_fleet_reproduces_the_kops_fixture_manifests() {
    let root = repo_root();
    let fixtures = fixtures_dir();
    let clusters = fleet_clusters(&root);
    let mut failures = Vec::new();
    let mut compared = 0;
    for cluster in &clusters {
        let fixture = fixtures.join(format!("{cluster}.yaml"));
        let Ok(fixture_text) = std::fs::read_to_string(&fixture) else {
            failures.push(format!(
                "{cluster}: no fixture {} (every reference-fleet cluster reproduces one)",
                fixture.display()
            ));
            continue;
        };
        let expected = documents(&fixture_text, &fixture.display().to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        let output = kopsci(&root, &["render", cluster]);
        let stdout = assert_success(&output, &format!("kopsci render {cluster}"));
        let rendered = match documents(&stdout, &format!("the rendered {cluster}")) {
            Ok(docs) => docs,
            Err(e) => {
                failures.push(format!("{e}\n{stdout}"));
                continue;
            }
        };
        compared += 1;
        if let Some(report) = compare(cluster, &expected, &rendered) {
            failures.push(report);
        }
    }
    assert!(
        failures.is_empty(),
        "the reference fleet does not reproduce its fixtures:\n{}",
        failures.join("\n\n")
    );
    assert!(
        compared >= MIN_REPRODUCED,
        "only {compared} clusters compared with their fixtures, want at least {MIN_REPRODUCED}"
    );
}

#[test]
fn reference_fleet_manifests_are_up_to_date() {
    let output = kopsci(&repo_root(), &["render", "--check"]);
    assert_success(
        &output,
        "kopsci render --check (reference fleet; run `kopsci render --all` and commit manifests/)",
    );
}

#[test]
fn basic_example_manifests_are_up_to_date() {
    let dir = repo_root().join("examples/basic");
    let output = kopsci(&dir, &["render", "--check"]);
    assert_success(
        &output,
        "kopsci render --check in examples/basic (run `kopsci render --all` there)",
    );
}

#[test]
fn basic_example_renders_every_cluster_as_kops_documents() {
    let dir = repo_root().join("examples/basic");
    for cluster in fleet_clusters(&dir) {
        let output = kopsci(&dir, &["render", &cluster]);
        let stdout = assert_success(
            &output,
            &format!("kopsci render {cluster} (examples/basic)"),
        );
        let docs = documents(&stdout, &cluster).unwrap_or_else(|e| panic!("{e}\n{stdout}"));
        assert_eq!(docs[0]["kind"], "Cluster", "{cluster}: first document");
        assert_eq!(docs[0]["metadata"]["name"], cluster.as_str());
        assert!(docs.len() > 1, "{cluster}: no instance groups");
        for doc in &docs[1..] {
            assert_eq!(doc["kind"], "InstanceGroup", "{cluster}: {}", describe(doc));
            assert_eq!(
                doc["metadata"]["labels"]["kops.k8s.io/cluster"],
                cluster.as_str(),
                "{cluster}: {} is labelled for another cluster",
                describe(doc)
            );
        }
    }
}

/// The vendored fixtures must stay the ones kOps wrote: when the shared
/// fixtures are next to the repository (as in this project's CI), every
/// file must match byte for byte. A GitLab clone has no `shared/`; there the
/// vendored copy is all there is.
#[test]
fn vendored_fixtures_match_the_shared_ones() {
    let shared = repo_root().join("../shared/fixtures");
    if !shared.is_dir() {
        eprintln!("no {} here: nothing to compare", shared.display());
        return;
    }
    let pairs = [
        (
            shared.join("manifests"),
            repo_root().join("tests/fixtures/manifests"),
        ),
        (
            shared.join("kops-state"),
            repo_root().join("examples/state"),
        ),
    ];
    for (theirs, ours) in pairs {
        let mut compared = 0;
        for entry in walkdir::WalkDir::new(&theirs) {
            let entry = entry.unwrap();
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(&theirs).unwrap();
            let mine = std::fs::read(ours.join(rel)).unwrap_or_else(|e| {
                panic!("{} missing from {}: {e}", rel.display(), ours.display())
            });
            assert!(
                mine == std::fs::read(entry.path()).unwrap(),
                "{} differs from {}",
                ours.join(rel).display(),
                entry.path().display()
            );
            compared += 1;
        }
        assert!(
            compared >= 10,
            "only {compared} files under {}",
            theirs.display()
        );
    }
}
