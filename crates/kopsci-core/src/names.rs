//! Validated names: cluster names, environment names and kOps object names,
//! checked by one function each whether they come from the fleet file, the
//! command line or an artifact, plus "did you mean …?" suggestions.

use std::fmt;
use std::str::FromStr;

use crate::errors::NameError;

/// The longest DNS name, and so the longest kOps cluster name.
const MAX_CLUSTER_NAME: usize = 253;

/// A kOps cluster name: a DNS name of lowercase letters, digits, `-` and
/// `.`. kopsci also uses it as a file name (report directories, snapshot
/// paths), so nothing that could escape a directory gets through.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterName(String);

impl ClusterName {
    pub fn parse(name: &str) -> Result<ClusterName, NameError> {
        check_dns_name(name, MAX_CLUSTER_NAME).map_err(|reason| NameError::Cluster {
            name: name.to_string(),
            reason,
        })?;
        Ok(ClusterName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// An environment of the fleet (`dev`, `prod-eu`). It becomes part of
/// GitLab stage, job and environment names, which refuse newlines, quotes
/// and shell syntax, so only a plain word is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EnvironmentName(String);

impl EnvironmentName {
    pub fn parse(name: &str) -> Result<EnvironmentName, NameError> {
        let valid_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        let reason = if name.is_empty() {
            Some("it is empty")
        } else if name.len() > 63 {
            Some("it is longer than 63 characters")
        } else if !name.chars().all(valid_char) {
            Some("only letters, digits, `-`, `_` and `.` are allowed")
        } else if !name.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            Some("it must start with a letter or digit")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(NameError::Environment {
                name: name.to_string(),
                reason,
            }),
            None => Ok(EnvironmentName(name.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The name of a kOps object inside a cluster (an instance group): a DNS
/// label or name, as kOps validates them. kopsci passes such names to kops
/// as arguments, so one that starts with `-` must never get through: kops
/// would read it as a flag.
pub fn check_object_name(name: &str) -> Result<(), NameError> {
    check_dns_name(name, MAX_CLUSTER_NAME).map_err(|reason| NameError::Object {
        name: name.to_string(),
        reason,
    })
}

fn check_dns_name(name: &str, max: usize) -> Result<(), &'static str> {
    let valid_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > max {
        return Err("it is longer than a DNS name can be");
    }
    if !name.chars().all(valid_char) {
        return Err("expected a DNS name: lowercase letters, digits, `-` and `.`");
    }
    if name
        .split('.')
        .any(|label| label.is_empty() || label.starts_with('-') || label.ends_with('-'))
    {
        return Err(
            "every `.`-separated label must be non-empty and start and end with a letter or digit",
        );
    }
    Ok(())
}

impl FromStr for ClusterName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ClusterName::parse(s)
    }
}

impl FromStr for EnvironmentName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EnvironmentName::parse(s)
    }
}

impl fmt::Display for ClusterName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for EnvironmentName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ClusterName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for ClusterName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for ClusterName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for ClusterName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// The known name closest to `wanted`, when one is close enough to be a
/// likely typo (Jaro–Winkler, as cargo and clap suggest).
pub fn did_you_mean<'a>(wanted: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(wanted, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_that_could_escape_a_directory_are_refused() {
        for bad in [
            "",
            "../etc",
            "a/b.example.com",
            "a..b",
            ".a",
            "a.",
            "UPPER.example.com",
            "-a.b",
            "a\u{1b}[31m.example.com",
            "a\nb",
        ] {
            assert!(ClusterName::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            ClusterName::parse("dev-1.k8s.example.com")
                .unwrap()
                .as_str(),
            "dev-1.k8s.example.com"
        );
        assert!(ClusterName::parse(&"a".repeat(254)).is_err());
    }

    #[test]
    fn environment_names_gitlab_would_refuse_are_refused() {
        for bad in [
            "", "prod\nx", "a\"b", "a;b", "$(id)", "a b", "-x", "pr'od", "a/b",
        ] {
            let err = EnvironmentName::parse(bad).unwrap_err().to_string();
            assert!(err.contains("invalid environment name"), "{bad:?}: {err}");
        }
        for good in ["dev", "prod-eu", "stage_2", "v1.2"] {
            assert!(EnvironmentName::parse(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn object_names_never_look_like_flags() {
        assert!(check_object_name("nodes-us-test-1a").is_ok());
        for bad in ["--yes", "-x", "nodes --yes", "", "a/b"] {
            assert!(check_object_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn suggestions_only_for_likely_typos() {
        let known = ["dev-a.example.com", "prod-a.example.com"];
        assert_eq!(
            did_you_mean("dev-a.exmple.com", known),
            Some("dev-a.example.com")
        );
        assert_eq!(did_you_mean("zzz", known), None);
    }
}
