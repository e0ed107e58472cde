//! The simulated cloud: what `kops update cluster --yes` applied and what
//! `kops rolling-update cluster --yes` rolled, per cluster, in a JSON file
//! under `KOPS_STANDIN_CLOUD_DIR` (`<dir>/<cluster>.json`). It stands for
//! AWS, so it lives outside every state store: a dry run against a
//! `file://` snapshot sees the same cloud as the live store, as with kOps.
//! Without the variable the cloud is empty and read-only.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::complete::hex;
use crate::model::Field;

pub const CLOUD_DIR_ENV: &str = "KOPS_STANDIN_CLOUD_DIR";

/// One cluster's cloud.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Cloud {
    #[serde(default)]
    pub about: String,
    /// Resources by `Type/name`.
    #[serde(default)]
    pub resources: BTreeMap<String, CloudResource>,
    /// Autoscaling groups and their instances, by instance group name.
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    /// Counter for new instance ids.
    #[serde(default)]
    pub serial: u64,
    /// Test-control bookkeeping, not cloud state: kept here so that "fail
    /// N times" controls count across invocations (see controls.rs).
    #[serde(default)]
    pub controls: ControlCounters,
}

/// How often the "fail N times" test controls have fired for a cluster.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ControlCounters {
    /// Validation attempts `KOPS_STANDIN_VALIDATE=fail:N` has seen.
    #[serde(default)]
    pub validations: u64,
    /// Forced roll failures per instance group (`KOPS_STANDIN_ROLL_FAIL`).
    #[serde(default)]
    pub roll_failures: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CloudResource {
    pub id: String,
    pub fields: Vec<(String, Field)>,
}

impl CloudResource {
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Group {
    /// `ControlPlane`, `Node`, `Bastion`, `APIServer`.
    pub role: String,
    pub min: i64,
    pub max: i64,
    /// Desired capacity.
    pub target: i64,
    /// Hash of the launch template the group launches new instances from.
    pub launch_template: String,
    pub instances: Vec<Instance>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Instance {
    pub id: String,
    /// Hash of the launch template the instance was launched from; an
    /// instance whose hash differs from its group's needs updating.
    pub launch_template: String,
}

impl Group {
    pub fn needing_update(&self) -> usize {
        self.instances
            .iter()
            .filter(|i| i.launch_template != self.launch_template)
            .count()
    }
}

impl Cloud {
    /// A deterministic AWS-style id (`sg-0123…`) for a new resource.
    pub fn new_id(kind: &str, cluster: &str, name: &str) -> String {
        let prefix = match kind {
            "VPC" => "vpc",
            "Subnet" => "subnet",
            "SecurityGroup" => "sg",
            "SecurityGroupRule" => "sgr",
            "InternetGateway" => "igw",
            "RouteTable" => "rtb",
            "NatGateway" => "nat",
            "ElasticIP" => "eipalloc",
            "DHCPOptions" => "dopt",
            "LaunchTemplate" => "lt",
            "SSHKey" => "key",
            _ => "id",
        };
        let digest = Sha256::digest(format!("{cluster}/{kind}/{name}").as_bytes());
        format!("{prefix}-{}", &hex(&digest)[..17])
    }

    /// A new instance id, unique within the cluster.
    pub fn new_instance_id(&mut self, cluster: &str, group: &str) -> String {
        self.serial += 1;
        let digest = Sha256::digest(format!("{cluster}/{group}/{}", self.serial).as_bytes());
        format!("i-{}", &hex(&digest)[..17])
    }
}

/// Where clouds are kept, from the environment.
pub struct CloudDir {
    dir: Option<PathBuf>,
}

impl CloudDir {
    pub fn from_env() -> CloudDir {
        CloudDir {
            dir: std::env::var_os(CLOUD_DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }

    pub fn is_set(&self) -> bool {
        self.dir.is_some()
    }

    /// Fails unless there is a directory to save clouds in; commands that
    /// apply check this before touching the store, so nothing is half done.
    pub fn require_writable(&self) -> Result<()> {
        if self.dir.is_none() {
            return Err(anyhow!(
                "kops stand-in: {CLOUD_DIR_ENV} is not set, so there is no simulated cloud to apply changes to \
                 (point it at a directory; see crates/kops-standin/README.md)"
            ));
        }
        Ok(())
    }

    fn path(&self, cluster: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.join(format!("{cluster}.json")))
    }

    /// The cluster's cloud; empty when nothing was applied yet or no
    /// directory is configured.
    pub fn load(&self, cluster: &str) -> Result<Cloud> {
        let Some(path) = self.path(cluster) else {
            return Ok(Cloud::default());
        };
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).with_context(|| {
                format!(
                    "kops stand-in: cannot read the simulated cloud {}",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Cloud::default()),
            Err(e) => Err(e).with_context(|| {
                format!(
                    "kops stand-in: cannot read the simulated cloud {}",
                    path.display()
                )
            }),
        }
    }

    /// Saves the cluster's cloud (atomically: temp file and rename).
    pub fn save(&self, cluster: &str, cloud: &Cloud) -> Result<()> {
        self.require_writable()?;
        let (Some(dir), Some(path)) = (self.dir.as_ref(), self.path(cluster)) else {
            return Ok(());
        };
        std::fs::create_dir_all(dir)
            .with_context(|| format!("kops stand-in: cannot create {}", dir.display()))?;
        let mut cloud = cloud.clone();
        cloud.about = "kops stand-in simulated cloud (not a kOps file)".to_string();
        let text = serde_json::to_string_pretty(&cloud)?;
        let tmp = dir.join(format!(".{cluster}.json.{}", std::process::id()));
        std::fs::write(&tmp, text)
            .with_context(|| format!("kops stand-in: cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, &path)
            .with_context(|| format!("kops stand-in: cannot write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_dir_reads_empty_and_refuses_writes() {
        let dir = CloudDir { dir: None };
        assert!(dir.load("c").unwrap().resources.is_empty());
        assert!(
            dir.save("c", &Cloud::default())
                .unwrap_err()
                .to_string()
                .contains(CLOUD_DIR_ENV)
        );
    }

    #[test]
    fn saves_and_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = CloudDir {
            dir: Some(tmp.path().to_path_buf()),
        };
        let mut cloud = Cloud::default();
        cloud.resources.insert(
            "VPC/c".into(),
            CloudResource {
                id: Cloud::new_id("VPC", "c", "c"),
                fields: vec![("CIDR".into(), Field::Str("10.0.0.0/16".into()))],
            },
        );
        let id = cloud.new_instance_id("c", "nodes");
        assert!(id.starts_with("i-") && id.len() == 19);
        dir.save("c", &cloud).unwrap();
        let back = dir.load("c").unwrap();
        assert_eq!(back.serial, 1);
        assert_eq!(
            back.resources["VPC/c"].field("CIDR"),
            Some(&Field::Str("10.0.0.0/16".into()))
        );
    }
}
