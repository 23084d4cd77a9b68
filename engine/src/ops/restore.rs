//! `restore`: rebuild a module's state from a backup.
//!
//! Ordering, so that a failed restore never leaves a half-written module where the old one
//! was:
//! 1. refuse a non-empty target unless forced, and a backup that lacks what another module
//!    of the data dir depends on (`ops::dependents`), before fetching anything;
//! 2. write every file into a staging dir beside the target (`modules/.rbk-restore-*`),
//!    verifying each chunk's BLAKE3 and each file's length, and make files and dirs durable
//!    (writeback started file by file, then one `syncfs` and an fsync of each); then,
//!    if asked, back up the state about to be replaced (the undo backup);
//! 3. move the old module aside (`modules/.rbk-old-*`), rename the staging dir into place,
//!    then delete the old state. On any error before step 3 the staging dir is removed and
//!    the target is untouched.
//!
//! 4. clamp the offsets of topologies reading across the restored module's boundary and
//!    record the restore epoch (`layout::epochs`).
//!
//! Restore needs only the store: the local index is rebuilt from pack trailers on demand.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use rayon::prelude::*;

use crate::backup_id::BackupId;
use crate::layout::epochs::{self, OffsetReset, RestoreEpoch};
use crate::layout::{MODULES_DIR, RBK_TEMP_PREFIX, module_dir};
use crate::manifest::{FileEntry, ManifestObject};
use crate::ops::dependents;
use crate::{Error, Progress, Repo, Result};

#[derive(Debug, Clone, Copy, Default)]
pub struct RestoreOptions {
    /// Replace a non-empty target.
    pub force: bool,
    /// Skip every fsync. The restore is then as fast as the page cache, and the disk flushes
    /// later; but a power loss or kernel crash before it has can leave the module with empty
    /// or missing files (the final rename may reach the disk before the data). For throwaway
    /// copies only. The default makes every file and directory durable before the rename.
    pub no_sync: bool,
    /// Keep setuid/setgid bits of restored files. Off by default: whoever can write the
    /// store could otherwise plant a setuid binary through a restore run as root.
    pub keep_setid: bool,
    /// Restore even if another module of the data dir depends on an object the backup does
    /// not have (that module then reads something that is gone).
    pub ignore_dependencies: bool,
    /// First back up the state being replaced (an ordinary backup, kept by GC for at least
    /// `backup.undo.keep.hours`), so that restoring it undoes this restore.
    pub undo_backup: bool,
}

/// A file's mode as restored: exactly as backed up (0 included), setuid/setgid stripped
/// unless asked to keep them.
pub fn restored_mode(mode: u32, keep_setid: bool) -> u32 {
    let mode = mode & 0o7777;
    if keep_setid { mode } else { mode & !0o6000 }
}

/// Owners are restored only by root: anyone else can only give files away to themselves.
fn restores_owners() -> bool {
    rustix::process::geteuid().is_root()
}

/// Gives the directories of `manifest` under `root` their recorded mode and (as root)
/// owner, deepest first, after every file is in place: a directory restored read-only
/// must not stop the restore from writing into it.
fn apply_dir_meta(
    root: &Path,
    manifest: &crate::manifest::Manifest,
    opts: RestoreOptions,
) -> Result<()> {
    let mut dirs: Vec<&crate::manifest::DirMeta> = manifest.dir_meta.iter().collect();
    dirs.sort_by(|a, b| b.path.cmp(&a.path));
    for d in dirs {
        let path = if d.path.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&d.path)
        };
        if let Some(o) = d.owner.filter(|_| restores_owners()) {
            std::os::unix::fs::lchown(&path, Some(o.uid), Some(o.gid))
                .map_err(|e| Error::io(&path, e))?;
        }
        fs::set_permissions(
            &path,
            fs::Permissions::from_mode(restored_mode(d.mode, opts.keep_setid)),
        )
        .map_err(|e| Error::io(&path, e))?;
    }
    Ok(())
}

/// A manifest's mtime (ns since the epoch, negative before it) as a time.
pub fn mtime_of(mtime_ns: i64) -> std::time::SystemTime {
    let d = Duration::from_nanos(mtime_ns.unsigned_abs());
    if mtime_ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestoreReport {
    pub backup_id: BackupId,
    pub target: PathBuf,
    pub files: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// The backup of the replaced state, when one was taken.
    pub undo_backup_id: Option<BackupId>,
    /// This restore's number in the module's restore epochs (`layout::epochs`).
    pub epoch: u64,
    /// Processed offsets moved so that readers of depots stay consistent.
    pub resets: Vec<OffsetReset>,
    /// The tasks restored (all of the backup's unless a selection said otherwise).
    pub tasks: Vec<u32>,
}

/// Which tasks of a backup a restore writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Selection {
    /// Every task.
    #[default]
    All,
    /// These tasks (`--tasks 2,3`).
    Tasks(std::collections::BTreeSet<u32>),
    /// The tasks, replicas included, that worker `worker` runs under `launch`; the settings
    /// are recorded in the restored module.json (`crate::placement`).
    Worker {
        launch: crate::placement::Launch,
        worker: u32,
    },
}

impl Selection {
    /// `manifest` with only the selected tasks (and their directories), and the launch
    /// settings to record, if any. Applied before the task objects are read, so only the
    /// selected ones are.
    ///
    /// # Errors
    /// `InvalidInput` for a task the backup does not have or invalid launch settings.
    fn apply(
        &self,
        mut manifest: ManifestObject,
    ) -> Result<(ManifestObject, Option<crate::placement::Launch>)> {
        let n = manifest.task_count();
        let (tasks, launch) = match self {
            Selection::All => return Ok((manifest, None)),
            Selection::Tasks(t) => {
                if let Some(bad) = t.iter().find(|t| **t >= n) {
                    return Err(Error::InvalidInput(format!(
                        "--tasks {bad}: backup {} has tasks 0..{}",
                        manifest.backup_id(),
                        n - 1
                    )));
                }
                (t.clone(), None)
            }
            Selection::Worker { launch, worker } => (launch.tasks_of(n, *worker)?, Some(*launch)),
        };
        manifest.retain_tasks(|t| tasks.contains(&t));
        Ok((manifest, launch))
    }
}

/// Threads that finish completed files (mtime, start of writeback) while the workers
/// go on: opening and closing a file mostly waits for the kernel, so several at once keep up
/// without costing a core each.
const FINISHERS: usize = 4;

fn is_nonempty_dir(p: &Path) -> Result<bool> {
    match fs::read_dir(p) {
        Ok(mut it) => Ok(it.next().is_some()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Ok(true),
        Err(e) => Err(Error::io(p, e)),
    }
}

fn sync_dir(p: &Path, opts: RestoreOptions) -> Result<()> {
    if opts.no_sync {
        return Ok(());
    }
    File::open(p)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(p, e))
}

/// A file being restored: created empty up front, opened for writing when its first chunk
/// arrives and closed when its last byte is written; then a finisher opens it again to set
/// its mtime and start its writeback, and [`make_durable`] once more to fsync it and set its
/// owner and mode. Only files partly written hold a descriptor, so a
/// restore of many small files stays far below the open-file limit.
struct OutFile<'a> {
    path: PathBuf,
    entry: &'a FileEntry,
    open: Mutex<Option<Arc<File>>>,
    /// Bytes not yet written; the writer that takes it to zero hands the file on.
    remaining: AtomicU64,
}

impl OutFile<'_> {
    fn handle(&self) -> Result<Arc<File>> {
        let mut slot = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = &*slot {
            return Ok(f.clone());
        }
        let f = Arc::new(
            OpenOptions::new()
                .write(true)
                .open(&self.path)
                .map_err(|e| Error::io(&self.path, e))?,
        );
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Closes the writers' descriptor (every write is done).
    fn close(&self) {
        drop(self.open.lock().unwrap_or_else(|p| p.into_inner()).take());
    }

    /// Sets mtime and starts writing the file back to disk; owner and mode follow once it
    /// is durable ([`make_durable`]). With `no_sync`, sets owner and mode right away.
    fn finish(&self, opts: RestoreOptions) -> Result<()> {
        let f = self.open_for_write()?;
        f.set_modified(mtime_of(self.entry.mtime_ns))
            .map_err(|e| Error::io(&self.path, e))?;
        if opts.no_sync {
            return self.set_owner_and_mode(&f, opts);
        }
        // POSIX_FADV_DONTNEED starts writeback of the dirty pages without waiting for it
        // (the pages stay cached: they are dirty or under writeback). Only a hint.
        let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
        Ok(())
    }

    fn open_for_write(&self) -> Result<File> {
        OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Last, through a descriptor opened before: a mode without write (or read) permission
    /// would stop a process that is not root from opening the file again.
    fn set_owner_and_mode(&self, f: &File, opts: RestoreOptions) -> Result<()> {
        let path = &self.path;
        // Owner before mode: chown clears setuid/setgid bits.
        if let Some(o) = self.entry.owner.filter(|_| restores_owners()) {
            std::os::unix::fs::fchown(f, Some(o.uid), Some(o.gid))
                .map_err(|e| Error::io(path, e))?;
        }
        f.set_permissions(fs::Permissions::from_mode(restored_mode(
            self.entry.mode,
            opts.keep_setid,
        )))
        .map_err(|e| Error::io(path, e))
    }
}

/// Makes every file of `outs` (under `root`) durable, then gives it its owner and mode.
/// Their writeback started as each was finished; one `syncfs` waits for what is left and
/// commits the filesystem's journal once, where an fsync per file waits for a journal
/// commit each (on this project's test machine, restores were 0.62–0.65 s instead of
/// 0.78–1.16 s, medians of 6–8). Each file is fsynced after that, which is quick with
/// nothing left to write: it reports a writeback error against the file it hit, and makes
/// the file durable on kernels whose `syncfs` does not report errors (before Linux 5.8).
fn make_durable(root: &Path, outs: &[OutFile], opts: RestoreOptions) -> Result<()> {
    let dir = File::open(root).map_err(|e| Error::io(root, e))?;
    rustix::fs::syncfs(&dir).map_err(|e| Error::io(root, e.into()))?;
    outs.par_iter().try_for_each(|o| {
        let f = o.open_for_write()?;
        f.sync_all().map_err(|e| Error::io(&o.path, e))?;
        o.set_owner_and_mode(&f, opts)
    })
}

/// Writes every file of `files` under `root` (their directories exist): all chunks are read
/// through one [`rbk_chunkstore::ReadPlan`] and written at their offsets by one worker per
/// core; each file is finished by a finisher thread as soon as its last byte is written, so
/// the disk writes early files back while later ones are still being decompressed; then all
/// are made durable ([`make_durable`]).
fn write_files(
    repo: &Repo,
    manifest_key: &str,
    root: &Path,
    files: &[(String, &FileEntry)],
    opts: RestoreOptions,
    progress: &dyn Progress,
) -> Result<()> {
    let store = repo.store();
    let seqs: Vec<&[rbk_chunkstore::ChunkId]> =
        files.iter().map(|(_, f)| f.chunks.as_slice()).collect();
    let plan = store.plan_read(&seqs)?;
    for ((rel, f), &len) in files.iter().zip(plan.lengths()) {
        if let Some(why) = crate::manifest::file_length_problem(f.size, len) {
            // The lengths come from pack trailers (through the index): either side may be
            // the damaged one, so name both.
            let mut packs: Vec<String> = Vec::new();
            for c in &f.chunks {
                for loc in store.chunk_locations(c)? {
                    packs.push(loc.pack.to_string());
                }
            }
            packs.sort();
            packs.dedup();
            return Err(Error::CorruptManifest {
                key: manifest_key.to_string(),
                detail: format!(
                    "file `{rel}`: {why} (chunk lengths from the trailers of pack(s) {}): the manifest or those packs are damaged; `rbk repair-index` rereads the trailers and `rbk verify --read-data` checks the chunks",
                    packs.join(", ")
                ),
            });
        }
    }
    let outs: Vec<OutFile> = files
        .iter()
        .map(|(rel, f)| OutFile {
            path: root.join(rel),
            entry: f,
            open: Mutex::new(None),
            remaining: AtomicU64::new(f.size),
        })
        .collect();
    for o in &outs {
        File::create_new(&o.path).map_err(|e| Error::io(&o.path, e))?;
    }

    let (done_tx, done_rx) = crossbeam_channel::unbounded::<usize>();
    let finish_error: Mutex<Option<Error>> = Mutex::new(None);
    let finish_failed = AtomicBool::new(false);
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..FINISHERS {
            let done_rx = done_rx.clone();
            let (outs, finish_error, finish_failed) = (&outs, &finish_error, &finish_failed);
            scope.spawn(move || {
                for i in done_rx {
                    if finish_failed.load(Ordering::SeqCst) {
                        continue;
                    }
                    if let Err(e) = outs[i].finish(opts) {
                        finish_failed.store(true, Ordering::SeqCst);
                        finish_error
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                    }
                }
            });
        }
        for (i, o) in outs.iter().enumerate() {
            if o.entry.size == 0 {
                let _ = done_tx.send(i);
            }
        }
        let written = store.read_plan(plan, workers, |i, offset, data| -> Result<()> {
            if finish_failed.load(Ordering::SeqCst) {
                return Err(finish_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take()
                    .unwrap_or_else(|| {
                        Error::io(&outs[i].path, std::io::Error::other("aborted"))
                    }));
            }
            let o = &outs[i];
            o.handle()?
                .write_all_at(data, offset)
                .map_err(|e| Error::io(&o.path, e))?;
            progress.advance(data.len() as u64);
            let len = data.len() as u64;
            if o.remaining.fetch_sub(len, Ordering::SeqCst) == len {
                o.close();
                let _ = done_tx.send(i);
            }
            Ok(())
        });
        drop(done_tx);
        written
    })?;
    if let Some(e) = finish_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    // Every chunk arrives exactly once, so every file was written to its end and finished;
    // a file that was not would be restored without its mtime, owner and mode.
    if let Some(o) = outs
        .iter()
        .find(|o| o.remaining.load(Ordering::SeqCst) != 0)
    {
        return Err(Error::io(
            &o.path,
            std::io::Error::other("restore ended before the file was written to its end"),
        ));
    }
    if !opts.no_sync {
        make_durable(root, &outs, opts)?;
    }
    Ok(())
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
    restore_selected(repo, data_dir, id, opts, &Selection::All, progress)
}

/// [`restore`] of the tasks `selection` picks (the module's own files always), e.g. the
/// tasks one machine of a spread module runs.
///
/// # Errors
/// As [`restore`]; `InvalidInput` for a selection the backup cannot satisfy.
pub fn restore_selected(
    repo: &Repo,
    data_dir: &Path,
    id: &BackupId,
    opts: RestoreOptions,
    selection: &Selection,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let target = module_dir(data_dir, &id.module);
    if !opts.force && is_nonempty_dir(&target)? {
        return Err(Error::TargetNotEmpty { path: target });
    }
    // The session keeps a concurrent GC from sweeping chunks this restore reads, even if
    // the backup is deleted meanwhile (docs/gc.md); so it begins before the manifest is read.
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
    let end_session = |session: Option<rbk_chunkstore::WriteSession>| {
        if let Some(Err(e)) = session.map(|s| s.end()) {
            tracing::warn!("could not end restore session: {e}");
        }
    };
    let prepared = (|| {
        let (object, launch) = selection.apply(repo.load_committed_object(id)?)?;
        let manifest = repo.resolve(&crate::repo::manifest_key(id), object)?;
        if !opts.ignore_dependencies {
            dependents::check_restore(data_dir, &manifest)?;
        }
        let depots = dependents::bounds_of(&manifest);
        // What will be reset is known now; an unreadable progress.json stops the restore
        // here.
        dependents::recalibrate_dependents(
            data_dir,
            &id.module,
            manifest.task_count,
            &depots,
            true,
        )?;
        Ok::<_, Error>((manifest, depots, launch))
    })();
    let (manifest, depots, launch) = match prepared {
        Ok(p) => p,
        Err(e) => {
            end_session(session);
            return Err(e);
        }
    };
    // The current state is backed up once the new one is staged: a restore that fails
    // before (a damaged store, a full disk) leaves no backup behind either.
    let take_undo = || -> Result<Option<BackupId>> {
        if !opts.undo_backup || !is_nonempty_dir(&target)? {
            return Ok(None);
        }
        let b = crate::ops::backup::backup(repo, data_dir, &id.module, &crate::NoProgress)
            .map_err(|e| {
                Error::InvalidInput(format!(
                    "could not back up the current state of {} before replacing it ({e}); \
                     nothing was changed. Fix that, or pass --no-undo-backup to restore \
                     without a way back",
                    id.module
                ))
            })?;
        tracing::info!(
            "backed up the current state of {} as {} (undo with rbk restore --backupId {} --force)",
            id.module,
            b.backup_id,
            b.backup_id
        );
        Ok(Some(b.backup_id))
    };
    let result = restore_in_session(
        repo, data_dir, &manifest, &target, opts, launch, take_undo, progress,
    );
    end_session(session);
    let (files, total, undo_backup_id) = result?;
    // The module is in place: readers across its boundary are made consistent with it.
    let resets = (|| {
        let mut r = dependents::recalibrate_dependents(
            data_dir,
            &id.module,
            manifest.task_count,
            &depots,
            false,
        )?;
        r.extend(dependents::recalibrate_restored(data_dir, &id.module)?);
        Ok::<_, Error>(r)
    })()
    .map_err(|e| {
        Error::InvalidInput(format!(
            "{id} was restored into `{}`, but the processed offsets of topologies reading \
             across it could not be made consistent: {e}. Fix that and restore again",
            target.display()
        ))
    })?;
    let epoch = epochs::append(
        data_dir,
        &id.module,
        RestoreEpoch {
            epoch: 0,
            backup_id: id.to_string(),
            restored_ms: rbk_chunkstore::session::now_ms(),
            depots: depots
                .into_iter()
                .map(|(name, bounds)| (format!("*{name}"), bounds))
                .collect(),
            undo_backup_id: undo_backup_id.as_ref().map(ToString::to_string),
            resets: resets.clone(),
        },
    )?;
    Ok(RestoreReport {
        backup_id: id.clone(),
        target,
        files,
        bytes: total,
        seconds: started.elapsed().as_secs_f64(),
        undo_backup_id,
        epoch,
        resets,
        tasks: manifest.tasks.iter().map(|t| t.task).collect(),
    })
}

/// Restores into `target` through a staging dir, calling `before_swap` once the new state is
/// complete and durable and before it replaces the old; returns (files, bytes, what
/// `before_swap` returned).
#[allow(clippy::too_many_arguments)]
fn restore_in_session<T>(
    repo: &Repo,
    data_dir: &Path,
    manifest: &crate::manifest::Manifest,
    target: &Path,
    opts: RestoreOptions,
    launch: Option<crate::placement::Launch>,
    before_swap: impl FnOnce() -> Result<T>,
    progress: &dyn Progress,
) -> Result<(u64, u64, T)> {
    let id = &manifest.backup_id;
    let modules = data_dir.join(MODULES_DIR);
    fs::create_dir_all(&modules).map_err(|e| Error::io(&modules, e))?;
    remove_stale_staging(&modules, &id.module);
    let tag = format!("{}-{:08x}", id.module, rand::random::<u32>());
    let staging = modules.join(format!("{RBK_TEMP_PREFIX}restore-{tag}"));
    fs::create_dir(&staging).map_err(|e| Error::io(&staging, e))?;

    let files = manifest.files();
    // Cannot overflow: decoding checked that the sizes add up within a u64.
    let total: u64 = files.iter().map(|(_, f)| f.size).sum();
    let fill = || -> Result<()> {
        let mut dirs: Vec<PathBuf> = manifest.dirs().iter().map(|d| staging.join(d)).collect();
        // Directories the backup saw, empty ones included (version 2 manifests).
        dirs.extend(
            manifest
                .dir_meta
                .iter()
                .filter(|d| !d.path.is_empty())
                .map(|d| staging.join(&d.path)),
        );
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
        write_files(
            repo,
            &crate::repo::manifest_key(id),
            &staging,
            &files,
            opts,
            progress,
        )?;
        progress.end();
        if let Some(l) = launch {
            record_launch(&staging.join("module.json"), &l, opts)?;
        }
        // Directories deepest first, so every new name is durable before the final rename.
        for d in dirs.iter().rev() {
            sync_dir(d, opts)?;
        }
        sync_dir(&staging, opts)?;
        // Last: a directory restored without write or read permission would stop the
        // writes and fsyncs above.
        apply_dir_meta(&staging, manifest, opts)
    };
    let before = fill().and_then(|()| before_swap());
    let before = match before {
        Ok(t) => t,
        Err(e) => {
            let _ = fs::remove_dir_all(&staging);
            return Err(e);
        }
    };

    let old = modules.join(format!("{RBK_TEMP_PREFIX}old-{tag}"));
    if target.exists() {
        // Swap in one step, so a crash leaves the old module or the new one, never none.
        match exchange(&staging, target) {
            Ok(()) => {
                sync_dir(&modules, opts)?;
                fs::remove_dir_all(&staging).map_err(|e| Error::io(&staging, e))?;
                return Ok((files.len() as u64, total, before));
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
    sync_dir(&modules, opts)?;
    if had_old {
        fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok((files.len() as u64, total, before))
}

/// Records launch settings in a restored (staged) module.json, durably unless `no_sync`.
fn record_launch(
    path: &Path,
    launch: &crate::placement::Launch,
    opts: RestoreOptions,
) -> Result<()> {
    let bytes = fs::read(path).map_err(|e| Error::io(path, e))?;
    let updated = launch.record_in(&bytes)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    std::io::Write::write_all(&mut f, &updated).map_err(|e| Error::io(path, e))?;
    if !opts.no_sync {
        f.sync_all().map_err(|e| Error::io(path, e))?;
    }
    Ok(())
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
