//! The write path: one [`WriteSession`] per backup (or any operation that must hold GC back).
//!
//! [`ChunkStore::begin_session`] announces the session to concurrent GCs (its first
//! heartbeat), learns which packs they condemned and syncs the index, in that order
//! (docs/gc.md). The session then owns everything its writes need and nothing outlives it:
//!
//! - [`WriteSession::put_chunk`] skips chunks the index (outside condemned packs) or this
//!   session already has, compresses the rest into the open pack, and uploads the pack in
//!   the background when it reaches the target size;
//! - [`WriteSession::flush`] uploads the last partial pack and waits for every upload;
//! - [`WriteSession::commit`] flushes, writes the manifest (the commit point), re-checks that
//!   no GC revoked the session meanwhile — deleting the manifest again if one did — and ends
//!   the session.
//!
//! Ordering for crash safety: a pack is uploaded first and recorded in the index only after
//! the upload succeeded; a manifest is written only after every pack it needs is in the store.
//! A session dropped without `commit` or `end` stops heartbeating, so a GC revokes it once its
//! lease runs out; the packs it uploaded are garbage for that GC.

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use super::{ChunkStore, lock};
use crate::compress::{self, Content};
use crate::gc::records::{self, Condemned};
use crate::index::ChunkLocation;
use crate::pack::{PackBuilder, PackEntry, SpoolFile, SpooledPack};
use crate::session::Session;
use crate::{ChunkId, Error, PackId, Result, keys};

/// Sealed packs being uploaded while chunking goes on.
pub(super) const MAX_UPLOADS_IN_FLIGHT: usize = 2;

/// Counters of one session's writes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    pub new_chunks: u64,
    pub new_raw_bytes: u64,
    pub new_stored_bytes: u64,
    pub packs_written: u64,
}

#[derive(Debug, Default)]
struct Counters {
    new_chunks: AtomicU64,
    new_raw_bytes: AtomicU64,
    new_stored_bytes: AtomicU64,
    packs_written: AtomicU64,
}

/// A running session and the state of its writes. Created by [`ChunkStore::begin_session`].
#[derive(Debug)]
pub struct WriteSession<'s> {
    store: &'s ChunkStore,
    session: Session,
    /// Created on the first chunk: sessions that only read (restore, verify) never need one.
    open_pack: Mutex<Option<OpenPack>>,
    /// Uploads of sealed packs still in flight, oldest first. At most
    /// [`MAX_UPLOADS_IN_FLIGHT`] are kept, which bounds the memory held by sealed packs.
    uploads: Mutex<VecDeque<tokio::task::JoinHandle<Result<()>>>>,
    /// Chunks added by this session (in the open pack or already uploaded).
    added: Mutex<HashSet<ChunkId>>,
    /// Set when an upload failed: chunks claimed by the session may be missing from the
    /// store, so nothing may be committed on top of them.
    failed: Arc<AtomicBool>,
    counters: Arc<Counters>,
    /// Packs condemned by a GC when the session began: chunks in them are not deduplicated
    /// against but stored again (docs/gc.md).
    condemned: Condemned,
}

/// The pack a session is filling: written through to a file in its provider's spool dir
/// when the provider has one (a local store: packs being filled or made durable then cost no
/// memory), else in memory (a remote store uploads from memory).
#[derive(Debug)]
enum OpenPack {
    Memory(PackBuilder),
    /// Boxed: a BLAKE3 hasher keeps ~2 KB of state.
    Spooled(Box<SpooledPack>),
}

impl OpenPack {
    fn len(&self) -> u64 {
        match self {
            OpenPack::Memory(b) => b.len() as u64,
            OpenPack::Spooled(p) => p.len(),
        }
    }

    fn is_empty(&self) -> bool {
        match self {
            OpenPack::Memory(b) => b.is_empty(),
            OpenPack::Spooled(p) => p.is_empty(),
        }
    }

    fn add(&mut self, id: ChunkId, raw_len: u32, stored: &[u8]) -> Result<()> {
        match self {
            OpenPack::Memory(b) => {
                b.add(id, raw_len, stored);
                Ok(())
            }
            OpenPack::Spooled(p) => p
                .add(id, raw_len, stored)
                .map_err(|e| Error::io(p.path(), e)),
        }
    }

    /// Appends the trailer: the pack's id, size, body and entries.
    fn seal(self) -> Result<(PackId, u64, SealedBody, Vec<PackEntry>)> {
        match self {
            OpenPack::Memory(b) => {
                let (bytes, entries) = b.finish();
                let id = PackId::of(&bytes);
                Ok((id, bytes.len() as u64, SealedBody::Memory(bytes), entries))
            }
            OpenPack::Spooled(p) => {
                let path = p.path().to_path_buf();
                let (file, id, size, entries) = (*p).finish().map_err(|e| Error::io(&path, e))?;
                Ok((id, size, SealedBody::Spooled(file), entries))
            }
        }
    }
}

/// A sealed pack's bytes, on their way to the provider.
enum SealedBody {
    Memory(Vec<u8>),
    Spooled(SpoolFile),
}

impl ChunkStore {
    /// Begins a session (docs/gc.md): writes its first heartbeat, then learns which packs are
    /// condemned (chunks in them will be stored again rather than deduplicated against), then
    /// brings the index in line with the store. The order matters: a GC either sees this
    /// session when it arms a condemnation, or this session sees the condemnation. `kind`
    /// (`backup`, `restore`, ...) and `label` (the module) are for the operator's view.
    ///
    /// # Errors
    /// Provider and index errors.
    pub fn begin_session(&self, kind: &str, label: &str) -> Result<WriteSession<'_>> {
        self.begin_session_with(kind, label, IndexSync::Full)
    }

    /// [`ChunkStore::begin_session`] for a backup: in a version 4 store whose index listed
    /// every pack less than `full_sync_every` ago, the index learns of deleted packs from
    /// the swept GC records alone, without listing every pack, so the session's fixed cost
    /// does not grow with the store (docs/gc.md, "Index sync without listing every pack").
    /// Packs other processes wrote since are unknown to it until the next full listing:
    /// their chunks are stored again, which costs space that GC reclaims, never safety.
    ///
    /// # Errors
    /// Provider and index errors.
    pub fn begin_backup_session(&self, kind: &str, label: &str) -> Result<WriteSession<'_>> {
        self.begin_session_with(kind, label, IndexSync::IfStale)
    }

    fn begin_session_with(
        &self,
        kind: &str,
        label: &str,
        sync: IndexSync,
    ) -> Result<WriteSession<'_>> {
        // A view cannot write: say so before anything reaches the store.
        self.index()?;
        let session = self.block_on(Session::begin(self.provider.clone(), kind, label))?;
        let prepared = self
            .block_on(records::list(self.provider.as_ref()))
            .and_then(|r| {
                self.sync_for_session(&r, session.id(), sync)?;
                Ok(r.condemned())
            });
        let condemned = match prepared {
            Ok(c) => c,
            Err(e) => {
                let _ = self.block_on(session.end());
                return Err(e);
            }
        };
        let session = session.start_heartbeats(self.runtime(), self.session_timing().heartbeat);
        Ok(WriteSession {
            store: self,
            session,
            open_pack: Mutex::new(None),
            uploads: Mutex::new(VecDeque::new()),
            added: Mutex::new(HashSet::new()),
            failed: Arc::new(AtomicBool::new(false)),
            counters: Arc::default(),
            condemned,
        })
    }
}

/// How a session brings the index in line with the store's packs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexSync {
    /// List every pack.
    Full,
    /// Forget the packs of swept records, and list every pack only when the last full
    /// listing is older than `full_sync_every` (or the store cannot say).
    IfStale,
}

impl ChunkStore {
    /// Step S3 of a session (docs/gc.md), after its first heartbeat (S1) and the listing of
    /// GC records `records` (S2).
    fn sync_for_session(
        &self,
        records: &records::Records,
        session: &str,
        sync: IndexSync,
    ) -> Result<()> {
        let index = self.index()?;
        let timing = self.session_timing();
        // What can be told locally comes first; the store's times cost two requests, worth
        // it only in a store large enough that a full listing costs more. Small stores are
        // listed in full at every session, and no listing time is recorded for them.
        let eligible = sync == IndexSync::IfStale
            && self.config().keeps_swept_records()
            && !records.any_damaged();
        let large = eligible && index.knows_at_least(timing.list_every_pack_below)?;
        let began = if large {
            Some(self.session_began(session)?)
        } else {
            None
        };
        let limit = timing.full_sync_every.as_millis() as u64;
        let recent = match (began.flatten(), index.last_full_sync()?) {
            (Some((now, config)), Some((last, last_config))) => {
                config == last_config && now >= last && now - last < limit
            }
            _ => false,
        };
        if recent {
            // Every pack deleted since the last full listing was swept by a record that
            // is still kept (it outlives `full_sync_every`), and listed in `records`.
            for pack in records.swept_packs() {
                if index.has_pack(&pack)? {
                    index.remove_pack(&pack)?;
                }
            }
            return Ok(());
        }
        self.sync_index()?;
        // A store the listing found large: the next sessions may count from this one's
        // first heartbeat, which was written before the listing began.
        if eligible && (large || index.knows_at_least(timing.list_every_pack_below)?) {
            let began = match began {
                Some(b) => b,
                None => self.session_began(session)?,
            };
            index.set_last_full_sync(began)?;
        }
        Ok(())
    }

    /// When the store wrote session `session`'s first heartbeat and its `config`, by the
    /// store's clock (`None` when it keeps no write times). A store that was lost and made
    /// again (from its mirror's config, say) has a newer config, and its packs are not what
    /// an index of the old one knew.
    fn session_began(&self, session: &str) -> Result<Option<(u64, u64)>> {
        Ok(self
            .session_state(session)?
            .and_then(|s| s.newest_written_ms)
            .zip(self.config_written_ms()?))
    }
}

impl WriteSession<'_> {
    pub fn id(&self) -> &str {
        self.session.id()
    }

    /// Fails, without a request, once the heartbeat loop has seen this session's tombstone:
    /// cheap enough to ask before every batch of chunks, so a revoked backup stops uploading
    /// within one heartbeat instead of finishing its work for nothing.
    ///
    /// # Errors
    /// `SessionRevoked`.
    pub fn check_not_revoked(&self) -> Result<()> {
        self.session.check_not_revoked()
    }

    /// Fails with `SessionRevoked` when a GC declared this session dead (asks the store).
    ///
    /// # Errors
    /// `SessionRevoked`, provider errors.
    pub fn check_alive(&self) -> Result<()> {
        self.store.block_on(self.session.check_alive())
    }

    /// Whether the index may be trusted for `id`: it knows a copy of the chunk in a pack that
    /// was not condemned when the session began.
    fn usable(&self, id: &ChunkId) -> Result<bool> {
        Ok(self.usable_location(id)?.is_some())
    }

    /// Whether this session may rely on pack `pack`: no GC had condemned it when the session
    /// began (docs/gc.md, case 2).
    pub(crate) fn may_rely_on(&self, pack: &PackId) -> bool {
        match &self.condemned {
            Condemned::Packs(p) => !p.contains(pack),
            Condemned::Everything => false,
        }
    }

    pub(crate) fn usable_location(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        let locs = self.store.index()?.locations(id)?;
        Ok(locs.into_iter().find(|l| self.condemned.allows(l)))
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
        let added = lock(&self.added);
        Ok(usable
            .into_iter()
            .zip(ids)
            .map(|(u, id)| u || added.contains(id))
            .collect())
    }

    /// The uncompressed length of chunk `id` where the store holds a copy this session may
    /// rely on (outside condemned packs); `None` otherwise.
    ///
    /// # Errors
    /// `Index` errors.
    pub fn raw_len(&self, id: &ChunkId) -> Result<Option<u32>> {
        Ok(self.usable_location(id)?.map(|l| l.raw_len))
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
        if !lock(&self.added).insert(id) {
            return Ok(false);
        }
        if self.usable(&id)? {
            return Ok(false);
        }
        thread_local! {
            static STORED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        let config = &self.store.config;
        let (full, stored_len) = STORED.with(|cell| -> Result<_> {
            let mut stored = cell.borrow_mut();
            // The CRC elision needs version 2 readers; an immutable file's chunk is a plain
            // zstd frame that every version reads.
            let content = if config.version >= 2 || content == Content::Immutable {
                content
            } else {
                Content::Opaque
            };
            compress::compress_into(data, config.zstd_level, content, &mut stored)?;
            let mut slot = lock(&self.open_pack);
            let target = config.pack_target_size;
            // A chunk that would take the open pack past its target goes into the next one:
            // packs (and the buffers that hold them until uploaded) stay near the target
            // even when chunks are large.
            let mut full = Vec::new();
            if slot
                .as_ref()
                .is_some_and(|p| !p.is_empty() && p.len() + stored.len() as u64 > target)
            {
                full.extend(slot.take());
            }
            let added = match slot.as_mut() {
                Some(open) => open.add(id, data.len() as u32, &stored),
                None => self
                    .new_pack()
                    .and_then(|open| slot.insert(open).add(id, data.len() as u32, &stored)),
            };
            if let Err(e) = added {
                // The chunk counts as added but is in no pack: nothing may be committed.
                self.failed.store(true, Ordering::SeqCst);
                return Err(e);
            }
            if slot.as_ref().is_some_and(|open| open.len() >= target) {
                full.extend(slot.take());
            }
            Ok((full, stored.len()))
        })?;
        let c = &self.counters;
        c.new_chunks.fetch_add(1, Ordering::Relaxed);
        c.new_raw_bytes
            .fetch_add(data.len() as u64, Ordering::Relaxed);
        c.new_stored_bytes
            .fetch_add(stored_len as u64, Ordering::Relaxed);
        for builder in full {
            self.upload_pack(builder)?;
        }
        Ok(true)
    }

    /// An empty pack: in the provider's spool dir when it has one, else in memory.
    fn new_pack(&self) -> Result<OpenPack> {
        match self.store.provider.spool_dir() {
            Some(dir) => SpooledPack::create(&dir)
                .map(|p| OpenPack::Spooled(Box::new(p)))
                .map_err(|e| Error::io(&dir, e)),
            None => Ok(OpenPack::Memory(self.store.new_memory_pack())),
        }
    }

    /// Seals `pack` and starts its upload in the background, so chunking continues while
    /// the pack is written and fsynced. Waits for the oldest upload when too many are in
    /// flight. A pack enters the index only after its upload succeeded.
    fn upload_pack(&self, pack: OpenPack) -> Result<()> {
        let (pack, size, body, entries) = pack.seal().inspect_err(|_| {
            self.failed.store(true, Ordering::SeqCst);
        })?;
        let store = self.store;
        let (provider, index, counters, failed, spare) = (
            store.provider.clone(),
            store.index()?.clone(),
            self.counters.clone(),
            self.failed.clone(),
            store.spare_packs.clone(),
        );
        let task = store.spawn(async move {
            let key = keys::pack(&pack);
            let r = match body {
                SealedBody::Memory(bytes) => {
                    let body = Bytes::from(bytes);
                    let r = provider.put_if_absent(&key, body.clone()).await;
                    // Hand the buffer back for the next pack unless the provider still holds
                    // on to it.
                    if let Ok(buf) = body.try_into_mut() {
                        let mut spare = lock(&spare);
                        if spare.len() < MAX_UPLOADS_IN_FLIGHT + 1 {
                            spare.push(Vec::from(buf));
                        }
                    }
                    r
                }
                // The spool file is deleted when `file` drops, after the provider took it.
                SealedBody::Spooled(file) => {
                    provider.put_spooled_if_absent(&key, file.path()).await
                }
            };
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

    fn join_upload(&self, task: tokio::task::JoinHandle<Result<()>>) -> Result<()> {
        self.store.block_on(task).unwrap_or_else(|e| {
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
        let builder = lock(&self.open_pack).take();
        if let Some(builder) = builder.filter(|b| !b.is_empty()) {
            self.upload_pack(builder)?;
        }
        let in_flight: Vec<_> = lock(&self.uploads).drain(..).collect();
        for task in in_flight {
            self.join_upload(task)?;
        }
        if !self.failed.load(Ordering::SeqCst) {
            // Everything added is now in the index, which GC keeps true; the set is not.
            lock(&self.added).clear();
        } else {
            return Err(Error::Provider {
                provider: self.store.provider.describe(),
                key: keys::PACKS.into(),
                detail: "an earlier pack upload failed in this session; nothing was committed"
                    .into(),
                kind: crate::ErrorKind::Io,
                status: crate::Status::Temporary,
            });
        }
        Ok(())
    }

    /// What this session wrote so far.
    pub fn stats(&self) -> WriteStats {
        let c = &self.counters;
        WriteStats {
            new_chunks: c.new_chunks.load(Ordering::Relaxed),
            new_raw_bytes: c.new_raw_bytes.load(Ordering::Relaxed),
            new_stored_bytes: c.new_stored_bytes.load(Ordering::Relaxed),
            packs_written: c.packs_written.load(Ordering::Relaxed),
        }
    }

    /// Writes a manifest of `group` that references this session's chunks: the commit point
    /// of what it describes. The session goes on (a session may commit several manifests,
    /// e.g. one per task).
    ///
    /// Flushes, checks that no GC gave up on the session (no point writing otherwise), then
    /// writes the manifest `candidate` returns under a name no manifest has yet — it is asked
    /// again, with the attempt number, when the name is taken — and checks once more: a GC that
    /// revoked the session in between may sweep chunks the manifest references, so then the
    /// manifest is deleted again and the write fails (docs/gc.md, "The commit window").
    /// Returns the name written.
    ///
    /// # Errors
    /// `SessionRevoked`, provider and index errors.
    pub fn write_manifest(
        &self,
        group: &str,
        mut candidate: impl FnMut(u32) -> (String, Bytes),
    ) -> Result<String> {
        self.flush()?;
        self.check_alive()?;
        let mut attempt = 0;
        loop {
            let (name, body) = candidate(attempt);
            if self.put_manifest_checked(group, &name, body)? {
                return Ok(name);
            }
            attempt += 1;
        }
    }

    /// Writes manifest `name` of `group` as it is (a mirror's copy of a primary's manifest),
    /// with the same checks as [`Self::write_manifest`]. Returns false when the store has a
    /// manifest of that name already (an earlier or concurrent copy), which is left alone.
    ///
    /// # Errors
    /// `SessionRevoked`, provider and index errors.
    pub fn copy_manifest(&self, group: &str, name: &str, body: Bytes) -> Result<bool> {
        self.flush()?;
        self.check_alive()?;
        self.put_manifest_checked(group, name, body)
    }

    /// The commit point and the check after it: a GC that revoked the session in between may
    /// sweep chunks the manifest references, so the manifest is deleted again and the write
    /// fails. Returns false, having written nothing, when the name is taken.
    fn put_manifest_checked(&self, group: &str, name: &str, body: Bytes) -> Result<bool> {
        self.put_checked(&keys::manifest(group, name), body)
    }

    /// Writes `key` if absent and checks the session after: deletes it again if the session
    /// was revoked meanwhile. False when `key` exists.
    pub(super) fn put_checked(&self, key: &str, body: Bytes) -> Result<bool> {
        let store = self.store;
        let key = key.to_string();
        if !store.block_on(store.provider.put_if_absent(&key, body))? {
            return Ok(false);
        }
        if let Err(e) = self.check_alive() {
            let _ = store.block_on(store.provider.delete(&key));
            return Err(e);
        }
        Ok(true)
    }

    /// [`Self::write_manifest`], then ends the session (whether the write succeeded or not).
    /// Returns the name written and what the session wrote.
    ///
    /// # Errors
    /// As [`Self::write_manifest`].
    pub fn commit(
        self,
        group: &str,
        candidate: impl FnMut(u32) -> (String, Bytes),
    ) -> Result<(String, WriteStats)> {
        let written = self
            .write_manifest(group, candidate)
            .map(|name| (name, self.stats()));
        if let Err(e) = self.end() {
            // Harmless: the session looks alive until its lease runs out, delaying GC a little.
            tracing::warn!("could not end session: {e}");
        }
        written
    }

    /// Ends the session without committing anything: stops its heartbeats and deletes them.
    /// Packs it uploaded stay until a GC finds no manifest needs them.
    ///
    /// # Errors
    /// Provider errors (the session then looks alive until its lease runs out).
    pub fn end(self) -> Result<()> {
        let WriteSession {
            store,
            session,
            uploads,
            ..
        } = self;
        // Uploads not waited for must finish before the heartbeats go: a GC that sees the
        // session over may otherwise miss a pack that lands after its listing.
        for task in lock(&uploads).drain(..) {
            let _ = store.block_on(task);
        }
        store.block_on(session.end())
    }
}
