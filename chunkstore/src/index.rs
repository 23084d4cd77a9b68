//! The local chunk index: a RocksDB cache of which chunks live in which packs.
//!
//! Keys (one column family, distinguished by a one-byte prefix):
//! - `c` + chunk id (32) + pack id (32) → offset u64 LE | stored len u32 LE | raw len u32 LE
//!   (every copy of a chunk: one pack may be deleted while another still holds it)
//! - `r` + pack id (32) + chunk id (32) → the same value (a pack's entries, to forget a pack
//!   and for GC's per-pack accounting)
//! - `p` + pack id (32)                 → pack size u64 LE
//! - `v`                                → schema version u32 LE
//!
//! The index is never the authority: it is filled from pack trailers, and a pack that vanished
//! from the store is forgotten on the next sync. An index of another schema is wiped and
//! rebuilt.

use std::path::{Path, PathBuf};

use rocksdb::{DB, Direction, IteratorMode, Options, WriteBatch};

use crate::pack::PackEntry;
use crate::{ChunkId, Error, PackId, Result};

const SCHEMA_VERSION: u32 = 3;
const SCHEMA_KEY: &[u8] = b"v";

/// Where a chunk is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLocation {
    pub pack: PackId,
    pub offset: u64,
    pub stored_len: u32,
    pub raw_len: u32,
}

fn encode_entry(offset: u64, stored_len: u32, raw_len: u32) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&offset.to_le_bytes());
    v[8..12].copy_from_slice(&stored_len.to_le_bytes());
    v[12..].copy_from_slice(&raw_len.to_le_bytes());
    v
}

fn key(prefix: u8, a: &[u8; 32], b: Option<&[u8; 32]>) -> Vec<u8> {
    let mut k = Vec::with_capacity(65);
    k.push(prefix);
    k.extend_from_slice(a);
    if let Some(b) = b {
        k.extend_from_slice(b);
    }
    k
}

/// Why an index did not open.
enum Opening {
    /// Another process holds RocksDB's LOCK file.
    Busy(String),
    /// RocksDB reports corruption or files of the DB missing.
    Damaged(String),
    Other(String),
}

impl Opening {
    /// RocksDB says so in words only. The lock failure reads "While lock file: …/LOCK:
    /// Resource temporarily unavailable" (another process) or "lock hold by current
    /// process" — matched exactly: a plain "lock" also matches "block checksum mismatch",
    /// which once made a damaged index look busy forever.
    fn classify(e: rocksdb::Error) -> Opening {
        let detail = e.to_string();
        if detail.contains("While lock file") || detail.contains("lock hold by current process") {
            Opening::Busy(detail)
        } else if e.kind() == rocksdb::ErrorKind::Corruption
            || (e.kind() == rocksdb::ErrorKind::IOError && detail.contains("No such file"))
        {
            Opening::Damaged(detail)
        } else {
            Opening::Other(detail)
        }
    }

    fn into_error(self, path: &Path) -> Error {
        match self {
            Opening::Busy(detail) => Error::IndexBusy {
                path: path.into(),
                detail,
            },
            Opening::Damaged(detail) | Opening::Other(detail) => Error::Index {
                path: path.into(),
                detail,
            },
        }
    }
}

#[derive(Debug)]
pub struct RocksChunkIndex {
    db: DB,
    path: PathBuf,
}

impl RocksChunkIndex {
    /// Opens (creating if needed) the index at `path`. An index RocksDB finds damaged is a
    /// lost cache, not an error: it is set aside (`<path>.damaged-<unix seconds>`, for a
    /// post-mortem) and an empty one takes its place, which the store's next sync fills.
    ///
    /// # Errors
    /// `IndexBusy` when another process has it open, `Index` when RocksDB cannot open it
    /// for another reason (permissions, a full disk) or the damaged one cannot be moved.
    pub fn open(path: &Path) -> Result<Self> {
        match Self::open_checked(path) {
            Err(Opening::Damaged(detail)) => {
                let aside = Self::set_aside(path, "damaged")?;
                tracing::warn!(
                    "the local chunk index `{}` is damaged ({detail}); moved it to `{}` and rebuilding it from the store",
                    path.display(),
                    aside.display()
                );
                Self::open_checked(path).map_err(|e| e.into_error(path))
            }
            r => r.map_err(|e| e.into_error(path)),
        }
    }

    /// Moves the (closed) index directory at `path` aside, to `<path>.<why>-<unix
    /// seconds>-<random>`; returns where to.
    ///
    /// # Errors
    /// `Index` when it cannot be renamed.
    pub fn set_aside(path: &Path, why: &str) -> Result<PathBuf> {
        let secs = crate::session::now_ms() / 1000;
        let mut aside = path.as_os_str().to_owned();
        aside.push(format!(".{why}-{secs}-{:04x}", rand::random::<u16>()));
        let aside = PathBuf::from(aside);
        std::fs::rename(path, &aside).map_err(|e| Error::Index {
            path: path.into(),
            detail: format!("could not move it aside ({e}); delete the directory by hand"),
        })?;
        Ok(aside)
    }

    fn open_checked(path: &Path) -> std::result::Result<Self, Opening> {
        let index = Self::open_db(path)?;
        let version = index
            .db
            .get(SCHEMA_KEY)
            .map_err(Opening::classify)?
            .and_then(|v| v.as_slice().try_into().ok().map(u32::from_le_bytes));
        if version == Some(SCHEMA_VERSION) {
            return Ok(index);
        }
        // Empty, or written by another schema: start over (the store is the truth).
        drop(index);
        DB::destroy(&Options::default(), path).map_err(|e| {
            Opening::Other(format!("cannot reset an index of an older schema: {e}"))
        })?;
        let index = Self::open_db(path)?;
        index
            .db
            .put(SCHEMA_KEY, SCHEMA_VERSION.to_le_bytes())
            .map_err(Opening::classify)?;
        Ok(index)
    }

    fn open_db(path: &Path) -> std::result::Result<Self, Opening> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.set_keep_log_file_num(2);
        let db = DB::open(&opts, path).map_err(Opening::classify)?;
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

    /// The `c` or `r` entries under `prefix` (a prefix byte and one id), each as the second
    /// id of its key with the location fields of its value.
    fn entries_under(&self, prefix: &[u8]) -> Result<Vec<PackEntry>> {
        let mut out = Vec::new();
        self.scan(prefix, |k, v| {
            if k.len() != 65 || v.len() != 16 {
                return Err(Error::Index {
                    path: self.path.clone(),
                    detail: format!(
                        "malformed entry ({} key bytes, {} value bytes)",
                        k.len(),
                        v.len()
                    ),
                });
            }
            out.push(PackEntry {
                id: ChunkId::from_slice(&k[33..])?,
                offset: u64::from_le_bytes(v[..8].try_into().expect("8 bytes")),
                stored_len: u32::from_le_bytes(v[8..12].try_into().expect("4 bytes")),
                raw_len: u32::from_le_bytes(v[12..].try_into().expect("4 bytes")),
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with every (key, value) whose key starts with `prefix`, in key order.
    fn scan(&self, prefix: &[u8], mut f: impl FnMut(&[u8], &[u8]) -> Result<()>) -> Result<()> {
        for item in self
            .db
            .iterator(IteratorMode::From(prefix, Direction::Forward))
        {
            let (k, v) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(prefix) {
                break;
            }
            f(&k, &v)?;
        }
        Ok(())
    }

    /// Every pack known to hold `id`, in pack-id order.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn locations(&self, id: &ChunkId) -> Result<Vec<ChunkLocation>> {
        Ok(self
            .entries_under(&key(b'c', &id.0, None))?
            .into_iter()
            .map(|e| ChunkLocation {
                pack: PackId(e.id.0),
                offset: e.offset,
                stored_len: e.stored_len,
                raw_len: e.raw_len,
            })
            .collect())
    }

    /// One pack holding `id`, if any.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn get(&self, id: &ChunkId) -> Result<Option<ChunkLocation>> {
        Ok(self.locations(id)?.into_iter().next())
    }

    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn has_pack(&self, pack: &PackId) -> Result<bool> {
        Ok(self
            .db
            .get_pinned(key(b'p', &pack.0, None))
            .map_err(|e| self.err(e))?
            .is_some())
    }

    /// The size of `pack`, when the index knows it.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn pack_size(&self, pack: &PackId) -> Result<Option<u64>> {
        match self
            .db
            .get_pinned(key(b'p', &pack.0, None))
            .map_err(|e| self.err(e))?
        {
            Some(v) => Ok(Some(self.decode_size(&v)?)),
            None => Ok(None),
        }
    }

    fn decode_size(&self, v: &[u8]) -> Result<u64> {
        v.try_into()
            .map(u64::from_le_bytes)
            .map_err(|_| Error::Index {
                path: self.path.clone(),
                detail: "pack entry is not 8 bytes".into(),
            })
    }

    /// Records a pack and all its chunks in one atomic write.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn add_pack(&self, pack: &PackId, size: u64, entries: &[PackEntry]) -> Result<()> {
        let mut batch = WriteBatch::default();
        for e in entries {
            let v = encode_entry(e.offset, e.stored_len, e.raw_len);
            batch.put(key(b'c', &e.id.0, Some(&pack.0)), v);
            batch.put(key(b'r', &pack.0, Some(&e.id.0)), v);
        }
        batch.put(key(b'p', &pack.0, None), size.to_le_bytes());
        self.db.write(batch).map_err(|e| self.err(e))
    }

    /// Forgets a pack and its chunk entries (other copies of the chunks stay).
    ///
    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn remove_pack(&self, pack: &PackId) -> Result<()> {
        let mut batch = WriteBatch::default();
        self.scan(&key(b'r', &pack.0, None), |k, _| {
            let chunk = ChunkId::from_slice(&k[33..])?;
            batch.delete(key(b'c', &chunk.0, Some(&pack.0)));
            batch.delete(k);
            Ok(())
        })?;
        batch.delete(key(b'p', &pack.0, None));
        self.db.write(batch).map_err(|e| self.err(e))
    }

    /// The entries of `pack` in chunk-id order (empty for a pack the index does not know).
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn pack_entries(&self, pack: &PackId) -> Result<Vec<PackEntry>> {
        self.entries_under(&key(b'r', &pack.0, None))
    }

    /// When the index last listed every pack of the store, by the store's clock (ms), and
    /// when the store wrote its `config` then (a store recreated since has a newer one).
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed value.
    pub fn last_full_sync(&self) -> Result<Option<(u64, u64)>> {
        match self.db.get(b"f").map_err(|e| self.err(e))? {
            Some(v) if v.len() == 16 => Ok(Some((
                self.decode_size(&v[..8])?,
                self.decode_size(&v[8..])?,
            ))),
            Some(_) => Err(Error::Index {
                path: self.path.clone(),
                detail: "last full sync entry is not 16 bytes".into(),
            }),
            None => Ok(None),
        }
    }

    /// Records when the index last listed every pack and the store's `config` write time
    /// then (`None`: forget it, so the next session lists every pack).
    ///
    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn set_last_full_sync(&self, at: Option<(u64, u64)>) -> Result<()> {
        match at {
            Some((ms, config_ms)) => {
                let mut v = ms.to_le_bytes().to_vec();
                v.extend_from_slice(&config_ms.to_le_bytes());
                self.db.put(b"f", v)
            }
            None => self.db.delete(b"f"),
        }
        .map_err(|e| self.err(e))
    }

    /// Forgets every pack and chunk, and when it last listed every pack (the schema marker
    /// stays).
    ///
    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn clear(&self) -> Result<()> {
        let mut batch = WriteBatch::default();
        batch.delete(b"f");
        for prefix in [b'c', b'p', b'r'] {
            batch.delete_range(&[prefix][..], &[prefix + 1][..]);
        }
        self.db.write(batch).map_err(|e| self.err(e))
    }

    /// Whether the index knows at least `n` packs (reads at most `n` entries).
    ///
    /// # Errors
    /// `Index` on a RocksDB failure.
    pub fn knows_at_least(&self, n: u64) -> Result<bool> {
        if n == 0 {
            return Ok(true);
        }
        let mut seen = 0u64;
        for item in self
            .db
            .iterator(IteratorMode::From(b"p", Direction::Forward))
        {
            let (k, _) = item.map_err(|e| self.err(e))?;
            if !k.starts_with(b"p") {
                break;
            }
            seen += 1;
            if seen >= n {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// All packs the index knows, with their sizes.
    ///
    /// # Errors
    /// `Index` on a RocksDB failure or a malformed entry.
    pub fn packs(&self) -> Result<Vec<(PackId, u64)>> {
        let mut out = Vec::new();
        self.scan(b"p", |k, v| {
            out.push((PackId::from_slice(&k[1..])?, self.decode_size(v)?));
            Ok(())
        })?;
        Ok(out)
    }
}
