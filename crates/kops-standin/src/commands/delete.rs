//! `kops delete cluster` (below) and `kops delete instancegroup NAME --name
//! C [--yes]`: without `--yes`, kOps'
//! confirmation prompt on stdin (default no: exit 1 without deleting;
//! end of input: `Error: EOF`); with it (or a `y`), delete the group's
//! cloud resources at once, as kOps does without waiting for an update,
//! and its object from the store.

use std::io::BufRead;

use anyhow::{Result, anyhow, bail};

use super::Context;
use crate::cli::DeleteClusterArgs;
use crate::cloud::Cloud;
use crate::model::{Role, group_resource_name, role_of};
use crate::objects::{self, check_instance_group_name, instance_group_key, name_of};
use crate::store::Store;
use crate::text::tab_table;
use crate::ui;

pub fn instance_group(ctx: &Context, args: &[String], yes: bool) -> Result<()> {
    let cluster_name = ctx.required_cluster()?;
    let Some(name) = args.first() else {
        bail!("must specify the name of the instance group to delete");
    };
    if args.len() != 1 {
        bail!("can only delete one instance group at a time");
    }
    check_instance_group_name(name)?;
    if !yes && !confirm(name)? {
        std::process::exit(1);
    }

    let store = ctx.store()?;
    objects::require_cluster(store.as_ref(), &cluster_name)?;
    let Some(group) = objects::read_instance_group(store.as_ref(), &cluster_name, name)? else {
        bail!("InstanceGroup {name:?} not found");
    };
    ui::out(&format!("InstanceGroup {name:?} found for deletion\n"));
    let role = role_of(&group)?;
    if role == Role::ControlPlane {
        let others = objects::read_instance_groups(store.as_ref(), &cluster_name)?
            .iter()
            .filter(|g| name_of(g) != name)
            .any(|g| role_of(g).is_ok_and(|r| r == Role::ControlPlane));
        if !others {
            bail!("cannot delete the only control plane instance group");
        }
    }

    if ctx.cloud.is_set() {
        let mut cloud = ctx.cloud.load(&cluster_name)?;
        let resource = group_resource_name(name, role, &cluster_name);
        let mut removed = false;
        for kind in ["AutoscalingGroup", "WarmPool", "LaunchTemplate"] {
            if cloud
                .resources
                .remove(&format!("{kind}/{resource}"))
                .is_some()
            {
                removed = true;
                ui::klog(
                    'I',
                    "delete.go:54",
                    &format!("Deleting {kind} {resource:?}"),
                );
            }
        }
        if cloud.groups.remove(name.as_str()).is_some() || removed {
            ctx.cloud.save(&cluster_name, &cloud)?;
        }
    }
    store.delete(&instance_group_key(&cluster_name, name))?;
    ui::out(&format!("\nDeleted InstanceGroup: {name:?}\n"));
    Ok(())
}

/// kOps' `ui.GetConfirm` with default "no" and two retries.
fn confirm(name: &str) -> Result<bool> {
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    for _ in 0..3 {
        ui::out(&format!(
            "Do you really want to delete instance group {name:?}? This action cannot be undone. (y/N)\n"
        ));
        let Some(line) = lines.next() else {
            bail!("EOF");
        };
        let answer = line?.trim().to_ascii_lowercase();
        match answer.as_str() {
            "y" | "yes" => return Ok(true),
            "n" | "no" | "" => return Ok(false),
            _ => ui::out("Invalid response, please try again:\n"),
        }
    }
    Ok(false)
}

/// `kops delete cluster [CLUSTER] [--yes] [--unregister] [--external
/// --region R]`, as kOps' `RunDeleteCluster`: list the cluster's cloud
/// resources (`TYPE NAME ID` table; shared ones are not the cluster's), and
/// without `--yes` stop at `Must specify --yes to delete cluster`; with
/// it, delete them (`type:id\tok` per resource), then every object of the
/// cluster in the state store — refusing, as kOps does, when the store
/// holds a file kOps does not know — and print `Deleted cluster: "C"`.
/// `--unregister` leaves the cloud alone; `--external` deletes cloud
/// resources only, for a cluster without state. `--count`, `--interval`
/// and `--wait` are accepted (deletion never has to retry here).
pub fn cluster(ctx: &Context, args: &DeleteClusterArgs) -> Result<()> {
    let cluster_name = ctx.cluster_from_args(&args.args)?;
    let yes = args.yes.unwrap_or(false);
    let unregister = args.unregister.unwrap_or(false);
    let external = args.external.unwrap_or(false);

    let store = if external {
        if args.region.as_deref().unwrap_or("").is_empty() {
            bail!("--region is required (when --external)");
        }
        None
    } else {
        let store = ctx.store()?;
        objects::require_cluster(store.as_ref(), &cluster_name)?;
        Some(store)
    };

    let mut would_delete_cloud = false;
    if !unregister {
        let mut cloud = ctx.cloud.load(&cluster_name)?;
        let resources = cloud_resources(&cloud, &cluster_name);
        if resources.is_empty() {
            ui::out("No cloud resources to delete\n");
        } else {
            would_delete_cloud = true;
            let mut rows: Vec<Vec<String>> = resources
                .iter()
                .map(|r| vec![r.kind.to_string(), r.name.clone(), r.id.clone()])
                .collect();
            rows.sort();
            let mut table = vec![vec!["TYPE".to_string(), "NAME".into(), "ID".into()]];
            table.extend(rows);
            ui::out(&tab_table(&table));
            if !yes {
                ui::out("\nMust specify --yes to delete cluster\n");
                return Ok(());
            }
            ui::out("\n");
            ctx.cloud.require_writable()?;
            let mut ordered = resources;
            ordered.sort_by_key(|r| {
                (
                    DELETE_ORDER
                        .iter()
                        .position(|k| *k == r.kind)
                        .unwrap_or(DELETE_ORDER.len()),
                    r.id.clone(),
                )
            });
            for r in &ordered {
                ui::out(&format!("{}:{}\tok\n", r.kind, r.id));
            }
            cloud.resources.clear();
            cloud.groups.clear();
            ctx.cloud.save(&cluster_name, &cloud)?;
        }
    }

    if let Some(store) = &store {
        if !yes {
            ui::out(if would_delete_cloud {
                "\nMust specify --yes to delete cloud resources & unregister cluster\n"
            } else {
                "\nMust specify --yes to unregister the cluster\n"
            });
            return Ok(());
        }
        delete_cluster_state(store.as_ref(), &cluster_name)
            .map_err(|e| anyhow!("error removing cluster from state store: {e:#}"))?;
    }
    ui::out(&format!("\nDeleted cluster: {cluster_name:?}\n"));
    Ok(())
}

/// One cloud resource as kOps' resource listing reports it.
struct Listed {
    kind: &'static str,
    name: String,
    id: String,
}

/// The order kOps' deleter ends up removing resources in (dependents
/// first); it retries in waves, here one pass suffices.
const DELETE_ORDER: &[&str] = &[
    "instance",
    "autoscaling-group",
    "load-balancer",
    "target-group",
    "autoscaling-config",
    "keypair",
    "iam-instance-profile",
    "iam-role",
    "route53-record",
    "nat-gateway",
    "elastic-ip",
    "subnet",
    "route-table",
    "security-group",
    "internet-gateway",
    "vpc",
    "dhcp-options",
];

/// The cluster's resources in the simulated cloud, under the type names of
/// kOps' AWS resource listing (`pkg/resources/aws`). Rules, policies,
/// routes and associations go with their parents and are not listed.
fn cloud_resources(cloud: &Cloud, cluster: &str) -> Vec<Listed> {
    let mut out = Vec::new();
    for (key, resource) in &cloud.resources {
        let Some((task, name)) = key.split_once('/') else {
            continue;
        };
        let kind = match task {
            "VPC" => "vpc",
            "Subnet" => "subnet",
            "SecurityGroup" => "security-group",
            "DHCPOptions" => "dhcp-options",
            "InternetGateway" => "internet-gateway",
            "RouteTable" => "route-table",
            "NatGateway" => "nat-gateway",
            "ElasticIP" => "elastic-ip",
            "LaunchTemplate" => "autoscaling-config",
            "AutoscalingGroup" => "autoscaling-group",
            "IAMRole" => "iam-role",
            "IAMInstanceProfile" => "iam-instance-profile",
            "SSHKey" => "keypair",
            "NetworkLoadBalancer" | "ClassicLoadBalancer" => "load-balancer",
            "TargetGroup" => "target-group",
            "DNSName" => "route53-record",
            _ => continue,
        };
        // kOps lists these by name: they have no other identity.
        let id = match kind {
            "autoscaling-group" | "iam-role" | "iam-instance-profile" => name.to_string(),
            _ => resource.id.clone(),
        };
        out.push(Listed {
            kind,
            name: name.to_string(),
            id,
        });
    }
    for (ig, group) in &cloud.groups {
        let role = Role::from_spec(&group.role).unwrap_or(Role::Node);
        let asg = group_resource_name(ig, role, cluster);
        for instance in &group.instances {
            out.push(Listed {
                kind: "instance",
                name: asg.clone(),
                id: instance.id.clone(),
            });
        }
    }
    out
}

/// kOps' `DeleteAllClusterState`: every object under `<cluster>/`, unless
/// one of them is not a file kOps writes, in which case nothing is deleted.
fn delete_cluster_state(store: &dyn Store, cluster: &str) -> Result<()> {
    let prefix = format!("{cluster}/");
    let keys = store.list(&prefix)?;
    const FILES: &[&str] = &[
        "config",
        "cluster.spec",
        "cluster-completed.spec",
        "kops-version.txt",
    ];
    const DIRS: &[&str] = &[
        "addons/",
        "pki/",
        "secrets/",
        "instancegroup/",
        "manifests/",
        "backups/",
        "igconfig/",
        "clusteraddons/",
    ];
    for key in &keys {
        let rel = key.strip_prefix(&prefix).unwrap_or(key);
        if !FILES.contains(&rel) && !DIRS.iter().any(|d| rel.starts_with(d)) {
            bail!(
                "refusing to delete: unknown file found: {}/{key}",
                store.url()
            );
        }
    }
    for key in &keys {
        store.delete(key)?;
    }
    Ok(())
}
