//! GitLab integration: the CI variables kopsci reads ([`ci_env`]), which
//! clusters a change affects ([`affected`], through [`git`]), the child
//! pipeline generated for them ([`pipeline`]), the merge-request note
//! ([`note`]) and drift issues ([`drift`], through [`issues`]), over the
//! REST API client in [`api`]. Collapsible job-log sections belong to the
//! stages (`stage::sections`).
//!
//! The CI/CD component that ties these together lives in
//! `templates/kopsci.yml`; the user guide is `docs/gitlab.md`.

pub mod affected;
pub mod api;
pub mod ci_env;
pub mod drift;
pub mod git;
pub mod issues;
pub mod note;
pub mod pipeline;

pub use affected::{ClusterChoice, RepoPaths, Scope, Selection};
pub use ci_env::{BaseRevision, BaseSource, CiEnv, PipelineKind};
pub use note::ClusterSummary;
pub use pipeline::PipelineOptions;
