//! Filesystem helpers: atomic writes, so that a failed command never leaves
//! a half-written file behind, and private work directories that a later
//! run removes when the process that made them was killed; paths compared
//! as written (lexically) or as the filesystem resolves them.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::errors::{Error, Result};
use crate::text::escape_path;

/// Writes `contents` to `path` through a temporary file in the same
/// directory, renamed into place only once fully written and synced.
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".kopsci-")
        .tempfile_in(dir)
        .map_err(|e| Error::io(path, e))?;
    tmp.write_all(contents).map_err(|e| Error::io(path, e))?;
    tmp.as_file().sync_all().map_err(|e| Error::io(path, e))?;
    tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    Ok(())
}

/// Reads a UTF-8 text file, naming the path in any error.
pub fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Name of the marker file inside every [`WorkDir`]: the file whose lock
/// says "a live kopsci process owns this directory".
pub const WORK_DIR_MARKER: &str = ".kopsci-workdir";

/// The marker's first line: what tells a kopsci work directory apart from
/// anything else that happens to have a similar name.
const WORK_DIR_MAGIC: &str = "kopsci work directory: removed by the next kopsci run once no process holds a lock on this file\n";

/// A private (0700) working directory that holds copies of state-store
/// objects (`pki/` keys among them) while a command runs.
///
/// It lives as long as this value: dropping it removes the directory. A
/// process killed with SIGKILL cannot clean up, so the directory also
/// holds an advisory lock (`flock`) on its marker file for its whole life;
/// the kernel drops the lock when the process dies, however it dies, and
/// [`sweep_stale_work_dirs`] then knows the directory is left over.
/// Creating a work directory sweeps its parent first.
#[derive(Debug)]
pub struct WorkDir {
    /// Declared before `lock` so the directory is removed while the lock
    /// is still held: a sweep can never see it unlocked yet present.
    dir: Option<tempfile::TempDir>,
    _lock: std::fs::File,
}

impl WorkDir {
    /// Removes stale work directories in `parent`, then creates a new one
    /// named `<prefix><random>`. `prefix` must contain `kopsci-`: the sweep
    /// only looks at such names.
    pub fn create(parent: &Path, prefix: &str) -> Result<WorkDir> {
        debug_assert!(prefix.contains(WORK_DIR_NAME_TAG), "{prefix}");
        sweep_stale_work_dirs(parent);
        let dir = tempfile::Builder::new()
            .prefix(prefix)
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map_err(|e| Error::io(parent, e))?;
        // The umask could only have narrowed the mode; make it exact.
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::io(dir.path(), e))?;
        let marker = dir.path().join(WORK_DIR_MARKER);
        let mut lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&marker)
            .map_err(|e| Error::io(&marker, e))?;
        // Locked before the magic is written: a sweep that can read the
        // magic always finds the lock taken while this process lives.
        lock.try_lock().map_err(|e| match e {
            std::fs::TryLockError::Error(e) => Error::io(&marker, e),
            std::fs::TryLockError::WouldBlock => Error::io(
                &marker,
                std::io::Error::other("the new work directory is already locked"),
            ),
        })?;
        lock.write_all(format!("{WORK_DIR_MAGIC}pid {}\n", std::process::id()).as_bytes())
            .map_err(|e| Error::io(&marker, e))?;
        Ok(WorkDir {
            dir: Some(dir),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        match &self.dir {
            Some(dir) => dir.path(),
            None => unreachable!("a work directory has a path until it is consumed"),
        }
    }

    /// Renames the directory to `dest` (which must not exist, or be an empty
    /// directory) without its marker: what was a work directory becomes a
    /// finished result. On failure the work directory is removed.
    pub fn rename_to(mut self, dest: &Path) -> Result<()> {
        let dir = self.dir.take().expect("a work directory has a path");
        let marker = dir.path().join(WORK_DIR_MARKER);
        // Still locked (the lock belongs to the open file, not its name),
        // but no longer recognisable as a work directory: a sweep between
        // here and the rename leaves it alone.
        std::fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
        match std::fs::rename(dir.path(), dest) {
            Ok(()) => {
                let _ = dir.keep();
                Ok(())
            }
            Err(e) => Err(Error::io(dest, e)),
        }
    }

    /// Keeps the directory as a plain one (without its marker, so no sweep
    /// removes it) and returns its path: for a copy that must survive.
    pub fn keep(mut self) -> PathBuf {
        let dir = self.dir.take().expect("a work directory has a path");
        let _ = std::fs::remove_file(dir.path().join(WORK_DIR_MARKER));
        dir.keep()
    }

    /// Removes the directory now, reporting what could not be removed.
    pub fn close(mut self) -> Result<()> {
        let dir = self.dir.take().expect("a work directory has a path");
        let path = dir.path().to_path_buf();
        dir.close().map_err(|e| Error::io(path, e))
    }
}

/// What every work directory's name contains; anything else is never
/// looked at by the sweep.
const WORK_DIR_NAME_TAG: &str = "kopsci-";

/// Removes the work directories in `dir` that a killed kopsci process left
/// behind: directories whose name contains `kopsci-`, owned by this user,
/// holding a marker file with kopsci's magic whose lock no live process
/// holds. Anything else — another process's live work directory, a
/// directory that merely looks similar, another user's — is left alone.
/// Best effort: failures are logged, never fatal. Returns what it removed.
pub fn sweep_stale_work_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return removed;
    };
    let me = current_uid();
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().contains(WORK_DIR_NAME_TAG) {
            continue;
        }
        let path = entry.path();
        match remove_if_stale(&path, me) {
            Ok(true) => {
                tracing::info!(
                    "removed {}: a work directory left by a kopsci process that was killed",
                    escape_path(&path)
                );
                removed.push(path);
            }
            Ok(false) => {}
            Err(e) => tracing::debug!("left {} alone: {e}", escape_path(&path)),
        }
    }
    removed
}

/// Removes `path` if it is a stale work directory of user `me`; says
/// whether it did.
fn remove_if_stale(path: &Path, me: Option<u32>) -> std::io::Result<bool> {
    let meta = std::fs::symlink_metadata(path)?;
    if !meta.is_dir() || me != Some(meta.uid()) {
        return Ok(false);
    }
    let marker = path.join(WORK_DIR_MARKER);
    let marker_meta = match std::fs::symlink_metadata(&marker) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if !marker_meta.is_file() || marker_meta.uid() != meta.uid() {
        return Ok(false);
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&marker)?;
    // The file opened is the one checked (not swapped for a symlink since).
    let opened = file.metadata()?;
    if opened.ino() != marker_meta.ino() || opened.dev() != marker_meta.dev() {
        return Ok(false);
    }
    let mut head = vec![0u8; WORK_DIR_MAGIC.len()];
    if std::io::Read::read_exact(&mut &file, &mut head).is_err()
        || head != WORK_DIR_MAGIC.as_bytes()
    {
        return Ok(false);
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    // Held until the tree is gone, so two sweeps never race on it.
    // `remove_dir_all` does not follow symlinks inside the tree.
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// This process's effective user id, as the kernel reports it for
/// `/proc/self` (the process's own directory belongs to its effective
/// user). `None` when unknown: the sweep then removes nothing.
fn current_uid() -> Option<u32> {
    std::fs::metadata("/proc/self").ok().map(|m| m.uid())
}

/// `path` made absolute against `cwd` and cleaned of `.` and `..`
/// components without touching the filesystem: git reports paths as they
/// are in the tree (a symlink is its own path, not its target), so paths
/// compared with git's must be cleaned the same way.
pub fn lexical_absolute(cwd: &Path, path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_path_buf()
    } else {
        cwd.join(path)
    };
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `path` made absolute, with its longest existing ancestor resolved
/// (symlinks followed) and the rest appended as written.
pub fn resolved(path: &Path) -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_default();
    let absolute = lexical_absolute(&cwd, path);
    let mut base = absolute.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = base.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(part)) => {
                rest.push(part);
                base = parent;
            }
            _ => return absolute,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::symlink_metadata(path)
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    /// What a killed process leaves: a work directory with kopsci's marker
    /// that nobody holds a lock on.
    fn plant_stale(parent: &Path, name: &str) -> PathBuf {
        let dir = parent.join(name);
        std::fs::create_dir_all(dir.join("state/c/pki/private/ca")).unwrap();
        std::fs::write(dir.join("state/c/pki/private/ca/keyset.yaml"), "key").unwrap();
        std::fs::write(
            dir.join(WORK_DIR_MARKER),
            format!("{WORK_DIR_MAGIC}pid 1\n"),
        )
        .unwrap();
        dir
    }

    #[test]
    fn a_work_dir_is_private_locked_and_gone_when_dropped() {
        let parent = tempfile::tempdir().unwrap();
        let work = WorkDir::create(parent.path(), "kopsci-test-").unwrap();
        let path = work.path().to_path_buf();
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("kopsci-test-")
        );
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join(WORK_DIR_MARKER)), 0o600);
        // Its lock is held: a sweep (even by this process) leaves it alone.
        assert!(sweep_stale_work_dirs(parent.path()).is_empty());
        assert!(path.is_dir());
        drop(work);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_work_dir_is_swept_and_look_alikes_are_kept() {
        let parent = tempfile::tempdir().unwrap();
        let stale = plant_stale(parent.path(), "kopsci-dryrun-stale1");
        let stale_snapshot = plant_stale(parent.path(), ".snap.kopsci-tmp-stale2");

        // Similar names without kopsci's marker, or with a marker that is
        // not kopsci's, or that is a symlink to one.
        let no_marker = parent.path().join("kopsci-dryrun-nomarker");
        std::fs::create_dir(&no_marker).unwrap();
        std::fs::write(no_marker.join("precious"), "keep").unwrap();
        let other_marker = parent.path().join("kopsci-update-othermarker");
        std::fs::create_dir(&other_marker).unwrap();
        std::fs::write(other_marker.join(WORK_DIR_MARKER), "something else\n").unwrap();
        let outside = tempfile::tempdir().unwrap();
        let real_marker = plant_stale(outside.path(), "elsewhere").join(WORK_DIR_MARKER);
        let linked_marker = parent.path().join("kopsci-dryrun-linkedmarker");
        std::fs::create_dir(&linked_marker).unwrap();
        std::os::unix::fs::symlink(&real_marker, linked_marker.join(WORK_DIR_MARKER)).unwrap();
        // A symlink named like a work directory, to a stale one elsewhere.
        let target = plant_stale(outside.path(), "kopsci-dryrun-target");
        let link = parent.path().join("kopsci-dryrun-symlink");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        // A stale-looking directory whose name is not kopsci's.
        let unnamed = plant_stale(parent.path(), "unrelated");

        let mut removed = sweep_stale_work_dirs(parent.path());
        removed.sort();
        let mut expected = vec![stale.clone(), stale_snapshot.clone()];
        expected.sort();
        assert_eq!(removed, expected);
        assert!(!stale.exists() && !stale_snapshot.exists());
        assert_eq!(
            std::fs::read_to_string(no_marker.join("precious")).unwrap(),
            "keep"
        );
        for kept in [&other_marker, &linked_marker, &unnamed] {
            assert!(kept.join(WORK_DIR_MARKER).exists(), "{}", kept.display());
        }
        assert!(link.is_symlink());
        assert!(target.join("state/c/pki/private/ca/keyset.yaml").is_file());
        assert!(real_marker.is_file());
    }

    #[test]
    fn a_renamed_work_dir_is_a_plain_directory() {
        let parent = tempfile::tempdir().unwrap();
        let work = WorkDir::create(parent.path(), ".out.kopsci-tmp-").unwrap();
        std::fs::write(work.path().join("file"), "x").unwrap();
        let dest = parent.path().join("out");
        work.rename_to(&dest).unwrap();
        assert_eq!(std::fs::read_to_string(dest.join("file")).unwrap(), "x");
        assert!(!dest.join(WORK_DIR_MARKER).exists());
        assert_eq!(mode(&dest), 0o700);

        // Failing to rename (the destination is a non-empty directory)
        // removes the work directory.
        let work = WorkDir::create(parent.path(), ".out.kopsci-tmp-").unwrap();
        let path = work.path().to_path_buf();
        assert!(work.rename_to(&dest).is_err());
        assert!(!path.exists());
        assert_eq!(std::fs::read_to_string(dest.join("file")).unwrap(), "x");
    }

    #[test]
    fn lexical_paths_resolve_dots_without_the_filesystem() {
        let cwd = Path::new("/repo/fleet");
        assert_eq!(
            lexical_absolute(cwd, Path::new("../shared/./t.j2")),
            PathBuf::from("/repo/shared/t.j2")
        );
        assert_eq!(
            lexical_absolute(cwd, Path::new("/abs/x")),
            PathBuf::from("/abs/x")
        );
        assert_eq!(
            lexical_absolute(cwd, Path::new("")),
            PathBuf::from("/repo/fleet")
        );
    }
}
