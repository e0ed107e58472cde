//! The state store behind one small trait, so that the kOps logic is
//! written once for both backends: `file:///path` (a directory, laid out as
//! kOps lays out its VFS) and `s3://bucket[/prefix]` (an S3-compatible
//! server). Keys are `/`-separated and relative to the store root, e.g.
//! `minimal-aws.example.com/instancegroup/nodes`. Nothing outside the store
//! root is ever read or written through this trait.

mod file;
mod s3;

use anyhow::{Result, bail};

/// A kOps state store.
pub trait Store {
    /// The store's URL as the user gave it (`file:///…`, `s3://…`), without a
    /// trailing slash; kOps derives `configBase` from it.
    fn url(&self) -> &str;
    /// The object at `key`, or `None` when there is none.
    fn read(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Creates or replaces the object at `key`.
    fn write(&self, key: &str, data: &[u8]) -> Result<()>;
    /// Removes the object at `key`; a missing object is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Every key under `prefix` (a directory-like prefix ending in `/`, or
    /// empty for the whole store), recursively, sorted.
    fn list(&self, prefix: &str) -> Result<Vec<String>>;
    /// The names of the "directories" directly under the store root.
    fn top_level_dirs(&self) -> Result<Vec<String>>;
}

/// Opens the store at `url`. kOps' own message for a missing store is the
/// caller's business; this only knows URLs.
pub fn open(url: &str) -> Result<Box<dyn Store>> {
    let trimmed = url.trim_end_matches('/');
    if let Some(path) = trimmed.strip_prefix("file://") {
        if path.is_empty() {
            bail!("invalid state store {url:?}: file:// needs a path, e.g. file:///var/kops-state");
        }
        return Ok(Box::new(file::FileStore::new(trimmed, path)));
    }
    if let Some(rest) = trimmed.strip_prefix("s3://") {
        let (bucket, prefix) = match rest.split_once('/') {
            Some((b, p)) => (b, p.trim_matches('/')),
            None => (rest, ""),
        };
        if bucket.is_empty() {
            bail!("invalid state store {url:?}: no bucket name");
        }
        return Ok(Box::new(s3::S3Store::connect(trimmed, bucket, prefix)?));
    }
    bail!(
        "the kops stand-in supports only file:// and s3:// state stores, not {url:?} \
         (see crates/kops-standin/README.md)"
    )
}

/// Refuses keys that could leave the store root or name nothing (`..`,
/// empty segments), whatever the backend.
pub(crate) fn check_key(key: &str) -> Result<()> {
    if key.is_empty()
        || key.starts_with('/')
        || key
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        bail!("internal error: invalid state store key {key:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cannot_escape() {
        assert!(check_key("c.example.com/config").is_ok());
        assert!(check_key("../x").is_err());
        assert!(check_key("a//b").is_err());
        assert!(check_key("/abs").is_err());
        assert!(check_key("").is_err());
    }

    #[test]
    fn unsupported_schemes_are_refused() {
        let Err(e) = open("gs://bucket") else {
            panic!("gs:// opened")
        };
        assert!(e.to_string().contains("file:// and s3://"));
        assert!(open("file://").is_err());
    }
}
