//! Test controls: how a test steers the stand-in. None of them is kOps';
//! all come from the environment (so a test sets them per invocation, or
//! once for a whole pipeline). kopsci must never depend on them.
//!
//! | variable | values | effect |
//! | --- | --- | --- |
//! | `KOPS_STANDIN_VERSION` | `1.28`, `1.30.4`, `v1.34.1` (default `1.34.1`) | the kOps version played (played.rs): `kops version`, `kops-version.txt`, nodeup URLs, the downgrade check, and the CLI of that version: `reconcile` before 1.31 is `Error: unknown command "reconcile" for "kops"`; `update cluster --prune` before 1.29 and `--instance-group-roles` before 1.31 are `Error: unknown flag: --prune` / `--instance-group-roles`; before 1.20 the rolling-update table has no `TARGET` column. Not a version: every command fails. |
//! | `KOPS_STANDIN_CLOUD_DIR` | a directory | the simulated cloud, `<dir>/<cluster>.json` (cloud.rs). Unset: an empty, read-only cloud. |
//! | `KOPS_STANDIN_LOG` | a file | one JSON line appended per invocation, *before* parsing (rejected invocations are logged too), in invocation order: `{"argv":[…],"cwd":"…","env":{…},"pid":N}`; `argv` without the program name, `env` only `AWS_*`, `S3_*`, `KOPS_*`. A hung process that gets a signal adds `{"pid":N,"signal":"SIGTERM"}`. One `write` per line, so concurrent stand-ins never interleave. Which command wrote the live store: match `argv` (`--state`) or `env.KOPS_STATE_STORE`. |
//! | `KOPS_STANDIN_FAIL` | `CMD[,CMD…]`: a command path (`update cluster`), a first word (`update`), or `*` | after parsing, the command prints `Error: kops stand-in: "update cluster" failed as KOPS_STANDIN_FAIL=… asks` and exits 1, touching nothing. |
//! | `KOPS_STANDIN_FAIL_MESSAGE` | text | the message for `KOPS_STANDIN_FAIL` instead (e.g. `AccessDenied: Access Denied`). |
//! | `KOPS_STANDIN_HANG` | as `KOPS_STANDIN_FAIL` | the command prints `kops stand-in: hanging in "…" …` on stderr and waits, touching nothing, until SIGTERM/SIGINT; then logs the signal and exits 143/130. |
//! | `KOPS_STANDIN_VALIDATE` | `pass` (default), `fail`, `fail:N` | what `validate cluster` finds in a cluster whose control plane runs in the simulated cloud. `pass`: healthy (every instance a Ready node). `fail`: every attempt finds a worker node not ready and the `coredns` pod not ready (`--max-unready-nodes 1` tolerates the node, not the pod). `fail:N`: the first N attempts for the cluster fail, later ones pass; attempts are counted in the cloud file, so across invocations (`validate --wait` makes one attempt per `--interval`). A cluster with no control plane in the cloud (never applied, or no cloud directory) cannot be reached whatever the control says: `unexpected error during validation: unable to resolve Kubernetes cluster API URL dns: lookup api.C: no such host`. `reconcile cluster`'s wait for the API checks only the control plane and ignores pods, so this control never fails it. |
//! | `KOPS_STANDIN_ROLL_FAIL` | `GROUP[:N][,GROUP[:N]…]` | a rolling update with `--yes` (`rolling-update cluster --yes`, or a rolling-update phase of `reconcile cluster --yes`) fails in instance group GROUP when GROUP needs updating: it replaces the group's first stale instance, logs `Cluster did not validate within 15m0s` (the `--validation-timeout`; reconcile uses the default), and fails with kOps' error (`error validating cluster after removing a node: cluster did not validate within a duration of "15m0s"`; for a control-plane group wrapped in `control plane not healthy after update, stopping rolling-update: "…"`, which stops the roll at once; node groups after a failed node group are still rolled, as kOps does). Groups rolled before stay rolled: a re-run skips them and finishes GROUP. With `:N` only the first N times GROUP is reached fail (counted in the cloud file), so a plain re-run of the same job succeeds. |
//!
//! Time never passes for real: `validate --wait D` makes one attempt per
//! `--interval` (default 10s, at least 1s) of simulated time, at 0, I, 2I…
//! while less than `D` has passed (`--wait 30s --interval 10s`: 3
//! attempts), printing each attempt's result; intervals and timeouts of
//! rolling updates and deletions are accepted and ignored.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;

use anyhow::{Context, Result};
use serde_json::json;

use crate::cloud::ControlCounters;
use crate::ui;

pub const LOG_ENV: &str = "KOPS_STANDIN_LOG";
pub const FAIL_ENV: &str = "KOPS_STANDIN_FAIL";
pub const FAIL_MESSAGE_ENV: &str = "KOPS_STANDIN_FAIL_MESSAGE";
pub const HANG_ENV: &str = "KOPS_STANDIN_HANG";
pub const VALIDATE_ENV: &str = "KOPS_STANDIN_VALIDATE";
pub const ROLL_FAIL_ENV: &str = "KOPS_STANDIN_ROLL_FAIL";

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Environment variables a test may assert on: the AWS identity and kOps'
/// own settings. Anything else (HOME, PATH, …) stays out of the log.
fn recorded_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with("AWS_") || k.starts_with("S3_") || k.starts_with("KOPS_"))
        .collect()
}

/// Appends one line to the log in a single write, so concurrent stand-ins
/// (one per cluster) never interleave within a line.
fn append(line: &serde_json::Value) -> Result<()> {
    let Some(path) = env(LOG_ENV) else {
        return Ok(());
    };
    let mut text = line.to_string();
    text.push('\n');
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("kops stand-in: cannot open {LOG_ENV} file {path}"))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("kops stand-in: cannot write {LOG_ENV} file {path}"))
}

/// Records this invocation: `{"argv": [...], "cwd": "...", "env": {...},
/// "pid": N}`; `argv` leaves out the program name.
pub fn log_invocation(argv: &[String]) -> Result<()> {
    let cwd = std::env::current_dir()
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    append(&json!({
        "argv": argv,
        "cwd": cwd,
        "env": recorded_env(),
        "pid": std::process::id(),
    }))
}

/// Whether a control variable's value selects `command` (e.g. `update
/// cluster`): a comma-separated list of full command paths, first words
/// (`update`), or `*`.
fn selects(value: &str, command: &str) -> bool {
    let first = command.split(' ').next().unwrap_or(command);
    value
        .split(',')
        .map(str::trim)
        .any(|v| v == "*" || v == command || v == first)
}

/// The failure `KOPS_STANDIN_FAIL` asks for in `command`, if any.
pub fn failure_for(command: &str) -> Option<String> {
    let value = env(FAIL_ENV)?;
    if !selects(&value, command) {
        return None;
    }
    Some(
        env(FAIL_MESSAGE_ENV).unwrap_or_else(|| {
            format!("kops stand-in: {command:?} failed as {FAIL_ENV}={value} asks")
        }),
    )
}

/// Whether `KOPS_STANDIN_HANG` asks to hang in `command`.
pub fn hangs_in(command: &str) -> bool {
    env(HANG_ENV).is_some_and(|v| selects(&v, command))
}

/// Hangs until SIGTERM or SIGINT, then records the signal in the log and
/// exits as a process killed by it would be reported by a shell (128+n).
pub fn hang(command: &str) -> ! {
    ui::err(&format!(
        "kops stand-in: hanging in {command:?} as {HANG_ENV} asks (pid {})\n",
        std::process::id()
    ));
    let signal = wait_for_signal();
    let (name, number) = signal.unwrap_or(("SIGTERM", 15));
    let _ = append(&json!({"pid": std::process::id(), "signal": name}));
    std::process::exit(128 + number);
}

fn wait_for_signal() -> Option<(&'static str, i32)> {
    use tokio::signal::unix::{SignalKind, signal};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let mut term = signal(SignalKind::terminate()).ok()?;
        let mut int = signal(SignalKind::interrupt()).ok()?;
        tokio::select! {
            _ = term.recv() => Some(("SIGTERM", 15)),
            _ = int.recv() => Some(("SIGINT", 2)),
        }
    })
}

/// What `KOPS_STANDIN_VALIDATE` asks validation to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validation {
    Pass,
    Fail,
    /// The first N attempts fail.
    FailTimes(u64),
}

impl Validation {
    pub fn from_env() -> Result<Validation> {
        match env(VALIDATE_ENV) {
            None => Ok(Validation::Pass),
            Some(v) => Validation::parse(&v),
        }
    }

    fn parse(value: &str) -> Result<Validation> {
        let value = value.trim();
        match value {
            "pass" => return Ok(Validation::Pass),
            "fail" => return Ok(Validation::Fail),
            _ => {}
        }
        if let Some(n) = value.strip_prefix("fail:")
            && let Ok(n) = n.trim().parse::<u64>()
        {
            return Ok(Validation::FailTimes(n));
        }
        anyhow::bail!("kops stand-in: {VALIDATE_ENV}={value:?} is not one of pass, fail, fail:N")
    }

    /// Whether this attempt fails; counts the attempt in `counters`.
    pub fn attempt_fails(self, counters: &mut ControlCounters) -> bool {
        let seen = counters.validations;
        counters.validations += 1;
        match self {
            Validation::Pass => false,
            Validation::Fail => true,
            Validation::FailTimes(n) => seen < n,
        }
    }
}

/// What `KOPS_STANDIN_ROLL_FAIL` asks: groups that fail, each always or
/// only the first N times it is reached.
#[derive(Clone, Debug, Default)]
pub struct RollFailures {
    groups: Vec<(String, Option<u64>)>,
}

impl RollFailures {
    pub fn from_env() -> Result<RollFailures> {
        match env(ROLL_FAIL_ENV) {
            None => Ok(RollFailures::default()),
            Some(v) => RollFailures::parse(&v),
        }
    }

    fn parse(value: &str) -> Result<RollFailures> {
        let mut groups = Vec::new();
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, times) = match item.rsplit_once(':') {
                Some((name, n)) => match n.parse::<u64>() {
                    Ok(n) => (name, Some(n)),
                    Err(_) => anyhow::bail!(
                        "kops stand-in: {ROLL_FAIL_ENV}={value:?}: {item:?} is not GROUP or GROUP:N"
                    ),
                },
                None => (item, None),
            };
            groups.push((name.to_string(), times));
        }
        Ok(RollFailures { groups })
    }

    /// Whether the roll fails in `group` this time; counts the failure in
    /// `counters`.
    pub fn fails_in(&self, group: &str, counters: &mut ControlCounters) -> bool {
        let Some((_, times)) = self.groups.iter().find(|(g, _)| g == group) else {
            return false;
        };
        let seen = counters.roll_failures.entry(group.to_string()).or_default();
        let fails = times.is_none_or(|n| *seen < n);
        if fails {
            *seen += 1;
        }
        fails
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_control_values() {
        assert_eq!(Validation::parse("pass").unwrap(), Validation::Pass);
        assert_eq!(Validation::parse("fail").unwrap(), Validation::Fail);
        assert_eq!(
            Validation::parse("fail:2").unwrap(),
            Validation::FailTimes(2)
        );
        assert!(Validation::parse("sometimes").is_err());
        let mut counters = ControlCounters::default();
        let v = Validation::FailTimes(2);
        let results: Vec<bool> = (0..4).map(|_| v.attempt_fails(&mut counters)).collect();
        assert_eq!(results, vec![true, true, false, false]);
    }

    #[test]
    fn roll_failure_control_values() {
        let r = RollFailures::parse("nodes:1, master-us-test-1a").unwrap();
        let mut counters = ControlCounters::default();
        assert!(r.fails_in("nodes", &mut counters));
        assert!(!r.fails_in("nodes", &mut counters));
        assert!(r.fails_in("master-us-test-1a", &mut counters));
        assert!(r.fails_in("master-us-test-1a", &mut counters));
        assert!(!r.fails_in("other", &mut counters));
        assert!(RollFailures::parse("nodes:x").is_err());
    }

    #[test]
    fn selection_by_path_first_word_or_star() {
        assert!(selects("update", "update cluster"));
        assert!(selects("replace, update cluster", "update cluster"));
        assert!(selects("*", "version"));
        assert!(!selects("rolling-update", "update cluster"));
        assert!(!selects("update", "rolling-update cluster"));
    }
}
