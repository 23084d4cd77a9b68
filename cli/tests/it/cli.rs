//! The `rbk` binary: both command forms, output, config file, and exit codes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) const MODULE: &str = "com.rbk.BankModule";

pub(crate) struct Env {
    tmp: tempfile::TempDir,
}

impl Env {
    /// A generated module in `<tmp>/data` and an `rbk.yaml` pointing at it and `<tmp>/store`.
    pub(crate) fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("rbk.yaml"),
            "data.dir: data\nbackup.provider: \"fs store\"\n",
        )
        .unwrap();
        let env = Env { tmp };
        let out = env.rbk(&["testdata", "generate", "--size-mib", "3", "--tasks", "4"]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        env
    }

    pub(crate) fn dir(&self) -> &Path {
        self.tmp.path()
    }

    /// Runs rbk in the env's directory, so `./rbk.yaml` is picked up.
    pub(crate) fn rbk(&self, args: &[&str]) -> Output {
        self.rbk_with(args, &[])
    }

    /// [`Env::rbk`] with these environment variables (and no RBK_* from the caller's).
    fn rbk_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbk"));
        for var in [
            "RBK_CONFIG",
            "RBK_DATA_DIR",
            "RBK_PROVIDER",
            "RBK_MIRROR",
            "RBK_LOG",
        ] {
            cmd.env_remove(var);
        }
        cmd.envs(vars.iter().copied())
            .current_dir(self.dir())
            .args(args)
            .arg("--quiet")
            .output()
            .unwrap()
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.rbk(args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "rbk {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn fails(&self, args: &[&str], code: i32, needle: &str) {
        let out = self.rbk(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "rbk {args:?}: {stderr}");
        assert!(
            stderr.contains(needle),
            "rbk {args:?}: expected {needle:?} in {stderr}"
        );
    }

    fn module(&self) -> PathBuf {
        self.dir().join("data/modules").join(MODULE)
    }
}

fn digest(dir: &Path) -> std::collections::BTreeMap<String, [u8; 32]> {
    rbk_engine::testdata::tree_digest(dir).unwrap()
}

#[test]
fn rama_and_short_forms_back_up_list_info_and_restore() {
    let env = Env::new();
    let id1 = env
        .ok(&["backup", "--action", "backup", "--module", MODULE])
        .trim()
        .to_string();
    let id2 = env.ok(&["backup", "--module", MODULE]).trim().to_string();
    assert!(
        id1.starts_with(&format!("{MODULE}-")) && id1.len() == MODULE.len() + 20,
        "{id1}"
    );
    assert!(id1 < id2);

    // list: newest first, one backup per line starting with its id, paginated.
    let all = env.ok(&["list", "--module", MODULE]);
    let lines: Vec<&str> = all.lines().collect();
    assert_eq!(lines.len(), 2);
    assert!(
        lines[0].starts_with(&id2) && lines[1].starts_with(&id1),
        "{all}"
    );
    let page1 = env.ok(&[
        "backup",
        "--action",
        "list",
        "--module",
        MODULE,
        "--pageSize",
        "1",
    ]);
    assert!(page1.lines().next().unwrap().starts_with(&id2));
    let token = page1
        .lines()
        .last()
        .unwrap()
        .strip_prefix("next page: --pageToken ")
        .unwrap();
    let page2 = env.ok(&[
        "backup",
        "--action",
        "list",
        "--module",
        MODULE,
        "--pageSize",
        "1",
        "--pageToken",
        token,
    ]);
    assert_eq!(page2.lines().collect::<Vec<_>>().len(), 1);
    assert!(page2.starts_with(&id1), "{page2}");

    // info, text and JSON.
    let text = env.ok(&["info", "--backupId", &id2]);
    assert!(
        text.contains("depot    *transfers") && text.contains("pstate   $$balances"),
        "{text}"
    );
    let j: serde_json::Value = serde_json::from_str(&env.ok(&[
        "backup",
        "--action",
        "info",
        "--backupId",
        &id2,
        "--json",
    ]))
    .unwrap();
    assert_eq!(j["backup_id"], id2.as_str());
    assert_eq!(j["task_entries"].as_array().unwrap().len(), 4);
    assert!(j["stored_bytes"].as_u64().unwrap() > 0);

    // restore into a fresh data dir with no index, via a flag overriding the config.
    let want = digest(&env.module());
    env.ok(&["restore", "--backupId", &id1, "--data-dir", "fresh"]);
    assert_eq!(digest(&env.dir().join("fresh/modules").join(MODULE)), want);

    // Restore over the live module: refused without --force, works with it.
    env.fails(&["restore", "--backupId", &id1], 2, "--force");
    std::fs::write(env.module().join("module.jar"), b"changed").unwrap();
    env.ok(&[
        "backup",
        "--action",
        "restore",
        "--backupId",
        &id1,
        "--force",
    ]);
    assert_eq!(digest(&env.module()), want);
}

#[test]
fn json_backup_output_and_embedded_default_store() {
    let env = Env::new();
    std::fs::remove_file(env.dir().join("rbk.yaml")).unwrap();
    // No config at all: data dir ./data, store ./data-backups beside it.
    let out = env.rbk(&["backup", "--module", MODULE, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(j["new_chunks"].as_u64().unwrap() > 0);
    assert!(env.dir().join("data-backups/config").is_file());
    // ... and the operator is told, once.
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "rbk: no rbk.yaml here and no --provider or RBK_PROVIDER: using the default store `fs ./data-backups` beside the data dir\n"
    );
    let listed = env.ok(&["list", "--module", MODULE]);
    assert!(listed.starts_with(j["backup_id"].as_str().unwrap()));
}

#[test]
fn exit_codes_distinguish_usage_not_found_and_corruption() {
    let env = Env::new();
    let id = env.ok(&["backup", "--module", MODULE]).trim().to_string();
    env.fails(
        &["backup", "--module", "com.nope.Missing"],
        3,
        "com.nope.Missing",
    );
    env.fails(&["info", "--backupId", "garbage"], 2, "is not a backup id");
    env.fails(
        &[
            "info",
            "--backupId",
            &format!("{MODULE}-0000000000000001-00"),
        ],
        3,
        "not found",
    );
    env.fails(&["backup", "--action", "restore"], 2, "--backupId");
    env.fails(&["frobnicate"], 2, "unrecognized subcommand");
    env.fails(
        &["backup", "--module", MODULE, "--data-dir", "nowhere"],
        3,
        "nowhere",
    );
    env.fails(
        &["list", "--module", MODULE, "--config", "missing.yaml"],
        2,
        "missing.yaml",
    );
    env.fails(
        &["list", "--module", MODULE, "--provider", "ftp://x"],
        2,
        "ftp://x",
    );

    let key = format!("manifests/{MODULE}/{id}");
    let path = env.dir().join("store").join(key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40] ^= 0xFF;
    std::fs::write(&path, &bytes).unwrap();
    env.fails(&["info", "--backupId", &id], 4, "checksum mismatch");
    env.fails(
        &["restore", "--backupId", &id, "--data-dir", "fresh"],
        4,
        "checksum mismatch",
    );
    assert!(!env.dir().join("fresh/modules").join(MODULE).exists());
}

#[test]
fn a_second_process_on_the_same_index_waits_for_it_or_gets_a_clear_error() {
    let env = Env::new();
    env.ok(&["backup", "--module", MODULE]);
    // Hold the data dir's index open from this process, as a running backup would.
    let store_id = {
        let cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(env.dir().join("store/config")).unwrap())
                .unwrap();
        cfg["store_id"].as_str().unwrap().to_string()
    };
    let index = env.dir().join("data/.rbk/index").join(store_id);
    let held = rbk_chunkstore::RocksChunkIndex::open(&index).unwrap();
    env.fails(
        &["backup", "--module", MODULE, "--index-wait", "0"],
        1,
        "is in use by another rbk process",
    );

    // By default a command waits for the other process (e.g. a round of `rbk serve`).
    let started = std::time::Instant::now();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(1500));
        drop(held);
    });
    let out = env.rbk(&["list", "--module", MODULE]);
    releaser.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("waiting up to 60 s"), "{stderr}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(1500));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 1);
}

#[test]
fn gc_and_delete_in_both_forms() {
    let env = Env::new();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(env.ok(&["backup", "--module", MODULE]).trim().to_string());
        env.ok(&["testdata", "advance", "--percent", "30"]);
    }
    let store_files = |env: &Env| digest(&env.dir().join("store"));
    let before = store_files(&env);

    // Dry run: reports the two expired backups, changes nothing.
    let dry: serde_json::Value = serde_json::from_str(&env.ok(&[
        "gc",
        "--dry-run",
        "--max-age-hours",
        "0",
        "--min-backups-to-keep",
        "1",
        "--json",
    ]))
    .unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["manifests_deleted"], serde_json::json!(ids[..2]));
    assert!(dry["packs_condemned"].as_u64().unwrap() > 0);
    assert_eq!(store_files(&env), before);

    // The Rama form does it.
    let text = env.ok(&[
        "backup",
        "--action",
        "gc",
        "--max-age-hours",
        "0",
        "--min-backups-to-keep",
        "1",
    ]);
    assert!(
        text.starts_with("deleted 2 backup(s) by retention policy; 1 retained"),
        "{text}"
    );
    assert!(text.contains(&format!("  {}", ids[0])), "{text}");
    assert!(text.contains("swept 1 record(s)"), "{text}");
    let listed = env.ok(&["list", "--module", MODULE]);
    assert_eq!(listed.lines().count(), 1);
    assert!(listed.starts_with(&ids[2]));

    // delete: one backup, by id; unknown ids are not found; gc takes no --module.
    env.fails(&["delete", "--backupId", &ids[0]], 3, "not found");
    env.fails(&["gc", "--module", MODULE], 2, "whole store");
    env.fails(&["gc", "--repack-threshold", "1.5"], 2, "between 0 and 1");
    let out = env.ok(&["backup", "--action", "delete", "--backupId", &ids[2]]);
    assert!(out.contains("run `rbk gc`"), "{out}");
    assert_eq!(env.ok(&["list", "--module", MODULE]), "");
    let j: serde_json::Value = serde_json::from_str(&env.ok(&["gc", "--json"])).unwrap();
    assert_eq!(j["manifests_retained"], 0);
    assert_eq!(j["packs_total"], j["packs_deleted"]);
    assert!(j["bytes_freed"].as_u64().unwrap() > 0);
}

#[test]
fn gc_refuses_another_clusters_store_unless_rebound() {
    let env = Env::new();
    env.ok(&["backup", "--module", MODULE]);
    // A second store, created by a backup that is pointed at it by mistake.
    env.ok(&["backup", "--module", MODULE, "--provider", "fs other"]);
    let before = digest(&env.dir().join("other"));
    env.fails(
        &["gc", "--provider", "fs other", "--max-age-hours", "0"],
        2,
        "--rebind-store",
    );
    assert_eq!(digest(&env.dir().join("other")), before);
    env.ok(&["gc", "--provider", "fs other", "--rebind-store"]);
    // Now the original store is the foreign one.
    env.fails(&["gc"], 2, "two clusters may be sharing one store");
}

/// `rbk backup` and `rbk gc` (from another data dir, as another machine would) run at once
/// and are killed with SIGKILL at random points. Afterwards a GC that declares the killed
/// sessions dead finishes every pending record, every backup in the store restores
/// byte-identically to the state it was taken from, and a new backup succeeds.
#[test]
fn backups_and_gcs_killed_at_random_points_lose_nothing() {
    use rand::{Rng, SeedableRng};
    use std::process::Stdio;
    use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

    let env = Env::new();
    std::fs::create_dir_all(env.dir().join("gcdata")).unwrap();
    let now_ms = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let spawn = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rbk"))
            .current_dir(env.dir())
            .args(args)
            .arg("--quiet")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let gc_args = [
        "gc",
        "--data-dir",
        "gcdata",
        "--max-age-hours",
        "0",
        "--min-backups-to-keep",
        "2",
    ];
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261125);
    // (from ms, to ms, digest) of every backup attempt; the first creates the store.
    let from = now_ms();
    env.ok(&["backup", "--module", MODULE]);
    let mut attempts = vec![(from, now_ms(), digest(&env.module()))];
    let (mut killed, mut completed) = (0, 0);
    for round in 0..20 {
        if round % 2 == 1 {
            env.ok(&["testdata", "advance", "--percent", "20"]);
        }
        let state = digest(&env.module());
        let from = now_ms();
        let mut backup = spawn(&["backup", "--module", MODULE]);
        let mut gc = rng.gen_bool(0.6).then(|| spawn(&gc_args));
        let deadline = Instant::now() + Duration::from_millis(rng.gen_range(1..60));
        let kill_backup = rng.gen_bool(0.6);
        let kill_gc = rng.gen_bool(0.5);
        while Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        if kill_backup && backup.try_wait().unwrap().is_none() {
            backup.kill().unwrap();
            killed += 1;
        }
        if let Some(g) = gc.as_mut()
            && kill_gc
            && g.try_wait().unwrap().is_none()
        {
            g.kill().unwrap();
            killed += 1;
        }
        let out = backup.wait_with_output().unwrap();
        completed += out.status.success() as u32;
        assert!(
            out.status.success() || out.status.code().is_none(),
            "a backup that was not killed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if let Some(g) = gc {
            let out = g.wait_with_output().unwrap();
            assert!(
                out.status.success() || out.status.code().is_none(),
                "a gc that was not killed failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        attempts.push((from, now_ms(), state));
    }
    eprintln!("{killed} processes killed, {completed} backups completed");
    assert!(
        killed > 3 && completed > 3,
        "{killed} killed, {completed} completed"
    );

    // The killed sessions are declared dead; everything pending is swept.
    for _ in 0..2 {
        let j: serde_json::Value = serde_json::from_str(&env.ok(&[
            "gc",
            "--data-dir",
            "gcdata",
            "--lease-seconds",
            "0",
            "--json",
        ]))
        .unwrap();
        assert_eq!(j["records_waiting"], 0, "{j}");
    }
    // The store still verifies, chunk contents included.
    let out = env.ok(&["verify", "--read-data"]);
    assert!(out.trim_end().ends_with("clean"), "{out}");
    let listed = env.ok(&["list", "--module", MODULE, "--pageSize", "100"]);
    assert!(!listed.is_empty());
    for (n, line) in listed.lines().enumerate() {
        let id = line.split_whitespace().next().unwrap();
        let millis = u64::from_str_radix(id.rsplit('-').nth(1).unwrap(), 16).unwrap();
        let expected = &attempts
            .iter()
            .find(|(from, to, _)| *from <= millis && millis <= *to)
            .unwrap_or_else(|| panic!("no attempt made {id}"))
            .2;
        let target = format!("restore{n}");
        env.ok(&["restore", "--backupId", id, "--data-dir", &target]);
        assert_eq!(
            &digest(&env.dir().join(&target).join("modules").join(MODULE)),
            expected,
            "{id}"
        );
    }
    // Rerunning the interrupted command succeeds.
    let id = env.ok(&["backup", "--module", MODULE]).trim().to_string();
    env.ok(&["restore", "--backupId", &id, "--data-dir", "final"]);
    assert_eq!(
        digest(&env.dir().join("final/modules").join(MODULE)),
        digest(&env.module())
    );
}

#[test]
fn verify_exit_codes_say_clean_or_damaged() {
    let env = Env::new();
    let id = env.ok(&["backup", "--module", MODULE]).trim().to_string();
    let out = env.ok(&["verify"]);
    assert!(out.trim_end().ends_with("clean"), "{out}");
    let out = env.ok(&[
        "backup",
        "--action",
        "verify",
        "--backupId",
        &id,
        "--read-data",
    ]);
    assert!(out.contains("read and re-hashed"), "{out}");
    env.ok(&["verify", "--module", MODULE, "--read-data-subset", "10%"]);
    env.fails(
        &["verify", "--read-data-subset", "150%"],
        2,
        "not a percentage",
    );
    env.fails(
        &["verify", "--module", "com.nope.Missing"],
        3,
        "com.nope.Missing",
    );

    let out = env.ok(&["backup", "--action", "repair-index"]);
    assert!(out.starts_with("rebuilt the index at "), "{out}");

    // Remove one pack: the backup is damaged, exit 4, each problem on stdout.
    let packs = env.dir().join("store/packs");
    let sub = std::fs::read_dir(&packs)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let pack = std::fs::read_dir(&sub)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&pack).unwrap();
    let out = env.rbk(&["verify"]);
    assert_eq!(out.status.code(), Some(4));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("DAMAGED {id}")), "{stdout}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verify found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: serde_json::Value =
        serde_json::from_slice(&env.rbk(&["verify", "--json"]).stdout).unwrap();
    assert_eq!(j["clean"], false);
    assert_eq!(j["damaged_backups"], serde_json::json!([id]));
}

#[test]
fn hostile_config_and_arguments_get_clear_usage_errors() {
    use std::os::unix::ffi::OsStrExt;
    let env = Env::new();
    let write = |name: &str, bytes: &[u8]| std::fs::write(env.dir().join(name), bytes).unwrap();
    write("latin1.yaml", b"data.dir: caf\xe9\n");
    env.fails(
        &["list", "--module", MODULE, "--config", "latin1.yaml"],
        2,
        "latin1.yaml",
    );
    write(
        "deep.yaml",
        format!("{}1{}", "[".repeat(10_000), "]".repeat(10_000)).as_bytes(),
    );
    env.fails(
        &["list", "--module", MODULE, "--config", "deep.yaml"],
        2,
        "deep.yaml",
    );
    write("huge.yaml", &vec![b'#'; 2 << 20]);
    env.fails(
        &["list", "--module", MODULE, "--config", "huge.yaml"],
        2,
        "limited to",
    );
    // An argument that is not UTF-8.
    let out = Command::new(env!("CARGO_BIN_EXE_rbk"))
        .current_dir(env.dir())
        .args(["list", "--module"])
        .arg(std::ffi::OsStr::from_bytes(b"com.\xff"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("UTF-8"));
    // A module name that would escape the data dir.
    env.fails(&["backup", "--module", "../../etc"], 2, "module");
}

/// A restore over an existing module killed with SIGKILL at random points leaves the module
/// either as it was or fully restored, never partly written or missing; the next restore
/// succeeds and removes what the killed ones left beside it.
#[test]
fn a_restore_killed_at_any_point_leaves_the_old_module_or_the_new_one() {
    use rand::{Rng, SeedableRng};
    use std::time::Duration;

    let env = Env::new();
    let id = env.ok(&["backup", "--module", MODULE]).trim().to_string();
    let restored = digest(&env.module());
    std::fs::write(
        env.module().join("module.jar"),
        b"the state before the restore",
    )
    .unwrap();
    let old = digest(&env.module());
    // How long a whole restore over the module takes here (its undo backup included), so
    // kills land before, during and after the swap; then back to the old state.
    let started = std::time::Instant::now();
    env.ok(&["restore", "--backupId", &id, "--force"]);
    let full = started.elapsed().as_millis() as u64 + 1;
    std::fs::write(
        env.module().join("module.jar"),
        b"the state before the restore",
    )
    .unwrap();
    assert_eq!(digest(&env.module()), old);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut kept_old, mut got_new) = (0, 0);
    // Kills land at random points of a window around that time. One timing is a poor guide
    // on a loaded machine (a restore may take twice as long in the next second), so until
    // both outcomes were seen the window moves: later while every kill kept the old module,
    // earlier while every restore completed. At least 16 rounds, more until both were seen.
    let mut scale = full;
    for round in 0..48 {
        if round >= 16 && kept_old > 0 && got_new > 0 {
            break;
        }
        let mut child = Command::new(env!("CARGO_BIN_EXE_rbk"))
            .current_dir(env.dir())
            .args(["restore", "--backupId", &id, "--force", "--quiet"])
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(
            rng.gen_range(scale / 3..scale * 5 / 4),
        ));
        let _ = child.kill();
        child.wait().unwrap();
        let now = digest(&env.module());
        if now == old {
            kept_old += 1;
            if got_new == 0 {
                scale = scale * 5 / 4 + 1;
            }
        } else {
            assert_eq!(now, restored, "the module was left half-written");
            got_new += 1;
            if kept_old == 0 {
                scale = (scale * 4 / 5).max(4);
            }
            // Back to the old state for the next round.
            std::fs::write(
                env.module().join("module.jar"),
                b"the state before the restore",
            )
            .unwrap();
        }
    }
    eprintln!("{kept_old} rounds kept the old module, {got_new} completed");
    assert!(kept_old > 0 && got_new > 0, "{kept_old} / {got_new}");
    env.ok(&["restore", "--backupId", &id, "--force"]);
    assert_eq!(digest(&env.module()), restored);
    let leftovers: Vec<String> = std::fs::read_dir(env.dir().join("data/modules"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".rbk-"))
        .collect();
    assert_eq!(leftovers, Vec::<String>::new());
}

/// An `rbk serve` child process; killed if the test fails before stopping it.
pub(crate) struct Served(pub(crate) std::process::Child);

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !cond() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn serve_runs_modules_and_answers_backup_and_restore_consistently() {
    use rbk_engine::host::check::check_module;
    const LIVE: &str = "com.rbk.LiveBank";
    let env = Env::new();
    env.ok(&[
        "testdata",
        "create",
        "--module",
        LIVE,
        "--definition",
        "bank",
        "--tasks",
        "4",
    ]);
    let data = env.dir().join("data");
    let live = data.join("modules").join(LIVE);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbk"))
        .current_dir(env.dir())
        .args(["serve", "--load", "20000", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let served = Served(child);
    let socket = data.join(".rbk/host.sock");
    wait_for("the control socket", || socket.exists());
    std::thread::sleep(std::time::Duration::from_millis(300));

    // One host per data dir.
    env.fails(
        &["serve", "--for-seconds", "1"],
        2,
        "already runs on data dir",
    );

    // A file backup from another process is refused: RocksDB holds the LOCKs over there.
    let repo = rbk_engine::Repo::open(
        std::sync::Arc::new(rbk_chunkstore::provider::LocalProvider::new(
            env.dir().join("other-store"),
        )),
        &env.dir().join("other-index"),
        true,
    )
    .unwrap();
    let e =
        rbk_engine::ops::backup::backup(&repo, &data, LIVE, &rbk_engine::NoProgress).unwrap_err();
    assert!(
        e.to_string()
            .contains("another process holds the RocksDB lock"),
        "{e}"
    );

    // `rbk backup` goes through the host: a consistent snapshot, not the live files. (Until
    // the first microbatch commits, a snapshot is at commit 0; take another then.)
    let mut attempts = 0;
    let (id1, commit1) = loop {
        attempts += 1;
        assert!(attempts <= 100, "no microbatch committed in 20 s of load");
        let out: serde_json::Value =
            serde_json::from_str(&env.ok(&["backup", "--module", LIVE, "--json"])).unwrap();
        let commit = out["live"]["commit_ids"]["banking"].as_u64().unwrap();
        if commit > 0 {
            break (out["backup_id"].as_str().unwrap().to_string(), commit);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    std::thread::sleep(std::time::Duration::from_millis(300));
    let id2 = env.ok(&["backup", "--module", LIVE]).trim().to_string();
    assert!(
        std::fs::read_dir(data.join(".rbk/snapshots"))
            .unwrap()
            .next()
            .is_none(),
        "snapshots are deleted once the backup is done"
    );
    for (id, name) in [(&id1, "fresh1"), (&id2, "fresh2")] {
        env.ok(&["restore", "--backupId", id, "--data-dir", name]);
        let r = check_module(&env.dir().join(name).join("modules").join(LIVE)).unwrap();
        assert!(r.violations.is_empty(), "{id}: {:?}", r.violations);
    }

    // Restoring the running module needs --yes; then it runs on from the restored state.
    env.fails(&["restore", "--backupId", &id1], 2, "pass --yes");
    env.ok(&["restore", "--backupId", &id1, "--yes"]);
    let mut c = rbk_engine::host::control::Client::connect(&data)
        .unwrap()
        .unwrap();
    assert_eq!(c.running().unwrap(), vec![LIVE.to_string()]);
    drop(c);

    // Periodic backups from dynamic options, picked up while serving.
    let before = env.ok(&["list", "--module", LIVE]).lines().count();
    std::fs::write(
        live.join("dynamic-options.json"),
        r#"{"backup.period.seconds": 1}"#,
    )
    .unwrap();
    // `list` fails while a periodic backup holds the local index; it is simply asked again.
    wait_for("two periodic backups", || {
        let out = env.rbk(&["list", "--module", LIVE]);
        out.status.success() && String::from_utf8_lossy(&out.stdout).lines().count() >= before + 2
    });

    // SIGTERM: a clean stop; the module's files are then a consistent state.
    let mut served = served;
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&served.0),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    let status = served.0.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(&mut std::io::BufReader::new(stdout), &mut log).unwrap();
    assert!(log.contains(r#""event":"backup""#), "{log}");
    assert!(log.contains(r#""event":"stopped""#), "{log}");
    let r = check_module(&live).unwrap();
    assert!(
        r.violations.is_empty(),
        "after serve stopped: {:?}",
        r.violations
    );
    assert!(r.commit_ids["banking"] >= commit1);
    assert!(!socket.exists(), "the socket is removed on a clean stop");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let env = Env::new();
    env.ok(&["backup", "--module", MODULE]);
    env.ok(&["backup", "--module", MODULE]);
    // As `rbk list | head -0`: the reader is gone before rbk writes.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbk"))
        .current_dir(env.dir())
        .args(["list", "--module", MODULE])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// Everything a config mistake must not leave behind: a store, an index, a store binding.
fn nothing_written(env: &Env) {
    for p in ["store", "data-backups", "data/.rbk"] {
        assert!(!env.dir().join(p).exists(), "{p} was created");
    }
}

#[test]
fn a_misspelled_config_key_is_an_error_and_nothing_is_written() {
    let env = Env::new();
    let cases = [
        (
            "data.dir: data\nbackup.provder: \"fs store\"\n",
            "unknown key `backup.provder` in config file `rbk.yaml` line 2: did you mean `backup.provider`?",
        ),
        (
            "data:\n  dir: data\nbackup:\n  provder: \"fs store\"\n",
            "unknown key `backup.provder` in config file `rbk.yaml` line 4: did you mean `backup.provider`?",
        ),
        (
            "data.dri: data\nbackup.provider: \"fs store\"\n",
            "unknown key `data.dri` in config file `rbk.yaml` line 1: did you mean `data.dir`?",
        ),
        (
            "data.dir: data\nbackup.provider: \"fs store\"\nbackup.mirorr: \"s3 b\"\n",
            "unknown key `backup.mirorr` in config file `rbk.yaml` line 3: did you mean `backup.mirror`?",
        ),
        // A file that names no store does not fall back to the default one.
        ("data.dir: data\n", "sets no `backup.provider`"),
    ];
    for (text, says) in cases {
        std::fs::write(env.dir().join("rbk.yaml"), text).unwrap();
        for args in [
            &["backup", "--module", MODULE][..],
            &["backup", "--action", "gc"],
            &["gc"],
            &["serve", "--for-seconds", "1"],
        ] {
            env.fails(args, 2, says);
            nothing_written(&env);
        }
    }
    // Through RBK_CONFIG too.
    std::fs::write(env.dir().join("other.yaml"), "backup.provder: x\n").unwrap();
    let out = env.rbk_with(
        &["backup", "--module", MODULE],
        &[("RBK_CONFIG", "other.yaml")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("`backup.provder` in config file `other.yaml` line 1")
    );
    // A mirror that is the store itself is refused, not taken for a second copy.
    std::fs::write(
        env.dir().join("rbk.yaml"),
        "backup.provider: \"fs store\"\n",
    )
    .unwrap();
    let out = env.rbk_with(
        &["backup", "--module", MODULE],
        &[("RBK_MIRROR", "fs store")],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is the store itself"));
    nothing_written(&env);
}

#[test]
fn rbk_config_shows_each_value_and_its_source_flag_over_env_over_file() {
    let env = Env::new();
    let config = |args: &[&str], vars: &[(&str, &str)]| -> serde_json::Value {
        let mut all = vec!["config", "--json"];
        all.extend_from_slice(args);
        let out = env.rbk_with(&all, vars);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let setting = |j: &serde_json::Value, key: &str| {
        (
            j[key]["value"].as_str().unwrap().to_string(),
            j[key]["source"].as_str().unwrap().to_string(),
        )
    };
    let j = config(&[], &[]);
    assert_eq!(
        setting(&j, "config_file"),
        ("rbk.yaml".into(), "default".into())
    );
    assert_eq!(
        setting(&j, "data.dir"),
        ("data".into(), "file rbk.yaml".into())
    );
    assert_eq!(
        setting(&j, "backup.provider"),
        ("fs store".into(), "file rbk.yaml".into())
    );
    assert_eq!(j["index"], "data/.rbk/index");

    let vars = [
        ("RBK_DATA_DIR", "/env/data"),
        ("RBK_PROVIDER", "s3 http://k:secret@127.0.0.1:1/b"),
        ("AWS_SECRET_ACCESS_KEY", "hunter2"),
    ];
    let j = config(&[], &vars);
    assert_eq!(
        setting(&j, "data.dir"),
        ("/env/data".into(), "environment RBK_DATA_DIR".into())
    );
    assert_eq!(
        setting(&j, "backup.provider"),
        (
            "s3 http://<redacted>@127.0.0.1:1/b".into(),
            "environment RBK_PROVIDER".into()
        )
    );
    assert_eq!(j["aws_environment"]["AWS_SECRET_ACCESS_KEY"], "<redacted>");
    assert!(!j.to_string().contains("hunter2") && !j.to_string().contains("secret@"));

    let j = config(
        &["--data-dir", "/flag/data", "--provider", "fs /flag/store"],
        &vars,
    );
    assert_eq!(
        setting(&j, "data.dir"),
        ("/flag/data".into(), "flag --data-dir".into())
    );
    assert_eq!(
        setting(&j, "backup.provider"),
        ("fs /flag/store".into(), "flag --provider".into())
    );

    // No file at all: the embedded defaults, said as such.
    std::fs::remove_file(env.dir().join("rbk.yaml")).unwrap();
    let j = config(&[], &[]);
    assert_eq!(j["config_file"], serde_json::Value::Null);
    assert_eq!(setting(&j, "data.dir"), ("data".into(), "default".into()));
    assert_eq!(
        setting(&j, "backup.provider"),
        ("fs ./data-backups".into(), "default".into())
    );
    let text = String::from_utf8(env.rbk(&["config"]).stdout).unwrap();
    assert!(
        text.contains("config file      none (no ./rbk.yaml here)"),
        "{text}"
    );
    assert!(
        text.contains("backup.provider  fs ./data-backups  (default)"),
        "{text}"
    );

    // The environment decides which store a backup goes to.
    std::fs::write(
        env.dir().join("rbk.yaml"),
        "data.dir: data\nbackup.provider: \"fs store\"\n",
    )
    .unwrap();
    let out = env.rbk_with(
        &["backup", "--module", MODULE],
        &[("RBK_PROVIDER", "fs env-store")],
    );
    assert_eq!(out.status.code(), Some(0));
    assert!(env.dir().join("env-store/config").is_file());
    assert!(!env.dir().join("store").exists());
}

/// The completion scripts and man pages in cli/generated are what this binary generates, so
/// the shipped files cannot drift from the parser. `RBK_BLESS=1` rewrites them.
#[test]
fn completions_and_man_pages_match_the_checked_in_files() {
    let env = Env::new();
    let generated = Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
    let bless = std::env::var_os("RBK_BLESS").is_some();
    let check = |name: &str, bytes: &[u8]| {
        let path = generated.join(name);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        let want = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with RBK_BLESS=1", path.display()));
        assert!(
            want == bytes,
            "{} is stale: run `RBK_BLESS=1 cargo test -p rbk-cli --test it completions`",
            path.display()
        );
    };
    for (shell, file, marker) in [
        ("bash", "completions/rbk.bash", "_rbk()"),
        ("zsh", "completions/_rbk", "#compdef rbk"),
        ("fish", "completions/rbk.fish", "complete -c rbk"),
    ] {
        let out = env.rbk(&["completions", shell]);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        assert!(
            text.contains(marker) && text.contains("repair-index"),
            "{shell}: {text}"
        );
        check(file, &out.stdout);
    }
    env.fails(&["completions", "tcsh"], 2, "invalid value 'tcsh'");
    let pages = env.dir().join("man");
    let out = env.rbk(&["man", "--out-dir", pages.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&pages)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(
        names.contains(&"rbk.1".to_string()) && names.contains(&"rbk-backup.1".to_string()),
        "{names:?}"
    );
    for name in &names {
        check(
            &format!("man/{name}"),
            &std::fs::read(pages.join(name)).unwrap(),
        );
    }
    // `rbk man` alone prints the top page, and needs no config (even a broken one).
    std::fs::write(env.dir().join("rbk.yaml"), "nonsense: 1\n").unwrap();
    let out = env.rbk(&["man"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim_end(),
        String::from_utf8(std::fs::read(pages.join("rbk.1")).unwrap())
            .unwrap()
            .trim_end()
    );
}

/// Warnings reach stderr without RBK_LOG: a backup whose previous backup is damaged reads
/// every file, and says so.
#[test]
fn warnings_are_on_stderr_by_default() {
    let env = Env::new();
    let id = env.ok(&["backup", "--module", MODULE]).trim().to_string();
    let manifest = env.dir().join("store/manifests").join(MODULE).join(&id);
    let mut bytes = std::fs::read(&manifest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&manifest, bytes).unwrap();
    let out = env.rbk_with(&["backup", "--module", MODULE], &[("RBK_LOG", "")]);
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("WARN") && stderr.contains("previous backup unusable, reading every file"),
        "{stderr}"
    );
}

#[test]
fn stats_and_bench_dedup_report_ratios_in_text_and_json() {
    let env = Env::new();
    let b1: serde_json::Value =
        serde_json::from_str(&env.ok(&["backup", "--module", MODULE, "--json"])).unwrap();
    let b2: serde_json::Value =
        serde_json::from_str(&env.ok(&["backup", "--module", MODULE, "--json"])).unwrap();
    // The second backup of an unchanged module adds its manifest only.
    assert!(b1["added_bytes"].as_u64().unwrap() > 10_000, "{b1}");
    assert_eq!(b2["added_chunks"], 0, "{b2}");
    assert!(b2["added_bytes"].as_u64().unwrap() < 10_000, "{b2}");
    assert_eq!(b2["reused_bytes"], b2["logical_bytes"], "{b2}");

    let s: serde_json::Value = serde_json::from_str(&env.ok(&["stats", "--json"])).unwrap();
    assert_eq!(s["backups"], 2);
    assert_eq!(
        s["logical_bytes"].as_u64().unwrap(),
        2 * b1["logical_bytes"].as_u64().unwrap()
    );
    assert_eq!(s["garbage_bytes"], 0);
    assert!(s["dedup_ratio"].as_f64().unwrap() >= 2.0, "{s}");
    for kind in ["depot", "pstate", "topology", "module"] {
        assert!(
            s["kinds"][kind]["logical_bytes"].as_u64().unwrap() > 0,
            "{s}"
        );
    }
    let text = env.ok(&["stats", "--module", MODULE]);
    assert!(
        text.contains("dedup") && text.lines().count() >= 6,
        "{text}"
    );
    env.fails(
        &["stats", "--module", MODULE, "--backupId", "x"],
        2,
        "not both",
    );

    // The module dir as one generation, twice: everything of the second deduplicates.
    let m = env.module();
    let m = m.to_str().unwrap();
    let p: serde_json::Value = serde_json::from_str(&env.ok(&[
        "bench",
        "dedup",
        m,
        m,
        "--chunk-sizes",
        "128K/512K/2M",
        "--json",
    ]))
    .unwrap();
    let p = &p[0];
    let once: serde_json::Value =
        serde_json::from_str(&env.ok(&["bench", "dedup", m, "--json"])).unwrap();
    let once = &once[0];
    assert_eq!(p["avg_size"], 512 * 1024);
    assert_eq!(p["added_per_generation"][1], 0, "{p}");
    assert_eq!(
        p["logical_bytes"].as_u64().unwrap(),
        2 * once["logical_bytes"].as_u64().unwrap()
    );
    assert_eq!(p["unique_bytes"], once["unique_bytes"]);
    assert_eq!(p["stored_bytes"], once["stored_bytes"]);
    let table = env.ok(&["bench", "dedup", m]);
    assert_eq!(
        table.lines().count(),
        5,
        "header, three settings, footnote: {table}"
    );
    env.fails(
        &["bench", "dedup", m, "--chunk-sizes", "1/2"],
        2,
        "MIN/AVG/MAX",
    );
    env.fails(&["bench", "dedup", "no-such-dir"], 2, "not a directory");
}

/// A restore that would take away what another module depends on is refused in both forms
/// (exit 2, naming the dependent, the object and the backup, the data unchanged); one that
/// goes ahead prints how to undo it, and the undo brings the module back byte for byte.
#[test]
fn restores_keep_dependents_consistent_and_can_be_undone() {
    let env = Env::new();
    let backup_id = |out: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(out).unwrap();
        v["backup_id"].as_str().unwrap().to_string()
    };
    // A backup of the module without its PState `$$balances` (in none of its 4 tasks).
    let pstates = |t: u32| env.module().join(format!("tasks/{t}/pstates"));
    let aside = |t: u32| env.dir().join(format!("pstates-aside-{t}"));
    for t in 0..4 {
        std::fs::rename(pstates(t), aside(t)).unwrap();
    }
    let without = backup_id(&env.ok(&["backup", "--module", MODULE, "--json"]));
    for t in 0..4 {
        std::fs::rename(aside(t), pstates(t)).unwrap();
    }
    let with = backup_id(&env.ok(&["backup", "--module", MODULE, "--json"]));

    // A module that reads it.
    let dependent = env.dir().join("data/modules/com.rbk.Reader");
    std::fs::create_dir_all(dependent.join("tasks/0/topologies/core")).unwrap();
    let meta = serde_json::json!({
        "name": "com.rbk.Reader", "tasks": 1, "depots": [], "pstates": [],
        "topologies": [{"name": "core", "kind": "stream", "subscribes": []}],
        "dependencies": [{"module": MODULE, "pstate": "$$balances"}],
    });
    std::fs::write(dependent.join("module.json"), meta.to_string()).unwrap();
    let before = digest(&env.module());
    let listed = env.ok(&["list", "--module", MODULE]);
    for args in [
        vec!["restore", "--backupId", &without, "--force"],
        vec![
            "backup",
            "--action",
            "restore",
            "--backupId",
            &without,
            "--force",
        ],
    ] {
        let out = env.rbk(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for needle in [
            "com.rbk.Reader",
            "$$balances",
            without.as_str(),
            "--ignore-dependencies",
        ] {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle} not in {stderr}"
            );
        }
        assert_eq!(digest(&env.module()), before);
        assert_eq!(
            env.ok(&["list", "--module", MODULE]),
            listed,
            "no undo backup"
        );
    }

    // Allowed: a backup that has it. The replaced state is backed up first.
    std::fs::write(env.module().join("module.jar"), b"a newer jar").unwrap();
    let current = digest(&env.module());
    let out = env.ok(&["restore", "--backupId", &with, "--force", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let undo = v["undo_backup_id"]
        .as_str()
        .expect("an undo backup")
        .to_string();
    assert_eq!(v["epoch"], 1);
    assert_ne!(digest(&env.module()), current);
    let text = env.ok(&[
        "restore",
        "--backupId",
        &undo,
        "--force",
        "--no-undo-backup",
    ]);
    assert!(!text.contains("undo with"), "{text}");
    assert_eq!(digest(&env.module()), current);
    let info = env.ok(&["info", "--backupId", &undo]);
    assert!(info.contains("restored here"), "{info}");
    // --ignore-dependencies overrides the refusal.
    env.ok(&[
        "restore",
        "--backupId",
        &without,
        "--force",
        "--ignore-dependencies",
        "--no-undo-backup",
    ]);
    assert!(!env.module().join("tasks/0/pstates/balances").exists());
}

/// `rbk serve` runs a module B whose topology reads module A's depot. A, restored through
/// the host to a backup with fewer records, is stopped, replaced and started again while B
/// keeps running: B must move its offset back to A's restored end on its own (its offsets
/// live in its PState, which no other process may touch).
#[test]
fn a_served_reader_follows_a_restore_of_the_module_it_reads() {
    const A: &str = "com.rbk.RelayA";
    const B: &str = "com.rbk.RelayB";
    let env = Env::new();
    for (module, reads) in [(A, None), (B, Some(A))] {
        let mut args = vec![
            "testdata",
            "create",
            "--module",
            module,
            "--definition",
            "relay",
            "--tasks",
            "1",
        ];
        args.extend(reads.iter().flat_map(|r| ["--reads", *r]));
        env.ok(&args);
    }
    let data = env.dir().join("data");
    let progress = |module: &str| -> serde_json::Value {
        let p = data.join(format!(
            "modules/{module}/tasks/0/topologies/core/progress.json"
        ));
        serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
    };
    let key = format!("{A}/*events");
    // Two rounds of load with a stop in between; A is backed up at the stop.
    env.ok(&["serve", "--load", "2000", "--for-seconds", "2"]);
    let out: serde_json::Value =
        serde_json::from_str(&env.ok(&["backup", "--module", A, "--json"])).unwrap();
    let id = out["backup_id"].as_str().unwrap().to_string();
    let info: serde_json::Value =
        serde_json::from_str(&env.ok(&["info", "--backupId", &id, "--json"])).unwrap();
    let restored_end = info["task_entries"][0]["depots"][0]["end_offset"]
        .as_u64()
        .unwrap();
    assert!(restored_end > 0);
    env.ok(&["serve", "--load", "2000", "--for-seconds", "2"]);
    let before = progress(B)["processed"][&key].as_u64().unwrap();
    assert!(before > restored_end, "{before} <= {restored_end}");

    // Served without load: the only thing that moves B's offset is the restore of A.
    let child = Command::new(env!("CARGO_BIN_EXE_rbk"))
        .current_dir(env.dir())
        .args(["serve"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut served = Served(child);
    let socket = data.join(".rbk/host.sock");
    wait_for("the control socket", || socket.exists());
    env.ok(&["restore", "--backupId", &id, "--yes", "--no-undo-backup"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&served.0),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert_eq!(served.0.wait().unwrap().code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(&mut served.0.stderr.take().unwrap(), &mut log).unwrap();
    assert!(
        log.contains(&format!(
            "next offset reset from {before} to {restored_end}"
        )),
        "{log}"
    );
    assert_eq!(progress(B)["processed"][&key].as_u64(), Some(restored_end));
    let r = rbk_engine::host::check::check_module(&data.join("modules").join(B)).unwrap();
    assert!(r.violations.is_empty(), "{:?}", r.violations);
}

/// A user who is not root restores files whose modes deny them reading or writing (`000`,
/// write-only, read-only): each file is made durable and only then given its mode, through a
/// descriptor opened before. Run as root, the restore switches to uid/gid 65534 with
/// `setpriv` (util-linux), since root's opens ignore modes.
#[test]
fn a_user_who_is_not_root_restores_files_whose_modes_deny_them_access() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let module = env.dir().join("data/modules").join(MODULE);
    let modes = [
        ("config-overrides.json", 0o000),
        ("dynamic-options.json", 0o200),
        ("module.jar", 0o444),
    ];
    for (name, mode) in modes {
        std::fs::set_permissions(module.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = env.rbk(&["backup", "--module", MODULE, "--json"]);
    assert_eq!(out.status.code(), Some(0));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = j["backup_id"].as_str().unwrap().to_string();

    let root = rustix::process::geteuid().is_root();
    // The binary where that user can run it, whatever the permissions of the build dir.
    let bin = env.dir().join("rbk");
    std::fs::copy(env!("CARGO_BIN_EXE_rbk"), &bin).unwrap();
    let restored = env.dir().join("restored");
    let args = [
        "--provider",
        "fs store",
        "--data-dir",
        "restored",
        "restore",
        "--backupId",
        &id,
        "--quiet",
    ];
    let mut cmd = if root {
        let chowned = Command::new("chown")
            .args(["-R", "65534:65534"])
            .arg(env.dir())
            .status()
            .unwrap();
        assert!(chowned.success());
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin);
        c
    } else {
        Command::new(&bin)
    };
    let out = cmd
        .args(args)
        .current_dir(env.dir())
        .output()
        .expect("run as root, this test needs setpriv (util-linux), which .ci/run installs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back = restored.join("modules").join(MODULE);
    for (name, mode) in modes {
        let md = std::fs::metadata(back.join(name)).unwrap();
        assert_eq!(md.permissions().mode() & 0o7777, mode, "{name}");
    }
    // Modes aside (the digest reads every file; root may), the bytes are the backed-up ones.
    if root {
        assert_eq!(digest(&back), digest(&module));
    }
}
