//! Reading a `file://` state store. Symlinks are followed only while they
//! stay inside the store root, so a store cannot smuggle in files from
//! elsewhere on the machine.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use crate::errors::{Error, Result};
use crate::state::keys;
use crate::state::source::{Entry, Sink};

/// One cluster directory of a `file://` store.
#[derive(Debug, Clone)]
pub struct LocalStore {
    /// The store root, canonical.
    root: PathBuf,
    /// The cluster directory, canonical; `None` when the cluster has none.
    dir: Option<PathBuf>,
}

impl LocalStore {
    pub fn open(root: &Path, cluster: &str) -> Result<LocalStore> {
        // Say which store: a bare path and `os error 2` leave the user
        // guessing which of the job's paths was meant.
        let root = root.canonicalize().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::Snapshot(format!(
                "the state store file://{} does not exist: check --state (KOPS_STATE_STORE) or the fleet's `state:`",
                root.display()
            )),
            _ => Error::io(root, e),
        })?;
        if !root.is_dir() {
            return Err(Error::Snapshot(format!(
                "the state store file://{} is not a directory",
                root.display()
            )));
        }
        let path = root.join(cluster);
        let dir = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&path, e)),
            Ok(_) => {
                let dir = inside_root(&root, &path)?;
                if !dir.is_dir() {
                    return Err(Error::Snapshot(format!(
                        "{}: not a directory",
                        path.display()
                    )));
                }
                Some(dir)
            }
        };
        Ok(LocalStore { root, dir })
    }

    /// Every file of the cluster directory, sorted by key.
    pub fn list(&self) -> Result<Vec<Entry>> {
        let Some(dir) = &self.dir else {
            return Ok(Vec::new());
        };
        let mut entries = Vec::new();
        let walk = walkdir::WalkDir::new(dir)
            .follow_links(false)
            .min_depth(1)
            .sort_by_file_name();
        for item in walk {
            let item = item.map_err(|e| {
                let path = e.path().unwrap_or(dir).to_path_buf();
                Error::io(path, e.into())
            })?;
            let path = item.path();
            let file_type = item.file_type();
            let metadata = if file_type.is_dir() {
                continue;
            } else if file_type.is_file() {
                item.metadata().map_err(|e| Error::io(path, e.into()))?
            } else if file_type.is_symlink() {
                let target = inside_root(&self.root, path)?;
                let metadata = std::fs::metadata(&target).map_err(|e| Error::io(path, e))?;
                if !metadata.is_file() {
                    return Err(Error::Snapshot(format!(
                        "{}: symlinks to directories are not supported in a file:// store",
                        path.display()
                    )));
                }
                metadata
            } else {
                return Err(Error::Snapshot(format!(
                    "{}: not a regular file",
                    path.display()
                )));
            };
            entries.push(Entry {
                key: key_of(dir, path)?,
                size: metadata.len(),
                etag: None,
            });
        }
        Ok(entries)
    }

    /// Copies the file at `key` into `sink`. Files have no ETag.
    pub fn fetch(&self, key: &str, sink: &mut dyn Sink) -> Result<Option<String>> {
        let Some(dir) = &self.dir else {
            return Err(Error::Snapshot(format!("{key}: not in the store")));
        };
        let path = keys::local_path(dir, key)?;
        // Re-checked here: the tree may have changed since it was listed.
        let real = inside_root(&self.root, &path)?;
        let mut file = std::fs::File::open(&real).map_err(|e| Error::io(&path, e))?;
        sink.reset()?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match file.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            sink.write(&buf[..n])?;
        }
    }
}

/// Resolves `path` and refuses it unless it ends up inside `root`.
fn inside_root(root: &Path, path: &Path) -> Result<PathBuf> {
    let real = path.canonicalize().map_err(|e| Error::io(path, e))?;
    if !real.starts_with(root) {
        return Err(Error::Snapshot(format!(
            "{}: symlink leads outside the store root {}",
            path.display(),
            root.display()
        )));
    }
    Ok(real)
}

/// The `/`-separated key of `path` below `dir`.
fn key_of(dir: &Path, path: &Path) -> Result<String> {
    let rel = path
        .strip_prefix(dir)
        .map_err(|_| Error::Snapshot(format!("{}: outside {}", path.display(), dir.display())))?;
    let mut segments = Vec::new();
    for component in rel.components() {
        match component {
            Component::Normal(name) => match name.to_str() {
                Some(name) => segments.push(name),
                None => {
                    return Err(Error::UnsafeKey {
                        key: rel.display().to_string(),
                        reason: "not valid UTF-8",
                    });
                }
            },
            _ => {
                return Err(Error::UnsafeKey {
                    key: rel.display().to_string(),
                    reason: "not a plain relative path",
                });
            }
        }
    }
    let key = segments.join("/");
    keys::check_relative(&key).map_err(|reason| Error::UnsafeKey {
        key: key.escape_debug().to_string(),
        reason,
    })?;
    Ok(key)
}
