//! A private `redis-server` for tests that stop, kill or restart Redis: those must never
//! touch the shared instance other tests and other runs use (docs/decisions.md, "Tests").

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
    tls: Option<TlsFiles>,
}

/// Server-side TLS files of a [`RedisServer::start_tls`] server.
#[derive(Debug, Clone)]
struct TlsFiles {
    cert: PathBuf,
    key: PathBuf,
    ca: PathBuf,
}

impl RedisServer {
    /// Start on a free port; panics (test support) when `redis-server` is missing.
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            tls: None,
        };
        r.restart();
        r
    }

    /// Start with TLS only (no plain port) on a free port: the server presents
    /// `pki`'s server certificate and requires client certificates signed by `pki`'s CA
    /// (`tls-auth-clients yes`). Connect with [`RedisServer::tls_url`].
    pub fn start_tls(pki: &crate::tls::TestPki) -> RedisServer {
        let mut r = RedisServer {
            port: free_port(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
            tls: Some(TlsFiles {
                cert: pki.server_cert(),
                key: pki.server_key(),
                ca: pki.ca_cert(),
            }),
        };
        r.restart();
        r
    }

    /// Its `rediss://` URL (for [`RedisServer::start_tls`] servers).
    pub fn tls_url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
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
        if let Some(tls) = self.tls.clone() {
            return self.restart_tls(&tls);
        }
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

    fn restart_tls(&mut self, tls: &TlsFiles) {
        let log = self.dir.path().join("redis.log");
        let _ = std::fs::remove_file(&log);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--bind", "127.0.0.1"])
            .args(["--tls-port", &self.port.to_string()])
            .arg("--tls-cert-file")
            .arg(&tls.cert)
            .arg("--tls-key-file")
            .arg(&tls.key)
            .arg("--tls-ca-cert-file")
            .arg(&tls.ca)
            .args(["--tls-auth-clients", "yes"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server installed");
        self.child = Some(child);
        // A TLS port does not answer a plain PING; the server's own log says when it is up.
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    panic!(
                        "redis-server with TLS exited ({status}); built without TLS? log:\n{text}"
                    );
                }
            }
            assert!(
                Instant::now() < deadline,
                "redis-server (TLS) did not start:\n{text}"
            );
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
