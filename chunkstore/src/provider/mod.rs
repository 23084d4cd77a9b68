//! Providers store opaque objects under '/'-separated keys. They know nothing about chunks.
//!
//! The trait is modelled on Rama's `BackupProvider`: get, ranged get, put-if-absent, delete,
//! exists and a paginated, sorted listing by prefix. Implementations: [`LocalProvider`] (a
//! directory), [`S3Provider`] (S3 and S3-compatible servers) and [`MemoryProvider`] (tests).
//! Wrappers are [`Layer`]s, which forward every method they do not override:
//! [`RetryingProvider`] (backoff on temporary failures, around every remote provider) and
//! [`DeadlineProvider`] (every request gives up at a deadline: a mirror that stopped answering)
//! and [`FaultyProvider`] (fault injection for tests).

mod deadline;
mod faulty;
mod layer;
mod local;
mod memory;
mod retry;
#[cfg(feature = "s3")]
mod s3;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

pub use deadline::DeadlineProvider;
pub use faulty::{FaultyProvider, Op};
pub use layer::Layer;
pub use local::LocalProvider;
pub use memory::MemoryProvider;
pub use retry::{RetryPolicy, RetryingProvider};
#[cfg(feature = "s3")]
pub use s3::{RequestCounts, S3Location, S3Options, S3Provider};

use crate::{Error, Result};

/// One object in a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// When the store wrote the object, by the store's own clock (a local file's mtime, an
    /// S3 object's LastModified), in ms since the epoch; `None` where a provider has no
    /// such clock (the in-memory one). Liveness of sessions is judged by this clock, which
    /// every GC shares, rather than by the writers' clocks (docs/gc.md, "Clocks").
    pub modified_ms: Option<u64>,
}

/// One page of a listing; `next_token` is `None` on the last page.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    pub objects: Vec<ObjectMeta>,
    pub next_token: Option<String>,
}

#[async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// A human-readable location for messages, e.g. `fs /var/rbk`.
    fn describe(&self) -> String;

    /// Whether each request costs a network round trip, so readers keep more of them in
    /// flight (and more memory busy) to hide it.
    fn is_remote(&self) -> bool {
        true
    }

    /// Reads a whole object of at most `max_len` bytes. The size is checked before the body
    /// is read: a hostile or damaged store cannot make rbk allocate more than that. Each
    /// kind of object has its limit ([`limits`]).
    ///
    /// # Errors
    /// `NotFound` when `key` does not exist; `Corrupt` when it is larger than `max_len` or
    /// not a regular object (a FIFO or symlink in a local store).
    async fn get(&self, key: &str, max_len: u64) -> Result<Bytes>;

    /// Reads `len` bytes at `offset`.
    ///
    /// # Errors
    /// `NotFound` when `key` does not exist; `Corrupt` when the object is shorter than the
    /// range (a truncated object).
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> Result<Bytes>;

    /// [`Self::get_range`] into `buf` (its contents replaced), returned. A provider that can
    /// read into it reuses its allocation (a restore recycles a few span buffers instead of
    /// allocating one per read); the default copies.
    ///
    /// # Errors
    /// As [`Self::get_range`].
    async fn get_range_into(
        &self,
        key: &str,
        offset: u64,
        len: u64,
        mut buf: Vec<u8>,
    ) -> Result<Vec<u8>> {
        let got = self.get_range(key, offset, len).await?;
        buf.clear();
        buf.extend_from_slice(&got);
        Ok(buf)
    }

    /// Stores `body` under `key` unless an object is already there. Returns whether it wrote.
    /// Keys are content-addressed or unique, so an existing object never needs replacing.
    async fn put_if_absent(&self, key: &str, body: Bytes) -> Result<bool>;

    /// A directory where packs may be written as they fill and then handed over whole by
    /// [`Self::put_spooled_if_absent`], so they never sit in memory. A local store's is on
    /// its own filesystem, where taking the file is a hard link. `None` (the default): the
    /// store builds packs in memory.
    fn spool_dir(&self) -> Option<PathBuf> {
        None
    }

    /// [`Self::put_if_absent`] with the body in the complete file `path` (in
    /// [`Self::spool_dir`]). The file is the caller's: it deletes it afterwards, whatever
    /// happened. The default reads it into memory.
    ///
    /// # Errors
    /// As [`Self::put_if_absent`]; I/O errors reading the file.
    async fn put_spooled_if_absent(&self, key: &str, path: &Path) -> Result<bool> {
        let body = tokio::fs::read(path)
            .await
            .map_err(|e| Error::io(path, e))?;
        self.put_if_absent(key, Bytes::from(body)).await
    }

    /// Deletes `key`; deleting a missing key is not an error.
    async fn delete(&self, key: &str) -> Result<()>;

    /// Deletes every key; missing keys are not an error. Providers with a batch request
    /// (S3's DeleteObjects) override this.
    async fn delete_many(&self, keys: &[String]) -> Result<()> {
        for key in keys {
            self.delete(key).await?;
        }
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool>;

    /// Deletes what interrupted writes left behind (a local store's temporary files) that
    /// is older than `older_than`; returns how many. Stores whose writes are atomic on the
    /// server side (S3) have nothing of the kind: the default does nothing.
    async fn collect_leftovers(&self, _older_than: std::time::Duration) -> Result<u64> {
        Ok(0)
    }

    /// Lists objects whose keys start with `prefix`, sorted by key, at most `page_size` per
    /// page, starting after `page_token` (the token of the previous page).
    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> Result<ListPage>;
}

/// The most rbk reads of each kind of whole object (docs/format.md, "Size limits"). Each is
/// far above what rbk writes, and bounds what a hostile store can make it allocate.
pub mod limits {
    /// The store's `config`: a few hundred bytes of JSON.
    pub const CONFIG: u64 = 64 << 10;
    /// A session's record or heartbeat: well under a KiB.
    pub const SESSION_RECORD: u64 = 64 << 10;
    /// A GC record: the condemned packs of one GC run, ~70 bytes each.
    pub const GC_RECORD: u64 = 512 << 20;
    /// A manifest: ~40 bytes per chunk id plus ~100 per file; 256 MiB holds millions.
    pub const MANIFEST: u64 = 256 << 20;
    /// A pack read whole (GC's repack) may be its store's `pack_target_size` plus two
    /// chunks; packs of a store are never larger.
    pub fn pack(pack_target_size: u64, max_chunk: u64) -> u64 {
        pack_target_size.saturating_add(max_chunk.saturating_mul(2))
    }
}

/// Lists every object under `prefix`, following pagination.
///
/// # Errors
/// Whatever the provider returns.
pub async fn list_all(p: &dyn Provider, prefix: &str) -> Result<Vec<ObjectMeta>> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = p.list(prefix, token.as_deref(), 1000).await?;
        out.extend(page.objects);
        match page.next_token {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Checks that a key is safe for every provider: relative, '/'-separated, no empty, `.` or
/// `..` segments, no control characters or backslashes.
///
/// # Errors
/// `InvalidInput` naming the key.
pub fn validate_key(key: &str) -> Result<()> {
    let bad_segment = key
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == "..");
    if key.is_empty() || bad_segment || key.chars().any(|c| c.is_control() || c == '\\') {
        return Err(Error::InvalidInput(format!(
            "`{key}` is not a valid object key (relative, '/'-separated, no empty, '.' or '..' parts)"
        )));
    }
    Ok(())
}

/// Opens a provider from its config string: `fs <path>`, `s3 <bucket>[/<prefix>]`,
/// `s3 http(s)://host:port/<bucket>[/<prefix>]` or `memory`. S3 providers come wrapped in a
/// [`RetryingProvider`] with the default policy.
///
/// # Errors
/// `InvalidInput` for an unknown kind or a malformed argument.
pub fn from_spec(spec: &str) -> Result<Arc<dyn Provider>> {
    let spec = spec.trim();
    let (kind, arg) = spec.split_once(char::is_whitespace).unwrap_or((spec, ""));
    let arg = arg.trim();
    match kind {
        "fs" if !arg.is_empty() => Ok(Arc::new(LocalProvider::new(arg))),
        #[cfg(feature = "s3")]
        "s3" => {
            let s3 = S3Provider::new(S3Location::parse(arg)?, S3Options::default());
            Ok(Arc::new(RetryingProvider::new(
                Arc::new(s3),
                RetryPolicy::default(),
            )))
        }
        "memory" => Ok(Arc::new(MemoryProvider::default())),
        _ => Err(Error::InvalidInput(format!(
            "backup provider `{spec}` is not understood: use `fs <directory>` (e.g. `fs /var/rbk`), \
             `s3 <bucket>[/<prefix>]` or `s3 http://host:port/<bucket>[/<prefix>]`"
        ))),
    }
}

pub(crate) fn page_of(
    mut keys: Vec<ObjectMeta>,
    page_token: Option<&str>,
    page_size: usize,
) -> ListPage {
    keys.sort_by(|a, b| a.key.cmp(&b.key));
    let start = match page_token {
        Some(t) => keys.partition_point(|o| o.key.as_str() <= t),
        None => 0,
    };
    let page_size = page_size.max(1);
    let end = (start + page_size).min(keys.len());
    let objects = keys[start..end].to_vec();
    let next_token = (end < keys.len())
        .then(|| objects.last().map(|o| o.key.clone()))
        .flatten();
    ListPage {
        objects,
        next_token,
    }
}

pub mod conformance;
