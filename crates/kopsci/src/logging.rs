//! What reaches the terminal from logs and errors: the tracing set-up
//! (levels, `KOPSCI_LOG`), a cap on the AWS SDK's and HTTP/TLS crates'
//! verbosity that no filter can lift, and the sanitising every field and
//! error line goes through — control characters escaped, credentials
//! redacted.
//!
//! The AWS SDK, its HTTP client and TLS stack print canonical requests,
//! signed headers, session tokens and resolved identities at trace level
//! (some identities even at debug). Those crates therefore stop at debug
//! whatever `-v` or `KOPSCI_LOG` asks for, and what they do print at debug
//! is scrubbed by [`sanitize`] field by field.

use std::borrow::Cow;

use kopsci_core::text::escape_controls;
use std::fmt;
use std::sync::LazyLock;

use regex_lite::Regex;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::filter::{FilterExt, LevelFilter, Targets};
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// kopsci's own crates: at the default level, only they print warnings.
const OWN_TARGETS: [&str; 2] = ["kopsci", "kopsci_core"];

/// Target prefixes (tracing matches targets by prefix) of the crates that
/// dump requests, headers or identities at trace level: the AWS SDK
/// (`aws_sigv4`, `aws_smithy_*`, `aws_config`, `aws_sdk_*`…), hyper and
/// h2, the `http` crates, rustls, and ureq's protocol layer (raw HTTP
/// bytes, the GitLab token among them). They are capped at
/// [`HTTP_STACK_MAX`].
const HTTP_STACK: [&str; 7] = [
    "aws_",
    "hyper",
    "h2",
    "http",
    "rustls",
    "tokio_rustls",
    "ureq_proto",
];

/// The most [`HTTP_STACK`] crates may log, whatever the filter asks.
const HTTP_STACK_MAX: LevelFilter = LevelFilter::DEBUG;

/// What `redacted` values read as.
pub const REDACTED: &str = "<redacted>";

/// Sets up logging to stderr: `-v`/`-q` pick the level, `KOPSCI_LOG`
/// (tracing's filter syntax) overrides it.
pub fn init(verbose: u8, quiet: u8, color: bool) {
    let spec = std::env::var("KOPSCI_LOG").ok();
    let layer = tracing_subscriber::fmt::layer()
        .fmt_fields(SafeFields::default())
        .with_writer(std::io::stderr)
        .with_ansi(color)
        .without_time()
        .with_target(false)
        .with_filter(user_filter(level(verbose, quiet), spec.as_deref()).and(dependency_cap()));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

fn level(verbose: u8, quiet: u8) -> LevelFilter {
    match i16::from(verbose) - i16::from(quiet) {
        i16::MIN..=-2 => LevelFilter::OFF,
        -1 => LevelFilter::ERROR,
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        2 => LevelFilter::DEBUG,
        _ => LevelFilter::TRACE,
    }
}

/// `KOPSCI_LOG` as given, else kopsci at `level` and other crates one step
/// quieter: their warnings (an SDK credential provider's `ProviderError {…}`
/// dump, say) repeat what kopsci's own error line says in plainer words.
fn user_filter(level: LevelFilter, spec: Option<&str>) -> EnvFilter {
    if let Some(spec) = spec.filter(|s| !s.trim().is_empty())
        && let Ok(filter) = EnvFilter::try_new(spec)
    {
        return filter;
    }
    let dependencies = match level {
        LevelFilter::WARN => LevelFilter::ERROR,
        LevelFilter::INFO => LevelFilter::WARN,
        other => other,
    };
    let mut directives = dependencies.to_string().to_lowercase();
    for target in OWN_TARGETS {
        directives.push_str(&format!(",{target}={}", level.to_string().to_lowercase()));
    }
    EnvFilter::new(directives)
}

/// The HTTP stack at most at debug; everything else as the filter says.
fn dependency_cap() -> Targets {
    HTTP_STACK.iter().fold(
        Targets::new().with_default(LevelFilter::TRACE),
        |t, target| t.with_target(*target, HTTP_STACK_MAX),
    )
}

/// Formats fields as tracing does, then [`sanitize`]s them, so every value
/// (event fields, span fields, the message) is escaped and scrubbed while
/// the formatter's own colours stay intact.
#[derive(Debug, Default)]
struct SafeFields {
    inner: DefaultFields,
}

impl<'writer> FormatFields<'writer> for SafeFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> fmt::Result {
        let mut raw = String::new();
        self.inner.format_fields(Writer::new(&mut raw), fields)?;
        writer.write_str(&sanitize(&raw))
    }
}

/// Text safe for a terminal: credentials redacted, then control characters
/// escaped.
pub fn sanitize(text: &str) -> String {
    escape_controls(&redact(text)).into_owned()
}

/// A credential's name followed by its value, in the shapes the AWS SDK,
/// hyper and HTTP dumps use: `access_key_id: "…"`, `x-amz-security-token:…`,
/// `("x-amz-security-token", "…")`, `"x-amz-security-token": HeaderValue {
/// _private: H0("…") }`, `X-Amz-Signature=…` (presigned URLs),
/// `Credential=…, Signature=…` (an `Authorization` header; `Bearer …` and
/// `Basic …` values as a whole), `<SessionToken>…</SessionToken>` (STS
/// responses), `"SessionToken": "…"` (credential_process, SSO). Groups 1
/// (the name, after a character that is no letter or digit, so that
/// `InvalidAccessKeyId: …` stays as it is) and 2 are kept, the value (3)
/// is replaced.
static CREDENTIAL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)((?:^|[^a-z0-9])(?:x-amz-)?(?:access[-_]?key[-_]?id|secret[-_]?access[-_]?key|secret[-_]?key|session[-_]?token|security[-_]?token|signature|credential|authorization|private[-_]?token|job[-_]?token|password))(["']\s*,\s*b?["']|["']?\s*[:=]\s*(?:HeaderValue\s*\{\s*_private:\s*\w+\(\s*)?(?:b?["'])?|>)((?:(?:bearer|basic|aws4-hmac-sha256)\s+)?[^"'\s&,;)<>\\*]+)"#,
    )
    .expect("credential pattern")
});

/// Replaces credential values with [`REDACTED`].
pub fn redact(text: &str) -> Cow<'_, str> {
    CREDENTIAL.replace_all(text, |caps: &regex_lite::Captures<'_>| {
        format!("{}{}{REDACTED}", &caps[1], &caps[2])
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            escape_controls("a\u{1b}[31mred\u{7}\r\nb\tc\u{9b}d\u{202e}e\u{7f}"),
            "a\\x1b[31mred\\x07\\r\\nb\tc\\u{9b}d\\u{202e}e\\x7f"
        );
        assert!(matches!(escape_controls("plain: ok"), Cow::Borrowed(_)));
    }

    /// Every shape of credential the SDK, hyper and friends print.
    #[test]
    fn credentials_are_redacted_in_every_shape() {
        let secrets = [
            "ASIACANARYKEY",
            "canarySecret",
            "canaryToken",
            "deadbeef01",
            "glpat-canary",
        ];
        let lines = [
            r#"Identity { data: Credentials { provider_name: "x", access_key_id: "ASIACANARYKEY", secret_access_key: "canarySecret", session_token: "canaryToken" } }"#,
            "x-amz-security-token:canaryToken\nx-amz-date:20240101T000000Z",
            r#"headers: [("x-amz-security-token", "canaryToken"), ("authorization", "AWS4-HMAC-SHA256 Credential=ASIACANARYKEY/20240101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=deadbeef01")]"#,
            r#"{"x-amz-security-token": HeaderValue { _private: H0("canaryToken") }, "authorization": HeaderValue { _private: H0("AWS4-HMAC-SHA256 Credential=ASIACANARYKEY/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=deadbeef01") }}"#,
            "GET https://b.s3.amazonaws.com/pki/private/ca/keyset.yaml?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIACANARYKEY%2F20240101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Security-Token=canaryToken&X-Amz-Signature=deadbeef01&X-Amz-SignedHeaders=host",
            "<Credentials><AccessKeyId>ASIACANARYKEY</AccessKeyId><SecretAccessKey>canarySecret</SecretAccessKey><SessionToken>canaryToken</SessionToken></Credentials>",
            r#"{"Version": 1, "AccessKeyId": "ASIACANARYKEY", "SecretAccessKey": "canarySecret", "SessionToken": "canaryToken"}"#,
            "AWS_SESSION_TOKEN=canaryToken AWS_SECRET_ACCESS_KEY=canarySecret",
            "PRIVATE-TOKEN: glpat-canary",
            "authorization: Bearer glpat-canary",
        ];
        for line in lines {
            let shown = sanitize(line);
            for secret in secrets {
                assert!(!shown.contains(secret), "{secret} in {shown}");
            }
            assert!(shown.contains(REDACTED), "{shown}");
        }
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        for line in [
            "loaded credentials provider=Environment",
            "signing implementation signer=SigV4Signer",
            "SignatureDoesNotMatch: The request signature we calculated does not match",
            "S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY are set",
            r#"secret_access_key: "** redacted **""#,
            "key=pki/private/ca/keyset.yaml attempt=2",
            "InvalidAccessKeyId: The AWS Access Key Id you provided does not exist",
            "ExpiredToken: The security token included in the request is expired",
        ] {
            assert_eq!(sanitize(line), line);
        }
    }

    /// A writer the tests read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// The SDK's events stop at debug even when trace is asked for by name;
    /// other crates' trace events pass; fields are sanitised.
    #[test]
    fn dependencies_are_capped_whatever_the_filter_says() {
        let out = Captured::default();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(SafeFields::default())
                .with_writer(out.clone())
                .with_ansi(false)
                .without_time()
                .with_filter(
                    user_filter(LevelFilter::WARN, Some("trace,aws_sigv4=trace"))
                        .and(dependency_cap()),
                ),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::trace!(target: "aws_sigv4::http_request::sign", canonical_request = "x-amz-security-token:canaryToken", "signing");
            tracing::debug!(target: "aws_smithy_runtime::client::orchestrator", "resolving endpoint access_key_id: \"ASIACANARYKEY\"");
            tracing::trace!(target: "kopsci_core::state", "own trace event for evil\u{1b}]0;title\u{7}");
            tracing::trace!(target: "hyper_util::client", "connection pool trace");
            tracing::trace!(target: "ureq::unit", "ureq trace");
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("canaryToken"), "{text}");
        assert!(!text.contains("signing"), "{text}");
        assert!(!text.contains("ASIACANARYKEY"), "{text}");
        assert!(
            text.contains("resolving endpoint access_key_id: \"<redacted>\""),
            "{text}"
        );
        assert!(text.contains("own trace event"), "{text}");
        assert!(!text.contains("connection pool trace"), "{text}");
        assert!(text.contains("ureq trace"), "{text}");
        assert!(text.contains("evil\\x1b]0;title\\x07"), "{text}");
        assert!(!text.contains('\u{1b}'), "{text}");
    }

    #[test]
    fn default_levels_keep_dependency_warnings_out() {
        let filter = user_filter(LevelFilter::WARN, None).to_string();
        assert!(filter.contains("kopsci=warn"), "{filter}");
        assert!(filter.split(',').any(|d| d == "error"), "{filter}");
        assert_eq!(level(3, 0), LevelFilter::TRACE);
        assert_eq!(level(0, 2), LevelFilter::OFF);
    }
}
