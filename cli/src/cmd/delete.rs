//! `rbk delete --backupId B`: delete one backup; the chunks only it used are freed by the next
//! `rbk gc`.

use anyhow::{Context as _, Result};
use clap::Args;
use rbk_engine::BackupId;
use rbk_engine::ops::gc;
use serde_json::json;

use super::{BackupIdArg, Ctx, Report, need, open_repo};

#[derive(Args, Debug, Default, Clone)]
pub struct DeleteArgs {
    #[command(flatten)]
    pub backup_id: BackupIdArg,
}

struct Deleted(BackupId);

impl Report for Deleted {
    fn json(&self) -> serde_json::Value {
        json!({"deleted": self.0.to_string()})
    }

    fn text(&self) -> String {
        format!(
            "deleted {}; run `rbk gc` to free the space only it used",
            self.0
        )
    }
}

pub fn run(ctx: &Ctx, args: &DeleteArgs) -> Result<()> {
    let id = BackupId::parse(need(&args.backup_id.backup_id, "--backupId", "delete")?)?;
    let mut repo = open_repo(ctx.cfg, false)?;
    // Deleted on both sides: a backup deleted here and kept on the mirror would come back
    // to no one, but cost storage there until the mirror's own retention expired it.
    super::attach_mirror(ctx.cfg, &mut repo, None).context(
        "the backup was not deleted: its mirror could not be reached; run it again once it answers",
    )?;
    gc::delete_backup(&repo, &id)?;
    ctx.show(&Deleted(id));
    Ok(())
}
