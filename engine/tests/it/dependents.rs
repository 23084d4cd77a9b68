//! Restores of modules that other modules read: refused when they would take away what
//! another module depends on, and followed by offsets clamped into the restored depots in
//! both directions. The modules are written by hand, exactly as the layout contract says.

use std::path::PathBuf;

use rbk_chunkstore::provider::LocalProvider;
use rbk_engine::depot::{frame, partition_bounds, segment_name};
use rbk_engine::layout::epochs::{self, OffsetReset};
use rbk_engine::layout::module_dir;
use rbk_engine::ops::{backup, restore};
use rbk_engine::{BackupId, ErrorKind, NoProgress, Repo, repo};
use serde_json::{Value, json};

use crate::common::digest;

const A: &str = "com.mycompany.ModuleA";
const B: &str = "com.mycompany.ModuleB";

struct Dir {
    tmp: tempfile::TempDir,
    data: PathBuf,
    repo: Repo,
}

impl Dir {
    fn new() -> Dir {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        std::fs::create_dir_all(data.join("modules")).unwrap();
        let provider = std::sync::Arc::new(LocalProvider::new(tmp.path().join("store")));
        let repo = Repo::open(provider, &repo::index_root(&data), true).unwrap();
        Dir { tmp, data, repo }
    }

    fn module(&self, name: &str) -> PathBuf {
        module_dir(&self.data, name)
    }

    /// A module (replacing one of that name) with `depots` (each partition empty) and
    /// `pstates`, reading `subscribes`
    /// (`M/*d` for other modules' depots) in topology `core`, with `dependencies`.
    fn write_module(
        &self,
        name: &str,
        tasks: u32,
        depots: &[&str],
        pstates: &[&str],
        subscribes: &[&str],
        dependencies: Value,
    ) {
        let dir = self.module(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let meta = json!({
            "name": name,
            "tasks": tasks,
            "depots": depots.iter().map(|d| json!({"name": format!("*{d}")})).collect::<Vec<_>>(),
            "pstates": pstates.iter().map(|p| json!({"name": format!("$${p}"), "topology": "core"})).collect::<Vec<_>>(),
            "topologies": [{"name": "core", "kind": "stream", "subscribes": subscribes}],
            "dependencies": dependencies,
        });
        std::fs::write(dir.join("module.json"), meta.to_string()).unwrap();
        std::fs::write(dir.join("module.jar"), b"jar").unwrap();
        std::fs::write(dir.join("config-overrides.json"), b"{}").unwrap();
        std::fs::write(dir.join("dynamic-options.json"), b"{}").unwrap();
        for t in 0..tasks {
            for d in depots {
                self.set_depot(name, t, d, 0, 0);
            }
            for p in pstates {
                let p = dir.join(format!("tasks/{t}/pstates/{p}"));
                std::fs::create_dir_all(&p).unwrap();
                std::fs::write(p.join("CURRENT"), b"MANIFEST-000001\n").unwrap();
            }
            self.set_progress(name, t, json!({}));
        }
    }

    /// Makes partition `task` of `depot` hold records `start..end` (one segment).
    fn set_depot(&self, module: &str, task: u32, depot: &str, start: u64, end: u64) {
        let dir = self
            .module(module)
            .join(format!("tasks/{task}/depots/{depot}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut seg = Vec::new();
        for i in start..end {
            seg.extend(frame(format!("{module} record {i}").as_bytes()));
        }
        std::fs::write(dir.join(segment_name(start)), seg).unwrap();
    }

    fn depot_bounds(&self, module: &str, task: u32, depot: &str) -> (u64, u64) {
        partition_bounds(
            &self
                .module(module)
                .join(format!("tasks/{task}/depots/{depot}")),
        )
        .unwrap()
    }

    fn progress_path(&self, module: &str, task: u32) -> PathBuf {
        self.module(module)
            .join(format!("tasks/{task}/topologies/core/progress.json"))
    }

    fn set_progress(&self, module: &str, task: u32, processed: Value) {
        let path = self.progress_path(module, task);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let v = json!({"commit_id": 0, "processed": processed});
        std::fs::write(path, v.to_string()).unwrap();
    }

    fn processed(&self, module: &str, task: u32, key: &str) -> u64 {
        let v: Value =
            serde_json::from_slice(&std::fs::read(self.progress_path(module, task)).unwrap())
                .unwrap();
        v["processed"][key].as_u64().unwrap()
    }

    fn backup(&self, module: &str) -> BackupId {
        backup::backup(&self.repo, &self.data, module, &NoProgress)
            .unwrap()
            .backup_id
    }

    fn restore(
        &self,
        id: &BackupId,
        opts: restore::RestoreOptions,
    ) -> rbk_engine::Result<restore::RestoreReport> {
        restore::restore(&self.repo, &self.data, id, opts, &NoProgress)
    }

    fn backups(&self, module: &str) -> usize {
        self.repo.backup_ids(module).unwrap().len()
    }
}

fn force() -> restore::RestoreOptions {
    restore::RestoreOptions {
        force: true,
        ..Default::default()
    }
}

fn reset(module: &str, task: u32, depot: &str, from: u64, to: u64) -> OffsetReset {
    OffsetReset {
        module: module.into(),
        task,
        topology: "core".into(),
        depot: depot.into(),
        from,
        to,
    }
}

#[test]
fn a_reader_past_the_restored_end_of_a_depot_is_reset_to_it() {
    let d = Dir::new();
    // A: 2 tasks; B: 4 tasks, so B's task t reads A's partition t mod 2.
    d.write_module(A, 2, &["depot"], &[], &["*depot"], json!([]));
    d.write_module(
        B,
        4,
        &[],
        &["view"],
        &["com.mycompany.ModuleA/*depot"],
        json!([{"module": A, "depot": "*depot"}]),
    );
    d.set_depot(A, 0, "depot", 0, 107);
    d.set_depot(A, 1, "depot", 0, 40);
    let at_107 = d.backup(A);
    let backed_up = digest(&d.module(A));
    d.set_depot(A, 0, "depot", 0, 205);
    d.set_depot(A, 1, "depot", 0, 60);
    let key = "com.mycompany.ModuleA/*depot";
    // Task 0 and 2 read partition 0 (205 and 150 processed), tasks 1 and 3 partition 1.
    for (t, n) in [(0, 205), (1, 60), (2, 150), (3, 30)] {
        d.set_progress(B, t, json!({ key: n }));
    }

    let r = d.restore(&at_107, force()).unwrap();
    assert_eq!(
        r.resets,
        [
            reset(B, 0, key, 205, 107),
            reset(B, 1, key, 60, 40),
            reset(B, 2, key, 150, 107)
        ]
    );
    assert_eq!(
        [0, 1, 2, 3].map(|t| d.processed(B, t, key)),
        [107, 40, 107, 30]
    );
    // The restored module is exactly its backup; the epoch is recorded beside it.
    assert_eq!(digest(&d.module(A)), backed_up);
    let log = epochs::read(&d.data, A).unwrap();
    let e = log.latest().unwrap();
    assert_eq!(
        (e.epoch, e.backup_id.as_str()),
        (1, at_107.to_string().as_str())
    );
    assert_eq!(e.depots["*depot"], vec![[0, 107], [0, 40]]);
    assert_eq!(e.resets, r.resets);
    assert_eq!(r.epoch, 1);

    // The next entry appended to A's partition 0 gets offset 107: exactly where B goes on.
    assert_eq!(d.depot_bounds(A, 0, "depot"), (0, 107));
    let mut w =
        rbk_engine::depot::DepotWriter::open(&d.module(A).join("tasks/0/depots/depot"), 1 << 20)
            .unwrap();
    assert_eq!(w.append(b"new entry").unwrap(), 107);
    assert_eq!(d.processed(B, 0, key), 107);
}

#[test]
fn a_restored_reader_is_reset_to_the_current_end_of_the_depot_it_reads() {
    let d = Dir::new();
    const C: &str = "com.mycompany.ModuleC";
    d.write_module(C, 1, &["d"], &[], &[], json!([]));
    d.write_module(A, 1, &[], &["p"], &["com.mycompany.ModuleC/*d"], json!([]));
    let key = "com.mycompany.ModuleC/*d";
    d.set_depot(C, 0, "d", 0, 50);
    let c_at_50 = d.backup(C);
    d.set_depot(C, 0, "d", 0, 80);
    d.set_progress(A, 0, json!({ key: 80 }));
    let a_at_80 = d.backup(A);

    // C goes back to 50 entries: A, its reader, is reset with it.
    let r = d.restore(&c_at_50, force()).unwrap();
    assert_eq!(r.resets, [reset(A, 0, key, 80, 50)]);
    assert_eq!(d.processed(A, 0, key), 50);
    // A is restored to a backup taken when C had 80: its restored offset is past C's end.
    let r = d.restore(&a_at_80, force()).unwrap();
    assert_eq!(r.resets, [reset(A, 0, key, 80, 50)]);
    assert_eq!(d.processed(A, 0, key), 50);
    // And an offset below the start of a trimmed partition is raised to it.
    d.set_depot(C, 0, "d", 60, 90);
    d.set_progress(A, 0, json!({ key: 10 }));
    let a_at_10 = d.backup(A);
    let r = d.restore(&a_at_10, force()).unwrap();
    assert_eq!(r.resets, [reset(A, 0, key, 10, 60)]);
}

#[test]
fn a_restore_that_removes_what_another_module_needs_is_refused_and_changes_nothing() {
    let d = Dir::new();
    const D: &str = "com.mycompany.ModuleD";
    const E: &str = "com.mycompany.ModuleE";
    d.write_module(D, 2, &["events"], &[], &["*events"], json!([]));
    let without_p = d.backup(D);
    d.write_module(D, 2, &[], &["p"], &[], json!([]));
    let without_events = d.backup(D);
    d.write_module(D, 2, &["events"], &["p"], &["*events"], json!([]));
    d.set_depot(D, 1, "events", 0, 9);
    d.write_module(
        E,
        1,
        &[],
        &["q"],
        &["com.mycompany.ModuleD/*events"],
        json!([{"module": D, "pstate": "$$p"}, {"module": D, "depot": "*events"}]),
    );
    let before = (digest(&d.module(D)), digest(&d.module(E)), d.backups(D));
    for (id, object) in [(&without_p, "$$p"), (&without_events, "*events")] {
        let opts = restore::RestoreOptions {
            undo_backup: true,
            ..force()
        };
        let e = d.restore(id, opts).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(
            matches!(
                &e,
                rbk_engine::Error::DependencyBroken { dependent, object: o, backup_id, .. }
                    if dependent == E && o == object && backup_id == &id.to_string()
            ),
            "{e}"
        );
        let msg = e.to_string();
        for needle in [E, object, &id.to_string(), "--ignore-dependencies"] {
            assert!(msg.contains(needle), "{needle}: {msg}");
        }
        assert_eq!(
            (digest(&d.module(D)), digest(&d.module(E)), d.backups(D)),
            before
        );
        assert!(!epochs::epochs_path(&d.data, D).exists());
    }
    // Overridden on request: E then reads a partition that is gone, and is reset to 0.
    let opts = restore::RestoreOptions {
        ignore_dependencies: true,
        ..force()
    };
    d.set_progress(E, 0, json!({"com.mycompany.ModuleD/*events": 5}));
    let r = d.restore(&without_events, opts).unwrap();
    assert_eq!(
        r.resets,
        [reset(E, 0, "com.mycompany.ModuleD/*events", 5, 0)]
    );
}

#[test]
fn modules_that_are_not_in_the_data_dir_are_neither_dependents_nor_measured() {
    let d = Dir::new();
    const GONE: &str = "com.mycompany.Gone";
    // A depends on a module that is not here, and reads its depot.
    d.write_module(
        A,
        1,
        &["depot"],
        &[],
        &["com.mycompany.Gone/*d"],
        json!([{"module": GONE, "depot": "*d"}]),
    );
    d.set_progress(A, 0, json!({"com.mycompany.Gone/*d": 77}));
    let id = d.backup(A);
    // B depends on A's PState $$missing, which A never had; B is then removed.
    d.write_module(
        B,
        1,
        &[],
        &[],
        &[],
        json!([{"module": A, "pstate": "$$missing"}]),
    );
    assert_eq!(
        d.restore(&id, force()).unwrap_err().kind(),
        ErrorKind::InvalidInput
    );
    std::fs::remove_dir_all(d.module(B)).unwrap();
    let r = d.restore(&id, force()).unwrap();
    assert!(r.resets.is_empty());
    assert_eq!(d.processed(A, 0, "com.mycompany.Gone/*d"), 77);
}

#[test]
fn bad_dependencies_and_progress_keys_are_clear_errors_before_anything_changes() {
    let d = Dir::new();
    d.write_module(A, 1, &["depot"], &[], &[], json!([]));
    d.set_depot(A, 0, "depot", 0, 3);
    let id = d.backup(A);
    let before = digest(&d.module(A));
    for (deps, progress, needle) in [
        (
            json!([{"module": "", "depot": "*d"}]),
            json!({}),
            "dependencies[0]",
        ),
        (
            json!([{"module": A, "depot": "depot"}]),
            json!({}),
            "depot name",
        ),
        (json!({}), json!({}), "not a list"),
        (
            json!([{"module": A, "depot": "*depot"}]),
            json!({"com.mycompany.ModuleA/depot": 1}),
            "processed key",
        ),
        (
            json!([{"module": A, "depot": "*depot"}]),
            json!({"com.mycompany.ModuleA/*depot": "x"}),
            "whole number",
        ),
    ] {
        d.write_module(B, 1, &[], &[], &[], deps.clone());
        d.set_progress(B, 0, progress.clone());
        let e = d.restore(&id, force()).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{deps} {progress}: {e}");
        let msg = e.to_string();
        assert!(msg.contains(needle), "{needle}: {msg}");
        assert!(msg.contains(B), "names the module: {msg}");
        assert_eq!(digest(&d.module(A)), before);
    }
    // A module that does not read A cannot stop its restore, whatever its progress holds.
    d.write_module(B, 1, &[], &[], &[], json!([]));
    std::fs::write(d.progress_path(B, 0), b"{not json").unwrap();
    d.restore(&id, force()).unwrap();
}

#[test]
fn a_restore_is_undone_by_restoring_its_undo_backup() {
    let d = Dir::new();
    d.write_module(A, 1, &["depot"], &["p"], &["*depot"], json!([]));
    d.write_module(
        B,
        1,
        &[],
        &[],
        &["com.mycompany.ModuleA/*depot"],
        json!([{"module": A, "depot": "*depot"}]),
    );
    let key = "com.mycompany.ModuleA/*depot";
    d.set_depot(A, 0, "depot", 0, 20);
    let old = d.backup(A);
    d.set_depot(A, 0, "depot", 0, 30);
    std::fs::write(
        d.module(A).join("tasks/0/pstates/p/000009.sst"),
        b"newer state",
    )
    .unwrap();
    d.set_progress(B, 0, json!({ key: 30 }));
    let current = digest(&d.module(A));

    let undo_opts = restore::RestoreOptions {
        undo_backup: true,
        ..force()
    };
    let r = d.restore(&old, undo_opts).unwrap();
    let undo = r.undo_backup_id.clone().expect("an undo backup");
    assert_eq!(d.processed(B, 0, key), 20);
    assert_eq!(
        epochs::read(&d.data, A)
            .unwrap()
            .latest()
            .unwrap()
            .undo_backup_id,
        Some(undo.to_string())
    );
    // Undone: A is back byte for byte; B's offset (20) is consistent with A's 30 entries and
    // is left alone.
    let r = d.restore(&undo, force()).unwrap();
    assert!(r.resets.is_empty());
    assert_eq!(r.epoch, 2);
    assert_eq!(digest(&d.module(A)), current);
    assert_eq!(d.processed(B, 0, key), 20);
    // Without a current state there is nothing to keep, and no undo backup is made.
    let fresh = d.tmp.path().join("fresh");
    let r = restore::restore(
        &Repo::open(
            std::sync::Arc::new(LocalProvider::new(d.tmp.path().join("store"))),
            &repo::index_root(&fresh),
            false,
        )
        .unwrap(),
        &fresh,
        &old,
        restore::RestoreOptions {
            undo_backup: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert_eq!(r.undo_backup_id, None);
}
