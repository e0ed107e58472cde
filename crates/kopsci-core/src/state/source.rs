//! One interface over the stores a snapshot can read from (S3, `file://`):
//! list a cluster's objects page by page, stream one object into a sink.

use std::future::Future;
use std::pin::Pin;

use sha2::{Digest, Sha256};

use crate::errors::Result;
use crate::state::local::LocalStore;
use crate::state::s3::{S3Settings, S3Store};
use crate::state::url::StoreUrl;

/// A listed object; `key` is checked and relative to the cluster directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub size: u64,
    /// The listing's ETag, normalized; absent on some servers.
    pub etag: Option<String>,
}

/// What [`Sink::ready`] returns.
pub type Ready<'a> = Pin<Box<dyn Future<Output = Result<()>> + Send + 'a>>;

/// Where fetched bytes go. `reset` starts over (a retried body).
pub trait Sink: Send {
    /// Resolves when the sink can take bytes. A source calls it once the
    /// response has begun, so a sink can get ready (create its file) while
    /// the request is in flight instead of before it is sent.
    fn ready(&mut self) -> Ready<'_> {
        Box::pin(std::future::ready(Ok(())))
    }
    fn reset(&mut self) -> Result<()>;
    fn write(&mut self, chunk: &[u8]) -> Result<()>;
}

/// A sink that only hashes and counts: what `verify` needs.
#[derive(Default)]
pub struct HashSink {
    hasher: Sha256,
    size: u64,
}

impl HashSink {
    pub fn finish(self) -> (u64, String) {
        (self.size, hex::encode(self.hasher.finalize()))
    }
}

impl Sink for HashSink {
    fn reset(&mut self) -> Result<()> {
        *self = HashSink::default();
        Ok(())
    }

    fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.size += chunk.len() as u64;
        Ok(())
    }
}

/// A cluster directory of some store.
#[derive(Debug, Clone)]
pub enum Source {
    S3(S3Store),
    Local(LocalStore),
}

impl Source {
    /// Opens the directory of `cluster` in the store at `url`.
    pub async fn open(url: &StoreUrl, cluster: &str, s3: &S3Settings) -> Result<Source> {
        match url {
            StoreUrl::S3 { bucket, prefix } => {
                let prefix = if prefix.is_empty() {
                    format!("{cluster}/")
                } else {
                    format!("{prefix}/{cluster}/")
                };
                Ok(Source::S3(S3Store::connect(s3, bucket, prefix).await?))
            }
            StoreUrl::File { root } => Ok(Source::Local(LocalStore::open(root, cluster)?)),
        }
    }

    /// Starts a listing.
    pub fn lister(&self) -> Lister<'_> {
        Lister {
            source: self,
            token: None,
            done: false,
        }
    }

    /// The whole listing.
    pub async fn list_all(&self) -> Result<Vec<Entry>> {
        let mut lister = self.lister();
        let mut all = Vec::new();
        while let Some(page) = lister.next_page().await? {
            all.extend(page);
        }
        Ok(all)
    }

    /// Streams one object into `sink`; returns its ETag when there is one.
    pub async fn fetch(&self, key: &str, sink: &mut dyn Sink) -> Result<Option<String>> {
        match self {
            Source::S3(s3) => s3.fetch(key, sink).await,
            Source::Local(local) => {
                sink.ready().await?;
                local.fetch(key, sink)
            }
        }
    }
}

/// A listing in progress: S3 pages arrive one request at a time, so copying
/// can start before the listing ends.
pub struct Lister<'a> {
    source: &'a Source,
    token: Option<String>,
    done: bool,
}

impl Lister<'_> {
    pub async fn next_page(&mut self) -> Result<Option<Vec<Entry>>> {
        if self.done {
            return Ok(None);
        }
        match self.source {
            Source::S3(s3) => {
                let (entries, next) = s3.list_page(self.token.take()).await?;
                self.done = next.is_none();
                self.token = next;
                Ok(Some(entries))
            }
            Source::Local(local) => {
                self.done = true;
                Ok(Some(local.list()?))
            }
        }
    }
}
