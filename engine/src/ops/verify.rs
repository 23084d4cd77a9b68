//! `verify`: check that backups can be restored, without restoring them.
//!
//! Every backup's manifest is loaded (checksum, structure) and every chunk it references is
//! looked up in the packs the store holds now (the index is synced from the store's listing
//! first, so a pack deleted behind rbk's back is noticed). With `read_data`, chunks are also
//! downloaded and checked against their BLAKE3 ids — all of them, or a random sample of a
//! given share of the distinct chunks. Each problem names the backup, task, object and file it
//! breaks; a chunk shared by several files is reported for each.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rbk_chunkstore::ChunkId;
use rbk_chunkstore::SyncReport;

use crate::backup_id::BackupId;
use crate::{Error, Progress, Repo, Result};

/// How much chunk data to download and re-hash.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum ReadData {
    /// Only check that every chunk is in a pack the store holds.
    #[default]
    None,
    All,
    /// This percentage (0–100) of the distinct chunks, chosen at random.
    Subset(f64),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub backup_id: BackupId,
    /// `None` for the manifest itself and files directly in the module dir.
    pub task: Option<u32>,
    /// `manifest`, `module`, `depot transfers`, `pstate balances`, `topology banking`.
    pub object: String,
    /// Path relative to the object dir (empty for the manifest).
    pub file: String,
    pub chunk: Option<ChunkId>,
    pub detail: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.backup_id)?;
        if let Some(t) = self.task {
            write!(f, " task {t}")?;
        }
        write!(f, " {}", self.object)?;
        if !self.file.is_empty() {
            write!(f, " file {}", self.file)?;
        }
        if let Some(c) = &self.chunk {
            write!(f, " chunk {c}")?;
        }
        write!(f, ": {}", self.detail)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct VerifyReport {
    pub backups: u64,
    pub files: u64,
    /// Distinct chunks referenced.
    pub chunks: u64,
    /// Distinct chunks downloaded and re-hashed: those `ReadData` selects, and every piece
    /// of a task object (reading the manifest reads them).
    pub chunks_read: u64,
    pub bytes_read: u64,
    pub problems: Vec<Problem>,
    pub seconds: f64,
}

impl VerifyReport {
    pub fn damaged_backups(&self) -> Vec<&BackupId> {
        let mut ids: Vec<&BackupId> = self.problems.iter().map(|p| &p.backup_id).collect();
        ids.dedup();
        ids
    }
}

/// Splits a manifest path into (task, object, file within the object).
fn locate_file(rel: &str) -> (Option<u32>, String, String) {
    let parts: Vec<&str> = rel.splitn(5, '/').collect();
    match parts.as_slice() {
        ["tasks", task, kind, name, file] => {
            let kind = match *kind {
                "depots" => "depot",
                "pstates" => "pstate",
                "topologies" => "topology",
                other => other,
            };
            (
                task.parse().ok(),
                format!("{kind} {name}"),
                file.to_string(),
            )
        }
        _ => (None, "module".into(), rel.to_string()),
    }
}

/// Verifies `ids` (all backups in the store when empty).
///
/// # Errors
/// Provider and index errors that stop the whole check (a damaged manifest or chunk is a
/// [`Problem`], not an error).
pub fn verify(
    repo: &Repo,
    ids: &[BackupId],
    read: ReadData,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let store = repo.store();
    let ids = if ids.is_empty() {
        repo.all_backup_ids()?
    } else {
        ids.to_vec()
    };
    // Like a restore, hold GC back from what is being read; a read-only store still works.
    let session = store.begin_session("verify", "").ok();
    if session.is_none() {
        store.sync_index()?;
    }
    let result = verify_in_session(repo, &ids, read, progress);
    if let Some(s) = session {
        let _ = s.end();
    }
    let mut report = result?;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

fn verify_in_session(
    repo: &Repo,
    ids: &[BackupId],
    read: ReadData,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let store = repo.store();
    let mut report = VerifyReport::default();
    // Distinct chunk → what checking it found (`None`: fine).
    let mut seen: HashMap<ChunkId, Option<String>> = HashMap::new();
    let seed: u64 = rand::random();
    let sampled = |id: &ChunkId| match read {
        ReadData::None => false,
        ReadData::All => true,
        ReadData::Subset(pct) => {
            let x = u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes")) ^ seed;
            (x % 1_000_000) as f64 / 10_000.0 < pct
        }
    };
    // Which manifests were never committed, found once for the whole store rather than
    // with two listings per backup.
    let uncommitted: std::collections::HashSet<BackupId> =
        repo.uncommitted_backups()?.into_iter().collect();
    progress.begin_items("verify", ids.len() as u64);
    for id in ids {
        report.backups += 1;
        let problem = |task: Option<u32>, object: &str, detail: String| Problem {
            backup_id: id.clone(),
            task,
            object: object.into(),
            file: String::new(),
            chunk: None,
            detail,
        };
        let loaded = if uncommitted.contains(id) {
            repo.load_committed_object(id)
        } else {
            repo.load_object(id)
        };
        let key = crate::repo::manifest_key(id);
        // A task object that cannot be read is reported with its task; the backup's other
        // tasks and module files are checked as usual.
        let loaded = loaded.and_then(|mut object| {
            let read = repo.read_tasks_leniently(&key, &mut object)?;
            for (task, detail) in read.broken {
                report
                    .problems
                    .push(problem(Some(task), "task object", detail));
            }
            object.resolve_read(&key, read.tasks)
        });
        let manifest = match loaded {
            Ok(m) => m,
            Err(
                e @ (Error::CorruptManifest { .. }
                | Error::Uncommitted { .. }
                | Error::BackupNotFound { .. }),
            ) => {
                report
                    .problems
                    .push(problem(None, "manifest", e.to_string()));
                progress.advance(1);
                continue;
            }
            Err(e) => return Err(e),
        };
        // Loading read every piece of the task objects and checked it, whatever `read`.
        for r in &manifest.task_refs {
            for c in &r.pieces {
                if seen.insert(*c, None).is_none() {
                    report.chunks_read += 1;
                }
            }
        }
        for (rel, f) in manifest.files() {
            report.files += 1;
            // New chunks of this file: existence first, then (sampled) content.
            let mut to_read = Vec::new();
            // The file's length from its chunks, as a restore computes it (None: a chunk
            // is missing, reported below).
            let mut chunk_bytes = Some(0u64);
            for c in &f.chunks {
                let raw_len = store
                    .chunk_locations(c)?
                    .first()
                    .map(|l| u64::from(l.raw_len));
                chunk_bytes = chunk_bytes.zip(raw_len).and_then(|(a, b)| a.checked_add(b));
                if seen.contains_key(c) {
                    continue;
                }
                let missing = raw_len.is_none();
                let verdict =
                    missing.then(|| format!("missing: {}", store.missing_chunk_detail().1));
                if !missing && sampled(c) {
                    to_read.push(*c);
                }
                seen.insert(*c, verdict);
            }
            if !to_read.is_empty() {
                read_and_check(repo, &to_read, &mut seen, &mut report)?;
            }
            let (task, object, file) = locate_file(&rel);
            if let Some(detail) =
                chunk_bytes.and_then(|n| crate::manifest::file_length_problem(f.size, n))
            {
                report.problems.push(Problem {
                    backup_id: id.clone(),
                    task,
                    object: object.clone(),
                    file: file.clone(),
                    chunk: None,
                    detail,
                });
            }
            let mut reported = std::collections::HashSet::new();
            for c in &f.chunks {
                if let Some(Some(detail)) = seen.get(c)
                    && reported.insert(*c)
                {
                    report.problems.push(Problem {
                        backup_id: id.clone(),
                        task,
                        object: object.clone(),
                        file: file.clone(),
                        chunk: Some(*c),
                        detail: detail.clone(),
                    });
                }
            }
        }
        progress.advance(1);
    }
    progress.end();
    report.chunks = seen.len() as u64;
    Ok(report)
}

/// Downloads `ids` (adjacent ones in one ranged read) and records a failure per chunk. When
/// the batch fails, each chunk is read alone to find which.
fn read_and_check(
    repo: &Repo,
    ids: &[ChunkId],
    seen: &mut HashMap<ChunkId, Option<String>>,
    report: &mut VerifyReport,
) -> Result<()> {
    let store = repo.store();
    let read = |ids: &[ChunkId]| {
        let bytes = AtomicU64::new(0);
        store
            .read_chunks(ids, |_, d| {
                bytes.fetch_add(d.len() as u64, Ordering::Relaxed);
                Ok::<(), rbk_chunkstore::Error>(())
            })
            .map(|()| bytes.into_inner())
    };
    if let Ok(bytes) = read(ids) {
        report.chunks_read += ids.len() as u64;
        report.bytes_read += bytes;
        return Ok(());
    }
    for id in ids {
        match read(std::slice::from_ref(id)) {
            Ok(n) => report.bytes_read += n,
            Err(e) if e.kind() == crate::ErrorKind::Io => return Err(e.into()),
            Err(e) => {
                seen.insert(*id, Some(e.to_string()));
            }
        }
        report.chunks_read += 1;
    }
    Ok(())
}

/// Rebuilds the local index from the store's pack trailers (`repair-index`). Packs whose
/// trailer is damaged are reported and left out: their chunks count as absent, so the next
/// backup stores them again.
///
/// # Errors
/// Provider and index errors.
pub fn repair_index(repo: &Repo) -> Result<SyncReport> {
    Ok(repo.store().rebuild_index()?)
}
