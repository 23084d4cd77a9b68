//! Where the data dir and the store are: flags, then the environment, then `rbk.yaml`, then
//! an embedded default (data dir `./data`, store `fs ./data-backups` beside it).
//!
//! ```yaml
//! data.dir: /var/rama/data
//! backup.provider: "fs /mnt/backups/rbk"
//! backup.mirror: "s3 http://127.0.0.1:3900/backups/rbk"   # optional (docs/mirror.md)
//! serve.http: 127.0.0.1:9180                              # optional (docs/web.md)
//! ```
//! Nested keys (`data: {dir: ...}`) are accepted too. Relative paths in the file are relative
//! to the directory holding it.
//!
//! A backup tool must never make a typo look like success: a key rbk does not know is an
//! error naming the key, its line and the nearest known key, and the embedded default store is
//! used only when there is no config file at all — a file without `backup.provider` is an
//! error, not a silent fallback to `./data-backups`.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use serde::de::{self, DeserializeSeed, MapAccess, Visitor};

pub const DEFAULT_CONFIG: &str = "rbk.yaml";
pub const DEFAULT_DATA_DIR: &str = "data";

/// Every key `rbk.yaml` may set (flat, dotted form), with what it means. Nothing else is
/// accepted, and nothing is passed through.
pub const KEYS: &[(&str, &str)] = &[
    ("data.dir", "the data dir holding `modules/`"),
    (
        "backup.provider",
        "the store: `fs <dir>`, `s3 <bucket>[/<prefix>]` or `s3 http(s)://host:port/<bucket>[/<prefix>]`",
    ),
    (
        "backup.mirror",
        "a second copy of the store, kept up to date after each backup (same forms as `backup.provider`)",
    ),
    (
        "serve.http",
        "where `rbk serve` serves the backups page and metrics, e.g. `127.0.0.1:9180` (off when unset)",
    ),
];

/// The environment variables rbk reads for its configuration.
pub const ENV_CONFIG: &str = "RBK_CONFIG";
pub const ENV_DATA_DIR: &str = "RBK_DATA_DIR";
pub const ENV_PROVIDER: &str = "RBK_PROVIDER";
pub const ENV_MIRROR: &str = "RBK_MIRROR";

/// Where a setting's value came from, in order of precedence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Flag(&'static str),
    Env(&'static str),
    File(PathBuf),
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Flag(flag) => write!(f, "flag {flag}"),
            Source::Env(var) => write!(f, "environment {var}"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub provider: String,
    /// The config file read, if any, and why that one.
    pub file: Option<(PathBuf, Source)>,
    pub data_dir_source: Source,
    pub provider_source: Source,
    /// The store's mirror, if one is configured, and where that came from.
    pub mirror: Option<(String, Source)>,
    /// `serve.http` from the config file (`rbk serve --http` overrides it).
    pub serve_http: Option<String>,
}

impl Config {
    /// The line commands that write print when the store is the embedded default, so that
    /// `./data-backups` never receives backups without the operator being told.
    pub fn default_store_notice(&self) -> Option<String> {
        (self.provider_source == Source::Default).then(|| {
            format!(
                "rbk: no {DEFAULT_CONFIG} here and no --provider or {ENV_PROVIDER}: using the default store `{}` beside the data dir",
                self.provider
            )
        })
    }
}

/// What the command line gave; the environment is passed separately so tests can set it.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flags<'a> {
    pub config: Option<&'a Path>,
    pub data_dir: Option<&'a Path>,
    pub provider: Option<&'a str>,
    pub mirror: Option<&'a str>,
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

/// A config file is a few lines; anything bigger is not one.
const MAX_CONFIG_LEN: u64 = 1 << 20;

/// Resolves the configuration: flag > environment > file > default.
///
/// # Errors
/// A named config file that is missing or not a regular file; a file that is not valid YAML,
/// has a key rbk does not know, a key set twice or a value that is not a string; a file that
/// sets no store; a mirror that is the store itself.
pub fn resolve(flags: Flags<'_>, env: &dyn Fn(&str) -> Option<String>) -> Result<Config> {
    let env = |var: &str| env(var).filter(|v| !v.trim().is_empty());
    let file = match (flags.config, env(ENV_CONFIG)) {
        (Some(p), _) => Some((p.to_path_buf(), Source::Flag("--config"))),
        (None, Some(p)) => Some((PathBuf::from(p), Source::Env(ENV_CONFIG))),
        // `exists` follows symlinks: a dangling `rbk.yaml` link is reported by the read.
        (None, None) if Path::new(DEFAULT_CONFIG).symlink_metadata().is_ok() => {
            Some((PathBuf::from(DEFAULT_CONFIG), Source::Default))
        }
        (None, None) => None,
    };
    let values = match &file {
        Some((path, _)) => read_file(path)?,
        None => FileValues::default(),
    };
    let file_source = || Source::File(file.as_ref().map(|(p, _)| p.clone()).unwrap_or_default());

    let (data_dir, data_dir_source) = if let Some(d) = flags.data_dir {
        (d.to_path_buf(), Source::Flag("--data-dir"))
    } else if let Some(d) = env(ENV_DATA_DIR) {
        (PathBuf::from(d), Source::Env(ENV_DATA_DIR))
    } else if let Some(d) = values.data_dir {
        (d, file_source())
    } else {
        (PathBuf::from(DEFAULT_DATA_DIR), Source::Default)
    };
    let (provider, provider_source) = if let Some(p) = flags.provider {
        (p.to_string(), Source::Flag("--provider"))
    } else if let Some(p) = env(ENV_PROVIDER) {
        (p, Source::Env(ENV_PROVIDER))
    } else if let Some(p) = values.provider {
        (p, file_source())
    } else if let Some((path, _)) = &file {
        bail!(
            "config file `{}` sets no `backup.provider`, so rbk does not know where to store backups; add e.g. `backup.provider: \"fs /var/backups/rbk\"` to it, or pass --provider or {ENV_PROVIDER}",
            path.display()
        );
    } else {
        (default_provider(&data_dir), Source::Default)
    };
    let mirror = if let Some(m) = flags.mirror {
        Some((m.to_string(), Source::Flag("--mirror")))
    } else if let Some(m) = env(ENV_MIRROR) {
        Some((m, Source::Env(ENV_MIRROR)))
    } else {
        values.mirror.map(|m| (m, file_source()))
    };
    if let Some((m, source)) = &mirror
        && m.trim() == provider.trim()
    {
        bail!(
            "the mirror ({source}) is the store itself (`{m}`): a mirror must be somewhere else, e.g. `backup.mirror: \"s3 http://host:3900/bucket/rbk\"`"
        );
    }
    Ok(Config {
        data_dir,
        provider,
        file,
        data_dir_source,
        provider_source,
        mirror,
        serve_http: values.serve_http,
    })
}

/// The settings a config file holds, paths already made relative to its directory.
#[derive(Debug, Default)]
struct FileValues {
    data_dir: Option<PathBuf>,
    provider: Option<String>,
    mirror: Option<String>,
    serve_http: Option<String>,
}

fn read_file(path: &Path) -> Result<FileValues> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read config file `{shown}`: {e}; check the path (--config, {ENV_CONFIG})"
        )
    })?;
    // A FIFO or device would block or never end; only a regular file is a config file.
    if !meta.is_file() {
        bail!("config file `{shown}` is not a regular file");
    }
    if meta.len() > MAX_CONFIG_LEN {
        bail!(
            "config file `{shown}` is {} bytes; rbk.yaml is limited to {MAX_CONFIG_LEN} bytes",
            meta.len()
        );
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read config file `{shown}`: {e}"))?;
    let found = RefCell::new(Found::default());
    let parsed = if text.trim().is_empty() {
        Ok(())
    } else {
        Section {
            prefix: "",
            found: &found,
        }
        .deserialize(serde_yaml::Deserializer::from_str(&text))
    };
    let found = found.into_inner();
    if let Err(e) = parsed {
        let line = e
            .location()
            .map_or_else(String::new, |l| format!(" line {}", l.line()));
        if let Some(bad) = found.unknown {
            bail!(
                "unknown key `{bad}` in config file `{shown}`{line}: {}",
                suggest(&bad)
            );
        }
        if let Some(key) = found.twice {
            bail!("key `{key}` is set twice in config file `{shown}`{line}; keep one");
        }
        bail!("config file `{shown}` is not a valid rbk.yaml: {e}");
    }
    // Relative to the file's directory (which, for `./rbk.yaml`, is where rbk runs).
    let base = path.parent().unwrap_or(Path::new(""));
    Ok(FileValues {
        data_dir: found.value("data.dir").map(|d| base.join(d)),
        provider: found.value("backup.provider").map(|p| relative_to(base, p)),
        mirror: found.value("backup.mirror").map(|p| relative_to(base, p)),
        serve_http: found.value("serve.http").map(str::to_string),
    })
}

/// A provider spec from a config file: a local store's path is relative to the file.
fn relative_to(base: &Path, spec: &str) -> String {
    match spec.trim().strip_prefix("fs ") {
        Some(dir) => format!("fs {}", base.join(dir.trim()).display()),
        None => spec.to_string(),
    }
}

/// "did you mean …?" for an unknown key: the known key nearest in edit distance, compared in
/// full and by last segment, when it is near enough to be a typo.
fn suggest(bad: &str) -> String {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    let best = KEYS
        .iter()
        .map(|(k, _)| {
            let d = edit_distance(bad, k).min(edit_distance(&last(bad), &last(k)) + 1);
            (d, *k)
        })
        .min();
    let known = KEYS
        .iter()
        .map(|(k, _)| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match best {
        Some((d, k)) if d <= 2.max(bad.len() / 3) => {
            format!("did you mean `{k}`? (rbk.yaml accepts {known}; see docs/cli.md)")
        }
        _ => format!("rbk.yaml accepts only {known} (see docs/cli.md)"),
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1)
                .min(row[j] + 1)
                .min(diag + usize::from(ca != *cb));
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// What the walk over the file found. `unknown` and `twice` carry the key behind an error,
/// so the message can name it beside the line serde_yaml reports.
#[derive(Default)]
struct Found {
    values: Vec<(&'static str, Option<String>)>,
    unknown: Option<String>,
    twice: Option<&'static str>,
}

impl Found {
    fn value(&self, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| v.as_deref())
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn is_section(key: &str) -> bool {
    KEYS.iter()
        .any(|(k, _)| k.starts_with(key) && k[key.len()..].starts_with('.'))
}

fn leaf(key: &str) -> Option<&'static str> {
    KEYS.iter().map(|(k, _)| *k).find(|k| *k == key)
}

/// A mapping whose keys are checked against [`KEYS`] as they are read. The check runs inside
/// the key's own visitor so that serde_yaml tags the error with the key's line.
struct Section<'a> {
    prefix: &'a str,
    found: &'a RefCell<Found>,
}

impl<'de> DeserializeSeed<'de> for Section<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for Section<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            f.write_str("a mapping of rbk.yaml keys such as `backup.provider: \"fs /var/rbk\"`")
        } else {
            write!(f, "the keys of section `{}`", self.prefix)
        }
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key_seed(Key {
            prefix: self.prefix,
            found: self.found,
        })? {
            match leaf(&key) {
                Some(k) => {
                    let v = map.next_value_seed(Text { key: k })?;
                    let mut found = self.found.borrow_mut();
                    if found.values.iter().any(|(seen, _)| *seen == k) {
                        found.twice = Some(k);
                        return Err(de::Error::custom(format!("`{k}` is set twice")));
                    }
                    found.values.push((k, v));
                }
                None => map.next_value_seed(Section {
                    prefix: &key,
                    found: self.found,
                })?,
            }
        }
        Ok(())
    }
}

/// A key, checked: known leaf or section, else an error (and the key in `found.unknown`).
struct Key<'a> {
    prefix: &'a str,
    found: &'a RefCell<Found>,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = String;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key such as `backup.provider`")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        let full = join(self.prefix, v);
        if leaf(&full).is_some() || is_section(&full) {
            Ok(full)
        } else {
            self.found.borrow_mut().unknown = Some(full.clone());
            Err(E::custom(format!("unknown key `{full}`")))
        }
    }
}

/// A leaf value: a string (numbers and booleans are not paths or providers), or null for unset.
struct Text {
    key: &'static str,
}

impl<'de> DeserializeSeed<'de> for Text {
    type Value = Option<String>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Text {
    type Value = Option<String>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a string for `{}`", self.key)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<String>, E> {
        Ok(Some(v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Option<String>, E> {
        Ok(None)
    }
}

/// A provider spec as `rbk config` shows it: any `user:password@` in an endpoint is hidden.
pub fn redact(spec: &str) -> String {
    let Some((scheme, rest)) = spec.split_once("://") else {
        return spec.to_string();
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, format!("/{p}")),
        None => (rest, String::new()),
    };
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://<redacted>@{host}{path}"),
        None => spec.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn file(dir: &Path, text: &str) -> PathBuf {
        let f = dir.join("rbk.yaml");
        std::fs::write(&f, text).unwrap();
        f
    }

    fn err(flags: Flags<'_>) -> String {
        format!("{:#}", resolve(flags, &no_env).unwrap_err())
    }

    #[test]
    fn flat_and_nested_keys_relative_to_the_file_and_flags_override() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), "data.dir: d\nbackup.provider: \"fs store\"\n");
        let flags = Flags {
            config: Some(&f),
            ..Flags::default()
        };
        let c = resolve(flags, &no_env).unwrap();
        assert_eq!(c.data_dir, dir.path().join("d"));
        assert_eq!(c.data_dir_source, Source::File(f.clone()));
        assert_eq!(
            c.provider,
            format!("fs {}", dir.path().join("store").display())
        );
        file(
            dir.path(),
            "data:\n  dir: /abs/d\nbackup:\n  provider: memory\n",
        );
        let c = resolve(
            Flags {
                data_dir: Some(Path::new("/x")),
                ..flags
            },
            &no_env,
        )
        .unwrap();
        assert_eq!(
            (c.data_dir, c.data_dir_source),
            (PathBuf::from("/x"), Source::Flag("--data-dir"))
        );
        assert_eq!(
            (c.provider, c.provider_source),
            ("memory".to_string(), Source::File(f))
        );
    }

    #[test]
    fn unknown_keys_name_the_key_the_line_and_the_nearest_known_key() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), "data.dir: d\nbackup.provder: \"s3 b\"\n");
        let flags = Flags {
            config: Some(&f),
            ..Flags::default()
        };
        let shown = f.display();
        assert_eq!(
            err(flags),
            format!(
                "unknown key `backup.provder` in config file `{shown}` line 2: did you mean `backup.provider`? (rbk.yaml accepts `data.dir`, `backup.provider`, `backup.mirror`, `serve.http`; see docs/cli.md)"
            )
        );
        file(
            dir.path(),
            "# comment\ndata:\n  dir: d\nbackup:\n  provider: memory\n  retention: x\n",
        );
        assert_eq!(
            err(flags),
            format!(
                "unknown key `backup.retention` in config file `{shown}` line 6: rbk.yaml accepts only `data.dir`, `backup.provider`, `backup.mirror`, `serve.http` (see docs/cli.md)"
            )
        );
        file(dir.path(), "backup: {provider: memory}\ndata: {dri: d}\n");
        assert!(
            err(flags).starts_with(&format!(
                "unknown key `data.dri` in config file `{shown}` line 2: did you mean `data.dir`?"
            )),
            "{}",
            err(flags)
        );
        file(dir.path(), "backup.provider: memory\nprovider: memory\n");
        assert!(err(flags).contains("unknown key `provider`"));
        assert!(err(flags).contains("did you mean `backup.provider`?"));
    }

    #[test]
    fn a_file_without_a_store_is_an_error_and_the_default_needs_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(dir.path(), "data.dir: d\n");
        let flags = Flags {
            config: Some(&f),
            ..Flags::default()
        };
        assert!(err(flags).contains("sets no `backup.provider`"));
        // A flag or the environment may name the store instead.
        let env = |v: &str| (v == ENV_PROVIDER).then(|| "memory".to_string());
        let c = resolve(flags, &env).unwrap();
        assert_eq!(c.provider_source, Source::Env(ENV_PROVIDER));
        assert_eq!(c.default_store_notice(), None);

        let c = resolve(
            Flags {
                data_dir: Some(Path::new("/srv/data")),
                ..Flags::default()
            },
            &no_env,
        )
        .unwrap();
        if c.file.is_none() {
            assert_eq!(c.provider, "fs /srv/data-backups");
            assert_eq!(c.provider_source, Source::Default);
            assert!(
                c.default_store_notice()
                    .unwrap()
                    .contains("fs /srv/data-backups")
            );
        }
    }

    #[test]
    fn precedence_is_flag_then_environment_then_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = file(
            dir.path(),
            "data.dir: file-d\nbackup.provider: \"fs file-s\"\n",
        );
        let f_str = f.display().to_string();
        let env = |v: &str| match v {
            ENV_CONFIG => Some(f_str.clone()),
            ENV_DATA_DIR => Some("/env/d".to_string()),
            _ => None,
        };
        let c = resolve(Flags::default(), &env).unwrap();
        assert_eq!(c.file, Some((f.clone(), Source::Env(ENV_CONFIG))));
        assert_eq!(
            (c.data_dir, c.data_dir_source),
            (PathBuf::from("/env/d"), Source::Env(ENV_DATA_DIR))
        );
        assert_eq!(c.provider_source, Source::File(f.clone()));
        let c = resolve(
            Flags {
                data_dir: Some(Path::new("/flag/d")),
                provider: Some("memory"),
                ..Flags::default()
            },
            &env,
        )
        .unwrap();
        assert_eq!(c.data_dir_source, Source::Flag("--data-dir"));
        assert_eq!(c.provider_source, Source::Flag("--provider"));
        // An empty variable is unset.
        let empty = |v: &str| (v == ENV_DATA_DIR).then(String::new);
        let c = resolve(
            Flags {
                config: Some(&f),
                ..Flags::default()
            },
            &empty,
        )
        .unwrap();
        assert_eq!(c.data_dir_source, Source::File(f.clone()));
        // A mirror: flag over environment over file; never the store itself.
        let mirror = |v: &str| (v == ENV_MIRROR).then(|| "s3 b".to_string());
        let c = resolve(Flags::default(), &mirror).unwrap();
        assert_eq!(c.mirror, Some(("s3 b".into(), Source::Env(ENV_MIRROR))));
        let c = resolve(
            Flags {
                mirror: Some("s3 c"),
                ..Flags::default()
            },
            &mirror,
        )
        .unwrap();
        assert_eq!(c.mirror, Some(("s3 c".into(), Source::Flag("--mirror"))));
        file(
            dir.path(),
            "backup.provider: \"fs s\"\nbackup.mirror: \"fs m\"\n",
        );
        let c = resolve(
            Flags {
                config: Some(&f),
                ..Flags::default()
            },
            &no_env,
        )
        .unwrap();
        let m = format!("fs {}", dir.path().join("m").display());
        assert_eq!(c.mirror, Some((m, Source::File(f.clone()))));
        file(
            dir.path(),
            "backup.provider: \"s3 b\"\nbackup.mirror: \"s3 b\"\n",
        );
        let e = format!(
            "{:#}",
            resolve(
                Flags {
                    config: Some(&f),
                    ..Flags::default()
                },
                &no_env
            )
            .unwrap_err()
        );
        assert!(e.contains("is the store itself"), "{e}");
    }

    #[test]
    fn other_bad_files() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("rbk.yaml");
        let flags = Flags {
            config: Some(&f),
            ..Flags::default()
        };
        assert!(err(flags).contains("cannot read config file"));
        file(dir.path(), "data.dir: [1, 2]\nbackup.provider: memory\n");
        let e = err(flags);
        assert!(
            e.contains("expected a string for `data.dir`") && e.contains("line 1"),
            "{e}"
        );
        file(dir.path(), "data.dir: \"unterminated\n");
        assert!(err(flags).contains("not a valid rbk.yaml"));
        file(
            dir.path(),
            "data.dir: a\ndata:\n  dir: b\nbackup.provider: memory\n",
        );
        let e = err(flags);
        assert!(
            e.starts_with("key `data.dir` is set twice") && e.contains("line 3"),
            "{e}"
        );
        file(dir.path(), "backup: \"fs x\"\n");
        assert!(err(flags).contains("expected the keys of section `backup`"));
        file(dir.path(), "- a\n- b\n");
        assert!(err(flags).contains("expected a mapping of rbk.yaml keys"));
        file(dir.path(), "1: x\n");
        assert!(err(flags).contains("unknown key `1`"), "{}", err(flags));
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("s3 http://key:secret@host:3900/bucket/p"),
            "s3 http://<redacted>@host:3900/bucket/p"
        );
        assert_eq!(redact("s3 http://host:3900/b"), "s3 http://host:3900/b");
        assert_eq!(redact("fs /var/rbk"), "fs /var/rbk");
    }
}
