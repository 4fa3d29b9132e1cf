//! Flags (each with a `SYNCLINE_ES_*` env var) for the `[elasticsearch]` settings. They
//! override the TOML file; what is not given keeps the file's value or the default.

use std::path::PathBuf;

use serde::Serialize;
use syncline_app::{HumanDuration, Layers};

use crate::config::{parse_byte_size, ConfigError, DeleteMode, EsConfig};
use crate::CONFIG_SECTION;

/// The `[elasticsearch]` flags. The field names are the table's keys: set flags are
/// layered over the file by name ([`EsArgs::layer`]). The group id names the table, so a
/// malformed flag is reported as `elasticsearch.<key>`.
#[derive(Clone, Default, clap::Args, Serialize)]
#[command(next_help_heading = "Elasticsearch")]
#[group(id = "elasticsearch")]
pub struct EsArgs {
    /// Elasticsearch URL, http or https (also read from ES_URL).
    #[arg(long = "es-url", env = "SYNCLINE_ES_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Prefix of every alias (`<prefix><entity_type>`).
    #[arg(long = "es-index-prefix", env = "SYNCLINE_ES_INDEX_PREFIX")]
    pub index_prefix: Option<String>,
    /// Directory with `<entity_type>.json` index definitions.
    #[arg(
        long = "es-mappings-dir",
        env = "SYNCLINE_ES_MAPPINGS_DIR",
        value_name = "DIR"
    )]
    pub mappings_dir: Option<PathBuf>,
    /// How DELETE events are applied: `tombstone` or `delete`.
    #[arg(long = "es-delete-mode", env = "SYNCLINE_ES_DELETE_MODE", value_enum)]
    pub delete_mode: Option<DeleteMode>,
    /// Max actions per bulk request.
    #[arg(long = "es-bulk-max-actions", env = "SYNCLINE_ES_BULK_MAX_ACTIONS")]
    pub bulk_max_actions: Option<usize>,
    /// Max bytes per bulk request (e.g. `5MiB`).
    #[arg(long = "es-bulk-max-bytes", env = "SYNCLINE_ES_BULK_MAX_BYTES", value_parser = parse_byte_size)]
    pub bulk_max_bytes: Option<usize>,
    /// Timeout of one request (e.g. `30s`).
    #[arg(long = "es-request-timeout", env = "SYNCLINE_ES_REQUEST_TIMEOUT")]
    pub request_timeout: Option<HumanDuration>,
    /// Basic-auth user.
    #[arg(long = "es-username", env = "SYNCLINE_ES_USERNAME")]
    pub username: Option<String>,
    /// Basic-auth password (prefer the env var over the flag).
    #[arg(
        long = "es-password",
        env = "SYNCLINE_ES_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// API key (`id:key` or the base64 encoded form; prefer the env var).
    #[arg(
        long = "es-api-key",
        env = "SYNCLINE_ES_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// PEM file of CA certificates to trust for https.
    #[arg(long = "es-ca-file", env = "SYNCLINE_ES_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (with --es-key-file).
    #[arg(
        long = "es-cert-file",
        env = "SYNCLINE_ES_CERT_FILE",
        value_name = "FILE"
    )]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(
        long = "es-key-file",
        env = "SYNCLINE_ES_KEY_FILE",
        value_name = "FILE"
    )]
    pub key_file: Option<PathBuf>,
    /// Create missing indexes and aliases (`true`/`false`).
    #[arg(
        long = "es-create-indexes",
        env = "SYNCLINE_ES_CREATE_INDEXES",
        value_name = "BOOL"
    )]
    pub create_indexes: Option<bool>,
}

impl EsArgs {
    /// Add the `[elasticsearch]` layers above the file: `ES_URL` (below
    /// `SYNCLINE_ES_URL` and `--es-url`), then these flags and env vars.
    pub fn layer(&self, layers: Layers) -> Result<Layers, ConfigError> {
        layers
            .env_fallback(CONFIG_SECTION, "url", "ES_URL")
            .flags(CONFIG_SECTION, self)
    }

    /// Layer these flags/env vars over `config` (from the file or defaults) and validate.
    /// For tools that read the indexer's file themselves (`syncline-ctl rebuild es`).
    pub fn apply(&self, config: EsConfig) -> Result<EsConfig, ConfigError> {
        let layers = self.layer(
            Layers::new(syncline_consumer::cli::CONSUMER_SECTION)
                .defaults(CONFIG_SECTION, &config)?,
        )?;
        extract(&layers)
    }
}

/// The `[elasticsearch]` table of `layers`, validated; errors name `elasticsearch.<key>`.
pub fn extract(layers: &Layers) -> Result<EsConfig, ConfigError> {
    let es: EsConfig = layers.extract(CONFIG_SECTION)?;
    es.validate().map_err(|e| e.in_table(CONFIG_SECTION))?;
    Ok(es)
}

/// Shows no values: these flags carry credentials, and the effective configuration (with
/// secrets redacted) is what `--check-config` prints.
impl std::fmt::Debug for EsArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EsArgs").finish_non_exhaustive()
    }
}
