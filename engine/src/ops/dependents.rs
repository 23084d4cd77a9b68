//! What a restore owes the other modules of the data dir (docs/architecture.md, "Modules
//! that read each other"):
//! - [`check_restore`], before anything is changed: every object another module depends on
//!   (its `dependencies`, the foreign depots its topologies subscribe to) must be in the
//!   backup being restored;
//! - [`recalibrate_dependents`] and [`recalibrate_restored`], once the restored state is in
//!   place (the first also before, without writing, to find unreadable files early): a
//!   topology's processed offset of
//!   a depot partition is clamped into that partition's `[start, end]` as it is now, in both
//!   directions — other modules reading the restored module's depots, and the restored
//!   module reading other modules' depots. Otherwise a reader past the end silently skips
//!   the entries appended next, which get the offsets it already passed.
//!
//! Modules not in the data dir are not dependents, and a restored topology's offset into a
//! depot of a module that is not here is left as it is (there is nothing to measure it
//! against); both are said in the log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::depot::partition_bounds;
use crate::layout::deps::{self, Dependency, Object};
use crate::layout::epochs::OffsetReset;
use crate::layout::{MAX_META_FILE_LEN, ModuleMeta, module_dir, module_names, write_atomically};
use crate::manifest::Manifest;
use crate::{Error, Result};

/// A module of the data dir, as far as dependencies go.
#[derive(Debug)]
struct Peer {
    name: String,
    dir: PathBuf,
    tasks: u32,
    deps: Vec<Dependency>,
}

fn read_json(path: &Path) -> Result<Option<Value>> {
    match rbk_chunkstore::safe_fs::read_limited(path, MAX_META_FILE_LEN) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::layout(path, format!("not valid JSON: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            Err(Error::layout(path, e.to_string()))
        }
        Err(e) => Err(Error::io(path, e)),
    }
}

/// The module `name` of the data dir; `None` when it has no module.json (not a module).
fn peer(data_dir: &Path, name: &str) -> Result<Option<Peer>> {
    let dir = module_dir(data_dir, name);
    let path = dir.join("module.json");
    let Some(v) = read_json(&path)? else {
        return Ok(None);
    };
    let meta = ModuleMeta::from_value(&path, &v)?;
    Ok(Some(Peer {
        deps: deps::dependencies(&path, name, &v)?,
        name: name.to_string(),
        dir,
        tasks: meta.tasks,
    }))
}

/// Whether the backup holds `object` in at least one task.
fn backup_has(m: &Manifest, object: &Object) -> bool {
    let name = object.dir_name();
    m.tasks.iter().any(|t| match object {
        Object::Depot(_) => t.depots.iter().any(|d| d.name == name),
        Object::PState(_) => t.pstates.iter().any(|p| p.name == name),
    })
}

/// Refuses a restore of `restored` that would take away an object another module of the
/// data dir depends on.
///
/// # Errors
/// `DependencyBroken` naming the dependent, the object and the backup; `Layout` for a
/// dependent whose module.json cannot be read (what it depends on is then unknown).
pub fn check_restore(data_dir: &Path, restored: &Manifest) -> Result<()> {
    let module = &restored.backup_id.module;
    for name in module_names(data_dir) {
        if &name == module {
            continue;
        }
        let Some(peer) = peer(data_dir, &name)? else {
            continue;
        };
        for d in peer.deps.iter().filter(|d| &d.module == module) {
            if !backup_has(restored, &d.object) {
                return Err(Error::DependencyBroken {
                    dependent: peer.name.clone(),
                    module: module.clone(),
                    object: d.object.to_string(),
                    backup_id: restored.backup_id.to_string(),
                });
            }
        }
    }
    Ok(())
}

/// `[start, end]` of every partition of every depot of a module: depot dir name → per task.
pub type DepotBounds = BTreeMap<String, Vec<[u64; 2]>>;

/// The bounds a backup restores.
pub fn bounds_of(m: &Manifest) -> DepotBounds {
    let mut out: DepotBounds = BTreeMap::new();
    for t in &m.tasks {
        for d in &t.depots {
            let v = out.entry(d.name.clone()).or_default();
            if v.len() <= t.task as usize {
                v.resize(t.task as usize + 1, [0, 0]);
            }
            v[t.task as usize] = [d.start_offset, d.end_offset];
        }
    }
    out
}

/// Clamps the offsets in every `progress.json` of module `reader` that name a depot `M/*d`
/// for which `bounds_for(M, d, t)` gives a partition's bounds; rewrites the files that
/// change (unless `dry_run`). Returns what was (would be) reset.
fn clamp_progress(
    reader: &Peer,
    dry_run: bool,
    mut bounds_for: impl FnMut(&str, &str, u32) -> Result<Option<[u64; 2]>>,
) -> Result<Vec<OffsetReset>> {
    let mut resets = Vec::new();
    for t in 0..reader.tasks {
        let topologies = reader.dir.join(format!("tasks/{t}/topologies"));
        let Ok(entries) = std::fs::read_dir(&topologies) else {
            continue;
        };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for topology in names {
            let path = topologies.join(&topology).join("progress.json");
            let Some(mut v) = read_json(&path)? else {
                continue;
            };
            let mut changed = false;
            if let Some(processed) = v.get_mut("processed").and_then(Value::as_object_mut) {
                for (key, offset) in processed.iter_mut() {
                    let what = "processed key";
                    let Some((module, depot)) = deps::foreign_depot(&path, what, key)? else {
                        continue;
                    };
                    let Some(from) = offset.as_u64() else {
                        return Err(Error::layout(
                            &path,
                            format!("processed offset of `{key}` is not a whole number"),
                        ));
                    };
                    let Some([start, end]) = bounds_for(module, depot.dir_name(), t)? else {
                        continue;
                    };
                    let to = from.min(end).max(start);
                    if to != from {
                        *offset = Value::from(to);
                        changed = true;
                        resets.push(OffsetReset {
                            module: reader.name.clone(),
                            task: t,
                            topology: topology.clone(),
                            depot: key.clone(),
                            from,
                            to,
                        });
                    }
                }
            }
            if changed && !dry_run {
                let mut bytes = serde_json::to_vec_pretty(&v).expect("json");
                bytes.push(b'\n');
                write_atomically(&path, &bytes)?;
            }
        }
    }
    Ok(resets)
}

/// Clamps every other module's processed offsets into the restored module's depots, as
/// they are in the backup being restored (`restored_bounds`, see [`bounds_of`]). With
/// `dry_run`, only computes them: a restore does that before it changes anything, so that
/// an unreadable `progress.json` stops it then and not halfway.
///
/// # Errors
/// `Layout` for a module.json or progress.json that cannot be read, I/O errors.
pub fn recalibrate_dependents(
    data_dir: &Path,
    restored: &str,
    restored_tasks: u32,
    restored_bounds: &DepotBounds,
    dry_run: bool,
) -> Result<Vec<OffsetReset>> {
    let mut resets = Vec::new();
    for name in module_names(data_dir) {
        if name == restored {
            continue;
        }
        let Some(reader) = peer(data_dir, &name)? else {
            continue;
        };
        // Only a module that says it reads the restored one (the layout has every foreign
        // depot in `dependencies` and `subscribes`): another module's unreadable progress
        // must not stop this restore.
        if !reader.deps.iter().any(|d| d.module == restored) {
            continue;
        }
        resets.extend(clamp_progress(&reader, dry_run, |module, depot, t| {
            Ok((module == restored).then(|| {
                restored_bounds
                    .get(depot)
                    .and_then(|b| b.get((t % restored_tasks.max(1)) as usize))
                    .copied()
                    .unwrap_or([0, 0])
            }))
        })?);
    }
    log(restored, &resets, dry_run);
    Ok(resets)
}

/// Clamps the restored module's own processed offsets into other modules' depots as they are
/// on disk now (they may have been restored to an older state since this backup).
///
/// # Errors
/// As [`recalibrate_dependents`].
pub fn recalibrate_restored(data_dir: &Path, restored: &str) -> Result<Vec<OffsetReset>> {
    let Some(own) = peer(data_dir, restored)? else {
        return Ok(Vec::new());
    };
    let mut others: BTreeMap<String, Option<Peer>> = BTreeMap::new();
    let resets = clamp_progress(&own, false, |module, depot, t| {
        if module == restored {
            return Ok(None);
        }
        if !others.contains_key(module) {
            others.insert(module.to_string(), peer(data_dir, module)?);
        }
        let Some(other) = &others[module] else {
            tracing::warn!(
                "module {restored}: its progress names depot {module}/*{depot}, but module \
                 {module} is not in this data dir; that offset is left as restored"
            );
            return Ok(None);
        };
        let p = t % other.tasks;
        let dir = other.dir.join(format!("tasks/{p}/depots/{depot}"));
        let (start, end) = partition_bounds(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Some([start, end]))
    })?;
    log(restored, &resets, false);
    Ok(resets)
}

fn log(restored: &str, resets: &[OffsetReset], dry_run: bool) {
    if dry_run {
        return;
    }
    for r in resets {
        tracing::warn!("after restoring {restored}: {r}");
    }
}
