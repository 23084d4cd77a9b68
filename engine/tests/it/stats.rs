//! `stats` and the per-backup "added to the store" figures, against what the store holds.

use std::path::Path;

use rbk_engine::NoProgress;
use rbk_engine::ops::gc::{self, GcOptions};
use rbk_engine::ops::stats::{KINDS, Scope, StoreStats, Totals, stats};
use rbk_engine::ops::{backup, info};
use rbk_engine::retention::PolicyOverride;
use rbk_engine::testdata;

use crate::common::{Env, MODULE};

fn sum<'a>(parts: impl Iterator<Item = &'a Totals>) -> Totals {
    parts.fold(Totals::default(), |a, t| Totals {
        logical_bytes: a.logical_bytes + t.logical_bytes,
        unique_chunks: a.unique_chunks + t.unique_chunks,
        unique_bytes: a.unique_bytes + t.unique_bytes,
        stored_bytes: a.stored_bytes + t.stored_bytes,
    })
}

/// Bytes of every pack file of a local store.
fn packs_on_disk(store: &Path) -> (u64, u64) {
    let (mut n, mut bytes) = (0, 0);
    for dir in std::fs::read_dir(store.join("packs")).unwrap() {
        for f in std::fs::read_dir(dir.unwrap().path()).unwrap() {
            n += 1;
            bytes += f.unwrap().metadata().unwrap().len();
        }
    }
    (n, bytes)
}

fn check_parts_add_up(s: &StoreStats) {
    assert_eq!(sum(s.kinds.values()), s.totals, "kinds add up: {s:?}");
    assert_eq!(sum(s.modules.values()), s.totals, "modules add up: {s:?}");
    assert_eq!(s.kinds.len(), KINDS.len());
}

#[test]
fn an_unchanged_module_backed_up_twice_doubles_logical_bytes_and_adds_only_a_manifest() {
    let env = Env::new(6);
    let repo = env.repo_for(&env.data);
    let first = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(first.added_raw_bytes > 0 && first.added_bytes > 0);
    let one = stats(&repo, &Scope::Store, &NoProgress).unwrap();
    let second = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let two = stats(&repo, &Scope::Store, &NoProgress).unwrap();

    // The second backup added its manifest and nothing else.
    let manifest = repo.load_manifest(&second.backup_id).unwrap().encode();
    assert_eq!(second.stats.new_chunks, 0);
    assert_eq!(second.added_raw_bytes, 0);
    assert_eq!(second.added_bytes, manifest.len() as u64);
    let i = info::info(&repo, &second.backup_id).unwrap();
    assert_eq!(i.added_bytes, second.added_bytes);

    assert_eq!(two.backups, 2);
    assert_eq!(two.totals.logical_bytes, 2 * one.totals.logical_bytes);
    assert_eq!(two.totals.unique_bytes, one.totals.unique_bytes);
    assert_eq!(two.totals.stored_bytes, one.totals.stored_bytes);
    assert_eq!(two.totals.unique_chunks, one.totals.unique_chunks);
    assert!((two.totals.dedup_ratio() - 2.0 * one.totals.dedup_ratio()).abs() < 1e-9);
    assert!(one.totals.compression_ratio() > 1.0, "{one:?}");
    check_parts_add_up(&two);
    // Every kind of file is there, and the task objects, which are stored but not restored.
    for k in &KINDS[..4] {
        assert!(two.kinds[k].logical_bytes > 0, "{k}: {two:?}");
    }
    let objects = two.kinds["task_objects"];
    assert_eq!(objects.logical_bytes, 0);
    // One object per task (4), the same in both backups.
    assert_eq!(objects.unique_chunks, 4, "{two:?}");

    // The store's bytes: what the backups need, plus garbage, plus pack headers and trailers.
    let (packs, pack_bytes) = packs_on_disk(&env.store);
    assert_eq!((two.packs, two.pack_bytes), (packs, pack_bytes));
    assert_eq!(two.garbage_bytes, Some(0));
    let overhead = pack_bytes - two.totals.stored_bytes;
    // A pack spends its header magic, salt and footer, and one trailer entry per chunk.
    use rbk_chunkstore::pack::{ENTRY_LEN, FOOTER_LEN, HEADER_MAGIC, SALT_LEN};
    assert_eq!(
        overhead,
        packs * (HEADER_MAGIC.len() + SALT_LEN + FOOTER_LEN) as u64
            + two.totals.unique_chunks * ENTRY_LEN as u64,
        "{two:?}"
    );
    assert_eq!(two.missing_chunks, 0);

    // One backup's figures are `info`'s.
    let b = stats(&repo, &Scope::Backup(second.backup_id.clone()), &NoProgress).unwrap();
    assert_eq!(
        (
            b.totals.logical_bytes,
            b.totals.stored_bytes,
            b.totals.unique_chunks
        ),
        (
            i.logical_bytes,
            i.stored_bytes.unwrap(),
            i.unique_chunks.unwrap()
        )
    );
    assert_eq!(b.garbage_bytes, None);
    let m = stats(&repo, &Scope::Module(MODULE.into()), &NoProgress).unwrap();
    assert_eq!(m.totals, two.totals);
}

#[test]
fn garbage_is_what_no_backup_needs_and_gc_frees_it() {
    let env = Env::new(6);
    let repo = env.repo_for(&env.data);
    backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    testdata::advance(&env.data, MODULE, 30).unwrap();
    let newer = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    assert!(newer.added_raw_bytes > 0);
    let before = stats(&repo, &Scope::Store, &NoProgress).unwrap();
    assert_eq!(before.garbage_bytes, Some(0));
    // Keep only the newest backup, without sweeping anything yet (a dry run deletes nothing,
    // so delete the old manifest by hand): what only it used is garbage now.
    let ids = repo.all_backup_ids().unwrap();
    gc::delete_backup(&repo, &ids[0]).unwrap();
    let after_delete = stats(&repo, &Scope::Store, &NoProgress).unwrap();
    let garbage = after_delete.garbage_bytes.unwrap();
    assert!(garbage > 0, "{after_delete:?}");
    assert_eq!(
        after_delete.totals.stored_bytes + garbage,
        before.totals.stored_bytes,
        "garbage is exactly the stored bytes only the deleted backup needed"
    );
    check_parts_add_up(&after_delete);
    // GC rewrites or deletes the packs that were mostly garbage.
    let opts = GcOptions {
        policy: PolicyOverride {
            max_age_hours: Some(0.0),
            min_keep: Some(1),
        },
        repack_threshold: 0.0,
        ..Default::default()
    };
    gc::gc(&repo, &env.data, &opts, &NoProgress).unwrap();
    let after_gc = stats(&repo, &Scope::Store, &NoProgress).unwrap();
    assert_eq!(after_gc.garbage_bytes, Some(0), "{after_gc:?}");
    assert_eq!(after_gc.totals, after_delete.totals);
}

#[test]
fn bench_dedup_predicts_what_real_backups_of_the_same_generations_store() {
    use rbk_chunkstore::chunker::ChunkerParams;
    use rbk_chunkstore::compress::DEFAULT_LEVEL;
    use rbk_engine::ops::predict::predict;

    let env = Env::new(6);
    let repo = env.repo_for(&env.data);
    let first = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let gen0 = env.scratch("gen0");
    rbk_testsupport::copy_tree(&env.module(), &gen0);
    testdata::advance(&env.data, MODULE, 20).unwrap();
    let second = backup::backup(&repo, &env.data, MODULE, &NoProgress).unwrap();
    let gen1 = env.scratch("gen1");
    rbk_testsupport::copy_tree(&env.module(), &gen1);
    let real = stats(&repo, &Scope::Store, &NoProgress).unwrap();

    let sweep = [
        ChunkerParams::default(),
        ChunkerParams {
            min_size: 32 << 10,
            avg_size: 128 << 10,
            max_size: 512 << 10,
        },
    ];
    let p = predict(&[gen0, gen1], &sweep, DEFAULT_LEVEL, &NoProgress).unwrap();
    assert_eq!(p.len(), 2);
    let within = |predicted: u64, actual: u64, what: &str| {
        let off = (predicted as f64 - actual as f64).abs() / actual as f64;
        assert!(
            off < 0.05,
            "{what}: predicted {predicted}, stored {actual} ({off:.3})"
        );
    };
    // With the store's settings: what the two backups stored, and what each added.
    let d = &p[0];
    assert_eq!(d.logical_bytes, real.totals.logical_bytes);
    within(d.stored_bytes, real.totals.stored_bytes, "stored");
    within(d.unique_bytes, real.totals.unique_bytes, "unique");
    within(
        d.added_per_generation[0],
        first.stats.new_stored_bytes,
        "first generation",
    );
    within(
        d.added_per_generation[1],
        second.stats.new_stored_bytes,
        "second generation",
    );
    assert!(d.dedup_ratio() > 1.5, "{d:?}");
    // Smaller chunks: more of them, and no fewer bytes deduplicated.
    assert!(p[1].chunks > d.chunks, "{p:?}");
    assert!(p[1].unique_bytes <= d.unique_bytes, "{p:?}");
}
