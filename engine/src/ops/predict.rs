//! `bench dedup`: what rbk would store for successive generations of some data, for several
//! chunker settings, without writing a store.
//!
//! Each directory is one generation (e.g. copies of a module dir taken a day apart). Every
//! regular file is cut with the real chunker, every chunk hashed with BLAKE3, and each chunk
//! not seen before — in any generation so far, as a store deduplicates — compressed as a
//! backup compresses it (depot segments with their record CRCs elided, zstd at the given
//! level). So the prediction is what backups of those generations would add to a store, less
//! manifests and pack trailers (`docs/format.md`: 48 bytes per chunk, 72 per pack).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use rayon::prelude::*;
use rbk_chunkstore::chunker::{Chunker, ChunkerParams};
use rbk_chunkstore::compress;
use rbk_chunkstore::{ChunkId, Cut};

use crate::{Error, Progress, Result};

/// What one chunker setting would store.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    pub params: ChunkerParams,
    pub level: i32,
    /// Bytes of every file of every generation.
    pub logical_bytes: u64,
    /// Distinct chunks over all generations, and their bytes before compression.
    pub chunks: u64,
    pub unique_bytes: u64,
    /// Those chunks compressed.
    pub stored_bytes: u64,
    /// What each generation would add, compressed, in order.
    pub added_per_generation: Vec<u64>,
    pub seconds: f64,
}

impl Prediction {
    pub fn dedup_ratio(&self) -> f64 {
        self.logical_bytes as f64 / self.unique_bytes.max(1) as f64
    }

    pub fn compression_ratio(&self) -> f64 {
        self.unique_bytes as f64 / self.stored_bytes.max(1) as f64
    }

    pub fn total_ratio(&self) -> f64 {
        self.logical_bytes as f64 / self.stored_bytes.max(1) as f64
    }

    /// Logical bytes per second of the whole pass.
    pub fn throughput(&self) -> f64 {
        self.logical_bytes as f64 / self.seconds.max(1e-9)
    }
}

/// The store's defaults, then a smaller and a larger average chunk (min = avg / 4,
/// max = avg × 4).
pub fn default_sweep() -> Vec<ChunkerParams> {
    let d = ChunkerParams::default();
    let around = |avg: u32| ChunkerParams {
        min_size: avg / 4,
        avg_size: avg,
        max_size: avg * 4,
    };
    vec![d, around(d.avg_size / 4), around(d.avg_size * 4)]
}

/// Every regular file under `dir`, with its path relative to `dir`, sorted. Symlinks are not
/// followed (a backup refuses them; here they are skipped).
fn files_of(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))? {
            let e = e.map_err(|e| Error::io(&d, e))?;
            let t = e.file_type().map_err(|err| Error::io(e.path(), err))?;
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                let rel = e
                    .path()
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_string_lossy()
                    .into_owned();
                out.push((rel, e.path()));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Predicts what rbk would store for `generations` with each of `params` at zstd `level`.
///
/// # Errors
/// `InvalidInput` for chunk sizes outside FastCDC's limits or a directory that does not
/// exist; I/O errors reading the files.
pub fn predict(
    generations: &[PathBuf],
    params: &[ChunkerParams],
    level: i32,
    progress: &dyn Progress,
) -> Result<Vec<Prediction>> {
    if generations.is_empty() {
        return Err(Error::InvalidInput(
            "bench dedup needs at least one directory (one per generation)".into(),
        ));
    }
    let mut listed = Vec::new();
    for g in generations {
        if !g.is_dir() {
            return Err(Error::InvalidInput(format!(
                "`{}` is not a directory; pass one directory per generation",
                g.display()
            )));
        }
        listed.push(files_of(g)?);
    }
    let total: u64 = listed
        .iter()
        .flatten()
        .map(|(_, p)| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum();
    params
        .iter()
        .map(|p| {
            p.validate()?;
            progress.begin(
                &format!("bench dedup {}/{}/{}", p.min_size, p.avg_size, p.max_size),
                total,
            );
            let r = predict_one(&listed, *p, level, progress);
            progress.end();
            r
        })
        .collect()
}

fn predict_one(
    generations: &[Vec<(String, PathBuf)>],
    params: ChunkerParams,
    level: i32,
    progress: &dyn Progress,
) -> Result<Prediction> {
    let started = Instant::now();
    let chunker = Chunker::new(params)?;
    // As a new store cuts immutable files (SSTs) and files that only grow (its
    // `append_chunk_size` is the chunker's average).
    let immutable = Chunker::fixed(rbk_chunkstore::DEFAULT_IMMUTABLE_CHUNK)?;
    let appended = Chunker::fixed(params.avg_size)?;
    let seen: Mutex<HashSet<ChunkId>> = Mutex::new(HashSet::new());
    let mut out = Prediction {
        params,
        level,
        logical_bytes: 0,
        chunks: 0,
        unique_bytes: 0,
        stored_bytes: 0,
        added_per_generation: Vec::new(),
        seconds: 0.0,
    };
    for files in generations {
        // (logical, new chunks, new raw, new stored) of each file, files in parallel.
        let sizes: Vec<(u64, u64, u64, u64)> = files
            .par_iter()
            .map(|(rel, path)| -> Result<(u64, u64, u64, u64)> {
                // As a backup stores it (paths under a module dir or a data dir alike).
                let key = format!("/{rel}");
                let content = super::backup::content_of(&key);
                let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let mut counts = (0, 0, 0, 0);
                let mut stored = Vec::new();
                let chunker = match super::backup::cut_of(&key) {
                    Cut::Immutable => &immutable,
                    Cut::Appended => &appended,
                    Cut::ContentDefined => &chunker,
                };
                chunker
                    .chunk_reader(
                        file,
                        |buf, ranges| -> std::result::Result<(), std::io::Error> {
                            for r in ranges {
                                let data = &buf[r.clone()];
                                let id = ChunkId::of(data);
                                counts.0 += data.len() as u64;
                                let new = seen.lock().unwrap_or_else(|p| p.into_inner()).insert(id);
                                if new {
                                    compress::compress_into(data, level, content, &mut stored)
                                        .map_err(std::io::Error::other)?;
                                    counts.1 += 1;
                                    counts.2 += data.len() as u64;
                                    counts.3 += stored.len() as u64;
                                }
                            }
                            progress.advance(ranges.iter().map(|r| r.len() as u64).sum());
                            Ok(())
                        },
                    )
                    .map_err(|e| Error::io(path, e))?;
                Ok(counts)
            })
            .collect::<Result<_>>()?;
        let mut added = 0;
        for (logical, chunks, raw, stored) in sizes {
            out.logical_bytes += logical;
            out.chunks += chunks;
            out.unique_bytes += raw;
            out.stored_bytes += stored;
            added += stored;
        }
        out.added_per_generation.push(added);
    }
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}
