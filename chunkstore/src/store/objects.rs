//! The questions the layers above ask the store about objects other than chunks: manifests
//! (opaque bytes, named by group and name; rbk's engine uses module and backup id) and the
//! sessions that wrote them. Manifests are written by [`super::WriteSession::commit`].

use std::collections::BTreeMap;

use bytes::Bytes;

use super::ChunkStore;
use crate::provider::{self, limits};
use crate::session::{self, SessionState};
use crate::{Result, keys};

/// A manifest as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredManifest {
    pub group: String,
    pub name: String,
    /// When the store wrote it, by the store's clock (`None`: the store keeps no such times).
    pub written_ms: Option<u64>,
}

impl ChunkStore {
    /// Every manifest of `group`, or of every group, sorted by key.
    ///
    /// # Errors
    /// Provider errors.
    pub fn list_manifests(&self, group: Option<&str>) -> Result<Vec<StoredManifest>> {
        let prefix = group.map_or_else(|| keys::MANIFESTS.to_string(), keys::manifests_of);
        let listed = self.block_on(provider::list_all(self.provider().as_ref(), &prefix))?;
        Ok(listed
            .into_iter()
            .filter_map(|o| {
                let (group, name) = keys::parse_manifest(&o.key)?;
                Some(StoredManifest {
                    group: group.into(),
                    name: name.into(),
                    written_ms: o.modified_ms,
                })
            })
            .collect())
    }

    /// When the store wrote its `config` (`None`: the store keeps no such times).
    ///
    /// # Errors
    /// Provider errors.
    pub fn config_written_ms(&self) -> Result<Option<u64>> {
        let listed = self.block_on(provider::list_all(self.provider().as_ref(), keys::CONFIG))?;
        Ok(listed
            .into_iter()
            .find(|o| o.key == keys::CONFIG)
            .and_then(|o| o.modified_ms))
    }

    /// How many packs the store holds and their bytes, by listing them (no index needed).
    ///
    /// # Errors
    /// Provider errors.
    pub fn pack_totals(&self) -> Result<(u64, u64)> {
        let listed = self.block_on(provider::list_all(self.provider().as_ref(), keys::PACKS))?;
        Ok(listed
            .iter()
            .filter(|o| keys::parse_pack(&o.key).is_some())
            .fold((0, 0), |(n, b), o| (n + 1, b + o.size)))
    }

    /// The bytes of a manifest, at most [`limits::MANIFEST`].
    ///
    /// # Errors
    /// `NotFound`; `Corrupt` when it is larger than any manifest or not a regular object.
    pub fn get_manifest(&self, group: &str, name: &str) -> Result<Bytes> {
        let key = keys::manifest(group, name);
        self.block_on(self.provider().get(&key, limits::MANIFEST))
    }

    /// # Errors
    /// Provider errors.
    pub fn manifest_exists(&self, group: &str, name: &str) -> Result<bool> {
        self.block_on(self.provider().exists(&keys::manifest(group, name)))
    }

    /// When the store wrote manifest `name` of `group` (`None`: gone, or no such clock).
    ///
    /// # Errors
    /// Provider errors.
    pub fn manifest_written_ms(&self, group: &str, name: &str) -> Result<Option<u64>> {
        // A listing from the key itself: one request, whatever the size of the group.
        let key = keys::manifest(group, name);
        let listed = self.block_on(provider::list_all(self.provider().as_ref(), &key))?;
        Ok(listed
            .into_iter()
            .find(|o| o.key == key)
            .and_then(|o| o.modified_ms))
    }

    /// Deletes a manifest; a missing one is not an error. What only it referenced is freed
    /// by the next GC.
    ///
    /// # Errors
    /// Provider errors.
    pub fn delete_manifest(&self, group: &str, name: &str) -> Result<()> {
        self.block_on(self.provider().delete(&keys::manifest(group, name)))
    }

    /// Session `id` as the store lists it now (`None`: it has no object left).
    ///
    /// # Errors
    /// Provider errors.
    pub fn session_state(&self, id: &str) -> Result<Option<SessionState>> {
        self.block_on(session::session_state(self.provider().as_ref(), id))
    }

    /// Every session with an object in the store, by id.
    ///
    /// # Errors
    /// Provider errors.
    pub fn sessions(&self) -> Result<BTreeMap<String, SessionState>> {
        self.block_on(session::list_sessions(self.provider().as_ref()))
    }
}
