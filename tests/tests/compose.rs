//! docker-compose.yml cannot be run here (no Docker engine), so this checks what can be
//! checked without one: it parses, every built service points at an existing context and
//! Dockerfile, every command names a binary the workspace builds, and every published port
//! binds 127.0.0.1.

// Test code: a panic is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_yaml::Value;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn compose() -> Value {
    let path = repo_root().join("docker-compose.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path:?}: {e}"));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("docker-compose.yml does not parse: {e}"))
}

/// Every `[[bin]]` (or the implicit binary of a package with src/main.rs or src/bin/*.rs).
fn workspace_binaries() -> BTreeSet<String> {
    let mut bins = BTreeSet::new();
    let crates = repo_root().join("crates");
    for entry in std::fs::read_dir(&crates).unwrap_or_else(|e| panic!("{crates:?}: {e}")) {
        let dir = entry.expect("dir entry").path();
        let Ok(text) = std::fs::read_to_string(dir.join("Cargo.toml")) else {
            continue;
        };
        let manifest: toml::Value = toml::from_str(&text).expect("crate manifest parses");
        if let Some(list) = manifest.get("bin").and_then(|b| b.as_array()) {
            for b in list {
                if let Some(name) = b.get("name").and_then(|n| n.as_str()) {
                    bins.insert(name.to_owned());
                }
            }
        }
        if dir.join("src/main.rs").exists() {
            if let Some(name) = manifest
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
            {
                bins.insert(name.to_owned());
            }
        }
        if let Ok(rd) = std::fs::read_dir(dir.join("src/bin")) {
            for f in rd.flatten() {
                let p = f.path();
                if let Some(stem) = p.file_stem().and_then(|s| s.to_str()) {
                    bins.insert(stem.to_owned());
                }
            }
        }
    }
    bins
}

#[test]
fn compose_file_parses_and_has_the_stack() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services is a mapping");
    for name in [
        "kafka",
        "elasticsearch",
        "redis",
        "es-indexer",
        "redis-invalidator",
    ] {
        assert!(
            services.contains_key(Value::from(name)),
            "service {name} missing from docker-compose.yml"
        );
    }
}

#[test]
fn every_build_references_an_existing_context_and_dockerfile() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services is a mapping");
    let mut built = 0;
    for (name, svc) in services {
        let Some(build) = svc.get("build") else {
            assert!(
                svc.get("image").is_some(),
                "service {name:?} has neither build nor image"
            );
            continue;
        };
        built += 1;
        let (context, dockerfile) = match build {
            Value::String(ctx) => (ctx.clone(), "Dockerfile".to_owned()),
            other => (
                other["context"].as_str().unwrap_or(".").to_owned(),
                other["dockerfile"]
                    .as_str()
                    .unwrap_or("Dockerfile")
                    .to_owned(),
            ),
        };
        let ctx = repo_root().join(&context);
        assert!(
            ctx.is_dir(),
            "service {name:?}: build context {ctx:?} does not exist"
        );
        let df = ctx.join(&dockerfile);
        assert!(
            df.is_file(),
            "service {name:?}: Dockerfile {df:?} does not exist"
        );
    }
    assert!(
        built >= 2,
        "expected the consumers to be built from the Dockerfile"
    );
}

#[test]
fn commands_name_binaries_the_dockerfile_builds() {
    let doc = compose();
    let dockerfile = std::fs::read_to_string(repo_root().join("Dockerfile")).expect("Dockerfile");
    let bins = workspace_binaries();
    let services = doc["services"].as_mapping().expect("services is a mapping");
    for (name, svc) in services {
        if svc.get("build").is_none() {
            continue;
        }
        let cmd = svc["command"][0]
            .as_str()
            .unwrap_or_else(|| panic!("service {name:?} has no command list"));
        assert!(
            bins.contains(cmd),
            "service {name:?} runs {cmd}, which no crate builds ({bins:?})"
        );
        assert!(
            dockerfile.contains(&format!("--bin {cmd}")),
            "service {name:?} runs {cmd}, which the Dockerfile does not build"
        );
    }
}

#[test]
fn published_ports_bind_loopback_only() {
    let doc = compose();
    let services = doc["services"].as_mapping().expect("services is a mapping");
    for (name, svc) in services {
        if let Some(ports) = svc.get("ports").and_then(|p| p.as_sequence()) {
            for p in ports {
                let spec = p.as_str().unwrap_or_default();
                assert!(
                    spec.starts_with("127.0.0.1:"),
                    "service {name:?} publishes {spec:?} beyond loopback"
                );
            }
        }
    }
}

/// Every env var name the workspace's code reads: clap's `env = "..."` attributes and
/// direct `env::var("...")` calls. A name is found only where the code really reads it.
fn env_vars_the_code_reads() -> BTreeSet<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&repo_root().join("crates"), &mut files);
    let mut names = BTreeSet::new();
    for f in files {
        if f.components()
            .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "benches")
        {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        for marker in ["env = \"", "env::var(\""] {
            for (i, _) in text.match_indices(marker) {
                let rest = &text[i + marker.len()..];
                if let Some(end) = rest.find('"') {
                    names.insert(rest[..end].to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn service_environment_names_settings_the_binaries_read() {
    let doc = compose();
    let known = env_vars_the_code_reads();
    let services = doc["services"].as_mapping().expect("services is a mapping");
    let mut checked = 0;
    for (name, svc) in services {
        if svc.get("build").is_none() {
            continue;
        }
        let Some(env) = svc.get("environment").and_then(|e| e.as_mapping()) else {
            continue;
        };
        for key in env.keys() {
            let key = key.as_str().unwrap_or_default();
            if key == "RUST_LOG" {
                continue;
            }
            assert!(
                known.contains(key),
                "service {name:?} sets {key}, which no Syncline binary reads"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 4,
        "expected the consumers to be configured by env"
    );
}
