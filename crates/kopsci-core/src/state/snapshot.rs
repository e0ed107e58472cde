//! Taking a snapshot: bounded concurrent copy into a private temporary
//! directory beside the target, renamed into place only when complete. Any
//! failure or signal removes the temporary directory (and any parent
//! directories this run created) before returning.

use std::ffi::OsString;
use std::fs::{DirBuilder, OpenOptions};
use std::future::Future;
use std::io::{Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;

use crate::errors::{Error, Result};
use crate::state::filter::{Filter, FilterSpec};
use crate::state::keys;
use crate::state::record::{FORMAT, ObjectRecord, RECORD_FILE, Record};
use crate::state::s3::S3Settings;
use crate::state::source::{Entry, Sink, Source};
use crate::state::url::StoreUrl;

/// Everything `kopsci snapshot` needs to know.
#[derive(Debug, Clone)]
pub struct SnapshotOptions {
    pub store: StoreUrl,
    pub cluster: String,
    /// The snapshot directory; `DIR/<cluster>/` becomes the cluster's copy.
    pub out: PathBuf,
    pub filter: FilterSpec,
    /// Objects fetched at once.
    pub concurrency: usize,
    /// Replace an existing snapshot (or empty directory) at `out`.
    pub force: bool,
    /// Succeed with an empty snapshot when the store has no such cluster
    /// (a dry run of a cluster about to be created).
    pub allow_empty: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    pub s3: S3Settings,
}

/// Concurrent GETs by default: enough to hide a cross-region round trip
/// for a whole cluster (a kOps cluster is 30–150 objects without backups);
/// `bench/snapshot` measured no gain above it.
pub const DEFAULT_CONCURRENCY: usize = 64;

/// What a finished snapshot holds.
#[derive(Debug, Clone)]
pub struct SnapshotSummary {
    pub dir: PathBuf,
    pub source: String,
    pub objects: usize,
    pub bytes: u64,
    /// Objects listed but left out by the filters.
    pub skipped: usize,
    pub seconds: f64,
}

impl SnapshotSummary {
    /// The one line the command prints.
    pub fn line(&self) -> String {
        format!(
            "snapshot of {}: {} objects, {} bytes in {:.2} s ({} skipped by filters) -> {}",
            self.source,
            self.objects,
            self.bytes,
            self.seconds,
            self.skipped,
            self.dir.display()
        )
    }
}

/// Takes a snapshot; `cancel` resolving (a signal) stops it cleanly with
/// the error it yields.
pub async fn take(
    opts: &SnapshotOptions,
    cancel: impl Future<Output = Error>,
) -> Result<SnapshotSummary> {
    let started = Instant::now();
    keys::check_cluster_name(&opts.cluster)?;
    let filter = Filter::new(&opts.filter)?;
    if opts.concurrency == 0 {
        return Err(Error::Usage("--concurrency must be at least 1".into()));
    }
    let mut target = Target::prepare(&opts.out, opts.force)?;
    match copy_and_commit(opts, &filter, &target, cancel).await {
        Ok((record, skipped)) => Ok(SnapshotSummary {
            dir: target.out.clone(),
            source: opts.store.cluster_url(&opts.cluster),
            objects: record.objects.len(),
            bytes: record.total_bytes(),
            skipped,
            seconds: started.elapsed().as_secs_f64(),
        }),
        Err(e) => {
            target.remove_created_parents();
            Err(e)
        }
    }
}

async fn copy_and_commit(
    opts: &SnapshotOptions,
    filter: &Filter,
    target: &Target,
    cancel: impl Future<Output = Error>,
) -> Result<(Record, usize)> {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.kopsci-tmp-", target.name.to_string_lossy()))
        .tempdir_in(&target.parent)
        .map_err(|e| Error::io(&target.parent, e))?;
    // tempfile leaves the mode to the umask; the snapshot root is private.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700))
        .map_err(|e| Error::io(tmp.path(), e))?;
    let cluster_dir = tmp.path().join(&opts.cluster);
    make_private_dir(&cluster_dir)?;

    // Every copy task holds a clone of `alive`; the receiver sees the
    // channel close only when all of them have stopped, so the temporary
    // directory is removed after the last write into it, not before.
    let (alive, mut all_stopped) = mpsc::channel::<()>(1);
    let work = async {
        let alive = alive;
        let source = Arc::new(Source::open(&opts.store, &opts.cluster, &opts.s3).await?);
        tracing::debug!(ms = started.elapsed().as_millis() as u64, "store opened");
        let progress = progress_bar(opts.progress);
        let copied = copy_all(
            source,
            filter,
            &cluster_dir,
            opts.concurrency,
            &progress,
            alive,
        )
        .await;
        progress.finish_and_clear();
        let (mut objects, skipped) = copied?;
        if objects.is_empty() {
            if !opts.allow_empty {
                return Err(Error::Snapshot(format!(
                    "no objects to copy under {}{}: is the cluster name right?",
                    opts.store.cluster_url(&opts.cluster),
                    if skipped > 0 {
                        format!(" ({skipped} left out by filters)")
                    } else {
                        String::new()
                    }
                )));
            }
            std::fs::remove_dir(&cluster_dir).map_err(|e| Error::io(&cluster_dir, e))?;
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        let record = Record {
            format: FORMAT.to_string(),
            source: opts.store.to_string(),
            cluster: opts.cluster.clone(),
            time: DateTime::from(SystemTime::now())
                .fmt(DateTimeFormat::DateTime)
                .unwrap_or_default(),
            filter: opts.filter.clone(),
            objects,
        };
        write_private_file(&tmp.path().join(RECORD_FILE), record.to_json().as_bytes())?;
        Ok((record, skipped))
    };
    let outcome = tokio::select! {
        outcome = work => outcome,
        err = cancel => Err(err),
    };
    let _ = all_stopped.recv().await;
    match outcome {
        Ok(done) => {
            target.commit(tmp)?;
            Ok(done)
        }
        Err(e) => {
            let path = tmp.path().to_path_buf();
            if let Err(cleanup) = tmp.close() {
                tracing::warn!("could not remove {}: {cleanup}", path.display());
            }
            Err(e)
        }
    }
}

/// Lists page by page and fetches as entries arrive, at most `concurrency`
/// at a time. Returns the copied objects and how many the filter skipped.
async fn copy_all(
    source: Arc<Source>,
    filter: &Filter,
    cluster_dir: &Path,
    concurrency: usize,
    progress: &ProgressBar,
    alive: mpsc::Sender<()>,
) -> Result<(Vec<ObjectRecord>, usize)> {
    let permits = Arc::new(Semaphore::new(concurrency));
    let made = Arc::new(MadeDirs::default());
    let mut tasks: JoinSet<Result<ObjectRecord>> = JoinSet::new();
    let mut objects = Vec::new();
    let mut skipped = 0;
    let started = Instant::now();
    let mut lister = source.lister();
    while let Some(page) = lister.next_page().await? {
        tracing::debug!(
            keys = page.len(),
            ms = started.elapsed().as_millis() as u64,
            "listing page"
        );
        for entry in page {
            if !filter.keeps(&entry.key) {
                skipped += 1;
                continue;
            }
            progress.inc_length(entry.size);
            let permit = Arc::clone(&permits)
                .acquire_owned()
                .await
                .map_err(|_| Error::Snapshot("internal error: copy slots closed".into()))?;
            while let Some(done) = tasks.try_join_next() {
                objects.push(joined(done)?);
            }
            let source = Arc::clone(&source);
            let dir = cluster_dir.to_path_buf();
            let made = Arc::clone(&made);
            let progress = progress.clone();
            let alive = alive.clone();
            tasks.spawn(async move {
                let _alive = alive;
                let _permit = permit;
                let object = copy_one(&source, entry, &dir, &made).await?;
                progress.inc(object.size);
                Ok(object)
            });
        }
    }
    while let Some(done) = tasks.join_next().await {
        objects.push(joined(done)?);
    }
    tracing::debug!(
        objects = objects.len(),
        ms = started.elapsed().as_millis() as u64,
        "copy done"
    );
    Ok((objects, skipped))
}

fn joined(
    done: std::result::Result<Result<ObjectRecord>, tokio::task::JoinError>,
) -> Result<ObjectRecord> {
    match done {
        Ok(result) => result,
        Err(e) if e.is_panic() => Err(Error::Snapshot(
            "internal error: a copy task panicked".into(),
        )),
        Err(_) => Err(Error::Snapshot(
            "internal error: a copy task was cancelled".into(),
        )),
    }
}

/// Copies one object to its file, hashing the bytes as they are written.
/// File operations are synchronous on purpose: a task is only ever
/// cancelled between them, never with a create or write still pending.
async fn copy_one(
    source: &Source,
    entry: Entry,
    cluster_dir: &Path,
    made: &MadeDirs,
) -> Result<ObjectRecord> {
    let path = keys::local_path(cluster_dir, &entry.key)?;
    if let Some(parent) = path.parent() {
        made.ensure(parent)?;
    }
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory => {
                Error::Snapshot(format!(
                    "object key `{}` collides with another key (a key cannot be both a file and a directory)",
                    entry.key
                ))
            }
            _ => Error::io(&path, e),
        })?;
    let mut sink = FileSink {
        file,
        path: &path,
        hasher: Sha256::new(),
        size: 0,
    };
    let etag = source.fetch(&entry.key, &mut sink).await?;
    let FileSink {
        file, hasher, size, ..
    } = sink;
    drop(file);
    Ok(ObjectRecord {
        key: entry.key,
        size,
        etag: etag.or(entry.etag),
        sha256: hex::encode(hasher.finalize()),
    })
}

struct FileSink<'a> {
    file: std::fs::File,
    path: &'a Path,
    hasher: Sha256,
    size: u64,
}

impl Sink for FileSink<'_> {
    fn reset(&mut self) -> Result<()> {
        if self.size > 0 {
            self.file.set_len(0).map_err(|e| Error::io(self.path, e))?;
            self.file.rewind().map_err(|e| Error::io(self.path, e))?;
        }
        self.hasher = Sha256::new();
        self.size = 0;
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.file
            .write_all(chunk)
            .map_err(|e| Error::io(self.path, e))?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }
}

/// Directories already created in this snapshot: most objects share their
/// parent with others, and each saved `mkdir` is a syscall per object.
#[derive(Default)]
struct MadeDirs(std::sync::Mutex<std::collections::HashSet<PathBuf>>);

impl MadeDirs {
    fn ensure(&self, dir: &Path) -> Result<()> {
        let mut made = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if !made.contains(dir) {
            make_private_dir(dir)?;
            made.insert(dir.to_path_buf());
        }
        Ok(())
    }
}

/// Creates `dir` and missing parents with mode 0700.
pub(crate) fn make_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io(dir, e))
}

/// Writes a new file with mode 0600.
fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(contents).map_err(|e| Error::io(path, e))
}

fn progress_bar(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} snapshot {bytes}/{total_bytes} {wide_bar} {elapsed}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// The snapshot directory and what must happen to put a new one there.
struct Target {
    out: PathBuf,
    parent: PathBuf,
    name: OsString,
    replace: bool,
    /// Parent directories this run created, outermost first.
    created: Vec<PathBuf>,
}

impl Target {
    fn prepare(out: &Path, force: bool) -> Result<Target> {
        if out.as_os_str().is_empty() {
            return Err(Error::Usage("--out must name a directory".into()));
        }
        let out = std::path::absolute(out).map_err(|e| Error::io(out, e))?;
        let (Some(parent), Some(name)) = (out.parent(), out.file_name()) else {
            return Err(Error::Usage(format!(
                "--out {}: name a directory to create, not a root",
                out.display()
            )));
        };
        if out.ends_with("..") || out.ends_with(".") {
            return Err(Error::Usage(format!(
                "--out {}: name a directory to create",
                out.display()
            )));
        }
        let replace = match std::fs::symlink_metadata(&out) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(Error::io(&out, e)),
            Ok(meta) => {
                if !force {
                    return Err(Error::Snapshot(format!(
                        "{} already exists; pass --force to replace a previous snapshot",
                        out.display()
                    )));
                }
                if !meta.is_dir() {
                    return Err(Error::Snapshot(format!(
                        "{} exists and is not a directory; refusing to replace it",
                        out.display()
                    )));
                }
                let is_snapshot = out.join(RECORD_FILE).is_file();
                let is_empty = std::fs::read_dir(&out)
                    .map_err(|e| Error::io(&out, e))?
                    .next()
                    .is_none();
                if !is_snapshot && !is_empty {
                    return Err(Error::Snapshot(format!(
                        "{} is not a kopsci snapshot (no {RECORD_FILE}); --force only replaces snapshots and empty directories",
                        out.display()
                    )));
                }
                true
            }
        };
        let mut created = Vec::new();
        let mut missing = parent;
        while !missing.exists() {
            created.push(missing.to_path_buf());
            match missing.parent() {
                Some(p) => missing = p,
                None => break,
            }
        }
        created.reverse();
        let target = Target {
            parent: parent.to_path_buf(),
            name: name.to_os_string(),
            out: out.clone(),
            replace,
            created,
        };
        if let Err(e) = std::fs::create_dir_all(&target.parent) {
            let mut target = target;
            target.remove_created_parents();
            return Err(Error::io(&target.parent, e));
        }
        Ok(target)
    }

    /// Puts the finished copy in place.
    fn commit(&self, tmp: tempfile::TempDir) -> Result<()> {
        if !self.replace {
            return std::fs::rename(tmp.path(), &self.out)
                .map_err(|e| Error::io(&self.out, e))
                .map(|()| {
                    let _ = tmp.keep();
                });
        }
        // Move the old snapshot aside first: a rename cannot replace a
        // non-empty directory.
        let old = tempfile::Builder::new()
            .prefix(&format!(".{}.kopsci-old-", self.name.to_string_lossy()))
            .tempdir_in(&self.parent)
            .map_err(|e| Error::io(&self.parent, e))?;
        std::fs::rename(&self.out, old.path()).map_err(|e| Error::io(&self.out, e))?;
        if let Err(e) = std::fs::rename(tmp.path(), &self.out) {
            let _ = std::fs::rename(old.path(), &self.out);
            let _ = old.keep();
            return Err(Error::io(&self.out, e));
        }
        let _ = tmp.keep();
        // `old` now holds the previous snapshot; dropping it removes it.
        let old_path = old.path().to_path_buf();
        if let Err(e) = old.close() {
            tracing::warn!(
                "could not remove the previous snapshot at {}: {e}",
                old_path.display()
            );
        }
        Ok(())
    }

    /// Best effort: removes the parent directories this run created, if
    /// they are still empty.
    fn remove_created_parents(&mut self) {
        for dir in self.created.drain(..).rev() {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }
}
