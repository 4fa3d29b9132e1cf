//! Connecting to Redis the way every Syncline component does: a `redis://` or `rediss://`
//! URL, optional ACL credentials that override the URL's, and for TLS an optional private
//! CA (instead of the built-in webpki roots) and an optional client certificate and key
//! (for servers started with `tls-auth-clients yes`).
//!
//! The certificate files are read and parsed as PEM by [`RedisTlsFiles::load`], before
//! anything connects, so a missing or malformed file is reported at startup with its path
//! and what is wrong with it rather than as an opaque handshake failure later.

use std::path::{Path, PathBuf};

use redis::{Client, ConnectionInfo, IntoConnectionInfo};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::CacheError;

/// PEM files for a TLS connection. All optional: with none set, `rediss://` verifies the
/// server against the built-in webpki roots and sends no client certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTlsFiles {
    /// CA certificate(s) that signed the server's certificate (replaces the built-in roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM), for servers that require client certificates.
    pub cert_file: Option<PathBuf>,
    /// Private key of the client certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
}

/// Which file setting an error is about (the name used in configuration: `ca_file`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsFile {
    /// `ca_file`.
    Ca,
    /// `cert_file`.
    Cert,
    /// `key_file`.
    Key,
}

impl TlsFile {
    /// The setting's name.
    pub fn setting(self) -> &'static str {
        match self {
            TlsFile::Ca => "ca_file",
            TlsFile::Cert => "cert_file",
            TlsFile::Key => "key_file",
        }
    }
}

/// A TLS file that cannot be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {reason}", .file.setting())]
pub struct TlsFileError {
    /// Which setting.
    pub file: TlsFile,
    /// What is wrong, including the path.
    pub reason: String,
}

/// The certificates read from [`RedisTlsFiles`], checked and ready to connect with.
#[derive(Clone, Default)]
pub struct LoadedTls {
    root_cert: Option<Vec<u8>>,
    client: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for LoadedTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the key bytes.
        f.debug_struct("LoadedTls")
            .field("private_ca", &self.root_cert.is_some())
            .field("client_certificate", &self.client.is_some())
            .finish()
    }
}

impl LoadedTls {
    /// True when nothing was configured (plain webpki roots, no client certificate).
    pub fn is_empty(&self) -> bool {
        self.root_cert.is_none() && self.client.is_none()
    }
}

fn read(file: TlsFile, path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| TlsFileError {
        file,
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

fn certificates(file: TlsFile, path: &Path, pem: &[u8]) -> Result<(), TlsFileError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError {
            file,
            reason: format!("{} is not valid PEM: {e}", path.display()),
        })?;
    if certs.is_empty() {
        return Err(TlsFileError {
            file,
            reason: format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        });
    }
    Ok(())
}

impl RedisTlsFiles {
    /// True when no file is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }

    /// Read and check every set file: each must exist and parse as PEM (certificates for
    /// `ca_file`/`cert_file`, a private key for `key_file`), and `cert_file` and
    /// `key_file` must be set together.
    pub fn load(&self) -> Result<LoadedTls, TlsFileError> {
        let root_cert = match &self.ca_file {
            Some(path) => {
                let pem = read(TlsFile::Ca, path)?;
                certificates(TlsFile::Ca, path, &pem)?;
                Some(pem)
            }
            None => None,
        };
        let client = match (&self.cert_file, &self.key_file) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(TlsFileError {
                    file: TlsFile::Key,
                    reason: "must be set together with cert_file".into(),
                })
            }
            (None, Some(_)) => {
                return Err(TlsFileError {
                    file: TlsFile::Cert,
                    reason: "must be set together with key_file".into(),
                })
            }
            (Some(cert_path), Some(key_path)) => {
                let cert = read(TlsFile::Cert, cert_path)?;
                certificates(TlsFile::Cert, cert_path, &cert)?;
                let key = read(TlsFile::Key, key_path)?;
                // The error from the PEM parser never contains the key material.
                PrivateKeyDer::from_pem_slice(&key).map_err(|e| TlsFileError {
                    file: TlsFile::Key,
                    reason: format!(
                        "{} holds no usable PEM private key: {e}",
                        key_path.display()
                    ),
                })?;
                Some((cert, key))
            }
        };
        Ok(LoadedTls { root_cert, client })
    }
}

/// A client for `connection` with `tls` applied. TLS files need a `rediss://` URL: with
/// `redis://` they would be silently ignored, so that is an error.
pub fn client(connection: ConnectionInfo, tls: &LoadedTls) -> Result<Client, CacheError> {
    if tls.is_empty() {
        return Ok(Client::open(connection)?);
    }
    if !matches!(connection.addr, redis::ConnectionAddr::TcpTls { .. }) {
        return Err(CacheError::Config(
            "TLS certificate files need a rediss:// URL".into(),
        ));
    }
    let certs = redis::TlsCertificates {
        client_tls: tls
            .client
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
        root_cert: tls.root_cert.clone(),
    };
    Ok(Client::build_with_tls(connection, certs)?)
}

/// Everything needed to connect: URL, credentials overriding the URL's, TLS files.
#[derive(Clone)]
pub struct ConnectOptions {
    /// `redis://[user[:password]@]host[:port][/db]` or `rediss://...`.
    pub url: String,
    /// ACL user (overrides the URL's).
    pub username: Option<String>,
    /// Password (overrides the URL's).
    pub password: Option<String>,
    /// TLS files (need a `rediss://` URL).
    pub tls: RedisTlsFiles,
    /// Time allowed to establish a connection (default 5 s).
    pub connect_timeout: std::time::Duration,
    /// Time allowed for a reply (default 10 s); without one a lost reply waits forever.
    pub response_timeout: std::time::Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            url: String::new(),
            username: None,
            password: None,
            tls: RedisTlsFiles::default(),
            connect_timeout: std::time::Duration::from_secs(5),
            response_timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectOptions")
            .field("url", &redact_url(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls)
            .finish()
    }
}

impl ConnectOptions {
    /// Options for a bare URL.
    pub fn new(url: impl Into<String>) -> Self {
        ConnectOptions {
            url: url.into(),
            ..Default::default()
        }
    }

    /// The connection info with the credentials applied (no I/O).
    pub fn connection_info(&self) -> Result<ConnectionInfo, CacheError> {
        let mut info = self.url.as_str().into_connection_info().map_err(|e| {
            CacheError::Config(format!("bad redis URL {}: {e}", redact_url(&self.url)))
        })?;
        if let Some(u) = &self.username {
            info.redis.username = Some(u.clone());
        }
        if let Some(p) = &self.password {
            info.redis.password = Some(p.clone());
        }
        Ok(info)
    }

    /// Read the TLS files and build a client (no I/O beyond reading the files).
    pub fn client(&self) -> Result<Client, CacheError> {
        let tls = self
            .tls
            .load()
            .map_err(|e| CacheError::Config(format!("redis TLS {e}")))?;
        client(self.connection_info()?, &tls)
    }
}

/// The URL with the password (if any) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://{userinfo}@{host}"),
        },
        None => url.to_owned(),
    }
}

/// Open one multiplexed connection (bounded by the timeouts) and drop it: the error, if
/// any, of a first connection.
///
/// Why before a `ConnectionManager`: redis 0.32's `ConnectionManager` does not return when
/// its first connection is refused with a TLS alert (a server requiring a client
/// certificate): observed waiting far beyond its connection and response timeouts. A
/// plain connection reports the alert at once, so callers probe first and only then
/// build the self-reconnecting manager.
pub async fn probe(
    client: &Client,
    connect_timeout: std::time::Duration,
    response_timeout: std::time::Duration,
) -> redis::RedisResult<()> {
    let config = redis::AsyncConnectionConfig::new()
        .set_connection_timeout(connect_timeout)
        .set_response_timeout(response_timeout);
    let mut conn = client
        .get_multiplexed_async_connection_with_config(&config)
        .await?;
    let _: () = redis::cmd("PING").query_async(&mut conn).await?;
    Ok(())
}

/// A TLS cause in a Redis error chain, in words, if there is one: a certificate the
/// client rejected (wrong CA, wrong host name) or an alert from the server (no or bad
/// client certificate). Such errors do not go away by retrying.
pub fn tls_cause(error: &redis::RedisError) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if let Some(inner) = io.get_ref() {
                if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                    return Some(describe(tls));
                }
            }
        }
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(describe(tls));
        }
        source = e.source();
    }
    None
}

fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer) => {
            "TLS: the server's certificate is not signed by a trusted CA (check ca_file)".into()
        }
        rustls::Error::InvalidCertificate(c) => {
            format!("TLS: the server's certificate was rejected: {c:?} (check ca_file and the host name)")
        }
        rustls::Error::AlertReceived(alert) => format!(
            "TLS: the server refused the handshake ({alert:?}); it may require a client \
             certificate (cert_file/key_file) or not trust the one sent"
        ),
        other => format!("TLS: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_without_key_names_key_file() {
        let files = RedisTlsFiles {
            cert_file: Some("/x/cert.pem".into()),
            ..Default::default()
        };
        assert_eq!(files.load().err().map(|e| e.file), Some(TlsFile::Key));
        let files = RedisTlsFiles {
            key_file: Some("/x/key.pem".into()),
            ..Default::default()
        };
        assert_eq!(files.load().err().map(|e| e.file), Some(TlsFile::Cert));
    }

    #[test]
    fn missing_and_non_pem_files_are_named() {
        let dir = std::env::temp_dir().join(format!("syncline-cache-tls-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let junk = dir.join("junk.pem");
        let _ = std::fs::write(&junk, "not a certificate\n");
        let missing = RedisTlsFiles {
            ca_file: Some(dir.join("absent.pem")),
            ..Default::default()
        };
        let e = missing.load().err();
        assert_eq!(e.as_ref().map(|e| e.file), Some(TlsFile::Ca));
        assert!(e.is_some_and(|e| e.to_string().contains("cannot read")));
        let junk_ca = RedisTlsFiles {
            ca_file: Some(junk.clone()),
            ..Default::default()
        };
        let e = junk_ca.load().err();
        assert!(
            e.as_ref()
                .is_some_and(|e| e.to_string().contains("holds no PEM certificate")),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn tls_files_need_rediss() {
        let opts = ConnectOptions::new("redis://127.0.0.1:6379");
        let info = opts.connection_info().ok();
        let tls = LoadedTls {
            root_cert: Some(Vec::new()),
            client: None,
        };
        let r = info.map(|i| client(i, &tls));
        assert!(matches!(r, Some(Err(CacheError::Config(_)))));
    }

    #[test]
    fn debug_hides_password() {
        let opts = ConnectOptions {
            url: "rediss://u:hunter2@h:6380".into(),
            password: Some("s3cret".into()),
            ..Default::default()
        };
        let text = format!("{opts:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("s3cret"),
            "{text}"
        );
    }
}
