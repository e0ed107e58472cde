//! `snapshot verify`: has the live store changed since a snapshot? Lists the
//! store with the snapshot's own filters and compares every object's bytes
//! (SHA-256) with the record — never the listing's ETag alone, which
//! servers report inconsistently. `snapshot verify --local` asks the other
//! question: has the local copy been altered since it was taken?

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::errors::{Error, Result};
use crate::state::filter::Filter;
use crate::state::record::Record;
use crate::state::s3::S3Settings;
use crate::state::source::{HashSink, Source};
use crate::state::tree::{LocalTree, hash_file};
use crate::state::url::StoreUrl;
use crate::text::{escape_controls, escape_path};

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The cluster's directory in the live store.
    pub source: String,
    pub cluster: String,
    /// When the snapshot was taken.
    pub time: String,
    /// Keys added to, gone from, or changed in the live store.
    pub changes: Changes,
    /// Objects found identical.
    pub unchanged: usize,
}

/// What differs between a record and what is there now, by key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Keys the record lacks.
    pub added: Vec<String>,
    /// Keys of the record that are gone.
    pub removed: Vec<String>,
    /// Keys whose bytes differ.
    pub modified: Vec<String>,
}

impl Changes {
    /// Compares two records by size and SHA-256 (ETags differ between
    /// servers).
    pub fn between(before: &Record, after: &Record) -> Changes {
        let index = |r: &Record| -> BTreeMap<String, (u64, String)> {
            r.objects
                .iter()
                .map(|o| (o.key.clone(), (o.size, o.sha256.clone())))
                .collect()
        };
        let (old, new) = (index(before), index(after));
        let mut changes = Changes::default();
        for (key, digest) in &new {
            match old.get(key) {
                None => changes.added.push(key.clone()),
                Some(d) if d != digest => changes.modified.push(key.clone()),
                Some(_) => {}
            }
        }
        changes.removed = old
            .keys()
            .filter(|k| !new.contains_key(*k))
            .cloned()
            .collect();
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.modified.is_empty()
    }

    /// `N added, M removed, K modified`.
    pub fn counts(&self) -> String {
        format!(
            "{} added, {} removed, {} modified",
            self.added.len(),
            self.removed.len(),
            self.modified.len()
        )
    }

    fn labelled(&self) -> impl Iterator<Item = (&'static str, &String)> {
        [
            ("added", &self.added),
            ("removed", &self.removed),
            ("modified", &self.modified),
        ]
        .into_iter()
        .flat_map(|(label, keys)| keys.iter().map(move |k| (label, k)))
    }

    /// `added a, modified b, …` on one line, control characters escaped.
    pub fn describe(&self) -> String {
        self.labelled()
            .map(|(label, key)| format!("{label} {}", escape_controls(key)))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// One indented line per changed key, control characters escaped.
    fn push_lines(&self, out: &mut String) {
        for (label, key) in self.labelled() {
            out.push_str(&format!("  {label:<9}{}\n", escape_controls(key)));
        }
    }
}

impl VerifyReport {
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Human-readable report: one line, then one line per changed key.
    /// Names keys only; contents never appear.
    pub fn render(&self) -> String {
        let mut out = if self.changed() {
            format!(
                "live store changed since the snapshot of {} ({}): {}\n",
                self.source,
                self.time,
                self.changes.counts()
            )
        } else {
            format!(
                "live store unchanged since the snapshot of {} ({}): {} objects identical\n",
                self.source, self.time, self.unchanged
            )
        };
        self.changes.push_lines(&mut out);
        out
    }
}

/// The outcome of `snapshot verify --local`: the snapshot directory against
/// its own record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalReport {
    /// The snapshot directory.
    pub dir: PathBuf,
    pub cluster: String,
    /// When the snapshot was taken.
    pub time: String,
    /// Files the record does not list (as keys relative to the cluster
    /// directory; anything outside it as a path relative to the snapshot
    /// directory), listed objects whose file is gone, and listed objects
    /// whose bytes differ or that are no longer a regular file.
    pub changes: Changes,
    /// Files found identical.
    pub unchanged: usize,
}

impl LocalReport {
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }

    /// Human-readable report, as for the live store.
    pub fn render(&self) -> String {
        let dir = escape_path(&self.dir);
        let mut out = if self.changed() {
            format!(
                "local snapshot {dir} altered since it was taken ({}): {}\n",
                self.time,
                self.changes.counts()
            )
        } else {
            format!(
                "local snapshot {dir} unchanged since it was taken ({}): {} files identical\n",
                self.time, self.unchanged
            )
        };
        self.changes.push_lines(&mut out);
        out
    }
}

/// Re-hashes the files of the snapshot in `dir` and compares them with its
/// record: what a job runs to prove its snapshot was not altered.
pub fn verify_local(dir: &Path) -> Result<LocalReport> {
    let record = Record::load(dir)?;
    let tree = LocalTree::read(dir, &record.cluster)?;
    let mut report = LocalReport {
        dir: dir.to_path_buf(),
        cluster: record.cluster.clone(),
        time: record.time.clone(),
        changes: Changes::default(),
        unchanged: 0,
    };
    let listed: BTreeMap<&str, _> = record.objects.iter().map(|o| (o.key.as_str(), o)).collect();
    for stray in &tree.strays {
        match &stray.key {
            Some(key) if listed.contains_key(key.as_str()) => {
                report.changes.modified.push(key.clone())
            }
            Some(key) => report.changes.added.push(key.clone()),
            None => report
                .changes
                .added
                .push(format!("{} ({})", stray.path, stray.kind)),
        }
    }
    for key in tree.files.keys() {
        if !listed.contains_key(key.as_str()) {
            report.changes.added.push(key.clone());
        }
    }
    for (key, object) in &listed {
        let Some(path) = tree.files.get(*key) else {
            if !report.changes.modified.iter().any(|m| m == key) {
                report.changes.removed.push(key.to_string());
            }
            continue;
        };
        let (size, sha256) = hash_file(path)?;
        if size == object.size && sha256 == object.sha256 {
            report.unchanged += 1;
        } else {
            report.changes.modified.push(key.to_string());
        }
    }
    report.changes.added.sort();
    report.changes.modified.sort();
    Ok(report)
}

/// Compares the live store with the snapshot in `dir`.
pub async fn verify(dir: &Path, s3: &S3Settings, concurrency: usize) -> Result<VerifyReport> {
    if concurrency == 0 {
        return Err(Error::Usage("--concurrency must be at least 1".into()));
    }
    let record = Record::load(dir)?;
    let store = StoreUrl::parse(&record.source).map_err(|e| Error::SnapshotRecord {
        path: dir.join(crate::state::record::RECORD_FILE),
        message: e.to_string(),
    })?;
    let filter = Filter::new(&record.filter)?;
    let source = Arc::new(Source::open(&store, &record.cluster, s3).await?);
    let live: BTreeMap<String, u64> = source
        .list_all()
        .await?
        .into_iter()
        .filter(|e| filter.keeps(&e.key))
        .map(|e| (e.key, e.size))
        .collect();
    let recorded: BTreeMap<&str, _> = record.objects.iter().map(|o| (o.key.as_str(), o)).collect();

    let mut report = VerifyReport {
        source: store.cluster_url(&record.cluster),
        cluster: record.cluster.clone(),
        time: record.time.clone(),
        changes: Changes {
            added: live
                .keys()
                .filter(|k| !recorded.contains_key(k.as_str()))
                .cloned()
                .collect(),
            removed: recorded
                .keys()
                .filter(|k| !live.contains_key(**k))
                .map(|k| k.to_string())
                .collect(),
            modified: Vec::new(),
        },
        unchanged: 0,
    };

    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks: JoinSet<Result<(String, bool)>> = JoinSet::new();
    for (key, object) in &recorded {
        let Some(&live_size) = live.get(*key) else {
            continue;
        };
        if live_size != object.size {
            report.changes.modified.push(key.to_string());
            continue;
        }
        let permit = Arc::clone(&permits)
            .acquire_owned()
            .await
            .map_err(|_| Error::Snapshot("internal error: fetch slots closed".into()))?;
        let source = Arc::clone(&source);
        let key = key.to_string();
        let expected = object.sha256.clone();
        tasks.spawn(async move {
            let _permit = permit;
            let mut sink = HashSink::default();
            source.fetch(&key, &mut sink).await?;
            let (_, sha256) = sink.finish();
            Ok((key, sha256 == expected))
        });
    }
    while let Some(done) = tasks.join_next().await {
        let (key, same) =
            done.map_err(|_| Error::Snapshot("internal error: a fetch task failed".into()))??;
        if same {
            report.unchanged += 1;
        } else {
            report.changes.modified.push(key);
        }
    }
    report.changes.modified.sort();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_changes_by_key() {
        let report = VerifyReport {
            source: "s3://b/c/".into(),
            cluster: "c".into(),
            time: "t".into(),
            changes: Changes {
                added: vec!["instancegroup/new".into()],
                removed: vec![],
                modified: vec!["config".into(), "pki/private/ca/keyset.yaml".into()],
            },
            unchanged: 3,
        };
        assert!(report.changed());
        assert_eq!(
            report.render(),
            "live store changed since the snapshot of s3://b/c/ (t): 1 added, 0 removed, 2 modified\n\
             \x20 added    instancegroup/new\n\
             \x20 modified config\n\
             \x20 modified pki/private/ca/keyset.yaml\n"
        );
        let same = VerifyReport {
            changes: Changes::default(),
            ..report
        };
        assert!(!same.changed());
        assert!(same.render().contains("unchanged"));
    }
}
