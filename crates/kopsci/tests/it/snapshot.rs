//! `kopsci snapshot` and `snapshot verify` against a real S3 server
//! (SeaweedFS) and `file://` stores: byte-for-byte copies, pagination,
//! filters, the record, verify, and every safety rule (traversal keys,
//! symlinks, modes, atomicity under failures and signals, retries).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::support::{self, Proxy, S3Server};

const BUCKET: &str = "kops-state";
const CLUSTER: &str = "minimal-aws.example.com";

/// `kopsci snapshot` of `cluster` from `state` into `out`, reaching the
/// store through `endpoint`.
fn snapshot(endpoint: &str, state: &str, cluster: &str, out: &Path) -> Command {
    let mut cmd = support::kopsci();
    cmd.envs(support::s3::env_for(endpoint))
        .args(["snapshot", "--state", state, "--name", cluster, "--out"])
        .arg(out);
    cmd
}

fn verify(endpoint: &str, dir: &Path) -> Command {
    let mut cmd = support::kopsci();
    cmd.envs(support::s3::env_for(endpoint))
        .args(["snapshot", "verify"])
        .arg(dir);
    cmd
}

/// `kopsci snapshot` of [`CLUSTER`] from `s3://kops-state` into `out`,
/// run to the end.
#[track_caller]
fn snapshot_cluster(endpoint: &str, out: &Path) -> Output {
    run(&mut snapshot(endpoint, "s3://kops-state", CLUSTER, out))
}

/// `kopsci snapshot` of [`CLUSTER`] with `args`, started in the background
/// with its output piped.
fn spawn_snapshot(endpoint: &str, out: &Path, args: &[&str]) -> std::process::Child {
    snapshot(endpoint, "s3://kops-state", CLUSTER, out)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start kopsci snapshot")
}

/// `n` small instance-group objects of [`CLUSTER`].
fn instance_groups(n: usize) -> Vec<(String, Vec<u8>)> {
    (0..n)
        .map(|i| {
            (
                format!("{CLUSTER}/instancegroup/ig-{i:04}"),
                vec![b'x'; 512],
            )
        })
        .collect()
}

/// A proxy to `server` that delays every response: a copy through it
/// takes seconds.
fn slow_proxy(server: &S3Server) -> Proxy {
    Proxy::builder()
        .delay(Duration::from_millis(20))
        .start(server.addr())
}

#[track_caller]
fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run kopsci")
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[track_caller]
fn expect_code(out: &Output, code: i32) {
    assert_eq!(out.status.code(), Some(code), "{}", show(out));
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        show(out)
    );
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn record(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join(".kopsci-snapshot.json")).expect("read record");
    serde_json::from_str(&text).expect("record is JSON")
}

/// A server holding all fixture clusters under `s3://kops-state/team-a/`.
fn fixture_server() -> S3Server {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let n = server.seed_dir(BUCKET, "team-a", &support::kops_state_fixtures());
    assert!(n > 300, "seeded only {n} fixture objects");
    server
}

#[track_caller]
fn assert_private(dir: &Path) {
    for (path, is_dir, mode) in support::modes(dir) {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} has mode {mode:o}", path.display());
    }
}

/// Nothing in `parent` but what was there before: no snapshot, no
/// temporary directory.
#[track_caller]
fn assert_no_debris(parent: &Path, before: &[&str]) {
    let names = support::entries(parent);
    assert_eq!(names, before, "left behind in {}", parent.display());
}

#[test]
fn snapshots_of_every_fixture_cluster_are_byte_for_byte_and_private() {
    let server = fixture_server();
    let work = tempfile::tempdir().unwrap();
    for cluster in support::fixture_clusters() {
        let out = work.path().join(format!("snap-{cluster}"));
        let result = run(&mut snapshot(
            &server.endpoint(),
            "s3://kops-state/team-a",
            &cluster,
            &out,
        ));
        expect_code(&result, 0);
        let fixture = support::tree(&support::kops_state_fixtures().join(&cluster));
        let copy = support::tree(&out.join(&cluster));
        assert_eq!(
            copy.keys().collect::<Vec<_>>(),
            fixture.keys().collect::<Vec<_>>(),
            "{cluster}: different objects"
        );
        assert!(copy == fixture, "{cluster}: contents differ");
        assert_private(&out);
        assert_eq!(
            support::entries(&out),
            [".kopsci-snapshot.json".to_string(), cluster.clone()]
        );

        // The record names every object with its size and hash.
        let rec = record(&out);
        assert_eq!(rec["format"], "kopsci-snapshot/v1");
        assert_eq!(rec["source"], "s3://kops-state/team-a");
        assert_eq!(rec["cluster"], cluster.as_str());
        assert!(rec["time"].as_str().unwrap().ends_with('Z'));
        let objects = rec["objects"].as_array().unwrap();
        assert_eq!(objects.len(), fixture.len());
        for object in objects {
            let key = object["key"].as_str().unwrap();
            let bytes = &fixture[key];
            assert_eq!(
                object["size"].as_u64().unwrap(),
                bytes.len() as u64,
                "{key}"
            );
            assert_eq!(
                object["sha256"].as_str().unwrap(),
                hex(&Sha256::digest(bytes)),
                "{key}"
            );
            assert!(
                object["etag"].as_str().is_some_and(|e| !e.contains('"')),
                "{key}"
            );
        }

        // One summary line: objects, bytes, seconds. Contents never appear.
        let line = stdout(&result);
        let total: usize = fixture.values().map(Vec::len).sum();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(
            line.contains(&format!("{} objects, {total} bytes in ", fixture.len())),
            "{line}"
        );
        assert!(line.contains(" s "), "{line}");
        // Not a terminal: no progress bar, nothing on stderr.
        assert_eq!(stderr(&result), "", "{}", show(&result));
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn listings_of_more_than_1000_keys_are_paginated() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let cluster = "big.example.com";
    let mut objects: Vec<(String, Vec<u8>)> = (0..1100)
        .map(|i| {
            (
                format!("{cluster}/instancegroup/ig-{i:04}"),
                format!("ig {i}\n").into_bytes(),
            )
        })
        .collect();
    objects.push((format!("{cluster}/config"), b"config\n".to_vec()));
    server.put_many(BUCKET, objects);

    // Through a pass-through proxy, to count the requests: two listing
    // pages, then one GET per object.
    let proxy = Proxy::builder().start(server.addr());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    let result = run(&mut snapshot(
        &proxy.endpoint(),
        "s3://kops-state",
        cluster,
        &out,
    ));
    expect_code(&result, 0);
    assert_eq!(proxy.requests(), 2 + 1101);
    let copy = support::tree(&out.join(cluster));
    assert_eq!(copy.len(), 1101);
    assert_eq!(copy["instancegroup/ig-1099"], b"ig 1099\n");
    assert_eq!(record(&out)["objects"].as_array().unwrap().len(), 1101);
    assert!(
        stdout(&result).contains("1101 objects"),
        "{}",
        show(&result)
    );
}

fn backup_server() -> S3Server {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    server.seed_dir(
        BUCKET,
        CLUSTER,
        &support::kops_state_fixtures().join(CLUSTER),
    );
    for store in ["main", "events"] {
        for stamp in ["2024-05-01T10:00:00Z-000001", "2024-05-01T10:15:00Z-000002"] {
            let dir = format!("{CLUSTER}/backups/etcd/{store}/{stamp}");
            server.put(BUCKET, &format!("{dir}/etcd.backup.gz"), vec![7u8; 2048]);
            server.put(BUCKET, &format!("{dir}/_etcd_backup.meta"), b"{}".to_vec());
        }
    }
    server
}

#[test]
fn etcd_backup_data_is_skipped_unless_asked_for() {
    let server = backup_server();
    let work = tempfile::tempdir().unwrap();
    let backups = |dir: &Path| -> Vec<String> {
        support::tree(&dir.join(CLUSTER))
            .into_keys()
            .filter(|k| k.starts_with("backups/"))
            .collect()
    };

    let out = work.path().join("default");
    let result = snapshot_cluster(&server.endpoint(), &out);
    expect_code(&result, 0);
    assert_eq!(
        backups(&out),
        [
            "backups/etcd/events/control/etcd-cluster-spec",
            "backups/etcd/main/control/etcd-cluster-spec"
        ]
    );
    assert!(
        stdout(&result).contains("(8 skipped by filters)"),
        "{}",
        show(&result)
    );
    assert_eq!(record(&out)["filter"]["with_backups"], false);

    let out = work.path().join("all");
    let result =
        run(snapshot(&server.endpoint(), "s3://kops-state", CLUSTER, &out).arg("--with-backups"));
    expect_code(&result, 0);
    assert_eq!(backups(&out).len(), 10);

    // --include brings chosen backups back; --exclude wins over everything.
    let out = work.path().join("globs");
    let result = run(
        snapshot(&server.endpoint(), "s3://kops-state", CLUSTER, &out).args([
            "--include",
            "backups/etcd/main/*/_etcd_backup.meta",
            "--exclude",
            "addons/**",
            "--exclude",
            "backups/etcd/*/control/*",
        ]),
    );
    expect_code(&result, 0);
    assert_eq!(
        backups(&out),
        [
            "backups/etcd/main/2024-05-01T10:00:00Z-000001/_etcd_backup.meta",
            "backups/etcd/main/2024-05-01T10:15:00Z-000002/_etcd_backup.meta"
        ]
    );
    assert!(!out.join(CLUSTER).join("addons").exists());
    assert!(out.join(CLUSTER).join("config").is_file());
    let filter = &record(&out)["filter"];
    assert_eq!(
        filter["include"][0],
        "backups/etcd/main/*/_etcd_backup.meta"
    );
    assert_eq!(filter["exclude"][1], "backups/etcd/*/control/*");
}

#[test]
fn verify_reports_added_removed_and_modified_objects() {
    let server = backup_server();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    expect_code(&snapshot_cluster(&server.endpoint(), &out), 0);

    let result = run(&mut verify(&server.endpoint(), &out));
    expect_code(&result, 0);
    assert!(
        stdout(&result).starts_with("live store unchanged"),
        "{}",
        show(&result)
    );

    // A new etcd backup is outside the snapshot's filter: still unchanged.
    server.put(
        BUCKET,
        &format!("{CLUSTER}/backups/etcd/main/2024-05-02T00:00:00Z-000003/etcd.backup.gz"),
        vec![1u8; 100],
    );
    expect_code(&run(&mut verify(&server.endpoint(), &out)), 0);

    // Same size, different bytes: only the content hash can tell.
    let config_path = support::kops_state_fixtures().join(CLUSTER).join("config");
    let mut config = std::fs::read(&config_path).unwrap();
    let last = config.len() - 2;
    config[last] = if config[last] == b'x' { b'y' } else { b'x' };
    server.put(BUCKET, &format!("{CLUSTER}/config"), config);
    server.put(
        BUCKET,
        &format!("{CLUSTER}/instancegroup/extra-nodes"),
        b"kind: InstanceGroup\n".to_vec(),
    );
    server.delete(BUCKET, &format!("{CLUSTER}/kops-version.txt"));

    let result = run(&mut verify(&server.endpoint(), &out));
    expect_code(&result, 3);
    let text = stdout(&result);
    assert!(
        text.starts_with("live store changed since the snapshot of s3://kops-state/"),
        "{text}"
    );
    assert!(text.contains("1 added, 1 removed, 1 modified"), "{text}");
    assert!(
        text.contains("  added    instancegroup/extra-nodes\n"),
        "{text}"
    );
    assert!(text.contains("  removed  kops-version.txt\n"), "{text}");
    assert!(text.contains("  modified config\n"), "{text}");

    // A store that cannot be reached is an error (1), not "changed".
    let result = run(verify("http://127.0.0.1:9", &out).args(["--max-attempts", "1"]));
    expect_code(&result, 1);

    // Not a snapshot directory.
    let result = run(&mut verify(&server.endpoint(), work.path()));
    expect_code(&result, 1);
    assert!(
        stderr(&result).contains("not a kopsci snapshot directory"),
        "{}",
        show(&result)
    );
}

#[test]
fn keys_that_would_escape_the_snapshot_are_refused() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    server.seed_dir(
        BUCKET,
        CLUSTER,
        &support::kops_state_fixtures().join(CLUSTER),
    );
    let work = tempfile::tempdir().unwrap();
    let hostile = [
        ("../../escape", "`..` path segment"),
        ("pki/../../../escape", "`..` path segment"),
        ("/etc/escape", "absolute path"),
        ("pki\\..\\..\\escape", "contains a backslash"),
        ("pki//escape", "empty path segment"),
        ("./escape", "`.` path segment"),
    ];
    for (i, (rel, reason)) in hostile.iter().enumerate() {
        // A listing no honest server sends: the proxy forges it.
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <Name>{BUCKET}</Name><Prefix>{CLUSTER}/</Prefix><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>false</IsTruncated>\
             <Contents><Key>{CLUSTER}/config</Key><Size>10</Size><ETag>\"abc\"</ETag></Contents>\
             <Contents><Key>{CLUSTER}/{rel}</Key><Size>3</Size><ETag>\"abc\"</ETag></Contents>\
             </ListBucketResult>"
        );
        let proxy = Proxy::builder().listing(xml).start(server.addr());
        let parent = work.path().join(format!("case{i}"));
        std::fs::create_dir(&parent).unwrap();
        let out = parent.join("deep").join("snap");
        let result = snapshot_cluster(&proxy.endpoint(), &out);
        expect_code(&result, 1);
        let err = stderr(&result);
        assert!(err.contains("refusing object key"), "{rel}: {err}");
        assert!(err.contains(reason), "{rel}: {err}");
        // Nothing written anywhere: not the snapshot, not its parents.
        assert_no_debris(&parent, &[]);
    }
    assert_no_debris(
        work.path(),
        &(0..hostile.len())
            .map(|i| format!("case{i}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(!Path::new("/etc/escape").exists());
}

#[test]
fn a_server_killed_mid_copy_leaves_no_snapshot_and_no_debris() {
    let mut server = S3Server::start();
    server.create_bucket(BUCKET);
    server.put_many(BUCKET, instance_groups(400));
    let proxy = slow_proxy(&server);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    let child = spawn_snapshot(
        &proxy.endpoint(),
        &out,
        &["--concurrency", "4", "--max-attempts", "2"],
    );
    wait_for_partial_copy(work.path());
    server.kill();
    let result = child.wait_with_output().unwrap();
    expect_code(&result, 1);
    assert!(stderr(&result).contains("error: "), "{}", show(&result));
    assert_no_debris(work.path(), &[]);
}

#[test]
fn sigint_and_sigterm_stop_cleanly_without_debris() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    server.put_many(BUCKET, instance_groups(400));
    let proxy = slow_proxy(&server);
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        let work = tempfile::tempdir().unwrap();
        let out = work.path().join("snap");
        let child = spawn_snapshot(&proxy.endpoint(), &out, &["--concurrency", "4"]);
        wait_for_partial_copy(work.path());
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let result = child.wait_with_output().unwrap();
        expect_code(&result, code);
        assert!(stderr(&result).contains("interrupted"), "{}", show(&result));
        assert_no_debris(work.path(), &[]);
    }
}

/// Waits until a snapshot's temporary directory beside the target holds
/// some copied files: the copy is under way.
fn wait_for_partial_copy(parent: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let copied = support::entries(parent)
            .iter()
            .filter(|n| n.contains(".kopsci-tmp-"))
            .map(|n| support::tree(&parent.join(n)).len())
            .sum::<usize>();
        if copied >= 8 {
            return;
        }
        assert!(Instant::now() < deadline, "the copy never started");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn slow_down_responses_are_retried_until_the_copy_succeeds() {
    let server = fixture_server();
    let proxy = Proxy::builder().slow_down_every(3).start(server.addr());
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    let result = run(
        snapshot(&proxy.endpoint(), "s3://kops-state/team-a", CLUSTER, &out)
            .args(["--max-attempts", "8"]),
    );
    expect_code(&result, 0);
    assert!(
        proxy.faults() >= 5,
        "only {} faults injected",
        proxy.faults()
    );
    let fixture = support::tree(&support::kops_state_fixtures().join(CLUSTER));
    assert!(support::tree(&out.join(CLUSTER)) == fixture);

    // verify goes through the same retries.
    let result = run(verify(&proxy.endpoint(), &out).args(["--max-attempts", "8"]));
    expect_code(&result, 0);
}

#[test]
fn an_existing_directory_is_refused_unless_forced() {
    let server = backup_server();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    let endpoint = server.endpoint();
    expect_code(
        &run(&mut snapshot(&endpoint, "s3://kops-state", CLUSTER, &out)),
        0,
    );
    let first = record(&out)["time"].clone();

    let result = run(&mut snapshot(&endpoint, "s3://kops-state", CLUSTER, &out));
    expect_code(&result, 1);
    assert!(
        stderr(&result).contains("already exists; pass --force"),
        "{}",
        show(&result)
    );

    std::thread::sleep(Duration::from_millis(20));
    let result = run(snapshot(&endpoint, "s3://kops-state", CLUSTER, &out).arg("--force"));
    expect_code(&result, 0);
    assert_ne!(record(&out)["time"], first);
    assert_eq!(support::entries(work.path()), ["snap"]);
    assert_private(&out);

    // --force replaces snapshots only, never an unrelated directory.
    let precious = work.path().join("precious");
    std::fs::create_dir(&precious).unwrap();
    std::fs::write(precious.join("keep.txt"), "keep").unwrap();
    let result = run(snapshot(&endpoint, "s3://kops-state", CLUSTER, &precious).arg("--force"));
    expect_code(&result, 1);
    assert!(
        stderr(&result).contains("is not a kopsci snapshot"),
        "{}",
        show(&result)
    );
    assert_eq!(
        std::fs::read_to_string(precious.join("keep.txt")).unwrap(),
        "keep"
    );
    assert_eq!(support::entries(work.path()), ["precious", "snap"]);
}

#[test]
fn a_missing_cluster_is_an_error_unless_empty_is_allowed() {
    let server = backup_server();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    let result = run(&mut snapshot(
        &server.endpoint(),
        "s3://kops-state",
        "new.example.com",
        &out,
    ));
    expect_code(&result, 1);
    assert!(
        stderr(&result).contains("no objects to copy under s3://kops-state/new.example.com/"),
        "{}",
        show(&result)
    );
    assert_no_debris(work.path(), &[]);

    let result = run(snapshot(
        &server.endpoint(),
        "s3://kops-state",
        "new.example.com",
        &out,
    )
    .arg("--allow-empty"));
    expect_code(&result, 0);
    assert_eq!(support::entries(&out), [".kopsci-snapshot.json"]);
    assert_eq!(record(&out)["objects"].as_array().unwrap().len(), 0);

    // Once the cluster is created, verify notices.
    server.put(BUCKET, "new.example.com/config", b"x".to_vec());
    expect_code(&run(&mut verify(&server.endpoint(), &out)), 3);
}

#[test]
fn bad_store_urls_and_names_are_usage_errors() {
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    for (state, name, fragment) in [
        ("gs://bucket", CLUSTER, "invalid state store `gs://bucket`"),
        ("s3://kops-state/a/../b", CLUSTER, "invalid state store"),
        ("s3://kops-state", "../etc", "invalid cluster name"),
    ] {
        let result = run(&mut snapshot("http://127.0.0.1:9", state, name, &out));
        assert_ne!(result.status.code(), Some(0), "{}", show(&result));
        assert!(stderr(&result).contains(fragment), "{}", show(&result));
    }
    assert_no_debris(work.path(), &[]);
}

/// A `file://` store: a copy of the fixtures in a temporary directory.
fn file_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    for (rel, bytes) in support::tree(&support::kops_state_fixtures().join(CLUSTER)) {
        let path = root.join(CLUSTER).join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    (dir, root)
}

#[test]
fn file_stores_are_copied_and_verified() {
    let (dir, root) = file_store();
    let state = format!("file://{}", root.display());
    let out = dir.path().join("snap");
    let result = run(&mut snapshot("http://127.0.0.1:9", &state, CLUSTER, &out));
    expect_code(&result, 0);
    assert!(
        support::tree(&out.join(CLUSTER))
            == support::tree(&support::kops_state_fixtures().join(CLUSTER))
    );
    assert_private(&out);
    assert_eq!(record(&out)["source"], state.as_str());
    assert!(record(&out)["objects"][0].get("etag").is_none());

    expect_code(&run(&mut verify("http://127.0.0.1:9", &out)), 0);
    std::fs::write(root.join(CLUSTER).join("config"), "changed").unwrap();
    let result = run(&mut verify("http://127.0.0.1:9", &out));
    expect_code(&result, 3);
    assert!(
        stdout(&result).contains("  modified config\n"),
        "{}",
        show(&result)
    );
}

#[test]
fn file_stores_never_follow_symlinks_out_of_their_root() {
    let (dir, root) = file_store();
    let secret = dir.path().join("outside-secret");
    std::fs::write(&secret, "not for the snapshot").unwrap();
    let state = format!("file://{}", root.display());

    // A file symlink leading out of the store root.
    let link = root.join(CLUSTER).join("pki").join("stolen");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let out = dir.path().join("snap");
    let result = run(&mut snapshot("http://127.0.0.1:9", &state, CLUSTER, &out));
    expect_code(&result, 1);
    assert!(
        stderr(&result).contains("symlink leads outside the store root"),
        "{}",
        show(&result)
    );
    assert!(!out.exists());
    std::fs::remove_file(&link).unwrap();

    // A directory symlink leading out.
    std::os::unix::fs::symlink(dir.path(), root.join(CLUSTER).join("addons").join("up")).unwrap();
    let result = run(&mut snapshot("http://127.0.0.1:9", &state, CLUSTER, &out));
    expect_code(&result, 1);
    assert!(!out.exists());
    std::fs::remove_file(root.join(CLUSTER).join("addons").join("up")).unwrap();

    // The cluster directory itself a symlink out of the root.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::fs::write(elsewhere.join("config"), "x").unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("linked.example.com")).unwrap();
    let result = run(&mut snapshot(
        "http://127.0.0.1:9",
        &state,
        "linked.example.com",
        &out,
    ));
    expect_code(&result, 1);
    assert!(
        stderr(&result).contains("symlink leads outside the store root"),
        "{}",
        show(&result)
    );

    // A symlink that stays inside the root is followed.
    std::os::unix::fs::symlink(
        root.join(CLUSTER).join("config"),
        root.join(CLUSTER).join("config-link"),
    )
    .unwrap();
    let result = run(&mut snapshot("http://127.0.0.1:9", &state, CLUSTER, &out));
    expect_code(&result, 0);
    assert_eq!(
        std::fs::read(out.join(CLUSTER).join("config-link")).unwrap(),
        std::fs::read(root.join(CLUSTER).join("config")).unwrap()
    );
    assert!(!out.join(CLUSTER).join("config-link").is_symlink());
}

#[test]
fn fleet_mode_takes_each_clusters_store_from_the_fleet_file() {
    let server = fixture_server();
    let (dir, root) = file_store();
    let fleet = format!(
        "state: s3://kops-state/team-a\n\
         templates: [cluster.yaml.j2]\n\
         environments:\n  test: {{}}\n  prod:\n    state: file://{root}\n\
         clusters:\n\
         \x20 - name: ha.example.com\n    environment: test\n\
         \x20 - name: {CLUSTER}\n    environment: prod\n",
        root = root.display()
    );
    std::fs::write(dir.path().join("kopsci.yaml"), fleet).unwrap();
    std::fs::write(dir.path().join("cluster.yaml.j2"), "kind: Cluster\n").unwrap();

    let in_fleet = |name: &str, out: &str| {
        let mut cmd = support::kopsci();
        cmd.current_dir(dir.path())
            .envs(support::s3::env_for(&server.endpoint()))
            .args(["snapshot", "--name", name, "--out", out]);
        run(&mut cmd)
    };
    let result = in_fleet("ha.example.com", "snap-ha");
    expect_code(&result, 0);
    assert_eq!(
        record(&dir.path().join("snap-ha"))["source"],
        "s3://kops-state/team-a"
    );
    assert!(dir.path().join("snap-ha/ha.example.com/config").is_file());

    let result = in_fleet(CLUSTER, "snap-min");
    expect_code(&result, 0);
    assert_eq!(
        record(&dir.path().join("snap-min"))["source"],
        format!("file://{}", root.display()).as_str()
    );

    let result = in_fleet("nope.example.com", "snap-nope");
    expect_code(&result, 64);
    assert!(
        stderr(&result).contains("unknown cluster `nope.example.com`"),
        "{}",
        show(&result)
    );

    // --state wins over the fleet file.
    let mut cmd = support::kopsci();
    cmd.current_dir(dir.path())
        .envs(support::s3::env_for(&server.endpoint()))
        .args([
            "snapshot",
            "--state",
            "s3://kops-state/team-a",
            "--name",
            CLUSTER,
            "--out",
            "snap-s3",
        ]);
    expect_code(&run(&mut cmd), 0);
    assert_eq!(
        record(&dir.path().join("snap-s3"))["source"],
        "s3://kops-state/team-a"
    );
}

#[test]
fn a_missing_server_binary_fails_with_the_install_hint() {
    let missing = Path::new("/nonexistent/weed");
    let panic = std::panic::catch_unwind(|| S3Server::start_with(missing))
        .err()
        .expect("starting without a binary must fail, not skip");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("scripts/install-test-deps"), "{message}");
}

#[test]
fn logs_never_show_object_contents_or_secrets() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let secret = "-----BEGIN RSA PRIVATE KEY-----\nkopsci-test-private-key-material\n";
    server.put(
        BUCKET,
        &format!("{CLUSTER}/config"),
        b"kind: Cluster\n".to_vec(),
    );
    server.put(
        BUCKET,
        &format!("{CLUSTER}/pki/private/ca/keyset.yaml"),
        secret,
    );
    server.put(
        BUCKET,
        &format!("{CLUSTER}/secrets/admin"),
        "kopsci-test-secret-token",
    );
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    // Most verbose logging, every library included.
    let result = run(snapshot(&server.endpoint(), "s3://kops-state", CLUSTER, &out).arg("-vvv"));
    expect_code(&result, 0);
    let logs = format!("{}{}", stdout(&result), stderr(&result));
    assert!(logs.contains("listing page"), "no debug logs at -vvv");
    for needle in [
        "kopsci-test-private-key-material",
        "kopsci-test-secret-token",
        support::s3::SECRET_KEY,
    ] {
        assert!(!logs.contains(needle), "logs show {needle:?}");
    }
    assert_eq!(
        std::fs::read_to_string(out.join(CLUSTER).join("pki/private/ca/keyset.yaml")).unwrap(),
        secret
    );
}

// ---------------------------------------------------------------------
// Issue #10: hardening
// ---------------------------------------------------------------------

/// A fresh snapshot of the fixture cluster in `work/name`.
fn fixture_snapshot(server: &S3Server, work: &Path, name: &str) -> PathBuf {
    let out = work.join(name);
    expect_code(&snapshot_cluster(&server.endpoint(), &out), 0);
    out
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.unwrap();
        let dest = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// `snapshot --force` into `victim` is refused with `reason`, and every
/// file in it is still there, unchanged; no work directory is left.
#[track_caller]
fn assert_force_refused(server: &S3Server, victim: &Path, reason: &str) {
    let before = support::tree(victim);
    let parent = victim.parent().unwrap();
    let siblings = support::entries(parent);
    let result =
        run(snapshot(&server.endpoint(), "s3://kops-state", CLUSTER, victim).arg("--force"));
    expect_code(&result, 1);
    let err = stderr(&result);
    assert!(
        err.contains("is not a kopsci snapshot"),
        "{}",
        show(&result)
    );
    assert!(err.contains(reason), "{reason:?} not in\n{}", show(&result));
    assert!(err.contains("nothing was deleted"), "{}", show(&result));
    assert!(
        support::tree(victim) == before,
        "{} changed",
        victim.display()
    );
    assert_eq!(
        support::entries(parent),
        siblings,
        "debris beside the target"
    );
}

#[test]
fn force_never_deletes_a_directory_with_a_planted_record_and_extra_files() {
    let server = backup_server();
    let work = tempfile::tempdir().unwrap();
    let snap = fixture_snapshot(&server, work.path(), "snap");

    // Someone's files, with a genuine record dropped in beside them.
    let victim = work.path().join("victim");
    std::fs::create_dir_all(victim.join("src")).unwrap();
    std::fs::write(victim.join("notes.txt"), "mine").unwrap();
    std::fs::write(victim.join("src/main.rs"), "fn main() {}").unwrap();
    std::fs::copy(
        snap.join(".kopsci-snapshot.json"),
        victim.join(".kopsci-snapshot.json"),
    )
    .unwrap();
    assert_force_refused(
        &server,
        &victim,
        "it holds `notes.txt` (a file outside the cluster directory), and 1 more",
    );

    // A genuine snapshot plus one file its record does not list.
    let grown = work.path().join("grown");
    copy_dir(&snap, &grown);
    std::fs::write(grown.join(CLUSTER).join("instancegroup/planted"), "x").unwrap();
    assert_force_refused(
        &server,
        &grown,
        &format!("it holds `{CLUSTER}/instancegroup/planted`, which the record does not list"),
    );

    // A symlink in place of a listed object: not what kopsci wrote.
    let linked = work.path().join("linked");
    copy_dir(&snap, &linked);
    let outside = work.path().join("outside.txt");
    std::fs::write(&outside, "outside").unwrap();
    std::fs::remove_file(linked.join(CLUSTER).join("config")).unwrap();
    std::os::unix::fs::symlink(&outside, linked.join(CLUSTER).join("config")).unwrap();
    assert_force_refused(
        &server,
        &linked,
        &format!("it holds `{CLUSTER}/config` (a symlink)"),
    );
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "outside");

    // The genuine snapshot, with files kops could have changed, is replaced.
    std::fs::write(snap.join(CLUSTER).join("config"), "edited").unwrap();
    let result =
        run(snapshot(&server.endpoint(), "s3://kops-state", CLUSTER, &snap).arg("--force"));
    expect_code(&result, 0);
    assert!(
        support::tree(&snap.join(CLUSTER))
            == support::tree(&support::kops_state_fixtures().join(CLUSTER))
    );
}

#[test]
fn force_never_deletes_a_directory_whose_record_does_not_parse() {
    let server = backup_server();
    let work = tempfile::tempdir().unwrap();
    let snap = fixture_snapshot(&server, work.path(), "snap");

    let garbled = work.path().join("garbled");
    copy_dir(&snap, &garbled);
    std::fs::write(
        garbled.join(".kopsci-snapshot.json"),
        "{\"format\": \"kopsci-snap",
    )
    .unwrap();
    assert_force_refused(&server, &garbled, "is not a valid snapshot record (");

    // Valid JSON, but a record no kopsci writes: a key that climbs out.
    let hostile = work.path().join("hostile");
    copy_dir(&snap, &hostile);
    let mut rec = record(&snap);
    rec["objects"][0]["key"] = "../../outside".into();
    std::fs::write(hostile.join(".kopsci-snapshot.json"), rec.to_string()).unwrap();
    assert_force_refused(&server, &hostile, "`..` path segment");

    // Control characters in the record are never echoed raw.
    let noisy = work.path().join("noisy");
    std::fs::create_dir(&noisy).unwrap();
    std::fs::write(noisy.join("data"), "keep").unwrap();
    std::fs::write(
        noisy.join(".kopsci-snapshot.json"),
        // JSON's own escape: the parser hands the raw character back.
        "{\"format\": \"kopsci-snapshot/v1\", \"bogus\\u001b[2J\": 1}",
    )
    .unwrap();
    let result =
        run(snapshot(&server.endpoint(), "s3://kops-state", CLUSTER, &noisy).arg("--force"));
    expect_code(&result, 1);
    assert!(!stderr(&result).contains('\u{1b}'), "{}", show(&result));
    assert!(stderr(&result).contains("\\x1b[2J"), "{}", show(&result));
    assert_eq!(std::fs::read_to_string(noisy.join("data")).unwrap(), "keep");

    // A record that is a symlink is not a record kopsci wrote.
    let linked = work.path().join("linked-record");
    copy_dir(&snap, &linked);
    std::fs::remove_file(linked.join(".kopsci-snapshot.json")).unwrap();
    std::os::unix::fs::symlink(
        snap.join(".kopsci-snapshot.json"),
        linked.join(".kopsci-snapshot.json"),
    )
    .unwrap();
    assert_force_refused(&server, &linked, "is not a regular file");
}

#[test]
fn force_never_deletes_files_the_record_does_not_list() {
    let server = backup_server();
    let work = tempfile::tempdir().unwrap();
    let snap = fixture_snapshot(&server, work.path(), "snap");

    // The record lists two objects; the directory holds other files under
    // the cluster's name.
    let mismatched = work.path().join("mismatched");
    std::fs::create_dir_all(mismatched.join(CLUSTER).join("pki")).unwrap();
    std::fs::write(mismatched.join(CLUSTER).join("config"), "mine").unwrap();
    std::fs::write(mismatched.join(CLUSTER).join("pki/id_ed25519"), "mine").unwrap();
    let mut rec = record(&snap);
    let objects: Vec<serde_json::Value> = rec["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["key"] == "config" || o["key"] == "kops-version.txt")
        .cloned()
        .collect();
    assert_eq!(objects.len(), 2);
    rec["objects"] = objects.into();
    std::fs::write(mismatched.join(".kopsci-snapshot.json"), rec.to_string()).unwrap();
    assert_force_refused(
        &server,
        &mismatched,
        &format!("it holds `{CLUSTER}/pki/id_ed25519`, which the record does not list"),
    );

    // A record for another cluster than the one the directory holds.
    let other = work.path().join("other");
    copy_dir(&snap, &other);
    let mut rec = record(&snap);
    rec["cluster"] = "other.example.com".into();
    std::fs::write(other.join(".kopsci-snapshot.json"), rec.to_string()).unwrap();
    assert_force_refused(
        &server,
        &other,
        &format!("it holds `{CLUSTER}` (a directory outside the cluster directory)"),
    );
}

#[test]
fn keys_with_control_characters_are_refused_by_name_not_an_xml_error() {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    server.seed_dir(
        BUCKET,
        CLUSTER,
        &support::kops_state_fixtures().join(CLUSTER),
    );
    // Keys S3 allows that need URL encoding in a listing: copied under
    // their real names.
    let odd = [
        "addons/with space+plus%25.yaml",
        "addons/ünïcode & <xml>.yaml",
    ];
    for key in odd {
        server.put(BUCKET, &format!("{CLUSTER}/{key}"), key.as_bytes().to_vec());
    }
    let work = tempfile::tempdir().unwrap();
    let good = work.path().join("good");
    let result = snapshot_cluster(&server.endpoint(), &good);
    expect_code(&result, 0);
    for key in odd {
        assert_eq!(
            std::fs::read(good.join(CLUSTER).join(key)).unwrap(),
            key.as_bytes(),
            "{key}"
        );
    }
    expect_code(&run(&mut verify(&server.endpoint(), &good)), 0);

    // SeaweedFS stores keys with control characters; an XML 1.0 listing
    // cannot carry them unless URL-encoded.
    for (i, (rel, shown)) in [
        ("pki/private/evil\u{1}name", "pki/private/evil\\u{1}name"),
        ("config\u{1b}[2J\u{7}", "config\\u{1b}[2J\\u{7}"),
        ("instancegroup/a\u{1f}b", "instancegroup/a\\u{1f}b"),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("{CLUSTER}/{rel}");
        server.put(BUCKET, &key, b"hostile".to_vec());
        let parent = work.path().join(format!("case{i}"));
        std::fs::create_dir(&parent).unwrap();
        let result = snapshot_cluster(&server.endpoint(), &parent.join("snap"));
        expect_code(&result, 1);
        let err = stderr(&result);
        assert!(
            err.contains(&format!(
                "refusing object key `{CLUSTER}/{shown}`: contains a control character"
            )),
            "{}",
            show(&result)
        );
        assert!(!err.to_lowercase().contains("xml"), "{}", show(&result));
        assert!(
            !err.chars().any(|c| c.is_control() && c != '\n'),
            "raw control character in {err:?}"
        );
        assert_no_debris(&parent, &[]);

        // verify lists the same way, and refuses the same way.
        let result = run(&mut verify(&server.endpoint(), &good));
        expect_code(&result, 1);
        assert!(
            stderr(&result).contains(&format!("`{CLUSTER}/{shown}`")),
            "{}",
            show(&result)
        );
        server.delete(BUCKET, &key);
    }
    expect_code(&run(&mut verify(&server.endpoint(), &good)), 0);
}

/// The work directories (`.NAME.kopsci-tmp-*`) in `parent`.
fn work_dirs(parent: &Path) -> Vec<String> {
    support::entries(parent)
        .into_iter()
        .filter(|n| n.contains(".kopsci-tmp-") || n.contains(".kopsci-old-"))
        .collect()
}

/// A server with 400 objects (one a private key) behind a slow proxy: a
/// snapshot through it takes a few seconds.
fn slow_world() -> (S3Server, Proxy) {
    let server = S3Server::start();
    server.create_bucket(BUCKET);
    let mut objects = instance_groups(400);
    objects.push((
        format!("{CLUSTER}/pki/private/ca/keyset.yaml"),
        b"private key".to_vec(),
    ));
    server.put_many(BUCKET, objects);
    let proxy = slow_proxy(&server);
    (server, proxy)
}

#[test]
fn a_snapshot_killed_with_sigkill_leaves_keys_that_the_next_run_removes() {
    let (server, proxy) = slow_world();
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("snap");
    let mut child = snapshot(&proxy.endpoint(), "s3://kops-state", CLUSTER, &out)
        .args(["--concurrency", "4"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_for_partial_copy(work.path());
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let stale = work_dirs(work.path());
    assert_eq!(stale.len(), 1, "{stale:?}");
    assert!(
        !support::tree(&work.path().join(&stale[0])).is_empty(),
        "the killed run left nothing to clean up"
    );

    // Look-alikes that are not kopsci's work directories: kept.
    let foreign = work.path().join(".snap.kopsci-tmp-foreign");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("keep"), "keep").unwrap();
    let marked = work.path().join(".snap.kopsci-tmp-othermarker");
    std::fs::create_dir(&marked).unwrap();
    std::fs::write(marked.join(".kopsci-workdir"), "not kopsci's\n").unwrap();

    let result = snapshot_cluster(&server.endpoint(), &out);
    expect_code(&result, 0);
    assert_eq!(
        support::entries(work.path()),
        [
            ".snap.kopsci-tmp-foreign",
            ".snap.kopsci-tmp-othermarker",
            "snap"
        ]
    );
    assert_eq!(
        std::fs::read_to_string(foreign.join("keep")).unwrap(),
        "keep"
    );
    assert_eq!(support::tree(&out.join(CLUSTER)).len(), 401);
    assert_private(&out);
    // The finished snapshot carries no work-directory marker.
    assert_eq!(
        support::entries(&out),
        [".kopsci-snapshot.json".to_string(), CLUSTER.to_string()]
    );
}

#[test]
fn a_work_dir_locked_by_a_live_snapshot_is_kept() {
    let (server, proxy) = slow_world();
    let work = tempfile::tempdir().unwrap();
    let slow_out = work.path().join("slow");
    let slow = spawn_snapshot(&proxy.endpoint(), &slow_out, &["--concurrency", "2"]);
    wait_for_partial_copy(work.path());
    let live = work_dirs(work.path());
    assert_eq!(live.len(), 1, "{live:?}");

    // Another run beside it sweeps the parent: the live copy survives.
    let fast_out = work.path().join("fast");
    expect_code(&snapshot_cluster(&server.endpoint(), &fast_out), 0);
    assert_eq!(work_dirs(work.path()), live);

    let result = slow.wait_with_output().unwrap();
    expect_code(&result, 0);
    assert_eq!(support::tree(&slow_out.join(CLUSTER)).len(), 401);
    assert_eq!(support::entries(work.path()), ["fast", "slow"]);
}

/// A copy of the reference fleet (`kopsci.yaml`, templates, values) with a
/// private TMPDIR.
fn fleet_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = support::repo_root();
    for sub in ["templates", "values"] {
        copy_dir(&root.join(sub), &dir.path().join(sub));
    }
    std::fs::copy(root.join("kopsci.yaml"), dir.path().join("kopsci.yaml")).unwrap();
    std::fs::create_dir(dir.path().join("tmp")).unwrap();
    dir
}

fn dryrun(fleet: &Path, endpoint: &str) -> Command {
    let mut cmd = support::kopsci();
    cmd.current_dir(fleet)
        .envs(support::s3::env_for(endpoint))
        .env("TMPDIR", fleet.join("tmp"))
        .args([
            "dryrun",
            CLUSTER,
            "--without-kops",
            "--state",
            "s3://kops-state",
        ]);
    cmd
}

#[test]
fn a_dry_run_killed_with_sigkill_leaves_a_work_dir_the_next_run_removes() {
    let server = backup_server();
    let proxy = Proxy::builder()
        .delay(Duration::from_millis(100))
        .start(server.addr());
    let fleet = fleet_copy();
    let tmp = fleet.path().join("tmp");
    let mut child = dryrun(fleet.path(), &proxy.endpoint())
        .args(["--concurrency", "1"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // The dry run's private directory holds the snapshot being copied.
    let deadline = Instant::now() + Duration::from_secs(60);
    let stale = loop {
        let copying = support::entries(&tmp)
            .into_iter()
            .find(|n| n.starts_with("kopsci-dryrun-") && support::tree(&tmp.join(n)).len() >= 3);
        if let Some(name) = copying {
            break name;
        }
        assert!(
            Instant::now() < deadline,
            "the dry run's snapshot never started"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(support::entries(&tmp), [stale.as_str()]);

    let lookalike = tmp.join("kopsci-dryrun-lookalike");
    std::fs::create_dir(&lookalike).unwrap();
    std::fs::write(lookalike.join("keep"), "keep").unwrap();

    let result = run(&mut dryrun(fleet.path(), &server.endpoint()));
    expect_code(&result, 0);
    assert_eq!(support::entries(&tmp), ["kopsci-dryrun-lookalike"]);
    assert_eq!(
        std::fs::read_to_string(lookalike.join("keep")).unwrap(),
        "keep"
    );
}

#[test]
fn verify_local_reports_tampered_added_and_removed_files() {
    let server = backup_server();
    let work = tempfile::tempdir().unwrap();
    let snap = fixture_snapshot(&server, work.path(), "snap");
    let verify_local = |dir: &Path| {
        let mut cmd = support::kopsci();
        // No store is reachable: --local reads nothing from it.
        cmd.envs(support::s3::env_for("http://127.0.0.1:9"))
            .args(["snapshot", "verify", "--local"])
            .arg(dir);
        run(&mut cmd)
    };

    let result = verify_local(&snap);
    expect_code(&result, 0);
    let objects = record(&snap)["objects"].as_array().unwrap().len();
    assert_eq!(
        stdout(&result),
        format!(
            "local snapshot {} unchanged since it was taken ({}): {objects} files identical\n",
            snap.display(),
            record(&snap)["time"].as_str().unwrap()
        )
    );

    // Same size, different bytes; a new file; a file gone; a symlink where
    // a file was; a stray file beside the cluster directory.
    let config = snap.join(CLUSTER).join("config");
    let mut bytes = std::fs::read(&config).unwrap();
    let last = bytes.len() - 2;
    bytes[last] = if bytes[last] == b'x' { b'y' } else { b'x' };
    std::fs::write(&config, bytes).unwrap();
    std::fs::write(snap.join(CLUSTER).join("instancegroup/planted"), "x").unwrap();
    std::fs::remove_file(snap.join(CLUSTER).join("kops-version.txt")).unwrap();
    let spec = snap.join(CLUSTER).join("cluster-completed.spec");
    assert!(spec.is_file());
    std::fs::remove_file(&spec).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", &spec).unwrap();
    std::fs::write(snap.join("stray\u{1b}[2J"), "x").unwrap();

    let result = verify_local(&snap);
    expect_code(&result, 3);
    let text = stdout(&result);
    assert!(
        text.starts_with(&format!(
            "local snapshot {} altered since it was taken (",
            snap.display()
        )),
        "{text}"
    );
    assert!(text.contains("2 added, 1 removed, 2 modified"), "{text}");
    assert!(
        text.contains("  added    instancegroup/planted\n"),
        "{text}"
    );
    assert!(
        text.contains("  added    stray\\x1b[2J (file outside the cluster directory)\n"),
        "{text}"
    );
    assert!(text.contains("  removed  kops-version.txt\n"), "{text}");
    assert!(text.contains("  modified config\n"), "{text}");
    assert!(
        text.contains("  modified cluster-completed.spec\n"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}'), "{text:?}");

    // The live store did not change: plain verify says so, which is why
    // a job that must trust its snapshot runs --local.
    expect_code(&run(&mut verify(&server.endpoint(), &snap)), 0);

    // Not a snapshot: an error, not "altered".
    let result = verify_local(work.path());
    expect_code(&result, 1);
    assert!(
        stderr(&result).contains("not a kopsci snapshot directory"),
        "{}",
        show(&result)
    );
}
