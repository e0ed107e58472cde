//! Finding the kops binary (`--kops` > `KOPSCI_KOPS` > `kops` on `PATH`) and
//! checking its version against the fleet's `kops.version` requirement.

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use semver::{Version, VersionReq};

use crate::errors::{Error, Result};
use crate::kops::command::Kops;
use crate::kops::klog::is_klog_line;
use crate::process::Runner;

/// The environment variable naming the kops binary.
pub const KOPS_ENV: &str = "KOPSCI_KOPS";

/// Finds kops from the `--kops` flag, then `KOPSCI_KOPS`, then `PATH`.
pub fn locate(flag: Option<&Path>) -> Result<PathBuf> {
    locate_with(
        flag,
        std::env::var_os(KOPS_ENV).as_deref(),
        std::env::var_os("PATH").as_deref(),
    )
}

/// [`locate`] with the environment passed in. An empty `KOPSCI_KOPS` counts
/// as unset. A value without a `/` is a command name looked up on `PATH`
/// (`KOPSCI_KOPS=kops-1.34`), as a shell would.
pub fn locate_with(
    flag: Option<&Path>,
    env: Option<&OsStr>,
    path: Option<&OsStr>,
) -> Result<PathBuf> {
    let (wanted, source) = match (flag, env.filter(|v| !v.is_empty())) {
        (Some(f), _) => (f.to_path_buf(), "--kops"),
        (None, Some(e)) => (PathBuf::from(e), KOPS_ENV),
        (None, None) => (PathBuf::from("kops"), "PATH"),
    };
    let has_slash = wanted.as_os_str().to_string_lossy().contains('/');
    if has_slash {
        return if is_executable(&wanted) {
            Ok(wanted)
        } else {
            Err(Error::KopsNotFound {
                tried: format!(
                    "`{}` from {source} is not an executable file",
                    wanted.display()
                ),
            })
        };
    }
    let found = path
        .map(std::env::split_paths)
        .into_iter()
        .flatten()
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(&wanted))
        .find(|candidate| is_executable(candidate));
    found.ok_or_else(|| Error::KopsNotFound {
        tried: if source == "PATH" {
            "no `kops` on PATH".to_string()
        } else {
            format!("no `{}` (from {source}) on PATH", wanted.display())
        },
    })
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The version in `kops version` output. Reads `Client version: 1.34.1
/// (git-v1.34.1)`, the older `Version 1.18.0 (git-…)`, and the bare
/// `1.34.1` of `--short`, with or without a `v`, among log lines and other
/// lines (`--server` adds one).
pub fn parse_version(output: &str) -> Result<Version> {
    let lines = || {
        output
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !is_klog_line(l))
    };
    let labelled = lines().find_map(|l| {
        ["Client version:", "Version"]
            .iter()
            .find_map(|label| l.strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(semver_of)
    });
    let bare = || {
        lines().find_map(|l| {
            if l.contains(char::is_whitespace) {
                None
            } else {
                semver_of(l)
            }
        })
    };
    labelled.or_else(bare).ok_or_else(|| Error::KopsOutput {
        command: "kops version",
        message: format!(
            "no version found in {:?}",
            output.lines().next().unwrap_or_default()
        ),
    })
}

fn semver_of(word: &str) -> Option<Version> {
    let word = word.strip_prefix('v').unwrap_or(word);
    Version::parse(word).ok()
}

/// Errors unless `found` satisfies `required`.
pub fn check_version(program: &Path, found: &Version, required: &VersionReq) -> Result<()> {
    if required.matches(found) {
        Ok(())
    } else {
        Err(Error::KopsVersion {
            program: program.to_path_buf(),
            found: found.to_string(),
            required: required.to_string(),
        })
    }
}

/// Runs `kops version` and checks it against `required` when there is one.
/// Returns the version found.
pub fn verify(runner: &Runner, kops: &Kops, required: Option<&VersionReq>) -> Result<Version> {
    let outcome = runner.run(&kops.version())?;
    let found = parse_version(&outcome.stdout).or_else(|_| parse_version(&outcome.stderr))?;
    if let Some(req) = required {
        check_version(kops.program(), &found, req)?;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let cases = [
            ("Client version: 1.34.1 (git-v1.34.1)\n", "1.34.1"),
            ("1.34.1\n", "1.34.1"),
            ("v1.34.1", "1.34.1"),
            (
                "Client version: v1.35.0-beta.1 (git-v1.35.0-beta.1)",
                "1.35.0-beta.1",
            ),
            ("Version 1.18.0 (git-698bf974d8)\n", "1.18.0"),
            (
                "I1121 12:00:00.000000    1234 featureflag.go:166] FeatureFlag \"X\"=true\nClient version: 1.34.1 (git-v1.34.1)\nLast applied server version: 1.33.2\n",
                "1.34.1",
            ),
            ("\n\n  1.30.4  \n", "1.30.4"),
        ];
        for (out, want) in cases {
            assert_eq!(parse_version(out).unwrap().to_string(), want, "{out:?}");
        }
    }

    #[test]
    fn unparseable_version_output_is_a_clear_error() {
        for out in ["", "kops: command not found", "Client version: banana"] {
            let err = parse_version(out).unwrap_err().to_string();
            assert!(
                err.starts_with("cannot parse the output of `kops version`"),
                "{err}"
            );
        }
    }

    #[test]
    fn version_mismatch_names_both() {
        let req = VersionReq::parse(">=1.34.0, <1.35.0").unwrap();
        let prog = Path::new("/usr/local/bin/kops");
        assert!(check_version(prog, &Version::new(1, 34, 1), &req).is_ok());
        let err = check_version(prog, &Version::new(1, 33, 0), &req)
            .unwrap_err()
            .to_string();
        assert!(err.contains("1.33.0"), "{err}");
        assert!(err.contains(">=1.34.0, <1.35.0"), "{err}");
        assert!(err.contains("/usr/local/bin/kops"), "{err}");
    }

    fn exe(dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn locate_prefers_flag_then_env_then_path() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let flag = exe(&a, "kops-flag");
        let env = exe(&a, "kops-env");
        let on_path = exe(&b, "kops");
        let path = std::env::join_paths([tmp.path().join("missing"), b.clone()]).unwrap();
        let path = Some(path.as_os_str());

        assert_eq!(
            locate_with(Some(&flag), Some(env.as_os_str()), path).unwrap(),
            flag
        );
        assert_eq!(locate_with(None, Some(env.as_os_str()), path).unwrap(), env);
        assert_eq!(
            locate_with(None, Some(OsStr::new("")), path).unwrap(),
            on_path
        );
        assert_eq!(locate_with(None, None, path).unwrap(), on_path);
        // A bare name in KOPSCI_KOPS is looked up on PATH.
        let named = exe(&b, "kops-1.34");
        assert_eq!(
            locate_with(None, Some(OsStr::new("kops-1.34")), path).unwrap(),
            named
        );
    }

    #[test]
    fn locate_errors_say_what_was_tried_and_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let not_exec = tmp.path().join("kops");
        std::fs::write(&not_exec, "x").unwrap();
        let empty = Some(tmp.path().as_os_str());

        let err = locate_with(None, None, empty).unwrap_err().to_string();
        assert!(
            err.starts_with("kops not found (no `kops` on PATH)"),
            "{err}"
        );
        assert!(
            err.contains("install kops or pass --kops / set KOPSCI_KOPS"),
            "{err}"
        );
        assert!(
            err.contains("`kopsci dryrun --without-kops` runs without it"),
            "{err}"
        );

        let missing = tmp.path().join("nope/kops");
        let err = locate_with(Some(&missing), None, empty)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("from --kops is not an executable file"),
            "{err}"
        );
        let err = locate_with(None, Some(not_exec.as_os_str()), None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("from KOPSCI_KOPS"), "{err}");
        assert!(locate_with(None, None, None).is_err());
    }
}
