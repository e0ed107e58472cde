//! State store URLs: parsing `s3://bucket[/prefix]` and `file:///path` the
//! way kOps names its stores, and the per-cluster location inside them.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};
use crate::state::keys;

/// Where a kOps state store lives. Cluster `C` of the store is under
/// `<store>/C/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// `s3://bucket[/prefix]`; `prefix` has no leading or trailing `/`.
    S3 { bucket: String, prefix: String },
    /// `file:///path`; an absolute path.
    File { root: PathBuf },
}

impl StoreUrl {
    /// Parses a store URL as given to `--state` / `KOPS_STATE_STORE`; a
    /// relative `file://` path is taken from the current directory.
    pub fn parse(url: &str) -> Result<StoreUrl> {
        let cwd = std::env::current_dir().map_err(|e| Error::io(".", e))?;
        StoreUrl::parse_in(url, &cwd)
    }

    /// Parses a store URL written in a file under `base` (the fleet file's
    /// directory): a relative `file://` path is taken from `base`.
    pub fn parse_in(url: &str, base: &Path) -> Result<StoreUrl> {
        let bad = |message: &str| Error::StateUrl {
            url: url.to_string(),
            message: message.to_string(),
        };
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket name"));
            }
            if !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
            {
                return Err(bad(
                    "bucket names hold only letters, digits, `-`, `.` and `_`",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if !prefix.is_empty() {
                keys::check_relative(prefix).map_err(|reason| {
                    bad(&format!("prefix `{prefix}` is not a plain path: {reason}"))
                })?;
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        if let Some(rest) = url.strip_prefix("file://") {
            if rest.is_empty() {
                return Err(bad("no path"));
            }
            if rest.contains('\0') {
                return Err(bad("path contains NUL"));
            }
            let path = Path::new(rest);
            let root = if path.is_absolute() {
                path.to_path_buf()
            } else if base.is_absolute() {
                base.join(path)
            } else {
                std::env::current_dir()
                    .map_err(|e| Error::io(".", e))?
                    .join(base)
                    .join(path)
            };
            // One store, one name: a plan made from one directory must fit
            // an update run from another.
            let root = normalize(&root);
            return Ok(StoreUrl::File { root });
        }
        Err(bad(
            "kopsci reads `s3://bucket[/prefix]` and `file:///path` stores",
        ))
    }

    /// The URL of one cluster's directory in this store, for messages.
    pub fn cluster_url(&self, cluster: &str) -> String {
        match self {
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => {
                format!("s3://{bucket}/{cluster}/")
            }
            StoreUrl::S3 { bucket, prefix } => format!("s3://{bucket}/{prefix}/{cluster}/"),
            StoreUrl::File { root } => format!("file://{}/{cluster}/", root.display()),
        }
    }
}

/// `path` with `.` and `..` resolved lexically (not through symlinks: the
/// store may not exist yet).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
            StoreUrl::File { root } => write!(f, "file://{}", root.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_file_stores_are_one_name_from_any_directory() {
        let a = StoreUrl::parse_in("file://../x/state", Path::new("/srv/sub")).unwrap();
        let b = StoreUrl::parse_in("file://x/./state", Path::new("/srv")).unwrap();
        assert_eq!(a.to_string(), "file:///srv/x/state");
        assert_eq!(a, b);
    }

    #[test]
    fn parses_s3_with_and_without_prefix() {
        assert_eq!(
            StoreUrl::parse("s3://kops-state").unwrap(),
            StoreUrl::S3 {
                bucket: "kops-state".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            StoreUrl::parse("s3://kops-state/teams/a/").unwrap(),
            StoreUrl::S3 {
                bucket: "kops-state".into(),
                prefix: "teams/a".into()
            }
        );
        assert_eq!(
            StoreUrl::parse("s3://b/p")
                .unwrap()
                .cluster_url("c.example.com"),
            "s3://b/p/c.example.com/"
        );
        assert_eq!(
            StoreUrl::parse("s3://b/p/").unwrap().to_string(),
            "s3://b/p"
        );
    }

    #[test]
    fn parses_file_urls() {
        assert_eq!(
            StoreUrl::parse("file:///srv/state").unwrap(),
            StoreUrl::File {
                root: PathBuf::from("/srv/state")
            }
        );
        let rel = StoreUrl::parse("file://state").unwrap();
        match rel {
            StoreUrl::File { root } => assert!(root.is_absolute() && root.ends_with("state")),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refuses_bad_urls() {
        for url in [
            "",
            "kops-state",
            "gs://bucket",
            "s3://",
            "s3:///prefix",
            "s3://bucket/a/../b",
            "s3://bucket/a//b",
            "s3://buck et",
            "file://",
        ] {
            let err = StoreUrl::parse(url).unwrap_err();
            assert!(
                matches!(err, Error::StateUrl { .. }),
                "{url}: unexpected {err:?}"
            );
        }
    }
}
