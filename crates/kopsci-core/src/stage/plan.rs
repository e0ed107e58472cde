//! `plan.json`: what a dry run reviewed, and the checks `update` and
//! `apply` make before they touch the live store.
//!
//! A plan holds the SHA-256 of the rendered manifest, the live store's URL,
//! and the whole snapshot record (key, size and SHA-256 of every object the
//! dry run started from — never contents). It is an artifact anyone who can
//! edit a branch's artifacts can rewrite, checksums included, so it is only
//! the reviewed *expectation*: every check is recomputed. `update` renders
//! the manifest again, copies the live store it is about to write (the
//! fleet's, or `--state`), and compares — the manifest digest, every
//! object's digest against the record, and what the manifest and the live
//! store give for the action and the removed instance groups. Nothing the
//! plan says is applied without that.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::errors::{Error, Result};
use crate::kops::Counts;
use crate::stage::objects::ManifestObjects;
use crate::stage::report::Action;
use crate::stage::run::{ClusterRun, LiveCopy, Manifest, Step};
use crate::stage::spec_diff::{Change, spec_diff};
use crate::state::{Changes, FilterSpec, Record};

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

    /// Why this plan does not fit what `update` is about to apply: another
    /// cluster, another store (by the plan's own field or its record's),
    /// another manifest, or a record made with another filter (so that it
    /// could leave out what changed). Empty when it fits.
    pub fn mismatches(&self, cluster: &str, state: &str, manifest_sha256: &str) -> Vec<String> {
        let mut reasons = Vec::new();
        if self.cluster != cluster || self.snapshot.cluster != cluster {
            reasons.push(format!(
                "the plan is for cluster `{}`, not `{cluster}`",
                crate::text::escape_controls(&self.cluster)
            ));
        }
        if self.state != state || self.snapshot.source != state {
            let other = if self.state != state {
                &self.state
            } else {
                &self.snapshot.source
            };
            reasons.push(format!(
                "the plan was made against state store `{}`, not `{state}`, the store this job writes",
                crate::text::escape_controls(other)
            ));
        }
        if self.snapshot.filter != FilterSpec::default() {
            reasons.push(
                "the plan's snapshot was taken with non-default filters, so it may not cover what changed"
                    .into(),
            );
        }
        if self.manifest_sha256 != manifest_sha256 {
            reasons.push(
                "the rendered manifest differs from the one the dry run reviewed (templates or values changed since)"
                    .into(),
            );
        }
        reasons
    }
}

/// Whether these are changes an earlier apply of the same manifest makes:
/// secrets and keys only ever added (a first `update --yes` creates them),
/// nothing removed but — when this apply prunes (`prune`) — the instance
/// groups the manifest dropped, with their `igconfig/`; everything else
/// kOps' own output. Without pruning, a group gone from the store is not
/// this apply's doing.
fn could_be_an_earlier_apply(changes: &Changes, manifest: &ManifestObjects, prune: bool) -> bool {
    let secret = |k: &String| k.starts_with("pki/") || k.starts_with("secrets/");
    let dropped = |group: &str| !manifest.instance_groups.contains_key(group);
    let pruned_key = |k: &String| {
        prune
            && (k.strip_prefix("instancegroup/").is_some_and(dropped)
                || k.strip_prefix("igconfig/")
                    .and_then(|rest| rest.split('/').nth(1))
                    .is_some_and(dropped))
    };
    changes.removed.iter().all(pruned_key) && !changes.modified.iter().any(secret)
}

/// What `update` / `apply` will do, decided from the manifest and the live
/// store (never from the plan alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// Instance groups the store has and the manifest does not.
    pub removed: Vec<String>,
}

/// Checks the dry run's plan against a fresh copy of the live store and
/// the freshly rendered manifest; returns what to apply. Refuses a stale,
/// missing, broken or edited plan unless `allow_stale`, in which case the
/// live store alone decides and the report says so. `prune`: this run
/// deletes removed instance groups, so an earlier run may have too.
pub fn check(
    run: &mut ClusterRun,
    plan_dir: &Path,
    manifest: &Manifest,
    live: &LiveCopy,
    allow_stale: bool,
    prune: bool,
) -> Result<Decision> {
    run.step(Step::PlanCheck)?;
    let name = run.name();
    let state = run.live_state_arg();
    let decided = Decision {
        action: live.action(),
        removed: live.stored.removed_instance_groups(&manifest.objects),
    };
    let mut reasons = Vec::new();
    let plan = match Plan::load(plan_dir) {
        Ok(Some(plan)) => Some(plan),
        Ok(None) => {
            reasons.push(format!(
                "no {PLAN_FILE} in {}: run `kopsci dryrun {name}` first (its report directory must reach this job)",
                plan_dir.display()
            ));
            None
        }
        Err(e) => {
            reasons.push(e.to_string());
            None
        }
    };
    if let Some(plan) = &plan {
        reasons.extend(plan.mismatches(name, &state, &manifest.sha256));
        if reasons.is_empty() {
            reasons.extend(freshness(run, plan, manifest, live, &decided, prune)?);
        }
    }
    if reasons.is_empty()
        && let Some(plan) = plan
    {
        run.log.note(&format!(
            "plan of {} is current: same manifest, live store unchanged",
            plan.created_at
        ));
        if plan.without_kops {
            run.warn(
                "the plan comes from a `--without-kops` dry run: kops never previewed this change"
                    .into(),
            );
        }
        return Ok(decided);
    }
    if !allow_stale {
        return Err(Error::StalePlan {
            cluster: name.to_string(),
            reasons,
        });
    }
    for reason in reasons {
        run.warn(format!("--allow-stale: applied although {reason}"));
    }
    Ok(decided)
}

/// Why the live store is not the one the plan reviewed; empty when it is,
/// or when it differs only by what an earlier apply of this same manifest
/// wrote (a retried apply job resumes instead of being refused).
fn freshness(
    run: &mut ClusterRun,
    plan: &Plan,
    manifest: &Manifest,
    live: &LiveCopy,
    decided: &Decision,
    prune: bool,
) -> Result<Vec<String>> {
    let changes = Changes::between(&plan.snapshot, &live.record);
    if changes.is_empty() {
        // Same manifest, same store: the plan's own conclusions must be
        // what they recompute to, or the plan was edited.
        let mut expected = plan.removed_instance_groups.clone();
        expected.sort();
        let mut removed = decided.removed.clone();
        removed.sort();
        if plan.action != decided.action || expected != removed {
            return Ok(vec![format!(
                "plan.json says {:?} with removed instance groups [{}], but the reviewed manifest and the unchanged live store give {:?} with [{}]: the plan was edited",
                plan.action,
                expected.join(", "),
                decided.action,
                removed.join(", ")
            )]);
        }
        return Ok(Vec::new());
    }
    if could_be_an_earlier_apply(&changes, &manifest.objects, prune) && live.stored.exists() {
        // Groups the manifest dropped stay until pruned: `kops replace`
        // never deletes them, so they are not a difference here.
        let diff = spec_diff(&manifest.objects, &live.stored)?;
        let differs = diff.objects.iter().any(|o| o.change != Change::Remove);
        if !differs {
            run.warn(format!(
                "the live store changed since the dry run ({}), but only as applying this same reviewed manifest changes it: resuming an earlier apply",
                changes.describe()
            ));
            return Ok(Vec::new());
        }
    }
    Ok(vec![format!(
        "the live state store changed since the dry run's snapshot of {} ({}): {}",
        plan.snapshot.time,
        plan.state,
        changes.describe()
    )])
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
    fn store_changes_compare_digests_not_etags() {
        let before = plan().snapshot;
        let mut after = before.clone();
        after.objects[0].etag = Some("other".into());
        assert!(Changes::between(&before, &after).is_empty());
        after.objects[0].sha256 = "1".repeat(64);
        after.objects.push(ObjectRecord {
            key: "pki/private/ca/keyset.yaml".into(),
            size: 1,
            etag: None,
            sha256: "2".repeat(64),
        });
        let changes = Changes::between(&before, &after);
        assert_eq!(changes.modified, ["config"]);
        assert_eq!(changes.added, ["pki/private/ca/keyset.yaml"]);
        let manifest = ManifestObjects::parse(
            "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata: {name: c.example.com}\n---\n\
             apiVersion: kops.k8s.io/v1alpha2\nkind: InstanceGroup\nmetadata: {name: nodes}\n",
            "c.example.com",
        )
        .unwrap();
        assert!(could_be_an_earlier_apply(&changes, &manifest, false));
        let gone = Changes::between(&after, &before);
        assert_eq!(gone.removed, ["pki/private/ca/keyset.yaml"]);
        assert!(!could_be_an_earlier_apply(&gone, &manifest, true));
        let mut rotated = after.clone();
        rotated.objects[1].sha256 = "3".repeat(64);
        assert!(!could_be_an_earlier_apply(
            &Changes::between(&after, &rotated),
            &manifest,
            true
        ));
        // A group the manifest dropped, pruned by an earlier apply that
        // prunes: fine; without pruning, or a group the manifest holds,
        // gone: not this manifest's doing.
        let with_groups = |names: &[&str]| {
            let mut r = before.clone();
            for name in names {
                for key in [
                    format!("instancegroup/{name}"),
                    format!("igconfig/node/{name}/nodeupconfig.yaml"),
                ] {
                    r.objects.push(ObjectRecord {
                        key,
                        size: 1,
                        etag: None,
                        sha256: "4".repeat(64),
                    });
                }
            }
            r
        };
        let pruned = Changes::between(&with_groups(&["nodes", "old"]), &with_groups(&["nodes"]));
        assert_eq!(pruned.removed.len(), 2);
        assert!(could_be_an_earlier_apply(&pruned, &manifest, true));
        assert!(!could_be_an_earlier_apply(&pruned, &manifest, false));
        let lost = Changes::between(&with_groups(&["nodes"]), &with_groups(&[]));
        assert!(!could_be_an_earlier_apply(&lost, &manifest, true));
    }

    #[test]
    fn a_plan_for_another_store_or_filter_never_fits() {
        let mut p = plan();
        // An attacker points the record at a copy of the store, recomputing
        // the checksum: the store this job writes is what counts.
        p.snapshot.source = "s3://attacker-copy".into();
        let reasons = p.mismatches(
            "c.example.com",
            "file:///srv/state",
            &sha256_hex(b"manifest"),
        );
        assert!(
            reasons.iter().any(|r| r.contains("s3://attacker-copy")),
            "{reasons:?}"
        );
        let mut p = plan();
        p.snapshot.filter.exclude = vec!["**".into()];
        let reasons = p.mismatches(
            "c.example.com",
            "file:///srv/state",
            &sha256_hex(b"manifest"),
        );
        assert!(
            reasons.iter().any(|r| r.contains("non-default filters")),
            "{reasons:?}"
        );
    }
}
