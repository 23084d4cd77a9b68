//! Content-defined chunking with FastCDC v2020, streaming over any reader.
//!
//! Instead of `fastcdc::v2020::StreamCDC` (which allocates a `Vec` per chunk and shifts its
//! whole buffer after each one), the chunker fills one large buffer, cuts every chunk that is
//! fully determined by the bytes present, and hands the caller the buffer with the chunk
//! ranges. A cut is fully determined once `max_size` bytes follow the chunk start (or the input
//! ended), so the boundaries are exactly those of a single pass over the whole input. Handing
//! over a batch lets the caller hash and compress its chunks in parallel.

use std::io::{self, Read};
use std::ops::Range;
use std::sync::{Arc, Mutex};

use fastcdc::v2020::{MASKS, logarithm2};

use crate::{Error, Result};

/// Chunk size bounds in bytes. Part of the store config: changing them changes every boundary,
/// so a store keeps the parameters it was created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ChunkerParams {
    pub min_size: u32,
    pub avg_size: u32,
    pub max_size: u32,
}

impl Default for ChunkerParams {
    /// 128 KiB / 512 KiB / 2 MiB: small enough that the appended tail of a depot segment or
    /// WAL re-uploads little, large enough that a 1 GiB module is ~2,000 chunks. See
    /// docs/performance.md.
    fn default() -> Self {
        ChunkerParams {
            min_size: 128 * 1024,
            avg_size: 512 * 1024,
            max_size: 2 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// # Errors
    /// `InvalidInput` when the sizes are outside FastCDC's limits or not ordered.
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min_size)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg_size)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max_size)
            && self.min_size <= self.avg_size
            && self.avg_size <= self.max_size;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidInput(format!(
                "chunk sizes min {} / avg {} / max {} are outside FastCDC's limits \
                 ({MINIMUM_MIN}..={MINIMUM_MAX} / {AVERAGE_MIN}..={AVERAGE_MAX} / {MAXIMUM_MIN}..={MAXIMUM_MAX}) or not ordered",
                self.min_size, self.avg_size, self.max_size
            )))
        }
    }
}

/// A FastCDC v2020 chunker (normalization level 1, the standard gear table), or one that
/// cuts at fixed offsets ([`Chunker::fixed`]).
#[derive(Debug, Clone)]
pub struct Chunker {
    params: ChunkerParams,
    /// Cut every this many bytes instead.
    fixed: Option<usize>,
    mask_s: u64,
    mask_l: u64,
    /// Read buffers returned by finished calls: allocating and zeroing a buffer per file cost
    /// ~8% of a backup's CPU time.
    buffers: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Chunker {
    /// # Errors
    /// `InvalidInput` when `params` fail [`ChunkerParams::validate`].
    pub fn new(params: ChunkerParams) -> Result<Self> {
        params.validate()?;
        let bits = logarithm2(params.avg_size) as usize;
        Ok(Chunker {
            params,
            mask_s: MASKS[bits + 1],
            mask_l: MASKS[bits - 1],
            buffers: Arc::default(),
            fixed: None,
        })
    }

    /// A chunker cutting every `size` bytes (the last chunk shorter), for files that never
    /// change once written: they deduplicate only as whole files, so content-defined cuts buy
    /// nothing there, and large chunks compress better.
    ///
    /// # Errors
    /// `InvalidInput` for a size of 0 or more than [`fastcdc::v2020::MAXIMUM_MAX`].
    pub fn fixed(size: u32) -> Result<Self> {
        if size == 0 || size > fastcdc::v2020::MAXIMUM_MAX {
            return Err(Error::InvalidInput(format!(
                "fixed chunk size {size} must be 1 ..= {}",
                fastcdc::v2020::MAXIMUM_MAX
            )));
        }
        Ok(Chunker {
            params: ChunkerParams {
                min_size: size,
                avg_size: size,
                max_size: size,
            },
            mask_s: 0,
            mask_l: 0,
            buffers: Arc::default(),
            fixed: Some(size as usize),
        })
    }

    /// The bounds of the chunks it cuts (all three equal for a fixed-size chunker).
    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// Length of the next chunk at the start of `data`, which must be either at least
    /// `max_size` bytes or the end of the input.
    fn cut(&self, data: &[u8]) -> usize {
        if let Some(size) = self.fixed {
            return data.len().min(size);
        }
        let (_, len) = fastcdc::v2020::cut(
            data,
            self.params.min_size as usize,
            self.params.avg_size as usize,
            self.params.max_size as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        len
    }

    /// Splits everything `reader` yields into chunks. `on_batch` receives a buffer and the
    /// ranges of the complete chunks in it, in input order; their concatenation over all calls
    /// is the input. Memory use is one buffer of 2 × max chunk size (4 MiB by default; one
    /// chunk size for a fixed-size chunker):
    /// every batch but the last holds at least one max-size chunk's worth of cut chunks, and
    /// a backup stores several files at once, so a larger buffer only costs memory.
    ///
    /// Returns the number of bytes read.
    ///
    /// # Errors
    /// Read errors, and whatever `on_batch` returns.
    pub fn chunk_reader<R, E, F>(&self, reader: R, mut on_batch: F) -> Result<u64, E>
    where
        R: Read,
        E: From<io::Error>,
        F: FnMut(&[u8], &[Range<usize>]) -> Result<(), E>,
    {
        let max = self.params.max_size as usize;
        let pooled = self.buffers.lock().unwrap_or_else(|p| p.into_inner()).pop();
        // A fixed-size cut needs no look-ahead: one chunk's worth is a whole batch.
        let len = if self.fixed.is_some() { max } else { 2 * max };
        let mut buf = pooled.unwrap_or_else(|| vec![0u8; len]);
        let result = self.chunk_into(&mut buf, reader, &mut on_batch);
        self.buffers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(buf);
        result
    }

    fn chunk_into<R, E, F>(&self, buf: &mut [u8], mut reader: R, on_batch: &mut F) -> Result<u64, E>
    where
        R: Read,
        E: From<io::Error>,
        F: FnMut(&[u8], &[Range<usize>]) -> Result<(), E>,
    {
        let max = self.params.max_size as usize;
        let mut len = 0usize;
        let mut total = 0u64;
        let mut eof = false;
        let mut ranges = Vec::new();
        while !eof || len > 0 {
            while !eof && len < buf.len() {
                match reader.read(&mut buf[len..]) {
                    Ok(0) => eof = true,
                    Ok(n) => {
                        len += n;
                        total += n as u64;
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e.into()),
                }
            }
            ranges.clear();
            let mut pos = 0;
            while pos < len && (eof || len - pos >= max) {
                let n = self.cut(&buf[pos..len]);
                ranges.push(pos..pos + n);
                pos += n;
            }
            if !ranges.is_empty() {
                on_batch(&buf[..len], &ranges)?;
            }
            buf.copy_within(pos..len, 0);
            len -= pos;
        }
        Ok(total)
    }

    /// Convenience for small inputs and tests: the chunk lengths of `data`.
    pub fn chunk_lengths(&self, data: &[u8]) -> Vec<usize> {
        let mut out = Vec::new();
        let r: Result<u64, io::Error> = self.chunk_reader(data, |_, ranges| {
            out.extend(ranges.iter().map(|r| r.len()));
            Ok(())
        });
        r.expect("reading from a slice cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngCore, SeedableRng, rngs::StdRng};

    fn small() -> Chunker {
        Chunker::new(ChunkerParams {
            min_size: 64,
            avg_size: 256,
            max_size: 1024,
        })
        .unwrap()
    }

    /// A reader that returns at most `step` bytes per call, to exercise refills.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn chunks_concatenate_to_input_and_respect_bounds(
            data in proptest::collection::vec(any::<u8>(), 0..20_000),
            step in 1usize..5000,
        ) {
            let c = small();
            let mut joined = Vec::new();
            let mut lens = Vec::new();
            let total: Result<u64, io::Error> = c.chunk_reader(Trickle { data: &data, step }, |buf, ranges| {
                for r in ranges {
                    joined.extend_from_slice(&buf[r.clone()]);
                    lens.push(r.len());
                }
                Ok(())
            });
            prop_assert_eq!(total.unwrap(), data.len() as u64);
            prop_assert_eq!(&joined, &data);
            for (i, l) in lens.iter().enumerate() {
                prop_assert!(*l <= 1024);
                if i + 1 < lens.len() {
                    prop_assert!(*l >= 64, "non-final chunk of {} bytes", l);
                }
            }
            // Streaming never changes boundaries: same as one pass over the whole slice.
            prop_assert_eq!(lens, c.chunk_lengths(&data));
        }
    }

    #[test]
    fn rejects_out_of_range_params() {
        let bad = ChunkerParams {
            min_size: 10,
            avg_size: 256,
            max_size: 1024,
        };
        assert_eq!(
            Chunker::new(bad).unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
    }

    /// Golden: boundaries of a seeded 8 MiB input with the default parameters. If this changes,
    /// every existing store loses deduplication against new backups: do not update it casually.
    #[test]
    fn golden_boundaries_of_seeded_input() {
        let mut data = vec![0u8; 8 << 20];
        StdRng::seed_from_u64(42).fill_bytes(&mut data);
        let lens = Chunker::new(ChunkerParams::default())
            .unwrap()
            .chunk_lengths(&data);
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testdata/golden/chunk-boundaries-seed42.txt"
        );
        if std::env::var_os("RBK_BLESS").is_some() {
            let text: Vec<String> = lens.iter().map(ToString::to_string).collect();
            std::fs::write(path, text.join("\n") + "\n").unwrap();
        }
        let golden =
            std::fs::read_to_string(path).expect("golden file present (RBK_BLESS=1 writes it)");
        let expected: Vec<usize> = golden
            .split_whitespace()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(lens, expected);
    }

    #[test]
    fn a_fixed_chunker_cuts_every_size_bytes() {
        let c = Chunker::fixed(1000).unwrap();
        assert_eq!(c.chunk_lengths(&[7u8; 3500]), [1000, 1000, 1000, 500]);
        assert_eq!(c.chunk_lengths(&[7u8; 2000]), [1000, 1000]);
        assert!(c.chunk_lengths(&[]).is_empty());
        assert!(Chunker::fixed(0).is_err());
        assert!(Chunker::fixed(fastcdc::v2020::MAXIMUM_MAX + 1).is_err());
    }
}
