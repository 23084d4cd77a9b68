//! The on-disk layout of a module's state (see docs/ARCHITECTURE.md, "Module layout"):
//!
//! ```text
//! <data-dir>/modules/<module>/module.json, module.jar, config-overrides.json, dynamic-options.json
//!     tasks/<task>/depots/<depot>/<20-digit first offset>.seg
//!     tasks/<task>/pstates/<pstate>/...          a RocksDB directory
//!     tasks/<task>/topologies/<topology>/progress.json
//! ```
//! Scanning validates the shape and collects every regular file with the metadata used for
//! incremental backups. Anything that does not fit is an error naming the path, never skipped
//! silently: a backup that leaves out state is worse than none.

pub mod deps;
pub mod epochs;
pub mod journal;
pub mod liveness;
pub mod snapshot_dir;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::backup_id::validate_module_name;
use crate::depot::segment_first_offset;
use crate::{Error, Result};

pub const MODULES_DIR: &str = "modules";
/// The most rbk reads of a small JSON file of a module (module.json, dynamic-options.json,
/// progress.json): they are a few hundred bytes; anything this big is not one.
pub const MAX_META_FILE_LEN: u64 = 1 << 20;
pub use crate::backup_id::RBK_TEMP_PREFIX;

/// A file's or directory's owner, restored when the restore runs as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// What rbk reads from module.json; the file itself is backed up byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleMeta {
    pub name: String,
    pub tasks: u32,
}

impl ModuleMeta {
    /// # Errors
    /// `Layout` naming `path` when the JSON is malformed or lacks `name`/`tasks`.
    pub fn parse(path: &Path, bytes: &[u8]) -> Result<Self> {
        let v: Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::layout(path, format!("module.json is not valid JSON: {e}")))?;
        Self::from_value(path, &v)
    }

    /// [`ModuleMeta::parse`] of module.json already parsed.
    ///
    /// # Errors
    /// As [`ModuleMeta::parse`].
    pub fn from_value(path: &Path, v: &Value) -> Result<Self> {
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::layout(path, "module.json has no string `name`"))?;
        let tasks = v
            .get("tasks")
            .and_then(Value::as_u64)
            .ok_or_else(|| Error::layout(path, "module.json has no integer `tasks`"))?;
        if tasks == 0 || !tasks.is_power_of_two() || tasks > 1 << 20 {
            return Err(Error::layout(
                path,
                format!("`tasks` is {tasks}; it must be a power of two"),
            ));
        }
        Ok(ModuleMeta {
            name: name.into(),
            tasks: tasks as u32,
        })
    }
}

/// A regular file found by the scan.
#[derive(Debug, Clone)]
pub struct ScannedFile {
    /// Relative to its object directory.
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub dev: u64,
    pub ino: u64,
    pub mode: u32,
    pub ctime_ns: i64,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    /// `size` is a length captured by a snapshot, not the file's: a live depot segment that
    /// keeps growing past it (so its mtime says nothing about the captured bytes).
    pub capped: bool,
}

/// How a file may change while a backup reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Growth {
    /// Only by appending (depot segments, WALs, MANIFESTs, LOG): bytes past the scanned
    /// length may appear; the scanned prefix is what is stored.
    AppendOnly,
    /// Not at all while it is read.
    None,
}

impl ScannedFile {
    pub fn owner(&self) -> Owner {
        Owner {
            uid: self.uid,
            gid: self.gid,
        }
    }

    /// Opens the file the scan saw, and only that one: not a symlink or FIFO put in its
    /// place since (never followed, never blocked on), not another file renamed over it
    /// (dev/inode checked on the opened descriptor), not one changed since the scan.
    ///
    /// # Errors
    /// `FileChanged` naming the file when it is not the scanned one any more; I/O errors.
    pub fn open(&self, growth: Growth) -> Result<fs::File> {
        let (file, md) = rbk_chunkstore::safe_fs::open_regular(&self.abs).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidInput {
                Error::changed(&self.abs, format!("it was replaced since the scan: it {e}"))
            } else {
                Error::io(&self.abs, e)
            }
        })?;
        if (md.dev(), md.ino()) != (self.dev, self.ino) {
            return Err(Error::changed(
                &self.abs,
                "another file was put in its place since the scan",
            ));
        }
        self.check_unchanged(&md, growth)?;
        Ok(file)
    }

    /// Checks the metadata of the open file (`fstat`, at open and again after the read)
    /// against the scan's: a backup never commits a torn file.
    ///
    /// Size and mtime must be as scanned (an append-only file may have grown past the
    /// scanned length, never shrunk). ctime catches a rewrite that reset mtime, but a new or
    /// removed hard link also moves it (RocksDB checkpoints link SSTs, compaction unlinks
    /// them), so it is compared only while the link count stays what the scan saw.
    ///
    /// # Errors
    /// `FileChanged` naming the file and what changed.
    pub fn check_unchanged(&self, md: &fs::Metadata, growth: Growth) -> Result<()> {
        let mtime_ns = time_ns(md.mtime(), md.mtime_nsec());
        let ctime_ns = time_ns(md.ctime(), md.ctime_nsec());
        let what = match growth {
            _ if md.len() < self.size => Some(format!(
                "it shrank from {} to {} bytes",
                self.size,
                md.len()
            )),
            Growth::AppendOnly => None,
            Growth::None if md.len() != self.size => {
                Some(format!("it grew from {} to {} bytes", self.size, md.len()))
            }
            // A capped segment's bytes past the cap are not ours; its mtime moves with them.
            Growth::None if !self.capped && mtime_ns != self.mtime_ns => {
                Some("it was modified (mtime moved)".to_string())
            }
            Growth::None
                if !self.capped && md.nlink() == self.nlink && ctime_ns != self.ctime_ns =>
            {
                Some("it was rewritten (ctime moved)".to_string())
            }
            Growth::None => None,
        };
        match what {
            Some(what) => Err(Error::changed(&self.abs, what)),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ScannedObject {
    pub name: String,
    pub files: Vec<ScannedFile>,
}

#[derive(Debug, Clone)]
pub struct ScannedTask {
    pub task: u32,
    /// Depot partitions; their files are segments sorted by first offset.
    pub depots: Vec<ScannedObject>,
    pub pstates: Vec<ScannedObject>,
    pub topologies: Vec<ScannedObject>,
}

#[derive(Debug, Clone)]
pub struct ModuleScan {
    pub dir: PathBuf,
    pub meta: ModuleMeta,
    pub module_files: Vec<ScannedFile>,
    pub tasks: Vec<ScannedTask>,
    /// Every directory, the module dir itself (`""`) first, relative to the module dir.
    pub dirs: Vec<ScannedDir>,
}

/// A directory found by the scan: its mode and owner are backed up, its empty-ness too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedDir {
    pub rel: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl ScannedDir {
    fn new(module_dir: &Path, path: &Path, md: &fs::Metadata) -> ScannedDir {
        ScannedDir {
            rel: path
                .strip_prefix(module_dir)
                .map(|r| r.to_string_lossy().into_owned())
                .unwrap_or_default(),
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        }
    }
}

pub fn module_dir(data_dir: &Path, module: &str) -> PathBuf {
    data_dir.join(MODULES_DIR).join(module)
}

/// Names of the module dirs in `data_dir`, sorted; rbk's own `.rbk-*` entries left out. A
/// data dir without `modules/` has none.
pub fn module_names(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(data_dir.join(MODULES_DIR))
        .map(|it| {
            it.flatten()
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn file_name(path: &Path) -> Result<String> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_string)
        .ok_or_else(|| Error::layout(path, "file name is not valid UTF-8"))
}

/// A file time in ns since the epoch, saturating outside 1677..2262 (i64 ns) instead of
/// wrapping into a wrong time.
pub fn time_ns(secs: i64, nsec: i64) -> i64 {
    secs.saturating_mul(1_000_000_000).saturating_add(nsec)
}

fn scanned(abs: PathBuf, rel: String, md: &fs::Metadata) -> ScannedFile {
    ScannedFile {
        rel,
        abs,
        size: md.len(),
        mtime_ns: time_ns(md.mtime(), md.mtime_nsec()),
        dev: md.dev(),
        ino: md.ino(),
        mode: md.mode() & 0o7777,
        ctime_ns: time_ns(md.ctime(), md.ctime_nsec()),
        nlink: md.nlink(),
        uid: md.uid(),
        gid: md.gid(),
        capped: false,
    }
}

/// Sorted entries of a directory: (path, name, metadata without following symlinks).
fn entries(dir: &Path) -> Result<Vec<(PathBuf, String, fs::Metadata)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let e = e.map_err(|e| Error::io(dir, e))?;
        let path = e.path();
        let name = file_name(&path)?;
        let md = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
        if md.file_type().is_symlink() {
            return Err(Error::layout(
                &path,
                "symbolic links are not allowed in module state (rbk backs up real files only)",
            ));
        }
        if !md.is_file() && !md.is_dir() {
            return Err(Error::layout(&path, "not a regular file or directory"));
        }
        out.push((path, name, md));
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// Every regular file under `dir`, recursively, with paths relative to `dir`; the
/// directories met on the way go to `dirs`.
fn files_under(
    dir: &Path,
    prefix: &str,
    out: &mut Vec<ScannedFile>,
    dirs: &mut Dirs,
) -> Result<()> {
    for (path, name, md) in entries(dir)? {
        let rel = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        if md.is_dir() {
            dirs.add(&path, &md);
            files_under(&path, &rel, out, dirs)?;
        } else {
            out.push(scanned(path, rel, &md));
        }
    }
    Ok(())
}

/// The directories a scan meets, relative to the module dir.
struct Dirs {
    module_dir: PathBuf,
    found: Vec<ScannedDir>,
}

impl Dirs {
    fn add(&mut self, path: &Path, md: &fs::Metadata) {
        self.found.push(ScannedDir::new(&self.module_dir, path, md));
    }
}

/// Subdirectories of `dir` (one per object); a regular file there is a layout error.
fn objects(dir: &Path, what: &str, depot: bool, dirs: &mut Dirs) -> Result<Vec<ScannedObject>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for (path, name, md) in entries(dir)? {
        if !md.is_dir() {
            return Err(Error::layout(
                &path,
                format!("expected a {what} directory, found a file"),
            ));
        }
        dirs.add(&path, &md);
        let mut files = Vec::new();
        if depot {
            for (seg, seg_name, md) in entries(&path)? {
                if !md.is_file() || segment_first_offset(&seg_name).is_none() {
                    return Err(Error::layout(
                        &seg,
                        "a depot partition holds only segment files named <20-digit offset>.seg",
                    ));
                }
                files.push(scanned(seg, seg_name, &md));
            }
        } else {
            files_under(&path, "", &mut files, dirs)?;
        }
        out.push(ScannedObject { name, files });
    }
    Ok(out)
}

/// Scans and validates `<data_dir>/modules/<module>`.
///
/// # Errors
/// `DataDirMissing`, `ModuleNotFound`, `Layout` naming the offending path, I/O errors.
pub fn scan_module(data_dir: &Path, module: &str) -> Result<ModuleScan> {
    validate_module_name(module)?;
    if !data_dir.is_dir() {
        return Err(Error::DataDirMissing {
            path: data_dir.into(),
        });
    }
    let dir = module_dir(data_dir, module);
    if !dir.is_dir() {
        return Err(Error::ModuleNotFound {
            module: module.into(),
            path: dir,
        });
    }
    let meta_path = dir.join("module.json");
    let meta_bytes = match rbk_chunkstore::safe_fs::read_limited(&meta_path, MAX_META_FILE_LEN) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::layout(&meta_path, "module.json is missing"));
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
            ) =>
        {
            return Err(Error::layout(&meta_path, format!("module.json {e}")));
        }
        Err(e) => return Err(Error::io(&meta_path, e)),
    };
    let meta = ModuleMeta::parse(&meta_path, &meta_bytes)?;
    if meta.name != module {
        return Err(Error::layout(
            &meta_path,
            format!(
                "module.json names module `{}` but its directory is `{module}`",
                meta.name
            ),
        ));
    }
    let mut module_files = Vec::new();
    let mut tasks = Vec::new();
    let module_md = fs::symlink_metadata(&dir).map_err(|e| Error::io(&dir, e))?;
    let mut dirs = Dirs {
        module_dir: dir.clone(),
        found: vec![ScannedDir::new(&dir, &dir, &module_md)],
    };
    for (path, name, md) in entries(&dir)? {
        if md.is_file() {
            module_files.push(scanned(path, name, &md));
            continue;
        }
        if name != "tasks" {
            return Err(Error::layout(
                &path,
                "unexpected directory; a module dir holds only files and `tasks/`",
            ));
        }
        dirs.add(&path, &md);
        for (tpath, tname, tmd) in entries(&path)? {
            let task: u32 = match tname.parse::<u32>() {
                Ok(t) if tmd.is_dir() && t < meta.tasks && t.to_string() == tname => t,
                _ => {
                    return Err(Error::layout(
                        &tpath,
                        format!(
                            "expected a task directory named 0..{} (module.json says {} tasks)",
                            meta.tasks - 1,
                            meta.tasks
                        ),
                    ));
                }
            };
            dirs.add(&tpath, &tmd);
            for (sub, sname, smd) in entries(&tpath)? {
                if !smd.is_dir() || !matches!(sname.as_str(), "depots" | "pstates" | "topologies") {
                    return Err(Error::layout(
                        &sub,
                        "a task dir holds only `depots/`, `pstates/` and `topologies/`",
                    ));
                }
                dirs.add(&sub, &smd);
            }
            tasks.push(ScannedTask {
                task,
                depots: objects(&tpath.join("depots"), "depot partition", true, &mut dirs)?,
                pstates: objects(&tpath.join("pstates"), "PState partition", false, &mut dirs)?,
                topologies: objects(&tpath.join("topologies"), "topology", false, &mut dirs)?,
            });
        }
    }
    tasks.sort_by_key(|t| t.task);
    Ok(ModuleScan {
        dir,
        meta,
        module_files,
        tasks,
        dirs: dirs.found,
    })
}

/// Temp file + fsync + rename + fsync of the directory: readers see the old file or the new
/// one, and after a crash the new one is there if this returned. A file replaced keeps its
/// permission bits.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().expect("has a parent");
    let tmp = dir.join(format!(".tmp-{:08x}", rand::random::<u32>()));
    let mut f = fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let written = (|| {
        if let Ok(md) = fs::symlink_metadata(path) {
            f.set_permissions(fs::Permissions::from_mode(md.mode() & 0o7777))?;
        }
        f.write_all(bytes)?;
        f.sync_all()
    })();
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io(dir, e))
}
