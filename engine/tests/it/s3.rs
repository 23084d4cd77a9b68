//! Backups on a real S3 server: Garage on loopback, one node or a 3-node cluster, with and
//! without injected faults.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::common::{Env, MODULE, digest};
use rbk_chunkstore::provider::{
    FaultyProvider, Provider, RetryPolicy, RetryingProvider, S3Options,
};
use rbk_engine::ops::verify::{self, ReadData};
use rbk_engine::ops::{backup, info, list};
use rbk_engine::{NoProgress, Progress, testdata};
use rbk_testsupport::Garage;

#[test]
fn backup_list_info_and_restore_on_garage_including_a_fresh_machine() {
    let garage = Garage::start();
    let env = Env::with_provider(24, garage.provider("prod/rbk"));
    let repo = env.repo_for(&env.data);
    let first = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    testdata::advance(&env.data, MODULE, 5).unwrap();
    let second = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(second.stats.new_stored_bytes < first.stats.new_stored_bytes / 4);

    let page = list::list(&repo, MODULE, None, 10).unwrap();
    assert_eq!(
        page.backups,
        [second.backup_id.clone(), first.backup_id.clone()]
    );
    let i = info::info(&repo, &second.backup_id).unwrap();
    assert_eq!(i.logical_bytes, second.stats.logical_bytes);
    assert_eq!(i.files, second.stats.files);
    drop(repo);

    // A fresh machine: new data dir, no index, only the bucket.
    let restored = env.restore_fresh(&second.backup_id, "fresh-machine");
    assert_eq!(digest(&restored), digest(&env.module()));
    let report = verify::verify(
        &env.repo_for(&env.scratch("verifier")),
        &[],
        ReadData::All,
        &NoProgress,
    )
    .unwrap();
    assert_eq!((report.backups, report.problems.len()), (2, 0));
}

/// 5% of calls fail before reaching S3 and 5% reach it but lose their answer.
#[test]
fn a_backup_completes_and_restores_with_a_tenth_of_s3_calls_failing() {
    let garage = Garage::start();
    let faulty = Arc::new(
        FaultyProvider::new(Arc::new(garage.s3_provider("flaky", S3Options::default())))
            .seeded(42)
            .fail_fraction(0.05)
            .drop_fraction(0.05),
    );
    let flaky: Arc<dyn Provider> = Arc::new(RetryingProvider::new(
        faulty.clone(),
        RetryPolicy {
            max_attempts: 10,
            ..RetryPolicy::default()
        },
    ));
    let env = Env::with_provider(32, flaky);
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let restored = env.restore_fresh(&b.backup_id, "restored");
    assert_eq!(digest(&restored), digest(&env.module()));
    let (calls, injected) = (faulty.calls(), faulty.injected());
    // A 32 MiB module is about 40 calls (8 MiB packs, merged ranged reads).
    assert!(
        calls >= 30 && injected >= 3,
        "{injected} faults in {calls} calls"
    );
    assert!(
        injected * 100 >= calls * 5,
        "{injected} faults in {calls} calls"
    );
    // Exactly one backup, even though manifest writes may have lost their answers.
    assert_eq!(repo.backup_ids(MODULE).unwrap(), [b.backup_id]);
}

/// Kills a node once the backup has read `after_bytes`.
struct KillNodeMidway<'a> {
    garage: &'a std::sync::Mutex<Garage>,
    read: AtomicU64,
    after_bytes: u64,
}

impl Progress for KillNodeMidway<'_> {
    fn advance(&self, bytes: u64) {
        let before = self.read.fetch_add(bytes, Ordering::SeqCst);
        if before < self.after_bytes && before + bytes >= self.after_bytes {
            self.garage.lock().unwrap().kill_node(2);
        }
    }
}

#[test]
fn a_three_node_cluster_losing_a_node_mid_backup_still_takes_and_restores_backups() {
    let garage = Garage::start_cluster(3);
    let provider = garage.provider("cluster");
    let garage = std::sync::Mutex::new(garage);
    let env = Env::with_provider(40, provider);
    let repo = env.repo_for(&env.data);
    let killer = KillNodeMidway {
        garage: &garage,
        read: AtomicU64::new(0),
        after_bytes: 10 << 20,
    };
    // With replication factor 3, two live nodes are a quorum: the backup is expected to
    // complete; should it fail, it must fail cleanly and a retry must complete.
    let b = match backup::backup(&repo, &env.data, MODULE, &killer) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("backup failed while the node died ({e}); retrying");
            assert!(repo.backup_ids(MODULE).unwrap().is_empty());
            backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap()
        }
    };
    assert!(
        killer.read.load(Ordering::SeqCst) >= 10 << 20,
        "the node was never killed"
    );
    assert_eq!(
        repo.backup_ids(MODULE).unwrap(),
        std::slice::from_ref(&b.backup_id)
    );
    drop(repo);
    let restored = env.restore_fresh(&b.backup_id, "restored");
    assert_eq!(digest(&restored), digest(&env.module()));

    // And once the node is back, a second backup and restore work too.
    garage.lock().unwrap().restart_node(2);
    testdata::advance(&env.data, MODULE, 5).unwrap();
    let repo = env.repo_for(&env.data);
    let b2 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let restored = env.restore_fresh(&b2.backup_id, "restored-2");
    assert_eq!(digest(&restored), digest(&env.module()));
}
