//! The chunk store: chunks in packs in a provider, located through the local index.
//!
//! Write path: [`ChunkStore::put_chunk`] skips chunks the index or this session already has,
//! compresses the rest into the open pack, and uploads the pack when it reaches the target
//! size. [`ChunkStore::flush`] uploads the last partial pack. Ordering for crash safety: a pack
//! is uploaded first and recorded in the index only after the upload succeeded; callers write
//! anything that references chunks (a manifest) only after `flush` returned.
//!
//! Read path (`read.rs`): [`ChunkStore::plan_read`] locates chunks through the index (syncing
//! it from the store on a miss); [`ChunkStore::read_plan`] fetches nearby chunks of a pack with
//! one ranged read and verifies every chunk against its BLAKE3 id on every core.
//! [`ChunkStore::read_chunks`] does both for one sequence of chunks.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::chunker::{Chunker, ChunkerParams};
use crate::compress::{self, Content};
use crate::index::{ChunkLocation, RocksChunkIndex};
use crate::pack::{self, FOOTER_LEN, PackBuilder};
use crate::provider::{self, ObjectMeta, Provider, limits};
use crate::session::{Session, SessionTiming};
use crate::{ChunkId, Error, Result, gc};

pub const CONFIG_KEY: &str = "config";
pub const PACKS_PREFIX: &str = "packs/";
/// Version 2 added transformed chunks (docs/format.md); version 1 stores are read and written
/// as before (their chunks are never transformed, so an older rbk can still read them).
const FORMAT_VERSION: u32 = 2;
/// Sealed packs being uploaded while chunking goes on.
const MAX_UPLOADS_IN_FLIGHT: usize = 2;
/// Ranged reads of nearby chunks are merged up to this many bytes.
pub(crate) const MAX_SPAN: u64 = 4 << 20;

/// The store's own description, written once as the `config` object when it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    pub version: u32,
    /// Random identity of this store, used to name the local index and (later) to stop two
    /// clusters from sharing a store by accident.
    pub store_id: String,
    pub chunker: ChunkerParams,
    pub zstd_level: i32,
    pub pack_target_size: u64,
}

impl StoreConfig {
    pub fn new_random() -> Self {
        StoreConfig {
            version: FORMAT_VERSION,
            store_id: format!("{:032x}", rand::random::<u128>()),
            chunker: ChunkerParams::default(),
            zstd_level: compress::DEFAULT_LEVEL,
            pack_target_size: 8 << 20,
        }
    }

    /// # Errors
    /// `Corrupt` when the bytes are not a config this version understands.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let c: StoreConfig = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("store config object `config`", e.to_string()))?;
        if !(1..=FORMAT_VERSION).contains(&c.version) {
            return Err(Error::corrupt(
                "store config object `config`",
                format!(
                    "format version {} is not supported by this rbk (supports {FORMAT_VERSION}); upgrade rbk",
                    c.version
                ),
            ));
        }
        c.chunker.validate()?;
        if c.store_id.is_empty() || !c.store_id.chars().all(|ch| ch.is_ascii_alphanumeric()) {
            return Err(Error::corrupt(
                "store config object `config`",
                "store_id must be alphanumeric",
            ));
        }
        if !(1 << 20..=1 << 30).contains(&c.pack_target_size) {
            return Err(Error::corrupt(
                "store config object `config`",
                "pack_target_size must be 1 MiB ..= 1 GiB",
            ));
        }
        Ok(c)
    }
}

/// What [`ChunkStore::sync_index`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Packs in the store and in the index afterwards.
    pub packs: usize,
    pub added: usize,
    pub removed: usize,
    /// Packs whose trailer could not be read, with why; left out of the index.
    pub damaged: Vec<(String, String)>,
}

/// Counters of one session's writes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub new_chunks: u64,
    pub new_raw_bytes: u64,
    pub new_stored_bytes: u64,
    pub packs_written: u64,
}

impl std::ops::Sub for WriteStats {
    type Output = WriteStats;
    fn sub(self, o: WriteStats) -> WriteStats {
        WriteStats {
            new_chunks: self.new_chunks - o.new_chunks,
            new_raw_bytes: self.new_raw_bytes - o.new_raw_bytes,
            new_stored_bytes: self.new_stored_bytes - o.new_stored_bytes,
            packs_written: self.packs_written - o.packs_written,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    new_chunks: AtomicU64,
    new_raw_bytes: AtomicU64,
    new_stored_bytes: AtomicU64,
    packs_written: AtomicU64,
}

pub fn pack_key(pack: &ChunkId) -> String {
    let h = pack.to_hex();
    format!("{PACKS_PREFIX}{}/{h}", &h[..2])
}

fn pack_id_of_key(key: &str) -> Option<ChunkId> {
    let name = key.strip_prefix(PACKS_PREFIX)?.rsplit('/').next()?;
    ChunkId::from_hex(name).ok()
}

#[derive(Debug)]
pub struct ChunkStore {
    provider: Arc<dyn Provider>,
    rt: tokio::runtime::Runtime,
    config: StoreConfig,
    chunker: Chunker,
    index: Arc<RocksChunkIndex>,
    open_pack: Mutex<PackBuilder>,
    /// Uploads of sealed packs still in flight, oldest first. At most
    /// [`MAX_UPLOADS_IN_FLIGHT`] are kept, which bounds the memory held by sealed packs.
    uploads: Mutex<VecDeque<tokio::task::JoinHandle<Result<()>>>>,
    /// Chunks added in this session (in the open pack or already uploaded).
    session: Mutex<HashSet<ChunkId>>,
    /// Set when an upload failed: chunks claimed by the session may be missing from the
    /// store, so nothing may be committed on top of them.
    failed: Arc<AtomicBool>,
    counters: Arc<Counters>,
    /// Packs condemned by a GC when the current session began: chunks in them are not
    /// deduplicated against but stored again (docs/gc.md).
    condemned: Mutex<Condemned>,
    timing: SessionTiming,
    /// Packs the last index sync could not read, with why.
    damaged: Mutex<Vec<(String, String)>>,
    /// Buffers of uploaded packs, reused for new ones. Freeing and allocating a 10 MiB buffer
    /// per pack made glibc's malloc keep several of them per thread (its mmap threshold rises
    /// to the size of the first one freed, so later ones come from per-thread arenas that are
    /// not trimmed): a backup's peak RSS was ~80 MB with ~50 MB in use.
    spare_packs: Arc<Mutex<Vec<Vec<u8>>>>,
}

#[derive(Debug, Clone)]
enum Condemned {
    Packs(HashSet<ChunkId>),
    /// A condemnation record could not be read: trust no pack.
    Everything,
}

impl Condemned {
    fn allows(&self, loc: &ChunkLocation) -> bool {
        match self {
            Condemned::Packs(p) => !p.contains(&loc.pack),
            Condemned::Everything => false,
        }
    }
}

/// An empty pack with room for a whole pack (see [`PackBuilder::with_capacity`]). Untouched
/// capacity costs address space, not memory.
fn new_pack(config: &StoreConfig) -> PackBuilder {
    let max_chunk = config.chunker.max_size as usize;
    PackBuilder::with_capacity(
        config.pack_target_size as usize + zstd::zstd_safe::compress_bound(max_chunk),
    )
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChunkStore {
    /// Opens the store behind `provider`. With `create`, a store without a `config` object is
    /// initialised; without it, a missing config is `NotFound`. The local index lives in
    /// `index_root/<store id>`.
    ///
    /// # Errors
    /// `NotFound` for a missing store, `Corrupt` for an unreadable config, `Index` when the
    /// local index cannot be opened, provider errors.
    pub fn open(provider: Arc<dyn Provider>, index_root: &Path, create: bool) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let config = rt.block_on(async {
            match provider.get(CONFIG_KEY, limits::CONFIG).await {
                Ok(bytes) => StoreConfig::parse(&bytes),
                Err(e) if e.kind() == crate::ErrorKind::NotFound && create => {
                    let fresh = StoreConfig::new_random();
                    let body = serde_json::to_vec_pretty(&fresh).expect("config serializes");
                    // Two processes may create the store at once: whoever wins, read it back.
                    provider
                        .put_if_absent(CONFIG_KEY, Bytes::from(body))
                        .await?;
                    StoreConfig::parse(&provider.get(CONFIG_KEY, limits::CONFIG).await?)
                }
                Err(e) if e.kind() == crate::ErrorKind::NotFound => Err(Error::NotFound {
                    key: format!(
                        "{CONFIG_KEY} (no rbk store at `{}`; check backup.provider)",
                        provider.describe()
                    ),
                }),
                Err(e) => Err(e),
            }
        })?;
        let index_dir = index_root.join(&config.store_id);
        std::fs::create_dir_all(&index_dir).map_err(|e| Error::io(&index_dir, e))?;
        let index = RocksChunkIndex::open(&index_dir)?;
        let open_pack = new_pack(&config);
        Ok(ChunkStore {
            chunker: Chunker::new(config.chunker)?,
            provider,
            rt,
            config,
            index: Arc::new(index),
            open_pack: Mutex::new(open_pack),
            uploads: Mutex::new(VecDeque::new()),
            session: Mutex::new(HashSet::new()),
            failed: Arc::new(AtomicBool::new(false)),
            counters: Arc::new(Counters::default()),
            condemned: Mutex::new(Condemned::Packs(HashSet::new())),
            timing: SessionTiming::default(),
            damaged: Mutex::new(Vec::new()),
            spare_packs: Arc::default(),
        })
    }

    /// Sets how often sessions of this process heartbeat and how long a GC run by this
    /// process waits for others' heartbeats.
    pub fn set_session_timing(&mut self, timing: SessionTiming) {
        self.timing = timing;
    }

    pub fn session_timing(&self) -> SessionTiming {
        self.timing
    }

    /// Begins a session (docs/gc.md): writes its first heartbeat, then learns which packs are
    /// condemned (chunks in them will be stored again rather than deduplicated against), then
    /// brings the index in line with the store. The order matters: a GC either sees this
    /// session when it arms a condemnation, or this session sees the condemnation.
    ///
    /// # Errors
    /// Provider and index errors.
    pub fn begin_session(&self, kind: &str, label: &str) -> Result<Session> {
        let started_ms = crate::session::now_ms();
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut session = Session {
            id: Session::new_id(),
            provider: self.provider.clone(),
            stop: Some(stop_tx),
            task: None,
            revoked: Arc::new(AtomicBool::new(false)),
        };
        let body = Session::heartbeat_body(kind, label, started_ms);
        self.block_on(
            self.provider
                .put_if_absent(&session.first_heartbeat_key(), body),
        )?;
        let records = match self.block_on(gc::list_records(self.provider.as_ref())) {
            Ok(r) => r,
            Err(e) => {
                let _ = self.end_session(session);
                return Err(e);
            }
        };
        *lock(&self.condemned) = if !records.damaged.is_empty() {
            tracing::warn!(
                "damaged GC record {}: this session deduplicates against nothing",
                records.damaged[0].0
            );
            Condemned::Everything
        } else {
            Condemned::Packs(records.packs())
        };
        if let Err(e) = self.sync_index() {
            let _ = self.end_session(session);
            return Err(e);
        }
        session.task = Some(self.rt.spawn(Session::heartbeat_loop(
            self.provider.clone(),
            session.id.clone(),
            kind.into(),
            label.into(),
            started_ms,
            self.timing.heartbeat,
            stop_rx,
            session.revoked.clone(),
        )));
        Ok(session)
    }

    /// Fails with `SessionRevoked` when a GC declared `session` dead. A backup calls it after
    /// writing its manifest: if it fails, the manifest must be deleted again.
    ///
    /// # Errors
    /// `SessionRevoked`, provider errors.
    pub fn check_session(&self, session: &Session) -> Result<()> {
        self.block_on(session.check_alive())
    }

    /// Ends `session`: stops its heartbeats and deletes them. Everything it wrote must be
    /// committed (or abandoned) before.
    ///
    /// # Errors
    /// Provider errors (the session then looks alive until its lease runs out).
    pub fn end_session(&self, mut session: Session) -> Result<()> {
        if let Some(stop) = session.stop.take() {
            let _ = stop.send(true);
        }
        let last = match session.task.take() {
            Some(task) => self.block_on(task).unwrap_or(u64::MAX),
            None => 0,
        };
        self.block_on(session.delete_heartbeats(last))
    }

    /// Uploads a finished pack now and records it in the index. Returns its id and size.
    ///
    /// # Errors
    /// Provider and index errors.
    pub fn write_pack(&self, builder: PackBuilder) -> Result<(ChunkId, u64)> {
        let (bytes, entries) = builder.finish();
        let pack = ChunkId::of(&bytes);
        let size = bytes.len() as u64;
        self.block_on(
            self.provider
                .put_if_absent(&pack_key(&pack), Bytes::from(bytes)),
        )?;
        self.index.add_pack(&pack, size, &entries)?;
        Ok((pack, size))
    }

    /// Deletes packs from the store in one batch (the provider splits it into requests, e.g.
    /// DeleteObjects of 1000 keys on S3), then from the index.
    ///
    /// # Errors
    /// Provider and index errors.
    pub fn delete_packs(&self, packs: &[ChunkId]) -> Result<()> {
        let keys: Vec<String> = packs.iter().map(pack_key).collect();
        self.block_on(self.provider.delete_many(&keys))?;
        packs
            .iter()
            .try_for_each(|pack| self.index.remove_pack(pack))
    }

    /// Whether the index may be trusted for `id`: it knows a copy of the chunk in a pack that
    /// was not condemned when the session began.
    fn usable(&self, id: &ChunkId) -> Result<bool> {
        let locs = self.index.locations(id)?;
        let condemned = lock(&self.condemned);
        Ok(locs.iter().any(|l| condemned.allows(l)))
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    pub fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    pub fn index(&self) -> &RocksChunkIndex {
        &self.index
    }

    /// Runs a provider future to completion. Must not be called from inside an async context.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// Runs `f` as a task of the store's runtime.
    pub(crate) fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(f)
    }

    /// Brings the index in line with the packs in the store: reads the trailer of every pack
    /// the index does not know and forgets packs that are gone. A pack whose trailer is
    /// damaged is left out (its chunks count as absent, so backups store them again) and
    /// reported, rather than failing every operation that syncs.
    ///
    /// # Errors
    /// Provider and index errors.
    pub fn sync_index(&self) -> Result<SyncReport> {
        let listed = self.block_on(provider::list_all(self.provider.as_ref(), PACKS_PREFIX))?;
        let mut present = HashSet::new();
        let mut report = SyncReport::default();
        for ObjectMeta { key, size, .. } in listed {
            let Some(pack) = pack_id_of_key(&key) else {
                continue; // not a pack rbk wrote; ignore
            };
            if !self.index.has_pack(&pack)? {
                let entries = match self.read_pack_index(&key, size) {
                    Ok(e) => e,
                    // Swept by a GC since the listing: as if it had not been listed.
                    Err(e) if e.kind() == crate::ErrorKind::NotFound => continue,
                    Err(e) if e.kind() == crate::ErrorKind::Corrupt => {
                        tracing::warn!("{e}");
                        report.damaged.push((key, e.to_string()));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                self.index.add_pack(&pack, size, &entries)?;
                report.added += 1;
            }
            present.insert(pack);
        }
        for (pack, _) in self.index.packs()? {
            if !present.contains(&pack) {
                self.index.remove_pack(&pack)?;
                report.removed += 1;
            }
        }
        report.packs = present.len();
        lock(&self.damaged).clone_from(&report.damaged);
        Ok(report)
    }

    /// Packs the last index sync found damaged (key, why).
    pub fn damaged_packs(&self) -> Vec<(String, String)> {
        lock(&self.damaged).clone()
    }

    /// Why no indexed pack holds a chunk: some pack could not be read (the chunk is
    /// probably in it), or none holds it.
    pub fn missing_chunk_detail(&self) -> (bool, String) {
        let damaged = lock(&self.damaged);
        match damaged.first() {
            Some((key, why)) => (
                true,
                format!(
                    "no readable pack holds it; {} pack(s) are damaged, e.g. {key}: {why}",
                    damaged.len()
                ),
            ),
            None => (false, "no pack in the store holds it".into()),
        }
    }

    /// The error for a chunk no indexed pack holds: corruption when a pack could not be
    /// read, else not found.
    pub fn missing_chunk_error(&self, id: &ChunkId) -> Error {
        match self.missing_chunk_detail() {
            (true, detail) => Error::corrupt(format!("chunk {id}"), detail),
            (false, detail) => Error::NotFound {
                key: format!("chunk {id} ({detail})"),
            },
        }
    }

    /// Forgets everything the index knows and rebuilds it from the store's pack trailers.
    ///
    /// # Errors
    /// Provider and index errors.
    pub fn rebuild_index(&self) -> Result<SyncReport> {
        self.index.clear()?;
        self.sync_index()
    }

    fn read_pack_index(&self, key: &str, size: u64) -> Result<Vec<pack::PackEntry>> {
        // The trailer's length comes from the object: bound it by what this store's packs
        // can be, or a planted object could make rbk read gigabytes of "index".
        let max_len = limits::pack(
            self.config.pack_target_size,
            u64::from(self.config.chunker.max_size),
        );
        if size > max_len {
            return Err(Error::too_large(key, size, max_len));
        }
        if size < FOOTER_LEN as u64 {
            return pack::parse_footer(key, &[], size).map(|_| Vec::new());
        }
        self.block_on(async {
            let footer = self
                .provider
                .get_range(key, size - FOOTER_LEN as u64, FOOTER_LEN as u64)
                .await?;
            let (start, len) = pack::parse_footer(key, &footer, size)?;
            let index = self.provider.get_range(key, start, len).await?;
            pack::parse_index(key, &footer, &index, start)
        })
    }

    /// Which of `ids` the store already holds (per the index, outside condemned packs) or this
    /// session has added.
    ///
    /// # Errors
    /// `Index` errors.
    pub fn contains_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let usable = ids
            .iter()
            .map(|id| self.usable(id))
            .collect::<Result<Vec<bool>>>()?;
        let session = lock(&self.session);
        Ok(usable
            .into_iter()
            .zip(ids)
            .map(|(u, id)| u || session.contains(id))
            .collect())
    }

    /// Adds a chunk unless the store or this session already has it. Returns whether it was
    /// new. `data` must hash to `id`.
    ///
    /// # Errors
    /// Provider errors when a full pack is uploaded; `Index` errors.
    pub fn put_chunk(&self, id: ChunkId, data: &[u8]) -> Result<bool> {
        self.put_chunk_as(id, data, Content::Opaque)
    }

    /// [`Self::put_chunk`] for a chunk whose content is known, so it can be stored smaller
    /// (in a version 1 store, which older rbk versions must still read, it is stored plain).
    ///
    /// # Errors
    /// As [`Self::put_chunk`].
    pub fn put_chunk_as(&self, id: ChunkId, data: &[u8], content: Content) -> Result<bool> {
        if !lock(&self.session).insert(id) {
            return Ok(false);
        }
        if self.usable(&id)? {
            return Ok(false);
        }
        thread_local! {
            static STORED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let (full, stored_len) = STORED.with(|cell| -> Result<_> {
            let mut stored = cell.borrow_mut();
            let content = if self.config.version >= 2 {
                content
            } else {
                Content::Opaque
            };
            compress::compress_into(data, self.config.zstd_level, content, &mut stored)?;
            let mut open = lock(&self.open_pack);
            open.add(id, data.len() as u32, &stored);
            let full = (open.len() as u64 >= self.config.pack_target_size)
                .then(|| std::mem::replace(&mut *open, self.new_pack()));
            Ok((full, stored.len()))
        })?;
        self.counters.new_chunks.fetch_add(1, Ordering::Relaxed);
        self.counters
            .new_raw_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        self.counters
            .new_stored_bytes
            .fetch_add(stored_len as u64, Ordering::Relaxed);
        if let Some(builder) = full {
            self.upload_pack(builder)?;
        }
        Ok(true)
    }

    /// Seals `builder` and starts its upload in the background, so chunking continues while
    /// the pack is written and fsynced. Waits for the oldest upload when too many are in
    /// flight. A pack enters the index only after its upload succeeded.
    fn upload_pack(&self, builder: PackBuilder) -> Result<()> {
        let (bytes, entries) = builder.finish();
        let pack = ChunkId::of(&bytes);
        let size = bytes.len() as u64;
        let (provider, index, counters, failed, spare) = (
            self.provider.clone(),
            self.index.clone(),
            self.counters.clone(),
            self.failed.clone(),
            self.spare_packs.clone(),
        );
        let task = self.rt.spawn(async move {
            let body = Bytes::from(bytes);
            let r = provider.put_if_absent(&pack_key(&pack), body.clone()).await;
            // Hand the buffer back for the next pack unless the provider still holds on to it.
            if let Ok(buf) = body.try_into_mut() {
                let mut spare = lock(&spare);
                if spare.len() < MAX_UPLOADS_IN_FLIGHT + 1 {
                    spare.push(Vec::from(buf));
                }
            }
            let r = r.and_then(|_| index.add_pack(&pack, size, &entries));
            match &r {
                Ok(()) => {
                    counters.packs_written.fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => failed.store(true, Ordering::SeqCst),
            }
            r
        });
        let oldest = {
            let mut uploads = lock(&self.uploads);
            uploads.push_back(task);
            if uploads.len() > MAX_UPLOADS_IN_FLIGHT {
                uploads.pop_front()
            } else {
                None
            }
        };
        match oldest {
            Some(t) => self.join_upload(t),
            None => Ok(()),
        }
    }

    /// An empty pack builder, on a spare buffer when there is one.
    fn new_pack(&self) -> PackBuilder {
        match lock(&self.spare_packs).pop() {
            Some(buf) => PackBuilder::on_buffer(buf),
            None => new_pack(&self.config),
        }
    }

    fn join_upload(&self, task: tokio::task::JoinHandle<Result<()>>) -> Result<()> {
        self.block_on(task).unwrap_or_else(|e| {
            self.failed.store(true, Ordering::SeqCst);
            Err(Error::InvalidInput(format!("pack upload task failed: {e}")))
        })
    }

    /// Uploads the open pack. After `flush` returns, every chunk `put_chunk` accepted is in the
    /// store and the index.
    ///
    /// # Errors
    /// Provider errors, or an earlier failed upload in this session.
    pub fn flush(&self) -> Result<()> {
        let builder = std::mem::replace(&mut *lock(&self.open_pack), self.new_pack());
        if !builder.is_empty() {
            self.upload_pack(builder)?;
        }
        let in_flight: Vec<_> = lock(&self.uploads).drain(..).collect();
        for task in in_flight {
            self.join_upload(task)?;
        }
        // Everything the session added is now in the index, which is the longer-lived record;
        // a long-running process must not trust a set that GC could make stale.
        if !self.failed.load(Ordering::SeqCst) {
            lock(&self.session).clear();
        }
        if self.failed.load(Ordering::SeqCst) {
            return Err(Error::Provider {
                provider: self.provider.describe(),
                key: PACKS_PREFIX.into(),
                detail: "an earlier pack upload failed in this session; nothing was committed"
                    .into(),
                temporary: true,
            });
        }
        Ok(())
    }

    /// Counters since this store was opened; diff two readings for one operation.
    pub fn write_stats(&self) -> WriteStats {
        WriteStats {
            new_chunks: self.counters.new_chunks.load(Ordering::Relaxed),
            new_raw_bytes: self.counters.new_raw_bytes.load(Ordering::Relaxed),
            new_stored_bytes: self.counters.new_stored_bytes.load(Ordering::Relaxed),
            packs_written: self.counters.packs_written.load(Ordering::Relaxed),
        }
    }

    /// Where a chunk is, syncing the index from the store once if it does not know.
    ///
    /// # Errors
    /// `NotFound` when no pack in the store holds the chunk.
    pub fn locate(&self, id: &ChunkId) -> Result<ChunkLocation> {
        if let Some(loc) = self.index.get(id)? {
            return Ok(loc);
        }
        self.sync_index()?;
        self.index
            .get(id)?
            .ok_or_else(|| self.missing_chunk_error(id))
    }

    /// Reads the chunks `ids` as one sequence through [`Self::read_plan`] (on every core,
    /// each chunk verified) and passes each to `sink` with its byte offset in the sequence, in
    /// no particular order.
    ///
    /// # Errors
    /// `NotFound` for a chunk no pack holds, `Corrupt` for a chunk that fails its check,
    /// provider errors, and whatever `sink` returns.
    pub fn read_chunks<E: From<Error> + Send>(
        &self,
        ids: &[ChunkId],
        sink: impl Fn(u64, &[u8]) -> Result<(), E> + Sync,
    ) -> Result<(), E> {
        let plan = self.plan_read(&[ids])?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        self.read_plan(plan, workers, |_, offset, data| sink(offset, data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use crate::provider::MemoryProvider;

    fn open(p: Arc<dyn Provider>, idx: &Path) -> ChunkStore {
        ChunkStore::open(p, idx, true).unwrap()
    }

    fn read_all(s: &ChunkStore, ids: &[ChunkId]) -> Result<Vec<u8>> {
        let parts = Mutex::new(std::collections::BTreeMap::new());
        s.read_chunks(ids, |offset, d| {
            lock(&parts).insert(offset, d.to_vec());
            Ok::<(), Error>(())
        })?;
        Ok(parts
            .into_inner()
            .unwrap()
            .into_values()
            .flatten()
            .collect())
    }

    #[test]
    fn write_dedup_read_and_rebuild_index() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let chunks: Vec<Vec<u8>> = (0..50u32)
            .map(|i| format!("chunk {i} ").repeat(1000).into_bytes())
            .collect();
        let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
        {
            let s = open(p.clone(), dir.path());
            for (id, c) in ids.iter().zip(&chunks) {
                assert!(s.put_chunk(*id, c).unwrap());
            }
            assert!(
                !s.put_chunk(ids[0], &chunks[0]).unwrap(),
                "same session dedups"
            );
            s.flush().unwrap();
            assert_eq!(s.write_stats().new_chunks, 50);
            assert_eq!(read_all(&s, &ids).unwrap(), chunks.concat());
        }
        // A second session dedups against the index.
        let s = open(p.clone(), dir.path());
        assert!(!s.put_chunk(ids[3], &chunks[3]).unwrap());
        drop(s);
        // A fresh index (new machine) is rebuilt from pack trailers on demand.
        let fresh = tempfile::tempdir().unwrap();
        let s = open(p.clone(), fresh.path());
        assert_eq!(s.index().get(&ids[7]).unwrap(), None);
        assert_eq!(read_all(&s, &ids[5..9]).unwrap(), chunks[5..9].concat());
        assert!(s.index().get(&ids[7]).unwrap().is_some());
    }

    #[test]
    fn bit_flip_in_a_chunk_is_reported_as_corrupt() {
        let mem = Arc::new(MemoryProvider::default());
        let p: Arc<dyn Provider> = mem.clone();
        let dir = tempfile::tempdir().unwrap();
        let s = open(p.clone(), dir.path());
        let data = b"some chunk data that is long enough".repeat(10);
        let id = ChunkId::of(&data);
        s.put_chunk(id, &data).unwrap();
        s.flush().unwrap();
        let loc = s.locate(&id).unwrap();
        let key = pack_key(&loc.pack);
        let mut bytes = s.block_on(p.get(&key, u64::MAX)).unwrap().to_vec();
        // Replace the blob with a valid zstd frame of different content.
        let other = crate::compress::compress(&vec![b'x'; data.len()], 3).unwrap();
        let mut b = PackBuilder::new();
        b.add(id, data.len() as u32, &other);
        let (forged, _) = b.finish();
        s.block_on(p.delete(&key)).unwrap();
        s.block_on(p.put_if_absent(&key, Bytes::from(forged)))
            .unwrap();
        // A fresh index reads the forged trailer, so the blob decompresses fine and only the
        // BLAKE3 check can catch it.
        let fresh = tempfile::tempdir().unwrap();
        let s2 = open(p.clone(), fresh.path());
        let err = read_all(&s2, &[id]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        assert!(err.to_string().contains("BLAKE3 mismatch"), "{err}");
        drop(s2);
        // A flipped bit inside the compressed frame is also caught.
        let off = loc.offset as usize + 6;
        bytes[off] ^= 1;
        s.block_on(p.delete(&key)).unwrap();
        s.block_on(p.put_if_absent(&key, Bytes::from(bytes)))
            .unwrap();
        assert_eq!(read_all(&s, &[id]).unwrap_err().kind(), ErrorKind::Corrupt);
    }

    #[test]
    fn a_stale_index_entry_is_refreshed_from_the_store() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let (d1, d2, d3) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let data = b"moved between packs".repeat(100);
        let id = ChunkId::of(&data);
        let s1 = open(p.clone(), d1.path());
        s1.put_chunk(id, &data).unwrap();
        s1.flush().unwrap();
        let old_pack = s1.locate(&id).unwrap().pack;
        // A reader whose index points at the old pack.
        let reader = open(p.clone(), d2.path());
        assert_eq!(reader.locate(&id).unwrap().pack, old_pack);
        // Another writer stores the chunk again (with a neighbour, so the pack differs), and
        // the old pack is deleted, as a repack would.
        let s3 = open(p.clone(), d3.path());
        s3.put_chunk(ChunkId::of(b"neighbour"), b"neighbour")
            .unwrap();
        s3.put_chunk(id, &data).unwrap();
        s3.flush().unwrap();
        s3.block_on(p.delete(&pack_key(&old_pack))).unwrap();
        assert_eq!(read_all(&reader, &[id]).unwrap(), data);
        assert_ne!(reader.locate(&id).unwrap().pack, old_pack);
    }

    #[test]
    fn sessions_heartbeat_until_ended_or_dropped() {
        use crate::session::{SessionTiming, list_sessions};
        use std::time::Duration;
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(p.clone(), dir.path());
        s.set_session_timing(SessionTiming {
            heartbeat: Duration::from_millis(10),
            lease: Duration::from_secs(60),
        });
        let newest = |s: &ChunkStore, id: &str| {
            let all = s.block_on(list_sessions(p.as_ref())).unwrap();
            all.get(id).map(|st| st.heartbeats.clone())
        };
        let ended = s.begin_session("backup", "m").unwrap();
        let id = ended.id().to_string();
        std::thread::sleep(Duration::from_millis(80));
        let seen = newest(&s, &id).unwrap();
        assert_eq!(seen.len(), 1, "one heartbeat object at a time: {seen:?}");
        assert!(seen[0] >= 2, "heartbeats advance: {seen:?}");
        s.end_session(ended).unwrap();
        assert_eq!(newest(&s, &id), None, "an ended session leaves nothing");

        let dropped = s.begin_session("backup", "m").unwrap();
        let id = dropped.id().to_string();
        drop(dropped);
        std::thread::sleep(Duration::from_millis(30));
        let after_drop = newest(&s, &id).unwrap();
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(
            newest(&s, &id).unwrap(),
            after_drop,
            "a dropped session stops"
        );
    }

    #[test]
    fn only_version_2_stores_elide_depot_crcs() {
        let mut log = Vec::new();
        for i in 0..2000u32 {
            let p = format!("{{\"id\":{i},\"memo\":\"rent\"}}");
            log.extend_from_slice(&(p.len() as u32).to_le_bytes());
            log.extend_from_slice(&crc32c::crc32c(p.as_bytes()).to_le_bytes());
            log.extend_from_slice(p.as_bytes());
        }
        let id = ChunkId::of(&log);
        for version in [1, 2] {
            let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
            let mut config = StoreConfig::new_random();
            config.version = version;
            let body = Bytes::from(serde_json::to_vec(&config).unwrap());
            let dir = tempfile::tempdir().unwrap();
            let s = {
                let rt = tokio::runtime::Runtime::new().unwrap();
                rt.block_on(p.put_if_absent(CONFIG_KEY, body)).unwrap();
                ChunkStore::open(p.clone(), dir.path(), false).unwrap()
            };
            s.put_chunk_as(id, &log, Content::FramedLog).unwrap();
            s.flush().unwrap();
            let loc = s.locate(&id).unwrap();
            let blob = s
                .block_on(p.get_range(&pack_key(&loc.pack), loc.offset, 4))
                .unwrap();
            // A plain zstd frame is what rbk before version 2 can read.
            let zstd_magic = 0xFD2F_B528u32.to_le_bytes();
            assert_eq!(blob[..] == zstd_magic, version == 1, "version {version}");
            assert_eq!(read_all(&s, &[id]).unwrap(), log);
        }
        let mut future = StoreConfig::new_random();
        future.version = 3;
        let e = StoreConfig::parse(&serde_json::to_vec(&future).unwrap()).unwrap_err();
        assert!(e.to_string().contains("upgrade rbk"), "{e}");
    }

    #[test]
    fn sync_forgets_vanished_packs() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let s = open(p.clone(), dir.path());
        let data = vec![9u8; 5000];
        let id = ChunkId::of(&data);
        s.put_chunk(id, &data).unwrap();
        s.flush().unwrap();
        let loc = s.locate(&id).unwrap();
        s.block_on(p.delete(&pack_key(&loc.pack))).unwrap();
        let r = s.sync_index().unwrap();
        assert_eq!((r.packs, r.added, r.removed), (0, 0, 1));
        assert_eq!(s.index().get(&id).unwrap(), None);
        assert_eq!(s.locate(&id).unwrap_err().kind(), ErrorKind::NotFound);
    }
}
