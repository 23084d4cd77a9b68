//! A running module: its PState partitions open in RocksDB, its depot partitions open for
//! appends, and one thread per topology turning depot records into PState writes.
//!
//! Progress lives in RocksDB beside the data it describes, under the reserved key
//! [`PROGRESS_KEY`]`<topology>`:
//! - microbatch: every partition of every PState of the topology holds
//!   `{"commit_id": N, "ranges": [[start, end], …]}` (one depot range per task), written in
//!   the same write batch as batch N's data. A crash between two partitions' writes leaves
//!   some at N and some at N-1; on start the latter redo batch N from the recorded ranges
//!   (exact, because topology code derives a partition's writes from that partition alone).
//! - stream: partition (first PState, task t) holds `{"processed": n}` for depot partition t,
//!   written after each record's data (at-least-once across a crash, like Rama's streams).
//!
//! `progress.json` files in the data dir are written when the module stops (and into every
//! snapshot); while it runs, RocksDB is the truth.
//!
//! Commits take the module's *gate* for reading; a snapshot takes it for writing, so it sees
//! every partition between two commits (microbatch) or two records (stream).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use rocksdb::{DB, Options, WriteBatch};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::builtin::lookup;
use super::definition::{Ctx, Definition, ForeignDepot, Kind, TopologyDef, task_of};
use crate::depot::{DepotCursor, DepotWriter, partition_bounds};
use crate::layout::deps::{foreign_depot, subscribes};
use crate::layout::epochs::EpochWatch;
use crate::layout::{ModuleMeta, module_dir, write_atomically};
use crate::manifest::{depot_dir, pstate_dir, topology_dir};
use crate::{Error, Result};

/// Reserved PState key prefix of a topology's progress record (followed by its name).
pub const PROGRESS_KEY: &[u8] = b"\x00rbk.progress/";

#[derive(Debug, Clone)]
pub struct HostOptions {
    /// Depot segments roll past this size.
    pub segment_bytes: u64,
    /// Most records one microbatch takes from one depot partition.
    pub max_batch: u64,
}

impl Default for HostOptions {
    fn default() -> Self {
        HostOptions {
            segment_bytes: 8 << 20,
            max_batch: 5_000,
        }
    }
}

/// Where a topology is: per task, the next depot offset to process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopoProgress {
    /// Microbatch only.
    pub commit_id: Option<u64>,
    pub processed: Vec<u64>,
}

#[derive(Debug, Serialize, Deserialize, PartialEq, Eq, Clone)]
pub(crate) struct StoredBatch {
    pub commit_id: u64,
    pub ranges: Vec<(u64, u64)>,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct StoredStream {
    pub processed: u64,
}

pub(crate) fn progress_key(topology: &str) -> Vec<u8> {
    [PROGRESS_KEY, topology.as_bytes()].concat()
}

fn rerr(what: impl std::fmt::Display, e: rocksdb::Error) -> Error {
    Error::database(what, e)
}

pub(crate) fn rocks_options() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_write_buffer_size(4 << 20);
    o.set_keep_log_file_num(2);
    o
}

/// How module.json and progress.json name the depot `depot`, of module `reads` if given.
fn subscribed(reads: Option<&str>, depot: &str) -> String {
    match reads {
        Some(m) => format!("{m}/*{depot}"),
        None => format!("*{depot}"),
    }
}

/// The `progress.json` of one task of one topology, as the layout describes it.
pub(crate) fn progress_json(topo: &TopologyDef, p: &TopoProgress, task: u32) -> Vec<u8> {
    let key = subscribed(topo.reads.as_ref().map(|r| r.module.as_str()), topo.depot);
    let mut v = json!({ "processed": { key: p.processed[task as usize] } });
    if let Some(c) = p.commit_id {
        v["commit_id"] = json!(c);
    }
    serde_json::to_vec_pretty(&v).expect("json")
}

/// What snapshots cost the module's writers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PauseStats {
    pub snapshots: u64,
    /// Longest and latest pause of a snapshot: from asking for the gate until releasing it.
    pub max: Duration,
    pub last: Duration,
    /// Longest time a snapshot held the gate: the most any commit could be stalled.
    pub max_held: Duration,
    /// The longest any commit waited for the gate: the write stall backups actually caused.
    pub longest_commit_wait: Duration,
}

pub struct RunningModule {
    pub name: String,
    pub(crate) data_dir: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) tasks: u32,
    pub(crate) def: Arc<dyn Definition>,
    pub(crate) topologies: Vec<TopologyDef>,
    /// (pstate, task) → open partition.
    pub(crate) dbs: HashMap<(String, u32), Arc<DB>>,
    /// (depot, task) → writer.
    pub(crate) depots: HashMap<(String, u32), Mutex<DepotWriter>>,
    pub(crate) gate: RwLock<()>,
    pub(crate) progress: Mutex<BTreeMap<String, TopoProgress>>,
    pub(crate) pauses: Mutex<PauseStats>,
    /// Microseconds; kept apart from `pauses` so commits only touch an atomic.
    longest_commit_wait_us: AtomicU64,
    stop: AtomicBool,
    failure: Mutex<Option<String>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    max_batch: u64,
}

impl std::fmt::Debug for RunningModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningModule")
            .field("name", &self.name)
            .field("tasks", &self.tasks)
            .field("definition", &self.def.id())
            .finish()
    }
}

/// The definition a module.json selects with `rbk.definition`, if any.
///
/// # Errors
/// `Layout` for a module.json that cannot be read or parsed.
pub fn definition_of(module_dir: &Path) -> Result<Option<Arc<dyn Definition>>> {
    Ok(load_module_json(module_dir)?.1)
}

/// module.json, read once: what rbk needs of it and the definition it selects, if any.
///
/// # Errors
/// I/O errors; `Layout` for JSON that is malformed or lacks `name`/`tasks`.
pub(crate) fn load_module_json(
    module_dir: &Path,
) -> Result<(ModuleMeta, Option<Arc<dyn Definition>>)> {
    load_module_value(module_dir).map(|(meta, def, _)| (meta, def))
}

/// What module.json says: its metadata, the definition it selects and the whole JSON.
pub(crate) type ModuleJson = (ModuleMeta, Option<Arc<dyn Definition>>, serde_json::Value);

/// [`load_module_json`], with the whole JSON.
pub(crate) fn load_module_value(module_dir: &Path) -> Result<ModuleJson> {
    let path = module_dir.join("module.json");
    let bytes = rbk_chunkstore::safe_fs::read_limited(&path, crate::layout::MAX_META_FILE_LEN)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
                Error::layout(&path, format!("module.json {e}"))
            }
            _ => Error::io(&path, e),
        })?;
    let v: serde_json::Value = serde_json::from_slice(&bytes)
        .map_err(|e| Error::layout(&path, format!("module.json is not valid JSON: {e}")))?;
    let meta = ModuleMeta::from_value(&path, &v)?;
    let def = v
        .get("rbk.definition")
        .and_then(|d| d.as_str())
        .and_then(lookup);
    Ok((meta, def, v))
}

/// Names of the topologies module.json (`v`) says read another module's depot (a
/// `subscribes` entry `M/*d`).
pub(crate) fn foreign_readers(v: &serde_json::Value) -> std::collections::HashSet<String> {
    subscribes(v)
        .filter(|(_, _, s)| s.as_str().is_some_and(|s| s.contains('/')))
        .filter_map(|(_, name, _)| name.map(String::from))
        .collect()
}

/// Fills in [`TopologyDef::reads`] from module.json (`v`, at `path`): a topology whose
/// `subscribes` names `M/*depot` reads module M's depot, which must be in the data dir.
fn resolve_reads(
    data_dir: &Path,
    own: &str,
    path: &Path,
    v: &serde_json::Value,
    topologies: &mut [TopologyDef],
) -> Result<()> {
    for topo in topologies {
        let what = format!("topology {} subscribes entry", topo.name);
        // The first topology of that name in module.json, as before.
        let first = subscribes(v)
            .find(|(_, name, _)| *name == Some(topo.name))
            .map(|(i, _, _)| i);
        for sub in subscribes(v)
            .filter(|(i, _, _)| Some(*i) == first)
            .filter_map(|(_, _, s)| s.as_str())
        {
            let Some((module, depot)) = foreign_depot(path, &what, sub)? else {
                continue;
            };
            if module == own || depot.dir_name() != topo.depot {
                continue;
            }
            if topo.kind != Kind::Stream {
                return Err(Error::layout(
                    path,
                    format!(
                        "{what} `{sub}`: only stream topologies may read another module's depot"
                    ),
                ));
            }
            let other = module_dir(data_dir, module);
            if !other.join("module.json").exists() {
                return Err(Error::InvalidInput(format!(
                    "module {own}: topology {} reads `{sub}`, but module {module} is not in \
                     data dir `{}`; create or restore it first",
                    topo.name,
                    data_dir.display()
                )));
            }
            let (meta, _) = load_module_json(&other)?;
            topo.reads = Some(ForeignDepot {
                module: module.to_string(),
                tasks: meta.tasks,
            });
        }
    }
    Ok(())
}

/// Writes a new, empty module run by definition `def_id` into `data_dir`.
///
/// # Errors
/// `InvalidInput` for an unknown definition, a bad task count or an existing module; I/O.
pub fn create_module(data_dir: &Path, name: &str, tasks: u32, def_id: &str) -> Result<PathBuf> {
    create_module_reading(data_dir, name, tasks, def_id, None)
}

/// [`create_module`] whose topologies read their depot of module `reads` instead of their
/// own (e.g. two `relay` modules reading each other's `*events`); module.json then says so
/// in `subscribes` and `dependencies`.
///
/// # Errors
/// As [`create_module`], and `InvalidInput` for a bad module name in `reads`.
pub fn create_module_reading(
    data_dir: &Path,
    name: &str,
    tasks: u32,
    def_id: &str,
    reads: Option<&str>,
) -> Result<PathBuf> {
    if let Some(m) = reads {
        crate::backup_id::validate_module_name(m)?;
    }
    crate::backup_id::validate_module_name(name)?;
    let def = lookup(def_id).ok_or_else(|| {
        Error::InvalidInput(format!(
            "unknown module definition `{def_id}`; built in: `{}`",
            super::builtin::IDS.join("`, `")
        ))
    })?;
    if tasks == 0 || !tasks.is_power_of_two() {
        return Err(Error::InvalidInput(format!(
            "tasks is {tasks}; it must be a power of two"
        )));
    }
    let dir = module_dir(data_dir, name);
    if dir.exists() {
        return Err(Error::InvalidInput(format!(
            "module dir `{}` already exists",
            dir.display()
        )));
    }
    let topos = def.topologies();
    let meta = json!({
        "name": name,
        "tasks": tasks,
        "depots": def.depots().iter().map(|d| json!({"name": format!("*{d}")})).collect::<Vec<_>>(),
        "pstates": topos.iter().flat_map(|t| t.pstates.iter().map(move |p| json!({"name": format!("$${p}"), "topology": t.name}))).collect::<Vec<_>>(),
        "topologies": topos.iter().map(|t| json!({"name": t.name, "kind": t.kind.as_str(), "subscribes": [subscribed(reads, t.depot)]})).collect::<Vec<_>>(),
        "dependencies": reads.iter().flat_map(|m| topos.iter().map(move |t| json!({"module": m, "depot": format!("*{}", t.depot)}))).collect::<Vec<_>>(),
        "rbk.definition": def_id,
    });
    let write = |rel: &str, bytes: &[u8]| -> Result<()> {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&p, bytes).map_err(|e| Error::io(&p, e))
    };
    write(
        "module.json",
        &serde_json::to_vec_pretty(&meta).expect("json"),
    )?;
    // An opaque artifact of a realistic size; deterministic so backups deduplicate it.
    let jar: Vec<u8> = (0..256 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    write("module.jar", &jar)?;
    write("config-overrides.json", b"{}\n")?;
    write("dynamic-options.json", b"{}\n")?;
    for t in 0..tasks {
        for d in def.depots() {
            let p = dir.join(depot_dir(t, d));
            std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        }
        for topo in &topos {
            let p = dir.join(topology_dir(t, topo.name));
            std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(dir)
}

impl RunningModule {
    /// Opens the module's state, finishes a microbatch a crash left half-committed, and
    /// starts its topologies.
    ///
    /// # Errors
    /// `ModuleNotFound`, `Layout`, `InvalidInput` (no known definition), `Database` (RocksDB
    /// errors — e.g. a PState locked by another process), I/O errors.
    pub fn open(data_dir: &Path, name: &str, opts: &HostOptions) -> Result<Arc<Self>> {
        let dir = module_dir(data_dir, name);
        if !dir.is_dir() {
            return Err(Error::ModuleNotFound {
                module: name.into(),
                path: dir,
            });
        }
        let (meta, def, json) = load_module_value(&dir)?;
        let def = def.ok_or_else(|| {
            Error::InvalidInput(format!(
                "module `{name}` names no module definition this host knows (`rbk.definition` \
                 in `{}`: built in are `bank` and `pageviews`)",
                dir.join("module.json").display()
            ))
        })?;
        // This host runs a module in one process, every task of it (it creates what is
        // missing). A module placed on several workers holds only some tasks here: running it
        // would make empty stand-ins of the others, whose parts would then clash with the
        // real ones (docs/distributed.md, "Running modules").
        if let Some(w) = json.get("workers").and_then(serde_json::Value::as_u64)
            && w > 1
        {
            return Err(Error::InvalidInput(format!(
                "module `{name}` is placed on {w} workers (`workers` in `{}`): this host runs a module in one process, with all its tasks, and cannot run one spread over several machines. Back up its files with `rbk backup part` on each machine instead",
                dir.join("module.json").display()
            )));
        }
        let mut topologies = def.topologies();
        resolve_reads(
            data_dir,
            name,
            &dir.join("module.json"),
            &json,
            &mut topologies,
        )?;
        let mut dbs = HashMap::new();
        for topo in &topologies {
            for p in topo.pstates {
                for t in 0..meta.tasks {
                    let path = dir.join(pstate_dir(t, p));
                    std::fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
                    let db = DB::open(&rocks_options(), &path)
                        .map_err(|e| rerr(format!("opening `{}`", path.display()), e))?;
                    dbs.insert((p.to_string(), t), Arc::new(db));
                }
            }
            for t in 0..meta.tasks {
                let p = dir.join(topology_dir(t, topo.name));
                std::fs::create_dir_all(&p).map_err(|e| Error::io(&p, e))?;
            }
        }
        let mut depots = HashMap::new();
        for d in def.depots() {
            for t in 0..meta.tasks {
                let path = dir.join(depot_dir(t, d));
                let w = DepotWriter::open(&path, opts.segment_bytes)
                    .map_err(|e| Error::io(&path, e))?;
                depots.insert((d.to_string(), t), Mutex::new(w));
            }
        }
        let m = RunningModule {
            name: name.into(),
            data_dir: data_dir.into(),
            dir,
            tasks: meta.tasks,
            def,
            topologies,
            dbs,
            depots,
            gate: RwLock::new(()),
            progress: Mutex::new(BTreeMap::new()),
            pauses: Mutex::new(PauseStats::default()),
            longest_commit_wait_us: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            failure: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            max_batch: opts.max_batch,
        };
        for topo in &m.topologies {
            let mut p = m.recover(topo)?;
            // The module it reads may have been restored to fewer records meanwhile.
            m.clamp_to_source(topo, &mut p.processed)?;
            m.progress.lock().expect("lock").insert(topo.name.into(), p);
        }
        let m = Arc::new(m);
        for topo in m.topologies.clone() {
            let mm = m.clone();
            let handle = std::thread::Builder::new()
                .name(format!("topology {}", topo.name))
                .spawn(move || {
                    if let Err(e) = mm.run_topology(&topo) {
                        tracing::error!("module {}: topology {} stopped: {e}", mm.name, topo.name);
                        *mm.failure.lock().expect("lock") =
                            Some(format!("topology {}: {e}", topo.name));
                    }
                })
                .map_err(|e| Error::io(&m.dir, e))?;
            m.threads.lock().expect("lock").push(handle);
        }
        Ok(m)
    }

    fn db(&self, pstate: &str, task: u32) -> &DB {
        &self.dbs[&(pstate.to_string(), task)]
    }

    fn read_stored<T: for<'de> Deserialize<'de>>(
        &self,
        pstate: &str,
        task: u32,
        topology: &str,
    ) -> Result<Option<T>> {
        let raw = self
            .db(pstate, task)
            .get(progress_key(topology))
            .map_err(|e| rerr(format!("reading progress of {topology}"), e))?;
        raw.map(|b| {
            serde_json::from_slice(&b).map_err(|e| {
                Error::InvalidInput(format!(
                    "progress record of topology {topology} in PState $${pstate} task {task} is \
                     damaged: {e}"
                ))
            })
        })
        .transpose()
    }

    /// Reads a topology's progress; for a microbatch, completes a half-committed batch.
    fn recover(&self, topo: &TopologyDef) -> Result<TopoProgress> {
        let tasks = self.tasks;
        if topo.kind == Kind::Stream {
            let mut processed = Vec::new();
            for t in 0..tasks {
                let s: Option<StoredStream> = self.read_stored(topo.pstates[0], t, topo.name)?;
                processed.push(s.map_or(0, |s| s.processed));
            }
            return Ok(TopoProgress {
                commit_id: None,
                processed,
            });
        }
        let mut parts = Vec::new();
        for p in topo.pstates {
            for t in 0..tasks {
                let s: Option<StoredBatch> = self.read_stored(p, t, topo.name)?;
                parts.push(((p.to_string(), t), s));
            }
        }
        let newest = parts
            .iter()
            .filter_map(|(_, s)| s.clone())
            .max_by_key(|s| s.commit_id);
        let Some(newest) = newest else {
            return Ok(TopoProgress {
                commit_id: Some(0),
                processed: vec![0; tasks as usize],
            });
        };
        if newest.ranges.len() != tasks as usize {
            return Err(Error::InvalidInput(format!(
                "topology {} recorded {} depot ranges for {tasks} tasks",
                topo.name,
                newest.ranges.len()
            )));
        }
        let behind: Vec<(String, u32)> = parts
            .iter()
            .filter(|(_, s)| s.as_ref().map(|s| s.commit_id) != Some(newest.commit_id))
            .map(|(k, _)| k.clone())
            .collect();
        for (k, s) in &parts {
            let c = s.as_ref().map_or(0, |s| s.commit_id);
            if c + 1 < newest.commit_id {
                return Err(Error::InvalidInput(format!(
                    "PState $${} task {} is at commit {c} but others at {}: more than one \
                     microbatch apart, which a crash cannot cause; restore a backup",
                    k.0, k.1, newest.commit_id
                )));
            }
        }
        if !behind.is_empty() {
            tracing::warn!(
                "module {}: redoing microbatch {} of {} on {} partition(s) a crash left behind",
                self.name,
                newest.commit_id,
                topo.name,
                behind.len()
            );
            let records = self.read_ranges(topo, &newest.ranges)?;
            let mut ctx = Ctx::new(tasks, Some(&self.dbs));
            for r in records.iter().flatten() {
                self.def.apply(topo.name, r, &mut ctx)?;
            }
            self.commit_batch(topo, ctx, &newest, Some(behind.as_slice()))?;
        }
        Ok(TopoProgress {
            commit_id: Some(newest.commit_id),
            processed: newest.ranges.iter().map(|r| r.1).collect(),
        })
    }

    fn read_ranges(&self, topo: &TopologyDef, ranges: &[(u64, u64)]) -> Result<Vec<Vec<Vec<u8>>>> {
        let mut out = Vec::new();
        for (t, (start, end)) in ranges.iter().enumerate() {
            let dir = self.dir.join(depot_dir(t as u32, topo.depot));
            let mut c = DepotCursor::new(&dir, *start);
            let mut recs = Vec::new();
            c.read_until(*end, &mut recs)
                .map_err(|e| Error::io(&dir, e))?;
            if c.position() != *end {
                return Err(Error::InvalidInput(format!(
                    "depot partition `{}` ends at {} but topology {} processed up to {end}",
                    dir.display(),
                    c.position(),
                    topo.name
                )));
            }
            out.push(recs);
        }
        Ok(out)
    }

    /// Writes a batch's staged data and its progress record to every partition of the
    /// topology (or only to `only`), one RocksDB write batch per partition.
    fn commit_batch(
        &self,
        topo: &TopologyDef,
        ctx: Ctx,
        batch: &StoredBatch,
        only: Option<&[(String, u32)]>,
    ) -> Result<()> {
        let record = serde_json::to_vec(batch).expect("json");
        let mut staged = ctx.staged;
        for p in topo.pstates {
            for t in 0..self.tasks {
                let part = (p.to_string(), t);
                if only.is_some_and(|o| !o.contains(&part)) {
                    continue;
                }
                let mut wb = WriteBatch::default();
                for (k, v) in staged.remove(&part).unwrap_or_default() {
                    wb.put(k, v);
                }
                wb.put(progress_key(topo.name), &record);
                self.db(p, t)
                    .write(wb)
                    .map_err(|e| rerr(format!("committing $${p} task {t}"), e))?;
            }
        }
        Ok(())
    }

    /// Enters the gate to commit, recording how long a snapshot made the commit wait.
    fn enter_gate(&self) -> RwLockReadGuard<'_, ()> {
        let asked = std::time::Instant::now();
        let g = self.gate.read().expect("gate");
        self.longest_commit_wait_us
            .fetch_max(asked.elapsed().as_micros() as u64, Ordering::Relaxed);
        g
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    fn depot_end(&self, depot: &str, task: u32) -> u64 {
        self.depots[&(depot.to_string(), task)]
            .lock()
            .expect("lock")
            .end_offset()
    }

    /// Partition `task` of the depot `topo` reads (its own module's or another's).
    fn source_dir(&self, topo: &TopologyDef, task: u32) -> PathBuf {
        match &topo.reads {
            None => self.dir.join(depot_dir(task, topo.depot)),
            Some(f) => {
                module_dir(&self.data_dir, &f.module).join(depot_dir(task % f.tasks, topo.depot))
            }
        }
    }

    /// Records in partition `task` of the depot `topo` reads.
    fn source_end(&self, topo: &TopologyDef, task: u32) -> u64 {
        match &topo.reads {
            None => self.depot_end(topo.depot, task),
            Some(_) => partition_bounds(&self.source_dir(topo, task)).map_or(0, |(_, end)| end),
        }
    }

    /// For a topology reading another module's depot: clamps each task's next offset into
    /// the partition as it is now (`[start, end]`), persisting and logging what moved. The
    /// other module may have been restored to an older state, and then the records it
    /// appends next take offsets this topology already passed (docs/architecture.md,
    /// "Modules that read each other").
    fn clamp_to_source(&self, topo: &TopologyDef, processed: &mut [u64]) -> Result<()> {
        let Some(reads) = &topo.reads else {
            return Ok(());
        };
        for (t, next) in processed.iter_mut().enumerate() {
            let dir = self.source_dir(topo, t as u32);
            let (start, end) = partition_bounds(&dir).map_err(|e| Error::io(&dir, e))?;
            let to = (*next).min(end).max(start);
            if to == *next {
                continue;
            }
            tracing::warn!(
                "module {} topology {} task {t}: {}/*{} now holds offsets {start}..{end}; \
                 next offset reset from {} to {to}",
                self.name,
                topo.name,
                reads.module,
                topo.depot,
                *next
            );
            let stored = serde_json::to_vec(&StoredStream { processed: to }).expect("json");
            let _gate = self.enter_gate();
            self.db(topo.pstates[0], t as u32)
                .put(progress_key(topo.name), stored)
                .map_err(|e| rerr(format!("writing progress of {}", topo.name), e))?;
            *next = to;
            if let Some(p) = self.progress.lock().expect("lock").get_mut(topo.name) {
                p.processed[t] = to;
            }
        }
        Ok(())
    }

    fn run_topology(&self, topo: &TopologyDef) -> Result<()> {
        let start = self.progress.lock().expect("lock")[topo.name].clone();
        let cursors_at = |processed: &[u64]| -> Vec<DepotCursor> {
            (0..self.tasks)
                .map(|t| DepotCursor::new(&self.source_dir(topo, t), processed[t as usize]))
                .collect()
        };
        let mut cursors = cursors_at(&start.processed);
        // A restore of the module read shows as a new restore epoch of it.
        let mut epochs = topo
            .reads
            .as_ref()
            .map(|r| EpochWatch::new(&self.data_dir, &r.module));
        let mut commit_id = start.commit_id.unwrap_or(0);
        while !self.stopping() {
            let mut batch: Vec<Vec<Vec<u8>>> = Vec::with_capacity(self.tasks as usize);
            let mut ranges = Vec::with_capacity(self.tasks as usize);
            for (t, c) in cursors.iter_mut().enumerate() {
                let from = c.position();
                let to = match topo.reads {
                    // Another module's partition: whatever is complete (cursors never
                    // return a torn record).
                    Some(_) => from + self.max_batch,
                    None => self
                        .depot_end(topo.depot, t as u32)
                        .min(from + self.max_batch),
                };
                let mut recs = Vec::new();
                c.read_until(to, &mut recs)
                    .map_err(|e| Error::io(self.source_dir(topo, t as u32), e))?;
                ranges.push((from, c.position()));
                batch.push(recs);
            }
            // Checked after reading: a restore writes its epoch before the restored module
            // runs again, so records of the restored state are only read after the epoch is
            // there, and such a batch is dropped here rather than applied at stale offsets.
            if let Some(w) = epochs.as_mut()
                && w.poll()?.is_some()
            {
                let mut processed = self.progress.lock().expect("lock")[topo.name]
                    .processed
                    .clone();
                self.clamp_to_source(topo, &mut processed)?;
                cursors = cursors_at(&processed);
                continue;
            }
            if batch.iter().all(Vec::is_empty) {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            match topo.kind {
                Kind::Microbatch => {
                    // Computed outside the gate (this thread is the partitions' only
                    // writer); only the commit makes a snapshot wait.
                    let mut ctx = Ctx::new(self.tasks, Some(&self.dbs));
                    for r in batch.iter().flatten() {
                        self.def.apply(topo.name, r, &mut ctx)?;
                    }
                    commit_id += 1;
                    let stored = StoredBatch { commit_id, ranges };
                    let _gate = self.enter_gate();
                    self.commit_batch(topo, ctx, &stored, None)?;
                    let mut prog = self.progress.lock().expect("lock");
                    let p = prog.get_mut(topo.name).expect("topology");
                    p.commit_id = Some(commit_id);
                    p.processed = stored.ranges.iter().map(|r| r.1).collect();
                }
                Kind::Stream => {
                    for (t, recs) in batch.iter().enumerate() {
                        for (i, r) in recs.iter().enumerate() {
                            self.apply_stream_record(
                                topo,
                                t as u32,
                                ranges[t].0 + i as u64 + 1,
                                r,
                            )?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// One stream record: each touched partition written on its own, then the progress of
    /// the record's depot partition; all between two snapshots.
    fn apply_stream_record(
        &self,
        topo: &TopologyDef,
        task: u32,
        next: u64,
        record: &[u8],
    ) -> Result<()> {
        let mut ctx = Ctx::new(self.tasks, Some(&self.dbs));
        self.def.apply(topo.name, record, &mut ctx)?;
        let _gate = self.enter_gate();
        for ((p, t), kvs) in std::mem::take(&mut ctx.staged) {
            let mut wb = WriteBatch::default();
            for (k, v) in kvs {
                wb.put(k, v);
            }
            self.db(&p, t)
                .write(wb)
                .map_err(|e| rerr(format!("writing $${p} task {t}"), e))?;
        }
        let stored = serde_json::to_vec(&StoredStream { processed: next }).expect("json");
        self.db(topo.pstates[0], task)
            .put(progress_key(topo.name), stored)
            .map_err(|e| rerr(format!("writing progress of {}", topo.name), e))?;
        let mut prog = self.progress.lock().expect("lock");
        prog.get_mut(topo.name).expect("topology").processed[task as usize] = next;
        Ok(())
    }

    /// Appends a record to `depot`, in the partition owning `key`; returns (task, offset).
    ///
    /// # Errors
    /// `InvalidInput` for an unknown depot or a stopped module; I/O errors.
    pub fn append(&self, depot: &str, key: &[u8], payload: &[u8]) -> Result<(u32, u64)> {
        if self.stopping() {
            return Err(Error::InvalidInput(format!(
                "module {} is stopped",
                self.name
            )));
        }
        let task = task_of(key, self.tasks);
        let w = self.depots.get(&(depot.to_string(), task)).ok_or_else(|| {
            Error::InvalidInput(format!("module {} has no depot *{depot}", self.name))
        })?;
        let mut w = w.lock().expect("lock");
        let offset = w
            .append(payload)
            .map_err(|e| Error::io(self.dir.join(depot_dir(task, depot)), e))?;
        Ok((task, offset))
    }

    /// Deletes the segments of every partition of `depot` whose records all precede
    /// `before` *and* every topology reading the depot has processed. Returns how many.
    ///
    /// # Errors
    /// `InvalidInput` for an unknown depot; I/O errors.
    pub fn trim_depot(&self, depot: &str, before: u64) -> Result<usize> {
        let prog = self.progress();
        let mut deleted = 0;
        for t in 0..self.tasks {
            let w = self.depots.get(&(depot.to_string(), t)).ok_or_else(|| {
                Error::InvalidInput(format!("module {} has no depot *{depot}", self.name))
            })?;
            let processed = self
                .topologies
                .iter()
                .filter(|topo| topo.depot == depot)
                .map(|topo| prog[topo.name].processed[t as usize])
                .min()
                .unwrap_or(u64::MAX);
            deleted += w
                .lock()
                .expect("lock")
                .trim_before(before.min(processed))
                .map_err(|e| Error::io(self.dir.join(depot_dir(t, depot)), e))?;
        }
        Ok(deleted)
    }

    /// Appends a random record from the definition's load generator.
    ///
    /// # Errors
    /// As [`RunningModule::append`].
    pub fn append_random(&self, rng: &mut rand::rngs::StdRng) -> Result<(u32, u64)> {
        let a = self.def.random_append(rng);
        self.append(a.depot, &a.key, &a.payload)
    }

    pub fn progress(&self) -> BTreeMap<String, TopoProgress> {
        self.progress.lock().expect("lock").clone()
    }

    /// Records appended to every depot partition, by (depot, task).
    pub fn depot_ends(&self) -> BTreeMap<(String, u32), u64> {
        self.depots
            .iter()
            .map(|(k, w)| (k.clone(), w.lock().expect("lock").end_offset()))
            .collect()
    }

    /// Whether every topology has processed every record appended so far.
    pub fn caught_up(&self) -> bool {
        let ends = self.depot_ends();
        self.progress().iter().all(|(name, p)| {
            let topo = self
                .topologies
                .iter()
                .find(|t| t.name == name)
                .expect("topology");
            (0..self.tasks).all(|t| {
                let end = match topo.reads {
                    None => ends[&(topo.depot.to_string(), t)],
                    Some(_) => self.source_end(topo, t),
                };
                p.processed[t as usize] >= end
            })
        })
    }

    /// Waits until every appended record is processed (or a topology failed).
    ///
    /// # Errors
    /// The topology's failure, or `InvalidInput` after `timeout`.
    pub fn wait_caught_up(&self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(f) = self.failure() {
                return Err(Error::InvalidInput(f));
            }
            if self.caught_up() {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                return Err(Error::InvalidInput(format!(
                    "module {} did not catch up within {timeout:?}",
                    self.name
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Why a topology stopped, if one did.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().expect("lock").clone()
    }

    pub fn pause_stats(&self) -> PauseStats {
        PauseStats {
            longest_commit_wait: Duration::from_micros(
                self.longest_commit_wait_us.load(Ordering::Relaxed),
            ),
            ..*self.pauses.lock().expect("lock")
        }
    }

    /// Stops the topologies, writes progress.json files, syncs depots. The PStates close
    /// when the last reference to the module is dropped.
    ///
    /// # Errors
    /// I/O errors writing progress or syncing depots.
    pub fn stop(&self) -> Result<()> {
        self.stop.store(true, Ordering::Release);
        for h in self.threads.lock().expect("lock").drain(..) {
            let _ = h.join();
        }
        let prog = self.progress();
        for topo in &self.topologies {
            for t in 0..self.tasks {
                let dir = self.dir.join(topology_dir(t, topo.name));
                write_atomically(
                    &dir.join("progress.json"),
                    &progress_json(topo, &prog[topo.name], t),
                )?;
            }
        }
        for ((d, t), w) in &self.depots {
            w.lock()
                .expect("lock")
                .sync()
                .map_err(|e| Error::io(self.dir.join(depot_dir(*t, d)), e))?;
        }
        for ((p, t), db) in &self.dbs {
            db.flush_wal(true)
                .map_err(|e| rerr(format!("syncing $${p} task {t}"), e))?;
        }
        Ok(())
    }
}

impl Drop for RunningModule {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}
