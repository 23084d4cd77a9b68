//! `list`: a module's backups, newest first, a page at a time.

use crate::backup_id::BackupId;
use crate::{Repo, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupPage {
    /// Newest first.
    pub backups: Vec<BackupId>,
    /// Pass as `page_token` to get the next page; `None` on the last page.
    pub next_token: Option<String>,
}

/// Lists `module`'s backups newest first. `page_token` is the id of the last backup of the
/// previous page; a page holds at most `page_size` backups.
///
/// # Errors
/// `InvalidBackupId` for a malformed token (tokens are backup ids), provider errors.
pub fn list(
    repo: &Repo,
    module: &str,
    page_token: Option<&str>,
    page_size: usize,
) -> Result<BackupPage> {
    let after = page_token.map(BackupId::parse).transpose()?;
    Ok(page(repo.backup_ids(module)?, after.as_ref(), page_size))
}

/// The page of `ids` (oldest first, as [`Repo::backup_ids`] gives them) that follows the
/// backup `after`, newest first: the paging of [`list`], for callers that hold the ids.
pub fn page(mut ids: Vec<BackupId>, after: Option<&BackupId>, page_size: usize) -> BackupPage {
    ids.reverse();
    let start = match after {
        Some(t) => ids.partition_point(|id| id >= t),
        None => 0,
    };
    let end = (start + page_size.max(1)).min(ids.len());
    let backups = ids[start..end].to_vec();
    let next_token = (end < ids.len())
        .then(|| backups.last().map(ToString::to_string))
        .flatten();
    BackupPage {
        backups,
        next_token,
    }
}
