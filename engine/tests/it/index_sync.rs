//! A backup's fixed cost does not grow with the store (docs/gc.md, "Index sync without
//! listing every pack"): with an index that listed every pack recently, a backup session
//! lists none, and learns of deleted packs from the swept GC records that version 4 stores
//! keep. It must never rely on a pack a GC deleted.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rbk_chunkstore::provider::{Layer, ListPage, LocalProvider, Provider, list_all};
use rbk_chunkstore::session::SessionTiming;

use crate::common::{Env, MODULE, digest};
use rbk_engine::ops::backup;
use rbk_engine::ops::gc::{self, GcOptions};
use rbk_engine::{NoProgress, Repo, repo, testdata};

/// Counts listings of `packs/`.
#[derive(Debug)]
struct CountsPackListings {
    inner: Arc<dyn Provider>,
    listings: Arc<AtomicU64>,
}

#[async_trait]
impl Layer for CountsPackListings {
    fn inner(&self) -> &dyn Provider {
        self.inner.as_ref()
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: usize,
    ) -> rbk_chunkstore::Result<ListPage> {
        if prefix.starts_with("packs/") {
            self.listings.fetch_add(1, Ordering::SeqCst);
        }
        self.inner.list(prefix, page_token, page_size).await
    }
}

/// A repo on `env`'s local store for data dir `data`, counting its pack listings.
fn counted(env: &Env, data: &Path) -> (Repo, Arc<AtomicU64>) {
    let listings = Arc::new(AtomicU64::new(0));
    let p: Arc<dyn Provider> = Arc::new(CountsPackListings {
        inner: Arc::new(LocalProvider::new(&env.store)),
        listings: listings.clone(),
    });
    let repo = Repo::open(p, &repo::index_root(data), true).unwrap();
    repo.store().set_session_timing(as_if_large());
    (repo, listings)
}

/// Timing as for a store too large to list every pack at each backup (our test stores
/// hold a few packs).
fn as_if_large() -> SessionTiming {
    SessionTiming {
        list_every_pack_below: 0,
        ..Default::default()
    }
}

#[test]
fn a_backup_with_a_recently_synced_index_lists_no_pack() {
    let env = Env::new(4);
    let (repo, listings) = counted(&env, &env.data);
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let first = listings.load(Ordering::SeqCst);
    assert!(first >= 1, "the first backup lists every pack");

    testdata::advance(&env.data, MODULE, 5).unwrap();
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert_eq!(
        listings.load(Ordering::SeqCst),
        first,
        "no listing of packs/"
    );

    // Once the last full listing is older than `full_sync_every`, the next one lists again.
    repo.store().set_session_timing(SessionTiming {
        full_sync_every: Duration::ZERO,
        ..as_if_large()
    });
    testdata::advance(&env.data, MODULE, 5).unwrap();
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(listings.load(Ordering::SeqCst) > first);
}

#[test]
fn a_pack_a_gc_deleted_after_the_last_full_listing_is_never_relied_on() {
    let env = Env::new(4);
    // Machine X backs up; its index knows every pack from then on.
    let x = env.repo_for(&env.data);
    x.store().set_session_timing(as_if_large());
    let first = backup::backup(&x, &env.data, MODULE, &NoProgress).unwrap();

    // Machine Y deletes that backup and collects: every pack is swept.
    let y_dir = env.scratch("y");
    std::fs::create_dir_all(&y_dir).unwrap();
    let y = env.repo_for(&y_dir);
    gc::delete_backup(&y, &first.backup_id).unwrap();
    let report = gc::gc(&y, &y_dir, &GcOptions::default(), &NoProgress).unwrap();
    assert!(report.store.sweep.packs_deleted > 0, "{report:?}");
    assert_eq!(y.store().pack_totals().unwrap().0, 0);
    drop(y);

    // X backs up the same module again without listing packs: it must store every chunk
    // again, not point at the deleted packs.
    let again = backup::backup(&x, &env.data, MODULE, &NoProgress).unwrap();
    assert!(again.stats.new_chunks > 0, "{again:?}");
    drop(x);
    let restored = env.restore_fresh(&again.backup_id, "fresh");
    assert_eq!(digest(&restored), digest(&env.module()));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let gc_keys: Vec<String> = rt
        .block_on(list_all(&LocalProvider::new(&env.store), "gc/"))
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert!(
        gc_keys.iter().any(|k| k.ends_with("/swept"))
            && gc_keys.iter().any(|k| k.ends_with("/condemned")),
        "the swept record is kept: {gc_keys:?}"
    );
}

#[test]
fn swept_records_are_kept_for_their_time_then_collected() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    gc::delete_backup(&repo, &b.backup_id).unwrap();
    let timing = SessionTiming {
        lease: Duration::ZERO,
        full_sync_every: Duration::ZERO,
        swept_keep: Duration::from_secs(2),
        ..Default::default()
    };
    repo.store().set_session_timing(timing);
    let gc_keys = || {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(list_all(&LocalProvider::new(&env.store), "gc/"))
            .unwrap()
            .len()
    };
    let swept = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(swept.store.records_swept, 1);
    assert_eq!(gc_keys(), 2, "condemned and swept parts are kept");
    let soon = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(soon.store.swept_records_deleted, 0);
    std::thread::sleep(Duration::from_millis(2200));
    let later = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(later.store.swept_records_deleted, 1);
    assert_eq!(gc_keys(), 0);
}

#[test]
fn a_small_store_is_listed_at_every_backup() {
    let env = Env::new(4);
    let listings = Arc::new(AtomicU64::new(0));
    let p: Arc<dyn Provider> = Arc::new(CountsPackListings {
        inner: Arc::new(LocalProvider::new(&env.store)),
        listings: listings.clone(),
    });
    let repo = Repo::open(p, &repo::index_root(&env.data), true).unwrap();
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let first = listings.load(Ordering::SeqCst);
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(listings.load(Ordering::SeqCst) > first);
}

#[test]
fn a_version_3_store_still_lists_every_pack_and_deletes_swept_records() {
    let env = Env::new(4);
    std::fs::create_dir_all(&env.store).unwrap();
    let mut config = rbk_chunkstore::StoreConfig::new_random();
    config.version = 3;
    std::fs::write(
        env.store.join("config"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let (repo, listings) = counted(&env, &env.data);
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let first = listings.load(Ordering::SeqCst);
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(listings.load(Ordering::SeqCst) > first);
    for id in repo.backup_ids(MODULE).unwrap() {
        gc::delete_backup(&repo, &id).unwrap();
    }
    let r = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(r.store.records_swept, 1);
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(
        rt.block_on(list_all(&LocalProvider::new(&env.store), "gc/"))
            .unwrap()
            .is_empty()
    );
}
