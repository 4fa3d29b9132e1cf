//! The `[redis]` settings: TOML table, `SYNCLINE_REDIS_*` env vars and `--redis-*` flags
//! (flags > env > file > defaults; `REDIS_URL` is honoured below `SYNCLINE_REDIS_URL`),
//! layered by [`syncline_app::Layers`] and validated into a [`SinkConfig`] before
//! anything connects.

use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionInfo, IntoConnectionInfo};
use serde::{Deserialize, Serialize};
use syncline_app::{HumanDuration, Layers};
use syncline_cache::connect::LoadedTls;
use syncline_cache::{KeyLayout, Mode, RedisTlsFiles, Ttls, DEFAULT_PREFIX};
use syncline_consumer::ConfigError;

/// Name of the sink's table in the TOML file.
pub const SECTION: &str = "redis";

/// Default consumer group of the binary.
pub const DEFAULT_GROUP_ID: &str = "syncline-redis-invalidator";

/// The `[redis]` table as written in the file. Durations are humantime strings (`"1h"`).
/// `Debug` redacts the password and the URL's userinfo password; so does
/// [`syncline_app::Redact`], through which `--check-config` prints it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSettings {
    /// `redis://[user[:password]@]host[:port][/db]` or `rediss://...` (TLS).
    pub url: String,
    /// ACL user name (overrides one in the URL).
    pub username: Option<String>,
    /// Password (overrides one in the URL). Prefer the env var to a file.
    pub password: Option<String>,
    /// Prefix of every key (default `syncline:`).
    pub key_prefix: String,
    /// `invalidate` (delete cached values) or `refresh` (write the event's document).
    pub mode: Mode,
    /// Lifetime of cached values written in `refresh` mode.
    #[serde(with = "humantime_serde")]
    pub cache_ttl: Duration,
    /// Lifetime of version guards; must be >= `cache_ttl`.
    #[serde(with = "humantime_serde")]
    pub guard_ttl: Duration,
    /// Channel to PUBLISH a JSON notice on for every applied event (off when unset).
    pub publish_channel: Option<String>,
    /// Time allowed to establish a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed for a reply (one pipeline of a whole batch).
    #[serde(with = "humantime_serde")]
    pub response_timeout: Duration,
    /// PEM CA certificate(s) that signed the server's certificate (`rediss://` only;
    /// replaces the built-in webpki roots).
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (for `tls-auth-clients yes`); needs `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
}

impl std::fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSettings")
            .field("url", &redact(&self.url))
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "[redacted]"))
            .field("key_prefix", &self.key_prefix)
            .field("mode", &self.mode)
            .field("cache_ttl", &self.cache_ttl)
            .field("guard_ttl", &self.guard_ttl)
            .field("publish_channel", &self.publish_channel)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .finish()
    }
}

/// For `--check-config`: the password and the URL's password.
impl syncline_app::Redact for RedisSettings {
    fn redacted(&self) -> Self {
        RedisSettings {
            url: redact(&self.url),
            password: self
                .password
                .as_ref()
                .map(|_| syncline_app::REDACTED.to_owned()),
            ..self.clone()
        }
    }
}

impl Default for RedisSettings {
    fn default() -> Self {
        let ttls = Ttls::default();
        RedisSettings {
            url: "redis://127.0.0.1:6379".into(),
            username: None,
            password: None,
            key_prefix: DEFAULT_PREFIX.into(),
            mode: Mode::Invalidate,
            cache_ttl: ttls.cache_ttl(),
            guard_ttl: ttls.guard_ttl(),
            publish_channel: None,
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// Flags (each with a `SYNCLINE_REDIS_*` env var) overriding the `[redis]` table. The
/// field names are the table's keys: set flags are layered over the file by name
/// ([`RedisArgs::layer`]). The group id names the table, so a malformed flag is reported
/// as `redis.<key>`.
#[derive(Clone, Default, clap::Args, Serialize)]
#[group(id = "redis")]
pub struct RedisArgs {
    /// Redis URL (`redis://` or `rediss://`; also read from REDIS_URL).
    #[arg(long = "redis-url", env = "SYNCLINE_REDIS_URL")]
    pub url: Option<String>,
    /// ACL user name.
    #[arg(long = "redis-username", env = "SYNCLINE_REDIS_USERNAME")]
    pub username: Option<String>,
    /// Password (prefer the env var: flags show up in `ps`).
    #[arg(
        long = "redis-password",
        env = "SYNCLINE_REDIS_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// Key prefix (default `syncline:`).
    #[arg(long = "redis-key-prefix", env = "SYNCLINE_REDIS_KEY_PREFIX")]
    pub key_prefix: Option<String>,
    /// How events change cached values.
    #[arg(long = "redis-mode", env = "SYNCLINE_REDIS_MODE", value_enum)]
    pub mode: Option<Mode>,
    /// Lifetime of cached values (e.g. `1h`).
    #[arg(long = "redis-cache-ttl", env = "SYNCLINE_REDIS_CACHE_TTL")]
    pub cache_ttl: Option<HumanDuration>,
    /// Lifetime of version guards (e.g. `7d`), >= the cache TTL.
    #[arg(long = "redis-guard-ttl", env = "SYNCLINE_REDIS_GUARD_TTL")]
    pub guard_ttl: Option<HumanDuration>,
    /// Channel for applied-event notices (off by default).
    #[arg(long = "redis-publish-channel", env = "SYNCLINE_REDIS_PUBLISH_CHANNEL")]
    pub publish_channel: Option<String>,
    /// Connect timeout (e.g. `5s`).
    #[arg(long = "redis-connect-timeout", env = "SYNCLINE_REDIS_CONNECT_TIMEOUT")]
    pub connect_timeout: Option<HumanDuration>,
    /// Response timeout for one batch pipeline (e.g. `10s`).
    #[arg(
        long = "redis-response-timeout",
        env = "SYNCLINE_REDIS_RESPONSE_TIMEOUT"
    )]
    pub response_timeout: Option<HumanDuration>,
    /// PEM CA file that signed the Redis server's certificate (`rediss://` only).
    #[arg(
        long = "redis-ca-file",
        env = "SYNCLINE_REDIS_CA_FILE",
        value_name = "FILE"
    )]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for servers that require one (with --redis-key-file).
    #[arg(
        long = "redis-cert-file",
        env = "SYNCLINE_REDIS_CERT_FILE",
        value_name = "FILE"
    )]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(
        long = "redis-key-file",
        env = "SYNCLINE_REDIS_KEY_FILE",
        value_name = "FILE"
    )]
    pub key_file: Option<PathBuf>,
}

/// Validated settings, ready to connect with.
#[derive(Clone)]
pub struct SinkConfig {
    /// Where and how to connect (URL plus separate credentials applied).
    pub connection: ConnectionInfo,
    /// The URL with any password replaced by `***`, for logs.
    pub display_url: String,
    /// Key layout.
    pub layout: KeyLayout,
    /// Invalidate or refresh.
    pub mode: Mode,
    /// Value and guard lifetimes.
    pub ttls: Ttls,
    /// PUBLISH channel, if enabled.
    pub publish_channel: Option<String>,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Response timeout.
    pub response_timeout: Duration,
    /// The TLS files as configured (for display).
    pub tls_files: RedisTlsFiles,
    /// The TLS files, read and checked.
    pub tls: LoadedTls,
}

impl std::fmt::Debug for SinkConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the connection info: it holds the password.
        f.debug_struct("SinkConfig")
            .field("url", &self.display_url)
            .field("layout", &self.layout)
            .field("mode", &self.mode)
            .field("ttls", &self.ttls)
            .field("publish_channel", &self.publish_channel)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("tls_files", &self.tls_files)
            .finish()
    }
}

fn invalid(setting: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::new(format!("redis.{setting}"), reason)
}

/// The cache crate's configuration message without its generic prefix.
fn reason(e: syncline_cache::CacheError) -> String {
    match e {
        syncline_cache::CacheError::Config(m) => m,
        other => other.to_string(),
    }
}

impl RedisSettings {
    /// These settings with `args` (and `REDIS_URL`, below `SYNCLINE_REDIS_URL`) layered
    /// over them. For tools that read the invalidator's file themselves.
    pub fn with_args(&self, args: &RedisArgs) -> Result<RedisSettings, ConfigError> {
        args.layer(Layers::new(syncline_consumer::cli::CONSUMER_SECTION).defaults(SECTION, self)?)?
            .extract(SECTION)
    }

    /// [`RedisSettings::with_args`] in place, for callers without an error path
    /// (`syncline-ctl rebuild redis`). The layering can only fail on a file path that is not
    /// UTF-8; then the settings stay as they were and a warning says why.
    pub fn apply_args(&mut self, args: &RedisArgs) {
        match self.with_args(args) {
            Ok(s) => *self = s,
            Err(e) => tracing::warn!(error = %e, "redis flags not applied"),
        }
    }

    /// Check every setting; the first bad one is named in the error (`redis.<setting>`).
    pub fn validate(&self) -> Result<SinkConfig, ConfigError> {
        let scheme_ok = self.url.starts_with("redis://") || self.url.starts_with("rediss://");
        if !scheme_ok {
            return Err(invalid(
                "url",
                format!(
                    "must start with redis:// or rediss://, got {}",
                    redact(&self.url)
                ),
            ));
        }
        let mut connection = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|e| invalid("url", format!("{}: {e}", redact(&self.url))))?;
        if let Some(u) = &self.username {
            if u.is_empty() {
                return Err(invalid("username", "must not be empty when set"));
            }
            connection.redis.username = Some(u.clone());
        }
        if let Some(p) = &self.password {
            connection.redis.password = Some(p.clone());
        }
        let layout = KeyLayout::new(self.key_prefix.clone())
            .map_err(|e| invalid("key_prefix", reason(e)))?;
        let mode = self.mode;
        // Validate the cache TTL on its own first, so an error names the right setting.
        Ttls::new(self.cache_ttl, self.cache_ttl).map_err(|e| invalid("cache_ttl", reason(e)))?;
        let ttls = Ttls::new(self.cache_ttl, self.guard_ttl)
            .map_err(|e| invalid("guard_ttl", reason(e)))?;
        if let Some(c) = &self.publish_channel {
            if c.is_empty() {
                return Err(invalid("publish_channel", "must not be empty when set"));
            }
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            if d < Duration::from_millis(1) || d > Duration::from_secs(3600) {
                return Err(invalid(
                    name,
                    format!("must be between 1ms and 1h, got {d:?}"),
                ));
            }
        }
        let tls_files = RedisTlsFiles {
            ca_file: self.ca_file.clone(),
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
        };
        // Read and parse the files now, so a bad one stops startup (and --check-config)
        // with its name and path instead of surfacing as a handshake failure.
        let tls = tls_files
            .load()
            .map_err(|e| invalid(e.file.setting(), e.reason))?;
        if !tls_files.is_empty() && !self.url.starts_with("rediss://") {
            let setting = if self.ca_file.is_some() {
                "ca_file"
            } else {
                "cert_file"
            };
            return Err(invalid(
                setting,
                format!("TLS files need a rediss:// URL, got {}", redact(&self.url)),
            ));
        }
        Ok(SinkConfig {
            connection,
            display_url: redact(&self.url),
            layout,
            mode,
            ttls,
            publish_channel: self.publish_channel.clone(),
            connect_timeout: self.connect_timeout,
            response_timeout: self.response_timeout,
            tls_files,
            tls,
        })
    }
}

/// The URL with the password (if any) replaced by `***`
/// ([`syncline_cache::connect::redact_url`], shared with the cache's own connections).
pub fn redact(url: &str) -> String {
    syncline_cache::connect::redact_url(url)
}

impl RedisArgs {
    /// Add the `[redis]` layers above the file: `REDIS_URL` (below `SYNCLINE_REDIS_URL` and
    /// `--redis-url`), then these flags and env vars.
    pub fn layer(&self, layers: Layers) -> Result<Layers, ConfigError> {
        layers
            .env_fallback(SECTION, "url", "REDIS_URL")
            .flags(SECTION, self)
    }
}

/// Shows no values: these flags carry credentials, and the effective configuration (with
/// secrets redacted) is what `--check-config` prints.
impl std::fmt::Debug for RedisArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisArgs").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RedisSettings {
        RedisSettings::default()
    }

    fn setting_of(r: Result<SinkConfig, ConfigError>) -> String {
        r.err().map(|e| e.setting).unwrap_or_default()
    }

    #[test]
    fn defaults_validate() {
        let c = settings().validate();
        assert!(c.is_ok(), "{c:?}");
    }

    #[test]
    fn guard_ttl_below_cache_ttl_names_guard_ttl() {
        let s = RedisSettings {
            cache_ttl: Duration::from_secs(60),
            guard_ttl: Duration::from_secs(30),
            ..settings()
        };
        assert_eq!(setting_of(s.validate()), "redis.guard_ttl");
        let s = RedisSettings {
            cache_ttl: Duration::ZERO,
            ..settings()
        };
        assert_eq!(setting_of(s.validate()), "redis.cache_ttl");
    }

    #[test]
    fn bad_values_name_their_setting() {
        let bad_url = RedisSettings {
            url: "http://x".into(),
            ..settings()
        };
        assert_eq!(setting_of(bad_url.validate()), "redis.url");
        let bad_mode = toml_from("mode = \"write\"");
        assert!(
            bad_mode.as_ref().is_err_and(|e| e.contains("`redis.mode`")),
            "{:?}",
            bad_mode.map(|s| s.mode)
        );
        let bad_prefix = RedisSettings {
            key_prefix: "a{".into(),
            ..settings()
        };
        assert_eq!(setting_of(bad_prefix.validate()), "redis.key_prefix");
        let bad_timeout = RedisSettings {
            response_timeout: Duration::ZERO,
            ..settings()
        };
        assert_eq!(setting_of(bad_timeout.validate()), "redis.response_timeout");
        let bad_channel = RedisSettings {
            publish_channel: Some(String::new()),
            ..settings()
        };
        assert_eq!(setting_of(bad_channel.validate()), "redis.publish_channel");
    }

    #[test]
    fn credentials_come_from_url_or_settings() {
        let s = RedisSettings {
            url: "rediss://app:secret@cache.example:6380/2".into(),
            ..settings()
        };
        let c = s.validate().ok();
        let info = c.as_ref().map(|c| c.connection.redis.clone());
        assert_eq!(
            info.as_ref().and_then(|i| i.username.clone()).as_deref(),
            Some("app")
        );
        assert_eq!(
            info.as_ref().and_then(|i| i.password.clone()).as_deref(),
            Some("secret")
        );
        assert_eq!(info.map(|i| i.db), Some(2));
        assert_eq!(
            c.map(|c| c.display_url).as_deref(),
            Some("rediss://app:***@cache.example:6380/2")
        );

        let s = RedisSettings {
            username: Some("ops".into()),
            password: Some("pw".into()),
            ..settings()
        };
        let info = s.validate().ok().map(|c| c.connection.redis);
        assert_eq!(
            info.as_ref().and_then(|i| i.username.clone()).as_deref(),
            Some("ops")
        );
        assert_eq!(info.and_then(|i| i.password).as_deref(), Some("pw"));
    }

    #[test]
    fn tls_files_are_checked_and_need_rediss() {
        let missing = RedisSettings {
            url: "rediss://127.0.0.1:6380".into(),
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..settings()
        };
        assert_eq!(setting_of(missing.validate()), "redis.ca_file");
        let half = RedisSettings {
            url: "rediss://127.0.0.1:6380".into(),
            cert_file: Some("/nonexistent/cert.pem".into()),
            ..settings()
        };
        assert_eq!(setting_of(half.validate()), "redis.key_file");
        let dir = tempfile::tempdir().ok();
        let ca = dir.as_ref().map(|d| d.path().join("ca.pem"));
        if let Some(ca) = &ca {
            let _ = std::fs::write(
                ca,
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            );
        }
        let plain = RedisSettings {
            url: "redis://127.0.0.1:6379".into(),
            ca_file: ca,
            ..settings()
        };
        assert_eq!(setting_of(plain.validate()), "redis.ca_file");
    }

    #[test]
    fn toml_table_parses_with_humantime_durations() {
        let s: Result<RedisSettings, _> = toml_from(
            r#"
            url = "redis://127.0.0.1:7000"
            mode = "refresh"
            cache_ttl = "10m"
            guard_ttl = "2d"
            publish_channel = "syncline-applied"
            ca_file = "/etc/ssl/redis-ca.pem"
            "#,
        );
        let s = s.unwrap_or_default();
        assert_eq!(s.mode, Mode::Refresh);
        assert_eq!(s.cache_ttl, Duration::from_secs(600));
        assert_eq!(s.guard_ttl, Duration::from_secs(2 * 86_400));
        assert_eq!(s.ca_file, Some(PathBuf::from("/etc/ssl/redis-ca.pem")));
        let s = RedisSettings { ca_file: None, ..s };
        assert!(s.validate().is_ok());
    }

    fn toml_from(text: &str) -> Result<RedisSettings, String> {
        let (_, s) = syncline_consumer::cli::from_toml::<RedisSettings>(
            &format!("[redis]\n{text}"),
            "test.toml",
            SECTION,
            syncline_consumer::RuntimeConfig::default(),
        )
        .map_err(|e| e.to_string())?;
        Ok(s)
    }
}
