//! One module per subcommand: its clap arguments and the call into
//! `kopsci_core` that carries it out.

pub mod meta;
pub mod pipeline;
pub mod render;
pub mod snapshot;
pub mod stages;

/// The answer for commands whose capability lands in a later release: a
/// clear message and the usage exit code, never a silent success.
pub fn not_implemented(command: &str, issue: u32) -> anyhow::Result<crate::exit::Exit> {
    Err(kopsci_core::Error::Usage(format!(
        "`kopsci {command}` is not implemented yet (tracked in issue #{issue})"
    ))
    .into())
}
