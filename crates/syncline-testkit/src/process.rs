//! Child processes that never outlive the test that started them.

use std::process::{Child, Command};

/// A spawned process killed (SIGKILL) and reaped when dropped, so a failing test leaves no
/// consumer running against the shared broker.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
}

impl ChildGuard {
    /// Spawn `cmd`.
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        Ok(ChildGuard {
            child: Some(cmd.spawn()?),
        })
    }

    /// The OS process id.
    pub fn id(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Kill with SIGKILL (no chance to commit or clean up) and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Ask the process to stop (SIGTERM) and wait for its exit status.
    pub fn terminate(&mut self) -> std::io::Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else {
            return Err(std::io::Error::other("process already gone"));
        };
        let status = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other("kill -TERM failed"));
        }
        c.wait()
    }

    /// Has it exited? Returns its status if so, without blocking.
    pub fn try_wait(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(c) => c.try_wait(),
            None => Ok(None),
        }
    }

    /// Take the child out of the guard (it is then no longer killed on drop).
    pub fn into_inner(mut self) -> Option<Child> {
        self.child.take()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The debug build of binary `bin` of another workspace package (cargo gives
/// `CARGO_BIN_EXE_*` only for a test's own package), brought up to date with `cargo build`
/// (a no-op when it is). `override_env`, when set and not empty, names a variable whose
/// value is used as the path instead. For tests, which run from `<target>/debug/deps/`.
pub fn debug_binary(
    package: &str,
    bin: &str,
    override_env: Option<&str>,
) -> std::io::Result<std::path::PathBuf> {
    if let Some(p) = override_env
        .and_then(std::env::var_os)
        .filter(|p| !p.is_empty())
    {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| std::io::Error::other("cannot locate the target directory"))?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "-p", package, "--bin", bin])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!(
            "cargo build -p {package} --bin {bin} failed"
        )));
    }
    let path = dir.join(bin);
    if !path.exists() {
        return Err(std::io::Error::other(format!(
            "{} missing after the build",
            path.display()
        )));
    }
    Ok(path)
}

/// The release build of binary `bin` of workspace package `package`, built with cargo if
/// missing. `override_env` names a variable whose value, when set, is used as the path
/// instead. For bench harnesses, which run from `<target>/release/deps/`.
pub fn release_binary(
    package: &str,
    bin: &str,
    override_env: &str,
) -> std::io::Result<std::path::PathBuf> {
    if let Some(p) = std::env::var_os(override_env) {
        return Ok(p.into());
    }
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(|deps| deps.parent())
        .ok_or_else(|| std::io::Error::other("cannot locate the target directory"))?;
    let path = release.join(bin);
    if !path.exists() {
        eprintln!("building {bin} (release) ...");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--release", "-p", package, "--bin", bin])
            .status()?;
        if !status.success() {
            return Err(std::io::Error::other(format!(
                "cargo build --release -p {package} --bin {bin} failed"
            )));
        }
    }
    Ok(path)
}
