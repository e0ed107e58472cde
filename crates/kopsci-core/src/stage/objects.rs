//! The kOps objects a stage compares: the documents of a rendered manifest,
//! and what a `file://` state store holds for a cluster under `config` and
//! `instancegroup/<name>` — the only keys `kops replace` writes from a
//! manifest, and the only ones kopsci ever shows. `pki/` and `secrets/` are
//! never read here.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;

use crate::errors::{Error, Result};
use crate::values::Value;

/// The store key of the Cluster object.
pub const CONFIG_KEY: &str = "config";
/// The store directory of InstanceGroup objects.
pub const INSTANCE_GROUP_DIR: &str = "instancegroup";

/// The documents of a rendered manifest, by kind.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestObjects {
    /// The `kind: Cluster` document.
    pub cluster: Value,
    /// `kind: InstanceGroup` documents by `metadata.name`, in manifest order.
    pub instance_groups: IndexMap<String, Value>,
    /// Kinds kopsci does not compare (e.g. `SSHCredential`), in order.
    pub other_kinds: Vec<String>,
}

impl ManifestObjects {
    /// Parses a rendered manifest for `cluster`: exactly one Cluster named
    /// `cluster`, InstanceGroups with unique names.
    pub fn parse(text: &str, cluster: &str) -> Result<ManifestObjects> {
        let origin = format!("rendered manifest of {cluster}");
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
            let bare = e.without_snippet();
            let (line, column) = bare
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            Error::Yaml {
                origin: origin.clone(),
                line,
                column,
                message: bare
                    .to_string()
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
            }
        })?;
        let bad = |message: String| Error::Values {
            origin: origin.clone(),
            message,
        };
        let mut found_cluster: Option<Value> = None;
        let mut instance_groups = IndexMap::new();
        let mut other_kinds = Vec::new();
        for (index, doc) in docs.into_iter().enumerate() {
            if doc.is_null() {
                continue;
            }
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
            let name = doc
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            match kind {
                "Cluster" => {
                    if found_cluster.is_some() {
                        return Err(bad("more than one `kind: Cluster` document".into()));
                    }
                    if name != cluster {
                        return Err(bad(format!(
                            "the Cluster document is named `{name}`, expected `{cluster}`"
                        )));
                    }
                    found_cluster = Some(doc);
                }
                "InstanceGroup" => {
                    if name.is_empty() || name.contains('/') || name.starts_with('.') {
                        return Err(bad(format!(
                            "document {}: InstanceGroup without a usable metadata.name",
                            index + 1
                        )));
                    }
                    if instance_groups.insert(name.clone(), doc).is_some() {
                        return Err(bad(format!("InstanceGroup `{name}` appears twice")));
                    }
                }
                "" => {
                    return Err(bad(format!("document {} has no `kind`", index + 1)));
                }
                other => other_kinds.push(other.to_string()),
            }
        }
        let Some(cluster_doc) = found_cluster else {
            return Err(bad("no `kind: Cluster` document".into()));
        };
        Ok(ManifestObjects {
            cluster: cluster_doc,
            instance_groups,
            other_kinds,
        })
    }
}

/// A cluster's `config` and `instancegroup/*` in a `file://` store, as the
/// bytes kOps wrote (text).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredObjects {
    pub config: Option<String>,
    /// By instance-group name (the file name kOps uses).
    pub instance_groups: BTreeMap<String, String>,
}

impl StoredObjects {
    /// Reads them from the cluster's directory of a `file://` store (a
    /// missing directory is a cluster that does not exist yet).
    pub fn read(cluster_dir: &Path) -> Result<StoredObjects> {
        let mut stored = StoredObjects::default();
        let config = cluster_dir.join(CONFIG_KEY);
        match std::fs::read(&config) {
            Ok(bytes) => stored.config = Some(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(config, e)),
        }
        let dir = cluster_dir.join(INSTANCE_GROUP_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(stored),
            Err(e) => return Err(Error::io(dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            // Only plain files: kOps writes one file per group, and a
            // snapshot never holds links.
            let file_type = entry.file_type().map_err(|e| Error::io(entry.path(), e))?;
            if !file_type.is_file() {
                continue;
            }
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let bytes = std::fs::read(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
            stored
                .instance_groups
                .insert(name, String::from_utf8_lossy(&bytes).into_owned());
        }
        Ok(stored)
    }

    /// Whether the cluster exists in the store.
    pub fn exists(&self) -> bool {
        self.config.is_some()
    }

    /// Every object as (store key, text), `config` first.
    pub fn entries(&self) -> Vec<(String, &str)> {
        let mut out = Vec::with_capacity(self.instance_groups.len() + 1);
        if let Some(config) = &self.config {
            out.push((CONFIG_KEY.to_string(), config.as_str()));
        }
        for (name, text) in &self.instance_groups {
            out.push((format!("{INSTANCE_GROUP_DIR}/{name}"), text.as_str()));
        }
        out
    }

    /// Instance groups in the store that the manifest no longer has:
    /// `kops replace --force` leaves them in place.
    pub fn removed_instance_groups(&self, manifest: &ManifestObjects) -> Vec<String> {
        self.instance_groups
            .keys()
            .filter(|name| !manifest.instance_groups.contains_key(*name))
            .cloned()
            .collect()
    }
}

/// A unified diff of every object that differs between two reads of the
/// store (`a/<key>` before, `b/<key>` after); empty when nothing changed.
pub fn state_diff(before: &StoredObjects, after: &StoredObjects) -> String {
    let old: BTreeMap<String, &str> = before.entries().into_iter().collect();
    let new: BTreeMap<String, &str> = after.entries().into_iter().collect();
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort_by(|a, b| key_order(a).cmp(&key_order(b)));
    keys.dedup();
    let mut out = String::new();
    for key in keys {
        let (a, b) = (old.get(key).copied(), new.get(key).copied());
        if a == b {
            continue;
        }
        out.push_str(&unified(key, a, b));
    }
    out
}

/// `config` first, then instance groups by name.
fn key_order(key: &str) -> (bool, &str) {
    (key != CONFIG_KEY, key)
}

/// A unified diff of one object; `None` is an absent object.
pub fn unified(key: &str, old: Option<&str>, new: Option<&str>) -> String {
    let old_header = if old.is_some() {
        format!("a/{key}")
    } else {
        "/dev/null".to_string()
    };
    let new_header = if new.is_some() {
        format!("b/{key}")
    } else {
        "/dev/null".to_string()
    };
    let (old, new) = (old.unwrap_or(""), new.unwrap_or(""));
    let mut text = similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .missing_newline_hint(false)
        .header(&old_header, &new_header)
        .to_string();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "\
apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  name: c.example.com
spec: {}
---
apiVersion: kops.k8s.io/v1alpha2
kind: InstanceGroup
metadata:
  name: nodes
spec: {maxSize: 2}
---
kind: SSHCredential
metadata: {name: admin}
";

    #[test]
    fn manifest_documents_by_kind() {
        let m = ManifestObjects::parse(MANIFEST, "c.example.com").unwrap();
        assert_eq!(m.instance_groups.keys().collect::<Vec<_>>(), ["nodes"]);
        assert_eq!(m.other_kinds, ["SSHCredential"]);
    }

    #[test]
    fn manifest_errors_are_one_clear_line() {
        let cases = [
            (
                MANIFEST.replace("c.example.com", "d.example.com"),
                "named `d.example.com`",
            ),
            (
                "kind: InstanceGroup\nmetadata: {name: a}\n".to_string(),
                "no `kind: Cluster`",
            ),
            (
                format!("{MANIFEST}---\nkind: InstanceGroup\nmetadata: {{name: nodes}}\n"),
                "appears twice",
            ),
            (
                format!("{MANIFEST}---\nkind: InstanceGroup\nmetadata: {{name: ../x}}\n"),
                "usable metadata.name",
            ),
            ("a: [\n".to_string(), "rendered manifest of c.example.com:"),
        ];
        for (text, want) in cases {
            let err = ManifestObjects::parse(&text, "c.example.com")
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{want}: {err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn stored_objects_and_their_diff() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c.example.com");
        assert!(!StoredObjects::read(&dir).unwrap().exists());
        std::fs::create_dir_all(dir.join("instancegroup")).unwrap();
        std::fs::create_dir_all(dir.join("pki/private")).unwrap();
        std::fs::write(dir.join("pki/private/key"), "SECRET").unwrap();
        std::fs::write(dir.join("config"), "a: 1\nb: 2\n").unwrap();
        std::fs::write(dir.join("instancegroup/nodes"), "maxSize: 2\n").unwrap();
        std::fs::write(dir.join("instancegroup/old"), "maxSize: 1\n").unwrap();
        let before = StoredObjects::read(&dir).unwrap();
        assert!(before.exists());
        let m = ManifestObjects::parse(MANIFEST, "c.example.com").unwrap();
        assert_eq!(before.removed_instance_groups(&m), ["old"]);

        std::fs::write(dir.join("config"), "a: 1\nb: 3\n").unwrap();
        std::fs::write(dir.join("instancegroup/new"), "maxSize: 5\n").unwrap();
        let after = StoredObjects::read(&dir).unwrap();
        let diff = state_diff(&before, &after);
        assert_eq!(
            diff,
            "--- a/config\n+++ b/config\n@@ -1,2 +1,2 @@\n a: 1\n-b: 2\n+b: 3\n\
             --- /dev/null\n+++ b/instancegroup/new\n@@ -0,0 +1 @@\n+maxSize: 5\n"
        );
        assert!(!diff.contains("SECRET"));
        assert_eq!(state_diff(&after, &after), "");
    }
}
