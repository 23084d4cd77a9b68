//! rbk-chunkstore: the content-addressed chunk store underneath rbk.
//!
//! Layers, from bytes up:
//! - [`chunker`] splits a byte stream into content-defined chunks (FastCDC v2020);
//! - [`ChunkId`] names a chunk by the BLAKE3-256 hash of its uncompressed bytes, [`PackId`]
//!   a pack by the hash of the pack;
//! - [`compress`] wraps zstd (and elides the CRCs of depot records before it);
//! - [`pack`] knows the byte layout of a pack (many compressed chunks plus a trailer index);
//! - [`provider`] knows objects (get, ranged get, put-if-absent, delete, exists, list) and
//!   nothing about chunks; layers around a provider (retries, limits, counters, faults) forward
//!   whatever they do not change;
//! - [`keys`] names every object of a store;
//! - `index` is the local RocksDB cache of which chunk lives in which pack;
//! - [`ChunkStore`] ties them together; a [`WriteSession`] writes chunks into packs and
//!   commits a manifest, reads come back verified;
//! - [`gc`] is the whole garbage-collection protocol (`docs/gc.md`), given a live set;
//! - [`mirror`] keeps a second provider a complete copy of the store (`docs/mirror.md`).
//!
//! The store (the provider's objects) is the truth. The index is a cache that can be deleted
//! at any time and is rebuilt by reading pack trailers.

pub mod chunker;
pub mod compress;
pub mod error;
mod frames;
pub mod gc;
mod id;
mod index;
pub mod keys;
pub mod mirror;
pub mod pack;
pub mod progress;
pub mod provider;
pub mod safe_fs;
pub mod session;
mod store;

pub use error::{Error, ErrorKind, Result, Status};
pub use id::{ChunkId, PackId};
pub use index::{ChunkLocation, RocksChunkIndex};
pub use progress::{NoProgress, Progress};
pub use store::{
    ChunkStore, Cut, DEFAULT_IMMUTABLE_CHUNK, MIN_APPEND_CHUNK, PendingListing, ReadPlan,
    StoreConfig, StoredManifest, SyncReport, WriteSession, WriteStats,
};
