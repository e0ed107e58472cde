//! The AWS identity a kops child runs as.
//!
//! kopsci decides who kops is towards AWS. Either kops resolves credentials
//! itself from the environment kopsci inherited (the standard chain: keys,
//! profile, GitLab OIDC web identity, instance profile), or kopsci resolved
//! them (for example by assuming a role with an external ID) and hands kops
//! exactly those keys — and then every variable that could make the AWS SDK
//! in kops pick a *different* identity is removed from its environment.
//!
//! Secrets never appear in `Debug` output; there is no `Display`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::time::SystemTime;

pub use crate::secret::Secret;

/// Static AWS credentials, as an STS `AssumeRole` returns them (or as a job
/// provides them).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

impl fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key_id", &key_hint(&self.access_key_id))
            .field("secret_access_key", &self.secret_access_key)
            .field("session_token", &self.session_token)
            .finish()
    }
}

impl AwsCredentials {
    /// The same credentials for an AWS SDK client; `source` names them in
    /// the SDK's own (redacted) debug output.
    pub fn to_sdk(&self, source: &'static str) -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            self.access_key_id.clone(),
            self.secret_access_key.expose().to_string(),
            self.session_token.as_ref().map(|t| t.expose().to_string()),
            None,
            source,
        )
    }
}

/// Enough of an access key ID to tell two apart in a log, not to use one:
/// the last four characters.
fn key_hint(id: &str) -> String {
    let tail: String = id
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    if id.chars().count() > 8 {
        format!("…{tail}")
    } else {
        "<redacted>".to_string()
    }
}

/// Who kops is towards AWS.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum AwsIdentity {
    /// kops resolves credentials itself from the inherited environment.
    /// `region`, when kopsci knows it, is set for the child.
    Inherit { region: Option<String> },
    /// kopsci resolved these credentials; kops gets exactly them.
    Explicit {
        credentials: AwsCredentials,
        region: Option<String>,
        /// Where they came from, for logs (e.g. the assumed role's ARN).
        source: String,
        /// When they stop working (assumed-role sessions expire), if known.
        expires: Option<SystemTime>,
    },
}

impl Default for AwsIdentity {
    fn default() -> AwsIdentity {
        AwsIdentity::Inherit { region: None }
    }
}

/// Changes to a child's environment: variables to set, and inherited ones
/// to remove.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ChildEnv {
    pub set: BTreeMap<OsString, OsString>,
    pub remove: Vec<OsString>,
}

impl fmt::Debug for ChildEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChildEnv")
            .field("set", &self.set.keys().collect::<Vec<_>>())
            .field("remove", &self.remove)
            .finish()
    }
}

/// Variables through which the AWS SDKs (Go v1/v2, which kops uses, and
/// the CLI) would find credentials other than the static keys kopsci sets.
/// `AWS_PROFILE` matters most: with it set, the Go SDK v2 prefers the
/// profile over `AWS_ACCESS_KEY_ID`.
pub const IDENTITY_OVERRIDES: &[&str] = &[
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
    // Legacy alias of AWS_SESSION_TOKEN that some SDKs still read.
    "AWS_SECURITY_TOKEN",
    "AWS_CREDENTIAL_EXPIRATION",
];

impl AwsIdentity {
    /// Credentials kopsci resolved, from an unnamed source, expiry unknown.
    pub fn explicit(credentials: AwsCredentials, region: Option<String>) -> AwsIdentity {
        AwsIdentity::Explicit {
            credentials,
            region,
            source: "credentials resolved by kopsci".to_string(),
            expires: None,
        }
    }

    /// One line for logs, without secrets.
    pub fn describe(&self) -> String {
        let region = |r: &Option<String>| {
            r.as_deref()
                .map(|r| format!(", region {r}"))
                .unwrap_or_default()
        };
        match self {
            AwsIdentity::Inherit { region: r } => {
                format!("AWS identity inherited from the environment{}", region(r))
            }
            AwsIdentity::Explicit {
                credentials,
                region: r,
                source,
                ..
            } => format!(
                "AWS identity: {source} (access key {}){}",
                key_hint(&credentials.access_key_id),
                region(r)
            ),
        }
    }

    /// The environment changes that make a child use exactly this identity.
    pub fn child_env(&self) -> ChildEnv {
        let mut env = ChildEnv::default();
        let mut set = |k: &str, v: &str| {
            env.set.insert(k.into(), v.into());
        };
        let region = match self {
            AwsIdentity::Inherit { region } => region,
            AwsIdentity::Explicit {
                credentials,
                region,
                ..
            } => {
                set("AWS_ACCESS_KEY_ID", &credentials.access_key_id);
                set(
                    "AWS_SECRET_ACCESS_KEY",
                    credentials.secret_access_key.expose(),
                );
                if let Some(token) = &credentials.session_token {
                    set("AWS_SESSION_TOKEN", token.expose());
                }
                region
            }
        };
        if let Some(region) = region {
            // Both names: the Go SDK reads AWS_REGION first, tools and older
            // SDKs AWS_DEFAULT_REGION; a stale one must not disagree.
            set("AWS_REGION", region);
            set("AWS_DEFAULT_REGION", region);
        }
        if let AwsIdentity::Explicit { credentials, .. } = self {
            env.remove
                .extend(IDENTITY_OVERRIDES.iter().map(OsString::from));
            // Inherited keys' token must not be paired with the new keys.
            if credentials.session_token.is_none() {
                env.remove.push("AWS_SESSION_TOKEN".into());
            }
        }
        env
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn creds(token: bool) -> AwsCredentials {
        AwsCredentials {
            access_key_id: "AKIAIOSFODNN7EXAMPLE".into(),
            secret_access_key: Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
            session_token: token.then(|| Secret::new("FwoGZXIvYXdzEXAMPLETOKEN")),
        }
    }

    fn get<'a>(env: &'a ChildEnv, k: &str) -> Option<&'a OsStr> {
        env.set.get(OsStr::new(k)).map(|v| v.as_os_str())
    }

    #[test]
    fn explicit_identity_sets_keys_and_removes_every_override() {
        let id = AwsIdentity::explicit(creds(true), Some("eu-central-1".into()));
        let env = id.child_env();
        assert_eq!(
            get(&env, "AWS_ACCESS_KEY_ID").unwrap(),
            "AKIAIOSFODNN7EXAMPLE"
        );
        assert_eq!(
            get(&env, "AWS_SECRET_ACCESS_KEY").unwrap(),
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        );
        assert_eq!(
            get(&env, "AWS_SESSION_TOKEN").unwrap(),
            "FwoGZXIvYXdzEXAMPLETOKEN"
        );
        assert_eq!(get(&env, "AWS_REGION").unwrap(), "eu-central-1");
        assert_eq!(get(&env, "AWS_DEFAULT_REGION").unwrap(), "eu-central-1");
        for name in [
            "AWS_PROFILE",
            "AWS_ROLE_ARN",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            assert!(env.remove.iter().any(|n| n == name), "{name} not removed");
        }
        // Never both set and removed.
        assert!(!env.remove.iter().any(|n| env.set.contains_key(n)));
    }

    #[test]
    fn explicit_keys_without_token_remove_an_inherited_token() {
        let env = AwsIdentity::explicit(creds(false), None).child_env();
        assert!(env.remove.iter().any(|n| n == "AWS_SESSION_TOKEN"));
        assert!(get(&env, "AWS_SESSION_TOKEN").is_none());
        assert!(get(&env, "AWS_REGION").is_none());
    }

    #[test]
    fn inherited_identity_changes_nothing_but_the_region() {
        assert_eq!(AwsIdentity::default().child_env(), ChildEnv::default());
        let env = AwsIdentity::Inherit {
            region: Some("us-east-1".into()),
        }
        .child_env();
        assert!(env.remove.is_empty());
        assert_eq!(env.set.len(), 2);
        assert_eq!(get(&env, "AWS_REGION").unwrap(), "us-east-1");
    }

    #[test]
    fn debug_and_describe_never_show_secrets() {
        let id = AwsIdentity::Explicit {
            credentials: creds(true),
            region: Some("eu-west-1".into()),
            source: "assumed role arn:aws:iam::123456789012:role/kops".into(),
            expires: None,
        };
        for text in [
            format!("{id:?}"),
            format!("{:#?}", id),
            id.describe(),
            format!("{:?}", id.child_env()),
        ] {
            assert!(!text.contains("wJalrXUtnFEMI"), "{text}");
            assert!(!text.contains("FwoGZXIvYXdz"), "{text}");
            assert!(!text.contains("AKIAIOSFODNN7EXAMPLE"), "{text}");
        }
        assert!(id.describe().contains("…MPLE"), "{}", id.describe());
        assert!(id.describe().contains("role/kops"));
        assert_eq!(key_hint("short"), "<redacted>");
    }
}
