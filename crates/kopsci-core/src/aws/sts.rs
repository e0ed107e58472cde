//! The AWS identity a stage runs as: the job's own (inherited by kops), or
//! a role kopsci assumes first when the fleet file sets `aws.role_arn` —
//! STS `AssumeRole` with the external ID, using the standard credential
//! chain (environment keys, profile, GitLab OIDC web identity, instance
//! profile) as the caller. kops then gets exactly the temporary keys
//! ([`AwsIdentity::child_env`]), and kopsci reads the state store with them.
//!
//! The STS endpoint is AWS' unless `AWS_ENDPOINT_URL_STS` (or
//! `AWS_ENDPOINT_URL`) names another, as the AWS SDKs and CLI allow.
//! Neither the external ID nor any credential is ever logged.

use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_sts::config::Region;
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore};

use crate::aws::identity::{AwsCredentials, AwsIdentity, Secret};
use crate::aws::{AwsSettings, ExternalId};
use crate::errors::{Error, Result};
use crate::state::S3Settings;

/// Where STS is asked, and with which caller credentials; the environment
/// decides both in production, tests pass them in.
#[derive(Debug, Clone, Default)]
pub struct StsClientSettings {
    /// `AWS_ENDPOINT_URL_STS`, else `AWS_ENDPOINT_URL`.
    pub endpoint: Option<String>,
    /// Fallback region when the fleet sets none (`AWS_REGION`,
    /// `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// `AWS_CA_BUNDLE`.
    pub ca_bundle: Option<std::path::PathBuf>,
    /// Caller credentials instead of the standard chain (tests).
    pub caller: Option<AwsCredentials>,
    /// `CI_JOB_ID`, to tell sessions apart in CloudTrail.
    pub job_id: Option<String>,
}

impl StsClientSettings {
    pub fn from_env() -> StsClientSettings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        StsClientSettings {
            endpoint: var("AWS_ENDPOINT_URL_STS").or_else(|| var("AWS_ENDPOINT_URL")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            ca_bundle: var("AWS_CA_BUNDLE").map(Into::into),
            caller: None,
            job_id: var("CI_JOB_ID"),
        }
    }
}

/// The identity for a cluster with these settings: inherited, or an
/// assumed role.
pub fn resolve_identity(settings: &AwsSettings, sts: &StsClientSettings) -> Result<AwsIdentity> {
    let Some(role) = &settings.role_arn else {
        return Ok(AwsIdentity::Inherit {
            region: settings.region.clone(),
        });
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::AssumeRole {
            role: role.clone(),
            message: format!("cannot start the I/O runtime: {e}"),
        })?;
    runtime.block_on(assume_role(role, settings, sts))
}

/// S3 settings that read the store as `identity`.
pub fn s3_for(identity: &AwsIdentity, base: &S3Settings) -> S3Settings {
    let mut s3 = base.clone();
    match identity {
        AwsIdentity::Explicit {
            credentials,
            region,
            ..
        } => {
            s3.session_credentials = Some(credentials.clone());
            if s3.region_hint.is_none() {
                s3.region_hint = region.clone();
            }
        }
        AwsIdentity::Inherit { region } => {
            if s3.region_hint.is_none() {
                s3.region_hint = region.clone();
            }
        }
    }
    s3
}

/// The default session name: `kopsci`, or `kopsci-<job id>` in GitLab CI.
fn session_name(settings: &AwsSettings, sts: &StsClientSettings) -> String {
    if let Some(name) = &settings.session_name {
        return name.clone();
    }
    match &sts.job_id {
        Some(id) if id.chars().all(|c| c.is_ascii_alphanumeric()) && id.len() <= 50 => {
            format!("kopsci-{id}")
        }
        _ => "kopsci".to_string(),
    }
}

async fn assume_role(
    role: &str,
    settings: &AwsSettings,
    sts: &StsClientSettings,
) -> Result<AwsIdentity> {
    let fail = |message: String| Error::AssumeRole {
        role: role.to_string(),
        message,
    };
    let external_id = match &settings.external_id {
        None => None,
        Some(ExternalId::Literal(id)) => Some(id.clone()),
        Some(ExternalId::Env(name)) => match std::env::var(name) {
            Ok(v) if !v.is_empty() => Some(v),
            _ => {
                return Err(fail(format!(
                    "aws.external_id_env names `{name}`, which is not set"
                )));
            }
        },
    };
    let region = settings
        .region
        .clone()
        .or_else(|| sts.region.clone())
        .unwrap_or_else(|| "us-east-1".to_string());
    let plain_http = sts
        .endpoint
        .as_deref()
        .is_some_and(|e| e.to_ascii_lowercase().starts_with("http://"));
    let http_client = if plain_http {
        aws_smithy_http_client::Builder::new().build_http()
    } else {
        https_client(sts).map_err(&fail)?
    };
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client)
        .region(Region::new(region.clone()))
        .retry_config(RetryConfig::standard().with_max_attempts(3))
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(30))
                .build(),
        );
    if let Some(endpoint) = &sts.endpoint {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some(caller) = &sts.caller {
        loader = loader.credentials_provider(caller.to_sdk("kopsci-caller"));
    }
    let config = loader.load().await;
    let client = aws_sdk_sts::Client::new(&config);
    let out = client
        .assume_role()
        .role_arn(role)
        .role_session_name(session_name(settings, sts))
        .set_external_id(external_id)
        .set_duration_seconds(settings.duration_seconds.map(|d| d as i32))
        .send()
        .await
        .map_err(|err| fail(crate::sdk_error::message(&err)))?;
    let Some(creds) = out.credentials() else {
        return Err(fail("STS answered without credentials".into()));
    };
    let expires = SystemTime::try_from(*creds.expiration()).ok();
    Ok(AwsIdentity::Explicit {
        credentials: AwsCredentials {
            access_key_id: creds.access_key_id().to_string(),
            secret_access_key: Secret::new(creds.secret_access_key()),
            session_token: Some(Secret::new(creds.session_token())),
        },
        region: Some(region),
        source: format!("assumed role {role}"),
        expires,
    })
}

/// HTTPS with rustls: the system roots plus `AWS_CA_BUNDLE`.
fn https_client(
    sts: &StsClientSettings,
) -> std::result::Result<aws_sdk_sts::config::SharedHttpClient, String> {
    let mut trust = TrustStore::empty().with_native_roots(true);
    if let Some(bundle) = &sts.ca_bundle {
        let pem = std::fs::read(bundle).map_err(|e| format!("{}: {e}", bundle.display()))?;
        trust = trust.with_pem_certificate(pem);
    }
    let tls_context = TlsContext::builder()
        .with_trust_store(trust)
        .build()
        .map_err(|e| format!("setting up TLS: {e}"))?;
    Ok(aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::Ring,
        ))
        .tls_context(tls_context)
        .build_https())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A one-shot STS: answers the first request with `status` and `body`,
    /// and hands back the request's form body.
    fn mock_sts(status: &str, body: &'static str) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        let status = status.to_string();
        std::thread::spawn(move || {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
                if line == "\r\n" {
                    break;
                }
            }
            let mut form = vec![0u8; length];
            reader.read_exact(&mut form).unwrap();
            let _ = tx.send(String::from_utf8_lossy(&form).into_owned());
            let mut stream = stream;
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\ncontent-type: text/xml\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        });
        (format!("http://{addr}"), rx)
    }

    const OK: &str = r#"<AssumeRoleResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <AssumeRoleResult>
    <Credentials>
      <AccessKeyId>ASIAASSUMEDEXAMPLE</AccessKeyId>
      <SecretAccessKey>assumed-secret</SecretAccessKey>
      <SessionToken>assumed-token</SessionToken>
      <Expiration>2099-01-01T00:00:00Z</Expiration>
    </Credentials>
    <AssumedRoleUser>
      <AssumedRoleId>AROAEXAMPLE:kopsci-42</AssumedRoleId>
      <Arn>arn:aws:sts::123456789012:assumed-role/kops/kopsci-42</Arn>
    </AssumedRoleUser>
  </AssumeRoleResult>
  <ResponseMetadata><RequestId>r</RequestId></ResponseMetadata>
</AssumeRoleResponse>"#;

    fn sts(endpoint: String) -> StsClientSettings {
        StsClientSettings {
            endpoint: Some(endpoint),
            region: None,
            ca_bundle: None,
            caller: Some(AwsCredentials {
                access_key_id: "AKIACALLEREXAMPLE".into(),
                secret_access_key: Secret::new("caller-secret"),
                session_token: None,
            }),
            job_id: Some("42".into()),
        }
    }

    fn settings() -> AwsSettings {
        AwsSettings {
            role_arn: Some("arn:aws:iam::123456789012:role/kops".into()),
            external_id: Some(ExternalId::Literal("team-a:7".into())),
            region: Some("eu-west-1".into()),
            session_name: None,
            duration_seconds: Some(7200),
        }
    }

    #[test]
    fn assumes_the_role_with_the_external_id() {
        let (endpoint, requests) = mock_sts("200 OK", OK);
        let identity = resolve_identity(&settings(), &sts(endpoint)).unwrap();
        let form = requests.recv().unwrap();
        for part in [
            "Action=AssumeRole",
            "RoleArn=arn%3Aaws%3Aiam%3A%3A123456789012%3Arole%2Fkops",
            "ExternalId=team-a%3A7",
            "RoleSessionName=kopsci-42",
            "DurationSeconds=7200",
        ] {
            assert!(form.contains(part), "{part} not in {form}");
        }
        let AwsIdentity::Explicit {
            credentials,
            region,
            source,
            expires,
        } = &identity
        else {
            panic!("not assumed: {identity:?}");
        };
        assert_eq!(credentials.access_key_id, "ASIAASSUMEDEXAMPLE");
        assert_eq!(credentials.secret_access_key.expose(), "assumed-secret");
        assert_eq!(
            credentials.session_token.as_ref().map(Secret::expose),
            Some("assumed-token")
        );
        assert_eq!(region.as_deref(), Some("eu-west-1"));
        assert_eq!(source, "assumed role arn:aws:iam::123456789012:role/kops");
        assert!(expires.is_some());
        let shown = format!("{identity:?} {}", identity.describe());
        for secret in [
            "assumed-secret",
            "assumed-token",
            "team-a:7",
            "ASIAASSUMEDEXAMPLE",
        ] {
            assert!(!shown.contains(secret), "{secret} shown: {shown}");
        }
        let s3 = s3_for(&identity, &S3Settings::default());
        assert_eq!(
            s3.session_credentials
                .as_ref()
                .map(|c| c.access_key_id.as_str()),
            Some("ASIAASSUMEDEXAMPLE")
        );
        assert_eq!(s3.region_hint.as_deref(), Some("eu-west-1"));
    }

    #[test]
    fn an_sts_refusal_is_one_clear_error() {
        let (endpoint, _requests) = mock_sts(
            "403 Forbidden",
            r#"<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code><Message>not allowed</Message></Error><RequestId>r</RequestId></ErrorResponse>"#,
        );
        let err = resolve_identity(&settings(), &sts(endpoint))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "cannot assume role `arn:aws:iam::123456789012:role/kops`: AccessDenied: not allowed"
        );
    }

    #[test]
    fn without_a_role_the_identity_is_inherited() {
        let plain = AwsSettings {
            region: Some("us-east-2".into()),
            ..AwsSettings::default()
        };
        assert_eq!(
            resolve_identity(&plain, &StsClientSettings::default()).unwrap(),
            AwsIdentity::Inherit {
                region: Some("us-east-2".into())
            }
        );
    }

    #[test]
    fn a_missing_external_id_variable_is_named() {
        let mut s = settings();
        s.external_id = Some(ExternalId::Env(
            "KOPSCI_TEST_SURELY_UNSET_EXTERNAL_ID".into(),
        ));
        let err = resolve_identity(&s, &sts("http://127.0.0.1:9".into()))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`KOPSCI_TEST_SURELY_UNSET_EXTERNAL_ID`, which is not set"),
            "{err}"
        );
    }
}
