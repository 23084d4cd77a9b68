//! Pending writes: what a backup that several processes write keeps in the store until one
//! of them commits it (docs/gc.md, "Backups in parts"). A pending write is a *held* session
//! ([`session::begin_held`]) that keeps GC from sweeping what its parts reference, a `begin`
//! object naming it, and one `part-<part>` object per process that wrote a part. All three
//! are opaque bytes here; the engine decides what they say.

use std::time::Duration;

use bytes::Bytes;

use super::{ChunkStore, WriteSession};
use crate::keys::{self, PendingObject};
use crate::provider::{self, limits};
use crate::{Result, session};

/// One pending write as the store lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingListing {
    pub group: String,
    pub name: String,
    /// Whether its `begin` object exists (a pending write whose `begin` is gone was
    /// committed or given up, and what is left of its parts is leftover).
    pub begin: bool,
    /// Its parts, by name, sorted.
    pub parts: Vec<String>,
}

impl ChunkStore {
    /// Begins a held session of `lease` ([`session::begin_held`]); returns its id.
    ///
    /// # Errors
    /// `InvalidInput` for a lease that is too long, provider errors.
    pub fn begin_held_session(&self, kind: &str, label: &str, lease: Duration) -> Result<String> {
        self.block_on(session::begin_held(
            self.provider.as_ref(),
            kind,
            label,
            lease,
        ))
    }

    /// Fails with `SessionRevoked` unless held session `id` is still held.
    ///
    /// # Errors
    /// `SessionRevoked`, provider errors.
    pub fn check_held_session(&self, id: &str) -> Result<()> {
        self.block_on(session::check_held(self.provider.as_ref(), id))
    }

    /// Ends held session `id` (deletes its heartbeat). Idempotent.
    ///
    /// # Errors
    /// Provider errors.
    pub fn end_held_session(&self, id: &str) -> Result<()> {
        self.block_on(session::end_held(self.provider.as_ref(), id))
    }

    /// Writes manifest `name` of `group` on behalf of held session `held`: the commit point
    /// of a pending write. The same checks as a running session's commit
    /// ([`WriteSession::write_manifest`]): the session must be held before the write, and
    /// still after it, or the manifest is deleted again and the write fails. Returns false,
    /// having written nothing, when the name is taken.
    ///
    /// # Errors
    /// `SessionRevoked`, provider errors.
    pub fn put_manifest_held(
        &self,
        held: &str,
        group: &str,
        name: &str,
        body: Bytes,
    ) -> Result<bool> {
        self.check_held_session(held)?;
        let key = keys::manifest(group, name);
        if !self.block_on(self.provider.put_if_absent(&key, body))? {
            return Ok(false);
        }
        if let Err(e) = self.check_held_session(held) {
            let _ = self.block_on(self.provider.delete(&key));
            return Err(e);
        }
        Ok(true)
    }

    /// Writes the `begin` object of pending write `name` of `group`; false when one exists.
    ///
    /// # Errors
    /// Provider errors.
    pub fn put_pending_begin(&self, group: &str, name: &str, body: Bytes) -> Result<bool> {
        let key = keys::pending_begin(group, name);
        self.block_on(self.provider.put_if_absent(&key, body))
    }

    /// The `begin` object of pending write `name` of `group` (at most 64 KiB).
    ///
    /// # Errors
    /// `NotFound`, `Corrupt` when larger, provider errors.
    pub fn get_pending_begin(&self, group: &str, name: &str) -> Result<Bytes> {
        let key = keys::pending_begin(group, name);
        self.block_on(self.provider.get(&key, limits::SESSION_RECORD))
    }

    /// Part `part` of pending write `name` of `group` (at most a manifest's limit).
    ///
    /// # Errors
    /// `NotFound`, `Corrupt` when larger, provider errors.
    pub fn get_pending_part(&self, group: &str, name: &str, part: &str) -> Result<Bytes> {
        let key = keys::pending_part(group, name, part);
        self.block_on(self.provider.get(&key, limits::MANIFEST))
    }

    /// Every pending write of `group`, or of every group, sorted by group and name.
    ///
    /// # Errors
    /// Provider errors.
    pub fn list_pending(&self, group: Option<&str>) -> Result<Vec<PendingListing>> {
        let prefix = group.map_or_else(|| keys::PENDING.to_string(), keys::pending_of);
        let listed = self.block_on(provider::list_all(self.provider.as_ref(), &prefix))?;
        let mut out: Vec<PendingListing> = Vec::new();
        for o in &listed {
            let Some((group, name, object)) = keys::parse_pending(&o.key) else {
                continue;
            };
            let entry = match out.last_mut() {
                Some(l) if l.group == group && l.name == name => l,
                _ => {
                    out.push(PendingListing {
                        group: group.into(),
                        name: name.into(),
                        begin: false,
                        parts: Vec::new(),
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            match object {
                PendingObject::Begin => entry.begin = true,
                PendingObject::Part(p) => entry.parts.push(p.into()),
            }
        }
        for l in &mut out {
            l.parts.sort();
        }
        Ok(out)
    }

    /// Deletes what is listed of a pending write: its parts first, then its `begin`.
    ///
    /// # Errors
    /// Provider errors.
    pub fn delete_pending(&self, pending: &PendingListing) -> Result<()> {
        let (g, n) = (&pending.group, &pending.name);
        for p in &pending.parts {
            self.block_on(self.provider.delete(&keys::pending_part(g, n, p)))?;
        }
        self.block_on(self.provider.delete(&keys::pending_begin(g, n)))
    }
}

impl WriteSession<'_> {
    /// Writes part `part` of pending write `name` of `group`, referencing this session's
    /// chunks, with the checks of [`WriteSession::write_manifest`]: everything flushed, the
    /// session alive before the write and after it (else the part is deleted again).
    /// Returns false, having written nothing, when the part exists.
    ///
    /// # Errors
    /// `SessionRevoked`, provider and index errors.
    pub fn write_pending_part(
        &self,
        group: &str,
        name: &str,
        part: &str,
        body: Bytes,
    ) -> Result<bool> {
        self.flush()?;
        self.check_alive()?;
        self.put_checked(&keys::pending_part(group, name, part), body)
    }
}
