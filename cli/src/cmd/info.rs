//! `rbk info --backupId B`: what a backup holds.

use anyhow::Result;
use clap::Args;
use rbk_engine::BackupId;
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
    ctx.show(&info::info(&repo, &id)?);
    Ok(())
}

impl Report for info::BackupInfo {
    fn json(&self) -> serde_json::Value {
        let i = self;
        let m = &i.manifest;
        json!({
            "backup_id": m.backup_id.to_string(),
            "module": m.module(),
            "created": format_ms(m.created_ms),
            "tasks": m.task_count,
            "files": i.files,
            "logical_bytes": i.logical_bytes,
            "stored_bytes": i.stored_bytes,
            "unique_chunks": i.unique_chunks,
            "new_stored_bytes": m.stats.new_stored_bytes,
        "added_bytes": i.added_bytes,
        "added_chunks": m.stats.new_chunks,
            "task_entries": m.tasks.iter().map(|t| json!({
                "task": t.task,
                "depots": t.depots.iter().map(|d| json!({"name": format!("*{}", d.name), "start_offset": d.start_offset, "end_offset": d.end_offset, "segments": d.files.len()})).collect::<Vec<_>>(),
                "pstates": t.pstates.iter().map(|p| json!({"name": format!("$${}", p.name), "files": p.files.len(), "bytes": p.files.iter().map(|f| f.size).sum::<u64>()})).collect::<Vec<_>>(),
                "topologies": t.topologies.iter().map(|p| json!({"name": p.name, "commit_id": p.commit_id})).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
        })
    }

    fn text(&self) -> String {
        let i = self;
        let m = &i.manifest;
        let mut out = format!(
            "backup   {}\nmodule   {}\ncreated  {}\ntasks    {}\nfiles    {}\nlogical  {} bytes ({:.1} MiB)\nstored   {} bytes ({:.1} MiB, {} unique chunks)\nadded    {} bytes ({:.3} MiB, {} new chunks, when it was taken)\n",
            m.backup_id,
            m.module(),
            format_ms(m.created_ms),
            m.task_count,
            i.files,
            i.logical_bytes,
            mib(i.logical_bytes),
            i.stored_bytes,
            mib(i.stored_bytes),
            i.unique_chunks,
            i.added_bytes,
            mib(i.added_bytes),
            m.stats.new_chunks
        );
        for t in &m.tasks {
            out.push_str(&format!("task {}\n", t.task));
            for d in &t.depots {
                out.push_str(&format!(
                    "  depot    *{}  offsets {}..{}  {} segments\n",
                    d.name,
                    d.start_offset,
                    d.end_offset,
                    d.files.len()
                ));
            }
            for p in &t.pstates {
                out.push_str(&format!(
                    "  pstate   $${}  {} files, {} bytes\n",
                    p.name,
                    p.files.len(),
                    p.files.iter().map(|f| f.size).sum::<u64>()
                ));
            }
            for p in &t.topologies {
                let commit = p.commit_id.map_or("-".to_string(), |c| c.to_string());
                out.push_str(&format!("  topology {}  commit {commit}\n", p.name));
            }
        }
        out.trim_end().to_string()
    }
}
