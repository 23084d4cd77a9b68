//! The declared `rust-version` is a promise: a toolchain that old must build the workspace
//! with its Cargo.lock. This fails when a locked dependency needs a newer one than declared.

use std::process::Command;

fn version(v: &str) -> Vec<u64> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

#[test]
fn declared_rust_version_covers_every_locked_dependency_and_our_own_code() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo metadata: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packages = meta["packages"].as_array().unwrap();
    let ours: Vec<&serde_json::Value> = packages.iter().filter(|p| p["source"].is_null()).collect();
    let declared = ours
        .iter()
        .find(|p| p["name"] == "rbk-cli")
        .and_then(|p| p["rust_version"].as_str())
        .expect("rbk-cli declares rust-version");
    for p in &ours {
        assert_eq!(
            p["rust_version"].as_str(),
            Some(declared),
            "{} must inherit the workspace rust-version",
            p["name"]
        );
    }
    // Our own code uses let chains (stable in 1.88 with edition 2024).
    let mut needed = ("let chains in our own code".to_string(), version("1.88"));
    for p in packages.iter().filter(|p| !p["source"].is_null()) {
        if let Some(v) = p["rust_version"].as_str()
            && version(v) > needed.1
        {
            needed = (format!("{} {}", p["name"], p["version"]), version(v));
        }
    }
    assert!(
        version(declared) >= needed.1,
        "rust-version {declared} in Cargo.toml is older than {} needs ({:?}): raise it",
        needed.0,
        needed.1
    );
}
