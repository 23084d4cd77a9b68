//! The chunk store: chunks in packs in a provider, located through the local index.
//!
//! One file per concern:
//! - `config.rs`: the store's `config` object ([`StoreConfig`]);
//! - `write.rs`: a [`WriteSession`] — dedup, packing, uploads, the commit of a manifest;
//! - `read.rs`: [`ChunkStore::plan_read`] and [`ChunkStore::read_plan`], every chunk verified;
//! - `sync.rs`: the index kept in line with the store's packs;
//! - `objects.rs`: the questions the layers above ask about manifests and sessions;
//! - `pending.rs`: backups written in parts by several processes, until committed.
//!
//! The provider, the index and the async runtime are the store's own: callers ask the store
//! questions instead of reaching into its parts.

mod config;
mod objects;
mod pending;
mod read;
mod sync;
mod write;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

pub use config::{DEFAULT_IMMUTABLE_CHUNK, MIN_APPEND_CHUNK, StoreConfig};
pub use objects::StoredManifest;
pub use pending::PendingListing;
pub use read::ReadPlan;
pub use sync::SyncReport;
pub use write::{WriteSession, WriteStats};

use crate::chunker::Chunker;
use crate::index::{ChunkLocation, RocksChunkIndex};
use crate::pack::PackBuilder;
use crate::provider::{Provider, limits};
use crate::session::SessionTiming;
use crate::{ChunkId, Error, PackId, Result, keys};

/// Ranged reads of nearby chunks are merged up to this many bytes.
pub(crate) const MAX_SPAN: u64 = 4 << 20;

/// Where a file's chunk boundaries go, by how the file changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    /// It may change anywhere: content-defined boundaries survive insertions and deletions.
    ContentDefined,
    /// Written once and never changed (a RocksDB SST): `immutable_chunk_size` pieces.
    Immutable,
    /// It only ever grows at its end (a depot segment, a WAL): `append_chunk_size` pieces,
    /// so every chunk but the last stays the same as it grows.
    Appended,
}

#[derive(Debug)]
pub struct ChunkStore {
    provider: Arc<dyn Provider>,
    rt: tokio::runtime::Runtime,
    config: StoreConfig,
    chunker: Chunker,
    /// For files that never change (version 3 stores), else `None`.
    immutable_chunker: Option<Chunker>,
    /// For files that only grow (stores with `append_chunk_size`), else `None`.
    append_chunker: Option<Chunker>,
    /// `None` for a view opened with [`ChunkStore::open_view`]: it lists and reads objects
    /// other than chunks, and never takes the index that one process at a time may hold.
    index: Option<Arc<RocksChunkIndex>>,
    /// Set once before use by tests and `rbk gc --lease-seconds`; a lock, so a store shared
    /// with its mirror's readers can still be tuned.
    timing: Mutex<SessionTiming>,
    /// Where chunks missing or damaged here are read from instead: the store's mirror.
    fallback: std::sync::OnceLock<Arc<ChunkStore>>,
    /// Chunks read from `fallback` since the store was opened.
    fallback_reads: std::sync::atomic::AtomicU64,
    /// Packs the last index sync could not read, with why.
    damaged: Mutex<Vec<(String, String)>>,
    /// Buffers of uploaded packs, reused for new ones. Freeing and allocating a 10 MiB buffer
    /// per pack made glibc's malloc keep several of them per thread (its mmap threshold rises
    /// to the size of the first one freed, so later ones come from per-thread arenas that are
    /// not trimmed): a backup's peak RSS was ~80 MB with ~50 MB in use.
    spare_packs: Arc<Mutex<Vec<Vec<u8>>>>,
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
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
        Self::open_with(provider, Some(index_root), create)
    }

    /// Opens the store behind `provider` without its local index: a view that lists and
    /// reads manifests and sessions, as a status page does while backups hold the index.
    /// Whatever needs the index (chunks, packs, writing) fails with `Index`.
    ///
    /// # Errors
    /// As [`ChunkStore::open`] without `create`.
    pub fn open_view(provider: Arc<dyn Provider>) -> Result<Self> {
        Self::open_with(provider, None, false)
    }

    fn open_with(
        provider: Arc<dyn Provider>,
        index_root: Option<&Path>,
        create: bool,
    ) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let config = rt.block_on(async {
            match provider.get(keys::CONFIG, limits::CONFIG).await {
                Ok(bytes) => StoreConfig::parse(&bytes),
                Err(e) if e.kind() == crate::ErrorKind::NotFound && create => {
                    let fresh = StoreConfig::new_random();
                    let body = serde_json::to_vec_pretty(&fresh).expect("config serializes");
                    // Two processes may create the store at once: whoever wins, read it back.
                    provider
                        .put_if_absent(keys::CONFIG, Bytes::from(body))
                        .await?;
                    StoreConfig::parse(&provider.get(keys::CONFIG, limits::CONFIG).await?)
                }
                Err(e) if e.kind() == crate::ErrorKind::NotFound => Err(Error::NotFound {
                    key: format!(
                        "{} (no rbk store at `{}`; check backup.provider)",
                        keys::CONFIG,
                        provider.describe()
                    ),
                }),
                Err(e) => Err(e),
            }
        })?;
        let index = match index_root {
            Some(root) => {
                let index_dir = root.join(&config.store_id);
                std::fs::create_dir_all(&index_dir).map_err(|e| Error::io(&index_dir, e))?;
                Some(Arc::new(RocksChunkIndex::open(&index_dir)?))
            }
            None => None,
        };
        Ok(ChunkStore {
            chunker: Chunker::new(config.chunker)?,
            immutable_chunker: match config.immutable_chunk_size {
                0 => None,
                size => Some(Chunker::fixed(size)?),
            },
            append_chunker: match config.append_chunk_size {
                0 => None,
                size => Some(Chunker::fixed(size)?),
            },
            provider,
            rt,
            config,
            index,
            timing: Mutex::new(SessionTiming::default()),
            fallback: std::sync::OnceLock::new(),
            fallback_reads: std::sync::atomic::AtomicU64::new(0),
            damaged: Mutex::new(Vec::new()),
            spare_packs: Arc::default(),
        })
    }

    /// Sets how often sessions of this process heartbeat and how long a GC run by this
    /// process waits for others' heartbeats.
    pub fn set_session_timing(&self, timing: SessionTiming) {
        *lock(&self.timing) = timing;
    }

    pub fn session_timing(&self) -> SessionTiming {
        *lock(&self.timing)
    }

    /// Reads chunks that are missing or damaged in this store from `mirror` instead (a
    /// restore that survives a damaged or lost disk). Each such chunk is counted
    /// ([`Self::fallback_reads`]) and logged. Set once; a second call changes nothing.
    pub fn set_fallback(&self, mirror: Arc<ChunkStore>) {
        let _ = self.fallback.set(mirror);
    }

    /// How many chunks were read from the fallback store since this store was opened.
    pub fn fallback_reads(&self) -> u64 {
        self.fallback_reads
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn fallback(&self) -> Option<&Arc<ChunkStore>> {
        self.fallback.get()
    }

    pub(crate) fn count_fallback_reads(&self, n: u64) {
        self.fallback_reads
            .fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// The chunker for a file that changes as `cut` says: fixed-size for immutable and
    /// appended files in a store that cuts them so, the content-defined one otherwise.
    pub fn chunker_for(&self, cut: Cut) -> &Chunker {
        let fixed = match cut {
            Cut::ContentDefined => None,
            Cut::Immutable => self.immutable_chunker.as_ref(),
            Cut::Appended => self.append_chunker.as_ref(),
        };
        fixed.unwrap_or(&self.chunker)
    }

    /// Where the provider is, for messages (e.g. `fs /var/rbk`).
    pub fn describe(&self) -> String {
        self.provider.describe()
    }

    /// Where the local index lives (`rbk repair-index` sets it aside).
    ///
    /// # Errors
    /// `Index` for a view ([`ChunkStore::open_view`]).
    pub fn index_path(&self) -> Result<&Path> {
        Ok(self.index()?.path())
    }

    /// Every copy of chunk `id` the index knows (none: not in the store, as far as the last
    /// sync knows).
    ///
    /// # Errors
    /// `Index` errors.
    pub fn chunk_locations(&self, id: &ChunkId) -> Result<Vec<ChunkLocation>> {
        self.index()?.locations(id)
    }

    /// Every pack the index knows, with its size.
    ///
    /// # Errors
    /// `Index` errors.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        self.index()?.packs()
    }

    /// The chunks pack `pack` holds, as the index knows them (none: an unknown pack).
    ///
    /// # Errors
    /// `Index` errors.
    pub fn pack_entries(&self, pack: &PackId) -> Result<Vec<crate::pack::PackEntry>> {
        self.index()?.pack_entries(pack)
    }

    /// The local index itself, for tests that damage it on purpose.
    #[cfg(feature = "testing")]
    pub fn index_for_tests(&self) -> &RocksChunkIndex {
        self.index().expect("opened with its index")
    }

    pub(crate) fn provider(&self) -> &Arc<dyn Provider> {
        &self.provider
    }

    /// The local index; `Index` for a view ([`ChunkStore::open_view`]).
    pub(crate) fn index(&self) -> Result<&Arc<RocksChunkIndex>> {
        self.index.as_ref().ok_or_else(|| Error::Index {
            path: PathBuf::new(),
            detail: format!(
                "the store `{}` was opened as a read-only view, without its local index",
                self.provider.describe()
            ),
        })
    }

    /// Runs a provider future to completion. Must not be called from inside an async context.
    pub(crate) fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub(crate) fn runtime(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }

    /// Runs `f` as a task of the store's runtime.
    pub(crate) fn spawn<F>(&self, f: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.rt.spawn(f)
    }

    /// An empty in-memory pack builder (a remote store's; a local one spools its packs), on a
    /// spare buffer when there is one, else with room for a whole pack (see
    /// [`PackBuilder::with_capacity`]; untouched capacity costs address space, not memory).
    pub(crate) fn new_memory_pack(&self) -> PackBuilder {
        match lock(&self.spare_packs).pop() {
            Some(buf) => PackBuilder::on_buffer(buf),
            None => {
                let max_chunk = self.config.max_chunk_len() as usize;
                PackBuilder::with_capacity(
                    self.config.pack_target_size as usize
                        + zstd::zstd_safe::compress_bound(max_chunk),
                )
            }
        }
    }

    /// Uploads a finished pack now and records it in the index (GC's repack). Returns its id
    /// and size.
    ///
    /// # Errors
    /// Provider and index errors.
    pub(crate) fn write_pack(&self, builder: PackBuilder) -> Result<(PackId, u64)> {
        let (bytes, entries) = builder.finish();
        let pack = PackId::of(&bytes);
        let size = bytes.len() as u64;
        self.block_on(
            self.provider
                .put_if_absent(&keys::pack(&pack), Bytes::from(bytes)),
        )?;
        self.index()?.add_pack(&pack, size, &entries)?;
        Ok((pack, size))
    }

    /// Deletes packs from the store in one batch (the provider splits it into requests, e.g.
    /// DeleteObjects of 1000 keys on S3), then from the index.
    ///
    /// # Errors
    /// Provider and index errors.
    pub(crate) fn delete_packs(&self, packs: &[PackId]) -> Result<()> {
        let keys: Vec<String> = packs.iter().map(keys::pack).collect();
        self.block_on(self.provider.delete_many(&keys))?;
        packs
            .iter()
            .try_for_each(|pack| self.index()?.remove_pack(pack))
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
    use crate::compress::Content;
    use crate::provider::MemoryProvider;

    fn open(p: Arc<dyn Provider>, idx: &Path) -> ChunkStore {
        ChunkStore::open(p, idx, true).unwrap()
    }

    /// A store in a new memory provider whose `config` object is `config`, as an older rbk
    /// (or a hand edit) would have written it; its index in `idx`.
    fn open_with_config(config: &[u8], idx: &Path) -> (Arc<dyn Provider>, ChunkStore) {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(p.put_if_absent(keys::CONFIG, Bytes::copy_from_slice(config)))
            .unwrap();
        let s = ChunkStore::open(p.clone(), idx, false).unwrap();
        (p, s)
    }

    /// Stores `chunks` in one session of `s`.
    fn put_all(s: &ChunkStore, chunks: &[(ChunkId, &[u8])]) {
        let w = s.begin_session("backup", "test").unwrap();
        for (id, c) in chunks {
            w.put_chunk(*id, c).unwrap();
        }
        w.flush().unwrap();
        w.end().unwrap();
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
            let w = s.begin_session("backup", "test").unwrap();
            for (id, c) in ids.iter().zip(&chunks) {
                assert!(w.put_chunk(*id, c).unwrap());
            }
            assert!(
                !w.put_chunk(ids[0], &chunks[0]).unwrap(),
                "same session dedups"
            );
            w.flush().unwrap();
            assert_eq!(w.stats().new_chunks, 50);
            w.end().unwrap();
            assert_eq!(read_all(&s, &ids).unwrap(), chunks.concat());
        }
        // A second session dedups against the index.
        let s = open(p.clone(), dir.path());
        let w = s.begin_session("backup", "test").unwrap();
        assert!(!w.put_chunk(ids[3], &chunks[3]).unwrap());
        w.end().unwrap();
        drop(s);
        // A fresh index (new machine) is rebuilt from pack trailers on demand.
        let fresh = tempfile::tempdir().unwrap();
        let s = open(p.clone(), fresh.path());
        assert_eq!(s.index().unwrap().get(&ids[7]).unwrap(), None);
        assert_eq!(read_all(&s, &ids[5..9]).unwrap(), chunks[5..9].concat());
        assert!(s.index().unwrap().get(&ids[7]).unwrap().is_some());
    }

    #[test]
    fn bit_flip_in_a_chunk_is_reported_as_corrupt() {
        let mem = Arc::new(MemoryProvider::default());
        let p: Arc<dyn Provider> = mem.clone();
        let dir = tempfile::tempdir().unwrap();
        let s = open(p.clone(), dir.path());
        let data = b"some chunk data that is long enough".repeat(10);
        let id = ChunkId::of(&data);
        put_all(&s, &[(id, &data)]);
        let loc = s.locate(&id).unwrap();
        let key = keys::pack(&loc.pack);
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
        put_all(&s1, &[(id, &data)]);
        let old_pack = s1.locate(&id).unwrap().pack;
        // A reader whose index points at the old pack.
        let reader = open(p.clone(), d2.path());
        assert_eq!(reader.locate(&id).unwrap().pack, old_pack);
        // Another writer stores the chunk again (with a neighbour, so the pack differs), and
        // the old pack is deleted, as a repack would.
        let s3 = open(p.clone(), d3.path());
        let mut b = PackBuilder::new();
        for c in [&b"neighbour"[..], &data] {
            let stored = crate::compress::compress(c, 1).unwrap();
            b.add(ChunkId::of(c), c.len() as u32, &stored);
        }
        s3.write_pack(b).unwrap();
        s3.block_on(p.delete(&keys::pack(&old_pack))).unwrap();
        assert_eq!(read_all(&reader, &[id]).unwrap(), data);
        assert_ne!(reader.locate(&id).unwrap().pack, old_pack);
    }

    #[test]
    fn sessions_heartbeat_until_ended_or_dropped() {
        use crate::session::{SessionTiming, list_sessions};
        use std::time::Duration;
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let s = open(p.clone(), dir.path());
        s.set_session_timing(SessionTiming {
            heartbeat: Duration::from_millis(10),
            lease: Duration::from_secs(60),
            ..Default::default()
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
        ended.end().unwrap();
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
            let mut config = StoreConfig::new_random();
            config.version = version;
            config.immutable_chunk_size = 0;
            let dir = tempfile::tempdir().unwrap();
            let (p, s) = open_with_config(&serde_json::to_vec(&config).unwrap(), dir.path());
            let w = s.begin_session("backup", "test").unwrap();
            w.put_chunk_as(id, &log, Content::FramedLog).unwrap();
            w.flush().unwrap();
            w.end().unwrap();
            let loc = s.locate(&id).unwrap();
            let blob = s
                .block_on(p.get_range(&keys::pack(&loc.pack), loc.offset, 4))
                .unwrap();
            // A plain zstd frame is what rbk before version 2 can read.
            let zstd_magic = 0xFD2F_B528u32.to_le_bytes();
            assert_eq!(blob[..] == zstd_magic, version == 1, "version {version}");
            assert_eq!(read_all(&s, &[id]).unwrap(), log);
        }
        let mut future = StoreConfig::new_random();
        future.version = 6;
        let e = StoreConfig::parse(&serde_json::to_vec(&future).unwrap()).unwrap_err();
        assert!(e.to_string().contains("upgrade rbk"), "{e}");
    }

    /// A version 3 store cuts an immutable file every 8 MiB, and those chunks — four times the
    /// chunker's maximum — come back through the read path and a rebuilt index; an older
    /// store cuts it like any file.
    #[test]
    fn version_3_stores_cut_immutable_files_in_fixed_chunks_that_read_back() {
        use rand::{RngCore, SeedableRng};
        let mut file = vec![0u8; 20 << 20];
        rand::rngs::StdRng::seed_from_u64(8).fill_bytes(&mut file);
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let s = open(p.clone(), dir.path());
        assert_eq!(s.config().version, 5);
        let lens = s.chunker_for(Cut::Immutable).chunk_lengths(&file);
        assert_eq!(lens, [8 << 20, 8 << 20, 4 << 20]);
        let cdc = s.chunker_for(Cut::ContentDefined).chunk_lengths(&file);
        assert!(
            cdc.iter().all(|&l| l <= 2 << 20) && cdc.len() > 10,
            "{cdc:?}"
        );
        let w = s.begin_session("backup", "test").unwrap();
        let mut ids = Vec::new();
        let mut at = 0;
        for len in lens {
            let c = &file[at..at + len];
            at += len;
            let id = ChunkId::of(c);
            w.put_chunk_as(id, c, Content::Immutable).unwrap();
            ids.push(id);
        }
        w.flush().unwrap();
        w.end().unwrap();
        assert!(read_all(&s, &ids).unwrap() == file);
        // A machine without the index rebuilds it from the packs and reads the same.
        let other = tempfile::tempdir().unwrap();
        let fresh = ChunkStore::open(p.clone(), other.path(), false).unwrap();
        assert!(read_all(&fresh, &ids).unwrap() == file);

        // Older stores have no fixed-size chunks, and a config must agree with its version.
        let mut v2 = StoreConfig::new_random();
        v2.version = 2;
        v2.immutable_chunk_size = 0;
        let body = serde_json::to_vec(&v2).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("immutable"));
        assert_eq!(StoreConfig::parse(&body).unwrap().max_chunk_len(), 2 << 20);
        let d2 = tempfile::tempdir().unwrap();
        let (_, s2) = open_with_config(&body, d2.path());
        assert_eq!(s2.chunker_for(Cut::Immutable).params().max_size, 2 << 20);
        for (version, size) in [(2, 8 << 20), (3, 0), (3, 32 << 20), (3, 1000)] {
            let mut c = StoreConfig::new_random();
            c.version = version;
            c.immutable_chunk_size = size;
            let e = StoreConfig::parse(&serde_json::to_vec(&c).unwrap()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{version} {size}");
            assert!(e.to_string().contains("immutable_chunk_size"), "{e}");
        }
    }

    /// A new store cuts a file that only grows every 512 KiB, so a grown file keeps every
    /// chunk but its last; a store made before `append_chunk_size` (no such field) cuts it
    /// content-defined, as it always did; and a config's size must be one a reader can bound.
    #[test]
    fn new_stores_cut_appended_files_in_fixed_chunks_older_ones_content_defined() {
        use rand::{RngCore, SeedableRng};
        let mut file = vec![0u8; (5 << 19) + 1000];
        rand::rngs::StdRng::seed_from_u64(9).fill_bytes(&mut file);
        let dir = tempfile::tempdir().unwrap();
        let s = open(Arc::new(MemoryProvider::default()), dir.path());
        assert_eq!(s.config().append_chunk_size, 512 << 10);
        let lens = s.chunker_for(Cut::Appended).chunk_lengths(&file);
        assert_eq!(
            lens,
            [512 << 10, 512 << 10, 512 << 10, 512 << 10, 512 << 10, 1000]
        );
        let grown = s
            .chunker_for(Cut::Appended)
            .chunk_lengths(&file[..(3 << 19) + 7]);
        assert_eq!(grown, [512 << 10, 512 << 10, 512 << 10, 7]);

        let mut before = StoreConfig::new_random();
        before.append_chunk_size = 0;
        let body = serde_json::to_vec(&before).unwrap();
        assert!(!String::from_utf8_lossy(&body).contains("append"));
        let d = tempfile::tempdir().unwrap();
        let (_, old) = open_with_config(&body, d.path());
        let cdc = old.chunker_for(Cut::Appended).chunk_lengths(&file);
        assert_eq!(cdc, s.chunker_for(Cut::ContentDefined).chunk_lengths(&file));
        assert_ne!(cdc, lens);

        for size in [1, MIN_APPEND_CHUNK - 1, (2 << 20) + 1] {
            let mut c = StoreConfig::new_random();
            c.append_chunk_size = size;
            let e = StoreConfig::parse(&serde_json::to_vec(&c).unwrap()).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{size}");
            assert!(e.to_string().contains("append_chunk_size"), "{e}");
        }
        for size in [MIN_APPEND_CHUNK, 2 << 20] {
            let mut c = StoreConfig::new_random();
            c.append_chunk_size = size;
            let parsed = StoreConfig::parse(&serde_json::to_vec(&c).unwrap()).unwrap();
            assert_eq!(parsed.append_chunk_size, size);
            assert_eq!(parsed.max_chunk_len(), 8 << 20);
        }
    }

    /// A chunk that would take the open pack past its target starts the next pack: packs,
    /// and the buffers holding them until uploaded, stay within the target.
    #[test]
    fn packs_stay_within_their_target_size() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let s = open(p.clone(), dir.path());
        let target = s.config().pack_target_size;
        let chunks = random_chunks(4, 5, 3 << 20);
        let refs: Vec<(ChunkId, &[u8])> = chunks
            .iter()
            .map(|c| (ChunkId::of(c), c.as_slice()))
            .collect();
        put_all(&s, &refs);
        let sizes: Vec<u64> = s
            .packs()
            .unwrap()
            .into_iter()
            .map(|(_, size)| size)
            .collect();
        // Incompressible 3 MiB chunks: two per pack, never three.
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= target), "{sizes:?}");
        let ids: Vec<ChunkId> = refs.iter().map(|(id, _)| *id).collect();
        assert!(read_all(&s, &ids).unwrap() == chunks.concat());
    }

    /// `n` incompressible chunks of `len` bytes, the same for the same `seed`.
    fn random_chunks(seed: u64, n: usize, len: usize) -> Vec<Vec<u8>> {
        use rand::{RngCore, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let mut c = vec![0u8; len];
                rng.fill_bytes(&mut c);
                c
            })
            .collect()
    }

    /// The files in a local store's spool dir.
    fn spooled(store_root: &Path) -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = std::fs::read_dir(store_root.join(".tmp"))
            .map(|d| {
                d.map(|e| {
                    let e = e.unwrap();
                    let name = e.file_name().into_string().unwrap();
                    (name, e.metadata().unwrap().len())
                })
                .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }

    /// On a local store a pack is written to the spool dir as it fills (never held in
    /// memory) and linked into place when sealed; the spool dir is empty once the session
    /// flushed, and a session dropped with an open pack leaves nothing behind.
    #[test]
    fn a_local_store_fills_packs_in_its_spool_dir_and_links_them_into_place() {
        let root = tempfile::tempdir().unwrap();
        let store_root = root.path().join("store");
        let p: Arc<dyn Provider> = Arc::new(crate::provider::LocalProvider::new(&store_root));
        let s = open(p.clone(), &root.path().join("index"));
        let chunks = random_chunks(9, 4, 100 << 10);
        let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
        let w = s.begin_session("backup", "test").unwrap();
        for (id, c) in ids.iter().zip(&chunks[..3]) {
            assert!(w.put_chunk(*id, c).unwrap());
        }
        // The open pack: header, salt and three incompressible chunks (zstd frames a little
        // larger than the chunks), on disk.
        let open_pack = spooled(&store_root);
        assert_eq!(open_pack.len(), 1, "{open_pack:?}");
        assert!(open_pack[0].0.starts_with("pack-"), "{open_pack:?}");
        assert!(open_pack[0].1 > 24 + 3 * (100 << 10), "{open_pack:?}");
        w.flush().unwrap();
        assert_eq!(spooled(&store_root), vec![]);
        let packs = s.packs().unwrap();
        assert_eq!(packs.len(), 1);
        let (pack, size) = packs[0];
        let bytes = std::fs::read(store_root.join(keys::pack(&pack))).unwrap();
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(PackId::of(&bytes), pack, "the id hashed while writing");
        let entries = crate::pack::parse_pack("p", &bytes).unwrap();
        assert_eq!(entries.iter().map(|e| e.id).collect::<Vec<_>>(), ids[..3]);
        assert_eq!(read_all(&s, &ids[..3]).unwrap(), chunks[..3].concat());
        w.end().unwrap();

        let w = s.begin_session("backup", "test").unwrap();
        assert!(w.put_chunk(ids[3], &chunks[3]).unwrap());
        assert_eq!(spooled(&store_root).len(), 1);
        drop(w);
        assert_eq!(spooled(&store_root), vec![]);
        assert_eq!(s.packs().unwrap().len(), 1);
    }

    /// A spooled pack whose upload fails is not in the store or the index, and the session
    /// cannot commit anything on top of it.
    #[test]
    fn a_failed_spooled_upload_fails_the_flush_and_leaves_nothing() {
        use crate::provider::{FaultyProvider, Op};
        let root = tempfile::tempdir().unwrap();
        let store_root = root.path().join("store");
        let local: Arc<dyn Provider> = Arc::new(crate::provider::LocalProvider::new(&store_root));
        let faulty = Arc::new(
            FaultyProvider::new(local.clone())
                .fail_when(|op, key| op == Op::Put && key.starts_with(keys::PACKS)),
        );
        let s = open(faulty, &root.path().join("index"));
        let data = b"a chunk whose pack cannot be written".repeat(100);
        let id = ChunkId::of(&data);
        let w = s.begin_session("backup", "test").unwrap();
        assert!(w.put_chunk(id, &data).unwrap());
        assert!(w.flush().unwrap_err().is_temporary());
        drop(w);
        assert_eq!(spooled(&store_root), vec![]);
        assert_eq!(s.packs().unwrap(), vec![]);
        assert_eq!(s.index().unwrap().get(&id).unwrap(), None);
    }

    #[test]
    fn sync_forgets_vanished_packs() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let s = open(p.clone(), dir.path());
        let data = vec![9u8; 5000];
        let id = ChunkId::of(&data);
        put_all(&s, &[(id, &data)]);
        let loc = s.locate(&id).unwrap();
        s.block_on(p.delete(&keys::pack(&loc.pack))).unwrap();
        let r = s.sync_index().unwrap();
        assert_eq!((r.packs, r.added, r.removed), (0, 0, 1));
        assert_eq!(s.index().unwrap().get(&id).unwrap(), None);
        assert_eq!(s.locate(&id).unwrap_err().kind(), ErrorKind::NotFound);
    }
}
