//! Object-key safety: which keys may become files under a snapshot
//! directory. A key is a `/`-separated relative path of plain names; anything
//! that could climb out of the directory or mean something else to the
//! filesystem is refused, never cleaned up into something that "works".

use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};

/// Checks that `key` is a relative path of plain, non-empty segments.
/// Returns the reason when it is not.
pub fn check_relative(key: &str) -> std::result::Result<(), &'static str> {
    if key.is_empty() {
        return Err("empty key");
    }
    if key.contains('\0') {
        return Err("contains NUL");
    }
    if key.contains('\\') {
        return Err("contains a backslash");
    }
    // Control characters would let a key rewrite the lines it is reported on.
    if key.chars().any(char::is_control) {
        return Err("contains a control character");
    }
    if key.starts_with('/') {
        return Err("absolute path");
    }
    for segment in key.split('/') {
        match segment {
            "" => return Err("empty path segment"),
            "." => return Err("`.` path segment"),
            ".." => return Err("`..` path segment"),
            _ => {}
        }
    }
    Ok(())
}

/// A cluster name is one directory of the store: a kOps cluster name (a
/// DNS name), checked as the fleet file checks it, so never `..` or a path.
pub fn check_cluster_name(name: &str) -> Result<()> {
    crate::names::ClusterName::parse(name)?;
    Ok(())
}

/// What a listed key under a cluster's prefix stands for.
#[derive(Debug, PartialEq, Eq)]
pub enum Listed<'a> {
    /// An object to copy, with its key relative to the cluster directory.
    Object(&'a str),
    /// A zero-byte "folder" marker some tools create (`a/b/`): nothing to copy.
    DirMarker,
}

/// Maps a full S3 key to its place under the cluster directory, refusing
/// keys that are unsafe as paths. `prefix` ends with `/`.
pub fn classify<'a>(full_key: &'a str, prefix: &str, size: u64) -> Result<Listed<'a>> {
    let unsafe_key = |reason| Error::UnsafeKey {
        key: full_key.escape_debug().to_string(),
        reason,
    };
    let Some(rel) = full_key.strip_prefix(prefix) else {
        return Err(unsafe_key("outside the listed prefix"));
    };
    if rel.is_empty() && size == 0 {
        return Ok(Listed::DirMarker);
    }
    if let Some(dir) = rel.strip_suffix('/')
        && size == 0
    {
        check_relative(dir).map_err(unsafe_key)?;
        return Ok(Listed::DirMarker);
    }
    check_relative(rel).map_err(unsafe_key)?;
    Ok(Listed::Object(rel))
}

/// Decodes a key from a listing sent with `encoding-type=url`: `%XX`
/// escapes, and `+` for a space as S3 writes it (a literal `+` comes as
/// `%2B`). A malformed escape or bytes that are not UTF-8 are refused,
/// never guessed at.
pub fn url_decode(listed: &str) -> Result<String> {
    let unsafe_key = |reason| Error::UnsafeKey {
        key: listed.escape_debug().to_string(),
        reason,
    };
    let bytes = listed.as_bytes();
    for (i, _) in listed.match_indices('%') {
        let well_formed = bytes
            .get(i + 1..i + 3)
            .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit));
        if !well_formed {
            return Err(unsafe_key("malformed URL encoding in the listing"));
        }
    }
    let spaced = listed.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|_| unsafe_key("not valid UTF-8 once URL-decoded"))
}

/// The path a checked relative key lands on under `root`. Re-checks the
/// key so no caller can skip the check.
pub fn local_path(root: &Path, rel: &str) -> Result<PathBuf> {
    check_relative(rel).map_err(|reason| Error::UnsafeKey {
        key: rel.escape_debug().to_string(),
        reason,
    })?;
    let mut path = root.to_path_buf();
    path.extend(rel.split('/'));
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_keys_are_accepted() {
        for key in [
            "config",
            "instancegroup/nodes-us-test-1a",
            "pki/private/kubernetes-ca/keyset.yaml",
            "backups/etcd/main/control/etcd-cluster-spec",
            "a..b/c.d/...x",
            "with space/ünïcode",
        ] {
            assert_eq!(check_relative(key), Ok(()), "{key}");
        }
    }

    #[test]
    fn traversal_and_odd_keys_are_refused() {
        let cases = [
            ("", "empty key"),
            ("..", "`..` path segment"),
            ("../x", "`..` path segment"),
            ("a/../../x", "`..` path segment"),
            ("a/..", "`..` path segment"),
            ("./a", "`.` path segment"),
            ("a/./b", "`.` path segment"),
            ("/etc/passwd", "absolute path"),
            ("a\\..\\..\\x", "contains a backslash"),
            ("a\\b", "contains a backslash"),
            ("a\0b", "contains NUL"),
            ("a//b", "empty path segment"),
            ("a/", "empty path segment"),
            ("a\nb", "contains a control character"),
        ];
        for (key, reason) in cases {
            assert_eq!(check_relative(key), Err(reason), "{key:?}");
        }
    }

    #[test]
    fn classify_strips_the_prefix_and_spots_markers() {
        let p = "state/c.example.com/";
        assert_eq!(
            classify("state/c.example.com/config", p, 10).unwrap(),
            Listed::Object("config")
        );
        assert_eq!(
            classify("state/c.example.com/", p, 0).unwrap(),
            Listed::DirMarker
        );
        assert_eq!(
            classify("state/c.example.com/pki/", p, 0).unwrap(),
            Listed::DirMarker
        );
        for bad in [
            "state/c.example.com/../x",
            "state/c.example.com//x",
            "state/c.example.com//",
            "state/c.example.com/pki/",
            "state/other/config",
            "state/c.example.com/a\\b",
        ] {
            let size = if bad.ends_with('/') && !bad.ends_with("//") {
                5
            } else {
                0
            };
            let err = classify(bad, p, size).unwrap_err();
            assert!(matches!(err, Error::UnsafeKey { .. }), "{bad}: {err:?}");
        }
    }

    #[test]
    fn url_encoded_listing_keys_are_decoded_as_s3_encodes_them() {
        for (listed, key) in [
            ("c/config", "c/config"),
            ("c/a%01b", "c/a\u{1}b"),
            ("c/nl%0Ax%09y", "c/nl\nx\ty"),
            ("c/sp+ace%2Bplus%25pct", "c/sp ace+plus%pct"),
            ("c/%C3%BCn%C3%AFcode", "c/ünïcode"),
            ("c/ünïcode", "c/ünïcode"),
        ] {
            assert_eq!(url_decode(listed).unwrap(), key, "{listed}");
        }
        for (listed, reason) in [
            ("c/100%", "malformed URL encoding"),
            ("c/%zz", "malformed URL encoding"),
            ("c/%4", "malformed URL encoding"),
            ("c/%FF%FE", "not valid UTF-8"),
        ] {
            let err = url_decode(listed).unwrap_err().to_string();
            assert!(err.contains(reason), "{listed}: {err}");
        }
    }

    #[test]
    fn decoded_control_characters_are_refused_by_name_escaped() {
        let p = "c.example.com/";
        for (listed, shown) in [
            ("c.example.com/pki/a%01b", "pki/a\\u{1}b"),
            ("c.example.com/config%0A%1B%5B2J", "config\\n\\u{1b}[2J"),
            ("c.example.com/x%1Fy", "x\\u{1f}y"),
        ] {
            let key = url_decode(listed).unwrap();
            let err = classify(&key, p, 3).unwrap_err().to_string();
            assert!(err.contains("contains a control character"), "{err}");
            assert!(err.contains(shown), "{err} should show {shown}");
            assert!(!err.chars().any(char::is_control), "{err:?}");
        }
    }

    #[test]
    fn local_path_stays_under_root() {
        let root = Path::new("/snap/c");
        assert_eq!(
            local_path(root, "pki/issued/ca").unwrap(),
            PathBuf::from("/snap/c/pki/issued/ca")
        );
        for bad in ["../x", "/abs", "a/../../b", "a\\b", "a\0"] {
            assert!(local_path(root, bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cluster_names_are_single_segments() {
        check_cluster_name("dev-a.k8s.example.com").unwrap();
        for bad in ["", "a/b", "..", ".", "a\\b", "a\0"] {
            assert!(check_cluster_name(bad).is_err(), "{bad:?}");
        }
    }
}
