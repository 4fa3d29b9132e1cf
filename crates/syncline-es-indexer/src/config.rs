//! The `[elasticsearch]` settings: defaults, the TOML shape and validation (the flags are
//! in [`crate::args`]). Every invalid value stops startup with a message naming the
//! setting.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default Elasticsearch address (the dev server or a local node).
pub const DEFAULT_URL: &str = "http://127.0.0.1:9200";
/// Default directory of per-entity-type index definitions.
pub const DEFAULT_MAPPINGS_DIR: &str = "schemas/mappings";
/// Default largest number of actions in one bulk request.
pub const DEFAULT_BULK_MAX_ACTIONS: usize = 1000;
/// Default largest bulk request body, in bytes (5 MiB).
pub const DEFAULT_BULK_MAX_BYTES: usize = 5 * 1024 * 1024;
/// Default timeout of one request to Elasticsearch.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How a DELETE event is applied. See the crate README for why `tombstone` is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DeleteMode {
    /// Index a tombstone document `{"_syncline_deleted": true}` with the event's external
    /// version; the alias filters tombstones out of searches. Tombstones never expire, so
    /// an older upsert can never resurrect the document.
    #[default]
    Tombstone,
    /// A real bulk `delete` with the external version. Elasticsearch forgets the delete
    /// after `index.gc_deletes` (60 s by default), after which an older upsert that is
    /// replayed can bring the document back; replays must then go into a fresh index.
    Delete,
}

impl DeleteMode {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            DeleteMode::Tombstone => "tombstone",
            DeleteMode::Delete => "delete",
        }
    }
}

/// The `[elasticsearch]` table. Field names are the TOML keys. `Debug` redacts the
/// password, the API key and any password in the URL; so does [`syncline_app::Redact`],
/// through which `--check-config` prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EsConfig {
    /// Base URL of Elasticsearch, `http://` or `https://` (TLS via rustls).
    pub url: String,
    /// Prepended to the entity type to form the alias name.
    pub index_prefix: String,
    /// Directory holding `<entity_type>.json` index definitions. `None` means the default
    /// `schemas/mappings`, which may be absent; a directory set explicitly must exist.
    pub mappings_dir: Option<PathBuf>,
    /// How DELETE events are applied.
    pub delete_mode: DeleteMode,
    /// Largest number of actions in one bulk request.
    pub bulk_max_actions: usize,
    /// Largest bulk request body in bytes (one larger document is sent alone).
    pub bulk_max_bytes: usize,
    /// Timeout of one request to Elasticsearch.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Basic-auth user name (needs `password`).
    pub username: Option<String>,
    /// Basic-auth password (needs `username`).
    pub password: Option<String>,
    /// API key: the base64 `encoded` form, or `id:api_key`.
    pub api_key: Option<String>,
    /// PEM file with CA certificates to trust in addition to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// Create a missing index and alias (with the mapping when one exists).
    pub create_indexes: bool,
}

impl std::fmt::Debug for EsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "[redacted]");
        f.debug_struct("EsConfig")
            .field("url", &redact_url(&self.url))
            .field("index_prefix", &self.index_prefix)
            .field("mappings_dir", &self.mappings_dir)
            .field("delete_mode", &self.delete_mode)
            .field("bulk_max_actions", &self.bulk_max_actions)
            .field("bulk_max_bytes", &self.bulk_max_bytes)
            .field("request_timeout", &self.request_timeout)
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("api_key", &redacted(&self.api_key))
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("create_indexes", &self.create_indexes)
            .finish()
    }
}

/// `url` with the password of any `user:password@` replaced, for output.
pub use syncline_app::effective::redact_url;

/// For `--check-config`: the password, the API key and the URL's password.
impl syncline_app::Redact for EsConfig {
    fn redacted(&self) -> Self {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| syncline_app::REDACTED.to_owned());
        EsConfig {
            url: redact_url(&self.url),
            password: hidden(&self.password),
            api_key: hidden(&self.api_key),
            ..self.clone()
        }
    }
}

impl Default for EsConfig {
    fn default() -> Self {
        EsConfig {
            url: DEFAULT_URL.to_owned(),
            index_prefix: String::new(),
            mappings_dir: None,
            delete_mode: DeleteMode::default(),
            bulk_max_actions: DEFAULT_BULK_MAX_ACTIONS,
            bulk_max_bytes: DEFAULT_BULK_MAX_BYTES,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            username: None,
            password: None,
            api_key: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            create_indexes: true,
        }
    }
}

/// An invalid setting: the configuration error every binary shares. [`EsConfig::validate`]
/// names the table's keys bare (`url`); the binary qualifies them (`elasticsearch.url`).
pub use syncline_app::ConfigError;

impl EsConfig {
    /// The mappings directory in effect.
    pub fn mappings_dir_or_default(&self) -> PathBuf {
        self.mappings_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MAPPINGS_DIR))
    }

    /// Check every setting; the first invalid one is returned.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Messages quote the URL redacted: it may hold a password.
        let shown = redact_url(&self.url);
        let url = url::Url::parse(&self.url)
            .map_err(|e| ConfigError::new("url", format!("{shown:?} is not a URL: {e}")))?;
        if url.scheme() != "http" && url.scheme() != "https" {
            return Err(ConfigError::new(
                "url",
                format!("{shown:?} must use http or https, not {:?}", url.scheme()),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(ConfigError::new("url", format!("{shown:?} has no host")));
        }
        validate_prefix(&self.index_prefix)?;
        if self.bulk_max_actions == 0 {
            return Err(ConfigError::new("bulk_max_actions", "must be at least 1"));
        }
        if self.bulk_max_bytes < 1024 {
            return Err(ConfigError::new(
                "bulk_max_bytes",
                format!("must be at least 1024, got {}", self.bulk_max_bytes),
            ));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new(
                "request_timeout",
                "must be greater than 0",
            ));
        }
        match (&self.username, &self.password) {
            (Some(u), _) if u.is_empty() => {
                return Err(ConfigError::new("username", "must not be empty"))
            }
            (Some(_), None) => {
                return Err(ConfigError::new("password", "is required with username"))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new("username", "is required with password"))
            }
            _ => {}
        }
        if let Some(key) = &self.api_key {
            if key.trim().is_empty() {
                return Err(ConfigError::new("api_key", "must not be empty"));
            }
            if self.username.is_some() {
                return Err(ConfigError::new(
                    "api_key",
                    "set either api_key or username/password, not both",
                ));
            }
        }
        if let Some(ca) = &self.ca_file {
            if !ca.is_file() {
                return Err(ConfigError::new(
                    "ca_file",
                    format!("{} is not a readable file", ca.display()),
                ));
            }
        }
        for (setting, file) in [("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if let Some(f) = file {
                if !f.is_file() {
                    return Err(ConfigError::new(
                        setting,
                        format!("{} is not a readable file", f.display()),
                    ));
                }
            }
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => {
                return Err(ConfigError::new("key_file", "is required with cert_file"))
            }
            (None, Some(_)) => {
                return Err(ConfigError::new("cert_file", "is required with key_file"))
            }
            _ => {}
        }
        if (self.ca_file.is_some() || self.cert_file.is_some())
            && !self
                .url
                .trim_start()
                .to_ascii_lowercase()
                .starts_with("https://")
        {
            // Over http:// the files would be silently unused.
            let setting = if self.ca_file.is_some() {
                "ca_file"
            } else {
                "cert_file"
            };
            return Err(ConfigError::new(
                setting,
                format!("needs an https:// url, got {shown}"),
            ));
        }
        if let Some(dir) = &self.mappings_dir {
            if !dir.is_dir() {
                return Err(ConfigError::new(
                    "mappings_dir",
                    format!("{} is not a directory", dir.display()),
                ));
            }
        }
        Ok(())
    }
}

/// The prefix must keep `<prefix><entity_type>` a valid Elasticsearch index/alias name:
/// lowercase, none of `\ / * ? " < > | , # :` or spaces, not starting with `-`, `_`, `+`
/// or `.`, and short enough for the 255-byte limit with the generation suffix.
fn validate_prefix(prefix: &str) -> Result<(), ConfigError> {
    let bad = |reason: String| Err(ConfigError::new("index_prefix", reason));
    if prefix.len() > 160 {
        return bad(format!("is {} bytes, at most 160 allowed", prefix.len()));
    }
    if let Some(first) = prefix.chars().next() {
        if matches!(first, '-' | '_' | '+' | '.') {
            return bad(format!("{prefix:?} must not start with {first:?}"));
        }
    }
    for c in prefix.chars() {
        let ok = c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.');
        if !ok {
            return bad(format!(
                "{prefix:?} may contain only a-z, 0-9, '-', '_' and '.', found {c:?}"
            ));
        }
    }
    Ok(())
}

/// Parse a byte size: a plain number of bytes, or a number with `KiB`, `MiB`, `GiB`
/// (or `KB`, `MB`, `GB`, read as powers of 1024 too; ES does the same).
pub fn parse_byte_size(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: usize = num
        .parse()
        .map_err(|_| format!("{s:?} is not a byte size (e.g. 5242880 or 5MiB)"))?;
    let mult: usize = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1024,
        "m" | "mb" | "mib" => 1024 * 1024,
        "g" | "gb" | "gib" => 1024 * 1024 * 1024,
        other => return Err(format!("{s:?} has an unknown unit {other:?}")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(EsConfig::default().validate(), Ok(()));
        assert_eq!(EsConfig::default().delete_mode, DeleteMode::Tombstone);
    }

    #[test]
    fn toml_table_parses_with_defaults() {
        let c: EsConfig = toml::from_str(
            "url = \"https://es:9243\"\nindex_prefix = \"app-\"\ndelete_mode = \"delete\"\nrequest_timeout = \"5s\"\n",
        )
        .unwrap();
        assert_eq!(c.url, "https://es:9243");
        assert_eq!(c.delete_mode, DeleteMode::Delete);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        assert_eq!(c.bulk_max_actions, DEFAULT_BULK_MAX_ACTIONS);
        assert!(c.validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_rejected() {
        assert!(toml::from_str::<EsConfig>("urll = \"x\"").is_err());
    }

    #[test]
    fn invalid_values_name_the_setting() {
        let cases: Vec<(EsConfig, &str)> = vec![
            (
                EsConfig {
                    url: "ftp://x".into(),
                    ..Default::default()
                },
                "url",
            ),
            (
                EsConfig {
                    url: "not a url".into(),
                    ..Default::default()
                },
                "url",
            ),
            (
                EsConfig {
                    index_prefix: "Upper".into(),
                    ..Default::default()
                },
                "index_prefix",
            ),
            (
                EsConfig {
                    index_prefix: "_x".into(),
                    ..Default::default()
                },
                "index_prefix",
            ),
            (
                EsConfig {
                    bulk_max_actions: 0,
                    ..Default::default()
                },
                "bulk_max_actions",
            ),
            (
                EsConfig {
                    bulk_max_bytes: 10,
                    ..Default::default()
                },
                "bulk_max_bytes",
            ),
            (
                EsConfig {
                    request_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "request_timeout",
            ),
            (
                EsConfig {
                    username: Some("u".into()),
                    ..Default::default()
                },
                "password",
            ),
            (
                EsConfig {
                    username: Some("u".into()),
                    password: Some("p".into()),
                    api_key: Some("k".into()),
                    ..Default::default()
                },
                "api_key",
            ),
            (
                EsConfig {
                    mappings_dir: Some("/nonexistent/dir".into()),
                    ..Default::default()
                },
                "mappings_dir",
            ),
            (
                EsConfig {
                    ca_file: Some("/nonexistent/ca.pem".into()),
                    ..Default::default()
                },
                "ca_file",
            ),
            (
                EsConfig {
                    url: "https://es.example:9200".into(),
                    cert_file: Some("/nonexistent/cert.pem".into()),
                    ..Default::default()
                },
                "cert_file",
            ),
            (
                EsConfig {
                    url: "https://es.example:9200".into(),
                    cert_file: Some("Cargo.toml".into()),
                    ..Default::default()
                },
                "key_file",
            ),
            (
                EsConfig {
                    cert_file: Some("Cargo.toml".into()),
                    key_file: Some("Cargo.toml".into()),
                    ..Default::default()
                },
                "cert_file",
            ),
        ];
        for (cfg, setting) in cases {
            let err = cfg.validate().unwrap_err();
            assert_eq!(err.setting, setting, "{err}");
            assert!(err.to_string().contains(setting));
        }
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_byte_size("1024"), Ok(1024));
        assert_eq!(parse_byte_size("5MiB"), Ok(5 * 1024 * 1024));
        assert_eq!(parse_byte_size("64 KiB"), Ok(64 * 1024));
        assert!(parse_byte_size("5 parsecs").is_err());
        assert!(parse_byte_size("").is_err());
    }
}
