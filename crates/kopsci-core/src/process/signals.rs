//! Forwarding SIGINT and SIGTERM to a child process while it runs.
//!
//! When the CI job is cancelled, GitLab sends kopsci SIGTERM; kops must get
//! it too, so it stops the way kOps stops, and kopsci must wait for it
//! before cleaning up — never leave a kops running against a store or a
//! snapshot that is being deleted. [`Forwarding`] registers handlers (through
//! signal-hook) only while a child runs and unregisters them afterwards, so
//! it coexists with the Tokio signal handling the snapshot code installs
//! (both sit on `signal-hook-registry`, which calls every registered action).
//!
//! Once stopped, signal-hook-registry keeps its low-level handler installed
//! (it never restores `SIG_DFL`), as Tokio's does after a snapshot: a SIGINT
//! or SIGTERM arriving *between* kops calls is then not fatal by itself. A
//! stage that wants to stop there can hold its own [`Forwarding`] (with a
//! no-op callback) over its whole run and check [`Forwarding::received`].
//!
//! The child stays in kopsci's process group, so a Ctrl-C at a terminal
//! reaches kops twice (from the terminal and forwarded): harmless, and it
//! keeps kops killable with the job even if kopsci itself is killed hard.

use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::errors::Error;

/// The signals a running kops is told about.
pub const FORWARDED: [i32; 2] = [SIGINT, SIGTERM];

/// A signal that stopped the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interruption {
    pub signal: i32,
}

impl Interruption {
    /// The conventional name (`SIGTERM`), for messages.
    pub fn name(self) -> &'static str {
        signal_name(self.signal)
    }

    /// The exit code a shell reports for a process stopped by this signal.
    pub fn exit_code(self) -> i32 {
        128 + self.signal
    }
}

impl From<Interruption> for Error {
    fn from(i: Interruption) -> Error {
        Error::Interrupted {
            name: i.name(),
            signal: i.signal,
        }
    }
}

/// Names of the signals kopsci talks about.
pub fn signal_name(signal: i32) -> &'static str {
    signal_hook::low_level::signal_name(signal).unwrap_or("signal")
}

/// Delivers every SIGINT/SIGTERM kopsci receives to a callback (the
/// runner's: "send it to the child") on a small thread, until stopped, and
/// remembers the first one.
pub struct Forwarding {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
    first: Arc<Mutex<Option<i32>>>,
}

impl Forwarding {
    /// Starts forwarding [`FORWARDED`] signals to `forward`.
    pub fn start<F>(forward: F) -> io::Result<Forwarding>
    where
        F: Fn(i32) + Send + 'static,
    {
        let mut signals = Signals::new(FORWARDED)?;
        let handle = signals.handle();
        let first = Arc::new(Mutex::new(None));
        let seen = Arc::clone(&first);
        let thread = std::thread::Builder::new()
            .name("kopsci-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    seen.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get_or_insert(signal);
                    forward(signal);
                }
            })?;
        Ok(Forwarding {
            handle,
            thread: Some(thread),
            first,
        })
    }

    /// The first signal received so far, if any.
    pub fn received(&self) -> Option<Interruption> {
        self.first
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|signal| Interruption { signal })
    }

    /// Stops forwarding (the handlers are unregistered) and says whether a
    /// signal arrived meanwhile.
    pub fn stop(mut self) -> Option<Interruption> {
        self.shutdown();
        self.received()
    }

    fn shutdown(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            // The thread only loops over signals; a panic in `forward` would
            // already have been reported by the panic hook.
            let _ = thread.join();
        }
    }
}

impl Drop for Forwarding {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_exit_codes() {
        let i = Interruption { signal: SIGTERM };
        assert_eq!(i.name(), "SIGTERM");
        assert_eq!(i.exit_code(), 143);
        assert_eq!(signal_name(SIGINT), "SIGINT");
        let err: Error = Interruption { signal: SIGINT }.into();
        assert_eq!(err.to_string(), "interrupted by SIGINT");
    }
}
