//! Task objects (store format version 5): each task of a backup is an object of its own,
//! stored as chunks and referenced from the manifest by hash and pieces.

use std::sync::Arc;

use rbk_chunkstore::keys::pack as pack_key;
use rbk_engine::manifest::{INLINE_VERSION, Manifest, TaskRef, VERSION};
use rbk_engine::ops::gc::{self, GcOptions};
use rbk_engine::ops::restore::{self, RestoreOptions};
use rbk_engine::ops::verify::{ReadData, verify};
use rbk_engine::ops::{backup, info, stats};
use rbk_engine::{Error, NoProgress, Repo, repo};

use crate::common::{Env, MODULE, digest, store_listing};

/// The raw manifest object of `id` in the local store.
fn manifest_bytes(env: &Env, id: &rbk_engine::BackupId) -> Vec<u8> {
    std::fs::read(env.store.join(repo::manifest_key(id))).unwrap()
}

fn task_ref(m: &Manifest, task: u32) -> &TaskRef {
    m.task_refs.iter().find(|r| r.task == task).unwrap()
}

/// Adds a file of random bytes to the first PState of `task`.
fn change_task(env: &Env, task: u32, seed: u64) {
    use rand::{RngCore, SeedableRng};
    let pstates = env.module().join(format!("tasks/{task}/pstates"));
    let pstate = std::fs::read_dir(&pstates)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut body = vec![0u8; 300_000];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut body);
    std::fs::write(pstate.join("extra.blob"), body).unwrap();
}

#[test]
fn an_unchanged_task_costs_no_new_object_and_each_backup_restores() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let before = digest(&env.module());
    let first = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    change_task(&env, 2, 1);
    let after = digest(&env.module());
    let second = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();

    assert_eq!(
        u32::from_le_bytes(
            manifest_bytes(&env, &second.backup_id)[8..12]
                .try_into()
                .unwrap()
        ),
        VERSION
    );
    let m1 = repo.load_manifest(&first.backup_id).unwrap();
    let m2 = repo.load_manifest(&second.backup_id).unwrap();
    assert_eq!(m2.task_refs.len(), 4);
    for task in [0, 1, 3] {
        assert_eq!(task_ref(&m1, task), task_ref(&m2, task), "task {task}");
    }
    let changed = task_ref(&m2, 2);
    assert_ne!(changed.hash, task_ref(&m1, 2).hash);
    // What the second backup stored: the new file's chunks and task 2's new object, one
    // piece (small objects are one chunk), nothing for the other tasks.
    assert_eq!(changed.pieces.len(), 1);
    let extra = m2
        .files()
        .into_iter()
        .find(|(p, _)| p.ends_with("/extra.blob"))
        .unwrap()
        .1
        .chunks
        .len() as u64;
    assert_eq!(second.stats.new_chunks, extra + 1);

    // The manifest holds the tasks in brief: smaller than the same manifest with them inline.
    let mut inline = m2.clone();
    inline.task_refs.clear();
    let (stored_len, inline_len) = (m2.encode().len(), inline.encode().len());
    assert!(stored_len * 2 < inline_len, "{stored_len} vs {inline_len}");

    assert_eq!(digest(&env.restore_fresh(&first.backup_id, "one")), before);
    assert_eq!(digest(&env.restore_fresh(&second.backup_id, "two")), after);
}

/// A view of the store (no local index, as the backups page has) describes a backup from
/// its manifest alone, the same as `info` with the index.
#[test]
fn a_view_describes_a_backup_without_reading_its_task_objects() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let full = info::info(&repo, &b.backup_id).unwrap();
    let view = Repo::open_view(env.provider()).unwrap();
    let brief = info::info_without_index(&view, &b.backup_id).unwrap();
    assert_eq!(brief.manifest.summaries(), full.manifest.summaries());
    assert_eq!(brief.manifest.task_ids(), [0, 1, 2, 3]);
    assert_eq!(
        (brief.files, brief.logical_bytes, brief.added_bytes),
        (full.files, full.logical_bytes, full.added_bytes)
    );
    assert_eq!(brief.unique_chunks, None);
    // What needs the task objects needs the index.
    let e = view.load_manifest(&b.backup_id).unwrap_err();
    assert_eq!(e.kind(), rbk_engine::ErrorKind::Database, "{e}");
}

/// A task object whose piece is damaged: restore refuses the backup naming the task,
/// verify reports it, and GC deletes nothing, since it cannot know what the task references.
#[test]
fn a_damaged_task_object_fails_restore_and_verify_and_stops_gc() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let old = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    change_task(&env, 1, 2);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let m = repo.load_manifest(&b.backup_id).unwrap();
    let piece = task_ref(&m, 1).pieces[0];
    let loc = repo.store().locate(&piece).unwrap();
    let path = env.store.join(pack_key(&loc.pack));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[loc.offset as usize + loc.stored_len as usize / 2] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();

    let target = env.scratch("restored");
    let e = restore::restore(
        &env.repo_for(&target),
        &target,
        &b.backup_id,
        RestoreOptions::default(),
        &NoProgress,
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::CorruptManifest { detail, .. }
            if detail.starts_with("the object of task 1 cannot be read: corrupt chunk")),
        "{e}"
    );
    assert!(!rbk_engine::layout::module_dir(&target, MODULE).exists());
    // A restore of other tasks reads only their objects, and succeeds.
    let some = env.scratch("some");
    let r = restore::restore_selected(
        &env.repo_for(&some),
        &some,
        &b.backup_id,
        RestoreOptions::default(),
        &restore::Selection::Tasks([0, 2].into()),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(r.tasks, [0, 2]);

    // Verify names the task; the other tasks' files are checked, and found intact.
    let r = verify(&repo, &[], ReadData::All, &NoProgress).unwrap();
    assert_eq!(r.damaged_backups(), vec![&b.backup_id]);
    assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
    let p = &r.problems[0];
    assert_eq!((p.task, p.object.as_str()), (Some(1), "task object"));
    assert!(p.detail.contains("corrupt chunk"), "{p}");
    assert!(!p.detail.contains("rbk verify"), "{p}");
    let others: usize = m
        .tasks
        .iter()
        .filter(|t| t.task != 1)
        .map(|t| t.files().len())
        .sum();
    let old_files = repo.load_manifest(&old.backup_id).unwrap().files().len();
    assert_eq!(r.files as usize, old_files + m.module_files.len() + others);

    // Deleting the older backup would free chunks; GC must free none.
    gc::delete_backup(&repo, &old.backup_id).unwrap();
    let listing = store_listing(&env.store);
    let e = gc::gc(&repo, &env.data, &GcOptions::default(), &NoProgress).unwrap_err();
    assert!(
        matches!(&e, Error::CorruptManifest { detail, .. } if detail.contains("deletes nothing")),
        "{e}"
    );
    let packs = |l: &std::collections::BTreeMap<String, [u8; 32]>| -> Vec<String> {
        l.keys()
            .filter(|k| k.starts_with("packs/"))
            .cloned()
            .collect()
    };
    assert_eq!(packs(&store_listing(&env.store)), packs(&listing));
}

/// Stores made before task objects (format version 4 and older) get manifests with their
/// tasks inline, which the rbk that made them reads; everything works on them as before.
#[test]
fn a_version_4_store_keeps_tasks_inline() {
    let env = Env::new(4);
    std::fs::create_dir_all(&env.store).unwrap();
    let mut config = rbk_chunkstore::StoreConfig::new_random();
    config.version = 4;
    std::fs::write(
        env.store.join("config"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    let repo = env.repo_for(&env.data);
    let before = digest(&env.module());
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let bytes = manifest_bytes(&env, &b.backup_id);
    assert_eq!(
        u32::from_le_bytes(bytes[8..12].try_into().unwrap()),
        INLINE_VERSION
    );
    assert!(
        repo.load_manifest(&b.backup_id)
            .unwrap()
            .task_refs
            .is_empty()
    );
    let s = stats::stats(&repo, &stats::Scope::Store, &NoProgress).unwrap();
    assert_eq!(s.kinds["task_objects"].unique_chunks, 0);
    assert_eq!(s.garbage_bytes, Some(0));
    assert_eq!(digest(&env.restore_fresh(&b.backup_id, "r")), before);
    let view = Repo::open_view(Arc::new(rbk_chunkstore::provider::LocalProvider::new(
        &env.store,
    )))
    .unwrap();
    let brief = info::info_without_index(&view, &b.backup_id).unwrap();
    assert!(brief.unique_chunks.is_some());
}
