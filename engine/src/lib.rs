//! rbk-engine: backups of stream-processing module state.
//!
//! The engine knows modules and backups; the chunk store underneath knows only chunks and
//! objects. Modules:
//! - [`layout`]: the on-disk shape of a module's state, scanned and validated;
//! - [`depot`]: depot segment framing (record counting, writing);
//! - [`manifest`]: the binary record of one backup (format in `docs/format.md`);
//! - [`BackupId`]: `<module>-<16 hex ms>-<2 hex>` ids, and the rules for module names;
//! - [`repo`]: a chunk store plus the manifests in it;
//! - [`retention`]: which backups a module's policy lets GC delete;
//! - [`ops`]: one file per user-level operation (backup, restore, list, info, gc);
//! - [`host`]: the module host — runs modules, takes consistent snapshots of running ones;
//! - [`testdata`]: a generator of realistic module state with real RocksDB PStates;
//! - [`Error`]: every failure, with a kind callers branch on (policy in `error.rs`);
//! - `fuzzing` (feature `fuzzing`): the properties the fuzz targets check, shared with the
//!   corpus replay test.

mod backup_id;
pub mod depot;
mod error;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod host;
pub mod layout;
pub mod manifest;
pub mod ops;
pub mod placement;
pub mod repo;
pub mod retention;
pub mod testdata;
mod wire;

pub use backup_id::{BackupId, MAX_MODULE_NAME_LEN, RBK_TEMP_PREFIX, validate_module_name};
pub use error::{Error, ErrorKind, Result};
pub use rbk_chunkstore::progress::{NoProgress, Progress};
pub use repo::Repo;
