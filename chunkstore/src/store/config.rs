//! The store's `config` object: format version, identity and the parameters every writer of
//! the store must share (chunker, compression level, pack size).

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerParams;
use crate::{Error, Result, compress};

/// Version 2 added transformed chunks (docs/format.md); version 1 stores are read and written
/// as before (their chunks are never transformed, so an older rbk can still read them).
pub(crate) const FORMAT_VERSION: u32 = 2;

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
}

impl StoreConfig {
    pub fn new_random() -> Self {
        StoreConfig {
            version: FORMAT_VERSION,
            store_id: format!("{:032x}", rand::random::<u128>()),
            chunker: ChunkerParams::default(),
            zstd_level: compress::DEFAULT_LEVEL,
            pack_target_size: 8 << 20,
        }
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
        if !(1 << 20..=1 << 30).contains(&c.pack_target_size) {
            return Err(Error::corrupt(
                "store config object `config`",
                "pack_target_size must be 1 MiB ..= 1 GiB",
            ));
        }
        Ok(c)
    }
}
