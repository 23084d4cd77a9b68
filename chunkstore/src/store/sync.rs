//! Keeping the local index in line with the store: the store's packs are the truth, the
//! index is a cache filled from their trailers.

use std::collections::HashSet;

use super::{ChunkStore, lock};
use crate::index::ChunkLocation;
use crate::pack::{self, FOOTER_LEN, PackEntry};
use crate::provider::{self, ObjectMeta, limits};
use crate::{ChunkId, Error, Result, keys};

/// What [`ChunkStore::sync_index`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// Packs in the store and in the index afterwards.
    pub packs: usize,
    pub added: usize,
    pub removed: usize,
    /// Packs whose trailer could not be read, with why; left out of the index.
    pub damaged: Vec<(String, String)>,
}

impl ChunkStore {
    /// Brings the index in line with the packs in the store: reads the trailer of every pack
    /// the index does not know and forgets packs that are gone. A pack whose trailer is
    /// damaged is left out (its chunks count as absent, so backups store them again) and
    /// reported, rather than failing every operation that syncs.
    ///
    /// # Errors
    /// Provider and index errors.
    pub fn sync_index(&self) -> Result<SyncReport> {
        let index = self.index()?;
        let listed = self.block_on(provider::list_all(self.provider.as_ref(), keys::PACKS))?;
        let mut present = HashSet::new();
        let mut report = SyncReport::default();
        for ObjectMeta { key, size, .. } in listed {
            let Some(pack) = keys::parse_pack(&key) else {
                continue; // not a pack rbk wrote; ignore
            };
            if !index.has_pack(&pack)? {
                let entries = match self.read_pack_index(&key, size) {
                    Ok(e) => e,
                    // Swept by a GC since the listing: as if it had not been listed.
                    Err(e) if e.kind() == crate::ErrorKind::NotFound => continue,
                    Err(e) if e.kind() == crate::ErrorKind::Corrupt => {
                        tracing::warn!("{e}");
                        report.damaged.push((key, e.to_string()));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                index.add_pack(&pack, size, &entries)?;
                report.added += 1;
            }
            present.insert(pack);
        }
        for (pack, _) in index.packs()? {
            if !present.contains(&pack) {
                index.remove_pack(&pack)?;
                report.removed += 1;
            }
        }
        report.packs = present.len();
        lock(&self.damaged).clone_from(&report.damaged);
        Ok(report)
    }

    /// Packs the last index sync found damaged (key, why).
    pub fn damaged_packs(&self) -> Vec<(String, String)> {
        lock(&self.damaged).clone()
    }

    /// Why no indexed pack holds a chunk: some pack could not be read (the chunk is
    /// probably in it), or none holds it.
    pub fn missing_chunk_detail(&self) -> (bool, String) {
        let damaged = lock(&self.damaged);
        match damaged.first() {
            Some((key, why)) => (
                true,
                format!(
                    "no readable pack holds it; {} pack(s) are damaged, e.g. {key}: {why}",
                    damaged.len()
                ),
            ),
            None => (false, "no pack in the store holds it".into()),
        }
    }

    /// The error for a chunk no indexed pack holds: corruption when a pack could not be
    /// read, else not found.
    pub fn missing_chunk_error(&self, id: &ChunkId) -> Error {
        match self.missing_chunk_detail() {
            (true, detail) => Error::corrupt(format!("chunk {id}"), detail),
            (false, detail) => Error::NotFound {
                key: format!("chunk {id} ({detail})"),
            },
        }
    }

    /// Forgets everything the index knows and rebuilds it from the store's pack trailers.
    ///
    /// # Errors
    /// Provider and index errors.
    pub fn rebuild_index(&self) -> Result<SyncReport> {
        self.index()?.clear()?;
        self.sync_index()
    }

    fn read_pack_index(&self, key: &str, size: u64) -> Result<Vec<PackEntry>> {
        // The trailer's length comes from the object: bound it by what this store's packs
        // can be, or a planted object could make rbk read gigabytes of "index".
        let max_len = limits::pack(
            self.config.pack_target_size,
            u64::from(self.config.max_chunk_len()),
        );
        if size > max_len {
            return Err(Error::too_large(key, size, max_len));
        }
        if size < FOOTER_LEN as u64 {
            return pack::parse_footer(key, &[], size).map(|_| Vec::new());
        }
        self.block_on(async {
            let footer = self
                .provider
                .get_range(key, size - FOOTER_LEN as u64, FOOTER_LEN as u64)
                .await?;
            let (start, len) = pack::parse_footer(key, &footer, size)?;
            let index = self.provider.get_range(key, start, len).await?;
            pack::parse_index(key, &footer, &index, start)
        })
    }

    /// Where a chunk is, syncing the index from the store once if it does not know.
    ///
    /// # Errors
    /// `NotFound` when no pack in the store holds the chunk.
    pub fn locate(&self, id: &ChunkId) -> Result<ChunkLocation> {
        let index = self.index()?;
        if let Some(loc) = index.get(id)? {
            return Ok(loc);
        }
        self.sync_index()?;
        index.get(id)?.ok_or_else(|| self.missing_chunk_error(id))
    }
}
