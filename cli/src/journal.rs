//! Records what this process did in the data dir's journal (`rbk_engine::layout::journal`),
//! which `rbk serve --http` shows. Recording never fails the operation: a journal that cannot
//! be written is a warning.

use std::path::Path;

use rbk_engine::layout::journal::{self, Entry, Event};
use rbk_engine::ops::backup::{BackupReport, LiveView};
use rbk_engine::ops::gc::GcReport;

pub fn record(data_dir: &Path, by: &str, event: Event) {
    if let Err(e) = journal::append(data_dir, &Entry::now(by, event)) {
        tracing::warn!("could not record in the journal: {e}");
    }
}

/// A backup's outcome, as [`record`] takes it.
pub fn backup_event(
    module: &str,
    outcome: Result<(&BackupReport, Option<&LiveView>), &dyn std::fmt::Display>,
) -> Event {
    match outcome {
        Ok((r, live)) => Event::Backup {
            module: module.into(),
            backup_id: r.backup_id.to_string(),
            seconds: r.seconds,
            logical_bytes: r.stats.logical_bytes,
            added_bytes: r.added_bytes,
            pause_seconds: live.map(|l| l.pause.as_secs_f64()),
        },
        Err(e) => Event::BackupFailed {
            module: module.into(),
            error: journal::shorten(&format!("{e:#}")),
        },
    }
}

/// A GC's outcome on one side (`store` or `mirror`). Dry runs are not recorded.
pub fn gc_event(side: &str, outcome: Result<&GcReport, &dyn std::fmt::Display>) -> Option<Event> {
    match outcome {
        Ok(r) if r.dry_run => None,
        Ok(r) => Some(Event::Gc {
            side: side.into(),
            backups_deleted: (r.manifests_deleted.len() + r.manifests_uncommitted.len()) as u64,
            packs_deleted: r.store.sweep.packs_deleted,
            bytes_freed: r.store.sweep.bytes_freed,
            seconds: r.seconds,
        }),
        Err(e) => Some(Event::GcFailed {
            side: side.into(),
            error: journal::shorten(&format!("{e:#}")),
        }),
    }
}
