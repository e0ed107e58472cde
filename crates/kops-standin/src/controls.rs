//! Test controls, all from the environment, none of them kOps': record each
//! invocation (`KOPS_STANDIN_LOG`), fail a command (`KOPS_STANDIN_FAIL`,
//! message from `KOPS_STANDIN_FAIL_MESSAGE`), or hang in it until a signal
//! arrives (`KOPS_STANDIN_HANG`), so tests can check what kopsci passes to
//! kops, how it handles a failing kops, and that it forwards SIGTERM.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write;

use anyhow::{Context, Result};
use serde_json::json;

use crate::ui;

pub const LOG_ENV: &str = "KOPS_STANDIN_LOG";
pub const FAIL_ENV: &str = "KOPS_STANDIN_FAIL";
pub const FAIL_MESSAGE_ENV: &str = "KOPS_STANDIN_FAIL_MESSAGE";
pub const HANG_ENV: &str = "KOPS_STANDIN_HANG";

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_path_first_word_or_star() {
        assert!(selects("update", "update cluster"));
        assert!(selects("replace, update cluster", "update cluster"));
        assert!(selects("*", "version"));
        assert!(!selects("rolling-update", "update cluster"));
        assert!(!selects("update", "rolling-update cluster"));
    }
}
