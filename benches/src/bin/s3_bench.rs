//! Backup and restore throughput to a single-node Garage on loopback versus the local store,
//! and the S3 requests each backup and restore costs.
//!
//! ```text
//! RBK_GARAGE=/path/to/release/garage \
//!   cargo run --release -p rbk-benches --bin s3_bench -- [size-mib] [rounds]
//! ```
//! Defaults: a generated 4-task module of 256 MiB, 3 rounds. Each round, for each store in
//! turn (so machine drift affects both alike): a first backup into an empty store, a backup
//! after 5% of the module changed, and a restore of the second backup on a "fresh machine"
//! (empty data dir, no index). Prints the median of each, MB/s of module bytes, and for S3
//! the requests by kind and per GiB backed up.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use rbk_chunkstore::provider::{
    LocalProvider, Provider, RequestCounts, RetryPolicy, RetryingProvider, S3Options, S3Provider,
};
use rbk_engine::ops::{backup, restore};
use rbk_engine::testdata::{self, GenSpec};
use rbk_engine::{NoProgress, Repo, repo};
use rbk_testsupport::Garage;

const MODULE: &str = "com.rbk.BankModule";

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

#[derive(Default)]
struct Figures {
    first: Vec<f64>,
    incremental: Vec<f64>,
    restore: Vec<f64>,
    first_requests: RequestCounts,
    incremental_requests: RequestCounts,
    restore_requests: RequestCounts,
    logical_bytes: u64,
    stored_bytes: u64,
}

/// One round on one store: copies the pristine module, backs it up, advances it 5%, backs up
/// again, restores on a fresh machine.
fn round(
    pristine: &Path,
    work: &Path,
    provider: Arc<dyn Provider>,
    s3: Option<&S3Provider>,
    f: &mut Figures,
) {
    let data = work.join("data");
    rbk_testsupport::copy_tree(pristine, &data);
    let counts = || s3.map(S3Provider::requests).unwrap_or_default();
    let repo = Repo::open(provider.clone(), &repo::index_root(&data), true).expect("store");

    let before = counts();
    let t = Instant::now();
    let first = backup::backup(&repo, &data, MODULE, &NoProgress).expect("first backup");
    f.first.push(t.elapsed().as_secs_f64());
    f.first_requests = counts().since(&before);
    f.logical_bytes = first.stats.logical_bytes;
    f.stored_bytes = first.stats.new_stored_bytes;

    testdata::advance(&data, MODULE, 5).expect("advance");
    let before = counts();
    let t = Instant::now();
    let second = backup::backup(&repo, &data, MODULE, &NoProgress).expect("second backup");
    f.incremental.push(t.elapsed().as_secs_f64());
    f.incremental_requests = counts().since(&before);
    drop(repo);

    let target = work.join("restored");
    let fresh = Repo::open(provider, &repo::index_root(&target), false).expect("store");
    let before = counts();
    let t = Instant::now();
    restore::restore(
        &fresh,
        &target,
        &second.backup_id,
        restore::RestoreOptions::default(),
        &NoProgress,
    )
    .expect("restore");
    f.restore.push(t.elapsed().as_secs_f64());
    f.restore_requests = counts().since(&before);
}

fn show(name: &str, f: &Figures) {
    let mb = f.logical_bytes as f64 / 1e6;
    let (first, incr, rest) = (
        median(f.first.clone()),
        median(f.incremental.clone()),
        median(f.restore.clone()),
    );
    println!(
        "{name:<8} first {first:6.2} s ({:6.0} MB/s)   incremental {incr:5.2} s   restore {rest:6.2} s ({:6.0} MB/s)",
        mb / first,
        mb / rest
    );
}

fn show_requests(what: &str, r: RequestCounts, gib: f64) {
    println!(
        "  {what:<22} {:6} requests ({:.0} per GiB of module): get {}, head {}, put {}, multipart {}, list {}, delete {}",
        r.total(),
        r.total() as f64 / gib,
        r.get,
        r.head,
        r.put,
        r.multipart,
        r.list,
        r.delete
    );
}

fn main() {
    let size_mib = arg(1, 256);
    let rounds = arg(2, 3);
    let tmp = tempfile::tempdir().expect("temp dir");
    let pristine = tmp.path().join("pristine");
    testdata::generate(
        &pristine,
        &GenSpec {
            size_mib,
            tasks: 4,
            ..Default::default()
        },
    )
    .expect("generate");
    let garage = Garage::start();
    let (mut local, mut s3) = (Figures::default(), Figures::default());
    for r in 0..rounds {
        let work = tmp.path().join(format!("local{r}"));
        let provider: Arc<dyn Provider> = Arc::new(LocalProvider::new(work.join("store")));
        round(&pristine, &work, provider, None, &mut local);
        std::fs::remove_dir_all(&work).expect("cleanup");

        let work = tmp.path().join(format!("s3-{r}"));
        let bare = Arc::new(garage.s3_provider(&format!("round{r}"), S3Options::default()));
        let provider: Arc<dyn Provider> =
            Arc::new(RetryingProvider::new(bare.clone(), RetryPolicy::default()));
        round(&pristine, &work, provider, Some(&bare), &mut s3);
        std::fs::remove_dir_all(&work).expect("cleanup");
    }
    let gib = local.logical_bytes as f64 / (1u64 << 30) as f64;
    println!(
        "module {:.0} MiB ({} MiB stored after the first backup), {rounds} rounds, medians:",
        local.logical_bytes as f64 / (1 << 20) as f64,
        s3.stored_bytes >> 20
    );
    show("local", &local);
    show("garage", &s3);
    show_requests("first backup", s3.first_requests, gib);
    show_requests("incremental backup", s3.incremental_requests, gib);
    show_requests("restore", s3.restore_requests, gib);
}
