//! Backups in parts: one backup of a module whose tasks are spread over many machines, each
//! with its own data dir, written through the store alone (docs/distributed.md).
//!
//! 1. [`begin`] (any machine) picks the backup id and records a *pending* backup: a held
//!    session of the chunk store, with a lease, and a `begin` object naming it.
//! 2. [`part`] (each machine, in parallel) backs up the tasks its data dir holds, in a
//!    session of its own, and writes them as a part: a manifest of those tasks only.
//! 3. [`commit`] (any machine) gathers the parts once they cover every task — a task held by
//!    several machines (replicas) must have the same content in each — and writes the
//!    backup's manifest on behalf of the held session: the commit point, with the same
//!    checks as any backup's (docs/gc.md, "Backups in parts").
//!
//! While the pending backup is held, GC neither sweeps what its parts reference (it arms
//! its records with the held session, and counts the parts as live) nor gives up on it;
//! after its lease it revokes it, and deletes its parts.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use rbk_chunkstore::session::{hostname, now_ms};
use rbk_chunkstore::{ErrorKind, PendingListing};
use serde::{Deserialize, Serialize};

use crate::backup_id::BackupId;
use crate::manifest::{
    BackupStats, DirMeta, FileEntry, Manifest, ManifestObject, TaskEntry, TaskRef, task_of_path,
};
use crate::ops::backup::{self, BackupReport, Destination, LiveView, Source};
use crate::{Error, Progress, Repo, Result};

/// How long a pending backup waits for its parts and its commit before GC gives up on it.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(24 * 3600);

/// The `begin` object of a pending backup (JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct BeginRecord {
    version: u32,
    /// The held session standing for the pending backup.
    session: String,
    created_ms: u64,
    lease_ms: u64,
    /// The machine that began it (for the operator).
    host: String,
}

/// A pending backup, as [`begin`] recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub id: BackupId,
    pub session: String,
    pub created_ms: u64,
    pub lease_ms: u64,
}

/// Begins a backup of `module` in parts; it waits for its parts and commit for `lease`.
///
/// # Errors
/// `InvalidInput` for an invalid module name or a lease over 7 days, provider errors.
pub fn begin(repo: &Repo, module: &str, lease: Duration) -> Result<Pending> {
    let store = repo.store();
    let ids = repo.backup_ids(module)?;
    let session = store.begin_held_session("pending-backup", module, lease)?;
    // The id sorts after every backup of the module, as a backup's does.
    let millis = ids
        .last()
        .map_or(now_ms(), |last| now_ms().max(last.millis + 1));
    let record = BeginRecord {
        version: 1,
        session: session.clone(),
        created_ms: millis,
        lease_ms: lease.as_millis() as u64,
        host: hostname(),
    };
    let body = Bytes::from(serde_json::to_vec(&record).expect("serializes"));
    loop {
        let id = BackupId {
            module: module.into(),
            millis,
            suffix: rand::random(),
        };
        let name = id.to_string();
        if store.manifest_exists(module, &name)? {
            continue;
        }
        match store.put_pending_begin(module, &name, body.clone()) {
            Ok(true) => {
                return Ok(Pending {
                    id,
                    session,
                    created_ms: record.created_ms,
                    lease_ms: record.lease_ms,
                });
            }
            Ok(false) => continue,
            Err(e) => {
                let _ = store.end_held_session(&session);
                return Err(e.into());
            }
        }
    }
}

/// The pending backup `id`, checked to be still held.
///
/// # Errors
/// `PendingNotFound`, `PendingGivenUp`, `CorruptManifest` for a `begin` object rbk did not
/// write, provider errors.
pub fn load(repo: &Repo, id: &BackupId) -> Result<Pending> {
    let name = id.to_string();
    let not_found = || Error::PendingNotFound {
        backup_id: name.clone(),
        module: id.module.clone(),
    };
    let bytes = repo
        .store()
        .get_pending_begin(&id.module, &name)
        .map_err(|e| match e.kind() {
            ErrorKind::NotFound => not_found(),
            _ => e.into(),
        })?;
    let key = rbk_chunkstore::keys::pending_begin(&id.module, &name);
    let record: BeginRecord = serde_json::from_slice(&bytes)
        .ok()
        .filter(|r: &BeginRecord| r.version == 1)
        .ok_or_else(|| Error::CorruptManifest {
            key: key.clone(),
            detail: "not a pending backup's begin record rbk wrote".into(),
        })?;
    let pending = Pending {
        id: id.clone(),
        session: record.session,
        created_ms: record.created_ms,
        lease_ms: record.lease_ms,
    };
    match repo.store().check_held_session(&pending.session) {
        Ok(()) => Ok(pending),
        Err(e) if e.kind() == ErrorKind::Revoked => Err(Error::PendingGivenUp {
            backup_id: name,
            module: id.module.clone(),
            detail: format!(
                "its session {} ended: it was committed, its lease of {} s ran out, or a GC was told to revoke it",
                pending.session,
                pending.lease_ms / 1000
            ),
        }),
        Err(e) => Err(e.into()),
    }
}

/// The name of the part a session writes: `<session id>.<worker id>.<host>`, so an operator
/// can tell whose part is whose, and `rbk serve` which pending backups it has done.
pub(crate) fn part_name(session: &str, worker: &str) -> String {
    let host: String = hostname()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    format!("{session}.{worker}.{host}")
}

/// The worker id of a data dir: random, made on first use and kept in
/// `<data-dir>/.rbk/worker-id`. It tells apart the parts of data dirs on one machine.
///
/// # Errors
/// I/O errors.
pub fn worker_id(data_dir: &std::path::Path) -> Result<String> {
    let path = data_dir.join(".rbk").join("worker-id");
    match rbk_chunkstore::safe_fs::read_limited(&path, 64) {
        Ok(b) => {
            let id = String::from_utf8_lossy(&b).trim().to_string();
            if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(id);
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&path, e)),
    }
    let id = format!("{:016x}", rand::random::<u64>());
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    crate::layout::write_atomically(&path, format!("{id}\n").as_bytes())?;
    Ok(id)
}

/// Backs up the tasks of `id`'s module that `data_dir` holds, read from `source`, as a part
/// of pending backup `id`.
///
/// # Errors
/// As [`load`]; as [`backup::backup_from_source`]; `InvalidInput` when the data dir holds
/// none of the module's tasks.
pub fn part(
    repo: &Repo,
    data_dir: &std::path::Path,
    id: &BackupId,
    source: Source,
    progress: &dyn Progress,
) -> Result<(BackupReport, Option<LiveView>)> {
    let pending = load(repo, id)?;
    let worker = worker_id(data_dir)?;
    let (report, live) = backup::from_source(
        repo,
        data_dir,
        &id.module,
        source,
        Destination::Part(&pending, &worker),
        progress,
    )?;
    if report.tasks.is_empty() {
        // Written, and harmless (it adds the module files only); but nothing was covered.
        tracing::warn!(
            "the data dir `{}` holds no task of {}: its part covers none",
            data_dir.display(),
            id.module
        );
    }
    Ok((report, live))
}

/// One part of a pending backup: a manifest of the tasks of one data dir, whose task
/// objects (in a version 5 store) are not read.
#[derive(Debug, Clone)]
pub struct Part {
    pub name: String,
    pub object: ManifestObject,
}

impl Part {
    pub fn tasks(&self) -> Vec<u32> {
        self.object.task_ids()
    }

    /// The key of its object, for messages.
    pub fn key(&self) -> String {
        let id = self.object.backup_id();
        rbk_chunkstore::keys::pending_part(&id.module, &id.to_string(), &self.name)
    }
}

/// The worker id ([`worker_id`]) in a part's name.
pub fn worker_of(part: &str) -> Option<&str> {
    part.split('.').nth(1)
}

/// The parts of pending backup `id` written so far, by name.
///
/// # Errors
/// `CorruptManifest` for a part that does not decode or belongs elsewhere, provider errors.
pub fn parts(repo: &Repo, pending: &Pending) -> Result<Vec<Part>> {
    let mut out = Vec::new();
    for name in listed(repo, &pending.id)?.map_or_else(Vec::new, |l| l.parts) {
        if let Some(object) = read_part(repo, pending, &name)? {
            out.push(Part { name, object });
        }
    }
    Ok(out)
}

/// What the store lists of pending backup `id` (`None`: nothing).
fn listed(repo: &Repo, id: &BackupId) -> Result<Option<PendingListing>> {
    let name = id.to_string();
    Ok(repo
        .store()
        .list_pending(Some(&id.module))?
        .into_iter()
        .find(|l| l.name == name))
}

/// Part `part` of `pending`, checked to be one of its parts (`None`: deleted meanwhile).
fn read_part(repo: &Repo, pending: &Pending, part: &str) -> Result<Option<ManifestObject>> {
    let id = &pending.id;
    let name = id.to_string();
    let key = rbk_chunkstore::keys::pending_part(&id.module, &name, part);
    let bytes = match repo.store().get_pending_part(&id.module, &name, part) {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let m = ManifestObject::decode(&key, &bytes)?;
    if m.backup_id() != id || m.session() != Some(pending.session.as_str()) {
        return Err(Error::CorruptManifest {
            key,
            detail: "it is a part of another backup".into(),
        });
    }
    Ok(Some(m))
}

/// Deletes what the store lists of pending backup `id`.
fn delete_objects(repo: &Repo, id: &BackupId) -> Result<()> {
    match listed(repo, id)? {
        Some(l) => Ok(repo.store().delete_pending(&l)?),
        None => Ok(()),
    }
}

/// Which tasks the parts of a pending backup cover, and which they do not yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    /// From module.json, as the parts recorded it (`None` before the first part).
    pub task_count: Option<u32>,
    pub parts: usize,
    pub missing: Vec<u32>,
}

/// What the parts of `pending` cover so far. `seen` remembers the parts already read (parts
/// never change), so polling reads each part once.
///
/// # Errors
/// As [`parts`].
pub fn coverage(
    repo: &Repo,
    pending: &Pending,
    seen: &mut BTreeMap<String, (u32, Vec<u32>)>,
) -> Result<Coverage> {
    for name in listed(repo, &pending.id)?.map_or_else(Vec::new, |l| l.parts) {
        if seen.contains_key(&name) {
            continue;
        }
        if let Some(m) = read_part(repo, pending, &name)? {
            seen.insert(name, (m.task_count(), m.task_ids()));
        }
    }
    let task_count = seen.values().next().map(|(n, _)| *n);
    let covered: std::collections::BTreeSet<u32> =
        seen.values().flat_map(|(_, t)| t.iter().copied()).collect();
    Ok(Coverage {
        task_count,
        parts: seen.len(),
        missing: (0..task_count.unwrap_or(0))
            .filter(|t| !covered.contains(t))
            .collect(),
    })
}

/// What [`commit`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Committed {
    pub backup_id: BackupId,
    pub parts: usize,
    pub tasks: u32,
    pub stats: BackupStats,
    /// Tasks found in more than one part, with the same content in each (stored once).
    pub replicated_tasks: u64,
    /// Topologies whose tasks are at different commit ids, as `name: ids`: parts taken at
    /// different moments of a running module (docs/distributed.md, "Running modules").
    pub mixed_commit_ids: Vec<String>,
}

/// Commits pending backup `id`: once its parts cover every task of the module, writes its
/// manifest, ends its held session and deletes its parts.
///
/// # Errors
/// `PendingNotFound`, `PendingGivenUp`; `PartsMissing` naming the tasks no part has;
/// `PartsConflict` when two parts disagree on the module's files or on a task's content;
/// `CorruptManifest` for a damaged part; provider errors.
pub fn commit(repo: &Repo, id: &BackupId) -> Result<Committed> {
    let pending = load(repo, id)?;
    let parts = parts(repo, &pending)?;
    let manifest = merge(repo, &pending, &parts)?;
    let replicated_tasks = parts.iter().map(|p| p.tasks().len() as u64).sum::<u64>()
        - manifest.task_ids().len() as u64;
    let store = repo.store();
    let name = id.to_string();
    let body = manifest.encode();
    let written = store
        .put_manifest_held(
            &pending.session,
            &id.module,
            &name,
            Bytes::from(body.clone()),
        )
        .map_err(|e| given_up(e, &pending))?;
    if !written {
        // A commit whose answer was lost, run again: the manifest it wrote is this one.
        let existing = store.get_manifest(&id.module, &name)?;
        if existing.as_ref() != body.as_slice() {
            return Err(Error::PartsConflict {
                backup_id: name,
                detail: "a different manifest of that id exists already".into(),
            });
        }
    }
    // Committed. What follows only tidies up; GC does it if this process dies first.
    if let Err(e) = end(repo, &pending) {
        tracing::warn!(
            "backup {id} is committed, but its pending objects stay until the next GC: {e}"
        );
    }
    let mut commit_ids: BTreeMap<String, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for (_, t) in manifest.summaries() {
        for topo in t.topologies {
            if let Some(c) = topo.commit_id {
                commit_ids.entry(topo.name).or_default().insert(c);
            }
        }
    }
    let mixed_commit_ids = commit_ids
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(name, ids)| format!("{name}: {ids:?}"))
        .collect();
    Ok(Committed {
        backup_id: id.clone(),
        parts: parts.len(),
        tasks: manifest.task_count(),
        stats: *manifest.stats(),
        replicated_tasks,
        mixed_commit_ids,
    })
}

fn given_up(e: rbk_chunkstore::Error, pending: &Pending) -> Error {
    if e.kind() == ErrorKind::Revoked {
        Error::PendingGivenUp {
            backup_id: pending.id.to_string(),
            module: pending.id.module.clone(),
            detail: format!(
                "a GC revoked its session {} before the commit (its lease of {} s ran out, or it was named with --revoke)",
                pending.session,
                pending.lease_ms / 1000
            ),
        }
    } else {
        e.into()
    }
}

/// Ends the held session of `pending` and deletes its objects.
fn end(repo: &Repo, pending: &Pending) -> Result<()> {
    repo.store().end_held_session(&pending.session)?;
    delete_objects(repo, &pending.id)
}

/// Gives up on pending backup `id`: ends its session and deletes its parts. What only they
/// referenced is freed by the next GC.
///
/// # Errors
/// `PendingNotFound`, provider errors.
pub fn abort(repo: &Repo, id: &BackupId) -> Result<()> {
    let pending = match load(repo, id) {
        Ok(p) => p,
        // Already over: only its objects are left.
        Err(Error::PendingGivenUp { .. }) => return delete_objects(repo, id),
        Err(e) => return Err(e),
    };
    end(repo, &pending)
}

/// One task as a part holds it: inline (stores before version 5) or in a task object.
#[derive(Clone, Copy)]
enum Slot<'a> {
    Inline(&'a TaskEntry),
    Stored(&'a TaskRef),
}

impl Slot<'_> {
    fn slots(object: &ManifestObject) -> Vec<Slot<'_>> {
        match object.inline_tasks() {
            Some(tasks) => tasks.iter().map(Slot::Inline).collect(),
            None => object.task_refs().iter().map(Slot::Stored).collect(),
        }
    }

    fn task(&self) -> u32 {
        match self {
            Slot::Inline(t) => t.task,
            Slot::Stored(r) => r.task,
        }
    }

    /// The task itself, its object read if need be.
    fn read(&self, repo: &Repo, part: &Part) -> Result<TaskEntry> {
        match self {
            Slot::Inline(t) => Ok((*t).clone()),
            Slot::Stored(r) => {
                let key = part.key();
                let bytes = repo.read_task_objects(&key, &[r])?;
                r.decode_object(&key, &bytes[0])
            }
        }
    }
}

/// The first difference in content between replicas `a` (of part `p`) and `b` (of `q`).
/// Task objects with the same content hash agree without being read.
fn replicas_differ(
    repo: &Repo,
    (p, a): (&Part, Slot),
    (q, b): (&Part, Slot),
) -> Result<Option<String>> {
    if let (Slot::Stored(x), Slot::Stored(y)) = (a, b)
        && x.content == y.content
    {
        return Ok(None);
    }
    Ok(task_differs(&a.read(repo, p)?, &b.read(repo, q)?))
}

/// The manifest the parts make together: the module's files (the same in every part), each
/// task once (replicas must agree), every directory, and the stats of all parts. Task
/// objects are referenced as the parts wrote them, and read only to compare replicas whose
/// contents differ.
fn merge(repo: &Repo, pending: &Pending, parts: &[Part]) -> Result<ManifestObject> {
    let backup_id = pending.id.to_string();
    let conflict = |detail: String| Error::PartsConflict {
        backup_id: backup_id.clone(),
        detail,
    };
    let Some(first) = parts.first() else {
        return Err(Error::PartsMissing {
            backup_id: backup_id.clone(),
            missing: "all".into(),
            tasks: 0,
            parts: 0,
        });
    };
    let task_count = first.object.task_count();
    let mut tasks: BTreeMap<u32, (&Part, Slot)> = BTreeMap::new();
    let mut stats = BackupStats::default();
    for p in parts {
        let m = &p.object;
        if m.task_count() != task_count {
            return Err(conflict(format!(
                "part {} has {} tasks, part {} has {}: their module.json differ",
                first.name,
                task_count,
                p.name,
                m.task_count()
            )));
        }
        if m.version() != first.object.version() {
            return Err(conflict(format!(
                "parts {} and {} are of manifest versions {} and {}: every machine must run an rbk of the same store format",
                first.name,
                p.name,
                first.object.version(),
                m.version()
            )));
        }
        if let Some(d) = files_differ("", first.object.module_files(), m.module_files()) {
            return Err(conflict(format!(
                "the module files of parts {} and {} differ ({d}); every machine must hold the same module.json, module.jar and options",
                first.name, p.name
            )));
        }
        stats.new_chunks += m.stats().new_chunks;
        stats.new_stored_bytes += m.stats().new_stored_bytes;
        for slot in Slot::slots(m) {
            match tasks.get(&slot.task()) {
                None => {
                    tasks.insert(slot.task(), (p, slot));
                }
                Some(&(q, other)) => {
                    if let Some(d) = replicas_differ(repo, (q, other), (p, slot))? {
                        return Err(conflict(format!(
                            "task {} differs between parts {} and {} ({d}); replicas of a task must be backed up in the same state",
                            slot.task(),
                            q.name,
                            p.name
                        )));
                    }
                }
            }
        }
    }
    let missing: Vec<String> = (0..task_count)
        .filter(|t| !tasks.contains_key(t))
        .map(|t| t.to_string())
        .collect();
    if !missing.is_empty() {
        return Err(Error::PartsMissing {
            backup_id,
            missing: missing.join(","),
            tasks: task_count,
            parts: parts.len(),
        });
    }
    // Module-level directories from the first part, each task's from the part it came from.
    let mut dir_meta: Vec<DirMeta> = first
        .object
        .dir_meta()
        .iter()
        .filter(|d| task_of_path(&d.path).is_none())
        .cloned()
        .collect();
    for (task, (p, _)) in &tasks {
        dir_meta.extend(
            p.object
                .dir_meta()
                .iter()
                .filter(|d| task_of_path(&d.path) == Some(*task))
                .cloned(),
        );
    }
    let mut head = Manifest {
        backup_id: pending.id.clone(),
        created_ms: pending.created_ms,
        rbk_version: env!("CARGO_PKG_VERSION").into(),
        task_count,
        stats,
        module_files: first.object.module_files().to_vec(),
        tasks: Vec::new(),
        dir_meta,
        session: Some(pending.session.clone()),
        task_refs: Vec::new(),
    };
    let mut refs = Vec::new();
    for (_, slot) in tasks.into_values() {
        match slot {
            Slot::Inline(t) => head.tasks.push(t.clone()),
            Slot::Stored(r) => refs.push(r.clone()),
        }
    }
    let mut object = if refs.is_empty() {
        ManifestObject::of(&head)
    } else {
        ManifestObject::with_refs(head, refs)
    };
    let (files, bytes) = object.totals();
    stats.files = files;
    stats.logical_bytes = bytes;
    stats.files_reused = parts
        .iter()
        .map(|p| p.object.stats().files_reused)
        .sum::<u64>()
        .min(stats.files);
    object.set_stats(stats);
    Ok(object)
}

/// The first difference in content (paths, sizes, chunks) between two lists of files;
/// times, inodes and owners may differ between machines.
fn files_differ(dir: &str, a: &[FileEntry], b: &[FileEntry]) -> Option<String> {
    let by_path = |files: &[FileEntry]| -> BTreeMap<String, (u64, Vec<rbk_chunkstore::ChunkId>)> {
        files
            .iter()
            .map(|f| (f.path.clone(), (f.size, f.chunks.clone())))
            .collect()
    };
    let (a, b) = (by_path(a), by_path(b));
    let join = |p: &str| {
        if dir.is_empty() {
            p.to_string()
        } else {
            format!("{dir}/{p}")
        }
    };
    for (p, x) in &a {
        match b.get(p) {
            None => return Some(format!("`{}` is in one only", join(p))),
            Some(y) if y != x => return Some(format!("`{}` differs", join(p))),
            Some(_) => {}
        }
    }
    b.keys()
        .find(|p| !a.contains_key(*p))
        .map(|p| format!("`{}` is in one only", join(p)))
}

/// The first difference in content between two replicas of a task.
fn task_differs(a: &TaskEntry, b: &TaskEntry) -> Option<String> {
    use crate::manifest::{depot_dir, pstate_dir, topology_dir};
    let names = |x: Vec<&String>, y: Vec<&String>, what: &str| {
        (x != y).then(|| format!("their {what} differ"))
    };
    names(
        a.depots.iter().map(|d| &d.name).collect(),
        b.depots.iter().map(|d| &d.name).collect(),
        "depots",
    )
    .or_else(|| {
        names(
            a.pstates.iter().map(|d| &d.name).collect(),
            b.pstates.iter().map(|d| &d.name).collect(),
            "PStates",
        )
    })
    .or_else(|| {
        names(
            a.topologies.iter().map(|d| &d.name).collect(),
            b.topologies.iter().map(|d| &d.name).collect(),
            "topologies",
        )
    })
    .or_else(|| {
        a.depots.iter().zip(&b.depots).find_map(|(x, y)| {
            let dir = depot_dir(a.task, &x.name);
            if (x.start_offset, x.end_offset) != (y.start_offset, y.end_offset) {
                return Some(format!(
                    "`{dir}` holds offsets {}..{} in one, {}..{} in the other",
                    x.start_offset, x.end_offset, y.start_offset, y.end_offset
                ));
            }
            files_differ(&dir, &x.files, &y.files)
        })
    })
    .or_else(|| {
        a.pstates
            .iter()
            .zip(&b.pstates)
            .find_map(|(x, y)| files_differ(&pstate_dir(a.task, &x.name), &x.files, &y.files))
    })
    .or_else(|| {
        a.topologies.iter().zip(&b.topologies).find_map(|(x, y)| {
            let dir = topology_dir(a.task, &x.name);
            if x.commit_id != y.commit_id {
                return Some(format!(
                    "`{dir}` is at commit id {:?} in one, {:?} in the other",
                    x.commit_id, y.commit_id
                ));
            }
            files_differ(&dir, &x.files, &y.files)
        })
    })
}

/// Every pending backup in the store (of `module`, or of all), as listed.
///
/// # Errors
/// Provider errors.
pub fn list(repo: &Repo, module: Option<&str>) -> Result<Vec<PendingListing>> {
    Ok(repo.store().list_pending(module)?)
}

/// For GC: the parts of pending backups whose held session is not over (their chunks are
/// live), and the pending objects of those that are over, which are leftovers to delete.
///
/// # Errors
/// Provider errors; `CorruptManifest` for a part of a held backup that does not decode (GC
/// cannot know what it references).
pub(crate) fn for_gc(repo: &Repo) -> Result<(Vec<Part>, Vec<PendingListing>)> {
    let store = repo.store();
    let mut live = Vec::new();
    let mut leftovers = Vec::new();
    for l in store.list_pending(None)? {
        let Ok(id) = BackupId::parse(&l.name) else {
            continue;
        };
        if id.module != l.group {
            continue;
        }
        let held = match l.begin.then(|| load(repo, &id)) {
            // `load` checked, after the listing, that its session is held.
            Some(Ok(p)) => Some(p),
            // Given up on, or its begin is gone (committed or deleted): leftovers.
            Some(Err(Error::PendingGivenUp { .. } | Error::PendingNotFound { .. })) | None => None,
            // A begin record rbk did not write: its parts name no session that can hold
            // them; they are leftovers too.
            Some(Err(Error::CorruptManifest { .. })) => None,
            Some(Err(e)) => return Err(e),
        };
        match held {
            Some(p) => live.extend(parts(repo, &p)?),
            None => leftovers.push(l),
        }
    }
    Ok((live, leftovers))
}
