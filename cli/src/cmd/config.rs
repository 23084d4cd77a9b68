//! `rbk config`: the effective configuration and where each value came from.

use serde_json::json;

use super::{Ctx, Report};
use crate::config::{self, Config};
use rbk_engine::repo;

struct Effective<'a>(&'a Config);

impl Report for Effective<'_> {
    fn json(&self) -> serde_json::Value {
        config_json(self.0)
    }

    fn text(&self) -> String {
        config_text(self.0)
    }
}

pub fn run(ctx: &Ctx) {
    ctx.show(&Effective(ctx.cfg));
}

/// The AWS variables the S3 provider reads, shown by `rbk config` (secrets redacted).
const AWS_VARS: &[(&str, bool)] = &[
    ("AWS_ACCESS_KEY_ID", false),
    ("AWS_SECRET_ACCESS_KEY", true),
    ("AWS_SESSION_TOKEN", true),
    ("AWS_PROFILE", false),
    ("AWS_REGION", false),
    ("AWS_DEFAULT_REGION", false),
];

fn aws_env() -> Vec<(&'static str, String)> {
    AWS_VARS
        .iter()
        .filter_map(|&(var, secret)| {
            let v = std::env::var(var).ok().filter(|v| !v.is_empty())?;
            Some((var, if secret { "<redacted>".to_string() } else { v }))
        })
        .collect()
}

fn config_json(cfg: &Config) -> serde_json::Value {
    let setting = |value: String, source: &config::Source| json!({"value": value, "source": source.to_string()});
    json!({
        "config_file": cfg.file.as_ref().map(|(p, s)| setting(p.display().to_string(), s)),
        "data.dir": setting(cfg.data_dir.display().to_string(), &cfg.data_dir_source),
        "backup.provider": setting(config::redact(&cfg.provider), &cfg.provider_source),
        "backup.mirror": cfg.mirror.as_ref().map(|(m, s)| setting(config::redact(m), s)),
        "serve.http": cfg.serve_http,
        "index": repo::index_root(&cfg.data_dir).display().to_string(),
        "aws_environment": aws_env().into_iter().collect::<std::collections::BTreeMap<_, _>>(),
    })
}

fn config_text(cfg: &Config) -> String {
    let file = match &cfg.file {
        Some((p, source)) => format!("{} ({source})", p.display()),
        None => format!("none (no ./{} here)", config::DEFAULT_CONFIG),
    };
    let mut out = vec![
        format!("config file      {file}"),
        format!(
            "data.dir         {}  ({})",
            cfg.data_dir.display(),
            cfg.data_dir_source
        ),
        format!(
            "backup.provider  {}  ({})",
            config::redact(&cfg.provider),
            cfg.provider_source
        ),
        match &cfg.mirror {
            Some((m, source)) => format!("backup.mirror    {}  ({source})", config::redact(m)),
            None => "backup.mirror    none".to_string(),
        },
        format!(
            "serve.http       {}",
            cfg.serve_http
                .as_deref()
                .unwrap_or("none (rbk serve --http ADDR turns it on)")
        ),
        format!(
            "local index      {}",
            repo::index_root(&cfg.data_dir).display()
        ),
    ];
    out.extend(
        aws_env()
            .into_iter()
            .map(|(var, v)| format!("environment      {var}={v}")),
    );
    out.join("\n")
}
