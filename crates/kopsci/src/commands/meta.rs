//! `kopsci completions` and `kopsci man`: shell completions and manual pages
//! generated from the clap definitions, so they never drift from the CLI.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::cli::Cli;
use crate::exit::Exit;

/// Print a shell completion script.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci completions bash > /etc/bash_completion.d/kopsci
  kopsci completions zsh > \"${fpath[1]}/_kopsci\"
  kopsci completions fish > ~/.config/fish/completions/kopsci.fish")]
pub struct CompletionsArgs {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: Shell,
}

/// Print the manual page, or write one per subcommand.
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  kopsci man | man -l -
  kopsci man --out-dir /usr/local/share/man/man1")]
pub struct ManArgs {
    /// Write `kopsci.1` and `kopsci-<command>.1` pages into this directory
    /// instead of printing `kopsci.1`.
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,
}

pub fn completions(args: CompletionsArgs) -> anyhow::Result<Exit> {
    let mut cmd = Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "kopsci", &mut std::io::stdout());
    Ok(Exit::Success)
}

pub fn man(args: ManArgs) -> anyhow::Result<Exit> {
    let cmd = Cli::command();
    match args.out_dir {
        None => {
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
        }
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("cannot write manual pages to {}", dir.display()))?;
        }
    }
    Ok(Exit::Success)
}
