//! A store's mirror: a second provider (S3, typically, beside a local primary) that holds a
//! copy of the store and is, at every moment, a complete store by itself (docs/mirror.md).
//!
//! The mirror has the primary's `config` (the same store id), the primary's packs byte for
//! byte under the same names, and the primary's manifests. [`Mirror::sync`] copies, manifest
//! by manifest in the order the primary wrote them, first every pack the manifest needs that
//! the mirror lacks, then the manifest — so a manifest is never on the mirror before its
//! chunks are. It is an ordinary session on each side: a reading one on the primary (no GC
//! there deletes a pack it is about to copy) and a writing one on the mirror, whose manifests
//! are committed exactly as a backup's are. GC on the mirror is the ordinary GC; nothing
//! about it is special (docs/gc.md holds for each side).
//!
//! A sync is resumable by construction: what it has to do is the difference between the two
//! listings, so a sync killed at any point leaves a valid mirror (objects are written whole:
//! S3 puts are atomic, a local store renames into place) and the next one carries on.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::StreamExt;

use crate::provider::{DeadlineProvider, Provider, limits};
use crate::session::now_ms;
use crate::store::{StoreConfig, StoredManifest, WriteSession};
use crate::{ChunkId, ChunkStore, Error, ErrorKind, PackId, Progress, Result, keys, pack};

/// Packs copied at once: enough to keep an S3 link busy, few enough that the packs held in
/// memory stay small (each is at most the pack target size).
const COPIES_IN_FLIGHT: usize = 4;

/// The mirror side of a store, opened beside its primary.
#[derive(Debug)]
pub struct Mirror {
    store: Arc<ChunkStore>,
    deadline: Arc<DeadlineProvider>,
}

/// What one [`Mirror::sync`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct MirrorReport {
    pub manifests_copied: u64,
    /// Manifests the caller said must not be mirrored (never committed on the primary).
    pub manifests_skipped: u64,
    pub packs_copied: u64,
    pub bytes_copied: u64,
    /// Chunks written into new mirror packs because the mirror's own GC had condemned the
    /// pack of the same name (docs/mirror.md).
    pub chunks_rewritten: u64,
    pub seconds: f64,
}

/// How far the mirror is behind the primary.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct MirrorStatus {
    pub pending_manifests: u64,
    /// Packs the pending manifests need that the mirror lacks.
    pub pending_packs: u64,
    /// Bytes of those packs and manifests.
    pub pending_bytes: u64,
    /// When the primary wrote the oldest pending manifest (ms since the epoch).
    pub oldest_pending_ms: Option<u64>,
    /// The manifest the mirror wrote last.
    pub last_synced: Option<StoredManifest>,
    pub mirror_manifests: u64,
}

impl MirrorStatus {
    pub fn pending_objects(&self) -> u64 {
        self.pending_manifests + self.pending_packs
    }

    pub fn oldest_pending_age_seconds(&self) -> Option<u64> {
        self.oldest_pending_ms
            .map(|ms| now_ms().saturating_sub(ms) / 1000)
    }
}

/// Copies the mirror's `config` to a primary that has none (its disk was lost and replaced):
/// the primary then is the same store again, and backups written to it mirror as before.
/// Returns whether it copied.
///
/// # Errors
/// Provider errors.
pub async fn seed_primary(primary: &dyn Provider, mirror: &dyn Provider) -> Result<bool> {
    match primary.get(keys::CONFIG, limits::CONFIG).await {
        Ok(_) => return Ok(false),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    match mirror.get(keys::CONFIG, limits::CONFIG).await {
        Ok(body) => {
            StoreConfig::parse(&body)?;
            primary.put_if_absent(keys::CONFIG, body).await
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

impl Mirror {
    /// Opens `provider` as the mirror of `primary`, giving it the primary's config when it
    /// has none (a new mirror, or one added to an existing store), with its local index in
    /// `index_root/<store id>`. With `deadline`, every request gives up then.
    ///
    /// # Errors
    /// `InvalidInput` when the mirror holds another store; provider and index errors.
    pub fn open(
        primary: &ChunkStore,
        provider: Arc<dyn Provider>,
        index_root: &Path,
        deadline: Option<Instant>,
    ) -> Result<Mirror> {
        let bounded = Arc::new(DeadlineProvider::new(provider));
        bounded.set_deadline(deadline);
        let p: Arc<dyn Provider> = bounded.clone();
        primary.block_on(adopt_config(primary.config(), p.as_ref()))?;
        let store = ChunkStore::open(p, index_root, false)?;
        store.set_session_timing(primary.session_timing());
        Ok(Mirror {
            store: Arc::new(store),
            deadline: bounded,
        })
    }

    /// The mirror as a store of its own (list, verify, GC and restore run on it as on any).
    pub fn store(&self) -> &Arc<ChunkStore> {
        &self.store
    }

    /// Every request to the mirror from now on gives up at `deadline` (`None`: never).
    pub fn set_deadline(&self, deadline: Option<Instant>) {
        self.deadline.set_deadline(deadline);
    }

    /// Copies to the mirror every manifest of `primary` it lacks, oldest first, each after
    /// the packs it needs. `manifest_chunks` says which chunks a manifest references, or
    /// `None` for one that must not be mirrored (never committed on the primary).
    ///
    /// # Errors
    /// Provider and index errors of either side, `SessionRevoked` when a GC on either side
    /// gave up on the sync, `Corrupt` for a damaged pack on the primary, and whatever
    /// `manifest_chunks` returns. What was copied before the error stays: the mirror is
    /// valid after any error, and the next sync carries on.
    pub fn sync<E: From<Error>>(
        &self,
        primary: &ChunkStore,
        mut manifest_chunks: impl FnMut(&StoredManifest, &[u8]) -> Result<Option<Vec<ChunkId>>, E>,
        progress: &dyn Progress,
    ) -> Result<MirrorReport, E> {
        let started = Instant::now();
        let mirror = self.store.as_ref();
        // Writing first: the mirror is the side most likely not to answer, and a primary
        // session begun for nothing would only delay its GCs.
        let writing = mirror.begin_session("mirror", "sync")?;
        let reading = match primary.begin_session("mirror", "sync") {
            Ok(r) => r,
            Err(e) => {
                let _ = writing.end();
                return Err(e.into());
            }
        };
        let result = self.copy_pending(primary, &reading, &writing, &mut manifest_chunks, progress);
        let ended = writing.end().and(reading.end());
        let mut report = result?;
        if let Err(e) = ended {
            // Harmless: the session looks alive until its lease runs out.
            tracing::warn!("could not end a mirror sync session: {e}");
        }
        report.seconds = started.elapsed().as_secs_f64();
        Ok(report)
    }

    fn copy_pending<E: From<Error>>(
        &self,
        primary: &ChunkStore,
        reading: &WriteSession<'_>,
        writing: &WriteSession<'_>,
        manifest_chunks: &mut impl FnMut(&StoredManifest, &[u8]) -> Result<Option<Vec<ChunkId>>, E>,
        progress: &dyn Progress,
    ) -> Result<MirrorReport, E> {
        let pending = pending_manifests(primary, &self.store)?;
        let mut report = MirrorReport::default();
        progress.begin_items("mirror", pending.len() as u64);
        for m in &pending {
            reading.check_not_revoked()?;
            writing.check_not_revoked()?;
            let body = match primary.get_manifest(&m.group, &m.name) {
                Ok(b) => b,
                // Deleted on the primary since the listing: not to be mirrored.
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let Some(chunks) = manifest_chunks(m, &body)? else {
                report.manifests_skipped += 1;
                continue;
            };
            let plan = self.plan_copy(primary, reading, writing, &chunks)?;
            self.copy_packs(primary, &plan.packs, &mut report)?;
            for id in &plan.rewrite {
                primary.read_chunks(std::slice::from_ref(id), |_, data| {
                    writing.put_chunk(*id, data).map(|_| ())
                })?;
                report.chunks_rewritten += 1;
            }
            if writing.copy_manifest(&m.group, &m.name, body)? {
                report.manifests_copied += 1;
            }
            progress.advance(1);
        }
        progress.end();
        Ok(report)
    }

    /// Which packs of the primary to copy so the mirror holds every chunk of `chunks`, and
    /// which chunks must instead go into a new mirror pack: those whose primary pack has
    /// the name of a pack the mirror's GC condemned (its copy there may be swept, and a put
    /// of the same name would not replace it).
    fn plan_copy(
        &self,
        primary: &ChunkStore,
        reading: &WriteSession<'_>,
        writing: &WriteSession<'_>,
        chunks: &[ChunkId],
    ) -> Result<CopyPlan> {
        let mut plan = CopyPlan::default();
        let mut seen = HashSet::new();
        let mut resynced = false;
        for id in chunks {
            if !seen.insert(*id) || writing.usable_location(id)?.is_some() {
                continue;
            }
            let mut locs = primary.chunk_locations(id)?;
            if locs.is_empty() && !resynced {
                primary.sync_index()?;
                resynced = true;
                locs = primary.chunk_locations(id)?;
            }
            // A pack no GC had condemned when the sync began stays until the sync ends; a
            // condemned one is still readable until a sweep, which copies what it needs first.
            let Some(loc) = locs
                .iter()
                .find(|l| reading.may_rely_on(&l.pack))
                .or(locs.first())
            else {
                return Err(primary.missing_chunk_error(id));
            };
            if plan.packs.contains(&loc.pack) {
                continue;
            }
            if writing.may_rely_on(&loc.pack) {
                plan.packs.insert(loc.pack);
            } else {
                plan.rewrite.push(*id);
            }
        }
        Ok(plan)
    }

    /// Copies `packs` from the primary, each checked against its name (a pack's name is the
    /// hash of its bytes) before the mirror gets it, then records them in the mirror's index.
    fn copy_packs(
        &self,
        primary: &ChunkStore,
        packs: &std::collections::BTreeSet<PackId>,
        report: &mut MirrorReport,
    ) -> Result<()> {
        let max_len = limits::pack(
            primary.config().pack_target_size,
            u64::from(primary.config().max_chunk_len()),
        );
        let (from, to) = (primary.provider().clone(), self.store.provider().clone());
        let copied: Vec<Result<(PackId, u64, Vec<pack::PackEntry>)>> =
            self.store.block_on(async {
                futures_util::stream::iter(packs.iter().copied().map(|pack| {
                    let (from, to) = (from.clone(), to.clone());
                    async move {
                        let key = keys::pack(&pack);
                        let bytes = from.get(&key, max_len).await?;
                        if PackId::of(&bytes) != pack {
                            return Err(Error::corrupt(
                                format!("pack {pack}"),
                                "its bytes do not hash to its name on the primary, so it was not mirrored; `rbk verify` names the backups it damages",
                            ));
                        }
                        let entries = entries_of(&key, &bytes)?;
                        let size = bytes.len() as u64;
                        to.put_if_absent(&key, bytes).await?;
                        Ok((pack, size, entries))
                    }
                }))
                .buffer_unordered(COPIES_IN_FLIGHT)
                .collect()
                .await
            });
        for c in copied {
            let (pack, size, entries) = c?;
            self.store.index()?.add_pack(&pack, size, &entries)?;
            report.packs_copied += 1;
            report.bytes_copied += size;
        }
        Ok(())
    }

    /// How far the mirror is behind: the pending manifests and the packs they need that the
    /// mirror lacks. Reads the pending manifests; writes nothing.
    ///
    /// # Errors
    /// Provider and index errors of either side, and whatever `manifest_chunks` returns.
    pub fn status<E: From<Error>>(
        &self,
        primary: &ChunkStore,
        mut manifest_chunks: impl FnMut(&StoredManifest, &[u8]) -> Result<Option<Vec<ChunkId>>, E>,
    ) -> Result<MirrorStatus, E> {
        let mirror = self.store.as_ref();
        primary.sync_index()?;
        mirror.sync_index()?;
        let on_mirror = mirror.list_manifests(None)?;
        let mut status = MirrorStatus {
            mirror_manifests: on_mirror.len() as u64,
            last_synced: on_mirror
                .iter()
                .max_by(|a, b| (a.written_ms, &a.name).cmp(&(b.written_ms, &b.name)))
                .cloned(),
            ..Default::default()
        };
        let sizes: BTreeMap<PackId, u64> = primary.packs()?.into_iter().collect();
        let mut needed = HashSet::new();
        for m in pending_manifests(primary, mirror)? {
            let body = match primary.get_manifest(&m.group, &m.name) {
                Ok(b) => b,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            let Some(chunks) = manifest_chunks(&m, &body)? else {
                continue;
            };
            status.pending_manifests += 1;
            status.pending_bytes += body.len() as u64;
            status.oldest_pending_ms = status.oldest_pending_ms.or(m.written_ms);
            for id in &chunks {
                if !mirror.chunk_locations(id)?.is_empty() {
                    continue;
                }
                if let Some(loc) = primary.chunk_locations(id)?.first()
                    && needed.insert(loc.pack)
                {
                    status.pending_packs += 1;
                    status.pending_bytes += sizes.get(&loc.pack).copied().unwrap_or(0);
                }
            }
        }
        Ok(status)
    }
}

#[derive(Default)]
struct CopyPlan {
    packs: std::collections::BTreeSet<PackId>,
    rewrite: Vec<ChunkId>,
}

/// The primary's manifests the mirror lacks, in the order the primary wrote them.
fn pending_manifests(primary: &ChunkStore, mirror: &ChunkStore) -> Result<Vec<StoredManifest>> {
    let on_mirror: HashSet<(String, String)> = mirror
        .list_manifests(None)?
        .into_iter()
        .map(|m| (m.group, m.name))
        .collect();
    let mut pending: Vec<StoredManifest> = primary
        .list_manifests(None)?
        .into_iter()
        .filter(|m| !on_mirror.contains(&(m.group.clone(), m.name.clone())))
        .collect();
    pending.sort_by(|a, b| (a.written_ms, &a.name).cmp(&(b.written_ms, &b.name)));
    Ok(pending)
}

/// The chunks a whole pack's trailer lists, checked as an index sync checks them.
fn entries_of(key: &str, bytes: &Bytes) -> Result<Vec<pack::PackEntry>> {
    let size = bytes.len() as u64;
    let footer_at = bytes.len().saturating_sub(pack::FOOTER_LEN);
    let footer = &bytes[footer_at..];
    let (start, len) = pack::parse_footer(key, footer, size)?;
    pack::parse_index(
        key,
        footer,
        &bytes[start as usize..(start + len) as usize],
        start,
    )
}

/// Gives the mirror behind `mirror` the primary's config, or checks that it has it already.
async fn adopt_config(config: &StoreConfig, mirror: &dyn Provider) -> Result<()> {
    let body = serde_json::to_vec_pretty(config).expect("config serializes");
    let theirs = match mirror.get(keys::CONFIG, limits::CONFIG).await {
        Ok(b) => b,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            // Two processes may add the mirror at once: whoever wins, both check it below.
            mirror
                .put_if_absent(keys::CONFIG, Bytes::from(body))
                .await?;
            mirror.get(keys::CONFIG, limits::CONFIG).await?
        }
        Err(e) => return Err(e),
    };
    let theirs = StoreConfig::parse(&theirs)?;
    if theirs != *config {
        return Err(Error::InvalidInput(format!(
            "the mirror `{}` holds another store (store id {}), not a copy of this one (store id {}): point backup.mirror at an empty location or at this store's own mirror",
            mirror.describe(),
            theirs.store_id,
            config.store_id
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;
    use crate::provider::MemoryProvider;

    fn chunks(n: usize, seed: u8) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("chunk {seed} {i} ").repeat(3000).into_bytes())
            .collect()
    }

    /// Writes `data` as one manifest named `name` whose body is the list of its chunk ids.
    fn backup(s: &ChunkStore, name: &str, data: &[Vec<u8>]) {
        let w = s.begin_session("backup", "m").unwrap();
        let mut body = Vec::new();
        for c in data {
            let id = ChunkId::of(c);
            w.put_chunk(id, c).unwrap();
            body.extend_from_slice(&id.0);
        }
        w.commit("m", |_| (name.to_string(), Bytes::from(body.clone())))
            .unwrap();
    }

    fn ids_of(_: &StoredManifest, body: &[u8]) -> Result<Option<Vec<ChunkId>>> {
        body.chunks(32)
            .map(ChunkId::from_slice)
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    #[test]
    fn a_sync_copies_what_is_pending_and_the_mirror_reads_alone() {
        let (pd, md, fresh) = (
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
            tempfile::tempdir().unwrap(),
        );
        let primary_p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let mirror_p: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let primary = ChunkStore::open(primary_p.clone(), pd.path(), true).unwrap();
        let (a, b) = (chunks(40, 1), chunks(40, 2));
        backup(&primary, "m-1", &a);
        let mirror = Mirror::open(&primary, mirror_p.clone(), md.path(), None).unwrap();
        let st = mirror.status(&primary, ids_of).unwrap();
        assert_eq!((st.pending_manifests, st.mirror_manifests), (1, 0));
        assert_eq!(st.pending_packs, primary.packs().unwrap().len() as u64);
        let r = mirror.sync(&primary, ids_of, &NoProgress).unwrap();
        assert_eq!(r.manifests_copied, 1);
        assert_eq!(r.packs_copied, st.pending_packs);
        // Nothing pending: a second sync copies nothing.
        assert_eq!(
            mirror.status(&primary, ids_of).unwrap().pending_objects(),
            0
        );
        assert_eq!(
            mirror
                .sync(&primary, ids_of, &NoProgress)
                .unwrap()
                .packs_copied,
            0
        );
        // Only the new packs go the second time.
        backup(&primary, "m-2", &[a.clone(), b.clone()].concat());
        let r = mirror.sync(&primary, ids_of, &NoProgress).unwrap();
        assert_eq!(r.manifests_copied, 1);
        assert_eq!(r.bytes_copied, {
            let on_mirror: HashSet<PackId> = mirror
                .store()
                .packs()
                .unwrap()
                .into_iter()
                .map(|p| p.0)
                .collect();
            assert_eq!(on_mirror.len(), primary.packs().unwrap().len());
            r.bytes_copied
        });
        assert!(r.packs_copied >= 1);
        // The mirror alone, from a machine with no index, reads every chunk.
        let alone = ChunkStore::open(mirror_p.clone(), fresh.path(), false).unwrap();
        assert_eq!(alone.config(), primary.config());
        let all: Vec<ChunkId> = b.iter().map(|c| ChunkId::of(c)).collect();
        let got = std::sync::Mutex::new(0u64);
        alone
            .read_chunks(&all, |_, d| {
                *got.lock().unwrap() += d.len() as u64;
                Ok::<(), Error>(())
            })
            .unwrap();
        assert_eq!(got.into_inner().unwrap(), b.concat().len() as u64);
    }

    #[test]
    fn a_mirror_of_another_store_is_refused_and_a_lost_primary_is_seeded() {
        let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let (one, other): (Arc<dyn Provider>, Arc<dyn Provider>) = (
            Arc::new(MemoryProvider::default()),
            Arc::new(MemoryProvider::default()),
        );
        let a = ChunkStore::open(one.clone(), dirs[0].path(), true).unwrap();
        let b = ChunkStore::open(other.clone(), dirs[1].path(), true).unwrap();
        let e = Mirror::open(&a, other.clone(), dirs[2].path(), None).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(e.to_string().contains("holds another store"), "{e}");
        // A new, empty primary takes the mirror's config, so it is the same store again.
        let empty: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
        let rt = tokio::runtime::Runtime::new().unwrap();
        assert!(
            rt.block_on(seed_primary(empty.as_ref(), other.as_ref()))
                .unwrap()
        );
        assert!(
            !rt.block_on(seed_primary(empty.as_ref(), other.as_ref()))
                .unwrap()
        );
        let reborn = ChunkStore::open(empty, dirs[2].path(), false).unwrap();
        assert_eq!(reborn.config().store_id, b.config().store_id);
    }

    /// A chunk damaged, or a pack gone, on the primary is read from the mirror and counted.
    #[test]
    fn reads_fall_back_to_the_mirror_for_damaged_or_missing_chunks() {
        let (pd, md) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mem = Arc::new(MemoryProvider::default());
        let primary_p: Arc<dyn Provider> = mem.clone();
        let primary = ChunkStore::open(primary_p.clone(), pd.path(), true).unwrap();
        // Incompressible, so the chunks fill several packs.
        let data: Vec<Vec<u8>> = (0..60u8)
            .map(|i| {
                use rand::{RngCore, SeedableRng};
                let mut c = vec![0u8; 400 << 10];
                rand::rngs::StdRng::seed_from_u64(u64::from(i)).fill_bytes(&mut c);
                c
            })
            .collect();
        backup(&primary, "m-1", &data);
        let mirror = Mirror::open(
            &primary,
            Arc::new(MemoryProvider::default()),
            md.path(),
            None,
        )
        .unwrap();
        mirror.sync(&primary, ids_of, &NoProgress).unwrap();
        let ids: Vec<ChunkId> = data.iter().map(|c| ChunkId::of(c)).collect();
        // Damage one chunk in place and delete another chunk's whole pack.
        let damaged = primary.locate(&ids[0]).unwrap();
        let key = keys::pack(&damaged.pack);
        let mut bytes = primary
            .block_on(primary_p.get(&key, u64::MAX))
            .unwrap()
            .to_vec();
        bytes[damaged.offset as usize + 8] ^= 0x40;
        primary.block_on(primary_p.delete(&key)).unwrap();
        primary
            .block_on(primary_p.put_if_absent(&key, Bytes::from(bytes)))
            .unwrap();
        let gone = primary.locate(&ids[59]).unwrap().pack;
        assert_ne!(gone, damaged.pack, "the test needs two packs");
        let in_gone = primary.pack_entries(&gone).unwrap().len() as u64;
        primary
            .block_on(primary_p.delete(&keys::pack(&gone)))
            .unwrap();
        let read = |s: &ChunkStore| {
            let parts = std::sync::Mutex::new(BTreeMap::new());
            s.read_chunks(&ids, |at, d| {
                parts.lock().unwrap().insert(at, d.to_vec());
                Ok::<(), Error>(())
            })
            .map(|()| {
                parts
                    .into_inner()
                    .unwrap()
                    .into_values()
                    .flatten()
                    .collect::<Vec<u8>>()
            })
        };
        assert!(read(&primary).is_err(), "without the mirror the read fails");
        primary.set_fallback(mirror.store().clone());
        assert!(read(&primary).unwrap() == data.concat());
        // The damaged chunk and every chunk of the deleted pack; nothing else.
        assert_eq!(primary.fallback_reads(), 1 + in_gone);
    }
}
