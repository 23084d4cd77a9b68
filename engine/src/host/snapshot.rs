//! Consistent snapshots of a running module, taken without stopping it.
//!
//! 1. Flush every PState partition (writes continue), so the checkpoints below find little
//!    in the memtables and the pause stays short.
//! 2. Take the module's gate for writing — commits wait — and create a RocksDB checkpoint
//!    (hard links of the SSTs) of every partition of every PState, and read the
//!    topologies' progress. Release the gate. That is the whole pause: every microbatch
//!    PState partition is at one commit id, every stream partition at one point in time.
//! 3. Then, while appends continue, capture each depot partition: its end offset and its
//!    segments, hard-linked. The newest one keeps growing under its link; its length at
//!    capture time goes into `length-caps.json` beside `modules/`, and the backup reads it
//!    only that far (and, the link keeping the inode, only from where the previous backup's
//!    chunks end). Taken after the PStates, the depots hold every record the captured
//!    PStates reflect.
//! 4. Link the module's own files (module.json, jar, config overrides, dynamic options).
//!
//! The snapshot is a data dir of its own (`<root>/modules/<module>/…`) under
//! `<data-dir>/.rbk/snapshots/`, on the data dir's file system so links work; a backup reads
//! it like any module. Dropping the [`Snapshot`] deletes it; a host deletes leftovers of a
//! crashed process when it starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rocksdb::checkpoint::Checkpoint;

use super::definition::Kind;
use super::module::{RunningModule, progress_json};
use crate::layout::write_atomically;
use crate::layout::{module_dir, snapshot_dir};
use crate::manifest::{depot_dir, pstate_dir, topology_dir};
use crate::{Error, Result};

pub use crate::layout::snapshot_dir::snapshots_dir;

#[derive(Debug)]
pub struct Snapshot {
    /// A data dir holding only `modules/<module>`.
    pub root: PathBuf,
    pub module: String,
    /// Microbatch topologies' commit ids.
    pub commit_ids: BTreeMap<String, u64>,
    /// Per (topology, task): the next depot offset the captured PStates would process.
    pub processed: BTreeMap<(String, u32), u64>,
    /// Per (depot, task): the end offset captured.
    pub depot_ends: BTreeMap<(String, u32), u64>,
    /// From asking for the gate (waiting for a commit in flight) until releasing it.
    pub pause: Duration,
    /// How long the gate was held: the longest any commit could be stalled.
    pub held: Duration,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.root) {
            tracing::warn!("could not delete snapshot `{}`: {e}", self.root.display());
        }
    }
}

fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to).map_err(|e| Error::io(from, e))?;
    }
    Ok(())
}

impl RunningModule {
    /// Takes a consistent snapshot under `<data_dir>/.rbk/snapshots/` (see the module doc).
    ///
    /// # Errors
    /// RocksDB checkpoint errors (`Database`), I/O errors. Nothing is left behind.
    pub fn snapshot(&self, data_dir: &Path) -> Result<Snapshot> {
        let parent = snapshots_dir(data_dir);
        std::fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
        let root = parent.join(format!("{}-{:016x}", self.name, rand::random::<u64>()));
        let mut snap = Snapshot {
            root,
            module: self.name.clone(),
            commit_ids: BTreeMap::new(),
            processed: BTreeMap::new(),
            depot_ends: BTreeMap::new(),
            pause: Duration::ZERO,
            held: Duration::ZERO,
        };
        let dir = module_dir(&snap.root, &self.name);
        // Checkpoint targets must not exist; their parents must.
        let mut parts: Vec<(&(String, u32), &rocksdb::DB, PathBuf)> = Vec::new();
        for (key, db) in &self.dbs {
            let target = dir.join(pstate_dir(key.1, &key.0));
            let p = target.parent().expect("parent");
            std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
            parts.push((key, db.as_ref(), target));
        }
        for (key, db, _) in &parts {
            db.flush().map_err(|e| {
                Error::InvalidInput(format!("flushing $${} task {}: {e}", key.0, key.1))
            })?;
        }

        // The pause: from asking for the gate until it is released.
        let asked = Instant::now();
        let gate = self.gate.write().expect("gate");
        let acquired = Instant::now();
        let made: Vec<Result<()>> = std::thread::scope(|s| {
            // One thread per partition: a checkpoint is mostly waiting for fsyncs (of the
            // flushed memtable, the MANIFEST, the checkpoint dir), which overlap.
            let handles: Vec<_> = parts
                .iter()
                .map(|(key, db, target)| {
                    s.spawn(move || -> Result<()> {
                        Checkpoint::new(*db)
                            .and_then(|c| c.create_checkpoint(target))
                            .map_err(|e| {
                                Error::InvalidInput(format!(
                                    "checkpoint of $${} task {} into `{}`: {e}",
                                    key.0,
                                    key.1,
                                    target.display()
                                ))
                            })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("checkpoint thread"))
                .collect()
        });
        let progress = self.progress();
        drop(gate);
        snap.pause = asked.elapsed();
        snap.held = acquired.elapsed();
        made.into_iter().collect::<Result<Vec<()>>>()?;
        {
            let mut p = self.pauses.lock().expect("lock");
            p.snapshots += 1;
            p.last = snap.pause;
            p.max = p.max.max(snap.pause);
            p.max_held = p.max_held.max(snap.held);
        }

        for topo in &self.topologies {
            let p = &progress[topo.name];
            if topo.kind == Kind::Microbatch {
                snap.commit_ids
                    .insert(topo.name.into(), p.commit_id.unwrap_or(0));
            }
            for t in 0..self.tasks {
                snap.processed
                    .insert((topo.name.into(), t), p.processed[t as usize]);
                let tdir = dir.join(topology_dir(t, topo.name));
                std::fs::create_dir_all(&tdir).map_err(|e| Error::io(&tdir, e))?;
                write_atomically(&tdir.join("progress.json"), &progress_json(topo, p, t))?;
            }
        }

        // Depots after the PStates: their ends are at least what the PStates processed.
        let mut length_caps: BTreeMap<String, u64> = BTreeMap::new();
        for ((depot, t), w) in &self.depots {
            let src = self.dir.join(depot_dir(*t, depot));
            let dst = dir.join(depot_dir(*t, depot));
            std::fs::create_dir_all(&dst).map_err(|e| Error::io(&dst, e))?;
            let cap = {
                let w = w.lock().expect("lock");
                let cap = w.capture().map_err(|e| Error::io(&src, e))?;
                // Linked under the lock: a trim cannot delete a segment in between.
                for (name, _) in &cap.segments {
                    link_or_copy(&src.join(name), &dst.join(name))?;
                }
                cap
            };
            // The newest segment keeps growing under its link; the backup reads it only up
            // to the captured length (and, the link keeping its inode, only what was appended
            // since the previous backup).
            if let Some((name, len)) = cap.segments.last() {
                length_caps.insert(format!("{}/{name}", depot_dir(*t, depot)), *len);
            }
            snap.depot_ends.insert((depot.clone(), *t), cap.end_offset);
        }
        snapshot_dir::write_length_caps(&snap.root, &length_caps)?;

        for e in std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let e = e.map_err(|e| Error::io(&self.dir, e))?;
            if e.file_type()
                .map_err(|err| Error::io(e.path(), err))?
                .is_file()
            {
                link_or_copy(&e.path(), &dir.join(e.file_name()))?;
            }
        }
        Ok(snap)
    }
}
