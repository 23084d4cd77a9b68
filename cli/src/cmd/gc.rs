//! `rbk gc`: delete backups by retention policy, then free the packs no retained backup needs.

use anyhow::Result;
use clap::Args;
use rbk_engine::ops::gc;
use serde_json::json;

use super::{Ctx, Report, mib, open_repo, usage};

#[derive(Args, Debug, Default, Clone)]
pub struct GcArgs {
    /// Not a gc flag (gc works on every module); accepted only to say so.
    #[arg(long, hide = true)]
    pub module: Option<String>,
    /// Not a gc flag; accepted only to point at `rbk delete`.
    #[arg(long = "backupId", alias = "backup-id", hide = true)]
    pub backup_id: Option<String>,
    #[command(flatten)]
    pub flags: GcFlags,
}

#[derive(Args, Debug, Default, Clone)]
pub struct GcFlags {
    /// gc: print what would be deleted; change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// gc: delete backups older than this (overrides backup.max.age.hours of every module).
    #[arg(long = "max-age-hours", value_name = "HOURS")]
    pub max_age_hours: Option<f64>,
    /// gc: keep at least this many newest backups per module (overrides
    /// backup.min.backups.to.keep).
    #[arg(long = "min-backups-to-keep", value_name = "N")]
    pub min_keep: Option<u64>,
    /// gc: rewrite packs with more than this fraction of their bytes unreferenced.
    #[arg(long = "repack-threshold", value_name = "FRACTION", default_value_t = gc::DEFAULT_REPACK_THRESHOLD)]
    pub repack_threshold: f64,
    /// gc: run even though the data dir belongs to another store, and bind it to this one.
    #[arg(long = "rebind-store")]
    pub rebind_store: bool,
    /// gc: declare a backup or restore dead after this long without a heartbeat.
    #[arg(long = "lease-seconds", value_name = "SECONDS")]
    pub lease_seconds: Option<u64>,
    /// gc: declare this session dead now, whatever its heartbeats say (repeatable; `gc
    /// --dry-run` lists the sessions). Its backup, if still running, fails and commits
    /// nothing.
    #[arg(long = "revoke", value_name = "SESSION")]
    pub revoke: Vec<String>,
}

pub fn run(ctx: &Ctx, args: &GcArgs) -> Result<()> {
    let f = &args.flags;
    if args.module.is_some() || args.backup_id.is_some() {
        return Err(usage(
            "gc works on the whole store (every module); drop --module/--backupId, or use `rbk delete` for one backup".into(),
        ));
    }
    let cfg = ctx.cfg;
    let mut repo = open_repo(cfg, false)?;
    let set_lease = |repo: &rbk_engine::Repo| {
        if let Some(secs) = f.lease_seconds {
            let mut timing = repo.store().session_timing();
            timing.lease = std::time::Duration::from_secs(secs);
            repo.store().set_session_timing(timing);
        }
    };
    set_lease(&repo);
    let opts = gc::GcOptions {
        dry_run: f.dry_run,
        policy: rbk_engine::retention::PolicyOverride {
            max_age_hours: f.max_age_hours,
            min_keep: f.min_keep,
        },
        repack_threshold: f.repack_threshold,
        rebind_store: f.rebind_store,
        now_ms: None,
        revoke: f.revoke.clone(),
    };
    let primary = gc::gc(&repo, &cfg.data_dir, &opts, &ctx.bars());
    record_gc(cfg, "store", primary.as_ref().map_err(|e| e as _));
    let primary = primary?;
    // The mirror is an ordinary store: the same GC, by the same rules, on its side
    // (docs/mirror.md). The sessions named by --revoke are the primary's.
    let mirror = match super::attach_mirror(cfg, &mut repo, None) {
        Ok(true) => {
            let side = repo.mirror_repo().expect("a mirror is attached");
            set_lease(&side);
            let opts = gc::GcOptions {
                revoke: Vec::new(),
                ..opts
            };
            let r = gc::gc(&side, &cfg.data_dir, &opts, &ctx.bars());
            record_gc(cfg, "mirror", r.as_ref().map_err(|e| e as _));
            Some(r.map_err(anyhow::Error::new))
        }
        Ok(false) => None,
        Err(e) => Some(Err(e)),
    };
    match mirror {
        None => ctx.show(&primary),
        Some(Ok(m)) => ctx.show(&BothSides(primary, m)),
        Some(Err(e)) => {
            ctx.show(&primary);
            return Err(e.context(
                "the store was collected, but its mirror was not; run `rbk gc` again once the mirror answers",
            ));
        }
    }
    Ok(())
}

fn record_gc(
    cfg: &crate::config::Config,
    side: &str,
    outcome: std::result::Result<&gc::GcReport, &dyn std::fmt::Display>,
) {
    if let Some(event) = crate::journal::gc_event(side, outcome) {
        crate::journal::record(&cfg.data_dir, "rbk gc", event);
    }
}

/// A GC of the store and of its mirror: the store's report, with the mirror's under `mirror`.
struct BothSides(gc::GcReport, gc::GcReport);

impl Report for BothSides {
    fn json(&self) -> serde_json::Value {
        let mut v = self.0.json();
        v["mirror"] = self.1.json();
        v
    }

    fn text(&self) -> String {
        format!("{}\nmirror:\n{}", self.0.text(), self.1.text())
    }
}

impl Report for gc::GcReport {
    fn json(&self) -> serde_json::Value {
        let r = self;
        let s = &r.store.sweep;
        json!({
            "dry_run": r.dry_run,
            "manifests_deleted": r.manifests_deleted.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "manifests_uncommitted": r.manifests_uncommitted.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "manifests_retained": r.manifests_retained,
            "pending_held": r.pending_held,
            "pending_deleted": r.pending_deleted,
            "sessions_revoked": r.store.sessions_revoked,
            "sessions": r.store.sessions.iter().map(|s| json!({
                "id": s.id,
                "kind": s.heartbeat.as_ref().map(|h| h.kind.clone()),
                "label": s.heartbeat.as_ref().map(|h| h.label.clone()),
                "host": s.heartbeat.as_ref().map(|h| h.host.clone()),
                "pid": s.heartbeat.as_ref().map(|h| h.pid),
                "silent_seconds": s.silent_ms.map(|ms| ms as f64 / 1000.0),
                "clock": if s.store_clock { "store" } else { "writer" },
                "revoke": s.revoke,
            })).collect::<Vec<_>>(),
            "live_chunks": r.store.live_chunks,
            "packs_total": r.store.packs_total,
            "pack_bytes_total": r.store.pack_bytes_total,
            "packs_condemned": r.store.packs_condemned,
            "bytes_condemned": r.store.bytes_condemned,
            "packs_dead": r.store.packs_dead,
            "dead_bytes_kept": r.store.dead_bytes_kept,
            "records_swept": r.store.records_swept,
            "records_waiting": r.store.records_waiting,
            "waiting_on_sessions": r.store.waiting_on,
            "packs_deleted": s.packs_deleted,
            "packs_rewritten": s.packs_rewritten,
            "packs_reprieved": s.packs_reprieved,
            "new_packs": s.new_packs,
            "bytes_freed": s.bytes_freed,
            "bytes_rewritten": s.bytes_rewritten,
            "problems": s.problems,
            "leftovers_deleted": r.store.leftovers_deleted,
            "tombstones_deleted": r.store.tombstones_deleted,
            "swept_records_deleted": r.store.swept_records_deleted,
            "warnings": r.warnings,
            "seconds": r.seconds,
        })
    }

    fn text(&self) -> String {
        let r = self;
        let s = &r.store.sweep;
        let would = if r.dry_run { "would delete" } else { "deleted" };
        let mut out = vec![format!(
            "{would} {} backup(s) by retention policy; {} retained",
            r.manifests_deleted.len(),
            r.manifests_retained
        )];
        out.extend(r.manifests_deleted.iter().map(|id| format!("  {id}")));
        if !r.manifests_uncommitted.is_empty() {
            out.push(format!(
            "{} {} backup(s) that were never committed (their session was revoked before they were written):",
            if r.dry_run { "would delete" } else { "deleted" },
            r.manifests_uncommitted.len()
        ));
            out.extend(r.manifests_uncommitted.iter().map(|id| format!("  {id}")));
        }
        if r.pending_held > 0 {
            out.push(format!(
                "{} pending backup(s) in parts still held: what their parts reference is kept",
                r.pending_held
            ));
        }
        if !r.pending_deleted.is_empty() {
            out.push(format!(
                "{} what is left of {} pending backup(s) that were committed or given up on:",
                if r.dry_run { "would delete" } else { "deleted" },
                r.pending_deleted.len()
            ));
            out.extend(r.pending_deleted.iter().map(|id| format!("  {id}")));
        }
        for s in &r.store.sessions {
            let who = s.heartbeat.as_ref().map_or_else(
                || "(heartbeat unreadable)".to_string(),
                |h| format!("{} {} on {} pid {}", h.kind, h.label, h.host, h.pid),
            );
            let silent = s.silent_ms.map_or_else(
                || "heartbeat just replaced".to_string(),
                |ms| {
                    format!(
                        "silent {:.0} s by the {} clock",
                        ms as f64 / 1000.0,
                        if s.store_clock { "store's" } else { "writer's" }
                    )
                },
            );
            let verdict = match (s.revoke, r.dry_run) {
                (true, true) => "; would be revoked",
                (true, false) => "; revoked",
                (false, _) => "",
            };
            out.push(format!("session {} {who}: {silent}{verdict}", s.id));
        }
        out.push(format!(
            "store: {} packs, {:.1} MiB; {} live chunks",
            r.store.packs_total,
            mib(r.store.pack_bytes_total),
            r.store.live_chunks
        ));
        let verb = if r.dry_run {
            "would condemn"
        } else {
            "condemned"
        };
        out.push(format!(
        "{verb} {} pack(s), {:.1} MiB: {} unreferenced, {} to rewrite; {:.1} MiB unreferenced stays in packs under the repack threshold",
        r.store.packs_condemned,
        mib(r.store.bytes_condemned),
        r.store.packs_dead,
        r.store.packs_condemned - r.store.packs_dead,
        mib(r.store.dead_bytes_kept)
    ));
        if !r.dry_run {
            out.push(format!(
            "swept {} record(s): deleted {} pack(s), rewrote {} ({:.1} MiB copied), reprieved {}; freed {:.1} MiB",
            r.store.records_swept,
            s.packs_deleted,
            s.packs_rewritten,
            mib(s.bytes_rewritten),
            s.packs_reprieved,
            mib(s.bytes_freed)
        ));
        }
        if r.store.records_waiting > 0 {
            out.push(format!(
                "{} record(s) wait for running session(s) {}; a later gc sweeps them",
                r.store.records_waiting,
                r.store.waiting_on.join(", ")
            ));
        }
        out.extend(s.problems.iter().map(|p| format!("problem: {p}")));
        out.extend(r.warnings.iter().map(|w| format!("warning: {w}")));
        out.join("\n")
    }
}
