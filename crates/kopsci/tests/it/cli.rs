//! The command line itself: help, version, completions, manual pages, exit
//! codes, and what reaches the terminal: errors in plain words, control
//! characters escaped, no credential at any log level.

use crate::harness::{Kopsci, Run, Sandbox, repo_root};
use crate::stages::{append, fleet_sandbox};
use crate::support::sts::{CANARY, FakeSts};
use crate::support::{self, S3Server};

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
        .expect_code(64);
    run.assert_stderr_has("invalid value 'tcsh'");
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
        .expect_code(64);
    run.assert_stderr_has("--no-such-flag");
}

#[test]
fn quiet_and_verbose_conflict() {
    Kopsci::new()
        .args(["-v", "-q", "render", "--all"])
        .run()
        .expect_code(64);
}

// ---------------------------------------------------------------------
// Exit codes: 2 is only "changes pending"; usage errors are 64
// ---------------------------------------------------------------------

#[test]
fn help_shows_the_exit_code_table() {
    let out = Kopsci::new().arg("--help").run().success().stdout();
    for line in [
        "  0      success; nothing pending",
        "  2      changes pending: `dryrun --detailed-exitcode`, `roll --detailed-exitcode`",
        "  64     usage error: bad flags or arguments, unknown cluster, missing fleet file",
        "  128+n  interrupted by signal n",
    ] {
        assert!(out.contains(line), "help lacks {line:?}:\n{out}");
    }
    let dryrun = Kopsci::new()
        .args(["dryrun", "--help"])
        .run()
        .success()
        .stdout();
    assert!(
        dryrun.contains(
            "Exit codes: 0 success, 1 error, 2 changes pending, 64 usage error, 128+n interrupted by signal n."
        ),
        "{dryrun}"
    );
}

#[test]
fn usage_errors_exit_64_never_2() {
    // clap's own errors.
    Kopsci::new()
        .args(["dryrun", "--all", "--jobs", "0"])
        .run()
        .fails_with(64, &["--jobs", "0 is not in 1..=256"]);
    Kopsci::new()
        .args(["snapshot", "verify", "x", "--concurrency", "0"])
        .run()
        .fails_with(64, &["--concurrency"]);
    Kopsci::new()
        .arg("--no-such-flag")
        .run()
        .fails_with(64, &["--no-such-flag"]);
    // No command: the help, on stderr, as a usage error.
    let run = Kopsci::new().run().expect_code(64);
    assert!(run.stdout().is_empty(), "{}", run.stdout());
    assert!(
        run.stderr().starts_with("Run kOps clusters"),
        "{}",
        run.stderr()
    );
    run.assert_stderr_has("Usage: kopsci");
    // A missing fleet file: one code whichever way it was named.
    let sb = Sandbox::new();
    sb.kopsci()
        .args(["render", "--all"])
        .run()
        .fails_with(64, &["no kopsci.yaml"]);
    sb.kopsci()
        .args(["--fleet", "nope.yaml", "render", "--all"])
        .run()
        .fails_with(64, &["fleet file nope.yaml not found"]);
    sb.kopsci()
        .env("KOPSCI_FLEET", "nope.yaml")
        .args(["dryrun", "--all"])
        .run()
        .fails_with(64, &["fleet file nope.yaml not found"]);
    // An unknown cluster.
    Kopsci::new()
        .current_dir(repo_root())
        .args(["render", "nope.example.com"])
        .run()
        .fails_with(64, &["unknown cluster `nope.example.com`"]);
}

// ---------------------------------------------------------------------
// Errors in the user's words, on one line
// ---------------------------------------------------------------------

/// stderr is exactly one line, `error: …`, free of every fragment in
/// `internals`.
#[track_caller]
fn one_plain_line(run: &Run, internals: &[&str]) -> String {
    let stderr = run.stderr();
    assert_eq!(stderr.lines().count(), 1, "not one line:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    for internal in internals {
        assert!(!stderr.contains(internal), "{internal:?} in:\n{stderr}");
    }
    stderr
}

#[test]
fn a_duplicate_key_says_which_key_and_what_to_do() {
    let sb = Sandbox::new()
        .file("t.j2", "a: {{ a }}\n")
        .file("v.yaml", "a: 1\nb: 2\na: 3\n");
    let run = sb
        .kopsci()
        .args(["render", "--values", "v.yaml", "--template", "t.j2"])
        .run()
        .fails_with(1, &["v.yaml:3:1: duplicate key `a`", "keep one"]);
    one_plain_line(&run, &["DuplicateKeyPolicy", "Options"]);
}

#[test]
fn a_yaml_bomb_is_refused_in_plain_words() {
    // Eleven levels of ten aliases each: 10^11 values once expanded.
    let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
    let mut previous = "a".to_string();
    for level in 1..=11 {
        let refs = vec![format!("*{previous}"); 10].join(", ");
        bomb.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
        previous = format!("l{level}");
    }
    let sb = Sandbox::new()
        .file("t.j2", "a: 1\n")
        .file("bomb.yaml", &bomb);
    let run = sb
        .kopsci()
        .args(["render", "--values", "bomb.yaml", "--template", "t.j2"])
        .run()
        .fails_with(1, &["bomb.yaml:", "too large", "write the values out"]);
    one_plain_line(&run, &["budget breached", "Nodes {", "{"]);
}

/// `kopsci snapshot` of one cluster from an unreachable S3 endpoint, with
/// nothing of the outer environment but `env`.
fn snapshot_with_env(env: &[(&str, &str)]) -> Run {
    let mut kopsci = Kopsci::new()
        .isolated()
        .env("S3_ENDPOINT", "http://127.0.0.1:9")
        .env("S3_REGION", "us-east-1");
    for (key, value) in env {
        kopsci = kopsci.env(key, value);
    }
    kopsci
        .args([
            "snapshot",
            "--state",
            "s3://kops-state",
            "--name",
            "a.example.com",
        ])
        .arg("--out")
        .arg(Sandbox::new().join("snap"))
        .run()
}

#[test]
fn a_credential_provider_failure_is_one_plain_line() {
    // The web-identity provider fails (no token file) before any request.
    let run = snapshot_with_env(&[
        ("AWS_ROLE_ARN", "arn:aws:iam::123456789012:role/ci"),
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "/nonexistent/kopsci-token"),
    ])
    .fails_with(
        1,
        &[
            "cannot load AWS credentials",
            "AWS_WEB_IDENTITY_TOKEN_FILE names /nonexistent/kopsci-token, which does not exist",
        ],
    );
    one_plain_line(
        &run,
        &["ProviderError", "WARN", "dispatch failure", "other:", "{"],
    );

    // No credentials at all.
    let run =
        snapshot_with_env(&[]).fails_with(1, &["no AWS credentials found", "AWS_ACCESS_KEY_ID"]);
    one_plain_line(
        &run,
        &["CredentialsNotLoaded", "dispatch failure", "other:", "{"],
    );
}

// ---------------------------------------------------------------------
// Control characters from inputs are escaped on the terminal
// ---------------------------------------------------------------------

#[track_caller]
fn no_raw_controls(run: &Run) {
    let all = format!("{}{}", run.stdout(), run.stderr());
    for c in ['\u{1b}', '\u{7}', '\r'] {
        assert!(!all.contains(c), "raw {c:?} in:\n{all:?}");
    }
}

#[test]
fn control_characters_from_inputs_are_escaped() {
    // A cluster name on the command line.
    let run = Kopsci::new()
        .current_dir(repo_root())
        .args(["render", "evil\u{1b}]0;pwned\u{7}\u{1b}[2J"])
        .run()
        .fails_with(64, &["unknown cluster `evil\\x1b]0;pwned\\x07\\x1b[2J`"]);
    no_raw_controls(&run);

    // A template's `required()` message.
    let sb = Sandbox::new()
        .file(
            "t.j2",
            "a: {{ x | required(\"set x\u{1b}[31m\u{7}\r now\") }}\n",
        )
        .file("v.yaml", "y: 1\n");
    let run = sb
        .kopsci()
        .args(["render", "--values", "v.yaml", "--template", "t.j2"])
        .run()
        .fails_with(1, &["t.j2:1", "set x\\x1b[31m\\x07\\r now"]);
    no_raw_controls(&run);

    // An argument clap rejects (clap drops the controls itself).
    let run = Kopsci::new()
        .args(["render", "--bad\u{1b}[2J\u{7}"])
        .run()
        .fails_with(64, &["unexpected argument '--bad"]);
    no_raw_controls(&run);
}

// ---------------------------------------------------------------------
// No credential at any log level
// ---------------------------------------------------------------------

const CLUSTER: &str = "minimal-aws.example.com";
const CALLER_KEY: &str = "AKIACALLERCANARYKEY0";
const CALLER_SECRET: &str = "CallerCanarySecret0123456789abcdefABCD";
const CALLER_TOKEN: &str = "CallerCanarySessionToken+xyz/UVW==";

/// The most verbose ways to run kopsci, including a filter that asks for
/// the SDK's signing and HTTP traces by name.
const VERBOSITIES: [(&str, Option<&str>); 3] = [
    ("-vvv", None),
    ("-q", Some("trace")),
    (
        "-q",
        Some(
            "trace,aws_sigv4=trace,aws_smithy_runtime=trace,aws_smithy_runtime_api=trace,aws_config=trace,hyper=trace,hyper_util=trace,rustls=trace,h2=trace",
        ),
    ),
];

/// `dryrun --without-kops` of a fleet whose `aws.role_arn` makes kopsci
/// call STS (the fake, which answers with canary credentials) as a caller
/// with a session of its own, at the highest verbosity. The store is read
/// either with the assumed credentials (SeaweedFS then refuses the canary
/// key, after the signed request was made and logged) or with the S3
/// variables (the whole snapshot runs: listing and every GET, `pki/`
/// included). Nothing secret may appear on stdout, stderr or in reports.
#[test]
fn trace_output_never_shows_credentials_or_signatures() {
    let server = S3Server::start();
    server.create_bucket("kops-state");
    server.seed_dir(
        "kops-state",
        CLUSTER,
        &support::kops_state_fixtures().join(CLUSTER),
    );
    let sts = FakeSts::start();
    let sb = fleet_sandbox();
    append(
        &sb,
        "kopsci.yaml",
        "aws:\n  role_arn: arn:aws:iam::123456789012:role/kops\n  external_id: canary-external-id\n  region: us-east-1\n",
    );
    let secrets = [
        CANARY.access_key_id,
        CANARY.secret_access_key,
        CANARY.session_token,
        CALLER_KEY,
        CALLER_SECRET,
        CALLER_TOKEN,
        support::s3::SECRET_KEY,
        "canary-external-id",
    ];
    for (flag, filter) in VERBOSITIES {
        for s3_variables in [false, true] {
            let case = format!("{flag} KOPSCI_LOG={filter:?} S3 variables: {s3_variables}");
            let mut kopsci = sb
                .kopsci()
                .isolated()
                .env("AWS_ACCESS_KEY_ID", CALLER_KEY)
                .env("AWS_SECRET_ACCESS_KEY", CALLER_SECRET)
                .env("AWS_SESSION_TOKEN", CALLER_TOKEN)
                .env("AWS_ENDPOINT_URL_STS", sts.endpoint())
                .env("S3_ENDPOINT", server.endpoint())
                .env("S3_REGION", "us-east-1");
            if s3_variables {
                kopsci = kopsci
                    .env("S3_ACCESS_KEY_ID", support::s3::ACCESS_KEY)
                    .env("S3_SECRET_ACCESS_KEY", support::s3::SECRET_KEY);
            }
            if let Some(filter) = filter {
                kopsci = kopsci.env("KOPSCI_LOG", filter);
            }
            let run = kopsci
                .args([flag, "dryrun", CLUSTER, "--without-kops"])
                .args(["--state", "s3://kops-state"])
                .run();
            let stderr = run.stderr();
            let shown = format!(
                "{}{stderr}{}",
                run.stdout(),
                sb.read(&format!(".kopsci/reports/{CLUSTER}/report.md"))
            );
            // The run did what the test needs: STS was asked, S3 requests
            // were made and logged, and the redaction acted on real output.
            let calls = if s3_variables {
                run.code() == Some(0) && stderr.contains("S3.GetObject")
            } else {
                run.code() == Some(1)
                    && stderr.contains("S3.ListObjectsV2")
                    && shown.contains("InvalidAccessKeyId")
            };
            assert!(
                calls,
                "{case}: the S3 requests did not run as expected:\n{shown}"
            );
            assert!(stderr.contains("STS.AssumeRole"), "{case}:\n{stderr}");
            assert!(stderr.contains("<redacted>"), "{case}:\n{stderr}");
            for secret in secrets {
                assert!(!shown.contains(secret), "{case}: {secret} shown:\n{shown}");
            }
            let lower = shown.to_ascii_lowercase();
            for marker in [
                "x-amz-signature",
                "signature=",
                "x-amz-security-token",
                "x-amz-credential",
                "credential=",
            ] {
                assert!(!lower.contains(marker), "{case}: {marker} shown:\n{shown}");
            }
        }
    }
    assert!(
        sts.requests()
            .iter()
            .all(|r| r.contains("Action=AssumeRole")),
        "{:?}",
        sts.requests()
    );
    assert_eq!(sts.requests().len(), 6);
}
