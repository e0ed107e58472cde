//! Downstream jobs (`--downstream-jobs FILE`): jobs the fleet repository
//! defines (deploying workloads, say) that must run after a cluster's
//! apply or roll job. GitLab's `needs:` only reaches jobs of the same
//! pipeline, and the cluster jobs live in the generated child pipeline, so
//! kopsci copies these jobs into it.
//!
//! The file is a mapping of job names to GitLab jobs, as in a
//! `.gitlab-ci.yml`. Each job (hidden `.templates` aside, copied as they
//! are) must `needs:` at least one job and must not set `stage:`: kopsci
//! puts it in a last stage, `downstream`. A job is added to a default-branch
//! pipeline (or to the split environment pipeline) holding every job it
//! `needs:`; otherwise — its cluster not affected by the change, say — it
//! is left out, and the pipeline's header says why. Merge-request and drift
//! pipelines never get them. Everything else in a job is the user's: kopsci
//! checks the shape, GitLab the rest.

use std::path::Path;

use indexmap::IndexMap;
use serde_json::{Map, Value};

use super::GITLAB_MAX_NEEDS;
use super::ci::Job;
use crate::errors::{Error, Result};

/// The stage downstream jobs run in, after every stage kopsci makes.
pub const DOWNSTREAM_STAGE: &str = "downstream";

/// Top-level keys of a `.gitlab-ci.yml` that are not jobs.
const GLOBAL_KEYWORDS: &[&str] = &[
    "default",
    "include",
    "stages",
    "variables",
    "workflow",
    "image",
    "services",
    "cache",
    "before_script",
    "after_script",
    "spec",
];

/// The jobs of a downstream-jobs file, checked.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DownstreamJobs {
    /// The file, as given, for messages.
    pub file: String,
    jobs: IndexMap<String, Map<String, Value>>,
}

impl DownstreamJobs {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<DownstreamJobs> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        DownstreamJobs::parse(&text, &path.display().to_string())
    }

    /// Checks the text of a downstream-jobs file named `file`.
    pub fn parse(text: &str, file: &str) -> Result<DownstreamJobs> {
        let doc: IndexMap<String, Value> = crate::yaml::from_str(text, file)?;
        let invalid =
            |job: &str, problem: String| Error::Usage(format!("{file}: job `{job}`: {problem}"));
        let mut jobs = IndexMap::new();
        for (name, job) in doc {
            if GLOBAL_KEYWORDS.contains(&name.as_str()) {
                return Err(Error::Usage(format!(
                    "{file}: `{name}` is not a job: a downstream-jobs file holds jobs only (the child pipeline's stages, variables and defaults are kopsci's)"
                )));
            }
            let Value::Object(job) = job else {
                return Err(invalid(&name, "expected a mapping of job keywords".into()));
            };
            if !name.starts_with('.') {
                if job.contains_key("stage") {
                    return Err(invalid(
                        &name,
                        format!(
                            "leave out `stage:`: kopsci puts downstream jobs in its last stage, `{DOWNSTREAM_STAGE}`"
                        ),
                    ));
                }
                let needs = needed_jobs(&job).map_err(|p| invalid(&name, p))?;
                if needs.is_empty() {
                    return Err(invalid(
                        &name,
                        "`needs:` must name the cluster jobs it follows (such as `apply:CLUSTER` or `roll:CLUSTER`)".into(),
                    ));
                }
                let count = job["needs"].as_array().map_or(0, Vec::len);
                if count > GITLAB_MAX_NEEDS {
                    return Err(invalid(
                        &name,
                        format!("{count} `needs`, more than the {GITLAB_MAX_NEEDS} GitLab allows"),
                    ));
                }
            }
            jobs.insert(name, job);
        }
        Ok(DownstreamJobs {
            file: file.to_string(),
            jobs,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// The names of the jobs that run (hidden templates left out).
    pub fn job_names(&self) -> impl Iterator<Item = &str> {
        self.jobs
            .keys()
            .map(String::as_str)
            .filter(|n| !n.starts_with('.'))
    }

    /// Adds to `jobs` every downstream job whose `needs:` are all among
    /// them, with `stage: downstream`; returns one line per job left out,
    /// saying why (in the order of the file). Hidden jobs come along when
    /// any job does.
    pub(super) fn add_to(
        &self,
        jobs: &mut IndexMap<String, Job>,
        stages: &mut Vec<String>,
    ) -> Result<Vec<String>> {
        let mut left_out = Vec::new();
        let mut added = IndexMap::new();
        for (name, job) in self.jobs.iter().filter(|(n, _)| !n.starts_with('.')) {
            if jobs.contains_key(name) {
                return Err(Error::Usage(format!(
                    "{}: job `{name}` has the name of a job kopsci generates; rename it",
                    self.file
                )));
            }
            // Checked when the file was loaded.
            let needs = needed_jobs(job).unwrap_or_default();
            let missing: Vec<&str> = needs
                .iter()
                .filter(|n| !jobs.contains_key(n.as_str()))
                .map(String::as_str)
                .collect();
            if missing.is_empty() {
                let mut with_stage = Map::new();
                with_stage.insert("stage".into(), Value::String(DOWNSTREAM_STAGE.into()));
                with_stage.extend(job.clone());
                added.insert(name.clone(), Job::Custom(with_stage));
            } else {
                left_out.push(format!(
                    "downstream job `{name}` left out: it needs {}, not in this pipeline",
                    missing
                        .iter()
                        .map(|m| format!("`{m}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if !added.is_empty() {
            for (name, job) in self.jobs.iter().filter(|(n, _)| n.starts_with('.')) {
                jobs.insert(name.clone(), Job::Custom(job.clone()));
            }
            if !stages.iter().any(|s| s == DOWNSTREAM_STAGE) {
                stages.push(DOWNSTREAM_STAGE.to_string());
            }
            jobs.extend(added);
        }
        Ok(left_out)
    }
}

/// The jobs of this pipeline a job's `needs:` names: plain names and `{job:
/// NAME}` entries; entries naming another pipeline or project are not
/// this pipeline's to check.
fn needed_jobs(job: &Map<String, Value>) -> std::result::Result<Vec<String>, String> {
    let Some(needs) = job.get("needs") else {
        return Ok(Vec::new());
    };
    let Value::Array(needs) = needs else {
        return Err("`needs:` must be a list".into());
    };
    let mut names = Vec::new();
    for need in needs {
        match need {
            Value::String(name) => names.push(name.clone()),
            Value::Object(entry)
                if entry.contains_key("pipeline") || entry.contains_key("project") => {}
            Value::Object(entry) => match entry.get("job") {
                Some(Value::String(name)) => names.push(name.clone()),
                _ => return Err("a `needs:` entry without `job:`".into()),
            },
            _ => return Err("`needs:` entries are job names or `{job: NAME}`".into()),
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
.kube:
  variables: {KUBECONFIG: $CI_PROJECT_DIR/.kube/config}
workloads:prod-a:
  extends: .kube
  needs: [\"apply:prod-a.example.com\"]
  script:
    - kopsci kubeconfig prod-a.example.com --out \"$CI_PROJECT_DIR/.kube/config\"
workloads:dev-a:
  needs:
    - job: roll:dev-a.example.com
      artifacts: false
  script: [helm list]
";

    fn generated(names: &[&str]) -> IndexMap<String, Job> {
        names
            .iter()
            .map(|n| (n.to_string(), Job::Custom(Map::new())))
            .collect()
    }

    #[test]
    fn jobs_join_the_pipeline_holding_what_they_need() {
        let downstream = DownstreamJobs::parse(FILE, "downstream.yml").unwrap();
        let mut jobs = generated(&["dryrun:prod-a.example.com", "apply:prod-a.example.com"]);
        let mut stages = vec!["dryrun".to_string(), "apply-prod".to_string()];
        let left = downstream.add_to(&mut jobs, &mut stages).unwrap();
        assert_eq!(
            left,
            [
                "downstream job `workloads:dev-a` left out: it needs `roll:dev-a.example.com`, not in this pipeline"
            ]
        );
        assert_eq!(stages, ["dryrun", "apply-prod", "downstream"]);
        let names: Vec<&str> = jobs.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            [
                "dryrun:prod-a.example.com",
                "apply:prod-a.example.com",
                ".kube",
                "workloads:prod-a"
            ]
        );
        let Job::Custom(job) = &jobs["workloads:prod-a"] else {
            panic!("a custom job")
        };
        assert_eq!(job.keys().next().map(String::as_str), Some("stage"));
        assert_eq!(job["stage"], DOWNSTREAM_STAGE);
        assert_eq!(job["extends"], ".kube");
        // Nothing it needs: nothing added, not even the templates.
        let mut jobs = generated(&["dryrun:x.example.com"]);
        let mut stages = vec!["dryrun".to_string()];
        assert_eq!(downstream.add_to(&mut jobs, &mut stages).unwrap().len(), 2);
        assert_eq!(jobs.len(), 1);
        assert_eq!(stages, ["dryrun"]);
        // A name kopsci generates.
        let mut jobs = generated(&["workloads:prod-a", "apply:prod-a.example.com"]);
        let err = downstream.add_to(&mut jobs, &mut stages).unwrap_err();
        assert!(
            err.to_string()
                .contains("has the name of a job kopsci generates"),
            "{err}"
        );
    }

    #[test]
    fn the_file_holds_jobs_that_need_cluster_jobs_and_leave_the_stage_to_kopsci() {
        for (text, expected) in [
            ("stages: [a]\n", "`stages` is not a job"),
            ("j: [1]\n", "job `j`: expected a mapping"),
            (
                "j: {stage: deploy, needs: [a], script: [x]}\n",
                "leave out `stage:`",
            ),
            ("j: {script: [x]}\n", "`needs:` must name the cluster jobs"),
            (
                "j: {needs: [{pipeline: $P, job: x}], script: [x]}\n",
                "`needs:` must name the cluster jobs",
            ),
            ("j: {needs: a, script: [x]}\n", "`needs:` must be a list"),
            (
                "j: {needs: [{artifacts: true}], script: [x]}\n",
                "without `job:`",
            ),
            ("j: {needs: [1], script: [x]}\n", "entries are job names"),
        ] {
            let err = DownstreamJobs::parse(text, "d.yml")
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.starts_with("d.yml"), "{err}");
        }
        let many: Vec<String> = (0..51).map(|i| format!("a{i}")).collect();
        let err = DownstreamJobs::parse(&format!("j: {{needs: [{}]}}\n", many.join(", ")), "d.yml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("51 `needs`, more than the 50"), "{err}");
        assert!(DownstreamJobs::parse("{}\n", "d.yml").unwrap().is_empty());
    }
}
