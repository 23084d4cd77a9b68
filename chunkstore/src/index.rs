//! The local chunk index: a RocksDB cache of which chunk lives in which pack.
//!
//! Keys (one column family, distinguished by a one-byte prefix):
//! - `c` + chunk id (32)            → pack id (32) | offset u64 LE | stored len u32 LE | raw len u32 LE
//! - `p` + pack id (32)             → pack size u64 LE
//! - `r` + pack id (32) + chunk id  → empty (reverse map, to forget a pack's chunks)
//!
//! The index is never the authority: it is filled from pack trailers, and a pack that vanished
//! from the store is forgotten on the next sync.

use std::path::{Path, PathBuf};

use rocksdb::{DB, Options, WriteBatch};

use crate::pack::PackEntry;
use crate::{ChunkId, Error, Result};

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

    /// Which of `ids` the index knows, in order.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn contains_many(&self, ids: &[ChunkId]) -> Result<Vec<bool>> {
        let keys: Vec<Vec<u8>> = ids.iter().map(|id| key(b'c', id, None)).collect();
        self.db
            .multi_get(keys)
            .into_iter()
            .map(|r| r.map(|v| v.is_some()).map_err(|e| self.err(e)))
            .collect()
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
            batch.put(key(b'c', &e.id, None), loc.encode());
            batch.put(key(b'r', pack, Some(&e.id)), []);
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
