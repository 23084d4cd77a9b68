//! `verify`: what it finds, what it reads, and how it names what is broken.

use std::collections::HashSet;
use std::sync::Arc;

use crate::common::{Env, MODULE, store_listing};
use rbk_chunkstore::keys::pack as pack_key;
use rbk_chunkstore::provider::Provider;
use rbk_chunkstore::{ChunkId, PackId};
use rbk_engine::ops::backup;
use rbk_engine::ops::verify::{ReadData, repair_index, verify};
use rbk_engine::{BackupId, NoProgress, Repo, repo, testdata};

fn two_backups(env: &Env, repo: &Repo) -> (BackupId, BackupId) {
    let b0 = backup::backup(repo, &env.data, MODULE, &NoProgress).unwrap();
    testdata::advance(&env.data, MODULE, 10).unwrap();
    let b1 = backup::backup(repo, &env.data, MODULE, &NoProgress).unwrap();
    (b0.backup_id, b1.backup_id)
}

/// Distinct pieces of the backups' task objects, which loading a manifest reads.
fn distinct_pieces(repo: &Repo, ids: &[BackupId]) -> HashSet<ChunkId> {
    let mut out = HashSet::new();
    for id in ids {
        let m = repo.load_manifest(id).unwrap();
        out.extend(m.task_refs.iter().flat_map(|r| r.pieces.iter().copied()));
    }
    out
}

fn distinct_chunks(repo: &Repo, ids: &[BackupId]) -> HashSet<ChunkId> {
    let mut out = HashSet::new();
    for id in ids {
        out.extend(repo.load_manifest(id).unwrap().chunk_ids().copied());
    }
    out
}

/// The first chunk of `module.jar` in backup `id`.
fn first_jar_chunk(repo: &Repo, id: &BackupId) -> ChunkId {
    let m = repo.load_manifest(id).unwrap();
    let jar = m.module_files.iter().find(|f| f.path == "module.jar");
    jar.unwrap().chunks[0]
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Runtime::new().unwrap()
}

#[test]
fn a_healthy_store_verifies_clean_and_read_data_reads_every_distinct_chunk() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let (b0, b1) = two_backups(&env, &repo);
    let distinct = distinct_chunks(&repo, &[b0.clone(), b1.clone()]).len() as u64;
    let pieces = distinct_pieces(&repo, &[b0.clone(), b1.clone()]).len() as u64;
    // Four tasks, each changed by the second backup.
    assert_eq!(pieces, 8);
    let listing = store_listing(&env.store);

    // The task objects are read whatever is asked: they say which chunks to check.
    let r = verify(&repo, &[], ReadData::None, &NoProgress).unwrap();
    assert_eq!((r.backups, r.chunks, r.chunks_read), (2, distinct, pieces));
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let full = verify(&repo, &[], ReadData::All, &NoProgress).unwrap();
    assert_eq!(full.chunks_read, distinct);
    assert!(full.bytes_read > 0 && full.problems.is_empty());
    let none = verify(
        &repo,
        std::slice::from_ref(&b1),
        ReadData::Subset(0.0),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        (none.backups, none.chunks_read),
        (
            1,
            distinct_pieces(&repo, std::slice::from_ref(&b1)).len() as u64
        )
    );
    let all = verify(&repo, &[b1], ReadData::Subset(100.0), &NoProgress).unwrap();
    assert_eq!(all.chunks_read, all.chunks);
    // A sample of a quarter reads a share near it (each chunk drawn independently).
    let some = verify(&repo, &[b0], ReadData::Subset(25.0), &NoProgress).unwrap();
    assert!(
        some.chunks_read > 0 && some.chunks_read < some.chunks,
        "{some:?}"
    );
    // Verifying writes nothing that stays.
    assert_eq!(store_listing(&env.store), listing);
}

#[test]
fn a_missing_pack_is_reported_for_every_file_and_backup_it_breaks() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let (b0, b1) = two_backups(&env, &repo);
    // The pack holding the first chunk of the module jar, shared by both backups.
    let jar_chunk = first_jar_chunk(&repo, &b0);
    let pack = repo.store().locate(&jar_chunk).unwrap().pack;
    let p: Arc<dyn Provider> = env.provider();
    rt().block_on(p.delete(&pack_key(&pack))).unwrap();

    let r = verify(&repo, &[], ReadData::None, &NoProgress).unwrap();
    assert_eq!(r.damaged_backups(), vec![&b0, &b1]);
    let jar_problems: Vec<_> = r
        .problems
        .iter()
        .filter(|p| p.chunk == Some(jar_chunk))
        .collect();
    assert_eq!(jar_problems.len(), 2, "one per backup");
    for p in jar_problems {
        assert_eq!(
            (p.task, p.object.as_str(), p.file.as_str()),
            (None, "module", "module.jar")
        );
        assert!(p.detail.contains("no pack in the store holds it"), "{p}");
    }
    // Problems inside a task name the task and the object.
    for p in &r.problems {
        let known = [
            "module",
            "depot transfers",
            "pstate balances",
            "topology banking",
            "task object",
        ];
        assert!(known.contains(&p.object.as_str()), "{p}");
        assert_eq!(p.task.is_some(), p.object != "module", "{p}");
    }
}

#[test]
fn a_flipped_bit_is_found_only_by_reading_the_data() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let b = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let jar_chunk = first_jar_chunk(&repo, &b.backup_id);
    let loc = repo.store().locate(&jar_chunk).unwrap();
    let key = pack_key(&loc.pack);
    let path = env.store.join(&key);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[loc.offset as usize + loc.stored_len as usize / 2] ^= 0x10;
    std::fs::write(&path, &bytes).unwrap();

    let quick = verify(&repo, &[], ReadData::None, &NoProgress).unwrap();
    assert!(quick.problems.is_empty(), "existence check cannot see it");
    let full = verify(&repo, &[], ReadData::All, &NoProgress).unwrap();
    assert_eq!(full.problems.len(), 1, "{:?}", full.problems);
    let p = &full.problems[0];
    assert_eq!(p.chunk, Some(jar_chunk));
    assert_eq!(p.file, "module.jar");
    assert!(p.detail.starts_with("corrupt"), "{p}");
    // Every other chunk was still read and found intact.
    assert_eq!(full.chunks_read, full.chunks);
}

#[test]
fn a_corrupt_manifest_is_a_problem_of_that_backup_only() {
    let env = Env::new(3);
    let repo = env.repo_for(&env.data);
    let (b0, b1) = two_backups(&env, &repo);
    let path = env.store.join(repo::manifest_key(&b0));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[50] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let r = verify(&repo, &[], ReadData::None, &NoProgress).unwrap();
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].backup_id, b0);
    assert_eq!(r.problems[0].object, "manifest");
    assert!(
        r.problems[0].detail.contains("checksum"),
        "{}",
        r.problems[0]
    );
    let one = verify(&repo, &[b1], ReadData::All, &NoProgress).unwrap();
    assert!(one.problems.is_empty());
}

#[test]
fn repair_index_rebuilds_from_the_store_and_reports_damaged_trailers() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let (_, b1) = two_backups(&env, &repo);
    let packs_in_store = |env: &Env| -> HashSet<String> {
        store_listing(&env.store)
            .into_keys()
            .filter(|k| k.starts_with("packs/"))
            .collect()
    };
    let keys = packs_in_store(&env);
    // The index believes in a pack that does not exist.
    let bogus = PackId::of(b"no such pack");
    repo.store()
        .index_for_tests()
        .add_pack(&bogus, 100, &[])
        .unwrap();
    let r = repair_index(&repo).unwrap();
    assert_eq!(r.packs, keys.len());
    assert!(r.damaged.is_empty());
    let indexed: HashSet<String> = repo
        .store()
        .packs()
        .unwrap()
        .into_iter()
        .map(|(p, _)| pack_key(&p))
        .collect();
    assert_eq!(indexed, keys);

    // Truncate one pack's trailer: it is reported and left out; the rest is indexed.
    let victim = keys.iter().next().unwrap().clone();
    let path = env.store.join(&victim);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let r = repair_index(&repo).unwrap();
    assert_eq!(r.damaged.len(), 1);
    assert_eq!(r.damaged[0].0, victim);
    assert_eq!(r.packs, keys.len() - 1);
    let before = verify(
        &repo,
        std::slice::from_ref(&b1),
        ReadData::None,
        &NoProgress,
    )
    .unwrap();
    assert!(
        !before.problems.is_empty(),
        "b1 points into the damaged pack"
    );
    // Backups still work: the chunks of the damaged pack are stored again, which heals b1.
    let b2 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(b2.stats.new_chunks > 0);
    for id in [&b2.backup_id, &b1] {
        let v = verify(&repo, std::slice::from_ref(id), ReadData::All, &NoProgress).unwrap();
        assert!(v.problems.is_empty(), "{id}: {:?}", v.problems);
    }
}

#[test]
fn a_backup_stores_again_what_a_vanished_pack_held_instead_of_trusting_the_index() {
    let env = Env::new(4);
    let repo = env.repo_for(&env.data);
    let b0 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let jar_chunk = first_jar_chunk(&repo, &b0.backup_id);
    let pack = repo.store().locate(&jar_chunk).unwrap().pack;
    // Deleted behind rbk's back; this machine's index still lists it.
    std::fs::remove_file(env.store.join(pack_key(&pack))).unwrap();
    assert!(repo.store().index_for_tests().has_pack(&pack).unwrap());
    let b1 = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(b1.stats.new_chunks > 0);
    assert!(b1.stats.files_reused < b1.stats.files);
    let v = verify(
        &repo,
        std::slice::from_ref(&b1.backup_id),
        ReadData::All,
        &NoProgress,
    )
    .unwrap();
    assert!(v.problems.is_empty(), "{:?}", v.problems);
    assert_eq!(
        crate::common::digest(&env.restore_fresh(&b1.backup_id, "restored")),
        crate::common::digest(&env.module())
    );
}
