//! A throw-away private PKI for TLS tests, generated at test time with the `openssl` CLI
//! (so no key is ever committed): a CA, a server certificate for `127.0.0.1`/`localhost`
//! signed by it, a client certificate signed by it, and a second, unrelated CA to play the
//! "wrong CA" in tests.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Certificates and keys in a temporary directory (deleted on drop). All PEM; keys are
/// unencrypted PKCS#8 (EC P-256).
pub struct TestPki {
    dir: tempfile::TempDir,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("the openssl CLI is installed");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ca(dir: &Path, name: &str, cn: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

fn leaf(dir: &Path, name: &str, cn: &str, ext: &str) {
    let ext_file = format!("{name}.ext");
    std::fs::write(dir.join(&ext_file), ext).expect("write extension file");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.csr"),
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{name}.csr"),
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            &format!("{name}.pem"),
            "-days",
            "2",
            "-extfile",
            &ext_file,
        ],
    );
}

impl TestPki {
    /// Generate everything (a few hundred milliseconds).
    pub fn generate() -> TestPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        ca(d, "ca", "Syncline Test CA");
        ca(d, "other-ca", "Unrelated Test CA");
        leaf(
            d,
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n",
        );
        leaf(
            d,
            "client",
            "syncline-test-client",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n",
        );
        TestPki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The directory holding every file.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The CA certificate that signed the server and client certificates.
    pub fn ca_cert(&self) -> PathBuf {
        self.path("ca.pem")
    }

    /// A CA that signed nothing here (the "wrong CA").
    pub fn other_ca_cert(&self) -> PathBuf {
        self.path("other-ca.pem")
    }

    /// Server certificate (SAN `IP:127.0.0.1`, `DNS:localhost`).
    pub fn server_cert(&self) -> PathBuf {
        self.path("server.pem")
    }

    /// Server private key.
    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }

    /// Client certificate (extended key usage clientAuth).
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.pem")
    }

    /// Client private key.
    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }
}
