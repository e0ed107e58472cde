//! `kops rolling-update cluster [CLUSTER] [--yes]`: the table of instance
//! groups (`NAME STATUS NEEDUPDATE READY MIN TARGET MAX NODES`, no `NODES`
//! with `--cloudonly`) from the simulated cloud, where an instance needs
//! updating when it was launched from an older launch template than its
//! group's current one; then `No rolling-update required.` or `Must specify
//! --yes to rolling-update.`; with `--yes`, replace those instances (all
//! with `--force`), bastions first, then control plane, API servers, nodes.
//! A group that fails (the `KOPS_STANDIN_ROLL_FAIL` control) is left partly
//! rolled; a re-run skips the groups already updated, as kOps does.

use anyhow::{Result, anyhow};

use super::Context;
use super::update::select_groups;
use crate::cli::RollingUpdateClusterArgs;
use crate::cloud::Instance;
use crate::controls;
use crate::goflags::format_duration;
use crate::model::{Role, group_resource_name, role_of};
use crate::objects::{self, name_of};
use crate::text::tab_table;
use crate::ui;

/// kOps' default `--validation-timeout`.
const DEFAULT_VALIDATION_TIMEOUT: i128 = 15 * 60 * 1_000_000_000;

pub fn run(ctx: &Context, args: &RollingUpdateClusterArgs) -> Result<()> {
    let cluster_name = ctx.cluster_from_args(&args.args)?;
    core(
        ctx,
        &Request {
            cluster_name: &cluster_name,
            yes: args.yes.unwrap_or(false),
            force: args.force.unwrap_or(false),
            cloud_only: args.cloudonly.unwrap_or(false),
            instance_groups: &args.instance_group,
            roles: &args.instance_group_roles,
            validation_timeout: args
                .validation_timeout
                .unwrap_or(DEFAULT_VALIDATION_TIMEOUT),
        },
    )
}

/// One rolling update, as `reconcile cluster` runs it per phase too.
pub struct Request<'a> {
    pub cluster_name: &'a str,
    pub yes: bool,
    pub force: bool,
    pub cloud_only: bool,
    pub instance_groups: &'a [String],
    pub roles: &'a [String],
    pub validation_timeout: i128,
}

impl Request<'_> {
    /// What `reconcile cluster` asks for: kOps' defaults, `--yes`, limited
    /// to `roles` (all when empty).
    pub fn reconcile<'a>(cluster_name: &'a str, roles: &'a [String]) -> Request<'a> {
        Request {
            cluster_name,
            yes: true,
            force: false,
            cloud_only: false,
            instance_groups: &[],
            roles,
            validation_timeout: DEFAULT_VALIDATION_TIMEOUT,
        }
    }
}

pub fn core(ctx: &Context, req: &Request) -> Result<()> {
    let cluster_name = req.cluster_name.to_string();
    let (yes, force, cloud_only) = (req.yes, req.force, req.cloud_only);

    let store = ctx.store()?;
    objects::require_cluster(store.as_ref(), &cluster_name)?;
    let groups = objects::read_instance_groups(store.as_ref(), &cluster_name)?;
    let selected = select_groups(&groups, req.instance_groups, req.roles)?;
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

    // kOps before 1.20 had no TARGET column.
    let target_column = ctx.played.has_target_column();
    let mut header = vec!["NAME", "STATUS", "NEEDUPDATE", "READY", "MIN"];
    if target_column {
        header.push("TARGET");
    }
    header.push("MAX");
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
        ];
        if target_column {
            row.push(g.target.to_string());
        }
        row.push(g.max.to_string());
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
    let roll_failures = controls::RollFailures::from_env()?;
    // Bastions first, then control plane, API servers, nodes (kOps' order).
    in_scope.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
    let mut first_error: Option<anyhow::Error> = None;
    for (name, role) in &in_scope {
        let Some(mut group) = cloud.groups.remove(name) else {
            continue;
        };
        let asg = group_resource_name(name, *role, &cluster_name);
        let stale: Vec<usize> = (0..group.instances.len())
            .filter(|&i| force || group.instances[i].launch_template != group.launch_template)
            .collect();
        // The test control fails this group after its first replacement,
        // leaving it partly rolled, as a failed validation does in kOps.
        let fails = !stale.is_empty() && roll_failures.fails_in(name, &mut cloud.controls);
        let mut rolled = false;
        for (n, &i) in stale.iter().enumerate() {
            if fails && n == 1 {
                break;
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
        cloud.groups.insert(name.clone(), group);
        if fails {
            let timeout = format_duration(req.validation_timeout);
            ui::klog(
                'E',
                "instancegroups.go:541",
                &format!("Cluster did not validate within {timeout}"),
            );
            let err = format!(
                "error validating cluster after removing a node: cluster did not validate within a duration of {:?}",
                timeout
            );
            match role {
                Role::ControlPlane => {
                    ctx.cloud.save(&cluster_name, &cloud)?;
                    return Err(anyhow!(
                        "control plane not healthy after update, stopping rolling-update: {err:?}"
                    ));
                }
                Role::ApiServer => {
                    ctx.cloud.save(&cluster_name, &cloud)?;
                    return Err(anyhow!(
                        "api server not healthy after update, stopping rolling-update: {err:?}"
                    ));
                }
                // kOps rolls the remaining node groups and reports the
                // first failure at the end.
                Role::Bastion | Role::Node => {
                    first_error.get_or_insert_with(|| anyhow!(err));
                }
            }
            continue;
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
    }
    ctx.cloud.save(&cluster_name, &cloud)?;
    if let Some(err) = first_error {
        return Err(err);
    }
    ui::klog(
        'I',
        "rollingupdate.go:234",
        &format!("Rolling update completed for cluster {cluster_name:?}!"),
    );
    Ok(())
}
