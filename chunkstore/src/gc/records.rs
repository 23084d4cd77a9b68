//! Condemnation records: what one GC run decided, kept in the store so that every other
//! process can see it (docs/gc.md).
//!
//! `gc/<record id>/condemned` holds the packs a GC found to be garbage; `gc/<record id>/armed`
//! the sessions that were running after the condemned part was written. Both are small JSON
//! documents (keys in `keys.rs`). A record is retired (deleted) once its packs are swept.

use std::collections::{BTreeMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::index::ChunkLocation;
use crate::keys::{self, ARMED, CONDEMNED};
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
}

impl Records {
    /// Every pack some record condemns.
    pub fn packs(&self) -> HashSet<PackId> {
        self.condemnations
            .iter()
            .flat_map(|c| c.packs.iter().copied())
            .collect()
    }

    /// What a session beginning now must not deduplicate against.
    pub(crate) fn condemned(&self) -> Condemned {
        if let Some((key, _)) = self.damaged.first() {
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
    let mut parts: BTreeMap<String, (bool, bool)> = BTreeMap::new();
    for o in provider::list_all(p, keys::GC).await? {
        let Some((id, part)) = keys::parse_gc_record(&o.key) else {
            continue;
        };
        let e = parts.entry(id.to_string()).or_default();
        match part {
            CONDEMNED => e.0 = true,
            ARMED => e.1 = true,
            _ => {}
        }
    }
    let mut out = Records::default();
    for (id, (has_condemned, has_armed)) in parts {
        let (ckey, akey) = (keys::gc_record(&id, CONDEMNED), keys::gc_record(&id, ARMED));
        if !has_condemned {
            if has_armed {
                out.damaged
                    .push((akey, "armed part without its condemned part".into()));
            }
            continue;
        }
        let Some(bytes) = get_record(p, &ckey).await? else {
            continue;
        };
        let mut c = match parse_condemned(&id, &ckey, &bytes) {
            Ok(c) => c,
            Err(e) => {
                out.damaged.push((ckey, e.to_string()));
                if has_armed {
                    out.damaged
                        .push((akey, "its condemned part is damaged".into()));
                }
                continue;
            }
        };
        if has_armed && let Some(bytes) = get_record(p, &akey).await? {
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

/// Removes a finished record: condemned part first, so a crash in between leaves an armed
/// part without condemned part, which the next GC deletes as damaged.
///
/// # Errors
/// Provider errors.
pub async fn retire(p: &dyn Provider, id: &str) -> Result<()> {
    p.delete(&keys::gc_record(id, CONDEMNED)).await?;
    p.delete(&keys::gc_record(id, ARMED)).await
}
