//! `rbk list --module M`: a module's backups, newest first, a page at a time.

use anyhow::Result;
use clap::Args;
use rbk_engine::ops::{list, parts};
use serde_json::json;

use super::{Ctx, ModuleArg, Report, format_ms, need, open_repo};

#[derive(Args, Debug, Default, Clone)]
pub struct ListArgs {
    #[command(flatten)]
    pub module: ModuleArg,
    /// Page token printed by the previous `list` page.
    #[arg(long = "pageToken", alias = "page-token")]
    pub page_token: Option<String>,
    /// Backups per `list` page.
    #[arg(long = "pageSize", alias = "page-size", default_value_t = 20)]
    pub page_size: usize,
}

/// A page of backups, and on the first page the module's pending backups in parts.
struct Listed {
    page: list::BackupPage,
    /// Pending backups (begun, not committed or given up yet) with their parts so far.
    pending: Vec<(String, usize)>,
}

impl Report for Listed {
    fn json(&self) -> serde_json::Value {
        let ids: Vec<String> = self.page.backups.iter().map(ToString::to_string).collect();
        let pending: Vec<serde_json::Value> = self
            .pending
            .iter()
            .map(|(id, parts)| json!({"backup_id": id, "parts": parts}))
            .collect();
        json!({"backups": ids, "next_page_token": self.page.next_token, "pending": pending})
    }

    fn text(&self) -> String {
        let mut lines: Vec<String> = self
            .page
            .backups
            .iter()
            .map(|id| format!("{id}  {}", format_ms(id.millis)))
            .collect();
        if let Some(tok) = &self.page.next_token {
            lines.push(format!("next page: --pageToken {tok}"));
        }
        lines.join("\n")
    }
}

pub fn run(ctx: &Ctx, args: &ListArgs) -> Result<()> {
    let module = need(&args.module.module, "--module", "list")?;
    let repo = open_repo(ctx.cfg, false)?;
    let page = list::list(&repo, module, args.page_token.as_deref(), args.page_size)?;
    // Pending backups are not backups yet: on stderr, so that stdout stays one backup id
    // per line for scripts.
    let pending: Vec<(String, usize)> = if args.page_token.is_none() {
        parts::list(&repo, Some(module))?
            .into_iter()
            .filter(|l| l.begin)
            .map(|l| (l.name, l.parts.len()))
            .collect()
    } else {
        Vec::new()
    };
    if !ctx.json {
        for (id, n) in &pending {
            eprintln!(
                "pending (in parts, not committed): {id}, {n} part(s) so far; `rbk backup commit --backupId {id}` or `rbk backup abort --backupId {id}`"
            );
        }
        if page.backups.is_empty() {
            eprintln!("no backups of module `{module}` in `{}`", ctx.cfg.provider);
        }
    }
    ctx.show(&Listed { page, pending });
    Ok(())
}
