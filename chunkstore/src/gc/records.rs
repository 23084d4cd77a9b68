//! Condemnation records: what one GC run decided, kept in the store so that every other
//! process can see it (docs/gc.md).
//!
//! `gc/<record id>/condemned` holds the packs a GC found to be garbage; `gc/<record id>/armed`
//! the sessions that were running after the condemned part was written. Both are small JSON
//! documents (keys in `keys.rs`). A record is retired once its packs are swept: deleted, or in
//! a version 4 store marked `gc/<record id>/swept` and kept for [`crate::gc::swept_keep`], so
//! that backup sessions learn of the deleted packs without listing every pack.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::index::ChunkLocation;
use crate::keys::{self, ARMED, CONDEMNED, SWEPT};
use crate::provider::{self, Provider, limits};
use crate::session::now_ms;
use crate::{Error, ErrorKind, PackId, Result};

const RECORD_VERSION: u32 = 1;

/// Packs a writing session must not rely on for dedup: those condemned when it began.
#[derive(Debug, Clone)]
pub(crate) enum Condemned {
    Packs(HashSet<PackId>),
    /// A condemnation record could not be read: trust no pack.
    Everything,
}

impl Condemned {
    pub(crate) fn allows(&self, loc: &ChunkLocation) -> bool {
        match self {
            Condemned::Packs(p) => !p.contains(&loc.pack),
            Condemned::Everything => false,
        }
    }
}

/// A condemnation record: packs a GC found to be garbage, and once armed, the sessions
/// that were running when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condemnation {
    pub id: String,
    pub created_ms: u64,
    pub packs: Vec<PackId>,
    /// `None` until armed.
    pub sessions: Option<Vec<String>>,
    /// Swept: its packs are deleted, and it is kept so that sessions learn so. When the
    /// store wrote the `swept` part, by the store's clock (`Some(None)`: no such clock).
    pub swept: Option<Option<u64>>,
}

impl Condemnation {
    pub fn is_swept(&self) -> bool {
        self.swept.is_some()
    }
}

#[derive(Serialize, Deserialize)]
struct CondemnedDoc {
    version: u32,
    created_ms: u64,
    packs: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ArmedDoc {
    version: u32,
    sessions: Vec<String>,
}

/// What a listing of `gc/` found.
#[derive(Debug, Default)]
pub struct Records {
    pub condemnations: Vec<Condemnation>,
    /// Records that cannot be used, with why: keys to delete. Deleting a record only ever
    /// spares packs, so removing a damaged one is always safe.
    pub damaged: Vec<(String, String)>,
    /// `swept` parts whose record is gone: keys to delete, harmless meanwhile.
    pub leftovers: Vec<String>,
    /// Swept records whose condemned part is damaged: which packs they deleted is unknown,
    /// so a session seeing one lists every pack (and deduplicates against nothing). Kept
    /// like any swept record, by the write time of their `swept` part, then collected.
    pub damaged_swept: Vec<(String, Option<u64>)>,
}

impl Records {
    /// Packs deleted by sweeps whose records are kept (version 4 stores).
    pub fn swept_packs(&self) -> HashSet<PackId> {
        self.condemnations
            .iter()
            .filter(|c| c.is_swept())
            .flat_map(|c| c.packs.iter().copied())
            .collect()
    }

    /// Every pack some record condemns (or, swept, deleted).
    pub fn packs(&self) -> HashSet<PackId> {
        self.condemnations
            .iter()
            .flat_map(|c| c.packs.iter().copied())
            .collect()
    }

    /// Whether some record cannot be read: a session then trusts no pack, and lists every
    /// pack.
    pub(crate) fn any_damaged(&self) -> bool {
        !self.damaged.is_empty() || !self.damaged_swept.is_empty()
    }

    /// What a session beginning now must not deduplicate against.
    pub(crate) fn condemned(&self) -> Condemned {
        let damaged = self.damaged_swept.first().map(|(id, _)| id);
        if let Some(key) = damaged.or(self.damaged.first().map(|(key, _)| key)) {
            tracing::warn!("damaged GC record {key}: this session deduplicates against nothing");
            return Condemned::Everything;
        }
        Condemned::Packs(self.packs())
    }
}

async fn get_record(p: &dyn Provider, key: &str) -> Result<Option<Bytes>> {
    match p.get(key, limits::GC_RECORD).await {
        Ok(b) => Ok(Some(b)),
        // Deleted by a GC that finished it between our listing and this read.
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn parse_condemned(id: &str, key: &str, bytes: &[u8]) -> Result<Condemnation> {
    let doc: CondemnedDoc = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("GC record `{key}`"), e.to_string()))?;
    if doc.version != RECORD_VERSION {
        return Err(Error::corrupt(
            format!("GC record `{key}`"),
            format!("version {} is not {RECORD_VERSION}", doc.version),
        ));
    }
    let packs = doc
        .packs
        .iter()
        .map(|h| PackId::from_hex(h))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Error::corrupt(format!("GC record `{key}`"), e.to_string()))?;
    Ok(Condemnation {
        id: id.into(),
        created_ms: doc.created_ms,
        packs,
        sessions: None,
        swept: None,
    })
}

fn parse_armed(key: &str, bytes: &[u8]) -> Result<Vec<String>> {
    let doc: ArmedDoc = serde_json::from_slice(bytes)
        .map_err(|e| Error::corrupt(format!("GC record `{key}`"), e.to_string()))?;
    if doc.version != RECORD_VERSION {
        return Err(Error::corrupt(
            format!("GC record `{key}`"),
            format!("version {} is not {RECORD_VERSION}", doc.version),
        ));
    }
    Ok(doc.sessions)
}

/// Reads every condemnation record in the store.
///
/// # Errors
/// Provider errors.
pub async fn list(p: &dyn Provider) -> Result<Records> {
    // Per record: condemned part, armed part, swept part (with its write time).
    let mut parts: BTreeMap<String, (bool, bool, Option<Option<u64>>)> = BTreeMap::new();
    for o in provider::list_all(p, keys::GC).await? {
        let Some((id, part)) = keys::parse_gc_record(&o.key) else {
            continue;
        };
        let e = parts.entry(id.to_string()).or_default();
        match part {
            CONDEMNED => e.0 = true,
            ARMED => e.1 = true,
            SWEPT => e.2 = Some(o.modified_ms),
            _ => {}
        }
    }
    let mut out = Records::default();
    for (id, (has_condemned, has_armed, swept)) in parts {
        let (ckey, akey) = (keys::gc_record(&id, CONDEMNED), keys::gc_record(&id, ARMED));
        if !has_condemned {
            if has_armed {
                out.damaged
                    .push((akey, "armed part without its condemned part".into()));
            }
            if swept.is_some() {
                // A collection interrupted between its two deletes: a leftover, not damage
                // (nothing it says is needed any more), so sessions are not disturbed.
                out.leftovers.push(keys::gc_record(&id, SWEPT));
            }
            continue;
        }
        let Some(bytes) = get_record(p, &ckey).await? else {
            continue;
        };
        let mut c = match parse_condemned(&id, &ckey, &bytes) {
            Ok(c) => Condemnation { swept, ..c },
            Err(e) if swept.is_some() => {
                // Its packs are gone; deleting it now would hide that from sessions.
                tracing::warn!("{e}");
                out.damaged_swept.push((id.clone(), swept.flatten()));
                continue;
            }
            Err(e) => {
                out.damaged.push((ckey, e.to_string()));
                if has_armed {
                    out.damaged
                        .push((akey, "its condemned part is damaged".into()));
                }
                continue;
            }
        };
        if has_armed
            && swept.is_none()
            && let Some(bytes) = get_record(p, &akey).await?
        {
            match parse_armed(&akey, &bytes) {
                Ok(s) => c.sessions = Some(s),
                // Re-arming is always valid (docs/gc.md), so an unreadable armed part is
                // dropped and the record armed again.
                Err(e) => out.damaged.push((akey, e.to_string())),
            }
        }
        out.condemnations.push(c);
    }
    Ok(out)
}

/// Writes a new condemnation record for `packs`; returns its id.
///
/// # Errors
/// Provider errors.
pub async fn condemn(p: &dyn Provider, packs: &[PackId]) -> Result<String> {
    let created_ms = now_ms();
    let id = format!("{created_ms:013}-{:016x}", rand::random::<u64>());
    let doc = CondemnedDoc {
        version: RECORD_VERSION,
        created_ms,
        packs: packs.iter().map(PackId::to_hex).collect(),
    };
    let body = serde_json::to_vec(&doc).expect("record serializes");
    p.put_if_absent(&keys::gc_record(&id, CONDEMNED), Bytes::from(body))
        .await?;
    Ok(id)
}

/// Arms record `id` with the sessions to wait for. Must be called with a session listing
/// taken after the condemned part was written.
///
/// # Errors
/// Provider errors.
pub async fn arm(p: &dyn Provider, id: &str, sessions: Vec<String>) -> Result<()> {
    let doc = ArmedDoc {
        version: RECORD_VERSION,
        sessions,
    };
    let body = serde_json::to_vec(&doc).expect("record serializes");
    p.put_if_absent(&keys::gc_record(id, ARMED), Bytes::from(body))
        .await
        .map(|_| ())
}

/// Marks record `id` swept (version 4 stores): its packs are deleted. The record is kept
/// until [`collect_swept`] finds it old enough; sessions learn from it which packs are gone.
/// The armed part goes (a crash before leaves a swept record with an armed part, which
/// counts as swept).
///
/// # Errors
/// Provider errors.
pub async fn mark_swept(p: &dyn Provider, id: &str) -> Result<()> {
    p.put_if_absent(
        &keys::gc_record(id, SWEPT),
        Bytes::from_static(b"{\"version\":1}"),
    )
    .await?;
    p.delete(&keys::gc_record(id, ARMED)).await
}

/// Deletes swept records whose `swept` part the store wrote more than `keep` before
/// `store_now_ms`: condemned part first, then the rest (a crash in between leaves a `swept`
/// part alone, a leftover the next run deletes). Returns how many it deleted.
///
/// # Errors
/// Provider errors.
pub async fn collect_swept(
    p: &dyn Provider,
    records: &Records,
    store_now_ms: u64,
    keep: std::time::Duration,
) -> Result<u64> {
    let cutoff = store_now_ms.saturating_sub(keep.as_millis() as u64);
    let mut deleted = 0;
    for c in &records.condemnations {
        if let Some(Some(written)) = c.swept
            && written < cutoff
        {
            p.delete(&keys::gc_record(&c.id, CONDEMNED)).await?;
            p.delete(&keys::gc_record(&c.id, ARMED)).await?;
            p.delete(&keys::gc_record(&c.id, SWEPT)).await?;
            deleted += 1;
        }
    }
    for (id, written) in &records.damaged_swept {
        if written.is_some_and(|w| w < cutoff) {
            for part in [CONDEMNED, ARMED, SWEPT] {
                p.delete(&keys::gc_record(id, part)).await?;
            }
            deleted += 1;
        }
    }
    for key in &records.leftovers {
        p.delete(key).await?;
    }
    Ok(deleted)
}

/// Removes a finished record: condemned part first, so a crash in between leaves an armed
/// part without condemned part, which the next GC deletes as damaged.
///
/// # Errors
/// Provider errors.
pub async fn retire(p: &dyn Provider, id: &str) -> Result<()> {
    p.delete(&keys::gc_record(id, CONDEMNED)).await?;
    p.delete(&keys::gc_record(id, ARMED)).await
}
