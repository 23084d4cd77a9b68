//! Where a module's tasks run when it is spread over several machines (Rama's launch
//! settings): `threads` task threads in `workers` worker processes, each task with
//! `replicationFactor` replicas on different workers. A placed restore
//! (`rbk restore --workers W --worker I …`) gives each machine the tasks its worker runs.
//!
//! The placement, documented in docs/distributed.md: task `t` runs on thread `t mod T`;
//! thread `h` lives in worker `h mod W`; the replicas of a task are on the next workers
//! after it, `(w + k) mod W` for `k` in `0..R`. So every worker gets `T / W` threads (±1),
//! and every task `R` distinct workers.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::{Error, Result};

/// A module's launch settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    pub threads: u32,
    pub workers: u32,
    pub replication_factor: u32,
}

impl Launch {
    /// Checks the settings against a module of `tasks` tasks: `1 ≤ workers ≤ threads ≤
    /// tasks` and `1 ≤ replicationFactor ≤ workers`.
    ///
    /// # Errors
    /// `InvalidInput` saying which bound is broken.
    pub fn check(&self, tasks: u32) -> Result<()> {
        let (t, w, r) = (self.threads, self.workers, self.replication_factor);
        let problem = if w == 0 {
            Some("--workers must be at least 1".to_string())
        } else if w > t {
            Some(format!(
                "--workers {w} is more than --threads {t}: a worker runs at least one thread"
            ))
        } else if t > tasks {
            Some(format!(
                "--threads {t} is more than the backup's {tasks} tasks: a thread runs at least one task"
            ))
        } else if r == 0 {
            Some("--replicationFactor must be at least 1".to_string())
        } else if r > w {
            Some(format!(
                "--replicationFactor {r} is more than --workers {w}: replicas of a task are on different workers"
            ))
        } else {
            None
        };
        match problem {
            Some(p) => Err(Error::InvalidInput(format!(
                "launch settings threads={t} workers={w} replicationFactor={r}: {p}"
            ))),
            None => Ok(()),
        }
    }

    /// The workers holding task `task`, its primary first.
    pub fn workers_of(&self, task: u32) -> Vec<u32> {
        let primary = (task % self.threads) % self.workers;
        (0..self.replication_factor)
            .map(|k| (primary + k) % self.workers)
            .collect()
    }

    /// The tasks (replicas included) worker `worker` holds, of a module of `tasks` tasks.
    ///
    /// # Errors
    /// `InvalidInput` for invalid settings or a worker not below `workers`.
    pub fn tasks_of(&self, tasks: u32, worker: u32) -> Result<BTreeSet<u32>> {
        self.check(tasks)?;
        if worker >= self.workers {
            return Err(Error::InvalidInput(format!(
                "--worker {worker}: workers are numbered 0..{} (--workers {})",
                self.workers - 1,
                self.workers
            )));
        }
        Ok((0..tasks)
            .filter(|t| self.workers_of(*t).contains(&worker))
            .collect())
    }

    /// `module_json` with these settings recorded (`threads`, `workers`,
    /// `replicationFactor`); every other key is kept as it was.
    ///
    /// # Errors
    /// `Layout`-like `InvalidInput` when `module_json` is not a JSON object.
    pub fn record_in(&self, module_json: &[u8]) -> Result<Vec<u8>> {
        let mut v: Value = serde_json::from_slice(module_json)
            .map_err(|e| Error::InvalidInput(format!("the backup's module.json: {e}")))?;
        let Some(o) = v.as_object_mut() else {
            return Err(Error::InvalidInput(
                "the backup's module.json is not a JSON object".into(),
            ));
        };
        o.insert("threads".into(), json!(self.threads));
        o.insert("workers".into(), json!(self.workers));
        o.insert("replicationFactor".into(), json!(self.replication_factor));
        let mut out = serde_json::to_vec_pretty(&v).expect("serializes");
        out.push(b'\n');
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(threads: u32, workers: u32, replication_factor: u32) -> Launch {
        Launch {
            threads,
            workers,
            replication_factor,
        }
    }

    #[test]
    fn every_task_is_on_exactly_r_distinct_workers() {
        for (tasks, t, w, r) in [(4, 4, 2, 2), (8, 8, 4, 1), (16, 8, 3, 2), (8, 4, 4, 3)] {
            let l = launch(t, w, r);
            let mut count = vec![0u32; tasks as usize];
            for worker in 0..w {
                for task in l.tasks_of(tasks, worker).unwrap() {
                    count[task as usize] += 1;
                }
            }
            assert_eq!(count, vec![r; tasks as usize], "{tasks} {t} {w} {r}");
        }
    }

    #[test]
    fn placements_of_the_documented_examples() {
        let l = launch(4, 2, 2);
        assert_eq!(l.tasks_of(4, 0).unwrap(), BTreeSet::from([0, 1, 2, 3]));
        let l = launch(8, 4, 1);
        assert_eq!(l.tasks_of(8, 1).unwrap(), BTreeSet::from([1, 5]));
        assert_eq!(l.tasks_of(16, 3).unwrap(), BTreeSet::from([3, 7, 11, 15]));
    }

    #[test]
    fn invalid_settings_are_refused() {
        for (tasks, t, w, r, worker, needle) in [
            (8, 4, 5, 1, 0, "more than --threads"),
            (8, 16, 4, 1, 0, "more than the backup's 8 tasks"),
            (8, 4, 2, 3, 0, "more than --workers"),
            (8, 4, 2, 0, 0, "at least 1"),
            (8, 4, 0, 1, 0, "at least 1"),
            (8, 4, 2, 1, 2, "numbered 0..1"),
        ] {
            let e = launch(t, w, r).tasks_of(tasks, worker).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    #[test]
    fn settings_are_recorded_and_other_keys_kept() {
        let out = launch(4, 2, 2)
            .record_in(br#"{"name":"m","tasks":4,"extra":{"a":1}}"#)
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["threads"], 4);
        assert_eq!(v["workers"], 2);
        assert_eq!(v["replicationFactor"], 2);
        assert_eq!(v["extra"]["a"], 1);
        assert_eq!(v["name"], "m");
    }
}
