//! AWS SDK failures in the user's words: one line that says what went
//! wrong and what to do, without the SDK's wrapper words (`dispatch
//! failure`, `other`) or its debug dumps (`ProviderError(ProviderError {
//! source: … })`).

use std::error::Error as StdError;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};

/// The SDK's own layers, which say where in the SDK a failure passed, not
/// what it was.
const WRAPPERS: [&str; 9] = [
    "dispatch failure",
    "io error",
    "other",
    "timeout",
    "user error",
    "service error",
    "response error",
    "failed to construct request",
    "request has timed out",
];

/// One line for any failed SDK request: the service's `Code: message`
/// when the server sent one, else [`describe`].
pub(crate) fn message<E, R>(err: &SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    match err.as_service_error() {
        Some(service) => match (service.code(), service.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            _ => describe(err),
        },
        None => describe(err),
    }
}

/// One line for a failed SDK request (that is not a service error with a
/// code: callers print `Code: message` for those).
pub(crate) fn describe<E, R>(err: &SdkError<E, R>) -> String
where
    E: StdError + 'static,
    R: std::fmt::Debug + 'static,
{
    if let Some(credentials) = find_credentials_error(err) {
        return describe_credentials(credentials);
    }
    let causes = causes(err.source());
    match err {
        SdkError::TimeoutError(_) => "timed out (no response in time)".to_string(),
        SdkError::DispatchFailure(failure) if failure.is_timeout() => {
            with_cause("timed out", &causes)
        }
        SdkError::DispatchFailure(failure) if failure.is_io() => {
            with_cause("connection failed", &causes)
        }
        SdkError::ResponseError(_) => with_cause("unreadable response", &causes),
        SdkError::ConstructionFailure(_) => with_cause("cannot build the request", &causes),
        _ => with_cause("request failed", &causes),
    }
}

fn with_cause(what: &str, causes: &str) -> String {
    if causes.is_empty() {
        what.to_string()
    } else {
        format!("{what}: {causes}")
    }
}

fn find_credentials_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a CredentialsError> {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(found) = e.downcast_ref::<CredentialsError>() {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// The messages of `first` and its sources, joined with `: `, the SDK's
/// wrapper layers left out and repeats dropped.
fn causes(first: Option<&(dyn StdError + 'static)>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = first;
    while let Some(e) = next {
        next = e.source();
        if e.downcast_ref::<ConnectorError>().is_some() {
            continue;
        }
        let text = e.to_string();
        let text = text.trim();
        if text.is_empty() || WRAPPERS.contains(&text) {
            continue;
        }
        if parts.last().is_some_and(|last| last.ends_with(text)) {
            continue;
        }
        parts.push(text.to_string());
    }
    parts.join(": ")
}

/// What failed in the credential chain, and which settings to check.
fn describe_credentials(err: &CredentialsError) -> String {
    let cause = causes(err.source());
    let token_file = std::env::var_os("AWS_WEB_IDENTITY_TOKEN_FILE")
        .filter(|f| !f.is_empty())
        .map(std::path::PathBuf::from);
    let missing_token = token_file
        .filter(|f| !f.exists())
        .map(|f| {
            format!(
                " (AWS_WEB_IDENTITY_TOKEN_FILE names {}, which does not exist: check the job's `id_tokens`)",
                f.display()
            )
        })
        .unwrap_or_default();
    match err {
        CredentialsError::CredentialsNotLoaded(_) => format!(
            "no AWS credentials found{missing_token}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, \
             AWS_PROFILE, or AWS_ROLE_ARN with AWS_WEB_IDENTITY_TOKEN_FILE (GitLab OIDC), or run with an \
             instance profile; S3-compatible stores take S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY"
        ),
        CredentialsError::ProviderTimedOut(_) => format!(
            "loading AWS credentials timed out{missing_token}: is the instance metadata service \
             or the STS endpoint reachable from this job?"
        ),
        CredentialsError::InvalidConfiguration(_) => format!(
            "the AWS credential settings are invalid: {}{missing_token}; check AWS_PROFILE, \
             AWS_CONFIG_FILE and the AWS_* credential variables",
            or_unknown(&cause)
        ),
        _ => format!(
            "cannot load AWS credentials: {}{missing_token}; check AWS_WEB_IDENTITY_TOKEN_FILE, \
             AWS_ROLE_ARN, AWS_PROFILE and the other AWS_* credential variables",
            or_unknown(&cause)
        ),
    }
}

fn or_unknown(cause: &str) -> &str {
    if cause.is_empty() {
        "no reason given"
    } else {
        cause
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_smithy_runtime_api::client::result::ConnectorError;

    type Sdk = SdkError<std::io::Error, ()>;

    fn dispatch(source: impl Into<Box<dyn StdError + Send + Sync>>) -> Sdk {
        SdkError::dispatch_failure(ConnectorError::other(source.into(), None))
    }

    #[test]
    fn missing_credentials_say_what_to_set() {
        let err = dispatch(CredentialsError::not_loaded(
            "no providers in chain provided credentials",
        ));
        let message = describe(&err);
        assert!(message.starts_with("no AWS credentials found"), "{message}");
        assert!(message.contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{message}");
        for internal in ["dispatch failure", "other:", "CredentialsNotLoaded", "{"] {
            assert!(!message.contains(internal), "{internal} in {message}");
        }
    }

    #[test]
    fn a_provider_failure_is_one_line_without_debug_dumps() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = dispatch(CredentialsError::provider_error(io));
        let message = describe(&err);
        assert!(
            message.starts_with("cannot load AWS credentials: No such file or directory"),
            "{message}"
        );
        for internal in ["ProviderError", "dispatch failure", "Os {", "\n"] {
            assert!(!message.contains(internal), "{internal} in {message}");
        }
    }

    #[test]
    fn a_refused_connection_drops_the_sdk_layers() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "tcp connect error");
        let err: Sdk = SdkError::dispatch_failure(ConnectorError::io(io.into()));
        assert_eq!(describe(&err), "connection failed: tcp connect error");
    }
}
