//! The spec diff kopsci computes itself (`dryrun --without-kops`): the
//! rendered manifest's Cluster and InstanceGroup documents against the
//! stored `config` and `instancegroup/*`, compared as data, not text.
//!
//! Fields kOps stamps or fills in are left out of the comparison, so an
//! unchanged manifest gives an empty diff: `metadata.creationTimestamp`
//! (and the other server-side metadata), and — when the manifest leaves
//! them out — `spec.configBase` of the Cluster and the
//! `kops.k8s.io/cluster` label of instance groups, which kOps adds. Both
//! sides are written back with sorted keys, so key order and quoting style
//! never show up as changes.
//!
//! This is a spec-level view: what `kops replace` would write, not what
//! `kops update cluster` would do in the cloud.

use serde::{Deserialize, Serialize};

use crate::errors::Result;
use crate::kops::Counts;
use crate::stage::objects::{
    CONFIG_KEY, INSTANCE_GROUP_DIR, ManifestObjects, StoredObjects, unified,
};
use crate::values::{Map, Value};

/// Metadata the API server side of kOps sets; never part of a manifest's
/// intent.
const STAMPED_METADATA: &[&str] = &[
    "creationTimestamp",
    "generation",
    "resourceVersion",
    "uid",
    "managedFields",
];

/// The label kOps adds to every instance group.
const CLUSTER_LABEL: &str = "kops.k8s.io/cluster";

/// How many changed field paths one object lists at most.
const MAX_FIELDS: usize = 50;

/// What would happen to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Create,
    Modify,
    /// In the store, not in the manifest (only instance groups).
    Remove,
}

/// One object that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectChange {
    /// Store key: `config` or `instancegroup/<name>`.
    pub key: String,
    pub kind: String,
    pub name: String,
    pub change: Change,
    /// Dotted paths of the fields that differ (modifications only).
    pub fields: Vec<String>,
}

/// The whole comparison.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecDiff {
    pub objects: Vec<ObjectChange>,
    /// Unified diff of the normalised objects, stored (`a/`) → rendered (`b/`).
    pub text: String,
}

impl SpecDiff {
    /// Objects to create, modify and (instance groups) delete.
    pub fn counts(&self) -> Counts {
        let n = |c: Change| self.objects.iter().filter(|o| o.change == c).count();
        Counts {
            create: n(Change::Create),
            update: n(Change::Modify),
            delete: n(Change::Remove),
        }
    }

    pub fn has_changes(&self) -> bool {
        !self.objects.is_empty()
    }
}

/// Compares the manifest with what the store holds.
pub fn spec_diff(manifest: &ManifestObjects, stored: &StoredObjects) -> Result<SpecDiff> {
    let mut diff = SpecDiff::default();
    let cluster_name = manifest
        .cluster
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    compare(
        &mut diff,
        CONFIG_KEY,
        "Cluster",
        &cluster_name,
        Some(&manifest.cluster),
        stored.config.as_deref(),
    )?;
    for (name, doc) in &manifest.instance_groups {
        compare(
            &mut diff,
            &format!("{INSTANCE_GROUP_DIR}/{name}"),
            "InstanceGroup",
            name,
            Some(doc),
            stored.instance_groups.get(name).map(String::as_str),
        )?;
    }
    for name in stored.removed_instance_groups(manifest) {
        compare(
            &mut diff,
            &format!("{INSTANCE_GROUP_DIR}/{name}"),
            "InstanceGroup",
            &name,
            None,
            stored.instance_groups.get(&name).map(String::as_str),
        )?;
    }
    Ok(diff)
}

fn compare(
    diff: &mut SpecDiff,
    key: &str,
    kind: &str,
    name: &str,
    rendered: Option<&Value>,
    stored_text: Option<&str>,
) -> Result<()> {
    let stored = match stored_text {
        Some(text) => Some(crate::yaml::from_str::<Value>(
            text,
            &format!("stored {key}"),
        )?),
        None => None,
    };
    let (old, new) = match (stored, rendered) {
        (Some(old), Some(new)) => {
            let new = normalize(kind, new.clone(), Side::Rendered);
            let old = normalize(kind, old, Side::Stored(Some(&new)));
            (Some(old), Some(new))
        }
        (old, new) => (
            old.map(|v| normalize(kind, v, Side::Stored(None))),
            new.map(|v| normalize(kind, v.clone(), Side::Rendered)),
        ),
    };
    let change = match (&old, &new) {
        (None, None) => return Ok(()),
        (None, Some(_)) => Change::Create,
        (Some(_), None) => Change::Remove,
        (Some(a), Some(b)) if a == b => return Ok(()),
        (Some(_), Some(_)) => Change::Modify,
    };
    let mut fields = Vec::new();
    if let (Some(a), Some(b)) = (&old, &new) {
        changed_paths(a, b, "", &mut fields);
        if fields.len() > MAX_FIELDS {
            let more = fields.len() - MAX_FIELDS;
            fields.truncate(MAX_FIELDS);
            fields.push(format!("… and {more} more"));
        }
    }
    let old_text = old.as_ref().map(crate::yaml::to_string).transpose()?;
    let new_text = new.as_ref().map(crate::yaml::to_string).transpose()?;
    diff.text
        .push_str(&unified(key, old_text.as_deref(), new_text.as_deref()));
    diff.objects.push(ObjectChange {
        key: key.to_string(),
        kind: kind.to_string(),
        name: name.to_string(),
        change,
        fields,
    });
    Ok(())
}

/// Which side of the comparison an object is.
#[derive(Clone, Copy)]
enum Side<'a> {
    /// The manifest: kept as written.
    Rendered,
    /// The store, with its rendered counterpart if there is one: what kOps
    /// fills in is dropped unless the manifest sets it too.
    Stored(Option<&'a Value>),
}

/// Drops stamped metadata, drops (stored side) the fields kOps fills in,
/// and sorts every map's keys.
fn normalize(kind: &str, value: Value, side: Side<'_>) -> Value {
    let mut value = value;
    if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
        for key in STAMPED_METADATA {
            meta.remove(*key);
        }
    }
    let rendered = match side {
        Side::Rendered => return sorted(value),
        Side::Stored(rendered) => rendered,
    };
    let rendered_has = |pointer: &str| rendered.is_some_and(|r| r.pointer(pointer).is_some());
    match kind {
        "Cluster" if !rendered_has("/spec/configBase") => {
            if let Some(spec) = value.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("configBase");
            }
        }
        "InstanceGroup" if !rendered_has("/metadata/labels/kops.k8s.io~1cluster") => {
            if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
                let now_empty = match meta.get_mut("labels").and_then(Value::as_object_mut) {
                    Some(labels) => {
                        labels.remove(CLUSTER_LABEL);
                        labels.is_empty()
                    }
                    None => false,
                };
                // A manifest without labels equals a store whose only label
                // is the one kOps added.
                if now_empty && !rendered_has("/metadata/labels") {
                    meta.remove("labels");
                }
            }
        }
        _ => {}
    }
    sorted(value)
}

fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            let mut out = Map::new();
            for (k, v) in entries {
                out.insert(k, sorted(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Dotted paths where `a` and `b` differ; maps are descended into, lists
/// and scalars compared whole.
fn changed_paths(a: &Value, b: &Value, at: &str, out: &mut Vec<String>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                match (x.get(key), y.get(key)) {
                    (Some(p), Some(q)) => changed_paths(p, q, &path, out),
                    _ => out.push(path),
                }
            }
        }
        _ => out.push(if at.is_empty() { ".".into() } else { at.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MANIFEST: &str = "\
apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  name: c.example.com
spec:
  kubernetesVersion: 1.34.1
  sshAccess: [0.0.0.0/0]
---
apiVersion: kops.k8s.io/v1alpha2
kind: InstanceGroup
metadata:
  name: nodes
spec:
  role: Node
  maxSize: 2
  minSize: 2
";

    fn stored(config: &str, igs: &[(&str, &str)]) -> StoredObjects {
        StoredObjects {
            config: Some(config.to_string()),
            instance_groups: igs
                .iter()
                .map(|(n, t)| (n.to_string(), t.to_string()))
                .collect(),
        }
    }

    const CONFIG: &str = "\
apiVersion: kops.k8s.io/v1alpha2
kind: Cluster
metadata:
  creationTimestamp: \"2016-12-10T22:42:27Z\"
  name: c.example.com
spec:
  sshAccess:
    - 0.0.0.0/0
  configBase: s3://bucket/c.example.com
  kubernetesVersion: \"1.34.1\"
";

    const NODES: &str = "\
apiVersion: kops.k8s.io/v1alpha2
kind: InstanceGroup
metadata:
  creationTimestamp: \"2016-12-10T22:42:28Z\"
  labels:
    kops.k8s.io/cluster: c.example.com
  name: nodes
spec:
  minSize: 2
  maxSize: 2
  role: Node
";

    #[test]
    fn stamped_fields_key_order_and_quoting_are_not_changes() {
        let m = ManifestObjects::parse(MANIFEST, "c.example.com").unwrap();
        let diff = spec_diff(&m, &stored(CONFIG, &[("nodes", NODES)])).unwrap();
        assert_eq!(diff, SpecDiff::default(), "{}", diff.text);
    }

    #[test]
    fn modified_created_and_removed_objects() {
        let manifest = MANIFEST
            .replace("maxSize: 2", "maxSize: 5")
            .replace("kubernetesVersion: 1.34.1", "kubernetesVersion: 1.34.2")
            + "---\nkind: InstanceGroup\nmetadata: {name: gpu}\nspec: {role: Node}\n";
        let m = ManifestObjects::parse(&manifest, "c.example.com").unwrap();
        let diff = spec_diff(
            &m,
            &stored(
                CONFIG,
                &[("nodes", NODES), ("old", "kind: InstanceGroup\n")],
            ),
        )
        .unwrap();
        let summary: Vec<(String, Change, Vec<String>)> = diff
            .objects
            .iter()
            .map(|o| (o.key.clone(), o.change, o.fields.clone()))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "config".into(),
                    Change::Modify,
                    vec!["spec.kubernetesVersion".to_string()]
                ),
                (
                    "instancegroup/nodes".into(),
                    Change::Modify,
                    vec!["spec.maxSize".to_string()]
                ),
                ("instancegroup/gpu".into(), Change::Create, vec![]),
                ("instancegroup/old".into(), Change::Remove, vec![]),
            ]
        );
        assert_eq!(
            diff.counts(),
            Counts {
                create: 1,
                update: 2,
                delete: 1
            }
        );
        assert!(
            diff.text.contains("-  maxSize: 2\n+  maxSize: 5\n"),
            "{}",
            diff.text
        );
        assert!(
            diff.text
                .contains("--- /dev/null\n+++ b/instancegroup/gpu\n")
        );
        assert!(
            diff.text
                .contains("--- a/instancegroup/old\n+++ /dev/null\n")
        );
        assert!(!diff.text.contains("creationTimestamp"));
    }

    #[test]
    fn a_new_cluster_is_all_creates_and_set_fields_kops_fills_in_count() {
        let m = ManifestObjects::parse(MANIFEST, "c.example.com").unwrap();
        let diff = spec_diff(&m, &StoredObjects::default()).unwrap();
        assert_eq!(diff.counts().create, 2);
        // The manifest sets configBase: then a different stored one is a change.
        let with_base = MANIFEST.replace(
            "spec:\n  kube",
            "spec:\n  configBase: s3://other/c.example.com\n  kube",
        );
        let m = ManifestObjects::parse(&with_base, "c.example.com").unwrap();
        let diff = spec_diff(&m, &stored(CONFIG, &[("nodes", NODES)])).unwrap();
        assert_eq!(diff.objects.len(), 1, "{with_base}\n{diff:?}");
        assert_eq!(diff.objects[0].fields, ["spec.configBase"]);
    }

    #[test]
    fn an_unparseable_stored_object_names_its_key() {
        let m = ManifestObjects::parse(MANIFEST, "c.example.com").unwrap();
        let err = spec_diff(&m, &stored("a: [", &[])).unwrap_err().to_string();
        assert!(err.starts_with("stored config:"), "{err}");
    }
}
