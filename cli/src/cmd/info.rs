//! `rbk info --backupId B`: what a backup holds, and what restoring it into this data dir
//! did (the module's restore epochs).

use anyhow::Result;
use clap::Args;
use rbk_engine::BackupId;
use rbk_engine::layout::epochs;
use rbk_engine::ops::info;
use serde_json::json;

use super::{BackupIdArg, Ctx, Report, format_ms, mib, need, open_repo};

#[derive(Args, Debug, Default, Clone)]
pub struct InfoArgs {
    #[command(flatten)]
    pub backup_id: BackupIdArg,
}

pub fn run(ctx: &Ctx, args: &InfoArgs) -> Result<()> {
    let id = BackupId::parse(need(&args.backup_id.backup_id, "--backupId", "info")?)?;
    let repo = open_repo(ctx.cfg, false)?;
    let info = info::info(&repo, &id)?;
    // A damaged epoch log must not hide what the backup holds.
    let restores = match epochs::read(&ctx.cfg.data_dir, &id.module) {
        Ok(log) => log
            .epochs
            .into_iter()
            .filter(|e| e.backup_id == id.to_string())
            .collect(),
        Err(e) => {
            tracing::warn!("{e}");
            Vec::new()
        }
    };
    ctx.show(&Shown { info, restores });
    Ok(())
}

struct Shown {
    info: info::BackupInfo,
    /// Restores of this backup into this data dir.
    restores: Vec<epochs::RestoreEpoch>,
}

/// Each task of `m`: its depots (offsets, segments), PStates (files, bytes) and topologies
/// (commit ids); `rbk info --json` and the backups page say it the same way.
pub fn tasks_json(m: &rbk_engine::manifest::ManifestObject) -> serde_json::Value {
    json!(m.summaries().into_iter().map(|(task, t)| json!({
        "task": task,
        "depots": t.depots.iter().map(|d| json!({"name": format!("*{}", d.name), "start_offset": d.start_offset, "end_offset": d.end_offset, "segments": d.files})).collect::<Vec<_>>(),
        "pstates": t.pstates.iter().map(|p| json!({"name": format!("$${}", p.name), "files": p.files, "bytes": p.bytes})).collect::<Vec<_>>(),
        "topologies": t.topologies.iter().map(|p| json!({"name": p.name, "commit_id": p.commit_id})).collect::<Vec<_>>(),
    })).collect::<Vec<_>>())
}

/// Restores of a backup into this data dir.
pub fn restores_json(restores: &[epochs::RestoreEpoch]) -> serde_json::Value {
    json!(
        restores
            .iter()
            .map(|e| json!({
                "epoch": e.epoch,
                "restored": format_ms(e.restored_ms),
                "undo_backup_id": e.undo_backup_id,
                "offsets_reset": e.resets,
            }))
            .collect::<Vec<_>>()
    )
}

impl Report for Shown {
    fn json(&self) -> serde_json::Value {
        let i = &self.info;
        let m = &i.manifest;
        json!({
            "backup_id": m.backup_id().to_string(),
            "module": m.module(),
            "created": format_ms(m.created_ms()),
            "tasks": m.task_count(),
            "files": i.files,
            "logical_bytes": i.logical_bytes,
            "stored_bytes": i.stored_bytes,
            "unique_chunks": i.unique_chunks,
            "new_stored_bytes": m.stats().new_stored_bytes,
            "added_bytes": i.added_bytes,
            "added_chunks": m.stats().new_chunks,
            "task_entries": tasks_json(m),
            "restores": restores_json(&self.restores),
        })
    }

    fn text(&self) -> String {
        let i = &self.info;
        let m = &i.manifest;
        let mut out = format!(
            "backup   {}\nmodule   {}\ncreated  {}\ntasks    {}\nfiles    {}\nlogical  {} bytes ({:.1} MiB)\nstored   {} bytes ({:.1} MiB, {} unique chunks)\nadded    {} bytes ({:.3} MiB, {} new chunks, when it was taken)\n",
            m.backup_id(),
            m.module(),
            format_ms(m.created_ms()),
            m.task_count(),
            i.files,
            i.logical_bytes,
            mib(i.logical_bytes),
            i.stored_bytes.unwrap_or_default(),
            mib(i.stored_bytes.unwrap_or_default()),
            i.unique_chunks.unwrap_or_default(),
            i.added_bytes,
            mib(i.added_bytes),
            m.stats().new_chunks
        );
        for (task, t) in m.summaries() {
            out.push_str(&format!("task {task}\n"));
            for d in &t.depots {
                out.push_str(&format!(
                    "  depot    *{}  offsets {}..{}  {} segments\n",
                    d.name, d.start_offset, d.end_offset, d.files
                ));
            }
            for p in &t.pstates {
                out.push_str(&format!(
                    "  pstate   $${}  {} files, {} bytes\n",
                    p.name, p.files, p.bytes
                ));
            }
            for p in &t.topologies {
                let commit = p.commit_id.map_or("-".to_string(), |c| c.to_string());
                out.push_str(&format!("  topology {}  commit {commit}\n", p.name));
            }
        }
        for e in &self.restores {
            out.push_str(&format!(
                "restored here {} (restore epoch {} of the module){}\n",
                format_ms(e.restored_ms),
                e.epoch,
                e.undo_backup_id.as_ref().map_or(String::new(), |u| format!(
                    ", replacing the state backed up as {u}"
                ))
            ));
            for r in &e.resets {
                out.push_str(&format!("  offset reset: {r}\n"));
            }
        }
        out.trim_end().to_string()
    }
}
