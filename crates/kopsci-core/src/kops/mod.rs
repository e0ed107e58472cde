//! Everything kopsci does with kops: finding the binary and checking its
//! version, building each call as plain data ([`Invocation`], via [`Kops`]),
//! running it the one way kopsci runs processes ([`Runner`]: live output,
//! capture, exit code, signal forwarding), the AWS identity it runs as
//! ([`AwsIdentity`]), and parsers for the outputs kOps gives no
//! machine-readable form of ([`parse_update_output`],
//! [`parse_rolling_update_output`]).
//!
//! kopsci must work with the real kops unchanged: nothing here relies on a
//! behaviour the kOps docs (`reference/kops/`) do not promise.

pub mod command;
pub mod klog;
pub mod reconcile;
pub mod rolling_update;
pub mod update_output;
pub mod validate;
pub mod version;

pub use command::Kops;
pub use reconcile::{ReconcilePhase, phase_sections, reconcile_phases};
pub use rolling_update::{RollPlan, RollRow, RollStatus, parse_rolling_update_output};
pub use update_output::{Counts, FieldChange, Resource, UpdatePlan, parse_update_output};
pub use validate::{Validation, ValidationFailure, ValidationNode, parse_validate_output};
pub use version::{check_version, locate, parse_version};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::{AwsCredentials, AwsIdentity, Secret};
    use crate::errors::Error;
    use crate::process::{Echo, Runner};
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    /// A fake kops: records its argv and the AWS variables it sees, prints
    /// canned output for `version` and `update cluster`.
    fn fake_kops(dir: &Path) -> PathBuf {
        let path = dir.join("kops");
        let body = format!(
            r#"#!/bin/sh
printf '%s\n' "$*" >> '{log}'
printf 'key=%s profile=%s\n' "${{AWS_ACCESS_KEY_ID-unset}}" "${{AWS_PROFILE-unset}}" >> '{log}'
case "$1" in
  version) echo 'Client version: 1.34.1 (git-v1.34.1)' ;;
  update)
    echo 'I1121 12:00:00.000000   1 executor.go:111] Tasks: 1 done / 1 total; 0 can run' >&2
    printf 'Will create resources:\n  VPC/c.example.com\n  \tCIDR                \t 172.20.0.0/16\n\nMust specify --yes to apply changes\n' ;;
  *) echo "Error: unexpected $1" >&2; exit 1 ;;
esac
"#,
            log = dir.join("calls.log").display()
        );
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    /// Retries a spawn that failed with ETXTBSY: another test's fork may
    /// briefly hold the just-written script open for writing.
    fn retry<T>(mut f: impl FnMut() -> crate::Result<T>) -> crate::Result<T> {
        for _ in 0..20 {
            match f() {
                Err(Error::KopsSpawn { cause, .. }) if cause.raw_os_error() == Some(26) => {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => return other,
            }
        }
        f()
    }

    #[test]
    fn version_check_and_dry_run_through_a_fake_kops() {
        let tmp = tempfile::tempdir().unwrap();
        let program = fake_kops(tmp.path());
        let identity = AwsIdentity::explicit(
            AwsCredentials {
                access_key_id: "AKIAFAKEFAKEFAKE".into(),
                secret_access_key: Secret::new("s"),
                session_token: None,
            },
            Some("eu-west-1".into()),
        );
        let kops = Kops::new(&program).with_identity(&identity);
        let runner = Runner::new(Echo::Off);

        let ok = semver::VersionReq::parse(">=1.34.0, <1.35.0").unwrap();
        let found = retry(|| version::verify(&runner, &kops, Some(&ok))).unwrap();
        assert_eq!(found, semver::Version::new(1, 34, 1));
        let too_new = semver::VersionReq::parse("<1.34").unwrap();
        let err = retry(|| version::verify(&runner, &kops, Some(&too_new))).unwrap_err();
        assert!(matches!(err, Error::KopsVersion { .. }), "{err}");

        let inv = kops
            .update_cluster("c.example.com", "file:///tmp/snap", false, &[])
            .unwrap();
        let outcome = retry(|| runner.run(&inv)).unwrap();
        let plan = parse_update_output(&outcome.stdout);
        assert_eq!(
            plan.counts().summary(),
            "1 to create, 0 to modify, 0 to delete"
        );
        assert_eq!(plan.create[0].fields[0].value, "172.20.0.0/16");

        let calls = std::fs::read_to_string(tmp.path().join("calls.log")).unwrap();
        assert!(
            calls.contains("update cluster --name c.example.com --state file:///tmp/snap\nkey=AKIAFAKEFAKEFAKE profile=unset\n"),
            "{calls}"
        );

        let err = retry(|| runner.run(&kops.get_instance_groups("c", "s"))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "`kops get instancegroups` failed with exit code 1: Error: unexpected get"
        );
    }
}
