//! End-to-end backup and restore of generated modules on a local directory store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::common::{Env, MODULE, digest, store_listing};
use rbk_chunkstore::keys::pack as pack_key;
use rbk_chunkstore::provider::{self, FaultyProvider, Op, Provider};
use rbk_engine::layout::module_dir;
use rbk_engine::manifest::pstate_dir;
use rbk_engine::ops::{backup, info, list, restore};
use rbk_engine::testdata::{self, PSTATE};
use rbk_engine::{BackupId, Error, ErrorKind, NoProgress, Repo, repo};

/// Every key/value of a RocksDB directory, in key order.
type KeyValues = Vec<(Box<[u8]>, Box<[u8]>)>;

fn rocks_contents(dir: &Path) -> KeyValues {
    let db = rocksdb::DB::open_for_read_only(&rocksdb::Options::default(), dir, false).unwrap();
    db.iterator(rocksdb::IteratorMode::Start)
        .map(Result::unwrap)
        .collect()
}

#[test]
fn round_trip_is_byte_identical_and_pstates_open() {
    let env = Env::new(12);
    let before = digest(&env.module());
    let repo = env.repo_for(&env.data);
    let r = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert_eq!(r.stats.files as usize, before.len());
    assert_eq!(r.stats.files_reused, 0);
    assert!(r.stats.new_stored_bytes > 0 && r.stats.new_stored_bytes < r.stats.logical_bytes);

    let target = env.scratch("restored");
    let rr = restore::restore(
        &env.repo_for(&target),
        &target,
        &r.backup_id,
        restore::RestoreOptions::default(),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(rr.files as usize, before.len());
    let restored = module_dir(&target, MODULE);
    assert_eq!(digest(&restored), before);
    for task in 0..4 {
        let rel = pstate_dir(task, PSTATE);
        let original = rocks_contents(&env.module().join(&rel));
        assert!(original.len() > 100);
        assert_eq!(
            rocks_contents(&restored.join(&rel)),
            original,
            "task {task}"
        );
    }
    // No staging or old dirs are left beside the module.
    let names: Vec<String> = std::fs::read_dir(target.join("modules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![MODULE.to_string()]);

    // info describes what the backup holds.
    let i = info::info(&repo, &r.backup_id).unwrap();
    assert_eq!(i.manifest.task_ids(), [0, 1, 2, 3]);
    assert_eq!(i.files as usize, before.len());
    let m = repo.load_manifest(&r.backup_id).unwrap();
    for t in &m.tasks {
        let d = &t.depots[0];
        assert_eq!(d.start_offset, 0);
        let progress: serde_json::Value = serde_json::from_slice(
            &std::fs::read(
                env.module()
                    .join(format!("tasks/{}/topologies/banking/progress.json", t.task)),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            d.end_offset,
            progress["processed"]["*transfers"].as_u64().unwrap()
        );
        assert_eq!(t.topologies[0].commit_id, Some(0));
    }
}

#[test]
fn incremental_backup_uploads_only_new_chunks_and_both_restore() {
    let env = Env::new(16);
    let repo = env.repo_for(&env.data);
    let first_digest = digest(&env.module());
    // Files modified within a second before a backup are re-read by the next one (the
    // racy-mtime guard); let the generated files age past that.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let b1 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();

    // Unchanged module: nothing is read again and nothing new is stored.
    let same = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert_eq!(same.stats.files_reused, same.stats.files);
    assert_eq!(same.stats.new_chunks, 0);
    assert_eq!(same.packs_written, 0);

    testdata::advance(&env.data, MODULE, 5).unwrap();
    let second_digest = digest(&env.module());
    let b2 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(b2.stats.files_reused > 0, "{:?}", b2.stats);
    // Bytes uploaded are a small fraction of the module: what the 5% generation changed.
    assert!(
        b2.stats.new_stored_bytes * 10 < b2.stats.logical_bytes,
        "{:?}",
        b2.stats
    );
    assert!(
        b2.stats.new_stored_bytes * 4 < b1.stats.new_stored_bytes,
        "second backup stored {} bytes, first {}",
        b2.stats.new_stored_bytes,
        b1.stats.new_stored_bytes
    );
    assert!(b1.backup_id < same.backup_id && same.backup_id < b2.backup_id);

    for (id, want) in [
        (&b1.backup_id, &first_digest),
        (&b2.backup_id, &second_digest),
    ] {
        let restored = env.restore_fresh(id, &format!("r-{}", id.millis));
        assert_eq!(&digest(&restored), want);
    }
}

#[test]
fn losing_the_local_index_costs_a_rebuild_not_data() {
    let env = Env::new(6);
    let b = backup::backup(&env.repo_for(&env.data), &env.data, MODULE, &NoProgress).unwrap();
    let want = digest(&env.module());
    let index_dir = repo::index_root(&env.data);
    std::fs::remove_dir_all(&index_dir).unwrap();

    let repo = env.repo_for(&env.data);
    let page = list::list(&repo, MODULE, None, 10).unwrap();
    assert_eq!(page.backups, vec![b.backup_id.clone()]);
    let i = info::info(&repo, &b.backup_id).unwrap();
    assert!(i.stored_bytes.unwrap() > 0);
    // The index was rebuilt from pack trailers.
    let packs = repo.store().index_for_tests().packs().unwrap();
    let listed = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(provider::list_all(env.provider().as_ref(), "packs/"))
        .unwrap();
    assert_eq!(packs.len(), listed.len());
    assert!(!packs.is_empty());

    let restored = env.restore_fresh(&b.backup_id, "fresh");
    assert_eq!(digest(&restored), want);
}

#[test]
fn list_is_newest_first_and_paginated() {
    let env = Env::new(2);
    let repo = env.repo_for(&env.data);
    let ids: Vec<BackupId> = (0..5)
        .map(|_| {
            backup::backup(&repo, &env.data, MODULE, &NoProgress)
                .unwrap()
                .backup_id
        })
        .collect();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let page = list::list(&repo, MODULE, token.as_deref(), 2).unwrap();
        assert!(page.backups.len() <= 2);
        seen.extend(page.backups);
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    assert_eq!(
        list::list(&repo, "com.other.Module", None, 10)
            .unwrap()
            .backups,
        vec![]
    );
}

/// Runs `f`, which must fail with the given kind, and checks nothing changed in the store or
/// the data dir's modules.
fn fails_cleanly(env: &Env, kind: ErrorKind, f: impl FnOnce() -> Result<(), Error>) -> Error {
    let store_before = store_listing(&env.store);
    let data_before = if env.data.join("modules").exists() {
        digest(&env.data.join("modules"))
    } else {
        BTreeMap::new()
    };
    let err = f().unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert_eq!(
        store_listing(&env.store),
        store_before,
        "store changed after: {err}"
    );
    let data_after = if env.data.join("modules").exists() {
        digest(&env.data.join("modules"))
    } else {
        BTreeMap::new()
    };
    assert_eq!(data_after, data_before, "data dir changed after: {err}");
    err
}

#[test]
fn bad_input_gets_a_clear_error_and_changes_nothing() {
    let env = Env::new(3);
    let repo = env.repo_for(&env.data);
    let good = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;

    let e = fails_cleanly(&env, ErrorKind::NotFound, || {
        backup::backup(&repo, &env.data, "com.nope.Missing", &NoProgress).map(|_| ())
    });
    assert!(matches!(e, Error::ModuleNotFound { .. }), "{e}");
    assert!(e.to_string().contains("com.nope.Missing"));

    let missing = BackupId::parse(&format!("{MODULE}-0000000000000001-00")).unwrap();
    let e = fails_cleanly(&env, ErrorKind::NotFound, || {
        restore::restore(
            &repo,
            &env.scratch("x"),
            &missing,
            Default::default(),
            &NoProgress,
        )
        .map(|_| ())
    });
    assert!(matches!(e, Error::BackupNotFound { .. }), "{e}");

    let e = BackupId::parse("not-an-id").unwrap_err();
    assert!(matches!(e, Error::InvalidBackupId { .. }), "{e}");
    assert_eq!(e.kind(), ErrorKind::InvalidInput);

    let e = fails_cleanly(&env, ErrorKind::NotFound, || {
        backup::backup(&repo, &env.scratch("no-such-dir"), MODULE, &NoProgress).map(|_| ())
    });
    assert!(matches!(e, Error::DataDirMissing { .. }), "{e}");

    // Layout violations, each named by its path: a stray file among task dirs, a task id
    // beyond module.json's count, a segment with a bad name, a symlink inside a PState.
    let violations = [
        env.module().join("tasks/notatask"),
        env.module().join("tasks/4"),
        env.module().join("tasks/0/depots/transfers/garbage.seg"),
        env.module().join("tasks/0/pstates/balances/escape"),
    ];
    for bad in &violations {
        if bad.ends_with("tasks/4") {
            std::fs::create_dir(bad).unwrap();
        } else if bad.ends_with("escape") {
            std::os::unix::fs::symlink("/etc/passwd", bad).unwrap();
        } else {
            std::fs::write(bad, b"x").unwrap();
        }
        let e = fails_cleanly(&env, ErrorKind::InvalidInput, || {
            backup::backup(&repo, &env.data, MODULE, &NoProgress).map(|_| ())
        });
        assert!(
            matches!(&e, Error::Layout { path, .. } if path == bad),
            "{}: {e}",
            bad.display()
        );
        if bad.is_dir() && !bad.is_symlink() {
            std::fs::remove_dir(bad).unwrap();
        } else {
            std::fs::remove_file(bad).unwrap();
        }
    }

    // Restore over a non-empty module is refused; with force it replaces it.
    let e = fails_cleanly(&env, ErrorKind::InvalidInput, || {
        restore::restore(&repo, &env.data, &good, Default::default(), &NoProgress).map(|_| ())
    });
    assert!(matches!(e, Error::TargetNotEmpty { .. }), "{e}");
    let want = digest(&env.module());
    std::fs::write(env.module().join("module.jar"), b"changed").unwrap();
    restore::restore(
        &repo,
        &env.data,
        &good,
        restore::RestoreOptions {
            force: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(digest(&env.module()), want);
}

#[test]
fn corrupt_manifests_and_chunks_are_detected_and_the_target_is_untouched() {
    let env = Env::new(3);
    let repo = env.repo_for(&env.data);
    let id = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;
    let mkey = repo::manifest_key(&id);
    let mpath = env.store.join(&mkey);
    let good = std::fs::read(&mpath).unwrap();
    let want = digest(&env.module());

    // A restore over the existing module with --force must leave it intact when it fails.
    let attempt = |env: &Env| {
        restore::restore(
            &repo,
            &env.data,
            &id,
            restore::RestoreOptions {
                force: true,
                ..Default::default()
            },
            &NoProgress,
        )
        .map(|_| ())
    };

    std::fs::write(&mpath, &good[..good.len() / 2]).unwrap();
    let e = fails_cleanly(&env, ErrorKind::Corrupt, || attempt(&env));
    assert!(
        matches!(&e, Error::CorruptManifest { key, .. } if key == &mkey),
        "{e}"
    );
    let mut flipped = good.clone();
    flipped[good.len() / 2] ^= 0x01;
    std::fs::write(&mpath, &flipped).unwrap();
    let e = fails_cleanly(&env, ErrorKind::Corrupt, || attempt(&env));
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    std::fs::write(&mpath, &good).unwrap();

    // Flip a byte inside a chunk blob of some pack: the restore fails with Corrupt.
    let m = repo.load_manifest(&id).unwrap();
    let jar = m
        .module_files
        .iter()
        .find(|f| f.path == "module.jar")
        .unwrap();
    let loc = repo.store().locate(&jar.chunks[0]).unwrap();
    let ppath = env.store.join(pack_key(&loc.pack));
    let mut pack = std::fs::read(&ppath).unwrap();
    pack[loc.offset as usize + loc.stored_len as usize / 2] ^= 0x40;
    std::fs::write(&ppath, &pack).unwrap();
    let e = fails_cleanly(&env, ErrorKind::Corrupt, || attempt(&env));
    assert!(e.to_string().contains(&jar.chunks[0].to_hex()), "{e}");
    assert_eq!(digest(&env.module()), want);
}

#[test]
fn a_change_in_the_same_mtime_tick_as_the_previous_backup_is_not_missed() {
    let env = Env::new(2);
    let repo = env.repo_for(&env.data);
    // Rewrite the jar just before the backup reads it...
    let jar = env.module().join("module.jar");
    std::fs::write(&jar, vec![1u8; 4096]).unwrap();
    let mtime = std::fs::metadata(&jar).unwrap().modified().unwrap();
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    // ...then change it again within the same mtime tick: same size, same mtime, same inode.
    let mut f = std::fs::OpenOptions::new().write(true).open(&jar).unwrap();
    std::io::Write::write_all(&mut f, &[2u8; 4096]).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let b2 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let restored = env.restore_fresh(&b2.backup_id, "r");
    assert_eq!(
        std::fs::read(restored.join("module.jar")).unwrap(),
        vec![2u8; 4096]
    );
}

/// Wraps a real provider and fails every pack upload after the first `allow`.
#[test]
fn a_failed_pack_upload_commits_no_manifest_and_a_retry_succeeds() {
    let env = Env::new(60);
    for allow in [0, 1] {
        let allow = std::sync::atomic::AtomicUsize::new(allow);
        let failing: Arc<dyn Provider> = Arc::new(FaultyProvider::new(env.provider()).fail_when(
            move |op, key| {
                op == Op::Put
                    && key.starts_with("packs/")
                    && allow
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                        .is_err()
            },
        ));
        let repo = Repo::open(failing, &repo::index_root(&env.data), true).unwrap();
        let e = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.to_string().contains("injected fault"), "{e}");
        assert!(
            list::list(&repo, MODULE, None, 10)
                .unwrap()
                .backups
                .is_empty(),
            "a manifest was committed over missing packs"
        );
    }
    // The retry, on a healthy provider, stores what is missing and restores byte-identically.
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let restored = env.restore_fresh(&b.backup_id, "after-retry");
    assert_eq!(digest(&restored), digest(&env.module()));
}

/// A module whose depot partitions are one multi-chunk segment each, backed up once with
/// nothing left in the racy window (so the next backup reuses every unchanged file).
fn one_segment_module() -> (Env, Repo, BackupId) {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    testdata::generate(
        &data,
        &testdata::GenSpec {
            size_mib: 24,
            tasks: 4,
            segment_bytes: 64 << 20,
            ..Default::default()
        },
    )
    .unwrap();
    let env = Env {
        store: tmp.path().join("store"),
        data,
        tmp,
        remote: None,
    };
    std::thread::sleep(std::time::Duration::from_millis(1_100));
    let repo = env.repo_for(&env.data);
    let id = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;
    (env, repo, id)
}

fn segment_of_task0(env: &Env) -> std::path::PathBuf {
    let dir = env.module().join("tasks/0/depots/transfers");
    let mut segs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    segs.sort();
    assert_eq!(segs.len(), 1);
    segs.pop().unwrap()
}

fn depot_end(repo: &Repo, id: &BackupId) -> u64 {
    repo.load_manifest(id).unwrap().tasks[0].depots[0].end_offset
}

#[test]
fn a_grown_segment_is_read_only_from_its_last_kept_chunk() {
    let (env, repo, first) = one_segment_module();
    let seg = segment_of_task0(&env);
    let before = std::fs::metadata(&seg).unwrap().len();
    let mut w = rbk_engine::depot::DepotWriter::open(seg.parent().unwrap(), 64 << 20).unwrap();
    for i in 0..1_000u32 {
        w.append(format!("appended transfer {i} with some padding to look real").as_bytes())
            .unwrap();
    }
    w.sync().unwrap();
    drop(w);
    let after = std::fs::metadata(&seg).unwrap().len();
    let appended = after - before;

    let r = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(r.bytes_read >= appended, "{} < {appended}", r.bytes_read);
    // At most the last chunk (2 MiB max) is read again, never the whole segment.
    assert!(
        r.bytes_read < appended + (2 << 20) && r.bytes_read < after,
        "read {} of {after}",
        r.bytes_read
    );
    assert_eq!(
        depot_end(&repo, &r.backup_id),
        depot_end(&repo, &first) + 1_000
    );
    let restored = env.restore_fresh(&r.backup_id, "restored");
    assert_eq!(digest(&restored), digest(&env.module()));
}

#[test]
fn a_grown_segment_whose_prefix_changed_is_read_in_full() {
    let (env, repo, first) = one_segment_module();
    let seg = segment_of_task0(&env);
    // Same inode, grown, but its first bytes rewritten: the kept chunks no longer match.
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes[9] ^= 0xff;
    let mut f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &bytes).unwrap();
    std::io::Write::write_all(&mut f, &rbk_engine::depot::frame(b"one more")).unwrap();
    drop(f);
    let size = std::fs::metadata(&seg).unwrap().len();
    let r = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(r.bytes_read >= size, "read {} of {size}", r.bytes_read);
    // The first record's CRC now fails: readers stop there.
    assert_eq!(depot_end(&repo, &r.backup_id), 0);
    assert!(depot_end(&repo, &first) > 0);
    assert_eq!(
        digest(&env.restore_fresh(&r.backup_id, "restored")),
        digest(&env.module())
    );
}

#[test]
fn a_torn_tail_before_an_append_falls_back_to_counting_the_whole_segment() {
    let (env, repo, first) = one_segment_module();
    let seg = segment_of_task0(&env);
    let size = std::fs::metadata(&seg).unwrap().len();
    // Half a frame, as a crashed writer leaves it, then whole frames after it.
    let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
    std::io::Write::write_all(&mut f, &rbk_engine::depot::frame(b"torn record")[..7]).unwrap();
    std::io::Write::write_all(&mut f, &rbk_engine::depot::frame(b"after the tear")).unwrap();
    drop(f);
    let r = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(
        r.bytes_read >= size,
        "counting must restart from the segment's start"
    );
    assert_eq!(depot_end(&repo, &r.backup_id), depot_end(&repo, &first));
    assert_eq!(
        digest(&env.restore_fresh(&r.backup_id, "restored")),
        digest(&env.module())
    );
}

#[test]
fn depot_segments_are_stored_with_their_crcs_elided_and_restore_exactly() {
    let env = Env::new(12);
    let before = digest(&env.module());
    // The same module into a store made by an older rbk (format version 1), which keeps
    // every chunk plain so that version can still read it, and into a current one.
    let old_store = env.scratch("v1-store");
    std::fs::create_dir_all(&old_store).unwrap();
    let mut config = rbk_chunkstore::StoreConfig::new_random();
    config.version = 1;
    config.immutable_chunk_size = 0;
    std::fs::write(
        old_store.join("config"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let old_repo = Repo::open(
        Arc::new(rbk_chunkstore::provider::LocalProvider::new(&old_store)),
        &repo::index_root(&env.scratch("v1-index")),
        false,
    )
    .unwrap();
    let plain = backup::backup(&old_repo, &env.data, MODULE, &NoProgress).unwrap();
    let repo = env.repo_for(&env.data);
    let elided = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let (p, e) = (plain.stats.new_stored_bytes, elided.stats.new_stored_bytes);
    // Depot segments are about half of the module's compressed bytes; elision takes ~18% off
    // them (docs/performance.md).
    assert!((e as f64) < 0.95 * p as f64, "{e} vs {p} bytes stored");
    assert_eq!(
        digest(&env.restore_fresh(&elided.backup_id, "restored")),
        before
    );
}

#[test]
fn a_restore_of_thousands_of_small_files_keeps_few_descriptors_open() {
    use rand::{RngCore, SeedableRng};
    let env = Env::new(4);
    // A PState directory may hold any files; 3000 small distinct ones.
    let dir = env.module().join(pstate_dir(0, PSTATE)).join("archive");
    std::fs::create_dir_all(&dir).unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for i in 0..3000 {
        let mut body = vec![0u8; 1000 + (i % 7) * 500];
        rng.fill_bytes(&mut body);
        std::fs::write(dir.join(format!("{i:05}.blob")), body).unwrap();
    }
    let before = digest(&env.module());
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    drop(repo);
    // Far fewer descriptors than files: a restore that kept every written file open until a
    // finisher fsynced it would run out (EMFILE). nextest runs each test in its own process,
    // so the limit applies to this test only.
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    setrlimit(
        Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(200),
            maximum: limit.maximum,
        },
    )
    .unwrap();
    assert_eq!(digest(&env.restore_fresh(&b.backup_id, "restored")), before);
}

/// Files that only grow (depot segments, WALs) are cut every 512 KiB, the store's append
/// chunk size: a backup after they grew keeps every chunk but the last, and ends with the
/// very chunks a first backup of the grown file would cut, so replicas and re-reads dedup.
#[test]
fn appended_files_are_cut_every_512_kib_and_keep_their_chunks_as_they_grow() {
    const APPEND_CHUNK: usize = 512 << 10;
    let env = Env::new(8);
    let repo = env.repo_for(&env.data);
    let first = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    testdata::advance(&env.data, MODULE, 20).unwrap();
    let second = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let before: BTreeMap<String, _> = repo
        .load_manifest(&first.backup_id)
        .unwrap()
        .files()
        .into_iter()
        .map(|(p, f)| (p, f.clone()))
        .collect();
    let after = repo.load_manifest(&second.backup_id).unwrap();
    let (mut appended, mut grown, mut multi) = (0, 0, 0);
    for (path, f) in after.files() {
        let name = path.rsplit('/').next().unwrap();
        if !(name.ends_with(".seg") || (path.contains("/pstates/") && name.ends_with(".log"))) {
            continue;
        }
        appended += 1;
        let bytes = std::fs::read(env.module().join(&path)).unwrap();
        let fresh: Vec<rbk_chunkstore::ChunkId> = bytes
            .chunks(APPEND_CHUNK)
            .map(rbk_chunkstore::ChunkId::of)
            .collect();
        assert_eq!(f.chunks, fresh, "{path}");
        multi += (f.chunks.len() > 1) as usize;
        if let Some(old) = before.get(&path).filter(|old| old.size < f.size) {
            grown += 1;
            let kept = &old.chunks[..old.chunks.len() - 1];
            assert_eq!(&f.chunks[..kept.len()], kept, "{path}");
        }
    }
    assert!(
        appended > 0 && multi > 0 && grown > 0,
        "{appended} {multi} {grown}"
    );
    assert_eq!(
        digest(&env.restore_fresh(&second.backup_id, "restored")),
        digest(&env.module())
    );
}

/// SSTs are cut every 8 MiB (the store's immutable chunk size), everything else by content;
/// a module with a large SST restores byte for byte.
#[test]
fn ssts_are_stored_in_fixed_size_chunks_and_restore_exactly() {
    use rand::{RngCore, SeedableRng};
    let env = Env::new(4);
    let pstate = env.module().join(pstate_dir(1, PSTATE));
    let mut sst = vec![0u8; (19 << 20) + 12345];
    rand::rngs::StdRng::seed_from_u64(21).fill_bytes(&mut sst);
    std::fs::write(pstate.join("999999.sst"), &sst).unwrap();
    // A non-SST file of a PState is cut by content, at most 2 MiB a chunk.
    std::fs::write(pstate.join("999998.blob"), &sst[..9 << 20]).unwrap();
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let m = repo.load_manifest(&b.backup_id).unwrap();
    let files: BTreeMap<String, _> = m.files().into_iter().collect();
    let rel = |name: &str| format!("{}/{name}", pstate_dir(1, PSTATE));
    assert_eq!(files[&rel("999999.sst")].chunks.len(), 3);
    assert!(files[&rel("999998.blob")].chunks.len() >= 5);
    for (path, f) in &files {
        if path.ends_with(".sst") {
            assert_eq!(f.chunks.len() as u64, f.size.div_ceil(8 << 20), "{path}");
        }
    }
    assert_eq!(
        digest(&env.restore_fresh(&b.backup_id, "restored")),
        digest(&env.module())
    );
}
