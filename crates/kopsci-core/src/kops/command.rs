//! Every kops call kopsci makes, one constructor each, built as plain
//! [`Invocation`]s so that what runs can be asserted on, logged and
//! reviewed without running anything.
//!
//! Flags are always spelled as the kOps docs spell them (`--name`,
//! `--state`, `-f`, `--yes`); the cluster is never passed positionally,
//! because only the flags are promised for every command kopsci calls.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};

use crate::aws::AwsIdentity;
use crate::errors::{Error, Result};
use crate::process::Invocation;

/// How kopsci calls kops: which binary, as which AWS identity, from which
/// directory. Every kops call kopsci makes has a constructor here.
#[derive(Clone, PartialEq, Eq)]
pub struct Kops {
    base: Invocation,
}

impl fmt::Debug for Kops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Kops").field(&self.base).finish()
    }
}

impl Kops {
    /// kops at `program`, inheriting kopsci's environment.
    pub fn new(program: impl Into<PathBuf>) -> Kops {
        Kops {
            base: Invocation::new(program),
        }
    }

    /// Gives every kops call exactly `identity` (see [`AwsIdentity::child_env`]).
    pub fn with_identity(mut self, identity: &AwsIdentity) -> Kops {
        let env = identity.child_env();
        for name in env.remove {
            self.base.env.remove(&name);
            self.base = self.base.env_remove(name);
        }
        for (name, value) in env.set {
            self.base.env_remove.retain(|n| *n != name);
            self.base.env.insert(name, value);
        }
        self
    }

    /// Runs every kops call in `dir` (relative manifest paths resolve there).
    pub fn with_cwd(mut self, dir: impl Into<PathBuf>) -> Kops {
        self.base.cwd = Some(dir.into());
        self
    }

    /// The kops binary.
    pub fn program(&self) -> &Path {
        &self.base.program
    }

    fn call<I, S>(&self, args: I) -> Invocation
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.base.clone().args(args)
    }

    /// `kops version`. Not `--short`: older kOps releases lack it, and the
    /// parser reads both forms anyway.
    pub fn version(&self) -> Invocation {
        self.call(["version"])
    }

    /// `kops create -f MANIFEST --state STATE`.
    pub fn create_file(&self, manifest: &Path, state: &str) -> Invocation {
        self.call([OsStr::new("create"), OsStr::new("-f"), manifest.as_os_str()])
            .args(state_flag(state))
    }

    /// `kops replace -f MANIFEST --state STATE [--force]`.
    pub fn replace_file(&self, manifest: &Path, state: &str, force: bool) -> Invocation {
        let inv = self
            .call([
                OsStr::new("replace"),
                OsStr::new("-f"),
                manifest.as_os_str(),
            ])
            .args(state_flag(state));
        if force { inv.args(["--force"]) } else { inv }
    }

    /// `kops update cluster --name NAME --state STATE [--yes] EXTRA…`.
    ///
    /// `extra` (the user's flags after `--`) may not set what kopsci
    /// controls; see [`check_extra`].
    pub fn update_cluster(
        &self,
        name: &str,
        state: &str,
        yes: bool,
        extra: &[OsString],
    ) -> Result<Invocation> {
        check_extra("kops update cluster", extra)?;
        Ok(self
            .call(["update", "cluster"])
            .args(cluster_flags(name, state))
            .args(yes.then_some("--yes"))
            .args(extra.iter().cloned()))
    }

    /// `kops rolling-update cluster --name NAME --state STATE [--yes] EXTRA…`.
    pub fn rolling_update(
        &self,
        name: &str,
        state: &str,
        yes: bool,
        extra: &[OsString],
    ) -> Result<Invocation> {
        check_extra("kops rolling-update cluster", extra)?;
        Ok(self
            .call(["rolling-update", "cluster"])
            .args(cluster_flags(name, state))
            .args(yes.then_some("--yes"))
            .args(extra.iter().cloned()))
    }

    /// `kops delete instancegroup IG --name NAME --state STATE --yes`. The
    /// group is positional, as the docs' synopsis has it; `--yes` always,
    /// because kopsci only calls this once the prune was decided.
    pub fn delete_instance_group(&self, group: &str, name: &str, state: &str) -> Invocation {
        self.call(["delete", "instancegroup", group])
            .args(cluster_flags(name, state))
            .args(["--yes"])
    }

    /// `kops get instancegroups --name NAME --state STATE -o yaml`.
    pub fn get_instance_groups(&self, name: &str, state: &str) -> Invocation {
        self.call(["get", "instancegroups"])
            .args(cluster_flags(name, state))
            .args(["-o", "yaml"])
    }
}

fn state_flag(state: &str) -> [&str; 2] {
    ["--state", state]
}

fn cluster_flags<'a>(name: &'a str, state: &'a str) -> [&'a str; 4] {
    ["--name", name, "--state", state]
}

/// Refuses user-supplied kops flags that would override what kopsci decides:
/// `--yes` (a dry run must stay a dry run; `roll --yes` is kopsci's own
/// flag), and `--name` and `--state` (the plan was made for one cluster and
/// one store). Short-flag clusters such as `-iy` count as `-y`. Positional
/// words are let through: they are the values of flags such as
/// `--instance-group nodes`.
pub fn check_extra(command: &str, extra: &[OsString]) -> Result<()> {
    for arg in extra {
        let a = arg.to_string_lossy();
        let flag = a.split('=').next().unwrap_or_default();
        let refused = match flag {
            "--yes" | "--name" | "--state" => true,
            f if f.starts_with("--") => false,
            f => f.strip_prefix('-').is_some_and(|short| short.contains('y')),
        };
        if refused {
            return Err(Error::Usage(format!(
                "extra flag `{a}` for `{command}` is not allowed: kopsci sets --yes, --name and --state itself"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{AwsCredentials, Secret};

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    fn argv(inv: &Invocation) -> Vec<String> {
        inv.args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn every_call_uses_documented_flags() {
        let kops = Kops::new("/usr/bin/kops");
        let st = "file:///tmp/snap";
        assert_eq!(argv(&kops.version()), ["version"]);
        assert_eq!(
            argv(&kops.create_file(Path::new("/m.yaml"), st)),
            ["create", "-f", "/m.yaml", "--state", st]
        );
        assert_eq!(
            argv(&kops.replace_file(Path::new("/m.yaml"), st, true)),
            ["replace", "-f", "/m.yaml", "--state", st, "--force"]
        );
        assert_eq!(
            argv(&kops.replace_file(Path::new("/m.yaml"), st, false)),
            ["replace", "-f", "/m.yaml", "--state", st]
        );
        assert_eq!(
            argv(
                &kops
                    .update_cluster("c.example.com", st, false, &[])
                    .unwrap()
            ),
            [
                "update",
                "cluster",
                "--name",
                "c.example.com",
                "--state",
                st
            ]
        );
        assert_eq!(
            argv(
                &kops
                    .update_cluster("c", st, true, &os(&["--prune", "--target=direct"]))
                    .unwrap()
            ),
            [
                "update",
                "cluster",
                "--name",
                "c",
                "--state",
                st,
                "--yes",
                "--prune",
                "--target=direct"
            ]
        );
        assert_eq!(
            argv(
                &kops
                    .rolling_update(
                        "c",
                        st,
                        false,
                        &os(&["--cloudonly", "--instance-group", "nodes"])
                    )
                    .unwrap()
            ),
            [
                "rolling-update",
                "cluster",
                "--name",
                "c",
                "--state",
                st,
                "--cloudonly",
                "--instance-group",
                "nodes"
            ]
        );
        assert_eq!(
            argv(&kops.delete_instance_group("nodes-b", "c", st)),
            [
                "delete",
                "instancegroup",
                "nodes-b",
                "--name",
                "c",
                "--state",
                st,
                "--yes"
            ]
        );
        assert_eq!(
            argv(&kops.get_instance_groups("c", st)),
            [
                "get",
                "instancegroups",
                "--name",
                "c",
                "--state",
                st,
                "-o",
                "yaml"
            ]
        );
    }

    #[test]
    fn extra_flags_cannot_override_what_kopsci_decides() {
        let kops = Kops::new("kops");
        for bad in [
            "--yes",
            "--yes=true",
            "-y",
            "-iy",
            "--name",
            "--name=x",
            "--state=s3://b",
            "-y=true",
        ] {
            let err = kops
                .update_cluster("c", "s", false, &os(&[bad]))
                .unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{bad}: {err}");
            assert!(
                kops.rolling_update("c", "s", false, &os(&[bad])).is_err(),
                "{bad}"
            );
        }
        for good in [
            "--cloudonly",
            "-v=4",
            "--validation-timeout=20m",
            "--instance-group",
            "nodes-y",
        ] {
            assert!(
                kops.rolling_update("c", "s", false, &os(&[good])).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn labels_name_the_subcommand() {
        let kops = Kops::new("/opt/kops/bin/kops");
        assert_eq!(kops.version().label(), "kops version");
        assert_eq!(
            kops.update_cluster("c", "s", false, &[]).unwrap().label(),
            "kops update cluster"
        );
        assert_eq!(
            kops.delete_instance_group("ig", "c", "s").label(),
            "kops delete instancegroup"
        );
    }

    #[test]
    fn identity_env_is_applied_to_every_call() {
        let id = AwsIdentity::explicit(
            AwsCredentials {
                access_key_id: "AKIAEXAMPLE".into(),
                secret_access_key: Secret::new("secret"),
                session_token: Some(Secret::new("token")),
            },
            Some("eu-west-1".into()),
        );
        let kops = Kops::new("kops").with_identity(&id).with_cwd("/work");
        let inv = kops.get_instance_groups("c", "s");
        assert_eq!(
            inv.env.get(OsStr::new("AWS_ACCESS_KEY_ID")).unwrap(),
            "AKIAEXAMPLE"
        );
        assert_eq!(inv.env.get(OsStr::new("AWS_REGION")).unwrap(), "eu-west-1");
        assert!(inv.env_remove.iter().any(|n| n == "AWS_PROFILE"));
        assert!(!inv.env_remove.iter().any(|n| inv.env.contains_key(n)));
        assert_eq!(inv.cwd.as_deref(), Some(Path::new("/work")));
        assert!(!format!("{kops:?}").contains("secret\""));
    }
}
