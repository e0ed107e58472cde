//! Reading `kops reconcile cluster --yes`: which of its phases ran, so a
//! report can say how far an apply got and where it stopped. kOps prints
//! each phase as a plain line (cmd/kops/reconcile_cluster.go) between the
//! update and rolling-update outputs.

use serde::{Deserialize, Serialize};

use crate::kops::klog::is_klog_line;

/// A phase of `kops reconcile cluster`, in the order kOps runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ReconcilePhase {
    UpdateControlPlane,
    WaitForApi,
    RollControlPlane,
    UpdateNodes,
    RollNodes,
    Prune,
}

impl ReconcilePhase {
    pub const ALL: [ReconcilePhase; 6] = [
        ReconcilePhase::UpdateControlPlane,
        ReconcilePhase::WaitForApi,
        ReconcilePhase::RollControlPlane,
        ReconcilePhase::UpdateNodes,
        ReconcilePhase::RollNodes,
        ReconcilePhase::Prune,
    ];

    /// The line kOps prints when the phase starts.
    pub fn line(self) -> &'static str {
        match self {
            ReconcilePhase::UpdateControlPlane => "Updating control plane configuration",
            ReconcilePhase::WaitForApi => "Waiting for the kubernetes API to be served",
            ReconcilePhase::RollControlPlane => "Performing rolling-update for control plane",
            ReconcilePhase::UpdateNodes => "Updating node configuration",
            ReconcilePhase::RollNodes => "Performing rolling-update for nodes",
            ReconcilePhase::Prune => "Pruning old resources that are no longer used",
        }
    }
}

impl std::fmt::Display for ReconcilePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.line())
    }
}

/// The phases that started, in order; the last one is where a failed
/// reconcile stopped.
pub fn reconcile_phases(output: &str) -> Vec<ReconcilePhase> {
    output
        .lines()
        .filter(|line| !is_klog_line(line))
        .filter_map(|line| {
            let line = line.trim();
            ReconcilePhase::ALL
                .into_iter()
                .find(|phase| line.starts_with(phase.line()))
        })
        .collect()
}

/// The text of each phase, for the rolling-update tables inside it.
pub fn phase_sections(output: &str) -> Vec<(ReconcilePhase, String)> {
    let mut sections: Vec<(ReconcilePhase, String)> = Vec::new();
    for line in output.split_inclusive('\n') {
        let trimmed = line.trim();
        if let Some(phase) = ReconcilePhase::ALL
            .into_iter()
            .find(|p| trimmed.starts_with(p.line()))
        {
            sections.push((phase, String::new()));
        } else if let Some((_, text)) = sections.last_mut() {
            text.push_str(line);
        }
    }
    sections
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_found_in_order_and_klog_is_ignored() {
        let out = "Updating control plane configuration\n\
                   Will create resources:\n  LaunchTemplate/x\n\
                   I1203 12:00:00.000000 1 reconcile.go:1] Updating node configuration\n\
                   Waiting for the kubernetes API to be served\n\
                   Performing rolling-update for control plane\n\
                   NAME STATUS NEEDUPDATE READY MIN TARGET MAX NODES\n\
                   control-plane-a NeedsUpdate 1 0 1 1 1 1\n";
        assert_eq!(
            reconcile_phases(out),
            [
                ReconcilePhase::UpdateControlPlane,
                ReconcilePhase::WaitForApi,
                ReconcilePhase::RollControlPlane
            ]
        );
        let sections = phase_sections(out);
        assert_eq!(sections.len(), 3);
        assert!(
            sections[2].1.starts_with("NAME STATUS"),
            "{:?}",
            sections[2]
        );
        assert!(reconcile_phases("nothing here\n").is_empty());
    }
}
