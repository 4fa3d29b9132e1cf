//! The ES dev server as a process of its own, for bench harnesses: its CPU is then not
//! counted as the measured process's, and it is the release build, as in production-like
//! figures.

use std::process::{Command, Stdio};

use crate::process::{release_binary, ChildGuard};

/// `ES_URL` when set (no process is started), else the release `es-devserver`
/// (`ES_DEVSERVER_BIN` overrides the path; built with cargo if missing) on a free
/// loopback port. Returns the URL and the guard that stops the process.
pub fn start_devserver_process() -> std::io::Result<(String, Option<ChildGuard>)> {
    if let Some(url) = crate::env::es_url() {
        return Ok((url, None));
    }
    let bin = release_binary("es-devserver", "es-devserver", "ES_DEVSERVER_BIN")?;
    let port = crate::env::free_port();
    let child = ChildGuard::spawn(
        Command::new(&bin)
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null()),
    )?;
    Ok((format!("http://127.0.0.1:{port}"), Some(child)))
}
