//! Criterion micro-benchmarks of each backup and restore stage on depot-like data, per core:
//! FastCDC chunking, BLAKE3 hashing, zstd compression (levels 1 and 3, a fresh context per
//! chunk as `zstd::bulk::compress` does), rbk's chunk encoding (reused context, plain and with
//! depot CRCs elided) and decoding (decompress + undo + BLAKE3 check), and whole-file ingest
//! into a chunk store on a local directory (all stages, all cores).
//!
//! Run: `cargo bench -p rbk-benches` (figures in docs/performance.md).

use std::io::Write;
use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rbk_chunkstore::chunker::{Chunker, ChunkerParams};
use rbk_chunkstore::compress::{self, Content};
use rbk_chunkstore::provider::LocalProvider;
use rbk_chunkstore::{ChunkId, ChunkStore};

/// Depot-like bytes: framed JSON-ish transfer records (compress about 2-3x).
fn depot_data(len: usize) -> Vec<u8> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut out = Vec::with_capacity(len + 512);
    let words = ["rent", "salary", "refund", "invoice", "coffee", "travel"];
    let mut i = 0u64;
    while out.len() < len {
        let rec = format!(
            r#"{{"id":{i},"from":"acct-{:08}","to":"acct-{:08}","amount_cents":{},"memo":"{}","ref":"{:016x}"}}"#,
            rng.gen_range(0..100_000),
            rng.gen_range(0..100_000),
            rng.gen_range(1..1_000_000),
            words[rng.gen_range(0..words.len())],
            rng.next_u64()
        );
        out.extend_from_slice(&(rec.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc32c::crc32c(rec.as_bytes()).to_le_bytes());
        out.write_all(rec.as_bytes()).unwrap();
        i += 1;
    }
    out.truncate(len);
    out
}

fn stages(c: &mut Criterion) {
    let data = depot_data(64 << 20);
    let mut g = c.benchmark_group("stage");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    let chunker = Chunker::new(ChunkerParams::default()).unwrap();
    g.bench_function("fastcdc_chunk", |b| {
        b.iter(|| chunker.chunk_lengths(&data).len())
    });
    g.bench_function("blake3_hash", |b| b.iter(|| blake3::hash(&data)));
    let one_mib = &data[..1 << 20];
    g.throughput(Throughput::Bytes(one_mib.len() as u64));
    for level in [1, 3] {
        g.bench_with_input(
            BenchmarkId::new("zstd_compress_1MiB", level),
            &level,
            |b, &level| b.iter(|| zstd::bulk::compress(one_mib, level).unwrap().len()),
        );
    }
    // What a backup does per chunk, and what a restore does to undo it.
    let id = ChunkId::of(one_mib);
    for (name, content) in [
        ("plain", Content::Opaque),
        ("crcs_elided", Content::FramedLog),
    ] {
        let mut stored = Vec::new();
        g.bench_function(BenchmarkId::new("encode_chunk_1MiB", name), |b| {
            b.iter(|| {
                compress::compress_into(one_mib, compress::DEFAULT_LEVEL, content, &mut stored)
                    .unwrap();
                stored.len()
            })
        });
        let mut ctx = zstd::bulk::Decompressor::new().unwrap();
        let mut out = Vec::new();
        g.bench_function(BenchmarkId::new("decode_verify_chunk_1MiB", name), |b| {
            b.iter(|| {
                compress::decompress_verified_into(
                    &mut ctx,
                    &stored,
                    one_mib.len(),
                    2 << 20,
                    &id,
                    &mut out,
                )
                .unwrap();
                out.len()
            })
        });
    }
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let mut data = depot_data(128 << 20);
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.sample_size(10);
    let mut round = 0u64;
    g.bench_function("file_to_local_store", |b| {
        b.iter_batched(
            || {
                // Fresh bytes each round so nothing deduplicates.
                round += 1;
                data[..8].copy_from_slice(&round.to_le_bytes());
                for i in (0..data.len()).step_by(1 << 16) {
                    data[i] = data[i].wrapping_add(1);
                }
                let dir = tempfile::tempdir().unwrap();
                let store = ChunkStore::open(
                    Arc::new(LocalProvider::new(dir.path().join("store"))),
                    &dir.path().join("index"),
                    true,
                )
                .unwrap();
                (dir, store, data.clone())
            },
            |(dir, store, data)| {
                use rayon::prelude::*;
                let session = store.begin_session("backup", "bench").unwrap();
                let r: Result<u64, std::io::Error> =
                    store
                        .chunker()
                        .clone()
                        .chunk_reader(&data[..], |buf, ranges| {
                            ranges.par_iter().for_each(|r| {
                                let d = &buf[r.clone()];
                                session
                                    .put_chunk_as(ChunkId::of(d), d, Content::FramedLog)
                                    .unwrap();
                            });
                            Ok(())
                        });
                r.unwrap();
                session.flush().unwrap();
                session.end().unwrap();
                drop(store);
                drop(dir);
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, stages, ingest);
criterion_main!(benches);
