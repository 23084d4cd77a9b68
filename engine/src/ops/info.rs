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
    /// backups where deduplicated).
    pub stored_bytes: u64,
    /// What the backup added to the store when it was taken: its new chunks, compressed, and
    /// its manifest.
    pub added_bytes: u64,
}

/// # Errors
/// `BackupNotFound`, `CorruptManifest`, store errors (`NotFound` for a chunk no pack holds).
pub fn info(repo: &Repo, id: &BackupId) -> Result<BackupInfo> {
    let manifest = repo.load_committed(id)?;
    let files = manifest.files();
    let mut seen: HashSet<ChunkId> = HashSet::new();
    let mut stored_bytes = 0;
    for (_, f) in &files {
        for c in &f.chunks {
            if seen.insert(*c) {
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
        stored_bytes,
        manifest,
    })
}
