//! `rbk serve --http ADDR`: the backups page, its JSON API and Prometheus metrics, served by
//! the process that runs the modules and their periodic backups (docs/web.md).
//!
//! Read-only by design: nothing here changes the store or the data dir. What the pages show
//! comes from three places, none of which makes a backup wait:
//! - the store, through a read-only view without the local index ([`catalog`]), refreshed
//!   every [`REFRESH_EVERY`] and whenever the journal says something happened;
//! - the data dir's journal (`rbk_engine::layout::journal`): durations, failures, GC runs;
//! - the serve loop ([`ServeStatus`]): which modules run, what is scheduled next, the mirror.

pub mod catalog;
mod chart;
mod escape;
mod html;
mod metrics;
mod routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use rbk_chunkstore::provider;
use rbk_engine::layout::journal::{self, Entry, Event};
use rbk_engine::{BackupId, Repo};

use catalog::{Catalog, Known, Summary};
use metrics::Metrics;

/// How often the store is listed again when nothing happened on this data dir.
pub const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// How often the journal is looked at.
const JOURNAL_POLL: Duration = Duration::from_millis(500);
/// Journal entries kept in memory for the pages.
const HISTORY: usize = 10_000;

/// What the serve loop knows that the store does not.
#[derive(Debug, Clone, Default)]
pub struct ServeStatus {
    /// Modules this process runs.
    pub running: Vec<String>,
    /// When each module's next periodic backup is due.
    pub next_backup: BTreeMap<String, SystemTime>,
    pub next_gc: Option<SystemTime>,
    pub mirror: Option<MirrorLag>,
}

/// What each module's backups occupy in the store, as `rbk stats` counts it (a chunk
/// shared by several modules counts for the first in name order), computed by the serve loop
/// after a periodic GC, which holds the local index that this needs.
#[derive(Debug, Clone)]
pub struct StoredFigures {
    pub as_of: SystemTime,
    pub by_module: BTreeMap<String, u64>,
    /// Pack bytes no backup needs (freed by the next GC's sweep).
    pub garbage: Option<u64>,
}

/// The mirror as of this process's last sync.
#[derive(Debug, Clone)]
pub struct MirrorLag {
    pub as_of: SystemTime,
    pub pending_objects: u64,
    pub pending_bytes: u64,
    pub last_synced: Option<String>,
    pub oldest_pending_age_seconds: Option<u64>,
    pub error: Option<String>,
}

impl MirrorLag {
    /// Before the first sync answered.
    pub fn unknown() -> MirrorLag {
        MirrorLag {
            as_of: SystemTime::now(),
            pending_objects: 0,
            pending_bytes: 0,
            last_synced: None,
            oldest_pending_age_seconds: None,
            error: None,
        }
    }
}

/// The state every page reads.
pub struct Web {
    data_dir: PathBuf,
    /// `backup.provider`, as configured (it may hold credentials) and as shown.
    provider_spec: String,
    provider_shown: String,
    catalog: RwLock<Arc<Catalog>>,
    metrics: Metrics,
    status: Mutex<ServeStatus>,
    stored: Mutex<Option<StoredFigures>>,
    /// The journal's newest entries, oldest first.
    history: Mutex<Vec<Entry>>,
    /// The read-only view of the store, once it opened.
    repo: Mutex<Option<Arc<Repo>>>,
    refresh_asked: AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `instant` (of this process's clock) as a wall-clock time.
pub fn wall_time(instant: Instant) -> SystemTime {
    let now = Instant::now();
    if instant >= now {
        SystemTime::now() + (instant - now)
    } else {
        SystemTime::now() - (now - instant)
    }
}

/// A module as the overview shows it.
#[derive(Debug, Clone)]
pub struct ModuleView {
    pub module: String,
    pub in_data_dir: bool,
    pub running: bool,
    pub backups: usize,
    pub newest: Option<(BackupId, BackupStatus)>,
    /// Bytes its backups added to the store when they were taken (the ones still there).
    pub added_bytes: u64,
    /// What its backups occupy in the store, as of the last periodic GC of this process.
    pub stored_bytes: Option<u64>,
    pub next_backup: Option<SystemTime>,
    /// The newest failed backup on this data dir, when it is newer than the newest backup.
    pub failing: Option<Entry>,
}

#[derive(Debug, Clone)]
pub enum BackupStatus {
    Ok(Arc<Summary>),
    Broken(String),
    /// Not read yet (a first look at a large store).
    Loading,
}

impl BackupStatus {
    pub fn word(&self) -> &'static str {
        match self {
            BackupStatus::Ok(_) => "ok",
            BackupStatus::Broken(_) => "damaged",
            BackupStatus::Loading => "loading",
        }
    }
}

impl Web {
    pub fn new(data_dir: &Path, provider_spec: &str) -> Arc<Web> {
        let metrics = Metrics::new();
        let history = journal::read_all(data_dir);
        metrics.seed(&history);
        Arc::new(Web {
            data_dir: data_dir.into(),
            provider_spec: provider_spec.into(),
            provider_shown: crate::config::redact(provider_spec),
            catalog: RwLock::default(),
            metrics,
            status: Mutex::default(),
            stored: Mutex::default(),
            history: Mutex::new(tail_of(history)),
            repo: Mutex::new(None),
            refresh_asked: AtomicBool::new(false),
        })
    }

    /// The serve loop's view of things, published after each of its rounds.
    pub fn set_status(&self, status: ServeStatus) {
        if let Some(m) = &status.mirror {
            self.metrics.set_mirror_pending(m.pending_objects);
        }
        *lock(&self.status) = status;
    }

    /// Per-module stored bytes, after a periodic GC.
    pub fn set_stored(&self, figures: StoredFigures) {
        self.metrics.set_module_stored(&figures.by_module);
        *lock(&self.stored) = Some(figures);
    }

    fn stored(&self) -> Option<StoredFigures> {
        lock(&self.stored).clone()
    }

    /// Asks for the store to be listed again now (after a round that changed it).
    pub fn refresh_soon(&self) {
        self.refresh_asked.store(true, Ordering::Release);
    }

    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn status(&self) -> ServeStatus {
        lock(&self.status).clone()
    }

    fn history(&self) -> Vec<Entry> {
        lock(&self.history).clone()
    }

    fn status_of(catalog: &Catalog, id: &BackupId) -> BackupStatus {
        match catalog.get(id) {
            Some(Known::Summary(s)) => BackupStatus::Ok(s.clone()),
            Some(Known::Broken(why)) => BackupStatus::Broken(why.clone()),
            None => BackupStatus::Loading,
        }
    }

    /// Every module of the data dir and of the store.
    pub fn modules(&self) -> Vec<ModuleView> {
        let catalog = self.catalog();
        let status = self.status();
        let history = self.history();
        let stored = self.stored();
        let local = rbk_engine::layout::module_names(&self.data_dir);
        let mut names: Vec<String> = catalog.modules.keys().cloned().collect();
        names.extend(local.iter().cloned());
        names.sort();
        names.dedup();
        names
            .into_iter()
            .map(|module| {
                let ids = catalog.modules.get(&module);
                let newest = ids
                    .and_then(|ids| ids.last())
                    .map(|id| (id.clone(), Self::status_of(&catalog, id)));
                let newest_ms = newest.as_ref().map_or(0, |(id, _)| id.millis);
                let failing = history
                    .iter()
                    .rev()
                    .find(|e| matches!(&e.event, Event::BackupFailed { module: m, .. } if *m == module))
                    .filter(|e| e.ms > newest_ms)
                    .cloned();
                ModuleView {
                    in_data_dir: local.contains(&module),
                    running: status.running.contains(&module),
                    backups: ids.map_or(0, Vec::len),
                    added_bytes: catalog.summaries(&module).map(|s| s.added_bytes).sum(),
                    stored_bytes: stored
                        .as_ref()
                        .map(|f| f.by_module.get(&module).copied().unwrap_or(0)),
                    next_backup: status.next_backup.get(&module).copied(),
                    newest,
                    failing,
                    module,
                }
            })
            .collect()
    }

    /// Whether `module` is known at all: in the data dir or in the store.
    pub fn knows(&self, module: &str) -> bool {
        self.catalog().modules.contains_key(module)
            || rbk_engine::layout::module_names(&self.data_dir)
                .iter()
                .any(|m| m == module)
    }

    /// Durations of backups recorded in the journal, by backup id.
    fn durations(&self) -> BTreeMap<String, f64> {
        lock(&self.history)
            .iter()
            .filter_map(|e| match &e.event {
                Event::Backup {
                    backup_id, seconds, ..
                } => Some((backup_id.clone(), *seconds)),
                _ => None,
            })
            .collect()
    }

    fn repo(&self) -> Option<Arc<Repo>> {
        lock(&self.repo).clone()
    }

    /// One look: the journal's new entries, then the store when it is due.
    fn refresh(&self, working: &mut Catalog, tail: &mut journal::Tail, store_due: bool) {
        let new = tail.poll();
        let happened = !new.is_empty();
        for e in &new {
            self.metrics.observe(e);
        }
        if happened {
            let mut h = lock(&self.history);
            h.extend(new);
            let excess = h.len().saturating_sub(HISTORY);
            h.drain(..excess);
        }
        let asked = self.refresh_asked.swap(false, Ordering::AcqRel);
        if !(store_due || happened || asked) {
            return;
        }
        let repo = match self.repo() {
            Some(r) => r,
            None => match provider::from_spec(&self.provider_spec)
                .map_err(anyhow::Error::new)
                .and_then(|p| Repo::open_view(p).map_err(anyhow::Error::new))
            {
                Ok(r) => {
                    let r = Arc::new(r);
                    *lock(&self.repo) = Some(r.clone());
                    r
                }
                Err(e) => {
                    working.error = Some(format!("{e:#}"));
                    working.refreshed = Some(SystemTime::now());
                    self.publish(working);
                    return;
                }
            },
        };
        working.refresh(&repo, &|c| self.publish(c));
        self.publish(working);
    }

    fn publish(&self, c: &Catalog) {
        self.metrics.set_store(c);
        *self.catalog.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c.clone());
    }
}

/// One backup in full: what `rbk info` shows but the stored bytes (they need the local
/// index), and its restores into this data dir.
pub struct Detail {
    pub info: rbk_engine::ops::info::BackupInfo,
    pub restores: Vec<rbk_engine::layout::epochs::RestoreEpoch>,
}

impl Web {
    /// Reads backup `id` from the store (one manifest).
    ///
    /// # Errors
    /// `BackupNotFound`, `CorruptManifest`, `Uncommitted`, provider errors; `Unavailable`
    /// before the store could be opened.
    pub fn detail(&self, id: &BackupId) -> rbk_engine::Result<Detail> {
        let Some(repo) = self.repo() else {
            return Err(rbk_engine::Error::Store(rbk_chunkstore::Error::provider(
                self.provider_shown.clone(),
                "config",
                "the store has not answered yet; try again in a moment",
                rbk_chunkstore::ErrorKind::Unavailable,
            )));
        };
        let info = rbk_engine::ops::info::info_without_index(&repo, id)?;
        // A damaged epoch log must not hide the backup.
        let restores = rbk_engine::layout::epochs::read(&self.data_dir, &id.module)
            .map(|log| {
                log.epochs
                    .into_iter()
                    .filter(|e| e.backup_id == id.to_string())
                    .collect()
            })
            .unwrap_or_default();
        Ok(Detail { info, restores })
    }
}

fn tail_of(mut v: Vec<Entry>) -> Vec<Entry> {
    let excess = v.len().saturating_sub(HISTORY);
    v.drain(..excess);
    v
}

/// The server and its refresher; both stop when this is dropped.
pub struct WebServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Binds `addr` now (so a port in use is an error of `rbk serve`, not a log line) and serves
/// `web` from two threads of its own: the HTTP server and the refresher.
///
/// # Errors
/// The address cannot be bound.
pub fn start(addr: &str, web: Arc<Web>) -> Result<WebServer> {
    let listener = std::net::TcpListener::bind(addr)
        .with_context(|| format!("cannot listen on `{addr}` for --http"))?;
    let bound = listener.local_addr().context("the --http address")?;
    if !bound.ip().is_loopback() {
        eprintln!(
            "warning: the backups page on {bound} is reachable from other machines; it is read-only and has no login (see docs/web.md)"
        );
    }
    listener
        .set_nonblocking(true)
        .context("the --http socket")?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the HTTP runtime")?;
    let app = routes::router(web.clone());
    let server = std::thread::Builder::new()
        .name("rbk-http".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("the backups page stopped: {e}");
                        return;
                    }
                };
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(async move {
                        let _ = rx.await;
                    })
                    .await;
                if let Err(e) = served {
                    eprintln!("the backups page stopped: {e}");
                }
            });
        })
        .context("starting the HTTP thread")?;
    let refresher = {
        let stop = stop.clone();
        std::thread::Builder::new()
            .name("rbk-http-refresh".into())
            .spawn(move || {
                let mut working = Catalog::default();
                let mut tail = journal::Tail::from_end(&web.data_dir);
                let mut last_listing: Option<Instant> = None;
                while !stop.load(Ordering::Acquire) {
                    let due = last_listing.is_none_or(|t| t.elapsed() >= REFRESH_EVERY);
                    let before = working.refreshed;
                    web.refresh(&mut working, &mut tail, due);
                    if working.refreshed != before {
                        last_listing = Some(Instant::now());
                    }
                    std::thread::sleep(JOURNAL_POLL);
                }
            })
            .context("starting the HTTP refresher")?
    };
    Ok(WebServer {
        addr: bound,
        stop,
        shutdown: Some(tx),
        threads: vec![server, refresher],
    })
}
