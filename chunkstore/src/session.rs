//! Sessions: how backups, restores and GCs on different machines learn about each other
//! without locks. The protocol and the argument for its safety are in `docs/gc.md`.
//!
//! A session is a set of heartbeat objects `sessions/<id>/hb-<seq>`. It writes heartbeat 0
//! before it looks at anything in the store, writes the next heartbeat every
//! [`SessionTiming::heartbeat`] (new object first, then the previous one is deleted, so one
//! always exists), and deletes its heartbeats when it ends, after its manifest was written.
//! A GC that finds a session's newest heartbeat older than [`SessionTiming::lease`] by its
//! own clock writes the tombstone `sessions/<id>/revoked` and from then on treats the session
//! as ended. A revoked session that was in fact alive sees the tombstone when it checks
//! before and after committing, and gives up: clocks decide only whether a slow session
//! fails, never whether data is kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::keys::{self, HEARTBEAT_PREFIX, REVOKED};
use crate::provider::{self, Provider, limits};
use crate::{Error, ErrorKind, Result};

/// Heartbeat objects are tiny JSON; anything larger is not one of ours.
const MAX_HEARTBEAT_LEN: usize = 4096;

/// How often sessions prove they are alive, and how long a GC waits before it gives up on one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTiming {
    pub heartbeat: Duration,
    pub lease: Duration,
    /// How long a backup session may rely on its index's last full sync (a listing of every
    /// pack), learning of deleted packs only from swept GC records (docs/gc.md, "Index sync
    /// without listing every pack"). Longer ago than this, it lists every pack again.
    pub full_sync_every: Duration,
    /// A backup session lists every pack, whatever `full_sync_every` says, while the index
    /// knows fewer packs than this: up to ten LIST requests, which also notice packs that
    /// vanished without a GC (deleted by hand, a lost disk) at once. Larger stores are
    /// listed once per `full_sync_every`.
    pub list_every_pack_below: u64,
    /// How long a GC keeps a swept record (version 4 stores), at least; never less than
    /// `lease + full_sync_every` ([`crate::gc::swept_keep`]).
    pub swept_keep: Duration,
}

impl Default for SessionTiming {
    fn default() -> Self {
        // A lease of 15 heartbeats tolerates a stalled store or a skewed clock for minutes
        // before a live backup is failed; a crashed one holds up GC for at most this long.
        SessionTiming {
            heartbeat: Duration::from_secs(60),
            lease: Duration::from_secs(15 * 60),
            full_sync_every: Duration::from_secs(24 * 3600),
            list_every_pack_below: 10_000,
            swept_keep: Duration::from_secs(7 * 86_400),
        }
    }
}

/// The body of a heartbeat object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// `backup`, `restore`, ...
    pub kind: String,
    /// What the session works on, e.g. the module name.
    pub label: String,
    pub host: String,
    pub pid: u32,
    pub started_ms: u64,
    /// The writer's clock when this heartbeat was written.
    pub heartbeat_ms: u64,
    /// A held session's own lease (a pending backup waiting for its parts, which nothing
    /// heartbeats): GC gives up on it only after the longer of this and its own lease, and
    /// never later than [`MAX_HELD_LEASE`]. Absent in the heartbeats of running processes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_ms: Option<u64>,
}

/// The longest lease a held session may ask for: a pending backup forgotten by its operator
/// holds up the sweep of what GC condemned meanwhile for at most this long.
pub const MAX_HELD_LEASE: Duration = Duration::from_secs(7 * 86_400);

impl Heartbeat {
    /// How long a GC with lease `gc_lease_ms` waits for this session to show life.
    pub fn lease_ms(&self, gc_lease_ms: u64) -> u64 {
        let held = self
            .lease_ms
            .unwrap_or(0)
            .min(MAX_HELD_LEASE.as_millis() as u64);
        gc_lease_ms.max(held)
    }

    /// # Errors
    /// `Corrupt` for bytes that are not a heartbeat.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Self> {
        if bytes.len() > MAX_HEARTBEAT_LEN {
            return Err(Error::corrupt(
                format!("heartbeat `{key}`"),
                "larger than any heartbeat",
            ));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt(format!("heartbeat `{key}`"), e.to_string()))
    }
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A session as seen in a listing of the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    pub id: String,
    /// Sequence numbers of the heartbeat objects present, ascending.
    pub heartbeats: Vec<u64>,
    /// When the store wrote the newest heartbeat, by the store's clock, if it keeps one.
    pub newest_written_ms: Option<u64>,
    pub revoked: bool,
    /// When the store wrote the tombstone, if there is one and the store keeps write times.
    pub revoked_written_ms: Option<u64>,
}

impl SessionState {
    /// Ended normally (no heartbeat left) or declared dead by a GC.
    pub fn is_over(&self) -> bool {
        self.revoked || self.heartbeats.is_empty()
    }
}

/// Every session with an object in the store, by id.
///
/// # Errors
/// Provider errors.
pub async fn list_sessions(p: &dyn Provider) -> Result<BTreeMap<String, SessionState>> {
    list_under(p, keys::SESSIONS).await
}

/// Sessions with an object under `prefix` (all of them, or one session's own prefix).
async fn list_under(p: &dyn Provider, prefix: &str) -> Result<BTreeMap<String, SessionState>> {
    let mut out: BTreeMap<String, SessionState> = BTreeMap::new();
    for o in provider::list_all(p, prefix).await? {
        let Some((id, name)) = keys::parse_session(&o.key) else {
            continue;
        };
        let state = out.entry(id.to_string()).or_insert_with(|| SessionState {
            id: id.to_string(),
            heartbeats: Vec::new(),
            newest_written_ms: None,
            revoked: false,
            revoked_written_ms: None,
        });
        if name == REVOKED {
            state.revoked = true;
            state.revoked_written_ms = o.modified_ms;
        } else if let Some(seq) = name
            .strip_prefix(HEARTBEAT_PREFIX)
            .and_then(|s| s.parse::<u64>().ok())
        {
            if state.heartbeats.iter().all(|s| *s < seq) {
                state.newest_written_ms = o.modified_ms;
            }
            state.heartbeats.push(seq);
        }
    }
    for s in out.values_mut() {
        s.heartbeats.sort_unstable();
    }
    Ok(out)
}

/// When the newest heartbeat of `s` was written, by its writer's clock. `None` when it could
/// not be read because the session just replaced or deleted it (so it is alive or over).
///
/// # Errors
/// Provider errors other than a vanished object.
pub async fn last_heartbeat_ms(p: &dyn Provider, s: &SessionState) -> Result<Option<u64>> {
    let Some(seq) = s.heartbeats.last() else {
        return Ok(None);
    };
    let key = keys::heartbeat(&s.id, *seq);
    match p.get(&key, limits::SESSION_RECORD).await {
        // An unreadable heartbeat proves nothing about liveness: treat it as very old.
        Ok(bytes) => Ok(Some(
            Heartbeat::parse(&key, &bytes).map_or(0, |h| h.heartbeat_ms),
        )),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        // Too large, a FIFO in a local store: not a heartbeat rbk wrote, so no proof of life.
        Err(e) if e.kind() == ErrorKind::Corrupt => Ok(Some(0)),
        Err(e) => Err(e),
    }
}

/// Session `id` as the store lists it now (`None`: it has no object left).
///
/// # Errors
/// Provider errors.
pub async fn session_state(p: &dyn Provider, id: &str) -> Result<Option<SessionState>> {
    Ok(list_under(p, &keys::session_objects(id)).await?.remove(id))
}

/// The newest heartbeat of `s`, parsed; `None` when it vanished or is not one rbk wrote.
///
/// # Errors
/// Provider errors.
pub async fn newest_heartbeat(p: &dyn Provider, s: &SessionState) -> Result<Option<Heartbeat>> {
    let Some(seq) = s.heartbeats.last() else {
        return Ok(None);
    };
    let key = keys::heartbeat(&s.id, *seq);
    match p.get(&key, limits::SESSION_RECORD).await {
        Ok(bytes) => Ok(Heartbeat::parse(&key, &bytes).ok()),
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The store's clock now: the time the store records for an object written just now (a
/// probe, deleted again). `None` when the provider keeps no write times.
///
/// # Errors
/// Provider errors.
pub async fn store_clock_ms(p: &dyn Provider) -> Result<Option<u64>> {
    let key = keys::clock_probe();
    p.put_if_absent(&key, Bytes::from_static(b"{}")).await?;
    let listed = provider::list_all(p, &key).await;
    let deleted = p.delete(&key).await;
    let written = listed?
        .into_iter()
        .find(|o| o.key == key)
        .and_then(|o| o.modified_ms);
    deleted?;
    Ok(written)
}

/// How long ago, in ms, session `s` last proved it was alive, and by whose clock.
///
/// By the store's clock when the store keeps write times: the newest heartbeat's write
/// time against `store_now_ms`. Writers' clocks then play no part, so a writer whose clock
/// runs a day fast cannot keep a dead session alive, and one running slow is not revoked
/// while it heartbeats. Otherwise (the in-memory provider) by the heartbeat's own
/// `heartbeat_ms`, written by the writer's clock, against this process's clock. `None` when
/// the heartbeat vanished meanwhile (the session replaced it, or ended).
///
/// # Errors
/// Provider errors.
pub async fn silence_ms(
    p: &dyn Provider,
    s: &SessionState,
    store_now_ms: Option<u64>,
) -> Result<Option<(u64, Clock)>> {
    if let (Some(now), Some(written)) = (store_now_ms, s.newest_written_ms) {
        return Ok(Some((now.saturating_sub(written), Clock::Store)));
    }
    Ok(last_heartbeat_ms(p, s)
        .await?
        .map(|last| (now_ms().saturating_sub(last), Clock::Writer)))
}

/// Whose clock measured a session's silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    Store,
    Writer,
}

/// Declares `session` dead. Idempotent.
///
/// # Errors
/// Provider errors.
pub async fn revoke(p: &dyn Provider, session: &str) -> Result<()> {
    p.put_if_absent(&keys::revoked(session), Bytes::from_static(b"{}"))
        .await
        .map(|_| ())
}

/// How long a tombstone is kept, by the store's clock. A process that wakes up later still
/// learns it was revoked: its heartbeats are gone (see [`Session::check_alive`]).
pub const TOMBSTONE_RETENTION: Duration = Duration::from_secs(30 * 86_400);

/// Deletes tombstones the store wrote more than [`TOMBSTONE_RETENTION`] before
/// `store_now_ms` whose sessions have no heartbeat left, and probes a GC left behind;
/// returns how many objects it deleted.
///
/// # Errors
/// Provider errors.
pub async fn collect_tombstones(p: &dyn Provider, store_now_ms: u64) -> Result<u64> {
    let cutoff = store_now_ms.saturating_sub(TOMBSTONE_RETENTION.as_millis() as u64);
    let mut deleted = 0;
    for o in provider::list_all(p, keys::SESSIONS).await? {
        let Some((id, name)) = keys::parse_session(&o.key) else {
            continue;
        };
        let old = o.modified_ms.is_some_and(|w| w < cutoff);
        let leftover_probe = keys::is_clock_probe(id, name);
        if old && (name == REVOKED || leftover_probe) {
            let state = session_state(p, id).await?;
            if state.is_some_and(|s| s.heartbeats.is_empty()) {
                p.delete(&o.key).await?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// Removes the heartbeats of a revoked session (its tombstone stays for
/// [`TOMBSTONE_RETENTION`], and the missing heartbeats tell the process the same after).
///
/// # Errors
/// Provider errors.
pub async fn clear_revoked(p: &dyn Provider, s: &SessionState) -> Result<()> {
    debug_assert!(s.revoked);
    for seq in &s.heartbeats {
        p.delete(&keys::heartbeat(&s.id, *seq)).await?;
    }
    Ok(())
}

/// A running session, owned by the operation that began it (inside a
/// [`crate::WriteSession`]).
#[derive(Debug)]
pub(crate) struct Session {
    id: String,
    provider: Arc<dyn Provider>,
    kind: String,
    label: String,
    started_ms: u64,
    stop: Option<tokio::sync::watch::Sender<bool>>,
    task: Option<tokio::task::JoinHandle<u64>>,
    revoked: Arc<AtomicBool>,
}

impl Session {
    /// Writes the session's first heartbeat. Nothing heartbeats yet: see
    /// [`Session::start_heartbeats`].
    pub(crate) async fn begin(
        provider: Arc<dyn Provider>,
        kind: &str,
        label: &str,
    ) -> Result<Self> {
        let session = Session {
            id: new_session_id(),
            provider,
            kind: kind.into(),
            label: label.into(),
            started_ms: now_ms(),
            stop: None,
            task: None,
            revoked: Arc::new(AtomicBool::new(false)),
        };
        let body = heartbeat_body(kind, label, session.started_ms, None);
        session
            .provider
            .put_if_absent(&keys::heartbeat(&session.id, 0), body)
            .await?;
        Ok(session)
    }

    /// Starts the heartbeat loop on `rt`, one heartbeat every `interval`.
    pub(crate) fn start_heartbeats(
        mut self,
        rt: &tokio::runtime::Handle,
        interval: Duration,
    ) -> Self {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        self.stop = Some(stop_tx);
        self.task = Some(rt.spawn(heartbeat_loop(
            self.provider.clone(),
            self.id.clone(),
            self.kind.clone(),
            self.label.clone(),
            self.started_ms,
            interval,
            stop_rx,
            self.revoked.clone(),
        )));
        self
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Ends the session: stops its heartbeats and deletes them. Everything it wrote must be
    /// committed (or abandoned) before.
    pub(crate) async fn end(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
        let last = match self.task.take() {
            Some(task) => task.await.unwrap_or(u64::MAX),
            None => 0,
        };
        // Normally only `last` exists; an earlier one is left when a delete failed.
        let prefix = keys::session_objects(&self.id);
        let sessions = list_under(self.provider.as_ref(), &prefix).await?;
        let present = sessions.get(&self.id).map(|s| s.heartbeats.as_slice());
        for seq in present.unwrap_or_default().iter().filter(|s| **s <= last) {
            self.provider
                .delete(&keys::heartbeat(&self.id, *seq))
                .await?;
        }
        Ok(())
    }

    /// Fails, without a request, once the heartbeat loop has seen this session's tombstone.
    pub(crate) fn check_not_revoked(&self) -> Result<()> {
        if self.revoked.load(Ordering::SeqCst) {
            return Err(Error::SessionRevoked {
                session: self.id.clone(),
            });
        }
        Ok(())
    }

    /// Fails when a GC has declared this session dead.
    pub(crate) async fn check_alive(&self) -> Result<()> {
        // Revoked: the tombstone says so, or a session that has not ended has no heartbeat
        // left (the loop writes the next one before it deletes the last), which means a GC
        // revoked it and cleared them, even if the tombstone has since been collected. One
        // listing of the session's own objects answers both.
        if self.revoked.load(Ordering::SeqCst)
            || session_state(self.provider.as_ref(), &self.id)
                .await?
                .is_none_or(|s| s.revoked || s.heartbeats.is_empty())
        {
            self.revoked.store(true, Ordering::SeqCst);
            return Err(Error::SessionRevoked {
                session: self.id.clone(),
            });
        }
        Ok(())
    }
}

fn heartbeat_body(kind: &str, label: &str, started_ms: u64, lease_ms: Option<u64>) -> Bytes {
    let hb = Heartbeat {
        kind: kind.into(),
        label: label.into(),
        host: hostname(),
        pid: std::process::id(),
        started_ms,
        heartbeat_ms: now_ms(),
        lease_ms,
    };
    Bytes::from(serde_json::to_vec(&hb).expect("heartbeat serializes"))
}

/// The heartbeat loop: every `interval`, stop if revoked, else write heartbeat `seq + 1` and
/// delete `seq`. Returns the last sequence number written. It also ends when the session is
/// dropped without being ended (its stop sender goes away), so a session lost on an error
/// path or a panic ages past the lease instead of living as long as the process.
#[allow(clippy::too_many_arguments)]
async fn heartbeat_loop(
    p: Arc<dyn Provider>,
    id: String,
    kind: String,
    label: String,
    started_ms: u64,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    revoked: Arc<AtomicBool>,
) -> u64 {
    let mut seq = 0u64;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return seq,
        }
        // Revoked: the tombstone says so, or — once old tombstones are collected — the
        // heartbeat this loop wrote last is gone, because only a revoking GC deletes it.
        // One listing of the session's own objects answers both.
        if let Ok(mine) = session_state(p.as_ref(), &id).await
            && mine.is_none_or(|s| s.revoked || !s.heartbeats.contains(&seq))
        {
            revoked.store(true, Ordering::SeqCst);
            return seq;
        }
        // A failed heartbeat is retried at the next tick; if they keep failing, a GC may
        // revoke the session and the commit check fails it cleanly.
        let body = heartbeat_body(&kind, &label, started_ms, None);
        if p.put_if_absent(&keys::heartbeat(&id, seq + 1), body)
            .await
            .is_ok()
        {
            let _ = p.delete(&keys::heartbeat(&id, seq)).await;
            seq += 1;
        }
    }
}

/// A fresh session id: `<13-digit epoch ms>-<16 hex>`.
fn new_session_id() -> String {
    format!("{:013}-{:016x}", now_ms(), rand::random::<u64>())
}

/// Begins a *held* session: one heartbeat with its own `lease`, which no process renews. It
/// stands for work that outlives any one process (a pending backup whose parts other
/// machines write): GCs arm their records with it like any running session, so nothing it
/// will reference is swept while it is held, and they give up on it once `lease` has passed
/// by the store's clock. Returns its id.
///
/// # Errors
/// `InvalidInput` for a lease over [`MAX_HELD_LEASE`]; provider errors.
pub async fn begin_held(
    p: &dyn Provider,
    kind: &str,
    label: &str,
    lease: Duration,
) -> Result<String> {
    if lease > MAX_HELD_LEASE {
        return Err(Error::InvalidInput(format!(
            "a lease of {} s is longer than the {} s allowed",
            lease.as_secs(),
            MAX_HELD_LEASE.as_secs()
        )));
    }
    let id = new_session_id();
    let body = heartbeat_body(kind, label, now_ms(), Some(lease.as_millis() as u64));
    p.put_if_absent(&keys::heartbeat(&id, 0), body).await?;
    Ok(id)
}

/// Fails with `SessionRevoked` unless held session `id` is still held: not revoked, and its
/// heartbeat not deleted (by a GC that revoked it, or by the end of the session).
///
/// # Errors
/// `SessionRevoked`, provider errors.
pub async fn check_held(p: &dyn Provider, id: &str) -> Result<()> {
    match session_state(p, id).await? {
        Some(s) if !s.is_over() => Ok(()),
        _ => Err(Error::SessionRevoked { session: id.into() }),
    }
}

/// Ends held session `id`: deletes its heartbeats. Idempotent.
///
/// # Errors
/// Provider errors.
pub async fn end_held(p: &dyn Provider, id: &str) -> Result<()> {
    if let Some(s) = session_state(p, id).await? {
        for seq in &s.heartbeats {
            p.delete(&keys::heartbeat(id, *seq)).await?;
        }
    }
    Ok(())
}

pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}
