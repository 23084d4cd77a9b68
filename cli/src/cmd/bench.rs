//! `rbk bench dedup DIR...`: what rbk would store for successive generations of some data,
//! for several chunk sizes, without writing a store.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand};
use rbk_chunkstore::chunker::ChunkerParams;
use rbk_engine::ops::predict::{self, Prediction};
use serde_json::json;

use super::{Report, mib, usage};
use crate::progress::Bars;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Predict store size and dedup/compression ratios for directories taken as successive
    /// generations (e.g. copies of a module dir), for the store's chunk sizes and a sweep.
    Dedup(DedupArgs),
}

#[derive(Args, Debug)]
pub struct DedupArgs {
    /// One directory per generation, oldest first.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Chunk sizes to try, `MIN/AVG/MAX` in bytes or with a K or M suffix (e.g. 128K/512K/2M);
    /// repeatable. Default: the store's sizes, then a quarter and four times the average.
    #[arg(long = "chunk-sizes", value_name = "MIN/AVG/MAX")]
    pub chunk_sizes: Vec<String>,
    /// zstd level.
    #[arg(long, default_value_t = rbk_chunkstore::compress::DEFAULT_LEVEL)]
    pub level: i32,
}

fn size(s: &str) -> Option<u32> {
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        _ => (s, 1),
    };
    num.parse::<u32>().ok()?.checked_mul(mult)
}

fn parse_sizes(s: &str) -> Result<ChunkerParams> {
    let parts: Vec<Option<u32>> = s.split('/').map(size).collect();
    match parts.as_slice() {
        [Some(min), Some(avg), Some(max)] => Ok(ChunkerParams {
            min_size: *min,
            avg_size: *avg,
            max_size: *max,
        }),
        _ => Err(usage(format!(
            "--chunk-sizes `{s}` is not MIN/AVG/MAX (e.g. 128K/512K/2M)"
        ))),
    }
}

struct Predictions(Vec<Prediction>);

impl Report for Predictions {
    fn json(&self) -> serde_json::Value {
        json!(
            self.0
                .iter()
                .map(|p| json!({
                    "min_size": p.params.min_size,
                    "avg_size": p.params.avg_size,
                    "max_size": p.params.max_size,
                    "level": p.level,
                    "logical_bytes": p.logical_bytes,
                    "unique_bytes": p.unique_bytes,
                    "stored_bytes": p.stored_bytes,
                    "chunks": p.chunks,
                    "added_per_generation": p.added_per_generation,
                    "dedup_ratio": p.dedup_ratio(),
                    "compression_ratio": p.compression_ratio(),
                    "total_ratio": p.total_ratio(),
                    "mib_per_second": mib(p.throughput() as u64),
                }))
                .collect::<Vec<_>>()
        )
    }

    fn text(&self) -> String {
        let mut out = vec![format!(
            "{:<22} {:>10} {:>10} {:>10} {:>9} {:>7} {:>7} {:>7} {:>7}",
            "chunks min/avg/max",
            "logical",
            "unique",
            "stored",
            "chunks",
            "dedup",
            "compr",
            "total",
            "MiB/s"
        )];
        for p in &self.0 {
            let k = |b: u32| format!("{}K", b >> 10);
            out.push(format!(
                "{:<22} {:>10.1} {:>10.1} {:>10.1} {:>9} {:>6.2}x {:>6.2}x {:>6.2}x {:>7.0}",
                format!(
                    "{}/{}/{}",
                    k(p.params.min_size),
                    k(p.params.avg_size),
                    k(p.params.max_size)
                ),
                mib(p.logical_bytes),
                mib(p.unique_bytes),
                mib(p.stored_bytes),
                p.chunks,
                p.dedup_ratio(),
                p.compression_ratio(),
                p.total_ratio(),
                mib(p.throughput() as u64)
            ));
        }
        out.push("MiB; stored excludes manifests and pack trailers (48 bytes per chunk)".into());
        out.join("\n")
    }
}

pub fn run(command: &BenchCommand, json_out: bool, quiet: bool) -> Result<()> {
    let BenchCommand::Dedup(a) = command;
    let params = if a.chunk_sizes.is_empty() {
        predict::default_sweep()
    } else {
        a.chunk_sizes
            .iter()
            .map(|s| parse_sizes(s))
            .collect::<Result<_>>()?
    };
    let bars = Bars::new(!quiet && !json_out);
    let r = predict::predict(&a.dirs, &params, a.level, &bars)?;
    let report = Predictions(r);
    if json_out {
        outln!("{}", report.json());
    } else {
        outln!("{}", report.text());
    }
    Ok(())
}
