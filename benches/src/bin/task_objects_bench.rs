//! What a backup's record of its tasks costs the store, with the tasks inline in the manifest
//! (stores of format version 4) and in task objects (version 5): a generated module of many
//! tasks, backed up once, then again after a change to one task, then again after every
//! task's depots grew.
//!
//! ```text
//! cargo run --release -p rbk-benches --bin task_objects_bench -- [tasks] [size MiB]
//! ```
//! Defaults: 64 tasks, 256 MiB, into local stores. Prints, per store version and backup, the
//! manifest's bytes, the chunks the backup added and their compressed bytes.

use std::path::Path;
use std::sync::Arc;

use rbk_chunkstore::StoreConfig;
use rbk_chunkstore::provider::LocalProvider;
use rbk_engine::layout::module_dir;
use rbk_engine::ops::backup;
use rbk_engine::testdata::{self, GenSpec};
use rbk_engine::{NoProgress, Repo, repo};

const MODULE: &str = "com.rbk.BankModule";

/// Adds a file to the first PState of task 0.
fn change_one_task(data: &Path) {
    let pstates = module_dir(data, MODULE).join("tasks/0/pstates");
    let pstate = std::fs::read_dir(&pstates)
        .expect("pstates")
        .next()
        .expect("a pstate")
        .expect("entry")
        .path();
    let body: Vec<u8> = (0..200_000).map(|_| rand::random::<u8>()).collect();
    std::fs::write(pstate.join("extra.blob"), body).expect("write");
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("a number"))
        .collect();
    let tasks = args.first().copied().unwrap_or(64) as u32;
    let size_mib = args.get(1).copied().unwrap_or(256);
    println!("{tasks} tasks, {size_mib} MiB module");
    println!("store | backup | manifest bytes | new chunks | new stored bytes");
    for version in [4, 5] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = tmp.path().join("data");
        testdata::generate(
            &data,
            &GenSpec {
                tasks,
                size_mib,
                segment_bytes: 1 << 20,
                ..Default::default()
            },
        )
        .expect("generate");
        let store = tmp.path().join("store");
        std::fs::create_dir_all(&store).expect("store dir");
        let mut config = StoreConfig::new_random();
        config.version = version;
        std::fs::write(
            store.join("config"),
            serde_json::to_vec(&config).expect("json"),
        )
        .expect("config");
        let repo = Repo::open(
            Arc::new(LocalProvider::new(&store)),
            &repo::index_root(&data),
            false,
        )
        .expect("open");
        let steps: [(&str, &dyn Fn()); 4] = [
            ("first", &|| {}),
            ("unchanged", &|| {}),
            ("one task changed", &|| change_one_task(&data)),
            ("every depot grew", &|| {
                testdata::advance(&data, MODULE, 1).expect("advance");
            }),
        ];
        for (name, step) in steps {
            step();
            let r = backup::backup(&repo, &data, MODULE, &NoProgress).expect("backup");
            let manifest = std::fs::read(store.join(repo::manifest_key(&r.backup_id)))
                .expect("manifest")
                .len();
            println!(
                "v{version} | {name} | {manifest} | {} | {}",
                r.stats.new_chunks, r.stats.new_stored_bytes
            );
        }
    }
}
