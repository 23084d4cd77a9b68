//! rbk-chunkstore: the content-addressed chunk store underneath rbk.
//!
//! Layers, from bytes up:
//! - [`chunker`] splits a byte stream into content-defined chunks (FastCDC v2020);
//! - [`id`] names a chunk by the BLAKE3-256 hash of its uncompressed bytes;
//! - [`compress`] wraps zstd; [`frames`] elides the CRCs of depot records before it;
//! - [`pack`] knows the byte layout of a pack (many compressed chunks plus a trailer index);
//! - [`provider`] knows objects (get, ranged get, put-if-absent, delete, exists, list) and
//!   nothing about chunks: local directory and in-memory implementations;
//! - [`index`] is the local RocksDB cache of which chunk lives in which pack;
//! - [`store`] ties them together: write chunks into packs, read chunks back verified;
//! - [`session`] and [`gc`] let backups and garbage collection on different machines share a
//!   store safely (protocol in `docs/gc.md`).
//!
//! The store (the provider's objects) is the truth. The index is a cache that can be deleted
//! at any time and is rebuilt by reading pack trailers.

pub mod chunker;
pub mod compress;
pub mod error;
pub mod frames;
pub mod gc;
pub mod id;
pub mod index;
pub mod pack;
pub mod provider;
pub mod read;
pub mod safe_fs;
pub mod session;
pub mod store;

pub use error::{Error, ErrorKind, Result};
pub use id::ChunkId;
pub use read::ReadPlan;
pub use store::{ChunkStore, StoreConfig};
