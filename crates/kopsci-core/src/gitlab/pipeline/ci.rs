//! The GitLab CI YAML `kopsci pipeline` writes, as types: every key it can
//! emit is a field here, so a misspelt key does not compile, and a value
//! GitLab would refuse (`when: manaul`) cannot be built. Each kind of job
//! is its own struct, with its keys in the order they are written; shared
//! parts are flattened in. GitLab's schema (check-jsonschema's
//! `vendor.gitlab-ci`, in the tests) guards the rest.

use indexmap::IndexMap;
use serde::Serialize;

/// A whole pipeline file.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub stages: Vec<String>,
    #[serde(skip_serializing_if = "GlobalVariables::is_empty")]
    pub variables: GlobalVariables,
    #[serde(skip_serializing_if = "Defaults::is_empty")]
    pub default: Defaults,
    #[serde(flatten)]
    pub jobs: IndexMap<String, Job>,
}

/// The pipeline-wide `variables:`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GlobalVariables {
    #[serde(rename = "KOPSCI_FLEET", skip_serializing_if = "Option::is_none")]
    pub fleet: Option<String>,
    #[serde(rename = "KOPS_VERSION", skip_serializing_if = "Option::is_none")]
    pub kops_version: Option<String>,
    #[serde(
        rename = "KOPSCI_KOPS_DOWNLOAD_URL",
        skip_serializing_if = "Option::is_none"
    )]
    pub kops_download_url: Option<String>,
}

impl GlobalVariables {
    pub fn is_empty(&self) -> bool {
        self.fleet.is_none() && self.kops_version.is_none() && self.kops_download_url.is_none()
    }
}

/// `default:`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Defaults {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Defaults {
    pub fn is_empty(&self) -> bool {
        self.image.is_none()
    }
}

/// One job, of any kind.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Job {
    DryRun(DryRunJob),
    Deploy(DeployJob),
    Report(ReportJob),
    Gate(GateJob),
    Message(MessageJob),
    Relay(RelayJob),
    Trigger(TriggerJob),
    /// A job of the fleet repository's own (`--downstream-jobs`), as
    /// written there, with its `stage:` set.
    Custom(serde_json::Map<String, serde_json::Value>),
}

impl Job {
    /// Its `needs:` (empty when it has none).
    pub fn needs(&self) -> &[Need] {
        match self {
            Job::Deploy(j) => &j.needs,
            Job::Gate(j) => &j.needs,
            Job::Relay(j) => &j.needs,
            Job::Trigger(j) => &j.needs,
            // Its `needs` were checked when its file was read.
            Job::DryRun(_) | Job::Report(_) | Job::Message(_) | Job::Custom(_) => &[],
        }
    }

    /// Whether GitLab counts it as a deployment (any job with an
    /// `environment`, `action: prepare` included).
    pub fn is_deployment(&self) -> bool {
        match self {
            Job::DryRun(j) => j.environment.is_some(),
            Job::Deploy(_) => true,
            Job::Custom(j) => j.contains_key("environment"),
            _ => false,
        }
    }
}

/// A dry run of one cluster.
#[derive(Debug, Clone, Serialize)]
pub struct DryRunJob {
    pub stage: String,
    pub script: Vec<String>,
    pub resource_group: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<Environment>,
    pub interruptible: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_failure: Option<AllowFailure>,
    #[serde(flatten)]
    pub setup: ClusterSetup,
    pub artifacts: Artifacts,
}

/// A job that changes a cluster: apply, update, roll, delete. Manual
/// unless the fleet automates it (`when` unset: it runs once its `needs`
/// succeeded).
#[derive(Debug, Clone, Serialize)]
pub struct DeployJob {
    pub stage: String,
    pub needs: Vec<Need>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    pub allow_failure: bool,
    pub interruptible: bool,
    /// GitLab notation (`3h 30m`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    pub script: Vec<String>,
    pub resource_group: String,
    pub environment: Environment,
    #[serde(flatten)]
    pub setup: ClusterSetup,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Artifacts>,
}

/// What every job that reaches AWS carries besides its command.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ClusterSetup {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_tokens: Option<IdTokens>,
    #[serde(skip_serializing_if = "JobVariables::is_empty")]
    pub variables: JobVariables,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub before_script: Vec<String>,
}

/// A job that reads the dry runs' reports in a later stage: the
/// merge-request note, the drift report.
#[derive(Debug, Clone, Serialize)]
pub struct ReportJob {
    pub stage: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    pub allow_failure: bool,
    pub interruptible: bool,
    #[serde(skip_serializing_if = "JobVariables::is_empty")]
    pub variables: JobVariables,
    pub script: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifacts: Option<Artifacts>,
}

/// A no-op job that waits for up to [`GITLAB_MAX_NEEDS`](super::GITLAB_MAX_NEEDS)
/// jobs, so that others can wait for many through few `needs`.
#[derive(Debug, Clone, Serialize)]
pub struct GateJob {
    pub stage: String,
    pub needs: Vec<Need>,
    pub variables: JobVariables,
    pub script: Vec<String>,
}

/// A job that only says something (`kopsci:nothing-to-do`).
#[derive(Debug, Clone, Serialize)]
pub struct MessageJob {
    pub stage: String,
    pub script: Vec<String>,
    pub interruptible: bool,
    #[serde(skip_serializing_if = "JobVariables::is_empty")]
    pub variables: JobVariables,
}

/// A job that fetches files another pipeline's job made and publishes
/// them as its own artifacts, so that trigger jobs here can include them.
#[derive(Debug, Clone, Serialize)]
pub struct RelayJob {
    pub stage: String,
    pub needs: Vec<Need>,
    pub variables: JobVariables,
    pub script: Vec<String>,
    pub artifacts: Artifacts,
}

/// A job that starts a child pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct TriggerJob {
    pub stage: String,
    pub needs: Vec<Need>,
    pub trigger: Trigger,
}

#[derive(Debug, Clone, Serialize)]
pub struct Trigger {
    pub include: Vec<IncludeArtifact>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<Strategy>,
}

/// `trigger: include: - artifact: FILE, job: JOB`.
#[derive(Debug, Clone, Serialize)]
pub struct IncludeArtifact {
    pub artifact: String,
    pub job: String,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    /// The trigger job mirrors the child pipeline's status.
    Depend,
}

/// One `needs:` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Need {
    /// A job of this pipeline.
    Job { job: String, artifacts: bool },
    /// A job of another pipeline of the same parent-child hierarchy (its
    /// artifacts are downloaded).
    Pipeline { pipeline: String, job: String },
}

impl Need {
    pub fn job(job: impl Into<String>, artifacts: bool) -> Need {
        Need::Job {
            job: job.into(),
            artifacts,
        }
    }

    /// The job this entry names.
    pub fn name(&self) -> &str {
        match self {
            Need::Job { job, .. } | Need::Pipeline { job, .. } => job,
        }
    }
}

/// `environment:`.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    pub action: EnvironmentAction,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvironmentAction {
    /// Nothing is deployed (dry runs).
    Prepare,
    /// The job changes what runs in the environment.
    Start,
    /// The job removes what runs in the environment (a deletion).
    Stop,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum When {
    Manual,
    Always,
}

/// `allow_failure:`.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum AllowFailure {
    /// Only these exit codes are a warning; any other fails the job.
    ExitCodes { exit_codes: Vec<i32> },
}

/// One `rules:` entry.
#[derive(Debug, Clone, Serialize)]
pub struct Rule {
    #[serde(rename = "if")]
    pub condition: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
}

/// `id_tokens:` (only the one kopsci uses).
#[derive(Debug, Clone, Serialize)]
pub struct IdTokens {
    #[serde(rename = "KOPSCI_ID_TOKEN")]
    pub kopsci: IdToken,
}

#[derive(Debug, Clone, Serialize)]
pub struct IdToken {
    pub aud: String,
}

/// A job's `variables:` (only those kopsci sets).
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobVariables {
    #[serde(rename = "GIT_DEPTH", skip_serializing_if = "Option::is_none")]
    pub git_depth: Option<String>,
    #[serde(rename = "GIT_STRATEGY", skip_serializing_if = "Option::is_none")]
    pub git_strategy: Option<String>,
    #[serde(rename = "AWS_ROLE_ARN", skip_serializing_if = "Option::is_none")]
    pub aws_role_arn: Option<String>,
    #[serde(
        rename = "AWS_WEB_IDENTITY_TOKEN_FILE",
        skip_serializing_if = "Option::is_none"
    )]
    pub aws_web_identity_token_file: Option<String>,
    #[serde(
        rename = "AWS_ROLE_SESSION_NAME",
        skip_serializing_if = "Option::is_none"
    )]
    pub aws_role_session_name: Option<String>,
}

impl JobVariables {
    pub fn is_empty(&self) -> bool {
        self.git_depth.is_none()
            && self.git_strategy.is_none()
            && self.aws_role_arn.is_none()
            && self.aws_web_identity_token_file.is_none()
            && self.aws_role_session_name.is_none()
    }

    /// `GIT_STRATEGY: none`: the job needs no copy of the repository.
    pub fn no_checkout() -> JobVariables {
        JobVariables {
            git_strategy: Some("none".to_string()),
            ..JobVariables::default()
        }
    }
}

/// `artifacts:`.
#[derive(Debug, Clone, Serialize)]
pub struct Artifacts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<When>,
    pub expire_in: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access: Option<AccessLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub public: Option<bool>,
    pub paths: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reports: Option<Reports>,
}

/// `artifacts:access:` values (GitLab 16.11+).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLevel {
    All,
    Developer,
    Maintainer,
    None,
}

#[derive(Debug, Clone, Serialize)]
pub struct Reports {
    pub terraform: String,
}
