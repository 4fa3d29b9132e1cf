//! An optional HTTPS listener (rustls), so that clients' TLS settings — a private CA and
//! client certificates (mutual TLS) — can be tested against the dev server. With a client
//! CA configured, connections without a certificate signed by it are refused during the
//! handshake, the way an Elasticsearch node with `xpack.security.http.ssl.client_authentication:
//! required` refuses them.
//!
//! The HTTP side is the same as the plain listener's ([`crate::http::serve_request`]).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::{http, Config, Node, RunningServer};

/// A slow or silent client must not hold a task forever before it is even HTTP.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The PEM material of the HTTPS listener.
#[derive(Clone)]
pub struct TlsConfig {
    /// Server certificate chain, PEM.
    pub cert_chain_pem: Vec<u8>,
    /// Server private key, PEM.
    pub key_pem: Vec<u8>,
    /// CA certificates that client certificates must chain to; `Some` makes client
    /// certificates required.
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field(
                "client_certificates_required",
                &self.client_ca_pem.is_some(),
            )
            .finish_non_exhaustive()
    }
}

/// Why the HTTPS listener could not start.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The PEM material is unusable.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input (`--tls-cert`, `--tls-key`, `--tls-client-ca`).
        what: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// rustls refused the configuration (e.g. key does not match the certificate).
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    /// Binding or another server error.
    #[error(transparent)]
    Server(#[from] crate::Error),
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

fn certs(what: &'static str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what,
            reason: format!("invalid PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no PEM certificate found".into(),
        });
    }
    Ok(certs)
}

impl TlsConfig {
    /// Read the files (`client_ca` optional).
    pub fn from_files(cert: &Path, key: &Path, client_ca: Option<&Path>) -> Result<Self, TlsError> {
        Ok(TlsConfig {
            cert_chain_pem: read(cert)?,
            key_pem: read(key)?,
            client_ca_pem: client_ca.map(read).transpose()?,
        })
    }

    /// The rustls server configuration (HTTP/1.1 only, like the plain listener).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certs("--tls-cert", &self.cert_chain_pem)?;
        let key = PrivateKeyDer::from_pem_slice(&self.key_pem).map_err(|e| TlsError::Pem {
            what: "--tls-key",
            reason: format!("no usable PEM private key: {e}"),
        })?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match &self.client_ca_pem {
            Some(pem) => {
                let mut roots = RootCertStore::empty();
                for c in certs("--tls-client-ca", pem)? {
                    roots.add(c)?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| TlsError::Pem {
                            what: "--tls-client-ca",
                            reason: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Start a server with an HTTPS listener on the current tokio runtime; its
/// [`RunningServer::url`] is `https://<addr>`.
pub async fn start_tls(config: Config, tls: &TlsConfig) -> Result<RunningServer, TlsError> {
    let acceptor = TlsAcceptor::from(tls.server_config()?);
    let server = crate::start_with(config, "https", move |listener, node, shutdown| {
        serve_tls(listener, acceptor, node, shutdown)
    })
    .await?;
    Ok(server)
}

/// Accept TLS connections until `shutdown` flips to true. A failed handshake (no client
/// certificate, an untrusted one, a client that does not trust us) is logged and the
/// connection dropped; it never affects other connections.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    node: Arc<Node>,
    shutdown: watch::Receiver<bool>,
) {
    let conn_shutdown = shutdown.clone();
    http::accept_loop(listener, shutdown, move |stream, peer| {
        let node = node.clone();
        let acceptor = acceptor.clone();
        let conn_shutdown = conn_shutdown.clone();
        async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            http::serve_connection(tls, node, conn_shutdown).await;
        }
    })
    .await;
}
