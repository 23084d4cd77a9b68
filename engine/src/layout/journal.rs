//! The data dir's activity journal: what rbk processes did here, for operators to look at
//! (`rbk serve --http`'s pages and metrics). One JSON object per line in
//! `<data-dir>/.rbk/journal.jsonl`:
//!
//! ```json
//! {"ms": 1733212800000, "by": "rbk serve", "event": "backup", "module": "com.x.A",
//!  "backup_id": "…", "seconds": 1.2, "logical_bytes": 1048576, "added_bytes": 4096,
//!  "pause_seconds": 0.003}
//! {"ms": …, "by": "rbk backup", "event": "backup_failed", "module": "com.x.A", "error": "…"}
//! {"ms": …, "by": "rbk gc", "event": "gc", "side": "store", "backups_deleted": 2,
//!  "packs_deleted": 3, "bytes_freed": 25165824, "seconds": 0.4}
//! {"ms": …, "by": "rbk serve", "event": "gc_failed", "side": "store", "error": "…"}
//! ```
//!
//! It is informational, never the truth about backups (the store is): each line is one
//! `O_APPEND` write, so processes appending at once do not interleave; past [`ROTATE_AT`]
//! bytes the file becomes `journal.1.jsonl` (replacing the previous one) and a new one starts.
//! A line that does not parse is skipped by readers. Writing it never fails the operation
//! it records.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The journal is rotated once it is this long (about 5,000 lines).
pub const ROTATE_AT: u64 = 1 << 20;
/// Lines longer than this are not written whole: error messages are cut to fit.
const MAX_ERROR_LEN: usize = 2000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Backup {
        module: String,
        backup_id: String,
        seconds: f64,
        logical_bytes: u64,
        /// New chunks (compressed) plus the manifest.
        added_bytes: u64,
        /// How long commits of the running module were paused for its snapshot.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pause_seconds: Option<f64>,
    },
    BackupFailed {
        module: String,
        error: String,
    },
    Gc {
        /// `store` or `mirror`.
        side: String,
        backups_deleted: u64,
        packs_deleted: u64,
        bytes_freed: u64,
        seconds: f64,
    },
    GcFailed {
        side: String,
        error: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// When it was recorded, in milliseconds since the epoch.
    pub ms: u64,
    /// Which command: `rbk backup`, `rbk gc`, `rbk serve`, …
    pub by: String,
    #[serde(flatten)]
    pub event: Event,
}

impl Entry {
    pub fn now(by: &str, event: Event) -> Entry {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Entry {
            ms,
            by: by.into(),
            event,
        }
    }
}

pub fn journal_path(data_dir: &Path) -> PathBuf {
    data_dir.join(".rbk").join("journal.jsonl")
}

fn rotated_path(data_dir: &Path) -> PathBuf {
    data_dir.join(".rbk").join("journal.1.jsonl")
}

/// An error message cut to [`MAX_ERROR_LEN`] bytes (on a character boundary).
pub fn shorten(error: &str) -> String {
    if error.len() <= MAX_ERROR_LEN {
        return error.into();
    }
    let mut end = MAX_ERROR_LEN;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &error[..end])
}

/// Appends `entry` as one line.
///
/// # Errors
/// I/O errors (callers report them and go on: the journal never fails what it records).
pub fn append(data_dir: &Path, entry: &Entry) -> Result<()> {
    let path = journal_path(data_dir);
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut line = serde_json::to_vec(entry).expect("an entry serializes");
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    // One write call: O_APPEND places it whole at the end even with other writers.
    f.write_all(&line).map_err(|e| Error::io(&path, e))?;
    let len = f.metadata().map_err(|e| Error::io(&path, e))?.len();
    if len >= ROTATE_AT {
        let rotated = rotated_path(data_dir);
        std::fs::rename(&path, &rotated).map_err(|e| Error::io(&rotated, e))?;
    }
    Ok(())
}

/// Every entry still kept (the rotated file, then the current one), oldest first.
pub fn read_all(data_dir: &Path) -> Vec<Entry> {
    let mut out = Vec::new();
    for path in [rotated_path(data_dir), journal_path(data_dir)] {
        if let Ok(bytes) = rbk_chunkstore::safe_fs::read_limited(&path, 2 * ROTATE_AT) {
            out.extend(parse_lines(&bytes));
        }
    }
    out
}

fn parse_lines(bytes: &[u8]) -> impl Iterator<Item = Entry> + '_ {
    bytes
        .split(|b| *b == b'\n')
        .filter_map(|l| serde_json::from_slice(l).ok())
}

/// Follows the journal: each [`Tail::poll`] returns the entries appended since the last one,
/// across a rotation. Costs one `stat` when nothing changed.
#[derive(Debug)]
pub struct Tail {
    data_dir: PathBuf,
    /// Inode and offset read up to, of the current file.
    at: Option<(u64, u64)>,
}

impl Tail {
    /// Follows from the journal's current end: entries already there are not returned.
    pub fn from_end(data_dir: &Path) -> Tail {
        let at = std::fs::metadata(journal_path(data_dir))
            .ok()
            .map(|m| (m.ino(), m.len()));
        Tail {
            data_dir: data_dir.into(),
            at,
        }
    }

    /// Entries appended since the last poll, oldest first.
    pub fn poll(&mut self) -> Vec<Entry> {
        let path = journal_path(&self.data_dir);
        let Ok(md) = std::fs::metadata(&path) else {
            return self.rest_of_rotated();
        };
        let mut out = Vec::new();
        let from = match self.at {
            Some((ino, off)) if ino == md.ino() => {
                if md.len() == off {
                    return out;
                }
                off
            }
            // Rotated since: finish the old file (now the rotated one) first.
            Some(_) => {
                out = self.rest_of_rotated();
                0
            }
            None => 0,
        };
        let (entries, end) = read_from(&path, from);
        out.extend(entries);
        self.at = Some((md.ino(), end));
        out
    }

    /// What is left of the file we were reading, if it is now the rotated one.
    fn rest_of_rotated(&mut self) -> Vec<Entry> {
        let Some((ino, off)) = self.at.take() else {
            return Vec::new();
        };
        let rotated = rotated_path(&self.data_dir);
        match std::fs::metadata(&rotated) {
            Ok(m) if m.ino() == ino => read_from(&rotated, off).0,
            _ => Vec::new(),
        }
    }
}

/// Complete lines of `path` from byte `from`, and where the last complete line ends (a line
/// being written is read next time).
fn read_from(path: &Path, from: u64) -> (Vec<Entry>, u64) {
    let mut buf = Vec::new();
    let read = std::fs::File::open(path).and_then(|mut f| {
        f.seek(SeekFrom::Start(from))?;
        f.take(2 * ROTATE_AT).read_to_end(&mut buf)
    });
    if read.is_err() {
        return (Vec::new(), from);
    }
    let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let entries = parse_lines(&buf[..complete]).collect();
    (entries, from + complete as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(module: &str, error: &str) -> Entry {
        Entry::now(
            "test",
            Event::BackupFailed {
                module: module.into(),
                error: error.into(),
            },
        )
    }

    #[test]
    fn entries_round_trip_and_bad_lines_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        assert!(read_all(d).is_empty());
        let a = failed("a", "disk full");
        append(d, &a).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(journal_path(d))
            .unwrap()
            .write_all(b"{not json\n")
            .unwrap();
        let b = Entry::now(
            "test",
            Event::Gc {
                side: "store".into(),
                backups_deleted: 1,
                packs_deleted: 2,
                bytes_freed: 3,
                seconds: 0.5,
            },
        );
        append(d, &b).unwrap();
        assert_eq!(read_all(d), vec![a, b]);
    }

    #[test]
    fn a_tail_sees_each_new_entry_once_across_a_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        append(d, &failed("old", "before the tail")).unwrap();
        let mut tail = Tail::from_end(d);
        assert!(tail.poll().is_empty());
        append(d, &failed("a", "1")).unwrap();
        append(d, &failed("a", "2")).unwrap();
        let seen: Vec<String> = tail
            .poll()
            .into_iter()
            .map(|e| match e.event {
                Event::BackupFailed { error, .. } => error,
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(seen, ["1", "2"]);
        assert!(tail.poll().is_empty());

        // Fill past the rotation point; the tail must see every line exactly once.
        let long = "x".repeat(MAX_ERROR_LEN);
        let mut written = 0;
        while std::fs::metadata(rotated_path(d)).is_err() {
            append(d, &failed("b", &long)).unwrap();
            written += 1;
        }
        append(d, &failed("c", "after")).unwrap();
        let polled = tail.poll();
        assert_eq!(polled.len(), written + 1);
        assert!(
            matches!(&polled.last().unwrap().event, Event::BackupFailed { module, .. } if module == "c")
        );
        assert!(tail.poll().is_empty());
        // read_all keeps both files.
        assert_eq!(read_all(d).len(), 4 + written);
    }

    #[test]
    fn long_errors_are_cut_on_a_character_boundary() {
        let s = "é".repeat(MAX_ERROR_LEN);
        let cut = shorten(&s);
        assert!(cut.len() <= MAX_ERROR_LEN + 3);
        assert!(cut.ends_with('…'));
        assert_eq!(shorten("short"), "short");
    }
}
