//! The chunk store's half of garbage collection: the compact set of live chunks, per-pack
//! accounting, condemnation records, and the sweep that deletes or rewrites packs.
//!
//! Which chunks are live is decided above (from manifests); this module only needs a
//! [`LiveSet`]. The protocol that makes the sweep safe under concurrent backups is in
//! `docs/gc.md`: packs are first *condemned* (a record under `gc/`), the record is *armed*
//! with the sessions that were running, and a pack is swept only after all those sessions
//! are over, against a live set computed after that.
//!
//! Object keys: `gc/<record id>/condemned` (the packs) and `gc/<record id>/armed` (the
//! sessions to wait for). Both are small JSON documents.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::pack::{PackBuilder, PackEntry};
use crate::provider::{self, Provider, limits};
use crate::session::now_ms;
use crate::store::{ChunkStore, pack_key};
use crate::{ChunkId, Error, ErrorKind, Result, compress};

pub const GC_PREFIX: &str = "gc/";
const CONDEMNED: &str = "condemned";
const ARMED: &str = "armed";
const RECORD_VERSION: u32 = 1;

/// The chunks reachable from retained backups, as sorted 64-bit prefixes of their ids: 8
/// bytes per chunk instead of a hash set of 32-byte ids (≈ 8 MB per million chunks). Two
/// chunks sharing a prefix only make a dead chunk look live, which keeps bytes but never
/// loses any; with 10⁸ live chunks the chance that any dead chunk is kept this way is
/// below 10⁻³.
#[derive(Debug, Default, Clone)]
pub struct LiveSet {
    prefixes: Vec<u64>,
    sorted: bool,
}

fn prefix(id: &ChunkId) -> u64 {
    u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"))
}

impl LiveSet {
    pub fn insert(&mut self, id: &ChunkId) {
        self.prefixes.push(prefix(id));
        self.sorted = false;
    }

    /// Sorts and deduplicates; call once after the last insert.
    pub fn seal(&mut self) {
        self.prefixes.sort_unstable();
        self.prefixes.dedup();
        self.prefixes.shrink_to_fit();
        self.sorted = true;
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.position(id).is_some()
    }

    /// A dense number in `0..len()` for a live chunk, e.g. to keep one bit per live chunk.
    pub fn position(&self, id: &ChunkId) -> Option<usize> {
        assert!(self.sorted, "LiveSet::seal must be called before lookups");
        self.prefixes.binary_search(&prefix(id)).ok()
    }

    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }

    pub fn heap_bytes(&self) -> usize {
        self.prefixes.capacity() * 8
    }
}

/// How much of a pack is still needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackUsage {
    pub pack: ChunkId,
    /// Object size.
    pub size: u64,
    pub chunks: usize,
    pub live_chunks: usize,
    /// Compressed bytes of all chunks / of live chunks (headers and trailer excluded).
    pub stored_bytes: u64,
    pub live_bytes: u64,
}

impl PackUsage {
    pub fn of(pack: ChunkId, size: u64, entries: &[PackEntry], live: &LiveSet) -> Self {
        Self::with(pack, size, entries, |e| live.contains(&e.id))
    }

    /// Usage where `needed_here` says which entries count as live in this pack.
    pub fn with(
        pack: ChunkId,
        size: u64,
        entries: &[PackEntry],
        mut needed_here: impl FnMut(&PackEntry) -> bool,
    ) -> Self {
        let mut u = PackUsage {
            pack,
            size,
            chunks: entries.len(),
            live_chunks: 0,
            stored_bytes: 0,
            live_bytes: 0,
        };
        for e in entries {
            u.stored_bytes += e.stored_len as u64;
            if needed_here(e) {
                u.live_chunks += 1;
                u.live_bytes += e.stored_len as u64;
            }
        }
        u
    }

    pub fn is_dead(&self) -> bool {
        self.live_chunks == 0
    }

    /// Fraction of the chunk bytes no retained backup needs.
    pub fn dead_fraction(&self) -> f64 {
        if self.stored_bytes == 0 {
            return if self.is_dead() { 1.0 } else { 0.0 };
        }
        1.0 - self.live_bytes as f64 / self.stored_bytes as f64
    }

    /// Worth deleting (dead) or rewriting (more than `threshold` of it dead).
    pub fn is_garbage(&self, repack_threshold: f64) -> bool {
        self.is_dead() || self.dead_fraction() > repack_threshold
    }
}

/// A condemnation record: packs a GC found to be garbage, and once armed, the sessions
/// that were running when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condemnation {
    pub id: String,
    pub created_ms: u64,
    pub packs: Vec<ChunkId>,
    /// `None` until armed.
    pub sessions: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize)]
struct CondemnedDoc {
    version: u32,
    created_ms: u64,
    packs: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ArmedDoc {
    version: u32,
    sessions: Vec<String>,
}

fn record_key(id: &str, part: &str) -> String {
    format!("{GC_PREFIX}{id}/{part}")
}

/// What a listing of `gc/` found.
#[derive(Debug, Default)]
pub struct Records {
    pub condemnations: Vec<Condemnation>,
    /// Records that cannot be used, with why: keys to delete. Deleting a record only ever
    /// spares packs, so removing a damaged one is always safe.
    pub damaged: Vec<(String, String)>,
}

impl Records {
    /// Every pack some record condemns.
    pub fn packs(&self) -> HashSet<ChunkId> {
        self.condemnations
            .iter()
            .flat_map(|c| c.packs.iter().copied())
            .collect()
    }
}

async fn get_record(p: &dyn Provider, key: &str) -> Result<Option<Bytes>> {
    match p.get(key, limits::GC_RECORD).await {
        Ok(b) => Ok(Some(b)),
        // Deleted by a GC that finished it between our listing and this read.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_condemned(id: &str, key: &str, bytes: &[u8]) -> Result<Condemnation> {
    let doc: CondemnedDoc = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("GC record `{key}`"), e.to_string()))?;
    if doc.version != RECORD_VERSION {
        return Err(Error::corrupt(
            format!("GC record `{key}`"),
            format!("version {} is not {RECORD_VERSION}", doc.version),
        ));
    }
    let packs = doc
        .packs
        .iter()
        .map(|h| ChunkId::from_hex(h))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Error::corrupt(format!("GC record `{key}`"), e.to_string()))?;
    Ok(Condemnation {
        id: id.into(),
        created_ms: doc.created_ms,
        packs,
        sessions: None,
    })
}

fn parse_armed(key: &str, bytes: &[u8]) -> Result<Vec<String>> {
    let doc: ArmedDoc = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("GC record `{key}`"), e.to_string()))?;
    if doc.version != RECORD_VERSION {
        return Err(Error::corrupt(
            format!("GC record `{key}`"),
            format!("version {} is not {RECORD_VERSION}", doc.version),
        ));
    }
    Ok(doc.sessions)
}

/// Reads every condemnation record in the store.
///
/// # Errors
/// Provider errors.
pub async fn list_records(p: &dyn Provider) -> Result<Records> {
    let mut parts: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for o in provider::list_all(p, GC_PREFIX).await? {
        let Some((id, part)) = o.key[GC_PREFIX.len()..].split_once('/') else {
            continue;
        };
        let e = parts.entry(id.to_string()).or_default();
        match part {
            CONDEMNED => e.0 = true,
            ARMED => e.1 = true,
            _ => {}
        }
    }
    let mut out = Records::default();
    for (id, (has_condemned, has_armed)) in parts {
        let (ckey, akey) = (record_key(&id, CONDEMNED), record_key(&id, ARMED));
        if !has_condemned {
            if has_armed {
                out.damaged
                    .push((akey, "armed part without its condemned part".into()));
            }
            continue;
        }
        let Some(bytes) = get_record(p, &ckey).await? else {
            continue;
        };
        let mut c = match parse_condemned(&id, &ckey, &bytes) {
            Ok(c) => c,
            Err(e) => {
                out.damaged.push((ckey, e.to_string()));
                if has_armed {
                    out.damaged
                        .push((akey, "its condemned part is damaged".into()));
                }
                continue;
            }
        };
        if has_armed && let Some(bytes) = get_record(p, &akey).await? {
            match parse_armed(&akey, &bytes) {
                Ok(s) => c.sessions = Some(s),
                // Re-arming is always valid (docs/gc.md), so an unreadable armed part is
                // dropped and the record armed again.
                Err(e) => out.damaged.push((akey, e.to_string())),
            }
        }
        out.condemnations.push(c);
    }
    Ok(out)
}

/// Writes a new condemnation record for `packs`; returns its id.
///
/// # Errors
/// Provider errors.
pub async fn condemn(p: &dyn Provider, packs: &[ChunkId]) -> Result<String> {
    let created_ms = now_ms();
    let id = format!("{created_ms:013}-{:016x}", rand::random::<u64>());
    let doc = CondemnedDoc {
        version: RECORD_VERSION,
        created_ms,
        packs: packs.iter().map(ChunkId::to_hex).collect(),
    };
    let body = serde_json::to_vec(&doc).expect("record serializes");
    p.put_if_absent(&record_key(&id, CONDEMNED), Bytes::from(body))
        .await?;
    Ok(id)
}

/// Arms record `id` with the sessions to wait for. Must be called with a session listing
/// taken after the condemned part was written.
///
/// # Errors
/// Provider errors.
pub async fn arm(p: &dyn Provider, id: &str, sessions: Vec<String>) -> Result<()> {
    let doc = ArmedDoc {
        version: RECORD_VERSION,
        sessions,
    };
    let body = serde_json::to_vec(&doc).expect("record serializes");
    p.put_if_absent(&record_key(id, ARMED), Bytes::from(body))
        .await
        .map(|_| ())
}

/// Removes a finished record: condemned part first, so a crash in between leaves an armed
/// part without condemned part, which the next GC deletes as damaged.
///
/// # Errors
/// Provider errors.
pub async fn retire(p: &dyn Provider, id: &str) -> Result<()> {
    p.delete(&record_key(id, CONDEMNED)).await?;
    p.delete(&record_key(id, ARMED)).await
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub packs_deleted: u64,
    pub packs_rewritten: u64,
    /// Condemned packs that turned out to be needed after all (a backup that was running
    /// when they were condemned references them).
    pub packs_reprieved: u64,
    /// Already deleted by another GC.
    pub packs_gone: u64,
    pub new_packs: u64,
    /// Pack bytes deleted, minus bytes written to replace them.
    pub bytes_freed: u64,
    /// Live chunk bytes copied into new packs.
    pub bytes_rewritten: u64,
    /// Packs left alone because of damage, with why.
    pub problems: Vec<String>,
}

/// Sweeps `packs` against `live`. A chunk of a swept pack *needs saving* when it is live
/// and has no copy in a pack that is neither in `condemned` (every pack of every record
/// known to this GC, listed after the swept records were written) nor swept now. A pack
/// holding no chunk that needs saving is deleted; one where more than `repack_threshold`
/// of the chunk bytes need no saving has those that do copied, verified, into new packs,
/// which are uploaded before it is deleted; any other pack is reprieved.
///
/// Relying only on copies outside every known record keeps two GCs sweeping at once from
/// each deleting one copy on the strength of the other (docs/gc.md).
///
/// Safe only when the protocol's precondition holds: every session that could reference
/// these packs without having seen their condemnation is over, `live` was computed after
/// that was established, and the index was synced after `condemned` was listed.
///
/// # Errors
/// Provider and index errors. A damaged pack is reported in `problems` and kept.
pub fn sweep(
    store: &ChunkStore,
    packs: &[ChunkId],
    condemned: &HashSet<ChunkId>,
    live: &LiveSet,
    repack_threshold: f64,
    mut on_pack: impl FnMut(u64),
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let index = store.index();
    let mut todo: Vec<(ChunkId, u64, Vec<PackEntry>)> = Vec::new();
    let mut seen = HashSet::new();
    for pack in packs {
        if !seen.insert(*pack) {
            continue;
        }
        match index.pack_size(pack)? {
            Some(size) => todo.push((*pack, size, index.pack_entries(pack)?)),
            None => report.packs_gone += 1,
        }
    }
    // Live chunks of swept packs that are safe elsewhere.
    let wanted: HashSet<ChunkId> = todo
        .iter()
        .flat_map(|(_, _, entries)| entries.iter())
        .filter(|e| live.contains(&e.id))
        .map(|e| e.id)
        .collect();
    let mut saved: HashSet<ChunkId> = HashSet::new();
    if !wanted.is_empty() {
        for (pack, _) in index.packs()? {
            if condemned.contains(&pack) || seen.contains(&pack) {
                continue;
            }
            for e in index.pack_entries(&pack)? {
                if wanted.contains(&e.id) {
                    saved.insert(e.id);
                }
            }
        }
    }

    let mut builder = PackBuilder::new();
    let mut rewritten: Vec<(ChunkId, u64)> = Vec::new();
    let target = store.config().pack_target_size;
    let p = store.provider().clone();
    let max_chunk = store.config().chunker.max_size as usize;
    let mut written = 0u64;
    let mut dead: Vec<ChunkId> = Vec::new();
    for (pack, size, entries) in todo {
        on_pack(size);
        let keep: HashSet<ChunkId> = entries
            .iter()
            .filter(|e| live.contains(&e.id) && !saved.contains(&e.id))
            .map(|e| e.id)
            .collect();
        let usage = PackUsage::with(pack, size, &entries, |e| keep.contains(&e.id));
        if usage.is_dead() {
            dead.push(pack);
            report.packs_deleted += 1;
            report.bytes_freed += size;
            continue;
        }
        if !usage.is_garbage(repack_threshold) {
            report.packs_reprieved += 1;
            continue;
        }
        let config = store.config();
        let max_len = limits::pack(config.pack_target_size, u64::from(config.chunker.max_size));
        let bytes = match store.block_on(p.get(&pack_key(&pack), max_len)) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                // Another GC swept it after copying what needed saving.
                index.remove_pack(&pack)?;
                report.packs_gone += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        match copy_live(&bytes, &entries, &keep, max_chunk, &mut builder) {
            Ok(n) => report.bytes_rewritten += n,
            Err(e) => {
                report
                    .problems
                    .push(format!("pack {pack} kept, it is damaged: {e}"));
                continue;
            }
        }
        // Later packs holding the same chunks rely on the copy just made.
        saved.extend(keep);
        rewritten.push((pack, size));
        if builder.len() as u64 >= target {
            written += store.write_pack(std::mem::take(&mut builder))?.1;
            report.new_packs += 1;
        }
    }
    if !builder.is_empty() {
        written += store.write_pack(builder)?.1;
        report.new_packs += 1;
    }
    // Only now, with every copy durable, may the originals go; dead packs with them, in
    // batches.
    dead.extend(rewritten.iter().map(|(pack, _)| *pack));
    store.delete_packs(&dead)?;
    for (_, size) in rewritten {
        report.packs_rewritten += 1;
        report.bytes_freed += size;
    }
    report.bytes_freed = report.bytes_freed.saturating_sub(written);
    Ok(report)
}

/// Appends the live chunks of one pack to `builder`, each verified against its id; returns
/// their stored bytes. When any is damaged, nothing is appended.
fn copy_live(
    pack: &[u8],
    entries: &[PackEntry],
    keep: &HashSet<ChunkId>,
    max_chunk: usize,
    builder: &mut PackBuilder,
) -> Result<u64> {
    let mut scratch = Vec::new();
    for e in entries.iter().filter(|e| keep.contains(&e.id)) {
        let end = e.offset.checked_add(e.stored_len as u64);
        let Some(blob) = end
            .filter(|end| *end <= pack.len() as u64)
            .map(|end| &pack[e.offset as usize..end as usize])
        else {
            return Err(Error::corrupt(
                format!("chunk {}", e.id),
                "lies beyond the end of its pack",
            ));
        };
        compress::decompress_verified(blob, e.raw_len as usize, max_chunk, &e.id)?;
        scratch.push((e.id, e.raw_len, blob));
    }
    let mut n = 0;
    for (id, raw_len, blob) in scratch {
        builder.add(id, raw_len, blob);
        n += blob.len() as u64;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pack;
    use crate::provider::MemoryProvider;

    fn id(n: u32) -> ChunkId {
        ChunkId::of(&n.to_le_bytes())
    }

    #[test]
    fn live_set_contains_exactly_what_was_inserted() {
        let mut s = LiveSet::default();
        for n in (0..10_000).step_by(2) {
            s.insert(&id(n));
            s.insert(&id(n)); // duplicates collapse
        }
        s.seal();
        assert_eq!(s.len(), 5000);
        for n in 0..10_000 {
            assert_eq!(s.contains(&id(n)), n % 2 == 0, "chunk {n}");
        }
    }

    #[test]
    fn usage_counts_live_bytes_and_classifies() {
        let entries: Vec<PackEntry> = (0..4)
            .map(|n| PackEntry {
                id: id(n),
                offset: 8 + 100 * n as u64,
                stored_len: 100,
                raw_len: 300,
            })
            .collect();
        let mut live = LiveSet::default();
        live.insert(&id(0));
        live.seal();
        let u = PackUsage::of(id(99), 500, &entries, &live);
        assert_eq!((u.live_chunks, u.live_bytes, u.stored_bytes), (1, 100, 400));
        assert!((u.dead_fraction() - 0.75).abs() < 1e-9);
        assert!(u.is_garbage(0.5) && !u.is_garbage(0.8) && !u.is_dead());
        let none = LiveSet {
            sorted: true,
            ..Default::default()
        };
        assert!(PackUsage::of(id(99), 500, &entries, &none).is_dead());
    }

    fn pack_of(store: &ChunkStore, chunks: &[&[u8]]) -> ChunkId {
        let mut b = PackBuilder::new();
        for c in chunks {
            b.add(
                ChunkId::of(c),
                c.len() as u32,
                &compress::compress(c, 1).unwrap(),
            );
        }
        store.write_pack(b).unwrap().0
    }

    fn read(store: &ChunkStore, id: ChunkId) -> Result<Vec<u8>> {
        let out = std::sync::Mutex::new(Vec::new());
        store.read_chunks(&[id], |_, d| {
            out.lock().unwrap().extend_from_slice(d);
            Ok::<(), Error>(())
        })?;
        Ok(out.into_inner().unwrap())
    }

    /// Two GCs sweep two records at once, each with an index that does not yet show the
    /// other's deletion. Each must copy the live chunk rather than rely on the other's pack:
    /// relying on a condemned pack would let both delete their copy.
    #[test]
    fn concurrent_sweeps_never_rely_on_each_others_condemned_packs() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dirs = [(); 3].map(|_| tempfile::tempdir().unwrap());
        let a = ChunkStore::open(p.clone(), dirs[0].path(), true).unwrap();
        let x = b"the chunk both packs hold".repeat(100);
        let (dead1, dead2) = (b"dead one".repeat(300), b"dead two".repeat(300));
        let p1 = pack_of(&a, &[&x, &dead1]);
        let p2 = pack_of(&a, &[&x, &dead2]);
        let b = ChunkStore::open(p.clone(), dirs[1].path(), false).unwrap();
        b.sync_index().unwrap();
        let mut live = LiveSet::default();
        live.insert(&ChunkId::of(&x));
        live.seal();
        let condemned: HashSet<ChunkId> = [p1, p2].into();

        let ra = sweep(&a, &[p1], &condemned, &live, 0.3, |_| {}).unwrap();
        assert_eq!((ra.packs_rewritten, ra.new_packs), (1, 1), "{ra:?}");
        // b's index still lists p1 and does not know a's new pack.
        let rb = sweep(&b, &[p2], &condemned, &live, 0.3, |_| {}).unwrap();
        assert_eq!((rb.packs_rewritten, rb.new_packs), (1, 1), "{rb:?}");

        let c = ChunkStore::open(p.clone(), dirs[2].path(), false).unwrap();
        assert_eq!(read(&c, ChunkId::of(&x)).unwrap(), x);
        assert!(!c.block_on(p.exists(&pack_key(&p1))).unwrap());
        assert!(!c.block_on(p.exists(&pack_key(&p2))).unwrap());
    }

    #[test]
    fn a_sweep_relies_on_an_uncondemned_copy_and_keeps_a_damaged_pack() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let s = ChunkStore::open(p.clone(), dir.path(), true).unwrap();
        let (x, y) = (b"x".repeat(5000), b"y".repeat(5000));
        let dead = b"dead".repeat(4000);
        let keeper = pack_of(&s, &[&x]);
        let dup = pack_of(&s, &[&x, &dead]);
        let damaged = pack_of(&s, &[&y, &dead]);
        // Flip a byte inside y's blob.
        let key = pack_key(&damaged);
        let mut bytes = s.block_on(p.get(&key, u64::MAX)).unwrap().to_vec();
        bytes[pack::HEADER_MAGIC.len() + 5] ^= 0x40;
        s.block_on(p.delete(&key)).unwrap();
        s.block_on(p.put_if_absent(&key, Bytes::from(bytes)))
            .unwrap();

        let mut live = LiveSet::default();
        live.insert(&ChunkId::of(&x));
        live.insert(&ChunkId::of(&y));
        live.seal();
        let condemned: HashSet<ChunkId> = [dup, damaged].into();
        let r = sweep(&s, &[dup, damaged], &condemned, &live, 0.3, |_| {}).unwrap();
        // x is safe in `keeper`: its duplicate pack goes without a copy.
        assert_eq!((r.packs_deleted, r.packs_rewritten, r.new_packs), (1, 0, 0));
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(r.problems[0].contains(&damaged.to_string()), "{r:?}");
        assert!(s.block_on(p.exists(&key)).unwrap(), "damaged pack kept");
        assert!(!s.block_on(p.exists(&pack_key(&dup))).unwrap());
        assert_eq!(read(&s, ChunkId::of(&x)).unwrap(), x);
        assert_eq!(s.locate(&ChunkId::of(&x)).unwrap().pack, keeper);
    }
}
