//! The manifest: the record of one backup of one module. Byte layout in `docs/format.md`.
//!
//! A manifest lists every file of the module's state with its ordered chunk ids, grouped the
//! way the module is: module-level files, then per task the depot partitions (segments and
//! offsets), PState partitions (RocksDB directories) and topology progress files.
//!
//! Version 3 keeps each task in a *task object* of its own, stored like a file (its pieces
//! are ordinary chunks), and the manifest lists, per task, a summary and a [`TaskRef`]: the
//! object's hash and pieces. A task that did not change encodes to the same object, whose
//! pieces are already stored, so it costs no new chunk. [`ManifestObject`] is a manifest as
//! decoded, its tasks possibly not read yet; a [`Manifest`] has every task.

use rbk_chunkstore::ChunkId;

use crate::backup_id::{BackupId, validate_module_name};
use crate::wire::{Dec, DecResult, Enc};
use crate::{Error, Result};

pub const MAGIC: &[u8; 8] = b"RBKMANIF";
/// Written by this rbk into stores of version 5 (tasks in task objects). Stores of older
/// versions get version 2 (tasks inline), which the rbk that made them reads. Version 1 (no
/// owners, no directory entries, no session) still decodes.
pub const VERSION: u32 = 3;
/// The version of manifests whose tasks are inline.
pub const INLINE_VERSION: u32 = 2;
/// Magic of a task object.
pub const TASK_MAGIC: &[u8; 8] = b"RBKTASK1";
/// Version of the task object encoding.
pub const TASK_VERSION: u32 = 1;
const TASK_HEADER_LEN: usize = 16;
const HEADER_LEN: usize = 24;
const CHECKSUM_LEN: usize = 32;
/// Manifests larger than this are refused before reading (about 8 million chunk ids).
pub const MAX_MANIFEST_LEN: usize = rbk_chunkstore::provider::limits::MANIFEST as usize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    pub backup_id: BackupId,
    pub created_ms: u64,
    pub rbk_version: String,
    /// Task count from module.json.
    pub task_count: u32,
    pub stats: BackupStats,
    /// Files directly in the module dir (module.json, module.jar, config-overrides.json,
    /// dynamic-options.json, and any other file found there).
    pub module_files: Vec<FileEntry>,
    pub tasks: Vec<TaskEntry>,
    /// Mode and owner of every directory of the module, the module dir itself (`""`)
    /// included (version 2; empty in version 1 manifests).
    pub dir_meta: Vec<DirMeta>,
    /// The session that wrote it (version 2): a manifest the store wrote after that
    /// session's tombstone was never committed (docs/gc.md, "The commit window").
    pub session: Option<String>,
    /// Version 3: where each task of `tasks` is stored, in the same order. Empty for a
    /// manifest whose tasks are inline (it encodes as version 2).
    pub task_refs: Vec<TaskRef>,
}

/// A stored task object: which task, what it holds in brief (what a reader without the
/// chunks shows), and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskRef {
    pub task: u32,
    pub summary: TaskSummary,
    /// BLAKE3 of the task object: its name.
    pub hash: [u8; 32],
    /// BLAKE3 of what replicas of the task must agree on ([`TaskEntry::content_hash`]):
    /// paths, sizes, chunks, offsets and commit ids, not times, inodes or owners.
    pub content: [u8; 32],
    /// Length of the task object in bytes.
    pub len: u64,
    /// The object's pieces, in order: chunks like any file's.
    pub pieces: Vec<ChunkId>,
}

/// A task in brief: per object, its files and bytes, and the depots' offsets and the
/// topologies' commit ids.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskSummary {
    pub depots: Vec<DepotSummary>,
    pub pstates: Vec<GroupSummary>,
    pub topologies: Vec<TopologySummary>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    pub name: String,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepotSummary {
    pub name: String,
    pub start_offset: u64,
    pub end_offset: u64,
    /// Segments.
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologySummary {
    pub name: String,
    pub commit_id: Option<u64>,
    pub files: u64,
    pub bytes: u64,
}

impl TaskSummary {
    pub fn of(t: &TaskEntry) -> TaskSummary {
        let count = |files: &[FileEntry]| (files.len() as u64, files.iter().map(|f| f.size).sum());
        TaskSummary {
            depots: t
                .depots
                .iter()
                .map(|d| {
                    let (files, bytes) = count(&d.files);
                    DepotSummary {
                        name: d.name.clone(),
                        start_offset: d.start_offset,
                        end_offset: d.end_offset,
                        files,
                        bytes,
                    }
                })
                .collect(),
            pstates: t
                .pstates
                .iter()
                .map(|p| {
                    let (files, bytes) = count(&p.files);
                    GroupSummary {
                        name: p.name.clone(),
                        files,
                        bytes,
                    }
                })
                .collect(),
            topologies: t
                .topologies
                .iter()
                .map(|p| {
                    let (files, bytes) = count(&p.files);
                    TopologySummary {
                        name: p.name.clone(),
                        commit_id: p.commit_id,
                        files,
                        bytes,
                    }
                })
                .collect(),
        }
    }

    /// Files and bytes of the whole task. Saturating: a summary is decoded from the store.
    pub fn totals(&self) -> (u64, u64) {
        let groups = self
            .depots
            .iter()
            .map(|d| (d.files, d.bytes))
            .chain(self.pstates.iter().map(|p| (p.files, p.bytes)))
            .chain(self.topologies.iter().map(|p| (p.files, p.bytes)));
        groups.fold((0, 0), |(f, b), (gf, gb)| {
            (f.saturating_add(gf), b.saturating_add(gb))
        })
    }
}

pub use crate::layout::Owner;

/// One directory: where (relative to the module dir), its permission bits and owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirMeta {
    pub path: String,
    pub mode: u32,
    pub owner: Option<Owner>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupStats {
    pub logical_bytes: u64,
    pub files: u64,
    /// Files not re-read because identity, size and mtime matched the previous backup.
    pub files_reused: u64,
    pub new_chunks: u64,
    pub new_stored_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskEntry {
    pub task: u32,
    pub depots: Vec<DepotEntry>,
    pub pstates: Vec<ObjectEntry>,
    pub topologies: Vec<TopologyEntry>,
}

/// One depot partition. `start_offset` is the first offset of the oldest segment,
/// `end_offset` the offset after the last complete record of the newest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepotEntry {
    pub name: String,
    pub start_offset: u64,
    pub end_offset: u64,
    pub files: Vec<FileEntry>,
}

/// One PState partition: every file of its RocksDB directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectEntry {
    pub name: String,
    pub files: Vec<FileEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopologyEntry {
    pub name: String,
    /// `commit_id` from progress.json, when it had one.
    pub commit_id: Option<u64>,
    pub files: Vec<FileEntry>,
}

/// One file: where it goes, how long it is, its chunks in order, and the source identity used
/// to skip re-reading it next time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Relative to the object directory, '/'-separated, never `..` or absolute.
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    /// `None` in version 1 manifests.
    pub owner: Option<Owner>,
    pub chunks: Vec<ChunkId>,
}

/// The task a path relative to the module dir is in (`tasks/<task>/…`); `None` for the
/// module's own files and directories.
pub fn task_of_path(path: &str) -> Option<u32> {
    path.strip_prefix("tasks/")?.split('/').next()?.parse().ok()
}

/// What a chunk holds, for accounting ([`crate::ops::stats`]): a file of one of the kinds of
/// a module, or a piece of a task object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkKind {
    Depot,
    PState,
    Topology,
    /// A file directly in the module dir.
    Module,
    TaskObject,
}

/// Where an object's directory is, relative to the module dir.
pub fn depot_dir(task: u32, name: &str) -> String {
    format!("tasks/{task}/depots/{name}")
}
pub fn pstate_dir(task: u32, name: &str) -> String {
    format!("tasks/{task}/pstates/{name}")
}
pub fn topology_dir(task: u32, name: &str) -> String {
    format!("tasks/{task}/topologies/{name}")
}

impl Manifest {
    pub fn module(&self) -> &str {
        &self.backup_id.module
    }

    /// Every directory a restore creates (relative to the module dir), including empty ones.
    pub fn dirs(&self) -> Vec<String> {
        self.tasks.iter().flat_map(TaskEntry::dirs).collect()
    }

    /// Every file with its path relative to the module dir.
    pub fn files(&self) -> Vec<(String, &FileEntry)> {
        let mut out: Vec<(String, &FileEntry)> = self
            .module_files
            .iter()
            .map(|f| (f.path.clone(), f))
            .collect();
        out.extend(self.tasks.iter().flat_map(TaskEntry::files));
        out
    }

    /// The manifest object: version 3 with task references when `task_refs` is set (the
    /// tasks are then in their own objects), else version 2 with the tasks inline.
    pub fn encode(&self) -> Vec<u8> {
        let stored = !self.task_refs.is_empty();
        let mut e = Enc::default();
        e.0.extend_from_slice(MAGIC);
        e.u32(if stored { VERSION } else { INLINE_VERSION });
        e.u32(0); // flags
        e.u64(0); // body length, patched below
        e.str(&self.backup_id.to_string());
        e.u64(self.created_ms);
        e.str(&self.rbk_version);
        e.u32(self.task_count);
        let s = &self.stats;
        for v in [
            s.logical_bytes,
            s.files,
            s.files_reused,
            s.new_chunks,
            s.new_stored_bytes,
        ] {
            e.u64(v);
        }
        enc_files(&mut e, &self.module_files);
        if stored {
            e.count(self.task_refs.len());
            for r in &self.task_refs {
                enc_task_ref(&mut e, r);
            }
        } else {
            e.count(self.tasks.len());
            for t in &self.tasks {
                enc_task(&mut e, t);
            }
        }
        e.count(self.dir_meta.len());
        for d in &self.dir_meta {
            e.str(&d.path);
            e.u32(d.mode);
            enc_owner(&mut e, d.owner);
        }
        e.str(self.session.as_deref().unwrap_or(""));
        let body_len = (e.0.len() - HEADER_LEN) as u64;
        e.0[16..24].copy_from_slice(&body_len.to_le_bytes());
        let sum = blake3::hash(&e.0);
        e.0.extend_from_slice(sum.as_bytes());
        e.0
    }

    /// Every chunk the backup needs: its files' and its task objects'.
    pub fn chunk_ids(&self) -> impl Iterator<Item = &ChunkId> {
        self.module_files
            .iter()
            .chain(self.tasks.iter().flat_map(TaskEntry::file_entries))
            .flat_map(|f| f.chunks.iter())
            .chain(self.task_refs.iter().flat_map(|r| r.pieces.iter()))
    }
}

/// A manifest as decoded from its object: for version 3, its tasks are references to task
/// objects that are not read yet ([`ManifestObject::resolve`]); what a reader without the
/// chunks needs (the backup's id, stats, module files and each task in brief) is here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestObject {
    /// Everything but, for version 3, the tasks (`tasks` is empty, `task_refs` set).
    head: Manifest,
}

impl ManifestObject {
    /// Decodes and checks a manifest read from object `key`.
    ///
    /// # Errors
    /// `CorruptManifest` naming `key` for any malformed, truncated, altered or future-version
    /// input. Never panics.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<ManifestObject> {
        let corrupt = |detail: String| Error::CorruptManifest {
            key: key.into(),
            detail,
        };
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN || &bytes[..8] != MAGIC {
            return Err(corrupt(
                "not an rbk manifest (bad magic or too short)".into(),
            ));
        }
        let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
        if !(1..=VERSION).contains(&version) {
            return Err(corrupt(format!(
                "format version {version} is not supported by this rbk (supports 1 to {VERSION}); upgrade rbk to read it"
            )));
        }
        let body_len = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
        if body_len != (bytes.len() - HEADER_LEN - CHECKSUM_LEN) as u64 {
            return Err(corrupt(format!(
                "length field says {body_len} body bytes, the object has {} (truncated?)",
                bytes.len() - HEADER_LEN - CHECKSUM_LEN
            )));
        }
        let (signed, sum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if blake3::hash(signed).as_bytes() != sum {
            return Err(corrupt(
                "checksum mismatch (the manifest was altered or damaged)".into(),
            ));
        }
        if bytes[12..16] != [0; 4] {
            return Err(corrupt("unknown flags".into()));
        }
        let mut d = Dec::new(&signed[HEADER_LEN..]);
        let head = decode_body(&mut d, version).map_err(corrupt)?;
        if d.remaining() != 0 {
            return Err(corrupt(format!(
                "{} trailing bytes after the body",
                d.remaining()
            )));
        }
        Ok(ManifestObject { head })
    }

    /// The object of `m`: for version 3, without the tasks' files.
    pub fn of(m: &Manifest) -> ManifestObject {
        let mut head = m.clone();
        if !head.task_refs.is_empty() {
            head.tasks.clear();
        }
        ManifestObject { head }
    }

    /// A version 3 manifest of `refs`, for a commit that gathers task objects already
    /// stored. `head.tasks` is ignored.
    pub fn with_refs(mut head: Manifest, refs: Vec<TaskRef>) -> ManifestObject {
        head.tasks.clear();
        head.task_refs = refs;
        ManifestObject { head }
    }

    pub fn encode(&self) -> Vec<u8> {
        self.head.encode()
    }

    pub fn set_stats(&mut self, stats: BackupStats) {
        self.head.stats = stats;
    }

    /// Keeps only the tasks `keep` selects, and the directories of those tasks and of the
    /// module itself (a restore of some tasks: their objects are then the only ones read).
    pub fn retain_tasks(&mut self, keep: impl Fn(u32) -> bool) {
        let head = &mut self.head;
        head.tasks.retain(|t| keep(t.task));
        head.task_refs.retain(|r| keep(r.task));
        head.dir_meta
            .retain(|d| task_of_path(&d.path).is_none_or(&keep));
    }

    /// The manifest's format version as it would be written (2: tasks inline; 3: task
    /// objects).
    pub fn version(&self) -> u32 {
        if self.head.task_refs.is_empty() {
            INLINE_VERSION
        } else {
            VERSION
        }
    }

    pub fn backup_id(&self) -> &BackupId {
        &self.head.backup_id
    }
    pub fn module(&self) -> &str {
        self.head.module()
    }
    pub fn created_ms(&self) -> u64 {
        self.head.created_ms
    }
    pub fn task_count(&self) -> u32 {
        self.head.task_count
    }
    pub fn stats(&self) -> &BackupStats {
        &self.head.stats
    }
    pub fn session(&self) -> Option<&str> {
        self.head.session.as_deref()
    }
    pub fn module_files(&self) -> &[FileEntry] {
        &self.head.module_files
    }
    pub fn dir_meta(&self) -> &[DirMeta] {
        &self.head.dir_meta
    }

    /// The task objects to read (empty when the tasks are inline).
    pub fn task_refs(&self) -> &[TaskRef] {
        &self.head.task_refs
    }

    /// The tasks, when they are inline (version 1 and 2).
    pub fn inline_tasks(&self) -> Option<&[TaskEntry]> {
        self.head
            .task_refs
            .is_empty()
            .then_some(self.head.tasks.as_slice())
    }

    /// Which tasks the backup holds, in its order.
    pub fn task_ids(&self) -> Vec<u32> {
        match self.inline_tasks() {
            Some(tasks) => tasks.iter().map(|t| t.task).collect(),
            None => self.head.task_refs.iter().map(|r| r.task).collect(),
        }
    }

    /// Each task in brief, from the manifest alone.
    pub fn summaries(&self) -> Vec<(u32, TaskSummary)> {
        match self.inline_tasks() {
            Some(tasks) => tasks.iter().map(|t| (t.task, TaskSummary::of(t))).collect(),
            None => self
                .head
                .task_refs
                .iter()
                .map(|r| (r.task, r.summary.clone()))
                .collect(),
        }
    }

    /// Files and bytes of the whole backup, from the manifest alone.
    pub fn totals(&self) -> (u64, u64) {
        let module = self.head.module_files.iter().map(|f| (1, f.size));
        let tasks = self.summaries().into_iter().map(|(_, s)| s.totals());
        module.chain(tasks).fold((0u64, 0u64), |(f, b), (gf, gb)| {
            (f.saturating_add(gf), b.saturating_add(gb))
        })
    }

    /// The manifest, when its tasks are inline (`None` when they are in task objects).
    pub fn into_inline(self) -> Option<Manifest> {
        self.head.task_refs.is_empty().then_some(self.head)
    }

    /// The whole manifest, given the bytes of every task object (`objects[i]` is that of
    /// `task_refs()[i]`), each checked against its reference: length, hash, encoding, task,
    /// summary and content. Then the whole tree is checked as decoding checks a version 2
    /// manifest's.
    ///
    /// # Errors
    /// `CorruptManifest` naming `key` and the task.
    pub fn resolve(self, key: &str, objects: &[&[u8]]) -> Result<Manifest> {
        let head = self.head;
        if head.task_refs.is_empty() {
            return Ok(head);
        }
        assert_eq!(objects.len(), head.task_refs.len(), "one object per task");
        let tasks = head
            .task_refs
            .iter()
            .zip(objects)
            .map(|(r, bytes)| r.decode_object(key, bytes))
            .collect::<Result<Vec<_>>>()?;
        ManifestObject { head }.resolve_read(key, tasks)
    }

    /// The whole manifest, given its tasks already decoded, each from the object of its
    /// reference ([`TaskRef::decode_object`]), in order. Checks the whole tree.
    ///
    /// # Errors
    /// `CorruptManifest` naming `key`.
    pub fn resolve_read(self, key: &str, tasks: Vec<TaskEntry>) -> Result<Manifest> {
        let mut head = self.head;
        if head.task_refs.is_empty() {
            return Ok(head);
        }
        assert!(
            tasks.len() == head.task_refs.len()
                && tasks
                    .iter()
                    .zip(&head.task_refs)
                    .all(|(t, r)| t.task == r.task),
            "one task per reference"
        );
        head.tasks = tasks;
        head.check_tree().map_err(|detail| Error::CorruptManifest {
            key: key.into(),
            detail,
        })?;
        Ok(head)
    }
}

impl TaskEntry {
    /// The task's directory and its objects' (relative to the module dir).
    pub fn dirs(&self) -> Vec<String> {
        let t = self.task;
        let mut out = vec![format!("tasks/{t}")];
        out.extend(self.depots.iter().map(|d| depot_dir(t, &d.name)));
        out.extend(self.pstates.iter().map(|p| pstate_dir(t, &p.name)));
        out.extend(self.topologies.iter().map(|p| topology_dir(t, &p.name)));
        out
    }

    /// Every file of the task (without building its path, unlike [`TaskEntry::files`]).
    pub fn file_entries(&self) -> impl Iterator<Item = &FileEntry> {
        self.files_by_kind().map(|(_, f)| f)
    }

    /// Every file of the task with the kind of object it is in.
    pub fn files_by_kind(&self) -> impl Iterator<Item = (ChunkKind, &FileEntry)> {
        fn tagged(
            kind: ChunkKind,
            files: &[FileEntry],
        ) -> impl Iterator<Item = (ChunkKind, &FileEntry)> {
            files.iter().map(move |f| (kind, f))
        }
        (self
            .depots
            .iter()
            .flat_map(|d| tagged(ChunkKind::Depot, &d.files)))
        .chain(
            self.pstates
                .iter()
                .flat_map(|p| tagged(ChunkKind::PState, &p.files)),
        )
        .chain(
            self.topologies
                .iter()
                .flat_map(|p| tagged(ChunkKind::Topology, &p.files)),
        )
    }

    /// Every file of the task with its path relative to the module dir.
    pub fn files(&self) -> Vec<(String, &FileEntry)> {
        let t = self.task;
        let groups = (self
            .depots
            .iter()
            .map(|d| (depot_dir(t, &d.name), &d.files)))
        .chain(
            self.pstates
                .iter()
                .map(|p| (pstate_dir(t, &p.name), &p.files)),
        )
        .chain(
            self.topologies
                .iter()
                .map(|p| (topology_dir(t, &p.name), &p.files)),
        );
        let mut out = Vec::new();
        for (dir, files) in groups {
            out.extend(files.iter().map(|f| (format!("{dir}/{}", f.path), f)));
        }
        out
    }

    /// The task object: `TASK_MAGIC`, version, flags, then the task as a version 2 manifest
    /// encodes it. The same task always encodes to the same bytes.
    pub fn encode_object(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.0.extend_from_slice(TASK_MAGIC);
        e.u32(TASK_VERSION);
        e.u32(0); // flags
        enc_task(&mut e, self);
        e.0
    }

    /// BLAKE3 of the task's content: what replicas of it on several machines must agree
    /// on (paths, sizes, chunks, depot offsets, commit ids), without what differs between
    /// machines holding the same bytes (times, inodes, owners, permission bits).
    pub fn content_hash(&self) -> [u8; 32] {
        let mut e = Enc::default();
        e.str("rbk task content 1");
        let files = |e: &mut Enc, files: &[FileEntry]| {
            e.count(files.len());
            for f in files {
                e.str(&f.path);
                e.u64(f.size);
                e.count(f.chunks.len());
                for c in &f.chunks {
                    e.id(c);
                }
            }
        };
        e.count(self.depots.len());
        for d in &self.depots {
            e.str(&d.name);
            e.u64(d.start_offset);
            e.u64(d.end_offset);
            files(&mut e, &d.files);
        }
        e.count(self.pstates.len());
        for p in &self.pstates {
            e.str(&p.name);
            files(&mut e, &p.files);
        }
        e.count(self.topologies.len());
        for p in &self.topologies {
            e.str(&p.name);
            enc_commit_id(&mut e, p.commit_id);
            files(&mut e, &p.files);
        }
        *blake3::hash(&e.0).as_bytes()
    }

    /// The reference to this task's object `object` ([`TaskEntry::encode_object`]), stored
    /// as `pieces`.
    pub fn reference(&self, object: &[u8], pieces: Vec<ChunkId>) -> TaskRef {
        TaskRef {
            task: self.task,
            summary: TaskSummary::of(self),
            hash: *blake3::hash(object).as_bytes(),
            content: self.content_hash(),
            len: object.len() as u64,
            pieces,
        }
    }
}

impl TaskRef {
    /// Decodes the task object `bytes` that this reference names, in the manifest `key`.
    ///
    /// # Errors
    /// `CorruptManifest` naming `key` and the task when the bytes are not the object the
    /// reference describes.
    pub fn decode_object(&self, key: &str, bytes: &[u8]) -> Result<TaskEntry> {
        let corrupt = |detail: String| Error::CorruptManifest {
            key: key.into(),
            detail: format!("the object of task {}: {detail}", self.task),
        };
        if bytes.len() as u64 != self.len {
            return Err(corrupt(format!(
                "its pieces hold {} bytes, the manifest records {}",
                bytes.len(),
                self.len
            )));
        }
        if blake3::hash(bytes).as_bytes() != &self.hash {
            return Err(corrupt(
                "its hash differs from the manifest's (altered or damaged)".into(),
            ));
        }
        let task = decode_task_object(bytes).map_err(&corrupt)?;
        if task.task != self.task {
            return Err(corrupt(format!("it holds task {}", task.task)));
        }
        if TaskSummary::of(&task) != self.summary || task.content_hash() != self.content {
            return Err(corrupt("it disagrees with the manifest's summary".into()));
        }
        Ok(task)
    }
}

/// Decodes a task object ([`TaskEntry::encode_object`]).
///
/// # Errors
/// Why the bytes are not a task object. Never panics.
pub fn decode_task_object(bytes: &[u8]) -> DecResult<TaskEntry> {
    if bytes.len() < TASK_HEADER_LEN || &bytes[..8] != TASK_MAGIC {
        return Err("not an rbk task object (bad magic or too short)".into());
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != TASK_VERSION {
        return Err(format!(
            "task object version {version} is not supported by this rbk (supports {TASK_VERSION}); upgrade rbk to read it"
        ));
    }
    if bytes[12..16] != [0; 4] {
        return Err("unknown flags".into());
    }
    let mut d = Dec::new(&bytes[TASK_HEADER_LEN..]);
    let task = dec_task(&mut d, INLINE_VERSION, u32::MAX)?;
    if d.remaining() != 0 {
        return Err(format!("{} trailing bytes after the task", d.remaining()));
    }
    Ok(task)
}

fn enc_commit_id(e: &mut Enc, commit_id: Option<u64>) {
    match commit_id {
        Some(c) => {
            e.u8(1);
            e.u64(c);
        }
        None => e.u8(0),
    }
}

fn dec_commit_id(d: &mut Dec) -> DecResult<Option<u64>> {
    match d.u8()? {
        0 => Ok(None),
        1 => Ok(Some(d.u64()?)),
        t => Err(format!("bad commit id tag {t}")),
    }
}

fn enc_task(e: &mut Enc, t: &TaskEntry) {
    e.u32(t.task);
    e.count(t.depots.len());
    for d in &t.depots {
        e.str(&d.name);
        e.u64(d.start_offset);
        e.u64(d.end_offset);
        enc_files(e, &d.files);
    }
    e.count(t.pstates.len());
    for p in &t.pstates {
        e.str(&p.name);
        enc_files(e, &p.files);
    }
    e.count(t.topologies.len());
    for p in &t.topologies {
        e.str(&p.name);
        enc_commit_id(e, p.commit_id);
        enc_files(e, &p.files);
    }
}

fn enc_task_ref(e: &mut Enc, r: &TaskRef) {
    e.u32(r.task);
    let s = &r.summary;
    e.count(s.depots.len());
    for d in &s.depots {
        e.str(&d.name);
        e.u64(d.start_offset);
        e.u64(d.end_offset);
        e.u64(d.files);
        e.u64(d.bytes);
    }
    e.count(s.pstates.len());
    for p in &s.pstates {
        e.str(&p.name);
        e.u64(p.files);
        e.u64(p.bytes);
    }
    e.count(s.topologies.len());
    for p in &s.topologies {
        e.str(&p.name);
        enc_commit_id(e, p.commit_id);
        e.u64(p.files);
        e.u64(p.bytes);
    }
    e.0.extend_from_slice(&r.hash);
    e.0.extend_from_slice(&r.content);
    e.u64(r.len);
    e.count(r.pieces.len());
    for c in &r.pieces {
        e.id(c);
    }
}

fn dec_task_ref(d: &mut Dec, task_count: u32) -> DecResult<TaskRef> {
    let task = d.u32()?;
    if task >= task_count {
        return Err(format!(
            "task {task} is outside the module's {task_count} tasks"
        ));
    }
    let mut s = TaskSummary::default();
    // Smallest entries: name (4) + 4 × u64; name + 2 × u64; name + tag + 2 × u64.
    for _ in 0..d.count(36)? {
        let name = d.str()?;
        check_name(&name)?;
        s.depots.push(DepotSummary {
            name,
            start_offset: d.u64()?,
            end_offset: d.u64()?,
            files: d.u64()?,
            bytes: d.u64()?,
        });
    }
    for _ in 0..d.count(20)? {
        let name = d.str()?;
        check_name(&name)?;
        s.pstates.push(GroupSummary {
            name,
            files: d.u64()?,
            bytes: d.u64()?,
        });
    }
    for _ in 0..d.count(21)? {
        let name = d.str()?;
        check_name(&name)?;
        s.topologies.push(TopologySummary {
            name,
            commit_id: dec_commit_id(d)?,
            files: d.u64()?,
            bytes: d.u64()?,
        });
    }
    let hash = d.id()?.0;
    let content = d.id()?.0;
    let len = d.u64()?;
    if len > MAX_MANIFEST_LEN as u64 {
        return Err(format!(
            "the object of task {task} is {len} bytes, larger than any rbk writes"
        ));
    }
    let n = d.count(32)?;
    let mut pieces = Vec::with_capacity(n);
    for _ in 0..n {
        pieces.push(d.id()?);
    }
    if pieces.is_empty() {
        return Err(format!("the object of task {task} has no pieces"));
    }
    Ok(TaskRef {
        task,
        summary: s,
        hash,
        content,
        len,
        pieces,
    })
}

fn enc_owner(e: &mut Enc, owner: Option<Owner>) {
    match owner {
        Some(o) => {
            e.u8(1);
            e.u32(o.uid);
            e.u32(o.gid);
        }
        None => e.u8(0),
    }
}

fn dec_owner(d: &mut Dec) -> DecResult<Option<Owner>> {
    match d.u8()? {
        0 => Ok(None),
        1 => Ok(Some(Owner {
            uid: d.u32()?,
            gid: d.u32()?,
        })),
        t => Err(format!("bad owner tag {t}")),
    }
}

fn enc_files(e: &mut Enc, files: &[FileEntry]) {
    e.count(files.len());
    for f in files {
        e.str(&f.path);
        e.u64(f.size);
        e.i64(f.mtime_ns);
        e.u64(f.dev);
        e.u64(f.ino);
        e.u32(f.mode);
        enc_owner(e, f.owner);
        e.count(f.chunks.len());
        for c in &f.chunks {
            e.id(c);
        }
    }
}

/// A path inside an object directory must stay inside it.
fn check_rel_path(p: &str) -> DecResult<()> {
    let ok = !p.is_empty()
        && !p.starts_with('/')
        && !p.contains('\\')
        && !p.chars().any(char::is_control)
        && p.split('/').all(|s| !s.is_empty() && s != "." && s != "..");
    if ok {
        Ok(())
    } else {
        Err(format!("unsafe file path `{p}`"))
    }
}

/// Object names are single directory names.
fn check_name(n: &str) -> DecResult<()> {
    if n.contains('/') {
        Err(format!("unsafe object name `{n}`"))
    } else {
        check_rel_path(n)
    }
}

fn dec_files(d: &mut Dec, version: u32) -> DecResult<Vec<FileEntry>> {
    // Smallest file entry: empty path (4) + 8 + 8 + 8 + 8 + 4 + chunk count (4).
    let n = d.count(44)?;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let path = d.str()?;
        check_rel_path(&path)?;
        let size = d.u64()?;
        let mtime_ns = d.i64()?;
        let dev = d.u64()?;
        let ino = d.u64()?;
        let mode = d.u32()?;
        let owner = if version >= 2 { dec_owner(d)? } else { None };
        let nc = d.count(32)?;
        let mut chunks = Vec::with_capacity(nc);
        for _ in 0..nc {
            chunks.push(d.id()?);
        }
        if size > 0 && chunks.is_empty() {
            return Err(format!("file `{path}` has {size} bytes but no chunks"));
        }
        out.push(FileEntry {
            path,
            size,
            mtime_ns,
            dev,
            ino,
            mode,
            owner,
            chunks,
        });
    }
    Ok(out)
}

fn dec_task(d: &mut Dec, version: u32, task_count: u32) -> DecResult<TaskEntry> {
    let task = d.u32()?;
    if task >= task_count {
        return Err(format!(
            "task {task} is outside the module's {task_count} tasks"
        ));
    }
    let nd = d.count(24)?;
    let mut depots = Vec::with_capacity(nd);
    for _ in 0..nd {
        let name = d.str()?;
        check_name(&name)?;
        let start_offset = d.u64()?;
        let end_offset = d.u64()?;
        depots.push(DepotEntry {
            name,
            start_offset,
            end_offset,
            files: dec_files(d, version)?,
        });
    }
    let np = d.count(8)?;
    let mut pstates = Vec::with_capacity(np);
    for _ in 0..np {
        let name = d.str()?;
        check_name(&name)?;
        pstates.push(ObjectEntry {
            name,
            files: dec_files(d, version)?,
        });
    }
    let ntop = d.count(9)?;
    let mut topologies = Vec::with_capacity(ntop);
    for _ in 0..ntop {
        let name = d.str()?;
        check_name(&name)?;
        let commit_id = dec_commit_id(d)?;
        topologies.push(TopologyEntry {
            name,
            commit_id,
            files: dec_files(d, version)?,
        });
    }
    Ok(TaskEntry {
        task,
        depots,
        pstates,
        topologies,
    })
}

fn decode_body(d: &mut Dec, version: u32) -> DecResult<Manifest> {
    let id_str = d.str()?;
    let backup_id = BackupId::parse(&id_str).map_err(|e| e.to_string())?;
    validate_module_name(&backup_id.module).map_err(|e| e.to_string())?;
    let created_ms = d.u64()?;
    let rbk_version = d.str()?;
    let task_count = d.u32()?;
    let stats = BackupStats {
        logical_bytes: d.u64()?,
        files: d.u64()?,
        files_reused: d.u64()?,
        new_chunks: d.u64()?,
        new_stored_bytes: d.u64()?,
    };
    let module_files = dec_files(d, version)?;
    let mut tasks = Vec::new();
    let mut task_refs = Vec::new();
    if version >= 3 {
        // Smallest reference: task, three empty vecs, two hashes, length, one piece.
        let n = d.count(4 + 12 + 64 + 8 + 4 + 32)?;
        task_refs.reserve(n);
        let mut seen = std::collections::HashSet::with_capacity(n);
        for _ in 0..n {
            let r = dec_task_ref(d, task_count)?;
            if !seen.insert(r.task) {
                return Err(format!("task {} is listed twice", r.task));
            }
            task_refs.push(r);
        }
        if task_refs.is_empty() {
            return Err("a version 3 manifest without tasks".into());
        }
    } else {
        let nt = d.count(16)?;
        tasks.reserve(nt);
        for _ in 0..nt {
            tasks.push(dec_task(d, version, task_count)?);
        }
    }
    let mut dir_meta = Vec::new();
    let mut session = None;
    if version >= 2 {
        // Smallest entry: empty path (4) + mode (4) + owner tag (1).
        let n = d.count(9)?;
        dir_meta.reserve(n);
        for _ in 0..n {
            let path = d.str()?;
            if !path.is_empty() {
                check_rel_path(&path)?;
            }
            dir_meta.push(DirMeta {
                path,
                mode: d.u32()?,
                owner: dec_owner(d)?,
            });
        }
        let s = d.str()?;
        if s.len() > 64 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(format!("bad session id `{s}`"));
        }
        session = (!s.is_empty()).then_some(s);
    }
    let m = Manifest {
        backup_id,
        created_ms,
        rbk_version,
        task_count,
        stats,
        module_files,
        tasks,
        dir_meta,
        session,
        task_refs,
    };
    // The tree of a version 3 manifest is checked once its tasks are read.
    m.check_tree()?;
    Ok(m)
}

/// Why a file whose chunks add up to `chunk_bytes` cannot be restored as the manifest says,
/// if it cannot. Verify and restore both ask this, so verify passes only what restores.
pub fn file_length_problem(declared: u64, chunk_bytes: u64) -> Option<String> {
    (declared != chunk_bytes).then(|| {
        format!("its chunks add up to {chunk_bytes} bytes but the manifest records {declared}")
    })
}

impl Manifest {
    /// The tree a restore would write is one it can write: no path twice, no file where a
    /// directory must be, a total size that fits a u64. Part of decoding, so `verify`
    /// rejects every manifest `restore` would.
    pub(crate) fn check_tree(&self) -> DecResult<()> {
        let files = self.files();
        let mut total: u64 = 0;
        let mut paths = std::collections::HashSet::with_capacity(files.len());
        for (rel, f) in &files {
            total = total
                .checked_add(f.size)
                .ok_or_else(|| "file sizes add up to more than 2^64 bytes".to_string())?;
            if !paths.insert(rel.as_str()) {
                return Err(format!("file `{rel}` is listed twice"));
            }
        }
        // Every directory the restore creates: the objects' dirs, and every ancestor of
        // those and of each file.
        let object_dirs = self.dirs();
        let mut dirs: std::collections::HashSet<&str> =
            object_dirs.iter().map(String::as_str).collect();
        for p in files.iter().map(|(rel, _)| rel).chain(&object_dirs) {
            let mut end = 0;
            while let Some(i) = p[end..].find('/') {
                dirs.insert(&p[..end + i]);
                end += i + 1;
            }
        }
        dirs.extend(self.dir_meta.iter().map(|d| d.path.as_str()));
        for d in &dirs {
            if paths.contains(d) {
                return Err(format!("`{d}` is listed as a file but must be a directory"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file() -> impl Strategy<Value = FileEntry> {
        (
            "[a-z0-9]{1,8}(/[a-z0-9][a-z0-9.]{0,7}){0,2}",
            any::<u64>(),
            any::<i64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            proptest::option::of((any::<u32>(), any::<u32>())),
            proptest::collection::vec(any::<[u8; 32]>(), 1..4),
        )
            .prop_map(
                |(path, size, mtime_ns, dev, ino, mode, owner, ids)| FileEntry {
                    path,
                    size,
                    mtime_ns,
                    dev,
                    ino,
                    mode,
                    owner: owner.map(|(uid, gid)| Owner { uid, gid }),
                    chunks: ids.into_iter().map(ChunkId).collect(),
                },
            )
    }

    fn manifest() -> impl Strategy<Value = Manifest> {
        let files = || proptest::collection::vec(file(), 0..3);
        let task = (
            0u32..8,
            proptest::collection::vec(("[a-z]{1,6}", any::<u64>(), any::<u64>(), files()), 0..2),
            proptest::collection::vec(("[a-z]{1,6}", files()), 0..2),
            proptest::collection::vec(
                ("[a-z]{1,6}", proptest::option::of(any::<u64>()), files()),
                0..2,
            ),
        )
            .prop_map(|(task, d, p, t)| TaskEntry {
                task,
                depots: d
                    .into_iter()
                    .map(|(name, start_offset, end_offset, files)| DepotEntry {
                        name,
                        start_offset,
                        end_offset,
                        files,
                    })
                    .collect(),
                pstates: p
                    .into_iter()
                    .map(|(name, files)| ObjectEntry { name, files })
                    .collect(),
                topologies: t
                    .into_iter()
                    .map(|(name, commit_id, files)| TopologyEntry {
                        name,
                        commit_id,
                        files,
                    })
                    .collect(),
            });
        (
            "[a-zA-Z][a-zA-Z.]{0,19}",
            any::<u64>(),
            any::<u8>(),
            any::<[u64; 5]>(),
            files(),
            proptest::collection::vec(task, 0..5),
            proptest::collection::vec(
                (
                    "(|[a-z]{1,6}(/[a-z]{1,6}){0,2})",
                    any::<u32>(),
                    proptest::option::of((any::<u32>(), any::<u32>())),
                ),
                0..3,
            ),
        )
            .prop_map(
                |(module, millis, suffix, s, module_files, tasks, dirs)| Manifest {
                    backup_id: BackupId {
                        module,
                        millis: millis >> 1,
                        suffix,
                    },
                    created_ms: millis,
                    rbk_version: "0.1.0".into(),
                    task_count: 8,
                    stats: BackupStats {
                        logical_bytes: s[0],
                        files: s[1],
                        files_reused: s[2],
                        new_chunks: s[3],
                        new_stored_bytes: s[4],
                    },
                    module_files,
                    tasks,
                    session: (millis % 2 == 0).then(|| format!("{millis:013}-00000000000000ab")),
                    task_refs: vec![],
                    dir_meta: dirs
                        .into_iter()
                        .map(|(path, mode, owner)| DirMeta {
                            path,
                            mode,
                            owner: owner.map(|(uid, gid)| Owner { uid, gid }),
                        })
                        .collect(),
                },
            )
    }

    /// `m` with its tasks in task objects: the references and each object's bytes (its
    /// pieces are made up; resolving takes the bytes as given).
    fn stored(mut m: Manifest) -> (Manifest, Vec<Vec<u8>>) {
        let objects: Vec<Vec<u8>> = m.tasks.iter().map(TaskEntry::encode_object).collect();
        m.task_refs = m
            .tasks
            .iter()
            .zip(&objects)
            .map(|(t, o)| t.reference(o, vec![ChunkId::of(o)]))
            .collect();
        (m, objects)
    }

    fn decode(bytes: &[u8]) -> Result<ManifestObject> {
        ManifestObject::decode("k", bytes)
    }

    /// `m` with each task id once, and whether it still has a task: what a version 3
    /// manifest holds.
    fn distinct_tasks(mut m: Manifest) -> (Manifest, bool) {
        let mut ids = std::collections::HashSet::new();
        m.tasks.retain(|t| ids.insert(t.task));
        let any = !m.tasks.is_empty();
        (m, any)
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            // Random trees often repeat a path; those are rejected, not failures.
            max_global_rejects: 50_000,
            ..ProptestConfig::with_cases(200)
        })]
        #[test]
        fn encode_decode_is_identity(m in manifest()) {
            // Random paths may repeat or nest under a file: decoding rejects those trees.
            prop_assume!(m.check_tree().is_ok());
            let bytes = m.encode();
            prop_assert_eq!(bytes[8], 2);
            prop_assert_eq!(decode(&bytes).unwrap().into_inline().unwrap(), m);
        }

        #[test]
        fn decode_never_panics_on_mutations(m in manifest(), pos in any::<usize>(), bit in 0u8..8) {
            let mut bytes = m.encode();
            let i = pos % bytes.len();
            bytes[i] ^= 1 << bit;
            let r = decode(&bytes);
            prop_assert!(matches!(r, Err(Error::CorruptManifest { .. })), "mutation accepted");
        }

        /// Version 3: the manifest reads without its task objects (summaries, ids, totals),
        /// and with them resolves to exactly the manifest written.
        #[test]
        fn task_objects_resolve_to_the_manifest_written(m in manifest()) {
            let (m, any) = distinct_tasks(m);
            prop_assume!(any && m.check_tree().is_ok());
            let (m, objects) = stored(m);
            let bytes = m.encode();
            prop_assert_eq!(bytes[8], 3);
            let object = decode(&bytes).unwrap();
            prop_assert_eq!(object.task_ids(), m.tasks.iter().map(|t| t.task).collect::<Vec<_>>());
            let summaries: Vec<(u32, TaskSummary)> =
                m.tasks.iter().map(|t| (t.task, TaskSummary::of(t))).collect();
            prop_assert_eq!(object.summaries(), summaries);
            prop_assert_eq!(object.clone(), ManifestObject::of(&m));
            prop_assert!(object.clone().into_inline().is_none());
            let objs: Vec<&[u8]> = objects.iter().map(Vec::as_slice).collect();
            prop_assert_eq!(object.resolve("k", &objs).unwrap(), m);
        }

        /// Any change to a task object's bytes is caught, whichever check catches it.
        #[test]
        fn altered_task_objects_are_refused(m in manifest(), pos in any::<usize>(), bit in 0u8..8) {
            let (m, any) = distinct_tasks(m);
            prop_assume!(any && m.check_tree().is_ok());
            let (m, mut objects) = stored(m);
            let object = decode(&m.encode()).unwrap();
            let t = pos % objects.len();
            let i = pos % objects[t].len();
            objects[t][i] ^= 1 << bit;
            let objs: Vec<&[u8]> = objects.iter().map(Vec::as_slice).collect();
            let r = object.resolve("k", &objs);
            prop_assert!(matches!(r, Err(Error::CorruptManifest { .. })), "altered object accepted");
        }

        #[test]
        fn task_object_decoding_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut b = TASK_MAGIC.to_vec();
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&[0; 4]);
            b.extend_from_slice(&bytes);
            let _ = decode_task_object(&b);
        }
    }

    /// A replica's task object differs in times and inodes; its content hash does not. Any
    /// difference in what is restored changes it.
    #[test]
    fn content_hash_ignores_machine_details_only() {
        let f = FileEntry {
            path: "000.sst".into(),
            size: 3,
            mtime_ns: 1,
            dev: 2,
            ino: 3,
            mode: 0o644,
            owner: None,
            chunks: vec![ChunkId([7; 32])],
        };
        let task = |f: FileEntry, commit_id| TaskEntry {
            task: 1,
            depots: vec![],
            pstates: vec![ObjectEntry {
                name: "p".into(),
                files: vec![f],
            }],
            topologies: vec![TopologyEntry {
                name: "t".into(),
                commit_id,
                files: vec![],
            }],
        };
        let a = task(f.clone(), Some(4));
        let elsewhere = task(
            FileEntry {
                mtime_ns: 9,
                dev: 8,
                ino: 7,
                mode: 0o600,
                owner: Some(Owner { uid: 1, gid: 1 }),
                ..f.clone()
            },
            Some(4),
        );
        assert_ne!(a.encode_object(), elsewhere.encode_object());
        assert_eq!(a.content_hash(), elsewhere.content_hash());
        for other in [
            task(
                FileEntry {
                    size: 4,
                    ..f.clone()
                },
                Some(4),
            ),
            task(
                FileEntry {
                    path: "001.sst".into(),
                    ..f.clone()
                },
                Some(4),
            ),
            task(
                FileEntry {
                    chunks: vec![ChunkId([8; 32])],
                    ..f.clone()
                },
                Some(4),
            ),
            task(f.clone(), Some(5)),
            task(f.clone(), None),
        ] {
            assert_ne!(a.content_hash(), other.content_hash(), "{other:?}");
        }
    }

    #[test]
    fn every_truncation_is_rejected() {
        let m = Manifest {
            backup_id: BackupId::parse("m-0000000000000001-00").unwrap(),
            created_ms: 1,
            rbk_version: "t".into(),
            task_count: 1,
            stats: BackupStats::default(),
            module_files: vec![],
            tasks: vec![TaskEntry {
                task: 0,
                depots: vec![],
                pstates: vec![],
                topologies: vec![],
            }],
            dir_meta: vec![DirMeta {
                path: String::new(),
                mode: 0o750,
                owner: Some(Owner { uid: 1, gid: 2 }),
            }],
            session: Some("1700000000000-00000000000000ab".into()),
            task_refs: vec![],
        };
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    ManifestObject::decode("k", &bytes[..cut]),
                    Err(Error::CorruptManifest { .. })
                ),
                "cut {cut}"
            );
        }
    }
}
