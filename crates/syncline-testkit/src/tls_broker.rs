//! A Kafka-protocol broker reachable only over TLS, for tests of clients' `ssl`
//! settings: a private Tansu instance ([`crate::private_broker`]) on a loopback port,
//! behind `stunnel`, which terminates TLS with a [`TestPki`] server certificate. Tansu
//! advertises the stunnel port, so every connection a client makes after bootstrap goes
//! through TLS as well.
//!
//! Why stunnel: this Tansu build accepts `--cert` but serves plain TCP regardless (checked
//! with `openssl s_client`), so TLS has to be put in front of it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use crate::env::free_port;
use crate::private_broker::{spawn_tansu, wait_tcp};
use crate::tls::TestPki;

/// `stunnel` on the PATH, installed from Debian (`stunnel4`) when missing, the way
/// `scripts/stack` installs what it needs.
pub fn stunnel_binary() -> PathBuf {
    let find = || {
        ["stunnel", "stunnel4"].iter().find_map(|name| {
            let out = Command::new("sh")
                .args(["-c", &format!("command -v {name}")])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
        })
    };
    if let Some(p) = find() {
        return p;
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let prefix: &[&str] = if root { &[] } else { &["sudo", "-n"] };
    let run = |args: &[&str]| {
        let mut all: Vec<&str> = prefix.to_vec();
        all.extend_from_slice(args);
        Command::new(all[0])
            .args(&all[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let _ = run(&["apt-get", "update", "-qq"]);
    assert!(
        run(&["apt-get", "install", "-y", "-qq", "stunnel4"]),
        "stunnel is missing and `apt-get install stunnel4` failed"
    );
    find().expect("stunnel installed")
}

/// A Tansu broker behind a stunnel TLS port. Both processes are killed on drop.
pub struct TlsBroker {
    /// The TLS port clients bootstrap from (and that Tansu advertises).
    pub tls_port: u16,
    /// Tansu's own plain port (loopback only; not advertised).
    pub plain_port: u16,
    tansu: Option<Child>,
    stunnel: Option<Child>,
    dir: tempfile::TempDir,
}

impl TlsBroker {
    /// Start Tansu and stunnel with `pki`'s server certificate (no client certificate
    /// required).
    pub fn start(pki: &TestPki) -> TlsBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls_port = free_port();
        let plain_port = free_port();
        let tansu = spawn_tansu(plain_port, tls_port, &dir.path().join("tansu.log"));

        let conf = dir.path().join("stunnel.conf");
        let stunnel_log = dir.path().join("stunnel.log");
        std::fs::write(
            &conf,
            format!(
                "foreground = yes\npid =\noutput = {log}\ndebug = 5\n\n[kafka]\n\
                 accept = 127.0.0.1:{tls_port}\nconnect = 127.0.0.1:{plain_port}\n\
                 cert = {cert}\nkey = {key}\n",
                log = stunnel_log.display(),
                cert = pki.server_cert().display(),
                key = pki.server_key().display(),
            ),
        )
        .expect("write stunnel.conf");
        let mut stunnel = Command::new(stunnel_binary())
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start stunnel");
        wait_tcp(tls_port, "stunnel", &mut stunnel, &stunnel_log);
        TlsBroker {
            tls_port,
            plain_port,
            tansu: Some(tansu),
            stunnel: Some(stunnel),
            dir,
        }
    }

    /// Bootstrap address for TLS clients.
    pub fn tls_brokers(&self) -> String {
        format!("127.0.0.1:{}", self.tls_port)
    }

    /// stunnel's log so far (handshake failures show up here).
    pub fn stunnel_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stunnel.log")).unwrap_or_default()
    }
}

impl Drop for TlsBroker {
    fn drop(&mut self) {
        for c in [self.stunnel.take(), self.tansu.take()]
            .into_iter()
            .flatten()
        {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
