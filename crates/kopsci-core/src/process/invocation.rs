//! A child process as plain data — program, argv, changes to its
//! environment, working directory — so that what runs (kops, git) can be
//! asserted on, logged and reviewed without running anything.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::PathBuf;

/// One process to run.
///
/// The environment is *the parent's, with `env_remove` removed and `env`
/// set on top* rather than fully explicit: kops needs much of what the CI
/// job provides (`HOME`, `PATH`, proxies, `AWS_CA_BUNDLE`, `KUBECONFIG`,
/// `S3_ENDPOINT` for S3-compatible stores), and listing all of that would
/// silently break on the next variable someone relies on. The variables that
/// decide *who* kops is towards AWS are the ones kopsci controls, and those
/// are set or removed explicitly (see [`AwsIdentity::child_env`]).
///
/// `Debug` and `Display` never show environment values: they may hold
/// credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct Invocation {
    pub program: PathBuf,
    pub args: Vec<OsString>,
    /// Variables set for the child. Wins over `env_remove` for the same name.
    pub env: BTreeMap<OsString, OsString>,
    /// Variables removed from the inherited environment.
    pub env_remove: Vec<OsString>,
    /// Working directory; the parent's when `None`.
    pub cwd: Option<PathBuf>,
}

impl Invocation {
    /// `program` with no arguments, the parent's environment and directory.
    pub fn new(program: impl Into<PathBuf>) -> Invocation {
        Invocation {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            env_remove: Vec::new(),
            cwd: None,
        }
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Invocation
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable for the child.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Invocation {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Removes an inherited variable (unless it is also [`set`](Self::env)).
    pub fn env_remove(mut self, name: impl Into<OsString>) -> Invocation {
        let name = name.into();
        if !self.env_remove.contains(&name) {
            self.env_remove.push(name);
        }
        self
    }

    /// Runs the child in `dir`.
    pub fn cwd(mut self, dir: impl Into<PathBuf>) -> Invocation {
        self.cwd = Some(dir.into());
        self
    }

    /// A short name for messages: the program's file name and the leading
    /// words before the first flag, e.g. `kops update cluster`.
    pub fn label(&self) -> String {
        let program = self
            .program
            .file_name()
            .unwrap_or(self.program.as_os_str())
            .to_string_lossy()
            .into_owned();
        let words = self
            .args
            .iter()
            .map(|a| a.to_string_lossy())
            .take_while(|a| !a.starts_with('-'))
            .take(2);
        std::iter::once(program.into())
            .chain(words)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The command line with the program's file name instead of its path,
    /// shell-quoted: `kops update cluster --name c --state s3://b`. For
    /// reports, which should not show where a job keeps its binaries.
    pub fn command_line(&self) -> String {
        let program = self.program.file_name().unwrap_or(self.program.as_os_str());
        std::iter::once(shell_quote(program))
            .chain(self.args.iter().map(|a| shell_quote(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The duct expression that runs this invocation; output redirection is
    /// the runner's business.
    pub(crate) fn expression(&self) -> duct::Expression {
        let mut expr = duct::cmd(&self.program, &self.args);
        if let Some(dir) = &self.cwd {
            expr = expr.dir(dir);
        }
        // Removing a name that is also set would depend on duct's ordering
        // of the two; skipping it makes "set wins" explicit.
        for name in self
            .env_remove
            .iter()
            .filter(|n| !self.env.contains_key(*n))
        {
            expr = expr.env_remove(name);
        }
        for (name, value) in &self.env {
            expr = expr.env(name, value);
        }
        expr
    }
}

/// The command line, shell-quoted, for logs. Never the environment.
impl fmt::Display for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&shell_quote(self.program.as_os_str()))?;
        for arg in &self.args {
            write!(f, " {}", shell_quote(arg))?;
        }
        Ok(())
    }
}

/// Like `Display`, plus the *names* of the variables set and removed.
impl fmt::Debug for Invocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: Vec<_> = self.env.keys().map(|k| k.to_string_lossy()).collect();
        let removed: Vec<_> = self
            .env_remove
            .iter()
            .map(|k| k.to_string_lossy())
            .collect();
        f.debug_struct("Invocation")
            .field("command", &self.to_string())
            .field("env_set", &set)
            .field("env_removed", &removed)
            .field("cwd", &self.cwd)
            .finish()
    }
}

/// Quotes `arg` for a POSIX shell, leaving plainly safe words alone so the
/// common case reads naturally (`--state file:///tmp/x`).
pub fn shell_quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    // shlex refuses only NUL, which no argv can hold anyway.
    shlex::try_quote(&s)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| format!("'{}'", s.replace('\0', "")))
}

/// The arguments as text, for tests that assert on command lines.
#[cfg(test)]
pub(crate) fn argv(inv: &Invocation) -> Vec<String> {
    inv.args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_like_a_shell_and_hides_env() {
        let inv = Invocation::new("/bin/kops")
            .args(["update", "it's", "a b", "", "--state=file:///x"])
            .env("AWS_SECRET_ACCESS_KEY", "s3cr3t-value");
        let shown = inv.to_string();
        assert_eq!(
            shlex::split(&shown).unwrap(),
            [
                "/bin/kops",
                "update",
                "it's",
                "a b",
                "",
                "--state=file:///x"
            ]
        );
        assert!(shown.starts_with("/bin/kops update "), "{shown}");
        let debug = format!("{inv:?}");
        assert!(debug.contains("AWS_SECRET_ACCESS_KEY"), "{debug}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
    }
}
