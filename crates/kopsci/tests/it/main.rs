//! kopsci's integration tests: the real binary, real files, real servers.

mod harness;

mod cli;
mod render;
mod fleet;
