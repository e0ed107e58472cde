//! kopsci's library: everything the `kopsci` binary does, as plain functions
//! that return [`Error`]s instead of exiting.

pub mod errors;
pub mod fsutil;
pub mod yaml;

pub use errors::{Error, Result};
