//! A small builder-style harness: a scratch directory with files, and the
//! `kopsci` binary run in it with chosen arguments and environment.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary working directory holding test inputs.
pub struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::tempdir().expect("create sandbox dir"),
        }
    }

    /// Adds a file (parents created), returning the sandbox for chaining.
    pub fn file(self, rel: &str, contents: &str) -> Sandbox {
        let path = self.dir.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(&path, contents).expect("write sandbox file");
        self
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
    }

    /// A `kopsci` invocation running in this sandbox.
    pub fn kopsci(&self) -> Kopsci {
        Kopsci::new().current_dir(self.path())
    }
}

/// One `kopsci` invocation, configured step by step.
pub struct Kopsci {
    command: Command,
}

impl Kopsci {
    pub fn new() -> Kopsci {
        let mut command = Command::new(env!("CARGO_BIN_EXE_kopsci"));
        // Tests see what a CI job sees: no colour, no inherited kOps settings.
        for var in [
            "KOPS_STATE_STORE",
            "KOPS_CLUSTER_NAME",
            "KOPSCI_FLEET",
            "KOPSCI_LOG",
        ] {
            command.env_remove(var);
        }
        command.env("NO_COLOR", "1");
        Kopsci { command }
    }

    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Kopsci {
        self.command.current_dir(dir);
        self
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Kopsci {
        self.command.arg(arg);
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Kopsci
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command.args(args);
        self
    }

    pub fn env(mut self, key: &str, value: impl AsRef<OsStr>) -> Kopsci {
        self.command.env(key, value);
        self
    }

    /// Nothing from the outer environment that could reach a real cloud
    /// or change kopsci's behaviour: no `AWS_*`, `S3_*`, `KOPS*`, `CI*` or
    /// `GITLAB_*` variables, and no AWS credential chain beyond what the
    /// test sets afterwards.
    pub fn isolated(mut self) -> Kopsci {
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy().into_owned();
            if ["AWS_", "S3_", "KOPS", "CI", "GITLAB_"]
                .iter()
                .any(|p| key.starts_with(p))
            {
                self.command.env_remove(&key);
            }
        }
        self.command
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null");
        self
    }

    /// The configured command, for tests that drive it themselves.
    pub fn into_command(self) -> Command {
        self.command
    }

    /// Starts kopsci without waiting (for signal tests); output is piped.
    pub fn spawn(mut self) -> std::process::Child {
        self.command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn kopsci")
    }

    pub fn run(mut self) -> Run {
        let output = self.command.output().expect("spawn kopsci");
        Run { output }
    }
}

/// The outcome of one invocation, with assertions that print everything
/// when they fail.
pub struct Run {
    pub output: Output,
}

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    #[track_caller]
    pub fn success(self) -> Run {
        self.expect_code(0)
    }

    #[track_caller]
    pub fn expect_code(self, code: i32) -> Run {
        assert_eq!(
            self.code(),
            Some(code),
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }

    /// Asserts stdout contains `text`.
    #[track_caller]
    pub fn assert_stdout_has(&self, text: &str) -> &Run {
        let stdout = self.stdout();
        assert!(stdout.contains(text), "stdout lacks {text:?}:\n{stdout}");
        self
    }

    /// Asserts stderr contains `text`.
    #[track_caller]
    pub fn assert_stderr_has(&self, text: &str) -> &Run {
        let stderr = self.stderr();
        assert!(stderr.contains(text), "stderr lacks {text:?}:\n{stderr}");
        self
    }

    /// Asserts a failure whose stderr is one `error:` message containing
    /// every fragment, and no panic.
    #[track_caller]
    pub fn fails_with(self, code: i32, fragments: &[&str]) -> Run {
        let run = self.expect_code(code);
        let stderr = run.stderr();
        assert!(stderr.contains("error: "), "no error line in:\n{stderr}");
        assert!(!stderr.contains("panicked"), "panic in:\n{stderr}");
        for fragment in fragments {
            assert!(
                stderr.contains(fragment),
                "stderr lacks {fragment:?}:\n{stderr}"
            );
        }
        run
    }
}

/// The repository root (fleet, templates, examples).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// Parses a multi-document YAML stream into values, for semantic comparison.
pub fn yaml_documents(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(text).unwrap_or_else(|e| panic!("invalid YAML: {e}\n{text}"))
}
