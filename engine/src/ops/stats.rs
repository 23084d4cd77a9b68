//! `stats`: how much the store saves, and where — for the whole store, one module or one
//! backup.
//!
//! Computed from manifests and the local index, without reading pack data. Memory is bounded
//! by the distinct chunks of the selection, ~40 bytes each (a sorted vector of ids with the
//! kind and module each is counted under), not by the number of backups: each manifest's
//! chunks are sorted and merged into it, one manifest at a time.

use std::collections::BTreeMap;
use std::time::Instant;

use rbk_chunkstore::ChunkId;

use crate::backup_id::BackupId;
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

fn kind_of(path: &str) -> u8 {
    if path.contains("/depots/") {
        0
    } else if path.contains("/pstates/") {
        1
    } else if path.contains("/topologies/") {
        2
    } else {
        3
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

    // Distinct chunks, sorted by id; merged one manifest at a time.
    let mut seen: Vec<Seen> = Vec::new();
    progress.begin_items("stats: manifests", ids.len() as u64);
    for id in &ids {
        let m = repo.load_committed(id)?;
        let module = modules.binary_search(&id.module).unwrap_or(0) as u32;
        let mut here: Vec<Seen> = Vec::new();
        for (path, f) in m.files() {
            let kind = kind_of(&path);
            totals.logical_bytes += f.size;
            by_kind
                .get_mut(KINDS[kind as usize])
                .expect("kind")
                .logical_bytes += f.size;
            by_module.get_mut(&id.module).expect("module").logical_bytes += f.size;
            here.extend(f.chunks.iter().map(|c| Seen {
                id: *c,
                kind,
                module,
            }));
        }
        here.extend(m.task_refs.iter().flat_map(|r| &r.pieces).map(|c| Seen {
            id: *c,
            kind: TASK_OBJECTS,
            module,
        }));
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
