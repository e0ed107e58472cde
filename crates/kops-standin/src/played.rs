//! The kOps version the stand-in plays (`KOPS_STANDIN_VERSION`, default
//! 1.34.1) and what that version's CLI has: a command or flag that arrived
//! in a later kOps is refused exactly as the older kops refuses it —
//! `unknown command "reconcile" for "kops"`, `unknown flag: --prune` — so
//! that kopsci's version-dependent paths are tested against the CLI each
//! version really has. Output formats that changed between versions (the
//! rolling-update table's `TARGET` column) are asked here too.
//!
//! Only changes the kOps history records with certainty are modelled (see
//! [`GATES`]); every other documented flag is accepted whatever the version.

use anyhow::{Result, bail};

use crate::cli::{Cli, Command, UpdateCommand};
use crate::goflags;

pub const VERSION_ENV: &str = "KOPS_STANDIN_VERSION";
pub const DEFAULT_VERSION: &str = "1.34.1";

/// A flag or command and the first kOps minor release that has it.
struct Gate {
    /// Command path (`update cluster`), or the command itself for a
    /// command gate.
    command: &'static str,
    /// The long flag, or `None` for a whole command.
    flag: Option<&'static str>,
    since: (u64, u64),
}

/// kOps' history, as far as kopsci depends on it: `update cluster --prune`
/// (kOps 1.29), `update cluster --instance-group-roles` and `reconcile
/// cluster` (kOps 1.31, with the kubelet version-skew fix).
const GATES: &[Gate] = &[
    Gate {
        command: "reconcile",
        flag: None,
        since: (1, 31),
    },
    Gate {
        command: "update cluster",
        flag: Some("prune"),
        since: (1, 29),
    },
    Gate {
        command: "update cluster",
        flag: Some("instance-group-roles"),
        since: (1, 31),
    },
];

/// The version being played.
#[derive(Clone, Debug)]
pub struct Played {
    /// As `kops version` prints it (`1.34.1`).
    pub text: String,
    pub version: semver::Version,
}

impl Played {
    /// From `KOPS_STANDIN_VERSION`; `1.30` means `1.30.0`, a leading `v` is
    /// dropped. Anything else that is not a version is a test-setup error.
    pub fn from_env() -> Result<Played> {
        let raw = std::env::var(VERSION_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_VERSION.to_string());
        Played::parse(&raw)
    }

    pub fn parse(raw: &str) -> Result<Played> {
        let trimmed = raw.trim().trim_start_matches('v');
        let full = match trimmed.matches('.').count() {
            1 => format!("{trimmed}.0"),
            _ => trimmed.to_string(),
        };
        match semver::Version::parse(&full) {
            Ok(version) => Ok(Played {
                text: full,
                version,
            }),
            Err(_) => bail!(
                "kops stand-in: {VERSION_ENV}={raw:?} is not a kOps version (use e.g. 1.30 or 1.34.1)"
            ),
        }
    }

    /// Whether this version is `major.minor` or newer.
    pub fn at_least(&self, major: u64, minor: u64) -> bool {
        (self.version.major, self.version.minor) >= (major, minor)
    }

    /// kOps before 1.20 prints the rolling-update table without `TARGET`.
    pub fn has_target_column(&self) -> bool {
        self.at_least(1, 20)
    }

    /// The cobra error for a command this version does not have, checked
    /// before parsing: cobra looks the command up before it parses flags,
    /// so `kops reconcile cluster --anything` on kOps 1.30 is an unknown
    /// command, whatever the flags.
    pub fn check_command(&self, command_path: &[String]) -> Result<()> {
        let Some(first) = command_path.first() else {
            return Ok(());
        };
        for gate in GATES.iter().filter(|g| g.flag.is_none()) {
            if gate.command == first && !self.at_least(gate.since.0, gate.since.1) {
                bail!(
                    "unknown command {} for \"kops\"",
                    goflags::quote(gate.command)
                );
            }
        }
        Ok(())
    }

    /// pflag's error for the first flag in `argv` that this version's
    /// command does not have. Run after a successful parse, so every other
    /// flag is known and only gated ones can be unknown.
    pub fn check_flags(&self, cli: &Cli, argv: &[String]) -> Result<()> {
        let command = cli.command_path();
        let mut refused: Vec<(usize, &str)> = Vec::new();
        for gate in GATES {
            let Some(flag) = gate.flag else { continue };
            if gate.command != command
                || self.at_least(gate.since.0, gate.since.1)
                || !given(cli, flag)
            {
                continue;
            }
            if let Some(pos) = argv.iter().position(|a| is_flag_token(a, flag)) {
                refused.push((pos, flag));
            }
        }
        refused.sort();
        match refused.first() {
            Some((_, flag)) => bail!("unknown flag: --{flag}"),
            None => Ok(()),
        }
    }
}

/// Whether the parsed command line sets `flag`.
fn given(cli: &Cli, flag: &str) -> bool {
    match (&cli.command, flag) {
        (Command::Update(u), "prune") => match &u.command {
            UpdateCommand::Cluster(a) => a.prune.is_some(),
        },
        (Command::Update(u), "instance-group-roles") => match &u.command {
            UpdateCommand::Cluster(a) => !a.instance_group_roles.is_empty(),
        },
        _ => false,
    }
}

/// `--flag` or `--flag=value`.
fn is_flag_token(arg: &str, flag: &str) -> bool {
    arg.strip_prefix("--")
        .is_some_and(|rest| rest == flag || rest.starts_with(&format!("{flag}=")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_leniently() {
        assert_eq!(Played::parse("1.30").unwrap().text, "1.30.0");
        assert_eq!(Played::parse("v1.34.1").unwrap().text, "1.34.1");
        assert!(Played::parse("latest").is_err());
        let p = Played::parse("1.19.2").unwrap();
        assert!(!p.has_target_column());
        assert!(Played::parse("1.20.0").unwrap().has_target_column());
    }

    #[test]
    fn commands_arrive_with_their_version() {
        let path = vec!["reconcile".to_string(), "cluster".to_string()];
        assert_eq!(
            Played::parse("1.30.4")
                .unwrap()
                .check_command(&path)
                .unwrap_err()
                .to_string(),
            "unknown command \"reconcile\" for \"kops\""
        );
        assert!(
            Played::parse("1.31.0")
                .unwrap()
                .check_command(&path)
                .is_ok()
        );
    }

    #[test]
    fn flag_tokens() {
        assert!(is_flag_token("--prune", "prune"));
        assert!(is_flag_token("--prune=false", "prune"));
        assert!(!is_flag_token("--pruned", "prune"));
        assert!(!is_flag_token("prune", "prune"));
    }
}
