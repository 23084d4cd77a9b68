//! `info`: what a backup holds.

use std::collections::HashSet;

use rbk_chunkstore::ChunkId;

use crate::backup_id::BackupId;
use crate::manifest::{BackupStats, ManifestObject};
use crate::{Repo, Result};

#[derive(Debug, Clone)]
pub struct BackupInfo {
    /// The manifest: its tasks in brief ([`ManifestObject::summaries`]).
    pub manifest: ManifestObject,
    pub files: u64,
    pub logical_bytes: u64,
    /// Distinct chunks (task objects' included); `None` from [`info_without_index`] when
    /// the tasks are in task objects, which need the local index to read.
    pub unique_chunks: Option<u64>,
    /// Compressed bytes of the distinct chunks the backup references (shared with other
    /// backups where deduplicated); `None` from [`info_without_index`].
    pub stored_bytes: Option<u64>,
    /// What the backup added to the store when it was taken: its new chunks, compressed, and
    /// its manifest.
    pub added_bytes: u64,
}

/// # Errors
/// `BackupNotFound`, `CorruptManifest`, store errors (`NotFound` for a chunk no pack holds).
pub fn info(repo: &Repo, id: &BackupId) -> Result<BackupInfo> {
    let manifest = repo.load_committed(id)?;
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut stored_bytes = 0;
    for c in manifest.chunk_ids() {
        if seen.insert(*c) {
            stored_bytes += repo.store().locate(c)?.stored_len as u64;
        }
    }
    let files = manifest.files();
    Ok(BackupInfo {
        added_bytes: added_bytes(&manifest.encode(), &manifest.stats),
        files: files.len() as u64,
        logical_bytes: files.iter().map(|(_, f)| f.size).sum(),
        unique_chunks: Some(seen.len() as u64),
        stored_bytes: Some(stored_bytes),
        manifest: ManifestObject::of(&manifest),
    })
}

/// [`info`] from the manifest alone, without what needs the local index: for a read-only
/// view of the store ([`Repo::open_view`]).
///
/// # Errors
/// `BackupNotFound`, `CorruptManifest`, `Uncommitted`, provider errors.
pub fn info_without_index(repo: &Repo, id: &BackupId) -> Result<BackupInfo> {
    let object = repo.load_committed_object(id)?;
    let (files, logical_bytes) = object.totals();
    let unique_chunks = object.clone().into_inline().map(|m| {
        let distinct: HashSet<&ChunkId> = m.chunk_ids().collect();
        distinct.len() as u64
    });
    Ok(BackupInfo {
        added_bytes: added_bytes(&object.encode(), object.stats()),
        files,
        logical_bytes,
        unique_chunks,
        stored_bytes: None,
        manifest: object,
    })
}

/// New chunks, compressed, and the manifest.
fn added_bytes(manifest: &[u8], stats: &BackupStats) -> u64 {
    stats.new_stored_bytes + manifest.len() as u64
}
