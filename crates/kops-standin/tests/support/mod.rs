//! Helpers for the stand-in's own tests: run the `kops` binary in a clean
//! environment (no AWS/S3/KOPS variables leak in from the machine), copy
//! fixture state stores into temporary directories, snapshot directory
//! trees. The S3 server comes from kopsci's test harness, shared as is.

#![allow(dead_code)] // each test file uses its own part

#[path = "../../../kopsci/tests/it/support/s3.rs"]
pub mod s3;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root (for kopsci's S3 harness, which finds `weed` there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The kOps fixtures vendored in the repository (tests/fixtures/README.md).
fn vendored(rel: &str) -> PathBuf {
    let dir = repo_root().join(rel);
    assert!(dir.is_dir(), "fixtures not found at {}", dir.display());
    dir
}

pub fn manifest(cluster: &str) -> PathBuf {
    vendored("tests/fixtures/manifests").join(format!("{cluster}.yaml"))
}

/// What one `kops` run did.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and returns the run.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(self.code, Some(0), "kops failed: {self:#?}");
        self
    }

    /// Asserts exit 1 and returns the run.
    #[track_caller]
    pub fn fails(self) -> Run {
        assert_eq!(self.code, Some(1), "kops did not fail: {self:#?}");
        self
    }
}

/// A test bench: a state store directory, a cloud directory, a working
/// directory and a HOME, all temporary and all initially empty.
pub struct Bench {
    pub store: tempfile::TempDir,
    pub cloud: tempfile::TempDir,
    pub cwd: tempfile::TempDir,
    pub home: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

impl Bench {
    pub fn new() -> Bench {
        Bench {
            store: tempfile::tempdir().unwrap(),
            cloud: tempfile::tempdir().unwrap(),
            cwd: tempfile::tempdir().unwrap(),
            home: tempfile::tempdir().unwrap(),
            env: Vec::new(),
        }
    }

    /// A bench whose store holds a copy of the fixture state of `cluster`.
    pub fn with_fixture(cluster: &str) -> Bench {
        let bench = Bench::new();
        copy_dir(
            &vendored("examples/state").join(cluster),
            &bench.store.path().join(cluster),
        );
        bench
    }

    pub fn state_url(&self) -> String {
        format!("file://{}", self.store.path().display())
    }

    pub fn set(&mut self, key: &str, value: &str) -> &mut Bench {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// `kops` with `KOPS_STATE_STORE` and `KOPS_STANDIN_CLOUD_DIR` pointing
    /// at the bench, and nothing else from the machine's kOps/AWS setup.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = clean_command(args);
        cmd.current_dir(self.cwd.path())
            .env("HOME", self.home.path())
            .env("KOPS_STATE_STORE", self.state_url())
            .env("KOPS_STANDIN_CLOUD_DIR", self.cloud.path());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out = self
            .command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run kops");
        Run::from(out)
    }

    /// Runs a call that must fail (exit 1) and returns its stderr.
    #[track_caller]
    pub fn error(&self, args: &[&str]) -> String {
        self.run(args).fails().stderr
    }

    /// Runs with `input` on stdin.
    pub fn run_with_input(&self, args: &[&str], input: &str) -> Run {
        use std::io::Write;
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run kops");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        Run::from(child.wait_with_output().expect("wait for kops"))
    }

    pub fn store_tree(&self) -> BTreeMap<String, Vec<u8>> {
        tree(self.store.path())
    }

    pub fn read(&self, key: &str) -> String {
        std::fs::read_to_string(self.store.path().join(key))
            .unwrap_or_else(|e| panic!("read {key}: {e}"))
    }
}

/// The `kops` binary with the machine's AWS, S3 and kOps variables removed.
pub fn clean_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kops"));
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if key.starts_with("AWS_") || key.starts_with("S3_") || key.starts_with("KOPS_") {
            cmd.env_remove(key.as_ref());
        }
    }
    cmd.args(args);
    cmd
}

/// Every file under `dir` by relative path, with its bytes.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.expect("walk");
        if entry.file_type().is_file() {
            let rel = entry
                .path()
                .strip_prefix(dir)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            out.insert(rel, std::fs::read(entry.path()).expect("read"));
        }
    }
    out
}

pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The manifest of `cluster` with `edit` applied to its text.
pub fn edited_manifest(dir: &Path, cluster: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let text = std::fs::read_to_string(manifest(cluster)).unwrap();
    let path = dir.join(format!("{cluster}.yaml"));
    std::fs::write(&path, edit(text)).unwrap();
    path
}
