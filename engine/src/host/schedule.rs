//! When `rbk serve` backs modules up and collects garbage: `backup.period.seconds` and
//! `backup.gc.period.seconds` of each module's dynamic-options.json, re-read whenever the
//! file changes (size or mtime), so an operator changes the schedule without a restart.
//!
//! A module is due `period` after its last backup (or after the period was first seen). GC
//! is store-wide: it is due after the shortest GC period any module asks for.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use crate::layout::{module_dir, module_names};
use crate::retention::{backup_period, gc_period};

#[derive(Debug, Clone, PartialEq, Eq)]
struct ModuleSchedule {
    /// (mtime, len) of the options file when last read.
    seen: Option<(SystemTime, u64)>,
    backup_every: Option<Duration>,
    gc_every: Option<Duration>,
    last_backup: Instant,
}

#[derive(Debug)]
pub struct Scheduler {
    modules: BTreeMap<String, ModuleSchedule>,
    last_gc: Instant,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Due {
    pub backups: Vec<String>,
    pub gc: bool,
}

impl Scheduler {
    pub fn new(now: Instant) -> Self {
        Scheduler {
            modules: BTreeMap::new(),
            last_gc: now,
        }
    }

    /// Re-reads the options of modules whose file changed, adds new modules and forgets
    /// removed ones. Returns a warning per unreadable options file (its module keeps its
    /// previous schedule).
    pub fn refresh(&mut self, data_dir: &Path, now: Instant) -> Vec<String> {
        let mut warnings = Vec::new();
        let names = module_names(data_dir);
        self.modules.retain(|n, _| names.contains(n));
        for name in names {
            let path = module_dir(data_dir, &name).join("dynamic-options.json");
            let seen = std::fs::metadata(&path)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            let entry = self.modules.entry(name.clone()).or_insert(ModuleSchedule {
                seen: None,
                backup_every: None,
                gc_every: None,
                last_backup: now,
            });
            if entry.seen == seen && seen.is_some() {
                continue;
            }
            entry.seen = seen;
            let bytes =
                rbk_chunkstore::safe_fs::read_limited(&path, crate::layout::MAX_META_FILE_LEN)
                    .unwrap_or_else(|_| b"{}".to_vec());
            match (backup_period(&bytes), gc_period(&bytes)) {
                (Ok(b), Ok(g)) => {
                    if entry.backup_every.is_none() && b.is_some() {
                        // Newly scheduled: the first backup is one period from now.
                        entry.last_backup = now;
                    }
                    entry.backup_every = b;
                    entry.gc_every = g;
                }
                (Err(e), _) | (_, Err(e)) => {
                    warnings.push(format!(
                        "`{}`: {e}; keeping the previous schedule",
                        path.display()
                    ));
                }
            }
        }
        warnings
    }

    /// What is due at `now`; the returned modules and GC count as started now.
    pub fn due(&mut self, now: Instant) -> Due {
        let mut due = Due::default();
        for (name, m) in &mut self.modules {
            if let Some(every) = m.backup_every
                && now.duration_since(m.last_backup) >= every
            {
                m.last_backup = now;
                due.backups.push(name.clone());
            }
        }
        if let Some(every) = self.modules.values().filter_map(|m| m.gc_every).min()
            && now.duration_since(self.last_gc) >= every
        {
            self.last_gc = now;
            due.gc = true;
        }
        due
    }

    /// When `module`'s next periodic backup is due (`None`: it has no period).
    pub fn next_backup(&self, module: &str) -> Option<Instant> {
        let m = self.modules.get(module)?;
        m.backup_every.map(|every| m.last_backup + every)
    }

    /// When the next periodic GC is due (`None`: no module asks for one).
    pub fn next_gc(&self) -> Option<Instant> {
        let every = self.modules.values().filter_map(|m| m.gc_every).min()?;
        Some(self.last_gc + every)
    }

    /// The backup period of `module` as last read.
    pub fn backup_period(&self, module: &str) -> Option<Duration> {
        self.modules.get(module).and_then(|m| m.backup_every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(data: &Path, name: &str, options: &str) {
        let d = module_dir(data, name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("dynamic-options.json"), options).unwrap();
    }

    #[test]
    fn periods_come_from_options_and_changes_are_picked_up() {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path();
        module(
            data,
            "a",
            r#"{"backup.period.seconds": 10, "backup.gc.period.seconds": 30}"#,
        );
        module(data, "b", r#"{}"#);
        let t0 = Instant::now();
        let mut s = Scheduler::new(t0);
        assert!(s.refresh(data, t0).is_empty());
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(s.next_backup("a"), Some(at(10)));
        assert_eq!(s.next_backup("b"), None);
        assert_eq!(s.next_gc(), Some(at(30)));
        assert_eq!(s.due(at(9)), Due::default());
        assert_eq!(
            s.due(at(10)),
            Due {
                backups: vec!["a".into()],
                gc: false
            }
        );
        assert_eq!(s.due(at(15)), Due::default());
        assert_eq!(
            s.due(at(30)),
            Due {
                backups: vec!["a".into()],
                gc: true
            }
        );

        // b gets a period; a loses its own. Same-second writes differ in length here.
        module(data, "b", r#"{"backup.period.seconds": 5}"#);
        module(data, "a", r#"{"backup.period.seconds": 0, "x": 1}"#);
        assert!(s.refresh(data, at(31)).is_empty());
        assert_eq!(s.backup_period("a"), None);
        assert_eq!(
            s.due(at(35)),
            Due::default(),
            "b's first backup is 5 s after it was set"
        );
        assert_eq!(
            s.due(at(36)),
            Due {
                backups: vec!["b".into()],
                gc: false
            }
        );

        // A broken file keeps the previous schedule and says so.
        module(data, "b", r#"{"backup.period.seconds": "often"}"#);
        let w = s.refresh(data, at(37));
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains("backup.period.seconds must be an integer"),
            "{w:?}"
        );
        assert_eq!(s.backup_period("b"), Some(Duration::from_secs(5)));

        std::fs::remove_dir_all(module_dir(data, "b")).unwrap();
        s.refresh(data, at(38));
        assert_eq!(
            s.due(at(100)),
            Due::default(),
            "removed modules are forgotten"
        );
    }
}
