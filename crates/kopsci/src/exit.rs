//! kopsci's exit codes — the contract CI jobs script against — and the one
//! table of them that `--help`, README.md and docs/troubleshooting.md show
//! (a test checks the documents against [`markdown_table`]).
//!
//! 2 means only "changes pending" (`--detailed-exitcode`), as in Terraform
//! and helmfile, so `allow_failure: exit_codes: [2]` can never swallow a
//! usage error: those exit 64 (`EX_USAGE` from sysexits.h).

use std::process::ExitCode;

/// A documented exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    Error,
    /// `--detailed-exitcode`: the dry run (or roll preview) found changes.
    Pending,
    /// `render --check` or `snapshot verify` found differences.
    Differs,
    /// The command line cannot work: clap's own errors, an unknown cluster,
    /// a missing fleet file, conflicting or missing inputs.
    Usage,
    /// Stopped by signal n; everything started was cleaned up first.
    Interrupted(i32),
}

/// Every documented status with its meaning, in the order the tables list
/// them. `Interrupted(0)` stands for the whole 128+n range.
const DOCUMENTED: [(Exit, &str); 6] = [
    (Exit::Success, "success; nothing pending"),
    (
        Exit::Error,
        "error (one `error:` line on stderr); `dryrun`: a cluster failed (wins over 2)",
    ),
    (
        Exit::Pending,
        "changes pending: `dryrun --detailed-exitcode`, `roll --detailed-exitcode`",
    ),
    (
        Exit::Differs,
        "differences found: `render --check` (manifests out of date), `snapshot verify` (live store changed)",
    ),
    (
        Exit::Usage,
        "usage error: bad flags or arguments, unknown cluster, missing fleet file",
    ),
    (
        Exit::Interrupted(0),
        "interrupted by signal n (143 for SIGTERM); kops was stopped and temporary files removed",
    ),
];

impl Exit {
    /// Usage errors from the library get the usage code; everything else is 1.
    pub fn for_error(err: &anyhow::Error) -> Exit {
        match err.downcast_ref::<kopsci_core::Error>() {
            Some(kopsci_core::Error::Interrupted { signal, .. }) => Exit::Interrupted(*signal),
            Some(e) if e.is_usage() => Exit::Usage,
            _ => Exit::Error,
        }
    }

    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::Error => 1,
            Exit::Pending => 2,
            Exit::Differs => 3,
            Exit::Usage => 64,
            Exit::Interrupted(signal) => u8::try_from(128 + signal.clamp(0, 127)).unwrap_or(255),
        }
    }

    /// The code as the tables show it: `128+n` for signals.
    fn label(self) -> String {
        match self {
            Exit::Interrupted(_) => "128+n".to_string(),
            other => other.code().to_string(),
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// The table for `kopsci --help`: `Exit codes:` and one entry per code,
/// wrapped under its meaning (clap would wrap it flush left).
pub fn help_table() -> String {
    const WIDTH: usize = 90;
    const INDENT: usize = 9;
    let mut out = String::from("Exit codes:\n");
    for (exit, meaning) in DOCUMENTED {
        let mut line = format!("  {:<7}", exit.label());
        for word in unbreakable_words(meaning) {
            if line.len() > INDENT && line.len() + 1 + word.len() > WIDTH {
                out.push_str(line.trim_end());
                out.push('\n');
                line = " ".repeat(INDENT);
            } else if line.len() > INDENT {
                line.push(' ');
            }
            line.push_str(&word);
        }
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The words of `text`, a `code span` counting as one word.
fn unbreakable_words(text: &str) -> Vec<String> {
    let mut words: Vec<String> = Vec::new();
    let mut open = false;
    for word in text.split(' ') {
        match words.last_mut() {
            Some(last) if open => {
                last.push(' ');
                last.push_str(word);
            }
            _ => words.push(word.to_string()),
        }
        open ^= word.matches('`').count() % 2 == 1;
    }
    words
}

/// The short form for a subcommand's help: the codes it can return.
pub fn summary(codes: &[Exit]) -> String {
    let parts: Vec<String> = codes
        .iter()
        .filter_map(|code| {
            DOCUMENTED
                .iter()
                .find(|(exit, _)| exit.label() == code.label())
                .map(|(exit, meaning)| {
                    let short = meaning.split([';', '(', ':']).next().unwrap_or(meaning);
                    format!("{} {}", exit.label(), short.trim())
                })
        })
        .collect();
    format!("Exit codes: {}.", parts.join(", "))
}

/// The Markdown table README.md and docs/troubleshooting.md carry (a test
/// checks they do, word for word).
#[cfg(test)]
fn markdown_table() -> String {
    let mut out = String::from("| code | meaning |\n| --- | --- |\n");
    for (exit, meaning) in DOCUMENTED {
        out.push_str(&format!("| {} | {meaning} |\n", exit.label()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file(rel: &str) -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(rel);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn usage_and_pending_never_share_a_code() {
        let codes: Vec<u8> = DOCUMENTED.iter().map(|(e, _)| e.code()).collect();
        let mut unique = codes.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), codes.len(), "{codes:?}");
        assert_eq!(Exit::Pending.code(), 2);
        assert_eq!(Exit::Usage.code(), 64);
        assert_eq!(Exit::Interrupted(15).code(), 143);
    }

    #[test]
    fn readme_and_docs_show_this_table() {
        let table = markdown_table();
        for doc in ["README.md", "docs/troubleshooting.md"] {
            let text = repo_file(doc);
            assert!(
                text.contains(&table),
                "{doc} lacks the exit-code table (or it drifted); it must read:\n{table}"
            );
        }
    }

    #[test]
    fn the_help_lists_every_code() {
        let help = help_table();
        for code in ["0", "1", "2", "3", "64", "128+n"] {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(code)),
                "{code} missing from\n{help}"
            );
        }
        assert!(help.lines().all(|l| l.len() <= 90), "{help}");
        // Code spans are never broken across lines.
        assert!(
            help.lines().all(|l| l.matches('`').count() % 2 == 0),
            "{help}"
        );
    }

    #[test]
    fn summaries_name_the_codes_a_command_returns() {
        assert_eq!(
            summary(&[Exit::Success, Exit::Pending, Exit::Usage]),
            "Exit codes: 0 success, 2 changes pending, 64 usage error."
        );
    }
}
