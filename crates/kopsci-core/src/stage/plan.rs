//! `plan.json`: the fingerprint of what a dry run reviewed, and the checks
//! `update` makes before it touches the live store.
//!
//! A plan holds the SHA-256 of the rendered manifest, the live store's URL,
//! and the whole snapshot record (key, size and SHA-256 of every object the
//! dry run started from — never contents). `update` renders again and
//! compares the manifest digest, then runs `snapshot verify` with that
//! record against the live store: any object added, removed or modified
//! since the dry run makes the plan stale.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::errors::{Error, Result};
use crate::kops::Counts;
use crate::stage::report::Action;
use crate::state::{RECORD_FILE, Record, S3Settings, VerifyReport};

pub const PLAN_FILE: &str = "plan.json";
/// The `format` of plans this version writes and reads.
pub const PLAN_FORMAT: &str = "kopsci-plan/v1";

/// A dry run's fingerprint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Always [`PLAN_FORMAT`].
    pub format: String,
    pub cluster: String,
    /// The live store as kops' `--state` names it.
    pub state: String,
    /// Lowercase hex SHA-256 of the rendered manifest (`manifest.yaml`).
    pub manifest_sha256: String,
    /// `create` when the cluster was not in the store.
    pub action: Action,
    pub removed_instance_groups: Vec<String>,
    pub changes_pending: bool,
    pub counts: Counts,
    /// The kops that made the plan; `null` with `--without-kops`.
    pub kops_version: Option<String>,
    pub without_kops: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// SHA-256 of `snapshot` as written in a snapshot record file.
    pub snapshot_sha256: String,
    /// The snapshot record the dry run started from.
    pub snapshot: Record,
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Plan {
    pub fn to_json(&self) -> Result<String> {
        let mut text =
            serde_json::to_string_pretty(self).map_err(|e| Error::YamlWrite(e.to_string()))?;
        text.push('\n');
        Ok(text)
    }

    /// Reads `dir/plan.json`; `None` when there is none.
    pub fn load(dir: &Path) -> Result<Option<Plan>> {
        let path = dir.join(PLAN_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let bad = |message: String| Error::SnapshotRecord {
            path: path.clone(),
            message,
        };
        let plan: Plan = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if plan.format != PLAN_FORMAT {
            return Err(bad(format!(
                "unsupported plan format `{}` (this kopsci reads `{PLAN_FORMAT}`)",
                plan.format
            )));
        }
        // The same checks as a record file gets: safe, sorted keys.
        let record_json = plan.snapshot.to_json();
        Record::parse(&record_json).map_err(|m| bad(format!("snapshot: {m}")))?;
        if sha256_hex(record_json.as_bytes()) != plan.snapshot_sha256 {
            return Err(bad(
                "snapshot_sha256 does not match the snapshot record: the plan was edited".into(),
            ));
        }
        Ok(Some(plan))
    }

    /// Why this plan does not fit what `update` is about to apply; empty
    /// when it does (the live store is checked separately, [`Plan::verify_live`]).
    pub fn mismatches(&self, cluster: &str, state: &str, manifest_sha256: &str) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.cluster != cluster {
            reasons.push(format!(
                "the plan is for cluster `{}`, not `{cluster}`",
                self.cluster
            ));
        }
        if self.state != state {
            reasons.push(format!(
                "the plan was made against state store `{}`, not `{state}`",
                self.state
            ));
        }
        if self.manifest_sha256 != manifest_sha256 {
            reasons.push(
                "the rendered manifest differs from the one the dry run reviewed (templates or values changed since)"
                    .into(),
            );
        }
        reasons
    }

    /// Compares the live store with the snapshot the dry run started from
    /// (`snapshot verify` on the plan's record).
    pub fn verify_live(&self, s3: &S3Settings, concurrency: usize) -> Result<VerifyReport> {
        let dir = tempfile::Builder::new()
            .prefix("kopsci-verify-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let record = dir.path().join(RECORD_FILE);
        std::fs::write(&record, self.snapshot.to_json()).map_err(|e| Error::io(&record, e))?;
        crate::state::verify(dir.path(), s3, concurrency)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{FilterSpec, ObjectRecord};

    fn plan() -> Plan {
        let snapshot = Record {
            format: crate::state::record::FORMAT.into(),
            source: "file:///srv/state".into(),
            cluster: "c.example.com".into(),
            time: "2026-01-01T00:00:00Z".into(),
            filter: FilterSpec::default(),
            objects: vec![ObjectRecord {
                key: "config".into(),
                size: 3,
                etag: None,
                sha256: "0".repeat(64),
            }],
        };
        Plan {
            format: PLAN_FORMAT.into(),
            cluster: "c.example.com".into(),
            state: "file:///srv/state".into(),
            manifest_sha256: sha256_hex(b"manifest"),
            action: Action::Replace,
            removed_instance_groups: vec![],
            changes_pending: true,
            counts: Counts::default(),
            kops_version: Some("1.34.1".into()),
            without_kops: false,
            created_at: "2026-01-01T00:00:00Z".into(),
            snapshot_sha256: sha256_hex(snapshot.to_json().as_bytes()),
            snapshot,
        }
    }

    #[test]
    fn round_trips_and_detects_edits() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Plan::load(dir.path()).unwrap(), None);
        let p = plan();
        std::fs::write(dir.path().join(PLAN_FILE), p.to_json().unwrap()).unwrap();
        assert_eq!(Plan::load(dir.path()).unwrap(), Some(p.clone()));

        let mut edited = p.clone();
        edited.snapshot.objects[0].sha256 = "1".repeat(64);
        std::fs::write(dir.path().join(PLAN_FILE), edited.to_json().unwrap()).unwrap();
        let err = Plan::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("the plan was edited"), "{err}");

        let mut unsafe_key = p.clone();
        unsafe_key.snapshot.objects[0].key = "../x".into();
        unsafe_key.snapshot_sha256 = sha256_hex(unsafe_key.snapshot.to_json().as_bytes());
        std::fs::write(dir.path().join(PLAN_FILE), unsafe_key.to_json().unwrap()).unwrap();
        let err = Plan::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("snapshot: object key"), "{err}");

        std::fs::write(dir.path().join(PLAN_FILE), "{").unwrap();
        assert!(Plan::load(dir.path()).is_err());
    }

    #[test]
    fn mismatches_name_each_difference() {
        let p = plan();
        assert!(
            p.mismatches(
                "c.example.com",
                "file:///srv/state",
                &sha256_hex(b"manifest")
            )
            .is_empty()
        );
        let reasons = p.mismatches("d.example.com", "s3://b", &sha256_hex(b"other"));
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(reasons[2].contains("rendered manifest differs"));
    }

    #[test]
    fn verify_live_compares_the_record_with_the_store() {
        let store = tempfile::tempdir().unwrap();
        let cluster = store.path().join("c.example.com");
        std::fs::create_dir_all(&cluster).unwrap();
        std::fs::write(cluster.join("config"), "abc").unwrap();
        let mut p = plan();
        p.snapshot.source = format!("file://{}", store.path().display());
        p.snapshot.objects[0].sha256 = sha256_hex(b"abc");
        let report = p.verify_live(&S3Settings::default(), 4).unwrap();
        assert!(!report.changed(), "{}", report.render());
        std::fs::write(cluster.join("config"), "abd").unwrap();
        let report = p.verify_live(&S3Settings::default(), 4).unwrap();
        assert_eq!(report.modified, ["config"]);
    }
}
