//! kopsci's library: everything the `kopsci` binary does, as plain functions
//! that return [`Error`]s instead of exiting.

pub mod errors;
pub mod fleet;
pub mod fsutil;
pub mod gitlab;
pub mod kops;
pub mod migrate;
pub mod render;
pub mod stage;
pub mod state;
pub mod toolbox;
pub mod values;
pub mod yaml;

pub use errors::{Error, Result};
