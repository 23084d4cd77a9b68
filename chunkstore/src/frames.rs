//! CRC elision for chunks of length-and-CRC framed logs (depot segments).
//!
//! A depot segment is a run of records framed as `u32 LE length | u32 LE CRC-32C of payload |
//! payload`. The payload compresses well (3–4× with zstd level 1), but every ~160-byte record
//! carries four random CRC bytes that zstd can neither predict nor match across: on the
//! generator's depots they make the compressed chunks 18% larger than the same chunks with
//! the CRCs zeroed. The CRC is a function of the payload, so it need not be stored.
//!
//! [`xor_crcs`] walks the frames of a chunk from a given start and XORs each complete frame's
//! CRC field with the CRC-32C of its payload: a valid CRC becomes four zero bytes. The walk
//! reads only the length fields and payloads, which it leaves unchanged, so applying it twice
//! walks the same frames and restores every byte: it is its own inverse, for any input and any
//! start, valid frames or not. Where the chunk's first frame starts ([`first_frame`]) only
//! affects how well the result compresses, never whether it round-trips; the start is stored
//! with the chunk (format in docs/format.md).

/// How far into a chunk [`first_frame`] looks for a frame boundary. A chunk starts at an
/// arbitrary byte of the segment, inside some record; records are small (the generator's
/// average 163 bytes), and a chunk whose first boundary lies further in is stored unchanged.
const SEARCH: usize = 64 << 10;

/// Frame header: length and CRC.
const HEADER: usize = 8;

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

/// Length of the payload of the frame at `at`, when the whole frame lies within `data`.
fn complete_frame(data: &[u8], at: usize) -> Option<usize> {
    let payload = at.checked_add(HEADER).filter(|&p| p <= data.len())?;
    let len = u32_at(data, at) as usize;
    (len <= data.len() - payload).then_some(len)
}

/// The first offset in the first [`SEARCH`] bytes of `data` at which a complete frame with a
/// valid CRC starts, followed by another such frame or by the end of `data`. Two frames in a
/// row make a start inside a payload that happens to look like a frame very unlikely.
///
/// The search checksums at most a few times `data`'s length in all, so bytes that are full of
/// plausible length fields cannot make it slow; it then gives up.
pub fn first_frame(data: &[u8]) -> Option<usize> {
    let mut budget = 4 * data.len() + SEARCH;
    // The end of the valid frame at `at`, charging its payload to the budget.
    let mut valid = |at: usize| -> Option<usize> {
        let len = complete_frame(data, at)?;
        budget = budget.checked_sub(len).filter(|b| *b > 0)?;
        let payload = &data[at + HEADER..at + HEADER + len];
        (crc32c::crc32c(payload) == u32_at(data, at + 4)).then_some(at + HEADER + len)
    };
    (0..data.len().min(SEARCH)).find(|&at| {
        valid(at).is_some_and(|next| {
            next == data.len() || complete_frame(data, next).is_none() || valid(next).is_some()
        })
    })
}

/// XORs the CRC field of every complete frame from `start` on with the CRC-32C of its
/// payload. Its own inverse (see the module docs). A `start` beyond `data` changes nothing.
pub fn xor_crcs(data: &mut [u8], start: usize) {
    let mut at = start;
    while let Some(len) = complete_frame(data, at) {
        let payload = at + HEADER;
        let crc = crc32c::crc32c(&data[payload..payload + len]);
        for (b, c) in data[at + 4..at + 8].iter_mut().zip(crc.to_le_bytes()) {
            *b ^= c;
        }
        at = payload + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn records(n: usize) -> Vec<u8> {
        (0..n)
            .flat_map(|i| frame(format!("{{\"id\":{i},\"memo\":\"rent\"}}").as_bytes()))
            .collect()
    }

    #[test]
    fn valid_crcs_become_zeros_and_come_back() {
        let log = records(50);
        // A chunk that starts and ends inside records.
        let chunk = &log[13..log.len() - 9];
        let start = first_frame(chunk).unwrap();
        assert_eq!(
            (13 + start) % frame(b"{\"id\":0,\"memo\":\"rent\"}").len(),
            0
        );
        let mut t = chunk.to_vec();
        xor_crcs(&mut t, start);
        let mut at = start;
        let mut zeroed = 0;
        while let Some(len) = complete_frame(&t, at) {
            assert_eq!(&t[at + 4..at + 8], &[0, 0, 0, 0]);
            zeroed += 1;
            at += HEADER + len;
        }
        assert!(zeroed >= 47, "{zeroed}");
        xor_crcs(&mut t, start);
        assert_eq!(t, chunk);
    }

    #[test]
    fn data_without_frames_has_no_start() {
        assert_eq!(first_frame(&[0x41; 1000]), None);
        assert_eq!(first_frame(&[]), None);
        assert_eq!(first_frame(&[1, 2, 3]), None);
    }

    proptest! {
        #[test]
        fn xor_is_its_own_inverse_on_any_bytes(
            data in proptest::collection::vec(any::<u8>(), 0..600),
            start in 0usize..700,
            small_lens in any::<bool>(),
        ) {
            let mut data = data;
            if small_lens {
                // Plausible length fields, so frames are actually walked.
                for i in (0..data.len()).step_by(5) { data[i] %= 16; }
                for i in (1..data.len()).step_by(5) { data[i] = 0; }
            }
            let mut t = data.clone();
            xor_crcs(&mut t, start);
            xor_crcs(&mut t, start);
            prop_assert_eq!(t, data);
        }
    }
}
