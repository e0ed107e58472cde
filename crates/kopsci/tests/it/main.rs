//! kopsci's integration tests: the real binary, real files, real servers.

mod harness;

mod apply;
mod cli;
mod drift;
mod fleet;
mod gitlab_ci_local;
mod image;
mod migrate;
mod note;
mod pipeline;
mod reference_fleet;
mod render;
mod snapshot;
mod stages;
mod support;
