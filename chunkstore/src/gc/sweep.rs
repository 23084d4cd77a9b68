//! Sweep: delete condemned packs no live chunk needs, rewrite those mostly dead.
//!
//! Only packs of records whose sessions are all over are swept, against a live set built
//! after that was established (docs/gc.md). A live chunk is copied out of a pack unless an
//! uncondemned pack already holds it; damaged packs are kept and reported.

use std::collections::HashSet;

use super::mark::{LiveSet, PackUsage};
use crate::pack::{PackBuilder, PackEntry};
use crate::provider::limits;
use crate::store::ChunkStore;
use crate::{ChunkId, Error, ErrorKind, PackId, Result, compress, keys};

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
    packs: &[PackId],
    condemned: &HashSet<PackId>,
    live: &LiveSet,
    repack_threshold: f64,
    mut on_pack: impl FnMut(u64),
) -> Result<SweepReport> {
    let mut report = SweepReport::default();
    let index = store.index()?;
    let mut todo: Vec<(PackId, u64, Vec<PackEntry>)> = Vec::new();
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
    let mut rewritten: Vec<(PackId, u64)> = Vec::new();
    let target = store.config().pack_target_size;
    let p = store.provider().clone();
    let max_chunk = store.config().max_chunk_len() as usize;
    let mut written = 0u64;
    let mut dead: Vec<PackId> = Vec::new();
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
        let max_len = limits::pack(config.pack_target_size, u64::from(config.max_chunk_len()));
        let bytes = match store.block_on(p.get(&keys::pack(&pack), max_len)) {
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
    use bytes::Bytes;

    use crate::provider::{MemoryProvider, Provider};

    fn pack_of(store: &ChunkStore, chunks: &[&[u8]]) -> PackId {
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
        let condemned: HashSet<PackId> = [p1, p2].into();

        let ra = sweep(&a, &[p1], &condemned, &live, 0.3, |_| {}).unwrap();
        assert_eq!((ra.packs_rewritten, ra.new_packs), (1, 1), "{ra:?}");
        // b's index still lists p1 and does not know a's new pack.
        let rb = sweep(&b, &[p2], &condemned, &live, 0.3, |_| {}).unwrap();
        assert_eq!((rb.packs_rewritten, rb.new_packs), (1, 1), "{rb:?}");

        let c = ChunkStore::open(p.clone(), dirs[2].path(), false).unwrap();
        assert_eq!(read(&c, ChunkId::of(&x)).unwrap(), x);
        assert!(!c.block_on(p.exists(&keys::pack(&p1))).unwrap());
        assert!(!c.block_on(p.exists(&keys::pack(&p2))).unwrap());
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
        let key = keys::pack(&damaged);
        let mut bytes = s.block_on(p.get(&key, u64::MAX)).unwrap().to_vec();
        bytes[pack::HEADER_MAGIC.len() + pack::SALT_LEN + 5] ^= 0x40;
        s.block_on(p.delete(&key)).unwrap();
        s.block_on(p.put_if_absent(&key, Bytes::from(bytes)))
            .unwrap();

        let mut live = LiveSet::default();
        live.insert(&ChunkId::of(&x));
        live.insert(&ChunkId::of(&y));
        live.seal();
        let condemned: HashSet<PackId> = [dup, damaged].into();
        let r = sweep(&s, &[dup, damaged], &condemned, &live, 0.3, |_| {}).unwrap();
        // x is safe in `keeper`: its duplicate pack goes without a copy.
        assert_eq!((r.packs_deleted, r.packs_rewritten, r.new_packs), (1, 0, 0));
        assert_eq!(r.problems.len(), 1, "{r:?}");
        assert!(r.problems[0].contains(&damaged.to_string()), "{r:?}");
        assert!(s.block_on(p.exists(&key)).unwrap(), "damaged pack kept");
        assert!(!s.block_on(p.exists(&keys::pack(&dup))).unwrap());
        assert_eq!(read(&s, ChunkId::of(&x)).unwrap(), x);
        assert_eq!(s.locate(&ChunkId::of(&x)).unwrap().pack, keeper);
    }
}
