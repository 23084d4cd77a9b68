//! What the pages know of the store: every module's backup ids, a summary of each backup
//! (read once from its manifest: manifests never change), and the store's pack totals.
//! Refreshed in the background through a read-only view of the store, which never takes the
//! local index that backups and GC hold, so the pages never wait for them and never make
//! them wait.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use rbk_engine::manifest::ManifestObject;
use rbk_engine::{BackupId, ErrorKind, Repo};

/// Manifests read at once while filling the catalog.
const LOAD_THREADS: usize = 4;

/// One backup, as its manifest describes it.
#[derive(Debug, Clone)]
pub struct Summary {
    pub id: BackupId,
    pub created_ms: u64,
    pub tasks: u32,
    pub files: u64,
    pub files_reused: u64,
    pub logical_bytes: u64,
    /// New chunks (compressed) plus the manifest: what the backup added to the store.
    pub added_bytes: u64,
    pub new_chunks: u64,
    /// Each depot (`*name`): `[task, start, end]` per partition.
    pub depots: BTreeMap<String, Vec<[u64; 3]>>,
    /// Each topology's commit ids across its partitions (one for a consistent microbatch
    /// snapshot).
    pub commit_ids: BTreeMap<String, BTreeSet<u64>>,
}

impl Summary {
    /// From the manifest alone (a view of the store cannot read task objects).
    pub fn of(m: &ManifestObject, manifest_len: u64) -> Summary {
        let mut depots: BTreeMap<String, Vec<[u64; 3]>> = BTreeMap::new();
        let mut commit_ids: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
        for (task, t) in m.summaries() {
            for d in &t.depots {
                depots.entry(format!("*{}", d.name)).or_default().push([
                    u64::from(task),
                    d.start_offset,
                    d.end_offset,
                ]);
            }
            for p in t.topologies {
                let ids = commit_ids.entry(p.name).or_default();
                ids.extend(p.commit_id);
            }
        }
        let stats = m.stats();
        Summary {
            id: m.backup_id().clone(),
            created_ms: m.created_ms(),
            tasks: m.task_count(),
            files: stats.files,
            files_reused: stats.files_reused,
            logical_bytes: stats.logical_bytes,
            added_bytes: stats.new_stored_bytes + manifest_len,
            new_chunks: stats.new_chunks,
            depots,
            commit_ids,
        }
    }

    /// Logical bytes over added bytes: how many times smaller the backup made the data it
    /// holds (0 when it added nothing).
    pub fn saving_ratio(&self) -> f64 {
        if self.added_bytes == 0 {
            0.0
        } else {
            self.logical_bytes as f64 / self.added_bytes as f64
        }
    }
}

/// What is known of one backup.
#[derive(Debug, Clone)]
pub enum Known {
    Summary(Arc<Summary>),
    /// Its manifest could not be read or decoded, or it was never committed: why.
    Broken(String),
}

#[derive(Debug, Default, Clone)]
pub struct Catalog {
    /// Every module with backups in the store: its backup ids, oldest first.
    pub modules: BTreeMap<String, Vec<BackupId>>,
    pub known: HashMap<BackupId, Known>,
    /// Packs in the store and their bytes.
    pub packs: u64,
    pub pack_bytes: u64,
    /// Backups in parts begun and not committed yet, per module: id and parts written.
    pub pending: BTreeMap<String, Vec<(BackupId, usize)>>,
    /// When the last refresh finished, and what went wrong in it, if anything.
    pub refreshed: Option<SystemTime>,
    pub error: Option<String>,
}

impl Catalog {
    /// Lists the store again, reads the manifests not seen before, forgets deleted backups.
    /// A failure keeps what was known and is recorded in `error`. `publish` is called with
    /// the catalog as it fills (a first look at a store of 10,000 backups reads for a while).
    pub fn refresh(&mut self, repo: &Repo, publish: &dyn Fn(&Catalog)) {
        match self.try_refresh(repo, publish) {
            Ok(()) => self.error = None,
            Err(e) => self.error = Some(format!("{e:#}")),
        }
        self.refreshed = Some(SystemTime::now());
    }

    fn try_refresh(&mut self, repo: &Repo, publish: &dyn Fn(&Catalog)) -> anyhow::Result<()> {
        let ids = repo.all_backup_ids()?;
        let uncommitted: BTreeSet<BackupId> = repo.uncommitted_backups()?.into_iter().collect();
        let (packs, pack_bytes) = repo.store().pack_totals()?;
        let mut modules: BTreeMap<String, Vec<BackupId>> = BTreeMap::new();
        for id in &ids {
            modules
                .entry(id.module.clone())
                .or_default()
                .push(id.clone());
        }
        let listed: BTreeSet<&BackupId> = ids.iter().collect();
        self.known.retain(|id, _| listed.contains(id));
        for id in &uncommitted {
            self.known.insert(
                id.clone(),
                Known::Broken(
                    "never committed (its session was revoked first); the next `rbk gc` deletes it"
                        .into(),
                ),
            );
        }
        let mut pending: BTreeMap<String, Vec<(BackupId, usize)>> = BTreeMap::new();
        for l in rbk_engine::ops::parts::list(repo, None)? {
            if let Ok(id) = BackupId::parse(&l.name)
                && l.begin
                && id.module == l.group
            {
                pending
                    .entry(l.group)
                    .or_default()
                    .push((id, l.parts.len()));
            }
        }
        self.pending = pending;
        self.modules = modules;
        self.packs = packs;
        self.pack_bytes = pack_bytes;
        // Newest first, so that the pages people look at first fill first.
        let missing: Vec<&BackupId> = ids
            .iter()
            .rev()
            .filter(|id| !self.known.contains_key(*id))
            .collect();
        let mut unreadable = None;
        for batch in missing.chunks(256) {
            for (id, read) in load(repo, batch) {
                match read {
                    Ok(known) => {
                        self.known.insert(id, known);
                    }
                    // Not the manifest's fault (the store did not answer): tried again next
                    // time.
                    Err(e) => unreadable = Some(e),
                }
            }
            publish(self);
        }
        match unreadable {
            Some(e) => Err(anyhow::anyhow!("reading manifests: {e}")),
            None => Ok(()),
        }
    }

    pub fn get(&self, id: &BackupId) -> Option<&Known> {
        self.known.get(id)
    }

    /// The newest backup of `module` whose manifest reads, if any.
    pub fn newest_good(&self, module: &str) -> Option<&Arc<Summary>> {
        self.modules
            .get(module)?
            .iter()
            .rev()
            .find_map(|id| match self.known.get(id) {
                Some(Known::Summary(s)) => Some(s),
                _ => None,
            })
    }

    /// The summaries of `module`'s backups that read, oldest first.
    pub fn summaries(&self, module: &str) -> impl Iterator<Item = &Arc<Summary>> {
        self.modules
            .get(module)
            .into_iter()
            .flatten()
            .filter_map(|id| match self.known.get(id) {
                Some(Known::Summary(s)) => Some(s),
                _ => None,
            })
    }
}

/// Reads the manifests of `ids`, a few at a time.
fn load(repo: &Repo, ids: &[&BackupId]) -> Vec<(BackupId, Result<Known, String>)> {
    let queue = std::sync::Mutex::new(ids.iter());
    let out = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..LOAD_THREADS {
            s.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                    let Some(&id) = next else { break };
                    let known = read_one(repo, id);
                    out.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((id.clone(), known));
                }
            });
        }
    });
    out.into_inner().unwrap_or_else(|p| p.into_inner())
}

/// A backup whose manifest is damaged or gone is `Broken`; an error of the store is `Err`.
fn read_one(repo: &Repo, id: &BackupId) -> Result<Known, String> {
    match repo.load_object(id) {
        Ok(m) => {
            let len = m.encode().len() as u64;
            Ok(Known::Summary(Arc::new(Summary::of(&m, len))))
        }
        Err(e) if matches!(e.kind(), ErrorKind::Corrupt | ErrorKind::NotFound) => {
            Ok(Known::Broken(e.to_string()))
        }
        Err(e) => Err(e.to_string()),
    }
}
