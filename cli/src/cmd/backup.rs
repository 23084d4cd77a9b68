//! `rbk backup --module M`: back up a module, from a consistent snapshot when a host runs it.

use anyhow::Result;
use clap::Args;
use rbk_engine::host::control::Client;
use rbk_engine::ops::backup::{self, LiveView, Source};
use serde_json::json;

use super::{Ctx, ModuleArg, Report, mib, need, open_repo};

#[derive(Args, Debug, Default, Clone)]
pub struct BackupArgs {
    #[command(flatten)]
    pub module: ModuleArg,
    /// `--mirror-wait` (see [`super::action::ActionArgs`]).
    #[arg(skip)]
    pub mirror_wait: u64,
}

pub struct BackupDone {
    report: backup::BackupReport,
    /// What the snapshot saw, for a module a host runs.
    live: Option<LiveView>,
    /// What the mirror did afterwards, when there is one.
    mirror: Option<MirrorOutcome>,
}

enum MirrorOutcome {
    Synced(super::mirror::Synced),
    Failed(String),
}

pub fn run(ctx: &Ctx, args: &BackupArgs) -> Result<()> {
    let cfg = ctx.cfg;
    let module = need(&args.module.module, "--module", "backup")?;
    // Validate the module before creating or touching the store.
    rbk_engine::layout::scan_module(&cfg.data_dir, module)?;
    let mut repo = open_repo(cfg, true)?;
    let bars = ctx.bars();
    // A module a host runs is backed up from a consistent snapshot the host takes; a stopped
    // one from its files.
    let mut host = Client::connect(&cfg.data_dir)?;
    let served = match host.as_mut() {
        Some(c) => c.running()?.iter().any(|m| m == module),
        None => false,
    };
    let source = match host.as_mut() {
        Some(c) if served => Source::Host(c),
        _ => Source::Files,
    };
    let done = backup::backup_from_source(&repo, &cfg.data_dir, module, source, &bars);
    let event = crate::journal::backup_event(
        module,
        match &done {
            Ok((r, live)) => Ok((r, live.as_ref())),
            Err(e) => Err(e as &dyn std::fmt::Display),
        },
    );
    crate::journal::record(&cfg.data_dir, "rbk backup", event);
    let (report, live) = done?;
    if let Some(l) = &live {
        ctx.note(|| {
            format!(
                "consistent snapshot of the running module: commit ids {:?}, commits paused {:.1} ms",
                l.commit_ids,
                l.pause.as_secs_f64() * 1000.0
            )
        });
    }
    let mirror = cfg
        .mirror
        .is_some()
        .then(|| mirror_after(ctx, &mut repo, args.mirror_wait));
    let report = BackupDone {
        report,
        live,
        mirror,
    };
    ctx.show(&report);
    let (r, s) = (&report.report, &report.report.stats);
    ctx.note(|| {
        format!(
            "backed up {} files ({} reused), {:.1} MiB ({:.1} MiB read) in {:.2}s\nadded to the store: {:.3} MiB ({} new chunks, {:.1} MiB before compression); {:.1} MiB were there already (dedup {:.1}x)",
            s.files,
            s.files_reused,
            mib(s.logical_bytes),
            mib(r.bytes_read),
            r.seconds,
            mib(r.added_bytes),
            s.new_chunks,
            mib(r.added_raw_bytes),
            mib(s.logical_bytes.saturating_sub(r.added_raw_bytes)),
            dedup_ratio(s.logical_bytes, r.added_raw_bytes)
        )
    });
    Ok(())
}

/// Brings the mirror up to date within `wait_seconds`. Never fails: the backup is committed.
fn mirror_after(ctx: &Ctx, repo: &mut rbk_engine::Repo, wait_seconds: u64) -> MirrorOutcome {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(wait_seconds);
    let synced = super::attach_mirror(ctx.cfg, repo, Some(deadline)).and_then(|attached| {
        if !attached {
            anyhow::bail!("only the mirror could be opened");
        }
        super::mirror::catch_up(repo, &ctx.bars())
    });
    match synced {
        Ok(s) if s.status.pending_objects() == 0 => MirrorOutcome::Synced(s),
        Ok(s) => {
            let why = format!(
                "{}: {} object(s) still pending after --mirror-wait {wait_seconds} s",
                super::mirror::unreachable(ctx.cfg),
                s.status.pending_objects()
            );
            eprintln!("rbk: {why}");
            MirrorOutcome::Failed(why)
        }
        Err(e) => {
            let why = format!("{}: {e:#}", super::mirror::unreachable(ctx.cfg));
            // Said even with --quiet or --json: an operator must learn that the off-machine
            // copy is behind.
            eprintln!("rbk: {why}");
            MirrorOutcome::Failed(why)
        }
    }
}

impl Report for BackupDone {
    fn json(&self) -> serde_json::Value {
        let (r, s) = (&self.report, &self.report.stats);
        json!({"backup_id": r.backup_id.to_string(), "live": self.live.as_ref().map(|l| json!({"commit_ids": l.commit_ids, "pause_us": l.pause.as_micros() as u64})), "files": s.files, "files_reused": s.files_reused, "logical_bytes": s.logical_bytes,
        "new_chunks": s.new_chunks, "new_stored_bytes": s.new_stored_bytes, "packs_written": r.packs_written, "bytes_read": r.bytes_read,
        "added_bytes": r.added_bytes, "added_chunks": s.new_chunks, "reused_bytes": s.logical_bytes.saturating_sub(r.added_raw_bytes),
        "dedup_ratio": dedup_ratio(s.logical_bytes, r.added_raw_bytes), "seconds": r.seconds,
        "mirror": match &self.mirror {
            None => serde_json::Value::Null,
            Some(MirrorOutcome::Synced(s)) => s.json_value(),
            Some(MirrorOutcome::Failed(why)) => json!({"error": why}),
        }})
    }

    fn text(&self) -> String {
        self.report.backup_id.to_string()
    }
}

/// The backup's bytes over the bytes it had to add (0 when it added nothing: all deduplicated).
fn dedup_ratio(logical: u64, added_raw: u64) -> f64 {
    if added_raw == 0 {
        0.0
    } else {
        logical as f64 / added_raw as f64
    }
}
