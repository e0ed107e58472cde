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
    /// `--api-server` for the commands that document it (private APIs).
    api_server: Option<String>,
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
            api_server: None,
        }
    }

    /// Passes `--api-server URL` to every command whose docs list it
    /// (`update`, `rolling-update`, `reconcile`, `validate`, `export
    /// kubeconfig`), unless the user's own flags already do.
    pub fn with_api_server(mut self, url: Option<&str>) -> Kops {
        self.api_server = url.map(str::to_string);
        self
    }

    /// `--api-server URL` unless `extra` sets it.
    fn api_server_flag(&self, extra: &[OsString]) -> Vec<String> {
        match &self.api_server {
            Some(url) if !sets_flag(extra, "--api-server") => {
                vec!["--api-server".to_string(), url.clone()]
            }
            _ => Vec::new(),
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
            .args(self.api_server_flag(extra))
            .args(extra.iter().cloned()))
    }

    /// `kops update cluster --name NAME --state STATE --prune --yes`: deletes
    /// the old revisions of cloud resources an upgrade left (kOps 1.29+).
    pub fn update_prune(&self, name: &str, state: &str) -> Invocation {
        self.call(["update", "cluster"])
            .args(cluster_flags(name, state))
            .args(["--prune", "--yes"])
            .args(self.api_server_flag(&[]))
    }

    /// `kops reconcile cluster --name NAME --state STATE [--yes]` (kOps
    /// 1.31+): updates and rolls the control plane, then the nodes, then
    /// prunes.
    pub fn reconcile(&self, name: &str, state: &str, yes: bool) -> Invocation {
        self.call(["reconcile", "cluster"])
            .args(cluster_flags(name, state))
            .args(yes.then_some("--yes"))
            .args(self.api_server_flag(&[]))
    }

    /// `kops validate cluster --name NAME --state STATE --wait WAIT -o json`.
    /// With `--wait`, kOps prints one JSON result per attempt; the last one
    /// is the verdict.
    pub fn validate(&self, name: &str, state: &str, wait: &str) -> Invocation {
        self.call(["validate", "cluster"])
            .args(cluster_flags(name, state))
            .args(["--wait", wait, "-o", "json"])
            .args(self.api_server_flag(&[]))
    }

    /// `kops delete cluster --name NAME --state STATE [--yes]`: without
    /// `--yes`, the list of what would be deleted.
    pub fn delete_cluster(&self, name: &str, state: &str, yes: bool) -> Invocation {
        self.call(["delete", "cluster"])
            .args(cluster_flags(name, state))
            .args(yes.then_some("--yes"))
    }

    /// `kops export kubeconfig --name NAME --state STATE --kubeconfig FILE
    /// --admin=DURATION`: a short-lived admin credential in FILE.
    pub fn export_kubeconfig(
        &self,
        name: &str,
        state: &str,
        file: &Path,
        admin: &str,
    ) -> Invocation {
        self.call(["export", "kubeconfig"])
            .args(cluster_flags(name, state))
            .args([OsStr::new("--kubeconfig"), file.as_os_str()])
            .args([format!("--admin={admin}")])
            .args(self.api_server_flag(&[]))
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
            .args(self.api_server_flag(extra))
            .args(extra.iter().cloned()))
    }

    /// `kops delete instancegroup IG --name NAME --state STATE --yes`. The
    /// group is positional, as the docs' synopsis has it; `--yes` always,
    /// because kopsci only calls this once the prune was decided. The name
    /// is checked as a kOps object name first, so it can never be read as
    /// a flag.
    pub fn delete_instance_group(
        &self,
        group: &str,
        name: &str,
        state: &str,
    ) -> Result<Invocation> {
        crate::names::check_object_name(group)?;
        Ok(self
            .call(["delete", "instancegroup", group])
            .args(cluster_flags(name, state))
            .args(["--yes"]))
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

/// Whether the user's flags set `flag` (`--flag value` or `--flag=value`).
pub fn sets_flag(extra: &[OsString], flag: &str) -> bool {
    extra.iter().any(|a| {
        let a = a.to_string_lossy();
        a == flag || a.starts_with(&format!("{flag}="))
    })
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
    use crate::process::invocation::argv;

    fn os(args: &[&str]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
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
            argv(&kops.delete_instance_group("nodes-b", "c", st).unwrap()),
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
    fn new_calls_use_documented_flags_and_the_api_server_where_documented() {
        let kops = Kops::new("kops").with_api_server(Some("https://api.internal"));
        let st = "s3://b";
        assert_eq!(
            argv(&kops.reconcile("c", st, true)),
            [
                "reconcile",
                "cluster",
                "--name",
                "c",
                "--state",
                st,
                "--yes",
                "--api-server",
                "https://api.internal"
            ]
        );
        assert_eq!(
            argv(&kops.validate("c", st, "15m")),
            [
                "validate",
                "cluster",
                "--name",
                "c",
                "--state",
                st,
                "--wait",
                "15m",
                "-o",
                "json",
                "--api-server",
                "https://api.internal"
            ]
        );
        assert_eq!(
            argv(&kops.update_prune("c", st)),
            [
                "update",
                "cluster",
                "--name",
                "c",
                "--state",
                st,
                "--prune",
                "--yes",
                "--api-server",
                "https://api.internal"
            ]
        );
        // `kops delete cluster` documents no --api-server.
        assert_eq!(
            argv(&kops.delete_cluster("c", st, false)),
            ["delete", "cluster", "--name", "c", "--state", st]
        );
        assert_eq!(
            argv(&kops.export_kubeconfig("c", st, Path::new("/k/config"), "1h0m0s")),
            [
                "export",
                "kubeconfig",
                "--name",
                "c",
                "--state",
                st,
                "--kubeconfig",
                "/k/config",
                "--admin=1h0m0s",
                "--api-server",
                "https://api.internal"
            ]
        );
        // The user's own --api-server wins; kopsci adds none.
        let inv = kops
            .rolling_update("c", st, false, &os(&["--api-server=https://other"]))
            .unwrap();
        assert_eq!(
            argv(&inv)
                .iter()
                .filter(|a| a.starts_with("--api-server"))
                .count(),
            1
        );
    }

    #[test]
    fn instance_group_names_that_look_like_flags_are_refused() {
        let kops = Kops::new("kops");
        for bad in ["--yes", "-v=10", "a b", "../x", ""] {
            assert!(kops.delete_instance_group(bad, "c", "s").is_err(), "{bad}");
        }
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
            kops.delete_instance_group("ig", "c", "s").unwrap().label(),
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
