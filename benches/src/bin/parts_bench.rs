//! Aggregate throughput of a backup in parts (docs/distributed.md) into one Garage, with 1, 2
//! and 4 workers, each a "machine" of its own: its own data dir holding its share of the
//! tasks, its own local index, its own S3 client and runtime, all running at once.
//!
//! ```text
//! RBK_GARAGE=/path/to/garage \
//!   cargo run --release -p rbk-benches --bin parts_bench -- [size-mib] [rounds]
//! ```
//! Defaults: a generated 8-task module of 256 MiB, 3 rounds. Each round and worker count
//! backs the module up into an empty store prefix: `begin`, the parts in parallel (worker i
//! holds tasks i, i + W, …), `commit`. Prints the median wall time from `begin` to the end of
//! `commit`, the module's MB/s, and the S3 requests of every worker together, per GiB.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rbk_chunkstore::provider::{
    Provider, RequestCounts, RetryPolicy, RetryingProvider, S3Options, S3Provider,
};
use rbk_engine::layout::module_dir;
use rbk_engine::ops::backup::Source;
use rbk_engine::ops::parts;
use rbk_engine::testdata::{self, GenSpec};
use rbk_engine::{NoProgress, Repo, repo};
use rbk_testsupport::Garage;

const MODULE: &str = "com.rbk.BankModule";
const TASKS: u32 = 8;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The data dir of worker `i` of `w`: the module's files and tasks i, i + w, ….
fn worker_dir(pristine: &Path, root: &Path, i: u32, w: u32) -> PathBuf {
    let data = root.join(format!("w{i}"));
    let from = module_dir(pristine, MODULE);
    let to = module_dir(&data, MODULE);
    std::fs::create_dir_all(to.join("tasks")).expect("mkdir");
    for e in std::fs::read_dir(&from).expect("read dir") {
        let e = e.expect("entry");
        if e.file_type().expect("type").is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
    for t in (i..TASKS).step_by(w as usize) {
        rbk_testsupport::copy_tree(
            &from.join(format!("tasks/{t}")),
            &to.join(format!("tasks/{t}")),
        );
    }
    data
}

fn client(garage: &Garage, prefix: &str) -> (Arc<S3Provider>, Arc<dyn Provider>) {
    let bare = Arc::new(garage.s3_provider(prefix, S3Options::default()));
    let p: Arc<dyn Provider> =
        Arc::new(RetryingProvider::new(bare.clone(), RetryPolicy::default()));
    (bare, p)
}

fn main() {
    let size_mib = arg(1, 256);
    let rounds = arg(2, 3) as usize;
    let tmp = tempfile::tempdir().expect("temp dir");
    let pristine = tmp.path().join("pristine");
    testdata::generate(
        &pristine,
        &GenSpec {
            size_mib,
            tasks: TASKS,
            ..Default::default()
        },
    )
    .expect("generate");
    let garage = Garage::start();
    let mut logical = 0u64;
    println!("workers   median s   MB/s   requests per GiB (all workers, begin to commit)");
    for workers in [1u32, 2, 4] {
        let mut times = Vec::new();
        let mut requests = RequestCounts::default();
        for r in 0..rounds {
            let root = tmp.path().join(format!("r{workers}-{r}"));
            let dirs: Vec<PathBuf> = (0..workers)
                .map(|i| worker_dir(&pristine, &root, i, workers))
                .collect();
            let prefix = format!("parts{workers}-{r}");
            let (coord_bare, coord) = client(&garage, &prefix);
            let coordinator =
                Repo::open(coord, &repo::index_root(&root.join("c")), true).expect("store");
            let t = Instant::now();
            let pending = parts::begin(&coordinator, MODULE, parts::DEFAULT_LEASE).expect("begin");
            let counts: Vec<RequestCounts> = std::thread::scope(|s| {
                let handles: Vec<_> = dirs
                    .iter()
                    .map(|data| {
                        let (bare, p) = client(&garage, &prefix);
                        let id = pending.id.clone();
                        s.spawn(move || {
                            let repo = Repo::open(p, &repo::index_root(data), true).expect("store");
                            parts::part(&repo, data, &id, Source::Files, &NoProgress)
                                .expect("part");
                            bare.requests()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("worker"))
                    .collect()
            });
            let done = parts::commit(&coordinator, &pending.id).expect("commit");
            times.push(t.elapsed().as_secs_f64());
            logical = done.stats.logical_bytes;
            requests = counts
                .into_iter()
                .fold(coord_bare.requests(), |a, b| a.plus(&b));
            drop(coordinator);
            let _ = std::fs::remove_dir_all(&root);
        }
        let gib = logical as f64 / (1u64 << 30) as f64;
        let s = median(times);
        println!(
            "{workers:<9} {s:8.2} {:6.0}   {:.0} (get {:.0}, head {:.0}, put {:.0}, list {:.0}, delete {:.0})",
            logical as f64 / 1e6 / s,
            requests.total() as f64 / gib,
            requests.get as f64 / gib,
            requests.head as f64 / gib,
            requests.put as f64 / gib,
            requests.list as f64 / gib,
            requests.delete as f64 / gib,
        );
    }
}
