//! The `kopsci` binary: parses the command line, sets up logging, dispatches
//! to the library and turns outcomes into documented exit codes.

mod cli;
mod commands;
mod exit;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, ColorChoice, Command};
use crate::exit::Exit;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = use_color(cli.global.color);
    init_logging(cli.global.verbose, cli.global.quiet, color);

    let result = match cli.command {
        Command::Render(args) => commands::render::run(&cli.global, args, color),
        Command::Snapshot(args) => commands::snapshot::run(&cli.global, args),
        Command::Dryrun(args) => commands::stages::dryrun(&cli.global, args),
        Command::Update(args) => commands::stages::update(&cli.global, args),
        Command::Roll(args) => commands::stages::roll(&cli.global, args),
        Command::Pipeline(args) => commands::pipeline::run(&cli.global, args),
        Command::Migrate(args) => commands::migrate::run(&cli.global, args),
        Command::Note(args) => commands::note::run(&cli.global, args),
        Command::Completions(args) => commands::meta::completions(args),
        Command::Man(args) => commands::meta::man(args),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(err) => {
            let exit = Exit::for_error(&err);
            eprintln!("error: {err:#}");
            exit.into()
        }
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything
/// non-empty (<https://no-color.org>), whatever `--color` says.
fn use_color(choice: ColorChoice) -> bool {
    if std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty()) {
        return false;
    }
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => std::io::stderr().is_terminal(),
    }
}

/// Logs go to stderr so stdout stays clean for manifests and reports.
/// `KOPSCI_LOG` (tracing's filter syntax) overrides `-v` / `-q`.
fn init_logging(verbose: u8, quiet: u8, color: bool) {
    let level = match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-2 => "off",
        -1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("KOPSCI_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    // ureq-proto dumps raw HTTP bytes at trace level, headers included: that
    // would print the GitLab token. When trace is on, cap it at debug.
    let filter = if filter
        .max_level_hint()
        .is_none_or(|max| max >= tracing_subscriber::filter::LevelFilter::TRACE)
    {
        ["ureq_proto=debug", "ureq_proto::util=debug"]
            .iter()
            .filter_map(|d| d.parse().ok())
            .fold(filter, |filter, directive| filter.add_directive(directive))
    } else {
        filter
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .without_time()
        .with_target(false)
        .init();
}
