//! kOps API objects (`kind: Cluster`, `kind: InstanceGroup`) as they come
//! in through `-f` files and as they sit in the state store: parsing
//! multi-document YAML, the checks kOps makes before storing an object,
//! store keys (`<cluster>/config`, `<cluster>/instancegroup/<ig>`), and the
//! canonical form kOps writes (keys sorted, the way `sigs.k8s.io/yaml`
//! marshals through JSON).

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use crate::store::Store;

pub const API_GROUP: &str = "kops.k8s.io";
/// The label an InstanceGroup must carry to say which cluster it is for.
pub const CLUSTER_LABEL: &str = "kops.k8s.io/cluster";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Cluster,
    InstanceGroup,
}

/// Parses every document of a manifest; empty documents are skipped, as
/// kOps skips empty sections.
pub fn parse_manifest(text: &str, origin: &str) -> Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text)
        .map_err(|e| anyhow!("error parsing file {origin:?}: {}", short_yaml_error(&e)))?;
    Ok(docs
        .into_iter()
        .filter(|d| !d.is_null() && d.as_object().is_none_or(|m| !m.is_empty()))
        .collect())
}

/// One stored object (a single YAML document).
pub fn parse_stored(data: &[u8], location: &str) -> Result<Value> {
    let text = std::str::from_utf8(data)
        .map_err(|_| anyhow!("error parsing {location}: not UTF-8 text"))?;
    serde_saphyr::from_str::<Value>(text)
        .map_err(|e| anyhow!("error parsing {location}: {}", short_yaml_error(&e)))
}

/// The first line of a YAML error, without the source snippet (which would
/// echo manifest lines back).
fn short_yaml_error(err: &serde_saphyr::Error) -> String {
    let text = err.without_snippet().to_string();
    text.lines().next().unwrap_or_default().to_string()
}

/// The object's kind, checking `apiVersion` the way kOps' decoder does.
pub fn kind_of(obj: &Value, origin: &str) -> Result<Kind> {
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        bail!(
            "error parsing file {origin:?}: Object 'Kind' is missing in {}",
            brief(obj)
        );
    }
    let group = api_version.split('/').next().unwrap_or("");
    if group != API_GROUP {
        bail!(
            "error parsing file {origin:?}: no kind {kind:?} is registered for version {api_version:?}"
        );
    }
    match kind {
        "Cluster" => Ok(Kind::Cluster),
        "InstanceGroup" => Ok(Kind::InstanceGroup),
        other => bail!("Unhandled kind \"{API_GROUP}/{other}\" in {origin}"),
    }
}

fn brief(obj: &Value) -> String {
    let text = obj.to_string();
    if text.chars().count() > 80 {
        format!("'{}…'", text.chars().take(80).collect::<String>())
    } else {
        format!("'{text}'")
    }
}

pub fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// Checks a cluster name before it becomes part of store keys: kOps wants
/// a DNS name, and the stand-in must never let a name escape the store.
pub fn check_cluster_name(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("Cluster Name is required (e.g. --name=mycluster.myzone.com)");
    }
    if !is_dns_name(name) {
        bail!(
            "Invalid value: {name:?}: Cluster Name must be a fully-qualified DNS name (e.g. --name=mycluster.myzone.com)"
        );
    }
    Ok(())
}

/// Checks an instance group name (a DNS-1123 subdomain in kOps).
pub fn check_instance_group_name(name: &str) -> Result<()> {
    if name.is_empty() {
        bail!("metadata.name: Required value: InstanceGroup name is required");
    }
    if !is_dns_name(name) {
        bail!(
            "metadata.name: Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'"
        );
    }
    Ok(())
}

fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

pub fn cluster_key(cluster: &str) -> String {
    format!("{cluster}/config")
}

pub fn instance_group_key(cluster: &str, ig: &str) -> String {
    format!("{cluster}/instancegroup/{ig}")
}

/// The Cluster object stored for `cluster`, if any.
pub fn read_cluster(store: &dyn Store, cluster: &str) -> Result<Option<Value>> {
    let key = cluster_key(cluster);
    match store.read(&key)? {
        None => Ok(None),
        Some(data) => parse_stored(&data, &format!("{}/{key}", store.url())).map(Some),
    }
}

/// The cluster, or kOps' error when it is not in the store.
pub fn require_cluster(store: &dyn Store, cluster: &str) -> Result<Value> {
    read_cluster(store, cluster)?.ok_or_else(|| anyhow!("cluster {cluster:?} not found"))
}

/// Every InstanceGroup stored for `cluster`, sorted by name.
pub fn read_instance_groups(store: &dyn Store, cluster: &str) -> Result<Vec<Value>> {
    let prefix = format!("{cluster}/instancegroup/");
    let mut groups = Vec::new();
    for key in store.list(&prefix)? {
        // Only direct children are instance groups.
        if key[prefix.len()..].contains('/') {
            continue;
        }
        let data = store
            .read(&key)?
            .ok_or_else(|| anyhow!("{}/{key} disappeared while reading", store.url()))?;
        groups.push(parse_stored(&data, &format!("{}/{key}", store.url()))?);
    }
    groups.sort_by(|a, b| name_of(a).cmp(name_of(b)));
    Ok(groups)
}

pub fn read_instance_group(store: &dyn Store, cluster: &str, ig: &str) -> Result<Option<Value>> {
    let key = instance_group_key(cluster, ig);
    match store.read(&key)? {
        None => Ok(None),
        Some(data) => parse_stored(&data, &format!("{}/{key}", store.url())).map(Some),
    }
}

/// Writes an object in kOps' canonical form.
pub fn write_object(store: &dyn Store, key: &str, obj: &Value) -> Result<()> {
    let text = to_yaml(obj)?;
    store.write(key, text.as_bytes())
}

/// Sets `metadata.creationTimestamp` when the object has none: to `keep`
/// (the stored object's) when given, else to now, as kOps' VFS clientset
/// stamps objects it writes.
pub fn stamp_creation(obj: &mut Value, keep: Option<&Value>) {
    let existing = obj
        .pointer("/metadata/creationTimestamp")
        .is_some_and(|v| !v.is_null());
    if existing {
        return;
    }
    let stamp = keep
        .and_then(|k| k.pointer("/metadata/creationTimestamp"))
        .filter(|v| !v.is_null())
        .cloned()
        .unwrap_or_else(|| Value::String(crate::ui::now_rfc3339()));
    if let Some(map) = obj.as_object_mut() {
        let meta = map
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("creationTimestamp".to_string(), stamp);
        }
    }
}

/// The object with every mapping's keys sorted, as kOps writes objects.
pub fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sorted(&map[k]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// YAML text of `value` in canonical form (sorted keys, Go-style block
/// lists, literal blocks for multi-line strings), ending in a newline.
pub fn to_yaml(value: &Value) -> Result<String> {
    yaml_text(&sorted(value))
}

/// YAML text of `value` as it is, without sorting.
pub fn yaml_text(value: &Value) -> Result<String> {
    let mut options = serde_saphyr::SerializerOptions::default();
    // Never fold long one-line strings (ARNs, URLs) into `>-` blocks.
    options.folded_wrap_chars = usize::MAX;
    let mut text =
        serde_saphyr::to_string_with_options(value, options).context("error writing YAML")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// JSON text as Go's `json.MarshalIndent(v, "", "  ")` writes it.
pub fn to_json(value: &Value) -> Result<String> {
    let mut text = serde_json::to_string_pretty(&sorted(value)).context("error writing JSON")?;
    text.push('\n');
    Ok(text)
}

/// A string field of an object's `spec` at a `/`-separated path.
pub fn spec_str<'a>(obj: &'a Value, path: &str) -> Option<&'a str> {
    obj.pointer(&format!("/spec/{path}"))
        .and_then(Value::as_str)
}

pub fn spec_value<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    obj.pointer(&format!("/spec/{path}"))
        .filter(|v| !v.is_null())
}

/// A string list at `spec/<path>`; scalars inside are taken as strings.
pub fn spec_strings(obj: &Value, path: &str) -> Vec<String> {
    spec_value(obj, path)
        .and_then(Value::as_array)
        .map(|items| items.iter().map(scalar_string).collect())
        .unwrap_or_default()
}

/// An integer at `spec/<path>`, also when written as a string.
pub fn spec_int(obj: &Value, path: &str) -> Option<i64> {
    match spec_value(obj, path)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub fn spec_bool(obj: &Value, path: &str) -> Option<bool> {
    match spec_value(obj, path)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => crate::goflags::boolean(s).ok(),
        _ => None,
    }
}

/// A scalar as the string kOps would see (numbers and booleans printed).
pub fn scalar_string(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// A string-to-string map at `spec/<path>` (labels, cloudLabels).
pub fn spec_map(obj: &Value, path: &str) -> Vec<(String, String)> {
    spec_value(obj, path)
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), scalar_string(v)))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_split_into_objects() {
        let text = "apiVersion: kops.k8s.io/v1alpha2\nkind: Cluster\nmetadata:\n  name: a.example.com\n\n---\n\n---\napiVersion: kops.k8s.io/v1alpha2\nkind: InstanceGroup\nmetadata:\n  name: nodes\n";
        let docs = parse_manifest(text, "m.yaml").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(kind_of(&docs[0], "m.yaml").unwrap(), Kind::Cluster);
        assert_eq!(kind_of(&docs[1], "m.yaml").unwrap(), Kind::InstanceGroup);
        assert_eq!(name_of(&docs[1]), "nodes");
    }

    #[test]
    fn foreign_kinds_are_refused() {
        let v: Value = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert!(
            kind_of(&v, "f")
                .unwrap_err()
                .to_string()
                .contains("no kind")
        );
        let v: Value = serde_json::json!({"apiVersion": "kops.k8s.io/v1alpha2", "kind": "Keyset"});
        assert!(
            kind_of(&v, "f")
                .unwrap_err()
                .to_string()
                .contains("Unhandled kind")
        );
    }

    #[test]
    fn names_cannot_escape_the_store() {
        assert!(check_cluster_name("minimal-aws.example.com").is_ok());
        assert!(check_cluster_name("../etc").is_err());
        assert!(check_cluster_name("a/b").is_err());
        assert!(check_instance_group_name("master-us-test-1a").is_ok());
        assert!(check_instance_group_name("Nodes").is_err());
        assert!(check_instance_group_name("").is_err());
    }

    #[test]
    fn stored_form_is_sorted_and_keeps_timestamps() {
        let mut v: Value =
            serde_json::json!({"spec": {"b": 1, "a": [1, 2]}, "metadata": {"name": "x"}});
        stamp_creation(
            &mut v,
            Some(&serde_json::json!({"metadata": {"creationTimestamp": "2016-12-10T22:42:27Z"}})),
        );
        let text = to_yaml(&v).unwrap();
        assert_eq!(
            text,
            "metadata:\n  creationTimestamp: 2016-12-10T22:42:27Z\n  name: x\nspec:\n  a:\n  - 1\n  - 2\n  b: 1\n"
                .replace("2016-12-10T22:42:27Z", "\"2016-12-10T22:42:27Z\"")
        );
    }
}
