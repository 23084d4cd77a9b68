//! The local chunk index: a RocksDB cache of which chunk lives in which pack.
//!
//! Keys (one column family, distinguished by a one-byte prefix):
//! - `c` + chunk id (32)            → pack id (32) | offset u64 LE | stored len u32 LE | raw len u32 LE
//! - `p` + pack id (32)             → pack size u64 LE
//! - `r` + pack id (32) + chunk id  → offset u64 LE | stored len u32 LE | raw len u32 LE
//!   (reverse map: a pack's entries, to forget a pack and for GC's per-pack accounting)
//! - `v`                            → schema version u32 LE
//!
//! An index written by an older schema is wiped and rebuilt: it is only a cache.
//! The index is never the authority: it is filled from pack trailers, and a pack that vanished
//! from the store is forgotten on the next sync.

use std::path::{Path, PathBuf};

use rocksdb::{DB, Options, WriteBatch};

use crate::pack::PackEntry;
use crate::{ChunkId, Error, Result};

const SCHEMA_VERSION: u32 = 2;
const SCHEMA_KEY: &[u8] = b"v";

/// Where a chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    pub pack: ChunkId,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
}

impl ChunkLocation {
    fn encode(&self) -> [u8; 48] {
        let mut v = [0u8; 48];
        v[..32].copy_from_slice(&self.pack.0);
        v[32..40].copy_from_slice(&self.offset.to_le_bytes());
        v[40..44].copy_from_slice(&self.stored_len.to_le_bytes());
        v[44..48].copy_from_slice(&self.raw_len.to_le_bytes());
        v
    }

    fn decode(path: &Path, v: &[u8]) -> Result<Self> {
        if v.len() != 48 {
            return Err(Error::Index {
                path: path.into(),
                detail: format!("chunk entry of {} bytes, expected 48", v.len()),
            });
        }
        Ok(ChunkLocation {
            pack: ChunkId::from_slice(&v[..32])?,
            offset: u64::from_le_bytes(v[32..40].try_into().expect("8 bytes")),
            stored_len: u32::from_le_bytes(v[40..44].try_into().expect("4 bytes")),
            raw_len: u32::from_le_bytes(v[44..48].try_into().expect("4 bytes")),
        })
    }
}

fn key(prefix: u8, a: &ChunkId, b: Option<&ChunkId>) -> Vec<u8> {
    let mut k = Vec::with_capacity(65);
    k.push(prefix);
    k.extend_from_slice(&a.0);
    if let Some(b) = b {
        k.extend_from_slice(&b.0);
    }
    k
}

#[derive(Debug)]
pub struct RocksChunkIndex {
    db: DB,
    path: PathBuf,
}

impl RocksChunkIndex {
    /// Opens (creating if needed) the index at `path`.
    ///
    /// # Errors
    /// `Index` when RocksDB cannot open it (e.g. another rbk process holds its lock).
    pub fn open(path: &Path) -> Result<Self> {
        let index = Self::open_db(path)?;
        let version = index
            .db
            .get(SCHEMA_KEY)
            .map_err(|e| index.err(e))?
            .and_then(|v| v.as_slice().try_into().ok().map(u32::from_le_bytes));
        if version == Some(SCHEMA_VERSION) {
            return Ok(index);
        }
        // Empty, or written by another schema: start over (the store is the truth).
        drop(index);
        DB::destroy(&Options::default(), path).map_err(|e| Error::Index {
            path: path.into(),
            detail: format!("cannot reset an index of an older schema: {e}"),
        })?;
        let index = Self::open_db(path)?;
        index
            .db
            .put(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes())
            .map_err(|e| index.err(e))?;
        Ok(index)
    }

    fn open_db(path: &Path) -> Result<Self> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(2);
        let db = DB::open(&opts, path).map_err(|e| {
            let msg = e.to_string();
            let detail = if msg.contains("lock") {
                format!("{msg}; another rbk process is using this index, wait for it to finish")
            } else {
                msg
            };
            Error::Index {
                path: path.into(),
                detail,
            }
        })?;
        Ok(RocksChunkIndex {
            db,
            path: path.into(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rocksdb::Error) -> Error {
        Error::Index {
            path: self.path.clone(),
            detail: e.to_string(),
        }
    }

    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn get(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        match self
            .db
            .get_pinned(key(b'c', id, None))
            .map_err(|e| self.err(e))?
        {
            Some(v) => Ok(Some(ChunkLocation::decode(&self.path, &v)?)),
            None => Ok(None),
        }
    }

    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn has_pack(&self, pack: &ChunkId) -> Result<bool> {
        Ok(self
            .db
            .get_pinned(key(b'p', pack, None))
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// The size of `pack`, when the index knows it.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn pack_size(&self, pack: &ChunkId) -> Result<Option<u64>> {
        match self
            .db
            .get_pinned(key(b'p', pack, None))
            .map_err(|e| self.err(e))?
        {
            Some(v) => Ok(Some(
                v.as_ref()
                    .try_into()
                    .map(u64::from_le_bytes)
                    .map_err(|_| Error::Index {
                        path: self.path.clone(),
                        detail: "pack entry is not 8 bytes".into(),
                    })?,
            )),
            None => Ok(None),
        }
    }

    /// Where each of `ids` is, in order.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn get_many(&self, ids: &[ChunkId]) -> Result<Vec<Option<ChunkLocation>>> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| key(b'c', id, None)).collect();
        self.db
            .multi_get(keys)
            .into_iter()
            .map(|r| match r.map_err(|e| self.err(e))? {
                Some(v) => Ok(Some(ChunkLocation::decode(&self.path, &v)?)),
                None => Ok(None),
            })
            .collect()
    }

    /// Records a pack and all its chunks in one atomic write.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn add_pack(&self, pack: &ChunkId, size: u64, entries: &[PackEntry]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for e in entries {
            let loc = ChunkLocation {
                pack: *pack,
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            };
            let encoded = loc.encode();
            batch.put(key(b'c', &e.id, None), encoded);
            batch.put(key(b'r', pack, Some(&e.id)), &encoded[32..]);
        }
        batch.put(key(b'p', pack, None), size.to_le_bytes());
        self.db.write(batch).map_err(|e| self.err(e))
    }

    /// Forgets a pack and every chunk entry that points into it.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn remove_pack(&self, pack: &ChunkId) -> Result<()> {
        let mut batch = WriteBatch::default();
        let prefix = key(b'r', pack, None);
        for item in self.db.prefix_iterator(&prefix) {
            let (k, _) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let chunk = ChunkId::from_slice(&k[33..])?;
            if self.get(&chunk)?.is_some_and(|loc| loc.pack == *pack) {
                batch.delete(key(b'c', &chunk, None));
            }
            batch.delete(&k);
        }
        batch.delete(key(b'p', pack, None));
        self.db.write(batch).map_err(|e| self.err(e))
    }

    /// The entries of `pack` in chunk-id order (empty for a pack the index does not know).
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn pack_entries(&self, pack: &ChunkId) -> Result<Vec<PackEntry>> {
        let prefix = key(b'r', pack, None);
        let mut out = Vec::new();
        for item in self.db.prefix_iterator(&prefix) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(&prefix) {
                break;
            }
            let mut full = [0u8; 48];
            full[..32].copy_from_slice(&pack.0);
            if v.len() != 16 {
                return Err(Error::Index {
                    path: self.path.clone(),
                    detail: format!("pack entry of {} bytes, expected 16", v.len()),
                });
            }
            full[32..].copy_from_slice(&v);
            let loc = ChunkLocation::decode(&self.path, &full)?;
            out.push(PackEntry {
                id: ChunkId::from_slice(&k[33..])?,
                offset: loc.offset,
                stored_len: loc.stored_len,
                raw_len: loc.raw_len,
            });
        }
        Ok(out)
    }

    /// All packs the index knows, with their sizes.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn packs(&self) -> Result<Vec<(ChunkId, u64)>> {
        let mut out = Vec::new();
        for item in self.db.prefix_iterator([b'p']) {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if k.first() != Some(&b'p') {
                break;
            }
            let size = v
                .as_ref()
                .try_into()
                .map(u64::from_le_bytes)
                .map_err(|_| Error::Index {
                    path: self.path.clone(),
                    detail: "pack entry is not 8 bytes".into(),
                })?;
            out.push((ChunkId::from_slice(&k[1..])?, size));
        }
        Ok(out)
    }
}
