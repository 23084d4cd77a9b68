//! The fixed cost of a backup against the size of the store: an incremental backup of a
//! small module into Garage stores of 1k, 10k and 100k packs, with the index sync of version
//! 4 stores (no listing of `packs/` while the index's last full listing is recent) and with
//! the full listing every session did before (`full_sync_every` = 0), alternating.
//!
//! ```text
//! RBK_GARAGE=/path/to/garage \
//!   cargo run --release -p rbk-benches --bin sync_bench -- [packs ...]
//! ```
//! Defaults: 1000 10000 100000. The packs are synthetic (one small chunk each, valid
//! trailers); the module is a generated 4-task module of 8 MiB, advanced by 1% before each
//! backup. Prints, per store size, the median time of 3 backups in each mode and the S3
//! requests of one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rbk_chunkstore::pack::PackBuilder;
use rbk_chunkstore::provider::{Provider, RequestCounts, RetryPolicy, RetryingProvider, S3Options};
use rbk_chunkstore::session::SessionTiming;
use rbk_chunkstore::{ChunkId, PackId, keys};
use rbk_engine::ops::backup;
use rbk_engine::testdata::{self, GenSpec};
use rbk_engine::{NoProgress, Repo, repo};
use rbk_testsupport::Garage;

const MODULE: &str = "com.rbk.BankModule";
const ROUNDS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Puts `n` packs of one random 256-byte chunk each, 64 at a time.
fn fill(p: &Arc<dyn Provider>, n: usize) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut set: tokio::task::JoinSet<rbk_chunkstore::Result<bool>> =
            tokio::task::JoinSet::new();
        for _ in 0..n {
            if set.len() >= 64 {
                set.join_next()
                    .await
                    .expect("task")
                    .expect("join")
                    .expect("put");
            }
            let p = p.clone();
            set.spawn(async move {
                let chunk: Vec<u8> = (0..256).map(|_| rand::random::<u8>()).collect();
                let mut b = PackBuilder::new();
                b.add(ChunkId::of(&chunk), chunk.len() as u32, &chunk);
                let (bytes, _) = b.finish();
                let key = keys::pack(&PackId::of(&bytes));
                p.put_if_absent(&key, Bytes::from(bytes)).await
            });
        }
        while let Some(r) = set.join_next().await {
            r.expect("join").expect("put");
        }
    });
}

fn show(r: &RequestCounts) -> String {
    format!(
        "{} requests (list {}, get {}, head {}, put {}, delete {})",
        r.total(),
        r.list,
        r.get,
        r.head,
        r.put,
        r.delete
    )
}

fn main() {
    let sizes: Vec<usize> = {
        let args: Vec<usize> = std::env::args()
            .skip(1)
            .filter_map(|a| a.parse().ok())
            .collect();
        if args.is_empty() {
            vec![1000, 10_000, 100_000]
        } else {
            args
        }
    };
    let garage = Garage::start();
    let tmp = tempfile::tempdir().expect("temp dir");
    println!(
        "packs      new sync: median s, requests                  full listing: median s, requests"
    );
    for n in sizes {
        let bare = Arc::new(garage.s3_provider(&format!("sync{n}"), S3Options::default()));
        let provider: Arc<dyn Provider> =
            Arc::new(RetryingProvider::new(bare.clone(), RetryPolicy::default()));
        let data = tmp.path().join(format!("data{n}"));
        testdata::generate(
            &data,
            &GenSpec {
                size_mib: 8,
                tasks: 4,
                ..Default::default()
            },
        )
        .expect("generate");
        let repo = Repo::open(provider.clone(), &repo::index_root(&data), true).expect("store");
        let t = Instant::now();
        fill(&provider, n);
        let filled = t.elapsed().as_secs_f64();
        // The first backup reads every pack's trailer into the index.
        let t = Instant::now();
        backup::backup(&repo, &data, MODULE, &NoProgress).expect("first backup");
        let first = t.elapsed().as_secs_f64();
        eprintln!(
            "{n} packs: written in {filled:.1} s; first backup (index of every trailer) {first:.1} s"
        );

        let (mut new, mut old) = (Vec::new(), Vec::new());
        let (mut new_req, mut old_req) = (RequestCounts::default(), RequestCounts::default());
        for _ in 0..ROUNDS {
            for full in [false, true] {
                repo.store().set_session_timing(SessionTiming {
                    full_sync_every: if full {
                        Duration::ZERO
                    } else {
                        SessionTiming::default().full_sync_every
                    },
                    ..Default::default()
                });
                testdata::advance(&data, MODULE, 1).expect("advance");
                let before = bare.requests();
                let t = Instant::now();
                backup::backup(&repo, &data, MODULE, &NoProgress).expect("backup");
                let s = t.elapsed().as_secs_f64();
                let r = bare.requests().since(&before);
                if full {
                    old.push(s);
                    old_req = r;
                } else {
                    new.push(s);
                    new_req = r;
                }
            }
        }
        println!(
            "{n:<9}  {:.3} s, {:<44}  {:.3} s, {}",
            median(new),
            show(&new_req),
            median(old),
            show(&old_req)
        );
        drop(repo);
        let _ = std::fs::remove_dir_all(&data);
    }
}
