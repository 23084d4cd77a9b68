//! `rbk.yaml`: where the data dir and the store are. Flags override the file; with neither, an
//! embedded default works: data dir `./data`, store `fs ./data-backups` beside it.
//!
//! ```yaml
//! data.dir: /var/rama/data
//! backup.provider: "fs /mnt/backups/rbk"
//! ```
//! Nested keys (`data: {dir: ...}`) are accepted too. Relative paths are relative to the
//! directory holding the config file.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde_yaml::Value;

pub const DEFAULT_CONFIG: &str = "rbk.yaml";
pub const DEFAULT_DATA_DIR: &str = "data";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub provider: String,
}

fn lookup<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    if let Some(x) = v.get(dotted) {
        return Some(x);
    }
    let (head, rest) = dotted.split_once('.')?;
    lookup(v.get(head)?, rest)
}

fn string_at(v: &Value, key: &str, file: &Path) -> Result<Option<String>> {
    match lookup(v, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => bail!(
            "`{key}` in {} must be a string, found {other:?}",
            file.display()
        ),
    }
}

/// The provider used when none is configured: a local store beside the data dir.
pub fn default_provider(data_dir: &Path) -> String {
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let parent = data_dir
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    format!("fs {}", parent.join(format!("{name}-backups")).display())
}

/// Resolves the configuration from an optional file and flags.
///
/// # Errors
/// A named config file that is missing, or any config file that is not valid YAML or has
/// wrongly typed keys.
/// A config file is a few lines; anything bigger is not one.
const MAX_CONFIG_LEN: u64 = 1 << 20;

pub fn resolve(
    config_path: Option<&Path>,
    data_dir_flag: Option<&Path>,
    provider_flag: Option<&str>,
) -> Result<Config> {
    let (path, required) = match config_path {
        Some(p) => (p.to_path_buf(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let (mut data_dir, mut provider) = (None, None);
    if path.exists() || required {
        let len = std::fs::metadata(&path)
            .with_context(|| format!("cannot read config file `{}`", path.display()))?
            .len();
        if len > MAX_CONFIG_LEN {
            bail!(
                "config file `{}` is {len} bytes; rbk.yaml is limited to {MAX_CONFIG_LEN} bytes",
                path.display()
            );
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file `{}`", path.display()))?;
        let v: Value = serde_yaml::from_str(&text)
            .with_context(|| format!("config file `{}` is not valid YAML", path.display()))?;
        if !matches!(v, Value::Mapping(_) | Value::Null) {
            bail!(
                "config file `{}` must be a YAML mapping with `data.dir` and `backup.provider`",
                path.display()
            );
        }
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
            .to_path_buf();
        data_dir = string_at(&v, "data.dir", &path)?.map(|d| base.join(d));
        provider =
            string_at(&v, "backup.provider", &path)?.map(|p| match p.trim().strip_prefix("fs ") {
                Some(dir) => format!("fs {}", base.join(dir.trim()).display()),
                None => p,
            });
    }
    let data_dir = data_dir_flag
        .map(Path::to_path_buf)
        .or(data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let provider = provider_flag
        .map(str::to_string)
        .or(provider)
        .unwrap_or_else(|| default_provider(&data_dir));
    Ok(Config { data_dir, provider })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_and_nested_keys_relative_to_the_file_and_flags_override() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rbk.yaml");
        std::fs::write(&f, "data.dir: d\nbackup.provider: \"fs store\"\n").unwrap();
        let c = resolve(Some(&f), None, None).unwrap();
        assert_eq!(c.data_dir, dir.path().join("d"));
        assert_eq!(
            c.provider,
            format!("fs {}", dir.path().join("store").display())
        );
        std::fs::write(&f, "data:\n  dir: /abs/d\nbackup:\n  provider: memory\n").unwrap();
        let c = resolve(Some(&f), Some(Path::new("/x")), None).unwrap();
        assert_eq!(
            c,
            Config {
                data_dir: "/x".into(),
                provider: "memory".into()
            }
        );
    }

    #[test]
    fn defaults_and_errors() {
        let c = resolve(None, Some(Path::new("/srv/data")), None).unwrap();
        assert_eq!(
            c.provider,
            "fs /srv/backups".replace("backups", "data-backups")
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rbk.yaml");
        assert!(
            resolve(Some(&f), None, None)
                .unwrap_err()
                .to_string()
                .contains("cannot read config file")
        );
        std::fs::write(&f, "data.dir: [1, 2]\n").unwrap();
        assert!(
            resolve(Some(&f), None, None)
                .unwrap_err()
                .to_string()
                .contains("must be a string")
        );
        std::fs::write(&f, "data.dir: \"unterminated\n").unwrap();
        assert!(
            resolve(Some(&f), None, None)
                .unwrap_err()
                .to_string()
                .contains("not valid YAML")
        );
    }
}
