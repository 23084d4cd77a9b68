//! `info`: what a backup holds.

use std::collections::HashSet;

use rbk_chunkstore::ChunkId;

use crate::backup_id::BackupId;
use crate::manifest::Manifest;
use crate::{Repo, Result};

#[derive(Debug, Clone)]
pub struct BackupInfo {
    pub manifest: Manifest,
    pub files: u64,
    pub logical_bytes: u64,
    pub unique_chunks: u64,
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
    read(repo, id, true)
}

/// [`info`] from the manifest alone, without the stored bytes (which need the local index):
/// for a read-only view of the store ([`Repo::open_view`]).
///
/// # Errors
/// `BackupNotFound`, `CorruptManifest`, `Uncommitted`, provider errors.
pub fn info_without_index(repo: &Repo, id: &BackupId) -> Result<BackupInfo> {
    read(repo, id, false)
}

fn read(repo: &Repo, id: &BackupId, with_stored: bool) -> Result<BackupInfo> {
    let manifest = repo.load_committed(id)?;
    let files = manifest.files();
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut stored_bytes = 0;
    for (_, f) in &files {
        for c in &f.chunks {
            if seen.insert(*c) && with_stored {
                stored_bytes += repo.store().locate(c)?.stored_len as u64;
            }
        }
    }
    let added_bytes = manifest.stats.new_stored_bytes + manifest.encode().len() as u64;
    Ok(BackupInfo {
        added_bytes,
        files: files.len() as u64,
        logical_bytes: files.iter().map(|(_, f)| f.size).sum(),
        unique_chunks: seen.len() as u64,
        stored_bytes: with_stored.then_some(stored_bytes),
        manifest,
    })
}
