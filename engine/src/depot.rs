//! Depot segments: records framed as `u32 LE length | u32 LE CRC-32C | payload`.
//!
//! A segment is named after the offset of its first record (20 decimal digits + `.seg`).
//! Readers stop at the first incomplete or CRC-failing frame: a torn tail after a crash is
//! not a record.

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
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

    /// Whether everything fed so far was whole, valid frames: no partial frame pending and
    /// no CRC failure.
    pub fn at_boundary(&self) -> bool {
        !self.stopped && !self.in_payload && self.header_len == 0
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
        let mut w = DepotWriter {
            dir: dir.into(),
            segment_bytes,
            next_offset: 0,
            current: None,
        };
        if let Some((name, end, len)) = newest_segment(dir)? {
            w.next_offset = end;
            let f = OpenOptions::new().append(true).open(dir.join(name))?;
            w.current = Some((f, len));
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

    /// The partition as of now: its end offset and every segment with the length it has
    /// now. Later appends go past these lengths; a backup reads only up to them.
    pub fn capture(&self) -> io::Result<DepotCapture> {
        let mut segments = segments_of(&self.dir)?;
        if let (Some((_, len)), Some(last)) = (&self.current, segments.last_mut()) {
            last.1 = *len;
        }
        Ok(DepotCapture {
            end_offset: self.next_offset,
            segments,
        })
    }

    /// Deletes the segments whose records all precede `offset` (never the segment being
    /// written), raising the partition's start offset. Returns how many were deleted.
    ///
    /// # Errors
    /// I/O errors.
    pub fn trim_before(&mut self, offset: u64) -> io::Result<usize> {
        let segs = segments_of(&self.dir)?;
        let mut deleted = 0;
        for pair in segs.windows(2) {
            let next_first = segment_first_offset(&pair[1].0).expect("segment name");
            if next_first <= offset {
                std::fs::remove_file(self.dir.join(&pair[0].0))?;
                deleted += 1;
            }
        }
        Ok(deleted)
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

/// A depot partition at one moment: its end offset and its segments (file name, length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepotCapture {
    pub end_offset: u64,
    pub segments: Vec<(String, u64)>,
}

/// The segment files of a partition with their current lengths, oldest first.
///
/// # Errors
/// I/O errors on the directory.
pub fn segments_of(dir: &Path) -> io::Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if segment_first_offset(&name).is_some() {
            out.push((name, e.metadata()?.len()));
        }
    }
    out.sort();
    Ok(out)
}

/// `(start, end)` offsets of the partition in `dir`: the first record still present and one
/// past the last complete record. An empty or missing partition is `(0, 0)`.
///
/// # Errors
/// I/O errors.
pub fn partition_bounds(dir: &Path) -> io::Result<(u64, u64)> {
    let segs = match segments_of(dir) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let Some(first) = segs.first() else {
        return Ok((0, 0));
    };
    let start = segment_first_offset(&first.0).expect("segment name");
    let end = newest_segment(dir)?.map_or(start, |(_, end, _)| end);
    Ok((start, end))
}

/// The newest segment of the partition in `dir`: its name, the partition's end offset (one
/// past its last complete record) and its length in bytes.
fn newest_segment(dir: &Path) -> io::Result<Option<(String, u64, u64)>> {
    let Some((name, _)) = segments_of(dir)?.pop() else {
        return Ok(None);
    };
    let bytes = std::fs::read(dir.join(&name))?;
    let mut c = FrameCounter::default();
    c.feed(&bytes);
    let first = segment_first_offset(&name).expect("segment name");
    Ok(Some((name, first + c.records(), bytes.len() as u64)))
}

/// Reads a partition's records in order from a given offset, following segment rolls. Sees
/// records appended after it was opened; never returns a torn or CRC-failing frame.
#[derive(Debug)]
pub struct DepotCursor {
    dir: PathBuf,
    next: u64,
    /// The open segment, positioned at record `next`, and that record's byte position.
    segment: Option<(BufReader<File>, u64)>,
}

impl DepotCursor {
    pub fn new(dir: &Path, from: u64) -> Self {
        DepotCursor {
            dir: dir.into(),
            next: from,
            segment: None,
        }
    }

    pub fn position(&self) -> u64 {
        self.next
    }

    /// Positions on the segment holding `self.next`, skipping the records before it.
    fn open_segment(&mut self) -> io::Result<bool> {
        let segs = segments_of(&self.dir)?;
        let Some((name, _)) = segs
            .iter()
            .rev()
            .find(|(n, _)| segment_first_offset(n).is_some_and(|f| f <= self.next))
        else {
            return Ok(false);
        };
        let first = segment_first_offset(name).expect("segment name");
        let mut f = BufReader::new(File::open(self.dir.join(name))?);
        let mut pos = 0u64;
        for _ in first..self.next {
            match read_frame(&mut f)? {
                Some(p) => pos += 8 + p.len() as u64,
                None => return Ok(false),
            }
        }
        self.segment = Some((f, pos));
        Ok(true)
    }

    /// Appends to `out` the records from the current position up to (excluding) `to`, or
    /// fewer if fewer are complete; returns how many were read.
    ///
    /// # Errors
    /// I/O errors.
    pub fn read_until(&mut self, to: u64, out: &mut Vec<Vec<u8>>) -> io::Result<u64> {
        let mut n = 0;
        while self.next < to {
            if self.segment.is_none() && !self.open_segment()? {
                break;
            }
            let (f, pos) = self.segment.as_mut().expect("open");
            match read_frame(f)? {
                Some(p) => {
                    *pos += 8 + p.len() as u64;
                    out.push(p);
                    self.next += 1;
                    n += 1;
                }
                None => {
                    // Back to where the incomplete record starts (dropping what the buffer
                    // holds of it), to read it again once it is whole.
                    f.seek(SeekFrom::Start(*pos))?;
                    // End of this segment's complete records: a newer segment may start at
                    // `next` (the writer rolled), else the record is not written yet.
                    let rolled = segments_of(&self.dir)?
                        .iter()
                        .any(|(name, _)| segment_first_offset(name) == Some(self.next));
                    if !rolled {
                        break;
                    }
                    self.segment = None;
                }
            }
        }
        Ok(n)
    }
}

/// One complete, CRC-valid frame from the reader's position, or `None` at a torn or bad one.
fn read_frame(f: &mut impl Read) -> io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 8];
    if !read_full(f, &mut header)? {
        return Ok(None);
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4")) as u64;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4"));
    // Grown as bytes arrive, never allocated from the (untrusted) length up front.
    let mut payload = Vec::new();
    f.take(len).read_to_end(&mut payload)?;
    if payload.len() as u64 != len || crc32c::crc32c(&payload) != crc {
        return Ok(None);
    }
    Ok(Some(payload))
}

/// Fills `buf`; `false` when the file ends first.
fn read_full(f: &mut impl Read, buf: &mut [u8]) -> io::Result<bool> {
    match f.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
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

#[cfg(test)]
mod cursor_tests {
    use super::*;

    #[test]
    fn cursor_follows_rolls_sees_new_appends_and_trim_keeps_the_active_segment() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DepotWriter::open(dir.path(), 100).unwrap();
        for i in 0..10u8 {
            w.append(&[i; 20]).unwrap();
        }
        let mut c = DepotCursor::new(dir.path(), 2);
        let mut out = Vec::new();
        assert_eq!(c.read_until(u64::MAX, &mut out).unwrap(), 8);
        assert_eq!(out[0], vec![2u8; 20]);
        assert_eq!(out[7], vec![9u8; 20]);
        // Appends after the cursor reached the end, across a roll, are seen.
        for i in 10..13u8 {
            w.append(&[i; 20]).unwrap();
        }
        out.clear();
        assert_eq!(c.read_until(12, &mut out).unwrap(), 2);
        assert_eq!(out, vec![vec![10u8; 20], vec![11u8; 20]]);
        assert_eq!(c.position(), 12);
        let cap = w.capture().unwrap();
        assert_eq!(cap.end_offset, 13);
        assert_eq!(cap.segments.len(), 4);
        assert_eq!(partition_bounds(dir.path()).unwrap(), (0, 13));
        // Segments 0..4 and 4..8 hold only records before 8; 8..12 does not.
        assert_eq!(w.trim_before(8).unwrap(), 2);
        assert_eq!(partition_bounds(dir.path()).unwrap(), (8, 13));
        assert_eq!(
            w.trim_before(u64::MAX).unwrap(),
            1,
            "the active segment stays"
        );
        // A torn tail is not a record.
        let last = dir.path().join(&cap.segments.last().unwrap().0);
        let mut f = OpenOptions::new().append(true).open(&last).unwrap();
        f.write_all(&frame(b"torn")[..6]).unwrap();
        let mut c = DepotCursor::new(dir.path(), 12);
        out.clear();
        assert_eq!(c.read_until(u64::MAX, &mut out).unwrap(), 1);
    }
}
