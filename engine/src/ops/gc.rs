//! `gc`: delete backups by retention policy, then let the chunk store free the packs no
//! retained backup needs.
//!
//! The engine's part is what only it knows — which backups to keep — and the live set they
//! make; the protocol that frees packs safely under concurrent backups is the chunk store's
//! ([`rbk_chunkstore::gc::collect`], `docs/gc.md`). One run:
//! 1. refuse a data dir bound to another store (unless told to rebind);
//! 2. delete manifests that were never committed, then by each module's retention policy;
//! 3. collect: the store revokes dead sessions, marks against the live set of every
//!    remaining manifest of every module, and sweeps what no running session can need.

use std::cell::Cell;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

use rbk_chunkstore::gc::{self as store_gc, CollectOptions, CollectReport, LiveSet};
use rbk_chunkstore::session::now_ms;

use crate::backup_id::BackupId;
use crate::layout::{epochs, module_dir};
use crate::repo::manifest_key;
use crate::retention::{Policy, PolicyOverride};
use crate::{Error, Progress, Repo, Result};

pub use rbk_chunkstore::gc::{DEFAULT_REPACK_THRESHOLD, LEFTOVER_AGE, SessionView};

#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Report what would be done; write and delete nothing.
    pub dry_run: bool,
    pub policy: PolicyOverride,
    pub repack_threshold: f64,
    /// Bind the data dir to this store even if it was bound to another.
    pub rebind_store: bool,
    /// The time retention ages are measured against (tests); `None` is now.
    pub now_ms: Option<u64>,
    /// Sessions to revoke whatever their heartbeats say (`rbk gc --revoke`): a backup the
    /// operator knows is dead, e.g. on a machine that was switched off.
    pub revoke: Vec<String>,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            dry_run: false,
            policy: PolicyOverride::default(),
            repack_threshold: DEFAULT_REPACK_THRESHOLD,
            rebind_store: false,
            now_ms: None,
            revoke: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Deleted by policy (or, in a dry run, that would be).
    pub manifests_deleted: Vec<BackupId>,
    /// Deleted because they were never committed (their session was revoked first).
    pub manifests_uncommitted: Vec<BackupId>,
    pub manifests_retained: u64,
    /// Pending backups (in parts) whose held session is over: committed or given up on.
    /// Their leftover objects were deleted.
    pub pending_deleted: Vec<String>,
    /// Pending backups still held, whose parts count as live.
    pub pending_held: u64,
    /// What the chunk store's collection did: sessions, mark, sweep.
    pub store: CollectReport,
    /// Problems that did not stop the run (e.g. a module's unreadable options).
    pub warnings: Vec<String>,
    pub seconds: f64,
}

/// Runs GC over the whole store `repo` (every module's backups), with retention policies
/// read from the modules in `data_dir`.
///
/// # Errors
/// `DataDirMissing`, `ForeignStore`, `InvalidInput` for bad options, `CorruptManifest` when
/// a manifest cannot be read (GC cannot know what it references, so it deletes nothing),
/// provider and index errors.
pub fn gc(
    repo: &Repo,
    data_dir: &Path,
    opts: &GcOptions,
    progress: &dyn Progress,
) -> Result<GcReport> {
    let started = Instant::now();
    if !data_dir.is_dir() {
        return Err(Error::DataDirMissing {
            path: data_dir.into(),
        });
    }
    let collect_opts = CollectOptions {
        dry_run: opts.dry_run,
        repack_threshold: opts.repack_threshold,
        revoke: opts.revoke.clone(),
    };
    collect_opts.check()?;
    // A dry run writes nothing, not even the binding.
    repo.check_binding(data_dir, opts.rebind_store, !opts.dry_run)?;
    let store = repo.store();
    // Before anything is deleted: a mistyped --revoke must not pass as done.
    store_gc::check_revocable(store, &opts.revoke)?;
    let mut report = GcReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };

    // 1. Manifests that were never committed (docs/gc.md, "The commit window"): deleted,
    // and counted neither by retention nor in the live set.
    report.manifests_uncommitted = repo.uncommitted_backups()?;
    if !opts.dry_run {
        for id in &report.manifests_uncommitted {
            tracing::warn!(
                "deleting {id}: its session was revoked before it was written, so it was never committed"
            );
            store.delete_manifest(&id.module, &id.to_string())?;
        }
    }

    // 2. Retention.
    let all: Vec<BackupId> = repo
        .all_backup_ids()?
        .into_iter()
        .filter(|id| !report.manifests_uncommitted.contains(id))
        .collect();
    let mut by_module: BTreeMap<&str, Vec<BackupId>> = BTreeMap::new();
    for id in &all {
        by_module.entry(&id.module).or_default().push(id.clone());
    }
    let now = opts.now_ms.unwrap_or_else(now_ms);
    for (module, ids) in &by_module {
        let options = module_dir(data_dir, module).join("dynamic-options.json");
        // One module's broken options must not stop GC for every other module: its
        // backups are kept (unless flags set a policy) and the report says why.
        let policy = Policy::from_options_file(&options).unwrap_or_else(|e| {
            report
                .warnings
                .push(format!("keeping every backup of {module}: {e}"));
            Policy::default()
        });
        // Undo backups this data dir's restores took are spared for their hours.
        let undo: HashSet<BackupId> = match epochs::read(data_dir, module) {
            Ok(log) => log
                .epochs
                .iter()
                .filter_map(|e| e.undo_backup_id.as_deref())
                .filter_map(|id| BackupId::parse(id).ok())
                .collect(),
            // Which backups must be spared is unknown: spare them all.
            Err(e) => {
                report
                    .warnings
                    .push(format!("keeping every backup of {module}: {e}"));
                continue;
            }
        };
        let policy = policy.with(opts.policy);
        report
            .manifests_deleted
            .extend(policy.sparing_undo(policy.expired(ids, now), &undo, now));
    }
    if !opts.dry_run {
        for id in &report.manifests_deleted {
            store.delete_manifest(&id.module, &id.to_string())?;
        }
    }
    let deleted: HashSet<&BackupId> = report
        .manifests_deleted
        .iter()
        .chain(&report.manifests_uncommitted)
        .collect();

    // 3. The store frees what no remaining manifest references. Each live set leaves out
    // what this run deleted (which a dry run did not delete); the one before a sweep is read
    // afresh, after the sessions it waits for were seen to be over.
    let retained = Cell::new(None);
    let pending = std::cell::RefCell::new(PendingSeen::default());
    report.store = store_gc::collect(store, &collect_opts, progress, || {
        let (live, n, seen) = live_set(repo, &deleted, progress)?;
        retained.set(retained.get().or(Some(n)));
        *pending.borrow_mut() = seen;
        Ok::<_, Error>(live)
    })?;
    report.manifests_retained = retained.get().unwrap_or(0);

    // 4. Pending backups given up on (their lease ran out, this run may have revoked them)
    // or committed by a process that died before tidying up, as the last live set found
    // them (after this run's revocations): their parts and begin go.
    let pending = pending.into_inner();
    report.pending_held = pending.held;
    for l in pending.leftovers {
        if !opts.dry_run {
            store.delete_pending(&l)?;
        }
        report.pending_deleted.push(l.name);
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Deletes one backup's manifest. The chunks only it used are freed by the next GC.
///
/// # Errors
/// `BackupNotFound`, provider errors.
pub fn delete_backup(repo: &Repo, id: &BackupId) -> Result<()> {
    repo.delete_manifest(id)
}

/// What a live set found of the pending backups in parts.
#[derive(Default)]
struct PendingSeen {
    /// Still held: their parts are in the live set.
    held: u64,
    /// Over (committed or given up): what is left of them.
    leftovers: Vec<rbk_chunkstore::PendingListing>,
}

/// The live set of every manifest in the store except `excluded` and of every part of a
/// held pending backup, how many manifests it covers, and what it found of the pending
/// backups. A manifest or part that cannot be read stops GC: what it references is unknown.
fn live_set(
    repo: &Repo,
    excluded: &HashSet<&BackupId>,
    progress: &dyn Progress,
) -> Result<(LiveSet, u64, PendingSeen)> {
    let ids: Vec<BackupId> = repo
        .all_backup_ids()?
        .into_iter()
        .filter(|id| !excluded.contains(id))
        .collect();
    progress.begin_items("gc: mark", ids.len() as u64);
    let mut live = LiveSet::default();
    // Task objects already visited: an unchanged task's is shared by many backups.
    let mut seen = HashSet::new();
    // Parts of pending backups still held are as good as committed: what they reference is
    // kept (their held session also holds back every sweep; docs/gc.md).
    let (parts, leftovers) = crate::ops::parts::for_gc(repo)?;
    for p in &parts {
        repo.visit_chunks(&p.key(), &p.object, &mut seen, &mut |c, _| live.insert(c))?;
    }
    let pending = PendingSeen {
        held: parts
            .iter()
            .map(|p| p.object.backup_id())
            .collect::<HashSet<_>>()
            .len() as u64,
        leftovers,
    };
    let mut n = 0;
    let stop = |id: &BackupId, key, detail| Error::CorruptManifest {
        key,
        detail: format!(
            "{detail}; GC cannot tell which chunks it references and deletes nothing. Delete the backup with `rbk delete {id}` if it is beyond repair"
        ),
    };
    for id in &ids {
        let m = match repo.load_object(id) {
            Ok(m) => m,
            // Deleted by a concurrent GC or `rbk delete` since the listing: nothing to keep.
            Err(Error::BackupNotFound { .. }) => continue,
            Err(Error::CorruptManifest { key, detail }) => return Err(stop(id, key, detail)),
            Err(e) => return Err(e),
        };
        match repo.visit_chunks(&manifest_key(id), &m, &mut seen, &mut |c, _| live.insert(c)) {
            Ok(()) => {}
            Err(Error::CorruptManifest { key, detail }) => return Err(stop(id, key, detail)),
            Err(e) => return Err(e),
        }
        n += 1;
        progress.advance(1);
    }
    live.seal();
    progress.end();
    Ok((live, n, pending))
}
