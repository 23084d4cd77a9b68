//! Garbage collection of packs, the whole protocol of `docs/gc.md` in one place.
//!
//! The caller decides which chunks are live (rbk's engine: every chunk of every retained
//! manifest, after applying retention) and hands [`collect`] a closure that computes that
//! [`LiveSet`]; everything else happens here, in this order:
//! 1. revoke sessions whose heartbeats stopped for longer than the lease, or that the
//!    operator names;
//! 2. mark: with the live set, condemn the packs that are dead or mostly dead, in a new
//!    record (`records.rs`) armed with the sessions running after it was written;
//! 3. sweep (`sweep.rs`) every armed record whose sessions are all over, against a live set
//!    computed again after that was established, then retire the record;
//! 4. delete what interrupted writes left behind, and tombstones old enough that no process
//!    can still need them.
//!
//! With no session running, one run does everything. Records that must wait for a running
//! session are swept by a later run.

mod mark;
pub(crate) mod records;
mod sweep;

use std::collections::{BTreeMap, HashSet};

pub use mark::{LiveSet, PackUsage};
pub use records::{Condemnation, Records};
pub use sweep::SweepReport;

use crate::session::{self, SessionState, now_ms};
use crate::store::ChunkStore;
use crate::{Error, PackId, Progress, Result};

/// Packs with more than this fraction of their chunk bytes dead are rewritten.
pub const DEFAULT_REPACK_THRESHOLD: f64 = 0.3;

/// How long a GC keeps a swept record (version 4 stores): `timing.swept_keep` (7 days), and
/// never less than `lease + full_sync_every`. Backup sessions whose index listed every pack
/// less than `full_sync_every` ago learn of deleted packs from swept records alone, so a
/// record must outlive that; and one that began before the collecting GC revoked silent
/// sessions, but had not read the records yet, was silent for longer than the lease, and
/// was revoked (docs/gc.md, "Index sync without listing every pack").
pub fn swept_keep(timing: &session::SessionTiming) -> std::time::Duration {
    timing.swept_keep.max(timing.lease + timing.full_sync_every)
}

/// Temporary files older than this are leftovers of writes whose process died.
pub const LEFTOVER_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct CollectOptions {
    /// Report what would be done; write and delete nothing.
    pub dry_run: bool,
    pub repack_threshold: f64,
    /// Sessions to revoke whatever their heartbeats say (`rbk gc --revoke`): a backup the
    /// operator knows is dead, e.g. on a machine that was switched off.
    pub revoke: Vec<String>,
}

impl CollectOptions {
    /// # Errors
    /// `InvalidInput` for a repack threshold outside 0..=1.
    pub fn check(&self) -> Result<()> {
        if !(0.0..=1.0).contains(&self.repack_threshold) {
            return Err(Error::InvalidInput(format!(
                "repack threshold {} must be between 0 and 1",
                self.repack_threshold
            )));
        }
        Ok(())
    }
}

impl Default for CollectOptions {
    fn default() -> Self {
        CollectOptions {
            dry_run: false,
            repack_threshold: DEFAULT_REPACK_THRESHOLD,
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

/// What one [`collect`] did (in a dry run: would do).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CollectReport {
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
    /// Swept records (version 4 stores) old enough that no backup session needs them.
    pub swept_records_deleted: u64,
}

/// Fails unless every id in `revoke` names a running session: a typo must not pass as done.
///
/// # Errors
/// `InvalidInput` naming the id, provider errors.
pub fn check_revocable(store: &ChunkStore, revoke: &[String]) -> Result<()> {
    let running = running_sessions(store)?;
    unknown_revocation(revoke, |id| running.contains_key(id))
}

fn unknown_revocation(revoke: &[String], running: impl Fn(&str) -> bool) -> Result<()> {
    match revoke.iter().find(|id| !running(id)) {
        Some(id) => Err(Error::InvalidInput(format!(
            "--revoke {id}: no running session of that id in the store; `rbk gc --dry-run` lists them"
        ))),
        None => Ok(()),
    }
}

/// Runs GC over `store`. `live` computes the live set from what the caller keeps (its
/// manifests); it is called once to mark and once more before a sweep, after the sessions
/// the swept records wait for were seen to be over, so that it covers every manifest they
/// wrote.
///
/// # Errors
/// `InvalidInput` for a bad threshold or an unknown `--revoke` id, provider and index
/// errors, and whatever `live` returns.
pub fn collect<E: From<Error>>(
    store: &ChunkStore,
    opts: &CollectOptions,
    progress: &dyn Progress,
    mut live: impl FnMut() -> Result<LiveSet, E>,
) -> Result<CollectReport, E> {
    opts.check()?;
    let p = store.provider().clone();
    // 1. Sessions whose heartbeats stopped, or that the operator names (each of which must
    // be running: the views list every running session).
    let (sessions, revoked_as_of_ms) = session_views(store, opts)?;
    let mut report = CollectReport {
        sessions,
        ..Default::default()
    };
    unknown_revocation(&opts.revoke, |id| {
        report.sessions.iter().any(|s| s.id == id)
    })?;
    if !opts.dry_run {
        report.sessions_revoked = revoke(store, &report.sessions)?;
    }

    // 2. Mark.
    store.sync_index()?;
    let records = store.block_on(records::list(p.as_ref()))?;
    if !opts.dry_run {
        for (key, why) in &records.damaged {
            tracing::warn!("deleting damaged GC record {key}: {why}");
            store.block_on(p.delete(key))?;
        }
    }
    let marked = live()?;
    report.live_chunks = marked.len() as u64;
    report.live_set_bytes = marked.heap_bytes() as u64;
    let condemned = mark(store, &marked, &records.packs(), opts, &mut report)?;
    drop(marked);
    if opts.dry_run {
        return Ok(report);
    }
    let mut to_arm: Vec<String> = records
        .condemnations
        .iter()
        .filter(|c| c.sessions.is_none() && !c.is_swept())
        .map(|c| c.id.clone())
        .collect();
    if !condemned.is_empty() {
        to_arm.push(store.block_on(records::condemn(p.as_ref(), &condemned))?);
    }
    if !to_arm.is_empty() {
        // Any listing taken after the condemned part was written is a valid arming.
        let running: Vec<String> = running_sessions(store)?.into_keys().collect();
        for id in &to_arm {
            store.block_on(records::arm(p.as_ref(), id, running.clone()))?;
        }
    }

    // 3. Sweep what no running session can still need.
    let running = running_sessions(store)?;
    let records = store.block_on(records::list(p.as_ref()))?;
    let mut sweepable = Vec::new();
    let mut waiting: HashSet<String> = HashSet::new();
    for c in records.condemnations.iter().filter(|c| !c.is_swept()) {
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
        // is in what `live` reads now.
        let live = live()?;
        let packs: Vec<PackId> = sweepable
            .iter()
            .flat_map(|c| c.packs.iter().copied())
            .collect();
        let total: u64 = packs
            .iter()
            .filter_map(|pk| store.index().ok()?.pack_size(pk).ok().flatten())
            .sum();
        progress.begin("gc: sweep", total);
        report.sweep = sweep::sweep(
            store,
            &packs,
            &condemned,
            &live,
            opts.repack_threshold,
            |n| progress.advance(n),
        )?;
        progress.end();
        let keep_swept = store.config().keeps_swept_records();
        for c in sweepable {
            if keep_swept {
                store.block_on(records::mark_swept(p.as_ref(), &c.id))?;
            } else {
                store.block_on(records::retire(p.as_ref(), &c.id))?;
            }
            report.records_swept += 1;
        }
    }
    // 4. What interrupted writes left behind (a local store's `.tmp/`), and tombstones old
    // enough that no process can still need them.
    report.leftovers_deleted = store.block_on(p.collect_leftovers(LEFTOVER_AGE))?;
    if let Some(now) = store.block_on(session::store_clock_ms(p.as_ref()))? {
        report.tombstones_deleted = store.block_on(session::collect_tombstones(p.as_ref(), now))?;
    }
    // Swept records are collected by their age when this run revoked, in step 1, every
    // session silent for longer than the lease: a backup session that began before then
    // and has not yet read the records was revoked (docs/gc.md, "Index sync without
    // listing every pack").
    if let Some(now) = revoked_as_of_ms {
        report.swept_records_deleted = store.block_on(records::collect_swept(
            p.as_ref(),
            &records,
            now,
            swept_keep(&store.session_timing()),
        ))?;
    }
    Ok(report)
}

/// Counts every pack the index knows against `live` and returns those worth condemning
/// (dead, or more than the repack threshold dead), skipping packs already condemned.
fn mark(
    store: &ChunkStore,
    live: &LiveSet,
    pending: &HashSet<PackId>,
    opts: &CollectOptions,
    report: &mut CollectReport,
) -> Result<Vec<PackId>> {
    let mut condemned = Vec::new();
    // A live chunk counts in the first pack (in id order) that holds it; copies in later
    // packs are dead weight there. One bit per live chunk.
    let mut claimed = vec![0u64; live.len().div_ceil(64)];
    for (pack, size) in store.index()?.packs()? {
        report.packs_total += 1;
        report.pack_bytes_total += size;
        if pending.contains(&pack) {
            continue;
        }
        let entries = store.index()?.pack_entries(&pack)?;
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
    Ok(condemned)
}

/// The sessions that are neither over nor revoked.
fn running_sessions(store: &ChunkStore) -> Result<BTreeMap<String, SessionState>> {
    let mut all = store.sessions()?;
    all.retain(|_, s| !s.is_over());
    Ok(all)
}

/// Every running session with how long it has been silent, by the store's clock where the
/// store keeps one ([`session::silence_ms`]), and whether this GC revokes it: silent longer
/// than the lease, or named in `opts.revoke`. The store's "now" comes from a probe object
/// this GC writes; a dry run writes nothing, so it compares the store's write times with
/// this machine's clock instead.
///
/// Also returns the store's "now" the views were measured against (`None` in a dry run, or
/// when the store keeps no write times).
fn session_views(
    store: &ChunkStore,
    opts: &CollectOptions,
) -> Result<(Vec<SessionView>, Option<u64>)> {
    let p = store.provider().clone();
    let lease_ms = store.session_timing().lease.as_millis() as u64;
    let store_now = if opts.dry_run {
        Some(now_ms())
    } else {
        store.block_on(session::store_clock_ms(p.as_ref()))?
    };
    let mut out = Vec::new();
    for s in running_sessions(store)?.into_values() {
        let silence = store.block_on(session::silence_ms(p.as_ref(), &s, store_now))?;
        let heartbeat = store.block_on(session::newest_heartbeat(p.as_ref(), &s))?;
        // A held session (a pending backup) carries its own, longer lease.
        let lease_ms = heartbeat
            .as_ref()
            .map_or(lease_ms, |h| h.lease_ms(lease_ms));
        out.push(SessionView {
            revoke: opts.revoke.contains(&s.id) || silence.is_some_and(|(ms, _)| ms > lease_ms),
            silent_ms: silence.map(|(ms, _)| ms),
            store_clock: silence.is_some_and(|(_, c)| c == session::Clock::Store),
            heartbeat,
            id: s.id,
        });
    }
    Ok((out, store_now.filter(|_| !opts.dry_run)))
}

/// Revokes the sessions `views` marks, and clears heartbeats left by sessions revoked
/// earlier. Returns the newly revoked ids.
fn revoke(store: &ChunkStore, views: &[SessionView]) -> Result<Vec<String>> {
    let p = store.provider().clone();
    let mut revoked = Vec::new();
    for mut s in store.sessions()?.into_values() {
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::provider::{MemoryProvider, Provider};
    use crate::{ChunkId, NoProgress};

    fn collect_with(store: &ChunkStore, live: &[&[u8]]) -> CollectReport {
        collect(store, &CollectOptions::default(), &NoProgress, || {
            let mut set = LiveSet::default();
            for c in live {
                set.insert(&ChunkId::of(c));
            }
            set.seal();
            Ok::<_, Error>(set)
        })
        .unwrap()
    }

    /// A backup that begins after a condemnation stores the condemned chunks again, in the
    /// same order when its module did not change. Its pack must not be the condemned pack
    /// under the same name, or the sweep deletes the only copy of what it is about to commit.
    #[test]
    fn a_pack_stored_again_after_a_condemnation_survives_the_sweep() {
        let p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let dir = tempfile::tempdir().unwrap();
        let store = ChunkStore::open(p.clone(), dir.path(), true).unwrap();
        let chunks: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 3000]).collect();
        let put_all = |w: &crate::store::WriteSession| {
            for c in &chunks {
                assert!(w.put_chunk(ChunkId::of(c), c).unwrap());
            }
            w.flush().unwrap();
        };
        // A backup that died before its manifest: its pack is garbage.
        let dead = store.begin_session("backup", "m").unwrap();
        put_all(&dead);
        dead.end().unwrap();
        let held = store.begin_session("backup", "other").unwrap();
        let first = collect_with(&store, &[]);
        assert_eq!((first.packs_condemned, first.records_waiting), (1, 1));

        let again = store.begin_session("backup", "m").unwrap();
        put_all(&again);
        held.end().unwrap();
        let second = collect_with(&store, &[]);
        assert_eq!(
            (second.records_swept, second.sweep.packs_deleted),
            (1, 1),
            "{second:?}"
        );
        again
            .commit("m", |_| {
                ("b".into(), bytes::Bytes::from_static(b"manifest"))
            })
            .unwrap();
        for c in &chunks {
            let got = std::sync::Mutex::new(Vec::new());
            store
                .read_chunks(&[ChunkId::of(c)], |_, d| {
                    got.lock().unwrap().extend_from_slice(d);
                    Ok::<(), Error>(())
                })
                .unwrap();
            assert_eq!(&got.into_inner().unwrap(), c);
        }
    }
}
