//! `kops reconcile cluster [CLUSTER] [--yes]` (kOps 1.31+), as kOps'
//! `RunReconcileCluster` does it: without `--yes` exactly the dry run of
//! `kops update cluster`; with `--yes` the phases, each announced by its
//! plain line on stdout — update the control-plane and API-server groups
//! (no prune), wait for the API (control plane validated, pods ignored),
//! roll the control plane, update everything (no prune), roll everything
//! left, update with prune — so the control plane runs the new version
//! before any node is launched from the new configuration. The first
//! failing phase ends the command with its error.

use std::collections::BTreeMap;

use anyhow::{Result, anyhow};

use super::Context;
use super::{rolling_update, update, validate};
use crate::cli::ReconcileClusterArgs;
use crate::ui;

pub fn run(ctx: &Context, args: &ReconcileClusterArgs) -> Result<()> {
    let cluster_name = ctx.cluster_from_args(&args.args)?;
    let no_overrides = BTreeMap::new();
    let update = |roles: &[String], yes: bool, prune: bool| {
        update::core(
            ctx,
            &update::Request {
                cluster_name: &cluster_name,
                yes,
                prune,
                instance_groups: &[],
                roles,
                phase: None,
                lifecycles: &no_overrides,
                allow_kops_downgrade: args.allow_kops_downgrade.unwrap_or(false),
            },
        )
    };

    if !args.yes.unwrap_or(false) {
        // A reconcile without --yes is the same as a dry run.
        return update(&[], false, false);
    }

    let control_plane = ["apiserver".to_string(), "control-plane".to_string()];

    ui::out("Updating control plane configuration\n");
    update(&control_plane, true, false)?;

    ui::out("Waiting for the kubernetes API to be served\n");
    validate::core(
        ctx,
        &cluster_name,
        &validate::Options::api_wait(
            args.use_kubeconfig.unwrap_or(false),
            args.api_server.clone(),
        ),
    )
    .map_err(|e| anyhow!("waiting for kubernetes API to be served: {e:#}"))?;

    ui::out("Performing rolling-update for control plane\n");
    rolling_update::core(
        ctx,
        &rolling_update::Request::reconcile(&cluster_name, &control_plane),
    )?;

    ui::out("Updating node configuration\n");
    update(&[], true, false)?;

    ui::out("Performing rolling-update for nodes\n");
    rolling_update::core(ctx, &rolling_update::Request::reconcile(&cluster_name, &[]))?;

    ui::out("Pruning old resources that are no longer used\n");
    update(&[], true, true)
}
