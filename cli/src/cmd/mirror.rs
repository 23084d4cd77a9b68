//! `rbk mirror sync` and `rbk mirror status`: the store's second copy (docs/mirror.md).
//! Backups commit to the store first; the mirror follows after each backup, in `rbk serve`'s
//! background, or here.

use anyhow::{Context as _, Result};
use clap::Subcommand;
use rbk_chunkstore::mirror::{MirrorReport, MirrorStatus};
use rbk_engine::{BackupId, Progress, Repo};
use serde_json::json;

use super::{Ctx, Report, attach_mirror, mib, open_repo, usage};
use crate::config::{Config, redact};

#[derive(Subcommand, Debug, Clone)]
pub enum MirrorCommand {
    /// Copy to the mirror every backup it lacks (packs first, then manifests, oldest first);
    /// exits 0 once the mirror holds every backup of the store.
    Sync,
    /// How far the mirror is behind: pending objects and bytes, the last backup mirrored,
    /// the age of the oldest pending one.
    Status,
}

pub fn run(ctx: &Ctx, command: &MirrorCommand) -> Result<()> {
    let cfg = ctx.cfg;
    let mut repo = open_repo(cfg, false)?;
    if !attach_mirror(cfg, &mut repo, None)? {
        return Err(no_mirror(cfg));
    }
    match command {
        MirrorCommand::Sync => {
            let report = catch_up(&repo, &ctx.bars()).with_context(|| unreachable(cfg))?;
            ctx.show(&report);
        }
        MirrorCommand::Status => {
            let status = repo.mirror_status()?.expect("a mirror is attached");
            ctx.show(&StatusView(status));
        }
    }
    Ok(())
}

fn no_mirror(cfg: &Config) -> anyhow::Error {
    if cfg.mirror.is_some() {
        usage(format!(
            "the store `{}` cannot be reached, so only its mirror is open; there is nothing to sync it from",
            cfg.provider
        ))
    } else {
        usage(
            "no mirror is configured: set `backup.mirror` in rbk.yaml (e.g. `backup.mirror: \"s3 http://host:3900/bucket/rbk\"`), --mirror or RBK_MIRROR"
                .into(),
        )
    }
}

/// Context for a sync that failed: the backups are safe in the store.
pub fn unreachable(cfg: &Config) -> String {
    format!(
        "the mirror `{}` could not be brought up to date; every backup is still in the store `{}`, and the next backup, `rbk mirror sync` or `rbk serve` catches up",
        cfg.mirror
            .as_ref()
            .map_or_else(String::new, |(m, _)| redact(m)),
        cfg.provider
    )
}

/// Syncs until nothing is pending (a backup committed during a sync is picked up by the next
/// round), at most a few rounds.
///
/// # Errors
/// As [`Repo::sync_mirror`].
pub fn catch_up(repo: &Repo, progress: &dyn Progress) -> Result<Synced> {
    let mut total = MirrorReport::default();
    let mut rounds = 0;
    loop {
        let r = repo.sync_mirror(progress)?.unwrap_or_default();
        total.manifests_copied += r.manifests_copied;
        total.manifests_skipped += r.manifests_skipped;
        total.packs_copied += r.packs_copied;
        total.bytes_copied += r.bytes_copied;
        total.chunks_rewritten += r.chunks_rewritten;
        total.seconds += r.seconds;
        rounds += 1;
        let status = repo.mirror_status()?.unwrap_or_default();
        if status.pending_objects() == 0 || rounds == 3 {
            return Ok(Synced {
                report: total,
                status,
            });
        }
    }
}

pub struct Synced {
    pub report: MirrorReport,
    pub status: MirrorStatus,
}

impl Synced {
    pub fn json_value(&self) -> serde_json::Value {
        let r = &self.report;
        json!({"manifests_copied": r.manifests_copied, "manifests_skipped": r.manifests_skipped,
               "packs_copied": r.packs_copied, "bytes_copied": r.bytes_copied,
               "chunks_rewritten": r.chunks_rewritten, "seconds": r.seconds,
               "pending_objects": self.status.pending_objects()})
    }
}

impl Report for Synced {
    fn json(&self) -> serde_json::Value {
        self.json_value()
    }

    fn text(&self) -> String {
        let r = &self.report;
        let mut out = format!(
            "mirrored {} backup(s): {} pack(s), {:.1} MiB in {:.2}s",
            r.manifests_copied,
            r.packs_copied,
            mib(r.bytes_copied),
            r.seconds
        );
        if self.status.pending_objects() > 0 {
            out.push_str(&format!(
                "\nstill pending: {} object(s) (backups are being written; run it again)",
                self.status.pending_objects()
            ));
        }
        out
    }
}

struct StatusView(MirrorStatus);

impl StatusView {
    fn last_synced(&self) -> Option<String> {
        self.0.last_synced.as_ref().map(|m| {
            BackupId::parse(&m.name)
                .map_or_else(|_| format!("{}/{}", m.group, m.name), |id| id.to_string())
        })
    }
}

impl Report for StatusView {
    fn json(&self) -> serde_json::Value {
        let s = &self.0;
        json!({"pending_objects": s.pending_objects(), "pending_manifests": s.pending_manifests,
               "pending_packs": s.pending_packs, "pending_bytes": s.pending_bytes,
               "last_synced_backup": self.last_synced(),
               "oldest_pending_age_seconds": s.oldest_pending_age_seconds(),
               "mirror_backups": s.mirror_manifests})
    }

    fn text(&self) -> String {
        let s = &self.0;
        let state = if s.pending_objects() == 0 {
            "in sync".to_string()
        } else {
            format!(
                "behind: {} object(s) pending ({} backup(s), {} pack(s), {:.1} MiB), the oldest for {} s",
                s.pending_objects(),
                s.pending_manifests,
                s.pending_packs,
                mib(s.pending_bytes),
                s.oldest_pending_age_seconds().unwrap_or(0)
            )
        };
        format!(
            "mirror {state}\nbackups on the mirror: {}\nlast mirrored: {}",
            s.mirror_manifests,
            self.last_synced().unwrap_or_else(|| "none".into())
        )
    }
}
