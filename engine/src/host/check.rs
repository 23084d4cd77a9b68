//! Checks that a module's state (a restore, or any copy) is consistent — what a backup of a
//! running module promises:
//! - every partition of a microbatch PState carries the same commit id, and `progress.json`
//!   agrees with it;
//! - each depot partition holds at least the records the PStates processed;
//! - replaying those depot records from an empty state reproduces the PStates exactly;
//! - the module's own invariants hold (the bank's total, the page views' three counts).
//!
//! A topology reading another module's depot is checked by its invariants alone: that depot
//! is the other module's, and may have been restored to another state since.
//!
//! A state that cannot even be opened is reported as a violation, not an error: a naive copy
//! of live files may well be such a state.

use std::collections::BTreeMap;
use std::path::Path;

use rocksdb::{DB, IteratorMode};

use super::definition::{Ctx, Kind, RESERVED_PREFIX};
use super::module::{StoredBatch, StoredStream, foreign_readers, load_module_value, progress_key};
use crate::depot::{DepotCursor, partition_bounds};
use crate::manifest::{depot_dir, pstate_dir, topology_dir};
use crate::{Error, Result};

pub use super::definition::{Kvs, State};

#[derive(Debug, Default, Clone, PartialEq)]
pub struct CheckReport {
    /// Microbatch topologies' commit id (when all partitions agree).
    pub commit_ids: BTreeMap<String, u64>,
    /// Depot records the PStates reflect, all partitions together.
    pub processed: u64,
    /// Each broken promise, in a sentence. Empty: consistent.
    pub violations: Vec<String>,
}

/// A partition's (data, reserved keys); a description when it cannot be read.
fn read_partition(path: &Path) -> std::result::Result<(Kvs, Kvs), String> {
    let db = DB::open_for_read_only(&rocksdb::Options::default(), path, false)
        .map_err(|e| format!("PState `{}` cannot be opened: {e}", path.display()))?;
    let mut data = BTreeMap::new();
    let mut reserved = BTreeMap::new();
    for item in db.iterator(IteratorMode::Start) {
        let (k, v) = item.map_err(|e| format!("reading `{}`: {e}", path.display()))?;
        if k.first() == Some(&RESERVED_PREFIX) {
            reserved.insert(k.to_vec(), v.to_vec());
        } else {
            data.insert(k.to_vec(), v.to_vec());
        }
    }
    Ok((data, reserved))
}

/// Checks the module in `module_dir` (see the module doc).
///
/// # Errors
/// Only when the module cannot be identified (module.json unreadable, no known definition).
pub fn check_module(module_dir: &Path) -> Result<CheckReport> {
    let (meta, def, json) = load_module_value(module_dir)?;
    let foreign = foreign_readers(&json);
    let def = def.ok_or_else(|| {
        Error::InvalidInput(format!(
            "`{}` names no known definition",
            module_dir.join("module.json").display()
        ))
    })?;
    let tasks = meta.tasks;
    let mut report = CheckReport::default();
    let v = &mut report.violations;
    let mut state = State::new();
    let mut replayed = Ctx::new(tasks, None);
    for topo in def.topologies() {
        // Progress as the PStates record it.
        let mut reserved = BTreeMap::new();
        for p in topo.pstates {
            for t in 0..tasks {
                match read_partition(&module_dir.join(pstate_dir(t, p))) {
                    Ok((data, res)) => {
                        state.insert((p.to_string(), t), data);
                        reserved.insert((p.to_string(), t), res);
                    }
                    Err(e) => v.push(e),
                }
            }
        }
        if !v.is_empty() {
            return Ok(report);
        }
        let key = progress_key(topo.name);
        let mut processed = vec![0u64; tasks as usize];
        if topo.kind == Kind::Microbatch {
            let mut ids = BTreeMap::new();
            for (part, res) in &reserved {
                let b: Option<StoredBatch> =
                    res.get(&key).and_then(|b| serde_json::from_slice(b).ok());
                ids.insert(part.clone(), b);
            }
            let distinct: std::collections::BTreeSet<Option<u64>> = ids
                .values()
                .map(|b| b.as_ref().map(|b| b.commit_id))
                .collect();
            if distinct.len() > 1 {
                v.push(format!(
                    "partitions of topology {} are at different commit ids: {}",
                    topo.name,
                    ids.iter()
                        .map(|((p, t), b)| format!(
                            "$${p}/{t}={:?}",
                            b.as_ref().map(|b| b.commit_id)
                        ))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
                return Ok(report);
            }
            if let Some(Some(b)) = ids.values().next() {
                report.commit_ids.insert(topo.name.into(), b.commit_id);
                processed = b.ranges.iter().map(|r| r.1).collect();
            }
            let commit = report.commit_ids.get(topo.name).copied().unwrap_or(0);
            for t in 0..tasks {
                let path = module_dir
                    .join(topology_dir(t, topo.name))
                    .join("progress.json");
                let recorded = std::fs::read(&path)
                    .ok()
                    .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                    .and_then(|j| j.get("commit_id").and_then(|c| c.as_u64()));
                if recorded != Some(commit) {
                    v.push(format!(
                        "`{}` records commit {recorded:?}, the PStates {commit}",
                        path.display()
                    ));
                }
            }
        } else {
            for t in 0..tasks {
                processed[t as usize] = reserved
                    .get(&(topo.pstates[0].to_string(), t))
                    .and_then(|r| r.get(&key))
                    .and_then(|b| serde_json::from_slice::<StoredStream>(b).ok())
                    .map_or(0, |s| s.processed);
            }
        }
        report.processed += processed.iter().sum::<u64>();
        if foreign.contains(topo.name) {
            v.extend(def.invariants(&state, processed.iter().sum()));
            continue;
        }

        // Depot coverage, then replay from an empty state.
        for t in 0..tasks {
            let dir = module_dir.join(depot_dir(t, topo.depot));
            let (start, end) = partition_bounds(&dir).map_err(|e| Error::io(&dir, e))?;
            let need = processed[t as usize];
            if end < need {
                v.push(format!(
                    "depot *{} partition {t} ends at {end} but the PStates processed {need} \
                     records of it",
                    topo.depot
                ));
                continue;
            }
            if start > 0 {
                v.push(format!(
                    "depot *{} partition {t} was trimmed; cannot replay",
                    topo.depot
                ));
                continue;
            }
            let mut recs = Vec::new();
            DepotCursor::new(&dir, 0)
                .read_until(need, &mut recs)
                .map_err(|e| Error::io(&dir, e))?;
            for r in &recs {
                if let Err(e) = def.apply(topo.name, r, &mut replayed) {
                    v.push(format!(
                        "replaying depot *{} partition {t}: {e}",
                        topo.depot
                    ));
                    break;
                }
            }
        }
        for p in topo.pstates {
            for t in 0..tasks {
                let part = (p.to_string(), t);
                let want = replayed.staged.get(&part).cloned().unwrap_or_default();
                let have = state.get(&part).cloned().unwrap_or_default();
                if want != have {
                    let differing = want
                        .keys()
                        .chain(have.keys().filter(|k| !want.contains_key(*k)))
                        .filter(|k| want.get(*k) != have.get(*k))
                        .count();
                    v.push(format!(
                        "$${p} task {t}: replaying the depot gives {} keys, the PState has {}; \
                         {differing} differ",
                        want.len(),
                        have.len()
                    ));
                }
            }
        }
        let processed_total = processed.iter().sum();
        v.extend(def.invariants(&state, processed_total));
    }
    Ok(report)
}
