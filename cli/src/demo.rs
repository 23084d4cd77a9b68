//! `rbk demo`: the main job end to end on an embedded local store. Generates a module with real
//! RocksDB PStates, backs it up over several generations, restores every backup into a fresh
//! data dir (with no local index, as on a new machine), checks each restore is byte-identical
//! to what was backed up, and prints throughput and the dedup ratio. Then it applies a retention
//! policy (keep the newest two), runs GC, and restores the newest backup once more.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use rbk_chunkstore::provider::{self, Provider};
use rbk_engine::layout::module_dir;
use rbk_engine::ops::{backup, gc, restore};
use rbk_engine::retention::PolicyOverride;
use rbk_engine::testdata::{self, GenSpec};
use rbk_engine::{NoProgress, Repo, repo};
use serde_json::json;

use crate::mib;

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
    #[arg(long = "size-mib", default_value_t = 256)]
    size_mib: u64,
    #[arg(long, default_value_t = 4)]
    tasks: u32,
    /// Backups to take; the module advances ~5% between them.
    #[arg(long, default_value_t = 4)]
    generations: u32,
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
    let data = a.dir.join("data");
    let store_dir = a.dir.join("store");
    std::fs::create_dir_all(&data)?;
    let spec = GenSpec {
        tasks: a.tasks,
        size_mib: a.size_mib,
        ..Default::default()
    };
    let say = |s: String| {
        if !json_out {
            println!("{s}");
        }
    };
    let t = Instant::now();
    testdata::generate(&data, &spec)?;
    say(format!(
        "generated {} ({} tasks, {} MiB) in {:.1}s",
        spec.module,
        spec.tasks,
        spec.size_mib,
        t.elapsed().as_secs_f64()
    ));

    let provider: std::sync::Arc<dyn Provider> =
        provider::from_spec(&format!("fs {}", store_dir.display()))?;
    let repo = Repo::open(provider.clone(), &repo::index_root(&data), true)?;
    let mut backups = Vec::new();
    let mut rows = Vec::new();
    let mut logical_total = 0u64;
    say(format!(
        "{:<4} {:>10} {:>10} {:>8} {:>8} {:>9}",
        "gen", "module MiB", "new MiB", "reused", "seconds", "MiB/s"
    ));
    for g in 0..a.generations {
        if g > 0 {
            testdata::advance(&data, &spec.module, 5)?;
        }
        let digest = testdata::tree_digest(&module_dir(&data, &spec.module))?;
        let r = backup::backup(&repo, &data, &spec.module, &NoProgress)?;
        let s = r.stats;
        logical_total += s.logical_bytes;
        say(format!(
            "{g:<4} {:>10.1} {:>10.1} {:>8} {:>8.2} {:>9.0}",
            mib(s.logical_bytes),
            mib(s.new_stored_bytes),
            format!("{}/{}", s.files_reused, s.files),
            r.seconds,
            mib(s.logical_bytes) / r.seconds
        ));
        rows.push(json!({"generation": g, "backup_id": r.backup_id.to_string(), "logical_bytes": s.logical_bytes, "new_stored_bytes": s.new_stored_bytes, "files": s.files, "files_reused": s.files_reused, "seconds": r.seconds}));
        backups.push((r.backup_id, digest));
    }
    drop(repo);

    let mut restore_secs = Vec::new();
    for (i, (id, digest)) in backups.iter().enumerate() {
        // A fresh data dir with no local index: the store alone must suffice.
        let target = a.dir.join(format!("restore-{i}"));
        let repo = Repo::open(provider.clone(), &repo::index_root(&target), false)?;
        let r = restore::restore(
            &repo,
            &target,
            id,
            restore::RestoreOptions::default(),
            &NoProgress,
        )?;
        let got = testdata::tree_digest(&module_dir(&target, &id.module))?;
        if &got != digest {
            let differing: Vec<&String> = digest
                .keys()
                .filter(|k| got.get(*k) != digest.get(*k))
                .chain(got.keys().filter(|k| !digest.contains_key(*k)))
                .collect();
            bail!("restore of {id} differs from what was backed up: {differing:?}");
        }
        restore_secs.push(r.seconds);
        say(format!(
            "restored {id}: {} files, {:.1} MiB in {:.2}s ({:.0} MiB/s), byte-identical",
            r.files,
            mib(r.bytes),
            r.seconds,
            mib(r.bytes) / r.seconds
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
    // newest still restores byte-identically afterwards.
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
    let (newest, digest) = backups.last().context("no backups")?;
    let target = a.dir.join("restore-after-gc");
    let repo = Repo::open(provider.clone(), &repo::index_root(&target), false)?;
    restore::restore(
        &repo,
        &target,
        newest,
        restore::RestoreOptions::default(),
        &NoProgress,
    )?;
    if &testdata::tree_digest(&module_dir(&target, &newest.module))? != digest {
        bail!("restore of {newest} after gc differs from what was backed up");
    }
    say(format!(
        "gc keeping the newest 2: deleted {} backups, {} packs deleted and {} rewritten in {:.2}s ({:.1} MiB unreferenced stays in packs under the repack threshold); store {:.1} MiB -> {:.1} MiB; {newest} still restores byte-identically",
        g.manifests_deleted.len(),
        g.sweep.packs_deleted,
        g.sweep.packs_rewritten,
        g.seconds,
        mib(g.dead_bytes_kept),
        mib(stored),
        mib(after_gc)
    ));
    if json_out {
        println!(
            "{}",
            json!({"backups": rows, "restore_seconds": restore_secs, "store_bytes": stored, "logical_bytes_total": logical_total, "ratio": ratio,
                   "gc": {"backups_deleted": g.manifests_deleted.len(), "packs_deleted": g.sweep.packs_deleted, "packs_rewritten": g.sweep.packs_rewritten, "dead_bytes_kept": g.dead_bytes_kept, "store_bytes_after": after_gc, "seconds": g.seconds}})
        );
    }
    if !a.keep {
        std::fs::remove_dir_all(&a.dir)?;
    }
    Ok(())
}
