//! kopsci's integration tests: the real binary, real files, real servers.

mod harness;

mod cli;
mod fleet;
mod reference_fleet;
mod render;
mod snapshot;
mod support;
