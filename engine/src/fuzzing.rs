//! The properties the fuzz targets check, as plain functions: `fuzz/` feeds them libFuzzer's
//! inputs, and `engine/tests/fuzz_corpus.rs` replays the checked-in corpus
//! (`testdata/fuzz/<target>/`) through them on every test run. Each panics when a property
//! is violated and returns normally on any input the code under test rejects cleanly.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rbk_chunkstore::provider::{MemoryProvider, Provider};
use rbk_chunkstore::{StoreConfig, pack};

use crate::backup_id::BackupId;
use crate::layout::module_dir;
use crate::manifest::{self, ManifestObject};
use crate::ops::gc::{self, GcOptions};
use crate::ops::verify::{self, ReadData};
use crate::ops::{backup, restore};
use crate::retention::PolicyOverride;
use crate::{NoProgress, Repo, repo, testdata};

/// A fuzz check: panics when a property is violated.
pub type Check = fn(&[u8]);

/// Every target, by the name of its corpus directory.
pub const TARGETS: &[(&str, Check)] = &[
    ("manifest_decode", manifest_decode),
    ("pack_parse", pack_parse),
    ("store_config", store_config),
    ("chunk_codec", chunk_codec),
    ("model", model),
    ("data_dir_scan", data_dir_scan),
];

/// The manifest and task object decoders never panic; what they accept re-encodes to bytes
/// that decode to the same value.
pub fn manifest_decode(data: &[u8]) {
    if let Ok(m) = ManifestObject::decode("fuzz", data) {
        let again =
            ManifestObject::decode("fuzz", &m.encode()).expect("re-encoded manifest decodes");
        assert_eq!(again, m);
    }
    if let Ok(t) = manifest::decode_task_object(data) {
        let object = t.encode_object();
        assert_eq!(object, data, "a task object has one encoding");
    }
}

/// The pack parser never panics, and every entry it accepts lies inside the pack.
pub fn pack_parse(data: &[u8]) {
    if let Ok(entries) = pack::parse_pack("fuzz", data) {
        for e in entries {
            assert!(e.offset as usize + e.stored_len as usize <= data.len());
        }
    }
}

/// The store config parser never panics; what it accepts serializes and parses back equal.
pub fn store_config(data: &[u8]) {
    if let Ok(c) = StoreConfig::parse(data) {
        let again = StoreConfig::parse(&serde_json::to_vec(&c).expect("serializes"))
            .expect("re-serialized config parses");
        assert_eq!(again, c);
    }
}

/// Chunk encoding: the input stored as a depot chunk (CRCs elided where it has frames) reads
/// back byte-identical; and the input taken as a *stored* chunk never panics the decoder and
/// is accepted only if it decodes to bytes with the claimed id.
pub fn chunk_codec(data: &[u8]) {
    use rbk_chunkstore::ChunkId;
    use rbk_chunkstore::compress::{self, Content};
    let id = ChunkId::of(data);
    let mut stored = Vec::new();
    compress::compress_into(data, 1, Content::FramedLog, &mut stored).expect("compresses");
    let back = compress::decompress_verified(&stored, data.len(), 1 << 20, &id)
        .expect("a chunk stored by rbk reads back");
    assert_eq!(back, data);
    // As a stored blob: claim the length and id of the bytes after the first 4 (whatever
    // they are), so both the accepting and the rejecting paths are reached.
    let raw_len = data
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4")));
    let claimed = ChunkId::of(data.get(4..).unwrap_or_default());
    if let Ok(out) = compress::decompress_verified(data, raw_len as usize, 1 << 20, &claimed) {
        assert_eq!(ChunkId::of(&out), claimed);
    }
}

const MODEL_MODULE: &str = "com.rbk.Fuzz";
const MODEL_FILES: &[&str] = &[
    "module.jar",
    "tasks/0/depots/events/00000000000000000000.seg",
    "tasks/0/pstates/state/000001.sst",
    "tasks/1/pstates/state/000002.log",
];

/// A model-based run: the input is read as a sequence of operations (change a file, back
/// up, delete a backup, GC with a retention of N, restore a backup) against an in-memory
/// store, and after every step the store must agree with a map of backup → file contents:
/// the same backups exist, each restores to exactly the files it was taken from, and
/// `verify` finds nothing missing.
pub fn model(data: &[u8]) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");
    let provider: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
    let mut files: BTreeMap<&str, Vec<u8>> = MODEL_FILES.iter().map(|f| (*f, Vec::new())).collect();
    write_module(&data_dir, &files);
    let repo = Repo::open(provider.clone(), &repo::index_root(&data_dir), true).expect("store");
    let mut backups: Vec<(BackupId, BTreeMap<String, [u8; 32]>)> = Vec::new();
    let mut restores = 0;
    for (step, op) in data.chunks(3).take(24).enumerate() {
        let arg = op.get(1).copied().unwrap_or(0) as usize;
        let arg2 = op.get(2).copied().unwrap_or(0);
        match op[0] % 5 {
            0 => {
                // Change a file: append to it or rewrite it.
                let name = MODEL_FILES[arg % MODEL_FILES.len()];
                let f = files.get_mut(name).expect("known file");
                let chunk: Vec<u8> = (0..(arg2 as usize + 1) * 997)
                    .map(|i| (i as u8).wrapping_mul(arg2 | 1) ^ step as u8)
                    .collect();
                if arg2 % 2 == 0 {
                    f.extend_from_slice(&chunk);
                } else {
                    *f = chunk;
                }
                write_module(&data_dir, &files);
            }
            1 => {
                let r = backup::backup(&repo, &data_dir, MODEL_MODULE, &NoProgress)
                    .expect("backup on a healthy store");
                let d =
                    testdata::tree_digest(&module_dir(&data_dir, MODEL_MODULE)).expect("digest");
                backups.push((r.backup_id, d));
            }
            2 if !backups.is_empty() => {
                let (id, _) = backups.remove(arg % backups.len());
                gc::delete_backup(&repo, &id).expect("delete");
            }
            3 => {
                let keep = (arg2 % 4) as u64;
                let opts = GcOptions {
                    policy: PolicyOverride {
                        max_age_hours: Some(0.0),
                        min_keep: Some(keep),
                    },
                    now_ms: Some(u64::MAX / 2),
                    repack_threshold: (arg % 100) as f64 / 100.0,
                    ..Default::default()
                };
                gc::gc(&repo, &data_dir, &opts, &NoProgress).expect("gc");
                let survivors = backups.len().saturating_sub(keep.max(1) as usize);
                backups.drain(..survivors);
            }
            4 if !backups.is_empty() => {
                let (id, digest) = &backups[arg % backups.len()];
                restores += 1;
                check_restore(&provider, tmp.path(), id, digest, restores);
            }
            _ => {}
        }
        let ids: Vec<BackupId> = backups.iter().map(|b| b.0.clone()).collect();
        assert_eq!(repo.backup_ids(MODEL_MODULE).expect("list"), ids);
    }
    let v = verify::verify(&repo, &[], ReadData::All, &NoProgress).expect("verify");
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    for (id, digest) in &backups {
        restores += 1;
        check_restore(&provider, tmp.path(), id, digest, restores);
    }
}

fn check_restore(
    provider: &Arc<dyn Provider>,
    tmp: &Path,
    id: &BackupId,
    digest: &BTreeMap<String, [u8; 32]>,
    n: usize,
) {
    let target = tmp.join(format!("restore{n}"));
    let fresh =
        Repo::open(provider.clone(), &repo::index_root(&target), false).expect("open store");
    restore::restore(
        &fresh,
        &target,
        id,
        restore::RestoreOptions::default(),
        &NoProgress,
    )
    .expect("restore");
    let got = testdata::tree_digest(&module_dir(&target, MODEL_MODULE)).expect("digest");
    assert_eq!(&got, digest, "{id} restored different bytes");
}

fn write_module(data_dir: &Path, files: &BTreeMap<&str, Vec<u8>>) {
    let dir = module_dir(data_dir, MODEL_MODULE);
    let meta = format!(r#"{{"name": "{MODEL_MODULE}", "tasks": 2}}"#);
    let mut all: Vec<(String, &[u8])> = vec![("module.json".into(), meta.as_bytes())];
    all.extend(files.iter().map(|(k, v)| (k.to_string(), v.as_slice())));
    for (rel, bytes) in all {
        let path = dir.join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        if std::fs::read(&path).ok().as_deref() != Some(bytes) {
            std::fs::write(&path, bytes).expect("write");
        }
    }
}

/// Names the scan fuzzer builds trees from: layout names, odd ones (dots, spaces, a
/// reserved prefix, non-UTF-8, a name at NAME_MAX) and ones that look like segments.
fn scan_name(b: u8) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let names: &[&[u8]] = &[
        b"module.jar",
        b"config-overrides.json",
        b"tasks",
        b"0",
        b"1",
        b"depots",
        b"pstates",
        b"topologies",
        b"events",
        b"state",
        b"00000000000000000000.seg",
        b"00000000000000000100.seg",
        b"000001.sst",
        b"progress.json",
        b"..",
        b".rbk-restore-x",
        b"a b",
        b"\xff\xfe",
        b"-",
    ];
    match b as usize % (names.len() + 1) {
        i if i < names.len() => std::ffi::OsString::from_vec(names[i].to_vec()),
        _ => std::ffi::OsString::from("n".repeat(255)),
    }
}

/// A hostile data dir: the input builds a module tree of files, directories, symlinks (to
/// files inside and outside it), FIFOs and odd names. Then the scan and a backup must each
/// return (a FIFO must not hang them), never panic, and a backup that succeeds holds only
/// regular files and restores byte for byte.
pub fn data_dir_scan(data: &[u8]) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data_dir = tmp.path().join("data");
    let dir = module_dir(&data_dir, MODEL_MODULE);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let outside = tmp.path().join("secret");
    std::fs::write(&outside, b"not part of the module").expect("write");
    std::fs::write(
        dir.join("module.json"),
        format!(r#"{{"name": "{MODEL_MODULE}", "tasks": 2}}"#),
    )
    .expect("write");
    // Each op of 8 bytes: kind, depth (1..=5), five path segments, size.
    for op in data.chunks(8).take(40) {
        let mut path = dir.clone();
        let depth = 1 + op.get(1).copied().unwrap_or(0) as usize % 5;
        for i in 0..depth {
            path.push(scan_name(op.get(2 + i).copied().unwrap_or(0)));
        }
        let Some(parent) = path.parent() else {
            continue;
        };
        if !parent.starts_with(&dir) || std::fs::create_dir_all(parent).is_err() {
            continue;
        }
        let size = op.get(7).copied().unwrap_or(0) as usize * 61;
        // Writing to a FIFO made by an earlier op would block this harness itself.
        if path
            .symlink_metadata()
            .is_ok_and(|m| !m.is_file() && !m.is_dir())
        {
            continue;
        }
        let _ = match op[0] % 5 {
            0 | 1 => std::fs::write(&path, vec![op[0]; size]),
            2 => std::fs::create_dir_all(&path),
            3 => std::os::unix::fs::symlink(
                if size.is_multiple_of(2) {
                    &outside
                } else {
                    &dir
                },
                &path,
            ),
            _ => rustix::fs::mkfifoat(rustix::fs::CWD, &path, rustix::fs::Mode::RUSR)
                .map_err(std::io::Error::from),
        };
    }
    if let Ok(scan) = crate::layout::scan_module(&data_dir, MODEL_MODULE) {
        let all = scan
            .module_files
            .iter()
            .chain(scan.tasks.iter().flat_map(|t| {
                t.depots
                    .iter()
                    .chain(&t.pstates)
                    .chain(&t.topologies)
                    .flat_map(|o| o.files.iter())
            }));
        for f in all {
            let md = std::fs::symlink_metadata(&f.abs).expect("scanned file exists");
            assert!(md.is_file(), "scanned a non-file {}", f.abs.display());
            assert!(f.abs.starts_with(&dir), "scanned outside the module");
        }
    }
    let provider: Arc<dyn Provider> = Arc::new(MemoryProvider::default());
    let repo = Repo::open(provider.clone(), &repo::index_root(&data_dir), true).expect("store");
    if let Ok(r) = backup::backup(&repo, &data_dir, MODEL_MODULE, &NoProgress) {
        let want = testdata::tree_digest(&dir).expect("digest");
        check_restore(&provider, tmp.path(), &r.backup_id, &want, 1);
    }
}
