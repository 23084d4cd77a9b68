//! The backups page with many backups: how long `rbk serve --http` takes to read them all,
//! how fast it answers afterwards, and its memory.
//!
//! ```text
//! cargo build --release -p rbk-cli
//! cargo run --release -p rbk-benches --bin web_bench -- target/release/rbk [backups] [requests]
//! ```
//! Defaults: 10,000 backups of one 4-task module (each manifest lists ~800 chunks: a depot,
//! a PState and a topology per task), written straight into a local store; 200 requests per
//! route, one at a time, over fresh connections.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rbk_chunkstore::ChunkId;
use rbk_chunkstore::provider::{LocalProvider, Provider};
use rbk_engine::manifest::{
    BackupStats, DepotEntry, FileEntry, Manifest, ObjectEntry, TaskEntry, TopologyEntry,
};
use rbk_engine::{BackupId, Repo, repo};

const MODULE: &str = "com.bench.Web";

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn file(path: &str, chunks: usize, seed: u64) -> FileEntry {
    FileEntry {
        path: path.into(),
        size: chunks as u64 * 512 * 1024,
        mtime_ns: 0,
        dev: 0,
        ino: 0,
        mode: 0o644,
        owner: None,
        chunks: (0..chunks)
            .map(|i| ChunkId::of(&(seed * 1000 + i as u64).to_le_bytes()))
            .collect(),
    }
}

fn manifest(b: usize) -> Manifest {
    let created = 1_700_000_000_000 + b as u64 * 60_000;
    let tasks = (0..4u32)
        .map(|t| TaskEntry {
            task: t,
            depots: vec![DepotEntry {
                name: "transfers".into(),
                start_offset: 0,
                end_offset: b as u64 * 100 + u64::from(t),
                files: vec![file(
                    "00000000000000000000.seg",
                    50,
                    b as u64 * 8 + u64::from(t),
                )],
            }],
            pstates: vec![ObjectEntry {
                name: "balances".into(),
                files: vec![file("000123.sst", 150, b as u64 * 8 + 4 + u64::from(t))],
            }],
            topologies: vec![TopologyEntry {
                name: "banking".into(),
                commit_id: Some(b as u64),
                files: vec![file("progress.json", 1, b as u64)],
            }],
        })
        .collect();
    Manifest {
        backup_id: BackupId {
            module: MODULE.into(),
            millis: created,
            suffix: 0,
        },
        created_ms: created,
        rbk_version: "bench".into(),
        task_count: 4,
        stats: BackupStats {
            logical_bytes: 400 << 20,
            files: 12,
            files_reused: 8,
            new_chunks: 40,
            new_stored_bytes: 5 << 20,
        },
        module_files: vec![file("module.json", 1, 7)],
        tasks,
        dir_meta: vec![],
        session: None,
        task_refs: vec![],
    }
}

/// GET `path`: status and body length.
fn get(addr: &str, path: &str) -> (u16, usize, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("response");
    let text = String::from_utf8_lossy(&raw).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, raw.len(), text)
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let rbk = std::env::args()
        .nth(1)
        .expect("usage: web_bench path/to/rbk [backups] [requests]");
    let backups = arg(2, 10_000);
    let requests = arg(3, 200);
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    let store = tmp.path().join("store");
    let provider: Arc<dyn Provider> = Arc::new(LocalProvider::new(&store));
    let repo = Repo::open(provider, &repo::index_root(&data), true).expect("store");
    let t = Instant::now();
    let session = repo
        .store()
        .begin_session("backup", "bench")
        .expect("session");
    let mut ids = Vec::with_capacity(backups);
    for b in 0..backups {
        let m = manifest(b);
        let name = m.backup_id.to_string();
        ids.push(name.clone());
        session
            .write_manifest(MODULE, |_| (name.clone(), Bytes::from(m.encode())))
            .expect("manifest");
    }
    session.end().expect("end session");
    drop(repo);
    let one = manifest(0).encode().len();
    println!(
        "store: {backups} backups of {MODULE}, {one} bytes per manifest; written in {:.1}s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let mut child = Command::new(&rbk)
        .args(["serve", "--http", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--provider")
        .arg(format!("fs {}", store.display()))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("rbk serve");
    let mut out = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    let addr = loop {
        let mut buf = [0u8; 256];
        let n = out.read(&mut buf).expect("read");
        assert!(n > 0, "rbk serve stopped: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        if let Some(line) = seen
            .lines()
            .find(|l| l.starts_with("backups page on http://"))
        {
            break line
                .trim_start_matches("backups page on http://")
                .trim_end_matches('/')
                .to_string();
        }
    };
    // Everything is read once the oldest backup's row is.
    let oldest = format!(
        "/api/modules/{MODULE}/backups?pageSize=1&pageToken={}",
        ids[1]
    );
    loop {
        let (_, _, body) = get(&addr, &oldest);
        if body.contains("\"status\":\"ok\"") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "first look: every backup read after {:.2}s; rbk serve peak RSS {:.0} MiB",
        t.elapsed().as_secs_f64(),
        peak_rss_mib(child.id())
    );
    let middle = &ids[backups / 2];
    for (what, path) in [
        ("overview page", "/".to_string()),
        ("module page, newest 50", format!("/modules/{MODULE}")),
        (
            "module page, 50 from the middle",
            format!("/modules/{MODULE}?pageToken={middle}"),
        ),
        (
            "API page of 1000",
            format!("/api/modules/{MODULE}/backups?pageSize=1000"),
        ),
        (
            "one backup's detail",
            format!("/modules/{MODULE}/backups/{middle}"),
        ),
        ("metrics", "/metrics".to_string()),
    ] {
        let mut times = Vec::with_capacity(requests);
        let mut bytes = 0;
        for _ in 0..requests {
            let t = Instant::now();
            let (status, n, _) = get(&addr, &path);
            times.push(t.elapsed());
            assert_eq!(status, 200, "{path}");
            bytes = n;
        }
        times.sort();
        let mean = times.iter().sum::<Duration>() / requests as u32;
        println!(
            "{what:34} mean {:7.2} ms, p99 {:7.2} ms, {bytes} bytes",
            mean.as_secs_f64() * 1000.0,
            times[requests * 99 / 100].as_secs_f64() * 1000.0
        );
    }
    println!(
        "rbk serve peak RSS after the requests: {:.0} MiB",
        peak_rss_mib(child.id())
    );
    let _ = child.kill();
    let _ = child.wait();
}
