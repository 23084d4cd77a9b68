//! Retention: which backups of a module a GC may delete.
//!
//! A module's policy comes from its `dynamic-options.json` (`backup.max.age.hours`,
//! `backup.min.backups.to.keep`), with command-line flags overriding it. The newest
//! `min_keep` backups are kept whatever their age, and the newest backup is kept even when
//! `min_keep` is 0: deleting the last complete backup of a module is never a policy decision.
//! A backup `rbk restore` took of the state it replaced (its undo backup) is kept for at
//! least `backup.undo.keep.hours` (default 24) after it was taken, whatever the policy.

use std::path::Path;

use crate::backup_id::BackupId;
use crate::{Error, Result};

pub const MAX_AGE_KEY: &str = "backup.max.age.hours";
pub const MIN_KEEP_KEY: &str = "backup.min.backups.to.keep";
pub const UNDO_KEEP_KEY: &str = "backup.undo.keep.hours";
pub const GC_PERIOD_KEY: &str = "backup.gc.period.seconds";
/// Bounds what is read from `dynamic-options.json`.
const MAX_OPTIONS_LEN: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Backups older than this may be deleted; `None` keeps them forever.
    pub max_age_hours: Option<f64>,
    /// The newest this many are kept irrespective of age.
    pub min_keep: u64,
    /// Undo backups are kept at least this long.
    pub undo_keep_hours: f64,
}

impl Default for Policy {
    /// The spec's defaults: keep forever, keep at least one.
    fn default() -> Self {
        Policy {
            max_age_hours: None,
            min_keep: 1,
            undo_keep_hours: 24.0,
        }
    }
}

/// Flags that override a module's options.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PolicyOverride {
    pub max_age_hours: Option<f64>,
    pub min_keep: Option<u64>,
}

impl Policy {
    pub fn with(self, o: PolicyOverride) -> Policy {
        Policy {
            max_age_hours: o.max_age_hours.or(self.max_age_hours),
            min_keep: o.min_keep.unwrap_or(self.min_keep),
            undo_keep_hours: self.undo_keep_hours,
        }
    }

    /// The policy in a module's `dynamic-options.json`; defaults when the file is absent.
    ///
    /// # Errors
    /// `InvalidInput` naming the file and key when a value has the wrong type or range, or
    /// the file is not a JSON object; `Io` when it cannot be read.
    pub fn from_options_file(path: &Path) -> Result<Policy> {
        // A FIFO here would hang every GC (and with it the data dir's index): only a regular
        // file of bounded size is read.
        let bytes = match rbk_chunkstore::safe_fs::read_limited(path, MAX_OPTIONS_LEN) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Policy::default()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData
                ) =>
            {
                return Err(Error::InvalidInput(format!(
                    "dynamic options `{}` {e}",
                    path.display()
                )));
            }
            Err(e) => return Err(Error::io(path, e)),
            Ok(b) => b,
        };
        Policy::from_options_json(&bytes).map_err(|why| {
            Error::InvalidInput(format!(
                "`{}`: {why}; fix the file or override with --max-age-hours / --min-backups-to-keep",
                path.display()
            ))
        })
    }

    /// # Errors
    /// A description of the first bad value.
    pub fn from_options_json(bytes: &[u8]) -> std::result::Result<Policy, String> {
        let v: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
        let obj = v.as_object().ok_or("not a JSON object")?;
        let mut p = Policy::default();
        if let Some(x) = obj.get(MAX_AGE_KEY) {
            let h = x
                .as_f64()
                .filter(|h| h.is_finite() && *h >= 0.0)
                .ok_or_else(|| format!("{MAX_AGE_KEY} must be a number of hours ≥ 0, not {x}"))?;
            p.max_age_hours = Some(h);
        }
        if let Some(x) = obj.get(UNDO_KEEP_KEY) {
            p.undo_keep_hours = x
                .as_f64()
                .filter(|h| h.is_finite() && *h >= 0.0)
                .ok_or_else(|| format!("{UNDO_KEEP_KEY} must be a number of hours ≥ 0, not {x}"))?;
        }
        if let Some(x) = obj.get(MIN_KEEP_KEY) {
            p.min_keep = x
                .as_u64()
                .ok_or_else(|| format!("{MIN_KEEP_KEY} must be an integer ≥ 0, not {x}"))?;
        }
        Ok(p)
    }

    /// Which of `ids` (one module's backups, any order) this policy deletes at `now_ms`,
    /// oldest first. A backup dated in the future (the clock went backwards) has age 0.
    pub fn expired(&self, ids: &[BackupId], now_ms: u64) -> Vec<BackupId> {
        let Some(max_age_hours) = self.max_age_hours else {
            return Vec::new();
        };
        let max_age_ms = max_age_hours * 3_600_000.0;
        let mut sorted: Vec<&BackupId> = ids.iter().collect();
        sorted.sort();
        let keep_newest = self.min_keep.max(1) as usize;
        let candidates = sorted.len().saturating_sub(keep_newest);
        sorted[..candidates]
            .iter()
            .filter(|id| now_ms.saturating_sub(id.millis) as f64 > max_age_ms)
            .map(|id| (*id).clone())
            .collect()
    }
}

impl Policy {
    /// `expired` without the undo backups (`undo`) younger than `undo_keep_hours`.
    pub fn sparing_undo(
        &self,
        mut expired: Vec<BackupId>,
        undo: &std::collections::HashSet<BackupId>,
        now_ms: u64,
    ) -> Vec<BackupId> {
        let keep_ms = self.undo_keep_hours * 3_600_000.0;
        expired.retain(|id| {
            !(undo.contains(id) && now_ms.saturating_sub(id.millis) as f64 <= keep_ms)
        });
        expired
    }
}

/// How often a long-lived rbk process (`rbk serve`) should run [`crate::ops::gc::gc`]: the
/// module's `backup.gc.period.seconds`; `None` when absent or 0 (never).
///
/// # Errors
/// A description of a bad value, as [`Policy::from_options_json`].
pub fn gc_period(bytes: &[u8]) -> std::result::Result<Option<std::time::Duration>, String> {
    period(bytes, GC_PERIOD_KEY)
}

/// How often `rbk serve` should back the module up: `backup.period.seconds`; `None` when
/// absent or 0 (never).
///
/// # Errors
/// A description of a bad value.
pub fn backup_period(bytes: &[u8]) -> std::result::Result<Option<std::time::Duration>, String> {
    period(bytes, BACKUP_PERIOD_KEY)
}

pub const BACKUP_PERIOD_KEY: &str = "backup.period.seconds";

fn period(bytes: &[u8], key: &str) -> std::result::Result<Option<std::time::Duration>, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not valid JSON ({e})"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    match obj.get(key) {
        None => Ok(None),
        Some(x) => match x.as_u64() {
            Some(0) => Ok(None),
            Some(s) => Ok(Some(std::time::Duration::from_secs(s))),
            None => Err(format!("{key} must be an integer ≥ 0, not {x}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: u64 = 3_600_000;
    const NOW: u64 = 1_000 * HOUR;

    fn ids(ages_hours: &[i64]) -> Vec<BackupId> {
        ages_hours
            .iter()
            .enumerate()
            .map(|(i, age)| BackupId {
                module: "m".into(),
                millis: (NOW as i64 - age * HOUR as i64) as u64,
                suffix: i as u8,
            })
            .collect()
    }

    fn ages(ids: &[BackupId]) -> Vec<i64> {
        ids.iter()
            .map(|id| (NOW as i64 - id.millis as i64) / HOUR as i64)
            .collect()
    }

    #[test]
    fn policy_table() {
        struct Case {
            name: &'static str,
            max_age: Option<f64>,
            min_keep: u64,
            ages: &'static [i64],
            deleted: &'static [i64],
        }
        let cases = [
            Case {
                name: "no max age keeps everything",
                max_age: None,
                min_keep: 0,
                ages: &[100, 50, 1],
                deleted: &[],
            },
            Case {
                name: "older than max age beyond the newest N go",
                max_age: Some(24.0),
                min_keep: 1,
                ages: &[100, 50, 25, 23, 1],
                deleted: &[100, 50, 25],
            },
            Case {
                name: "all older than max age: the newest N survive",
                max_age: Some(24.0),
                min_keep: 2,
                ages: &[300, 200, 100, 50],
                deleted: &[300, 200],
            },
            Case {
                name: "min keep 0 still keeps the newest",
                max_age: Some(1.0),
                min_keep: 0,
                ages: &[30, 20, 10],
                deleted: &[30, 20],
            },
            Case {
                name: "min keep larger than the count keeps all",
                max_age: Some(1.0),
                min_keep: 10,
                ages: &[30, 20, 10],
                deleted: &[],
            },
            Case {
                name: "exactly max age is not older than it",
                max_age: Some(24.0),
                min_keep: 1,
                ages: &[24, 1],
                deleted: &[],
            },
            Case {
                name: "clock went backwards: future backups are age 0 and kept",
                max_age: Some(24.0),
                min_keep: 1,
                ages: &[48, -5, -10],
                deleted: &[48],
            },
            Case {
                name: "clock went backwards past every backup: nothing deleted",
                max_age: Some(0.0),
                min_keep: 0,
                ages: &[-1, -2, -3],
                deleted: &[],
            },
            Case {
                name: "max age 0 deletes all but the newest N",
                max_age: Some(0.0),
                min_keep: 2,
                ages: &[5, 4, 3, 2],
                deleted: &[5, 4],
            },
            Case {
                name: "no backups",
                max_age: Some(1.0),
                min_keep: 1,
                ages: &[],
                deleted: &[],
            },
        ];
        for c in cases {
            let p = Policy {
                max_age_hours: c.max_age,
                min_keep: c.min_keep,
                ..Policy::default()
            };
            let mut input = ids(c.ages);
            input.reverse(); // order of the input does not matter
            assert_eq!(ages(&p.expired(&input, NOW)), c.deleted, "{}", c.name);
        }
    }

    #[test]
    fn undo_backups_are_kept_for_their_hours_whatever_the_policy() {
        let p = Policy {
            max_age_hours: Some(1.0),
            min_keep: 1,
            undo_keep_hours: 24.0,
        };
        let all = ids(&[30, 20, 10, 5, 0]);
        let expired = p.expired(&all, NOW);
        assert_eq!(ages(&expired), [30, 20, 10, 5]);
        let undo: std::collections::HashSet<BackupId> =
            [all[0].clone(), all[1].clone(), all[3].clone()].into();
        assert_eq!(ages(&p.sparing_undo(expired, &undo, NOW)), [30, 10]);
        let p = Policy::from_options_json(br#"{"backup.undo.keep.hours": 2.5}"#).unwrap();
        assert_eq!(p.undo_keep_hours, 2.5);
    }

    #[test]
    fn gc_period_is_read() {
        use std::time::Duration;
        assert_eq!(gc_period(b"{}").unwrap(), None);
        assert_eq!(
            gc_period(br#"{"backup.gc.period.seconds": 0}"#).unwrap(),
            None
        );
        assert_eq!(
            gc_period(br#"{"backup.gc.period.seconds": 3600}"#).unwrap(),
            Some(Duration::from_secs(3600))
        );
        assert!(gc_period(br#"{"backup.gc.period.seconds": "1h"}"#).is_err());
    }

    #[test]
    fn options_are_read_and_overridden() {
        let p = Policy::from_options_json(
            br#"{"backup.max.age.hours": 48, "backup.min.backups.to.keep": 3, "other": true}"#,
        )
        .unwrap();
        assert_eq!(
            p,
            Policy {
                max_age_hours: Some(48.0),
                min_keep: 3,
                ..Policy::default()
            }
        );
        assert_eq!(Policy::from_options_json(b"{}").unwrap(), Policy::default());
        let o = PolicyOverride {
            max_age_hours: Some(1.5),
            min_keep: None,
        };
        assert_eq!(
            p.with(o),
            Policy {
                max_age_hours: Some(1.5),
                min_keep: 3,
                ..Policy::default()
            }
        );
        for bad in [
            &br#"{"backup.max.age.hours": "48"}"#[..],
            br#"{"backup.max.age.hours": -1}"#,
            br#"{"backup.min.backups.to.keep": 1.5}"#,
            br#"{"backup.undo.keep.hours": "1d"}"#,
            br#"[1]"#,
            b"\xff",
        ] {
            assert!(Policy::from_options_json(bad).is_err());
        }
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("dynamic-options.json");
        assert_eq!(Policy::from_options_file(&f).unwrap(), Policy::default());
        std::fs::write(&f, br#"{"backup.min.backups.to.keep": -2}"#).unwrap();
        let e = Policy::from_options_file(&f).unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("dynamic-options.json"), "{e}");
        assert!(e.to_string().contains(MIN_KEEP_KEY), "{e}");
    }
}
