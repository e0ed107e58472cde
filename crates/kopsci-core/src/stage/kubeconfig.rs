//! `kopsci kubeconfig CLUSTER --out FILE`: a short-lived admin kubeconfig
//! for the jobs that deploy workloads right after a cluster changes —
//! `kops export kubeconfig --admin=DURATION` as the identity kopsci
//! resolves for the cluster (assumed role included). The file is private
//! (0600), written whole or not at all, and meant to stay inside the job:
//! never make it an artifact.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::errors::{Error, Result};
use crate::fleet::{Cluster, Fleet, Timeout};
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
