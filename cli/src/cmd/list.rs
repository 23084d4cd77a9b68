//! `rbk list --module M`: a module's backups, newest first, a page at a time.

use anyhow::Result;
use clap::Args;
use rbk_engine::ops::list;
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

impl Report for list::BackupPage {
    fn json(&self) -> serde_json::Value {
        let ids: Vec<String> = self.backups.iter().map(ToString::to_string).collect();
        json!({"backups": ids, "next_page_token": self.next_token})
    }

    fn text(&self) -> String {
        let mut lines: Vec<String> = self
            .backups
            .iter()
            .map(|id| format!("{id}  {}", format_ms(id.millis)))
            .collect();
        if let Some(tok) = &self.next_token {
            lines.push(format!("next page: --pageToken {tok}"));
        }
        lines.join("\n")
    }
}

pub fn run(ctx: &Ctx, args: &ListArgs) -> Result<()> {
    let module = need(&args.module.module, "--module", "list")?;
    let repo = open_repo(ctx.cfg, false)?;
    let page = list::list(&repo, module, args.page_token.as_deref(), args.page_size)?;
    ctx.show(&page);
    if page.backups.is_empty() && !ctx.json {
        eprintln!("no backups of module `{module}` in `{}`", ctx.cfg.provider);
    }
    Ok(())
}
