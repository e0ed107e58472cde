//! What a snapshot directory holds on disk, compared with its record: the
//! check behind `snapshot --force` (replace only a snapshot as kopsci wrote
//! it, never a directory that merely contains a record) and `snapshot
//! verify --local` (has the local copy been altered since?).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::errors::{Error, Result};
use crate::state::record::{RECORD_FILE, Record};
use crate::text::escape_controls;

/// The files of a snapshot directory, sorted into what a snapshot may hold
/// and what it may not.
#[derive(Debug, Default)]
pub struct LocalTree {
    /// Regular files under `DIR/<cluster>/`, by key.
    pub files: BTreeMap<String, PathBuf>,
    /// Everything else that is neither a directory, the record, nor such a
    /// file.
    pub strays: Vec<Stray>,
}

/// An entry a snapshot never holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stray {
    /// Path relative to the snapshot directory, `/`-separated, control
    /// characters escaped.
    pub path: String,
    /// Its key when it sits where an object's file would (a symlink at
    /// `DIR/<cluster>/config`): then it replaced that object.
    pub key: Option<String>,
    /// What it is ("symlink", "file outside the cluster directory"…).
    pub kind: String,
}

impl LocalTree {
    /// Walks `dir`, the snapshot of `cluster`, without following symlinks.
    pub fn read(dir: &Path, cluster: &str) -> Result<LocalTree> {
        let mut tree = LocalTree::default();
        let mut walk = walkdir::WalkDir::new(dir)
            .follow_links(false)
            .min_depth(1)
            .sort_by_file_name()
            .into_iter();
        while let Some(item) = walk.next() {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(dir).to_path_buf();
                Error::io(path, e.into())
            })?;
            let rel = item.path().strip_prefix(dir).map_err(|_| {
                Error::Snapshot("internal error: walked outside the snapshot".into())
            })?;
            let file_type = item.file_type();
            let kind = if file_type.is_symlink() {
                "symlink"
            } else if file_type.is_dir() {
                "directory"
            } else if file_type.is_file() {
                "file"
            } else {
                "special file"
            };
            let segments = segments(rel);
            let mut stray = |key: Option<String>, kind: String| {
                tree.strays.push(Stray {
                    path: escape_controls(&rel.to_string_lossy()).into_owned(),
                    key,
                    kind,
                })
            };
            if segments.len() != rel.components().count() {
                stray(None, format!("{kind} whose name is not UTF-8"));
                if file_type.is_dir() {
                    walk.skip_current_dir();
                }
                continue;
            }
            match segments.as_slice() {
                [name] if name == RECORD_FILE => {
                    if !file_type.is_file() {
                        stray(None, format!("record that is a {kind}"));
                    }
                }
                [name] if name == cluster && file_type.is_dir() => {}
                [_] => {
                    stray(None, format!("{kind} outside the cluster directory"));
                    if file_type.is_dir() {
                        // One line for the directory, not one per file in it.
                        walk.skip_current_dir();
                    }
                }
                [_, rest @ ..] => {
                    let key = rest.join("/");
                    if file_type.is_file() {
                        tree.files.insert(key, item.path().to_path_buf());
                    } else if !file_type.is_dir() {
                        stray(Some(key), kind.to_string());
                    }
                }
                [] => {}
            }
        }
        Ok(tree)
    }

    /// Why `dir` may not be replaced by `snapshot --force`: the first thing
    /// in it that its record does not account for. `None` when everything
    /// in it is the record or a file the record lists.
    pub fn foreign_content(&self, record: &Record) -> Option<String> {
        let listed: std::collections::HashSet<&str> =
            record.objects.iter().map(|o| o.key.as_str()).collect();
        let mut foreign: Vec<String> = self
            .strays
            .iter()
            .map(|s| format!("`{}` (a {})", s.path, s.kind))
            .collect();
        foreign.extend(
            self.files
                .keys()
                .filter(|k| !listed.contains(k.as_str()))
                .map(|k| {
                    format!(
                        "`{}/{}`, which the record does not list",
                        escape_controls(&record.cluster),
                        escape_controls(k)
                    )
                }),
        );
        let first = foreign.first()?.clone();
        Some(match foreign.len() {
            1 => format!("it holds {first}"),
            n => format!("it holds {first}, and {} more", n - 1),
        })
    }
}

/// The path's plain components as strings; stops at the first one that is
/// not valid UTF-8 (the caller sees fewer segments than components).
fn segments(rel: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(name) => match name.to_str() {
                Some(name) => out.push(name.to_string()),
                None => break,
            },
            _ => break,
        }
    }
    out
}

/// Lowercase hex SHA-256 and size of the file at `path`.
pub fn hash_file(path: &Path) -> Result<(u64, String)> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use super::*;
    use crate::state::filter::FilterSpec;
    use crate::state::record::{FORMAT, ObjectRecord};

    fn record(keys: &[&str]) -> Record {
        Record {
            format: FORMAT.into(),
            source: "s3://b".into(),
            cluster: "c.example.com".into(),
            time: "t".into(),
            filter: FilterSpec::default(),
            objects: keys
                .iter()
                .map(|k| ObjectRecord {
                    key: k.to_string(),
                    size: 1,
                    etag: None,
                    sha256: "a".repeat(64),
                })
                .collect(),
        }
    }

    fn write(root: &Path, rel: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x").unwrap();
    }

    #[test]
    fn an_intact_snapshot_has_no_foreign_content() {
        let dir = tempfile::tempdir().unwrap();
        let rec = record(&["config", "pki/private/ca/keyset.yaml"]);
        std::fs::write(dir.path().join(RECORD_FILE), rec.to_json()).unwrap();
        write(dir.path(), "c.example.com/config");
        write(dir.path(), "c.example.com/pki/private/ca/keyset.yaml");
        // Empty directories hold nothing to lose; a listed file that is
        // missing is not foreign either.
        std::fs::create_dir_all(dir.path().join("c.example.com/addons")).unwrap();
        std::fs::remove_file(dir.path().join("c.example.com/config")).unwrap();
        let tree = LocalTree::read(dir.path(), &rec.cluster).unwrap();
        assert_eq!(tree.strays, []);
        assert_eq!(
            tree.files.keys().collect::<Vec<_>>(),
            ["pki/private/ca/keyset.yaml"]
        );
        assert_eq!(tree.foreign_content(&rec), None);
    }

    #[test]
    fn everything_a_snapshot_never_holds_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let rec = record(&["config"]);
        std::fs::write(dir.path().join(RECORD_FILE), rec.to_json()).unwrap();
        write(dir.path(), "c.example.com/config");
        write(dir.path(), "c.example.com/extra");
        write(dir.path(), "other/deep/file");
        write(dir.path(), "beside");
        std::os::unix::fs::symlink("/etc", dir.path().join("c.example.com/link")).unwrap();
        let odd = dir
            .path()
            .join("c.example.com")
            .join(OsStr::from_bytes(b"bad\xffname"));
        std::fs::write(odd, "x").unwrap();
        write(dir.path(), "c.example.com/ctl\u{1b}[2J");

        let tree = LocalTree::read(dir.path(), &rec.cluster).unwrap();
        let strays: Vec<(&str, Option<&str>, &str)> = tree
            .strays
            .iter()
            .map(|s| (s.path.as_str(), s.key.as_deref(), s.kind.as_str()))
            .collect();
        assert_eq!(
            strays,
            [
                ("beside", None, "file outside the cluster directory"),
                (
                    "c.example.com/bad\u{fffd}name",
                    None,
                    "file whose name is not UTF-8"
                ),
                ("c.example.com/link", Some("link"), "symlink"),
                ("other", None, "directory outside the cluster directory"),
            ]
        );
        assert_eq!(
            tree.files.keys().collect::<Vec<_>>(),
            ["config", "ctl\u{1b}[2J", "extra"]
        );
        assert_eq!(
            tree.foreign_content(&rec).unwrap(),
            "it holds `beside` (a file outside the cluster directory), and 5 more"
        );
        let only_unlisted = LocalTree {
            strays: vec![],
            ..tree
        };
        assert_eq!(
            only_unlisted.foreign_content(&rec).unwrap(),
            "it holds `c.example.com/ctl\\x1b[2J`, which the record does not list, and 1 more"
        );
    }
}
