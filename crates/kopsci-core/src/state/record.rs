//! The snapshot record, `DIR/.kopsci-snapshot.json`: where a snapshot came
//! from, how it was filtered, and every object's key, size, ETag and the
//! SHA-256 of the bytes written. `verify` and `update` trust this file, not
//! the copy's contents.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::errors::{Error, Result};
use crate::state::filter::FilterSpec;
use crate::state::keys;
use crate::text::escape_controls;

/// File name of the record inside the snapshot directory. It sits beside the
/// cluster directories, so kOps never reads it as part of a cluster.
pub const RECORD_FILE: &str = ".kopsci-snapshot.json";

/// The record format this version writes and reads.
pub const FORMAT: &str = "kopsci-snapshot/v1";

/// A snapshot's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Always [`FORMAT`].
    pub format: String,
    /// The store URL as `--state` would name it (never holds credentials).
    pub source: String,
    /// The cluster; its objects are under `DIR/<cluster>/`.
    pub cluster: String,
    /// When the copy finished, RFC 3339 in UTC.
    pub time: String,
    /// Which objects were selected.
    pub filter: FilterSpec,
    /// Every object copied, sorted by key.
    pub objects: Vec<ObjectRecord>,
}

/// One object of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectRecord {
    /// Key relative to the cluster directory (`pki/private/ca/keyset.yaml`).
    pub key: String,
    /// Bytes written.
    pub size: u64,
    /// The server's ETag without quotes, when it gave one. Informational:
    /// servers disagree on ETags, so comparisons use `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// Lowercase hex SHA-256 of the bytes written.
    pub sha256: String,
}

impl Record {
    /// Reads and checks the record of the snapshot in `dir`.
    pub fn load(dir: &Path) -> Result<Record> {
        let path = dir.join(RECORD_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::SnapshotRecord {
                    path,
                    message: "no snapshot record here: not a kopsci snapshot directory".into(),
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        // A tampered record could carry control characters into the message
        // (serde quotes unknown field names).
        Record::parse(&text).map_err(|message| Error::SnapshotRecord {
            path,
            message: escape_controls(&message).into_owned(),
        })
    }

    /// Parses and checks a record: every key must be safe and unique, so a
    /// tampered record cannot point `verify` outside the store.
    pub fn parse(text: &str) -> std::result::Result<Record, String> {
        let record: Record = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if record.format != FORMAT {
            return Err(format!(
                "unsupported record format `{}` (this kopsci reads `{FORMAT}`)",
                record.format.escape_debug()
            ));
        }
        keys::check_cluster_name(&record.cluster).map_err(|e| e.to_string())?;
        let mut previous: Option<&str> = None;
        for object in &record.objects {
            keys::check_relative(&object.key).map_err(|reason| {
                format!("object key `{}`: {reason}", object.key.escape_debug())
            })?;
            if previous.is_some_and(|p| p >= object.key.as_str()) {
                return Err(format!(
                    "object keys are not sorted and unique at `{}`",
                    object.key.escape_debug()
                ));
            }
            if object.sha256.len() != 64 || !object.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!(
                    "object `{}`: sha256 is not 64 hex digits",
                    object.key.escape_debug()
                ));
            }
            previous = Some(&object.key);
        }
        Ok(record)
    }

    /// The record as written to disk: pretty JSON with a final newline, so
    /// it diffs well when kept as a CI artifact.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("a record always serializes");
        text.push('\n');
        text
    }

    /// Total bytes of all objects.
    pub fn total_bytes(&self) -> u64 {
        self.objects.iter().map(|o| o.size).sum()
    }
}

/// An ETag as servers send it (`"abc"`, `abc`, `W/"abc"`) reduced to `abc`.
pub fn normalize_etag(etag: &str) -> Option<String> {
    let etag = etag.trim();
    let etag = etag.strip_prefix("W/").unwrap_or(etag);
    let etag = etag.trim_matches('"');
    (!etag.is_empty()).then(|| etag.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Record {
        Record {
            format: FORMAT.into(),
            source: "s3://kops-state/team".into(),
            cluster: "dev.example.com".into(),
            time: "2025-01-02T03:04:05Z".into(),
            filter: FilterSpec::default(),
            objects: vec![
                ObjectRecord {
                    key: "config".into(),
                    size: 3,
                    etag: Some("abc".into()),
                    sha256: "a".repeat(64),
                },
                ObjectRecord {
                    key: "pki/private/ca/keyset.yaml".into(),
                    size: 0,
                    etag: None,
                    sha256: "b".repeat(64),
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_has_the_documented_shape() {
        let record = sample();
        let json = record.to_json();
        assert_eq!(Record::parse(&json).unwrap(), record);
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["format"], "kopsci-snapshot/v1");
        assert_eq!(value["source"], "s3://kops-state/team");
        assert_eq!(value["cluster"], "dev.example.com");
        assert_eq!(value["filter"]["with_backups"], false);
        assert_eq!(value["objects"][0]["key"], "config");
        assert_eq!(value["objects"][0]["size"], 3);
        assert_eq!(value["objects"][0]["etag"], "abc");
        assert!(value["objects"][1].get("etag").is_none());
        assert_eq!(record.total_bytes(), 3);
    }

    #[test]
    fn refuses_tampered_records() {
        type Tamper = Box<dyn Fn(&mut Record)>;
        let cases: Vec<(Tamper, &str)> = vec![
            (
                Box::new(|r| r.format = "v0".into()),
                "unsupported record format",
            ),
            (
                Box::new(|r| r.objects[1].key = "../../etc/passwd".into()),
                "`..` path segment",
            ),
            (
                Box::new(|r| r.objects[1].key = "/etc/passwd".into()),
                "absolute path",
            ),
            (
                Box::new(|r| r.objects[1].key = "config".into()),
                "not sorted and unique",
            ),
            (
                Box::new(|r| r.objects[0].sha256 = "xyz".into()),
                "64 hex digits",
            ),
            (
                Box::new(|r| r.cluster = "../x".into()),
                "invalid cluster name",
            ),
        ];
        for (tamper, expected) in cases {
            let mut record = sample();
            tamper(&mut record);
            let err = Record::parse(&record.to_json()).unwrap_err();
            assert!(err.contains(expected), "{err} should contain {expected}");
        }
        assert!(Record::parse("{}").is_err());
        assert!(
            Record::parse(
                &sample()
                    .to_json()
                    .replace("\"time\"", "\"extra\": 1, \"time\"")
            )
            .is_err()
        );
    }

    #[test]
    fn etags_are_normalized() {
        assert_eq!(normalize_etag("\"abc\"").as_deref(), Some("abc"));
        assert_eq!(normalize_etag("abc").as_deref(), Some("abc"));
        assert_eq!(normalize_etag("W/\"abc\"").as_deref(), Some("abc"));
        assert_eq!(normalize_etag("\"\""), None);
    }
}
