//! zstd compression of chunks.

use std::cell::RefCell;

use crate::{ChunkId, Error, Result, frames};

/// What a chunk holds, as far as storing it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Compressed as it is.
    Opaque,
    /// Part of a length-and-CRC framed log (a depot segment): stored with its CRCs elided
    /// ([`frames`]), which makes it ~18% smaller.
    FramedLog,
    /// Part of a file that is written once and never changed (a RocksDB SST): compressed
    /// with a window and match table large enough to find repeats megabytes apart
    /// ([`IMMUTABLE_WINDOW_LOG`]). SSTs written by other programs (e.g. `db_bench`) repeat
    /// data that far apart; level 1's defaults see 512 KiB back through a 2^13-entry table
    /// and miss it. Decompressing needs nothing different: the frame says its window.
    Immutable,
}

/// Window of [`Content::Immutable`] chunks: 8 MiB (a chunk of a version 3 store is at most
/// that). Measured on SSTs written by `db_bench` in 8 MiB chunks at level 1 (docs/performance.md):
/// default parameters 1.42× at 272 MB/s, window 2^23 with hash table 2^18 5.74× at 320 MB/s.
pub const IMMUTABLE_WINDOW_LOG: u32 = 23;
/// Match table of [`Content::Immutable`] chunks (2^18 entries, 1 MiB).
pub const IMMUTABLE_HASH_LOG: u32 = 18;

/// A stored chunk that was transformed before compression starts with a zstd *skippable
/// frame* carrying the transform (docs/format.md): `u32 LE magic`, `u32 LE 5`, `u8 transform`,
/// `u32 LE start`. zstd itself skips such frames, so the rest is a plain zstd frame.
const TRANSFORM_MAGIC: u32 = 0x184D_2A5B;
const TRANSFORM_LEN: usize = 13;
/// Transform 1: CRCs of the framed log starting at `start` XORed with their payloads' CRCs.
const TRANSFORM_FRAMED_LOG: u8 = 1;

/// The transform header of `stored`, if it has one: the framed log's start.
fn transform_of(stored: &[u8], id: &ChunkId) -> Result<Option<u32>> {
    if stored.len() < 4 || stored[..4] != TRANSFORM_MAGIC.to_le_bytes() {
        return Ok(None);
    }
    let bad = |detail: String| Error::corrupt(format!("chunk {id}"), detail);
    if stored.len() < TRANSFORM_LEN || stored[4..8] != 5u32.to_le_bytes() {
        return Err(bad("truncated transform header".into()));
    }
    if stored[8] != TRANSFORM_FRAMED_LOG {
        return Err(bad(format!(
            "unknown transform {} (written by a newer rbk? upgrade rbk)",
            stored[8]
        )));
    }
    let start = u32::from_le_bytes(stored[9..13].try_into().expect("4 bytes"));
    Ok(Some(start))
}

/// Default zstd level. Measured on this project's depot segments and RocksDB SSTs, level 1
/// compresses 2–2.7× faster than level 3 at the same or better ratio (depot 3.68× vs 3.48×,
/// SST 1.50× vs 1.55×); see docs/performance.md.
pub const DEFAULT_LEVEL: i32 = 1;

/// # Errors
/// Only on allocation failure inside zstd, reported as `InvalidInput`.
pub fn compress(data: &[u8], level: i32) -> Result<Vec<u8>> {
    zstd::bulk::compress(data, level).map_err(|e| Error::InvalidInput(format!("zstd: {e}")))
}

/// Compresses `data` into `out` (cleared first) with this thread's reusable zstd context,
/// transformed first as `content` allows. Creating a context per chunk, as [`compress`] does,
/// allocates and initialises its tables every time; a backup compresses thousands of chunks
/// on a few threads.
///
/// # Errors
/// Only on allocation failure inside zstd, reported as `InvalidInput`.
pub fn compress_into(data: &[u8], level: i32, content: Content, out: &mut Vec<u8>) -> Result<()> {
    thread_local! {
        /// One per (level, tuned for immutable files).
        static CONTEXT: RefCell<Vec<(i32, bool, zstd::bulk::Compressor<'static>)>> =
            const { RefCell::new(Vec::new()) };
        static TRANSFORMED: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    }
    let zstd_err = |e: std::io::Error| Error::InvalidInput(format!("zstd: {e}"));
    // Appends the compressed `input` to `out`.
    let immutable = content == Content::Immutable;
    let compress = |input: &[u8], out: &mut Vec<u8>| {
        CONTEXT.with(|cell| {
            let mut contexts = cell.borrow_mut();
            let i = match contexts
                .iter()
                .position(|(l, t, _)| *l == level && *t == immutable)
            {
                Some(i) => i,
                None => {
                    let mut ctx = zstd::bulk::Compressor::new(level).map_err(zstd_err)?;
                    if immutable {
                        use zstd::zstd_safe::CParameter;
                        ctx.set_parameter(CParameter::WindowLog(IMMUTABLE_WINDOW_LOG))
                            .and_then(|()| {
                                ctx.set_parameter(CParameter::HashLog(IMMUTABLE_HASH_LOG))
                            })
                            .map_err(zstd_err)?;
                    }
                    contexts.push((level, immutable, ctx));
                    contexts.len() - 1
                }
            };
            let ctx = &mut contexts[i].2;
            out.reserve(zstd::zstd_safe::compress_bound(input.len()));
            let mut tail = std::io::Cursor::new(&mut *out);
            tail.set_position(tail.get_ref().len() as u64);
            ctx.compress_to_buffer(input, &mut tail).map_err(zstd_err)?;
            Ok(())
        })
    };
    out.clear();
    let start = match content {
        Content::FramedLog => frames::first_frame(data),
        Content::Opaque | Content::Immutable => None,
    };
    let Some(start) = start else {
        return compress(data, out);
    };
    out.extend_from_slice(&TRANSFORM_MAGIC.to_le_bytes());
    out.extend_from_slice(&5u32.to_le_bytes());
    out.push(TRANSFORM_FRAMED_LOG);
    out.extend_from_slice(&(start as u32).to_le_bytes());
    TRANSFORMED.with(|cell| {
        let plain = &mut *cell.borrow_mut();
        plain.clear();
        plain.extend_from_slice(data);
        frames::xor_crcs(plain, start);
        compress(plain, out)
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
    let transform = transform_of(stored, id)?;
    let frame = if transform.is_some() {
        &stored[TRANSFORM_LEN..]
    } else {
        stored
    };
    out.clear();
    out.reserve(raw_len);
    // Writes at most `out.capacity()` bytes; a frame that holds more is an error, not a
    // reallocation, so a lying frame header cannot make us allocate.
    ctx.decompress_to_buffer(frame, out)
        .map_err(|e| Error::corrupt(format!("chunk {id}"), format!("zstd frame: {e}")))?;
    if out.len() != raw_len {
        return Err(Error::corrupt(
            format!("chunk {id}"),
            format!("decompressed to {} bytes, expected {raw_len}", out.len()),
        ));
    }
    if let Some(start) = transform {
        frames::xor_crcs(out, start as usize);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    /// Depot-like records: a JSON payload each, framed with length and CRC-32C.
    fn depot_bytes(n: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for i in 0..n {
            let p = format!(
                "{{\"id\":{i},\"from\":\"acct-{:08}\",\"amount_cents\":{},\"memo\":\"rent\"}}",
                (i * 7919) % 100_000,
                (i * 104_729) % 1_000_000
            );
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(&crc32c::crc32c(p.as_bytes()).to_le_bytes());
            out.extend_from_slice(p.as_bytes());
        }
        out
    }

    fn store(data: &[u8], content: Content) -> Vec<u8> {
        let mut out = Vec::new();
        compress_into(data, DEFAULT_LEVEL, content, &mut out).unwrap();
        out
    }

    /// Like an SST of another writer: incompressible 1 MiB stretches that recur further on.
    fn far_repeats() -> Vec<u8> {
        use rand::{RngCore, SeedableRng};
        let mut block = vec![0u8; 1 << 20];
        rand::rngs::StdRng::seed_from_u64(3).fill_bytes(&mut block);
        block.repeat(6)
    }

    #[test]
    fn immutable_chunks_find_repeats_a_megabyte_apart_and_read_back_exactly() {
        let data = far_repeats();
        let id = ChunkId::of(&data);
        let plain = store(&data, Content::Opaque);
        let tuned = store(&data, Content::Immutable);
        // Level 1's own window (512 KiB for input this size) sees none of the repeats.
        assert!(plain.len() > data.len() * 9 / 10, "{} bytes", plain.len());
        assert!(tuned.len() < data.len() / 4, "{} bytes", tuned.len());
        let back = decompress_verified(&tuned, data.len(), data.len(), &id).unwrap();
        assert!(back == data);
        // Contexts are per kind: an opaque chunk after an immutable one is as before.
        assert_eq!(store(&data, Content::Opaque), plain);
    }

    #[test]
    fn depot_chunks_are_stored_smaller_and_read_back_exactly() {
        let log = depot_bytes(5000);
        // A chunk cut at arbitrary points inside records.
        let chunk = &log[1234..log.len() - 77];
        let id = ChunkId::of(chunk);
        let plain = store(chunk, Content::Opaque);
        let elided = store(chunk, Content::FramedLog);
        assert_eq!(elided[..4], TRANSFORM_MAGIC.to_le_bytes());
        assert!(
            (elided.len() as f64) < 0.9 * plain.len() as f64,
            "{} vs {} bytes",
            elided.len(),
            plain.len()
        );
        for stored in [&plain, &elided] {
            let back = decompress_verified(stored, chunk.len(), 1 << 21, &id).unwrap();
            assert!(back == chunk);
        }
        // Bytes without frames are stored plain even when asked to elide.
        let text = b"no frames in here, just text ".repeat(100);
        assert_eq!(
            store(&text, Content::FramedLog),
            store(&text, Content::Opaque)
        );
    }

    #[test]
    fn a_damaged_or_unknown_transform_header_is_corrupt_not_a_panic() {
        let chunk = depot_bytes(300);
        let id = ChunkId::of(&chunk);
        let good = store(&chunk, Content::FramedLog);
        let read = |b: &[u8]| decompress_verified(b, chunk.len(), 1 << 21, &id);
        assert!(read(&good).is_ok());

        let mut start_moved = good.clone();
        start_moved[9] ^= 1; // the frames are walked from another offset
        let e = read(&start_moved).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt);
        assert!(e.to_string().contains("BLAKE3 mismatch"), "{e}");

        let mut unknown = good.clone();
        unknown[8] = 7;
        let e = read(&unknown).unwrap_err();
        assert!(e.to_string().contains("unknown transform 7"), "{e}");

        let e = read(&good[..10]).unwrap_err();
        assert!(e.to_string().contains("truncated transform header"), "{e}");
    }
}
