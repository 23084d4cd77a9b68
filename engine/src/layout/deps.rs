//! What modules read of each other, as their `module.json` says (layout contract, "Depots
//! of other modules"):
//! - `dependencies`: `{"module": M, "depot": "*d"}` or `{"module": M, "pstate": "$$p"}`;
//! - a topology's `subscribes` entry `"M/*d"`: a depot of module M (also in `dependencies`);
//! - a `progress.json` `processed` key `"M/*d"`: how far task t read partition `t mod T` of
//!   M's depot (T: M's task count).
//!
//! A malformed entry is an error naming the file and the entry: a restore cannot tell what
//! it would break, so it does not guess.

use std::fmt;
use std::path::Path;

use serde_json::Value;

use crate::backup_id::validate_module_name;
use crate::{Error, Result};

/// An object of a module that another module reads, named as in JSON (with its prefix).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Object {
    /// `*<depot>`
    Depot(String),
    /// `$$<pstate>`
    PState(String),
}

impl Object {
    /// The directory name under `tasks/<t>/depots/` or `tasks/<t>/pstates/`.
    pub fn dir_name(&self) -> &str {
        match self {
            Object::Depot(n) => &n[1..],
            Object::PState(n) => &n[2..],
        }
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Depot(n) | Object::PState(n) => f.write_str(n),
        }
    }
}

/// One thing a module needs of another.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dependency {
    pub module: String,
    pub object: Object,
}

/// A depot name `*d` as it may appear in JSON: the prefix and a non-empty name without `/`.
fn depot_name(s: &str) -> Option<Object> {
    let rest = s.strip_prefix('*')?;
    (!rest.is_empty() && !rest.contains('/') && !rest.starts_with('.'))
        .then(|| Object::Depot(s.to_string()))
}

fn pstate_name(s: &str) -> Option<Object> {
    let rest = s.strip_prefix("$$")?;
    (!rest.is_empty() && !rest.contains('/') && !rest.starts_with('.'))
        .then(|| Object::PState(s.to_string()))
}

/// Splits `"M/*d"` into (M, `*d`). `None` for a depot of the module itself (no `/`).
///
/// # Errors
/// `Layout` naming `path` and `what` for a malformed module name or depot name.
pub fn foreign_depot<'a>(path: &Path, what: &str, s: &'a str) -> Result<Option<(&'a str, Object)>> {
    let Some((module, depot)) = s.split_once('/') else {
        return Ok(None);
    };
    validate_module_name(module)
        .map_err(|why| Error::layout(path, format!("{what} `{s}`: {why}")))?;
    let depot = depot_name(depot).ok_or_else(|| {
        Error::layout(
            path,
            format!("{what} `{s}`: `{depot}` is not a depot name (`*name`)"),
        )
    })?;
    Ok(Some((module, depot)))
}

/// Every `subscribes` entry of module.json (`v`), with the index and the name (if any) of its
/// topology, unchecked: the callers decide what a malformed entry means to them.
pub fn subscribes(v: &Value) -> impl Iterator<Item = (usize, Option<&str>, &Value)> {
    v.get("topologies")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .flat_map(|(i, t)| {
            let name = t.get("name").and_then(Value::as_str);
            t.get("subscribes")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(move |s| (i, name, s))
        })
}

/// Everything the module whose `module.json` (at `path`) is `v` reads of other modules:
/// its `dependencies` and the foreign depots its topologies subscribe to, sorted, without
/// duplicates. Entries naming the module itself are left out.
///
/// # Errors
/// `Layout` naming `path` and the entry for anything malformed.
pub fn dependencies(path: &Path, own_name: &str, v: &Value) -> Result<Vec<Dependency>> {
    let mut out = Vec::new();
    match v.get("dependencies") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for (i, e) in entries.iter().enumerate() {
                out.push(dependency(path, i, e)?);
            }
        }
        Some(_) => {
            return Err(Error::layout(path, "`dependencies` is not a list"));
        }
    }
    for (i, _, s) in subscribes(v) {
        let what = format!("topologies[{i}].subscribes entry");
        let s = s
            .as_str()
            .ok_or_else(|| Error::layout(path, format!("{what} {s} is not a string")))?;
        if let Some((module, object)) = foreign_depot(path, &what, s)? {
            out.push(Dependency {
                module: module.to_string(),
                object,
            });
        }
    }
    out.retain(|d| d.module != own_name);
    out.sort();
    out.dedup();
    Ok(out)
}

fn dependency(path: &Path, i: usize, e: &Value) -> Result<Dependency> {
    let bad = |why: String| Error::layout(path, format!("dependencies[{i}] {e}: {why}"));
    let module = e
        .get("module")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("it has no string `module`".into()))?;
    validate_module_name(module).map_err(|why| bad(why.to_string()))?;
    let object = match (e.get("depot"), e.get("pstate")) {
        (Some(d), None) => d
            .as_str()
            .and_then(depot_name)
            .ok_or_else(|| bad("`depot` must be a depot name (`*name`)".into()))?,
        (None, Some(p)) => p
            .as_str()
            .and_then(pstate_name)
            .ok_or_else(|| bad("`pstate` must be a PState name (`$$name`)".into()))?,
        _ => return Err(bad("it needs exactly one of `depot` and `pstate`".into())),
    };
    Ok(Dependency {
        module: module.to_string(),
        object,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deps(v: Value) -> Result<Vec<Dependency>> {
        dependencies(Path::new("m/module.json"), "B", &v)
    }

    #[test]
    fn dependencies_and_foreign_subscriptions_are_read() {
        let v = json!({
            "dependencies": [{"module": "A", "depot": "*depot"}, {"module": "D", "pstate": "$$p"}],
            "topologies": [
                {"name": "core", "subscribes": ["A/*depot", "*own", "C/*other"]},
                {"name": "self", "subscribes": ["B/*mine"]}
            ]
        });
        let got = deps(v).unwrap();
        let want = [
            ("A", Object::Depot("*depot".into())),
            ("C", Object::Depot("*other".into())),
            ("D", Object::PState("$$p".into())),
        ]
        .map(|(m, object)| Dependency {
            module: m.into(),
            object,
        });
        assert_eq!(got, want);
        assert_eq!(got[2].object.dir_name(), "p");
        assert_eq!(got[0].object.dir_name(), "depot");
        assert!(deps(json!({})).unwrap().is_empty());
    }

    #[test]
    fn malformed_entries_are_errors_naming_the_entry() {
        for (v, needle) in [
            (json!({"dependencies": {}}), "not a list"),
            (
                json!({"dependencies": [{"depot": "*d"}]}),
                "dependencies[0]",
            ),
            (
                json!({"dependencies": [{"module": "A", "depot": "d"}]}),
                "depot name",
            ),
            (
                json!({"dependencies": [{"module": "A", "pstate": "$$"}]}),
                "PState name",
            ),
            (
                json!({"dependencies": [{"module": "A", "pstate": "$$p", "depot": "*d"}]}),
                "exactly one",
            ),
            (
                json!({"dependencies": [{"module": "", "depot": "*d"}]}),
                "not a valid module name",
            ),
            (
                json!({"dependencies": [{"module": "..", "depot": "*d"}]}),
                "not a valid module name",
            ),
            (
                json!({"topologies": [{"subscribes": ["A/depot"]}]}),
                "`depot` is not a depot name",
            ),
            (json!({"topologies": [{"subscribes": [3]}]}), "not a string"),
        ] {
            let e = deps(v.clone()).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput, "{v}");
            let msg = e.to_string();
            assert!(
                msg.contains(needle) && msg.contains("m/module.json"),
                "{v}: {msg}"
            );
        }
    }
}
