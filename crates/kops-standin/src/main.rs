//! `kops` — a stand-in for the kOps CLI in kopsci's tests, since kOps
//! cannot be installed where they run. It implements the documented subset
//! kopsci calls (`version`, `create -f`, `replace -f`, `get`, `update
//! cluster`, `rolling-update cluster`, `reconcile cluster`, `validate
//! cluster`, `export kubeconfig`, `delete cluster|instancegroup`), rejects
//! every flag the kOps reference does not list and every command or flag
//! newer than the kOps version it plays, prints kOps' output formats, lays
//! out `file://` and `s3://` state stores as kOps does, keeps a simulated
//! cloud in `KOPS_STANDIN_CLOUD_DIR`, and has test controls (see
//! controls.rs). This file owns the order of things: record, check the
//! played version's commands, parse, obey the test controls, run, exit like
//! kOps (0, or 1 with `Error: …` on stderr).

mod cli;
mod cloud;
mod commands;
mod complete;
mod controls;
mod goflags;
mod model;
mod objects;
mod plan;
mod played;
mod store;
mod text;
mod ui;

use clap::Parser;

use crate::cli::{Cli, ParseFailure};

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if let Err(e) = controls::log_invocation(&argv) {
        fail(&format!("{e:#}"));
    }
    let played = match played::Played::from_env() {
        Ok(p) => p,
        Err(e) => fail(&format!("{e:#}")),
    };
    if let Err(e) = played.check_command(&cli::command_words(&argv)) {
        fail(&format!("{e:#}"));
    }
    let mut full = vec!["kops".to_string()];
    full.extend(argv.iter().cloned());
    let cli = match Cli::try_parse_from(full) {
        Ok(cli) => cli,
        Err(e) => match cli::cobra_failure(&e, &argv) {
            ParseFailure::Help(text) => {
                ui::out(&text);
                std::process::exit(0);
            }
            ParseFailure::Usage(message) => fail(&message),
        },
    };
    if let Err(e) = played.check_flags(&cli, &argv) {
        fail(&format!("{e:#}"));
    }
    let command = cli.command_path();
    if controls::hangs_in(&command) {
        controls::hang(&command);
    }
    if let Some(message) = controls::failure_for(&command) {
        fail(&message);
    }
    let ctx = commands::Context::new(&cli, played);
    if let Err(e) = commands::run(&cli, &ctx) {
        fail(&format!("{e:#}"));
    }
}

/// cobra's way out: the error on stderr, exit status 1.
fn fail(message: &str) -> ! {
    ui::err(&format!("Error: {message}\n"));
    std::process::exit(1);
}
