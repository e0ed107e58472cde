//! The `kopsci` binary: parses the command line, sets up logging, dispatches
//! to the library and turns outcomes into documented exit codes.

mod cli;
mod commands;
mod exit;
mod logging;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anstyle::{AnsiColor, Style};
use clap::Parser;

use crate::cli::{Cli, ColorChoice, Command};
use crate::exit::Exit;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return clap_exit(&err).into(),
    };
    let color = use_color(cli.global.color);
    anstream::ColorChoice::write_global(if color {
        anstream::ColorChoice::Always
    } else {
        anstream::ColorChoice::Never
    });
    logging::init(cli.global.verbose, cli.global.quiet, color);

    let result = match cli.command {
        Command::Render(args) => commands::render::run(&cli.global, args, color),
        Command::Snapshot(args) => commands::snapshot::run(&cli.global, args),
        Command::Dryrun(args) => commands::stages::dryrun(&cli.global, args),
        Command::Update(args) => commands::stages::update(&cli.global, args),
        Command::Roll(args) => commands::stages::roll(&cli.global, args),
        Command::Apply(args) => commands::stages::apply(&cli.global, args),
        Command::Delete(args) => commands::stages::delete(&cli.global, args),
        Command::Kubeconfig(args) => commands::stages::kubeconfig(&cli.global, args),
        Command::Pipeline(args) => commands::pipeline::run(&cli.global, args),
        Command::Migrate(args) => commands::migrate::run(&cli.global, args),
        Command::Note(args) => commands::note::run(&cli.global, args),
        Command::Drift(args) => commands::drift::run(&cli.global, args),
        Command::Completions(args) => commands::meta::completions(args),
        Command::Man(args) => commands::meta::man(args),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(err) => {
            let exit = Exit::for_error(&err);
            match err.downcast_ref::<kopsci_core::Error>() {
                // One `file:line:col: …` per line: escaping the whole text
                // would fold the list into one line of literal `\n`s. Each
                // problem is still escaped on its own.
                Some(kopsci_core::Error::Migrate { problems }) if !problems.is_empty() => {
                    print_error(&problems[0]);
                    print_lines(problems[1..].iter().map(String::as_str));
                }
                _ => print_error(&format!("{err:#}")),
            }
            exit.into()
        }
    }
}

/// `--help` and `--version` print as clap does and exit 0; every other
/// parse error is a usage error (64), never clap's own 2, which kopsci
/// keeps for "changes pending".
fn clap_exit(err: &clap::Error) -> Exit {
    if !err.use_stderr() {
        let _ = err.print();
        return Exit::Success;
    }
    // `kopsci` alone: the help, on stderr, as a usage error.
    if err.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let _ = err.print();
        return Exit::Usage;
    }
    // Rendered plain and sanitised: the message quotes the arguments, which
    // may hold anything.
    let text = err.render().to_string();
    let text = text.strip_prefix("error: ").unwrap_or(&text);
    let mut lines = text.trim_end().lines();
    print_error(lines.next().unwrap_or_default());
    print_lines(lines);
    Exit::Usage
}

/// The one `error:` line: control characters escaped, credentials
/// redacted, `error:` in bold red when colour is on.
fn print_error(message: &str) {
    let style = Style::new().bold().fg_color(Some(AnsiColor::Red.into()));
    let _ = writeln!(
        anstream::stderr().lock(),
        "{style}error:{style:#} {}",
        logging::sanitize(message)
    );
}

/// The lines after an `error:` line, each sanitised.
fn print_lines<'a>(lines: impl Iterator<Item = &'a str>) {
    let mut stderr = anstream::stderr().lock();
    for line in lines {
        let _ = writeln!(stderr, "{}", logging::sanitize(line));
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
