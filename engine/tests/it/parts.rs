//! Backups in parts (docs/distributed.md): several data dirs, each with some tasks of one
//! module, back up into one pending backup that is committed once every task has a part;
//! GC between the parts and the commit loses nothing; a backup given up on is collected.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{Env, MODULE, digest};
use rbk_engine::layout::module_dir;
use rbk_engine::ops::backup::Source;
use rbk_engine::ops::gc::{self, GcOptions};
use rbk_engine::ops::{parts, restore};
use rbk_engine::{BackupId, Error, ErrorKind, NoProgress, Repo};

/// A data dir `name` holding the module's own files and the given tasks of `env`'s module.
fn worker_dir(env: &Env, name: &str, tasks: &[u32]) -> PathBuf {
    let data = env.scratch(name);
    let to = module_dir(&data, MODULE);
    std::fs::create_dir_all(to.join("tasks")).unwrap();
    for e in std::fs::read_dir(env.module()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    for t in tasks {
        rbk_testsupport::copy_tree(
            &env.module().join(format!("tasks/{t}")),
            &to.join(format!("tasks/{t}")),
        );
    }
    data
}

fn part(env: &Env, data: &Path, id: &BackupId) -> Vec<u32> {
    let repo = env.repo_for(data);
    let (r, _) = parts::part(&repo, data, id, Source::Files, &NoProgress).unwrap();
    r.tasks
}

fn begin(repo: &Repo, lease: Duration) -> BackupId {
    parts::begin(repo, MODULE, lease).unwrap().id
}

#[test]
fn parts_from_two_data_dirs_commit_once_complete_and_restore_the_whole_module() {
    let env = Env::new(6);
    // Task 1 is on both (a replica); identical replicas are stored once.
    let w0 = worker_dir(&env, "w0", &[0, 1]);
    let w1 = worker_dir(&env, "w1", &[1, 2, 3]);
    let id = begin(
        &env.repo_for(&env.scratch("coordinator")),
        parts::DEFAULT_LEASE,
    );

    assert_eq!(part(&env, &w0, &id), [0, 1]);
    let coordinator = env.repo_for(&env.scratch("coordinator"));
    let refused = parts::commit(&coordinator, &id).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::NotFound, "{refused}");
    assert!(
        matches!(&refused, Error::PartsMissing { missing, tasks: 4, parts: 1, .. } if missing == "2,3"),
        "{refused}"
    );
    assert!(coordinator.backup_ids(MODULE).unwrap().is_empty());

    assert_eq!(part(&env, &w1, &id), [1, 2, 3]);
    let done = parts::commit(&coordinator, &id).unwrap();
    assert_eq!((done.parts, done.tasks, done.replicated_tasks), (2, 4, 1));
    assert!(
        done.mixed_commit_ids.is_empty(),
        "{:?}",
        done.mixed_commit_ids
    );
    assert_eq!(
        coordinator.backup_ids(MODULE).unwrap(),
        std::slice::from_ref(&id)
    );
    // Committed: nothing of the pending backup is left, and it cannot be committed again.
    assert!(parts::list(&coordinator, None).unwrap().is_empty());
    assert!(
        coordinator
            .store()
            .sessions()
            .unwrap()
            .values()
            .all(|s| s.is_over())
    );
    let again = parts::commit(&coordinator, &id).unwrap_err();
    assert!(matches!(again, Error::PendingNotFound { .. }), "{again}");

    let restored = env.restore_fresh(&id, "fresh");
    assert_eq!(digest(&restored), digest(&env.module()));
}

#[test]
fn replicas_that_differ_are_refused_naming_both_parts() {
    let env = Env::new(4);
    let w0 = worker_dir(&env, "w0", &[0, 1, 2, 3]);
    let w1 = worker_dir(&env, "w1", &[2]);
    let progress = module_dir(&w1, MODULE).join("tasks/2/topologies/banking/progress.json");
    let text = std::fs::read_to_string(&progress).unwrap();
    std::fs::write(&progress, text.replace("\"commit_id\"", "\"commit_id\" ")).unwrap();
    let repo = env.repo_for(&env.scratch("coordinator"));
    let id = begin(&repo, parts::DEFAULT_LEASE);
    part(&env, &w0, &id);
    part(&env, &w1, &id);
    let pending = parts::load(&repo, &id).unwrap();
    let names: Vec<String> = parts::parts(&repo, &pending)
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    let e = parts::commit(&repo, &id).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let msg = e.to_string();
    assert!(msg.contains("task 2 differs"), "{msg}");
    assert!(
        msg.contains("tasks/2/topologies/banking/progress.json"),
        "{msg}"
    );
    for n in &names {
        assert!(msg.contains(n.as_str()), "{msg} should name {n}");
    }
    assert!(repo.backup_ids(MODULE).unwrap().is_empty());
}

#[test]
fn gc_between_the_parts_and_the_commit_loses_nothing() {
    let env = Env::new(6);
    let w0 = worker_dir(&env, "w0", &[0, 1]);
    let w1 = worker_dir(&env, "w1", &[2, 3]);
    let gc_dir = env.scratch("gc");
    std::fs::create_dir_all(&gc_dir).unwrap();
    let id = begin(&env.repo_for(&gc_dir), parts::DEFAULT_LEASE);
    part(&env, &w0, &id);
    part(&env, &w1, &id);

    // A GC that gives up at once on every silent session: the pending backup's own lease
    // (a day) keeps it held, and the parts' chunks are live.
    let repo = env.repo_for(&gc_dir);
    repo.store()
        .set_session_timing(rbk_chunkstore::session::SessionTiming {
            lease: Duration::ZERO,
            ..Default::default()
        });
    let report = gc::gc(&repo, &gc_dir, &GcOptions::default(), &NoProgress).unwrap();
    assert!(report.store.sessions_revoked.is_empty(), "{report:?}");
    assert_eq!(report.pending_held, 1);
    assert!(report.pending_deleted.is_empty());
    assert_eq!(report.store.packs_condemned, 0, "{report:?}");
    drop(repo);

    let repo = env.repo_for(&gc_dir);
    parts::commit(&repo, &id).unwrap();
    drop(repo);
    let restored = env.restore_fresh(&id, "fresh");
    assert_eq!(digest(&restored), digest(&env.module()));
}

#[test]
fn a_pending_backup_past_its_lease_is_given_up_and_its_parts_are_freed() {
    let env = Env::new(4);
    let w0 = worker_dir(&env, "w0", &[0, 1, 2, 3]);
    let gc_dir = env.scratch("gc");
    std::fs::create_dir_all(&gc_dir).unwrap();
    let id = begin(&env.repo_for(&gc_dir), Duration::from_secs(1));
    part(&env, &w0, &id);
    std::thread::sleep(Duration::from_millis(2100));

    let repo = env.repo_for(&gc_dir);
    repo.store()
        .set_session_timing(rbk_chunkstore::session::SessionTiming {
            lease: Duration::from_secs(1),
            ..Default::default()
        });
    let first = gc::gc(&repo, &gc_dir, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(first.store.sessions_revoked.len(), 1, "{first:?}");
    assert_eq!(first.pending_deleted, [id.to_string()]);
    assert!(parts::list(&repo, None).unwrap().is_empty());
    // What only the part referenced is garbage now.
    let second = gc::gc(&repo, &gc_dir, &GcOptions::default(), &NoProgress).unwrap();
    let (packs, _) = repo.store().pack_totals().unwrap();
    assert_eq!(packs, 0, "{first:?}\n{second:?}");

    let e = parts::commit(&repo, &id).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    drop(repo);
    // Writing a part of it is refused as well.
    let repo = env.repo_for(&w0);
    let e = parts::part(&repo, &w0, &id, Source::Files, &NoProgress).unwrap_err();
    assert!(matches!(e, Error::PendingNotFound { .. }), "{e}");
}

#[test]
fn a_commit_racing_a_revocation_is_refused() {
    let env = Env::new(4);
    let w0 = worker_dir(&env, "w0", &[0, 1, 2, 3]);
    let repo = env.repo_for(&env.scratch("c"));
    let id = begin(&repo, parts::DEFAULT_LEASE);
    drop(repo);
    part(&env, &w0, &id);
    let repo = env.repo_for(&env.scratch("c"));
    let pending = parts::load(&repo, &id).unwrap();
    // A GC declared it dead (e.g. `rbk gc --revoke`) after the parts were written.
    let gc_dir = env.scratch("c");
    gc::gc(
        &repo,
        &gc_dir,
        &GcOptions {
            revoke: vec![pending.session.clone()],
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    let e = parts::commit(&repo, &id).unwrap_err();
    assert!(
        matches!(
            e,
            Error::PendingGivenUp { .. } | Error::PendingNotFound { .. }
        ),
        "{e}"
    );
    assert!(repo.backup_ids(MODULE).unwrap().is_empty());
}

#[test]
fn an_aborted_pending_backup_leaves_nothing_and_the_next_one_commits() {
    let env = Env::new(4);
    let w0 = worker_dir(&env, "w0", &[0, 1]);
    let w1 = worker_dir(&env, "w1", &[2, 3]);
    let repo = env.repo_for(&env.scratch("c"));
    let first = begin(&repo, parts::DEFAULT_LEASE);
    drop(repo);
    part(&env, &w0, &first);
    let repo = env.repo_for(&env.scratch("c"));
    parts::abort(&repo, &first).unwrap();
    assert!(parts::list(&repo, None).unwrap().is_empty());
    assert!(
        repo.store()
            .sessions()
            .unwrap()
            .values()
            .all(|s| s.is_over())
    );
    let second = begin(&repo, parts::DEFAULT_LEASE);
    assert!(second > first);
    drop(repo);
    part(&env, &w0, &second);
    part(&env, &w1, &second);
    let repo = env.repo_for(&env.scratch("c"));
    parts::commit(&repo, &second).unwrap();
    assert_eq!(
        repo.backup_ids(MODULE).unwrap(),
        std::slice::from_ref(&second)
    );
    drop(repo);
    // Placed: only tasks 2 and 3, as a machine running them would restore them.
    let target = env.scratch("placed");
    restore::restore_selected(
        &env.repo_for(&target),
        &target,
        &second,
        restore::RestoreOptions::default(),
        &restore::Selection::Tasks([2, 3].into()),
        &NoProgress,
    )
    .unwrap();
    assert_eq!(
        digest(&module_dir(&target, MODULE)),
        digest(&module_dir(&w1, MODULE))
    );
}

#[test]
fn a_damaged_part_stops_gc_until_its_backup_is_aborted() {
    let env = Env::new(4);
    let w0 = worker_dir(&env, "w0", &[0, 1, 2, 3]);
    let gc_dir = env.scratch("gc");
    std::fs::create_dir_all(&gc_dir).unwrap();
    let id = begin(&env.repo_for(&gc_dir), parts::DEFAULT_LEASE);
    part(&env, &w0, &id);
    let key = rbk_chunkstore::keys::pending_part(MODULE, &id.to_string(), "damaged");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(
        env.provider()
            .put_if_absent(&key, bytes::Bytes::from_static(b"RBKMANIF not a part")),
    )
    .unwrap();
    let repo = env.repo_for(&gc_dir);
    // GC cannot know what the damaged part references: it deletes nothing.
    let before = crate::common::store_listing(&env.store);
    let e = gc::gc(&repo, &gc_dir, &GcOptions::default(), &NoProgress).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains(&key), "{e}");
    assert_eq!(crate::common::store_listing(&env.store), before);
    // The commit refuses it too; aborting the backup removes it, and GC runs again.
    let e = parts::commit(&repo, &id).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    parts::abort(&repo, &id).unwrap();
    let r = gc::gc(&repo, &gc_dir, &GcOptions::default(), &NoProgress).unwrap();
    assert_eq!(r.pending_held, 0);
    assert!(parts::list(&repo, None).unwrap().is_empty());
}
