//! Retention and garbage collection: what GC deletes, what it must never delete, and the
//! interleavings with concurrent backups that the protocol in docs/gc.md is built for.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::common::{Env, MODULE, digest, store_listing};
use bytes::Bytes;
use rbk_chunkstore::provider::{self, ListPage, Provider};
use rbk_chunkstore::session::{SessionTiming, now_ms};
use rbk_chunkstore::{ChunkId, pack};
use rbk_engine::ops::gc::{self, GcOptions, GcReport};
use rbk_engine::ops::{backup, restore, verify};
use rbk_engine::retention::PolicyOverride;
use rbk_engine::{BackupId, Error, ErrorKind, NoProgress, Progress, Repo, repo, testdata};

const HOUR_MS: u64 = 3_600_000;

/// Keep the newest `keep` backups of every module, delete the rest.
fn keep_newest(keep: u64) -> GcOptions {
    GcOptions {
        policy: PolicyOverride {
            max_age_hours: Some(0.0),
            min_keep: Some(keep),
        },
        now_ms: Some(now_ms() + HOUR_MS),
        ..Default::default()
    }
}

fn run_gc(repo: &Repo, data: &Path, opts: &GcOptions) -> GcReport {
    gc::gc(repo, data, opts, &NoProgress).unwrap()
}

/// Per pack in the store: (pack key, stored bytes of chunks, stored bytes of chunks that
/// some manifest in the store references). Computed from the objects alone.
fn pack_liveness(p: &Arc<dyn Provider>, repo: &Repo) -> Vec<(String, u64, u64)> {
    let mut live: HashSet<ChunkId> = HashSet::new();
    for id in repo.all_backup_ids().unwrap() {
        live.extend(repo.load_manifest(&id).unwrap().chunk_ids().copied());
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(provider::list_all(p.as_ref(), "packs/"))
        .unwrap()
        .into_iter()
        .map(|o| {
            let bytes = rt.block_on(p.get(&o.key, u64::MAX)).unwrap();
            let entries = pack::parse_pack(&o.key, &bytes).unwrap();
            let total = entries.iter().map(|e| e.stored_len as u64).sum();
            let used = entries
                .iter()
                .filter(|e| live.contains(&e.id))
                .map(|e| e.stored_len as u64)
                .sum();
            (o.key, total, used)
        })
        .collect()
}

fn pack_object_bytes(p: &Arc<dyn Provider>) -> u64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(provider::list_all(p.as_ref(), "packs/"))
        .unwrap()
        .iter()
        .map(|o| o.size)
        .sum()
}

fn keys_under(p: &Arc<dyn Provider>, prefix: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(provider::list_all(p.as_ref(), prefix))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect()
}

/// Backs up four generations (25% new or rewritten data each); returns the ids and the
/// digest of the module at each.
fn four_generations(env: &Env, repo: &Repo) -> Vec<(BackupId, BTreeMap<String, [u8; 32]>)> {
    let mut out = Vec::new();
    for g in 0..4 {
        if g > 0 {
            testdata::advance(&env.data, MODULE, 25).unwrap();
        }
        let b = backup::backup(repo, &env.data, MODULE, &NoProgress).unwrap();
        out.push((b.backup_id, digest(&env.module())));
    }
    out
}

#[test]
fn gc_deletes_expired_backups_and_shrinks_the_store_to_what_remains_need() {
    let env = Env::new(8);
    let repo = env.repo_for(&env.data);
    let backups = four_generations(&env, &repo);
    let p = env.provider();
    let before: u64 = pack_liveness(&p, &repo).iter().map(|x| x.1).sum();
    let before_objects = pack_object_bytes(&p);

    let r = run_gc(&repo, &env.data, &keep_newest(2));
    let expired: Vec<BackupId> = backups[..2].iter().map(|b| b.0.clone()).collect();
    assert_eq!(r.manifests_deleted, expired);
    assert_eq!(r.manifests_retained, 2);
    assert_eq!((r.store.records_swept, r.store.records_waiting), (1, 0));
    assert!(r.store.packs_condemned > 0);
    assert_eq!(
        r.store.sweep.packs_deleted + r.store.sweep.packs_rewritten + r.store.sweep.packs_reprieved,
        r.store.packs_condemned
    );
    assert!(r.store.sweep.bytes_freed > 0, "{r:?}");

    // Every pack left is at least 70% referenced (the repack threshold is 30%).
    let after = pack_liveness(&p, &repo);
    for (key, total, used) in &after {
        assert!(
            *used as f64 >= 0.7 * *total as f64 - 1.0,
            "{key}: only {used} of {total} bytes referenced"
        );
    }
    let after_bytes: u64 = after.iter().map(|x| x.1).sum();
    assert!(after_bytes < before, "{after_bytes} >= {before}");
    assert_eq!(
        before_objects - pack_object_bytes(&p),
        r.store.sweep.bytes_freed,
        "bytes freed is exactly what left the store"
    );

    // The retained backups restore byte-identically on a fresh machine; the others are gone.
    for (i, (id, d)) in backups.iter().enumerate().skip(2) {
        assert_eq!(&digest(&env.restore_fresh(id, &format!("r{i}"))), d);
    }
    let e = repo.load_manifest(&backups[0].0).unwrap_err();
    assert!(matches!(e, Error::BackupNotFound { .. }), "{e}");

    // A second run finds nothing to do.
    let again = run_gc(&repo, &env.data, &keep_newest(2));
    assert_eq!(again.manifests_deleted, Vec::<BackupId>::new());
    assert_eq!(
        (again.store.packs_condemned, again.store.records_swept),
        (0, 0)
    );
}

#[test]
fn dry_run_changes_nothing_and_predicts_the_real_run() {
    let env = Env::new(6);
    let repo = env.repo_for(&env.data);
    four_generations(&env, &repo);
    let listing = store_listing(&env.store);
    let binding = std::fs::read(repo::binding_path(&env.data)).unwrap();
    let opts = GcOptions {
        dry_run: true,
        ..keep_newest(1)
    };
    let dry = run_gc(&repo, &env.data, &opts);
    assert_eq!(
        store_listing(&env.store),
        listing,
        "a dry run wrote or deleted"
    );
    assert_eq!(
        std::fs::read(repo::binding_path(&env.data)).unwrap(),
        binding
    );
    assert_eq!(dry.manifests_deleted.len(), 3);
    assert!(dry.store.packs_condemned > 0);
    assert_eq!(dry.store.records_swept, 0);

    let real = run_gc(&repo, &env.data, &keep_newest(1));
    assert_eq!(real.manifests_deleted, dry.manifests_deleted);
    assert_eq!(real.store.packs_condemned, dry.store.packs_condemned);
    assert_eq!(real.store.bytes_condemned, dry.store.bytes_condemned);
    assert_ne!(store_listing(&env.store), listing);
}

/// Runs `hook` once, the first time the backup reports progress: at that point the backup's
/// session is running and it has decided nothing yet about which chunks to reuse.
struct OnFirstProgress<F: Fn() + Send + Sync> {
    hook: F,
    fired: AtomicBool,
}

impl<F: Fn() + Send + Sync> Progress for OnFirstProgress<F> {
    fn begin(&self, _phase: &str, _total: u64) {
        if !self.fired.swap(true, Ordering::SeqCst) {
            (self.hook)();
        }
    }
}

#[test]
fn gc_waits_for_a_running_backup_that_reuses_condemned_chunks() {
    let env = Env::new(6);
    let repo = env.repo_for(&env.data);
    let b0 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    gc::delete_backup(&repo, &b0.backup_id).unwrap();
    // Another machine runs GC while backup b1 of the unchanged module is running: every
    // pack is unreferenced, but b1 is about to reuse all of them.
    let gc_dir = env.scratch("gc-machine");
    std::fs::create_dir_all(&gc_dir).unwrap();
    let gc_repo = env.repo_for(&gc_dir);
    let first = std::sync::Mutex::new(None);
    let hook = OnFirstProgress {
        hook: || *first.lock().unwrap() = Some(run_gc(&gc_repo, &gc_dir, &GcOptions::default())),
        fired: AtomicBool::new(false),
    };
    let b1 = backup::backup(&repo, &env.data, MODULE, &hook).unwrap();
    assert_eq!(
        b1.stats.new_chunks, 0,
        "b1 saw no condemnation, so it deduplicates"
    );
    let first = first.into_inner().unwrap().unwrap();
    assert!(first.store.packs_condemned > 0);
    assert_eq!(first.store.packs_dead, first.store.packs_condemned);
    assert_eq!(
        (first.store.records_swept, first.store.records_waiting),
        (0, 1)
    );
    assert_eq!(first.store.waiting_on.len(), 1, "waits for b1's session");
    assert_eq!(first.store.sweep.packs_deleted, 0);

    // After b1 committed, the next GC sweeps and finds every pack needed again.
    let second = run_gc(&gc_repo, &gc_dir, &GcOptions::default());
    assert_eq!(second.store.records_swept, 1);
    assert_eq!(
        second.store.sweep.packs_reprieved,
        first.store.packs_condemned
    );
    assert_eq!(
        second.store.sweep.packs_deleted + second.store.sweep.packs_rewritten,
        0
    );
    let restored = env.restore_fresh(&b1.backup_id, "restored");
    assert_eq!(digest(&restored), digest(&env.module()));
}

#[test]
fn a_backup_that_starts_after_a_condemnation_stores_those_chunks_again() {
    let env = Env::new(6);
    let repo = env.repo_for(&env.data);
    let b0 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    gc::delete_backup(&repo, &b0.backup_id).unwrap();
    let p = env.provider();
    let old_packs = keys_under(&p, "packs/");

    // A third machine's session holds the sweep back while GC condemns every pack.
    let other_dir = env.scratch("other");
    let other = env.repo_for(&other_dir);
    let stuck = other
        .store()
        .begin_session("backup", "com.other.Module")
        .unwrap();
    let gc_dir = env.scratch("gc-machine");
    std::fs::create_dir_all(&gc_dir).unwrap();
    let gc_repo = env.repo_for(&gc_dir);
    let first = run_gc(&gc_repo, &gc_dir, &GcOptions::default());
    assert_eq!(first.store.records_waiting, 1);
    assert_eq!(first.store.waiting_on, vec![stuck.id().to_string()]);
    stuck.end().unwrap();

    // b1 begins after the condemnation, so it must not rely on condemned packs, and a GC
    // that sweeps them while b1 is still running must not break it.
    let second = std::sync::Mutex::new(None);
    let hook = OnFirstProgress {
        hook: || *second.lock().unwrap() = Some(run_gc(&gc_repo, &gc_dir, &GcOptions::default())),
        fired: AtomicBool::new(false),
    };
    let b1 = backup::backup(&repo, &env.data, MODULE, &hook).unwrap();
    assert_eq!(b1.stats.files_reused, 0);
    assert_eq!(b1.stats.new_chunks, b0.stats.new_chunks);
    let second = second.into_inner().unwrap().unwrap();
    assert_eq!(second.store.records_swept, 1);
    assert_eq!(second.store.sweep.packs_deleted as usize, old_packs.len());
    let now: HashSet<String> = keys_under(&p, "packs/").into_iter().collect();
    assert!(old_packs.iter().all(|k| !now.contains(k)));
    let restored = env.restore_fresh(&b1.backup_id, "restored");
    assert_eq!(digest(&restored), digest(&env.module()));
}

/// Plays a GC that revokes every session right after a manifest is written.
#[derive(Debug)]
struct RevokingAfterManifest(Arc<dyn Provider>);

#[async_trait::async_trait]
impl Provider for RevokingAfterManifest {
    fn describe(&self) -> String {
        self.0.describe()
    }
    async fn get(&self, key: &str, max_len: u64) -> rbk_chunkstore::Result<Bytes> {
        self.0.get(key, max_len).await
    }
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> rbk_chunkstore::Result<Bytes> {
        self.0.get_range(key, offset, len).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> rbk_chunkstore::Result<bool> {
        let wrote = self.0.put_if_absent(key, body).await?;
        if key.starts_with("manifests/") {
            use rbk_chunkstore::session;
            for s in session::list_sessions(self.0.as_ref()).await?.values() {
                session::revoke(self.0.as_ref(), &s.id).await?;
            }
        }
        Ok(wrote)
    }
    async fn delete(&self, key: &str) -> rbk_chunkstore::Result<()> {
        self.0.delete(key).await
    }
    async fn exists(&self, key: &str) -> rbk_chunkstore::Result<bool> {
        self.0.exists(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> rbk_chunkstore::Result<ListPage> {
        self.0.list(prefix, page_token, page_size).await
    }
}

#[test]
fn a_revoked_backup_removes_its_manifest_and_a_retry_succeeds() {
    let env = Env::new(4);
    // A GC revokes the session right after the manifest lands, before the backup's final
    // check: the manifest must not survive.
    let faulty: Arc<dyn Provider> = Arc::new(RevokingAfterManifest(env.provider()));
    let repo = Repo::open(faulty, &repo::index_root(&env.data), true).unwrap();
    let e = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Revoked);
    assert!(e.to_string().contains("declared dead by a GC"), "{e}");
    assert_eq!(repo.backup_ids(MODULE).unwrap(), vec![]);
    drop(repo);
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert_eq!(repo.backup_ids(MODULE).unwrap(), vec![b.backup_id.clone()]);
    let restored = env.restore_fresh(&b.backup_id, "restored");
    assert_eq!(digest(&restored), digest(&env.module()));
}

#[test]
fn packs_of_a_crashed_backup_are_freed_once_its_lease_runs_out() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let b0 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let p = env.provider();
    let packs_before = keys_under(&p, "packs/").len();
    // A process uploads a pack of new chunks and dies without committing or ending its
    // session (its runtime, and so its heartbeat, dies with it).
    {
        let dir = env.scratch("crashed");
        let crashed = env.repo_for(&dir);
        let session = crashed.store().begin_session("backup", MODULE).unwrap();
        for i in 0..50u32 {
            let data = format!("orphan chunk {i}").repeat(2000).into_bytes();
            session.put_chunk(ChunkId::of(&data), &data).unwrap();
        }
        session.flush().unwrap();
        std::mem::forget(session);
    }
    assert_eq!(keys_under(&p, "packs/").len(), packs_before + 1);
    // Within the lease, the crashed session holds the sweep back.
    let r = run_gc(&repo, &env.data, &GcOptions::default());
    assert!(r.store.sessions_revoked.is_empty());
    assert_eq!((r.store.packs_condemned, r.store.records_waiting), (1, 1));
    assert_eq!(keys_under(&p, "packs/").len(), packs_before + 1);
    // Past it, GC revokes the session and sweeps the orphan pack.
    repo.store().set_session_timing(SessionTiming {
        heartbeat: Duration::from_millis(10),
        lease: Duration::from_millis(50),
        ..Default::default()
    });
    std::thread::sleep(Duration::from_millis(100));
    let r = run_gc(&repo, &env.data, &GcOptions::default());
    assert_eq!(r.store.sessions_revoked.len(), 1);
    assert_eq!((r.store.records_swept, r.store.sweep.packs_deleted), (1, 1));
    assert_eq!(keys_under(&p, "packs/").len(), packs_before);
    // The revoked session leaves only its tombstone.
    let sessions = keys_under(&p, "sessions/");
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions[0].ends_with("/revoked"));
    assert_eq!(
        digest(&env.restore_fresh(&b0.backup_id, "restored")),
        digest(&env.module())
    );
}

#[test]
fn gc_refuses_a_store_that_belongs_to_another_cluster() {
    let env = Env::new(3);
    let repo = env.repo_for(&env.data);
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let ours = repo.store().config().store_id.clone();
    assert_eq!(repo::bound_store_id(&env.data).unwrap(), Some(ours));
    // Another cluster's store, reached through a misconfigured provider.
    let other_store = env.scratch("other-store");
    let other: Arc<dyn Provider> = Arc::new(provider::LocalProvider::new(&other_store));
    let other_repo = Repo::open(other, &repo::index_root(&env.data), true).unwrap();
    let listing = store_listing(&other_store);
    let e = gc::gc(&other_repo, &env.data, &keep_newest(0), &NoProgress).unwrap_err();
    assert!(matches!(e, Error::ForeignStore { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("--rebind-store"), "{e}");
    assert_eq!(store_listing(&other_store), listing);
    // Told explicitly, it runs and moves the binding.
    let opts = GcOptions {
        rebind_store: true,
        ..keep_newest(0)
    };
    gc::gc(&other_repo, &env.data, &opts, &NoProgress).unwrap();
    assert_eq!(
        repo::bound_store_id(&env.data).unwrap().as_deref(),
        Some(other_repo.store().config().store_id.as_str())
    );
}

#[test]
fn a_corrupt_manifest_stops_gc_before_it_deletes_any_pack() {
    let env = Env::new(3);
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let p = env.provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let bad = format!("manifests/{MODULE}/{MODULE}-0000000000000001-00");
    rt.block_on(p.put_if_absent(&bad, Bytes::from_static(b"RBKMANIF garbage")))
        .unwrap();
    let listing = store_listing(&env.store);
    let e = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("deletes nothing"), "{e}");
    assert_eq!(store_listing(&env.store), listing);
    // Once the bad backup is deleted explicitly, GC runs; the good backup is intact.
    gc::delete_backup(
        &repo,
        &BackupId::parse(bad.rsplit('/').next().unwrap()).unwrap(),
    )
    .unwrap();
    run_gc(&repo, &env.data, &GcOptions::default());
    assert_eq!(
        digest(&env.restore_fresh(&b.backup_id, "restored")),
        digest(&env.module())
    );
}

#[test]
fn a_damaged_gc_record_costs_deduplication_not_data_and_gc_removes_it() {
    let env = Env::new(3);
    let repo = env.repo_for(&env.data);
    let b0 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let p = env.provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(p.put_if_absent("gc/0000000000001-x/condemned", Bytes::from_static(b"{")))
        .unwrap();
    // The backup cannot know what is condemned, so it trusts no pack.
    let b1 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert_eq!(b1.stats.files_reused, 0);
    assert_eq!(b1.stats.new_chunks, b0.stats.new_chunks);
    let packs = pack_liveness(&p, &repo);
    let before: u64 = packs.iter().map(|x| x.1).sum();
    let r = run_gc(&repo, &env.data, &GcOptions::default());
    // The damaged record is gone; what is left is the record of this run's sweep, kept as
    // swept (docs/gc.md, "Index sync without listing every pack").
    let left = keys_under(&p, "gc/");
    assert!(
        !left.iter().any(|k| k.contains("0000000000001-x")),
        "{left:?}"
    );
    assert!(
        left.iter()
            .all(|k| k.ends_with("/swept") || left.contains(&k.replace("/condemned", "/swept"))),
        "{left:?}"
    );
    let after: u64 = pack_liveness(&p, &repo).iter().map(|x| x.1).sum();
    // b1 stored every chunk again. Chunks are packed in the order parallel workers finish,
    // so b1's pack usually differs from b0's and GC drops most of that second copy; when the
    // order happened to be the same, the pack (named by its content) is the same object and
    // there is nothing to drop.
    match packs.len() {
        1 => assert_eq!((r.store.records_swept, after), (0, before)),
        _ => {
            assert_eq!(r.store.records_swept, 1);
            assert!(after < before, "{after} >= {before}");
        }
    }
    assert!(
        after as f64 <= b0.stats.new_stored_bytes as f64 / 0.7,
        "{after} bytes for {} unique",
        b0.stats.new_stored_bytes
    );
    for b in [&b0, &b1] {
        assert_eq!(
            digest(&env.restore_fresh(&b.backup_id, &format!("r-{}", b.backup_id))),
            digest(&env.module())
        );
    }
}

#[test]
fn explicit_delete_removes_one_backup_and_unknown_ids_are_not_found() {
    let env = Env::new(3);
    let repo = env.repo_for(&env.data);
    let b0 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let b1 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    gc::delete_backup(&repo, &b0.backup_id).unwrap();
    assert_eq!(repo.backup_ids(MODULE).unwrap(), vec![b1.backup_id.clone()]);
    let e = gc::delete_backup(&repo, &b0.backup_id).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let listing = store_listing(&env.store);
    assert!(
        restore::restore(
            &env.repo_for(&env.scratch("x")),
            &env.scratch("x"),
            &b0.backup_id,
            restore::RestoreOptions::default(),
            &NoProgress
        )
        .is_err()
    );
    assert_eq!(store_listing(&env.store), listing);
}

#[test]
fn each_modules_own_options_decide_its_retention() {
    let env = Env::new(3);
    let other = "com.rbk.Other";
    let broken = "com.rbk.Broken";
    for m in [other, broken] {
        testdata::generate(
            &env.data,
            &testdata::GenSpec {
                module: m.into(),
                size_mib: 1,
                tasks: 1,
                ..Default::default()
            },
        )
        .unwrap();
    }
    let repo = env.repo_for(&env.data);
    let mut ids: BTreeMap<&str, Vec<BackupId>> = BTreeMap::new();
    for _ in 0..3 {
        for m in [MODULE, other, broken] {
            let b = backup::backup(&repo, &env.data, m, &NoProgress).unwrap();
            ids.entry(m).or_default().push(b.backup_id);
        }
    }
    let options =
        |m: &str| rbk_engine::layout::module_dir(&env.data, m).join("dynamic-options.json");
    std::fs::write(
        options(MODULE),
        br#"{"backup.max.age.hours": 0.5, "backup.min.backups.to.keep": 1}"#,
    )
    .unwrap();
    std::fs::write(options(broken), br#"{"backup.max.age.hours": "soon"}"#).unwrap();
    // `other` has left this cluster: no options here, so its backups are kept.
    std::fs::remove_dir_all(rbk_engine::layout::module_dir(&env.data, other)).unwrap();
    let opts = GcOptions {
        now_ms: Some(now_ms() + HOUR_MS),
        ..Default::default()
    };
    let r = run_gc(&repo, &env.data, &opts);
    assert_eq!(r.manifests_deleted, ids[MODULE][..2].to_vec());
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(r.warnings[0].contains(broken) && r.warnings[0].contains("soon"));
    assert_eq!(repo.backup_ids(other).unwrap(), ids[other]);
    assert_eq!(repo.backup_ids(broken).unwrap(), ids[broken]);
    assert_eq!(repo.backup_ids(MODULE).unwrap(), ids[MODULE][2..].to_vec());
}

/// The commit window: a GC revokes the session after the backup's last check before the
/// manifest and before the manifest is written; the process then dies right after writing
/// it, before its check after. Its manifest must count as never committed.
#[derive(Debug)]
struct RevokeThenDieAtManifest(Arc<dyn Provider>);

#[async_trait::async_trait]
impl Provider for RevokeThenDieAtManifest {
    fn describe(&self) -> String {
        self.0.describe()
    }
    async fn get(&self, key: &str, max_len: u64) -> rbk_chunkstore::Result<Bytes> {
        self.0.get(key, max_len).await
    }
    async fn get_range(&self, key: &str, offset: u64, len: u64) -> rbk_chunkstore::Result<Bytes> {
        self.0.get_range(key, offset, len).await
    }
    async fn put_if_absent(&self, key: &str, body: Bytes) -> rbk_chunkstore::Result<bool> {
        if !key.starts_with("manifests/") {
            return self.0.put_if_absent(key, body).await;
        }
        use rbk_chunkstore::session;
        for s in session::list_sessions(self.0.as_ref()).await?.values() {
            session::revoke(self.0.as_ref(), &s.id).await?;
        }
        // The store's clock must move on between the tombstone and the manifest.
        std::thread::sleep(std::time::Duration::from_millis(20));
        self.0.put_if_absent(key, body).await?;
        // Killed here: after the manifest, before the check that would remove it.
        std::process::exit(137);
    }
    async fn delete(&self, key: &str) -> rbk_chunkstore::Result<()> {
        self.0.delete(key).await
    }
    async fn exists(&self, key: &str) -> rbk_chunkstore::Result<bool> {
        self.0.exists(key).await
    }
    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> rbk_chunkstore::Result<ListPage> {
        self.0.list(prefix, page_token, page_size).await
    }
}

const COMMIT_WINDOW_CHILD: &str = "RBK_COMMIT_WINDOW_CHILD";

#[test]
fn a_manifest_written_after_its_session_was_revoked_was_never_committed() {
    // The child: back up through the provider that dies in the commit window.
    if let Some(dir) = std::env::var_os(COMMIT_WINDOW_CHILD) {
        let dir = std::path::PathBuf::from(dir);
        let p: Arc<dyn Provider> = Arc::new(RevokeThenDieAtManifest(Arc::new(
            rbk_chunkstore::provider::LocalProvider::new(dir.join("store")),
        )));
        let repo = Repo::open(p, &repo::index_root(&dir.join("data")), true).unwrap();
        let r = backup::backup(&repo, &dir.join("data"), MODULE, &NoProgress);
        panic!("the backup should have died in the commit window: {r:?}");
    }
    let env = Env::new(2);
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "gc::a_manifest_written_after_its_session_was_revoked_was_never_committed",
            "--nocapture",
        ])
        .env(COMMIT_WINDOW_CHILD, env.tmp.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let repo = env.repo_for(&env.data);
    // The manifest is there, over packs a GC may have swept...
    let ids = repo.backup_ids(MODULE).unwrap();
    assert_eq!(ids.len(), 1);
    let id = &ids[0];
    // ... but nothing may be restored from it, and verify says why.
    let target = env.scratch("restored");
    let e = restore::restore(
        &env.repo_for(&target),
        &target,
        id,
        Default::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(matches!(e, Error::Uncommitted { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("never committed"), "{e}");
    assert!(!target.join("modules").join(MODULE).exists());
    let v = verify::verify(&repo, &[], verify::ReadData::None, &NoProgress).unwrap();
    assert_eq!(v.damaged_backups(), vec![id]);
    assert!(v.problems[0].detail.contains("never committed"));
    // A dry run names it; a GC deletes it and counts it for no retention.
    let dry = gc::gc(
        &repo,
        &env.data,
        &GcOptions {
            dry_run: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(dry.manifests_uncommitted, vec![id.clone()]);
    assert_eq!(repo.backup_ids(MODULE).unwrap().len(), 1);
    let r = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(r.manifests_uncommitted, vec![id.clone()]);
    assert!(r.manifests_deleted.is_empty());
    assert_eq!(repo.backup_ids(MODULE).unwrap(), vec![]);
    // A backup committed normally is not affected, whatever GCs revoke later.
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let m = repo.load_manifest(&b.backup_id).unwrap();
    let sid = m.session.clone().unwrap();
    let p = env.provider();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(rbk_chunkstore::session::revoke(p.as_ref(), &sid))
        .unwrap();
    assert_eq!(
        repo.uncommitted(&m.backup_id, m.session.as_deref())
            .unwrap(),
        None
    );
    let r = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap();
    assert!(r.manifests_uncommitted.is_empty());
    assert_eq!(repo.backup_ids(MODULE).unwrap(), vec![b.backup_id.clone()]);
}
