//! A private `redis-server` for tests that stop, kill or restart Redis: those must never
//! touch the shared instance other tests and other runs use (design.md).
// Test support: a missing `redis-server` or temp dir is a broken test machine, and the
// test should fail right there with that message.
#![allow(clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::free_port;

const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A private `redis-server` on a free loopback port, with its own data directory; it can
/// be killed and restarted on the same port. Killed on drop.
pub struct RedisServer {
    /// The loopback port it listens on.
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisServer {
    /// Start on a free port; panics (test support) when `redis-server` is missing.
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        };
        r.restart();
        r
    }

    /// Its `redis://` URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Where `SHUTDOWN SAVE` writes its snapshot.
    pub fn dump_path(&self) -> PathBuf {
        self.dir.path().join("dump.rdb")
    }

    /// Start (again) on the same port and directory; loads `dump.rdb` when present.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .args(["--dbfilename", "dump.rdb"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server installed");
        self.child = Some(child);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = s.write_all(b"PING\r\n");
                let mut buf = [0u8; 64];
                if let Ok(n) = s.read(&mut buf) {
                    if buf[..n].starts_with(b"+PONG") {
                        return;
                    }
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: the server vanishes with everything in memory.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// `SHUTDOWN SAVE`: write `dump.rdb`, then exit.
    pub fn shutdown_save(&mut self) {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) {
            let _ = s.write_all(b"SHUTDOWN SAVE\r\n");
            let mut buf = [0u8; 64];
            let _ = s.read(&mut buf);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        assert!(self.dump_path().exists(), "SHUTDOWN SAVE wrote no dump");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}
