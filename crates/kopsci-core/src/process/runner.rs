//! The one way kopsci runs kops: an [`Invocation`] started with duct, its
//! stdout and stderr streamed live (unprefixed, whole lines, so GitLab's
//! log reads like a kops run) and captured separately, its exit code passed
//! through, SIGINT/SIGTERM forwarded to it.
//!
//! Both streams are echoed to kopsci's *stderr*: kopsci's stdout is for its
//! own results, and kops' dry-run plan is captured for the reports anyway.

use std::io::{self, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use duct::unix::HandleExt;

use crate::errors::{Error, Result};
use crate::process::invocation::Invocation;
use crate::process::signals::{Forwarding, signal_name};

/// How many trailing stderr lines a failure keeps.
pub const STDERR_TAIL_LINES: usize = 20;

/// After kops exits, how long to wait for its output pipes to close. They
/// stay open only if kops left a process behind that inherited them; kopsci
/// then carries on with what it read rather than hang the job.
const PIPE_GRACE: Duration = Duration::from_secs(5);

/// Where the child's output is echoed while it runs.
#[derive(Clone, Default)]
pub enum Echo {
    /// kopsci's stderr.
    #[default]
    Stderr,
    /// Nowhere (captured only).
    Off,
    /// A writer of the caller's (tests; a future log file).
    To(Arc<Mutex<dyn Write + Send>>),
}

/// What a finished child did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The exit code as a shell reports it: 128+n when killed by signal n.
    pub code: i32,
    /// The signal that killed the child, if one did.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

impl Outcome {
    pub fn success(&self) -> bool {
        self.code == 0 && self.signal.is_none()
    }

    /// The outcome of `inv`, or [`Error::KopsFailed`] when it did not exit 0.
    pub fn checked(self, inv: &Invocation) -> Result<Outcome> {
        if self.success() {
            return Ok(self);
        }
        Err(Error::KopsFailed {
            command: inv.label(),
            status: self.status(),
            code: self.code,
            stderr_tail: self.stderr_tail(STDERR_TAIL_LINES),
        })
    }

    /// `exit code N` or `signal N (SIGNAME)`.
    pub fn status(&self) -> String {
        match self.signal {
            Some(s) => format!("signal {s} ({})", signal_name(s)),
            None => format!("exit code {}", self.code),
        }
    }

    /// The last `n` non-empty stderr lines.
    pub fn stderr_tail(&self, n: usize) -> Vec<String> {
        let mut tail: Vec<String> = self
            .stderr
            .lines()
            .rev()
            .filter(|l| !l.trim().is_empty())
            .take(n)
            .map(str::to_owned)
            .collect();
        tail.reverse();
        tail
    }
}

/// Runs invocations.
#[derive(Clone, Default)]
pub struct Runner {
    pub echo: Echo,
}

impl Runner {
    pub fn new(echo: Echo) -> Runner {
        Runner { echo }
    }

    /// Runs `inv`; a non-zero exit is [`Error::KopsFailed`].
    pub fn run(&self, inv: &Invocation) -> Result<Outcome> {
        self.run_unchecked(inv)?.checked(inv)
    }

    /// Runs `inv` and returns whatever it did. Errors only when it cannot be
    /// started, or when kopsci was signalled while it ran
    /// ([`Error::Interrupted`], after the child was told and has exited):
    /// callers then unwind, dropping their temporary directories, and the
    /// binary exits 128+n.
    pub fn run_unchecked(&self, inv: &Invocation) -> Result<Outcome> {
        match self.run_to_end(inv)? {
            (_, Some(interruption)) => Err(interruption),
            (outcome, None) => Ok(outcome),
        }
    }

    /// As [`Runner::run_unchecked`], but an interruption while kops ran
    /// comes back beside what kops printed before it stopped, so a caller
    /// can say how far it got (the phases of a reconcile, the instances a
    /// roll replaced) before unwinding.
    pub fn run_to_end(&self, inv: &Invocation) -> Result<(Outcome, Option<Error>)> {
        tracing::info!("running {inv}");
        let pipe_err = |e: io::Error| Error::KopsSpawn {
            program: inv.program.clone(),
            cause: e,
        };
        let (out_read, out_write) = os_pipe::pipe().map_err(pipe_err)?;
        let (err_read, err_write) = os_pipe::pipe().map_err(pipe_err)?;
        // stdin is /dev/null: kops must never wait for an answer in CI.
        let expr = inv
            .expression()
            .stdin_null()
            .stdout_file(out_write)
            .stderr_file(err_write)
            .unchecked();

        let (done_tx, done_rx) = mpsc::channel();
        let stdout =
            Capture::start(out_read, self.echo.clone(), done_tx.clone()).map_err(pipe_err)?;
        let stderr = Capture::start(err_read, self.echo.clone(), done_tx).map_err(pipe_err)?;

        // Signals are watched from before the spawn, so none is lost in
        // between; one that arrives before kops exists just stops here.
        let child: Arc<OnceLock<duct::Handle>> = Arc::new(OnceLock::new());
        let target = Arc::clone(&child);
        let forwarding = Forwarding::start(move |signal| {
            if let Some(handle) = target.get() {
                // An error means the child is already gone: nothing to stop.
                let _ = handle.send_signal(signal);
            }
        })
        .map_err(|e| Error::KopsSpawn {
            program: inv.program.clone(),
            cause: io::Error::other(format!("cannot watch signals: {e}")),
        })?;
        if let Some(interruption) = forwarding.received() {
            return Err(interruption.into());
        }

        let started = Instant::now();
        let spawned = expr.start();
        // Our copies of the pipes' write ends live in `expr`; dropping it
        // lets the readers see end-of-file once kops exits.
        drop(expr);
        let handle = spawned.map_err(|e| Error::KopsSpawn {
            program: inv.program.clone(),
            cause: e,
        })?;
        let handle = child.get_or_init(|| handle);
        if let Some(interruption) = forwarding.received() {
            // Arrived between spawn and publishing the handle.
            let _ = handle.send_signal(interruption.signal);
        }
        let status = handle.wait().map(|o| o.status);
        let duration = started.elapsed();
        let interrupted = forwarding.stop();
        let status = status.map_err(|e| Error::KopsSpawn {
            program: inv.program.clone(),
            cause: e,
        })?;

        let deadline = Instant::now() + PIPE_GRACE;
        for _ in 0..2 {
            let left = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(left).is_err() {
                tracing::warn!(
                    "{}: output still open {}s after it exited (a leftover child process?); continuing",
                    inv.label(),
                    PIPE_GRACE.as_secs()
                );
                break;
            }
        }
        if let Some(interruption) = interrupted {
            tracing::warn!(
                "kopsci received {}; {} stopped with {}",
                interruption.name(),
                inv.label(),
                describe(status)
            );
        }
        let (code, signal) = exit_code(status);
        let outcome = Outcome {
            code,
            signal,
            stdout: stdout.text(),
            stderr: stderr.text(),
            duration,
        };
        Ok((outcome, interrupted.map(Into::into)))
    }
}

fn exit_code(status: ExitStatus) -> (i32, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(signal)) => (128 + signal, Some(signal)),
        // Neither: cannot happen for a waited-for child on Unix.
        (None, None) => (1, None),
    }
}

fn describe(status: ExitStatus) -> String {
    match exit_code(status) {
        (_, Some(s)) => format!("signal {s} ({})", signal_name(s)),
        (code, None) => format!("exit code {code}"),
    }
}

/// One output stream being read: every byte is kept, and whole lines are
/// echoed as they complete (so the two streams interleave by line, not
/// mid-line).
struct Capture {
    buf: Arc<Mutex<Vec<u8>>>,
}

impl Capture {
    fn start(
        mut pipe: os_pipe::PipeReader,
        echo: Echo,
        done: mpsc::Sender<()>,
    ) -> io::Result<Capture> {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        thread::Builder::new()
            .name("kopsci-output".into())
            .spawn(move || {
                let mut pending: Vec<u8> = Vec::new();
                let mut chunk = [0u8; 8192];
                loop {
                    match pipe.read(&mut chunk) {
                        Ok(0) => break,
                        Ok(n) => {
                            let data = &chunk[..n];
                            sink.lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .extend_from_slice(data);
                            pending.extend_from_slice(data);
                            if let Some(last_nl) = pending.iter().rposition(|&b| b == b'\n') {
                                let rest = pending.split_off(last_nl + 1);
                                echo_bytes(&echo, &pending);
                                pending = rest;
                            } else if pending.len() > 64 * 1024 {
                                // A very long line: do not hold it forever.
                                echo_bytes(&echo, &pending);
                                pending.clear();
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
                if !pending.is_empty() {
                    pending.push(b'\n');
                    echo_bytes(&echo, &pending);
                }
                let _ = done.send(());
            })?;
        Ok(Capture { buf })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned()
    }
}

fn echo_bytes(echo: &Echo, bytes: &[u8]) {
    // Echo failures (a closed stderr) must not stop kops or lose the capture.
    match echo {
        Echo::Off => {}
        Echo::Stderr => {
            let mut err = io::stderr().lock();
            let _ = err.write_all(bytes);
            let _ = err.flush();
        }
        Echo::To(w) => {
            let _ = w
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .write_all(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::process::{Command, Stdio};

    /// Set in a re-executed copy of this test binary: the script the
    /// helper test runs through the runner (see `forwards`).
    const HELPER_ENV: &str = "KOPSCI_TEST_RUNNER_SCRIPT";
    const HELPER_TEST: &str = "process::runner::tests::helper_runs_a_script_when_asked";

    /// Writes `body` as a script and returns the invocation running it.
    /// Run through `/bin/sh` rather than exec'd directly: exec'ing a file
    /// just written by a multi-threaded process can fail with ETXTBSY when
    /// another test forks meanwhile.
    fn script(dir: &Path, body: &str) -> Invocation {
        let path = dir.join("script.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        Invocation::new("/bin/sh").args([path])
    }

    fn buffer() -> (Arc<Mutex<Vec<u8>>>, Runner) {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let echo: Arc<Mutex<dyn Write + Send>> = buf.clone();
        (buf, Runner::new(Echo::To(echo)))
    }

    fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
        String::from_utf8_lossy(&buf.lock().unwrap()).into_owned()
    }

    #[test]
    fn captures_both_streams_and_echoes_them_live() {
        let tmp = tempfile::tempdir().unwrap();
        let go = tmp.path().join("go");
        let inv = script(
            tmp.path(),
            &format!(
                "echo 'Will create resources:'\nsleep 0.2\necho 'W1121 warning' >&2\n\
                 i=0; while [ ! -e '{}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done\n\
                 printf 'partial line'",
                go.display()
            ),
        );
        let (buf, runner) = buffer();
        let handle = thread::spawn(move || runner.run(&inv));
        // Both lines are echoed while the script still runs (it waits for
        // `go`, which is only created once they were seen).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !text(&buf).contains("W1121 warning\n") {
            assert!(Instant::now() < deadline, "no live echo: {:?}", text(&buf));
            thread::sleep(Duration::from_millis(20));
        }
        std::fs::write(&go, "").unwrap();
        let outcome = handle.join().unwrap().unwrap();
        assert_eq!(outcome.stdout, "Will create resources:\npartial line");
        assert_eq!(outcome.stderr, "W1121 warning\n");
        assert_eq!(
            text(&buf),
            "Will create resources:\nW1121 warning\npartial line\n"
        );
        assert!(outcome.success());
        assert!(outcome.duration >= Duration::from_millis(200));
    }

    #[test]
    fn large_output_on_both_streams_does_not_deadlock() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = script(
            tmp.path(),
            "i=0; while [ $i -lt 3000 ]; do echo \"stdout line $i with some padding to make it longer\"; echo \"stderr line $i\" >&2; i=$((i+1)); done",
        );
        let outcome = Runner::new(Echo::Off).run(&inv).unwrap();
        assert_eq!(outcome.stdout.lines().count(), 3000);
        assert_eq!(outcome.stderr.lines().count(), 3000);
        assert!(
            outcome
                .stdout
                .ends_with("stdout line 2999 with some padding to make it longer\n")
        );
    }

    #[test]
    fn exit_codes_pass_through() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = script(
            tmp.path(),
            "echo 'I1121 12:00:00.000000 1 x.go:1] working' >&2\necho 'Error: cluster \"c\" not found' >&2\necho\nexit 3",
        );
        let runner = Runner::new(Echo::Off);
        let outcome = runner.run_unchecked(&inv).unwrap();
        assert_eq!((outcome.code, outcome.signal), (3, None));
        assert!(!outcome.success());
        match runner.run(&inv).unwrap_err() {
            Error::KopsFailed {
                command,
                status,
                code,
                stderr_tail,
            } => {
                assert_eq!(command, inv.label());
                assert!(command.starts_with("sh /") && command.ends_with("/script.sh"));
                assert_eq!(status, "exit code 3");
                assert_eq!(code, 3);
                assert_eq!(stderr_tail.len(), 2);
            }
            other => panic!("unexpected {other}"),
        }
        let msg = runner.run(&inv).unwrap_err().to_string();
        assert_eq!(
            msg,
            format!(
                "`{}` failed with exit code 3: Error: cluster \"c\" not found",
                inv.label()
            )
        );
    }

    #[test]
    fn a_child_killed_by_a_signal_reports_128_plus_n() {
        let tmp = tempfile::tempdir().unwrap();
        let inv = script(tmp.path(), "kill -KILL $$");
        let outcome = Runner::new(Echo::Off).run_unchecked(&inv).unwrap();
        assert_eq!((outcome.code, outcome.signal), (137, Some(9)));
        assert_eq!(outcome.status(), "signal 9 (SIGKILL)");
        let err = Runner::new(Echo::Off).run(&inv).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("`{}` failed with signal 9 (SIGKILL)", inv.label())
        );
    }

    #[test]
    fn env_is_set_and_removed_exactly_and_cwd_is_used() {
        let tmp = tempfile::tempdir().unwrap();
        let work = tmp.path().join("work dir");
        std::fs::create_dir(&work).unwrap();
        let parent_has_home = std::env::var_os("HOME").is_some();
        let inv = script(
            tmp.path(),
            r#"printf '%s|%s|%s|%s|%s\n' "${HOME-unset}" "${KOPSCI_T_SET-unset}" "${KOPSCI_T_BOTH-unset}" "${PATH:+path}" "$(pwd)"
cat; echo "stdin done""#,
        )
        .env("KOPSCI_T_SET", "value with spaces")
        .env_remove("HOME")
        .env_remove("KOPSCI_T_BOTH")
        .env("KOPSCI_T_BOTH", "set wins")
        .cwd(&work);
        let outcome = Runner::new(Echo::Off).run(&inv).unwrap();
        let line = outcome.stdout.lines().next().unwrap().to_string();
        let fields: Vec<&str> = line.split('|').collect();
        if parent_has_home {
            assert_eq!(fields[0], "unset", "{line}");
        }
        assert_eq!(fields[1], "value with spaces");
        assert_eq!(fields[2], "set wins");
        assert_eq!(fields[3], "path", "the rest is inherited");
        assert_eq!(
            Path::new(fields[4]).canonicalize().unwrap(),
            work.canonicalize().unwrap()
        );
        // stdin is /dev/null: `cat` returns at once.
        assert_eq!(outcome.stdout.lines().nth(1), Some("stdin done"));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = Runner::new(Echo::Off)
            .run(&Invocation::new("/nonexistent/kops").args(["version"]))
            .unwrap_err();
        assert!(matches!(err, Error::KopsSpawn { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("cannot run /nonexistent/kops: "),
            "{err}"
        );
    }

    /// Not a test on its own: when re-executed with [`HELPER_ENV`], runs
    /// that script through the runner and exits as the kopsci binary would.
    #[test]
    fn helper_runs_a_script_when_asked() {
        let Some(script) = std::env::var_os(HELPER_ENV) else {
            return;
        };
        let inv = Invocation::new("/bin/sh").args([script]);
        match Runner::new(Echo::Stderr).run_unchecked(&inv) {
            Ok(outcome) => std::process::exit(outcome.code),
            Err(Error::Interrupted { signal, .. }) => std::process::exit(128 + signal),
            Err(e) => {
                eprintln!("helper: {e}");
                std::process::exit(1)
            }
        }
    }

    fn wait_for(path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs the helper on a trapping script, sends it `signal` once the
    /// script runs, and returns (helper exit code, what the trap recorded).
    fn forwards(signal: &str) -> (Option<i32>, String, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let script = dir.join("kops.sh");
        // The trap sleeps before recording: the helper exiting only after
        // the file exists proves it waited for the child.
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\n\
                 d='{d}'\n\
                 trap 'kill $child 2>/dev/null; sleep 0.3; echo TERM > \"$d/trapped\"; exit 143' TERM\n\
                 trap 'kill $child 2>/dev/null; sleep 0.3; echo INT > \"$d/trapped\"; exit 130' INT\n\
                 sleep 30 & child=$!\n\
                 echo started > \"$d/started\"\n\
                 wait $child\n\
                 echo finished > \"$d/finished\"\n",
                d = dir.display()
            ),
        )
        .unwrap();
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([HELPER_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(HELPER_ENV, &script)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(&dir.join("started"));
        let sent = Command::new("kill")
            .args([format!("-{signal}"), helper.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = helper.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = helper.kill();
                panic!("helper did not exit after SIG{signal}");
            }
            thread::sleep(Duration::from_millis(20));
        };
        let trapped = std::fs::read_to_string(dir.join("trapped")).unwrap_or_default();
        assert!(!dir.join("finished").exists(), "the script ran to its end");
        (status.code(), trapped, tmp.keep())
    }

    #[test]
    fn sigterm_is_forwarded_and_the_exit_is_128_plus_15() {
        let (code, trapped, dir) = forwards("TERM");
        assert_eq!(code, Some(143));
        assert_eq!(trapped.trim(), "TERM");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn sigint_is_forwarded_and_the_exit_is_128_plus_2() {
        let (code, trapped, dir) = forwards("INT");
        assert_eq!(code, Some(130));
        assert_eq!(trapped.trim(), "INT");
        let _ = std::fs::remove_dir_all(dir);
    }
}
