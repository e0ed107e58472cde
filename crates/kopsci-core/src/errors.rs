//! The library's one error type: every failure kopsci can report, with the
//! file, line and column where the input was wrong.

use std::io;
use std::path::PathBuf;

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Every error the library returns. Messages are lowercase and never contain
/// values read from inputs beyond names and locations: values may hold
/// secrets.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed on `path`. The cause is part of the
    /// message, not a `source()`, so every error prints as one line however
    /// it is formatted.
    #[error("{}: {cause}", path.display())]
    Io { path: PathBuf, cause: io::Error },

    /// A YAML input did not parse, or parsed to the wrong shape.
    #[error("{origin}:{line}:{column}: {message}")]
    Yaml {
        origin: String,
        line: u64,
        column: u64,
        message: String,
    },

    /// Writing a value as YAML failed.
    #[error("cannot write YAML: {0}")]
    YamlWrite(String),

    /// A `--set` / `--set-string` expression did not parse.
    #[error("invalid {flag} `{expr}`: {message}")]
    SetValue {
        flag: &'static str,
        expr: String,
        message: String,
    },

    /// A values layer is not usable (wrong top-level type, conflicting
    /// `clusterName`, …).
    #[error("{origin}: {message}")]
    Values { origin: String, message: String },

    /// A template failed to parse or render. `location` is `file:line` when known.
    #[error("{location}: {message}")]
    Template { location: String, message: String },

    /// A rendered document is not valid YAML.
    #[error("{template}: document {index}: line {line}, column {column}: {message}")]
    RenderedYaml {
        template: String,
        index: usize,
        line: u64,
        column: u64,
        message: String,
    },

    /// The fleet file is invalid.
    #[error("{origin}: {message}")]
    Fleet { origin: String, message: String },

    /// A cluster named on the command line is not in the fleet.
    #[error("unknown cluster `{name}` (the fleet has: {known})")]
    UnknownCluster { name: String, known: String },

    /// A failure while working on one cluster of the fleet.
    #[error("cluster `{cluster}`: {cause}")]
    Cluster { cluster: String, cause: Box<Error> },

    /// A state store URL is not one kopsci can read.
    #[error("invalid state store `{url}`: {message}")]
    StateUrl { url: String, message: String },

    /// An object key of a state store would land outside the snapshot
    /// directory, or cannot be a file path at all.
    #[error("refusing object key `{key}`: {reason}")]
    UnsafeKey { key: String, reason: &'static str },

    /// A request to an S3 state store failed (after the SDK's retries).
    #[error("{context}: {message}")]
    S3 { context: String, message: String },

    /// A snapshot cannot be taken or verified as asked.
    #[error("{0}")]
    Snapshot(String),

    /// A snapshot record (`.kopsci-snapshot.json`) is missing or invalid.
    #[error("{}: {message}", path.display())]
    SnapshotRecord { path: PathBuf, message: String },

    /// The command was stopped by a signal; whatever it had started was
    /// cleaned up.
    #[error("interrupted by {name}")]
    Interrupted { name: &'static str, signal: i32 },

    /// The command was used in a way that cannot work (missing inputs,
    /// conflicting options). The binary maps this to the usage exit code.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }
}
