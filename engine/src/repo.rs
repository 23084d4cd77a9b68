//! A repository: the chunk store plus the manifests kept in it.
//!
//! Object keys: `config` (store config), `packs/<2 hex>/<pack id>` (packs),
//! `manifests/<module>/<backup id>` (one manifest per backup).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rbk_chunkstore::provider::{self, Provider};
use rbk_chunkstore::{ChunkStore, ErrorKind};

use crate::backup_id::{BackupId, validate_module_name};
use crate::manifest::{MAX_MANIFEST_LEN, Manifest};
use crate::{Error, Result};

pub const MANIFESTS_PREFIX: &str = "manifests/";

#[derive(Debug)]
pub struct Repo {
    store: ChunkStore,
}

/// Where the local index lives for a data dir: `<data-dir>/.rbk/index/<store id>`.
pub fn index_root(data_dir: &Path) -> PathBuf {
    data_dir.join(".rbk").join("index")
}

pub fn manifest_key(id: &BackupId) -> String {
    format!("{MANIFESTS_PREFIX}{}/{id}", id.module)
}

impl Repo {
    /// Opens the store behind `provider`, creating it when `create` is set.
    ///
    /// # Errors
    /// As [`ChunkStore::open`].
    pub fn open(provider: Arc<dyn Provider>, index_root: &Path, create: bool) -> Result<Self> {
        Ok(Repo {
            store: ChunkStore::open(provider, index_root, create)?,
        })
    }

    pub fn store(&self) -> &ChunkStore {
        &self.store
    }

    /// Writes a manifest: the commit point of a backup. Call only after the chunk store was
    /// flushed. Returns false when a manifest with that id already exists.
    ///
    /// # Errors
    /// Provider errors.
    pub fn put_manifest(&self, m: &Manifest) -> Result<bool> {
        let key = manifest_key(&m.backup_id);
        Ok(self.store.block_on(
            self.store
                .provider()
                .put_if_absent(&key, Bytes::from(m.encode())),
        )?)
    }

    /// # Errors
    /// `BackupNotFound`, `CorruptManifest`, provider errors.
    pub fn load_manifest(&self, id: &BackupId) -> Result<Manifest> {
        let key = manifest_key(id);
        let bytes = self
            .store
            .block_on(self.store.provider().get(&key))
            .map_err(|e| match e.kind() {
                ErrorKind::NotFound => Error::BackupNotFound {
                    backup_id: id.to_string(),
                    module: id.module.clone(),
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
        let m = Manifest::decode(&key, &bytes)?;
        if m.backup_id != *id {
            return Err(Error::CorruptManifest {
                key,
                detail: format!("it records backup `{}`", m.backup_id),
            });
        }
        Ok(m)
    }

    /// All backup ids of `module` in the store, oldest first. Objects under the module's
    /// prefix that are not named like backups are ignored.
    ///
    /// # Errors
    /// Provider errors.
    pub fn backup_ids(&self, module: &str) -> Result<Vec<BackupId>> {
        validate_module_name(module)?;
        let prefix = format!("{MANIFESTS_PREFIX}{module}/");
        let objects = self
            .store
            .block_on(provider::list_all(self.store.provider().as_ref(), &prefix))?;
        let mut ids: Vec<BackupId> = objects
            .iter()
            .filter_map(|o| BackupId::parse(&o.key[prefix.len()..]).ok())
            .filter(|id| id.module == module)
            .collect();
        ids.sort();
        Ok(ids)
    }
}
