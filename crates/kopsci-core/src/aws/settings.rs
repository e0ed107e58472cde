//! The fleet file's `aws:` blocks: their schema, their checks, and the
//! settings they resolve to for a cluster (fleet, then environment, then
//! cluster level, key by key).

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::errors::{At, FleetError, Result};

/// An `aws:` block (fleet, environment or cluster level), as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsFile {
    #[serde(default)]
    role_arn: Option<Spanned<String>>,
    #[serde(default)]
    external_id: Option<Spanned<String>>,
    #[serde(default)]
    external_id_env: Option<Spanned<String>>,
    #[serde(default)]
    region: Option<Spanned<String>>,
    #[serde(default)]
    session_name: Option<Spanned<String>>,
    #[serde(default)]
    duration_seconds: Option<Spanned<u32>>,
}

/// How kopsci gets the AWS identity it runs kops (and reads the state store)
/// as, from the `aws:` blocks of the fleet, the cluster's environment and
/// the cluster, merged key by key (the most specific block wins).
///
/// With `role_arn`, kopsci assumes that role (STS `AssumeRole`, with the
/// external ID when one is set) using the standard credential chain, and
/// hands kops exactly the temporary credentials. Without it, kops inherits
/// the job's credentials. `Debug` never shows the external ID.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AwsSettings {
    pub role_arn: Option<String>,
    pub external_id: Option<ExternalId>,
    /// AWS region for STS and for kops (`AWS_REGION`).
    pub region: Option<String>,
    /// `RoleSessionName`; default `kopsci` (plus the GitLab job ID).
    pub session_name: Option<String>,
    /// Lifetime of the assumed-role session (900–43200 s; default 3600).
    pub duration_seconds: Option<u32>,
}

/// STS' default session lifetime when `duration_seconds` is not set.
pub const DEFAULT_SESSION_SECONDS: u32 = 3600;

/// Where the external ID of an assumed role comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum ExternalId {
    /// Written in the fleet file.
    Literal(String),
    /// Read from this environment variable (a masked CI/CD variable).
    Env(String),
}

impl std::fmt::Debug for ExternalId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExternalId::Literal(_) => f.write_str("Literal(<redacted>)"),
            ExternalId::Env(name) => f.debug_tuple("Env").field(name).finish(),
        }
    }
}

impl std::fmt::Debug for AwsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsSettings")
            .field("role_arn", &self.role_arn)
            .field("external_id", &self.external_id)
            .field("region", &self.region)
            .field("session_name", &self.session_name)
            .field("duration_seconds", &self.duration_seconds)
            .finish()
    }
}

impl AwsSettings {
    /// `self` with every key `more` sets replaced by `more`'s.
    pub fn overlay(&self, more: &AwsSettings) -> AwsSettings {
        AwsSettings {
            role_arn: more.role_arn.clone().or_else(|| self.role_arn.clone()),
            external_id: more
                .external_id
                .clone()
                .or_else(|| self.external_id.clone()),
            region: more.region.clone().or_else(|| self.region.clone()),
            session_name: more
                .session_name
                .clone()
                .or_else(|| self.session_name.clone()),
            duration_seconds: more.duration_seconds.or(self.duration_seconds),
        }
    }

    /// Only `role_arn` makes the session keys mean anything.
    pub fn has_session_keys_without_role(&self) -> bool {
        self.role_arn.is_none()
            && (self.external_id.is_some()
                || self.session_name.is_some()
                || self.duration_seconds.is_some())
    }

    /// How long the credentials kopsci hands kops last, when kopsci assumes
    /// a role; `None` when kops uses the job's own credentials.
    pub fn session_seconds(&self) -> Option<u32> {
        self.role_arn
            .as_ref()
            .map(|_| self.duration_seconds.unwrap_or(DEFAULT_SESSION_SECONDS))
    }

    /// Checks one `aws:` block and converts it. `key` names it in errors
    /// (`aws`, `environments.prod.aws`, `cluster `x`: aws`); `file` is the
    /// fleet file.
    pub fn from_file(block: Option<&AwsFile>, key: &str, file: &str) -> Result<AwsSettings> {
        let Some(block) = block else {
            return Ok(AwsSettings::default());
        };
        let invalid = |loc: &serde_saphyr::Location, field: &str, problem: String| {
            crate::Error::from(FleetError::Invalid {
                at: At {
                    file: file.to_string(),
                    line: loc.line(),
                    column: loc.column(),
                },
                key: format!("{key}.{field}"),
                problem,
            })
        };
        if let Some(arn) = &block.role_arn
            && !is_role_arn(&arn.value)
        {
            return Err(invalid(
                &arn.referenced,
                "role_arn",
                format!(
                    "expected an IAM role ARN such as `arn:aws:iam::123456789012:role/kops`, got `{}`",
                    crate::text::escape_controls(&arn.value)
                ),
            ));
        }
        let sts_word = |c: char| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c);
        let external_id = match (&block.external_id, &block.external_id_env) {
            (Some(_), Some(env)) => {
                return Err(FleetError::Conflict {
                    at: At {
                        file: file.to_string(),
                        line: env.referenced.line(),
                        column: env.referenced.column(),
                    },
                    key: key.to_string(),
                    first: "external_id",
                    second: "external_id_env",
                }
                .into());
            }
            (Some(id), None) => {
                // STS' own rule; the value itself is never echoed.
                let ok = (2..=1224).contains(&id.value.len())
                    && id
                        .value
                        .chars()
                        .all(|c| sts_word(c) || c == ':' || c == '/');
                if !ok {
                    return Err(invalid(
                        &id.referenced,
                        "external_id",
                        "expected 2 to 1224 characters of letters, digits and `_+=,.@:/-`".into(),
                    ));
                }
                Some(ExternalId::Literal(id.value.clone()))
            }
            (None, Some(env)) => {
                let ok = !env.value.is_empty()
                    && env
                        .value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !ok {
                    return Err(invalid(
                        &env.referenced,
                        "external_id_env",
                        format!(
                            "expected an environment variable name, got `{}`",
                            crate::text::escape_controls(&env.value)
                        ),
                    ));
                }
                Some(ExternalId::Env(env.value.clone()))
            }
            (None, None) => None,
        };
        if let Some(region) = &block.region {
            let ok = !region.value.is_empty()
                && region
                    .value
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(invalid(
                    &region.referenced,
                    "region",
                    format!(
                        "expected an AWS region such as `eu-west-1`, got `{}`",
                        crate::text::escape_controls(&region.value)
                    ),
                ));
            }
        }
        if let Some(name) = &block.session_name
            && !((2..=64).contains(&name.value.len()) && name.value.chars().all(sts_word))
        {
            return Err(invalid(
                &name.referenced,
                "session_name",
                format!(
                    "expected 2 to 64 characters of letters, digits and `_+=,.@-`, got `{}`",
                    crate::text::escape_controls(&name.value)
                ),
            ));
        }
        if let Some(d) = &block.duration_seconds
            && !(900..=43200).contains(&d.value)
        {
            return Err(invalid(
                &d.referenced,
                "duration_seconds",
                format!("expected 900 to 43200 (STS' limits), got {}", d.value),
            ));
        }
        Ok(AwsSettings {
            role_arn: block.role_arn.as_ref().map(|s| s.value.clone()),
            external_id,
            region: block.region.as_ref().map(|s| s.value.clone()),
            session_name: block.session_name.as_ref().map(|s| s.value.clone()),
            duration_seconds: block.duration_seconds.as_ref().map(|d| d.value),
        })
    }
}

fn is_role_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[2] == "iam"
        && parts[5].starts_with("role/")
        && parts[5].len() > "role/".len()
}
