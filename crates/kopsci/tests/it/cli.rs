//! The command line itself: help, version, completions, manual pages, exit
//! codes of commands that are not there yet.

use crate::harness::Kopsci;

#[test]
fn version_names_the_commit() {
    let run = Kopsci::new().arg("--version").run().success();
    let out = run.stdout();
    assert!(
        out.starts_with(&format!("kopsci {} (", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let commit = out.trim().rsplit('(').next().unwrap().trim_end_matches(')');
    assert!(!commit.is_empty(), "{out}");
}

#[test]
fn help_lists_every_command_and_exit_codes() {
    let out = Kopsci::new().arg("--help").run().success().stdout();
    for command in [
        "render",
        "snapshot",
        "dryrun",
        "update",
        "roll",
        "pipeline",
        "completions",
        "man",
    ] {
        assert!(out.contains(command), "help lacks {command}:\n{out}");
    }
    assert!(out.contains("Exit codes:"), "{out}");
}

#[test]
fn every_command_help_has_examples() {
    for command in [
        "render",
        "snapshot",
        "dryrun",
        "update",
        "roll",
        "pipeline",
        "completions",
        "man",
    ] {
        let out = Kopsci::new()
            .args([command, "--help"])
            .run()
            .success()
            .stdout();
        assert!(
            out.contains("Examples:"),
            "`{command} --help` has no examples:\n{out}"
        );
    }
}

#[test]
fn completions_for_every_shell() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = Kopsci::new()
            .args(["completions", shell])
            .run()
            .success()
            .stdout();
        assert!(out.contains("render"), "{shell} completions lack `render`");
    }
}

#[test]
fn completions_reject_unknown_shell() {
    let run = Kopsci::new()
        .args(["completions", "tcsh"])
        .run()
        .expect_code(2);
    assert!(
        run.stderr().contains("invalid value 'tcsh'"),
        "{}",
        run.stderr()
    );
}

#[test]
fn man_page_to_stdout_and_directory() {
    let out = Kopsci::new().arg("man").run().success().stdout();
    assert!(
        out.starts_with(".ie") || out.contains(".TH kopsci"),
        "{out}"
    );
    let dir = tempfile::tempdir().unwrap();
    Kopsci::new()
        .args(["man", "--out-dir"])
        .arg(dir.path())
        .run()
        .success();
    for page in ["kopsci.1", "kopsci-render.1", "kopsci-dryrun.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH"), "{page}");
    }
}

#[test]
fn unknown_flag_is_a_usage_error() {
    let run = Kopsci::new()
        .args(["render", "--no-such-flag"])
        .run()
        .expect_code(2);
    assert!(run.stderr().contains("--no-such-flag"), "{}", run.stderr());
}

#[test]
fn quiet_and_verbose_conflict() {
    Kopsci::new()
        .args(["-v", "-q", "render", "--all"])
        .run()
        .expect_code(2);
}
