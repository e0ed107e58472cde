//! The git calls `kopsci pipeline` makes, as plain data ([`Invocation`]s)
//! run by the one process runner ([`Runner`]), output captured, never
//! echoed: where the repository's top level is, whether a revision exists,
//! which files changed, and what a file held at the merge base (the fleet
//! file, to compare clusters' entries).
//!
//! Changes are counted `BASE...HEAD` (three dots: from the merge base of
//! the two to `HEAD`), not `BASE HEAD`. When `BASE` is already an ancestor
//! of `HEAD`, as GitLab's merge-request diff base always is, the two are the
//! same. When it is not (`--changed-since origin/main` after `main` moved
//! on, a force-push), two dots would also count every change made on the
//! other side since the branches split, selecting clusters the change under
//! review never touched; three dots count only the branch's own changes,
//! which is what GitLab's merge-request diff shows. Renames are listed as a
//! deletion and an addition (`--no-renames`), so that an input moved away
//! is noticed as well as the place it moved to.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::errors::{Error, Result};
use crate::process::{Echo, Invocation, Runner};

/// git, run in one directory.
#[derive(Debug, Clone)]
pub struct Git {
    program: PathBuf,
    dir: PathBuf,
}

impl Git {
    /// `git` from `PATH`, run in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Git {
        // The runner takes programs as paths and does not search PATH for
        // a bare name while a working directory is set, so git is looked
        // up here; when it is missing, running it says so.
        let program = std::env::var_os("PATH")
            .as_deref()
            .and_then(|path| find_on_path("git", path))
            .unwrap_or_else(|| PathBuf::from("git"));
        Git {
            program,
            dir: dir.into(),
        }
    }

    fn call<I, S>(&self, args: I) -> Invocation
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        // No pager, no colour, no prompts: output is parsed, and a CI job
        // has nobody to answer.
        Invocation::new(&self.program)
            .args(["--no-pager", "-c", "color.ui=false"])
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .cwd(&self.dir)
    }

    /// `git rev-parse --show-toplevel`.
    pub fn toplevel_invocation(&self) -> Invocation {
        self.call(["rev-parse", "--show-toplevel"])
    }

    /// `git rev-parse --verify --quiet REV^{commit}`: exits 0 with the
    /// commit's full name when `rev` names a commit present in this clone.
    pub fn verify_commit_invocation(&self, rev: &str) -> Invocation {
        self.call(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .args([format!("{rev}^{{commit}}")])
    }

    /// `git diff --name-only --no-renames -z BASE...HEAD --`.
    pub fn changed_files_invocation(&self, base: &str, head: &str) -> Invocation {
        self.call(["diff", "--name-only", "--no-renames", "-z"])
            .args([format!("{base}...{head}"), "--".to_string()])
    }

    /// `git merge-base BASE HEAD`.
    pub fn merge_base_invocation(&self, base: &str, head: &str) -> Invocation {
        self.call(["merge-base", "--end-of-options", base, head])
    }

    /// `git rev-parse --verify --quiet REV:PATH`: exits 0 with the blob's
    /// name when `path` (relative to the top level) exists in `rev`.
    pub fn verify_file_invocation(&self, rev: &str, path: &str) -> Invocation {
        self.call(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .args([format!("{rev}:{path}")])
    }

    /// `git show REV:PATH`: a file's content in a revision.
    pub fn show_file_invocation(&self, rev: &str, path: &str) -> Invocation {
        self.call(["show", "--no-textconv", "--end-of-options"])
            .args([format!("{rev}:{path}")])
    }

    /// The repository's top level (absolute, as git resolves it).
    pub fn toplevel(&self) -> Result<PathBuf> {
        let inv = self.toplevel_invocation();
        let out = run(&inv)?;
        if out.code != 0 {
            return Err(git_error(
                &inv,
                &out.stderr,
                Some("kopsci pipeline must run inside the git repository that holds the fleet"),
            ));
        }
        let top = out.stdout.trim_end_matches(['\n', '\r']);
        if top.is_empty() {
            return Err(Error::Git {
                command: command_text(&inv),
                message: "printed no top-level directory (a bare repository?)".to_string(),
            });
        }
        Ok(PathBuf::from(top))
    }

    /// The full commit name of `rev`, or `None` when this clone does not
    /// have it (an unknown name, or a commit outside a shallow clone).
    pub fn resolve_commit(&self, rev: &str) -> Result<Option<String>> {
        let inv = self.verify_commit_invocation(rev);
        let out = run(&inv)?;
        match out.code {
            0 => Ok(Some(out.stdout.trim().to_string())),
            _ => Ok(None),
        }
    }

    /// Files changed in `BASE...HEAD`, as paths relative to the top level,
    /// sorted.
    pub fn changed_files(&self, base: &str, head: &str) -> Result<Vec<PathBuf>> {
        self.changed_files_advising(base, head, "")
    }

    /// [`changed_files`](Self::changed_files), with `more` (", or …")
    /// appended to the advice given when the two share no history.
    pub fn changed_files_advising(
        &self,
        base: &str,
        head: &str,
        more: &str,
    ) -> Result<Vec<PathBuf>> {
        let inv = self.changed_files_invocation(base, head);
        let out = run(&inv)?;
        if out.code != 0 {
            let hint = out.stderr.contains("no merge base").then(|| {
                format!(
                    "the two revisions share no history in this clone; fetch more history (GIT_DEPTH: 0){more}"
                )
            });
            return Err(git_error(&inv, &out.stderr, hint.as_deref()));
        }
        let mut files: Vec<PathBuf> = out
            .stdout
            .split('\0')
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        files.sort();
        files.dedup();
        Ok(files)
    }
}

impl Git {
    /// The commit `git diff BASE...HEAD` counts changes from: the merge
    /// base of the two.
    pub fn merge_base(&self, base: &str, head: &str) -> Result<String> {
        let inv = self.merge_base_invocation(base, head);
        let out = run(&inv)?;
        let commit = out.stdout.trim();
        if out.code != 0 || commit.is_empty() {
            let hint = "the two revisions share no history in this clone; fetch more history (GIT_DEPTH: 0)";
            return Err(git_error(&inv, &out.stderr, Some(hint)));
        }
        Ok(commit.to_string())
    }

    /// The text of `path` (relative to the top level, `/`-separated) in
    /// commit `rev`; `None` when the commit has no such file.
    pub fn file_at(&self, rev: &str, path: &str) -> Result<Option<String>> {
        let inv = self.verify_file_invocation(rev, path);
        if run(&inv)?.code != 0 {
            return Ok(None);
        }
        let inv = self.show_file_invocation(rev, path);
        let out = run(&inv)?;
        if out.code != 0 {
            return Err(git_error(&inv, &out.stderr, None));
        }
        Ok(Some(out.stdout))
    }
}

fn run(inv: &Invocation) -> Result<crate::process::Outcome> {
    Runner::new(Echo::Off)
        .run_unchecked(inv)
        .map_err(|e| match e {
            Error::KopsSpawn { cause, .. } if cause.kind() == std::io::ErrorKind::NotFound => {
                Error::Git {
                    command: command_text(inv),
                    message: "git is not installed (kopsci pipeline needs git on PATH)".to_string(),
                }
            }
            Error::KopsSpawn { cause, .. } => Error::Git {
                command: command_text(inv),
                message: format!("cannot run git: {cause}"),
            },
            other => other,
        })
}

/// The command as a user would type it: without the fixed `--no-pager -c
/// color.ui=false` prefix.
fn command_text(inv: &Invocation) -> String {
    let words: Vec<String> = inv
        .args
        .iter()
        .skip(3)
        .map(|a| crate::process::shell_quote(a))
        .collect();
    format!("git {}", words.join(" "))
}

fn git_error(inv: &Invocation, stderr: &str, hint: Option<&str>) -> Error {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("exited with an error")
        .trim();
    Error::Git {
        command: command_text(inv),
        message: match hint {
            Some(hint) => format!("{last} ({hint})"),
            None => last.to_string(),
        },
    }
}

/// The first executable `name` in the directories of `path` (a `PATH`
/// value).
fn find_on_path(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::invocation::argv;
    use std::path::Path;

    #[test]
    fn invocations_are_plain_data() {
        let git = Git::new("/repo/sub");
        let diff = git.changed_files_invocation("abc", "HEAD");
        assert_eq!(
            argv(&diff),
            [
                "--no-pager",
                "-c",
                "color.ui=false",
                "diff",
                "--name-only",
                "--no-renames",
                "-z",
                "abc...HEAD",
                "--"
            ]
        );
        assert_eq!(diff.cwd.as_deref(), Some(Path::new("/repo/sub")));
        assert_eq!(
            command_text(&diff),
            "git diff --name-only --no-renames -z abc...HEAD --"
        );
        assert_eq!(
            argv(&git.verify_commit_invocation("origin/main"))
                .last()
                .unwrap(),
            "origin/main^{commit}"
        );
    }

    #[test]
    fn git_is_found_on_path_and_missing_git_is_named() {
        let found = find_on_path("git", std::ffi::OsStr::new("/nonexistent:/usr/bin:/bin"));
        assert!(found.is_some_and(|p| p.is_absolute()));
        let git = Git {
            program: PathBuf::from("/nonexistent/git"),
            dir: PathBuf::from("/"),
        };
        let err = git.toplevel().unwrap_err().to_string();
        assert!(err.contains("git is not installed"), "{err}");
    }

    #[test]
    fn real_git_lists_changes_since_a_revision() {
        let dir = tempfile::tempdir().unwrap();
        let git_in = |args: &[&str]| {
            let out = std::process::Command::new("git")
                .args(args)
                .current_dir(dir.path())
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .output()
                .unwrap();
            assert!(out.status.success(), "{args:?}: {out:?}");
            String::from_utf8(out.stdout).unwrap()
        };
        let commit = |message: &str| {
            git_in(&[
                "-c",
                "user.name=t",
                "-c",
                "user.email=t@e",
                "commit",
                "-qm",
                message,
            ])
        };
        git_in(&["init", "-q", "-b", "main"]);
        std::fs::write(dir.path().join("a"), "1").unwrap();
        std::fs::write(dir.path().join("b c"), "1").unwrap();
        git_in(&["add", "."]);
        commit("one");
        let base = git_in(&["rev-parse", "HEAD"]).trim().to_string();
        std::fs::write(dir.path().join("b c"), "2").unwrap();
        std::fs::rename(dir.path().join("a"), dir.path().join("moved")).unwrap();
        git_in(&["add", "-A"]);
        commit("two");

        let git = Git::new(dir.path());
        let top = git.toplevel().unwrap();
        assert_eq!(
            top.canonicalize().unwrap(),
            dir.path().canonicalize().unwrap()
        );
        assert_eq!(
            git.resolve_commit(&base).unwrap().as_deref(),
            Some(base.as_str())
        );
        assert_eq!(git.resolve_commit("no-such-ref").unwrap(), None);
        assert_eq!(
            git.changed_files(&base, "HEAD").unwrap(),
            [
                PathBuf::from("a"),
                PathBuf::from("b c"),
                PathBuf::from("moved")
            ]
        );
        // What a file held at the merge base; a file it did not have.
        assert_eq!(git.merge_base(&base, "HEAD").unwrap(), base);
        assert_eq!(git.file_at(&base, "b c").unwrap().as_deref(), Some("1"));
        assert_eq!(git.file_at("HEAD", "b c").unwrap().as_deref(), Some("2"));
        assert_eq!(git.file_at(&base, "moved").unwrap(), None);
        let err = git.merge_base("no-such-ref", "HEAD").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("`git merge-base --end-of-options no-such-ref HEAD` failed: "),
            "{err}"
        );
        let err = git.changed_files("no-such-ref", "HEAD").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "`git diff --name-only --no-renames -z no-such-ref...HEAD --` failed: "
            ),
            "{err}"
        );
    }
}
