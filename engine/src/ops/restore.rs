//! `restore`: rebuild a module's state from a backup.
//!
//! Ordering, so that a failed restore never leaves a half-written module where the old one
//! was:
//! 1. refuse a non-empty target unless forced, before fetching anything;
//! 2. write every file into a staging dir beside the target (`modules/.rbk-restore-*`),
//!    verifying each chunk's BLAKE3 and each file's length, and fsync files and dirs;
//! 3. move the old module aside (`modules/.rbk-old-*`), rename the staging dir into place,
//!    then delete the old state. On any error before step 3 the staging dir is removed and
//!    the target is untouched.
//!
//! Restore needs only the store: the local index is rebuilt from pack trailers on demand.

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, UNIX_EPOCH};

use rayon::prelude::*;

use crate::backup_id::BackupId;
use crate::layout::{MODULES_DIR, RBK_TEMP_PREFIX, module_dir};
use crate::manifest::FileEntry;
use crate::{Error, Progress, Repo, Result};

#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Replace a non-empty target.
    pub force: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestoreReport {
    pub backup_id: BackupId,
    pub target: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
}

/// Files restored at once. Each has up to `READ_AHEAD` (4) ranged reads of up to 4 MiB in
/// flight, so at most 8 × 4 × 4 MiB of compressed bytes are buffered.
const FILES_IN_FLIGHT: usize = 8;

fn is_nonempty_dir(p: &Path) -> Result<bool> {
    match fs::read_dir(p) {
        Ok(mut it) => Ok(it.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(true),
        Err(e) => Err(Error::io(p, e)),
    }
}

fn sync_dir(p: &Path) -> Result<()> {
    File::open(p)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(p, e))
}

fn write_file(repo: &Repo, path: &Path, f: &FileEntry, progress: &dyn Progress) -> Result<()> {
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, out);
    let mut written = 0u64;
    repo.store().read_chunks(&f.chunks, |data| -> Result<()> {
        written += data.len() as u64;
        progress.advance(data.len() as u64);
        w.write_all(data).map_err(|e| Error::io(path, e))
    })?;
    if written != f.size {
        return Err(Error::CorruptManifest {
            key: path.display().to_string(),
            detail: format!(
                "its chunks add up to {written} bytes but the manifest records {}",
                f.size
            ),
        });
    }
    let out = w
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    let mtime = if f.mtime_ns >= 0 {
        UNIX_EPOCH + Duration::from_nanos(f.mtime_ns as u64)
    } else {
        UNIX_EPOCH
    };
    out.set_modified(mtime).map_err(|e| Error::io(path, e))?;
    if f.mode != 0 {
        out.set_permissions(fs::Permissions::from_mode(f.mode))
            .map_err(|e| Error::io(path, e))?;
    }
    out.sync_all().map_err(|e| Error::io(path, e))
}

/// Restores backup `id` into `<data_dir>/modules/<module>`.
///
/// # Errors
/// `TargetNotEmpty` (nothing fetched), `BackupNotFound`, `CorruptManifest`, store errors
/// (`NotFound` for a missing chunk, `Corrupt` for a damaged one), I/O errors. On every error
/// the target is as it was.
pub fn restore(
    repo: &Repo,
    data_dir: &Path,
    id: &BackupId,
    opts: RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let target = module_dir(data_dir, &id.module);
    if !opts.force && is_nonempty_dir(&target)? {
        return Err(Error::TargetNotEmpty { path: target });
    }
    // The session keeps a concurrent GC from sweeping chunks this restore reads, even if
    // the backup is deleted meanwhile (docs/gc.md).
    // A store that this process may only read (e.g. read-only credentials) still restores,
    // just without that protection.
    let store = repo.store();
    let session = match store.begin_session("restore", &id.module) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("restoring without a session (a concurrent GC is not held back): {e}");
            None
        }
    };
    let result = restore_in_session(repo, data_dir, id, &target, progress);
    if let Some(Err(e)) = session.map(|s| store.end_session(s)) {
        tracing::warn!("could not end restore session: {e}");
    }
    let (files, total) = result?;
    Ok(RestoreReport {
        backup_id: id.clone(),
        target,
        files,
        bytes: total,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Restores into `target` through a staging dir; returns (files, bytes).
fn restore_in_session(
    repo: &Repo,
    data_dir: &Path,
    id: &BackupId,
    target: &Path,
    progress: &dyn Progress,
) -> Result<(u64, u64)> {
    let manifest = repo.load_manifest(id)?;
    let modules = data_dir.join(MODULES_DIR);
    fs::create_dir_all(&modules).map_err(|e| Error::io(&modules, e))?;
    remove_stale_staging(&modules, &id.module);
    let tag = format!("{}-{:08x}", id.module, rand::random::<u32>());
    let staging = modules.join(format!("{RBK_TEMP_PREFIX}restore-{tag}"));
    fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;

    let files = manifest.files();
    let total: u64 = files.iter().map(|(_, f)| f.size).sum();
    let fill = || -> Result<()> {
        let mut dirs: Vec<PathBuf> = manifest.dirs().iter().map(|d| staging.join(d)).collect();
        dirs.extend(
            files
                .iter()
                .filter_map(|(rel, _)| staging.join(rel).parent().map(Path::to_path_buf)),
        );
        dirs.sort();
        dirs.dedup();
        for d in &dirs {
            fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
        }
        progress.begin("restore", total);
        // More files in flight than cores: with a remote store most of a file's time is
        // waiting for ranged reads, and a module has many small files (one read each).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(FILES_IN_FLIGHT)
            .build()
            .map_err(|e| Error::io(&staging, std::io::Error::other(e)))?;
        pool.install(|| {
            files
                .par_iter()
                .try_for_each(|(rel, f)| write_file(repo, &staging.join(rel), f, progress))
        })?;
        progress.end();
        // Directories deepest first, so every new name is durable before the final rename.
        for d in dirs.iter().rev() {
            sync_dir(d)?;
        }
        sync_dir(&staging)
    };
    if let Err(e) = fill() {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }

    let old = modules.join(format!("{RBK_TEMP_PREFIX}old-{tag}"));
    if target.exists() {
        // Swap in one step, so a crash leaves the old module or the new one, never none.
        match exchange(&staging, target) {
            Ok(()) => {
                sync_dir(&modules)?;
                fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
                return Ok((files.len() as u64, total));
            }
            // A filesystem without RENAME_EXCHANGE: two renames, with a short window in
            // which the old module is only under `.rbk-old-*`.
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                fs::rename(target, &old).map_err(|e| {
                    let _ = fs::remove_dir_all(&staging);
                    Error::io(target, e)
                })?;
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&staging);
                return Err(Error::io(target, e));
            }
        }
    }
    let had_old = old.exists();
    if let Err(e) = fs::rename(&staging, target) {
        // Put the old state back; the restore failed as a whole.
        if had_old {
            let _ = fs::rename(&old, target);
        }
        let _ = fs::remove_dir_all(&staging);
        return Err(Error::io(target, e));
    }
    sync_dir(&modules)?;
    if had_old {
        fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok((files.len() as u64, total))
}

/// Atomically swaps two directory entries (Linux `renameat2(RENAME_EXCHANGE)`).
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    renameat_with(CWD, a, CWD, b, RenameFlags::EXCHANGE).map_err(std::io::Error::from)
}

/// Removes what a killed restore of `module` left beside it (`.rbk-restore-<module>-<8 hex>`,
/// `.rbk-old-<module>-<8 hex>`). Two restores of one module at once are not supported: the
/// second would remove the first's staging dir, and the first then fails, its target intact.
fn remove_stale_staging(modules: &Path, module: &str) {
    let Ok(entries) = fs::read_dir(modules) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let stale = ["restore-", "old-"].iter().any(|kind| {
            name.strip_prefix(RBK_TEMP_PREFIX)
                .and_then(|n| n.strip_prefix(kind))
                .and_then(|n| n.strip_prefix(module))
                .and_then(|n| n.strip_prefix('-'))
                .is_some_and(|h| h.len() == 8 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        });
        if stale {
            tracing::warn!(
                "removing {} left by an interrupted restore",
                e.path().display()
            );
            let _ = fs::remove_dir_all(e.path());
        }
    }
}
