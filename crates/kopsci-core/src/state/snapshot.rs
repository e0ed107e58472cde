//! Taking a snapshot: bounded concurrent copy into a private temporary
//! directory beside the target, renamed into place only when complete. Any
//! failure or signal removes the temporary directory (and any parent
//! directories this run created) before returning.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::future::Future;
use std::io::{Seek, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use aws_sdk_s3::primitives::{DateTime, DateTimeFormat};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::JoinSet;

use crate::errors::{Error, Result};
use crate::fsutil::WorkDir;
use crate::state::filter::{Filter, FilterSpec};
use crate::state::keys;
use crate::state::record::{FORMAT, ObjectRecord, RECORD_FILE, Record};
use crate::state::s3::S3Settings;
use crate::state::source::{Entry, Ready, Sink, Source};
use crate::state::tree::LocalTree;
use crate::state::url::StoreUrl;
use crate::text::escape_path;

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
    // A locked work directory, so that a later run removes it should this
    // process be killed (SIGKILL) with copies of `pki/` keys in it.
    let tmp = WorkDir::create(
        &target.parent,
        &format!(".{}.kopsci-tmp-", target.name.to_string_lossy()),
    )?;
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
            if let Err(cleanup) = tmp.close() {
                tracing::warn!("could not clean up: {cleanup}");
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
    let files = FileMaker::start()?;
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
            let path = keys::local_path(cluster_dir, &entry.key)?;
            let file = files.create(path.clone(), entry.key.clone(), alive.clone());
            let source = Arc::clone(&source);
            let progress = progress.clone();
            let alive = alive.clone();
            tasks.spawn(async move {
                let _alive = alive;
                let _permit = permit;
                let object = copy_one(&source, entry, &path, file).await?;
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
/// Writes are synchronous on purpose: a task is only ever cancelled between
/// them, never with a write still pending. The file itself comes from the
/// [`FileMaker`] thread, whose jobs hold the temporary directory open too.
async fn copy_one(
    source: &Source,
    entry: Entry,
    path: &Path,
    file: PendingFile,
) -> Result<ObjectRecord> {
    let mut sink = FileSink {
        file: SinkFile::Pending(file),
        path,
        hasher: Sha256::new(),
        size: 0,
    };
    let etag = source.fetch(&entry.key, &mut sink).await?;
    let FileSink {
        file, hasher, size, ..
    } = sink;
    if let SinkFile::Pending(_) = file {
        return Err(Error::Snapshot(format!(
            "internal error: `{}` was fetched but never written",
            entry.key
        )));
    }
    drop(file);
    Ok(ObjectRecord {
        key: entry.key,
        size,
        etag: etag.or(entry.etag),
        sha256: hex::encode(hasher.finalize()),
    })
}

/// An object's file as the file thread will hand it over.
type PendingFile = oneshot::Receiver<Result<File>>;

enum SinkFile {
    Pending(PendingFile),
    Open(File),
}

struct FileSink<'a> {
    file: SinkFile,
    path: &'a Path,
    hasher: Sha256,
    size: u64,
}

impl FileSink<'_> {
    fn open_file(&mut self) -> Result<&mut File> {
        match &mut self.file {
            SinkFile::Open(file) => Ok(file),
            SinkFile::Pending(_) => Err(Error::Snapshot(format!(
                "internal error: {} written before it was created",
                self.path.display()
            ))),
        }
    }
}

impl Sink for FileSink<'_> {
    fn ready(&mut self) -> Ready<'_> {
        Box::pin(async move {
            if let SinkFile::Pending(pending) = &mut self.file {
                let file = pending.await.map_err(|_| {
                    Error::Snapshot("internal error: the file thread stopped".into())
                })??;
                self.file = SinkFile::Open(file);
            }
            Ok(())
        })
    }

    fn reset(&mut self) -> Result<()> {
        if self.size > 0 {
            let path = self.path;
            let file = self.open_file()?;
            file.set_len(0).map_err(|e| Error::io(path, e))?;
            file.rewind().map_err(|e| Error::io(path, e))?;
        }
        self.hasher = Sha256::new();
        self.size = 0;
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        let path = self.path;
        self.open_file()?
            .write_all(chunk)
            .map_err(|e| Error::io(path, e))?;
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }
}

/// Creates the snapshot's directories and files on a thread of its own, in
/// listing order, while the runtime thread sends the GETs: a request goes
/// out without first waiting for a `mkdir` and an `open` (the filesystem's
/// share of a snapshot), and its file is there when the response arrives.
struct FileMaker {
    jobs: std::sync::mpsc::Sender<FileJob>,
}

struct FileJob {
    path: PathBuf,
    key: String,
    reply: oneshot::Sender<Result<File>>,
    /// Held until the file is created or skipped, so the temporary
    /// directory is only removed after the thread's last create in it.
    _alive: mpsc::Sender<()>,
}

impl FileMaker {
    /// Starts the thread; it ends when the `FileMaker` is dropped and the
    /// queued jobs are done.
    fn start() -> Result<FileMaker> {
        let (jobs, queue) = std::sync::mpsc::channel::<FileJob>();
        std::thread::Builder::new()
            .name("kopsci-files".into())
            .spawn(move || {
                // Most objects share their parent with others: one `mkdir`
                // per directory, not per object.
                let mut made = HashSet::new();
                for job in queue {
                    if job.reply.is_closed() {
                        continue; // its copy was cancelled
                    }
                    let file = create_object_file(&job.path, &job.key, &mut made);
                    let _ = job.reply.send(file);
                }
            })
            .map_err(|e| Error::Snapshot(format!("starting the file thread: {e}")))?;
        Ok(FileMaker { jobs })
    }

    /// Queues the creation of `path`, the file of `key`.
    fn create(&self, path: PathBuf, key: String, alive: mpsc::Sender<()>) -> PendingFile {
        let (reply, file) = oneshot::channel();
        // Sending fails only if the thread is gone; the dropped reply then
        // reports that to the copy task.
        let _ = self.jobs.send(FileJob {
            path,
            key,
            reply,
            _alive: alive,
        });
        file
    }
}

/// Creates the private file of object `key` at `path`, and its parent
/// directories unless `made` says they exist.
fn create_object_file(path: &Path, key: &str, made: &mut HashSet<PathBuf>) -> Result<File> {
    if let Some(parent) = path.parent()
        && !made.contains(parent)
    {
        make_private_dir(parent).map_err(|e| collision_or(e, key))?;
        made.insert(parent.to_path_buf());
    }
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| collision_or(Error::io(path, e), key))
}

/// A key that is both a file and a directory (`a` and `a/b`) shows up as
/// an existing file or a non-directory parent; name it as what it is.
fn collision_or(err: Error, key: &str) -> Error {
    match &err {
        Error::Io { cause, .. }
            if matches!(
                cause.kind(),
                std::io::ErrorKind::AlreadyExists | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Error::Snapshot(format!(
                "object key `{key}` collides with another key (a key cannot be both a file and a directory)"
            ))
        }
        _ => err,
    }
}

/// Refuses to replace `out` unless it is empty or an intact snapshot: a
/// valid record, and nothing in the directory but the record and files it
/// lists. Says why otherwise; nothing is deleted.
fn check_replaceable(out: &Path) -> Result<()> {
    let refuse = |why: String| {
        Error::Snapshot(format!(
            "{} is not a kopsci snapshot that --force may replace: {why}; --force replaces only \
             an intact snapshot (its {RECORD_FILE} and the files it lists) or an empty \
             directory, and nothing was deleted (remove the directory yourself if nothing in it \
             is needed)",
            escape_path(out)
        ))
    };
    let is_empty = std::fs::read_dir(out)
        .map_err(|e| Error::io(out, e))?
        .next()
        .is_none();
    if is_empty {
        return Ok(());
    }
    match std::fs::symlink_metadata(out.join(RECORD_FILE)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // The wording older versions used, which scripts may match.
            return Err(Error::Snapshot(format!(
                "{} is not a kopsci snapshot (no {RECORD_FILE}); --force only replaces snapshots \
                 and empty directories, and nothing was deleted",
                escape_path(out)
            )));
        }
        Err(e) => return Err(Error::io(out.join(RECORD_FILE), e)),
        Ok(meta) if !meta.is_file() => {
            return Err(refuse(format!("its {RECORD_FILE} is not a regular file")));
        }
        Ok(_) => {}
    }
    let record = match Record::load(out) {
        Ok(record) => record,
        Err(Error::SnapshotRecord { message, .. }) => {
            return Err(refuse(format!(
                "its {RECORD_FILE} is not a valid snapshot record ({message})"
            )));
        }
        Err(e) => return Err(e),
    };
    let tree = LocalTree::read(out, &record.cluster)?;
    match tree.foreign_content(&record) {
        Some(why) => Err(refuse(why)),
        None => Ok(()),
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
                check_replaceable(&out)?;
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
    fn commit(&self, tmp: WorkDir) -> Result<()> {
        if !self.replace {
            return tmp.rename_to(&self.out);
        }
        // Checked again: the copy took a while, and what is about to be
        // deleted is what is there now.
        check_replaceable(&self.out)?;
        // Move the old snapshot aside first, into a work directory of its
        // own (removed by a later run if this one is killed): a rename
        // cannot replace a non-empty directory.
        let old = WorkDir::create(
            &self.parent,
            &format!(".{}.kopsci-old-", self.name.to_string_lossy()),
        )?;
        let previous = old.path().join("previous");
        std::fs::rename(&self.out, &previous).map_err(|e| Error::io(&self.out, e))?;
        if let Err(e) = tmp.rename_to(&self.out) {
            if std::fs::rename(&previous, &self.out).is_ok() {
                return Err(e);
            }
            // Neither copy is in place: keep the previous one where it is
            // rather than delete the only one left.
            let kept = old.keep();
            return Err(Error::Snapshot(format!(
                "{e}; the previous snapshot is kept at {}",
                crate::text::escape_path(&kept)
            )));
        }
        if let Err(e) = old.close() {
            tracing::warn!("could not remove the previous snapshot: {e}");
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

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn object_files_are_private_and_parents_made_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut made = HashSet::new();
        let path = dir.path().join("pki/private/ca/keyset.yaml");
        create_object_file(&path, "pki/private/ca/keyset.yaml", &mut made).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("pki/private")), 0o700);
        assert!(made.contains(&dir.path().join("pki/private/ca")));
        // A second object in a known directory needs no mkdir: removing the
        // directory makes that visible as a failure.
        std::fs::remove_dir_all(dir.path().join("pki/private/ca")).unwrap();
        let err = create_object_file(
            &dir.path().join("pki/private/ca/other"),
            "pki/private/ca/other",
            &mut made,
        )
        .unwrap_err();
        assert!(matches!(err, Error::Io { .. }), "{err}");
    }

    #[test]
    fn a_key_that_is_both_file_and_directory_is_named_as_a_collision() {
        let dir = tempfile::tempdir().unwrap();
        let mut made = HashSet::new();
        create_object_file(&dir.path().join("config"), "config", &mut made).unwrap();
        let under_file =
            create_object_file(&dir.path().join("config/extra"), "config/extra", &mut made)
                .unwrap_err()
                .to_string();
        assert!(
            under_file.contains("object key `config/extra` collides with another key"),
            "{under_file}"
        );

        create_object_file(&dir.path().join("ig/nodes"), "ig/nodes", &mut made).unwrap();
        let over_dir = create_object_file(&dir.path().join("ig"), "ig", &mut made)
            .unwrap_err()
            .to_string();
        assert!(
            over_dir.contains("object key `ig` collides with another key"),
            "{over_dir}"
        );
    }

    #[tokio::test]
    async fn the_file_thread_hands_over_files_in_order_and_stops_with_its_maker() {
        let dir = tempfile::tempdir().unwrap();
        let (alive, mut all_stopped) = mpsc::channel::<()>(1);
        let maker = FileMaker::start().unwrap();
        let pending: Vec<_> = (0..20)
            .map(|i| {
                let key = format!("instancegroup/ig-{i:02}");
                maker.create(dir.path().join(&key), key, alive.clone())
            })
            .collect();
        drop(alive);
        drop(maker);
        for (i, file) in pending.into_iter().enumerate() {
            let mut file = file.await.unwrap().unwrap();
            file.write_all(format!("{i}").as_bytes()).unwrap();
        }
        // Every job (and its hold on the directory) is gone once the thread
        // has drained its queue.
        assert!(all_stopped.recv().await.is_none());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("instancegroup/ig-07")).unwrap(),
            "7"
        );
    }
}
