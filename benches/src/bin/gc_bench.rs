//! GC time and peak memory on a store with many chunks (synthetic packs and manifests).
//!
//! ```text
//! cargo run --release -p rbk-benches --bin gc_bench -- [chunks] [backups] [keep]
//! ```
//! Defaults: 1,000,000 chunks in packs of 16,384, 20 backups each referencing a sliding half
//! of the chunks, retention keeping the newest 10 (so a quarter of the chunks become dead).
//! Prints the time and peak RSS of `stats` over the store, of the GC run that deletes and
//! sweeps, and of a second run that finds nothing (peak RSS reset between phases through
//! /proc/self/clear_refs).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rbk_chunkstore::pack::PackBuilder;
use rbk_chunkstore::provider::{LocalProvider, Provider};
use rbk_chunkstore::{ChunkId, PackId, compress, keys};
use rbk_engine::manifest::{FileEntry, Manifest};
use rbk_engine::ops::gc::{self, GcOptions};
use rbk_engine::retention::PolicyOverride;
use rbk_engine::{BackupId, NoProgress, Repo, repo};

const PACK_CHUNKS: usize = 16_384;
const CHUNKS_PER_FILE: usize = 50_000;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn reset_peak_rss() {
    // "5" resets the peak resident set size to the current one (Linux ≥ 4.0).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn chunk(i: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(64);
    for k in 0..8u64 {
        v.extend_from_slice(&(i as u64 ^ (k << 56)).to_le_bytes());
    }
    v
}

fn main() {
    let chunks = arg(1, 1_000_000);
    let backups = arg(2, 20);
    let keep = arg(3, 10) as u64;
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let provider: Arc<dyn Provider> = Arc::new(LocalProvider::new(tmp.path().join("store")));
    let repo = Repo::open(provider.clone(), &repo::index_root(&data), true).expect("store");
    let rt = tokio::runtime::Runtime::new().expect("runtime");

    let t = Instant::now();
    let ids: Vec<ChunkId> = (0..chunks).map(|i| ChunkId::of(&chunk(i))).collect();
    for (n, pack_ids) in ids.chunks(PACK_CHUNKS).enumerate() {
        let mut b = PackBuilder::new();
        for (k, id) in pack_ids.iter().enumerate() {
            let data = chunk(n * PACK_CHUNKS + k);
            b.add(
                *id,
                data.len() as u32,
                &compress::compress(&data, 1).unwrap(),
            );
        }
        // Straight into the store, as another machine would have written them: the index
        // learns them from their trailers when the first session syncs it.
        let (bytes, _) = b.finish();
        let key = keys::pack(&PackId::of(&bytes));
        rt.block_on(provider.put_if_absent(&key, Bytes::from(bytes)))
            .expect("pack");
        if n % 16 == 0 {
            eprint!(".");
        }
    }
    // Backup b references chunks [b·w/backups, b·w/backups + w) with w = chunks/2.
    let window = chunks / 2;
    let step = window / backups.max(1);
    let session = repo
        .store()
        .begin_session("backup", "bench")
        .expect("session");
    for b in 0..backups {
        let refs = &ids[b * step..b * step + window];
        let module_files = refs
            .chunks(CHUNKS_PER_FILE)
            .enumerate()
            .map(|(f, c)| FileEntry {
                path: format!("file{f}"),
                size: c.len() as u64 * 64,
                mtime_ns: 0,
                dev: 0,
                ino: 0,
                mode: 0o644,
                owner: None,
                chunks: c.to_vec(),
            })
            .collect();
        let m = Manifest {
            backup_id: BackupId {
                module: "com.bench.Gc".into(),
                millis: 1_700_000_000_000 + b as u64,
                suffix: 0,
            },
            created_ms: 1_700_000_000_000 + b as u64,
            rbk_version: "bench".into(),
            task_count: 1,
            stats: Default::default(),
            module_files,
            tasks: vec![],
            dir_meta: vec![],
            session: None,
            task_refs: vec![],
        };
        let name = m.backup_id.to_string();
        session
            .write_manifest(&m.backup_id.module, |_| {
                (name.clone(), Bytes::from(m.encode()))
            })
            .expect("manifest");
    }
    session.end().expect("end session");
    eprintln!();
    println!(
        "store: {chunks} chunks in {} packs, {backups} backups of {window} chunks each; built in {:.1}s",
        chunks.div_ceil(PACK_CHUNKS),
        t.elapsed().as_secs_f64()
    );

    let opts = GcOptions {
        policy: PolicyOverride {
            max_age_hours: Some(0.0),
            min_keep: Some(keep),
        },
        ..Default::default()
    };
    // `rbk stats` over the same store: manifests and index only, no pack data.
    reset_peak_rss();
    let before = peak_rss_mib();
    let t = Instant::now();
    let s =
        rbk_engine::ops::stats::stats(&repo, &rbk_engine::ops::stats::Scope::Store, &NoProgress)
            .expect("stats");
    println!(
        "stats: {:.2}s, peak RSS {:.0} MiB (was {:.0} MiB before); {} backups, {} unique chunks, dedup {:.2}x, {:.1} MiB garbage",
        t.elapsed().as_secs_f64(),
        peak_rss_mib(),
        before,
        s.backups,
        s.totals.unique_chunks,
        s.totals.dedup_ratio(),
        s.garbage_bytes.unwrap_or(0) as f64 / (1 << 20) as f64,
    );
    for run in ["gc (deletes and sweeps)", "gc (nothing to do)"] {
        reset_peak_rss();
        let before = peak_rss_mib();
        let t = Instant::now();
        let r = gc::gc(&repo, &data, &opts, &NoProgress).expect("gc");
        println!(
            "{run}: {:.2}s, peak RSS {:.0} MiB (was {:.0} MiB before); {} backups deleted, {} live chunks (live set {:.1} MiB), {} packs condemned, {} deleted, {} rewritten, {:.1} MiB freed",
            t.elapsed().as_secs_f64(),
            peak_rss_mib(),
            before,
            r.manifests_deleted.len(),
            r.store.live_chunks,
            r.store.live_set_bytes as f64 / (1 << 20) as f64,
            r.store.packs_condemned,
            r.store.sweep.packs_deleted,
            r.store.sweep.packs_rewritten,
            r.store.sweep.bytes_freed as f64 / (1 << 20) as f64,
        );
    }
}
