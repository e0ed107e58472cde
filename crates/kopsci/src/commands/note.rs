//! `kopsci note`: the merge-request note summarising the dry runs.

use clap::Args;
use kopsci_core::gitlab::CiEnv;
use kopsci_core::gitlab::note::{
    self, DEFAULT_NOTE_BUDGET, GITLAB_NOTE_MAX_CHARS, NoteOutcome, NoteRequest, NoteRun,
};

use crate::cli::GlobalArgs;
use crate::commands::ReportDirArgs;
use crate::commands::stages::parse_cluster;
use crate::exit::Exit;

/// Post (or update in place) one merge-request note summarising every
/// cluster's dry run: deletions first, counts, failures, which clusters
/// apply automatically after merge, details.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci note --report-dir .kopsci/reports     In a merge-request pipeline's last job
  kopsci note dev-a.k8s.example.com prod-a.k8s.example.com
                                               Only these clusters (missing reports show as failed)
  kopsci note --print                          Show the note instead of posting it
  kopsci note --max-chars 20000                A shorter note
  kopsci note --left-the-fleet old.k8s.example.com
                                               Also list a cluster removed from the fleet file

Posts with KOPSCI_GITLAB_TOKEN (a token with the `api` scope) to
CI_API_V4_URL, project CI_PROJECT_ID, merge request CI_MERGE_REQUEST_IID.
Without a token, or outside a merge-request pipeline, it says so in one line
and exits 0. The note is always written to DIR/merge-request-note.md.

Deletions come first, in a section of their own: clusters marked
`absent: true`, removed instance groups (pruned or not) and every resource
kOps says it deletes. The fleet file (--fleet, KOPSCI_FLEET, or kopsci.yaml)
says which clusters the default branch applies without a click
(`auto_apply`) and whether removed instance groups are pruned; an
unreadable fleet file is a warning in the note, not an error.

Redirects are never followed (the token only goes to CI_API_V4_URL's
origin). Each request is retried on 429/5xx at most five times and given up
after 20 s; the whole note after 60 s.")]
pub struct NoteArgs {
    /// Clusters the pipeline dry-ran, by name (default: every report in
    /// DIR); one without a report shows as failed.
    #[arg(value_name = "CLUSTER")]
    pub clusters: Vec<String>,

    #[command(flatten)]
    pub reports: ReportDirArgs,

    /// Print the note to stdout instead of posting it.
    #[arg(long)]
    pub print: bool,

    /// Longest note, in characters: details that do not fit are replaced by
    /// links to the job's artifacts (GitLab's own limit is 1,000,000).
    #[arg(
        long,
        value_name = "N",
        default_value_t = DEFAULT_NOTE_BUDGET as u64,
        value_parser = clap::value_parser!(u64).range(1_000..=GITLAB_NOTE_MAX_CHARS as u64)
    )]
    pub max_chars: u64,

    /// A cluster that was in the fleet file at the merge request's base and
    /// is gone from it: the note lists it as left the fleet, its cloud
    /// resources remaining (repeatable; the generated pipeline passes them).
    #[arg(long = "left-the-fleet", value_name = "CLUSTER", value_parser = parse_cluster)]
    pub left_the_fleet: Vec<String>,
}

pub fn run(global: &GlobalArgs, args: NoteArgs) -> anyhow::Result<Exit> {
    let request = NoteRequest {
        fleet: global
            .fleet
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| kopsci_core::fleet::DEFAULT_FLEET_FILE.to_string()),
        report_dir: args.reports.report_dir,
        clusters: args.clusters,
        max_chars: usize::try_from(args.max_chars).unwrap_or(DEFAULT_NOTE_BUDGET),
        dry_run: args.print,
        left_the_fleet: args.left_the_fleet,
    };
    match note::publish(&CiEnv::from_env(), &request)? {
        NoteRun::Built { body } => print!("{body}"),
        NoteRun::Skipped { hint } => eprintln!("kopsci note: {}", crate::logging::sanitize(&hint)),
        NoteRun::Posted {
            outcome,
            merge_request,
        } => {
            let what = match outcome {
                NoteOutcome::Created(id) => format!("created note {id}"),
                NoteOutcome::Updated(id) => format!("updated note {id}"),
                NoteOutcome::Unchanged(id) => format!("note {id} is already up to date"),
            };
            eprintln!("kopsci note: {what} on merge request {merge_request}");
        }
    }
    Ok(Exit::Success)
}
