//! A repository: the chunk store plus the manifests kept in it, one per backup, under
//! `manifests/<module>/<backup id>` (every key: `rbk_chunkstore::keys`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rbk_chunkstore::mirror::{Mirror, MirrorReport, MirrorStatus};
use rbk_chunkstore::provider::Provider;
use rbk_chunkstore::{ChunkId, ChunkStore, ErrorKind, Progress, StoredManifest, keys};

use crate::backup_id::{BackupId, validate_module_name};
use crate::manifest::{ChunkKind, MAX_MANIFEST_LEN, Manifest, ManifestObject, TaskEntry, TaskRef};
use crate::{Error, Result};

/// The store, and its mirror when one is configured (docs/mirror.md): backups commit to
/// the store, the mirror follows; reads fall back to the mirror for what the store lacks.
#[derive(Debug)]
pub struct Repo {
    store: Arc<ChunkStore>,
    mirror: Option<Mirror>,
}

/// Where the local index lives for a data dir: `<data-dir>/.rbk/index/<store id>`.
pub fn index_root(data_dir: &Path) -> PathBuf {
    data_dir.join(".rbk").join("index")
}

/// Where the mirror's local index lives: `<data-dir>/.rbk/index-mirror/<store id>` (the
/// mirror has the store's id, so it cannot share the primary's directory).
pub fn mirror_index_root(data_dir: &Path) -> PathBuf {
    data_dir.join(".rbk").join("index-mirror")
}

/// The file recording which store a data dir belongs to: `<data-dir>/.rbk/store-id`.
pub fn binding_path(data_dir: &Path) -> PathBuf {
    data_dir.join(".rbk").join("store-id")
}

/// The store id `data_dir` is bound to, if any.
///
/// # Errors
/// I/O errors other than a missing file.
pub fn bound_store_id(data_dir: &Path) -> Result<Option<String>> {
    let path = binding_path(data_dir);
    match rbk_chunkstore::safe_fs::read_limited(&path, 4096) {
        Ok(s) => Ok(Some(String::from_utf8_lossy(&s).trim().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Records that `data_dir` belongs to store `store_id` (atomically: temp file + rename).
///
/// # Errors
/// I/O errors.
pub fn bind_store(data_dir: &Path, store_id: &str) -> Result<()> {
    let path = binding_path(data_dir);
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let tmp = dir.join(format!(".store-id.{:08x}", rand::random::<u32>()));
    std::fs::write(&tmp, format!("{store_id}\n")).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
}

/// The object key of a backup's manifest, for messages.
pub fn manifest_key(id: &BackupId) -> String {
    keys::manifest(&id.module, &id.to_string())
}

impl Repo {
    /// Opens the store behind `provider`, creating it when `create` is set.
    ///
    /// # Errors
    /// As [`ChunkStore::open`].
    pub fn open(provider: Arc<dyn Provider>, index_root: &Path, create: bool) -> Result<Self> {
        Ok(Repo {
            store: Arc::new(ChunkStore::open(provider, index_root, create)?),
            mirror: None,
        })
    }

    /// Opens the store behind `provider` as a read-only view, without the local index that
    /// one process at a time may hold: it lists backups and reads manifests (a status page
    /// beside running backups); what needs chunks fails with an `Index` error.
    ///
    /// # Errors
    /// As [`ChunkStore::open_view`].
    pub fn open_view(provider: Arc<dyn Provider>) -> Result<Self> {
        Ok(Repo {
            store: Arc::new(ChunkStore::open_view(provider)?),
            mirror: None,
        })
    }

    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// Opens `provider` as this store's mirror (giving it the store's config if it has none)
    /// and reads what the store lacks from it. With `deadline`, requests to the mirror give
    /// up then ([`Repo::set_mirror_deadline`] moves it).
    ///
    /// # Errors
    /// `InvalidInput` when the mirror holds another store; provider and index errors.
    pub fn attach_mirror(
        &mut self,
        provider: Arc<dyn Provider>,
        index_root: &Path,
        deadline: Option<std::time::Instant>,
    ) -> Result<()> {
        let mirror = Mirror::open(&self.store, provider, index_root, deadline)?;
        self.store.set_fallback(mirror.store().clone());
        self.mirror = Some(mirror);
        Ok(())
    }

    pub fn mirror(&self) -> Option<&Mirror> {
        self.mirror.as_ref()
    }

    pub fn set_mirror_deadline(&self, deadline: Option<std::time::Instant>) {
        if let Some(m) = &self.mirror {
            m.set_deadline(deadline);
        }
    }

    /// The mirror as a repository of its own, for the operations that run on each side
    /// (GC, verify, list).
    pub fn mirror_repo(&self) -> Option<Repo> {
        self.mirror.as_ref().map(|m| Repo {
            store: m.store().clone(),
            mirror: None,
        })
    }

    /// Brings the mirror up to date: every committed backup of the store that it lacks, each
    /// after the packs it needs. No mirror: nothing to do.
    ///
    /// # Errors
    /// As [`Mirror::sync`]; `CorruptManifest` for a manifest the store holds damaged.
    pub fn sync_mirror(&self, progress: &dyn Progress) -> Result<Option<MirrorReport>> {
        let Some(mirror) = &self.mirror else {
            return Ok(None);
        };
        mirror
            .sync(
                &self.store,
                |m, body| self.mirrored_chunks(m, body),
                progress,
            )
            .map(Some)
    }

    /// How far the mirror is behind; `None` without one.
    ///
    /// # Errors
    /// As [`Mirror::status`].
    pub fn mirror_status(&self) -> Result<Option<MirrorStatus>> {
        let Some(mirror) = &self.mirror else {
            return Ok(None);
        };
        mirror
            .status(&self.store, |m, body| self.mirrored_chunks(m, body))
            .map(Some)
    }

    /// The chunks of a stored manifest that is to be mirrored; `None` for objects that are
    /// not backups and for backups never committed (their chunks may be gone).
    fn mirrored_chunks(&self, m: &StoredManifest, body: &[u8]) -> Result<Option<Vec<ChunkId>>> {
        let Some(id) = backup_id_of(m) else {
            return Ok(None);
        };
        let key = manifest_key(&id);
        let object = ManifestObject::decode(&key, body)?;
        if *object.backup_id() != id || self.uncommitted(&id, object.session())?.is_some() {
            return Ok(None);
        }
        let manifest = self.resolve(&key, object)?;
        Ok(Some(manifest.chunk_ids().copied().collect()))
    }

    /// Binds `data_dir` to this store when it is bound to none yet. Backups and restores do
    /// this; they do not refuse a different binding, because pointing a cluster at a new
    /// store is legitimate. GC, which deletes, checks with [`Repo::check_binding`].
    ///
    /// # Errors
    /// I/O errors.
    pub fn bind_if_unbound(&self, data_dir: &Path) -> Result<()> {
        if bound_store_id(data_dir)?.is_none() {
            bind_store(data_dir, &self.store.config().store_id)?;
        }
        Ok(())
    }

    /// Refuses a data dir bound to another store unless `rebind`, which moves the binding
    /// to this store. An unbound data dir is bound. With `write` false nothing is written.
    ///
    /// # Errors
    /// `ForeignStore`, I/O errors.
    pub fn check_binding(&self, data_dir: &Path, rebind: bool, write: bool) -> Result<()> {
        let ours = &self.store.config().store_id;
        match bound_store_id(data_dir)? {
            Some(b) if b == *ours => Ok(()),
            Some(b) if !rebind => Err(Error::ForeignStore {
                data_dir: data_dir.into(),
                bound: b,
                store: ours.clone(),
                provider: self.store.describe(),
            }),
            _ if write => bind_store(data_dir, ours),
            _ => Ok(()),
        }
    }

    /// Deletes one manifest. Its chunks are freed by the next GC.
    ///
    /// # Errors
    /// `BackupNotFound`, provider errors.
    /// With a mirror, the backup is deleted on both sides.
    pub fn delete_manifest(&self, id: &BackupId) -> Result<()> {
        let name = id.to_string();
        let mut found = false;
        for store in std::iter::once(&self.store).chain(self.mirror.as_ref().map(Mirror::store)) {
            if store.manifest_exists(&id.module, &name)? {
                store.delete_manifest(&id.module, &name)?;
                found = true;
            }
        }
        if !found {
            return Err(Error::BackupNotFound {
                backup_id: name,
                module: id.module.clone(),
            });
        }
        Ok(())
    }

    /// Every backup in the store, of every module, oldest first per module. Objects under
    /// `manifests/` not named like backups are ignored.
    ///
    /// # Errors
    /// Provider errors.
    pub fn all_backup_ids(&self) -> Result<Vec<BackupId>> {
        self.ids_under(None)
    }

    /// The whole manifest of backup `id`, its task objects read ([`Repo::resolve`]). A
    /// manifest missing or damaged in the store is read from the mirror, if there is one.
    ///
    /// # Errors
    /// `BackupNotFound`, `CorruptManifest` (the manifest, or a task object it names, is
    /// damaged or gone), provider and index errors.
    pub fn load_manifest(&self, id: &BackupId) -> Result<Manifest> {
        let object = self.load_object(id)?;
        self.resolve(&manifest_key(id), object)
    }

    /// The manifest object of backup `id` as stored: what needs no chunk (its id, stats,
    /// module files and each task in brief). A view of the store reads it.
    ///
    /// # Errors
    /// `BackupNotFound`, `CorruptManifest`, provider errors.
    pub fn load_object(&self, id: &BackupId) -> Result<ManifestObject> {
        match (self.load_object_here(id), self.mirror_repo()) {
            (
                Err(e @ (Error::BackupNotFound { .. } | Error::CorruptManifest { .. })),
                Some(mirror),
            ) => match mirror.load_object_here(id) {
                Ok(m) => {
                    tracing::warn!(
                        "backup {id} is {} in `{}`; read from its mirror `{}`",
                        if matches!(e, Error::BackupNotFound { .. }) {
                            "missing"
                        } else {
                            "damaged"
                        },
                        self.store.describe(),
                        mirror.store.describe()
                    );
                    Ok(m)
                }
                Err(_) => Err(e),
            },
            (r, _) => r,
        }
    }

    fn load_object_here(&self, id: &BackupId) -> Result<ManifestObject> {
        let key = manifest_key(id);
        let bytes = self
            .store
            .get_manifest(&id.module, &id.to_string())
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => Error::BackupNotFound {
                    backup_id: id.to_string(),
                    module: id.module.clone(),
                },
                // Too large, or not a regular file in a local store: a damaged backup, as
                // verify reports it, not a failure of the whole command.
                ErrorKind::Corrupt => Error::CorruptManifest {
                    key: key.clone(),
                    detail: e.to_string(),
                },
                _ => e.into(),
            })?;
        if bytes.len() > MAX_MANIFEST_LEN {
            return Err(Error::CorruptManifest {
                key,
                detail: format!(
                    "{} bytes is larger than any manifest rbk writes",
                    bytes.len()
                ),
            });
        }
        let m = ManifestObject::decode(&key, &bytes)?;
        if *m.backup_id() != *id {
            return Err(Error::CorruptManifest {
                key,
                detail: format!("it records backup `{}`", m.backup_id()),
            });
        }
        Ok(m)
    }

    /// The whole manifest of `object` (read from `key`): its task objects read from the
    /// store (or its mirror), each checked against its reference.
    ///
    /// # Errors
    /// `CorruptManifest` naming `key` and the task whose object is gone or damaged; provider
    /// and index errors (`Index` for a view of the store).
    pub fn resolve(&self, key: &str, object: ManifestObject) -> Result<Manifest> {
        let refs: Vec<&TaskRef> = object.task_refs().iter().collect();
        let objects = self.read_task_objects(key, &refs)?;
        let objects: Vec<&[u8]> = objects.iter().map(Vec::as_slice).collect();
        object.resolve(key, &objects)
    }

    /// The task objects of `object` (read from `key`) that can be read, and why each other
    /// one cannot (by task): for verify, which reports a damaged task and goes on with the
    /// rest. `object` keeps only the tasks that were read, ready for
    /// [`ManifestObject::resolve_read`].
    ///
    /// # Errors
    /// Provider and index errors (a damaged or missing task object is not an error here).
    pub fn read_tasks_leniently(
        &self,
        key: &str,
        object: &mut ManifestObject,
    ) -> Result<TasksRead> {
        let mut read = TasksRead::default();
        let refs: Vec<&TaskRef> = object.task_refs().iter().collect();
        for (r, bytes) in refs.iter().zip(self.read_each_task_object(key, &refs)?) {
            match bytes.and_then(|b| r.decode_object(key, &b)) {
                Ok(t) => read.tasks.push(t),
                // Verify names the task itself: the hint is for a restore.
                Err(Error::CorruptManifest { detail, .. }) => read.broken.push((
                    r.task,
                    detail.trim_end_matches(UNREADABLE_TASK_HINT).to_string(),
                )),
                Err(e) => return Err(e),
            }
        }
        object.retain_tasks(|t| !read.broken.iter().any(|(b, _)| *b == t));
        Ok(read)
    }

    /// Passes every chunk `object` (read from `key`) needs to `sink`, with what it holds: its
    /// files' and its task objects'. Task objects whose hash is in `seen` were visited before
    /// (an unchanged task shares its object with earlier backups): only their pieces are
    /// passed, and they are not read again. A chunk may be passed more than once.
    ///
    /// # Errors
    /// As [`Repo::resolve`].
    pub fn visit_chunks(
        &self,
        key: &str,
        object: &ManifestObject,
        seen: &mut std::collections::HashSet<[u8; 32]>,
        sink: &mut dyn FnMut(&ChunkId, ChunkKind),
    ) -> Result<()> {
        let mut task = |t: &TaskEntry| {
            for (kind, f) in t.files_by_kind() {
                f.chunks.iter().for_each(|c| sink(c, kind));
            }
        };
        object
            .inline_tasks()
            .unwrap_or_default()
            .iter()
            .for_each(&mut task);
        let mut unseen = Vec::new();
        for r in object.task_refs() {
            if seen.insert(r.hash) {
                unseen.push(r);
            }
        }
        let objects = self.read_task_objects(key, &unseen)?;
        for (r, bytes) in unseen.iter().zip(&objects) {
            task(&r.decode_object(key, bytes)?);
        }
        for f in object.module_files() {
            f.chunks.iter().for_each(|c| sink(c, ChunkKind::Module));
        }
        for r in object.task_refs() {
            r.pieces.iter().for_each(|c| sink(c, ChunkKind::TaskObject));
        }
        Ok(())
    }

    /// The bytes of the task objects `refs` of the manifest `key`, read together (pieces
    /// stored side by side come in one ranged read).
    ///
    /// # Errors
    /// `CorruptManifest` naming `key` and the task when a piece is in no pack, fails its
    /// check, or the pieces do not add up to the recorded length; provider and index errors.
    pub fn read_task_objects(&self, key: &str, refs: &[&TaskRef]) -> Result<Vec<Vec<u8>>> {
        self.read_each_task_object(key, refs)?.into_iter().collect()
    }

    /// Each of the task objects `refs`: read together, and when one of them is damaged or
    /// gone, each alone, so that every failure names its task (and `--tasks` can restore the
    /// others).
    fn read_each_task_object(&self, key: &str, refs: &[&TaskRef]) -> Result<Vec<Result<Vec<u8>>>> {
        match self.read_task_objects_together(key, refs) {
            Ok(all) => Ok(all.into_iter().map(Ok).collect()),
            Err(Error::CorruptManifest { .. }) if refs.len() > 1 => Ok(refs
                .iter()
                .map(|r| {
                    self.read_task_objects_together(key, std::slice::from_ref(r))
                        .map(|mut one| one.remove(0))
                })
                .collect()),
            Err(e) => Err(e),
        }
    }

    fn read_task_objects_together(&self, key: &str, refs: &[&TaskRef]) -> Result<Vec<Vec<u8>>> {
        if refs.is_empty() {
            return Ok(Vec::new());
        }
        let which = match refs {
            [r] => format!("the object of task {}", r.task),
            _ => "a task object".to_string(),
        };
        let unreadable = |e: rbk_chunkstore::Error| -> Error {
            if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Corrupt) {
                Error::CorruptManifest {
                    key: key.into(),
                    detail: format!("{which} cannot be read: {e}{UNREADABLE_TASK_HINT}"),
                }
            } else {
                e.into()
            }
        };
        let seqs: Vec<&[ChunkId]> = refs.iter().map(|r| r.pieces.as_slice()).collect();
        let plan = self.store.plan_read(&seqs).map_err(unreadable)?;
        // Lengths come from the located pieces: checked before anything is allocated.
        for (r, &len) in refs.iter().zip(plan.lengths()) {
            if len != r.len {
                return Err(Error::CorruptManifest {
                    key: key.into(),
                    detail: format!(
                        "the object of task {}: its pieces hold {len} bytes, the manifest records {}",
                        r.task, r.len
                    ),
                });
            }
        }
        let buffers: Vec<std::sync::Mutex<Vec<u8>>> = refs
            .iter()
            .map(|r| std::sync::Mutex::new(vec![0; r.len as usize]))
            .collect();
        // Task objects are small: one worker reads them without the pipeline's threads.
        self.store
            .read_plan(plan, 1, |seq, offset, data| {
                let mut b = buffers[seq].lock().unwrap_or_else(|p| p.into_inner());
                let at = offset as usize;
                b[at..at + data.len()].copy_from_slice(data);
                Ok::<(), rbk_chunkstore::Error>(())
            })
            .map_err(unreadable)?;
        Ok(buffers
            .into_iter()
            .map(|b| b.into_inner().unwrap_or_else(|p| p.into_inner()))
            .collect())
    }

    /// Why `m` was never committed, if it was not: the store wrote its session's tombstone
    /// before the manifest (both by the store's clock). A backup writes its manifest and
    /// then checks for a tombstone; one that saw none reported success, and its tombstone,
    /// if any, came later. A manifest written after the tombstone belongs to a backup that
    /// died (or failed to delete it) before that check, and a GC may already have swept what
    /// it references (docs/gc.md, "The commit window").
    ///
    /// # Errors
    /// Provider errors.
    pub fn uncommitted(&self, id: &BackupId, session: Option<&str>) -> Result<Option<String>> {
        let Some(sid) = session else {
            return Ok(None);
        };
        let Some(state) = self.store.session_state(sid)? else {
            return Ok(None);
        };
        let Some(revoked_ms) = state.revoked_written_ms.filter(|_| state.revoked) else {
            return Ok(None);
        };
        let written_ms = self
            .store
            .manifest_written_ms(&id.module, &id.to_string())?;
        Ok(written_ms.filter(|w| revoked_ms < *w).map(|_| {
            format!(
                "it was never committed: a GC revoked its session {sid} before the store wrote it (its process died, or could not remove it, before it saw the revocation); nothing may be restored from it, and the next `rbk gc` deletes it"
            )
        }))
    }

    /// [`Repo::load_manifest`] of a backup that was committed.
    ///
    /// # Errors
    /// As [`Repo::load_manifest`]; `Uncommitted` for a manifest [`Repo::uncommitted`]
    /// rejects.
    pub fn load_committed(&self, id: &BackupId) -> Result<Manifest> {
        let object = self.load_committed_object(id)?;
        self.resolve(&manifest_key(id), object)
    }

    /// [`Repo::load_object`] of a backup that was committed.
    ///
    /// # Errors
    /// As [`Repo::load_committed`].
    pub fn load_committed_object(&self, id: &BackupId) -> Result<ManifestObject> {
        let m = self.load_object(id)?;
        match self.uncommitted(id, m.session())? {
            Some(detail) => Err(Error::Uncommitted {
                backup_id: id.to_string(),
                detail,
            }),
            None => Ok(m),
        }
    }

    /// Manifests of sessions revoked before the store wrote them ([`Repo::uncommitted`]),
    /// found without reading every manifest: only those the store wrote after the oldest
    /// tombstone are read.
    ///
    /// # Errors
    /// Provider errors.
    pub fn uncommitted_backups(&self) -> Result<Vec<BackupId>> {
        let sessions = self.store.sessions()?;
        let Some(oldest) = sessions
            .values()
            .filter(|s| s.revoked)
            .filter_map(|s| s.revoked_written_ms)
            .min()
        else {
            return Ok(Vec::new());
        };
        let listed = self.store.list_manifests(None)?;
        let mut out = Vec::new();
        for o in listed
            .iter()
            .filter(|o| o.written_ms.is_some_and(|w| w > oldest))
        {
            let Some(id) = backup_id_of(o) else {
                continue;
            };
            let m = match self.load_object(&id) {
                Ok(m) => m,
                // Deleted since the listing; or unreadable, which its reader reports (verify
                // as a damaged backup; GC stops when it builds the live set).
                Err(Error::BackupNotFound { .. } | Error::CorruptManifest { .. }) => continue,
                Err(e) => return Err(e),
            };
            let revoked = m
                .session()
                .and_then(|sid| sessions.get(sid))
                .filter(|s| s.revoked)
                .and_then(|s| s.revoked_written_ms);
            if let (Some(r), Some(w)) = (revoked, o.written_ms)
                && r < w
            {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// All backup ids of `module` in the store, oldest first. Objects under the module's
    /// prefix that are not named like backups are ignored.
    ///
    /// # Errors
    /// Provider errors.
    pub fn backup_ids(&self, module: &str) -> Result<Vec<BackupId>> {
        validate_module_name(module)?;
        self.ids_under(Some(module))
    }

    /// Backup ids of the manifests of `module` (or every module), sorted.
    fn ids_under(&self, module: Option<&str>) -> Result<Vec<BackupId>> {
        let mut ids: Vec<BackupId> = self
            .store
            .list_manifests(module)?
            .iter()
            .filter_map(backup_id_of)
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// What to do about a task object that cannot be read.
const UNREADABLE_TASK_HINT: &str =
    ". `rbk verify` names every damaged task; `rbk restore --tasks` restores the others";

/// What [`Repo::read_tasks_leniently`] could read of a manifest's task objects.
#[derive(Default)]
pub struct TasksRead {
    /// The tasks read, in the manifest's order.
    pub tasks: Vec<TaskEntry>,
    /// The tasks that could not be read, and why.
    pub broken: Vec<(u32, String)>,
}

/// The backup a stored manifest records: its name must be an id of the module it is stored
/// under (`manifests/<module>/<id of that module>`); anything else is not rbk's and ignored.
fn backup_id_of(m: &rbk_chunkstore::StoredManifest) -> Option<BackupId> {
    BackupId::parse(&m.name)
        .ok()
        .filter(|id| id.module == m.group)
}
