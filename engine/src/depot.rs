//! Depot segments: records framed as `u32 LE length | u32 LE CRC-32C | payload`.
//!
//! A segment is named after the offset of its first record (20 decimal digits + `.seg`).
//! Readers stop at the first incomplete or CRC-failing frame: a torn tail after a crash is
//! not a record.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The first offset encoded in a segment file name, if the name is a segment name.
pub fn segment_first_offset(file_name: &str) -> Option<u64> {
    let digits = file_name.strip_suffix(".seg")?;
    if digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }
}

pub fn segment_name(first_offset: u64) -> String {
    format!("{first_offset:020}.seg")
}

pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 8);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Counts complete, CRC-valid records in a stream fed in arbitrary pieces, so the count can be
/// taken during the same pass that chunks the segment.
#[derive(Debug, Default, Clone)]
pub struct FrameCounter {
    header: [u8; 8],
    header_len: usize,
    payload_left: u64,
    expected_crc: u32,
    crc: u32,
    in_payload: bool,
    stopped: bool,
    records: u64,
}

impl FrameCounter {
    pub fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.stopped {
            if !self.in_payload {
                let n = (8 - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
                self.header_len += n;
                data = &data[n..];
                if self.header_len == 8 {
                    self.payload_left =
                        u32::from_le_bytes(self.header[..4].try_into().expect("4")) as u64;
                    self.expected_crc = u32::from_le_bytes(self.header[4..].try_into().expect("4"));
                    self.crc = 0;
                    self.in_payload = true;
                    self.finish_if_complete();
                }
            } else {
                let n = (self.payload_left.min(data.len() as u64)) as usize;
                self.crc = crc32c::crc32c_append(self.crc, &data[..n]);
                self.payload_left -= n as u64;
                data = &data[n..];
                self.finish_if_complete();
            }
        }
    }

    fn finish_if_complete(&mut self) {
        if self.in_payload && self.payload_left == 0 {
            if self.crc == self.expected_crc {
                self.records += 1;
            } else {
                self.stopped = true;
            }
            self.in_payload = false;
            self.header_len = 0;
        }
    }

    /// Complete, valid records seen so far (a partial frame at the end is not counted).
    pub fn records(&self) -> u64 {
        self.records
    }
}

/// Appends records to a depot partition, rolling to a new segment past `segment_bytes`.
/// Used by the test-data generator (and by the module host, later).
#[derive(Debug)]
pub struct DepotWriter {
    dir: PathBuf,
    segment_bytes: u64,
    next_offset: u64,
    current: Option<(File, u64)>,
}

impl DepotWriter {
    /// Opens the partition in `dir` and finds its end offset by scanning the newest segment.
    ///
    /// # Errors
    /// I/O errors on the directory or segments.
    pub fn open(dir: &Path, segment_bytes: u64) -> io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut newest: Option<u64> = None;
        for e in std::fs::read_dir(dir)? {
            let name = e?.file_name();
            if let Some(o) = name.to_str().and_then(segment_first_offset) {
                newest = Some(newest.map_or(o, |n: u64| n.max(o)));
            }
        }
        let mut w = DepotWriter {
            dir: dir.into(),
            segment_bytes,
            next_offset: 0,
            current: None,
        };
        if let Some(first) = newest {
            let path = dir.join(segment_name(first));
            let bytes = std::fs::read(&path)?;
            let mut c = FrameCounter::default();
            c.feed(&bytes);
            w.next_offset = first + c.records();
            let f = OpenOptions::new().append(true).open(&path)?;
            w.current = Some((f, bytes.len() as u64));
        }
        Ok(w)
    }

    pub fn end_offset(&self) -> u64 {
        self.next_offset
    }

    /// # Errors
    /// I/O errors.
    pub fn append(&mut self, payload: &[u8]) -> io::Result<u64> {
        let roll = match &self.current {
            None => true,
            Some((_, len)) => *len >= self.segment_bytes,
        };
        if roll {
            let path = self.dir.join(segment_name(self.next_offset));
            let f = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(path)?;
            self.current = Some((f, 0));
        }
        let (f, len) = self.current.as_mut().expect("segment open");
        let framed = frame(payload);
        f.write_all(&framed)?;
        *len += framed.len() as u64;
        self.next_offset += 1;
        Ok(self.next_offset - 1)
    }

    /// # Errors
    /// I/O errors.
    pub fn sync(&mut self) -> io::Result<()> {
        match &mut self.current {
            Some((f, _)) => f.sync_all(),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_counts_in_any_split_and_stops_at_torn_or_bad_frames() {
        let mut bytes = Vec::new();
        for i in 0..50u32 {
            bytes.extend(frame(&vec![i as u8; (i * 7) as usize]));
        }
        for step in [1, 3, 8, 13, 1000, bytes.len()] {
            let mut c = FrameCounter::default();
            for piece in bytes.chunks(step) {
                c.feed(piece);
            }
            assert_eq!(c.records(), 50, "step {step}");
        }
        // Torn tail: a partial frame is not a record.
        let mut torn = bytes.clone();
        torn.extend(&frame(b"partial")[..10]);
        let mut c = FrameCounter::default();
        c.feed(&torn);
        assert_eq!(c.records(), 50);
        // A CRC failure stops the count even if valid frames follow.
        let mut bad = frame(b"first");
        let mut second = frame(b"second");
        second[9] ^= 1;
        bad.extend(second);
        bad.extend(frame(b"third"));
        let mut c = FrameCounter::default();
        c.feed(&bad);
        assert_eq!(c.records(), 1);
    }

    #[test]
    fn writer_rolls_segments_and_resumes_at_end_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DepotWriter::open(dir.path(), 100).unwrap();
        for i in 0..30u8 {
            assert_eq!(w.append(&[i; 20]).unwrap(), i as u64);
        }
        drop(w);
        let w = DepotWriter::open(dir.path(), 100).unwrap();
        assert_eq!(w.end_offset(), 30);
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names[0], "00000000000000000000.seg");
        assert_eq!(names[1], "00000000000000000004.seg");
        assert_eq!(
            segment_first_offset("00000000000000437171.seg"),
            Some(437171)
        );
        assert_eq!(segment_first_offset("437171.seg"), None);
    }
}
