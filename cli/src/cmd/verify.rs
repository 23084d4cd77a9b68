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
    /// verify: which copy of the store to check when a mirror is configured (default: both).
    #[arg(long, value_enum)]
    pub side: Option<Side>,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Primary,
    Mirror,
    Both,
}

pub fn run(ctx: &Ctx, args: &VerifyArgs) -> Result<()> {
    let read = match (&args.flags.read_data_subset, args.flags.read_data) {
        (Some(p), _) => verify::ReadData::Subset(parse_percent(p)?),
        (None, true) => verify::ReadData::All,
        (None, false) => verify::ReadData::None,
    };
    let side = match (args.flags.side, &ctx.cfg.mirror) {
        (Some(s), Some(_)) => s,
        (None, Some(_)) => Side::Both,
        (None | Some(Side::Primary), None) => Side::Primary,
        (Some(_), None) => {
            return Err(usage(
                "--side mirror|both needs a mirror: set `backup.mirror` in rbk.yaml, --mirror or RBK_MIRROR".into(),
            ));
        }
    };
    // Each side is checked on its own: the primary without falling back to the mirror,
    // which would hide its damage.
    let mut primary = open_repo(ctx.cfg, false)?;
    let mut sides: Vec<(&str, rbk_engine::Repo)> = Vec::new();
    if side != Side::Primary {
        if !super::attach_mirror(ctx.cfg, &mut primary, None)? {
            // The store is gone, and `primary` is the mirror opened in its place.
            if side == Side::Both {
                return Err(usage(format!(
                    "there is no store at `{}` to verify; `--side mirror` checks the mirror alone",
                    ctx.cfg.provider
                )));
            }
            sides.push(("mirror", primary));
        } else {
            let mirror = primary.mirror_repo().expect("a mirror is attached");
            if side == Side::Both {
                let alone = open_alone(ctx, primary)?;
                sides.push(("primary", alone));
            }
            sides.push(("mirror", mirror));
        }
    } else {
        sides.push(("primary", primary));
    }
    let mut reports = Vec::new();
    for (name, repo) in &sides {
        let r = verify::verify(repo, &backups_to_check(repo, args)?, read, &ctx.bars())?;
        reports.push((*name, repo.store().describe(), r));
    }
    let problems: usize = reports.iter().map(|(_, _, r)| r.problems.len()).sum();
    let backups: usize = reports
        .iter()
        .map(|(_, _, r)| r.damaged_backups().len())
        .sum();
    if let [(_, _, only)] = &reports[..] {
        ctx.show(only);
    } else {
        ctx.show(&Sides(reports));
    }
    if problems > 0 {
        return Err(anyhow::Error::new(rbk_engine::Error::Damaged {
            problems,
            backups,
        }));
    }
    Ok(())
}

/// The primary without its mirror attached: the repository is reopened, as the mirror's
/// index belongs to the mirror's side now.
fn open_alone(ctx: &Ctx, with_mirror: rbk_engine::Repo) -> Result<rbk_engine::Repo> {
    drop(with_mirror);
    let cfg = crate::config::Config {
        mirror: None,
        ..ctx.cfg.clone()
    };
    open_repo(&cfg, false)
}

fn backups_to_check(repo: &rbk_engine::Repo, args: &VerifyArgs) -> Result<Vec<BackupId>> {
    Ok(match (&args.backup_id.backup_id, &args.module.module) {
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
    })
}

/// Both sides' reports, each under its side's name.
struct Sides(Vec<(&'static str, String, verify::VerifyReport)>);

impl Report for Sides {
    fn json(&self) -> serde_json::Value {
        let clean = self.0.iter().all(|(_, _, r)| r.problems.is_empty());
        let sides: serde_json::Map<String, serde_json::Value> = self
            .0
            .iter()
            .map(|(name, at, r)| {
                let mut v = r.json();
                v["store"] = json!(at);
                (name.to_string(), v)
            })
            .collect();
        json!({"clean": clean, "sides": sides})
    }

    fn text(&self) -> String {
        self.0
            .iter()
            .map(|(name, at, r)| format!("{name} `{at}`:\n{}", r.text()))
            .collect::<Vec<_>>()
            .join("\n")
    }
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
