//! `rbk stats [--module M | --backupId B]`: how much the store saves, and where.

use anyhow::Result;
use clap::Args;
use rbk_engine::BackupId;
use rbk_engine::ops::stats::{self, Scope, StoreStats, Totals};
use serde_json::json;

use super::{BackupIdArg, Ctx, ModuleArg, Report, mib, open_repo, usage};

#[derive(Args, Debug, Default, Clone)]
pub struct StatsArgs {
    #[command(flatten)]
    pub module: ModuleArg,
    #[command(flatten)]
    pub backup_id: BackupIdArg,
}

pub fn run(ctx: &Ctx, args: &StatsArgs) -> Result<()> {
    let scope = match (&args.module.module, &args.backup_id.backup_id) {
        (Some(_), Some(_)) => {
            return Err(usage("stats takes --module or --backupId, not both".into()));
        }
        (Some(m), None) => Scope::Module(m.clone()),
        (None, Some(id)) => Scope::Backup(BackupId::parse(id)?),
        (None, None) => Scope::Store,
    };
    let repo = open_repo(ctx.cfg, false)?;
    ctx.show(&stats::stats(&repo, &scope, &ctx.bars())?);
    Ok(())
}

fn totals_json(t: &Totals) -> serde_json::Value {
    json!({
        "logical_bytes": t.logical_bytes,
        "unique_chunks": t.unique_chunks,
        "unique_bytes": t.unique_bytes,
        "stored_bytes": t.stored_bytes,
        "dedup_ratio": t.dedup_ratio(),
        "compression_ratio": t.compression_ratio(),
        "total_ratio": t.total_ratio(),
    })
}

fn totals_line(name: &str, t: &Totals) -> String {
    format!(
        "{name:<28} {:>10.1} {:>10.1} {:>10.1} {:>7.2}x {:>7.2}x {:>7.2}x",
        mib(t.logical_bytes),
        mib(t.unique_bytes),
        mib(t.stored_bytes),
        t.dedup_ratio(),
        t.compression_ratio(),
        t.total_ratio()
    )
}

impl Report for StoreStats {
    fn json(&self) -> serde_json::Value {
        let mut v = totals_json(&self.totals);
        v["scope"] = json!(match &self.scope {
            Scope::Store => "store".to_string(),
            Scope::Module(m) => format!("module {m}"),
            Scope::Backup(id) => format!("backup {id}"),
        });
        v["backups"] = json!(self.backups);
        v["modules"] = self
            .modules
            .iter()
            .map(|(m, t)| (m.clone(), totals_json(t)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        v["kinds"] = self
            .kinds
            .iter()
            .map(|(k, t)| (k.to_string(), totals_json(t)))
            .collect::<serde_json::Map<_, _>>()
            .into();
        v["missing_chunks"] = json!(self.missing_chunks);
        v["packs"] = json!(self.packs);
        v["pack_bytes"] = json!(self.pack_bytes);
        v["garbage_bytes"] = json!(self.garbage_bytes);
        v["seconds"] = json!(self.seconds);
        v
    }

    fn text(&self) -> String {
        let mut out = vec![format!(
            "{:<28} {:>10} {:>10} {:>10} {:>8} {:>8} {:>8}",
            format!("{} backup(s), MiB", self.backups),
            "logical",
            "unique",
            "stored",
            "dedup",
            "compr",
            "total"
        )];
        out.push(totals_line("all", &self.totals));
        for (k, t) in &self.kinds {
            out.push(totals_line(&format!("  {k}"), t));
        }
        if self.modules.len() > 1 {
            for (m, t) in &self.modules {
                out.push(totals_line(&format!("  {m}"), t));
            }
        }
        let mut store = format!(
            "store: {} packs, {:.1} MiB",
            self.packs,
            mib(self.pack_bytes)
        );
        if let Some(g) = self.garbage_bytes {
            store.push_str(&format!(
                "; {:.1} MiB garbage (no backup needs it; `rbk gc` frees it)",
                mib(g)
            ));
        }
        out.push(store);
        if self.missing_chunks > 0 {
            out.push(format!(
                "{} referenced chunk(s) are in no pack: run `rbk verify`",
                self.missing_chunks
            ));
        }
        out.join("\n")
    }
}
