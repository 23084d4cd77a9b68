//! `rbk demo`: the main job end to end on an embedded local store. Starts a bank module in a
//! module host in this process, drives transfers into it from two threads at full speed, and
//! takes several backups while it runs. Then it restores every backup into a fresh data dir
//! (no local index, as on a new machine) and checks each restore is consistent: all
//! `$$balances` partitions at one commit id, the money total unchanged, the depots holding
//! every processed transfer, and a replay of those transfers reproducing the balances
//! exactly. It prints throughput, pauses and the dedup ratio, then applies a retention policy
//! (keep the newest two), runs GC, and restores and checks the newest backup once more.
//!
//! With `--modules 2` it then runs two `relay` modules that read each other's depot, and
//! restores one of them to an older backup while the other keeps running: the other's
//! offset into the restored depot goes back to the restored end, and it processes exactly
//! the records appended after the restore.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use rand::SeedableRng;
use rbk_chunkstore::provider::{self, Provider};
use rbk_engine::host::check::check_module;
use rbk_engine::host::{Host, HostOptions, create_module};
use rbk_engine::layout::module_dir;
use rbk_engine::ops::{backup, gc, restore};
use rbk_engine::retention::PolicyOverride;
use rbk_engine::{BackupId, NoProgress, Repo, repo};
use serde_json::json;

use crate::cmd::mib;

const MODULE: &str = "com.rbk.LiveBank";

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Working directory (created; must not exist unless --force).
    #[arg(long, default_value = "rbk-demo")]
    dir: PathBuf,
    /// Replace an existing working directory.
    #[arg(long)]
    force: bool,
    /// Keep the working directory afterwards.
    #[arg(long)]
    keep: bool,
    #[arg(long, default_value_t = 4)]
    tasks: u32,
    /// How long transfers run.
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Backups taken while they run (evenly spread).
    #[arg(long, default_value_t = 6)]
    backups: u32,
    /// 2: also run two modules reading each other's depot, and restore one while the other
    /// runs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=2))]
    modules: u32,
}

fn dir_bytes(p: &Path) -> u64 {
    std::fs::read_dir(p)
        .map(|it| {
            it.flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        dir_bytes(&path)
                    } else {
                        e.metadata().map(|m| m.len()).unwrap_or(0)
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

/// Restores `id` into a fresh data dir and checks it; returns (files, bytes, seconds, commit).
fn restore_and_check(
    provider: &Arc<dyn Provider>,
    target: &Path,
    id: &BackupId,
) -> Result<(u64, u64, f64, u64)> {
    let repo = Repo::open(provider.clone(), &repo::index_root(target), false)?;
    let r = restore::restore(
        &repo,
        target,
        id,
        restore::RestoreOptions::default(),
        &NoProgress,
    )?;
    let check = check_module(&module_dir(target, &id.module))?;
    if !check.violations.is_empty() {
        bail!(
            "restore of {id} is not consistent:\n  {}",
            check.violations.join("\n  ")
        );
    }
    Ok((
        r.files,
        r.bytes,
        r.seconds,
        check.commit_ids.get("banking").copied().unwrap_or(0),
    ))
}

pub fn run(a: &DemoArgs, json_out: bool) -> Result<()> {
    if a.dir.exists() {
        if !a.force {
            bail!(
                "demo dir `{}` exists; pass --force to replace it or --dir to pick another",
                a.dir.display()
            );
        }
        std::fs::remove_dir_all(&a.dir).with_context(|| format!("removing {}", a.dir.display()))?;
    }
    if a.backups == 0 {
        bail!("--backups must be at least 1");
    }
    let data = a.dir.join("data");
    let store_dir = a.dir.join("store");
    std::fs::create_dir_all(&data)?;
    let say = |s: String| {
        if !json_out {
            outln!("{s}");
        }
    };
    create_module(&data, MODULE, a.tasks, "bank")?;
    let host = Host::new(&data, HostOptions::default())?;
    let module = host.start(MODULE)?;
    say(format!(
        "started {MODULE} ({} tasks, microbatch topology `banking` over depot `*transfers`); driving transfers from 2 threads for {} s",
        a.tasks, a.seconds
    ));

    let provider: Arc<dyn Provider> = provider::from_spec(&format!("fs {}", store_dir.display()))?;
    let repo = Repo::open(provider.clone(), &repo::index_root(&data), true)?;
    let running = Arc::new(AtomicBool::new(true));
    let drivers: Vec<_> = (0..2u64)
        .map(|i| {
            let m = module.clone();
            let running = running.clone();
            std::thread::spawn(move || -> Result<u64> {
                let mut rng = rand::rngs::StdRng::seed_from_u64(i);
                let mut n = 0;
                while running.load(Ordering::Relaxed) {
                    m.append_random(&mut rng)?;
                    n += 1;
                }
                Ok(n)
            })
        })
        .collect();

    let started = Instant::now();
    let interval = Duration::from_secs_f64(a.seconds as f64 / a.backups as f64);
    let mut backups = Vec::new();
    let mut rows = Vec::new();
    let mut logical_total = 0u64;
    say(format!(
        "{:<3} {:>9} {:>7} {:>10} {:>8} {:>8} {:>8} {:>9}",
        "#", "commit", "pause", "module MiB", "new MiB", "reused", "seconds", "MiB/s"
    ));
    for i in 0..a.backups {
        let due = interval * (i + 1);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let (r, live) = backup::backup_from_source(
            &repo,
            &data,
            MODULE,
            backup::Source::Running(&module),
            &NoProgress,
        )?;
        let live = live.expect("a running module's backup saw it running");
        let commit = live.commit_ids.get("banking").copied().unwrap_or(0);
        let s = r.stats;
        logical_total += s.logical_bytes;
        say(format!(
            "{i:<3} {commit:>9} {:>5.1}ms {:>10.1} {:>8.1} {:>8} {:>8.2} {:>9.0}",
            live.pause.as_secs_f64() * 1000.0,
            mib(s.logical_bytes),
            mib(s.new_stored_bytes),
            format!("{}/{}", s.files_reused, s.files),
            r.seconds,
            mib(s.logical_bytes) / r.seconds
        ));
        rows.push(json!({"backup_id": r.backup_id.to_string(), "commit_id": commit, "pause_ms": live.pause.as_secs_f64() * 1000.0, "logical_bytes": s.logical_bytes, "new_stored_bytes": s.new_stored_bytes, "files": s.files, "files_reused": s.files_reused, "seconds": r.seconds}));
        backups.push(r.backup_id);
    }
    running.store(false, Ordering::Relaxed);
    let mut appended = 0;
    for d in drivers {
        appended += d.join().expect("driver thread")?;
    }
    let ran = started.elapsed().as_secs_f64();
    module.wait_caught_up(Duration::from_secs(60))?;
    let pauses = module.pause_stats();
    drop(module);
    host.stop(MODULE)?;
    drop(repo);
    say(format!(
        "{appended} transfers appended and processed in {ran:.1} s ({:.0}/s) while backing up; longest commit pause {:.1} ms",
        appended as f64 / ran,
        pauses.max.as_secs_f64() * 1000.0
    ));

    let mut restore_secs = Vec::new();
    for (i, id) in backups.iter().enumerate() {
        let target = a.dir.join(format!("restore-{i}"));
        let (files, bytes, secs, commit) = restore_and_check(&provider, &target, id)?;
        restore_secs.push(secs);
        say(format!(
            "restored {id}: {files} files, {:.1} MiB in {secs:.2}s ({:.0} MiB/s); consistent at commit {commit}: balances sum to the initial total, depots cover progress, replay matches",
            mib(bytes),
            mib(bytes) / secs
        ));
        std::fs::remove_dir_all(&target)?;
    }
    let stored = dir_bytes(&store_dir);
    let ratio = logical_total as f64 / stored as f64;
    say(format!(
        "store holds {:.1} MiB for {} backups of {:.1} MiB logical in total: dedup+compression ratio {ratio:.2}x",
        mib(stored),
        backups.len(),
        mib(logical_total)
    ));

    // Retention: keep the newest two backups, free what only the others used, and check the
    // newest still restores consistently afterwards.
    let repo = Repo::open(provider.clone(), &repo::index_root(&data), false)?;
    let opts = gc::GcOptions {
        policy: PolicyOverride {
            max_age_hours: Some(0.0),
            min_keep: Some(2),
        },
        now_ms: Some(rbk_chunkstore::session::now_ms() + 3_600_000),
        ..Default::default()
    };
    let g = gc::gc(&repo, &data, &opts, &NoProgress)?;
    drop(repo);
    let after_gc = dir_bytes(&store_dir);
    let newest = backups.last().context("no backups")?;
    restore_and_check(&provider, &a.dir.join("restore-after-gc"), newest)?;
    say(format!(
        "gc keeping the newest 2: deleted {} backups, {} packs deleted and {} rewritten in {:.2}s ({:.1} MiB unreferenced stays in packs under the repack threshold); store {:.1} MiB -> {:.1} MiB; {newest} still restores consistently",
        g.manifests_deleted.len(),
        g.store.sweep.packs_deleted,
        g.store.sweep.packs_rewritten,
        g.seconds,
        mib(g.store.dead_bytes_kept),
        mib(stored),
        mib(after_gc)
    ));
    if json_out {
        outln!(
            "{}",
            json!({"backups": rows, "transfers": appended, "max_pause_ms": pauses.max.as_secs_f64() * 1000.0, "restore_seconds": restore_secs, "store_bytes": stored, "logical_bytes_total": logical_total, "ratio": ratio,
                   "gc": {"backups_deleted": g.manifests_deleted.len(), "packs_deleted": g.store.sweep.packs_deleted, "packs_rewritten": g.store.sweep.packs_rewritten, "dead_bytes_kept": g.store.dead_bytes_kept, "store_bytes_after": after_gc, "seconds": g.seconds}})
        );
    }
    if a.modules == 2 {
        let pair = a.dir.join("pair");
        pair_demo(&pair, &provider, &say)?;
    }
    if !a.keep {
        std::fs::remove_dir_all(&a.dir)?;
    }
    Ok(())
}

/// Two relay modules, each reading the other's `*events`; one is restored to an older backup
/// while the other runs.
fn pair_demo(dir: &Path, provider: &Arc<dyn Provider>, say: &dyn Fn(String)) -> Result<()> {
    use rbk_engine::host::builtin::relay;
    use rbk_engine::host::create_module_reading;
    const A: &str = "com.rbk.RelayA";
    const B: &str = "com.rbk.RelayB";
    let data = dir.join("data");
    create_module_reading(&data, A, 2, relay::ID, Some(B))?;
    create_module_reading(&data, B, 2, relay::ID, Some(A))?;
    let host = Host::new(&data, HostOptions::default())?;
    let (ma, mb) = (host.start(A)?, host.start(B)?);
    say(format!(
        "started {A} and {B}: topology `core` of each reads the other's depot `*events`"
    ));
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut drive = |n: usize| -> Result<()> {
        for _ in 0..n {
            ma.append_random(&mut rng)?;
            mb.append_random(&mut rng)?;
        }
        ma.wait_caught_up(Duration::from_secs(60))?;
        mb.wait_caught_up(Duration::from_secs(60))?;
        Ok(())
    };
    drive(1_000)?;
    let repo = Repo::open(provider.clone(), &repo::index_root(&data), true)?;
    let (r, _) =
        backup::backup_from_source(&repo, &data, A, backup::Source::Running(&ma), &NoProgress)?;
    drive(500)?;
    let offsets =
        |m: &rbk_engine::host::RunningModule| m.progress()[relay::TOPOLOGY].processed.clone();
    let before = offsets(&mb);
    say(format!(
        "backed up {A} as {}, appended 500 more records to each; {B} has read {A}'s partitions up to {before:?}",
        r.backup_id
    ));
    drop(ma);
    host.stop(A)?;
    let restored = restore::restore(
        &repo,
        &data,
        &r.backup_id,
        restore::RestoreOptions {
            force: true,
            ..Default::default()
        },
        &NoProgress,
    )?;
    let ma = host.start(A)?;
    // The running reader notices the restore epoch on its own.
    let deadline = Instant::now() + Duration::from_secs(10);
    while offsets(&mb) == before {
        if Instant::now() > deadline {
            bail!("{B} did not notice the restore of {A} within 10 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    // `restored.resets` lists what the restore itself changed on disk; a running reader's
    // offsets live in its PState and it moved them itself (the warnings above).
    debug_assert!(restored.resets.len() <= 2);
    say(format!(
        "restored {A} to {} (restore epoch {}) while {B} ran: {B} noticed, and now reads {A}'s partitions from {:?}, their restored ends",
        r.backup_id,
        restored.epoch,
        offsets(&mb)
    ));
    for _ in 0..300 {
        ma.append_random(&mut rng)?;
    }
    mb.wait_caught_up(Duration::from_secs(60))?;
    say(format!(
        "appended 300 records to {A}; {B} processed them from the restored end, up to {:?}",
        offsets(&mb)
    ));
    drop((ma, mb));
    host.shutdown()?;
    let check = check_module(&module_dir(&data, B))?;
    if !check.violations.is_empty() {
        bail!(
            "{B} is not consistent:\n  {}",
            check.violations.join("\n  ")
        );
    }
    say(format!(
        "{B} is consistent: every id it saw is counted, and the counts add up"
    ));
    Ok(())
}
