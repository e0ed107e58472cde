//! Filesystem helpers: atomic writes, so that a failed command never leaves
//! a half-written file behind.

use std::io::Write;
use std::path::Path;

use crate::errors::{Error, Result};

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
