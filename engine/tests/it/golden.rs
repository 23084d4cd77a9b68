//! Golden files: the encoding of a fixed manifest must not change silently. A format change
//! needs a new version number; regenerate with `RBK_BLESS=1 cargo test -p rbk-engine --test it golden`
//! only together with that.

use rbk_chunkstore::ChunkId;
use rbk_engine::BackupId;
use rbk_engine::manifest::{
    BackupStats, DepotEntry, DirMeta, FileEntry, Manifest, ManifestObject, ObjectEntry, Owner,
    TaskEntry, TopologyEntry,
};

fn file(path: &str, size: u64, chunks: &[&[u8]]) -> FileEntry {
    FileEntry {
        path: path.into(),
        size,
        mtime_ns: 1_700_000_000_123_456_789,
        dev: 2049,
        ino: 42,
        mode: 0o644,
        owner: None,
        chunks: chunks.iter().map(|c| ChunkId::of(c)).collect(),
    }
}

fn fixed() -> Manifest {
    Manifest {
        backup_id: BackupId::parse("com.mycompany.BankModule-00000193E038B5F8-DE").unwrap(),
        created_ms: 0x193E038B5F8,
        rbk_version: "0.1.0".into(),
        task_count: 2,
        stats: BackupStats {
            logical_bytes: 1234,
            files: 6,
            files_reused: 1,
            new_chunks: 5,
            new_stored_bytes: 999,
        },
        module_files: vec![file("module.json", 10, &[b"m"]), file("module.jar", 0, &[])],
        tasks: vec![TaskEntry {
            task: 1,
            depots: vec![DepotEntry {
                name: "transfers".into(),
                start_offset: 437_171,
                end_offset: 437_200,
                files: vec![file("00000000000000437171.seg", 300, &[b"a", b"b"])],
            }],
            pstates: vec![ObjectEntry {
                name: "balances".into(),
                files: vec![
                    file("CURRENT", 16, &[b"c"]),
                    file("000012.sst", 500, &[b"d"]),
                ],
            }],
            topologies: vec![TopologyEntry {
                name: "banking".into(),
                commit_id: Some(77),
                files: vec![file("progress.json", 40, &[b"e"])],
            }],
        }],
        dir_meta: Vec::new(),
        session: None,
        task_refs: Vec::new(),
    }
}

/// [`fixed`] as this rbk writes it: owners and directory entries (format version 2).
fn fixed_v2() -> Manifest {
    let mut m = fixed();
    let owner = Some(Owner {
        uid: 1000,
        gid: 100,
    });
    for f in &mut m.module_files {
        f.owner = owner;
    }
    m.dir_meta = vec![
        DirMeta {
            path: String::new(),
            mode: 0o750,
            owner,
        },
        DirMeta {
            path: "tasks/1/pstates/balances".into(),
            mode: 0o700,
            owner: None,
        },
    ];
    m.session = Some("1733110000000-5c0f7d1e9a2b3c4d".into());
    m
}

/// Manifests written by rbk before format version 2 still decode, to the same content.
#[test]
fn manifest_v1_still_decodes() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/golden/manifest-v1.bin"
    );
    let golden = std::fs::read(path).expect("golden v1 manifest present");
    assert_eq!(&golden[8..12], &1u32.to_le_bytes());
    assert_eq!(decode_inline(&golden), fixed());
}

#[test]
fn manifest_v2_encoding_is_stable() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../testdata/golden/manifest-v2.bin"
    );
    let bytes = fixed_v2().encode();
    if std::env::var_os("RBK_BLESS").is_some() {
        std::fs::write(path, &bytes).unwrap();
    }
    let golden = std::fs::read(path).expect("golden manifest present (RBK_BLESS=1 writes it)");
    assert_eq!(bytes, golden, "manifest encoding changed");
    assert_eq!(decode_inline(&golden), fixed_v2());
}

fn decode_inline(bytes: &[u8]) -> Manifest {
    ManifestObject::decode("golden", bytes)
        .unwrap()
        .into_inline()
        .expect("tasks inline")
}

/// `fixed_v2` with its tasks in task objects (each one piece, as the chunker cuts an object
/// this small), and those objects.
fn fixed_v3() -> (Manifest, Vec<Vec<u8>>) {
    let mut m = fixed_v2();
    let objects: Vec<Vec<u8>> = m.tasks.iter().map(TaskEntry::encode_object).collect();
    m.task_refs = m
        .tasks
        .iter()
        .zip(&objects)
        .map(|(t, o)| t.reference(o, vec![ChunkId::of(o)]))
        .collect();
    (m, objects)
}

/// Version 3 manifests and task objects: stable bytes, and they resolve to the manifest.
#[test]
fn manifest_v3_and_task_object_encodings_are_stable() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/golden");
    let (m, objects) = fixed_v3();
    let files = [
        ("manifest-v3.bin", m.encode()),
        ("task-object-v1.bin", objects[0].clone()),
    ];
    for (name, bytes) in &files {
        let path = format!("{dir}/{name}");
        if std::env::var_os("RBK_BLESS").is_some() {
            std::fs::write(&path, bytes).unwrap();
        }
        let golden = std::fs::read(&path).expect("golden file present (RBK_BLESS=1 writes it)");
        assert_eq!(*bytes, golden, "{name}: encoding changed");
    }
    assert_eq!(&files[0].1[8..12], &3u32.to_le_bytes());
    let object = ManifestObject::decode("golden", &files[0].1).unwrap();
    let objs: Vec<&[u8]> = objects.iter().map(Vec::as_slice).collect();
    assert_eq!(object.resolve("golden", &objs).unwrap(), m);
}
