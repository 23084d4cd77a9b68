//! `stats`: how much the store saves, and where — for the whole store, one module or one
//! backup.
//!
//! Computed from manifests, their task objects (each distinct one read once) and the local
//! index, without reading other pack data. Memory is bounded
//! by the distinct chunks of the selection, ~40 bytes each (a sorted vector of ids with the
//! kind and module each is counted under), not by the number of backups: each manifest's
//! chunks are sorted and merged into it, one manifest at a time.

use std::collections::BTreeMap;
use std::time::Instant;

use rbk_chunkstore::ChunkId;

use crate::backup_id::BackupId;
use crate::manifest::ChunkKind;
use crate::repo::manifest_key;
use crate::{Progress, Repo, Result};

/// What `stats` looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Store,
    Module(String),
    Backup(BackupId),
}

/// The kinds of module files, and the backups' own task objects (version 5 stores; they are
/// stored, never restored, so their logical bytes are 0). A chunk is counted once, under the
/// kind and module where it first appears (modules in name order, backups oldest first,
/// kinds in this order).
pub const KINDS: [&str; 5] = ["depot", "pstate", "topology", "module", "task_objects"];
/// The kind of the pieces of task objects.
const TASK_OBJECTS: u8 = 4;

/// Sizes of one part of the selection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Bytes a restore of every selected backup would write.
    pub logical_bytes: u64,
    /// Distinct chunks, and their bytes before compression.
    pub unique_chunks: u64,
    pub unique_bytes: u64,
    /// Compressed bytes of those chunks in the store.
    pub stored_bytes: u64,
}

impl Totals {
    /// logical / unique: what deduplication saves.
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.unique_bytes)
    }

    /// unique / stored: what compression saves.
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.unique_bytes, self.stored_bytes)
    }

    /// logical / stored: both.
    pub fn total_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.stored_bytes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

#[derive(Debug, Clone, PartialEq)]
pub struct StoreStats {
    pub scope: Scope,
    pub backups: u64,
    pub totals: Totals,
    /// By module; they add up to `totals` (a chunk two modules share counts under the first
    /// in name order).
    pub modules: BTreeMap<String, Totals>,
    /// By kind of file ([`KINDS`]); they add up to `totals` likewise.
    pub kinds: BTreeMap<&'static str, Totals>,
    /// Chunks the selection references that no pack in the index holds (a damaged store:
    /// `rbk verify` says which backups they break). Not in the totals.
    pub missing_chunks: u64,
    /// Packs in the store and their bytes (whole objects: headers and trailers included).
    pub packs: u64,
    pub pack_bytes: u64,
    /// For the whole store: compressed chunk bytes in packs that no backup references (or
    /// second copies of chunks that one does): what `rbk gc` can free.
    pub garbage_bytes: Option<u64>,
    pub seconds: f64,
}

/// One distinct chunk of the selection and where it is counted.
#[derive(Clone, Copy)]
struct Seen {
    id: ChunkId,
    kind: u8,
    module: u32,
}

/// Where a kind is in [`KINDS`].
fn kind_index(kind: ChunkKind) -> u8 {
    match kind {
        ChunkKind::Depot => 0,
        ChunkKind::PState => 1,
        ChunkKind::Topology => 2,
        ChunkKind::Module => 3,
        ChunkKind::TaskObject => TASK_OBJECTS,
    }
}

/// # Errors
/// `BackupNotFound`, `CorruptManifest`, `InvalidInput` for a bad module name, store errors.
pub fn stats(repo: &Repo, scope: &Scope, progress: &dyn Progress) -> Result<StoreStats> {
    let started = Instant::now();
    let store = repo.store();
    store.sync_index()?;
    let ids = match scope {
        Scope::Store => repo.all_backup_ids()?,
        Scope::Module(m) => repo.backup_ids(m)?,
        Scope::Backup(id) => vec![id.clone()],
    };
    let mut modules: Vec<String> = ids.iter().map(|id| id.module.clone()).collect();
    modules.dedup();
    let mut by_module: BTreeMap<String, Totals> = modules
        .iter()
        .map(|m| (m.clone(), Totals::default()))
        .collect();
    let mut by_kind: BTreeMap<&'static str, Totals> =
        KINDS.iter().map(|k| (*k, Totals::default())).collect();
    let mut totals = Totals::default();

    // Distinct chunks, sorted by id; merged one manifest at a time. A task object seen in an
    // earlier backup is not read again: its chunks are merged already, and where a chunk is
    // counted, the earlier backup's entry stays.
    let mut seen: Vec<Seen> = Vec::new();
    let mut seen_objects = std::collections::HashSet::new();
    progress.begin_items("stats: manifests", ids.len() as u64);
    for id in &ids {
        let m = repo.load_committed_object(id)?;
        let module = modules.binary_search(&id.module).unwrap_or(0) as u32;
        // Logical bytes from the manifest: its module files and each task's summary.
        let mut logical = |kind: usize, bytes: u64| {
            for t in [
                &mut totals,
                by_kind.get_mut(KINDS[kind]).expect("kind"),
                by_module.get_mut(&id.module).expect("module"),
            ] {
                t.logical_bytes = t.logical_bytes.saturating_add(bytes);
            }
        };
        for f in m.module_files() {
            logical(3, f.size);
        }
        for (_, t) in m.summaries() {
            t.depots.iter().for_each(|d| logical(0, d.bytes));
            t.pstates.iter().for_each(|p| logical(1, p.bytes));
            t.topologies.iter().for_each(|p| logical(2, p.bytes));
        }
        let mut here: Vec<Seen> = Vec::new();
        repo.visit_chunks(&manifest_key(id), &m, &mut seen_objects, &mut |c, kind| {
            here.push(Seen {
                id: *c,
                kind: kind_index(kind),
                module,
            })
        })?;
        // Within a backup, a chunk in several kinds is counted under the first of KINDS.
        here.sort_by_key(|s| (s.id, s.kind));
        here.dedup_by(|b, a| a.id == b.id);
        seen = merge(seen, here);
        progress.advance(1);
    }
    progress.end();

    // One pass over every pack's entries (the index streams them, as GC's mark does): a
    // selected chunk counts once, in the first pack that holds it; every other byte of chunk
    // data is garbage. Cheaper than a lookup per chunk: 1M chunks in ~1 s instead of ~9.
    let packs = store.packs()?;
    let pack_bytes = packs.iter().map(|(_, size)| size).sum();
    let mut claimed = vec![false; seen.len()];
    let mut garbage = 0u64;
    for (pack, _) in &packs {
        for e in store.pack_entries(pack)? {
            let Ok(i) = seen.binary_search_by(|s| s.id.cmp(&e.id)) else {
                garbage += u64::from(e.stored_len);
                continue;
            };
            if std::mem::replace(&mut claimed[i], true) {
                garbage += u64::from(e.stored_len);
                continue;
            }
            let s = seen[i];
            for t in [
                &mut totals,
                by_kind.get_mut(KINDS[s.kind as usize]).expect("kind"),
                by_module
                    .get_mut(&modules[s.module as usize])
                    .expect("module"),
            ] {
                t.unique_chunks += 1;
                t.unique_bytes += u64::from(e.raw_len);
                t.stored_bytes += u64::from(e.stored_len);
            }
        }
    }
    let missing_chunks = claimed.iter().filter(|c| !**c).count() as u64;
    // Garbage is the store's, which only the whole store's selection can tell.
    let garbage_bytes = (*scope == Scope::Store).then_some(garbage);
    Ok(StoreStats {
        scope: scope.clone(),
        backups: ids.len() as u64,
        totals,
        modules: by_module,
        kinds: by_kind,
        missing_chunks,
        packs: packs.len() as u64,
        pack_bytes,
        garbage_bytes,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Merges two id-sorted, duplicate-free vectors; where both hold an id, `a`'s entry (the
/// earlier manifest's) stays.
fn merge(a: Vec<Seen>, b: Vec<Seen>) -> Vec<Seen> {
    if a.is_empty() {
        return b;
    }
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        match a[i].id.cmp(&b[j].id) {
            std::cmp::Ordering::Less => {
                out.push(a[i]);
                i += 1;
            }
            std::cmp::Ordering::Greater => {
                out.push(b[j]);
                j += 1;
            }
            std::cmp::Ordering::Equal => {
                out.push(a[i]);
                i += 1;
                j += 1;
            }
        }
    }
    out.extend_from_slice(&a[i..]);
    out.extend_from_slice(&b[j..]);
    out
}
