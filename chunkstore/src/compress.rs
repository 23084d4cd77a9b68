//! zstd compression of chunks.

use std::cell::RefCell;

use crate::{ChunkId, Error, Result};

/// Default zstd level. Measured on this project's depot segments and RocksDB SSTs, level 1
/// compresses 2–2.7× faster than level 3 at the same or better ratio (depot 3.68× vs 3.48×,
/// SST 1.50× vs 1.55×); see docs/performance.md.
pub const DEFAULT_LEVEL: i32 = 1;

/// # Errors
/// Only on allocation failure inside zstd, reported as `InvalidInput`.
pub fn compress(data: &[u8], level: i32) -> Result<Vec<u8>> {
    zstd::bulk::compress(data, level).map_err(|e| Error::InvalidInput(format!("zstd: {e}")))
}

/// Compresses `data` into `out` (cleared first) with this thread's reusable zstd context.
/// Creating a context per chunk, as [`compress`] does, allocates and initialises its tables
/// every time; a backup compresses thousands of chunks on a few threads.
///
/// # Errors
/// Only on allocation failure inside zstd, reported as `InvalidInput`.
pub fn compress_into(data: &[u8], level: i32, out: &mut Vec<u8>) -> Result<()> {
    thread_local! {
        static CONTEXT: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
            const { RefCell::new(None) };
    }
    let zstd_err = |e: std::io::Error| Error::InvalidInput(format!("zstd: {e}"));
    CONTEXT.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.as_ref().is_none_or(|(l, _)| *l != level) {
            *slot = Some((level, zstd::bulk::Compressor::new(level).map_err(zstd_err)?));
        }
        let (_, ctx) = slot.as_mut().expect("set above");
        out.clear();
        out.reserve(zstd::zstd_safe::compress_bound(data.len()));
        ctx.compress_to_buffer(data, out).map_err(zstd_err)?;
        Ok(())
    })
}

/// Decompresses a stored chunk and checks it against its id.
///
/// `raw_len` comes from a pack index that may be corrupt, so it is bounded by the caller-
/// supplied `max_len` before anything is allocated.
///
/// # Errors
/// `Corrupt` when the frame does not decompress to exactly `raw_len` bytes or the bytes do
/// not hash to `id`.
pub fn decompress_verified(
    stored: &[u8],
    raw_len: usize,
    max_len: usize,
    id: &ChunkId,
) -> Result<Vec<u8>> {
    let mut ctx =
        zstd::bulk::Decompressor::new().map_err(|e| Error::InvalidInput(format!("zstd: {e}")))?;
    let mut out = Vec::new();
    decompress_verified_into(&mut ctx, stored, raw_len, max_len, id, &mut out)?;
    Ok(out)
}

/// [`decompress_verified`] into `out` (cleared first) with a reusable zstd context: a reader
/// that handles thousands of chunks neither allocates nor zeroes a buffer per chunk.
///
/// # Errors
/// As [`decompress_verified`].
pub fn decompress_verified_into(
    ctx: &mut zstd::bulk::Decompressor<'_>,
    stored: &[u8],
    raw_len: usize,
    max_len: usize,
    id: &ChunkId,
    out: &mut Vec<u8>,
) -> Result<()> {
    if raw_len > max_len {
        return Err(Error::corrupt(
            format!("chunk {id}"),
            format!("claims {raw_len} bytes, more than the maximum chunk size {max_len}"),
        ));
    }
    out.clear();
    out.reserve(raw_len);
    // Writes at most `out.capacity()` bytes; a frame that holds more is an error, not a
    // reallocation, so a lying frame header cannot make us allocate.
    ctx.decompress_to_buffer(stored, out)
        .map_err(|e| Error::corrupt(format!("chunk {id}"), format!("zstd frame: {e}")))?;
    if out.len() != raw_len {
        return Err(Error::corrupt(
            format!("chunk {id}"),
            format!("decompressed to {} bytes, expected {raw_len}", out.len()),
        ));
    }
    let actual = ChunkId::of(out);
    if actual != *id {
        return Err(Error::corrupt(
            format!("chunk {id}"),
            format!("content hashes to {actual} (BLAKE3 mismatch)"),
        ));
    }
    Ok(())
}
