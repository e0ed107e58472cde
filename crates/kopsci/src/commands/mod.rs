//! One module per subcommand: its clap arguments and the call into
//! `kopsci_core` that carries it out.

pub mod meta;
pub mod migrate;
pub mod note;
pub mod pipeline;
pub mod render;
pub mod snapshot;
pub mod stages;
