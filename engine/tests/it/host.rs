//! Backups of running modules: every restore is consistent while writes run at full speed,
//! and a naive copy of the same live files is not (so the checks can fail).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rbk_chunkstore::provider::LocalProvider;
use rbk_engine::host::check::{CheckReport, check_module};
use rbk_engine::host::{Host, HostOptions, RunningModule, create_module};
use rbk_engine::layout::module_dir;
use rbk_engine::ops::backup::Source;
use rbk_engine::ops::{backup, restore};
use rbk_engine::{BackupId, ErrorKind, NoProgress, Repo, repo};

struct Live {
    tmp: tempfile::TempDir,
    data: PathBuf,
    host: Host,
    module: String,
}

fn opts() -> HostOptions {
    HostOptions {
        segment_bytes: 256 << 10,
        max_batch: 2_000,
    }
}

fn live(definition: &str, tasks: u32) -> Live {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let module = format!("com.rbk.Live{definition}");
    create_module(&data, &module, tasks, definition).unwrap();
    let host = Host::new(&data, opts()).unwrap();
    host.start(&module).unwrap();
    Live {
        tmp,
        data,
        host,
        module,
    }
}

impl Live {
    fn repo_for(&self, data_dir: &Path) -> Repo {
        let p = Arc::new(LocalProvider::new(self.tmp.path().join("store")));
        Repo::open(p, &repo::index_root(data_dir), true).unwrap()
    }

    fn module(&self) -> Arc<RunningModule> {
        self.host.get(&self.module).unwrap()
    }

    /// `threads` writers appending random records as fast as they can until the flag drops.
    fn drive(
        &self,
        threads: u64,
        seed: u64,
    ) -> (Arc<AtomicBool>, Vec<std::thread::JoinHandle<u64>>) {
        let run = Arc::new(AtomicBool::new(true));
        let handles = (0..threads)
            .map(|i| {
                let m = self.module();
                let run = run.clone();
                std::thread::spawn(move || {
                    let mut rng = StdRng::seed_from_u64(seed * 1000 + i);
                    let mut n = 0;
                    while run.load(Ordering::Relaxed) {
                        m.append_random(&mut rng).unwrap();
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        (run, handles)
    }

    fn restore_fresh(&self, id: &BackupId, name: &str) -> PathBuf {
        let target = self.tmp.path().join(name);
        std::fs::create_dir_all(&target).unwrap();
        let repo = self.repo_for(&target);
        restore::restore(
            &repo,
            &target,
            id,
            restore::RestoreOptions::default(),
            &NoProgress,
        )
        .unwrap();
        module_dir(&target, &id.module)
    }
}

fn stop(run: Arc<AtomicBool>, handles: Vec<std::thread::JoinHandle<u64>>) -> u64 {
    run.store(false, Ordering::Relaxed);
    handles.into_iter().map(|h| h.join().unwrap()).sum()
}

fn assert_consistent(r: &CheckReport, what: &str) {
    assert!(r.violations.is_empty(), "{what}: {:#?}", r.violations);
}

/// Takes `n` backups of the running module at random moments; returns their ids.
fn backups_while_running(l: &Live, n: usize, rng: &mut StdRng) -> Vec<BackupId> {
    let repo = l.repo_for(&l.data);
    let mut ids = Vec::new();
    for _ in 0..n {
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..40)));
        let snap = l.host.snapshot(&l.module).unwrap();
        let r = backup::backup_from_source(
            &repo,
            &l.data,
            &l.module,
            Source::Snapshot(&snap),
            &NoProgress,
        )
        .unwrap()
        .0;
        ids.push(r.backup_id);
    }
    ids
}

fn seeds() -> u64 {
    std::env::var("RBK_HOST_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
}

#[test]
fn bank_backups_taken_at_full_speed_restore_consistent() {
    for seed in 0..seeds() {
        let tasks = if seed % 2 == 0 { 4 } else { 8 };
        let l = live("bank", tasks);
        let mut rng = StdRng::seed_from_u64(seed);
        let (run, writers) = l.drive(2, seed);
        let ids = backups_while_running(&l, 10, &mut rng);
        let appended = stop(run, writers);
        let pauses = l.module().pause_stats();
        assert_eq!(pauses.snapshots, 10);
        assert!(pauses.max_held > std::time::Duration::ZERO && pauses.max_held <= pauses.max);
        assert!(appended > 1_000, "seed {seed}: only {appended} transfers");
        let mut last_commit = 0;
        for (i, id) in ids.iter().enumerate() {
            let dir = l.restore_fresh(id, &format!("r{i}"));
            let r = check_module(&dir).unwrap();
            assert_consistent(&r, &format!("seed {seed}, backup {i} ({id})"));
            // Absent when the backup came before the first microbatch committed (a loaded
            // machine): nothing processed yet, as commit 0.
            let commit = r.commit_ids.get("banking").copied().unwrap_or(0);
            assert!(
                commit >= last_commit,
                "seed {seed}: commit ids go back: {commit} < {last_commit}"
            );
            last_commit = commit;
        }
        assert!(last_commit > 0, "seed {seed}: no microbatch was captured");
        // The manifest records what the snapshot captured.
        let m = l
            .repo_for(&l.data)
            .load_manifest(ids.last().unwrap())
            .unwrap();
        assert!(
            m.tasks
                .iter()
                .all(|t| t.topologies[0].commit_id == Some(last_commit))
        );
        assert!(m.tasks.iter().all(|t| t.depots[0].end_offset > 0));
    }
}

#[test]
fn stream_backups_reflect_one_point_in_time() {
    for seed in 0..seeds() {
        let l = live("pageviews", 4);
        let mut rng = StdRng::seed_from_u64(seed);
        let (run, writers) = l.drive(2, seed);
        let ids = backups_while_running(&l, 5, &mut rng);
        stop(run, writers);
        let mut processed = 0;
        for (i, id) in ids.iter().enumerate() {
            let r = check_module(&l.restore_fresh(id, &format!("r{i}"))).unwrap();
            assert_consistent(&r, &format!("seed {seed}, backup {i}"));
            assert!(
                r.processed >= processed,
                "seed {seed}: backup {i} went back"
            );
            processed = r.processed;
        }
        assert!(
            processed > 0,
            "seed {seed}: no backup saw a processed record"
        );
    }
}

/// What a user without rbk would do: copy the live module directory, file by file.
fn naive_copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let mut entries: Vec<_> = std::fs::read_dir(from).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            naive_copy(&src, &dst);
        } else if e.file_name() != "LOCK" {
            // Files RocksDB deletes while we copy are simply missed, as with `cp -r`.
            let _ = std::fs::copy(&src, &dst);
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Copies the live module a few times while it runs; returns every violation found that
/// is not merely the (by design stale) progress.json.
fn naive_copy_violations(definition: &str) -> Vec<String> {
    let l = live(definition, 4);
    let (run, writers) = l.drive(2, 7);
    std::thread::sleep(Duration::from_millis(100));
    let mut found = Vec::new();
    for i in 0..5 {
        let copy = l.tmp.path().join(format!("copy{i}"));
        naive_copy(&module_dir(&l.data, &l.module), &copy);
        let r = check_module(&copy).unwrap();
        found.extend(
            r.violations
                .into_iter()
                .filter(|v| !v.contains("progress.json")),
        );
    }
    stop(run, writers);
    eprintln!("naive copies of {definition}: {found:#?}");
    found
}

#[test]
fn a_naive_copy_of_a_running_bank_module_is_inconsistent() {
    let v = naive_copy_violations("bank");
    assert!(
        v.iter().any(|v| v.contains("different commit ids")
            || v.contains("sum of all balances")
            || v.contains("replaying")
            || v.contains("ends at")
            || v.contains("cannot be opened")),
        "five naive copies of a running module all looked consistent: {v:#?}"
    );
}

#[test]
fn a_naive_copy_of_a_running_stream_module_is_not_one_point_in_time() {
    let v = naive_copy_violations("pageviews");
    assert!(
        v.iter()
            .any(|v| v.contains("not from one point in time") || v.contains("cannot be opened")),
        "five naive copies of a running stream module all looked consistent: {v:#?}"
    );
}

#[test]
fn restore_into_a_host_resumes_from_the_restored_progress() {
    let l = live("bank", 4);
    let (run, writers) = l.drive(1, 3);
    std::thread::sleep(Duration::from_millis(100));
    let repo = l.repo_for(&l.data);
    let snap = l.host.snapshot(&l.module).unwrap();
    let restored_commit = snap.commit_ids["banking"];
    let restored_ends = snap.depot_ends.clone();
    let id = backup::backup_from_source(
        &repo,
        &l.data,
        &l.module,
        Source::Snapshot(&snap),
        &NoProgress,
    )
    .unwrap()
    .0
    .backup_id;
    drop(snap);
    std::thread::sleep(Duration::from_millis(100));
    stop(run, writers);

    // Stopped, restored over the newer state, started from the restored one.
    l.host.stop(&l.module).unwrap();
    restore::restore(
        &repo,
        &l.data,
        &id,
        restore::RestoreOptions {
            force: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    let m = l.host.start(&l.module).unwrap();
    assert_eq!(m.progress()["banking"].commit_id, Some(restored_commit));
    let ends = m.depot_ends();
    assert_eq!(
        ends, restored_ends,
        "depots continue at the restored end offsets"
    );
    let mut rng = StdRng::seed_from_u64(9);
    let mut appended = Vec::new();
    for _ in 0..200 {
        appended.push(m.append_random(&mut rng).unwrap());
    }
    for (task, offset) in &appended {
        assert!(*offset >= restored_ends[&("transfers".to_string(), *task)]);
    }
    m.wait_caught_up(Duration::from_secs(30)).unwrap();
    assert!(m.progress()["banking"].commit_id.unwrap() > restored_commit);
    drop(m);
    l.host.stop(&l.module).unwrap();
    let r = check_module(&module_dir(&l.data, &l.module)).unwrap();
    assert_consistent(&r, "restored module after it ran on");
}

#[test]
fn a_file_backup_of_a_module_running_here_is_refused() {
    let l = live("bank", 2);
    let repo = l.repo_for(&l.data);
    let e = backup::backup(&repo, &l.data, &l.module, &NoProgress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("is running"), "{e}");
    // Once stopped, the files are a consistent state and back up as usual.
    l.host.stop(&l.module).unwrap();
    let id = backup::backup(&repo, &l.data, &l.module, &NoProgress)
        .unwrap()
        .backup_id;
    assert_consistent(
        &check_module(&l.restore_fresh(&id, "r")).unwrap(),
        "stopped module",
    );
}

#[test]
fn a_module_placed_on_several_workers_is_not_run_here() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let dir = create_module(&data, "com.rbk.Placed", 4, "bank").unwrap();
    let path = dir.join("module.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    v["workers"] = 2.into();
    v["threads"] = 4.into();
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
    let before: Vec<_> = std::fs::read_dir(dir.join("tasks")).unwrap().collect();
    let e = RunningModule::open(&data, "com.rbk.Placed", &opts()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(e.to_string().contains("placed on 2 workers"), "{e}");
    // Nothing was opened or created.
    assert_eq!(
        std::fs::read_dir(dir.join("tasks")).unwrap().count(),
        before.len()
    );
    assert!(!dir.join("tasks/0/pstates").exists());
}

#[test]
fn a_microbatch_half_committed_by_a_crash_is_redone_on_start() {
    let l = live("bank", 4);
    let m = l.module();
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..500 {
        m.append_random(&mut rng).unwrap();
    }
    m.wait_caught_up(Duration::from_secs(30)).unwrap();
    let before = m.progress()["banking"].commit_id.unwrap();
    drop(m);
    l.host.stop(&l.module).unwrap();

    // While stopped: 300 more transfers, and a copy of task 2's partition as it is now.
    let dir = module_dir(&l.data, &l.module);
    let def = rbk_engine::host::builtin::lookup("bank").unwrap();
    for _ in 0..300 {
        let a = def.random_append(&mut rng);
        let t = rbk_engine::host::definition::task_of(&a.key, 4);
        let mut w = rbk_engine::depot::DepotWriter::open(
            &dir.join(format!("tasks/{t}/depots/transfers")),
            256 << 10,
        )
        .unwrap();
        w.append(&a.payload).unwrap();
    }
    let part = dir.join("tasks/2/pstates/balances");
    let saved = l.tmp.path().join("saved-partition");
    naive_copy(&part, &saved);

    // On start the 300 records are one microbatch, committed to every partition.
    let m = l.host.start(&l.module).unwrap();
    m.wait_caught_up(Duration::from_secs(30)).unwrap();
    assert_eq!(m.progress()["banking"].commit_id, Some(before + 1));
    drop(m);
    l.host.stop(&l.module).unwrap();

    // A crash between partition writes leaves task 2 one commit behind: exactly the copy.
    std::fs::remove_dir_all(&part).unwrap();
    naive_copy(&saved, &part);
    let r = check_module(&dir).unwrap();
    assert!(
        r.violations
            .iter()
            .any(|v| v.contains("different commit ids")),
        "the emulated crash should be visible: {:?}",
        r.violations
    );

    // Starting again redoes the batch on task 2 only; the state is whole again.
    let m = l.host.start(&l.module).unwrap();
    assert_eq!(m.progress()["banking"].commit_id, Some(before + 1));
    drop(m);
    l.host.stop(&l.module).unwrap();
    let r = check_module(&dir).unwrap();
    assert_consistent(&r, "after the redo");
    assert_eq!(r.commit_ids["banking"], before + 1);
}

#[test]
fn trimming_keeps_unprocessed_records_and_trimmed_backups_stay_consistent() {
    let l = live("bank", 2);
    let m = l.module();
    let mut rng = StdRng::seed_from_u64(5);
    for _ in 0..20_000 {
        m.append_random(&mut rng).unwrap();
    }
    m.wait_caught_up(Duration::from_secs(30)).unwrap();
    let dir = module_dir(&l.data, &l.module).join("tasks/0/depots/transfers");
    let (_, end) = rbk_engine::depot::partition_bounds(&dir).unwrap();
    // Nothing beyond what the topology processed goes, whatever is asked.
    let deleted = m.trim_depot("transfers", u64::MAX).unwrap();
    assert!(deleted > 0, "several 256 KiB segments were full");
    let (start, end_after) = rbk_engine::depot::partition_bounds(&dir).unwrap();
    assert!(start > 0 && start <= end && end_after == end);
    assert!(m.trim_depot("nope", 1).is_err());
    drop(m);

    let repo = l.repo_for(&l.data);
    let snap = l.host.snapshot(&l.module).unwrap();
    let id = backup::backup_from_source(
        &repo,
        &l.data,
        &l.module,
        Source::Snapshot(&snap),
        &NoProgress,
    )
    .unwrap()
    .0
    .backup_id;
    let r = check_module(&l.restore_fresh(&id, "r")).unwrap();
    // Consistent in every way that can still be checked; only the replay needs the history.
    assert!(
        !r.violations.is_empty()
            && r.violations
                .iter()
                .all(|v| v.contains("was trimmed") || v.contains("replaying the depot gives")),
        "{:?}",
        r.violations
    );
    assert_eq!(
        repo.load_manifest(&id).unwrap().tasks[0].depots[0].start_offset,
        start
    );
}

#[test]
fn a_live_backup_reads_a_growing_segment_only_from_its_last_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let module = "com.rbk.LiveTail".to_string();
    create_module(&data, &module, 1, "bank").unwrap();
    // One large segment: what a live backup would otherwise read in full.
    let host = Host::new(
        &data,
        HostOptions {
            segment_bytes: 64 << 20,
            max_batch: 2_000,
        },
    )
    .unwrap();
    let m = host.start(&module).unwrap();
    let l = Live {
        tmp,
        data,
        host,
        module,
    };
    let mut rng = StdRng::seed_from_u64(4);
    for _ in 0..120_000 {
        m.append_random(&mut rng).unwrap();
    }
    let repo = l.repo_for(&l.data);
    let backup_live = |after_capture: &mut dyn FnMut()| {
        let snap = l.host.snapshot(&l.module).unwrap();
        after_capture();
        let caps: std::collections::BTreeMap<String, u64> = serde_json::from_slice(
            &std::fs::read(
                snap.root
                    .join(rbk_engine::layout::snapshot_dir::LENGTH_CAPS_FILE),
            )
            .unwrap(),
        )
        .unwrap();
        let r = backup::backup_from_source(
            &repo,
            &l.data,
            &l.module,
            Source::Snapshot(&snap),
            &NoProgress,
        )
        .unwrap()
        .0;
        (r, caps, snap.depot_ends.clone())
    };
    let (first, caps1, _) = backup_live(&mut || {});
    let segments: u64 = caps1.values().sum();
    assert_eq!(caps1.len(), 1, "{caps1:?}");
    assert!(segments > 8 << 20, "{segments} bytes in the newest segment");
    assert!(first.bytes_read >= segments);

    // Appends go on between the capture and the backup: the segment grows past what was
    // captured (well past the writer's buffer, so the file itself is longer).
    let (second, caps2, ends) = backup_live(&mut || {
        for _ in 0..20_000 {
            m.append_random(&mut rng).unwrap();
        }
    });
    // The segment's appended tail and its last chunk (≤ 2 MiB), plus the PState files the
    // flush wrote: far less than the segment.
    assert!(
        second.bytes_read < segments / 3,
        "read {} bytes with {segments} bytes of newest segments",
        second.bytes_read
    );

    // What was stored is the segments exactly as captured, not what was appended after.
    let manifest = repo.load_manifest(&second.backup_id).unwrap();
    for t in &manifest.tasks {
        let d = &t.depots[0];
        assert_eq!(d.end_offset, ends[&(d.name.clone(), t.task)]);
        let newest = d.files.last().unwrap();
        let key = format!("tasks/{}/depots/{}/{}", t.task, d.name, newest.path);
        assert_eq!(newest.size, caps2[&key], "{key}");
        let live_len = std::fs::metadata(module_dir(&l.data, &l.module).join(&key))
            .unwrap()
            .len();
        assert!(
            live_len > newest.size + (1 << 20),
            "{key} is {live_len} bytes live"
        );
    }
    let restored = l.restore_fresh(&second.backup_id, "restored");
    assert_consistent(&check_module(&restored).unwrap(), "second live backup");
    // Stopped before its directory goes (`Live` drops its temp dir first); left to the
    // drops, a host stopping over a deleted data dir with a backlog took 30 s.
    drop(m);
    l.host.stop(&l.module).unwrap();
}

/// Module B runs a topology reading module A's depot. A is restored, while B keeps running,
/// to a backup in which that depot ends at 107 — B had processed up to 205. B must go on
/// from 107: the records A appends next get offsets 107, 108, …
#[test]
fn a_running_reader_goes_on_from_the_restored_end_of_the_depot_it_reads() {
    use rbk_engine::host::builtin::relay;
    use rbk_engine::host::create_module_reading;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (a, b) = ("com.rbk.RelayA", "com.rbk.RelayB");
    create_module_reading(&data, a, 1, relay::ID, None).unwrap();
    create_module_reading(&data, b, 1, relay::ID, Some(a)).unwrap();
    let host = Host::new(&data, opts()).unwrap();
    let ma = host.start(a).unwrap();
    let mb = host.start(b).unwrap();
    let append = |m: &RunningModule, id: &str| {
        m.append(
            relay::DEPOT,
            id.as_bytes(),
            format!(r#"{{"id":"{id}"}}"#).as_bytes(),
        )
        .unwrap()
    };
    let processed = |m: &RunningModule| m.progress()[relay::TOPOLOGY].processed.clone();
    for i in 0..107 {
        append(&ma, &format!("old-{i}"));
    }
    mb.wait_caught_up(Duration::from_secs(30)).unwrap();
    let p = Arc::new(LocalProvider::new(tmp.path().join("store")));
    let repo = Repo::open(p, &repo::index_root(&data), true).unwrap();
    let at_107 = backup::backup_from_source(&repo, &data, a, Source::Running(&ma), &NoProgress)
        .unwrap()
        .0
        .backup_id;
    for i in 0..98 {
        append(&ma, &format!("lost-{i}"));
    }
    mb.wait_caught_up(Duration::from_secs(30)).unwrap();
    assert_eq!(processed(&mb), [205]);

    drop(ma);
    host.stop(a).unwrap();
    let r = restore::restore(
        &repo,
        &data,
        &at_107,
        restore::RestoreOptions {
            force: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    // B runs, so its offsets are in its PState, not in progress.json: B resets them itself.
    assert!(r.resets.is_empty(), "{:?}", r.resets);
    let ma = host.start(a).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while processed(&mb) != [107] {
        assert!(
            std::time::Instant::now() < deadline,
            "B is at {:?}",
            processed(&mb)
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let new: Vec<String> = (0..5).map(|i| format!("new-{i}")).collect();
    for (i, id) in new.iter().enumerate() {
        assert_eq!(append(&ma, id), (0, 107 + i as u64));
    }
    mb.wait_caught_up(Duration::from_secs(30)).unwrap();
    assert_eq!(processed(&mb), [112]);
    assert!(mb.failure().is_none());
    drop((ma, mb));
    host.shutdown().unwrap();

    // Each new record was applied exactly once; B's counts add up.
    let db = rocksdb::DB::open_for_read_only(
        &rocksdb::Options::default(),
        module_dir(&data, b).join("tasks/0/pstates/seen"),
        false,
    )
    .unwrap();
    let count = |key: &[u8]| -> u64 {
        db.get(key)
            .unwrap()
            .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap())
    };
    for id in &new {
        assert_eq!(count(&relay::seen_key(id)), 1, "{id}");
    }
    assert_eq!(count(relay::TOTAL), 205 + 5);
    drop(db);
    let report = check_module(&module_dir(&data, b)).unwrap();
    assert_consistent(&report, "the reader after the restore");
}
