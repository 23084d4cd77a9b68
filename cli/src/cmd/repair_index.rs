//! `rbk repair-index`: rebuild the local chunk index from the store's pack trailers.

use anyhow::Result;
use clap::Args;
use rbk_chunkstore::SyncReport;
use rbk_engine::ops::verify;
use serde_json::json;

use super::{Ctx, Report, open_repo};

#[derive(Args, Debug, Default, Clone)]
pub struct RepairIndexArgs {}

struct Rebuilt {
    path: String,
    report: SyncReport,
}

impl Report for Rebuilt {
    fn json(&self) -> serde_json::Value {
        let r = &self.report;
        json!({"index": self.path, "packs": r.packs, "damaged_packs": r.damaged.iter().map(|(k, why)| json!({"key": k, "detail": why})).collect::<Vec<_>>()})
    }

    fn text(&self) -> String {
        let r = &self.report;
        let mut lines: Vec<String> = r
            .damaged
            .iter()
            .map(|(k, why)| format!("DAMAGED {k}: {why}"))
            .collect();
        lines.push(format!(
            "rebuilt the index at {}: {} packs",
            self.path, r.packs
        ));
        lines.join("\n")
    }
}

pub fn run(ctx: &Ctx, _args: &RepairIndexArgs) -> Result<()> {
    let cfg = ctx.cfg;
    // Damage can surface at any read of the index, not only when it opens: rebuild
    // into an empty directory, whatever the old one holds. Opening it first checks
    // that no other rbk process is using it.
    let repo = open_repo(cfg, false)?;
    let old = repo.store().index_path()?.to_path_buf();
    drop(repo);
    let aside = rbk_chunkstore::RocksChunkIndex::set_aside(&old, "replaced")?;
    let repo = open_repo(cfg, false)?;
    let r = verify::repair_index(&repo)?;
    if let Err(e) = std::fs::remove_dir_all(&aside) {
        eprintln!(
            "rbk: could not delete the old index `{}`: {e}",
            aside.display()
        );
    }
    let path = repo.store().index_path()?.display().to_string();
    ctx.show(&Rebuilt {
        path,
        report: r.clone(),
    });
    if !r.damaged.is_empty() {
        return Err(anyhow::Error::new(rbk_chunkstore::Error::corrupt(
            format!("{} pack(s) of the store", r.damaged.len()),
            "their trailers are damaged, so they were left out of the index; the next backup stores their chunks again, and `rbk verify` shows which backups they break",
        )));
    }
    Ok(())
}
