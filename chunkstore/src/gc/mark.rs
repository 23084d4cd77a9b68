//! Mark: which chunks are live, and what that makes of each pack.
//!
//! Which chunks are live is decided above the store (from manifests): [`super::collect`] gets
//! a [`LiveSet`] from its caller and only counts, per pack, the bytes of chunks in it.

use crate::pack::PackEntry;
use crate::{ChunkId, PackId};

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
    pub pack: PackId,
    /// Object size.
    pub size: u64,
    pub chunks: usize,
    pub live_chunks: usize,
    /// Compressed bytes of all chunks / of live chunks (headers and trailer excluded).
    pub stored_bytes: u64,
    pub live_bytes: u64,
}

impl PackUsage {
    pub fn of(pack: PackId, size: u64, entries: &[PackEntry], live: &LiveSet) -> Self {
        Self::with(pack, size, entries, |e| live.contains(&e.id))
    }

    /// Usage where `needed_here` says which entries count as live in this pack.
    pub fn with(
        pack: PackId,
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let u = PackUsage::of(PackId::of(b"pack"), 500, &entries, &live);
        assert_eq!((u.live_chunks, u.live_bytes, u.stored_bytes), (1, 100, 400));
        assert!((u.dead_fraction() - 0.75).abs() < 1e-9);
        assert!(u.is_garbage(0.5) && !u.is_garbage(0.8) && !u.is_dead());
        let none = LiveSet {
            sorted: true,
            ..Default::default()
        };
        assert!(PackUsage::of(PackId::of(b"pack"), 500, &entries, &none).is_dead());
    }
}
