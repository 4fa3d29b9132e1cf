//! The Python interpreter with fastavro and confluent-kafka (tests/python/requirements.txt)
//! that the interop tests run independent implementations with.
//!
//! Found as `SYNCLINE_PYTHON` (scripts/test exports it), else `.syncline/py-venv/bin/python`,
//! else created by running `scripts/python-venv`, so `cargo nextest run` alone works too.

#![allow(dead_code)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The repository root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The interpreter to run `tests/python/*.py` with.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        if let Some(p) = std::env::var_os("SYNCLINE_PYTHON").filter(|p| !p.is_empty()) {
            return p.into();
        }
        let venv = root().join(".syncline/py-venv/bin/python");
        if venv.exists() {
            return venv;
        }
        let out = Command::new(root().join("scripts/python-venv"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/python-venv");
        assert!(out.status.success(), "scripts/python-venv failed");
        let printed = String::from_utf8_lossy(&out.stdout);
        let path = printed
            .lines()
            .last()
            .expect("scripts/python-venv prints the path");
        PathBuf::from(path.trim())
    })
}

/// Run `tests/python/<script>` with `args`, feeding `stdin`; panics with its stderr when
/// it fails.
pub fn run(script: &str, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(python())
        .arg(root().join("tests/python").join(script))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {} {script}: {e}", python().display()));
    let mut input = child.stdin.take().expect("stdin piped");
    input.write_all(stdin).expect("write to python's stdin");
    drop(input);
    let out = child.wait_with_output().expect("python exits");
    assert!(
        out.status.success(),
        "{script} {args:?} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The JSON lines a script printed.
pub fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}
