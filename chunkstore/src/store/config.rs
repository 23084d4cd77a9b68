//! The store's `config` object: format version, identity and the parameters every writer of
//! the store must share (chunker, compression level, pack size).

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::{Error, Result, compress};

/// Version 2 added transformed chunks, version 3 chunks of immutable files cut at fixed
/// offsets of up to 16 MiB, version 4 swept GC records kept for a while, so that a backup
/// learns of deleted packs without listing every pack, version 5 manifests that keep each
/// task in a task object of its own (docs/format.md, docs/gc.md). Older stores are read and
/// written as before (version 1: chunks never transformed; 1 and 2: every chunk at most the
/// chunker's maximum; 1 to 3: records deleted once swept, and every session lists every pack;
/// 1 to 4: tasks inline in the manifest), so the rbk that created them can still use them.
pub(crate) const FORMAT_VERSION: u32 = 5;

/// [`StoreConfig::immutable_chunk_size`] of a new store.
pub const DEFAULT_IMMUTABLE_CHUNK: u32 = 8 << 20;

/// The largest [`StoreConfig::immutable_chunk_size`] a store may have.
pub const MAX_IMMUTABLE_CHUNK: u32 = 16 << 20;

/// The smallest [`StoreConfig::append_chunk_size`] a store may have: below it, per-chunk
/// costs (index entries, zstd frames, requests on restore) outweigh the shorter tails.
pub const MIN_APPEND_CHUNK: u32 = 64 << 10;

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
    /// Version 3: files that are never changed once written (RocksDB SSTs) are cut into
    /// chunks of exactly this size (the last one shorter) instead of content-defined ones.
    /// 0 in older stores, which cut every file the same way.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub immutable_chunk_size: u32,
    /// Files that only ever grow at their end (depot segments, RocksDB WALs) are cut into
    /// chunks of exactly this size (the last one shorter): a file that is only appended to
    /// gains nothing from content-defined boundaries, which cost a rolling hash over every
    /// byte. 0 (absent) in stores made before it, which cut them content-defined; an rbk
    /// that predates the field does the same, which costs deduplication, never correctness.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub append_chunk_size: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl StoreConfig {
    pub fn new_random() -> Self {
        StoreConfig {
            version: FORMAT_VERSION,
            store_id: format!("{:032x}", rand::random::<u128>()),
            chunker: ChunkerParams::default(),
            zstd_level: compress::DEFAULT_LEVEL,
            pack_target_size: 8 << 20,
            // An SST never deduplicates below the whole file (compaction writes new files),
            // so its chunks can be large: the compressor then sees repeats megabytes apart.
            immutable_chunk_size: DEFAULT_IMMUTABLE_CHUNK,
            // The chunker's average: as many chunks as before, and the tail a backup reads
            // again of a grown file is as short.
            append_chunk_size: ChunkerParams::default().avg_size,
        }
    }

    /// Whether GCs keep swept records ([`crate::gc::swept_keep`]), so that a backup session
    /// whose index was fully synced recently learns of deleted packs from them alone
    /// (version 4).
    pub fn keeps_swept_records(&self) -> bool {
        self.version >= 4
    }

    /// Whether backups keep each task in a task object of its own, which the manifest
    /// references (version 5). An rbk that does not know them must not read or collect the
    /// store: its GC would not see the chunks the task objects reference.
    pub fn stores_task_objects(&self) -> bool {
        self.version >= 5
    }

    /// The longest chunk this store may hold: what readers bound allocations by.
    pub fn max_chunk_len(&self) -> u32 {
        self.chunker.max_size.max(self.immutable_chunk_size)
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
        let immutable_ok = if c.version >= 3 {
            (1 << 20..=MAX_IMMUTABLE_CHUNK).contains(&c.immutable_chunk_size)
        } else {
            c.immutable_chunk_size == 0
        };
        if !immutable_ok {
            return Err(Error::corrupt(
                "store config object `config`",
                format!(
                    "immutable_chunk_size {} is not valid for format version {} (version 3: \
                     1 MiB ..= 16 MiB; older: absent)",
                    c.immutable_chunk_size, c.version
                ),
            ));
        }
        if c.append_chunk_size != 0
            && !(MIN_APPEND_CHUNK..=c.chunker.max_size).contains(&c.append_chunk_size)
        {
            return Err(Error::corrupt(
                "store config object `config`",
                format!(
                    "append_chunk_size {} must be absent or {} KiB ..= the chunker's max_size ({})",
                    c.append_chunk_size,
                    MIN_APPEND_CHUNK >> 10,
                    c.chunker.max_size
                ),
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
