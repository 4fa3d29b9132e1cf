//! PostgreSQL connections for Syncline's binaries, in one place so that every binary reads
//! the same connection strings, applies `sslmode` the same way and never shows a password.
//!
//! * [`PgConfig::parse`] takes what libpq takes: a URL (`postgres://user:pw@host:5432/db?sslmode=require`)
//!   or a conninfo string (`host=db user=app password='s e c' sslmode=verify-full`).
//! * `sslmode` is one of `disable`, `prefer` (the default, as in libpq), `require`,
//!   `verify-ca` and `verify-full`, with `sslrootcert` (CA file), and optional `sslcert` /
//!   `sslkey` (client certificate and key), through OpenSSL (already linked by librdkafka).
//!   As in libpq, `require` with an `sslrootcert` verifies the chain like `verify-ca`;
//!   `prefer` and `require` without one encrypt without verifying the server.
//! * [`PgError`]'s `Display` and `Debug` never contain the password: messages are scrubbed
//!   of it, and targets are shown in their [`PgConfig::redacted`] form.
//!
//! ```no_run
//! # async fn run() -> Result<(), syncline_pg::PgError> {
//! let cfg = syncline_pg::PgConfig::parse("postgres://app:secret@127.0.0.1/shop?sslmode=disable")?;
//! println!("connecting to {}", cfg.redacted()); // postgres://app:***@127.0.0.1/shop?sslmode=disable
//! let conn = cfg.connect().await?;
//! conn.client.batch_execute("LISTEN syncline_outbox").await.map_err(|e| cfg.error(&e))?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt as _;
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;
use percent_encoding::percent_decode_str;
use postgres_openssl::MakeTlsConnector;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Notification};

/// Connect timeout applied when the connection string sets none, so that an unreachable
/// server is an error rather than a hang.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Notifications buffered per connection before further ones are dropped. Listeners use
/// notifications only as wake-ups and read the table itself, so dropping is harmless and
/// keeps memory bounded under a flood of commits.
const NOTIFICATION_BUFFER: usize = 1024;

/// What stands in for a password in redacted output.
const MASK: &str = "***";

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, without verifying the server (libpq's default).
    #[default]
    Prefer,
    /// TLS required; the server is verified only when `sslrootcert` is given (as libpq).
    Require,
    /// TLS required, the server's certificate chain verified against the CA.
    VerifyCa,
    /// As `VerifyCa`, and the certificate must name the host connected to.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = PgError;

    fn from_str(s: &str) -> Result<Self, PgError> {
        match s {
            "disable" => Ok(SslMode::Disable),
            "prefer" => Ok(SslMode::Prefer),
            "require" => Ok(SslMode::Require),
            "verify-ca" => Ok(SslMode::VerifyCa),
            "verify-full" => Ok(SslMode::VerifyFull),
            other => Err(PgError::Config {
                setting: "sslmode".into(),
                reason: format!(
                    "{other:?} is not supported; expected disable, prefer, require, verify-ca or verify-full"
                ),
            }),
        }
    }
}

/// Why connecting to (or talking to) PostgreSQL failed. Never contains the password.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The connection string or a TLS setting is invalid.
    #[error("invalid PostgreSQL setting `{setting}`: {reason}")]
    Config {
        /// The setting at fault (`sslmode`, `sslrootcert`, `port`, ...).
        setting: String,
        /// Why.
        reason: String,
    },
    /// The TLS context could not be built (unreadable CA file, key not matching the cert).
    #[error("PostgreSQL TLS setting `{setting}`: {reason}")]
    Tls {
        /// The setting whose file was refused.
        setting: String,
        /// OpenSSL's reason.
        reason: String,
    },
    /// The server could not be reached, refused the login or the TLS handshake failed.
    #[error("connecting to PostgreSQL at {target}: {reason}")]
    Connect {
        /// The redacted connection string.
        target: String,
        /// Why, scrubbed of the password.
        reason: String,
    },
    /// A statement failed on an established connection.
    #[error("PostgreSQL at {target}: {reason}")]
    Query {
        /// The redacted connection string.
        target: String,
        /// Why, scrubbed of the password.
        reason: String,
        /// The SQLSTATE code, when the server sent one.
        code: Option<String>,
        /// The connection is gone (reconnect rather than retry on it).
        closed: bool,
    },
}

impl PgError {
    /// The SQLSTATE of a [`PgError::Query`], e.g. `"23505"`.
    pub fn code(&self) -> Option<&str> {
        match self {
            PgError::Query { code, .. } => code.as_deref(),
            _ => None,
        }
    }
}

/// A parsed connection string plus the TLS settings tokio-postgres does not know itself.
#[derive(Clone)]
pub struct PgConfig {
    pg: tokio_postgres::Config,
    ssl_mode: SslMode,
    root_cert: Option<PathBuf>,
    client_cert: Option<PathBuf>,
    client_key: Option<PathBuf>,
    password: Option<String>,
    redacted: String,
}

impl fmt::Debug for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConfig")
            .field("target", &self.redacted)
            .field("ssl_mode", &self.ssl_mode)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for PgConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl FromStr for PgConfig {
    type Err = PgError;

    fn from_str(s: &str) -> Result<Self, PgError> {
        PgConfig::parse(s)
    }
}

/// Keys handled here rather than by tokio-postgres (it knows only three `sslmode`s).
const TLS_KEYS: [&str; 4] = ["sslmode", "sslrootcert", "sslcert", "sslkey"];

impl PgConfig {
    /// Parse a `postgres://` / `postgresql://` URL or a libpq conninfo string.
    pub fn parse(s: &str) -> Result<PgConfig, PgError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(PgError::Config {
                setting: "url".into(),
                reason: "empty connection string".into(),
            });
        }
        let is_url = s.starts_with("postgres://") || s.starts_with("postgresql://");
        let (rest, tls, password, redacted) = if is_url {
            split_url(s)?
        } else {
            split_conninfo(s)?
        };
        let mut cfg = PgConfig {
            pg: tokio_postgres::Config::new(),
            ssl_mode: SslMode::default(),
            root_cert: None,
            client_cert: None,
            client_key: None,
            password: password.filter(|p| !p.is_empty()),
            redacted,
        };
        for (k, v) in tls {
            match k.as_str() {
                "sslmode" => cfg.ssl_mode = v.parse()?,
                "sslrootcert" => cfg.root_cert = Some(PathBuf::from(v)),
                "sslcert" => cfg.client_cert = Some(PathBuf::from(v)),
                "sslkey" => cfg.client_key = Some(PathBuf::from(v)),
                _ => {}
            }
        }
        cfg.pg = rest
            .parse::<tokio_postgres::Config>()
            .map_err(|e| PgError::Config {
                setting: "url".into(),
                reason: cfg.scrub(&e.to_string()),
            })?;
        if cfg.pg.get_hosts().is_empty() {
            cfg.pg.host("localhost");
        }
        if cfg.pg.get_user().is_none() {
            cfg.pg.user("postgres");
        }
        if cfg.pg.get_connect_timeout().is_none() {
            cfg.pg.connect_timeout(DEFAULT_CONNECT_TIMEOUT);
        }
        cfg.pg.ssl_mode(match cfg.ssl_mode {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            _ => tokio_postgres::config::SslMode::Require,
        });
        if cfg.client_cert.is_some() != cfg.client_key.is_some() {
            return Err(PgError::Config {
                setting: if cfg.client_cert.is_some() {
                    "sslkey".into()
                } else {
                    "sslcert".into()
                },
                reason: "sslcert and sslkey must be given together".into(),
            });
        }
        if matches!(cfg.ssl_mode, SslMode::Disable) && cfg.client_cert.is_some() {
            return Err(PgError::Config {
                setting: "sslcert".into(),
                reason: "a client certificate needs TLS, but sslmode is disable".into(),
            });
        }
        Ok(cfg)
    }

    /// The connection string with the password replaced by `***`, for logs and
    /// `--check-config`.
    pub fn redacted(&self) -> &str {
        &self.redacted
    }

    /// The effective `sslmode`.
    pub fn ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The database name (`None`: the server uses the user name).
    pub fn dbname(&self) -> Option<&str> {
        self.pg.get_dbname()
    }

    /// The tokio-postgres settings (without the TLS files), e.g. to change the database.
    pub fn pg_config_mut(&mut self) -> &mut tokio_postgres::Config {
        &mut self.pg
    }

    /// A copy connected to another database on the same server (same user, TLS, ...).
    pub fn with_dbname(&self, dbname: &str) -> PgConfig {
        let mut c = self.clone();
        c.pg.dbname(dbname);
        c.redacted = match self.dbname() {
            Some(old) if self.redacted.contains(old) => self.redacted.replacen(old, dbname, 1),
            _ => format!("{} (database {dbname})", self.redacted),
        };
        c
    }

    /// `text` with every occurrence of the password masked.
    pub fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(p) => text.replace(p.as_str(), MASK),
            None => text.to_owned(),
        }
    }

    /// A tokio-postgres error on this connection as a [`PgError::Query`].
    pub fn error(&self, e: &tokio_postgres::Error) -> PgError {
        let reason = match e.as_db_error() {
            Some(db) => {
                let mut r = format!("{}: {}", db.severity(), db.message());
                if let Some(d) = db.detail() {
                    r.push_str(&format!(" ({d})"));
                }
                r
            }
            None => e.to_string(),
        };
        PgError::Query {
            target: self.redacted.clone(),
            reason: self.scrub(&reason),
            code: e.code().map(|c| c.code().to_owned()),
            closed: e.is_closed(),
        }
    }

    /// The OpenSSL connector for this `sslmode` and these certificate files.
    pub fn tls_connector(&self) -> Result<MakeTlsConnector, PgError> {
        let tls = |setting: &str| {
            let setting = setting.to_owned();
            move |e: openssl::error::ErrorStack| PgError::Tls {
                setting: setting.clone(),
                reason: e.to_string(),
            }
        };
        let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(tls("sslmode"))?;
        let verify = match self.ssl_mode {
            SslMode::VerifyCa | SslMode::VerifyFull => true,
            SslMode::Require => self.root_cert.is_some(),
            SslMode::Disable | SslMode::Prefer => false,
        };
        if verify {
            b.set_verify(SslVerifyMode::PEER);
            if let Some(ca) = &self.root_cert {
                if !ca.is_file() {
                    return Err(PgError::Tls {
                        setting: "sslrootcert".into(),
                        reason: format!("{} is not a readable file", ca.display()),
                    });
                }
                // Only this file, as libpq: the system's CAs must not vouch for the server.
                let pem = std::fs::read(ca).map_err(|e| PgError::Tls {
                    setting: "sslrootcert".into(),
                    reason: format!("{}: {e}", ca.display()),
                })?;
                let mut store = X509StoreBuilder::new().map_err(tls("sslrootcert"))?;
                for cert in X509::stack_from_pem(&pem).map_err(tls("sslrootcert"))? {
                    store.add_cert(cert).map_err(tls("sslrootcert"))?;
                }
                b.set_cert_store(store.build());
            }
        } else {
            b.set_verify(SslVerifyMode::NONE);
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            b.set_certificate_chain_file(cert).map_err(tls("sslcert"))?;
            b.set_private_key_file(key, SslFiletype::PEM)
                .map_err(tls("sslkey"))?;
            b.check_private_key().map_err(tls("sslkey"))?;
        }
        let mut connector = MakeTlsConnector::new(b.build());
        if self.ssl_mode != SslMode::VerifyFull {
            connector.set_callback(|config, _domain| {
                config.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(connector)
    }

    /// Connect, and drive the connection on a spawned task that forwards notifications
    /// (`LISTEN`) to [`PgConnection::notifications`].
    pub async fn connect(&self) -> Result<PgConnection, PgError> {
        let tls = self.tls_connector()?;
        let (client, mut connection) =
            self.pg.connect(tls).await.map_err(|e| PgError::Connect {
                target: self.redacted.clone(),
                reason: self.scrub(&connect_reason(&e)),
            })?;
        let (tx, rx) = mpsc::channel(NOTIFICATION_BUFFER);
        let target = self.redacted.clone();
        let task = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(m) = messages.next().await {
                match m {
                    Ok(AsyncMessage::Notification(n)) => {
                        // Full: the listener has wake-ups queued already; see NOTIFICATION_BUFFER.
                        let _ = tx.try_send(n);
                    }
                    Ok(AsyncMessage::Notice(n)) => {
                        tracing::debug!(target: "postgres", "{}: {}", n.severity(), n.message())
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(%target, error = %e, "PostgreSQL connection ended");
                        break;
                    }
                }
            }
        });
        Ok(PgConnection {
            client,
            notifications: rx,
            task,
        })
    }
}

fn connect_reason(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            // tokio-postgres says "error connecting to server"; the cause says why.
            let mut s = e.to_string();
            let mut src = std::error::Error::source(e);
            while let Some(cause) = src {
                let c = cause.to_string();
                if !s.contains(&c) {
                    s.push_str(": ");
                    s.push_str(&c);
                }
                src = cause.source();
            }
            s
        }
    }
}

/// An open connection: the client, the notifications its `LISTEN`s receive, and the task
/// driving it (it ends when the connection does).
pub struct PgConnection {
    /// Issue statements here.
    pub client: Client,
    /// `NOTIFY`s for channels this connection listens on; closed when the connection ends.
    /// At most [`NOTIFICATION_BUFFER`] are buffered, later ones dropped until read.
    pub notifications: mpsc::Receiver<Notification>,
    /// The connection driver.
    pub task: JoinHandle<()>,
}

impl fmt::Debug for PgConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgConnection").finish_non_exhaustive()
    }
}

type Split = (String, Vec<(String, String)>, Option<String>, String);

/// Split a URL into (URL without TLS keys, TLS keys, password, redacted URL). Done by hand
/// rather than with a URL parser because libpq URLs may list several `host:port`s.
fn split_url(s: &str) -> Result<Split, PgError> {
    let (scheme, after) = s.split_once("://").ok_or_else(|| PgError::Config {
        setting: "url".into(),
        reason: "missing ://".into(),
    })?;
    let (main, query) = match after.split_once('?') {
        Some((m, q)) => (m, Some(q)),
        None => (after, None),
    };
    let (authority, path) = match main.find('/') {
        Some(i) => main.split_at(i),
        None => (main, ""),
    };
    let (userinfo, hosts) = match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => (Some(userinfo), hosts),
        None => (None, authority),
    };
    let mut password = None;
    let mut red_userinfo = None;
    if let Some(ui) = userinfo {
        match ui.split_once(':') {
            Some((user, pw)) => {
                password = Some(decode(pw, "password")?);
                red_userinfo = Some(format!("{user}:{MASK}"));
            }
            None => red_userinfo = Some(ui.to_owned()),
        }
    }
    let mut kept = Vec::new();
    let mut red_query = Vec::new();
    let mut tls = Vec::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(k, "url")?;
        if TLS_KEYS.contains(&key.as_str()) {
            let value = decode(v, &key)?;
            tls.push((key, value));
            red_query.push(pair.to_owned());
        } else if key == "password" {
            password = Some(decode(v, "password")?);
            kept.push(pair.to_owned());
            red_query.push(format!("password={MASK}"));
        } else {
            kept.push(pair.to_owned());
            red_query.push(pair.to_owned());
        }
    }
    let join = |ui: Option<&str>, q: &[String]| {
        let mut out = format!("{scheme}://");
        if let Some(ui) = ui {
            out.push_str(ui);
            out.push('@');
        }
        out.push_str(hosts);
        out.push_str(path);
        if !q.is_empty() {
            out.push('?');
            out.push_str(&q.join("&"));
        }
        out
    };
    let rest = join(userinfo, &kept);
    let redacted = join(red_userinfo.as_deref(), &red_query);
    Ok((rest, tls, password, redacted))
}

fn decode(s: &str, setting: &str) -> Result<String, PgError> {
    percent_decode_str(s)
        .decode_utf8()
        .map(|c| c.into_owned())
        .map_err(|_| PgError::Config {
            setting: setting.to_owned(),
            reason: "percent-encoding is not valid UTF-8".into(),
        })
}

/// Split a conninfo string (`key=value key='quoted \' value'`).
fn split_conninfo(s: &str) -> Result<Split, PgError> {
    let pairs = parse_conninfo(s)?;
    let mut rest = Vec::new();
    let mut red = Vec::new();
    let mut tls = Vec::new();
    let mut password = None;
    for (k, v) in pairs {
        if TLS_KEYS.contains(&k.as_str()) {
            red.push(format!("{k}={}", quote(&v)));
            tls.push((k, v));
        } else if k == "password" {
            red.push(format!("password={MASK}"));
            rest.push(format!("{k}={}", quote(&v)));
            password = Some(v);
        } else {
            red.push(format!("{k}={}", quote(&v)));
            rest.push(format!("{k}={}", quote(&v)));
        }
    }
    Ok((rest.join(" "), tls, password, red.join(" ")))
}

fn quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

fn parse_conninfo(s: &str) -> Result<Vec<(String, String)>, PgError> {
    let bad = |reason: &str| PgError::Config {
        setting: "url".into(),
        reason: reason.to_owned(),
    };
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() {
            break;
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.next() != Some('=') {
            return Err(bad(&format!(
                "expected `=` after {key:?} (a URL must start with postgres:// or postgresql://)"
            )));
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => {
                        closed = true;
                        break;
                    }
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(bad(&format!("unterminated quoted value of {key:?}")));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                if c == '\\' {
                    chars.next();
                    if let Some(n) = chars.next() {
                        value.push(n);
                    }
                    continue;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_password_is_redacted_and_tls_keys_are_taken() {
        let c = PgConfig::parse(
            "postgres://app:s%40cret@db1:5432,db2:5433/shop?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.ssl_mode(), SslMode::VerifyFull);
        assert_eq!(
            c.root_cert.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert_eq!(
            c.redacted(),
            "postgres://app:***@db1:5432,db2:5433/shop?sslmode=verify-full&sslrootcert=/ca.pem&application_name=x"
        );
        assert_eq!(c.pg.get_hosts().len(), 2);
        assert_eq!(c.pg.get_password(), Some(&b"s@cret"[..]));
        assert!(!format!("{c:?}").contains("s@cret"));
        assert_eq!(c.scrub("failed for s@cret"), "failed for ***");
    }

    #[test]
    fn conninfo_with_quotes() {
        let c = PgConfig::parse(
            r"host=127.0.0.1 port=5432 user=app password='it\'s secret' sslmode=require dbname=shop",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.ssl_mode(), SslMode::Require);
        assert_eq!(c.pg.get_password(), Some(&b"it's secret"[..]));
        assert_eq!(
            c.redacted(),
            "host='127.0.0.1' port='5432' user='app' password=*** sslmode='require' dbname='shop'"
        );
        assert_eq!(c.dbname(), Some("shop"));
    }

    #[test]
    fn bad_settings_are_named() {
        let e = PgConfig::parse("postgres://h/db?sslmode=allow").err();
        assert!(matches!(e, Some(PgError::Config { ref setting, .. }) if setting == "sslmode"));
        let e = PgConfig::parse("postgres://h/db?sslcert=/c.pem&sslmode=require").err();
        assert!(matches!(e, Some(PgError::Config { ref setting, .. }) if setting == "sslkey"));
        let e = PgConfig::parse("host=x password='open").err();
        assert!(matches!(e, Some(PgError::Config { .. })));
        assert!(!e
            .map(|e| e.to_string())
            .unwrap_or_default()
            .contains("open"));
        let e = PgConfig::parse("postgres://u:pw@h/db?port=notaport").err();
        assert!(matches!(e, Some(PgError::Config { .. })));
    }

    #[test]
    fn missing_ca_file_is_a_tls_error() {
        let c =
            PgConfig::parse("postgres://h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem")
                .unwrap_or_else(|e| panic!("{e}"));
        let e = c.tls_connector().err();
        assert!(matches!(e, Some(PgError::Tls { ref setting, .. }) if setting == "sslrootcert"));
    }

    #[test]
    fn with_dbname_keeps_the_rest() {
        let c = PgConfig::parse("postgres://u:pw@h:1/admin").unwrap_or_else(|e| panic!("{e}"));
        let d = c.with_dbname("t1");
        assert_eq!(d.dbname(), Some("t1"));
        assert_eq!(d.redacted(), "postgres://u:***@h:1/t1");
    }
}
