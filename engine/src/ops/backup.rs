//! `backup`: scan a module, store every file as chunks, then commit a manifest.
//!
//! Ordering: all packs are uploaded (`flush`) before the manifest is written, so a manifest
//! that exists always describes a complete backup. A crash before that leaves only packs no
//! manifest references, which GC removes.
//!
//! Work proportional to change: a file whose (dev, inode, size, mtime) equal those recorded
//! in the module's newest backup, and whose chunks the store still has, is not read again.
//! Files modified within [`RACY_WINDOW_NS`] before that backup started are always re-read,
//! because a change made in the same mtime tick right after it read them would be invisible.
//!
//! Files that only grow (depot segments, RocksDB WALs, MANIFESTs, LOG) and did grow since the
//! previous backup — same inode, larger (or, for a snapshot's live segment, captured at the
//! same length) — keep all their previous chunks but the last, and are read and chunked only
//! from there: the appended tail plus at most one chunk. The first
//! and last kept chunks are read and hashed first, and a depot segment's new records must
//! start exactly where the previous count ended; anything else reads the whole file.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rayon::prelude::*;
use rbk_chunkstore::compress::Content;
use rbk_chunkstore::session::now_ms;
use rbk_chunkstore::{ChunkId, ChunkStore, Cut, WriteSession, WriteStats};

use crate::backup_id::BackupId;
use crate::depot::{FrameCounter, segment_first_offset};
use crate::host::control::Client;
use crate::host::{RunningModule, Snapshot};
use crate::layout::{
    Growth, ModuleScan, ScannedFile, ScannedObject, liveness, scan_module, snapshot_dir,
};
use crate::manifest::{
    BackupStats, DepotEntry, DirMeta, FileEntry, Manifest, ObjectEntry, Owner, TaskEntry, TaskRef,
    TopologyEntry, depot_dir, pstate_dir, topology_dir,
};
use crate::{Error, ErrorKind, Progress, Repo, Result};

pub const RACY_WINDOW_NS: i64 = 1_000_000_000;

#[derive(Debug, Clone, PartialEq)]
pub struct BackupReport {
    pub backup_id: BackupId,
    pub stats: BackupStats,
    pub packs_written: u64,
    /// Uncompressed bytes of the chunks this backup added to the store (`stats.new_chunks`
    /// of them, `stats.new_stored_bytes` once compressed); everything else it references was
    /// there already.
    pub added_raw_bytes: u64,
    /// Bytes this backup added to the store: its new chunks, compressed, plus its manifest
    /// (restic's "added to the repository").
    pub added_bytes: u64,
    /// Bytes read from module files: unchanged files are not read, grown ones only past
    /// their kept chunks.
    pub bytes_read: u64,
    pub seconds: f64,
    /// The tasks it holds (a part of a backup holds those of its data dir).
    pub tasks: Vec<u32>,
}

/// What a backup run writes: a backup of its own, or its part of a pending backup that
/// several processes write (`ops::parts`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Destination<'a> {
    Backup,
    /// Its part of a pending backup, from the data dir of this worker id.
    Part(&'a crate::ops::parts::Pending, &'a str),
}

/// One file to store, and what the previous backup knew about it.
struct Job<'a> {
    /// Relative to the module dir.
    key: String,
    file: &'a ScannedFile,
    /// Count depot records while reading (the newest segment of a partition).
    count_records: bool,
}

/// Reading a file fails either on the file (no path known to `io::Error`) or in the store.
enum ReadError {
    Io(io::Error),
    Store(Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

struct Ingested {
    entry: FileEntry,
    records: Option<u64>,
    reused: bool,
    /// Bytes read from the file (0 when reused, the tail when appended).
    bytes_read: u64,
}

/// Reader wrapper that feeds a frame counter with everything read after the first `skip`
/// bytes.
struct Counting<'a, R> {
    inner: R,
    counter: Option<&'a mut FrameCounter>,
    skip: u64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let skipped = (self.skip.min(n as u64)) as usize;
        self.skip -= skipped as u64;
        if let Some(c) = self.counter.as_deref_mut() {
            c.feed(&buf[skipped..n]);
        }
        Ok(n)
    }
}

/// How a file's chunks are stored, by its path in the module dir: depot segments are framed
/// records, stored with their CRCs elided; a PState's SSTs are never changed once written
/// (compaction writes new ones), so they are compressed with a large window. `bench dedup`
/// predicts with the same rule.
pub(crate) fn content_of(key: &str) -> Content {
    if key.contains("/depots/") && key.ends_with(".seg") {
        Content::FramedLog
    } else if key.contains("/pstates/") && key.ends_with(".sst") {
        Content::Immutable
    } else {
        Content::Opaque
    }
}

/// Where a file's chunk boundaries go, by its path in the module dir: SSTs in large
/// fixed-size chunks (they never deduplicate below the whole file), files that only grow in
/// fixed-size chunks too (their bytes never move, so content-defined boundaries would buy
/// nothing for the rolling hash they cost), everything else content-defined. `bench dedup`
/// predicts with the same rule.
pub(crate) fn cut_of(key: &str) -> Cut {
    if content_of(key) == Content::Immutable {
        Cut::Immutable
    } else if append_only(key) {
        Cut::Appended
    } else {
        Cut::ContentDefined
    }
}

/// Files that only ever grow by appending: depot segments, and RocksDB's WALs, MANIFESTs
/// and info LOG. Others (SSTs, OPTIONS, JSON) are rewritten or immutable.
fn append_only(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or(key);
    key.contains("/depots/")
        || (key.contains("/pstates/")
            && (name.ends_with(".log") || name.starts_with("MANIFEST-") || name == "LOG"))
}

/// Where a grown file's previous chunks can be kept up to: all but the last chunk (whose end
/// was only where the file happened to end, not a content-defined boundary). `None` unless
/// the index knows every kept chunk's length and the first and last kept chunks still hash
/// to their ids — cheap evidence that the prefix is the one backed up before.
fn resume_offset(session: &WriteSession, f: &ScannedFile, prev: &FileEntry) -> Result<Option<u64>> {
    let keep = prev.chunks.len().saturating_sub(1);
    if keep == 0 {
        return Ok(None);
    }
    let kept = &prev.chunks[..keep];
    let mut lens = Vec::with_capacity(keep);
    for id in kept {
        match session.raw_len(id)? {
            Some(len) => lens.push(u64::from(len)),
            None => return Ok(None),
        }
    }
    let offset: u64 = lens.iter().sum();
    if offset >= prev.size {
        return Ok(None);
    }
    let mut file = f.open(Growth::AppendOnly)?;
    for (start, len, id) in [
        (0, lens[0], kept[0]),
        (offset - lens[keep - 1], lens[keep - 1], kept[keep - 1]),
    ] {
        let mut buf = vec![0u8; len as usize];
        let read = file
            .seek(SeekFrom::Start(start))
            .and_then(|_| file.read_exact(&mut buf));
        if read.is_err() || ChunkId::of(&buf) != id {
            return Ok(None);
        }
    }
    Ok(Some(offset))
}

/// Backs up a stopped `module` from its files in `data_dir` into `repo`.
///
/// A module whose PState LOCK files another process holds is running: its files are not a
/// consistent state, and this refuses (back it up through its host, [`backup_from_source`]).
///
/// # Errors
/// `DataDirMissing`, `ModuleNotFound`, `Layout`, `ModuleRunning` (nothing is written to the
/// store for these), I/O errors reading the module, provider errors.
pub fn backup(
    repo: &Repo,
    data_dir: &Path,
    module: &str,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    backup_from(
        repo,
        data_dir,
        data_dir,
        module,
        true,
        &HashMap::new(),
        Destination::Backup,
        progress,
    )
}

/// Where a backup reads a module from.
pub enum Source<'a> {
    /// Its files in the data dir: a module nobody runs. Refused when another process holds
    /// its RocksDB directories open.
    Files,
    /// A consistent snapshot taken now by a module this process runs.
    Running(&'a RunningModule),
    /// A snapshot the caller took (and deletes) itself.
    Snapshot(&'a Snapshot),
    /// A consistent snapshot taken by the host of another process (`rbk serve`), over its
    /// control socket. The snapshot is released after the backup (and dies with the
    /// connection if this process does).
    Host(&'a mut Client),
}

/// What a backup from a snapshot saw of the running module.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveView {
    /// Each microbatch topology's commit id in the snapshot.
    pub commit_ids: BTreeMap<String, u64>,
    /// How long commits were paused for the snapshot (waiting for one in flight included).
    pub pause: Duration,
}

/// Backs up `module` of `data_dir` into `repo`, reading it from `source`: the one entry for
/// stopped and running modules alike ([`backup`] is `Source::Files`). Snapshots are taken,
/// backed up and released here.
///
/// # Errors
/// As [`backup`]; for a running module, the host's snapshot errors.
pub fn backup_from_source(
    repo: &Repo,
    data_dir: &Path,
    module: &str,
    source: Source,
    progress: &dyn Progress,
) -> Result<(BackupReport, Option<LiveView>)> {
    from_source(
        repo,
        data_dir,
        module,
        source,
        Destination::Backup,
        progress,
    )
}

/// [`backup_from_source`] into `dest`.
pub(crate) fn from_source(
    repo: &Repo,
    data_dir: &Path,
    module: &str,
    source: Source,
    dest: Destination,
    progress: &dyn Progress,
) -> Result<(BackupReport, Option<LiveView>)> {
    let no_caps = HashMap::new();
    match source {
        Source::Files => {
            let r = backup_from(
                repo, data_dir, data_dir, module, true, &no_caps, dest, progress,
            )?;
            Ok((r, None))
        }
        Source::Running(m) => {
            // Deleted when dropped, after the backup.
            let snap = m.snapshot(data_dir)?;
            from_source(
                repo,
                data_dir,
                module,
                Source::Snapshot(&snap),
                dest,
                progress,
            )
        }
        Source::Snapshot(snap) => {
            let r = backup_snapshot(repo, data_dir, &snap.root, module, dest, progress)?;
            let live = LiveView {
                commit_ids: snap.commit_ids.clone(),
                pause: snap.pause,
            };
            Ok((r, Some(live)))
        }
        Source::Host(client) => {
            let snap = client.snapshot(module)?;
            let r = backup_snapshot(repo, data_dir, &snap.root, module, dest, progress)?;
            client.release()?;
            let live = LiveView {
                commit_ids: snap.commit_ids,
                pause: Duration::from_micros(snap.pause_us),
            };
            Ok((r, Some(live)))
        }
    }
}

/// Backs up a snapshot of a running module (taken by its host) at `snapshot_root`, with
/// its length caps; `data_dir` is the module's data dir, bound to the store as with
/// [`backup`].
fn backup_snapshot(
    repo: &Repo,
    data_dir: &Path,
    snapshot_root: &Path,
    module: &str,
    dest: Destination,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let caps = snapshot_dir::read_length_caps(snapshot_root)?;
    backup_from(
        repo,
        data_dir,
        snapshot_root,
        module,
        false,
        &caps,
        dest,
        progress,
    )
}

/// Treats each capped depot segment of `scan` as `cap` bytes long. A file shorter than its cap
/// lost captured bytes: an error, never a silently shorter backup.
fn apply_length_caps(scan: &mut ModuleScan, caps: &HashMap<String, u64>) -> Result<()> {
    let mut applied = 0;
    for t in &mut scan.tasks {
        for d in &mut t.depots {
            let dir = depot_dir(t.task, &d.name);
            for f in &mut d.files {
                let Some(&cap) = caps.get(&format!("{dir}/{}", f.rel)) else {
                    continue;
                };
                if f.size < cap {
                    return Err(Error::InvalidInput(format!(
                        "depot segment `{}` is {} bytes, shorter than the {cap} captured",
                        f.abs.display(),
                        f.size
                    )));
                }
                f.size = cap;
                f.capped = true;
                applied += 1;
            }
        }
    }
    if applied != caps.len() {
        return Err(Error::InvalidInput(format!(
            "the snapshot caps {} files but only {applied} are depot segments of it",
            caps.len()
        )));
    }
    Ok(())
}

/// Refuses a module some other process runs: RocksDB holds a POSIX lock on each open
/// partition's LOCK file. Probing takes a shared lock and drops it at once.
fn refuse_if_running(scan: &ModuleScan) -> Result<()> {
    use rustix::fs::{FlockOperation, fcntl_lock};
    if liveness::runs_in_this_process(&scan.dir) {
        return Err(Error::ModuleRunning {
            module: scan.meta.name.clone(),
            detail: "a module host in this process runs it".into(),
        });
    }
    for t in &scan.tasks {
        for p in &t.pstates {
            let Some(lock) = p.files.iter().find(|f| f.rel == "LOCK") else {
                continue;
            };
            let f = lock.open(Growth::None)?;
            match fcntl_lock(&f, FlockOperation::NonBlockingLockShared) {
                Ok(()) => {}
                Err(e) if e == rustix::io::Errno::AGAIN || e == rustix::io::Errno::ACCESS => {
                    return Err(Error::ModuleRunning {
                        module: scan.meta.name.clone(),
                        detail: format!(
                            "another process holds the RocksDB lock `{}`",
                            lock.abs.display()
                        ),
                    });
                }
                Err(e) => return Err(Error::io(&lock.abs, e.into())),
            }
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn backup_from(
    repo: &Repo,
    data_dir: &Path,
    source_root: &Path,
    module: &str,
    check_lock: bool,
    length_caps: &HashMap<String, u64>,
    dest: Destination,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let started = Instant::now();
    // The backup's time is when it starts looking at files: reuse decisions of the next
    // backup are made relative to it.
    let start_ms = now_ms();
    let mut scan = scan_module(source_root, module)?;
    apply_length_caps(&mut scan, length_caps)?;
    if check_lock {
        refuse_if_running(&scan)?;
    }
    // The session tells concurrent GCs that this backup may still reference packs they
    // condemn, and tells this backup which packs not to deduplicate against (docs/gc.md).
    // It ends with the commit, whether that succeeds or not.
    let session = repo.store().begin_backup_session(
        match dest {
            Destination::Backup => "backup",
            Destination::Part(..) => "backup-part",
        },
        module,
    )?;
    let (backup_id, stats, written, bytes_read) =
        backup_in_session(repo, session, module, &scan, start_ms, dest, progress)?;
    let added_bytes = written.new_stored_bytes;
    repo.bind_if_unbound(data_dir)?;
    Ok(BackupReport {
        backup_id,
        stats,
        packs_written: written.packs_written,
        added_raw_bytes: written.new_raw_bytes,
        added_bytes,
        bytes_read,
        seconds: started.elapsed().as_secs_f64(),
        tasks: scan.tasks.iter().map(|t| t.task).collect(),
    })
}

/// Stores every file of `scan` in `session` and commits the manifest (which ends the
/// session); returns its id, stats, what the session wrote and bytes read.
fn backup_in_session(
    repo: &Repo,
    session: WriteSession,
    module: &str,
    scan: &ModuleScan,
    start_ms: u64,
    dest: Destination,
    progress: &dyn Progress,
) -> Result<(BackupId, BackupStats, WriteStats, u64)> {
    let store = repo.store();

    let ids = repo.backup_ids(module)?;
    // The newest backup tells which files need not be read again. A damaged one must not
    // block new backups: fall back to reading everything.
    let previous = match ids.last().map(|id| repo.load_manifest(id)) {
        Some(Ok(m)) => Some(m),
        // Corrupt, or deleted since the listing: read every file.
        Some(Err(e)) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
            tracing::warn!("previous backup unusable, reading every file: {e}");
            None
        }
        Some(Err(e)) => return Err(e),
        None => None,
    };
    let prev_files: HashMap<String, &FileEntry> = previous
        .as_ref()
        .map(|m| m.files().into_iter().collect())
        .unwrap_or_default();
    let prev_depot_ends: HashMap<String, u64> = previous
        .as_ref()
        .map(|m| {
            m.tasks
                .iter()
                .flat_map(|t| {
                    t.depots.iter().filter_map(move |d| {
                        d.files.last().map(|f| {
                            (
                                format!("{}/{}", depot_dir(t.task, &d.name), f.path),
                                d.end_offset,
                            )
                        })
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let reuse_before_ns = previous.as_ref().map_or(i64::MIN, |m| {
        (m.created_ms as i64).saturating_mul(1_000_000) - RACY_WINDOW_NS
    });

    // Every file of the module, each with its path relative to the module dir.
    let mut jobs: Vec<Job> = scan
        .module_files
        .iter()
        .map(|f| Job {
            key: f.rel.clone(),
            file: f,
            count_records: false,
        })
        .collect();
    for t in &scan.tasks {
        for d in &t.depots {
            let n = d.files.len();
            jobs.extend(d.files.iter().enumerate().map(|(i, f)| Job {
                key: format!("{}/{}", depot_dir(t.task, &d.name), f.rel),
                file: f,
                count_records: i + 1 == n,
            }));
        }
        for (objs, dir) in [
            (&t.pstates, pstate_dir as fn(u32, &str) -> String),
            (&t.topologies, topology_dir),
        ] {
            for o in objs.iter() {
                jobs.extend(o.files.iter().map(|f| Job {
                    key: format!("{}/{}", dir(t.task, &o.name), f.rel),
                    file: f,
                    count_records: false,
                }));
            }
        }
    }
    let total: u64 = jobs.iter().map(|j| j.file.size).sum();
    progress.begin("backup", total);

    // Chunks and stores `f` from byte `from` on, after `chunks` (those of the bytes before
    // `from`). With `count_from`, also counts depot frames from that many bytes past `from`.
    let store_file = |job: &Job,
                      from: u64,
                      mut chunks: Vec<ChunkId>,
                      count_from: Option<u64>|
     -> Result<(FileEntry, Option<FrameCounter>)> {
        let f = job.file;
        let content = content_of(&job.key);
        let growth = if append_only(&job.key) {
            Growth::AppendOnly
        } else {
            Growth::None
        };
        let file = f.open(growth)?;
        if from > 0 {
            (&file)
                .seek(SeekFrom::Start(from))
                .map_err(|e| Error::io(&f.abs, e))?;
        }
        let mut counter = FrameCounter::default();
        // Up to the scanned (or capped) size: a backup stores the file as it was scanned.
        let reader = Counting {
            inner: (&file).take(f.size.saturating_sub(from)),
            counter: count_from.is_some().then_some(&mut counter),
            skip: count_from.unwrap_or(0),
        };
        let read = store
            .chunker_for(cut_of(&job.key))
            .chunk_reader(reader, |buf, ranges| -> Result<(), ReadError> {
                session
                    .check_not_revoked()
                    .map_err(|e| ReadError::Store(e.into()))?;
                // Hash and store the batch's chunks on all cores, keeping their order.
                let ids: Vec<ChunkId> = ranges
                    .par_iter()
                    .map(|r| {
                        let data = &buf[r.clone()];
                        let id = ChunkId::of(data);
                        session.put_chunk_as(id, data, content).map(|_| id)
                    })
                    .collect::<rbk_chunkstore::Result<_>>()
                    .map_err(|e| ReadError::Store(e.into()))?;
                chunks.extend(ids);
                progress.advance(ranges.iter().map(|r| r.len() as u64).sum());
                Ok(())
            })
            .map_err(|e| match e {
                ReadError::Io(e) => Error::io(&f.abs, e),
                ReadError::Store(e) => e,
            })?;
        // The bytes read are the scanned file's only if it is still as scanned now.
        let md = file.metadata().map_err(|e| Error::io(&f.abs, e))?;
        f.check_unchanged(&md, growth)?;
        if from + read != f.size {
            return Err(Error::changed(
                &f.abs,
                format!("it ended after {} of its {} bytes", from + read, f.size),
            ));
        }
        let entry = FileEntry {
            path: f.rel.clone(),
            size: from + read,
            mtime_ns: f.mtime_ns,
            dev: f.dev,
            ino: f.ino,
            mode: f.mode,
            owner: Some(f.owner()),
            chunks,
        };
        Ok((entry, count_from.map(|_| counter)))
    };
    let ingest = |job: &Job| -> Result<Ingested> {
        let f = job.file;
        if let Some(prev) = prev_files.get(&job.key) {
            let same = prev.dev == f.dev
                && prev.ino == f.ino
                && prev.size == f.size
                && prev.mtime_ns == f.mtime_ns
                && f.mtime_ns < reuse_before_ns;
            let records = if job.count_records {
                // A manifest whose end offset precedes the segment start is inconsistent:
                // re-read rather than trust it.
                prev_depot_ends
                    .get(&job.key)
                    .and_then(|end| end.checked_sub(segment_first_offset(&f.rel).unwrap_or(0)))
            } else {
                None
            };
            if same
                && (!job.count_records || records.is_some())
                && session.contains_many(&prev.chunks)?.iter().all(|k| *k)
            {
                progress.advance(f.size);
                return Ok(Ingested {
                    // Contents as before; mode and owner as now (chmod and chown do not
                    // move mtime, so they are taken from the scan, never reused).
                    entry: FileEntry {
                        mode: f.mode,
                        owner: Some(f.owner()),
                        ..(*prev).clone()
                    },
                    records,
                    reused: true,
                    bytes_read: 0,
                });
            }
            // Grown by appending: keep the chunks of the prefix, read only the tail. Also a
            // snapshot's live segment captured at the same length as before (it grew past
            // the capture, so its mtime moved): then only the last chunk is read again.
            if append_only(&job.key)
                && prev.dev == f.dev
                && prev.ino == f.ino
                && (f.size > prev.size || (f.capped && f.size == prev.size))
                && (!job.count_records || records.is_some())
                && let Some(offset) = resume_offset(&session, f, prev)?
            {
                let kept = prev.chunks[..prev.chunks.len() - 1].to_vec();
                // Records are counted from where the previous backup's count ended.
                let (entry, counter) = store_file(
                    job,
                    offset,
                    kept,
                    job.count_records.then_some(prev.size - offset),
                )?;
                let counted = counter.filter(FrameCounter::at_boundary);
                if !job.count_records || counted.is_some() {
                    progress.advance(offset);
                    return Ok(Ingested {
                        bytes_read: entry.size - offset,
                        records: counted.map(|c| records.unwrap_or(0) + c.records()),
                        entry,
                        reused: false,
                    });
                }
                // The tail did not start on a frame boundary: count the whole segment.
            }
        }
        let (entry, counter) = store_file(job, 0, Vec::new(), job.count_records.then_some(0))?;
        Ok(Ingested {
            bytes_read: entry.size,
            entry,
            records: counter.map(|c| c.records()),
            reused: false,
        })
    };
    let results: Vec<Ingested> = jobs.par_iter().map(ingest).collect::<Result<_>>()?;
    let bytes_read = results.iter().map(|r| r.bytes_read).sum();
    progress.end();

    // Reassemble the per-object structure in scan order.
    let mut it = results.into_iter();
    let mut stats = BackupStats::default();
    let mut take =
        |files: &[ScannedFile], stats: &mut BackupStats| -> (Vec<FileEntry>, Option<u64>) {
            let mut out = Vec::with_capacity(files.len());
            let mut records = None;
            for _ in files {
                let r = it.next().expect("one result per job");
                stats.files += 1;
                stats.logical_bytes += r.entry.size;
                stats.files_reused += r.reused as u64;
                records = records.or(r.records);
                out.push(r.entry);
            }
            (out, records)
        };
    let (module_files, _) = take(&scan.module_files, &mut stats);
    let mut tasks = Vec::new();
    for t in &scan.tasks {
        let depots = t
            .depots
            .iter()
            .map(|d| {
                let (files, records) = take(&d.files, &mut stats);
                let first = |f: Option<&FileEntry>| {
                    f.and_then(|f| segment_first_offset(&f.path)).unwrap_or(0)
                };
                let start_offset = first(files.first());
                let end_offset = first(files.last()) + records.unwrap_or(0);
                DepotEntry {
                    name: d.name.clone(),
                    start_offset,
                    end_offset,
                    files,
                }
            })
            .collect();
        let mut objects = |objs: &[ScannedObject]| -> Vec<(String, Vec<FileEntry>)> {
            objs.iter()
                .map(|o| (o.name.clone(), take(&o.files, &mut stats).0))
                .collect()
        };
        let pstates = objects(&t.pstates)
            .into_iter()
            .map(|(name, files)| ObjectEntry { name, files })
            .collect();
        let topologies = objects(&t.topologies)
            .into_iter()
            .map(|(name, files)| {
                let commit_id = t
                    .topologies
                    .iter()
                    .find(|o| o.name == name)
                    .and_then(read_commit_id);
                TopologyEntry {
                    name,
                    commit_id,
                    files,
                }
            })
            .collect();
        tasks.push(TaskEntry {
            task: t.task,
            depots,
            pstates,
            topologies,
        });
    }
    // A task that did not change encodes to the object stored last time: its pieces are
    // found in the index and nothing new is written for it.
    let task_refs = if store.config().stores_task_objects() {
        store_task_objects(store, &session, &tasks)?
    } else {
        Vec::new()
    };
    // Every pack uploaded (the task objects went into the files' last one) before the
    // manifest is encoded; the commit checks again.
    session.flush()?;
    let mut ws = session.stats();
    stats.new_chunks = ws.new_chunks;
    stats.new_stored_bytes = ws.new_stored_bytes;
    let dir_meta = scan
        .dirs
        .iter()
        .map(|d| DirMeta {
            path: d.rel.clone(),
            mode: d.mode,
            owner: Some(Owner {
                uid: d.uid,
                gid: d.gid,
            }),
        })
        .collect();
    if let Destination::Part(pending, worker) = dest {
        // A part: the tasks of this data dir, under the pending backup's id and held
        // session; the commit gathers the parts into the backup's manifest.
        let part = Manifest {
            backup_id: pending.id.clone(),
            created_ms: pending.created_ms,
            rbk_version: env!("CARGO_PKG_VERSION").into(),
            task_count: scan.meta.tasks,
            stats,
            module_files,
            tasks,
            session: Some(pending.session.clone()),
            dir_meta,
            task_refs,
        };
        let body = part.encode();
        let name = crate::ops::parts::part_name(session.id(), worker);
        let written =
            session.write_pending_part(module, &pending.id.to_string(), &name, Bytes::from(body));
        if let Err(e) = session.end() {
            tracing::warn!("could not end session: {e}");
        }
        written?;
        return Ok((pending.id.clone(), stats, ws, bytes_read));
    }

    // The id must sort after every existing backup of the module, even if the clock went back.
    let mut millis = start_ms;
    if let Some(last) = ids.last() {
        millis = millis.max(last.millis + 1);
    }
    let mut manifest = Manifest {
        backup_id: BackupId {
            module: module.into(),
            millis,
            suffix: rand::random(),
        },
        created_ms: millis,
        rbk_version: env!("CARGO_PKG_VERSION").into(),
        task_count: scan.meta.tasks,
        stats,
        module_files,
        tasks,
        session: Some(session.id().to_string()),
        dir_meta,
        task_refs,
    };
    // The commit point. Another backup of the module may have taken the id in the same
    // millisecond: then try another suffix.
    let mut manifest_bytes = 0;
    session.commit(module, |attempt| {
        if attempt > 0 {
            manifest.backup_id.suffix = rand::random();
        }
        let body = manifest.encode();
        manifest_bytes = body.len() as u64;
        (manifest.backup_id.to_string(), Bytes::from(body))
    })?;
    // What this backup added to the store: its new chunks, compressed, and its manifest.
    ws.new_stored_bytes += manifest_bytes;
    Ok((manifest.backup_id, stats, ws, bytes_read))
}

/// Stores each task of `tasks` as a task object, cut into pieces like any file, in
/// `session`; returns their references, in order.
///
/// # Errors
/// Store errors.
fn store_task_objects(
    store: &ChunkStore,
    session: &WriteSession,
    tasks: &[TaskEntry],
) -> Result<Vec<TaskRef>> {
    let chunker = store.chunker_for(Cut::ContentDefined);
    // On the pool that stored the files: its threads have their compression contexts
    // already (a new one here would cost megabytes).
    tasks
        .par_iter()
        .map(|t| {
            let object = t.encode_object();
            if object.len() > crate::manifest::MAX_MANIFEST_LEN {
                // A reader refuses it: better no backup than one that cannot be restored.
                return Err(Error::InvalidInput(format!(
                    "task {} lists more files and chunks than one task object holds ({} bytes, at most {}); split the module into more tasks",
                    t.task,
                    object.len(),
                    crate::manifest::MAX_MANIFEST_LEN
                )));
            }
            let mut pieces = Vec::new();
            let mut at = 0;
            for len in chunker.chunk_lengths(&object) {
                let piece = &object[at..at + len];
                at += len;
                let id = ChunkId::of(piece);
                session.put_chunk_as(id, piece, Content::Opaque)?;
                pieces.push(id);
            }
            Ok(t.reference(&object, pieces))
        })
        .collect()
}

/// `commit_id` of a topology's progress.json, when present and readable.
fn read_commit_id(o: &ScannedObject) -> Option<u64> {
    let f = o.files.iter().find(|f| f.rel == "progress.json")?;
    let bytes = f.open(Growth::None).ok()?;
    let mut buf = Vec::new();
    io::Read::read_to_end(
        &mut (&bytes).take(crate::layout::MAX_META_FILE_LEN),
        &mut buf,
    )
    .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&buf).ok()?;
    v.get("commit_id")?.as_u64()
}
