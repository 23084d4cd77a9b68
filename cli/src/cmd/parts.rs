//! `rbk backup begin|part|commit|abort`: one backup of a module whose tasks are spread over
//! several machines, each with its own data dir, met in the store (docs/distributed.md).
//! `rbk backup --module M --wait-parts S` runs all of it from one machine, with `rbk serve`
//! on the others writing their parts.

use std::time::{Duration, Instant};

use anyhow::Result;
use rbk_engine::BackupId;
use rbk_engine::host::control::Client;
use rbk_engine::ops::backup::Source;
use rbk_engine::ops::parts;
use serde_json::json;

use super::{Ctx, Report, mib, open_repo, usage};

/// How often `--wait-parts` looks for new parts.
const POLL: Duration = Duration::from_millis(500);

fn backup_id(v: &Option<String>, step: &str) -> Result<BackupId> {
    let s = super::need(v, "--backupId", step)?;
    Ok(BackupId::parse(s)?)
}

struct Begun(parts::Pending);

impl Report for Begun {
    fn json(&self) -> serde_json::Value {
        let p = &self.0;
        json!({"backup_id": p.id.to_string(), "session": p.session, "lease_seconds": p.lease_ms / 1000})
    }
    fn text(&self) -> String {
        self.0.id.to_string()
    }
}

/// `rbk backup begin --module M [--lease-seconds S]`: prints the new backup id.
pub fn begin(ctx: &Ctx, module: &str, lease_seconds: u64) -> Result<()> {
    let repo = open_repo(ctx.cfg, true)?;
    let pending = parts::begin(&repo, module, Duration::from_secs(lease_seconds))?;
    ctx.note(|| {
        format!(
            "pending backup {}: run `rbk backup part --backupId {}` where its tasks are, then `rbk backup commit --backupId {}` (given up after {lease_seconds} s)",
            pending.id, pending.id, pending.id
        )
    });
    ctx.show(&Begun(pending));
    Ok(())
}

struct PartDone {
    report: rbk_engine::ops::backup::BackupReport,
}

impl Report for PartDone {
    fn json(&self) -> serde_json::Value {
        let r = &self.report;
        json!({"backup_id": r.backup_id.to_string(), "tasks": r.tasks, "files": r.stats.files,
               "logical_bytes": r.stats.logical_bytes, "added_bytes": r.added_bytes,
               "bytes_read": r.bytes_read, "seconds": r.seconds})
    }
    fn text(&self) -> String {
        let r = &self.report;
        format!(
            "part of {}: tasks {:?}, {} files, {:.1} MiB ({:.3} MiB added) in {:.2}s",
            r.backup_id,
            r.tasks,
            r.stats.files,
            mib(r.stats.logical_bytes),
            mib(r.added_bytes),
            r.seconds
        )
    }
}

/// `rbk backup part --backupId ID`: backs up the tasks this data dir holds into ID; from a
/// consistent snapshot when this data dir's host runs the module.
pub fn part(ctx: &Ctx, id: &Option<String>) -> Result<()> {
    let id = backup_id(id, "backup part")?;
    let cfg = ctx.cfg;
    rbk_engine::layout::scan_module(&cfg.data_dir, &id.module)?;
    let repo = open_repo(cfg, true)?;
    let mut host = Client::connect(&cfg.data_dir)?;
    let served = match host.as_mut() {
        Some(c) => c.running()?.contains(&id.module),
        None => false,
    };
    let source = match host.as_mut() {
        Some(c) if served => Source::Host(c),
        _ => Source::Files,
    };
    let (report, _) = parts::part(&repo, &cfg.data_dir, &id, source, &ctx.bars())?;
    repo.bind_if_unbound(&cfg.data_dir)?;
    ctx.show(&PartDone { report });
    Ok(())
}

struct CommitDone(parts::Committed);

impl Report for CommitDone {
    fn json(&self) -> serde_json::Value {
        let c = &self.0;
        json!({"backup_id": c.backup_id.to_string(), "parts": c.parts, "tasks": c.tasks,
               "replicated_tasks": c.replicated_tasks, "files": c.stats.files,
               "logical_bytes": c.stats.logical_bytes, "new_stored_bytes": c.stats.new_stored_bytes,
               "mixed_commit_ids": c.mixed_commit_ids})
    }
    fn text(&self) -> String {
        self.0.backup_id.to_string()
    }
}

/// A committed backup in parts, in the data dir's journal like any backup (the backups page
/// and metrics read it); `started` is when this command began.
fn record_commit(ctx: &Ctx, c: &parts::Committed, started: Instant, by: &str) {
    crate::journal::record(
        &ctx.cfg.data_dir,
        by,
        rbk_engine::layout::journal::Event::Backup {
            module: c.backup_id.module.clone(),
            backup_id: c.backup_id.to_string(),
            seconds: started.elapsed().as_secs_f64(),
            logical_bytes: c.stats.logical_bytes,
            added_bytes: c.stats.new_stored_bytes,
            pause_seconds: None,
        },
    );
}

/// `rbk backup commit --backupId ID`.
pub fn commit(ctx: &Ctx, id: &Option<String>) -> Result<()> {
    let started = Instant::now();
    let id = backup_id(id, "backup commit")?;
    let repo = open_repo(ctx.cfg, false)?;
    let done = parts::commit(&repo, &id)?;
    record_commit(ctx, &done, started, "rbk backup commit");
    note_committed(ctx, &done);
    ctx.show(&CommitDone(done));
    Ok(())
}

fn note_committed(ctx: &Ctx, c: &parts::Committed) {
    ctx.note(|| {
        format!(
            "committed {} from {} part(s): {} tasks ({} replica(s) stored once), {} files, {:.1} MiB",
            c.backup_id,
            c.parts,
            c.tasks,
            c.replicated_tasks,
            c.stats.files,
            mib(c.stats.logical_bytes)
        )
    });
    if !c.mixed_commit_ids.is_empty() {
        // Said even with --quiet or --json: the backup may not be one consistent state.
        eprintln!(
            "rbk: warning: {} holds tasks at different commit ids ({}): its parts were taken at different moments of a running module",
            c.backup_id,
            c.mixed_commit_ids.join("; ")
        );
    }
}

/// `rbk backup abort --backupId ID`: gives up on a pending backup.
pub fn abort(ctx: &Ctx, id: &Option<String>) -> Result<()> {
    let id = backup_id(id, "backup abort")?;
    let repo = open_repo(ctx.cfg, false)?;
    parts::abort(&repo, &id)?;
    ctx.note(|| format!("gave up on {id}; the next gc frees what only its parts used"));
    Ok(())
}

/// `rbk backup --module M --wait-parts S`: begins a backup in parts, writes this data dir's
/// part (unless its `rbk serve` does), waits up to S seconds for the other machines' parts
/// (their `rbk serve` writes them) and commits. A backup that did not get every part in time
/// is given up on, and the error names the tasks missing.
pub fn whole(ctx: &Ctx, module: &str, wait_seconds: u64, lease_seconds: u64) -> Result<()> {
    let started = Instant::now();
    let cfg = ctx.cfg;
    let deadline = Instant::now() + Duration::from_secs(wait_seconds);
    let local = rbk_engine::layout::module_dir(&cfg.data_dir, module).is_dir();
    let served_here = match Client::connect(&cfg.data_dir)? {
        Some(mut c) => c.running()?.iter().any(|m| m == module),
        None => false,
    };
    let pending = {
        let repo = open_repo(cfg, true)?;
        parts::begin(&repo, module, Duration::from_secs(lease_seconds))?
    };
    let id = pending.id.clone();
    ctx.note(|| format!("pending backup {id}: waiting up to {wait_seconds} s for its parts"));
    let outcome = (|| -> Result<parts::Committed> {
        // This data dir's `rbk serve` writes its part itself (it polls for pending backups).
        if local && !served_here {
            let repo = open_repo(cfg, true)?;
            parts::part(&repo, &cfg.data_dir, &id, Source::Files, &ctx.bars())?;
        }
        let mut seen = std::collections::BTreeMap::new();
        // The index is not needed to look; holding the full repo while waiting would keep
        // this data dir's `rbk serve` from writing its part.
        let view = super::open_view(cfg)?;
        loop {
            let cov = parts::coverage(&view, &pending, &mut seen)?;
            if cov.task_count.is_some() && cov.missing.is_empty() {
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(POLL);
        }
        let repo = open_repo(cfg, false)?;
        Ok(parts::commit(&repo, &id)?)
    })();
    match outcome {
        Ok(done) => {
            record_commit(ctx, &done, started, "rbk backup --wait-parts");
            note_committed(ctx, &done);
            ctx.show(&CommitDone(done));
            Ok(())
        }
        Err(e) => {
            // Nothing may commit it any more: free GC from waiting on it.
            if let Ok(repo) = open_repo(cfg, false)
                && let Err(a) = parts::abort(&repo, &id)
            {
                eprintln!("rbk: could not give up on {id} ({a}); it expires after its lease");
            }
            Err(e)
        }
    }
}

/// `--lease-seconds` must be a lease the store accepts.
pub fn check_lease(seconds: u64) -> Result<()> {
    let max = rbk_chunkstore::session::MAX_HELD_LEASE.as_secs();
    if seconds == 0 || seconds > max {
        return Err(usage(format!(
            "--pending-lease-seconds {seconds}: a pending backup's lease is 1..={max} seconds"
        )));
    }
    Ok(())
}
