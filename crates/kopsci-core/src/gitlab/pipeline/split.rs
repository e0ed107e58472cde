//! Split default-branch pipelines (`--split-by-environment`): one child
//! pipeline per environment, started in promotion order, for fleets whose
//! single pipeline would pass GitLab's job or deployment limits.
//!
//! The parent's `kopsci:pipeline` job writes every file; the pipeline it
//! triggers (the *orchestrator*) holds only
//!
//! * `kopsci:children`, which fetches those files from the generating job
//!   (`needs: pipeline:`, the parent pipeline's ID) and publishes them as
//!   its own artifacts, because a trigger job can only include an artifact
//!   of a job in its own pipeline;
//! * per environment a trigger job `deploy:<env>` (one per part when the
//!   environment alone would pass the limits: `deploy:<env>:<n>`, parts
//!   run side by side) that starts the environment's pipeline and mirrors
//!   it (`strategy: depend`), and that `needs:` the trigger jobs of the
//!   nearest affected environments its environment needs (through gates
//!   beyond GitLab's 50 `needs`). An environment's pipeline is therefore
//!   created only once every one before it succeeded, every manual job
//!   played.
//!
//! Each environment's pipeline is the ordinary default-branch pipeline of
//! its clusters: dry runs, then their apply (or update and roll) and
//! delete jobs. Parent →
//! orchestrator → environment is the two levels of child pipelines GitLab
//! allows.

use indexmap::IndexMap;

use super::ci::{
    IncludeArtifact, Job, JobVariables, Need, RelayJob, Strategy, Trigger, TriggerJob,
};
use super::{
    Advice, Builder, Files, GITLAB_MAX_NEEDS, PipelineOptions, Rollout, Target, artifacts, deploy,
    header, predecessor_environments,
};
use crate::errors::Result;
use crate::fleet::Fleet;
use crate::gitlab::affected::Selection;
use crate::process::shell_quote;

/// The orchestrator's job that republishes the environments' files.
pub const RELAY_JOB: &str = "kopsci:children";

/// Used for the parent pipeline's ID when kopsci runs outside GitLab (a
/// preview): the trigger job must then set it.
pub const PARENT_PIPELINE_VARIABLE: &str = "$KOPSCI_PARENT_PIPELINE_ID";

/// Advice when an environment's part still passes a limit: one cluster's
/// jobs do not fit.
const PART_ADVICE: Advice = Advice {
    jobs: RAISE,
    deployments: RAISE,
};
const RAISE: &str = "the limits leave no room for even one cluster's dry run and apply (or update and roll); raise them";

pub(super) fn generate(
    fleet: &Fleet,
    selection: &Selection,
    affected: &[Target],
    order: &[String],
    options: &PipelineOptions,
) -> Result<Files> {
    let mut b = Builder::new();
    b.stage("prepare");
    b.job(RELAY_JOB.to_string(), relay_job(options));
    let mut children = Vec::new();
    let mut triggers_of: IndexMap<&str, Vec<String>> = IndexMap::new();
    let mut placed = std::collections::HashSet::new();
    for (seq, env) in order.iter().enumerate() {
        let clusters: Vec<Target> = affected
            .iter()
            .filter(|t| t.env() == env)
            .copied()
            .collect();
        if clusters.is_empty() {
            continue;
        }
        let per_part = clusters_per_part(options, &clusters);
        let before = predecessor_environments(fleet, env, affected);
        let waits: Vec<String> = triggers_of
            .iter()
            .filter(|(e, _)| before.contains(**e))
            .flat_map(|(_, t)| t.iter().cloned())
            .collect();
        // One `needs` entry is the relay job, for the files.
        let waits = b.fan_in(
            waits,
            GITLAB_MAX_NEEDS - 1,
            &format!("gate:{env}"),
            &format!("gate-{env}"),
        );
        let stage = format!("deploy-{env}");
        b.stage(&stage);
        let parts = split_evenly(&clusters, per_part);
        let mut triggers = Vec::with_capacity(parts.len());
        for (i, part) in parts.iter().enumerate() {
            let part_name = Part::new(env, seq, i, parts.len());
            let file = format!(
                "{}/{}",
                options.children_dir.trim_end_matches('/'),
                part_name.file
            );
            let mut sub = deploy(fleet, part, order, options);
            // A downstream job belongs to the one part holding what it
            // needs: the others leave it out without a word.
            sub.downstream(options)?;
            placed.extend(sub.jobs.keys().cloned());
            super::nothing_to_do(&mut sub);
            let names: Vec<&str> = part.iter().map(Target::name).collect();
            let text = header(selection, options, Some((&part_name.describe, &names)));
            children.push((file.clone(), sub.finish(text, options, PART_ADVICE)?));
            b.job(part_name.job.clone(), trigger_job(&stage, &file, &waits));
            triggers.push(part_name.job);
        }
        triggers_of.insert(env.as_str(), triggers);
    }
    let notes: Vec<String> = options
        .downstream
        .iter()
        .flat_map(|d| d.job_names())
        .filter(|name| !placed.contains(*name))
        .map(|name| {
            format!(
                "downstream job `{name}` left out: no environment pipeline holds every job it needs (one cluster's jobs, or jobs of one environment part)"
            )
        })
        .collect();
    let main = b.finish(
        super::with_notes(header(selection, options, None), &notes),
        options,
        Advice {
            jobs: "pass higher limits, if your GitLab allows them",
            deployments: "pass higher limits, if your GitLab allows them",
        },
    )?;
    Ok(Files { main, children })
}

/// How many of an environment's `clusters` one pipeline may hold within
/// the limits, counting each as the costliest of them (parts stay even; at
/// least one: a pipeline that still passes them is refused with the
/// reason).
fn clusters_per_part(options: &PipelineOptions, clusters: &[Target]) -> usize {
    let jobs_per_cluster = clusters
        .iter()
        .map(|t| t.rollout().jobs())
        .max()
        .unwrap_or(Rollout::UpdateRoll.jobs());
    // Every job but the dry run has an environment; the dry run has one
    // unless turned off.
    let deployments_per_cluster = jobs_per_cluster - 1 + usize::from(options.dryrun_environment);
    let mut most = usize::MAX;
    if options.limits.max_jobs > 0 {
        most = most.min(options.limits.max_jobs / jobs_per_cluster);
    }
    if options.limits.max_deployments > 0 {
        most = most.min(options.limits.max_deployments / deployments_per_cluster.max(1));
    }
    most.max(1)
}

/// `items` in as few parts of at most `most` as it takes, of even sizes,
/// in order.
fn split_evenly<T>(items: &[T], most: usize) -> Vec<&[T]> {
    let parts = items.len().div_ceil(most.max(1)).max(1);
    let mut out = Vec::with_capacity(parts);
    let mut rest = items;
    for i in 0..parts {
        let take = rest.len().div_ceil(parts - i);
        let (part, tail) = rest.split_at(take);
        out.push(part);
        rest = tail;
    }
    out
}

/// The names of one part of an environment's clusters.
struct Part {
    job: String,
    file: String,
    describe: String,
}

impl Part {
    fn new(env: &str, seq: usize, index: usize, parts: usize) -> Part {
        // Environment names are free text; file names must not be.
        let safe: String = env
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        if parts == 1 {
            Part {
                job: format!("deploy:{env}"),
                file: format!("{:02}-{safe}.yml", seq + 1),
                describe: format!("environment `{env}`"),
            }
        } else {
            Part {
                job: format!("deploy:{env}:{}", index + 1),
                file: format!("{:02}-{safe}-{}.yml", seq + 1, index + 1),
                describe: format!("environment `{env}`, part {} of {parts}", index + 1),
            }
        }
    }
}

/// Fetches the environments' files from the job that wrote them in the
/// parent pipeline and publishes them for the trigger jobs. A fresh
/// checkout of one commit, so that no file a runner kept from another
/// pipeline can be published.
fn relay_job(options: &PipelineOptions) -> Job {
    let dir = options.children_dir.trim_end_matches('/');
    Job::Relay(RelayJob {
        stage: "prepare".to_string(),
        needs: vec![Need::Pipeline {
            pipeline: options
                .generator_pipeline
                .clone()
                .unwrap_or_else(|| PARENT_PIPELINE_VARIABLE.to_string()),
            job: options.generator_job.clone(),
        }],
        variables: JobVariables {
            git_depth: Some("1".to_string()),
            ..JobVariables::default()
        },
        script: vec![format!("ls -l {}", shell_quote(dir.as_ref()))],
        artifacts: artifacts(options, None, vec![format!("{dir}/")]),
    })
}

fn trigger_job(stage: &str, file: &str, waits: &[String]) -> Job {
    let mut needs = vec![Need::job(RELAY_JOB, true)];
    needs.extend(waits.iter().map(|w| Need::job(w.clone(), false)));
    Job::Trigger(TriggerJob {
        stage: stage.to_string(),
        needs,
        trigger: Trigger {
            include: vec![IncludeArtifact {
                artifact: file.to_string(),
                job: RELAY_JOB.to_string(),
            }],
            strategy: Some(Strategy::Depend),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_even_and_in_order() {
        let items: Vec<u32> = (0..10).collect();
        let parts = split_evenly(&items, 4);
        assert_eq!(parts, [&items[0..4], &items[4..7], &items[7..10]]);
        assert_eq!(split_evenly(&items, 10), [&items[..]]);
        assert_eq!(split_evenly(&items, 0).len(), 10);
    }

    fn fleet(strategy: &str) -> crate::fleet::Fleet {
        crate::fleet::Fleet::parse(
            &format!(
                "templates: [t]\napply: {strategy}\nenvironments: {{e: {{}}}}\nclusters:\n  - {{name: a.example.com, environment: e}}\n  - {{name: b.example.com, environment: e, apply: reconcile}}\n  - {{name: c.example.com, environment: e, absent: true}}\n"
            ),
            std::path::Path::new("kopsci.yaml"),
            std::path::Path::new("/fleet"),
        )
        .unwrap()
    }

    fn targets(fleet: &crate::fleet::Fleet) -> Vec<Target<'_>> {
        fleet
            .clusters()
            .iter()
            .map(|cluster| Target { cluster })
            .collect()
    }

    #[test]
    fn part_size_follows_the_tightest_limit() {
        let update_roll = fleet("update-roll");
        let mixed = targets(&update_roll);
        let mut options = PipelineOptions::new(crate::gitlab::PipelineKind::DefaultBranch);
        // 500 deployments, 3 per update-roll cluster with dry-run environments.
        assert_eq!(clusters_per_part(&options, &mixed), 166);
        options.dryrun_environment = false;
        assert_eq!(clusters_per_part(&options, &mixed), 250);
        options.limits.max_jobs = 500;
        assert_eq!(clusters_per_part(&options, &mixed), 166);
        options.limits.max_jobs = 0;
        options.limits.max_deployments = 0;
        assert_eq!(clusters_per_part(&options, &mixed), usize::MAX);
        options.limits.max_jobs = 2;
        assert_eq!(clusters_per_part(&options, &mixed), 1);
        // Reconcile and deletions: a dry run and one more job each.
        let reconcile = fleet("reconcile");
        let [a, b, c] = targets(&reconcile)[..] else {
            panic!("three clusters")
        };
        assert_eq!(
            [a, b, c].map(|t| t.rollout()),
            [Rollout::Apply, Rollout::Apply, Rollout::Delete]
        );
        let mut options = PipelineOptions::new(crate::gitlab::PipelineKind::DefaultBranch);
        assert_eq!(clusters_per_part(&options, &[a, b, c]), 250);
        options.limits.max_jobs = 500;
        assert_eq!(clusters_per_part(&options, &[a, b, c]), 250);
        options.dryrun_environment = false;
        options.limits.max_deployments = 100;
        assert_eq!(clusters_per_part(&options, &[a, b, c]), 100);
    }

    #[test]
    fn part_names_are_safe_file_names() {
        let p = Part::new("eu/prod west", 2, 1, 3);
        assert_eq!(p.job, "deploy:eu/prod west:2");
        assert_eq!(p.file, "03-eu_prod_west-2.yml");
        assert_eq!(p.describe, "environment `eu/prod west`, part 2 of 3");
        assert_eq!(Part::new("dev", 0, 0, 1).file, "01-dev.yml");
    }
}
