//! `kops rolling-update cluster [CLUSTER] [--yes]`: the table of instance
//! groups (`NAME STATUS NEEDUPDATE READY MIN TARGET MAX NODES`, no `NODES`
//! with `--cloudonly`) from the simulated cloud, where an instance needs
//! updating when it was launched from an older launch template than its
//! group's current one; then `No rolling-update required.` or `Must specify
//! --yes to rolling-update.`; with `--yes`, replace those instances (all
//! with `--force`), bastions first, then control plane, API servers, nodes.

use anyhow::Result;

use super::Context;
use super::update::select_groups;
use crate::cli::RollingUpdateClusterArgs;
use crate::cloud::Instance;
use crate::model::{Role, group_resource_name, role_of};
use crate::objects::{self, name_of};
use crate::text::tab_table;
use crate::ui;

pub fn run(ctx: &Context, args: &RollingUpdateClusterArgs) -> Result<()> {
    let cluster_name = ctx.cluster_from_args(&args.args)?;
    let yes = args.yes.unwrap_or(false);
    let force = args.force.unwrap_or(false);
    let cloud_only = args.cloudonly.unwrap_or(false);

    let store = ctx.store()?;
    objects::require_cluster(store.as_ref(), &cluster_name)?;
    let groups = objects::read_instance_groups(store.as_ref(), &cluster_name)?;
    let selected = select_groups(&groups, &args.instance_group, &args.instance_group_roles)?;
    let mut cloud = ctx.cloud.load(&cluster_name)?;

    let mut in_scope: Vec<(String, Role)> = Vec::new();
    for g in &groups {
        let name = name_of(g).to_string();
        if !selected.contains(&name) {
            continue;
        }
        if cloud.groups.contains_key(&name) {
            in_scope.push((name, role_of(g)?));
        } else {
            ui::klog(
                'W',
                "instancegroups.go:553",
                &format!("No cloud instances found for instance group {name:?}"),
            );
        }
    }

    let mut header = vec![
        "NAME",
        "STATUS",
        "NEEDUPDATE",
        "READY",
        "MIN",
        "TARGET",
        "MAX",
    ];
    if !cloud_only {
        header.push("NODES");
    }
    let mut rows: Vec<Vec<String>> = Vec::new();
    for (name, _) in &in_scope {
        let Some(g) = cloud.groups.get(name) else {
            continue;
        };
        let need = g.needing_update();
        let mut row = vec![
            name.clone(),
            if need == 0 { "Ready" } else { "NeedsUpdate" }.to_string(),
            need.to_string(),
            (g.instances.len() - need).to_string(),
            g.min.to_string(),
            g.target.to_string(),
            g.max.to_string(),
        ];
        if !cloud_only {
            // Every simulated instance has joined the cluster as a node.
            row.push(g.instances.len().to_string());
        }
        rows.push(row);
    }
    // kOps' tables sort rows by their cells.
    rows.sort();
    let mut table = vec![header.iter().map(|h| h.to_string()).collect()];
    table.extend(rows);
    ui::out(&tab_table(&table));

    let needs_update = in_scope
        .iter()
        .any(|(n, _)| cloud.groups.get(n).is_some_and(|g| g.needing_update() > 0));
    if !needs_update && !force {
        ui::out("\nNo rolling-update required.\n");
        return Ok(());
    }
    if !yes {
        ui::out("\nMust specify --yes to rolling-update.\n");
        return Ok(());
    }

    ctx.cloud.require_writable()?;
    in_scope.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    for (name, role) in &in_scope {
        let Some(mut group) = cloud.groups.remove(name) else {
            continue;
        };
        let asg = group_resource_name(name, *role, &cluster_name);
        let mut rolled = false;
        for i in 0..group.instances.len() {
            if group.instances[i].launch_template == group.launch_template && !force {
                continue;
            }
            let old = group.instances[i].id.clone();
            if cloud_only {
                ui::klog(
                    'I',
                    "instancegroups.go:468",
                    "Not draining cluster nodes as 'cloudonly' flag is set.",
                );
            } else {
                ui::klog(
                    'I',
                    "instancegroups.go:591",
                    &format!("Draining the node: {old:?}."),
                );
            }
            ui::klog(
                'I',
                "instancegroups.go:377",
                &format!(
                    "Stopping instance {old:?}, node {old:?}, in group {asg:?} (this may take a while)."
                ),
            );
            let id = cloud.new_instance_id(&cluster_name, name);
            group.instances[i] = Instance {
                id,
                launch_template: group.launch_template.clone(),
            };
            rolled = true;
        }
        if rolled {
            if cloud_only {
                ui::klog(
                    'I',
                    "instancegroups.go:476",
                    "Not validating cluster as cloudonly flag is set.",
                );
            } else {
                ui::klog('I', "instancegroups.go:534", "Validating the cluster.");
                ui::klog('I', "instancegroups.go:572", "Cluster validated.");
            }
        }
        cloud.groups.insert(name.clone(), group);
    }
    ctx.cloud.save(&cluster_name, &cloud)?;
    ui::klog(
        'I',
        "rollingupdate.go:234",
        &format!("Rolling update completed for cluster {cluster_name:?}!"),
    );
    Ok(())
}
