//! A module spread over several machines (docs/distributed.md), with real `rbk` processes,
//! each with its own data dir and local index, meeting in one Garage: parts written in
//! parallel, the commit refused until every task has a part, GC between the parts and the
//! commit, full / `--tasks` / placed restores, a worker killed in the middle of its part, a
//! Garage node killed in the middle of the backup, and `rbk serve` writing its part for a
//! `rbk backup --wait-parts` started on another machine.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use rbk_testsupport::Garage;

use crate::machine::{MODULE, Machine, digest};

/// The digest of the files of `dir` that a machine holding `tasks` has: the module's own
/// files and those tasks.
fn digest_of_tasks(dir: &Path, tasks: &[u32]) -> BTreeMap<String, [u8; 32]> {
    digest(dir)
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix("tasks/")
                .and_then(|r| r.split('/').next())
                .and_then(|t| t.parse::<u32>().ok())
                .is_none_or(|t| tasks.contains(&t))
        })
        .collect()
}

/// A cluster: the whole module generated in `source`, and one machine per worker holding
/// the module's files and the tasks `placement[i]`.
struct Cluster {
    source: Machine,
    workers: Vec<Machine>,
}

impl Cluster {
    fn new(
        provider: &str,
        env: &[(&'static str, String)],
        tasks: u32,
        placement: &[&[u32]],
    ) -> Cluster {
        let source = Machine::new(provider, env);
        source.ok(&[
            "testdata",
            "generate",
            "--size-mib",
            "8",
            "--tasks",
            &tasks.to_string(),
        ]);
        let workers = placement
            .iter()
            .map(|tasks| {
                let m = Machine::new(provider, env);
                let to = m.module();
                std::fs::create_dir_all(to.join("tasks")).unwrap();
                for e in std::fs::read_dir(source.module()).unwrap() {
                    let e = e.unwrap();
                    if e.file_type().unwrap().is_file() {
                        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
                    }
                }
                for t in *tasks {
                    rbk_testsupport::copy_tree(
                        &source.module().join(format!("tasks/{t}")),
                        &to.join(format!("tasks/{t}")),
                    );
                }
                m
            })
            .collect();
        Cluster { source, workers }
    }

    /// Runs `rbk backup part` on the given workers at once; returns their outputs.
    fn parts(&self, id: &str, which: &[usize]) -> Vec<Output> {
        let children: Vec<Child> = which
            .iter()
            .map(|i| self.workers[*i].spawn(&["backup", "part", "--backupId", id]))
            .collect();
        children
            .into_iter()
            .map(|c| c.wait_with_output().unwrap())
            .collect()
    }
}

fn assert_all_ok(outs: &[Output]) {
    for o in outs {
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn four_workers_back_up_in_parts_into_garage_and_restore_whole_by_task_and_placed() {
    let garage = Garage::start();
    let spec = garage.provider_spec("cluster");
    let env = garage.aws_env();
    // (T, W, R) = (8, 4, 1): worker i runs tasks i and i + 4.
    let c = Cluster::new(&spec, &env, 8, &[&[0, 4], &[1, 5], &[2, 6], &[3, 7]]);
    let coordinator = Machine::new(&spec, &env);
    let id = coordinator.ok(&["backup", "begin", "--module", MODULE]);

    // Three parts in parallel: the commit is refused, naming the missing tasks.
    assert_all_ok(&c.parts(&id, &[0, 1, 2]));
    let err = coordinator.fails(&["backup", "commit", "--backupId", &id], 3);
    assert!(err.contains("task(s) 3,7 of its 8"), "{err}");
    assert!(coordinator.ok(&["list", "--module", MODULE]).is_empty());
    let listed: serde_json::Value =
        serde_json::from_str(&coordinator.ok(&["list", "--module", MODULE, "--json"])).unwrap();
    assert_eq!(
        listed["pending"],
        serde_json::json!([{"backup_id": id, "parts": 3}])
    );

    // A GC from another machine between the parts and the commit loses nothing.
    let gc = coordinator.ok(&["gc", "--json"]);
    let gc: serde_json::Value = serde_json::from_str(&gc).unwrap();
    assert_eq!(gc["pending_held"], 1, "{gc}");
    assert_all_ok(&c.parts(&id, &[3]));
    assert_eq!(
        coordinator.ok(&["backup", "--action", "commit", "--backupId", &id]),
        id
    );
    let listed = coordinator.ok(&["list", "--module", MODULE]);
    assert!(listed.starts_with(&id), "{listed}");
    let listed: serde_json::Value =
        serde_json::from_str(&coordinator.ok(&["list", "--module", MODULE, "--json"])).unwrap();
    assert_eq!(listed["pending"], serde_json::json!([]));
    coordinator.ok(&["verify", "--read-data"]);

    // A fresh machine restores the whole module.
    let fresh = Machine::new(&spec, &env);
    fresh.ok(&["restore", "--backupId", &id]);
    assert_eq!(digest(&fresh.module()), digest(&c.source.module()));

    // `--tasks`: exactly those tasks, and the module's files.
    let some = Machine::new(&spec, &env);
    some.ok(&["restore", "--backupId", &id, "--tasks", "2,3"]);
    assert_eq!(
        digest(&some.module()),
        digest_of_tasks(&c.source.module(), &[2, 3])
    );

    // Placed, (8, 4, 1): worker 1 gets tasks 1 and 5; module.json records the settings.
    let placed = Machine::new(&spec, &env);
    placed.ok(&[
        "restore",
        "--backupId",
        &id,
        "--threads",
        "8",
        "--workers",
        "4",
        "--worker",
        "1",
    ]);
    let mut got = digest(&placed.module());
    let mut want = digest_of_tasks(&c.source.module(), &[1, 5]);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(placed.module().join("module.json")).unwrap())
            .unwrap();
    assert_eq!(
        (
            &json["threads"],
            &json["workers"],
            &json["replicationFactor"],
            &json["tasks"]
        ),
        (&8.into(), &4.into(), &1.into(), &8.into())
    );
    got.remove("module.json");
    want.remove("module.json");
    assert_eq!(got, want);

    // (4, 2, 2): two replicas on two workers: each worker holds every task.
    let replicated = Machine::new(&spec, &env);
    replicated.ok(&[
        "restore",
        "--backupId",
        &id,
        "--threads",
        "4",
        "--workers",
        "2",
        "--replicationFactor",
        "2",
        "--worker",
        "0",
    ]);
    let mut got = digest(&replicated.module());
    let mut want = digest(&c.source.module());
    got.remove("module.json");
    want.remove("module.json");
    assert_eq!(got, want);

    // Invalid settings: refused before anything is written.
    let refused = Machine::new(&spec, &env);
    for (args, needle) in [
        (
            vec!["--threads", "4", "--workers", "8", "--worker", "0"],
            "more than --threads",
        ),
        (
            vec!["--threads", "16", "--workers", "4", "--worker", "0"],
            "more than the backup's 8 tasks",
        ),
        (
            vec![
                "--threads",
                "4",
                "--workers",
                "2",
                "--replicationFactor",
                "3",
                "--worker",
                "0",
            ],
            "more than --workers",
        ),
        (
            vec!["--threads", "4", "--workers", "2", "--worker", "2"],
            "numbered 0..1",
        ),
        (vec!["--tasks", "8"], "has tasks 0..7"),
    ] {
        let mut all = vec!["restore", "--backupId", id.as_str()];
        all.extend(args);
        let err = refused.fails(&all, 2);
        assert!(err.contains(needle), "{err}");
        assert!(!refused.module().exists());
    }
    let err = refused.fails(&["restore", "--backupId", &id, "--threads", "4"], 2);
    assert!(err.contains("--worker"), "{err}");
}

#[test]
fn a_worker_killed_in_its_part_keeps_the_backup_from_committing_and_the_next_one_commits() {
    let mut garage = Garage::start_cluster(3);
    let spec = garage.provider_spec("killed");
    let env = garage.aws_env();
    let c = Cluster::new(&spec, &env, 4, &[&[0, 1], &[2, 3]]);
    let coordinator = Machine::new(&spec, &env);
    let id = coordinator.ok(&["backup", "begin", "--module", MODULE]);

    // Worker 1 is killed with SIGKILL once it has opened its index, while it begins its
    // session or writes its part; worker 0's part lands.
    let mut victim = c.workers[1].spawn(&["backup", "part", "--backupId", &id]);
    let survivor = c.workers[0].spawn(&["backup", "part", "--backupId", &id]);
    let index = c.workers[1].dir().join("data/.rbk/index");
    let started = Instant::now();
    while !index.exists() && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(2));
    }
    victim.kill().unwrap();
    let _ = victim.wait();
    assert_all_ok(&[survivor.wait_with_output().unwrap()]);
    let err = coordinator.fails(&["backup", "commit", "--backupId", &id], 3);
    assert!(err.contains("task(s) 2,3 of its 4"), "{err}");
    coordinator.ok(&["backup", "abort", "--backupId", &id]);
    coordinator.fails(&["backup", "commit", "--backupId", &id], 3);

    // The next backup commits, with one Garage node killed in the middle of its parts.
    let next = coordinator.ok(&["backup", "begin", "--module", MODULE]);
    assert!(next > id);
    let children: Vec<Child> = (0..2)
        .map(|i| c.workers[i].spawn(&["backup", "part", "--backupId", &next]))
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    garage.kill_node(2);
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    assert_all_ok(&outs);
    assert_eq!(
        coordinator.ok(&["backup", "commit", "--backupId", &next]),
        next
    );
    let listed = coordinator.ok(&["list", "--module", MODULE]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    // What the killed worker and the aborted backup left is garbage; the backup restores.
    coordinator.ok(&["gc", "--lease-seconds", "0"]);
    let fresh = Machine::new(&spec, &env);
    fresh.ok(&["restore", "--backupId", &next]);
    assert_eq!(digest(&fresh.module()), digest(&c.source.module()));
}

#[test]
fn rbk_serve_writes_its_part_for_a_backup_waiting_for_parts_on_another_machine() {
    let garage = Garage::start();
    let spec = garage.provider_spec("served");
    let env = garage.aws_env();
    let c = Cluster::new(&spec, &env, 4, &[&[0, 1], &[2, 3]]);
    let mut serve = c.workers[1].spawn(&["serve", "--for-seconds", "120"]);
    // Its socket answers once it is serving.
    let socket_wait = Instant::now();
    while !c.workers[1].dir().join("data/.rbk").exists()
        && socket_wait.elapsed() < Duration::from_secs(20)
    {
        std::thread::sleep(Duration::from_millis(50));
    }

    // Worker 0 begins, writes its own part and waits for worker 1's `rbk serve`.
    let id = c.workers[0].ok(&["backup", "--module", MODULE, "--wait-parts", "60"]);
    let fresh = Machine::new(&spec, &env);
    fresh.ok(&["restore", "--backupId", &id]);
    assert_eq!(digest(&fresh.module()), digest(&c.source.module()));

    // Without a server holding tasks 2 and 3, the wait ends in an error naming them, and the
    // pending backup is given up.
    let _ = serve.kill();
    let _ = serve.wait();
    let err = c.workers[0].fails(&["backup", "--module", MODULE, "--wait-parts", "2"], 3);
    assert!(err.contains("task(s) 2,3 of its 4"), "{err}");
    let listed = c.workers[0].ok(&["list", "--module", MODULE]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    let gc = c.workers[0].ok(&["gc", "--json"]);
    let gc: serde_json::Value = serde_json::from_str(&gc).unwrap();
    assert_eq!(gc["pending_held"], 0, "{gc}");
}
