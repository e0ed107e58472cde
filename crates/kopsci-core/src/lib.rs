//! kopsci's library: everything the `kopsci` binary does, as plain functions
//! that return [`Error`]s instead of exiting.

pub mod aws;
pub mod errors;
pub mod fleet;
pub mod fsutil;
pub mod gitlab;
pub mod kops;
pub mod markdown;
pub mod migrate;
pub mod names;
pub mod pool;
pub mod process;
pub mod render;
mod sdk_error;
pub mod secret;
pub mod stage;
pub mod state;
pub mod text;
pub mod toolbox;
pub mod values;
pub mod yaml;

pub use errors::{Error, Result};

/// Where the stages write their reports unless told otherwise, relative to
/// the working directory (the project directory in GitLab CI): the CLI's
/// `--report-dir` default and the generated jobs' artifacts path.
pub const DEFAULT_REPORT_DIR: &str = ".kopsci/reports";
