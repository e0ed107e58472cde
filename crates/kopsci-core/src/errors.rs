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

    /// The fleet file is missing or invalid.
    #[error(transparent)]
    Fleet(Box<FleetError>),

    /// A name (cluster, environment, instance group) is not valid.
    #[error(transparent)]
    Name(#[from] NameError),

    /// A cluster named on the command line is not in the fleet.
    #[error(
        "unknown cluster `{name}`{}{}",
        suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default(),
        if known.is_empty() { " (the fleet has no clusters)".to_string() } else { format!(" (the fleet has: {known})") }
    )]
    UnknownCluster {
        name: String,
        known: String,
        suggestion: Option<String>,
    },

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

    /// No usable kops binary. `tried` says where kopsci looked.
    #[error(
        "kops not found ({tried}): install kops or pass --kops / set KOPSCI_KOPS; `kopsci dryrun --without-kops` runs without it"
    )]
    KopsNotFound { tried: String },

    /// The kops binary could not be started at all.
    #[error("cannot run {}: {cause}", program.display())]
    KopsSpawn { program: PathBuf, cause: io::Error },

    /// The kops binary's version does not satisfy the fleet's `kops.version`.
    #[error("kops {found} ({}) does not satisfy the required version `{required}` (`kops.version`)", program.display())]
    KopsVersion {
        program: PathBuf,
        found: String,
        required: String,
    },

    /// A kops command failed. Its whole stderr was already streamed live;
    /// the message repeats only its last line (kOps puts the `Error: …`
    /// line last), `stderr_tail` keeps the last few for reports. kOps never
    /// prints credentials, and the environment is never part of this.
    #[error(
        "`{command}` failed with {status}{}",
        stderr_tail.last().map(|l| format!(": {l}")).unwrap_or_default()
    )]
    KopsFailed {
        command: String,
        /// `exit code N` or `signal N (SIGNAME)`.
        status: String,
        /// The exit code as a shell reports it (128+n after a signal).
        code: i32,
        stderr_tail: Vec<String>,
    },

    /// STS would not give kopsci the fleet's `aws.role_arn`.
    #[error("cannot assume role `{role}`: {message}")]
    AssumeRole { role: String, message: String },

    /// `update` found no usable plan, or one that no longer fits what it
    /// would apply; `reasons` says why, one per line.
    #[error(
        "cluster `{cluster}`: refusing a stale plan: {}; run the dry run again (or pass --allow-stale)",
        reasons.join("; ")
    )]
    StalePlan {
        cluster: String,
        reasons: Vec<String>,
    },

    /// `update` would change the Kubernetes version with the sequence kOps'
    /// upgrade guide says can crash kubelets.
    #[error(
        "cluster `{cluster}`: refusing to change Kubernetes {from} → {to} with `kopsci update` then `kopsci roll` (kops {kops}): {guide}. Use `kopsci apply {cluster}` (kops reconcile cluster), set `apply: reconcile` for its environment in the fleet, or pass --allow-version-skew to take the risk"
    )]
    VersionSkew {
        cluster: String,
        from: String,
        to: String,
        kops: String,
        guide: &'static str,
    },

    /// `kops validate cluster` did not pass within its wait.
    #[error(
        "cluster `{cluster}` did not validate within {wait}: {failures} failure(s), first: {first} (see the validation table in the report; docs/troubleshooting.md: \"A validation that never passes\")"
    )]
    ValidationFailed {
        cluster: String,
        wait: String,
        failures: usize,
        first: String,
    },

    /// `kops reconcile cluster --yes` failed; `phase` is where it stopped.
    #[error(
        "cluster `{cluster}`: `kops reconcile cluster --yes` failed with {status} during \"{phase}\"{}; re-run the job to resume (the rolling update skips groups already updated)",
        stderr_tail.last().map(|l| format!(": {l}")).unwrap_or_default()
    )]
    ReconcileFailed {
        cluster: String,
        phase: String,
        status: String,
        stderr_tail: Vec<String>,
    },

    /// `kopsci delete` of a cluster the fleet does not retire.
    #[error(
        "refusing to delete cluster `{cluster}`: {fleet} does not mark it `absent: true` (a deletion must be reviewed in the fleet file first)"
    )]
    NotAbsent { cluster: String, fleet: String },

    /// `update`, `apply` or `roll` of a cluster the fleet retires.
    #[error(
        "cluster `{cluster}` is `absent: true` in the fleet: it is retired, not applied; `kopsci delete {cluster}` deletes it"
    )]
    Absent { cluster: String },

    /// kops printed output kopsci cannot make sense of.
    #[error("cannot parse the output of `{command}`: {message}")]
    KopsOutput {
        command: &'static str,
        message: String,
    },

    /// A git command kopsci runs to find changed files failed. `message`
    /// carries git's own last line and, where kopsci knows one, a hint.
    #[error("`{command}` failed: {message}")]
    Git { command: String, message: String },

    /// A GitLab REST API request failed (after retries where they make
    /// sense). `request` is the method and path; the token is never part of
    /// either.
    #[error("GitLab API {request}: {message}")]
    GitLab { request: String, message: String },

    /// A dry-run report (`report.json`) cannot be read or has the wrong shape.
    #[error("{}: {message}", path.display())]
    Report { path: PathBuf, message: String },

    /// Go templates (or a kops command line) `kopsci migrate` cannot convert
    /// exactly: one `file:line:col: …` per problem.
    #[error("{}", problems.join("\n"))]
    Migrate { problems: Vec<String> },

    /// The child pipeline cannot be generated as asked (e.g. more `needs`
    /// than GitLab allows).
    #[error("{0}")]
    Pipeline(String),
}

impl From<FleetError> for Error {
    fn from(err: FleetError) -> Error {
        Error::Fleet(Box::new(err))
    }
}

impl Error {
    /// Whether the error is about how kopsci was called (a missing fleet
    /// file, an unknown cluster, a bad flag) rather than about the work.
    pub fn is_usage(&self) -> bool {
        match self {
            Error::Usage(_)
            | Error::UnknownCluster { .. }
            | Error::Name(_)
            | Error::NotAbsent { .. }
            | Error::Absent { .. } => true,
            Error::Fleet(fleet) => matches!(**fleet, FleetError::NotFound { .. }),
            _ => false,
        }
    }

    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, cause: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }
}

/// Where in the fleet file something is: `kopsci.yaml:12:5`, or just the
/// file when no position is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub file: String,
    /// 1-based; 0 when unknown.
    pub line: u64,
    pub column: u64,
}

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            f.write_str(&self.file)
        } else {
            write!(f, "{}:{}:{}", self.file, self.line, self.column)
        }
    }
}

/// A fleet file that cannot be used. Data in the variants, text only in
/// `Display`; every message says where, what is wrong and what to do.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// No fleet file where one was looked for.
    #[error(
        "{}",
        if *explicit { format!("fleet file {} not found", path.display()) }
        else { format!("no {} in the current directory: pass --fleet FILE, or --template (and --values) to render without a fleet", path.display()) }
    )]
    NotFound { path: PathBuf, explicit: bool },

    #[error("{file}: `templates` must list at least one template file or directory")]
    NoTemplates { file: String },

    /// A key's value is not what the key takes.
    #[error("{at}: {key}: {problem}")]
    Invalid {
        at: At,
        key: String,
        problem: String,
    },

    // The name error is part of the message, not a `source()`: chained,
    // it would print twice.
    #[error("{at}: {name}")]
    Name { at: At, name: NameError },

    #[error("{at}: cluster `{name}` is declared twice")]
    DuplicateCluster { at: At, name: String },

    #[error(
        "{at}: {referrer}: unknown environment `{name}`; {}",
        if known.is_empty() { "the fleet declares no `environments`".to_string() }
        else { format!("{}expected one of: {}", suggestion.as_ref().map(|s| format!("did you mean `{s}`? ")).unwrap_or_default(), known.join(", ")) }
    )]
    UnknownEnvironment {
        at: At,
        referrer: String,
        name: String,
        known: Vec<String>,
        suggestion: Option<String>,
    },

    #[error("{file}: environments.*.needs form a cycle: {}", cycle.join(" → "))]
    NeedsCycle { file: String, cycle: Vec<String> },

    #[error("{at}: {key}: set `{first}` or `{second}`, not both")]
    Conflict {
        at: At,
        key: String,
        first: &'static str,
        second: &'static str,
    },

    #[error(
        "{at}: cluster `{cluster}`: aws.external_id, aws.session_name and aws.duration_seconds only apply with aws.role_arn, which no level sets for this cluster"
    )]
    RoleRequired { at: At, cluster: String },

    #[error(
        "no state store for cluster `{cluster}`: set `state:` in {file} or pass --state (KOPS_STATE_STORE)"
    )]
    NoStateStore { cluster: String, file: String },
}

/// A name that kopsci cannot use. The name is shown escaped: it may hold
/// control characters from an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error(
        "invalid cluster name `{}`: {reason}",
        crate::text::escape_controls(name)
    )]
    Cluster { name: String, reason: &'static str },
    #[error(
        "invalid environment name `{}`: {reason}",
        crate::text::escape_controls(name)
    )]
    Environment { name: String, reason: &'static str },
    #[error(
        "invalid kOps object name `{}`: {reason}",
        crate::text::escape_controls(name)
    )]
    Object { name: String, reason: &'static str },
}
