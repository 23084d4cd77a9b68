//! Restore epochs: what each restore of a module did, kept beside the module — in
//! `<data-dir>/.rbk/epochs/<module>.json` — and never inside it, so a restored module stays
//! byte-identical to its backup.
//!
//! ```json
//! {"module": "com.x.A", "epochs": [{"epoch": 1, "backup_id": "…", "restored_ms": …,
//!   "depots": {"*depot": [[start, end], …one per task]}, "undo_backup_id": "…" | null,
//!   "resets": [{"module": "com.x.B", "task": 0, "topology": "core",
//!               "depot": "com.x.A/*depot", "from": 205, "to": 107}]}]}
//! ```
//! The newest epoch is last; the file keeps the newest [`MAX_EPOCHS`]. `epoch` counts the
//! module's restores in this data dir, so a reader that saw epoch n knows a higher one is a
//! restore it has not accounted for.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Restores remembered per module.
pub const MAX_EPOCHS: usize = 100;

/// A topology's processed offset of one depot partition that a restore moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetReset {
    /// The module whose `progress.json` was changed.
    pub module: String,
    pub task: u32,
    pub topology: String,
    /// As written in `processed`: `M/*d` for another module's depot.
    pub depot: String,
    pub from: u64,
    pub to: u64,
}

impl std::fmt::Display for OffsetReset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} task {} topology {}: {} offset {} -> {}",
            self.module, self.task, self.topology, self.depot, self.from, self.to
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreEpoch {
    pub epoch: u64,
    pub backup_id: String,
    pub restored_ms: u64,
    /// `*d` → `[start, end]` of each task's partition as restored.
    pub depots: BTreeMap<String, Vec<[u64; 2]>>,
    /// The backup of the state this restore replaced (`rbk restore` takes one first).
    pub undo_backup_id: Option<String>,
    pub resets: Vec<OffsetReset>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochLog {
    pub module: String,
    pub epochs: Vec<RestoreEpoch>,
}

impl EpochLog {
    pub fn latest(&self) -> Option<&RestoreEpoch> {
        self.epochs.last()
    }
}

pub fn epochs_path(data_dir: &Path, module: &str) -> PathBuf {
    data_dir
        .join(".rbk")
        .join("epochs")
        .join(format!("{module}.json"))
}

/// The module's epochs; empty when it was never restored here.
///
/// # Errors
/// `Layout` for a damaged file (naming it), I/O errors.
pub fn read(data_dir: &Path, module: &str) -> Result<EpochLog> {
    let path = epochs_path(data_dir, module);
    match rbk_chunkstore::safe_fs::read_limited(&path, 64 << 20) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            Error::layout(
                &path,
                format!("restore epochs are damaged ({e}); move the file away to start over"),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(EpochLog {
            module: module.into(),
            epochs: Vec::new(),
        }),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// Appends `epoch` (its number is set to one past the newest) and writes the log
/// atomically. Returns the number given.
///
/// # Errors
/// As [`read`], and I/O errors writing.
pub fn append(data_dir: &Path, module: &str, mut epoch: RestoreEpoch) -> Result<u64> {
    let mut log = read(data_dir, module)?;
    epoch.epoch = log.latest().map_or(1, |e| e.epoch + 1);
    let n = epoch.epoch;
    log.epochs.push(epoch);
    let excess = log.epochs.len().saturating_sub(MAX_EPOCHS);
    log.epochs.drain(..excess);
    let path = epochs_path(data_dir, module);
    let dir = path.parent().expect("has a parent");
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    super::write_atomically(&path, &serde_json::to_vec_pretty(&log).expect("json"))?;
    Ok(n)
}

/// Notices new restores of a module: each [`EpochWatch::poll`] is one `stat` of its epoch
/// log unless the file changed.
#[derive(Debug)]
pub struct EpochWatch {
    data_dir: PathBuf,
    module: String,
    /// (inode, size, mtime ns) of the log when last read.
    seen_file: Option<(u64, u64, i64)>,
    epoch: u64,
}

impl EpochWatch {
    /// Watches from the module's current epoch on.
    pub fn new(data_dir: &Path, module: &str) -> EpochWatch {
        let mut w = EpochWatch {
            data_dir: data_dir.into(),
            module: module.into(),
            seen_file: None,
            epoch: 0,
        };
        let _ = w.poll();
        w
    }

    /// The new epoch when the module was restored since the last poll.
    ///
    /// # Errors
    /// As [`read`]: a damaged log stops the reader rather than let it miss a restore.
    pub fn poll(&mut self) -> Result<Option<u64>> {
        use std::os::unix::fs::MetadataExt;
        let file = std::fs::metadata(epochs_path(&self.data_dir, &self.module))
            .ok()
            .map(|m| {
                (
                    m.ino(),
                    m.size(),
                    m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                )
            });
        if file == self.seen_file {
            return Ok(None);
        }
        let latest = read(&self.data_dir, &self.module)?
            .latest()
            .map_or(0, |e| e.epoch);
        self.seen_file = file;
        if latest == self.epoch {
            return Ok(None);
        }
        self.epoch = latest;
        Ok(Some(latest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(backup: &str) -> RestoreEpoch {
        RestoreEpoch {
            epoch: 0,
            backup_id: backup.into(),
            restored_ms: 1,
            depots: BTreeMap::from([("*d".to_string(), vec![[0, 107]])]),
            undo_backup_id: None,
            resets: Vec::new(),
        }
    }

    #[test]
    fn epochs_count_up_and_the_oldest_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path(), "A").unwrap().epochs.is_empty());
        for i in 1..=MAX_EPOCHS as u64 + 3 {
            assert_eq!(append(dir.path(), "A", epoch(&format!("b{i}"))).unwrap(), i);
        }
        let log = read(dir.path(), "A").unwrap();
        assert_eq!(log.epochs.len(), MAX_EPOCHS);
        assert_eq!(log.epochs[0].epoch, 4);
        assert_eq!(
            log.latest().unwrap().backup_id,
            format!("b{}", MAX_EPOCHS + 3)
        );
    }

    #[test]
    fn a_watch_sees_each_new_epoch_once() {
        let dir = tempfile::tempdir().unwrap();
        append(dir.path(), "A", epoch("b1")).unwrap();
        let mut w = EpochWatch::new(dir.path(), "A");
        assert_eq!(w.poll().unwrap(), None);
        append(dir.path(), "A", epoch("b2")).unwrap();
        assert_eq!(w.poll().unwrap(), Some(2));
        assert_eq!(w.poll().unwrap(), None);
        // Another module's restores are not this one's.
        append(dir.path(), "B", epoch("b")).unwrap();
        assert_eq!(w.poll().unwrap(), None);
    }

    #[test]
    fn a_damaged_log_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = epochs_path(dir.path(), "A");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"{not json").unwrap();
        let e = read(dir.path(), "A").unwrap_err();
        assert!(e.to_string().contains("A.json"), "{e}");
        assert!(append(dir.path(), "A", epoch("b")).is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json");
    }
}
