//! What `kops update cluster` does with the model: compare each resource
//! with its actual state (the simulated cloud, or the store for managed
//! files and keypairs), print the dry-run report in kOps' format
//! (`upup/pkg/fi/dryrun_target.go`), and apply the changes for `--yes`.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};

use crate::cloud::{Cloud, CloudResource, Group, Instance};
use crate::model::{Desired, Field, Home, Resource};
use crate::store::Store;
use crate::text::format_diff;
use crate::ui;

/// A resource that does not exist yet.
pub struct Create {
    pub resource: Resource,
}

/// A resource whose fields differ from the desired ones.
pub struct Modify {
    pub resource: Resource,
    /// Field name and kOps' description of the change.
    pub changes: Vec<(String, String)>,
}

/// Something kOps removes (security group rules no longer wanted).
pub struct Deletion {
    /// Key of the cloud resource.
    pub key: String,
    pub task: String,
    pub item: String,
    /// Deferred deletions happen only with `--prune`.
    pub deferred: bool,
}

#[derive(Default)]
pub struct Plan {
    pub creates: Vec<Create>,
    pub modifies: Vec<Modify>,
    pub deletions: Vec<Deletion>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.creates.is_empty() || !self.modifies.is_empty() || !self.deletions.is_empty()
    }
}

/// kOps' lifecycles for `--lifecycle-overrides`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Sync,
    Ignore,
    WarnIfInsufficientAccess,
    ExistsAndValidates,
    ExistsAndWarnIfChanges,
}

impl Lifecycle {
    pub const ALL: &'static str =
        "Sync, Ignore, WarnIfInsufficientAccess, ExistsAndValidates, ExistsAndWarnIfChanges";

    pub fn parse(s: &str) -> Option<Lifecycle> {
        match s {
            "Sync" => Some(Lifecycle::Sync),
            "Ignore" => Some(Lifecycle::Ignore),
            "WarnIfInsufficientAccess" => Some(Lifecycle::WarnIfInsufficientAccess),
            "ExistsAndValidates" => Some(Lifecycle::ExistsAndValidates),
            "ExistsAndWarnIfChanges" => Some(Lifecycle::ExistsAndWarnIfChanges),
            _ => None,
        }
    }
}

/// The fields a resource actually has, or `None` when it does not exist.
fn actual_fields(
    resource: &Resource,
    cloud: &Cloud,
    store: &dyn Store,
) -> Result<Option<Vec<(String, Field)>>> {
    match &resource.home {
        Home::Cloud => {
            if let Some(found) = cloud.resources.get(&resource.key()) {
                return Ok(Some(found.fields.clone()));
            }
            // Shared resources exist outside kOps; kOps finds them as they are.
            Ok(resource.shared.then(|| resource.fields.clone()))
        }
        Home::StoreFile(key) => Ok(store.read(key)?.map(|data| {
            let mut fields = resource.fields.clone();
            for (name, value) in &mut fields {
                if name == "Contents" {
                    *value = Field::Text(String::from_utf8_lossy(&data).into_owned());
                }
            }
            fields
        })),
        // kOps never rotates an existing keypair during update.
        Home::Keyset(key) => Ok(store.read(key)?.map(|_| resource.fields.clone())),
    }
}

/// How kOps describes one changed field.
fn describe(actual: Option<&Field>, expected: &Field) -> String {
    match (actual, expected) {
        (Some(Field::Text(a)), Field::Text(e)) => format_diff(a, e),
        (None, Field::Text(e)) => format_diff("", e),
        (a, e) => format!(
            " {} -> {}",
            a.map_or_else(|| "<nil>".to_string(), Field::render),
            e.render()
        ),
    }
}

/// Compares the desired resources with what exists.
pub fn compute(
    desired: &Desired,
    cloud: &Cloud,
    store: &dyn Store,
    lifecycles: &BTreeMap<String, Lifecycle>,
) -> Result<Plan> {
    let mut plan = Plan::default();
    for resource in &desired.resources {
        let lifecycle = lifecycles
            .get(resource.kind)
            .copied()
            .unwrap_or(Lifecycle::Sync);
        if lifecycle == Lifecycle::Ignore {
            continue;
        }
        let actual = actual_fields(resource, cloud, store)?;
        let Some(actual) = actual else {
            if matches!(
                lifecycle,
                Lifecycle::ExistsAndValidates | Lifecycle::ExistsAndWarnIfChanges
            ) {
                bail!(
                    "error running tasks: {}: lifecycle set to {lifecycle:?}, but object was not found",
                    resource.key()
                );
            }
            plan.creates.push(Create {
                resource: resource.clone(),
            });
            continue;
        };
        let mut changes = Vec::new();
        for (name, expected) in &resource.fields {
            let found = actual.iter().find(|(n, _)| n == name).map(|(_, f)| f);
            if found != Some(expected) {
                changes.push((name.clone(), describe(found, expected)));
            }
        }
        if changes.is_empty() {
            continue;
        }
        match lifecycle {
            Lifecycle::ExistsAndValidates => bail!(
                "error running tasks: {}: lifecycle set to ExistsAndValidates, but object did not match",
                resource.key()
            ),
            Lifecycle::ExistsAndWarnIfChanges => {
                ui::klog(
                    'W',
                    "executor.go:141",
                    &format!(
                        "{}: lifecycle set to ExistsAndWarnIfChanges and some changes were found; not applying them",
                        resource.key()
                    ),
                );
            }
            _ => plan.modifies.push(Modify {
                resource: resource.clone(),
                changes,
            }),
        }
    }

    // Security group rules in the cloud that no longer are wanted: kOps
    // removes them (its SecurityGroup tasks carry RemoveExtraRules), deferred
    // until `--prune`. Only groups in scope count: a `--phase` or lifecycle
    // that leaves the security groups out leaves their rules alone too.
    let wanted: BTreeSet<String> = desired.resources.iter().map(Resource::key).collect();
    let rules_in_scope = lifecycles
        .get("SecurityGroupRule")
        .is_none_or(|l| *l != Lifecycle::Ignore);
    if rules_in_scope {
        for (key, found) in &cloud.resources {
            let Some(Field::Str(group)) = found.field("SecurityGroup") else {
                continue;
            };
            let group_key = format!("SecurityGroup/{}", group.trim_start_matches("name:"));
            if key.starts_with("SecurityGroupRule/")
                && !wanted.contains(key)
                && wanted.contains(&group_key)
            {
                plan.deletions.push(Deletion {
                    key: key.clone(),
                    task: "SecurityGroupRule".to_string(),
                    item: rule_item(found, cloud),
                    deferred: true,
                });
            }
        }
    }

    plan.creates.sort_by_key(|c| c.resource.key());
    plan.modifies.sort_by_key(|m| m.resource.key());
    plan.deletions
        .sort_by(|a, b| (&a.task, &a.item).cmp(&(&b.task, &b.item)));
    Ok(plan)
}

/// kOps' description of a security group rule it deletes:
/// `sg-…: port=22 protocol=tcp ip=0.0.0.0/0 ipv6=`.
fn rule_item(rule: &CloudResource, cloud: &Cloud) -> String {
    let text = |name: &str| match rule.field(name) {
        Some(Field::Str(s)) => s.clone(),
        _ => String::new(),
    };
    let int = |name: &str| match rule.field(name) {
        Some(Field::Int(i)) => *i,
        _ => 0,
    };
    let group_id = |reference: String| {
        let name = reference.trim_start_matches("name:");
        cloud
            .resources
            .get(&format!("SecurityGroup/{name}"))
            .map(|g| g.id.clone())
            .unwrap_or_else(|| name.to_string())
    };
    let mut s = format!("{}:", group_id(text("SecurityGroup")));
    let (from, to) = (int("FromPort"), int("ToPort"));
    if from != 0 {
        s.push_str(&format!(" port={from}"));
        if to != from {
            s.push_str(&format!("-{to}"));
        }
    }
    let protocol = text("Protocol");
    if !protocol.is_empty() {
        s.push_str(&format!(" protocol={protocol}"));
    }
    let source = text("SourceGroup");
    if !source.is_empty() {
        s.push_str(&format!(" group={}", group_id(source)));
    }
    s.push_str(&format!(" ip={} ipv6={}", text("CIDR"), text("IPv6CIDR")));
    s
}

/// The dry-run report, as kOps prints it.
pub fn render(plan: &Plan, prune: bool) -> String {
    let mut b = String::new();
    if !plan.creates.is_empty() {
        b.push_str("Will create resources:\n");
        for c in &plan.creates {
            b.push_str(&format!("  {}\n", c.resource.key()));
            for (name, value) in &c.resource.fields {
                // Resources (file contents, user data) print as `<resource>`,
                // which kOps leaves out as uninformative.
                if matches!(value, Field::Text(_)) || name == "Name" || name == "Lifecycle" {
                    continue;
                }
                push_field(&mut b, name, &value.render());
            }
            b.push('\n');
        }
    }
    if !plan.modifies.is_empty() {
        b.push_str("Will modify resources:\n");
        for m in &plan.modifies {
            b.push_str(&format!("  {}\n", m.resource.key()));
            for (name, description) in &m.changes {
                push_field(&mut b, name, description);
            }
            b.push('\n');
        }
    }
    let (deferred, immediate): (Vec<&Deletion>, Vec<&Deletion>) =
        plan.deletions.iter().partition(|d| d.deferred && !prune);
    if !deferred.is_empty() {
        b.push_str("Items will be deleted only when the --prune flag is specified:\n");
        for d in &deferred {
            b.push_str(&format!("  {:<20} {}\n", d.task, d.item));
        }
        b.push('\n');
    }
    if !immediate.is_empty() {
        b.push_str("Items will be deleted during update:\n");
        for d in &immediate {
            b.push_str(&format!("  {:<20} {}\n", d.task, d.item));
        }
        b.push('\n');
    }
    b
}

/// One field line; multi-line descriptions go on their own lines below the
/// field name, each under an empty, padded name column.
fn push_field(b: &mut String, name: &str, description: &str) {
    let lines: Vec<&str> = description.split('\n').collect();
    if lines.len() == 1 {
        b.push_str(&format!("  \t{name:<20}\t{description}\n"));
    } else {
        b.push_str(&format!("  \t{name:<20}\n"));
        for line in lines {
            b.push_str(&format!("  \t{:<20}\t{line}\n", ""));
        }
    }
}

/// Hash of a launch template's fields: instances launched from an older
/// hash need a rolling update.
pub fn launch_template_hash(fields: &[(String, Field)]) -> String {
    use sha2::{Digest, Sha256};
    let text = serde_json::to_string(fields).unwrap_or_default();
    crate::complete::hex(&Sha256::digest(text.as_bytes()))[..16].to_string()
}

/// Applies `plan` (`kops update cluster --yes`): writes managed files and
/// keysets to the store, creates and updates cloud resources, performs the
/// deletions (deferred ones only with `prune`), and resizes autoscaling
/// groups, launching new instances from the current launch template.
pub fn apply(
    plan: &Plan,
    desired: &Desired,
    cloud: &mut Cloud,
    store: &dyn Store,
    cluster: &str,
    prune: bool,
    selected_groups: &BTreeSet<String>,
) -> Result<()> {
    let changed = plan
        .creates
        .iter()
        .map(|c| &c.resource)
        .chain(plan.modifies.iter().map(|m| &m.resource));
    for resource in changed {
        match &resource.home {
            Home::Cloud => {
                let id = cloud
                    .resources
                    .get(&resource.key())
                    .map(|r| r.id.clone())
                    .unwrap_or_else(|| Cloud::new_id(resource.kind, cluster, &resource.name));
                cloud.resources.insert(
                    resource.key(),
                    CloudResource {
                        id,
                        fields: resource.fields.clone(),
                    },
                );
            }
            Home::StoreFile(key) => {
                if let Some(Field::Text(contents)) = resource.field("Contents") {
                    store.write(key, contents.as_bytes())?;
                }
            }
            Home::Keyset(key) => store.write(key, placeholder_keyset(&resource.name).as_bytes())?,
        }
    }
    for d in &plan.deletions {
        if !d.deferred || prune {
            cloud.resources.remove(&d.key);
        }
    }
    for spec in &desired.groups {
        if !selected_groups.contains(&spec.instance_group) {
            continue;
        }
        let Some(template) = cloud.resources.get(&spec.launch_template) else {
            continue;
        };
        let template_hash = launch_template_hash(&template.fields);
        let (min, max) = match cloud.resources.get(&spec.autoscaling_group) {
            Some(asg) => (
                int_field(asg, "MinSize", spec.min),
                int_field(asg, "MaxSize", spec.max),
            ),
            None => continue,
        };
        let mut group = cloud
            .groups
            .remove(&spec.instance_group)
            .unwrap_or_else(|| Group {
                role: spec.role.api_name().to_string(),
                min,
                max,
                target: min,
                launch_template: template_hash.clone(),
                instances: Vec::new(),
            });
        group.role = spec.role.api_name().to_string();
        group.min = min;
        group.max = max;
        group.target = group.target.clamp(min, max);
        group.launch_template = template_hash.clone();
        let target = usize::try_from(group.target).unwrap_or(0);
        group.instances.truncate(target);
        while group.instances.len() < target {
            let id = cloud.new_instance_id(cluster, &spec.instance_group);
            group.instances.push(Instance {
                id,
                launch_template: template_hash.clone(),
            });
        }
        cloud.groups.insert(spec.instance_group.clone(), group);
    }
    Ok(())
}

fn int_field(resource: &CloudResource, name: &str, default: i64) -> i64 {
    match resource.field(name) {
        Some(Field::Int(i)) => *i,
        _ => default,
    }
}

/// A keyset in the layout of the fixtures' (fake) ones: the stand-in never
/// makes real key material.
fn placeholder_keyset(name: &str) -> String {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    format!(
        "apiVersion: kops.k8s.io/v1alpha2\nkind: Keyset\nmetadata:\n  name: {name}\nspec:\n  keys:\n  - id: \"0000000000000000001\"\n    privateMaterial: {}\n    publicMaterial: {}\n  primaryID: \"0000000000000000001\"\n  type: Keypair\n",
        b64("KOPS-STANDIN-FAKE-PRIVATE-KEY\n"),
        b64("KOPS-STANDIN-FAKE-CERTIFICATE\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_lines_match_kops_layout() {
        let mut b = String::new();
        push_field(&mut b, "InstanceType", " t2.medium -> t3.large");
        assert_eq!(b, "  \tInstanceType        \t t2.medium -> t3.large\n");
        let mut b = String::new();
        push_field(&mut b, "Contents", "- 1\n+ 2\n");
        assert_eq!(
            b,
            "  \tContents            \n  \t                    \t- 1\n  \t                    \t+ 2\n  \t                    \t\n"
        );
    }

    #[test]
    fn descriptions_use_kops_arrows() {
        assert_eq!(describe(Some(&Field::Int(1)), &Field::Int(2)), " 1 -> 2");
        assert_eq!(describe(None, &Field::Bool(true)), " <nil> -> true");
    }
}
