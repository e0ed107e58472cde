//! A minimal GitLab REST API v4 client: JSON requests with a token, bounded
//! retries on rate limits and server errors, and errors that never carry
//! the token.
//!
//! The token only ever goes to the origin of `CI_API_V4_URL`: redirects are
//! never followed (a 3xx is an error that says where it pointed), so a
//! compromised or misconfigured API host cannot bounce the token elsewhere.
//!
//! Time is bounded at three levels ([`RetryPolicy`]): one attempt
//! (connect, send, response and body together), one request with its
//! retries and waits, and everything a command does with the client.
//!
//! HTTP is [`ureq`]: a small, maintained, blocking client that builds on the
//! rustls and ring the AWS SDK already brings. A note is a handful of
//! sequential requests at the end of a job, for which an async stack
//! (hyper through the AWS SDK's smithy client) would add a runtime and much
//! code for nothing.
//!
//! TLS roots: the GitLab runner's `CI_SERVER_TLS_CA_FILE` (set when the
//! GitLab instance uses a private CA), else `SSL_CERT_FILE`, else the
//! bundled Mozilla roots. Proxies come from `HTTPS_PROXY` / `NO_PROXY`.
//!
//! The token goes in the `PRIVATE-TOKEN` header (personal, project and
//! group access tokens all work there) and nowhere else: not in URLs, not
//! in messages, not in `Debug`.

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::errors::{Error, Result};
use crate::secret::Secret;

/// How often and how patiently requests are retried, and how long they may
/// take in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The delay before the first retry; doubled for each further one.
    pub base_delay: Duration,
    /// No delay is longer than this, `Retry-After` included.
    pub max_delay: Duration,
    /// One attempt — connecting, sending, waiting for and reading the
    /// response — takes at most this long.
    pub attempt_timeout: Duration,
    /// One request, its retries, waits and timeouts included, takes at
    /// most this long.
    pub window: Duration,
    /// Everything since [`GitLabApi::begin`] (or the client's first
    /// request) takes at most this long.
    pub total: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts over about fifteen seconds (back-off 1, 2, 4, 8 s):
    /// enough to ride out a rate-limit window or a GitLab deploy. A request
    /// is abandoned after 20 s whatever happens (10 s per attempt at most),
    /// and a whole note or drift issue after 60 s, so that a hanging
    /// server never holds a CI job for long.
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
            attempt_timeout: Duration::from_secs(10),
            window: Duration::from_secs(20),
            total: Duration::from_secs(60),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1-based), honouring a
    /// `Retry-After` in seconds when the server sent one.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self
            .base_delay
            .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)));
        retry_after.unwrap_or(backoff).min(self.max_delay)
    }
}

/// HTTP methods the client uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// A successful (2xx) response.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub body: serde_json::Value,
    /// GitLab's `X-Next-Page` pagination header, when there is a next page.
    pub next_page: Option<String>,
}

/// Why one attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No response: connection refused, reset, timed out.
    Transport(String),
    /// A response with a non-2xx status.
    Status {
        status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// A redirect, not followed: the token never leaves the API's origin.
    Redirect {
        status: u16,
        /// Where it pointed (query left out), or empty.
        location: String,
        /// The origin the token is for.
        origin: String,
    },
    /// A 2xx response that is not what was asked for (not JSON, not the
    /// note or issue that was sent).
    Invalid(String),
}

impl Failure {
    /// Rate limits, server errors and lost connections are worth retrying;
    /// anything else (bad token, missing merge request, a redirect, a
    /// response that is not the API's) will not change.
    pub fn retryable(&self) -> bool {
        match self {
            Failure::Transport(_) => true,
            Failure::Status { status, .. } => *status == 429 || (500..=599).contains(status),
            Failure::Redirect { .. } | Failure::Invalid(_) => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            Failure::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Transport(message) | Failure::Invalid(message) => message.clone(),
            Failure::Redirect {
                status,
                location,
                origin,
            } => {
                let target = if location.is_empty() {
                    "a redirect without a Location".to_string()
                } else {
                    format!("a redirect to {location}")
                };
                format!(
                    "HTTP {status}: {target}, not followed: kopsci sends the token only to {origin} (CI_API_V4_URL); set CI_API_V4_URL to the API's final address"
                )
            }
            Failure::Status {
                status, message, ..
            } => {
                let hint = match status {
                    401 => " (is KOPSCI_GITLAB_TOKEN a valid, unexpired token?)",
                    403 => {
                        " (does the token have the `api` scope and at least the Reporter role on the project?)"
                    }
                    _ => "",
                };
                if message.is_empty() {
                    format!("HTTP {status}{hint}")
                } else {
                    format!("HTTP {status}: {message}{hint}")
                }
            }
        }
    }
}

/// What one attempt of [`GitLabApi::with_retries`] came to.
#[derive(Debug)]
pub enum Attempt<T> {
    Done(T),
    Failed(Failure),
}

/// A GitLab API client for one instance and token.
pub struct GitLabApi {
    agent: ureq::Agent,
    base: String,
    /// `scheme://host[:port]` of `base`: the only place the token goes.
    origin: String,
    token: Secret,
    retry: RetryPolicy,
    /// When everything must be done by ([`RetryPolicy::total`]).
    deadline: Cell<Option<Instant>>,
}

impl std::fmt::Debug for GitLabApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitLabApi")
            .field("base", &self.base)
            .field("token", &self.token)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl GitLabApi {
    /// A client for `api_url` (`CI_API_V4_URL`, e.g.
    /// `https://gitlab.example.com/api/v4`), trusting the CA certificates in
    /// `ca_file` when given.
    pub fn new(api_url: &str, token: Secret, ca_file: Option<&Path>) -> Result<GitLabApi> {
        let base = api_url.trim_end_matches('/').to_string();
        let origin = origin(&base).ok_or_else(|| {
            Error::Usage(format!(
                "CI_API_V4_URL `{}` is not an http(s) URL such as https://gitlab.example.com/api/v4",
                base.escape_debug()
            ))
        })?;
        let config = ureq::Agent::config_builder()
            // Statuses are classified here, with GitLab's message kept.
            .http_status_as_error(false)
            // Never follow a redirect: the token would go with it.
            .max_redirects(0)
            .timeout_global(Some(RetryPolicy::default().attempt_timeout))
            .user_agent(format!("kopsci/{}", env!("CARGO_PKG_VERSION")))
            .tls_config(tls_config(ca_file)?)
            .build();
        Ok(GitLabApi {
            agent: ureq::Agent::new_with_config(config),
            base,
            origin,
            token,
            retry: RetryPolicy::default(),
            deadline: Cell::new(None),
        })
    }

    pub fn with_retry(mut self, retry: RetryPolicy) -> GitLabApi {
        self.retry = retry;
        self
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Starts a new [`RetryPolicy::total`] budget: one per note, one per
    /// drift issue.
    pub fn begin(&self) {
        self.deadline.set(Some(Instant::now() + self.retry.total));
    }

    fn total_deadline(&self) -> Instant {
        match self.deadline.get() {
            Some(deadline) => deadline,
            None => {
                let deadline = Instant::now() + self.retry.total;
                self.deadline.set(Some(deadline));
                deadline
            }
        }
    }

    /// Sends one request with the token: never redirected (the agent
    /// follows none), bounded by `timeout` as a whole.
    fn send(
        &self,
        method: Method,
        url: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> std::result::Result<ureq::http::Response<ureq::Body>, ureq::Error> {
        let token = self.token.expose();
        let payload = body
            .map(|b| serde_json::to_vec(b).unwrap_or_default())
            .unwrap_or_default();
        match method {
            Method::Get => self
                .agent
                .get(url)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .header("PRIVATE-TOKEN", token)
                .header("Accept", "application/json")
                .call(),
            Method::Post | Method::Put => {
                let request = if method == Method::Post {
                    self.agent.post(url)
                } else {
                    self.agent.put(url)
                };
                request
                    .config()
                    .timeout_global(Some(timeout))
                    .build()
                    .header("PRIVATE-TOKEN", token)
                    .header("Accept", "application/json")
                    .header("Content-Type", "application/json")
                    .send(&payload[..])
            }
        }
    }

    /// One attempt at `method path` (path relative to the API root,
    /// starting with `/`), with a JSON body for POST and PUT, taking at
    /// most `timeout`.
    pub fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        timeout: Duration,
    ) -> std::result::Result<Response, Failure> {
        let url = format!("{}{path}", self.base);
        let result = self.send(method, &url, body, timeout);
        let mut response =
            result.map_err(|e| Failure::Transport(transport_message(&e, timeout)))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        let next_page = header("x-next-page");
        let retry_after = header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .map(Duration::from_secs);
        if (300..400).contains(&status) {
            return Err(Failure::Redirect {
                status,
                location: header("location")
                    .map(|l| shown_location(&l))
                    .unwrap_or_default(),
                origin: self.origin.clone(),
            });
        }
        let text = response.body_mut().read_to_string().map_err(|e| {
            Failure::Transport(format!(
                "reading the response: {}",
                transport_message(&e, timeout)
            ))
        })?;
        if !(200..300).contains(&status) {
            return Err(Failure::Status {
                status,
                message: gitlab_message(&text),
                retry_after,
            });
        }
        let body = if text.trim().is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| {
                Failure::Invalid(format!(
                    "HTTP {status} but the response is not JSON: is CI_API_V4_URL the API root (https://gitlab.example.com/api/v4)?"
                ))
            })?
        };
        Ok(Response {
            status,
            body,
            next_page,
        })
    }

    /// `method path` with retries on rate limits, server errors and lost
    /// connections. Only for idempotent requests (GET, PUT): a retried POST
    /// may create twice, so callers use [`GitLabApi::with_retries`] and
    /// look for what a failed attempt may have created.
    pub fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Response> {
        self.with_retries(method, path, |_, timeout| {
            Ok(match self.call(method, path, body, timeout) {
                Ok(response) => Attempt::Done(response),
                Err(failure) => Attempt::Failed(failure),
            })
        })
    }

    /// Runs `attempt` (given its number, from 1, and the time it may take)
    /// until it is done, fails for good, runs out of attempts, or the
    /// request's window or the client's total budget closes. Waits between
    /// attempts as the policy says, and says so in the log.
    pub fn with_retries<T>(
        &self,
        method: Method,
        path: &str,
        mut attempt: impl FnMut(u32, Duration) -> Result<Attempt<T>>,
    ) -> Result<T> {
        let started = Instant::now();
        let total = self.total_deadline();
        let deadline = total.min(started + self.retry.window);
        let limit = if deadline == total {
            format!(
                "the {} s kopsci allows for all its GitLab API calls",
                self.retry.total.as_secs()
            )
        } else {
            "the time kopsci allows for one request".to_string()
        };
        let mut number = 0;
        loop {
            number += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(Error::GitLab {
                    request: format!("{} {}", method.as_str(), path_only(path)),
                    message: format!(
                        "not sent: the {} s kopsci allows for GitLab API calls are used up",
                        self.retry.total.as_secs()
                    ),
                });
            }
            let failure = match attempt(number, remaining.min(self.retry.attempt_timeout))? {
                Attempt::Done(value) => return Ok(value),
                Attempt::Failed(failure) => failure,
            };
            if !failure.retryable() || number >= self.retry.attempts {
                return Err(self.error(method, path, &failure, number));
            }
            let delay = self.retry.delay(number, failure.retry_after());
            if Instant::now() + delay >= deadline {
                return Err(Error::GitLab {
                    request: format!("{} {}", method.as_str(), path_only(path)),
                    message: format!(
                        "{} (after {number} attempt{}; gave up after {:.0} s, {limit})",
                        failure.message(),
                        if number == 1 { "" } else { "s" },
                        started.elapsed().as_secs_f64()
                    ),
                });
            }
            self.wait(method, path, &failure, number, delay);
        }
    }

    /// Sleeps `delay` before retry number `retry` after `failure`, saying so.
    fn wait(&self, method: Method, path: &str, failure: &Failure, retry: u32, delay: Duration) {
        tracing::warn!(
            "GitLab API {} {}: {}; retrying in {:.1}s ({retry}/{})",
            method.as_str(),
            path_only(path),
            failure.message(),
            delay.as_secs_f64(),
            self.retry.attempts - 1
        );
        std::thread::sleep(delay);
    }

    /// The error for a request that failed for good after `attempts`.
    pub fn error(&self, method: Method, path: &str, failure: &Failure, attempts: u32) -> Error {
        let tries = if attempts > 1 {
            format!(" (after {attempts} attempts)")
        } else {
            String::new()
        };
        Error::GitLab {
            request: format!("{} {}", method.as_str(), path_only(path)),
            message: format!("{}{tries}", failure.message()),
        }
    }
}

/// `scheme://host[:port]` of an http(s) URL.
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Credentials in the URL would be shown in messages.
    if authority.is_empty() || authority.contains('@') {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// A redirect's `Location` for a message: without its query (which may
/// carry anything), control characters escaped, cut short.
fn shown_location(location: &str) -> String {
    const MAX: usize = 200;
    let without_query = location.split(['?', '#']).next().unwrap_or_default();
    let shown: String = without_query.escape_debug().collect();
    match shown.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &shown[..at]),
        None => shown,
    }
}

/// The path without its query string, for messages.
fn path_only(path: &str) -> &str {
    path.split('?').next().unwrap_or(path)
}

fn transport_message(err: &ureq::Error, timeout: Duration) -> String {
    match err {
        ureq::Error::Timeout(_) => {
            format!("no answer: timed out after {:.0} s", timeout.as_secs_f64())
        }
        other => other.to_string(),
    }
}

/// GitLab's error message from a response body: `{"message": …}` (a string
/// or a map of field errors) or `{"error": …}`, cut short.
fn gitlab_message(body: &str) -> String {
    const MAX: usize = 300;
    let message = match serde_json::from_str::<serde_json::Value>(body) {
        Ok(v) => match v.get("message").or_else(|| v.get("error")) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        },
        Err(_) => String::new(),
    };
    let message = message.split_whitespace().collect::<Vec<_>>().join(" ");
    match message.char_indices().nth(MAX) {
        Some((at, _)) => format!("{}…", &message[..at]),
        None => message,
    }
}

fn tls_config(ca_file: Option<&Path>) -> Result<TlsConfig> {
    let builder = TlsConfig::builder();
    let Some(path) = ca_file else {
        return Ok(builder.build());
    };
    let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let certs: Vec<Certificate<'static>> = ureq::tls::parse_pem(&pem)
        .filter_map(|item| match item {
            Ok(PemItem::Certificate(cert)) => Some(cert),
            _ => None,
        })
        .collect();
    if certs.is_empty() {
        return Err(Error::GitLab {
            request: "TLS set-up".to_string(),
            message: format!("{} holds no PEM certificate", path.display()),
        });
    }
    Ok(builder
        .root_certs(RootCerts::new_with_certs(&certs))
        .build())
}

/// Percent-encodes one URL path segment (a project path such as
/// `group/project` becomes `group%2Fproject`, as GitLab expects).
pub fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let policy = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        let ms = |d: Duration| d.as_millis();
        assert_eq!(ms(policy.delay(1, None)), 100);
        assert_eq!(ms(policy.delay(2, None)), 200);
        assert_eq!(ms(policy.delay(3, None)), 350);
        assert_eq!(ms(policy.delay(1, Some(Duration::from_secs(0)))), 0);
        assert_eq!(ms(policy.delay(1, Some(Duration::from_secs(60)))), 350);
    }

    #[test]
    fn failures_classify_and_explain() {
        let status = |status| Failure::Status {
            status,
            message: String::new(),
            retry_after: None,
        };
        assert!(status(429).retryable());
        assert!(status(502).retryable());
        assert!(!status(404).retryable());
        assert!(Failure::Transport("reset".into()).retryable());
        assert!(status(401).message().contains("KOPSCI_GITLAB_TOKEN"));
        assert!(status(403).message().contains("`api` scope"));
    }

    #[test]
    fn gitlab_messages_are_extracted_and_cut() {
        assert_eq!(
            gitlab_message(r#"{"message":"404 Not found"}"#),
            "404 Not found"
        );
        assert_eq!(
            gitlab_message(r#"{"message":{"note":["is too long"]}}"#),
            r#"{"note":["is too long"]}"#
        );
        assert_eq!(
            gitlab_message(r#"{"error":"insufficient_scope"}"#),
            "insufficient_scope"
        );
        assert_eq!(gitlab_message("<html>"), "");
        let long = format!(r#"{{"message":"{}"}}"#, "x".repeat(400));
        assert_eq!(gitlab_message(&long).chars().count(), 301);
    }

    #[test]
    fn the_token_has_one_origin() {
        assert_eq!(
            origin("https://GitLab.example.com:8443/api/v4").as_deref(),
            Some("https://gitlab.example.com:8443")
        );
        assert_eq!(
            origin("http://127.0.0.1:1/api/v4").as_deref(),
            Some("http://127.0.0.1:1")
        );
        for bad in [
            "ftp://x/api/v4",
            "gitlab.example.com/api/v4",
            "https://user:pw@x/api/v4",
            "https:///x",
        ] {
            assert_eq!(origin(bad), None, "{bad}");
        }
        assert!(GitLabApi::new("file:///etc", Secret::new("t"), None).is_err());
    }

    #[test]
    fn redirects_are_never_retried_and_say_where_they_pointed() {
        let redirect = Failure::Redirect {
            status: 302,
            location: shown_location("https://evil.example/x?private_token=abc\u{1b}"),
            origin: "https://gitlab.example.com".into(),
        };
        assert!(!redirect.retryable());
        assert!(!Failure::Invalid("x".into()).retryable());
        let message = redirect.message();
        assert!(
            message.contains("a redirect to https://evil.example/x, not followed"),
            "{message}"
        );
        assert!(
            message.contains("only to https://gitlab.example.com (CI_API_V4_URL)"),
            "{message}"
        );
        assert_eq!(shown_location("/a\u{1b}b"), "/a\\u{1b}b");
    }

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("42"), "42");
        assert_eq!(encode_segment("group/sub project"), "group%2Fsub%20project");
    }

    #[test]
    fn debug_hides_the_token() {
        let api = GitLabApi::new(
            "http://127.0.0.1:1/api/v4/",
            Secret::new("glpat-very-secret"),
            None,
        )
        .unwrap();
        let shown = format!("{api:?}");
        assert!(!shown.contains("glpat"), "{shown}");
        assert!(shown.contains("http://127.0.0.1:1/api/v4\""), "{shown}");
    }
}
