//! `kopsci kubeconfig CLUSTER --out FILE`: a short-lived admin kubeconfig
//! for the jobs that deploy workloads right after a cluster changes —
//! `kops export kubeconfig --admin=DURATION` as the identity kopsci
//! resolves for the cluster (assumed role included). The file is private
//! (0600), written whole or not at all, and meant to stay inside the job:
//! never make it an artifact.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet, Timeout};
use crate::fsutil;
use crate::fsutil::WorkDir;
use crate::process::Runner;
use crate::stage::sections::Log;
use crate::stage::{KopsSetup, StageSettings};

/// Default lifetime of the admin credential: long enough for a deploy job.
pub const DEFAULT_ADMIN: Timeout = Timeout::from_secs(3600);

/// `kopsci kubeconfig`'s options.
#[derive(Debug, Clone)]
pub struct KubeconfigOptions {
    pub out: PathBuf,
    /// The reports directory, which jobs keep as artifacts: `out` may not
    /// be inside it.
    pub report_dir: PathBuf,
    /// Lifetime of the admin credential.
    pub admin: Timeout,
    pub kops: Option<PathBuf>,
    pub settings: StageSettings,
}

/// Writes the cluster's admin kubeconfig to `opts.out`.
pub fn kubeconfig(fleet: &Fleet, cluster: &Cluster, opts: &KubeconfigOptions) -> Result<()> {
    if cluster.absent {
        return Err(Error::Usage(format!(
            "cluster `{}` is `absent: true` in the fleet: it has no kubeconfig to export",
            cluster.name
        )));
    }
    refuse_report_dir(&opts.out, &opts.report_dir)?;
    let setup = KopsSetup::locate(opts.kops.as_deref(), fleet)?;
    let store = fleet.store_for(cluster, opts.settings.state.as_ref())?;
    let identity = crate::aws::resolve_identity(&cluster.aws, &opts.settings.sts)?;
    let log = Log::live(opts.settings.log, &cluster.name);
    if !matches!(identity, crate::aws::AwsIdentity::Inherit { region: None }) {
        log.note(&identity.describe());
    }
    // kops merges into an existing file: start from an empty private one,
    // then move it into place whole.
    let out_dir = match opts.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&out_dir).map_err(|e| Error::io(&out_dir, e))?;
    let work = WorkDir::create(&out_dir, ".kopsci-kubeconfig-")?;
    let file = work.path().join("config");
    let kops = setup
        .kops(&identity)
        .with_api_server(cluster.apply.api_server.as_deref());
    let inv = kops.export_kubeconfig(&cluster.name, &store.to_string(), &file, &opts.admin.go());
    {
        let _s = log.section(
            "kubeconfig",
            &format!(
                "{}: kops export kubeconfig --admin={}",
                cluster.name,
                opts.admin.go()
            ),
            false,
        );
        Runner::new(log.echo()).run(&inv)?;
    }
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(&file, e))?;
    std::fs::rename(&file, &opts.out).map_err(|e| Error::io(&opts.out, e))?;
    log.note(&format!(
        "{}: admin kubeconfig valid for {} written to {} (keep it out of artifacts)",
        cluster.name,
        opts.admin.gitlab(),
        opts.out.display()
    ));
    Ok(())
}

/// The report directory is what every cluster job keeps as artifacts: an
/// admin credential written there would be downloadable for the artifacts'
/// whole lifetime. Compared as the filesystem resolves both (symlinked
/// directories followed); `out` itself is replaced, never followed.
fn refuse_report_dir(out: &Path, report_dir: &Path) -> Result<()> {
    let Some(name) = out.file_name() else {
        return Err(Error::Usage(format!(
            "--out {}: name a file, not a directory",
            out.display()
        )));
    };
    let parent = out.parent().unwrap_or(Path::new(""));
    let target = fsutil::resolved(parent).join(name);
    let reports = fsutil::resolved(report_dir);
    if target.starts_with(&reports) {
        return Err(Error::Usage(format!(
            "refusing to write the admin kubeconfig to {}: it is inside the report directory {}, which jobs keep as artifacts; write it elsewhere (such as .kube/config)",
            out.display(),
            report_dir.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubeconfig_inside_the_report_dir_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let reports = tmp.path().join("reports");
        std::fs::create_dir_all(reports.join("c")).unwrap();
        std::fs::create_dir_all(tmp.path().join("kube")).unwrap();
        // A symlinked directory leading into the reports.
        std::os::unix::fs::symlink(reports.join("c"), tmp.path().join("sneaky")).unwrap();
        for out in [
            reports.join("c/kubeconfig"),
            reports.join("new/dir/kubeconfig"),
            tmp.path().join("kube/../reports/kubeconfig"),
            tmp.path().join("sneaky/kubeconfig"),
        ] {
            let err = refuse_report_dir(&out, &reports).unwrap_err().to_string();
            assert!(
                err.contains("inside the report directory"),
                "{out:?}: {err}"
            );
        }
        for out in [
            tmp.path().join("kube/config"),
            tmp.path().join("reports-not/config"),
        ] {
            refuse_report_dir(&out, &reports).unwrap();
        }
        // A symlink at --out is replaced, not followed.
        std::os::unix::fs::symlink(reports.join("c/x"), tmp.path().join("kube/link")).unwrap();
        refuse_report_dir(&tmp.path().join("kube/link"), &reports).unwrap();
    }
}
