//! `kops update cluster [CLUSTER] [--yes]`: without `--yes`, the dry-run
//! report of what would be created, modified and deleted, ending with `Must
//! specify --yes to apply changes` or `No changes need to be applied`
//! (exit 0 either way); with `--yes`, apply it: managed files and keysets
//! into the store, resources into the simulated cloud. `--instance-group`,
//! `--instance-group-roles`, `--phase`, `--lifecycle-overrides` and
//! `--prune` narrow or widen what is compared and applied as in kOps.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Result, bail};
use serde_json::Value;

use super::Context;
use crate::cli::UpdateClusterArgs;
use crate::model::{self, Inputs, Phase, Role, role_of};
use crate::objects::{self, name_of};
use crate::plan::{self, Lifecycle};
use crate::store::Store;
use crate::ui;

pub fn run(ctx: &Context, args: &UpdateClusterArgs) -> Result<()> {
    let cluster_name = ctx.cluster_from_args(&args.args)?;
    if args.target.as_deref() == Some("terraform") {
        bail!(
            "the kops stand-in models only --target=direct: it never writes outside the state store \
             (see crates/kops-standin/README.md)"
        );
    }
    let lifecycles = lifecycle_overrides(&args.lifecycle_overrides)?;
    core(
        ctx,
        &Request {
            cluster_name: &cluster_name,
            yes: args.yes.unwrap_or(false),
            prune: args.prune.unwrap_or(false),
            instance_groups: &args.instance_group,
            roles: &args.instance_group_roles,
            phase: args.phase.as_deref().and_then(Phase::parse),
            lifecycles: &lifecycles,
            allow_kops_downgrade: args.allow_kops_downgrade.unwrap_or(false),
        },
    )
}

/// One `kops update cluster` as kOps' `RunCoreUpdateCluster` sees it, so
/// that `reconcile cluster` can run it once per phase.
pub struct Request<'a> {
    pub cluster_name: &'a str,
    pub yes: bool,
    pub prune: bool,
    pub instance_groups: &'a [String],
    pub roles: &'a [String],
    pub phase: Option<Phase>,
    pub lifecycles: &'a BTreeMap<String, Lifecycle>,
    pub allow_kops_downgrade: bool,
}

/// The dry run or the apply of one update.
pub fn core(ctx: &Context, req: &Request) -> Result<()> {
    let cluster_name = req.cluster_name.to_string();
    let yes = req.yes;
    let prune = req.prune;
    let lifecycles = req.lifecycles;
    let phase = req.phase;

    let store = ctx.store()?;
    let cluster = objects::require_cluster(store.as_ref(), &cluster_name)?;
    let groups = objects::read_instance_groups(store.as_ref(), &cluster_name)?;
    check_downgrade(
        store.as_ref(),
        &cluster_name,
        &ctx.version,
        req.allow_kops_downgrade,
    )?;

    let ssh_key_ids = ssh_key_ids(store.as_ref(), &cluster_name)?;
    let mut desired = model::build(&Inputs {
        cluster: &cluster,
        instance_groups: &groups,
        store_url: store.url(),
        ssh_key_ids: &ssh_key_ids,
        version: &ctx.version,
    })?;
    let selected = select_groups(&groups, req.instance_groups, req.roles)?;
    desired.resources.retain(|r| {
        phase.is_none_or(|p| p == r.phase)
            && r.instance_group
                .as_ref()
                .is_none_or(|(ig, _)| selected.contains(ig))
    });

    let mut cloud = ctx.cloud.load(&cluster_name)?;
    let plan = plan::compute(&desired, &cloud, store.as_ref(), lifecycles)?;

    if !yes {
        let mut text = plan::render(&plan, prune);
        text.push_str(if plan.has_changes() {
            "Must specify --yes to apply changes\n"
        } else {
            "No changes need to be applied\n"
        });
        ui::out(&text);
        return Ok(());
    }

    ctx.cloud.require_writable()?;
    let first_run = cloud.groups.is_empty() && cloud.resources.is_empty();
    ui::klog(
        'I',
        "executor.go:113",
        &format!(
            "Tasks: {} to create, {} to modify, {} to delete",
            plan.creates.len(),
            plan.modifies.len(),
            plan.deletions
                .iter()
                .filter(|d| !d.deferred || prune)
                .count()
        ),
    );
    plan::apply(
        &plan,
        &desired,
        &mut cloud,
        store.as_ref(),
        &cluster_name,
        prune,
        &selected,
    )?;
    ctx.cloud.save(&cluster_name, &cloud)?;

    if first_run {
        ui::out(&format!(
            "\nCluster is starting.  It should be ready in a few minutes.\n\n\
             Suggestions:\n \
             * validate cluster: kops validate cluster --wait 10m\n \
             * list nodes: kubectl get nodes --show-labels\n \
             * ssh to a control-plane node: ssh -i ~/.ssh/id_rsa ubuntu@api.{cluster_name}\n \
             * the ubuntu user is specific to Ubuntu. If not using Ubuntu please use the appropriate user based on your OS.\n \
             * read about installing addons at: https://kops.sigs.k8s.io/addons.\n\n"
        ));
    } else {
        ui::out(
            "\nCluster changes have been applied to the cloud.\n\n\n\
             Changes may require instances to restart: kops rolling-update cluster\n\n",
        );
    }
    Ok(())
}

/// `--lifecycle-overrides TaskName=Lifecycle,…`.
fn lifecycle_overrides(values: &[String]) -> Result<BTreeMap<String, Lifecycle>> {
    let mut map = BTreeMap::new();
    for value in values {
        let Some((task, lifecycle)) = value.split_once('=') else {
            bail!(
                "incorrect syntax for lifecycle-overrides, correct syntax is TaskName=lifecycleName, override provided: {value:?}"
            );
        };
        let Some(parsed) = Lifecycle::parse(lifecycle) else {
            bail!(
                "unknown lifecycle {lifecycle:?}, available lifecycle: {}",
                Lifecycle::ALL
            );
        };
        map.insert(task.to_string(), parsed);
    }
    Ok(map)
}

/// kOps refuses to update a cluster last updated by a newer kOps.
fn check_downgrade(store: &dyn Store, cluster: &str, version: &str, allow: bool) -> Result<()> {
    if allow {
        return Ok(());
    }
    let Some(data) = store.read(&format!("{cluster}/kops-version.txt"))? else {
        return Ok(());
    };
    let last = String::from_utf8_lossy(&data).trim().to_string();
    let parse = |v: &str| semver::Version::parse(v.trim_start_matches('v')).ok();
    let Some(last_version) = parse(&last) else {
        bail!("error parsing last kops version updated: {last:?}");
    };
    let Some(client) = parse(version) else {
        return Ok(());
    };
    if last_version > client {
        let stars = "*".repeat(80);
        ui::out(&format!(
            "\n{stars}\n\nThe cluster was last updated by kops version {last}\n\
             To permit updating by the older version {version}, run with the --allow-kops-downgrade flag\n\n{stars}\n\n"
        ));
        bail!("kops version older than last used to update the cluster");
    }
    Ok(())
}

/// Names of the admin SSH public keys in the store.
fn ssh_key_ids(store: &dyn Store, cluster: &str) -> Result<Vec<String>> {
    let prefix = format!("{cluster}/pki/ssh/public/admin/");
    Ok(store
        .list(&prefix)?
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix))
        .filter(|k| !k.contains('/'))
        .map(str::to_string)
        .collect())
}

/// The instance groups `--instance-group` / `--instance-group-roles` pick
/// (all when neither is given).
pub fn select_groups(
    groups: &[Value],
    names: &[String],
    roles: &[String],
) -> Result<BTreeSet<String>> {
    let mut with_roles: Vec<(String, Role)> = Vec::new();
    for g in groups {
        with_roles.push((name_of(g).to_string(), role_of(g)?));
    }
    for name in names {
        if !with_roles.iter().any(|(n, _)| n == name) {
            bail!("InstanceGroup {name:?} not found");
        }
    }
    let mut wanted_roles = Vec::new();
    for role in roles {
        match Role::from_flag(role) {
            Some(r) => wanted_roles.push(r),
            None => bail!("unknown instance group role {role:?}"),
        }
    }
    Ok(with_roles
        .into_iter()
        .filter(|(n, r)| {
            (names.is_empty() || names.contains(n))
                && (roles.is_empty() || wanted_roles.contains(&Some(*r)))
        })
        .map(|(n, _)| n)
        .collect())
}
