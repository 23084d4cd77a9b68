//! Damaged stores checked into `testdata/stores/`: each must give its documented error and
//! exit code on `restore` and `verify --read-data`, change nothing in the store, and leave
//! the module being restored over exactly as it was.
//!
//! `RBK_BLESS=1 cargo nextest run -E 'test(corrupt_stores)'` recreates the fixtures from a
//! small deterministic module (`testdata/stores/module/`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MODULE: &str = "com.rbk.Fixture";

struct Case {
    name: &'static str,
    /// Turns a copy of the healthy store into this case.
    damage: fn(&Path),
    restore_exit: i32,
    restore_says: &'static str,
    verify_exit: i32,
    verify_says: &'static str,
}

const CASES: &[Case] = &[
    Case {
        name: "healthy",
        damage: |_| {},
        restore_exit: 0,
        restore_says: "",
        verify_exit: 0,
        verify_says: "clean",
    },
    Case {
        name: "bitflip-chunk",
        damage: |s| flip(&only_file(&s.join("packs")), 8 + 100),
        restore_exit: 4,
        restore_says: "corrupt chunk",
        verify_exit: 4,
        verify_says: "DAMAGED",
    },
    Case {
        name: "truncated-pack",
        damage: |s| {
            let p = only_file(&s.join("packs"));
            let b = std::fs::read(&p).unwrap();
            std::fs::write(&p, &b[..b.len() - 20]).unwrap();
        },
        restore_exit: 4,
        restore_says: "no readable pack holds it",
        verify_exit: 4,
        verify_says: "damaged",
    },
    Case {
        name: "missing-pack",
        damage: |s| std::fs::remove_dir_all(s.join("packs")).unwrap(),
        restore_exit: 3,
        restore_says: "no pack in the store holds it",
        verify_exit: 4,
        verify_says: "missing",
    },
    Case {
        name: "bad-manifest-checksum",
        damage: |s| flip(&only_file(&s.join("manifests")), 60),
        restore_exit: 4,
        restore_says: "checksum mismatch",
        verify_exit: 4,
        verify_says: "checksum mismatch",
    },
    Case {
        name: "future-manifest-version",
        damage: |s| {
            let p = only_file(&s.join("manifests"));
            let mut b = std::fs::read(&p).unwrap();
            b[8..12].copy_from_slice(&4u32.to_le_bytes());
            std::fs::write(&p, &b).unwrap();
        },
        restore_exit: 4,
        restore_says: "format version 4 is not supported by this rbk (supports 1 to 3)",
        verify_exit: 4,
        verify_says: "upgrade rbk",
    },
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/stores")
}

/// The single file under `dir` (fixtures hold one backup in one pack).
fn only_file(dir: &Path) -> PathBuf {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                files.push(p);
            }
        }
    }
    assert_eq!(files.len(), 1, "{files:?}");
    files.pop().unwrap()
}

fn flip(path: &Path, at: usize) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= 0x20;
    std::fs::write(path, &b).unwrap();
}

fn rbk(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rbk"))
        .current_dir(cwd)
        .args(args)
        .arg("--quiet")
        .output()
        .unwrap()
}

fn digest(dir: &Path) -> BTreeMap<String, [u8; 32]> {
    rbk_engine::testdata::tree_digest(dir).unwrap()
}

/// A small module with every kind of object, the same bytes every time.
fn write_module(data: &Path) {
    let m = data.join("modules").join(MODULE);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut noise = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    };
    let mut segment = Vec::new();
    for payload in [&b"alice->bob 10"[..], b"bob->carol 3", b"carol->alice 1"] {
        segment.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        segment.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        segment.extend_from_slice(payload);
    }
    let files: Vec<(&str, Vec<u8>)> = vec![
        (
            "module.json",
            format!(r#"{{"name": "{MODULE}", "tasks": 1}}"#).into_bytes(),
        ),
        ("module.jar", noise(40_000)),
        ("config-overrides.json", b"{}".to_vec()),
        ("dynamic-options.json", b"{}".to_vec()),
        ("tasks/0/depots/transfers/00000000000000000000.seg", segment),
        ("tasks/0/pstates/balances/000004.log", noise(3000)),
        (
            "tasks/0/pstates/balances/CURRENT",
            b"MANIFEST-000005\n".to_vec(),
        ),
        (
            "tasks/0/topologies/banking/progress.json",
            br#"{"commit_id": 3, "processed": {"*transfers": 3}}"#.to_vec(),
        ),
    ];
    for (rel, bytes) in files {
        let p = m.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

fn bless() {
    let root = fixtures();
    let _ = std::fs::remove_dir_all(root.join("module"));
    for c in CASES {
        let _ = std::fs::remove_dir_all(root.join(c.name));
    }
    write_module(&root.join("module"));
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    rbk_testsupport::copy_tree(&root.join("module"), &data);
    let store = tmp.path().join("store");
    let out = rbk(
        tmp.path(),
        &[
            "backup",
            "--module",
            MODULE,
            "--data-dir",
            "data",
            "--provider",
            "fs store",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(store.join(".tmp"));
    let _ = std::fs::remove_dir_all(store.join("sessions"));
    for c in CASES {
        let dir = root.join(c.name);
        rbk_testsupport::copy_tree(&store, &dir);
        (c.damage)(&dir);
    }
}

#[test]
fn corrupt_stores_give_their_documented_errors_and_change_nothing() {
    if std::env::var_os("RBK_BLESS").is_some() {
        bless();
    }
    let root = fixtures();
    let module = root.join("module/modules").join(MODULE);
    for c in CASES {
        let tmp = tempfile::tempdir().unwrap();
        let store = tmp.path().join("store");
        rbk_testsupport::copy_tree(&root.join(c.name), &store);
        let id_path = only_file(&root.join("healthy/manifests"));
        let id = id_path.file_name().unwrap().to_str().unwrap();
        let before = digest(&store);

        // Restore over an existing module: on failure it must be untouched.
        let data = tmp.path().join("data");
        rbk_testsupport::copy_tree(&root.join("module"), &data);
        let target = data.join("modules").join(MODULE);
        std::fs::write(target.join("module.jar"), b"current state").unwrap();
        let current = digest(&target);
        let out = rbk(
            tmp.path(),
            &[
                "restore",
                "--backupId",
                id,
                "--force",
                "--data-dir",
                "data",
                "--provider",
                "fs store",
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(c.restore_exit),
            "{}: {stderr}",
            c.name
        );
        assert!(stderr.contains(c.restore_says), "{}: {stderr}", c.name);
        if c.restore_exit == 0 {
            assert_eq!(digest(&target), digest(&module), "{}", c.name);
        } else {
            assert_eq!(
                digest(&target),
                current,
                "{}: the target was changed",
                c.name
            );
        }

        let out = rbk(
            tmp.path(),
            &[
                "verify",
                "--read-data",
                "--data-dir",
                "data",
                "--provider",
                "fs store",
            ],
        );
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(c.verify_exit), "{}: {all}", c.name);
        assert!(all.contains(c.verify_says), "{}: {all}", c.name);

        let mut after = digest(&store);
        after.retain(|k, _| !k.starts_with(".tmp/"));
        if c.restore_exit == 0 {
            // A restore that succeeds first backs up the state it replaces: one manifest and
            // its packs are added, nothing else changes. One that fails adds nothing.
            let added: Vec<String> = after
                .keys()
                .filter(|k| !before.contains_key(*k))
                .cloned()
                .collect();
            let manifests = added.iter().filter(|k| k.starts_with("manifests/")).count();
            assert_eq!(manifests, 1, "{}: {added:?}", c.name);
            assert!(
                added
                    .iter()
                    .all(|k| k.starts_with("manifests/") || k.starts_with("packs/")),
                "{}: {added:?}",
                c.name
            );
            after.retain(|k, _| before.contains_key(k));
        }
        assert_eq!(after, before, "{}: the store was changed", c.name);
    }
}
