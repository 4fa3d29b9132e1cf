//! Building the `elasticsearch` client from the settings: one node URL, basic auth or an
//! API key, extra CA certificates for https, and the request timeout.

use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;

use crate::config::{ConfigError, EsConfig};

/// Build a client for `config` (which should have been validated). Errors name the
/// setting that made building fail.
pub fn build_client(config: &EsConfig) -> Result<Elasticsearch, ConfigError> {
    let url = url::Url::parse(&config.url)
        .map_err(|e| ConfigError::new("url", format!("{:?} is not a URL: {e}", config.url)))?;
    let mut builder =
        TransportBuilder::new(SingleNodeConnectionPool::new(url)).timeout(config.request_timeout);
    if let (Some(user), Some(password)) = (&config.username, &config.password) {
        builder = builder.auth(Credentials::Basic(user.clone(), password.clone()));
    }
    if let Some(key) = &config.api_key {
        let key = key.trim();
        // `id:api_key` as shown when the key is created, or the base64 `encoded` form.
        let credentials = match key.split_once(':') {
            Some((id, secret)) => Credentials::ApiKey(id.to_owned(), secret.to_owned()),
            None => Credentials::EncodedApiKey(key.to_owned()),
        };
        builder = builder.auth(credentials);
    }
    if let Some(path) = &config.ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            ConfigError::new("ca_file", format!("cannot read {}: {e}", path.display()))
        })?;
        let cert = Certificate::from_pem(&pem).map_err(|e| {
            ConfigError::new(
                "ca_file",
                format!("{} holds no usable PEM certificate: {e}", path.display()),
            )
        })?;
        // `Full` adds these roots to the built-in ones and still verifies host names.
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    let transport = builder
        .build()
        .map_err(|e| ConfigError::new("url", format!("cannot build the HTTP client: {e}")))?;
    Ok(Elasticsearch::new(transport))
}
