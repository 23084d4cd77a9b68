//! How long backups of a running module stall its writes.
//!
//! ```text
//! cargo run --release -p rbk-benches --bin pause_bench -- [tasks] [backups] [seconds-per-phase]
//! ```
//! Defaults: an 8-task bank module, two threads appending transfers at full speed. Phase 1
//! runs without backups (baseline); phase 2 takes `backups` snapshot + backup rounds to a
//! local store, evenly spread. Reports the commit pause of each snapshot (from asking the
//! gate until it is released: the longest a microbatch commit can wait), and the slowest
//! single depot append in each phase (appends never wait for the gate, only for a depot
//! partition's lock while its segments are linked).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rbk_chunkstore::provider::LocalProvider;
use rbk_engine::host::{Host, HostOptions, create_module};
use rbk_engine::ops::backup;
use rbk_engine::{NoProgress, Repo, repo};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let tasks = arg(1, 8) as u32;
    let rounds = arg(2, 20);
    let phase = Duration::from_secs(arg(3, 10));
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let module = "com.rbk.PauseBench";
    create_module(&data, module, tasks, "bank").expect("module");
    let host = Host::new(&data, HostOptions::default()).expect("host");
    let m = host.start(module).expect("start");
    let repo = Repo::open(
        Arc::new(LocalProvider::new(tmp.path().join("store"))),
        &repo::index_root(&data),
        true,
    )
    .expect("repo");

    let running = Arc::new(AtomicBool::new(true));
    let slowest_us = Arc::new(AtomicU64::new(0));
    let appended = Arc::new(AtomicU64::new(0));
    let writers: Vec<_> = (0..2u64)
        .map(|i| {
            let (m, running, slowest, n) = (
                m.clone(),
                running.clone(),
                slowest_us.clone(),
                appended.clone(),
            );
            std::thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(i);
                while running.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    m.append_random(&mut rng).expect("append");
                    slowest.fetch_max(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                    n.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    std::thread::sleep(phase);
    let baseline_append = slowest_us.swap(0, Ordering::Relaxed);
    let baseline_rate = appended.swap(0, Ordering::Relaxed) as f64 / phase.as_secs_f64();

    let mut pauses = Vec::new();
    let mut holds = Vec::new();
    let mut backup_secs = Vec::new();
    let started = Instant::now();
    for i in 0..rounds {
        let due = phase.mul_f64((i + 1) as f64 / rounds as f64);
        if let Some(w) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(w);
        }
        let t = Instant::now();
        let snap = m.snapshot(&data).expect("snapshot");
        backup::backup_from_source(
            &repo,
            &data,
            module,
            backup::Source::Snapshot(&snap),
            &NoProgress,
        )
        .expect("backup");
        pauses.push(snap.pause.as_secs_f64() * 1000.0);
        holds.push(snap.held.as_secs_f64() * 1000.0);
        backup_secs.push(t.elapsed().as_secs_f64());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let backup_append = slowest_us.load(Ordering::Relaxed);
    let backup_rate = appended.load(Ordering::Relaxed) as f64 / elapsed;
    running.store(false, Ordering::Relaxed);
    for w in writers {
        w.join().expect("writer");
    }
    // Backups compete with the topology for the two cores; it may have a backlog.
    m.wait_caught_up(Duration::from_secs(600))
        .expect("catch up");
    let progress = m.progress();
    let stats = m.pause_stats();
    drop(m);
    host.stop(module).expect("stop");

    pauses.sort_by(f64::total_cmp);
    holds.sort_by(f64::total_cmp);
    backup_secs.sort_by(f64::total_cmp);
    let pct = |v: &[f64], p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    println!("{tasks} tasks, {rounds} backups while 2 threads append transfers");
    println!(
        "gate held per snapshot (commits stalled at most this long): median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        pct(&holds, 0.5),
        pct(&holds, 0.9),
        holds[holds.len() - 1]
    );
    println!(
        "snapshot pause incl. waiting for the commit in flight: median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
        pct(&pauses, 0.5),
        pct(&pauses, 0.9),
        pauses[pauses.len() - 1]
    );
    println!(
        "longest wait of any commit for the gate (the write stall backups caused): {:.2} ms",
        stats.longest_commit_wait.as_secs_f64() * 1000.0
    );
    println!(
        "whole backup (snapshot + upload): median {:.2} s, max {:.2} s",
        pct(&backup_secs, 0.5),
        backup_secs[backup_secs.len() - 1]
    );
    println!(
        "slowest append: {:.2} ms without backups, {:.2} ms with",
        baseline_append as f64 / 1000.0,
        backup_append as f64 / 1000.0
    );
    println!(
        "append rate: {baseline_rate:.0}/s without backups, {backup_rate:.0}/s with; final commit {:?}",
        progress["banking"].commit_id
    );
}
