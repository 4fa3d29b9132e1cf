//! Building the `elasticsearch` client from the settings: one node URL, basic auth or an
//! API key, extra CA certificates for https, a client certificate for mutual TLS, and the
//! request timeout.

use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use elasticsearch::auth::{ClientCertificate, Credentials};
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderValue, AUTHORIZATION};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::{ConfigError, EsConfig};

/// Build a client for `config` (which should have been validated). Errors name the
/// setting that made building fail.
pub fn build_client(config: &EsConfig) -> Result<Elasticsearch, ConfigError> {
    let url = url::Url::parse(&config.url).map_err(|e| {
        ConfigError::new(
            "url",
            format!(
                "{:?} is not a URL: {e}",
                crate::config::redact_url(&config.url)
            ),
        )
    })?;
    let mut builder =
        TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(config.request_timeout);
    let mut credentials = None;
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        credentials = Some(Credentials::Basic(user.clone(), password.clone()));
    }
    if let Some(key) = &config.api_key {
        let key = key.trim();
        // `id:api_key` as shown when the key is created, or the base64 `encoded` form.
        credentials = Some(match key.split_once(':') {
            Some((id, secret)) => Credentials::ApiKey(id.to_owned(), secret.to_owned()),
            None => Credentials::EncodedApiKey(key.to_owned()),
        });
    }
    if let Some(path) = &config.ca_file {
        let pem = read_pem_certificates("ca_file", path)?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            ConfigError::new(
                "ca_file",
                format!("{} holds no usable PEM certificate: {e}", path.display()),
            )
        })?;
        // `Full` adds these roots to the built-in ones and still verifies host names.
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    if let (Some(cert_path), Some(key_path)) = (&config.cert_file, &config.key_file) {
        let mut identity = read_pem_certificates("cert_file", cert_path)?;
        let key = std::fs::read(key_path).map_err(|e| {
            ConfigError::new(
                "key_file",
                format!("cannot read {}: {e}", key_path.display()),
            )
        })?;
        // The parser's error never contains key material.
        PrivateKeyDer::from_pem_slice(&key).map_err(|e| {
            ConfigError::new(
                "key_file",
                format!(
                    "{} holds no usable PEM private key: {e}",
                    key_path.display()
                ),
            )
        })?;
        identity.push(b'\n');
        identity.extend_from_slice(&key);
        // The client takes one credential; the certificate occupies it, so basic auth or
        // an API key (Elasticsearch can require both) travels as a default header.
        if let Some(c) = credentials.take() {
            builder = builder.header(AUTHORIZATION, authorization(&c)?);
        }
        builder = builder.auth(Credentials::Certificate(ClientCertificate::Pem(identity)));
    }
    if let Some(c) = credentials {
        builder = builder.auth(c);
    }
    let transport = builder.build().map_err(|e| {
        let setting = if config.cert_file.is_some() {
            "cert_file"
        } else {
            "url"
        };
        ConfigError::new(
            setting,
            format!("cannot build the HTTP client: {}", describe_error(&e)),
        )
    })?;
    Ok(Elasticsearch::new(transport))
}

/// Read `path` and check it holds at least one PEM certificate.
fn read_pem_certificates(setting: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    let pem = std::fs::read(path)
        .map_err(|e| ConfigError::new(setting, format!("cannot read {}: {e}", path.display())))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            ConfigError::new(setting, format!("{} is not valid PEM: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            setting,
            format!(
                "{} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                path.display()
            ),
        ));
    }
    Ok(pem)
}

/// The `Authorization` header value for basic auth or an API key, marked sensitive so
/// that it is never printed by the HTTP stack.
fn authorization(c: &Credentials) -> Result<HeaderValue, ConfigError> {
    let text = match c {
        Credentials::Basic(user, password) => {
            format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
        }
        Credentials::ApiKey(id, key) => format!("ApiKey {}", BASE64.encode(format!("{id}:{key}"))),
        Credentials::EncodedApiKey(encoded) => format!("ApiKey {encoded}"),
        _ => return Err(ConfigError::new("api_key", "unsupported credential")),
    };
    let mut value = HeaderValue::from_str(&text).map_err(|_| {
        // Never echo the value: it is the secret.
        ConfigError::new(
            "api_key",
            "credentials contain characters not allowed in an HTTP header",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// An error with its whole cause chain (`a: b: c`): a transport error's own text is often
/// just "error sending request", while the cause says "invalid peer certificate:
/// UnknownIssuer" or "received fatal alert: CertificateRequired".
pub fn describe_error(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    // Bounded: error chains are short, but a cyclic one must not loop forever.
    for _ in 0..8 {
        let Some(s) = source else { break };
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}
