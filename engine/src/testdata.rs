//! A generator of realistic module state, for tests, benchmarks and the demo.
//!
//! It writes a bank-like module in the exact layout rbk backs up: per task a depot partition
//! `*transfers` of framed transfer records in rolling segments, a PState partition
//! `$$balances` written with RocksDB (SSTs, MANIFEST, OPTIONS, a WAL with unflushed writes),
//! and progress for the microbatch topology `banking`; plus module.json, an opaque module.jar,
//! config overrides and dynamic options. [`advance`] moves it one generation forward: appends
//! depot records and overwrites PState keys so RocksDB flushes and compacts.
//! Output is a deterministic function of the seed (RocksDB's own file names and LOG contents
//! aside).

use std::fs;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rayon::prelude::*;
use rocksdb::{DB, Options, WriteBatch};
use serde_json::json;

use crate::depot::DepotWriter;
use crate::layout::module_dir;
use crate::manifest::{depot_dir, pstate_dir, topology_dir};
use crate::{Error, Result};

pub const DEPOT: &str = "transfers";
pub const PSTATE: &str = "balances";
pub const TOPOLOGY: &str = "banking";
const VALUE_LEN: usize = 400;

#[derive(Debug, Clone)]
pub struct GenSpec {
    pub module: String,
    pub tasks: u32,
    /// Approximate total size of the module in MiB.
    pub size_mib: u64,
    pub seed: u64,
    pub segment_bytes: u64,
}

impl Default for GenSpec {
    fn default() -> Self {
        GenSpec {
            module: "com.rbk.BankModule".into(),
            tasks: 4,
            size_mib: 64,
            seed: 1,
            segment_bytes: 8 << 20,
        }
    }
}

const WORDS: &[&str] = &[
    "rent",
    "groceries",
    "salary",
    "refund",
    "invoice",
    "transfer",
    "coffee",
    "travel",
    "insurance",
    "utilities",
    "gift",
    "loan",
    "dividend",
    "fee",
    "subscription",
];

fn transfer_record(rng: &mut StdRng, accounts: u64, offset: u64) -> Vec<u8> {
    let memo: Vec<&str> = (0..rng.gen_range(1..6))
        .map(|_| WORDS[rng.gen_range(0..WORDS.len())])
        .collect();
    format!(
        r#"{{"id":{offset},"from":"acct-{:08}","to":"acct-{:08}","amount_cents":{},"ts":{},"memo":"{}","ref":"{:016x}"}}"#,
        rng.gen_range(0..accounts),
        rng.gen_range(0..accounts),
        rng.gen_range(1..1_000_000),
        1_700_000_000_000u64 + offset * 37,
        memo.join(" "),
        rng.next_u64()
    )
    .into_bytes()
}

fn balance_value(rng: &mut StdRng, key: u64, generation: u64) -> Vec<u8> {
    let mut v = format!(
        r#"{{"account":{key},"balance_cents":{},"gen":{generation},"history":""#,
        rng.gen_range(0..10_000_000)
    )
    .into_bytes();
    // Half random hex (incompressible-ish), half repetitive: about what real rows compress to.
    while v.len() < VALUE_LEN / 2 {
        v.extend_from_slice(format!("{:016x}", rng.next_u64()).as_bytes());
    }
    while v.len() < VALUE_LEN - 2 {
        v.extend_from_slice(WORDS[rng.gen_range(0..WORDS.len())].as_bytes());
    }
    v.extend_from_slice(b"\"}");
    v
}

fn rocks_opts() -> Options {
    let mut o = Options::default();
    o.create_if_missing(true);
    o.set_write_buffer_size(4 << 20);
    o.set_target_file_size_base(8 << 20);
    o.set_keep_log_file_num(2);
    o
}

fn rerr(path: &Path, e: rocksdb::Error) -> Error {
    Error::database(format_args!("`{}`", path.display()), e)
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    fs::write(path, serde_json::to_vec_pretty(v).expect("json")).map_err(|e| Error::io(path, e))
}

/// Per-task byte budgets: depot, PState.
fn budgets(spec_mib: u64, tasks: u32) -> (u64, u64) {
    let total = spec_mib << 20;
    let per_task = total * 95 / 100 / tasks as u64;
    (per_task * 55 / 95, per_task * 40 / 95)
}

/// Writes a new module under `<data_dir>/modules/<module>`.
///
/// # Errors
/// `InvalidInput` when the module already exists, `Database` when RocksDB fails; I/O errors.
pub fn generate(data_dir: &Path, spec: &GenSpec) -> Result<()> {
    let dir = module_dir(data_dir, &spec.module);
    if dir.exists() {
        return Err(Error::InvalidInput(format!(
            "`{}` already exists; generate into a new data dir",
            dir.display()
        )));
    }
    fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    write_json(
        &dir.join("module.json"),
        &json!({
            "name": spec.module,
            "tasks": spec.tasks,
            "depots": [{"name": format!("*{DEPOT}")}],
            "pstates": [{"name": format!("$${PSTATE}"), "topology": TOPOLOGY}],
            "topologies": [{"name": TOPOLOGY, "kind": "microbatch", "subscribes": [format!("*{DEPOT}")]}],
            "dependencies": [],
            "generator": {"seed": spec.seed, "segment_bytes": spec.segment_bytes, "size_mib": spec.size_mib}
        }),
    )?;
    write_json(
        &dir.join("config-overrides.json"),
        &json!({"worker.heap.mb": 4096}),
    )?;
    write_json(
        &dir.join("dynamic-options.json"),
        &json!({"backup.min.backups.to.keep": 3}),
    )?;
    let mut jar = vec![0u8; ((spec.size_mib << 20) / 20) as usize];
    StdRng::seed_from_u64(spec.seed ^ 0x4a4152).fill_bytes(&mut jar);
    fs::write(dir.join("module.jar"), &jar).map_err(|e| Error::io(dir.join("module.jar"), e))?;

    let (depot_bytes, pstate_bytes) = budgets(spec.size_mib, spec.tasks);
    (0..spec.tasks).into_par_iter().try_for_each(|task| {
        let mut rng = StdRng::seed_from_u64(spec.seed.wrapping_mul(1000).wrapping_add(task as u64));
        let accounts = (pstate_bytes / VALUE_LEN as u64).max(16);
        fill_task(
            &dir,
            task,
            &mut rng,
            accounts,
            depot_bytes,
            spec.segment_bytes,
            0,
            true,
            pstate_bytes,
        )
    })
}

/// Moves the module one generation forward: appends `percent`% new depot data and overwrites
/// `percent`% of PState keys (plus a few new ones), then flushes, so RocksDB writes new SSTs
/// and compacts.
///
/// # Errors
/// `ModuleNotFound`, `InvalidInput` on a module not written by the generator, RocksDB and
/// I/O errors.
pub fn advance(data_dir: &Path, module: &str, percent: u64) -> Result<u64> {
    let dir = module_dir(data_dir, module);
    let meta_path = dir.join("module.json");
    let meta: serde_json::Value =
        serde_json::from_slice(&fs::read(&meta_path).map_err(|_| Error::ModuleNotFound {
            module: module.into(),
            path: dir.clone(),
        })?)
        .map_err(|e| Error::layout(&meta_path, e.to_string()))?;
    let g = &meta["generator"];
    let (Some(seed), Some(segment_bytes), Some(size_mib), Some(tasks)) = (
        g["seed"].as_u64(),
        g["segment_bytes"].as_u64(),
        g["size_mib"].as_u64(),
        meta["tasks"].as_u64(),
    ) else {
        return Err(Error::InvalidInput(format!(
            "`{}` was not written by `rbk testdata generate`",
            meta_path.display()
        )));
    };
    let progress: serde_json::Value =
        fs::read(dir.join(topology_dir(0, TOPOLOGY)).join("progress.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let generation = progress["commit_id"].as_u64().unwrap_or(0) + 1;
    let (depot_bytes, pstate_bytes) = budgets(size_mib, tasks as u32);
    (0..tasks as u32).into_par_iter().try_for_each(|task| {
        let mut rng = StdRng::seed_from_u64(
            seed.wrapping_mul(1000).wrapping_add(task as u64)
                ^ generation.wrapping_mul(0x9E37_79B9),
        );
        let accounts = (pstate_bytes / VALUE_LEN as u64).max(16);
        fill_task(
            &dir,
            task,
            &mut rng,
            accounts,
            depot_bytes * percent / 100,
            segment_bytes,
            generation,
            false,
            pstate_bytes * percent / 100,
        )
    })?;
    Ok(generation)
}

#[allow(clippy::too_many_arguments)]
fn fill_task(
    dir: &Path,
    task: u32,
    rng: &mut StdRng,
    accounts: u64,
    depot_bytes: u64,
    segment_bytes: u64,
    generation: u64,
    fresh: bool,
    pstate_bytes: u64,
) -> Result<()> {
    let ddir = dir.join(depot_dir(task, DEPOT));
    let mut depot = DepotWriter::open(&ddir, segment_bytes).map_err(|e| Error::io(&ddir, e))?;
    let mut written = 0u64;
    while written < depot_bytes {
        let rec = transfer_record(rng, accounts, depot.end_offset());
        written += rec.len() as u64 + 8;
        depot.append(&rec).map_err(|e| Error::io(&ddir, e))?;
    }
    depot.sync().map_err(|e| Error::io(&ddir, e))?;

    let pdir = dir.join(pstate_dir(task, PSTATE));
    let db = DB::open(&rocks_opts(), &pdir).map_err(|e| rerr(&pdir, e))?;
    let keys = pstate_bytes / VALUE_LEN as u64;
    let mut batch = WriteBatch::default();
    for i in 0..keys {
        let key = if fresh {
            i
        } else {
            rng.gen_range(0..accounts + accounts / 50)
        };
        batch.put(
            format!("acct-{key:08}"),
            balance_value(rng, key, generation),
        );
        if batch.len() >= 4096 {
            db.write(std::mem::take(&mut batch))
                .map_err(|e| rerr(&pdir, e))?;
        }
    }
    db.write(batch).map_err(|e| rerr(&pdir, e))?;
    db.flush().map_err(|e| rerr(&pdir, e))?;
    // A few writes after the flush stay only in the WAL, as in a real stopped module.
    for i in 0..64u64 {
        db.put(
            format!("acct-{:08}", (i * 7919 + generation) % accounts),
            balance_value(rng, i, generation),
        )
        .map_err(|e| rerr(&pdir, e))?;
    }
    db.flush_wal(true).map_err(|e| rerr(&pdir, e))?;
    drop(db);

    let tdir = dir.join(topology_dir(task, TOPOLOGY));
    fs::create_dir_all(&tdir).map_err(|e| Error::io(&tdir, e))?;
    write_json(
        &tdir.join("progress.json"),
        &json!({"commit_id": generation, "processed": {format!("*{DEPOT}"): depot.end_offset()}}),
    )
}

/// BLAKE3 of every regular file under `dir`, keyed by '/'-separated relative path. Used to
/// check that a restore is byte-identical to what was backed up.
///
/// # Errors
/// I/O errors.
pub fn tree_digest(dir: &Path) -> Result<std::collections::BTreeMap<String, [u8; 32]>> {
    fn walk(
        dir: &Path,
        prefix: &str,
        out: &mut std::collections::BTreeMap<String, [u8; 32]>,
    ) -> Result<()> {
        for e in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let e = e.map_err(|e| Error::io(dir, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            let rel = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let path = e.path();
            if path.is_dir() {
                walk(&path, &rel, out)?;
            } else {
                let mut h = blake3::Hasher::new();
                let mut f = fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
                std::io::copy(&mut f, &mut h).map_err(|e| Error::io(&path, e))?;
                out.insert(rel, *h.finalize().as_bytes());
            }
        }
        Ok(())
    }
    let mut out = std::collections::BTreeMap::new();
    walk(dir, "", &mut out)?;
    Ok(out)
}
