//! `file://` state stores: a directory whose files are the store's objects,
//! as in `fixtures/kops-state/`. Writes go through a temporary file in the
//! same directory and a rename, so a reader never sees half an object.

use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use super::{Store, check_key};

pub struct FileStore {
    url: String,
    root: PathBuf,
}

impl FileStore {
    pub fn new(url: &str, path: &str) -> FileStore {
        FileStore {
            url: url.to_string(),
            root: PathBuf::from(path),
        }
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

impl Store for FileStore {
    fn url(&self) -> &str {
        &self.url
    }

    fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = self.path(key)?;
        match fs::read(&path) {
            Ok(data) => Ok(Some(data)),
            // A directory where an object is expected is "no object" to kOps' VFS.
            Err(e) if e.kind() == ErrorKind::NotFound || path.is_dir() => Ok(None),
            Err(e) => Err(e).with_context(|| format!("error reading {}", path.display())),
        }
    }

    fn write(&self, key: &str, data: &[u8]) -> Result<()> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).with_context(|| format!("error creating {}", dir.display()))?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.kops-standin-{}", std::process::id()));
        fs::write(&tmp, data).with_context(|| format!("error writing {}", tmp.display()))?;
        fs::rename(&tmp, &path).with_context(|| {
            let _ = fs::remove_file(&tmp);
            format!("error writing {}", path.display())
        })
    }

    fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("error deleting {}", path.display())),
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix.trim_end_matches('/'))?
        };
        let mut keys = Vec::new();
        walk(&dir, prefix.trim_end_matches('/'), &mut keys)?;
        keys.sort();
        Ok(keys)
    }

    fn top_level_dirs(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(names),
            Err(e) => {
                return Err(e).with_context(|| format!("error listing {}", self.root.display()));
            }
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("error listing {}", self.root.display()))?;
            if entry.path().is_dir() {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        Ok(names)
    }
}

/// Collects the files under `dir` as keys prefixed with `key_prefix`.
fn walk(dir: &Path, key_prefix: &str, keys: &mut Vec<String>) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound || e.kind() == ErrorKind::NotADirectory => {
            return Ok(());
        }
        Err(e) => return Err(e).with_context(|| format!("error listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("error listing {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Our own temporary files are not objects.
        if name.contains(".kops-standin-") && name.starts_with('.') {
            continue;
        }
        let key = if key_prefix.is_empty() {
            name
        } else {
            format!("{key_prefix}/{name}")
        };
        let path = entry.path();
        if path.is_dir() {
            walk(&path, &key, keys)?;
        } else {
            keys.push(key);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_list_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let store = FileStore::new(&url, &dir.path().to_string_lossy());
        assert_eq!(store.read("c/config").unwrap(), None);
        store.write("c/config", b"a").unwrap();
        store.write("c/instancegroup/nodes", b"b").unwrap();
        assert_eq!(store.read("c/config").unwrap(), Some(b"a".to_vec()));
        assert_eq!(
            store.list("c/").unwrap(),
            vec!["c/config".to_string(), "c/instancegroup/nodes".to_string()]
        );
        assert_eq!(
            store.list("c/instancegroup/").unwrap(),
            vec!["c/instancegroup/nodes"]
        );
        assert_eq!(store.top_level_dirs().unwrap(), vec!["c"]);
        store.delete("c/config").unwrap();
        store.delete("c/config").unwrap();
        assert_eq!(store.read("c/config").unwrap(), None);
        assert!(store.read("c").unwrap().is_none());
    }
}
