//! A local store mirrored to a real S3 server (Garage on loopback), through the `rbk` binary:
//! `backup.provider: "fs store"` and `backup.mirror: "s3 http://…"`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rbk_testsupport::Garage;

use crate::machine::{MODULE, Machine, digest};

/// A machine with a local store or `provider`, and a mirror when given.
fn mirrored(provider: &str, mirror: Option<&str>, env: Vec<(&'static str, String)>) -> Machine {
    let mut yaml = format!("data.dir: data\nbackup.provider: \"{provider}\"\n");
    if let Some(m) = mirror {
        yaml.push_str(&format!("backup.mirror: \"{m}\"\n"));
    }
    Machine::with_config(&yaml, &env)
}

impl Machine {
    fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut with = args.to_vec();
        with.push("--json");
        serde_json::from_str(&self.run_ok(&with).0).unwrap()
    }

    fn backup(&self) -> (String, String) {
        let (out, err) = self.run_ok(&["backup", "--module", MODULE, "--mirror-wait", "20"]);
        (out.trim().to_string(), err)
    }
}

/// Runs `rbk mirror sync` until it succeeds: a restarted Garage takes a moment to answer.
fn sync_until_ok(m: &Machine) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let out = m.rbk(&["mirror", "sync", "--json"]);
        if out.status.code() == Some(0) {
            return serde_json::from_slice(&out.stdout).unwrap();
        }
        assert_ne!(out.status.code(), None, "rbk mirror sync died");
        assert!(
            Instant::now() < deadline,
            "the mirror never came back: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn restore_from(
    m: &Machine,
    provider: &str,
    id: &str,
    env: Vec<(&'static str, String)>,
) -> Machine {
    let fresh = mirrored(provider, None, env);
    fresh.ok(&["restore", "--backupId", id]);
    assert_eq!(digest(&fresh.module()), digest(&m.module()), "{id}");
    fresh
}

/// Backups land locally and on the mirror; the mirror alone restores them; a mirror that
/// stops answering delays nothing and catches up; GC keeps both sides alike; a lost local
/// store is restored from the mirror and re-seeded by the next backup.
#[test]
fn a_local_store_mirrored_to_s3_survives_the_mirror_and_the_disk_going_away() {
    let mut garage = Garage::start();
    let spec = garage.provider_spec("mirror");
    let m = mirrored("fs store", Some(&spec), garage.aws_env());
    m.ok(&["testdata", "generate", "--size-mib", "6", "--tasks", "4"]);
    let (id1, err) = m.backup();
    assert!(!err.contains("could not be brought up to date"), "{err}");
    let status = m.json(&["mirror", "status"]);
    assert_eq!(status["pending_objects"], 0, "{status}");
    assert_eq!(status["last_synced_backup"], id1.as_str());
    assert_eq!(status["mirror_backups"], 1);
    // A machine configured with only the mirror as its store lists, verifies and restores.
    let alone = restore_from(&m, &spec, &id1, garage.aws_env());
    let listed = alone.run_ok(&["list", "--module", MODULE]).0;
    assert_eq!(listed.lines().count(), 1, "{listed}");
    alone.ok(&["verify", "--read-data"]);

    // The mirror goes away: backups still succeed and say so; the status shows the lag.
    garage.kill_node(0);
    m.ok(&["testdata", "advance", "--percent", "10"]);
    let (id2, err) = m.backup();
    assert!(err.contains("could not be brought up to date"), "{err}");
    assert!(err.contains("rbk mirror sync"), "{err}");
    let out = m.rbk(&["mirror", "sync"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "sync fails while the mirror is down"
    );
    m.ok(&["testdata", "advance", "--percent", "10"]);
    let (id3, _) = m.backup();
    garage.restart_node(0);
    let synced = sync_until_ok(&m);
    assert_eq!(synced["manifests_copied"], 2, "{synced}");
    assert_eq!(synced["pending_objects"], 0, "{synced}");
    let status = m.json(&["mirror", "status"]);
    assert_eq!(status["mirror_backups"], 3, "{status}");
    assert_eq!(status["last_synced_backup"], id3.as_str());
    restore_from(&m, &spec, &id3, garage.aws_env());
    let both = m.json(&["verify", "--read-data", "--side", "both"]);
    assert_eq!(both["clean"], true, "{both}");
    assert_eq!(both["sides"]["mirror"]["backups"], 3, "{both}");
    assert_eq!(both["sides"]["primary"]["backups"], 3, "{both}");

    // The local store's disk is lost: restores read the mirror, and the next backup makes
    // the new, empty store the same store again.
    std::fs::remove_dir_all(m.dir().join("store")).unwrap();
    // (No undo backup: it would go to the mirror, which is a store of its own right now.)
    let (out, err) = m.run_ok(&["restore", "--backupId", &id2, "--force", "--no-undo-backup"]);
    assert!(out.contains(&id2), "{out}");
    assert!(err.contains("reading its mirror"), "{err}");
    m.ok(&["testdata", "advance", "--percent", "5"]);
    let (id4, err) = m.backup();
    assert!(err.contains("the mirror's store again"), "{err}");
    assert!(!err.contains("could not be brought up to date"), "{err}");
    restore_from(&m, &spec, &id4, garage.aws_env());

    // GC by the same policy on both sides: keep one.
    let gc = m.json(&["gc", "--min-backups-to-keep", "1", "--max-age-hours", "0"]);
    assert_eq!(gc["manifests_retained"], 1, "{gc}");
    assert_eq!(gc["mirror"]["manifests_retained"], 1, "{gc}");
    let listed = m.run_ok(&["list", "--module", MODULE]).0;
    assert_eq!(
        listed.lines().next().unwrap().split_whitespace().next(),
        Some(id4.as_str())
    );
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert_eq!(
        alone
            .run_ok(&["list", "--module", MODULE])
            .0
            .lines()
            .count(),
        1
    );
    restore_from(&m, &spec, &id4, garage.aws_env());
    let both = m.json(&["verify", "--read-data"]);
    assert_eq!(both["clean"], true, "{both}");
}

/// A chunk damaged in the local store is read from the mirror, and the restore says so.
#[test]
fn a_damaged_local_pack_is_read_from_the_mirror() {
    let garage = Garage::start();
    let spec = garage.provider_spec("m");
    let m = mirrored("fs store", Some(&spec), garage.aws_env());
    m.ok(&["testdata", "generate", "--size-mib", "4", "--tasks", "2"]);
    let (id, _) = m.backup();
    let packs: Vec<PathBuf> = walk(&m.dir().join("store/packs"));
    assert!(!packs.is_empty());
    for p in &packs {
        let mut bytes = std::fs::read(p).unwrap();
        let at = bytes.len() / 3;
        bytes[at] ^= 0x55;
        std::fs::write(p, bytes).unwrap();
    }
    // Verify names the damage of the local side only.
    let out = m.rbk(&["verify", "--read-data", "--side", "primary"]);
    assert_eq!(out.status.code(), Some(4));
    let out = m.rbk(&["verify", "--read-data", "--side", "mirror"]);
    assert_eq!(out.status.code(), Some(0));
    let before = digest(&m.module());
    std::fs::remove_dir_all(m.module()).unwrap();
    let (_, err) = m.run_ok(&["restore", "--backupId", &id]);
    assert!(err.contains("were read from its mirror"), "{err}");
    assert_eq!(digest(&m.module()), before);
}

/// `rbk mirror sync` killed at random points leaves a mirror that verifies, and the next
/// sync completes it.
#[test]
fn a_sync_killed_at_random_points_leaves_a_valid_mirror() {
    let garage = Garage::start();
    let spec = garage.provider_spec("k");
    let local = mirrored("fs store", None, garage.aws_env());
    local.ok(&["testdata", "generate", "--size-mib", "24", "--tasks", "4"]);
    let mut ids = vec![local.ok(&["backup", "--module", MODULE])];
    for _ in 0..2 {
        local.ok(&["testdata", "advance", "--percent", "20"]);
        ids.push(local.ok(&["backup", "--module", MODULE]));
    }
    // The mirror is added to the existing store.
    let m = local;
    std::fs::write(
        m.dir().join("rbk.yaml"),
        format!("data.dir: data\nbackup.provider: \"fs store\"\nbackup.mirror: \"{spec}\"\n"),
    )
    .unwrap();
    let mut seed = 7u64;
    let mut killed = 0;
    for _ in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let after = Duration::from_millis(40 + (seed >> 33) % 400);
        let mut child = m.command(&["mirror", "sync"]).spawn().unwrap();
        std::thread::sleep(after);
        if child.try_wait().unwrap().is_none() {
            // SIGKILL: no destructor, no cleanup.
            child.kill().unwrap();
            killed += 1;
        }
        let _ = child.wait();
        // Whatever it got to, the mirror by itself is a valid store.
        let alone = mirrored(&spec, None, garage.aws_env());
        let out = alone.rbk(&["verify", "--json"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() == Some(3) && stderr.contains("no rbk store") {
            continue; // killed before it wrote the mirror's config: nothing there yet
        }
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["clean"], true, "{v}");
    }
    assert!(
        killed > 0,
        "no sync was killed mid-way; the test proves nothing"
    );
    let synced = sync_until_ok(&m);
    assert_eq!(synced["pending_objects"], 0, "{synced}");
    let alone = mirrored(&spec, None, garage.aws_env());
    let listed = alone.run_ok(&["list", "--module", MODULE]).0;
    assert_eq!(listed.lines().count(), 3, "{listed}");
    alone.ok(&["verify", "--read-data"]);
    restore_from(&m, &spec, ids.last().unwrap(), garage.aws_env());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
