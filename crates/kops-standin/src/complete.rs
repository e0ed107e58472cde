//! What `kops update cluster` derives from the stored spec and writes into
//! the state store as managed files: the completed cluster spec
//! (`cluster-completed.spec`), each instance group's nodeup configuration
//! (`igconfig/<role>/<ig>/nodeupconfig.yaml`), the etcd cluster specs
//! (`backups/etcd/<name>/control/etcd-cluster-spec`), and the instance user
//! data that points nodeup at its configuration. The stand-in's completion
//! fills far fewer defaults than kOps does; it only has to be deterministic
//! and to change exactly when something a node would see changes.

use base64::Engine;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::model::Role;
use crate::objects::{name_of, spec_str, spec_value, to_yaml};

/// etcd version kOps picks when the spec names none.
fn default_etcd_version(cluster: &Value) -> &'static str {
    let minor = spec_str(cluster, "kubernetesVersion")
        .and_then(|v| {
            v.trim_start_matches('v')
                .split('.')
                .nth(1)?
                .parse::<u32>()
                .ok()
        })
        .unwrap_or(34);
    if minor >= 34 { "3.6.12" } else { "3.5.21" }
}

/// `spec.configBase`, else `<state store>/<cluster>` as kOps' clientset
/// derives it.
pub fn config_base(cluster: &Value, store_url: &str) -> String {
    spec_str(cluster, "configBase")
        .map(str::to_string)
        .unwrap_or_else(|| format!("{store_url}/{}", name_of(cluster)))
}

/// The completed Cluster object: the stored one with the defaults kOps
/// would fill in, in canonical form.
pub fn completed_cluster(cluster: &Value, store_url: &str) -> Value {
    let base = config_base(cluster, store_url);
    let mut spec = cluster
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let defaults: [(&str, Value); 8] = [
        ("configBase", json!(base)),
        ("keyStore", json!(format!("{base}/pki"))),
        ("secretStore", json!(format!("{base}/secrets"))),
        ("clusterDNSDomain", json!("cluster.local")),
        ("nonMasqueradeCIDR", json!("100.64.0.0/10")),
        ("serviceClusterIPRange", json!("100.64.0.0/13")),
        ("podCIDR", json!("100.96.0.0/11")),
        ("authorization", json!({"rbac": {}})),
    ];
    for (key, value) in defaults {
        spec.entry(key).or_insert(value);
    }
    if !spec.contains_key("api") {
        spec.insert("api".into(), json!({"dns": {}}));
    }
    let etcd_version = default_etcd_version(cluster);
    if let Some(Value::Array(etcd)) = spec.get_mut("etcdClusters") {
        for member in etcd.iter_mut().filter_map(Value::as_object_mut) {
            member
                .entry("version")
                .or_insert_with(|| json!(etcd_version));
        }
    }
    let mut metadata = Map::new();
    if let Some(stamp) = cluster.pointer("/metadata/creationTimestamp") {
        metadata.insert("creationTimestamp".into(), stamp.clone());
    }
    metadata.insert("name".into(), json!(name_of(cluster)));
    json!({
        "apiVersion": "kops.k8s.io/v1alpha2",
        "kind": "Cluster",
        "metadata": Value::Object(metadata),
        "spec": Value::Object(spec),
    })
}

/// `backups/etcd/<name>/control/etcd-cluster-spec` for one etcd cluster.
pub fn etcd_cluster_spec(completed: &Value, etcd: &Value) -> String {
    let members = etcd
        .get("etcdMembers")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    let version = etcd
        .get("version")
        .and_then(Value::as_str)
        .unwrap_or_else(|| default_etcd_version(completed));
    // Go's json.MarshalIndent layout, newline-terminated as in the fixtures.
    format!("{{\n  \"memberCount\": {members},\n  \"etcdVersion\": \"{version}\"\n}}\n")
}

/// The nodeup configuration of one instance group: what a node of that
/// group is told to run.
pub fn nodeup_config(completed: &Value, ig: &Value, role: Role) -> String {
    let cluster_spec = |path: &str| spec_value(completed, path).cloned();
    let ig_spec = |path: &str| spec_value(ig, path).cloned();

    let kubelet_source = match role {
        Role::ControlPlane => cluster_spec("controlPlaneKubelet")
            .or_else(|| cluster_spec("masterKubelet"))
            .or_else(|| cluster_spec("kubelet")),
        _ => cluster_spec("kubelet"),
    };
    let mut kubelet = kubelet_source
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    if let Some(Value::Object(over)) = ig_spec("kubelet") {
        for (k, v) in over {
            kubelet.insert(k, v);
        }
    }
    let mut labels = Map::new();
    labels.insert(role.node_role_label().into(), json!(""));
    if let Some(Value::Object(extra)) = ig_spec("nodeLabels") {
        for (k, v) in extra {
            labels.insert(k, v);
        }
    }
    kubelet.insert("nodeLabels".into(), Value::Object(labels));
    if let Some(taints) = ig_spec("taints") {
        kubelet.insert("taints".into(), taints);
    }

    let concat = |a: Option<Value>, b: Option<Value>| -> Value {
        let mut items = Vec::new();
        for list in [a, b].into_iter().flatten() {
            if let Value::Array(list) = list {
                items.extend(list);
            }
        }
        Value::Array(items)
    };

    let mut config = Map::new();
    config.insert("CAs".into(), json!({}));
    config.insert("ClusterName".into(), json!(name_of(completed)));
    config.insert(
        "ContainerdConfig".into(),
        cluster_spec("containerd").unwrap_or_else(|| json!({})),
    );
    config.insert(
        "FileAssets".into(),
        concat(cluster_spec("fileAssets"), ig_spec("fileAssets")),
    );
    config.insert(
        "Hooks".into(),
        concat(cluster_spec("hooks"), ig_spec("hooks")),
    );
    config.insert("InstanceGroupName".into(), json!(name_of(ig)));
    config.insert("InstanceGroupRole".into(), json!(role.api_name()));
    if let Some(proxy) = cluster_spec("kubeProxy") {
        config.insert("KubeProxy".into(), proxy);
    }
    config.insert("KubeletConfig".into(), Value::Object(kubelet));
    // nodeup gets the bare version (`1.34.0`, not `v1.34.0`).
    config.insert(
        "KubernetesVersion".into(),
        match cluster_spec("kubernetesVersion") {
            Some(Value::String(v)) => json!(v.trim_start_matches('v')),
            other => other.unwrap_or(Value::Null),
        },
    );
    config.insert(
        "Networking".into(),
        cluster_spec("networking").unwrap_or_else(|| json!({})),
    );
    if let Some(packages) = ig_spec("packages") {
        config.insert("Packages".into(), packages);
    }
    let mut sysctls = concat(
        cluster_spec("sysctlParameters"),
        ig_spec("sysctlParameters"),
    );
    if sysctls.as_array().is_some_and(Vec::is_empty) {
        sysctls = Value::Null;
    }
    if !sysctls.is_null() {
        config.insert("SysctlParameters".into(), sysctls);
    }
    config.insert(
        "UpdatePolicy".into(),
        cluster_spec("updatePolicy").unwrap_or_else(|| json!("automatic")),
    );
    if role == Role::ControlPlane {
        config.insert(
            "APIServerConfig".into(),
            json!({"KubeAPIServer": cluster_spec("kubeAPIServer").unwrap_or_else(|| json!({}))}),
        );
        let etcd_names: Vec<Value> = spec_value(completed, "etcdClusters")
            .and_then(Value::as_array)
            .map(|list| list.iter().filter_map(|e| e.get("name").cloned()).collect())
            .unwrap_or_default();
        config.insert("EtcdClusterNames".into(), Value::Array(etcd_names));
    }
    to_yaml(&Value::Object(config)).unwrap_or_default()
}

/// The user data of a launch template: a bootstrap script that downloads
/// nodeup for this kOps version and hands it the hash of the group's nodeup
/// configuration, so any configuration change changes the launch template.
pub fn user_data(
    completed: &Value,
    ig: &Value,
    role: Role,
    nodeup_config: &str,
    version: &str,
    region: &str,
) -> String {
    let config_hash =
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(nodeup_config.as_bytes()));
    let nodeup = |arch: &str| {
        (
            format!("https://artifacts.k8s.io/binaries/kops/{version}/linux/{arch}/nodeup"),
            hex(&Sha256::digest(
                format!("nodeup-{version}-{arch}").as_bytes(),
            )),
        )
    };
    let (url_amd64, hash_amd64) = nodeup("amd64");
    let (url_arm64, hash_arm64) = nodeup("arm64");
    let config_base = spec_str(completed, "configBase").unwrap_or_default();
    format!(
        "#!/bin/bash\n\
         set -o errexit\n\
         set -o nounset\n\
         set -o pipefail\n\
         \n\
         NODEUP_URL_AMD64={url_amd64}\n\
         NODEUP_HASH_AMD64={hash_amd64}\n\
         NODEUP_URL_ARM64={url_arm64}\n\
         NODEUP_HASH_ARM64={hash_arm64}\n\
         \n\
         export AWS_REGION={region}\n\
         \n\
         cat > conf/kube_env.yaml << '__EOF_KUBE_ENV'\n\
         CloudProvider: aws\n\
         ClusterName: {cluster}\n\
         ConfigBase: {config_base}\n\
         InstanceGroupName: {ig_name}\n\
         InstanceGroupRole: {role_name}\n\
         NodeupConfigHash: {config_hash}\n\
         \n\
         __EOF_KUBE_ENV\n\
         \n\
         download-release\n\
         echo \"== nodeup node config done ==\"\n",
        cluster = name_of(completed),
        ig_name = name_of(ig),
        role_name = role.api_name(),
    )
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Value {
        json!({
            "apiVersion": "kops.k8s.io/v1alpha2", "kind": "Cluster",
            "metadata": {"name": "c.example.com", "creationTimestamp": "2016-12-10T22:42:27Z"},
            "spec": {"kubernetesVersion": "v1.34.0", "etcdClusters": [{"name": "main", "etcdMembers": [{"name": "a"}]}]}
        })
    }

    #[test]
    fn completion_fills_defaults_without_overriding() {
        let done = completed_cluster(&cluster(), "file:///tmp/s");
        assert_eq!(
            done.pointer("/spec/configBase").and_then(Value::as_str),
            Some("file:///tmp/s/c.example.com")
        );
        assert_eq!(
            done.pointer("/spec/etcdClusters/0/version")
                .and_then(Value::as_str),
            Some("3.6.12")
        );
        assert_eq!(
            etcd_cluster_spec(&done, &done["spec"]["etcdClusters"][0]),
            "{\n  \"memberCount\": 1,\n  \"etcdVersion\": \"3.6.12\"\n}\n"
        );
    }

    #[test]
    fn user_data_follows_the_nodeup_config() {
        let done = completed_cluster(&cluster(), "file:///tmp/s");
        let ig = json!({"metadata": {"name": "nodes"}, "spec": {"role": "Node"}});
        let a = nodeup_config(&done, &ig, Role::Node);
        let ig2 = json!({"metadata": {"name": "nodes"}, "spec": {"role": "Node", "nodeLabels": {"x": "y"}}});
        let b = nodeup_config(&done, &ig2, Role::Node);
        assert_ne!(a, b);
        let ua = user_data(&done, &ig, Role::Node, &a, "1.34.1", "us-test-1");
        let ub = user_data(&done, &ig, Role::Node, &b, "1.34.1", "us-test-1");
        assert_ne!(ua, ub);
        assert!(ua.contains("InstanceGroupName: nodes\n"));
    }
}
