//! kOps state stores: safe, verifiable local snapshots of a cluster's state
//! (`kopsci snapshot`) that kOps reads as a `file://` store, and the checks
//! that the live store has not changed since (`kopsci snapshot verify`) and
//! that the local copy has not been altered (`snapshot verify --local`).
//!
//! The blocking entry points ([`snapshot`], [`verify`]) run their own Tokio
//! runtime; the `async` ones ([`snapshot::take`], [`verify::verify`]) are for
//! callers that already have one.

pub mod filter;
pub mod keys;
pub mod local;
pub mod record;
pub mod s3;
pub mod snapshot;
pub mod source;
pub mod tree;
pub mod url;
pub mod verify;

use std::io::IsTerminal;
use std::path::Path;

pub use filter::{Filter, FilterSpec};
pub use record::{ObjectRecord, RECORD_FILE, Record};
pub use s3::S3Settings;
pub use snapshot::{DEFAULT_CONCURRENCY, SnapshotOptions, SnapshotSummary};
pub use url::StoreUrl;
pub use verify::{Changes, LocalReport, VerifyReport, verify_local};

use crate::errors::{Error, Result};

/// Takes a snapshot, cleaning up on SIGINT, SIGTERM and SIGHUP (the error is
/// then [`Error::Interrupted`]).
pub fn snapshot(opts: &SnapshotOptions) -> Result<SnapshotSummary> {
    runtime()?.block_on(async {
        let mut signals = Signals::install()?;
        snapshot::take(opts, async move { signals.recv().await }).await
    })
}

/// Compares the live store with the snapshot in `dir`.
pub fn verify(dir: &Path, s3: &S3Settings, concurrency: usize) -> Result<VerifyReport> {
    runtime()?.block_on(verify::verify(dir, s3, concurrency))
}

/// Whether to draw a progress bar: only for a person at a terminal, never
/// in CI logs (GitLab sets `CI`).
pub fn progress_wanted() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("CI").is_none_or(|v| v.is_empty())
}

/// Two worker threads: preparing and signing dozens of requests at once,
/// then hashing and writing their bodies, is CPU work that `bench/snapshot`
/// measured finishing sooner on two threads than on one; the copy is bound
/// by round trips, not by more cores.
fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Snapshot(format!("cannot start the I/O runtime: {e}")))
}

/// The signals that stop a snapshot.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        let install =
            |kind| signal(kind).map_err(|e| Error::Snapshot(format!("cannot handle signals: {e}")));
        Ok(Signals {
            int: install(SignalKind::interrupt())?,
            term: install(SignalKind::terminate())?,
            hup: install(SignalKind::hangup())?,
        })
    }

    async fn recv(&mut self) -> Error {
        let (name, signal) = tokio::select! {
            _ = self.int.recv() => ("SIGINT", 2),
            _ = self.term.recv() => ("SIGTERM", 15),
            _ = self.hup.recv() => ("SIGHUP", 1),
        };
        Error::Interrupted { name, signal }
    }
}
