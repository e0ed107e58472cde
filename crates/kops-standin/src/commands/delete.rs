//! `kops delete instancegroup NAME --name C [--yes]`: without `--yes`, kOps'
//! confirmation prompt on stdin (default no: exit 1 without deleting;
//! end of input: `Error: EOF`); with it (or a `y`), delete the group's
//! cloud resources at once, as kOps does without waiting for an update,
//! and its object from the store.

use std::io::BufRead;

use anyhow::{Result, bail};

use super::Context;
use crate::model::{Role, group_resource_name, role_of};
use crate::objects::{self, check_instance_group_name, instance_group_key, name_of};
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
