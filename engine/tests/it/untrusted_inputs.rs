//! A data dir or store someone else can write: files swapped between scan and read, FIFOs,
//! oversized objects, long names, a damaged index, modes that must come back exactly,
//! manifests that verify must reject because restore would. Each test asserts the exact
//! outcome: the error kind and the object it names, and that nothing was committed or lost.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use crate::common::{Env, MODULE, digest};
use rbk_engine::manifest::pstate_dir;
use rbk_engine::ops::{backup, list, restore, verify};
use rbk_engine::testdata::PSTATE;
use rbk_engine::{Error, ErrorKind, NoProgress, Progress, Repo, repo};

/// Runs `f` once, when the backup has scanned the module and is about to read it.
struct AfterScan<F: Fn() + Send + Sync>(Mutex<Option<F>>);

impl<F: Fn() + Send + Sync> AfterScan<F> {
    fn new(f: F) -> Self {
        AfterScan(Mutex::new(Some(f)))
    }
}

impl<F: Fn() + Send + Sync> Progress for AfterScan<F> {
    fn begin(&self, phase: &str, _: u64) {
        if phase == "backup"
            && let Some(f) = self.0.lock().unwrap().take()
        {
            f();
        }
    }
}

/// Runs `f` on another thread and fails the test if it takes longer than a minute (a FIFO
/// opened the plain way blocks forever).
fn within_a_minute<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("hung: a FIFO was opened as if it were a file")
}

fn no_backups(repo: &Repo) {
    assert!(
        list::list(repo, MODULE, None, 100)
            .unwrap()
            .backups
            .is_empty(),
        "a backup was committed"
    );
}

fn identity(env: &Env) -> PathBuf {
    env.module().join(pstate_dir(0, PSTATE)).join("IDENTITY")
}

fn mkfifo(path: &Path) {
    let _ = std::fs::remove_file(path);
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        path,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
}

#[test]
fn a_file_swapped_for_a_symlink_after_the_scan_is_not_followed() {
    let env = Env::new(2);
    let secret = env.scratch("secret");
    std::fs::write(&secret, b"root only").unwrap();
    let target = identity(&env);
    let repo = env.repo_for(&env.data);
    let swap = AfterScan::new(|| {
        std::fs::remove_file(&target).unwrap();
        std::os::unix::fs::symlink(&secret, &target).unwrap();
    });
    let e = backup::backup(&repo, &env.data, MODULE, &swap).unwrap_err();
    assert!(
        matches!(e, Error::FileChanged { ref path, .. } if *path == target),
        "{e}"
    );
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(e.kind(), ErrorKind::Io);
    no_backups(&repo);
}

#[test]
fn a_file_replaced_truncated_or_rewritten_after_the_scan_is_never_committed() {
    let env = Env::new(2);
    let jar = env.module().join("module.jar");
    let original = std::fs::read(&jar).unwrap();
    type Change<'a> = Box<dyn Fn() + Send + Sync + 'a>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "another file was put in its place",
            Box::new(|| {
                let other = env.scratch("other.jar");
                std::fs::write(&other, &original).unwrap();
                std::fs::rename(&other, &jar).unwrap();
            }),
        ),
        (
            "it shrank from",
            Box::new(|| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&jar)
                    .unwrap()
                    .set_len(original.len() as u64 / 2)
                    .unwrap();
            }),
        ),
        (
            "it was modified (mtime moved)",
            Box::new(|| {
                // Same length, other bytes: only the times tell.
                std::thread::sleep(Duration::from_millis(20));
                std::fs::write(&jar, vec![7u8; original.len()]).unwrap();
            }),
        ),
        ("is a FIFO", Box::new(|| mkfifo(&jar))),
    ];
    for (says, change) in cases {
        std::fs::write(&jar, &original).unwrap();
        let repo = env.repo_for(&env.data);
        let e = backup::backup(&repo, &env.data, MODULE, &AfterScan::new(change)).unwrap_err();
        assert!(
            matches!(e, Error::FileChanged { ref path, .. } if *path == jar),
            "{says}: {e}"
        );
        assert!(e.to_string().contains(says), "{says}: {e}");
        no_backups(&repo);
    }
}

#[test]
fn fifos_in_the_data_dir_and_the_store_fail_instead_of_hanging() {
    let env = Env::new(2);
    let repo = env.repo_for(&env.data);
    let id = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;
    drop(repo);

    // module.json: the scan reads it first.
    let meta = env.module().join("module.json");
    let saved = std::fs::read(&meta).unwrap();
    mkfifo(&meta);
    let (data, provider) = (env.data.clone(), env.provider());
    let e = within_a_minute(move || {
        let repo = Repo::open(provider, &repo::index_root(&data), false).unwrap();
        backup::backup(&repo, &data, MODULE, &NoProgress).map(|_| ())
    })
    .unwrap_err();
    assert!(
        matches!(e, Error::Layout { ref path, .. } if *path == meta)
            && e.to_string().contains("FIFO"),
        "{e}"
    );
    std::fs::remove_file(&meta).unwrap();
    std::fs::write(&meta, saved).unwrap();

    // dynamic-options.json: GC reads retention from it. Broken options keep that module's
    // backups and say why; they never stop (or hang) the GC.
    let options = env.module().join("dynamic-options.json");
    mkfifo(&options);
    let (data, provider) = (env.data.clone(), env.provider());
    let report = within_a_minute(move || {
        let repo = Repo::open(provider, &repo::index_root(&data), false).unwrap();
        rbk_engine::ops::gc::gc(&repo, &data, &Default::default(), &NoProgress).unwrap()
    });
    assert!(report.manifests_deleted.is_empty());
    assert_eq!(report.warnings.len(), 1, "{:?}", report.warnings);
    let w = &report.warnings[0];
    assert!(
        w.contains("keeping every backup")
            && w.contains("dynamic-options.json")
            && w.contains("FIFO"),
        "{w}"
    );
    std::fs::remove_file(&options).unwrap();

    // A manifest in the store.
    let manifest = env.store.join(repo::manifest_key(&id));
    mkfifo(&manifest);
    let (data, provider, id2) = (env.data.clone(), env.provider(), id.clone());
    let e = within_a_minute(move || {
        let repo = Repo::open(provider, &repo::index_root(&data), false).unwrap();
        repo.load_manifest(&id2).map(|_| ())
    })
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("FIFO"), "{e}");

    // The store's config.
    mkfifo(&env.store.join("config"));
    let (data, provider) = (env.data.clone(), env.provider());
    let e =
        within_a_minute(move || Repo::open(provider, &repo::index_root(&data), false).map(|_| ()))
            .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("object `config`"), "{e}");
}

#[test]
fn oversized_objects_are_refused_before_they_are_read() {
    let env = Env::new(2);
    let repo = env.repo_for(&env.data);
    let id = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;
    // 2 GiB at the manifest's key (sparse: no disk used, but a whole read would take 2 GiB).
    let manifest = env.store.join(repo::manifest_key(&id));
    std::fs::OpenOptions::new()
        .write(true)
        .open(&manifest)
        .unwrap()
        .set_len(2 << 30)
        .unwrap();
    let e = repo.load_manifest(&id).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.to_string()
            .contains("it is 2147483648 bytes, more than the 268435456 bytes"),
        "{e}"
    );
    // verify reports it as that backup's problem, and goes on.
    let r = verify::verify(&repo, &[], verify::ReadData::None, &NoProgress).unwrap();
    assert_eq!(r.damaged_backups(), vec![&id]);
    drop(repo);
    // A config that never ends (well: 1 MiB).
    let config = env.store.join("config");
    let mut bytes = std::fs::read(&config).unwrap();
    bytes.resize(1 << 20, b' ');
    std::fs::write(&config, bytes).unwrap();
    let e = Repo::open(env.provider(), &repo::index_root(&env.data), false).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(
        e.to_string().contains("object `config`") && e.to_string().contains("65536"),
        "{e}"
    );
}

#[test]
fn a_module_name_too_long_for_a_restore_is_refused_before_the_store_is_touched() {
    let env = Env::new(1);
    let long = "m".repeat(236);
    let dir = env.data.join("modules").join(&long);
    std::fs::create_dir_all(&dir).unwrap();
    let e = backup::backup(&env.repo_for(&env.data), &env.data, &long, &NoProgress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string()
            .contains("is 236 bytes; rbk accepts at most 200"),
        "{e}"
    );
    // No manifest, no pack: only the empty store's config (created by `repo_for`).
    let objects: Vec<String> = crate::common::store_listing(&env.store)
        .into_keys()
        .collect();
    assert_eq!(objects, vec!["config".to_string()]);
    // Names of rbk's own staging dirs are reserved.
    let e = backup::backup(
        &env.repo_for(&env.data),
        &env.data,
        ".rbk-old-x-12345678",
        &NoProgress,
    )
    .unwrap_err();
    assert!(e.to_string().contains("reserved"), "{e}");
}

#[test]
fn a_damaged_index_is_set_aside_and_rebuilt_not_reported_busy() {
    let env = Env::new(2);
    let repo = env.repo_for(&env.data);
    let id = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;
    let index_dir = repo.store().index_for_tests().path().to_path_buf();
    drop(repo);
    // Flush the index into an SST (it may all be in the WAL still).
    {
        let db = rocksdb::DB::open(&rocksdb::Options::default(), &index_dir).unwrap();
        db.flush().unwrap();
    }
    // Damage a block of every SST of the index: its index block, just before the footer,
    // which RocksDB checks when it opens the table. The message then says "block checksum
    // mismatch", whose "block" once read as the lock being held.
    let mut damaged = 0;
    for e in std::fs::read_dir(&index_dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sst") {
            let mut b = std::fs::read(&p).unwrap();
            let end = b.len().saturating_sub(60);
            for x in &mut b[end.saturating_sub(40)..end] {
                *x ^= 0x5a;
            }
            std::fs::write(&p, b).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    let repo = Repo::open(env.provider(), &repo::index_root(&env.data), false)
        .expect("a damaged index is a lost cache, not an error");
    let aside: Vec<String> = std::fs::read_dir(index_dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.contains(".damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    // Rebuilt from the store: the backup restores.
    let r = verify::verify(
        &repo,
        std::slice::from_ref(&id),
        verify::ReadData::All,
        &NoProgress,
    )
    .unwrap();
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let restored = env.restore_fresh(&id, "restored");
    assert_eq!(digest(&restored), digest(&env.module()));
}

#[test]
fn modes_come_back_exactly_setid_stripped_and_store_objects_are_private() {
    let env = Env::new(1);
    let m = env.module();
    let set = |name: &str, mode: u32| {
        std::fs::set_permissions(m.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    };
    // Owners first: chown clears setuid/setgid.
    // Directories: modes, an empty one, and (as root) owners of files and directories.
    let pstate = pstate_dir(0, PSTATE);
    let empty = format!("{pstate}/archive");
    std::fs::create_dir(m.join(&empty)).unwrap();
    let root = rustix::process::geteuid().is_root();
    if root {
        std::os::unix::fs::chown(m.join("module.jar"), Some(1234), Some(5678)).unwrap();
        std::os::unix::fs::chown(m.join(&pstate), Some(4321), Some(8765)).unwrap();
    }
    set("config-overrides.json", 0o000);
    set("module.jar", 0o4755);
    set("dynamic-options.json", 0o2640);
    set(&empty, 0o500);
    set(&pstate, 0o750);
    set("", 0o710);
    let repo = env.repo_for(&env.data);
    let id = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;
    let mode_of = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
    for (keep_setid, jar, options) in [(false, 0o755, 0o640), (true, 0o4755, 0o2640)] {
        let target = env.scratch(&format!("restored-{keep_setid}"));
        restore::restore(
            &env.repo_for(&target),
            &target,
            &id,
            restore::RestoreOptions {
                keep_setid,
                ..Default::default()
            },
            &NoProgress,
        )
        .unwrap();
        let r = rbk_engine::layout::module_dir(&target, MODULE);
        assert_eq!(mode_of(&r.join("config-overrides.json")), 0o000);
        assert_eq!(mode_of(&r.join("module.jar")), jar);
        assert_eq!(mode_of(&r.join("dynamic-options.json")), options);
        assert_eq!(mode_of(&r.join(&empty)), 0o500);
        assert_eq!(std::fs::read_dir(r.join(&empty)).unwrap().count(), 0);
        assert_eq!(mode_of(&r.join(&pstate)), 0o750);
        assert_eq!(mode_of(&r), 0o710);
        let owner = |p: &Path| {
            let md = std::fs::metadata(p).unwrap();
            (md.uid(), md.gid())
        };
        if root {
            assert_eq!(owner(&r.join("module.jar")), (1234, 5678));
            assert_eq!(owner(&r.join(&pstate)), (4321, 8765));
        } else {
            let me = owner(&target);
            assert_eq!(owner(&r.join("module.jar")), me);
        }
    }
    // Every object 0600, every directory 0700, whatever the umask.
    let mut checked = 0;
    for e in walk(&env.store) {
        let md = std::fs::metadata(&e).unwrap();
        let want = if md.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(md.mode() & 0o777, want, "{}", e.display());
        checked += 1;
    }
    assert!(checked > 5);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[test]
fn verify_rejects_what_restore_would_reject() {
    let env = Env::new(1);
    let repo = env.repo_for(&env.data);
    let id = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;
    let original = repo.load_manifest(&id).unwrap();
    let key = repo::manifest_key(&id);
    let put = |m: &rbk_engine::manifest::Manifest| {
        std::fs::write(env.store.join(&key), m.encode()).unwrap();
    };
    // A file longer than its chunks: the manifest decodes, but neither may pass it.
    let mut longer = original.clone();
    longer.module_files[0].size += 1;
    let file = longer.module_files[0].path.clone();
    put(&longer);
    let r = verify::verify(
        &repo,
        std::slice::from_ref(&id),
        verify::ReadData::None,
        &NoProgress,
    )
    .unwrap();
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    assert_eq!(r.problems[0].file, file);
    assert!(
        r.problems[0].detail.contains("its chunks add up to"),
        "{:?}",
        r.problems
    );
    let target = env.scratch("t1");
    let e = restore::restore(
        &env.repo_for(&target),
        &target,
        &id,
        Default::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::CorruptManifest { key: ref k, ref detail } if *k == key && detail.contains(&format!("file `{file}`"))),
        "{e}"
    );
    // A path twice, and a file where a directory must be: the manifest does not decode.
    let mut twice = original.clone();
    twice.module_files.push(twice.module_files[0].clone());
    let mut file_for_dir = original.clone();
    let mut tasks_file = file_for_dir.module_files[0].clone();
    tasks_file.path = "tasks".into();
    file_for_dir.module_files.push(tasks_file);
    for (m, says) in [
        (twice, "is listed twice"),
        (
            file_for_dir,
            "`tasks` is listed as a file but must be a directory",
        ),
    ] {
        put(&m);
        let r = verify::verify(
            &repo,
            std::slice::from_ref(&id),
            verify::ReadData::None,
            &NoProgress,
        )
        .unwrap();
        assert_eq!(r.problems.len(), 1, "{says}: {:?}", r.problems);
        assert_eq!(r.problems[0].object, "manifest");
        assert!(r.problems[0].detail.contains(says), "{:?}", r.problems);
        let target = env.scratch("t2");
        let e = restore::restore(
            &env.repo_for(&target),
            &target,
            &id,
            Default::default(),
            &NoProgress,
        )
        .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains(says), "{e}");
        assert!(!target.join("modules").join(MODULE).exists());
    }
}

#[test]
fn times_outside_1970_to_2262_come_back_as_they_were() {
    let env = Env::new(1);
    let jar = env.module().join("module.jar");
    let before_1970 = std::time::UNIX_EPOCH - Duration::from_secs(86_400 * 365);
    std::fs::File::options()
        .write(true)
        .open(&jar)
        .unwrap()
        .set_modified(before_1970)
        .unwrap();
    let repo = env.repo_for(&env.data);
    let id = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;
    let restored = env.restore_fresh(&id, "restored");
    let mtime = std::fs::metadata(restored.join("module.jar"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(mtime, before_1970);
}

/// Writes a heartbeat of session `id` straight into the local store: `writer_ms` is the
/// writer's clock, `written` when the store (this file system) wrote it.
fn plant_heartbeat(store: &Path, id: &str, writer_ms: u64, written: std::time::SystemTime) {
    let hb = rbk_chunkstore::session::Heartbeat {
        lease_ms: None,
        kind: "backup".into(),
        label: MODULE.into(),
        host: "elsewhere".into(),
        pid: 4242,
        started_ms: writer_ms,
        heartbeat_ms: writer_ms,
    };
    let path = store.join(format!("sessions/{id}/hb-0000000000"));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_vec(&hb).unwrap()).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(written)
        .unwrap();
}

#[test]
fn session_liveness_is_judged_by_the_stores_clock_not_the_writers() {
    use rbk_engine::ops::gc::{self, GcOptions};
    let env = Env::new(1);
    let repo = env.repo_for(&env.data);
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let now = std::time::SystemTime::now();
    let now_ms = rbk_chunkstore::session::now_ms();
    let day = 86_400_000;
    // Dead for an hour, but its writer's clock ran a day fast: the old rule kept it alive
    // (and GC waiting on it) for a day.
    let fast = "1700000000000-00000000000000fa";
    plant_heartbeat(
        &env.store,
        fast,
        now_ms + day,
        now - Duration::from_secs(3600),
    );
    // Alive (written just now), but its writer's clock runs a day slow: the old rule revoked
    // it, failing a healthy backup.
    let slow = "1700000000000-00000000000000f5";
    plant_heartbeat(&env.store, slow, now_ms - day, now);

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
    let view = |r: &gc::GcReport, id: &str| {
        r.store
            .sessions
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .unwrap()
    };
    assert!(view(&dry, fast).revoke && view(&dry, fast).store_clock);
    assert!(view(&dry, fast).silent_ms.unwrap() >= 3_599_000);
    assert!(!view(&dry, slow).revoke);
    assert_eq!(view(&dry, slow).heartbeat.unwrap().host, "elsewhere");
    assert!(dry.store.sessions_revoked.is_empty());
    assert!(
        !env.store.join(format!("sessions/{fast}/revoked")).exists(),
        "a dry run wrote"
    );

    let r = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(r.store.sessions_revoked, vec![fast.to_string()]);
    assert!(env.store.join(format!("sessions/{fast}/revoked")).exists());
    assert!(!env.store.join(format!("sessions/{slow}/revoked")).exists());

    // The operator can revoke a session they know is dead; an unknown one is an error.
    let e = gc::gc(
        &repo,
        &env.data,
        &GcOptions {
            revoke: vec!["1700000000000-0000000000000000".into()],
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        e.to_string().contains("no running session of that id"),
        "{e}"
    );
    let r = gc::gc(
        &repo,
        &env.data,
        &GcOptions {
            revoke: vec![slow.to_string()],
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(r.store.sessions_revoked, vec![slow.to_string()]);
}

/// On its first progress report, writes the tombstone of every session in the store (as a
/// GC would) and waits for the heartbeat loop to see it; counts the bytes reported.
struct RevokeOnFirstAdvance {
    sessions: PathBuf,
    total: std::sync::atomic::AtomicU64,
    advanced: std::sync::atomic::AtomicU64,
}

impl Progress for RevokeOnFirstAdvance {
    fn begin(&self, phase: &str, total: u64) {
        if phase == "backup" {
            self.total.store(total, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn advance(&self, bytes: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        if self.advanced.fetch_add(bytes, SeqCst) == 0 {
            for e in std::fs::read_dir(&self.sessions).unwrap() {
                std::fs::write(e.unwrap().path().join("revoked"), b"{}").unwrap();
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

#[test]
fn a_revoked_backup_stops_uploading_within_a_heartbeat() {
    let env = Env::new(24);
    let repo = env.repo_for(&env.data);
    let mut timing = repo.store().session_timing();
    timing.heartbeat = Duration::from_millis(20);
    repo.store().set_session_timing(timing);
    let progress = RevokeOnFirstAdvance {
        sessions: env.store.join("sessions"),
        total: Default::default(),
        advanced: Default::default(),
    };
    let e = backup::backup(&repo, &env.data, MODULE, &progress).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Store(rbk_chunkstore::Error::SessionRevoked { .. })
        ),
        "{e}"
    );
    let (total, advanced) = (
        progress.total.load(std::sync::atomic::Ordering::SeqCst),
        progress.advanced.load(std::sync::atomic::Ordering::SeqCst),
    );
    assert!(total > 20 << 20, "{total}");
    assert!(
        advanced < total / 2,
        "read {advanced} of {total} bytes after being revoked"
    );
    no_backups(&repo);
}

#[test]
fn gc_collects_temporary_files_of_writes_that_died_after_a_day() {
    use rbk_engine::ops::gc::{self, GcOptions};
    let env = Env::new(1);
    let repo = env.repo_for(&env.data);
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let tmp = env.store.join(".tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let (old, fresh) = (tmp.join("00000000000000aa"), tmp.join("00000000000000bb"));
    for p in [&old, &fresh] {
        std::fs::write(p, b"half a pack").unwrap();
    }
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(std::time::SystemTime::now() - Duration::from_secs(2 * 86_400))
        .unwrap();
    let dry = GcOptions {
        dry_run: true,
        ..Default::default()
    };
    assert_eq!(
        gc::gc(&repo, &env.data, &dry, &NoProgress)
            .unwrap()
            .store
            .leftovers_deleted,
        0
    );
    assert!(old.exists());
    let r = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(r.store.leftovers_deleted, 1);
    assert!(!old.exists() && fresh.exists());
}

#[test]
fn old_tombstones_are_collected_and_a_session_without_heartbeats_knows_it_was_revoked() {
    use rbk_engine::ops::gc::{self, GcOptions};
    let env = Env::new(1);
    let repo = env.repo_for(&env.data);
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let tombstone = |id: &str, age: Duration| {
        let path = env.store.join(format!("sessions/{id}/revoked"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{}").unwrap();
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::now() - age)
            .unwrap();
        path
    };
    let old = tombstone(
        "1600000000000-00000000000000aa",
        Duration::from_secs(31 * 86_400),
    );
    let recent = tombstone(
        "1700000000000-00000000000000bb",
        Duration::from_secs(29 * 86_400),
    );
    let r = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(r.store.tombstones_deleted, 1);
    assert!(!old.exists() && recent.exists());

    // With its tombstone gone, a session still learns it was revoked: a revoking GC deleted
    // its heartbeats, and nothing else does.
    let mut timing = repo.store().session_timing();
    timing.heartbeat = Duration::from_millis(20);
    repo.store().set_session_timing(timing);
    let s = repo.store().begin_session("backup", MODULE).unwrap();
    s.check_alive().unwrap();
    let dir = env.store.join("sessions").join(s.id());
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    // The heartbeat loop notices by itself, within a heartbeat...
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        s.check_not_revoked().is_err(),
        "the heartbeat loop did not notice"
    );
    let _ = s.end();
    // ... and the commit check does without it.
    let s = repo.store().begin_session("backup", MODULE).unwrap();
    let dir = env.store.join("sessions").join(s.id());
    for e in std::fs::read_dir(&dir).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }
    let e = s.check_alive().unwrap_err();
    assert!(
        matches!(e, rbk_chunkstore::Error::SessionRevoked { .. }),
        "{e}"
    );
    let _ = s.end();
}

#[test]
fn a_length_mismatch_names_the_packs_whose_trailers_gave_the_lengths() {
    let env = Env::new(1);
    let repo = env.repo_for(&env.data);
    let id = backup::backup(&repo, &env.data, MODULE, &NoProgress)
        .unwrap()
        .backup_id;
    let m = repo.load_manifest(&id).unwrap();
    let f = m
        .module_files
        .iter()
        .find(|f| f.path == "config-overrides.json")
        .unwrap()
        .clone();
    let chunk = f.chunks[0];
    let pack = repo.store().index_for_tests().locations(&chunk).unwrap()[0].pack;
    let index_dir = repo.store().index_for_tests().path().to_path_buf();
    drop(repo);
    // Damage the index's record of the chunk's length (as a damaged trailer would).
    {
        let db = rocksdb::DB::open(&rocksdb::Options::default(), &index_dir).unwrap();
        let mut key = vec![b'c'];
        key.extend_from_slice(&chunk.0);
        key.extend_from_slice(&pack.0);
        let mut v = db.get(&key).unwrap().expect("index entry");
        let raw = u32::from_le_bytes(v[12..16].try_into().unwrap()) + 1;
        v[12..16].copy_from_slice(&raw.to_le_bytes());
        db.put(&key, v).unwrap();
    }
    let repo = env.repo_for(&env.data);
    let target = env.scratch("t");
    let e = restore::restore(&repo, &target, &id, Default::default(), &NoProgress).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("file `config-overrides.json`") && msg.contains(&pack.to_string()),
        "{msg}"
    );
    assert!(!target.join("modules").join(MODULE).exists());
}
