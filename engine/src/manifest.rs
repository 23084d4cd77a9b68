//! The manifest: the record of one backup of one module. Byte layout in `docs/format.md`.
//!
//! A manifest lists every file of the module's state with its ordered chunk ids, grouped the
//! way the module is: module-level files, then per task the depot partitions (segments and
//! offsets), PState partitions (RocksDB directories) and topology progress files.

use rbk_chunkstore::ChunkId;

use crate::backup_id::{BackupId, validate_module_name};
use crate::wire::{Dec, DecResult, Enc};
use crate::{Error, Result};

pub const MAGIC: &[u8; 8] = b"RBKMANIF";
/// Written by this rbk. Version 1 (no owners, no directory entries, no session) still
/// decodes.
pub const VERSION: u32 = 2;
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
        let mut out = Vec::new();
        for t in &self.tasks {
            out.push(format!("tasks/{}", t.task));
            out.extend(t.depots.iter().map(|d| depot_dir(t.task, &d.name)));
            out.extend(t.pstates.iter().map(|p| pstate_dir(t.task, &p.name)));
            out.extend(t.topologies.iter().map(|p| topology_dir(t.task, &p.name)));
        }
        out
    }

    /// Every file with its path relative to the module dir.
    pub fn files(&self) -> Vec<(String, &FileEntry)> {
        let mut out: Vec<(String, &FileEntry)> = self
            .module_files
            .iter()
            .map(|f| (f.path.clone(), f))
            .collect();
        for t in &self.tasks {
            let groups = (t
                .depots
                .iter()
                .map(|d| (depot_dir(t.task, &d.name), &d.files)))
            .chain(
                t.pstates
                    .iter()
                    .map(|p| (pstate_dir(t.task, &p.name), &p.files)),
            )
            .chain(
                t.topologies
                    .iter()
                    .map(|p| (topology_dir(t.task, &p.name), &p.files)),
            );
            for (dir, files) in groups {
                out.extend(files.iter().map(|f| (format!("{dir}/{}", f.path), f)));
            }
        }
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.0.extend_from_slice(MAGIC);
        e.u32(VERSION);
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
        e.count(self.tasks.len());
        for t in &self.tasks {
            e.u32(t.task);
            e.count(t.depots.len());
            for d in &t.depots {
                e.str(&d.name);
                e.u64(d.start_offset);
                e.u64(d.end_offset);
                enc_files(&mut e, &d.files);
            }
            e.count(t.pstates.len());
            for p in &t.pstates {
                e.str(&p.name);
                enc_files(&mut e, &p.files);
            }
            e.count(t.topologies.len());
            for p in &t.topologies {
                e.str(&p.name);
                match p.commit_id {
                    Some(c) => {
                        e.u8(1);
                        e.u64(c);
                    }
                    None => e.u8(0),
                }
                enc_files(&mut e, &p.files);
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

    /// Decodes and checks a manifest read from object `key`.
    ///
    /// # Errors
    /// `CorruptManifest` naming `key` for any malformed, truncated, altered or future-version
    /// input. Never panics.
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Manifest> {
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
        let m = decode_body(&mut d, version).map_err(corrupt)?;
        if d.remaining() != 0 {
            return Err(corrupt(format!(
                "{} trailing bytes after the body",
                d.remaining()
            )));
        }
        Ok(m)
    }
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
    let nt = d.count(16)?;
    let mut tasks = Vec::with_capacity(nt);
    for _ in 0..nt {
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
            let commit_id = match d.u8()? {
                0 => None,
                1 => Some(d.u64()?),
                t => return Err(format!("bad commit id tag {t}")),
            };
            topologies.push(TopologyEntry {
                name,
                commit_id,
                files: dec_files(d, version)?,
            });
        }
        tasks.push(TaskEntry {
            task,
            depots,
            pstates,
            topologies,
        });
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
    };
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
            proptest::collection::vec(task, 0..4),
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

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn encode_decode_is_identity(m in manifest()) {
            // Random paths may repeat or nest under a file: decoding rejects those trees.
            prop_assume!(m.check_tree().is_ok());
            let bytes = m.encode();
            prop_assert_eq!(Manifest::decode("k", &bytes).unwrap(), m);
        }

        #[test]
        fn decode_never_panics_on_mutations(m in manifest(), pos in any::<usize>(), bit in 0u8..8) {
            let mut bytes = m.encode();
            let i = pos % bytes.len();
            bytes[i] ^= 1 << bit;
            let r = Manifest::decode("k", &bytes);
            prop_assert!(matches!(r, Err(Error::CorruptManifest { .. })), "mutation accepted");
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
        };
        let bytes = m.encode();
        for cut in 0..bytes.len() {
            assert!(
                matches!(
                    Manifest::decode("k", &bytes[..cut]),
                    Err(Error::CorruptManifest { .. })
                ),
                "cut {cut}"
            );
        }
    }
}
