//! Test infrastructure shared by the integration tests that need servers:
//! a real S3 server ([`s3::S3Server`]), a misbehaving proxy
//! ([`proxy::Proxy`]), a fake GitLab API ([`gitlab::FakeGitLab`]), the kOps
//! state fixtures and file-tree helpers.

#![allow(dead_code)] // each test module uses its own part of the harness

pub mod gitlab;
pub mod proxy;
pub mod s3;
pub mod sts;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub use proxy::Proxy;
pub use s3::{S3Server, rel_path};

pub use crate::harness::repo_root;

/// The kops stand-in, built beside kopsci by `cargo test --workspace`.
pub fn standin() -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_kopsci")).with_file_name("kops");
    assert!(
        path.is_file(),
        "the kops stand-in is not built at {}: run the tests with `cargo test --workspace` \
         (scripts/test does), or `cargo build -p kops-standin` first",
        path.display()
    );
    path
}

/// `examples/state/`: the state-store objects kOps writes for 10 clusters,
/// vendored from kOps' integration tests (see tests/fixtures/README.md).
pub fn kops_state_fixtures() -> PathBuf {
    let dir = repo_root().join("examples/state");
    assert!(
        dir.is_dir(),
        "kOps state fixtures not found at {}",
        dir.display()
    );
    dir
}

/// The fixture cluster names.
pub fn fixture_clusters() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(kops_state_fixtures())
        .expect("read fixtures")
        .map(|e| e.expect("fixture entry"))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().into_string().expect("utf-8 name"))
        .collect();
    names.sort();
    names
}

/// Every file under `dir` by `/`-separated relative path, with its bytes.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            (
                rel_path(dir, e.path()),
                std::fs::read(e.path()).expect("read"),
            )
        })
        .collect()
}

/// Every entry under `dir` (itself included) with its permission bits.
pub fn modes(dir: &Path) -> Vec<(PathBuf, bool, u32)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("walk"))
        .map(|e| {
            let meta = e.metadata().expect("metadata");
            (
                e.path().to_path_buf(),
                meta.is_dir(),
                meta.permissions().mode() & 0o7777,
            )
        })
        .collect()
}

/// Names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A `kopsci` command with a clean environment for S3 tests: the harness'
/// isolated command (no inherited kOps, AWS, S3 or CI settings, no
/// credential chain), for tests that drive `std::process::Command`.
pub fn kopsci() -> std::process::Command {
    crate::harness::Kopsci::new().isolated().into_command()
}

/// Runs git in `dir` with a fixed identity, no user or system config and
/// the `env` given; asserts it succeeded and returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_AUTHOR_NAME", "kopsci tests")
        .env("GIT_AUTHOR_EMAIL", "tests@example.com")
        .env("GIT_COMMITTER_NAME", "kopsci tests")
        .env("GIT_COMMITTER_EMAIL", "tests@example.com")
        .envs(env.iter().copied())
        .output()
        .expect("run git");
    assert!(out.status.success(), "git {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
