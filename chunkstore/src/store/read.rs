//! Reading many chunk sequences at once, on every core: the read path of the store (restore,
//! verify, GC's checks).
//!
//! A restore has hundreds of files and two or more cores; reading them one chunk after
//! another leaves cores idle, and a few large files (SSTs) dominate the tail. So a reader
//! describes every sequence (file) up front ([`ChunkStore::plan_read`]) and
//! [`ChunkStore::read_plan`] delivers each chunk with its sequence and byte offset, in any
//! order, from several worker threads ([`ChunkStore::read_chunks`] does both for one
//! sequence):
//!
//! ```text
//!   spans (adjacent chunks of one pack, ≤ 4 MiB)      one ranged read each, FETCHES_IN_FLIGHT
//!        │                                             at once (tokio tasks)
//!        ▼
//!   rendezvous channel (no slots)                     back-pressure: memory stays bounded
//!        │
//!        ▼
//!   workers: decompress into a reused buffer, check length and BLAKE3, sink(seq, offset, bytes)
//! ```
//!
//! Memory is bounded by `(fetches in flight + 1 + workers)` compressed spans of at most 4 MiB
//! (or one chunk, when a single chunk is larger) — 2 fetches from a local store, 12 from a
//! remote one; the 1 is a fetched span waiting for a worker — plus one chunk-sized buffer per
//! worker, whatever the size of the restore. Span buffers are recycled, not freed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{MAX_SPAN, lock};
use crate::index::ChunkLocation;
use crate::{ChunkId, ChunkStore, Error, ErrorKind, PackId, Result, compress, keys};

/// Ranged reads in flight during a [`ChunkStore::read_plan`] from a remote store: enough to
/// hide its round trips (Garage on loopback: 2.0 s with 4, 1.7 s with 8 for a 221 MiB restore).
const REMOTE_FETCHES_IN_FLIGHT: usize = 12;
/// From a local store, which answers from the page cache: a read of a span takes a fraction
/// of its decompression, so two keep the workers busy and more only cost memory (4 → 2:
/// a 534 MiB restore's peak RSS 65 → 57 MB, time unchanged).
const LOCAL_FETCHES_IN_FLIGHT: usize = 2;
/// Chunks are fetched in pack order within windows of this many (uncompressed) bytes of the
/// plan; see [`ChunkStore::read_plan`].
const WINDOW: u64 = 64 << 20;
/// Bytes between two wanted chunks of a pack that a ranged read may span rather than split.
const MAX_GAP: u64 = 256 << 10;

/// Every chunk of a set of sequences (files), located, with where its bytes go.
#[derive(Debug, Clone)]
pub struct ReadPlan {
    items: Vec<PlanItem>,
    lengths: Vec<u64>,
}

#[derive(Debug, Clone, Copy)]
struct PlanItem {
    seq: usize,
    offset: u64,
    id: ChunkId,
    loc: ChunkLocation,
    /// Located in the fallback store (the mirror), not in this one.
    on_fallback: bool,
}

impl ReadPlan {
    /// Byte length of each sequence, from the located chunks' sizes: a caller compares it with
    /// what it expects before anything is read.
    pub fn lengths(&self) -> &[u64] {
        &self.lengths
    }
}

/// Chunks of one pack fetched with one ranged read: positions `first..end` of the sequence
/// the spans were built over, bytes `[start, start + len)` of `pack`.
pub(crate) struct Span {
    pub(crate) pack: PackId,
    pub(crate) start: u64,
    pub(crate) len: u64,
    pub(crate) first: usize,
    pub(crate) end: usize,
}

impl Span {
    /// A ranged read of this span must return exactly its length (a short read means a
    /// truncated pack).
    pub(crate) fn check_read(&self, got: usize) -> Result<()> {
        if got as u64 == self.len {
            return Ok(());
        }
        Err(Error::corrupt(
            format!("pack {}", self.pack),
            format!("ranged read returned {got} bytes, expected {}", self.len),
        ))
    }
}

/// The order in which `items` are fetched: plan order, so files complete one after another;
/// but within each window of [`WINDOW`] bytes, pack order, so that chunks of files a backup
/// stored side by side (it stores several files at once) come with one ranged read.
fn fetch_order(items: &[PlanItem]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, it) in items.iter().enumerate() {
        bytes += it.loc.raw_len as u64;
        if bytes >= WINDOW || i + 1 == items.len() {
            order[start..=i].sort_by_key(|&k| (items[k].loc.pack, items[k].loc.offset));
            (start, bytes) = (i + 1, 0);
        }
    }
    order
}

/// Groups `locs` (in the order given, which the spans keep) into ranged reads: a chunk joins
/// the previous one's span when it is in the same pack, starts at most `max_gap` bytes after
/// the span ends, and the span stays within [`MAX_SPAN`] bytes. The gap bytes are read and
/// dropped: cheaper than another request when the store is remote. A chunk larger than
/// `MAX_SPAN` is a span of its own.
pub(crate) fn spans(locs: impl Iterator<Item = ChunkLocation>, max_gap: u64) -> Vec<Span> {
    let mut out: Vec<Span> = Vec::new();
    for (i, loc) in locs.enumerate() {
        if let Some(s) = out.last_mut() {
            let end = s.start + s.len;
            let joins = s.pack == loc.pack
                && loc.offset >= end
                && loc.offset - end <= max_gap
                && loc.offset + loc.stored_len as u64 - s.start <= MAX_SPAN;
            if joins {
                s.len = loc.offset + loc.stored_len as u64 - s.start;
                s.end = i + 1;
                continue;
            }
        }
        out.push(Span {
            pack: loc.pack,
            start: loc.offset,
            len: loc.stored_len as u64,
            first: i,
            end: i + 1,
        });
    }
    out
}

impl ChunkStore {
    /// Locates every chunk of `seqs` (syncing the index once if it misses one) and computes
    /// where each chunk's bytes go in its sequence.
    ///
    /// # Errors
    /// `NotFound` for a chunk no pack holds; index and provider errors.
    pub fn plan_read(&self, seqs: &[&[ChunkId]]) -> Result<ReadPlan> {
        let mut items = Vec::with_capacity(seqs.iter().map(|s| s.len()).sum());
        let mut lengths = Vec::with_capacity(seqs.len());
        for (seq, ids) in seqs.iter().enumerate() {
            let mut offset = 0u64;
            for id in *ids {
                let (loc, on_fallback) = match (self.locate(id), self.fallback()) {
                    (Ok(loc), _) => (loc, false),
                    // Not in this store: its mirror may still have it.
                    (Err(e), Some(fallback)) if is_missing_or_damaged(&e) => {
                        (fallback.locate(id).map_err(|_| e)?, true)
                    }
                    (Err(e), _) => return Err(e),
                };
                items.push(PlanItem {
                    seq,
                    offset,
                    id: *id,
                    loc,
                    on_fallback,
                });
                offset += loc.raw_len as u64;
            }
            lengths.push(offset);
        }
        Ok(ReadPlan { items, lengths })
    }

    /// Reads every chunk of `plan`, verifies it, and passes `(sequence, offset, bytes)` to
    /// `sink` from one of `workers` threads, in no particular order. Chunks are fetched window
    /// by window in plan order (64 MiB each), so sequences complete roughly one after another,
    /// and in pack order within a window, so chunks stored near each other come with one
    /// ranged read (a gap of up to 256 KiB between them is read and dropped).
    ///
    /// If a pack is gone (another machine repacked or swept it after the index was synced),
    /// the chunks it held are read again after one index sync, so `sink` may not assume that
    /// a sequence's chunks arrive in a single pass, only that each arrives exactly once.
    ///
    /// # Errors
    /// `NotFound` for a chunk no pack holds, `Corrupt` for one that fails its check, provider
    /// errors, and the first error `sink` returns (after which no further chunk is delivered).
    pub fn read_plan<E: From<Error> + Send>(
        &self,
        plan: ReadPlan,
        workers: usize,
        sink: impl Fn(usize, u64, &[u8]) -> std::result::Result<(), E> + Sync,
    ) -> std::result::Result<(), E> {
        let (mut items, mut from_fallback): (Vec<PlanItem>, Vec<PlanItem>) =
            plan.items.into_iter().partition(|it| !it.on_fallback);
        let salvage = self.fallback().map(|_| Mutex::new(Vec::new()));
        let mut resynced = false;
        loop {
            let gone =
                self.fetch_items(&items, workers.max(1), !resynced, salvage.as_ref(), &sink)?;
            if let Some(salvaged) = &salvage {
                let salvaged =
                    std::mem::take(&mut *salvaged.lock().unwrap_or_else(|p| p.into_inner()));
                from_fallback.extend(salvaged.into_iter().map(|i| items[i]));
            }
            if gone.is_empty() {
                break;
            }
            // The index is a cache: sync it once from the store, look the chunks of the
            // vanished packs up again, and read only those.
            resynced = true;
            self.sync_index()?;
            let mut again = Vec::with_capacity(gone.len());
            for i in gone {
                let mut item = items[i];
                match self.locate(&item.id) {
                    Ok(loc) => {
                        item.loc = loc;
                        again.push(item);
                    }
                    Err(e) if salvage.is_some() && is_missing_or_damaged(&e) => {
                        from_fallback.push(item);
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            items = again;
        }
        match self.fallback() {
            Some(fallback) if !from_fallback.is_empty() => {
                self.read_from_fallback(fallback, from_fallback, workers, sink)
            }
            _ => Ok(()),
        }
    }

    /// Reads chunks this store lacks, or holds damaged, from its mirror: located in the
    /// mirror's own index (a chunk may sit in another pack there), each verified as usual.
    fn read_from_fallback<E: From<Error> + Send>(
        &self,
        fallback: &ChunkStore,
        mut items: Vec<PlanItem>,
        workers: usize,
        sink: impl Fn(usize, u64, &[u8]) -> std::result::Result<(), E> + Sync,
    ) -> std::result::Result<(), E> {
        for it in &mut items {
            let loc = fallback.locate(&it.id)?;
            if loc.raw_len != it.loc.raw_len {
                return Err(Error::corrupt(
                    format!("chunk {}", it.id),
                    format!(
                        "{} bytes in the mirror `{}`, {} here",
                        loc.raw_len,
                        fallback.describe(),
                        it.loc.raw_len
                    ),
                )
                .into());
            }
            it.loc = loc;
            it.on_fallback = false;
        }
        tracing::warn!(
            "{} chunk(s) missing or damaged in `{}` were read from its mirror `{}`",
            items.len(),
            self.describe(),
            fallback.describe()
        );
        self.count_fallback_reads(items.len() as u64);
        let plan = ReadPlan {
            items,
            lengths: Vec::new(),
        };
        fallback.read_plan(plan, workers, sink)
    }

    /// One pass of [`Self::read_plan`] over `items`. With `stop_on_gone`, a span whose pack is
    /// gone is skipped and its items' positions are returned; otherwise that is `NotFound`.
    /// With `salvage`, a chunk that is damaged, or whose pack is gone or unreadable, is not an
    /// error: its position goes into `salvage`, to be read from the mirror.
    fn fetch_items<E: From<Error> + Send>(
        &self,
        items: &[PlanItem],
        workers: usize,
        stop_on_gone: bool,
        salvage: Option<&Mutex<Vec<usize>>>,
        sink: &(impl Fn(usize, u64, &[u8]) -> std::result::Result<(), E> + Sync),
    ) -> std::result::Result<Vec<usize>, E> {
        use futures_util::StreamExt;

        let order = fetch_order(items);
        let spans = spans(order.iter().map(|&k| items[k].loc), MAX_GAP);
        let failed = AtomicBool::new(false);
        let first_error: Mutex<Option<E>> = Mutex::new(None);
        let fail = |e: E| {
            failed.store(true, Ordering::SeqCst);
            let mut slot = first_error.lock().unwrap_or_else(|p| p.into_inner());
            if slot.is_none() {
                *slot = Some(e);
            }
        };
        let mut gone = Vec::new();
        let max_chunk = self.config().max_chunk_len() as usize;
        // No slots: a fetched span waits in the driver's hand until a worker is free, and
        // the fetches in flight behind it keep the workers fed. A slot per worker held two
        // more spans for no speed (a 680 MB restore: peak RSS 70 → 63 MB, same time).
        let (tx, rx) = crossbeam_channel::bounded::<(&Span, Vec<u8>)>(0);
        let fetches_in_flight = if self.provider().is_remote() {
            REMOTE_FETCHES_IN_FLIGHT
        } else {
            LOCAL_FETCHES_IN_FLIGHT
        };
        // Span buffers go round: fetch, worker, back here. Allocating one per read instead
        // left freed multi-MiB blocks in glibc's per-thread arenas (peak RSS +20 MB).
        let spare: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

        std::thread::scope(|scope| {
            for _ in 0..workers {
                let rx = rx.clone();
                let (failed, fail, order, spare) = (&failed, &fail, &order, &spare);
                scope.spawn(move || {
                    let mut ctx = match zstd::bulk::Decompressor::new() {
                        Ok(c) => c,
                        Err(e) => return fail(Error::InvalidInput(format!("zstd: {e}")).into()),
                    };
                    let mut buf = Vec::with_capacity(max_chunk);
                    for (span, bytes) in rx {
                        if failed.load(Ordering::SeqCst) {
                            continue; // drain, so the driver never blocks on a full channel
                        }
                        let bytes = Recycled(bytes, spare);
                        for &k in &order[span.first..span.end] {
                            let it = &items[k];
                            let at = (it.loc.offset - span.start) as usize;
                            let blob = &bytes[at..at + it.loc.stored_len as usize];
                            let raw = it.loc.raw_len as usize;
                            let checked = compress::decompress_verified_into(
                                &mut ctx, blob, raw, max_chunk, &it.id, &mut buf,
                            );
                            let done = match (checked, salvage) {
                                (Ok(()), _) => sink(it.seq, it.offset, &buf),
                                (Err(e), Some(salvage)) if is_missing_or_damaged(&e) => {
                                    tracing::warn!("{}", in_pack(e, &span.pack));
                                    lock(salvage).push(k);
                                    Ok(())
                                }
                                (Err(e), _) => Err(in_pack(e, &span.pack).into()),
                            };
                            if let Err(e) = done {
                                fail(e);
                                break;
                            }
                        }
                    }
                });
            }
            drop(rx);

            let driven: Result<()> = self.block_on(async {
                let fetches = spans.iter().map(|span| {
                    let provider = self.provider().clone();
                    let key = keys::pack(&span.pack);
                    let (start, len) = (span.start, span.len);
                    let buf = spare.lock().unwrap_or_else(|p| p.into_inner()).pop();
                    // A task of its own, so a remote read progresses while this thread waits
                    // for a worker to take the previous span.
                    let task = self.spawn(async move {
                        let buf = buf.unwrap_or_default();
                        provider.get_range_into(&key, start, len, buf).await
                    });
                    async move { (span, task.await) }
                });
                let mut fetched =
                    futures_util::stream::iter(fetches).buffer_unordered(fetches_in_flight);
                while let Some((span, joined)) = fetched.next().await {
                    if failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let got = joined.map_err(|e| {
                        Error::InvalidInput(format!("read of pack {} failed: {e}", span.pack))
                    })?;
                    let read = match got {
                        Err(e) if e.kind() == ErrorKind::NotFound && stop_on_gone => {
                            gone.extend(&order[span.first..span.end]);
                            continue;
                        }
                        r => r.and_then(|b| span.check_read(b.len()).map(|()| b)),
                    };
                    let bytes = match (read, salvage) {
                        (Ok(b), _) => b,
                        (Err(e), Some(salvage)) if is_missing_or_damaged(&e) => {
                            tracing::warn!("{e}");
                            lock(salvage).extend(&order[span.first..span.end]);
                            continue;
                        }
                        (Err(e), _) => return Err(e),
                    };
                    if tx.send((span, bytes)).is_err() {
                        break; // every worker is gone, which only happens after a failure
                    }
                }
                Ok(())
            });
            drop(tx);
            if let Err(e) = driven {
                fail(e.into());
            }
        });
        match first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(e) => Err(e),
            None => Ok(gone),
        }
    }
}

/// A span's bytes, handed back to the spare buffers when the worker is done with them.
struct Recycled<'a>(Vec<u8>, &'a Mutex<Vec<Vec<u8>>>);

impl std::ops::Deref for Recycled<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Recycled<'_> {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.0);
        self.1.lock().unwrap_or_else(|p| p.into_inner()).push(buf);
    }
}

/// Whether `e` says an object is missing or damaged — what a mirror can make up for — rather
/// than that the store could not be asked (which the mirror would not fix either).
fn is_missing_or_damaged(e: &Error) -> bool {
    matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt)
}

/// Names the pack in a chunk's `Corrupt` error, so an operator knows which object is damaged.
pub(crate) fn in_pack(e: Error, pack: &PackId) -> Error {
    match e {
        Error::Corrupt { object, detail } => Error::Corrupt {
            object: format!("{object} in pack {pack}"),
            detail,
        },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use rand::{RngCore, SeedableRng, rngs::StdRng};

    use super::*;
    use crate::StoreConfig;
    use crate::provider::{MemoryProvider, Provider};

    /// A store with 1 MiB packs, so a few incompressible chunks fill several packs.
    fn small_pack_store(p: &Arc<dyn Provider>, idx: &std::path::Path) -> ChunkStore {
        let mut config = StoreConfig::new_random();
        config.pack_target_size = 1 << 20;
        let body = serde_json::to_vec(&config).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(p.put_if_absent(keys::CONFIG, Bytes::from(body)))
            .unwrap();
        ChunkStore::open(p.clone(), idx, false).unwrap()
    }

    fn random_chunks(n: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = StdRng::seed_from_u64(seed);
        (0..n)
            .map(|i| {
                let mut c = vec![0u8; 200_000 + 7_919 * i];
                rng.fill_bytes(&mut c);
                c
            })
            .collect()
    }

    /// Reads `plan` into one buffer per sequence; returns them and the number of deliveries.
    fn read_into(s: &ChunkStore, plan: ReadPlan, workers: usize) -> Result<(Vec<Vec<u8>>, usize)> {
        let outs: Vec<Mutex<Vec<u8>>> = plan
            .lengths()
            .iter()
            .map(|&l| Mutex::new(vec![0xEE; l as usize]))
            .collect();
        let calls = std::sync::atomic::AtomicUsize::new(0);
        s.read_plan(plan, workers, |seq, offset, data| -> Result<()> {
            calls.fetch_add(1, Ordering::SeqCst);
            let mut out = outs[seq].lock().unwrap();
            out[offset as usize..offset as usize + data.len()].copy_from_slice(data);
            Ok(())
        })?;
        let outs = outs.into_iter().map(|m| m.into_inner().unwrap()).collect();
        Ok((outs, calls.into_inner()))
    }

    #[test]
    fn spans_join_chunks_of_a_pack_across_small_gaps_only() {
        let (a, b) = (PackId::of(b"a"), PackId::of(b"b"));
        let at = |pack, offset, stored_len| ChunkLocation {
            pack,
            offset,
            stored_len,
            raw_len: stored_len,
        };
        let locs = [
            at(a, 8, 100),
            at(a, 108, 100),              // adjacent
            at(a, 208 + 1000, 100),       // a gap within the limit
            at(a, 1308 + 5000, 100),      // a gap beyond it
            at(b, 6408, 100),             // another pack
            at(b, 6508, MAX_SPAN as u32), // would make the span too long
            at(b, 8, 100),                // behind the span: never joined
        ];
        let got: Vec<(u64, u64, usize, usize)> = spans(locs.iter().copied(), 4096)
            .iter()
            .map(|s| (s.start, s.len, s.first, s.end))
            .collect();
        assert_eq!(
            got,
            vec![
                (8, 1300, 0, 3),
                (6308, 100, 3, 4),
                (6408, 100, 4, 5),
                (6508, MAX_SPAN, 5, 6),
                (8, 100, 6, 7),
            ]
        );
        // Without gaps: adjacent chunks only.
        assert_eq!(spans(locs.iter().copied(), 0)[0].end, 2);
    }

    #[test]
    fn every_chunk_arrives_once_at_its_offset_across_many_packs() {
        // A local dir: unlike the memory provider it keeps no reference to an uploaded
        // pack's bytes, so the store reuses pack buffers, which this test also covers.
        let root = tempfile::tempdir().unwrap();
        let p: Arc<dyn Provider> = Arc::new(crate::provider::LocalProvider::new(root.path()));
        let dir = tempfile::tempdir().unwrap();
        let s = small_pack_store(&p, dir.path());
        let chunks = random_chunks(40, 1);
        let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
        // Two sessions' worth: after the first flush every upload is done, so the second
        // fills buffers of uploaded packs.
        for half in [0..20, 20..40] {
            let w = s.begin_session("backup", "test").unwrap();
            for i in half {
                w.put_chunk(ids[i], &chunks[i]).unwrap();
            }
            w.flush().unwrap();
            w.end().unwrap();
        }
        let packs = s.packs().unwrap();
        assert!(packs.len() >= 8, "{} packs", packs.len());
        // A reused buffer holds nothing of the pack it held before.
        let stored: u64 = packs.iter().map(|(_, size)| size).sum();
        let raw: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        assert!(
            stored < raw + 4096 * packs.len() as u64,
            "{stored} bytes for {raw}"
        );

        // Files out of store order, one repeating a chunk, one empty.
        let files: Vec<Vec<usize>> = vec![
            (0..12).collect(),
            vec![30, 3, 30, 17],
            vec![],
            (12..40).rev().collect(),
        ];
        let seqs: Vec<Vec<ChunkId>> = files
            .iter()
            .map(|f| f.iter().map(|&i| ids[i]).collect())
            .collect();
        let refs: Vec<&[ChunkId]> = seqs.iter().map(Vec::as_slice).collect();
        let want: Vec<Vec<u8>> = files
            .iter()
            .map(|f| f.iter().flat_map(|&i| chunks[i].clone()).collect())
            .collect();
        for workers in [1, 3] {
            // A fresh index each time: planning syncs it from the pack trailers.
            let fresh = tempfile::tempdir().unwrap();
            let reader = ChunkStore::open(p.clone(), fresh.path(), false).unwrap();
            let plan = reader.plan_read(&refs).unwrap();
            let lengths: Vec<u64> = want.iter().map(|w| w.len() as u64).collect();
            assert_eq!(plan.lengths(), lengths.as_slice());
            let (got, calls) = read_into(&reader, plan, workers).unwrap();
            assert_eq!(calls, 12 + 4 + 28, "{workers} workers");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(g == w, "file {i} differs with {workers} workers");
            }
        }
    }

    #[test]
    fn chunks_of_a_vanished_pack_are_read_again_after_one_sync() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let s = small_pack_store(&p, d1.path());
        let chunks = random_chunks(12, 2);
        let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
        let w = s.begin_session("backup", "test").unwrap();
        for (id, c) in ids.iter().zip(&chunks) {
            w.put_chunk(*id, c).unwrap();
        }
        w.flush().unwrap();
        w.end().unwrap();
        let plan = s.plan_read(&[&ids]).unwrap();
        // Another machine stores chunk 5 again elsewhere and deletes its old pack, as a GC
        // repack would; the plan still points at the old pack.
        let old = s.locate(&ids[5]).unwrap().pack;
        let other = ChunkStore::open(p.clone(), d2.path(), false).unwrap();
        let moved: Vec<usize> = (0..12)
            .filter(|&i| other.locate(&ids[i]).unwrap().pack == old)
            .collect();
        drop(other);
        let fresh = tempfile::tempdir().unwrap();
        let other = ChunkStore::open(p.clone(), fresh.path(), false).unwrap();
        // As a repack writes it: the moved chunks with a neighbour, in a pack of their own.
        let mut b = crate::pack::PackBuilder::new();
        for (id, c) in std::iter::once((ChunkId::of(b"marker"), &b"marker"[..]))
            .chain(moved.iter().map(|&i| (ids[i], &chunks[i][..])))
        {
            b.add(id, c.len() as u32, &compress::compress(c, 1).unwrap());
        }
        other.write_pack(b).unwrap();
        other.block_on(p.delete(&keys::pack(&old))).unwrap();

        let (got, calls) = read_into(&s, plan, 2).unwrap();
        assert_eq!(calls, 12, "each chunk exactly once");
        assert!(got[0] == chunks.concat());
        assert_ne!(s.locate(&ids[5]).unwrap().pack, old, "index was synced");
    }

    #[test]
    fn a_damaged_chunk_or_a_failing_sink_stops_the_read_with_that_error() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let s = small_pack_store(&p, dir.path());
        let chunks = random_chunks(10, 3);
        let ids: Vec<ChunkId> = chunks.iter().map(|c| ChunkId::of(c)).collect();
        let w = s.begin_session("backup", "test").unwrap();
        for (id, c) in ids.iter().zip(&chunks) {
            w.put_chunk(*id, c).unwrap();
        }
        w.flush().unwrap();
        w.end().unwrap();

        // The sink's own error comes back as is, and nothing is delivered after it.
        let plan = s.plan_read(&[&ids]).unwrap();
        let after = std::sync::atomic::AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let err = s
            .read_plan(plan, 1, |_, offset, _| -> Result<()> {
                if failed.load(Ordering::SeqCst) {
                    after.fetch_add(1, Ordering::SeqCst);
                }
                if offset > 0 {
                    failed.store(true, Ordering::SeqCst);
                    return Err(Error::InvalidInput("disk full".into()));
                }
                Ok(())
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid input: disk full");
        assert_eq!(after.into_inner(), 0);

        // One flipped bit in a stored chunk: `Corrupt`, naming the chunk and its pack.
        let loc = s.locate(&ids[4]).unwrap();
        let key = keys::pack(&loc.pack);
        let mut bytes = s.block_on(p.get(&key, u64::MAX)).unwrap().to_vec();
        bytes[loc.offset as usize + loc.stored_len as usize / 2] ^= 0x10;
        s.block_on(p.delete(&key)).unwrap();
        s.block_on(p.put_if_absent(&key, Bytes::from(bytes)))
            .unwrap();
        let plan = s.plan_read(&[&ids]).unwrap();
        let err = read_into(&s, plan, 2).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt);
        let msg = err.to_string();
        assert!(
            msg.contains(&ids[4].to_hex()) && msg.contains(&loc.pack.to_hex()),
            "{msg}"
        );
    }
}
