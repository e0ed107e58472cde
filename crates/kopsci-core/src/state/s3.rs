//! Reading an S3 state store: client setup the way kOps does it (standard
//! AWS credential chain, `S3_*` variables for S3-compatible stores, bucket
//! region discovery), paginated listing and streamed GETs. Retries,
//! backoff and timeouts are the SDK's; only a body that breaks off after the
//! response started is retried here, because the SDK has already returned.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::EncodingType;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::dns::{DnsFuture, ResolveDns, ResolveDnsError};
use tokio::sync::OnceCell;

use crate::errors::{Error, Result};
use crate::state::keys::{self, Listed};
use crate::state::record::normalize_etag;
use crate::state::source::{Entry, Sink};
use crate::text::escape_controls;

/// Region kOps (and the AWS SDKs) fall back to.
const DEFAULT_REGION: &str = "us-east-1";

/// How to reach S3, read once from the environment so the rest of the code
/// never looks at variables. Its `Debug` output never shows the secret.
#[derive(Clone, Default)]
pub struct S3Settings {
    /// A custom endpoint (`S3_ENDPOINT`, else `AWS_ENDPOINT_URL_S3`, else
    /// `AWS_ENDPOINT_URL`). Custom endpoints get path-style addressing.
    pub endpoint: Option<String>,
    /// `S3_REGION`: used as is, no discovery.
    pub region: Option<String>,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`: where to ask for the bucket's
    /// region.
    pub region_hint: Option<String>,
    /// `S3_ACCESS_KEY_ID` + `S3_SECRET_ACCESS_KEY`, kOps' static credentials
    /// for S3-compatible stores; otherwise the standard AWS chain.
    pub static_credentials: Option<(String, String)>,
    /// Credentials kopsci resolved itself (an assumed role, fleet file
    /// `aws.role_arn`), used instead of the standard chain. Static `S3_*`
    /// credentials still win: they are kOps' own setting for the store.
    pub session_credentials: Option<crate::aws::AwsCredentials>,
    /// `AWS_CA_BUNDLE`: extra trusted certificates (PEM).
    pub ca_bundle: Option<PathBuf>,
    /// Attempts per request, first one included (SDK standard retry mode).
    pub max_attempts: u32,
    /// TCP/TLS connect timeout.
    pub connect_timeout: Duration,
    /// Time to the first byte of a response.
    pub read_timeout: Duration,
}

impl fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("region_hint", &self.region_hint)
            .field(
                "static_credentials",
                &self.static_credentials.as_ref().map(|_| "<set>"),
            )
            .field("session_credentials", &self.session_credentials)
            .field("ca_bundle", &self.ca_bundle)
            .field("max_attempts", &self.max_attempts)
            .field("connect_timeout", &self.connect_timeout)
            .field("read_timeout", &self.read_timeout)
            .finish()
    }
}

/// Default attempts per request: the SDK's 3 is too few against a throttling
/// bucket shared by a whole fleet's pipelines.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

impl S3Settings {
    /// Reads the kOps and AWS variables.
    pub fn from_env() -> S3Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let static_credentials = match (var("S3_ACCESS_KEY_ID"), var("S3_SECRET_ACCESS_KEY")) {
            (Some(id), Some(secret)) => Some((id, secret)),
            _ => None,
        };
        S3Settings {
            endpoint: var("S3_ENDPOINT")
                .or_else(|| var("AWS_ENDPOINT_URL_S3"))
                .or_else(|| var("AWS_ENDPOINT_URL")),
            region: var("S3_REGION"),
            region_hint: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            static_credentials,
            session_credentials: None,
            ca_bundle: var("AWS_CA_BUNDLE").map(PathBuf::from),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }

    /// The endpoint with a scheme: kOps accepts `host:port` in `S3_ENDPOINT`.
    fn endpoint_url(&self) -> Option<String> {
        self.endpoint.as_ref().map(|e| {
            if e.contains("://") {
                e.clone()
            } else {
                format!("https://{e}")
            }
        })
    }
}

/// A connected bucket, listing and reading under one key prefix.
#[derive(Clone, Debug)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Full key prefix of the cluster directory, ending with `/`.
    prefix: String,
    max_attempts: u32,
}

impl S3Store {
    /// Connects to `bucket`, for the cluster directory at `prefix` (ending
    /// with `/`). Discovers the bucket's region when none is configured.
    pub async fn connect(settings: &S3Settings, bucket: &str, prefix: String) -> Result<S3Store> {
        let endpoint = settings.endpoint_url();
        let region = settings
            .region
            .clone()
            .or_else(|| settings.region_hint.clone())
            .unwrap_or_else(|| DEFAULT_REGION.to_string());
        let sdk_config = load_sdk_config(settings, &region).await?;
        let build = |region: &str| {
            let mut config = aws_sdk_s3::config::Builder::from(&sdk_config)
                .region(Region::new(region.to_string()));
            if let Some(endpoint) = &endpoint {
                config = config.endpoint_url(endpoint).force_path_style(true);
            }
            Client::from_conf(config.build())
        };
        let mut client = build(&region);
        if settings.region.is_none() && endpoint.is_none() {
            // As kOps does: the bucket may live anywhere, ask S3 where.
            if let Some(actual) = bucket_region(&client, bucket).await?
                && actual != region
            {
                tracing::debug!(bucket, region = %actual, "bucket region discovered");
                client = build(&actual);
            }
        }
        Ok(S3Store {
            client,
            bucket: bucket.to_string(),
            prefix,
            max_attempts: settings.max_attempts.max(1),
        })
    }

    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// One page of the listing; `None` token starts it. Returns the checked
    /// entries and the token of the next page, if any.
    pub async fn list_page(&self, token: Option<String>) -> Result<(Vec<Entry>, Option<String>)> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(&self.prefix)
            .set_continuation_token(token.clone())
            // XML 1.0 cannot carry most control characters: without this a
            // key holding one makes the whole listing unparseable.
            .encoding_type(EncodingType::Url)
            .send()
            .await
            .map_err(|e| s3_error(format!("listing {}", self.location()), e))?;
        // A server that ignores the request sends keys as they are; only a
        // listing that says it is URL-encoded is decoded.
        let encoded = out.encoding_type() == Some(&EncodingType::Url);
        let mut entries = Vec::with_capacity(out.contents().len());
        for object in out.contents() {
            let Some(listed_key) = object.key() else {
                continue;
            };
            let full_key = if encoded {
                keys::url_decode(listed_key)?
            } else {
                listed_key.to_string()
            };
            let size = u64::try_from(object.size().unwrap_or(0)).unwrap_or(0);
            match keys::classify(&full_key, &self.prefix, size)? {
                Listed::DirMarker => {}
                Listed::Object(rel) => entries.push(Entry {
                    key: rel.to_string(),
                    size,
                    etag: object.e_tag().and_then(normalize_etag),
                }),
            }
        }
        let next = if out.is_truncated().unwrap_or(false) {
            match out.next_continuation_token() {
                Some(next) if Some(next) != token.as_deref() => Some(next.to_string()),
                _ => {
                    return Err(Error::S3 {
                        context: format!("listing {}", self.location()),
                        message: "the server says the listing is truncated but gives no new continuation token".into(),
                    });
                }
            }
        } else {
            None
        };
        Ok((entries, next))
    }

    /// Streams the object at `key` (relative to the cluster directory) into
    /// `sink`; returns its ETag. A body that breaks off is fetched again from
    /// the start, up to the configured attempts.
    pub async fn fetch(&self, key: &str, sink: &mut dyn Sink) -> Result<Option<String>> {
        let full_key = format!("{}{key}", self.prefix);
        let context = || format!("reading s3://{}/{full_key}", self.bucket);
        let mut attempt = 1;
        loop {
            let out = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full_key)
                .send()
                .await
                .map_err(|e| s3_error(context(), e))?;
            let etag = out.e_tag().and_then(normalize_etag);
            let mut body = out.body;
            sink.ready().await?;
            sink.reset()?;
            let broke = loop {
                match body.next().await {
                    Some(Ok(chunk)) => sink.write(&chunk)?,
                    Some(Err(e)) => break Some(error_chain(&e)),
                    None => break None,
                }
            };
            match broke {
                None => return Ok(etag),
                Some(message) if attempt >= self.max_attempts => {
                    return Err(Error::S3 {
                        context: context(),
                        message: format!(
                            "response body broke off after {attempt} attempts: {message}"
                        ),
                    });
                }
                Some(message) => {
                    tracing::debug!(key = %full_key, attempt, %message, "response body broke off, fetching again");
                    tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                    attempt += 1;
                }
            }
        }
    }
}

/// The region the bucket is in, from `HeadBucket` (S3 names it in the
/// `x-amz-bucket-region` header, also on the redirect error a wrong-region
/// request gets).
async fn bucket_region(client: &Client, bucket: &str) -> Result<Option<String>> {
    match client.head_bucket().bucket(bucket).send().await {
        Ok(out) => Ok(out.bucket_region().map(str::to_string)),
        Err(err) => {
            let from_header = err
                .raw_response()
                .and_then(|r| r.headers().get("x-amz-bucket-region"))
                .map(str::to_string);
            match from_header {
                Some(region) => Ok(Some(region)),
                None => Err(s3_error(
                    format!("finding the region of bucket `{bucket}`"),
                    err,
                )),
            }
        }
    }
}

async fn load_sdk_config(settings: &S3Settings, region: &str) -> Result<aws_config::SdkConfig> {
    let http_client = http_client(settings)?;
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .region(Region::new(region.to_string()))
        .retry_config(RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1)))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(settings.connect_timeout)
                .read_timeout(settings.read_timeout)
                .build(),
        );
    if let Some((id, secret)) = &settings.static_credentials {
        loader = loader.credentials_provider(Credentials::new(
            id.clone(),
            secret.clone(),
            None,
            None,
            "kops-s3-variables",
        ));
    } else if let Some(session) = &settings.session_credentials {
        loader = loader.credentials_provider(session.to_sdk("kopsci-assumed-role"));
    }
    Ok(loader.load().await)
}

/// HTTPS with rustls, trusting the system roots plus `AWS_CA_BUNDLE` (which
/// the machine's other AWS tools honour too). A plain-HTTP endpoint skips
/// loading the trust store: that costs more than a whole snapshot of a
/// local store.
fn http_client(settings: &S3Settings) -> Result<aws_sdk_s3::config::SharedHttpClient> {
    let plain_http = settings
        .endpoint_url()
        .is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"));
    let mut trust = TrustStore::empty().with_native_roots(!plain_http);
    if !plain_http && let Some(bundle) = &settings.ca_bundle {
        let pem = std::fs::read(bundle).map_err(|e| Error::io(bundle, e))?;
        trust = trust.with_pem_certificate(pem);
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| Error::S3 {
            context: "setting up TLS".into(),
            message: e.to_string(),
        })?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls_context)
        .build_with_resolver(CachingResolver::default()))
}

/// Resolves each host once per process. A snapshot opens dozens of
/// connections at once, and the default resolver runs a blocking
/// `getaddrinfo` on a new thread for every one of them; IP literals need no
/// lookup at all.
#[derive(Debug, Clone, Default)]
struct CachingResolver {
    /// One lookup per host name, shared by every connection to it.
    hosts: Arc<Mutex<HashMap<String, Arc<Lookup>>>>,
}

type Lookup = OnceCell<Vec<IpAddr>>;

impl ResolveDns for CachingResolver {
    fn resolve_dns<'a>(&'a self, name: &'a str) -> DnsFuture<'a> {
        let literal = name.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>() {
            return DnsFuture::ready(Ok(vec![ip]));
        }
        let cell = Arc::clone(
            self.hosts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .entry(name.to_string())
                .or_default(),
        );
        DnsFuture::new(async move {
            cell.get_or_try_init(|| async {
                let addrs = tokio::net::lookup_host((name, 0))
                    .await
                    .map_err(ResolveDnsError::new)?;
                Ok(addrs.map(|a| a.ip()).collect::<Vec<_>>())
            })
            .await
            .cloned()
        })
    }
}

/// An error and its sources on one line, without the SDK's debug dumps.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.ends_with(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// One message per failed request: the S3 error code when the server sent
/// one, else the SDK's error chain (which never holds credentials).
fn s3_error<E, R>(context: String, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug + 'static,
{
    let message = crate::sdk_error::message(&err);
    // The server's words are untrusted: they never reach the terminal raw.
    Error::S3 {
        context,
        message: escape_controls(&message).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_secret() {
        let settings = S3Settings {
            static_credentials: Some(("AKIDEXAMPLE".into(), "wJalrXUtnFEMI/K7MDENG".into())),
            ..S3Settings::default()
        };
        let text = format!("{settings:?}");
        assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
        assert!(!text.contains("AKIDEXAMPLE"), "{text}");
        assert!(text.contains("<set>"), "{text}");
    }

    #[test]
    fn endpoints_without_a_scheme_are_https_as_in_kops() {
        let with = |e: &str| S3Settings {
            endpoint: Some(e.into()),
            ..S3Settings::default()
        };
        assert_eq!(
            with("minio.example.com:9000").endpoint_url().as_deref(),
            Some("https://minio.example.com:9000")
        );
        assert_eq!(
            with("http://127.0.0.1:9000").endpoint_url().as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert_eq!(S3Settings::default().endpoint_url(), None);
    }

    #[tokio::test]
    async fn ip_literals_resolve_without_a_lookup_and_names_are_cached() {
        let resolver = CachingResolver::default();
        assert_eq!(
            resolver.resolve_dns("127.0.0.1").await.unwrap(),
            vec![IpAddr::from([127, 0, 0, 1])]
        );
        assert_eq!(
            resolver.resolve_dns("[::1]").await.unwrap(),
            vec!["::1".parse::<IpAddr>().unwrap()]
        );
        assert!(resolver.hosts.lock().unwrap().is_empty());
        let first = resolver.resolve_dns("localhost").await.unwrap();
        assert!(!first.is_empty());
        assert_eq!(resolver.resolve_dns("localhost").await.unwrap(), first);
        assert_eq!(resolver.hosts.lock().unwrap().len(), 1);
    }
}
