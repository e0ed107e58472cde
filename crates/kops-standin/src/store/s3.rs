//! `s3://bucket[/prefix]` state stores, configured from the environment the
//! way kOps documents it (`reference/kops/state.md`): `S3_ENDPOINT` (else
//! `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`) for an S3-compatible
//! server, reached path-style; `S3_ACCESS_KEY_ID` + `S3_SECRET_ACCESS_KEY`
//! as static credentials, else the standard AWS credential chain;
//! `S3_REGION`, else `AWS_REGION`, else `us-east-1`. Bucket-region discovery
//! for real AWS is left out: tests talk to a local server.

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use aws_config::BehaviorVersion;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::{Credentials, Region};
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};
use tokio::runtime::Runtime;

use super::{Store, check_key};

pub struct S3Store {
    url: String,
    runtime: Runtime,
    client: Client,
    bucket: String,
    /// Key prefix of the store root: empty, or ending with `/`.
    prefix: String,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl S3Store {
    pub fn connect(url: &str, bucket: &str, prefix: &str) -> Result<S3Store> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("error starting the S3 client runtime")?;
        let client = runtime.block_on(build_client())?;
        Ok(S3Store {
            url: url.to_string(),
            runtime,
            client,
            bucket: bucket.to_string(),
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
        })
    }

    fn full_key(&self, key: &str) -> Result<String> {
        check_key(key)?;
        Ok(format!("{}{key}", self.prefix))
    }

    fn location(&self, key: &str) -> String {
        format!("s3://{}/{}{key}", self.bucket, self.prefix)
    }

    /// All object keys under `full_prefix`, and the common prefixes when a
    /// `delimiter` is given.
    fn list_raw(
        &self,
        full_prefix: &str,
        delimiter: Option<&str>,
    ) -> Result<(Vec<String>, Vec<String>)> {
        self.runtime.block_on(async {
            let mut keys = Vec::new();
            let mut prefixes = Vec::new();
            let mut token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(full_prefix)
                    .set_delimiter(delimiter.map(str::to_string))
                    .set_continuation_token(token.clone())
                    .send()
                    .await
                    .map_err(|e| s3_error(&format!("listing {}", self.location("")), e))?;
                keys.extend(
                    out.contents()
                        .iter()
                        .filter_map(|o| o.key().map(str::to_string)),
                );
                prefixes.extend(
                    out.common_prefixes()
                        .iter()
                        .filter_map(|p| p.prefix().map(str::to_string)),
                );
                match out.next_continuation_token() {
                    Some(next)
                        if out.is_truncated().unwrap_or(false)
                            && Some(next) != token.as_deref() =>
                    {
                        token = Some(next.to_string());
                    }
                    _ => break,
                }
            }
            Ok((keys, prefixes))
        })
    }
}

impl Store for S3Store {
    fn url(&self) -> &str {
        &self.url
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = self.full_key(key)?;
        self.runtime.block_on(async {
            let out = match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
            {
                Ok(out) => out,
                Err(e) => {
                    let missing = e.as_service_error().is_some_and(|s| s.is_no_such_key())
                        || e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                    if missing {
                        return Ok(None);
                    }
                    return Err(s3_error(
                        &format!("error reading {}", self.location(key)),
                        e,
                    ));
                }
            };
            let body = out
                .body
                .collect()
                .await
                .map_err(|e| anyhow!("error reading {}: {e}", self.location(key)))?;
            Ok(Some(body.into_bytes().to_vec()))
        })
    }

    fn write(&self, key: &str, data: &[u8]) -> Result<()> {
        let full = self.full_key(key)?;
        self.runtime.block_on(async {
            let mut request = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(&full)
                .body(ByteStream::from(data.to_vec()));
            // kOps documents KOPS_STATE_S3_ACL for the objects it writes.
            if let Some(acl) = env("KOPS_STATE_S3_ACL") {
                request = request.acl(acl.as_str().into());
            }
            request
                .send()
                .await
                .map_err(|e| s3_error(&format!("error writing {}", self.location(key)), e))?;
            Ok(())
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        let full = self.full_key(key)?;
        self.runtime.block_on(async {
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&full)
                .send()
                .await
                .map_err(|e| s3_error(&format!("error deleting {}", self.location(key)), e))?;
            Ok(())
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let full_prefix = format!("{}{prefix}", self.prefix);
        let (keys, _) = self.list_raw(&full_prefix, None)?;
        let mut rel: Vec<String> = keys
            .into_iter()
            .filter_map(|k| k.strip_prefix(&self.prefix).map(str::to_string))
            // Directory markers some tools create are not objects.
            .filter(|k| !k.is_empty() && !k.ends_with('/'))
            .collect();
        rel.sort();
        Ok(rel)
    }

    fn top_level_dirs(&self) -> Result<Vec<String>> {
        let (_, prefixes) = self.list_raw(&self.prefix, Some("/"))?;
        let mut names: Vec<String> = prefixes
            .into_iter()
            .filter_map(|p| {
                p.strip_prefix(&self.prefix)
                    .map(|n| n.trim_end_matches('/').to_string())
            })
            .filter(|n| !n.is_empty())
            .collect();
        names.sort();
        Ok(names)
    }
}

async fn build_client() -> Result<Client> {
    let region = env("S3_REGION")
        .or_else(|| env("AWS_REGION"))
        .unwrap_or_else(|| "us-east-1".to_string());
    let endpoint = env("S3_ENDPOINT")
        .or_else(|| env("AWS_ENDPOINT_URL_S3"))
        .or_else(|| env("AWS_ENDPOINT_URL"))
        // kOps accepts `host:port` in S3_ENDPOINT.
        .map(|e| {
            if e.contains("://") {
                e
            } else {
                format!("https://{e}")
            }
        });

    let mut trust = TrustStore::empty().with_native_roots(true);
    if let Some(bundle) = env("AWS_CA_BUNDLE").map(PathBuf::from) {
        let pem = std::fs::read(&bundle)
            .with_context(|| format!("error reading AWS_CA_BUNDLE {}", bundle.display()))?;
        trust = trust.with_pem_certificate(pem);
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| anyhow!("error setting up TLS: {e}"))?;
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls_context)
        .build_https();

    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .region(Region::new(region.clone()));
    if let (Some(id), Some(secret)) = (env("S3_ACCESS_KEY_ID"), env("S3_SECRET_ACCESS_KEY")) {
        loader = loader.credentials_provider(Credentials::new(
            id,
            secret,
            None,
            None,
            "kops-s3-variables",
        ));
    }
    let sdk_config = loader.load().await;
    let mut config = aws_sdk_s3::config::Builder::from(&sdk_config).region(Region::new(region));
    if let Some(endpoint) = endpoint {
        // Path-style: `bucket.127.0.0.1` does not resolve.
        config = config.endpoint_url(endpoint).force_path_style(true);
    }
    Ok(Client::from_conf(config.build()))
}

/// The S3 error code and message when the server sent them, else the SDK's
/// error chain (never credentials).
fn s3_error<E, R>(context: &str, err: SdkError<E, R>) -> anyhow::Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = match err.as_service_error() {
        Some(service) => match (service.code(), service.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_string(),
            _ => DisplayErrorContext(&err).to_string(),
        },
        None => DisplayErrorContext(&err).to_string(),
    };
    anyhow!("{context}: {message}")
}
