//! The stand-in against a real S3-compatible server (SeaweedFS, through
//! kopsci's test harness): the same commands on an `s3://bucket/prefix`
//! store, configured the kOps way (`S3_ENDPOINT`, `S3_REGION`,
//! `S3_ACCESS_KEY_ID`, `S3_SECRET_ACCESS_KEY`).

mod support;

use support::s3::S3Server;
use support::{Bench, manifest};

const MINIMAL: &str = "minimal-aws.example.com";

#[test]
fn s3_store_create_update_roll_delete() {
    let server = S3Server::start();
    server.create_bucket("kops-state");
    // Something else in the bucket, outside the store's prefix, is left alone.
    server.put("kops-state", "other/file", "untouched");

    let mut bench = Bench::new();
    for (k, v) in server.env() {
        bench.set(k, &v);
    }
    bench.set("KOPS_STATE_STORE", "s3://kops-state/clusters");
    let manifest = manifest(MINIMAL).to_string_lossy().into_owned();

    bench.run(&["create", "-f", &manifest]).ok();
    let run = bench.run(&["create", "-f", &manifest]).fails();
    assert_eq!(
        run.stderr,
        format!("Error: cluster \"{MINIMAL}\" already exists\n")
    );
    assert_eq!(
        bench.run(&["get", "clusters"]).ok().stdout,
        "NAME\t\t\tCLOUD\tZONES\nminimal-aws.example.com\taws\tus-test-1a\n"
    );
    let groups = bench
        .run(&["get", "ig", "--name", MINIMAL, "-o", "yaml"])
        .ok()
        .stdout;
    assert!(groups.contains("name: master-us-test-1a\n") && groups.contains("name: nodes\n"));

    let out = bench.run(&["update", "cluster", MINIMAL]).ok().stdout;
    assert!(out.starts_with("Will create resources:\n"), "{out}");
    bench.run(&["update", "cluster", MINIMAL, "--yes"]).ok();
    assert_eq!(
        bench.run(&["update", "cluster", MINIMAL]).ok().stdout,
        "No changes need to be applied\n"
    );
    assert_eq!(
        bench
            .run(&["version", "--server", "--short", "--name", MINIMAL])
            .ok()
            .stdout,
        "1.34.1\n1.34.1\n"
    );

    let edited = support::edited_manifest(bench.cwd.path(), MINIMAL, |t| {
        t.replace("machineType: t2.medium", "machineType: t3.large")
    });
    bench
        .run(&["replace", "-f", &edited.to_string_lossy()])
        .ok();
    let out = bench.run(&["update", "cluster", MINIMAL]).ok().stdout;
    assert!(
        out.contains("  \tInstanceType        \t t2.medium -> t3.large\n"),
        "{out}"
    );
    bench.run(&["update", "cluster", MINIMAL, "--yes"]).ok();
    let out = bench
        .run(&["rolling-update", "cluster", MINIMAL])
        .ok()
        .stdout;
    assert!(out.contains("nodes\t\t\tNeedsUpdate\t2\t"), "{out}");

    bench
        .run(&["delete", "ig", "nodes", "--name", MINIMAL, "--yes"])
        .ok();
    let out = bench.run(&["get", "ig", "--name", MINIMAL]).ok().stdout;
    assert!(!out.contains("nodes"), "{out}");

    // The wrong credentials are an S3 error, not a crash.
    bench.set("S3_SECRET_ACCESS_KEY", "wrong");
    let run = bench.run(&["get", "clusters"]).fails();
    assert!(run.stderr.starts_with("Error: "), "{run:?}");
}
