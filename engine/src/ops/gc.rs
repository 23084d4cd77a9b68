//! `gc`: delete backups by retention policy, then free the packs no retained backup needs.
//!
//! One run, in this order (the protocol and why it is safe are in `docs/gc.md`):
//! 1. refuse a data dir bound to another store (unless told to rebind);
//! 2. delete manifests by each module's retention policy;
//! 3. revoke sessions whose heartbeats stopped for longer than the lease;
//! 4. mark: build the live set from every remaining manifest of every module, and condemn
//!    the packs that are dead or mostly dead, in a new record armed with the sessions
//!    running after it was written;
//! 5. sweep every armed record whose sessions are all over, against a live set built
//!    again after that was established, then retire the record.
//!
//! With no backup running, one run does everything. Records that must wait for a running
//! backup are swept by a later run.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Instant;

use rbk_chunkstore::ChunkId;
use rbk_chunkstore::gc::{self as store_gc, LiveSet, PackUsage, SweepReport};
use rbk_chunkstore::session::{self, SessionState, now_ms};

use crate::backup_id::BackupId;
use crate::layout::module_dir;
use crate::repo::manifest_key;
use crate::retention::{Policy, PolicyOverride};
use crate::{Error, Progress, Repo, Result};

/// Packs with more than this fraction of their chunk bytes dead are rewritten.
pub const DEFAULT_REPACK_THRESHOLD: f64 = 0.3;

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

/// A running session as a GC sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionView {
    pub id: String,
    /// From its newest heartbeat (`None` when that could not be read).
    pub heartbeat: Option<session::Heartbeat>,
    /// How long it has been silent, in ms (`None`: its heartbeat was just replaced).
    pub silent_ms: Option<u64>,
    /// Whether `silent_ms` is by the store's clock (else the writer's).
    pub store_clock: bool,
    /// Silent for longer than the lease, or named by `--revoke`: revoked by this GC (in a
    /// dry run: would be).
    pub revoke: bool,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    pub dry_run: bool,
    /// Deleted by policy (or, in a dry run, that would be).
    pub manifests_deleted: Vec<BackupId>,
    /// Deleted because they were never committed (their session was revoked first).
    pub manifests_uncommitted: Vec<BackupId>,
    pub manifests_retained: u64,
    pub sessions_revoked: Vec<String>,
    /// Every session that was running when this GC looked, and what it made of it.
    pub sessions: Vec<SessionView>,
    pub live_chunks: u64,
    pub live_set_bytes: u64,
    pub packs_total: u64,
    pub pack_bytes_total: u64,
    /// Newly condemned in this run (dry run: would be condemned).
    pub packs_condemned: u64,
    pub bytes_condemned: u64,
    /// Of the condemned packs, those with no live chunk at all.
    pub packs_dead: u64,
    /// Unreferenced chunk bytes left in packs below the repack threshold.
    pub dead_bytes_kept: u64,
    pub records_swept: u64,
    /// Records left for a later run because these sessions are still running.
    pub records_waiting: u64,
    pub waiting_on: Vec<String>,
    pub sweep: SweepReport,
    /// Temporary files of interrupted writes deleted (local stores; older than a day).
    pub leftovers_deleted: u64,
    /// Tombstones of sessions revoked more than 30 days ago deleted.
    pub tombstones_deleted: u64,
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
    if !(0.0..=1.0).contains(&opts.repack_threshold) {
        return Err(Error::InvalidInput(format!(
            "repack threshold {} must be between 0 and 1",
            opts.repack_threshold
        )));
    }
    // A dry run writes nothing, not even the binding.
    repo.check_binding(data_dir, opts.rebind_store, !opts.dry_run)?;
    let store = repo.store();
    let p = store.provider().clone();
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
            store.block_on(p.delete(&manifest_key(id)))?;
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
        report
            .manifests_deleted
            .extend(policy.with(opts.policy).expired(ids, now));
    }
    if !opts.dry_run {
        for id in &report.manifests_deleted {
            store.block_on(p.delete(&manifest_key(id)))?;
        }
    }
    let deleted: HashSet<&BackupId> = report
        .manifests_deleted
        .iter()
        .chain(&report.manifests_uncommitted)
        .collect();

    // 3. Sessions whose heartbeats stopped, or that the operator names.
    for id in &opts.revoke {
        if !running_sessions(repo)?.contains_key(id) {
            return Err(Error::InvalidInput(format!(
                "--revoke {id}: no running session of that id in the store; `rbk gc --dry-run` lists them"
            )));
        }
    }
    report.sessions = session_views(repo, opts)?;
    if !opts.dry_run {
        report.sessions_revoked = revoke(repo, &report.sessions)?;
    }

    // 4. Mark.
    store.sync_index()?;
    let records = store.block_on(store_gc::list_records(p.as_ref()))?;
    if !opts.dry_run {
        for (key, why) in &records.damaged {
            tracing::warn!("deleting damaged GC record {key}: {why}");
            store.block_on(p.delete(key))?;
        }
    }
    let (live, retained) = live_set(repo, &deleted, progress)?;
    report.manifests_retained = retained;
    report.live_chunks = live.len() as u64;
    report.live_set_bytes = live.heap_bytes() as u64;
    let pending = records.packs();
    let mut condemned = Vec::new();
    // A live chunk counts in the first pack (in id order) that holds it; copies in later
    // packs are dead weight there. One bit per live chunk.
    let mut claimed = vec![0u64; live.len().div_ceil(64)];
    for (pack, size) in store.index().packs()? {
        report.packs_total += 1;
        report.pack_bytes_total += size;
        if pending.contains(&pack) {
            continue;
        }
        let entries = store.index().pack_entries(&pack)?;
        let usage = PackUsage::with(pack, size, &entries, |e| match live.position(&e.id) {
            Some(i) if claimed[i / 64] & (1 << (i % 64)) == 0 => {
                claimed[i / 64] |= 1 << (i % 64);
                true
            }
            _ => false,
        });
        if usage.is_garbage(opts.repack_threshold) {
            condemned.push(pack);
            report.packs_condemned += 1;
            report.bytes_condemned += size;
            report.packs_dead += usage.is_dead() as u64;
        } else {
            report.dead_bytes_kept += usage.stored_bytes - usage.live_bytes;
        }
    }
    if opts.dry_run {
        report.seconds = started.elapsed().as_secs_f64();
        return Ok(report);
    }
    let mut to_arm: Vec<String> = records
        .condemnations
        .iter()
        .filter(|c| c.sessions.is_none())
        .map(|c| c.id.clone())
        .collect();
    if !condemned.is_empty() {
        to_arm.push(store.block_on(store_gc::condemn(p.as_ref(), &condemned))?);
    }
    if !to_arm.is_empty() {
        // Any listing taken after the condemned part was written is a valid arming.
        let running: Vec<String> = running_sessions(repo)?.into_keys().collect();
        for id in &to_arm {
            store.block_on(store_gc::arm(p.as_ref(), id, running.clone()))?;
        }
    }

    // 5. Sweep what no running session can still need.
    let running = running_sessions(repo)?;
    let records = store.block_on(store_gc::list_records(p.as_ref()))?;
    let mut sweepable = Vec::new();
    let mut waiting: HashSet<String> = HashSet::new();
    for c in &records.condemnations {
        let Some(sessions) = &c.sessions else {
            continue; // armed by the GC that wrote it, or by the next run
        };
        let blocking: Vec<&String> = sessions
            .iter()
            .filter(|s| running.contains_key(*s))
            .collect();
        if blocking.is_empty() {
            sweepable.push(c);
        } else {
            report.records_waiting += 1;
            waiting.extend(blocking.into_iter().cloned());
        }
    }
    report.waiting_on = waiting.into_iter().collect();
    report.waiting_on.sort();
    if !sweepable.is_empty() {
        // Packs are relied on as copies only if they existed after the records were listed
        // and no record condemns them.
        store.sync_index()?;
        let condemned = records.packs();
        // Built after the sessions above were seen to be over: every manifest they wrote
        // is in this listing.
        let (live, _) = live_set(repo, &HashSet::new(), progress)?;
        let packs: Vec<ChunkId> = sweepable
            .iter()
            .flat_map(|c| c.packs.iter().copied())
            .collect();
        let total: u64 = packs
            .iter()
            .filter_map(|pk| store.index().pack_size(pk).ok().flatten())
            .sum();
        progress.begin("gc: sweep", total);
        report.sweep = store_gc::sweep(
            store,
            &packs,
            &condemned,
            &live,
            opts.repack_threshold,
            |n| progress.advance(n),
        )?;
        progress.end();
        for c in sweepable {
            store.block_on(store_gc::retire(p.as_ref(), &c.id))?;
            report.records_swept += 1;
        }
    }
    // 6. What interrupted writes left behind (a local store's `.tmp/`), and tombstones old
    // enough that no process can still need them.
    report.leftovers_deleted = store.block_on(p.collect_leftovers(LEFTOVER_AGE))?;
    if let Some(now) = store.block_on(session::store_clock_ms(p.as_ref()))? {
        report.tombstones_deleted = store.block_on(session::collect_tombstones(p.as_ref(), now))?;
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Temporary files older than this are leftovers of writes whose process died.
pub const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Deletes one backup's manifest. The chunks only it used are freed by the next GC.
///
/// # Errors
/// `BackupNotFound`, provider errors.
pub fn delete_backup(repo: &Repo, id: &BackupId) -> Result<()> {
    repo.delete_manifest(id)
}

/// The sessions that are neither over nor revoked.
fn running_sessions(repo: &Repo) -> Result<BTreeMap<String, SessionState>> {
    let store = repo.store();
    let mut all = store.block_on(session::list_sessions(store.provider().as_ref()))?;
    all.retain(|_, s| !s.is_over());
    Ok(all)
}

/// Every running session with how long it has been silent, by the store's clock where the
/// store keeps one ([`session::silence_ms`]), and whether this GC revokes it: silent longer
/// than the lease, or named in `opts.revoke`. The store's "now" comes from a probe object
/// this GC writes; a dry run writes nothing, so it compares the store's write times with
/// this machine's clock instead.
fn session_views(repo: &Repo, opts: &GcOptions) -> Result<Vec<SessionView>> {
    let store = repo.store();
    let p = store.provider().clone();
    let lease_ms = store.session_timing().lease.as_millis() as u64;
    let store_now = if opts.dry_run {
        Some(now_ms())
    } else {
        store.block_on(session::store_clock_ms(p.as_ref()))?
    };
    let mut out = Vec::new();
    for s in running_sessions(repo)?.into_values() {
        let silence = store.block_on(session::silence_ms(p.as_ref(), &s, store_now))?;
        let heartbeat = store.block_on(session::newest_heartbeat(p.as_ref(), &s))?;
        out.push(SessionView {
            revoke: opts.revoke.contains(&s.id) || silence.is_some_and(|(ms, _)| ms > lease_ms),
            silent_ms: silence.map(|(ms, _)| ms),
            store_clock: silence.is_some_and(|(_, c)| c == session::Clock::Store),
            heartbeat,
            id: s.id,
        });
    }
    Ok(out)
}

/// Revokes the sessions `views` marks, and clears heartbeats left by sessions revoked
/// earlier. Returns the newly revoked ids.
fn revoke(repo: &Repo, views: &[SessionView]) -> Result<Vec<String>> {
    let store = repo.store();
    let p = store.provider().clone();
    let mut revoked = Vec::new();
    for mut s in store
        .block_on(session::list_sessions(p.as_ref()))?
        .into_values()
    {
        if s.revoked {
            store.block_on(session::clear_revoked(p.as_ref(), &s))?;
            continue;
        }
        let Some(v) = views.iter().find(|v| v.id == s.id && v.revoke) else {
            continue;
        };
        tracing::warn!(
            "revoking session {}: {}",
            s.id,
            match v.silent_ms {
                Some(ms) if v.store_clock =>
                    format!("no heartbeat for {} s by the store's clock", ms / 1000),
                Some(ms) => format!("no heartbeat for {} s by its writer's clock", ms / 1000),
                None => "as asked (--revoke)".to_string(),
            }
        );
        store.block_on(session::revoke(p.as_ref(), &s.id))?;
        s.revoked = true;
        store.block_on(session::clear_revoked(p.as_ref(), &s))?;
        revoked.push(s.id);
    }
    Ok(revoked)
}

/// The live set of every manifest in the store except `excluded`, and how many manifests
/// it covers. A manifest that cannot be read stops GC: what it references is unknown.
fn live_set(
    repo: &Repo,
    excluded: &HashSet<&BackupId>,
    progress: &dyn Progress,
) -> Result<(LiveSet, u64)> {
    let ids: Vec<BackupId> = repo
        .all_backup_ids()?
        .into_iter()
        .filter(|id| !excluded.contains(id))
        .collect();
    progress.begin_items("gc: mark", ids.len() as u64);
    let mut live = LiveSet::default();
    let mut n = 0;
    for id in &ids {
        let m = match repo.load_manifest(id) {
            Ok(m) => m,
            // Deleted by a concurrent GC or `rbk delete` since the listing: nothing to keep.
            Err(Error::BackupNotFound { .. }) => continue,
            Err(Error::CorruptManifest { key, detail }) => {
                return Err(Error::CorruptManifest {
                    key,
                    detail: format!(
                        "{detail}; GC cannot tell which chunks it references and deletes nothing. Delete the backup with `rbk delete {id}` if it is beyond repair"
                    ),
                });
            }
            Err(e) => return Err(e),
        };
        for (_, f) in m.files() {
            for c in &f.chunks {
                live.insert(c);
            }
        }
        n += 1;
        progress.advance(1);
    }
    live.seal();
    progress.end();
    Ok((live, n))
}
