//! `kopsci drift`: one GitLab issue per drifted cluster, from the reports
//! of a scheduled drift pipeline's dry runs.

use std::path::PathBuf;

use clap::Args;
use kopsci_core::gitlab::CiEnv;
use kopsci_core::gitlab::drift::{self, ClusterDrift, Drift, DriftRequest, IssueChange};
use kopsci_core::gitlab::issues::Issue;
use kopsci_core::markdown::terminal;

use crate::cli::GlobalArgs;
use crate::exit::Exit;

/// Open, update or close one GitLab issue per cluster from the dry-run
/// reports of a drift pipeline: an issue for each cluster whose live state
/// differs from what the fleet renders, closed once it is in sync again.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci drift --report-dir .kopsci/reports    In a scheduled drift pipeline's last job
  kopsci drift                                 Print what the reports say (no token: no issues)

Reads DIR/CLUSTER/report.json for every cluster the drift pipeline dry-ran.
A cluster with changes pending has drifted: with KOPSCI_GITLAB_TOKEN (a
token with the `api` scope) it gets an issue labelled `kopsci-drift` in
project CI_PROJECT_ID, or its open issue is updated (found by a hidden
marker, never duplicated); a cluster in sync has its open issue closed; a
failed dry run leaves its issue as it is. Without a token it prints the
summary and says issues were not managed.

Exits 0 when the issues were managed (or there was nothing to manage): the
drift signal itself is the dry-run jobs failing with --detailed-exitcode.")]
pub struct DriftArgs {
    /// Where the drift pipeline's dry runs wrote their reports.
    #[arg(long, value_name = "DIR", default_value = ".kopsci/reports")]
    pub report_dir: PathBuf,
}

pub fn run(global: &GlobalArgs, args: DriftArgs) -> anyhow::Result<Exit> {
    let request = DriftRequest {
        fleet: global
            .fleet
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| kopsci_core::fleet::DEFAULT_FLEET_FILE.to_string()),
        report_dir: args.report_dir,
    };
    let run = drift::run(&CiEnv::from_env(), &request)?;
    let count = |f: fn(&Drift) -> bool| run.clusters.iter().filter(|c| f(&c.drift)).count();
    println!(
        "kopsci drift: {} cluster(s): {} drifted, {} in sync, {} unknown (dry run failed)",
        run.clusters.len(),
        count(|d| *d == Drift::Drifted),
        count(|d| *d == Drift::InSync),
        count(|d| matches!(d, Drift::Unknown(_))),
    );
    for cluster in &run.clusters {
        println!("{}", line(cluster));
    }
    if let Some(hint) = &run.unmanaged {
        eprintln!("kopsci drift: {hint}");
    }
    Ok(Exit::Success)
}

/// One line per cluster, control characters escaped.
fn line(cluster: &ClusterDrift) -> String {
    let env = cluster
        .environment
        .as_deref()
        .map(|e| format!(" ({})", terminal(e)))
        .unwrap_or_default();
    let state = match &cluster.drift {
        Drift::Drifted => {
            let mut text = format!("drift: {}", cluster.counts);
            if !cluster.removed_instance_groups.is_empty() {
                text.push_str(&format!(
                    "; instance groups no longer in the fleet: {}",
                    terminal(&cluster.removed_instance_groups.join(", "))
                ));
            }
            text
        }
        Drift::InSync => "in sync".to_string(),
        Drift::Unknown(why) => format!("unknown, the dry run failed: {}", terminal(why)),
    };
    let issue = match cluster.issue.as_ref().and_then(described) {
        Some((verb, issue)) => {
            let url = issue
                .web_url
                .as_deref()
                .map(|u| format!(" {}", terminal(u)))
                .unwrap_or_default();
            format!("; issue #{} {verb}{url}", issue.iid)
        }
        None => String::new(),
    };
    format!("  {}{env}: {state}{issue}", cluster.cluster)
}

fn described(change: &IssueChange) -> Option<(&'static str, &Issue)> {
    match change {
        IssueChange::Opened(i) => Some(("opened", i)),
        IssueChange::Updated(i) => Some(("updated", i)),
        IssueChange::Unchanged(i) => Some(("already up to date", i)),
        IssueChange::Closed(i) => Some(("closed", i)),
        IssueChange::LeftOpen(i) => Some(("left open", i)),
        IssueChange::None => None,
    }
}
