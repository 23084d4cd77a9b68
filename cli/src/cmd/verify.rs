//! `rbk verify [--module M | --backupId B]`: check that backups are restorable without
//! restoring them.

use anyhow::Result;
use clap::Args;
use rbk_engine::BackupId;
use rbk_engine::ops::verify;
use serde_json::json;

use super::{BackupIdArg, Ctx, ModuleArg, Report, mib, open_repo, usage};

#[derive(Args, Debug, Default, Clone)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub module: ModuleArg,
    #[command(flatten)]
    pub backup_id: BackupIdArg,
    #[command(flatten)]
    pub flags: VerifyFlags,
}

#[derive(Args, Debug, Default, Clone)]
pub struct VerifyFlags {
    /// verify: download every chunk and check it against its BLAKE3 id.
    #[arg(long = "read-data")]
    pub read_data: bool,
    /// verify: download and check this share of the distinct chunks, chosen at random
    /// (e.g. `10%`).
    #[arg(
        long = "read-data-subset",
        value_name = "PERCENT",
        conflicts_with = "read_data"
    )]
    pub read_data_subset: Option<String>,
}

pub fn run(ctx: &Ctx, args: &VerifyArgs) -> Result<()> {
    let read = match (&args.flags.read_data_subset, args.flags.read_data) {
        (Some(p), _) => verify::ReadData::Subset(parse_percent(p)?),
        (None, true) => verify::ReadData::All,
        (None, false) => verify::ReadData::None,
    };
    let repo = open_repo(ctx.cfg, false)?;
    let ids = match (&args.backup_id.backup_id, &args.module.module) {
        (Some(id), _) => vec![BackupId::parse(id)?],
        (None, Some(m)) => {
            let ids = repo.backup_ids(m)?;
            if ids.is_empty() {
                return Err(anyhow::Error::new(rbk_engine::Error::BackupNotFound {
                    backup_id: "(any)".into(),
                    module: m.clone(),
                }));
            }
            ids
        }
        (None, None) => Vec::new(),
    };
    let r = verify::verify(&repo, &ids, read, &ctx.bars())?;
    ctx.show(&r);
    if !r.problems.is_empty() {
        return Err(anyhow::Error::new(rbk_engine::Error::Damaged {
            problems: r.problems.len(),
            backups: r.damaged_backups().len(),
        }));
    }
    Ok(())
}

/// `10%`, `10` or `0.5%` → a percentage in 0..=100.
fn parse_percent(s: &str) -> Result<f64> {
    s.trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .ok_or_else(|| {
            usage(format!(
                "--read-data-subset `{s}` is not a percentage (0-100%)"
            ))
        })
}

impl Report for verify::VerifyReport {
    fn json(&self) -> serde_json::Value {
        let r = self;
        json!({
            "backups": r.backups,
            "files": r.files,
            "chunks": r.chunks,
            "chunks_read": r.chunks_read,
            "bytes_read": r.bytes_read,
            "clean": r.problems.is_empty(),
            "damaged_backups": r.damaged_backups().iter().map(ToString::to_string).collect::<Vec<_>>(),
            "problems": r.problems.iter().map(|p| json!({
                "backup_id": p.backup_id.to_string(), "task": p.task, "object": p.object,
                "file": p.file, "chunk": p.chunk.map(|c| c.to_string()), "detail": p.detail,
            })).collect::<Vec<_>>(),
            "seconds": r.seconds,
        })
    }

    fn text(&self) -> String {
        let r = self;
        let mut out: Vec<String> = r.problems.iter().map(|p| format!("DAMAGED {p}")).collect();
        let read = if r.chunks_read > 0 {
            format!(
                ", {} read and re-hashed ({:.1} MiB)",
                r.chunks_read,
                mib(r.bytes_read)
            )
        } else {
            String::new()
        };
        out.push(format!(
            "verified {} backup(s), {} files, {} distinct chunks{read} in {:.2}s: {}",
            r.backups,
            r.files,
            r.chunks,
            r.seconds,
            if r.problems.is_empty() {
                "clean".to_string()
            } else {
                format!("{} damaged", r.damaged_backups().len())
            }
        ));
        out.join("\n")
    }
}
